// SPDX-License-Identifier: GPL-2.0

//! XArray: an automatically resizing array of pointer-sized entries.
//!
//! [`XArray`] wraps a C `struct xarray` that holds *handles*: small integers ([`XaValue`]) or
//! pointers to objects whose lifetime is managed elsewhere ([`NonNull<T>`]). The array never
//! drops its entries; [`XArray::load`] and the search functions hand out copies of them.
//!
//! A range of indices can hold one entry ([`XArray::store_range`]). With
//! `CONFIG_XARRAY_MULTI` the range is kept as a few multi-index entries; without it, one entry is
//! stored at every index of the range, which costs time and memory proportional to its length.
//!
//! C header: [`include/linux/xarray.h`](srctree/include/linux/xarray.h)

use crate::{
    alloc::Flags,
    bindings,
    error::{code::EINVAL, to_result, Result},
    ffi::c_void,
    init::PinInit,
    pin_init,
    types::Opaque,
};
use core::{
    marker::PhantomData,
    ops::BitOr,
    pin::Pin,
    ptr::{self, NonNull},
};
use macros::{pin_data, pinned_drop};

/// A type whose values can be stored in an [`XArray`].
///
/// Values are converted to a pointer-sized word with [`XaEntry::into_raw`] when they are stored
/// and converted back with [`XaEntry::from_raw`] when they are read. The array does not own the
/// values: it never drops them, and readers get copies (see [`XArray::load`]).
///
/// # Safety
///
/// Implementers must ensure that:
///
/// - [`XaEntry::into_raw`] never returns a null pointer (storing null would erase the index);
/// - calling [`XaEntry::from_raw`] on a pointer returned by [`XaEntry::into_raw`] gives back the
///   value that was converted, and, if `Self: Copy`, it may be called any number of times on the
///   same pointer, each call making a copy;
/// - values may be moved to and shared with other threads: an [`XArray`] is [`Send`] and
///   [`Sync`], so a value stored by one thread may be read by another one. Raw pointers satisfy
///   this, because dereferencing them is itself `unsafe`.
pub unsafe trait XaEntry: Sized {
    /// Converts the value into the word stored in the array.
    fn into_raw(self) -> *mut c_void;

    /// Converts a word read from the array back into a value.
    ///
    /// # Safety
    ///
    /// `ptr` must have been returned by [`XaEntry::into_raw`] on a value of this type. Unless
    /// `Self: Copy`, this must be called at most once for each call to [`XaEntry::into_raw`].
    unsafe fn from_raw(ptr: *mut c_void) -> Self;
}

/// An integer stored in an [`XArray`] as a value entry (`xa_mk_value`).
///
/// # Invariants
///
/// The value is at most [`XaValue::MAX`] (`LONG_MAX`), so that it fits in a value entry.
///
/// # Examples
///
/// ```
/// use kernel::xarray::XaValue;
///
/// assert_eq!(XaValue::new(0)?.get(), 0);
/// assert_eq!(XaValue::new(XaValue::MAX)?.get(), usize::MAX >> 1);
/// assert_eq!(XaValue::new(XaValue::MAX + 1), Err(EINVAL));
/// assert_eq!(XaValue::new(usize::MAX), Err(EINVAL));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XaValue(usize);

impl XaValue {
    /// The largest integer a value entry can hold (`LONG_MAX`).
    pub const MAX: usize = isize::MAX as usize;

    /// Creates a value entry holding `v`.
    ///
    /// Returns [`EINVAL`] if `v` is larger than [`XaValue::MAX`].
    pub fn new(v: usize) -> Result<Self> {
        if v > Self::MAX {
            return Err(EINVAL);
        }
        // INVARIANT: `v <= XaValue::MAX` was checked just above.
        Ok(Self(v))
    }

    /// Returns the integer held by this value entry.
    pub fn get(self) -> usize {
        self.0
    }
}

// SAFETY: `xa_mk_value` sets the lowest bit of the word, so it is never null, and `xa_to_value`
// undoes it without loss because the type invariant keeps the top bit clear. Integers are `Copy`
// and `Send`.
unsafe impl XaEntry for XaValue {
    fn into_raw(self) -> *mut c_void {
        // SAFETY: `xa_mk_value` only computes the encoded word; it accepts any `unsigned long`
        // that is at most `LONG_MAX`, which the type invariant guarantees.
        unsafe { bindings::xa_mk_value(self.0) }
    }

    unsafe fn from_raw(ptr: *mut c_void) -> Self {
        // SAFETY: `xa_to_value` only decodes the word.
        let v = unsafe { bindings::xa_to_value(ptr) };
        // INVARIANT: the caller guarantees that `ptr` was produced by `into_raw`, so decoding it
        // gives back a value that satisfied the invariant.
        Self(v)
    }
}

/// Pointers are stored as they are. The array does not own what they point to: it is up to the
/// user to keep the objects alive while they are in the array.
///
/// The XArray reserves words whose two low bits are `10` for its internal entries, so the store
/// methods reject such pointers with [`EINVAL`]; pointers to objects aligned to at least 4 bytes,
/// as kernel objects are, never are.
// SAFETY: `NonNull` is never null and is returned unchanged by `from_raw`; copies of a raw pointer
// are just copies of an address. Raw pointers may be sent to other threads since dereferencing
// them requires `unsafe` code that has to justify it.
unsafe impl<T> XaEntry for NonNull<T> {
    fn into_raw(self) -> *mut c_void {
        self.as_ptr().cast()
    }

    unsafe fn from_raw(ptr: *mut c_void) -> Self {
        // SAFETY: the caller guarantees that `ptr` came from `into_raw`, i.e. from a `NonNull`.
        unsafe { NonNull::new_unchecked(ptr.cast()) }
    }
}

/// The kind of an [`XArray`]: the C `XA_FLAGS_*` flags given to `xa_init_flags`.
///
/// Flags can be combined with `|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocFlags(bindings::gfp_t);

impl AllocFlags {
    /// A plain array (flags `0`, as `xa_init`).
    pub const NONE: Self = Self(0);

    /// `XA_FLAGS_ALLOC`: the array tracks free indices (for `xa_alloc`), starting from 0.
    pub const ALLOC: Self = Self(bindings::XA_FLAGS_ALLOC);

    /// `XA_FLAGS_ALLOC1`: like [`AllocFlags::ALLOC`], but index 0 is never handed out.
    pub const ALLOC1: Self = Self(bindings::XA_FLAGS_ALLOC1);

    /// `XA_FLAGS_ACCOUNT`: the array's internal nodes are charged to the memory cgroup of the
    /// task that allocates them.
    pub const ACCOUNT: Self = Self(bindings::XA_FLAGS_ACCOUNT);

    /// Returns the raw `XA_FLAGS_*` value.
    pub fn as_raw(self) -> bindings::gfp_t {
        self.0
    }
}

impl BitOr for AllocFlags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// An array of [`XaEntry`] handles indexed by `usize`, backed by a C `struct xarray`.
///
/// All operations take `&self`: the C XArray serializes writers with its internal spinlock and
/// lets readers run under RCU, so an [`XArray`] may be shared between threads. Operations that
/// store entries allocate the array's internal nodes with the given [`Flags`]; they may sleep if
/// the flags allow it.
///
/// The array never drops its entries: storing over an entry, erasing it or dropping the array
/// simply forgets it. The methods that read entries are only available for `T: Copy` and return
/// copies.
///
/// # Invariants
///
/// - `xa` holds a `struct xarray` initialised by `xa_init_flags`, destroyed only on drop.
/// - Every entry present in the array was returned by [`XaEntry::into_raw`] for `T`, and is
///   neither null nor an XArray internal entry, except the reserved (zero) entries made by
///   [`XArray::prepare_store`], which loads and searches skip.
///
/// # Examples
///
/// ```
/// use kernel::xarray::{AllocFlags, XArray, XaValue};
///
/// let xa = KBox::pin_init(XArray::<XaValue>::new(AllocFlags::NONE), GFP_KERNEL)?;
/// assert!(xa.is_empty());
/// assert_eq!(xa.load(3), None);
///
/// xa.store(3, XaValue::new(30)?, GFP_KERNEL)?;
/// xa.store(7, XaValue::new(70)?, GFP_KERNEL)?;
/// assert!(!xa.is_empty());
/// assert_eq!(xa.load(3), Some(XaValue::new(30)?));
/// assert_eq!(xa.load(7), Some(XaValue::new(70)?));
/// assert_eq!(xa.load(4), None);
///
/// // Storing over an entry replaces it.
/// xa.store(3, XaValue::new(31)?, GFP_KERNEL)?;
/// assert_eq!(xa.load(3), Some(XaValue::new(31)?));
///
/// // The largest index and the largest value work too.
/// xa.store(usize::MAX, XaValue::new(XaValue::MAX)?, GFP_KERNEL)?;
/// assert_eq!(xa.load(usize::MAX).map(XaValue::get), Some(XaValue::MAX));
///
/// xa.erase(3);
/// assert_eq!(xa.load(3), None);
/// xa.erase(3);
/// xa.erase(7);
/// xa.erase(usize::MAX);
/// assert!(xa.is_empty());
/// # Ok::<(), Error>(())
/// ```
///
/// Pointers are stored as they are; the array does not keep the objects alive:
///
/// ```
/// use core::ptr::NonNull;
/// use kernel::xarray::{AllocFlags, XArray};
///
/// let mut objects = KVec::new();
/// for v in [10u64, 11, 12, 13] {
///     objects.push(v, GFP_KERNEL)?;
/// }
/// let xa = KBox::pin_init(XArray::<NonNull<u64>>::new(AllocFlags::ACCOUNT), GFP_KERNEL)?;
/// for (i, o) in objects.iter_mut().enumerate() {
///     xa.store(i * 10, NonNull::from(o), GFP_KERNEL_ACCOUNT)?;
/// }
/// assert_eq!(xa.load(20), Some(NonNull::from(&objects[2])));
/// assert_eq!(xa.find(21, usize::MAX), Some((30, NonNull::from(&objects[3]))));
/// // Dropping the array frees its nodes only: the objects stay as they were.
/// drop(xa);
/// assert_eq!(&objects[..], &[10, 11, 12, 13]);
/// # Ok::<(), Error>(())
/// ```
#[pin_data(PinnedDrop)]
#[repr(transparent)]
pub struct XArray<T: XaEntry> {
    #[pin]
    xa: Opaque<bindings::xarray>,
    _entries: PhantomData<T>,
}

// SAFETY: The C XArray synchronizes all accesses internally (its spinlock for writers, RCU for
// readers), and `XaEntry` implementers guarantee that entries may move between threads.
unsafe impl<T: XaEntry> Send for XArray<T> {}

// SAFETY: All methods that take `&self` are safe to call concurrently, see the `Send` impl.
unsafe impl<T: XaEntry> Sync for XArray<T> {}

impl<T: XaEntry> XArray<T> {
    /// Creates an initializer for an empty array of the given kind.
    pub fn new(flags: AllocFlags) -> impl PinInit<Self> {
        pin_init!(Self {
            // INVARIANT: `xa_init_flags` initialises the `struct xarray`.
            xa <- Opaque::ffi_init(move |xa| {
                // SAFETY: `xa` is valid for writes; `xa_init_flags` initialises it without
                // reading it first.
                unsafe { bindings::xa_init_flags(xa, flags.as_raw()) }
            }),
            _entries: PhantomData,
        })
    }

    /// Borrows a `struct xarray` that lives in a C structure.
    ///
    /// # Safety
    ///
    /// `xa` must point to a `struct xarray` initialised by `xa_init_flags` that stays valid and is
    /// not destroyed for `'a`, and whose entries all satisfy the type invariants for `T`.
    pub unsafe fn from_raw<'a>(xa: *mut bindings::xarray) -> &'a Self {
        // SAFETY: `Self` is `repr(transparent)` over `Opaque<bindings::xarray>`, which has the
        // layout of `struct xarray`; the caller guarantees the invariants for `'a`.
        unsafe { &*xa.cast::<Self>() }
    }

    fn as_raw(&self) -> *mut bindings::xarray {
        self.xa.get()
    }

    /// Converts `entry` to the word to store, checking that the XArray can hold it.
    fn entry_to_raw(entry: T) -> Result<*mut c_void> {
        let ptr = entry.into_raw();
        if ptr.is_null() {
            return Err(EINVAL);
        }
        // SAFETY: `xa_is_internal` only looks at the bits of the word.
        if unsafe { bindings::xa_is_internal(ptr) } {
            // Words ending in binary 10 are reserved by the XArray: pointers to objects aligned
            // to at least 4 bytes never are. Nothing was stored, so give the value back.
            // SAFETY: `ptr` was just returned by `into_raw` and is converted back only once.
            drop(unsafe { T::from_raw(ptr) });
            return Err(EINVAL);
        }
        Ok(ptr)
    }

    /// Converts the return value of a C store function into a [`Result`].
    fn check(ret: *mut c_void) -> Result {
        // SAFETY: `xa_err` only looks at the bits of the word.
        to_result(unsafe { bindings::xa_err(ret) })
    }

    /// Stores `entry` at `index`, replacing (and forgetting) the entry that was there.
    ///
    /// Returns [`ENOMEM`] if the array could not allocate memory with `gfp`, or [`EINVAL`] if
    /// `entry` cannot be stored in an XArray: pointers must be at least 4-byte aligned, which
    /// pointers to kernel objects always are. On failure, `entry` is dropped and the array is
    /// unchanged.
    ///
    /// [`ENOMEM`]: crate::error::code::ENOMEM
    ///
    /// # Examples
    ///
    /// ```
    /// use core::ptr::NonNull;
    /// use kernel::xarray::{AllocFlags, XArray};
    ///
    /// let xa = KBox::pin_init(XArray::<NonNull<u8>>::new(AllocFlags::NONE), GFP_KERNEL)?;
    /// let bytes = [0u8; 8];
    /// let p = |i: usize| NonNull::from(&bytes[i]);
    ///
    /// // Words ending in binary 10 are XArray internal entries and cannot be stored ...
    /// let is_internal = |q: NonNull<u8>| (q.as_ptr() as usize) & 3 == 2;
    /// let at2 = (0..4).map(p).find(|&q| is_internal(q)).ok_or(EINVAL)?;
    /// assert_eq!(xa.store(1, at2, GFP_KERNEL), Err(EINVAL));
    /// assert_eq!(xa.load(1), None);
    /// assert!(xa.is_empty());
    ///
    /// // ... any other pointer comes back unchanged, odd ones too.
    /// for i in 0..8 {
    ///     if !is_internal(p(i)) {
    ///         xa.store(i, p(i), GFP_KERNEL)?;
    ///         assert_eq!(xa.load(i), Some(p(i)));
    ///     }
    /// }
    /// assert_eq!(xa.iter().count(), 6);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn store(&self, index: usize, entry: T, gfp: Flags) -> Result {
        let ptr = Self::entry_to_raw(entry)?;
        // SAFETY: By the type invariants `self.xa` is initialised. `ptr` is neither null nor an
        // internal entry (checked by `entry_to_raw`), so storing it keeps the invariant.
        // `xa_store` takes the array's lock itself.
        let old = unsafe { bindings::xa_store(self.as_raw(), index, ptr, gfp.as_raw()) };
        let ret = Self::check(old);
        if ret.is_err() {
            // SAFETY: The store failed, so `ptr` is not in the array and this is the only
            // conversion back.
            drop(unsafe { T::from_raw(ptr) });
        }
        ret
    }

    /// Removes the entry at `index`, if any, and forgets it.
    pub fn erase(&self, index: usize) {
        // SAFETY: By the type invariants `self.xa` is initialised. `xa_erase` takes the array's
        // lock itself. The removed entry is a handle the array does not own, so it is dropped
        // on the floor.
        unsafe { bindings::xa_erase(self.as_raw(), index) };
    }

    /// Returns whether the array holds no entry.
    pub fn is_empty(&self) -> bool {
        // SAFETY: By the type invariants `self.xa` is initialised. `xa_empty` only reads the
        // array's head pointer.
        unsafe { bindings::xa_empty(self.as_raw()) }
    }
}

impl<T: XaEntry + Copy> XArray<T> {
    /// Converts a word read from the array into an entry, `None` for null.
    fn entry_from_raw(ptr: *mut c_void) -> Option<T> {
        if ptr.is_null() {
            None
        } else {
            // SAFETY: By the type invariants, non-null words in the array come from
            // `T::into_raw`; `T: Copy`, so making another copy is allowed.
            Some(unsafe { T::from_raw(ptr) })
        }
    }

    /// Returns a copy of the entry at `index`, or `None` if there is none.
    pub fn load(&self, index: usize) -> Option<T> {
        // SAFETY: By the type invariants `self.xa` is initialised. `xa_load` takes the RCU read
        // lock itself.
        let ptr = unsafe { bindings::xa_load(self.as_raw(), index) };
        Self::entry_from_raw(ptr)
    }

    /// Stores `entry` at every index of `first..=last`, or erases the range if `entry` is `None`.
    ///
    /// Loads from any index in the range then return `entry`. Entries that were in the range are
    /// forgotten. With `CONFIG_XARRAY_MULTI` this is `xa_store_range`, which keeps the range as a
    /// few multi-index entries; without it the entry is stored at each index in turn, which is
    /// only reasonable for short ranges (erasing visits only the indices that hold an entry).
    ///
    /// As in C, with `CONFIG_XARRAY_MULTI` storing to or erasing a part of a multi-index entry
    /// affects all of its indices: store and erase ranges as a whole, as they were stored.
    ///
    /// Returns [`EINVAL`] if `first > last` or if `entry` cannot be stored (see
    /// [`XArray::store`]), or [`ENOMEM`] if the array could not allocate memory with `gfp`. On
    /// failure part of the range may already hold `entry`; erase the range to undo that.
    ///
    /// [`ENOMEM`]: crate::error::code::ENOMEM
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xarray::{AllocFlags, XArray, XaValue};
    ///
    /// let xa = KBox::pin_init(XArray::<XaValue>::new(AllocFlags::NONE), GFP_KERNEL)?;
    /// let v = XaValue::new(42)?;
    /// xa.store(4, XaValue::new(4)?, GFP_KERNEL)?;
    /// xa.store(101, XaValue::new(101)?, GFP_KERNEL)?;
    /// xa.store_range(5, 100, Some(v), GFP_KERNEL)?;
    ///
    /// // Loads at the edges of the range and inside it.
    /// assert_eq!(xa.load(4), Some(XaValue::new(4)?));
    /// assert_eq!(xa.load(5), Some(v));
    /// assert_eq!(xa.load(63), Some(v));
    /// assert_eq!(xa.load(64), Some(v));
    /// assert_eq!(xa.load(100), Some(v));
    /// assert_eq!(xa.load(101), Some(XaValue::new(101)?));
    ///
    /// // Searches that start before, inside and after the range.
    /// assert_eq!(xa.find(0, 3), None);
    /// assert_eq!(xa.find(0, 1000), Some((4, XaValue::new(4)?)));
    /// assert_eq!(xa.find(5, 1000), Some((5, v)));
    /// assert_eq!(xa.find(10, 1000), Some((10, v)));
    /// assert_eq!(xa.find(100, 100), Some((100, v)));
    /// assert_eq!(xa.find(102, usize::MAX), None);
    ///
    /// // Erasing a range leaves its neighbours alone.
    /// xa.store_range(5, 100, None, GFP_KERNEL)?;
    /// assert_eq!(xa.load(5), None);
    /// assert_eq!(xa.load(50), None);
    /// assert_eq!(xa.load(100), None);
    /// assert_eq!(xa.find(5, 100), None);
    /// assert_eq!(xa.load(4), Some(XaValue::new(4)?));
    /// assert_eq!(xa.load(101), Some(XaValue::new(101)?));
    ///
    /// // An empty range is rejected.
    /// assert_eq!(xa.store_range(9, 8, Some(v), GFP_KERNEL), Err(EINVAL));
    ///
    /// // Ranges may end at the last index.
    /// xa.store_range(usize::MAX - 10, usize::MAX, Some(v), GFP_KERNEL)?;
    /// assert_eq!(xa.load(usize::MAX - 11), None);
    /// assert_eq!(xa.load(usize::MAX - 10), Some(v));
    /// assert_eq!(xa.load(usize::MAX), Some(v));
    /// assert_eq!(xa.find(102, usize::MAX), Some((usize::MAX - 10, v)));
    ///
    /// xa.store_range(0, usize::MAX, None, GFP_KERNEL)?;
    /// assert!(xa.is_empty());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn store_range(&self, first: usize, last: usize, entry: Option<T>, gfp: Flags) -> Result {
        if first > last {
            return Err(EINVAL);
        }
        let ptr = match entry {
            Some(entry) => Self::entry_to_raw(entry)?,
            None => ptr::null_mut(),
        };
        self.store_range_raw(first, last, ptr, gfp)
    }

    /// Stores `ptr` at `index`, or erases the index if `ptr` is null.
    fn store_one_raw(&self, index: usize, ptr: *mut c_void, gfp: Flags) -> Result {
        if ptr.is_null() {
            self.erase(index);
            return Ok(());
        }
        // SAFETY: By the type invariants `self.xa` is initialised. `ptr` was checked by
        // `entry_to_raw`, and `T: Copy`, so it may be stored at several indices. `xa_store` takes
        // the array's lock itself.
        Self::check(unsafe { bindings::xa_store(self.as_raw(), index, ptr, gfp.as_raw()) })
    }

    #[cfg(CONFIG_XARRAY_MULTI)]
    fn store_range_raw(&self, first: usize, last: usize, ptr: *mut c_void, gfp: Flags) -> Result {
        // `xa_store_range` steps through the range by adding the size of each piece to its start,
        // which wraps around (and never ends) when the range includes `ULONG_MAX`: keep that
        // index apart.
        let below_max = last.min(usize::MAX - 1);
        if first <= below_max {
            // SAFETY: By the type invariants `self.xa` is initialised. `ptr` is null (erase) or
            // an entry checked by `entry_to_raw`, which may be stored at several indices because
            // `T: Copy`. `xa_store_range` takes the array's lock itself.
            Self::check(unsafe {
                bindings::xa_store_range(self.as_raw(), first, below_max, ptr, gfp.as_raw())
            })?;
        }
        if last == usize::MAX {
            self.store_one_raw(last, ptr, gfp)?;
        }
        Ok(())
    }

    #[cfg(not(CONFIG_XARRAY_MULTI))]
    fn store_range_raw(&self, first: usize, last: usize, ptr: *mut c_void, gfp: Flags) -> Result {
        if ptr.is_null() {
            // Visit only the indices that hold an entry: the range may be huge.
            let mut next = first;
            while let Some((index, _)) = self.find(next, last) {
                self.erase(index);
                if index >= last {
                    break;
                }
                next = index + 1;
            }
            return Ok(());
        }
        for index in first..=last {
            self.store_one_raw(index, ptr, gfp)?;
        }
        Ok(())
    }

    /// Returns the first entry at an index in `first..=last`, with that index.
    ///
    /// If the entry spans several indices (see [`XArray::store_range`]) and starts before
    /// `first`, the index returned is `first`. Returns `None` if there is no entry in the range
    /// (in particular if `first > last`).
    pub fn find(&self, first: usize, last: usize) -> Option<(usize, T)> {
        let mut index = first;
        // SAFETY: By the type invariants `self.xa` is initialised; `index` is valid for reads and
        // writes. `XA_PRESENT` matches any entry. `xa_find` takes the RCU read lock itself.
        let ptr =
            unsafe { bindings::xa_find(self.as_raw(), &mut index, last, bindings::XA_PRESENT) };
        Self::entry_from_raw(ptr).map(|entry| (index, entry))
    }

    /// Returns an iterator over the entries at indices in `first..=last`, in index order.
    ///
    /// This is `xa_for_each_range`: the first entry is found with `xa_find`, the next ones with
    /// `xa_find_after`. An entry that spans several indices is returned once, at its first index
    /// in the range. A range stored with [`XArray::store_range`] may be made of several such
    /// entries (or, without `CONFIG_XARRAY_MULTI`, of one entry per index), so the same value can
    /// come up several times.
    ///
    /// The array is not locked between steps: entries stored or erased meanwhile may or may not
    /// be seen.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xarray::{AllocFlags, XArray, XaValue};
    ///
    /// let xa = KBox::pin_init(XArray::<XaValue>::new(AllocFlags::NONE), GFP_KERNEL)?;
    /// let v = XaValue::new(5)?;
    /// xa.store(2, XaValue::new(2)?, GFP_KERNEL)?;
    /// xa.store_range(5, 100, Some(v), GFP_KERNEL)?;
    /// xa.store(200, XaValue::new(200)?, GFP_KERNEL)?;
    ///
    /// let mut count = 0;
    /// let mut prev = None;
    /// for (index, entry) in xa.iter_range(5, 100) {
    ///     assert_eq!(entry, v);
    ///     assert!((5..=100).contains(&index));
    ///     // Indices come in increasing order.
    ///     assert!(prev.map_or(true, |p| p < index));
    ///     prev = Some(index);
    ///     count += 1;
    /// }
    /// if cfg!(CONFIG_XARRAY_MULTI) {
    ///     // Two multi-index entries: 5..=63 and 64..=100.
    ///     assert_eq!(count, 2);
    /// } else {
    ///     assert_eq!(count, 96);
    /// }
    ///
    /// // The first entry comes at the start of the range, even inside a multi-index entry.
    /// assert_eq!(xa.iter_range(10, 100).next(), Some((10, v)));
    /// assert_eq!(xa.iter_range(0, 4).next(), Some((2, XaValue::new(2)?)));
    /// assert_eq!(xa.iter_range(101, 199).next(), None);
    /// assert_eq!(xa.iter_range(100, 100).count(), 1);
    ///
    /// let mut all = xa.iter_range(0, usize::MAX);
    /// assert_eq!(all.next(), Some((2, XaValue::new(2)?)));
    /// assert_eq!(all.next(), Some((5, v)));
    /// assert_eq!(all.last(), Some((200, XaValue::new(200)?)));
    ///
    /// // The last index can hold an entry too.
    /// xa.store(usize::MAX, v, GFP_KERNEL)?;
    /// assert_eq!(xa.iter_range(201, usize::MAX).next(), Some((usize::MAX, v)));
    /// assert_eq!(xa.iter_range(200, usize::MAX).count(), 2);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn iter_range(&self, first: usize, last: usize) -> impl Iterator<Item = (usize, T)> + '_ {
        RangeIter {
            xa: self,
            first,
            last,
            prev: None,
            done: false,
        }
    }

    /// Returns an iterator over all entries, in index order (`xa_for_each`).
    ///
    /// This is [`XArray::iter_range`] over all indices.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xarray::{AllocFlags, XArray, XaValue};
    ///
    /// let xa = KBox::pin_init(XArray::<XaValue>::new(AllocFlags::NONE), GFP_KERNEL)?;
    /// assert_eq!(xa.iter().next(), None);
    /// for i in [0, 1, 1000, usize::MAX] {
    ///     xa.store(i, XaValue::new(i / 2)?, GFP_KERNEL)?;
    /// }
    /// let mut sum = 0;
    /// for (index, entry) in xa.iter() {
    ///     assert_eq!(entry.get(), index / 2);
    ///     sum += entry.get();
    /// }
    /// assert_eq!(sum, 500 + usize::MAX / 2);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (usize, T)> + '_ {
        self.iter_range(0, usize::MAX)
    }
}

/// What covers an index of an [`XArray`], as returned by [`XArray::lookup`].
///
/// A multi-index entry of order `order` covers the `1 << order` indices from `first`, which is a
/// multiple of its size.
#[cfg(CONFIG_XARRAY_MULTI)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot<T> {
    /// No entry covers the index.
    Empty,
    /// A reserved entry made by [`XArray::prepare_store`] covers the index; loads return `None`.
    Reserved {
        /// The first index of the entry.
        first: usize,
        /// The order of the entry.
        order: u32,
    },
    /// `entry` covers the index.
    Entry {
        /// The first index of the entry.
        first: usize,
        /// The order of the entry.
        order: u32,
        /// The entry.
        entry: T,
    },
}

/// `xa_lock()` held on an array, released on drop.
#[cfg(CONFIG_XARRAY_MULTI)]
struct XaLockGuard(*mut bindings::xarray);

#[cfg(CONFIG_XARRAY_MULTI)]
impl XaLockGuard {
    /// Takes the lock of `xa`.
    ///
    /// # Safety
    ///
    /// `xa` must point to an initialised `struct xarray` that outlives the guard.
    unsafe fn new(xa: *mut bindings::xarray) -> Self {
        // SAFETY: the caller guarantees that `xa` is initialised.
        unsafe { bindings::xa_lock(xa) };
        Self(xa)
    }
}

#[cfg(CONFIG_XARRAY_MULTI)]
impl Drop for XaLockGuard {
    fn drop(&mut self) {
        // SAFETY: the lock was taken in `new` and `self.0` is still valid.
        unsafe { bindings::xa_unlock(self.0) };
    }
}

/// Lock-free lookups in an [`XArray`] under one RCU read-side critical section, from
/// [`XArray::reader`].
///
/// # Invariants
///
/// The RCU read lock is held from creation to drop, in the context of the creator.
#[cfg(CONFIG_XARRAY_MULTI)]
pub struct XaReader<'a, T: XaEntry + Copy> {
    xa: &'a XArray<T>,
    _not_send: PhantomData<*mut ()>,
}

#[cfg(CONFIG_XARRAY_MULTI)]
impl<T: XaEntry + Copy> XaReader<'_, T> {
    /// Returns what covers `index`: nothing, a reserved entry or an entry, with its extent.
    ///
    /// If the array changes meanwhile, the result is what covered `index` at some point during
    /// the call.
    pub fn lookup(&self, index: usize) -> Slot<T> {
        loop {
            let mut xas = self.xa.state(index, 0);
            // SAFETY: `xas` is a state of the array and the RCU read lock is held (type
            // invariant).
            let entry = unsafe { bindings::xas_load(&mut xas) };
            if entry.is_null() {
                return Slot::Empty;
            }
            // SAFETY: `xa_is_retry` only looks at the bits of the word.
            if unsafe { bindings::xa_is_retry(entry) } {
                // A node is being split or freed under us: walk again.
                continue;
            }
            // SAFETY: `xas_load` found an entry, so `xas` is at it; the node is kept alive by
            // the RCU read lock.
            let order = unsafe { bindings::xas_get_order(&mut xas) } as u32;
            let first = index & !order_mask(order);
            // SAFETY: `xa_is_zero` only looks at the bits of the word.
            if unsafe { bindings::xa_is_zero(entry) } {
                return Slot::Reserved { first, order };
            }
            // SAFETY: `xas_load` returns entries, never siblings or nodes, and retry entries were
            // handled above; by the type invariants of `XArray` non-zero entries come from
            // `T::into_raw`, and `T: Copy`.
            let entry = unsafe { T::from_raw(entry) };
            return Slot::Entry {
                first,
                order,
                entry,
            };
        }
    }
}

#[cfg(CONFIG_XARRAY_MULTI)]
impl<T: XaEntry + Copy> Drop for XaReader<'_, T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the RCU read lock is held, taken by this context.
        unsafe { bindings::rcu_read_unlock() };
    }
}

/// Returns `2^order - 1`, the offset of the last index of an entry of order `order`.
#[cfg(CONFIG_XARRAY_MULTI)]
fn order_mask(order: u32) -> usize {
    (1usize << order) - 1
}

/// Multi-index entries, entry by entry.
///
/// These methods let a user keep a range-to-value map in the array as aligned power-of-two
/// entries, and change it without transient states visible to lock-free readers: an index keeps
/// its value while the entries around it are split ([`XArray::split_to`]) or merged (a store
/// over smaller entries), and memory is allocated ahead of the stores that change values
/// ([`XArray::prepare_store`]), so that those stores cannot fail.
///
/// # Examples
///
/// ```
/// use kernel::xarray::{AllocFlags, Slot, XArray, XaValue};
///
/// let xa = KBox::pin_init(XArray::<XaValue>::new(AllocFlags::NONE), GFP_KERNEL)?;
/// let (a, b) = (XaValue::new(1)?, XaValue::new(2)?);
///
/// // One entry for 2^30 indices.
/// xa.prepare_store(1 << 30, 30, GFP_KERNEL)?;
/// xa.store_block(1 << 30, 30, Some(a), GFP_KERNEL)?;
/// let whole = Slot::Entry { first: 1 << 30, order: 30, entry: a };
/// assert_eq!(xa.lookup((1 << 30) + 12345), whole);
/// assert_eq!(xa.lookup((1 << 30) - 1), Slot::Empty);
///
/// // Change one index inside it: split the entry down to that index first.
/// xa.split_to((1 << 30) + 5, 0, GFP_KERNEL)?;
/// assert_eq!(xa.load((1 << 30) + 12345), Some(a));
/// assert_eq!(xa.prepare_store((1 << 30) + 5, 0, GFP_KERNEL)?, None);
/// xa.store_block((1 << 30) + 5, 0, Some(b), GFP_KERNEL)?;
/// assert_eq!(xa.load((1 << 30) + 4), Some(a));
/// assert_eq!(xa.load((1 << 30) + 5), Some(b));
/// assert_eq!(xa.load((1 << 30) + 6), Some(a));
///
/// // Storing the whole range again merges the pieces back into one entry.
/// xa.store_block(1 << 30, 30, Some(a), GFP_KERNEL)?;
/// assert_eq!(xa.lookup((1 << 30) + 5), whole);
///
/// // A reservation reads as empty and can be released.
/// assert_eq!(xa.prepare_store(64, 6, GFP_KERNEL)?, Some((64, 6)));
/// assert_eq!(xa.lookup(100), Slot::Reserved { first: 64, order: 6 });
/// assert_eq!(xa.load(100), None);
/// assert_eq!(xa.find(0, 1000), None);
/// xa.release_block(64, 6);
/// assert_eq!(xa.lookup(100), Slot::Empty);
///
/// xa.store_block(1 << 30, 30, None, GFP_KERNEL)?;
/// assert!(xa.is_empty());
/// # Ok::<(), Error>(())
/// ```
#[cfg(CONFIG_XARRAY_MULTI)]
impl<T: XaEntry + Copy> XArray<T> {
    /// Returns an operation state (`XA_STATE_ORDER`) for the entry of order `order` at `index`.
    fn state(&self, index: usize, order: u32) -> bindings::xa_state {
        let mut xas = bindings::xa_state {
            xa: self.as_raw(),
            xa_index: index,
            xa_shift: 0,
            xa_sibs: 0,
            xa_offset: 0,
            xa_pad: 0,
            xa_node: ptr::null_mut(),
            xa_alloc: ptr::null_mut(),
            xa_update: None,
            xa_lru: ptr::null_mut(),
        };
        // SAFETY: `xas_set_order` only writes the fields of `xas`; it sets `xa_node` to
        // `XAS_RESTART`, as `XA_STATE_ORDER` does.
        unsafe { bindings::xas_set_order(&mut xas, index, order) };
        xas
    }

    /// Takes the array's lock.
    fn lock(&self) -> XaLockGuard {
        // SAFETY: by the type invariants `self.xa` is initialised, and the guard does not outlive
        // the borrow of `self` it is used under.
        unsafe { XaLockGuard::new(self.as_raw()) }
    }

    /// Runs `op` under the array's lock, then, if it ran out of memory, allocates with `gfp` and
    /// runs it again (the `xas_nomem()` loop).
    fn locked<R>(
        &self,
        xas: &mut bindings::xa_state,
        gfp: Flags,
        mut op: impl FnMut(&mut bindings::xa_state) -> R,
    ) -> Result<R> {
        loop {
            let ret = {
                let _guard = self.lock();
                op(xas)
            };
            // SAFETY: `xas` is a valid state of this array and the lock is not held. If `op` ran
            // out of memory, `xas_nomem` allocates a node (it may sleep if `gfp` allows) and
            // returns true to retry; otherwise it frees any spare node and returns false.
            if !unsafe { bindings::xas_nomem(xas, gfp.as_raw()) } {
                // SAFETY: `xas_error` only reads `xas`.
                return to_result(unsafe { bindings::xas_error(xas) }).map(|()| ret);
            }
        }
    }

    /// Returns what covers `index`: nothing, a reserved entry or an entry, with its extent.
    ///
    /// This is a lock-free (RCU) lookup: if the array changes meanwhile, the result is what
    /// covered `index` at some point during the call. To look up several indices, use one
    /// [`XArray::reader`].
    pub fn lookup(&self, index: usize) -> Slot<T> {
        self.reader().lookup(index)
    }

    /// Returns a reader that looks entries up under one RCU read-side critical section, which
    /// lasts until it is dropped; it must not sleep meanwhile.
    pub fn reader(&self) -> XaReader<'_, T> {
        // SAFETY: taking the RCU read lock has no precondition; `XaReader` releases it on drop,
        // and is not `Send`, so in the same context.
        unsafe { bindings::rcu_read_lock() };
        XaReader {
            xa: self,
            _not_send: PhantomData,
        }
    }

    /// Splits the entry that covers `index`, if it is larger than order `order`, until the
    /// entry covering `index` has order `order`. Every index keeps its value.
    ///
    /// Returns [`ENOMEM`] if the new nodes cannot be allocated with `gfp`; some of the levels may
    /// then be split already, but all indices still read the same values, and storing the
    /// original entry again merges them back without allocating.
    ///
    /// [`ENOMEM`]: crate::error::code::ENOMEM
    pub fn split_to(&self, index: usize, order: u32, gfp: Flags) -> Result {
        loop {
            let mut xas = self.state(index, order);
            let (entry, cur, shift) = {
                let _guard = self.lock();
                // SAFETY: `xas` is a state of this array and its lock is held.
                let entry = unsafe { bindings::xas_load(&mut xas) };
                // SAFETY: `xa_is_internal` only looks at the bits of the word.
                if entry.is_null() || unsafe { bindings::xa_is_internal(entry) } {
                    // Nothing, smaller entries (a node) or a reservation: nothing to split.
                    return Ok(());
                }
                // SAFETY: `xas` is at the entry and the lock is held.
                let cur = unsafe { bindings::xas_get_order(&mut xas) } as u32;
                if cur <= order {
                    return Ok(());
                }
                // SAFETY: an entry of order > 0 lives in a node, which `xas_load` left in
                // `xa_node`; nodes are only freed after an RCU grace period and we hold the lock.
                let shift = u32::from(unsafe { (*xas.xa_node).shift });
                (entry, cur, shift)
            };
            // Split one level at a time: `xas_split_alloc` only splits an entry into entries of
            // its own node or of the level just below, the latter with one new node for each slot
            // of the entry. So an entry of several slots is first split into one-slot entries
            // within its node, which needs no memory, and only the one covering `index` is split
            // further.
            let step = if order >= shift {
                order
            } else if cur > shift {
                shift
            } else {
                order.max(shift - bindings::XA_CHUNK_SHIFT)
            };
            let mut xas = self.state(index, step);
            // SAFETY: `xas` is a state of this array, the lock is not held, and `entry` is the
            // entry of order `cur` to split; the new nodes are filled with copies of it.
            unsafe { bindings::xas_split_alloc(&mut xas, entry, cur, gfp.as_raw()) };
            // SAFETY: `xas_error` only reads `xas`.
            to_result(unsafe { bindings::xas_error(&xas) })?;
            {
                let _guard = self.lock();
                // SAFETY: `xas` is a state of this array and its lock is held.
                let now = unsafe { bindings::xas_load(&mut xas) };
                // SAFETY: as above, `xas` is at `now` if it is an entry.
                if now == entry && unsafe { bindings::xas_get_order(&mut xas) } as u32 == cur {
                    // SAFETY: the entry of order `cur` is still there, the nodes it needs were
                    // allocated by `xas_split_alloc` above, and the lock is held.
                    unsafe { bindings::xas_split(&mut xas, entry, cur) };
                }
            }
            // Free the nodes if the entry changed under us (then try again).
            // SAFETY: `xas` is not in an error state, so `xas_nomem` frees the spare nodes and
            // returns false without allocating.
            unsafe { bindings::xas_nomem(&mut xas, 0) };
        }
    }

    /// Makes a later store of an entry into the block of order `order` at `first`, with
    /// [`XArray::store_block`], need no memory, without changing what any index reads.
    ///
    /// The block must not be covered by a larger entry (see [`XArray::split_to`]). If the block
    /// holds no entry, it is reserved; otherwise, if the array is not tall enough for the block,
    /// the index that makes it tall enough is reserved: the one just past the block, which only
    /// happens to a block at index 0 (an array holding entries inside any other aligned block is
    /// tall enough for it). Returns the reserved block (first index and order), to be given to
    /// [`XArray::release_block`] if nothing is stored over it.
    ///
    /// The guarantee holds until an entry is erased, which may shrink the array.
    ///
    /// Returns [`EINVAL`] if the block is not aligned or is covered by a larger entry, and
    /// [`ENOMEM`] if memory cannot be allocated with `gfp`.
    ///
    /// [`ENOMEM`]: crate::error::code::ENOMEM
    pub fn prepare_store(
        &self,
        first: usize,
        order: u32,
        gfp: Flags,
    ) -> Result<Option<(usize, u32)>> {
        if order >= usize::BITS || first & order_mask(order) != 0 {
            return Err(EINVAL);
        }
        let last = first + order_mask(order);
        let mut xas = self.state(first, order);
        self.locked(&mut xas, gfp, |xas| {
            // SAFETY: `xas` is a state of this array and its lock is held (in `locked`).
            unsafe { bindings::xas_set_order(xas, first, order) };
            // SAFETY: as above.
            let entry = unsafe { bindings::xas_load(xas) };
            // SAFETY: `xa_is_internal` and `xa_is_node` only look at the bits of the word.
            if !entry.is_null() && !unsafe { bindings::xa_is_node(entry) } {
                // SAFETY: `xas` is at the entry and the lock is held.
                let cur = unsafe { bindings::xas_get_order(xas) } as u32;
                if cur > order {
                    return Err(EINVAL);
                }
                if cur == order {
                    // The block is one entry (or one reservation) already.
                    return Ok(None);
                }
            }
            // The tree does not reach the block, or the block is one empty slot: it holds
            // nothing.
            // SAFETY: `xas_invalid` only reads `xas`.
            let beyond = unsafe { bindings::xas_invalid(xas) };
            let node = xas.xa_node;
            let one_slot = !beyond
                && !node.is_null()
                && xas.xa_sibs == 0
                // SAFETY: `node` is a node of this array (not null, not an internal state),
                // kept alive by the lock.
                && unsafe { (*node).shift } == xas.xa_shift;
            let empty_slot = entry.is_null() && (beyond || one_slot);
            let target = if empty_slot || self.find(first, last).is_none() {
                (first, order)
            } else {
                // Entries are stored at a level of the tree where their block takes one slot or
                // a few; one starting at 0 needs a top node above its own size.
                let need = if first == 0 { last + 1 } else { last };
                if need <= self.top_max() {
                    return Ok(None);
                }
                // `need` is beyond the top node, so it holds no entry.
                (need, 0)
            };
            // SAFETY: `xas` is a state of this array and its lock is held.
            unsafe { bindings::xas_set_order(xas, target.0, target.1) };
            // SAFETY: as above; `XA_ZERO_ENTRY` is `xa_mk_internal(257)`, a reservation, and the
            // target holds no entry, so nothing is overwritten.
            unsafe { bindings::xas_store(xas, bindings::xa_mk_internal(257)) };
            Ok(Some(target))
        })?
    }

    /// Returns the largest index the array can hold without growing a new top node.
    fn top_max(&self) -> usize {
        // SAFETY: by the type invariants `self.xa` is initialised; the caller holds the lock, so
        // the head does not change.
        let head = unsafe { (*self.as_raw()).xa_head };
        // SAFETY: `xa_is_node` only looks at the bits of the word.
        if !unsafe { bindings::xa_is_node(head) } {
            return 0;
        }
        // SAFETY: `head` is a node of this array, kept alive by the lock.
        let shift = u32::from(unsafe { (*bindings::xa_to_node(head)).shift });
        let bits = shift + bindings::XA_CHUNK_SHIFT;
        if bits >= usize::BITS {
            usize::MAX
        } else {
            (1usize << bits) - 1
        }
    }

    /// Stores `entry` into the block of order `order` at `first` as one multi-index entry, or
    /// erases the block if `entry` is `None`.
    ///
    /// Entries inside the block are replaced. As in C, the block must not be part of a larger
    /// entry, which would be replaced as a whole: split it first with [`XArray::split_to`]. After
    /// [`XArray::prepare_store`] for the block, storing an entry allocates nothing; erasing never
    /// does.
    ///
    /// Returns [`EINVAL`] if the block is not aligned or `entry` cannot be stored, and
    /// [`ENOMEM`] if memory cannot be allocated with `gfp`.
    ///
    /// [`ENOMEM`]: crate::error::code::ENOMEM
    pub fn store_block(&self, first: usize, order: u32, entry: Option<T>, gfp: Flags) -> Result {
        if order >= usize::BITS || first & order_mask(order) != 0 {
            return Err(EINVAL);
        }
        let ptr = match entry {
            Some(entry) => Self::entry_to_raw(entry)?,
            None => ptr::null_mut(),
        };
        let mut xas = self.state(first, order);
        self.locked(&mut xas, gfp, |xas| {
            // SAFETY: `xas` is a state of this array and its lock is held (in `locked`). `ptr` is
            // null (erase) or checked by `entry_to_raw`, and `T: Copy`.
            unsafe { bindings::xas_store(xas, ptr) };
        })
    }

    /// Erases the reservation of order `order` at `first` made by [`XArray::prepare_store`], if
    /// it is still there. Never allocates.
    pub fn release_block(&self, first: usize, order: u32) {
        if order >= usize::BITS || first & order_mask(order) != 0 {
            return;
        }
        let mut xas = self.state(first, order);
        let _guard = self.lock();
        // SAFETY: `xas` is a state of this array and its lock is held.
        let entry = unsafe { bindings::xas_load(&mut xas) };
        // SAFETY: `xa_is_zero` only looks at the bits of the word.
        let reserved = unsafe { bindings::xa_is_zero(entry) };
        // SAFETY: `xas` is at the reservation, if any, and the lock is held.
        if reserved && unsafe { bindings::xas_get_order(&mut xas) } as u32 == order {
            // SAFETY: the lock is held; erasing allocates nothing.
            unsafe { bindings::xas_store(&mut xas, ptr::null_mut()) };
        }
    }
}

/// Iterator returned by [`XArray::iter_range`] and [`XArray::iter`].
struct RangeIter<'a, T: XaEntry + Copy> {
    xa: &'a XArray<T>,
    first: usize,
    last: usize,
    /// The index of the entry returned last, `None` before the first one.
    prev: Option<usize>,
    done: bool,
}

impl<T: XaEntry + Copy> Iterator for RangeIter<'_, T> {
    type Item = (usize, T);

    fn next(&mut self) -> Option<(usize, T)> {
        if self.done {
            return None;
        }
        let found = match self.prev {
            None => self.xa.find(self.first, self.last),
            Some(prev) => {
                let mut index = prev;
                // SAFETY: By the type invariants `self.xa.xa` is initialised; `index` is valid for
                // reads and writes. `xa_find_after` takes the RCU read lock itself and returns
                // null when `prev` is the last possible index.
                let ptr = unsafe {
                    bindings::xa_find_after(
                        self.xa.as_raw(),
                        &mut index,
                        self.last,
                        bindings::XA_PRESENT,
                    )
                };
                XArray::<T>::entry_from_raw(ptr).map(|entry| (index, entry))
            }
        };
        match found {
            Some((index, _)) => self.prev = Some(index),
            None => self.done = true,
        }
        found
    }
}

#[pinned_drop]
impl<T: XaEntry> PinnedDrop for XArray<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants `self.xa` is initialised, and it is not used after this.
        // `xa_destroy` frees the internal nodes; the entries are handles that need no cleanup.
        unsafe { bindings::xa_destroy(self.as_raw()) };
    }
}
