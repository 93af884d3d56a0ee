// SPDX-License-Identifier: GPL-2.0

//! Folios: physically contiguous, reference-counted groups of pages.
//!
//! [`Folio`] wraps a C `struct folio` that someone holds a reference on; [`ARef<Folio>`] owns a
//! reference. [`LockedFolio`] owns a reference and the folio lock, which is what the page cache
//! hands out (see [`Mapping::grab_folio`]).
//!
//! C headers: [`include/linux/mm.h`](srctree/include/linux/mm.h),
//! [`include/linux/pagemap.h`](srctree/include/linux/pagemap.h),
//! [`include/linux/page-flags.h`](srctree/include/linux/page-flags.h)
//!
//! [`Mapping::grab_folio`]: crate::filemap::Mapping::grab_folio

use crate::{
    alloc::Flags,
    bindings,
    error::{
        code::{EINVAL, ENOMEM},
        Result,
    },
    page::{PAGE_SHIFT, PAGE_SIZE},
    types::{ARef, AlwaysRefCounted, Opaque},
};
use core::{
    mem::ManuallyDrop,
    ops::Deref,
    ptr::{self, NonNull},
};

/// A folio, a C `struct folio`.
///
/// # Invariants
///
/// A `&Folio` only exists while a reference on the folio is held (by the owner of the borrow),
/// so the folio stays allocated as a folio for the lifetime of the borrow.
///
/// # Examples
///
/// ```
/// use kernel::folio::Folio;
///
/// let folio = Folio::alloc(GFP_KERNEL, 0)?;
/// assert_eq!(folio.order(), 0);
/// assert_eq!(folio.nr_pages(), 1);
/// assert_eq!(folio.size(), kernel::page::PAGE_SIZE);
/// assert!(!folio.test_uptodate());
/// assert!(!folio.test_hwpoison());
///
/// // A large folio starts on a naturally aligned page frame.
/// let large = Folio::alloc(GFP_KERNEL, 2)?;
/// assert_eq!(large.order(), 2);
/// assert_eq!(large.nr_pages(), 4);
/// assert_eq!(large.pfn() % 4, 0);
/// assert_eq!(large.file_pfn(6), large.pfn() + 2);
///
/// // Locking, zeroing and marking up to date.
/// let locked = large.lock();
/// let pattern = [0xa5u8; 16];
/// // SAFETY: Nothing else uses this new folio.
/// unsafe { locked.write_raw(pattern.as_ptr(), 3 * kernel::page::PAGE_SIZE - 8, 16)? };
/// let mut back = [0u8; 16];
/// // SAFETY: Nothing else uses this new folio.
/// unsafe { locked.read_raw(back.as_mut_ptr(), 3 * kernel::page::PAGE_SIZE - 8, 16)? };
/// assert_eq!(back, pattern);
/// locked.zero();
/// // SAFETY: Nothing else uses this new folio.
/// unsafe { locked.read_raw(back.as_mut_ptr(), 3 * kernel::page::PAGE_SIZE - 8, 16)? };
/// assert_eq!(back, [0u8; 16]);
/// locked.mark_uptodate();
/// let large2 = locked.unlock();
/// assert!(large2.test_uptodate());
///
/// // Accesses out of the folio are rejected.
/// // SAFETY: Nothing else uses this new folio.
/// let err = unsafe { large.read_raw(back.as_mut_ptr(), 4 * kernel::page::PAGE_SIZE - 8, 16) };
/// assert_eq!(err, Err(EINVAL));
///
/// // Orders beyond what the page allocator can provide are rejected.
/// assert!(Folio::alloc(GFP_KERNEL, 64).is_err());
/// # Ok::<(), Error>(())
/// ```
#[repr(transparent)]
pub struct Folio(Opaque<bindings::folio>);

// SAFETY: Folios are reference counted with atomics, and their reference may be dropped from any
// thread.
unsafe impl Send for Folio {}

// SAFETY: The methods taking `&self` use atomic flag operations or read fields that do not change
// while a reference is held, so they may be called from several threads at once.
unsafe impl Sync for Folio {}

// SAFETY: All folios are reference counted: `folio_get` and `folio_put` increment and decrement
// the count, and the folio is freed only when it drops to zero.
unsafe impl AlwaysRefCounted for Folio {
    fn inc_ref(&self) {
        // SAFETY: By the type invariants the folio is alive and its count is not zero.
        unsafe { bindings::folio_get(self.as_raw()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller owns a reference on the folio, which it gives up here. `Folio` is
        // `repr(transparent)`, so the pointer cast is valid.
        unsafe { bindings::folio_put(obj.cast().as_ptr()) };
    }
}

impl Folio {
    /// Allocates a folio of `2^order` pages with the given flags (`folio_alloc`).
    ///
    /// Returns [`EINVAL`] if `order` is larger than the page allocator's `MAX_PAGE_ORDER`, and
    /// [`ENOMEM`] if the allocation fails. The memory is not initialised unless `flags` contains
    /// `__GFP_ZERO`.
    pub fn alloc(flags: Flags, order: u32) -> Result<ARef<Self>> {
        if order > bindings::MAX_PAGE_ORDER {
            return Err(EINVAL);
        }
        // SAFETY: `folio_alloc` may be called with any flags and an order up to
        // `MAX_PAGE_ORDER`; it may sleep if the flags allow it.
        let ptr = unsafe { bindings::folio_alloc(flags.as_raw(), order) };
        let ptr = NonNull::new(ptr).ok_or(ENOMEM)?;
        // SAFETY: A new folio comes with one reference, which is given to the `ARef`. `Folio` is
        // `repr(transparent)`, so the pointer cast is valid.
        Ok(unsafe { ARef::from_raw(ptr.cast()) })
    }

    /// Creates a reference to a folio from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct folio` on which a reference is held for the whole
    /// lifetime `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::folio) -> &'a Self {
        // SAFETY: The caller guarantees that the pointer is valid for `'a`. `Folio` is
        // `repr(transparent)`, so the cast is valid.
        unsafe { &*ptr.cast() }
    }

    /// Returns a raw pointer to the C `struct folio`.
    pub fn as_raw(&self) -> *mut bindings::folio {
        self.0.get()
    }

    /// Returns the index of the folio's first page in its file (`folio->index`).
    ///
    /// Only meaningful for folios in the page cache.
    pub fn index(&self) -> usize {
        // SAFETY: By the type invariants the folio is valid. `folio_index` only reads it.
        unsafe { bindings::folio_index(self.as_raw()) }
    }

    /// Returns the index of the page right after the folio in its file (`folio_next_index`).
    pub fn next_index(&self) -> usize {
        self.index().wrapping_add(self.nr_pages())
    }

    /// Returns the page frame number of the folio's first page.
    pub fn pfn(&self) -> usize {
        // SAFETY: By the type invariants the folio is valid. `folio_pfn` only reads it.
        unsafe { bindings::folio_pfn(self.as_raw()) }
    }

    /// Returns the page frame number of the page of this folio that holds file page `index`.
    ///
    /// Folios are naturally aligned in their file, so this is the page at offset
    /// `index % nr_pages()` in the folio.
    pub fn file_pfn(&self, index: usize) -> usize {
        self.pfn() + (index & (self.nr_pages() - 1))
    }

    /// Returns the number of pages in the folio.
    pub fn nr_pages(&self) -> usize {
        // SAFETY: By the type invariants the folio is valid. `folio_nr_pages` only reads it.
        let nr = unsafe { bindings::folio_nr_pages(self.as_raw()) };
        // CAST: The number of pages of a folio is a small positive power of two.
        nr as usize
    }

    /// Returns the order of the folio: it has `2^order` pages.
    pub fn order(&self) -> u32 {
        // SAFETY: By the type invariants the folio is valid. `folio_order` only reads it.
        unsafe { bindings::folio_order(self.as_raw()) }
    }

    /// Returns the size of the folio in bytes.
    pub fn size(&self) -> usize {
        self.nr_pages() << PAGE_SHIFT
    }

    /// Returns whether the folio's contents are up to date (`PG_uptodate`).
    pub fn test_uptodate(&self) -> bool {
        // SAFETY: By the type invariants the folio is valid. `folio_test_uptodate` reads its
        // flags atomically.
        unsafe { bindings::folio_test_uptodate(self.as_raw()) }
    }

    /// Returns whether the folio has a hardware memory error (`PG_hwpoison`).
    ///
    /// Always `false` without `CONFIG_MEMORY_FAILURE`.
    pub fn test_hwpoison(&self) -> bool {
        // SAFETY: By the type invariants the folio is valid. `folio_test_hwpoison` reads its
        // flags atomically.
        unsafe { bindings::folio_test_hwpoison(self.as_raw()) }
    }

    /// Locks the folio, sleeping until it is available (`folio_lock`).
    ///
    /// The returned [`LockedFolio`] holds a new reference on the folio. Locking a folio that the
    /// caller already holds locked deadlocks.
    pub fn lock(&self) -> LockedFolio {
        // SAFETY: By the type invariants the folio is valid; `folio_lock` may sleep.
        unsafe { bindings::folio_lock(self.as_raw()) };
        // INVARIANT: The folio was locked just above, and `ARef::from` takes a new reference.
        LockedFolio {
            folio: ManuallyDrop::new(ARef::from(self)),
        }
    }

    /// Maps page `n` of the folio and runs `f` with its address.
    ///
    /// `n` must be smaller than `nr_pages()`.
    fn with_page_mapped<T>(&self, n: usize, f: impl FnOnce(*mut u8) -> T) -> T {
        // SAFETY: By the type invariants the folio is valid; the caller checked that `n` is in
        // the folio.
        let page = unsafe { bindings::folio_page(self.as_raw(), n) };
        // SAFETY: `page` is a valid page of the folio, kept alive by the folio reference.
        let addr = unsafe { bindings::kmap_local_page(page) };
        let ret = f(addr.cast());
        // SAFETY: `addr` was mapped just above, and the mappings made by `f`, if any, were
        // undone before it returned: local mappings are released in reverse order.
        unsafe { bindings::kunmap_local(addr) };
        ret
    }

    /// Runs `f(page address, offset in page, offset in the buffer, length)` for the parts of
    /// `offset..offset + len` in each page of the folio.
    ///
    /// Returns [`EINVAL`] without calling `f` if the range does not fit in the folio.
    fn for_each_chunk(
        &self,
        offset: usize,
        len: usize,
        mut f: impl FnMut(*mut u8, usize, usize, usize),
    ) -> Result {
        match offset.checked_add(len) {
            Some(end) if end <= self.size() => {}
            _ => return Err(EINVAL),
        }
        let mut done = 0;
        while done < len {
            let pos = offset + done;
            let in_page = pos % PAGE_SIZE;
            let chunk = (len - done).min(PAGE_SIZE - in_page);
            self.with_page_mapped(pos / PAGE_SIZE, |addr| f(addr, in_page, done, chunk));
            done += chunk;
        }
        Ok(())
    }

    /// Copies `len` bytes at byte `offset` of the folio to `dst`.
    ///
    /// Returns [`EINVAL`] if `offset..offset + len` is not inside the folio.
    ///
    /// # Safety
    ///
    /// - `dst` must be valid for writes of `len` bytes.
    /// - No write to the same bytes of the folio may run concurrently.
    pub unsafe fn read_raw(&self, dst: *mut u8, offset: usize, len: usize) -> Result {
        self.for_each_chunk(offset, len, |addr, in_page, done, chunk| {
            // SAFETY: `addr` maps a whole page and `in_page + chunk <= PAGE_SIZE`; the caller
            // guarantees that `dst` is valid for `len >= done + chunk` bytes and that there is
            // no concurrent write.
            unsafe { ptr::copy_nonoverlapping(addr.add(in_page), dst.add(done), chunk) }
        })
    }

    /// Copies `len` bytes from `src` to byte `offset` of the folio.
    ///
    /// Returns [`EINVAL`] if `offset..offset + len` is not inside the folio.
    ///
    /// # Safety
    ///
    /// - `src` must be valid for reads of `len` bytes.
    /// - No read or write of the same bytes of the folio may run concurrently.
    pub unsafe fn write_raw(&self, src: *const u8, offset: usize, len: usize) -> Result {
        self.for_each_chunk(offset, len, |addr, in_page, done, chunk| {
            // SAFETY: `addr` maps a whole page and `in_page + chunk <= PAGE_SIZE`; the caller
            // guarantees that `src` is valid for `len >= done + chunk` bytes and that there is
            // no concurrent access.
            unsafe { ptr::copy_nonoverlapping(src.add(done), addr.add(in_page), chunk) }
        })
    }
}

/// A locked folio, with a reference on it.
///
/// Dropping it unlocks the folio and then drops the reference; [`LockedFolio::unlock`] unlocks
/// it and keeps the reference.
///
/// # Invariants
///
/// `folio` is locked (`PG_locked`), and this object is responsible for unlocking it. The
/// `ManuallyDrop` holds a reference and is only taken out when the object goes away.
pub struct LockedFolio {
    folio: ManuallyDrop<ARef<Folio>>,
}

impl LockedFolio {
    /// Creates a [`LockedFolio`] from a raw pointer to a locked folio.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid folio that is locked; the caller gives up both one reference
    /// on the folio and the responsibility of unlocking it to the new object.
    pub unsafe fn from_raw(ptr: NonNull<bindings::folio>) -> Self {
        // INVARIANT: The caller gives us the lock and a reference.
        // SAFETY: The caller gives up a reference, which the `ARef` takes over. `Folio` is
        // `repr(transparent)`, so the pointer cast is valid.
        let folio = unsafe { ARef::from_raw(ptr.cast()) };
        Self {
            folio: ManuallyDrop::new(folio),
        }
    }

    /// Marks the folio's contents as up to date (`folio_mark_uptodate`).
    pub fn mark_uptodate(&self) {
        // SAFETY: By the type invariants the folio is valid and locked, as
        // `folio_mark_uptodate` requires.
        unsafe { bindings::folio_mark_uptodate(self.as_raw()) };
    }

    /// Fills every page of the folio with zeroes (`clear_highpage`).
    pub fn zero(&self) {
        for n in 0..self.nr_pages() {
            // SAFETY: By the type invariants the folio is valid, and `n` is one of its pages.
            let page = unsafe { bindings::folio_page(self.as_raw(), n) };
            // SAFETY: `page` is a valid page of the folio, kept alive by our reference. The
            // memory is not a Rust object, so overwriting it cannot break Rust aliasing rules;
            // Rust readers of folio memory go through the `unsafe` `read_raw`.
            unsafe { bindings::clear_highpage(page) };
        }
    }

    /// Gives up the folio, still locked and with the reference, to C code that takes over both
    /// (the inverse of [`LockedFolio::from_raw`]).
    pub fn into_raw(self) -> NonNull<bindings::folio> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the reference is taken out once and
        // the folio is not unlocked.
        let folio = unsafe { ManuallyDrop::take(&mut this.folio) };
        ARef::into_raw(folio).cast()
    }

    /// Unlocks the folio (`folio_unlock`) and returns the reference.
    pub fn unlock(self) -> ARef<Folio> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: By the type invariants the folio is locked and we are responsible for
        // unlocking it; `this` is not dropped, so it is not unlocked twice.
        unsafe { bindings::folio_unlock(this.as_raw()) };
        // SAFETY: `this` is never used or dropped again, so the reference is taken out once.
        unsafe { ManuallyDrop::take(&mut this.folio) }
    }
}

impl Deref for LockedFolio {
    type Target = Folio;

    fn deref(&self) -> &Folio {
        &self.folio
    }
}

impl Drop for LockedFolio {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the folio is locked and we are responsible for
        // unlocking it.
        unsafe { bindings::folio_unlock(self.as_raw()) };
        // SAFETY: `self.folio` is not used after this, and `drop` runs once.
        unsafe { ManuallyDrop::drop(&mut self.folio) };
    }
}
