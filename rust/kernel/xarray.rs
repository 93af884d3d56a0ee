// SPDX-License-Identifier: GPL-2.0

//! XArray abstraction.
//!
//! This module has two parts:
//!
//! - A backport of the XArray abstraction of Linux 6.16 (its `kernel::xarray` module):
//!   [`XArray<T: ForeignOwnable>`] owns its entries and drops them with the array; it is
//!   pin-initialised by [`XArray::new`] with an [`AllocKind`]; [`XArray::lock`] and
//!   [`XArray::try_lock`] return a [`Guard`] whose [`Guard::get`], [`Guard::remove`] and
//!   [`Guard::store`] (which hands the value back in a [`StoreError`] on failure) work under the
//!   array's lock. Differences from 6.16, due to 6.12's [`ForeignOwnable`]: there is no
//!   `Guard::get_mut` (6.12 has no `borrow_mut`), and since 6.12 does not tell the alignment of
//!   the foreign pointer, [`Guard::store`] checks at run time that the pointer is not one the
//!   XArray reserves for itself (see [`Guard::store`]).
//! - Our extension, not in any upstream release: [`AllocKind::Plain`], [`XArray::from_raw`] to
//!   use an array that C code owns, and the [`multi`] module: value entries ([`multi::XaValue`]),
//!   entries that may be held at several indices at once ([`multi::CopyEntry`]), and
//!   multi-index (range) operations built on the advanced `xa_state` API.
//!
//! C header: [`include/linux/xarray.h`](srctree/include/linux/xarray.h)

use crate::{
    alloc, bindings,
    error::{code::EINVAL, Error, Result},
    ffi::c_void,
    init::PinInit,
    pin_init,
    types::{ForeignOwnable, Opaque},
};
use core::{marker::PhantomData, pin::Pin};
use macros::{pin_data, pinned_drop};

pub mod multi;
pub mod word;

/// An array which efficiently maps sparse integer indices to owned objects.
///
/// This is similar to a `KVec<Option<T>>`, but more efficient when there are holes in the index
/// space, and it grows efficiently. The array owns its entries: those still in it are dropped
/// with it.
///
/// # Invariants
///
/// `self.xa` is an initialised `struct xarray` whose entries are either reservations
/// (`XA_ZERO_ENTRY`, made by [`multi`]) or came from `T::into_foreign`, and are neither null nor
/// other XArray internal entries. Each entry is owned by the array, once, except entries of a
/// [`multi::CopyEntry`] type, which may be held at several indices.
///
/// # Examples
///
/// ```
/// use kernel::xarray::{AllocKind, XArray};
///
/// let xa = KBox::pin_init(XArray::<KBox<u32>>::new(AllocKind::Alloc1), GFP_KERNEL)?;
///
/// // Allocate before taking the lock, a spinlock.
/// let dead = KBox::new(0xdead, GFP_KERNEL)?;
/// let beef = KBox::new(0xbeef, GFP_KERNEL)?;
/// let five = KBox::new(5, GFP_KERNEL)?;
///
/// let mut guard = xa.lock();
/// assert_eq!(guard.get(0), None);
///
/// assert!(guard.store(0, dead, GFP_KERNEL)?.is_none());
/// assert_eq!(guard.get(0).copied(), Some(0xdead));
///
/// // Storing over an entry hands the old one back.
/// let old = guard.store(0, beef, GFP_KERNEL)?;
/// assert_eq!(old.as_deref().copied(), Some(0xdead));
/// assert_eq!(guard.get(0).copied(), Some(0xbeef));
///
/// assert!(guard.store(5, five, GFP_KERNEL)?.is_none());
/// assert_eq!(guard.remove(0).as_deref().copied(), Some(0xbeef));
/// assert_eq!(guard.get(0), None);
/// assert!(guard.remove(0).is_none());
/// assert_eq!(guard.get(5).copied(), Some(5));
/// drop(guard);
///
/// // The entry still at index 5 is freed with the array.
/// drop(xa);
/// # Ok::<(), Error>(())
/// ```
#[pin_data(PinnedDrop)]
#[repr(transparent)]
pub struct XArray<T: ForeignOwnable> {
    #[pin]
    xa: Opaque<bindings::xarray>,
    _p: PhantomData<T>,
}

#[pinned_drop]
impl<T: ForeignOwnable> PinnedDrop for XArray<T> {
    fn drop(self: Pin<&mut Self>) {
        let mut index = 0;
        // SAFETY: `self.xa` is initialised (type invariant). `xa_find` skips reservations.
        let mut ptr = unsafe {
            bindings::xa_find(self.as_raw(), &mut index, usize::MAX, bindings::XA_PRESENT)
        };
        while !ptr.is_null() {
            // SAFETY: `ptr` is an entry of the array, so it came from `T::into_foreign`, and the
            // array owns it (type invariant); nothing borrows from the array any more. An entry
            // held at several indices is found once: `xa_find_after` skips the rest of it.
            //
            // INVARIANT: the array is being dropped, so the entry left behind is never read.
            drop(unsafe { T::from_foreign(ptr) });
            // SAFETY: as for `xa_find` above.
            ptr = unsafe {
                bindings::xa_find_after(self.as_raw(), &mut index, usize::MAX, bindings::XA_PRESENT)
            };
        }
        // SAFETY: `self.xa` is initialised (type invariant) and is not used after this.
        unsafe { bindings::xa_destroy(self.as_raw()) };
    }
}

/// The kind of an [`XArray`], given to [`XArray::new`]: whether it tracks free indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocKind {
    /// `XA_FLAGS_ALLOC`: the array tracks free indices, the first one being 0.
    Alloc,
    /// `XA_FLAGS_ALLOC1`: the array tracks free indices, the first one being 1.
    Alloc1,
    /// A plain array that does not track free indices (flags 0, as `xa_init`). Our extension.
    Plain,
}

impl<T: ForeignOwnable> XArray<T> {
    /// Creates an initializer for an empty array of the given kind.
    pub fn new(kind: AllocKind) -> impl PinInit<Self> {
        let flags = match kind {
            AllocKind::Alloc => bindings::XA_FLAGS_ALLOC,
            AllocKind::Alloc1 => bindings::XA_FLAGS_ALLOC1,
            AllocKind::Plain => 0,
        };
        pin_init!(Self {
            // INVARIANT: `xa_init_flags` initialises an empty array.
            xa <- Opaque::ffi_init(move |xa| {
                // SAFETY: `xa` is valid for writes while the closure runs; `xa_init_flags`
                // initialises it without reading it.
                unsafe { bindings::xa_init_flags(xa, flags) }
            }),
            _p: PhantomData,
        })
    }

    /// Borrows a `struct xarray` that C code owns. Our extension.
    ///
    /// The array is used through the returned reference only, which never drops it nor its
    /// entries: the C owner destroys the array (and frees its entries, if they need it).
    ///
    /// # Safety
    ///
    /// `xa` must point to a `struct xarray` initialised by `xa_init_flags` that stays valid, and is
    /// not destroyed, for `'a`; all its entries must satisfy the type invariants of [`XArray`] for
    /// `T`, and anything C code stores in it meanwhile too.
    pub unsafe fn from_raw<'a>(xa: *mut bindings::xarray) -> &'a Self {
        // SAFETY: `Self` is `repr(transparent)` over `Opaque<bindings::xarray>`, which has the
        // layout of `struct xarray`; the caller guarantees validity and the invariants for `'a`.
        unsafe { &*xa.cast::<Self>() }
    }

    fn as_raw(&self) -> *mut bindings::xarray {
        self.xa.get()
    }

    /// Attempts to lock the array for exclusive access, without spinning.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xarray::{AllocKind, XArray};
    ///
    /// let xa = KBox::pin_init(XArray::<KBox<u8>>::new(AllocKind::Alloc), GFP_KERNEL)?;
    /// let guard = xa.try_lock().ok_or(EBUSY)?;
    /// // Uniprocessor spinlocks are no-ops, without lock debugging.
    /// if cfg!(CONFIG_SMP) || cfg!(CONFIG_DEBUG_SPINLOCK) {
    ///     assert!(xa.try_lock().is_none());
    /// }
    /// drop(guard);
    /// assert!(xa.try_lock().is_some());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn try_lock(&self) -> Option<Guard<'_, T>> {
        // SAFETY: `self.xa` is initialised (type invariant).
        if unsafe { bindings::xa_trylock(self.as_raw()) } {
            Some(Guard {
                xa: self,
                _not_send: PhantomData,
            })
        } else {
            None
        }
    }

    /// Locks the array for exclusive access.
    pub fn lock(&self) -> Guard<'_, T> {
        // SAFETY: `self.xa` is initialised (type invariant).
        unsafe { bindings::xa_lock(self.as_raw()) };
        Guard {
            xa: self,
            _not_send: PhantomData,
        }
    }
}

/// The lock of an [`XArray`], held until the guard is dropped.
///
/// # Invariants
///
/// The lock of `xa` is held by the current context from creation to drop.
#[must_use = "the lock unlocks immediately when the guard is unused"]
pub struct Guard<'a, T: ForeignOwnable> {
    xa: &'a XArray<T>,
    /// A spinlock must be released by the context that holds it.
    _not_send: PhantomData<*mut ()>,
}

impl<T: ForeignOwnable> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the lock of the initialised array is held by this context (type invariant).
        unsafe { bindings::xa_unlock(self.xa.as_raw()) };
    }
}

/// The error returned by [`Guard::store`]: the cause and the value that was not stored.
pub struct StoreError<T> {
    /// The error that occurred.
    pub error: Error,
    /// The value that was not stored.
    pub value: T,
}

impl<T> From<StoreError<T>> for Error {
    fn from(value: StoreError<T>) -> Self {
        value.error
    }
}

impl<T> core::fmt::Debug for StoreError<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StoreError")
            .field("error", &self.error)
            .finish()
    }
}

impl<'a, T: ForeignOwnable> Guard<'a, T> {
    /// Returns the entry at `index`, as the C `xa_load()`, or null.
    fn load(&self, index: usize) -> *mut c_void {
        // SAFETY: `self.xa.xa` is initialised (type invariant of `XArray`).
        unsafe { bindings::xa_load(self.xa.as_raw(), index) }
    }

    /// Borrows the entry at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<T::Borrowed<'_>> {
        let ptr = self.load(index);
        if ptr.is_null() {
            return None;
        }
        // SAFETY: `ptr` is an entry of the array, so it came from `T::into_foreign`; it is not
        // converted back while the lock is held, which the borrow of `self` makes last at least
        // as long as the borrowed value.
        Some(unsafe { T::borrow(ptr) })
    }

    /// Removes the entry at `index` and returns it, if there is one.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        // SAFETY: `self.xa.xa` is initialised and its lock is held (type invariants).
        let ptr = unsafe { bindings::__xa_erase(self.xa.as_raw(), index) };
        // SAFETY: `ptr` is null or an entry that was in the array (reservations read as null), so
        // it came from `T::into_foreign` and the array owned it; `&mut self` ends the borrows made
        // by `get`.
        unsafe { T::try_from_foreign(ptr) }
    }

    /// Stores `value` at `index` and returns the entry that was there, if any.
    ///
    /// May drop the lock to allocate memory with `gfp`, and take it again.
    ///
    /// On failure, the array is unchanged and the error holds `value`: [`ENOMEM`] if the memory
    /// could not be allocated, and [`EINVAL`] if `value`'s foreign pointer is one the XArray
    /// reserves for itself (null, or ending in binary `10`: pointers to objects aligned to at
    /// least 4 bytes never are).
    ///
    /// [`ENOMEM`]: crate::error::code::ENOMEM
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xarray::{AllocKind, XArray};
    ///
    /// let xa = KBox::pin_init(XArray::<KBox<u64>>::new(AllocKind::Plain), GFP_KERNEL)?;
    /// for i in 0..100 {
    ///     let value = KBox::new(i as u64, GFP_KERNEL)?;
    ///     // The lock is dropped while `store` allocates with `GFP_KERNEL`.
    ///     assert!(xa.lock().store(i * 1000, value, GFP_KERNEL)?.is_none());
    /// }
    /// let seven = KBox::new(7, GFP_KERNEL)?;
    /// let mut guard = xa.lock();
    /// assert_eq!(guard.get(99_000).copied(), Some(99));
    ///
    /// // Without memory for a new node, the value comes back.
    /// let err = guard.store(usize::MAX, seven, GFP_NOWAIT | __GFP_NOWARN);
    /// if let Err(e) = err {
    ///     assert_eq!(e.error, ENOMEM);
    ///     assert_eq!(*e.value, 7);
    ///     assert_eq!(guard.get(usize::MAX), None);
    /// }
    /// # Ok::<(), Error>(())
    /// ```
    pub fn store(
        &mut self,
        index: usize,
        value: T,
        gfp: alloc::Flags,
    ) -> Result<Option<T>, StoreError<T>> {
        let new = value.into_foreign().cast_mut();
        if new.is_null() || word::is_internal(new) {
            return Err(StoreError {
                // SAFETY: `new` was just returned by `T::into_foreign` and is converted back once.
                value: unsafe { T::from_foreign(new) },
                error: EINVAL,
            });
        }
        // SAFETY: `self.xa.xa` is initialised and its lock is held (type invariants).
        //
        // INVARIANT: `new` came from `T::into_foreign` and is neither null nor internal.
        let old = unsafe { bindings::__xa_store(self.xa.as_raw(), index, new, gfp.as_raw()) };
        let errno = word::err(old);
        if errno != 0 {
            return Err(StoreError {
                // SAFETY: the store failed, so the array did not take `new`, which came from
                // `T::into_foreign` and is converted back once.
                value: unsafe { T::from_foreign(new) },
                error: Error::from_errno(errno),
            });
        }
        // SAFETY: `old` is null or an entry the array owned and no longer holds (reservations
        // read as null); `&mut self` ends the borrows made by `get`.
        Ok(unsafe { T::try_from_foreign(old) })
    }
}

// SAFETY: the array owns its entries and has no thread-bound state, so it may move to another
// thread if its entries may.
unsafe impl<T: ForeignOwnable + Send> Send for XArray<T> {}

// SAFETY: all the array's interior mutability is serialised by its lock (or made safe for
// lock-free readers by RCU), so sharing it only lets other threads take or give entries, which
// needs `T: Send`.
unsafe impl<T: ForeignOwnable + Send> Sync for XArray<T> {}
