// SPDX-License-Identifier: GPL-2.0

//! Page cache mappings.
//!
//! [`Mapping`] wraps the C `struct address_space` that holds the page cache of an inode: it
//! finds or creates folios in it, truncates it, and gives access to its invalidate lock, which
//! serialises truncation and hole punching against the creation of new folios.
//!
//! C headers: [`include/linux/pagemap.h`](srctree/include/linux/pagemap.h),
//! [`include/linux/fs.h`](srctree/include/linux/fs.h)

use crate::{
    alloc::Flags,
    bindings,
    error::{from_err_ptr, Result},
    folio::LockedFolio,
    mm::mempolicy::Mempolicy,
    types::Opaque,
};
use core::{marker::PhantomData, ops::Deref, ptr::NonNull};

/// The page cache of an inode, a C `struct address_space`.
///
/// There are no owned `Mapping`s: they are embedded in inodes, and a `&Mapping` is only valid
/// while the inode is (for example, while a reference to an open file of the inode is held, see
/// [`LocalFile::mapping`]).
///
/// [`LocalFile::mapping`]: crate::fs::file::LocalFile::mapping
///
/// # Invariants
///
/// A `&Mapping` points to an initialised `struct address_space` that stays valid for the lifetime
/// of the borrow.
///
/// # Examples
///
/// The page cache of a new anonymous inode:
///
/// ```
/// use kernel::c_str;
/// use kernel::fs::file::{anon_inode_create_getfile, flags::O_RDWR, FileOperations};
///
/// static FOPS: FileOperations = FileOperations::new(
///     // SAFETY: All-zeroes is a valid `file_operations`: no callbacks and no owner.
///     unsafe { core::mem::zeroed() },
/// );
///
/// // SAFETY: `FOPS` has no callbacks that could look at the private data.
/// let file = unsafe { anon_inode_create_getfile(c_str!("[rust-filemap]"), &FOPS, (), O_RDWR)? };
/// let mapping = file.mapping();
/// mapping.set_gfp_mask(GFP_HIGHUSER);
/// assert!(mapping.gfp_mask() == GFP_HIGHUSER);
///
/// let folio = {
///     let _guard = mapping.invalidate_lock_shared();
///     let folio = mapping.grab_folio(3)?;
///     assert_eq!(folio.index(), 3);
///     assert_eq!(folio.next_index(), 4);
///     assert!(!folio.test_uptodate());
///     folio.zero();
///     folio.mark_uptodate();
///     folio.unlock()
/// };
///
/// // The folio is found in the page cache again.
/// let again = mapping.grab_folio(3)?;
/// assert!(core::ptr::eq(again.as_raw(), folio.as_raw()));
/// assert!(again.test_uptodate());
/// drop(again);
///
/// // Truncation removes it; a new folio takes its place.
/// {
///     let guard = mapping.invalidate_lock();
///     guard.truncate_range(0, -1);
/// }
/// let fresh = mapping.grab_folio(3)?;
/// assert!(!core::ptr::eq(fresh.as_raw(), folio.as_raw()));
/// assert!(!fresh.test_uptodate());
/// drop(fresh);
///
/// // Truncating a range keeps the folios outside of it.
/// let next = mapping.grab_folio(4)?.unlock();
/// mapping.truncate_range(3 * kernel::page::PAGE_SIZE as i64,
///                        4 * kernel::page::PAGE_SIZE as i64 - 1);
/// let kept = mapping.grab_folio(4)?;
/// assert!(core::ptr::eq(kept.as_raw(), next.as_raw()));
/// drop(kept);
///
/// // Nothing maps the file: unmapping finds nothing to do, and keeps the folios.
/// mapping.unmap_range(0, 0);
/// let kept = mapping.grab_folio(4)?;
/// assert!(core::ptr::eq(kept.as_raw(), next.as_raw()));
/// drop(kept);
///
/// assert!(!mapping.unevictable());
/// mapping.set_inaccessible();
/// assert!(mapping.unevictable());
///
/// // Private data: a borrowed pointer that its owner detaches before it goes away.
/// let owner = 42u64;
/// // SAFETY: Nothing else uses the private data of this mapping, and it is cleared below,
/// // before `owner` goes away.
/// unsafe { mapping.set_private_data(Some(&owner)) };
/// // SAFETY: The private data is `owner`, alive until the end of the test.
/// assert_eq!(unsafe { mapping.private_data::<u64>() }, Some(&42));
/// // SAFETY: As above.
/// unsafe { mapping.set_private_data::<u64>(None) };
/// // SAFETY: The private data is null.
/// assert!(unsafe { mapping.private_data::<u64>() }.is_none());
/// # Ok::<(), Error>(())
/// ```
#[repr(transparent)]
pub struct Mapping(Opaque<bindings::address_space>);

// SAFETY: The methods taking `&self` use the page cache's own locking, so they may be called from
// several threads at once.
unsafe impl Sync for Mapping {}

// SAFETY: A `Mapping` is only accessed by reference, and nothing in it is tied to a thread.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Creates a reference to a mapping from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to an initialised `struct address_space` that stays valid for the whole
    /// lifetime `'a` (for example, the inode that holds it must stay alive).
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::address_space) -> &'a Self {
        // SAFETY: The caller guarantees that the pointer is valid for `'a`. `Mapping` is
        // `repr(transparent)`, so the cast is valid.
        unsafe { &*ptr.cast() }
    }

    /// Returns a raw pointer to the C `struct address_space`.
    pub fn as_raw(&self) -> *mut bindings::address_space {
        self.0.get()
    }

    /// Finds the folio at `index` in the page cache, or adds a new one there, and locks it
    /// (`filemap_grab_folio`).
    ///
    /// New folios are allocated with the mapping's allocation flags (see
    /// [`Mapping::set_gfp_mask`]), are not zeroed and are not up to date. May sleep.
    pub fn grab_folio(&self, index: usize) -> Result<LockedFolio> {
        // SAFETY: By the type invariants the mapping is valid. `filemap_grab_folio` returns a
        // folio or an `ERR_PTR`.
        let ptr = from_err_ptr(unsafe { bindings::filemap_grab_folio(self.as_raw(), index) })?;
        // `filemap_grab_folio` never returns null when it creates folios; be careful anyway.
        let ptr = NonNull::new(ptr).ok_or(crate::error::code::ENOMEM)?;
        // SAFETY: `filemap_grab_folio` returns a locked folio with a reference, which we hand
        // over to the `LockedFolio`.
        Ok(unsafe { LockedFolio::from_raw(ptr) })
    }

    /// Like [`Mapping::grab_folio`], but a new folio is allocated from the nodes that `mpol`
    /// picks for the interleave index `ilx` (`filemap_grab_folio_mpol`); with `None`, from those
    /// of the task's policy, exactly as [`Mapping::grab_folio`].
    ///
    /// A folio already in the page cache is returned where it is. May sleep.
    pub fn grab_folio_mpol(
        &self,
        index: usize,
        mpol: Option<&Mempolicy>,
        ilx: usize,
    ) -> Result<LockedFolio> {
        let mpol = mpol.map_or(core::ptr::null_mut(), Mempolicy::as_raw);
        // SAFETY: By the type invariants the mapping is valid; `mpol` is null or a policy the
        // caller holds a reference on for the duration of the call. The function returns a
        // folio or an `ERR_PTR`, never null.
        let ptr = from_err_ptr(unsafe {
            bindings::filemap_grab_folio_mpol(self.as_raw(), index, mpol, ilx)
        })?;
        let ptr = NonNull::new(ptr).ok_or(crate::error::code::ENOMEM)?;
        // SAFETY: The folio comes locked and with a reference, which we hand over to the
        // `LockedFolio`.
        Ok(unsafe { LockedFolio::from_raw(ptr) })
    }

    /// Takes the mapping's invalidate lock for writing (`filemap_invalidate_lock`).
    ///
    /// This excludes page faults and other code that adds folios under the lock taken shared,
    /// for example while truncating or punching a hole. The lock is released when the guard is
    /// dropped. May sleep.
    pub fn invalidate_lock(&self) -> InvalidateLockGuard<'_> {
        // SAFETY: By the type invariants the mapping is valid; the guard releases the lock.
        unsafe { bindings::filemap_invalidate_lock(self.as_raw()) };
        // INVARIANT: The lock was taken just above.
        InvalidateLockGuard {
            mapping: self,
            _not_send: PhantomData,
        }
    }

    /// Takes the mapping's invalidate lock for reading (`filemap_invalidate_lock_shared`).
    ///
    /// The lock is released when the guard is dropped. May sleep.
    pub fn invalidate_lock_shared(&self) -> InvalidateLockSharedGuard<'_> {
        // SAFETY: By the type invariants the mapping is valid; the guard releases the lock.
        unsafe { bindings::filemap_invalidate_lock_shared(self.as_raw()) };
        // INVARIANT: The lock was taken just above.
        InvalidateLockSharedGuard {
            mapping: self,
            _not_send: PhantomData,
        }
    }

    /// Removes the folios that hold bytes `lstart..=lend_inclusive` from the page cache
    /// (`truncate_inode_pages_range`).
    ///
    /// Partial pages at the edges are zeroed rather than removed. `lend_inclusive == -1` means
    /// "to the end of the file". Callers normally hold the invalidate lock for writing. It takes
    /// the lock of each folio it removes, so it must not be called while the caller holds the
    /// lock of a folio in the range. May sleep.
    pub fn truncate_range(&self, lstart: i64, lend_inclusive: i64) {
        // SAFETY: By the type invariants the mapping is valid. `truncate_inode_pages_range`
        // handles any range.
        unsafe { bindings::truncate_inode_pages_range(self.as_raw(), lstart, lend_inclusive) };
    }

    /// Unmaps pages `first..first + nr` of the file from every user mapping of it
    /// (`unmap_mapping_pages`), so that the next access faults; `nr == 0` means "to the end of
    /// the file". Private copies made by writes to private mappings stay. May sleep.
    ///
    /// Truncation unmaps the folios it removes one by one; unmapping the range first zaps the
    /// page tables in one walk per mapping.
    pub fn unmap_range(&self, first: usize, nr: usize) {
        // SAFETY: By the type invariants the mapping is valid. `unmap_mapping_pages` handles any
        // range, takes the locks it needs and may sleep.
        unsafe { bindings::unmap_mapping_pages(self.as_raw(), first as _, nr as _, false) };
    }

    /// Sets the allocation flags used for new folios of the mapping (`mapping_set_gfp_mask`).
    ///
    /// This is meant to be called while setting the inode up, before the page cache is used.
    pub fn set_gfp_mask(&self, gfp: Flags) {
        // SAFETY: By the type invariants the mapping is valid. `mapping_set_gfp_mask` writes a
        // field the page cache only reads.
        unsafe { bindings::mapping_set_gfp_mask(self.as_raw(), gfp.as_raw()) };
    }

    /// Returns the allocation flags used for new folios of the mapping (`mapping_gfp_mask`).
    pub fn gfp_mask(&self) -> Flags {
        // SAFETY: By the type invariants the mapping is valid. `mapping_gfp_mask` reads a field.
        Flags::from_raw(unsafe { bindings::mapping_gfp_mask(self.as_raw()) })
    }

    /// Marks the mapping's folios as inaccessible: not migratable, not evictable, never mapped by
    /// the kernel for reading or writing on behalf of users (`mapping_set_inaccessible`).
    pub fn set_inaccessible(&self) {
        // SAFETY: By the type invariants the mapping is valid. `mapping_set_inaccessible` sets
        // flag bits atomically.
        unsafe { bindings::mapping_set_inaccessible(self.as_raw()) };
    }

    /// Makes `aops` the address-space operations of the mapping of a new inode (`a_ops`).
    ///
    /// # Safety
    ///
    /// Nobody else may use the mapping yet (its inode was just created by the caller), and the
    /// callbacks of `aops` must be sound to call on this mapping.
    pub unsafe fn set_operations(&self, aops: &'static AddressSpaceOperations) {
        // SAFETY: The mapping is valid and, as the caller guarantees, not shared yet.
        unsafe { (*self.as_raw()).a_ops = aops.as_ptr() };
    }

    /// Points the mapping's private data (`i_private_data`) to `data`, or clears it.
    ///
    /// The mapping does not own what it points to: its owner clears the pointer before it goes
    /// away.
    ///
    /// # Safety
    ///
    /// Every user of this mapping's private data must agree that it is null or a `&T`; `data`
    /// must stay valid until it is cleared or replaced; and writes must be serialised against
    /// readers by a lock of the caller's (for example, the invalidate lock held for writing).
    pub unsafe fn set_private_data<T>(&self, data: Option<&T>) {
        let data = data.map_or(core::ptr::null_mut(), |d| core::ptr::from_ref(d).cast_mut());
        // SAFETY: The mapping is valid; the caller serialises this write against readers.
        unsafe { (*self.as_raw()).i_private_data = data.cast() };
    }

    /// Returns what the mapping's private data (`i_private_data`) points to, if anything.
    ///
    /// # Safety
    ///
    /// The private data must be null or a `&T` set with [`Mapping::set_private_data`], and the
    /// caller must hold the lock that keeps it from being cleared, and what it points to from
    /// going away, for the lifetime `'a`.
    pub unsafe fn private_data<'a, T>(&self) -> Option<&'a T> {
        // SAFETY: The mapping is valid; the caller holds the lock that serialises writers.
        let data = unsafe { (*self.as_raw()).i_private_data };
        // SAFETY: The caller guarantees that a non-null pointer is a `&T` valid for `'a`.
        NonNull::new(data.cast::<T>()).map(|d| unsafe { d.as_ref() })
    }

    /// Returns whether the mapping's folios may not be evicted (`mapping_unevictable`).
    pub fn unevictable(&self) -> bool {
        // SAFETY: By the type invariants the mapping is valid. `mapping_unevictable` tests a flag
        // bit atomically.
        unsafe { bindings::mapping_unevictable(self.as_raw()) }
    }
}

/// An `address_space_operations` table that can be put in a `static`.
pub type AddressSpaceOperations = crate::fs::OpsTable<bindings::address_space_operations>;

/// The invalidate lock of a [`Mapping`], held for writing.
///
/// Dereferences to the mapping. The lock is released when the guard is dropped.
///
/// # Invariants
///
/// The current task holds `mapping`'s invalidate lock for writing, and the guard is responsible
/// for releasing it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct InvalidateLockGuard<'a> {
    mapping: &'a Mapping,
    /// The lock is a `rw_semaphore`, which must be released by the task that took it.
    _not_send: PhantomData<*mut ()>,
}

impl Deref for InvalidateLockGuard<'_> {
    type Target = Mapping;

    fn deref(&self) -> &Mapping {
        self.mapping
    }
}

impl Drop for InvalidateLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants this task holds the lock for writing.
        unsafe { bindings::filemap_invalidate_unlock(self.mapping.as_raw()) };
    }
}

/// The invalidate lock of a [`Mapping`], held for reading.
///
/// Dereferences to the mapping. The lock is released when the guard is dropped.
///
/// # Invariants
///
/// The current task holds `mapping`'s invalidate lock for reading, and the guard is responsible
/// for releasing it.
#[must_use = "the lock is released when the guard is dropped"]
pub struct InvalidateLockSharedGuard<'a> {
    mapping: &'a Mapping,
    /// The lock is a `rw_semaphore`, which must be released by the task that took it.
    _not_send: PhantomData<*mut ()>,
}

impl Deref for InvalidateLockSharedGuard<'_> {
    type Target = Mapping;

    fn deref(&self) -> &Mapping {
        self.mapping
    }
}

impl Drop for InvalidateLockSharedGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants this task holds the lock for reading.
        unsafe { bindings::filemap_invalidate_unlock_shared(self.mapping.as_raw()) };
    }
}
