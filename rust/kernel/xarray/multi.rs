// SPDX-License-Identifier: GPL-2.0

//! Value entries, shared entries and multi-index (range) operations on an [`XArray`].
//!
//! This is our extension to the [`XArray`] abstraction backported from Linux 6.16; no upstream
//! release has it. It serves users that keep small *handles* in an array, such as KVM's
//! guest_memfd, which maps ranges of file offsets to memslots, and keeps per-gfn memory attributes
//! as multi-index entries that it splits and merges one entry at a time.
//!
//! - Entry types: [`XaValue`], an integer stored as a value entry (`xa_mk_value`), and
//!   [`UnownedPtr`], a pointer to an object the array does not own. Both are [`CopyEntry`]
//!   types: one value may be held at several indices at once, and the array hands out copies.
//! - Range operations, for arrays of [`CopyEntry`] entries: [`XArray::store_range`]
//!   (`xa_store_range`), [`XArray::find`] (`xa_find`), [`XArray::iter_range`]
//!   (`xa_for_each_range`) and the lock-free [`XArray::load`] (`xa_load`).
//! - With `CONFIG_XARRAY_MULTI`, entry-by-entry operations on multi-index entries, built on the
//!   advanced `xa_state` API (wrapped by a private `XaState`, initialised by C's
//!   `XA_STATE_ORDER`): [`XArray::lookup`] and [`XaReader`] find the entry covering an index with
//!   its extent ([`Slot`]), [`XArray::split_to`] splits entries, [`XArray::prepare_store`]
//!   allocates ahead of [`XArray::store_block`], and [`XArray::release_block`] drops what
//!   was not used.
//!
//! Without `CONFIG_XARRAY_MULTI` a range is stored as one entry at every index, which costs time
//! and memory proportional to its length.

#[cfg(CONFIG_XARRAY_MULTI)]
use super::Guard;
use super::{word, XArray};
use crate::{
    alloc::Flags,
    bindings,
    error::{code::EINVAL, to_result, Result},
    ffi::c_void,
    types::ForeignOwnable,
};
use core::ptr::{self, NonNull};
#[cfg(CONFIG_XARRAY_MULTI)]
use core::{
    cell::{Cell, UnsafeCell},
    marker::PhantomData,
};

/// A [`ForeignOwnable`] type whose values an [`XArray`] may hold at several indices at once.
///
/// The range operations of this module store one value at many indices, split an entry into
/// copies and forget the entries they replace, and the array hands out copies of its entries;
/// they are only available for such types.
///
/// # Safety
///
/// Implementers must ensure that, for a pointer returned by [`ForeignOwnable::into_foreign`],
/// [`ForeignOwnable::from_foreign`] and [`ForeignOwnable::borrow`] may be called any number of
/// times, each [`ForeignOwnable::from_foreign`] giving back a copy of the value that was
/// converted, and that nothing is leaked if [`ForeignOwnable::from_foreign`] is never called on
/// it.
pub unsafe trait CopyEntry: ForeignOwnable + Copy {}

/// An integer stored in an [`XArray`] as a value entry (`xa_mk_value`).
///
/// # Invariants
///
/// The value is at most [`XaValue::MAX`] (`LONG_MAX`), so that it fits in a value entry.
///
/// # Examples
///
/// ```
/// use kernel::xarray::{multi::XaValue, AllocKind, XArray};
///
/// assert_eq!(XaValue::new(0)?.get(), 0);
/// assert_eq!(XaValue::new(XaValue::MAX)?.get(), usize::MAX >> 1);
/// assert_eq!(XaValue::new(XaValue::MAX + 1), Err(EINVAL));
/// assert_eq!(XaValue::new(usize::MAX), Err(EINVAL));
///
/// let xa = KBox::pin_init(XArray::<XaValue>::new(AllocKind::Plain), GFP_KERNEL)?;
/// let mut guard = xa.lock();
/// assert!(guard.store(3, XaValue::new(30)?, GFP_KERNEL)?.is_none());
/// assert_eq!(guard.get(3), Some(XaValue::new(30)?));
/// let old = guard.store(3, XaValue::new(XaValue::MAX)?, GFP_KERNEL)?;
/// assert_eq!(old, Some(XaValue::new(30)?));
/// assert_eq!(guard.remove(3).map(XaValue::get), Some(XaValue::MAX));
/// assert_eq!(guard.get(3), None);
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

    /// Decodes a value entry.
    fn decode(ptr: *const c_void) -> Self {
        let v = word::to_value(ptr);
        // INVARIANT: a value entry holds at most `LONG_MAX`.
        Self(v)
    }
}

// The conversions are a shift and an or: inlined, they cost nothing.
impl ForeignOwnable for XaValue {
    type Borrowed<'a> = XaValue;

    #[inline]
    fn into_foreign(self) -> *const c_void {
        word::mk_value(self.0)
    }

    #[inline]
    unsafe fn borrow<'a>(ptr: *const c_void) -> Self::Borrowed<'a> {
        Self::decode(ptr)
    }

    #[inline]
    unsafe fn from_foreign(ptr: *const c_void) -> Self {
        Self::decode(ptr)
    }
}

// SAFETY: a value entry is the integer itself, encoded with its lowest bit set (so never null nor
// an internal entry): decoding it any number of times gives copies, and it owns nothing.
unsafe impl CopyEntry for XaValue {}

/// A pointer stored in an [`XArray`] that does not own what it points to.
///
/// The array never keeps the object alive nor drops it: it is up to the user to keep it alive
/// while it is in the array, and the user dereferences it with `unsafe` code that says why it is
/// still alive. Use it for an array of pointers to objects whose lifetime is managed elsewhere,
/// as when C code owns them.
///
/// The XArray reserves words whose two low bits are `10` for its internal entries, so the store
/// operations reject such pointers with [`EINVAL`]; pointers to objects aligned to at least 4
/// bytes, as kernel objects are, never are.
///
/// # Examples
///
/// ```
/// use kernel::xarray::{multi::UnownedPtr, AllocKind, XArray};
///
/// let mut objects = KVec::new();
/// for v in [10u64, 11, 12, 13] {
///     objects.push(v, GFP_KERNEL)?;
/// }
/// let xa = KBox::pin_init(XArray::<UnownedPtr<u64>>::new(AllocKind::Plain), GFP_KERNEL)?;
/// for (i, o) in objects.iter_mut().enumerate() {
///     xa.lock().store(i * 10, UnownedPtr::from(o), GFP_KERNEL)?;
/// }
/// assert_eq!(xa.load(20), Some(UnownedPtr::from(&objects[2])));
/// assert_eq!(xa.find(21, usize::MAX), Some((30, UnownedPtr::from(&objects[3]))));
/// let p = xa.lock().get(10).ok_or(ENOENT)?;
/// // SAFETY: `objects` outlives the array and is not changed meanwhile.
/// assert_eq!(unsafe { *p.as_ptr() }, 11);
///
/// // Dropping the array frees its nodes only: the objects stay as they were.
/// drop(xa);
/// assert_eq!(&objects[..], &[10, 11, 12, 13]);
/// # Ok::<(), Error>(())
/// ```
pub struct UnownedPtr<T>(NonNull<T>);

impl<T> UnownedPtr<T> {
    /// Wraps `ptr`.
    pub fn new(ptr: NonNull<T>) -> Self {
        Self(ptr)
    }

    /// Returns the pointer.
    pub fn as_non_null(self) -> NonNull<T> {
        self.0
    }

    /// Returns the pointer as a raw pointer.
    pub fn as_ptr(self) -> *mut T {
        self.0.as_ptr()
    }
}

impl<T> Clone for UnownedPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for UnownedPtr<T> {}

impl<T> PartialEq for UnownedPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<T> Eq for UnownedPtr<T> {}

impl<T> core::fmt::Debug for UnownedPtr<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "UnownedPtr({:p})", self.0)
    }
}

impl<T> From<NonNull<T>> for UnownedPtr<T> {
    fn from(ptr: NonNull<T>) -> Self {
        Self(ptr)
    }
}

impl<T> From<&T> for UnownedPtr<T> {
    fn from(r: &T) -> Self {
        Self(NonNull::from(r))
    }
}

impl<T> From<&mut T> for UnownedPtr<T> {
    fn from(r: &mut T) -> Self {
        Self(NonNull::from(r))
    }
}

impl<T> ForeignOwnable for UnownedPtr<T> {
    type Borrowed<'a> = UnownedPtr<T>;

    fn into_foreign(self) -> *const c_void {
        self.0.as_ptr().cast()
    }

    unsafe fn borrow<'a>(ptr: *const c_void) -> Self::Borrowed<'a> {
        // SAFETY: the caller guarantees that `ptr` came from `into_foreign`, i.e. from a
        // `NonNull<T>`.
        Self(unsafe { NonNull::new_unchecked(ptr.cast_mut().cast()) })
    }

    unsafe fn from_foreign(ptr: *const c_void) -> Self {
        // SAFETY: as for `borrow`, the caller passes on the requirements.
        unsafe { Self::borrow(ptr) }
    }
}

// SAFETY: the pointer is stored unchanged; converting it back any number of times gives copies of
// an address, and it owns nothing.
unsafe impl<T> CopyEntry for UnownedPtr<T> {}

// SAFETY: an `UnownedPtr` is an address: sending or sharing it does not access the object, which
// only `unsafe` code can do, and that code has to justify it.
unsafe impl<T> Send for UnownedPtr<T> {}

// SAFETY: see `Send`.
unsafe impl<T> Sync for UnownedPtr<T> {}

impl<T: ForeignOwnable> XArray<T> {
    /// Returns whether the array holds no entry (reservations included), as `xa_empty`.
    pub fn is_empty(&self) -> bool {
        // SAFETY: `self.xa` is initialised (type invariant); `xa_empty` only reads its head.
        unsafe { bindings::xa_empty(self.as_raw()) }
    }
}

impl<T: CopyEntry> XArray<T> {
    /// Converts `entry` to the word to store, checking that the XArray can hold it.
    fn entry_to_raw(entry: T) -> Result<*mut c_void> {
        let ptr = entry.into_foreign().cast_mut();
        if ptr.is_null() || word::is_internal(ptr) {
            // Nothing was stored; `T: CopyEntry` need not be converted back.
            return Err(EINVAL);
        }
        Ok(ptr)
    }

    /// Converts a word read from the array into a copy of its entry, `None` for null.
    fn entry_from_raw(ptr: *mut c_void) -> Option<T> {
        if ptr.is_null() {
            return None;
        }
        // SAFETY: non-null words read from the array by the normal API come from
        // `T::into_foreign` (type invariant of `XArray`); `T: CopyEntry`, so converting it back
        // makes a copy and leaves the array's entry valid.
        Some(unsafe { T::from_foreign(ptr) })
    }

    /// Converts the return value of a C store function into a [`Result`].
    fn check(ret: *mut c_void) -> Result {
        to_result(word::err(ret))
    }

    /// Returns a copy of the entry at `index`, or `None` if there is none.
    ///
    /// This is `xa_load`: a lock-free (RCU) lookup.
    pub fn load(&self, index: usize) -> Option<T> {
        // SAFETY: `self.xa` is initialised (type invariant); `xa_load` takes the RCU read lock.
        Self::entry_from_raw(unsafe { bindings::xa_load(self.as_raw(), index) })
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
    /// Returns [`EINVAL`] if `first > last` or if `entry` cannot be stored (see [`UnownedPtr`]),
    /// or [`ENOMEM`] if the array could not allocate memory with `gfp`. On failure part of the
    /// range may already hold `entry`; erase the range to undo that.
    ///
    /// [`ENOMEM`]: crate::error::code::ENOMEM
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xarray::{multi::XaValue, AllocKind, XArray};
    ///
    /// let xa = KBox::pin_init(XArray::<XaValue>::new(AllocKind::Plain), GFP_KERNEL)?;
    /// let v = XaValue::new(42)?;
    /// xa.lock().store(4, XaValue::new(4)?, GFP_KERNEL)?;
    /// xa.lock().store(101, XaValue::new(101)?, GFP_KERNEL)?;
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
        // SAFETY: `self.xa` is initialised (type invariant). `ptr` is null (erase) or checked by
        // `entry_to_raw`, and `T: CopyEntry`, so it may be stored at several indices and the
        // entry it replaces forgotten. `xa_store` takes the array's lock itself.
        Self::check(unsafe { bindings::xa_store(self.as_raw(), index, ptr, gfp.as_raw()) })
    }

    #[cfg(CONFIG_XARRAY_MULTI)]
    fn store_range_raw(&self, first: usize, last: usize, ptr: *mut c_void, gfp: Flags) -> Result {
        // `xa_store_range` steps through the range by adding the size of each piece to its start,
        // which wraps around (and never ends) when the range includes `ULONG_MAX`: keep that
        // index apart.
        let below_max = last.min(usize::MAX - 1);
        if first <= below_max {
            // SAFETY: as in `store_one_raw`; `xa_store_range` takes the array's lock itself.
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
                self.store_one_raw(index, ptr, gfp)?;
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

    /// Returns the first entry at an index in `first..=last`, with that index (`xa_find`).
    ///
    /// If the entry spans several indices (see [`XArray::store_range`]) and starts before
    /// `first`, the index returned is `first`. Returns `None` if there is no entry in the range
    /// (in particular if `first > last`). Reservations are skipped.
    pub fn find(&self, first: usize, last: usize) -> Option<(usize, T)> {
        let mut index = first;
        // SAFETY: `self.xa` is initialised (type invariant); `index` is valid for reads and
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
    /// use kernel::xarray::{multi::XaValue, AllocKind, XArray};
    ///
    /// let xa = KBox::pin_init(XArray::<XaValue>::new(AllocKind::Plain), GFP_KERNEL)?;
    /// let v = XaValue::new(5)?;
    /// xa.lock().store(2, XaValue::new(2)?, GFP_KERNEL)?;
    /// xa.store_range(5, 100, Some(v), GFP_KERNEL)?;
    /// xa.lock().store(200, XaValue::new(200)?, GFP_KERNEL)?;
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
    /// xa.lock().store(usize::MAX, v, GFP_KERNEL)?;
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
}

/// Iterator returned by [`XArray::iter_range`].
struct RangeIter<'a, T: CopyEntry> {
    xa: &'a XArray<T>,
    first: usize,
    last: usize,
    /// The index of the entry returned last, `None` before the first one.
    prev: Option<usize>,
    done: bool,
}

impl<T: CopyEntry> Iterator for RangeIter<'_, T> {
    type Item = (usize, T);

    fn next(&mut self) -> Option<(usize, T)> {
        if self.done {
            return None;
        }
        let found = match self.prev {
            None => self.xa.find(self.first, self.last),
            Some(prev) => {
                let mut index = prev;
                // SAFETY: `self.xa.xa` is initialised (type invariant); `index` is valid for
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

/// The number of index bits each level of the tree resolves (`XA_CHUNK_SHIFT`): an entry of order
/// `k * LEVEL_SHIFT` takes one slot of a node, and storing it over smaller entries frees the nodes
/// below that slot.
#[cfg(CONFIG_XARRAY_MULTI)]
pub const LEVEL_SHIFT: u32 = bindings::XA_CHUNK_SHIFT;

/// `XAS_RESTART`, the node pointer of a state that walks from the root next time: a small
/// internal value, never dereferenced.
#[cfg(CONFIG_XARRAY_MULTI)]
const XAS_RESTART: *mut bindings::xa_node = 3usize as *mut bindings::xa_node;

/// Returns `2^order - 1`, the offset of the last index of an entry of order `order`.
#[cfg(CONFIG_XARRAY_MULTI)]
fn order_mask(order: u32) -> usize {
    (1usize << order) - 1
}

/// An operation state of the advanced XArray API (`struct xa_state`) on an array of `T`.
///
/// # Invariants
///
/// `xas` was initialised as `XA_STATE_ORDER` does, for the array borrowed for `'a`, and is changed
/// only by [`XaState::set_order`] (as `xas_set_order`) and the `xas_*` functions.
#[cfg(CONFIG_XARRAY_MULTI)]
struct XaState<'a, T: ForeignOwnable> {
    xas: bindings::xa_state,
    _xa: PhantomData<&'a XArray<T>>,
}

#[cfg(CONFIG_XARRAY_MULTI)]
impl<'a, T: ForeignOwnable> XaState<'a, T> {
    /// Returns a state for the entry of order `order` at `index` of `xa` (`XA_STATE_ORDER`), or
    /// at the last index if `order` is too large for an index.
    fn new(xa: &'a XArray<T>, index: usize, order: u32) -> Self {
        // `XA_STATE_ORDER()`, written out: these inline C macros only compute fields, and a call
        // into C for each would cost more than the fields (the hot path of a small attribute
        // change makes several states).
        let mut state = Self {
            // INVARIANT: `XA_STATE_ORDER` for `xa` once `set_order` has run, just below.
            xas: bindings::xa_state {
                xa: xa.as_raw(),
                xa_index: 0,
                xa_shift: 0,
                xa_sibs: 0,
                xa_offset: 0,
                xa_pad: 0,
                xa_node: XAS_RESTART,
                xa_alloc: ptr::null_mut(),
                xa_update: None,
                xa_lru: ptr::null_mut(),
            },
            _xa: PhantomData,
        };
        state.set_order(index, order);
        state
    }

    /// Moves the state to the entry of order `order` at `index`, as the inline
    /// `xas_set_order()` does: the aligned index, the shift of the node that holds such an entry
    /// and its number of sibling slots, and a walk from the root next time. `order` is capped
    /// below the number of bits of an index.
    fn set_order(&mut self, index: usize, order: u32) {
        let order = order.min(usize::BITS - 1);
        let chunk = bindings::XA_CHUNK_SHIFT;
        self.xas.xa_index = ((index >> order) << order) as _;
        // Both fit in a byte: the shift is below the number of bits of an index, the sibling
        // count below `XA_CHUNK_SIZE`.
        self.xas.xa_shift = (order - order % chunk) as u8;
        self.xas.xa_sibs = ((1u32 << (order % chunk)) - 1) as u8;
        self.xas.xa_node = XAS_RESTART;
    }

    /// Walks to the entry the state points at and returns it (`xas_load`).
    ///
    /// # Safety
    ///
    /// The array's lock or the RCU read lock must be held.
    unsafe fn load(&mut self) -> *mut c_void {
        // SAFETY: the state is one of the array, which is alive for `'a` (type invariant); the
        // caller holds a lock that keeps its nodes alive.
        unsafe { bindings::xas_load(&mut self.xas) }
    }

    /// Returns the lowest of the node the state was walked to last and its ancestors that spans
    /// `index`, with its shift; `None` if the state is not at a node, if a node on the way is no
    /// longer in the array, or if even the top node does not span `index`.
    ///
    /// # Safety
    ///
    /// The RCU read lock (or the array's lock) must be held, and must have been held since the
    /// state was last walked.
    #[inline]
    unsafe fn spanning(&self, index: usize) -> Option<(*mut bindings::xa_node, u32)> {
        // SAFETY: the caller holds the lock under which the state was walked.
        let mut shift = unsafe { self.node_shift() }?;
        let mut node = self.xas.xa_node;
        loop {
            // SAFETY: `node` is a node of the array or was one, and the lock keeps its memory
            // valid. A node removed from the array has `array` set to `XA_RCU_FREE`.
            if unsafe { (*node).array } != self.xas.xa {
                return None;
            }
            let bits = shift + bindings::XA_CHUNK_SHIFT;
            // The node and its ancestors span the last index walked to.
            if bits >= usize::BITS || index >> bits == self.xas.xa_index >> bits {
                return Some((node, shift));
            }
            // SAFETY: as above; the parent pointer is read once, as `rcu_dereference()` does.
            let parent = unsafe { ptr::read_volatile(ptr::addr_of!((*node).parent)) };
            if parent.is_null() {
                return None;
            }
            node = parent;
            // SAFETY: `node` is the parent of a node of the array, kept alive by the lock.
            shift = u32::from(unsafe { (*node).shift });
        }
    }

    /// Returns whether the array has the node of shift `shift` that spans `index`, as far as the
    /// ancestors of the node the state was walked to last tell; `None` if they do not.
    ///
    /// # Safety
    ///
    /// As for [`XaState::spanning`].
    unsafe fn has_node(&self, index: usize, shift: u32) -> Option<bool> {
        // SAFETY: as the caller guarantees.
        let (mut node, mut at) = unsafe { self.spanning(index) }?;
        while at < shift {
            // SAFETY: `node` is a node of the array (checked by `spanning` or its child's
            // parent), kept alive by the lock; the pointer is read once.
            node = unsafe { ptr::read_volatile(ptr::addr_of!((*node).parent)) };
            if node.is_null() {
                return None;
            }
            // SAFETY: as above.
            at = u32::from(unsafe { (*node).shift });
        }
        // Below `at`, only a walk tells.
        (at == shift).then_some(true)
    }

    /// Loads the entry at `index` starting from the lowest node on the path of the last walk that
    /// spans `index` (as `xas_next()` and `xas_prev()` do for the neighbouring indices); returns
    /// `None` if there is none, and the caller walks from the root. The state must be of order
    /// 0.
    ///
    /// # Safety
    ///
    /// The RCU read lock (or the array's lock) must be held, and must have been held since the
    /// state was last walked.
    #[inline]
    unsafe fn load_near(&mut self, index: usize) -> Option<*mut c_void> {
        // SAFETY: as the caller guarantees.
        let (node, shift) = unsafe { self.spanning(index) }?;
        let slot = |offset: usize| {
            // SAFETY: `node` is a node of the array kept alive by the lock (checked by
            // `spanning`), and `offset < XA_CHUNK_SIZE`. The slot is read once, as
            // `rcu_dereference()` does.
            unsafe { ptr::read_volatile(ptr::addr_of!((*node).slots[offset])) }
        };
        let mut offset = (index >> shift) & order_mask(bindings::XA_CHUNK_SHIFT);
        let mut entry = slot(offset);
        if word::is_sibling(entry) {
            offset = word::to_sibling(entry);
            entry = slot(offset);
            if shift > 0 && word::is_node(entry) {
                // Changed under us (`xas_descend()` retries too).
                return None;
            }
        }
        // The state moves to `index`, in `node`, as a walk from the root would have left it.
        self.xas.xa_node = node;
        self.xas.xa_index = index;
        // `offset < XA_CHUNK_SIZE`, which fits in the field.
        self.xas.xa_offset = offset as u8;
        if word::is_node(entry) {
            // Smaller entries below: `xas_load()` goes on from this node (`xas_reload()` reads
            // the same slot), descending as a walk from the root would.
            // SAFETY: the state is at a node of the array; the lock is held.
            return Some(unsafe { self.load() });
        }
        Some(entry)
    }

    /// Returns the order of the entry [`XaState::load`] found (`xas_get_order`).
    ///
    /// # Safety
    ///
    /// The state must be at an entry, and the lock under which it was found still held.
    unsafe fn get_order(&mut self) -> u32 {
        // SAFETY: as the caller guarantees. The order is at most `BITS_PER_LONG`.
        unsafe { bindings::xas_get_order(&mut self.xas) as u32 }
    }

    /// Stores `entry` in the range of the state (`xas_store`).
    ///
    /// # Safety
    ///
    /// The array's lock must be held, and `entry` must be null, `XA_ZERO_ENTRY` or, for a
    /// [`CopyEntry`] type `T`, a word returned by `T::into_foreign` that is not an internal entry.
    unsafe fn store(&mut self, entry: *mut c_void) {
        // SAFETY: as the caller guarantees; the state is one of the array (type invariant).
        unsafe { bindings::xas_store(&mut self.xas, entry) };
    }

    /// Returns the error of the last operation (`xas_error`).
    fn error(&self) -> Result {
        // `xas_error()`: the error is encoded in the node pointer.
        match word::err(self.xas.xa_node.cast()) {
            0 => Ok(()),
            err => to_result(err),
        }
    }

    /// Allocates the memory the last operation lacked, if it lacked some, and returns whether to
    /// retry it; otherwise frees any spare memory (`xas_nomem`). Must not run under the lock if
    /// `gfp` may sleep.
    fn nomem(&mut self, gfp: Flags) -> bool {
        // SAFETY: the state is one of the array (type invariant); `xas_nomem` only allocates or
        // frees the state's spare node.
        unsafe { bindings::xas_nomem(&mut self.xas, gfp.as_raw()) }
    }

    /// Frees the nodes allocated for the state that were not used.
    fn free_spare(&mut self) {
        // SAFETY: the state is one of the array (type invariant). It is not in an error state
        // (or its error is dropped), so `xas_nomem` frees the spare nodes and allocates nothing.
        unsafe { bindings::xas_nomem(&mut self.xas, 0) };
    }

    /// Returns whether the state is not at a node: past the top of the tree, or an error.
    fn invalid(&self) -> bool {
        // `xas_invalid()`: the node pointer is a small internal word (`XAS_BOUNDS`,
        // `XAS_RESTART` or an error) rather than a node or null.
        self.xas.xa_node as usize & 3 != 0
    }

    /// Returns the shift of the node the state is in, `None` if it is at the head.
    ///
    /// # Safety
    ///
    /// The state must have been walked by [`XaState::load`] under a lock still held.
    unsafe fn node_shift(&self) -> Option<u32> {
        let node = self.xas.xa_node;
        if node.is_null() || self.invalid() {
            return None;
        }
        // SAFETY: `node` is a node of the array (not null, not an internal state), kept alive by
        // the lock the caller holds.
        Some(u32::from(unsafe { (*node).shift }))
    }

    /// Allocates the nodes to split `entry` of order `order` down to the order of the state
    /// (`xas_split_alloc`), without the lock. See [`XaState::error`].
    ///
    /// # Safety
    ///
    /// `entry` must be an entry of the array, and `T` a [`CopyEntry`] type.
    unsafe fn split_alloc(&mut self, entry: *mut c_void, order: u32, gfp: bindings::gfp_t) {
        // SAFETY: as the caller guarantees; the new nodes are filled with copies of `entry`.
        unsafe { bindings::xas_split_alloc(&mut self.xas, entry, order, gfp) };
    }

    /// Splits `entry` of order `order` down to the order of the state (`xas_split`).
    ///
    /// # Safety
    ///
    /// The array's lock must be held, `entry` of order `order` must be the entry at the state,
    /// [`XaState::split_alloc`] must have allocated the nodes for it (none if the entries of the
    /// state's order are in the entry's node), and `T` must be a [`CopyEntry`] type.
    unsafe fn split(&mut self, entry: *mut c_void, order: u32) {
        // SAFETY: as the caller guarantees.
        unsafe { bindings::xas_split(&mut self.xas, entry, order) };
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
    /// A reservation made by [`XArray::prepare_store`] covers the index; loads return `None`.
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

/// Lock-free lookups in an [`XArray`] under one RCU read-side critical section, from
/// [`XArray::reader`].
///
/// The reader keeps the place of its last walk: a lookup starts from the lowest node on that path
/// that spans its index, found through the nodes' parent pointers, instead of the root (as
/// `xas_next()`/`xas_prev()` do), so looking up an index and entries near it costs one walk from
/// the root.
///
/// # Exactness
///
/// Each result is exact if no writer changes the array while the reader is alive: the caller must
/// exclude writers (the array's users serialize them with a lock of their own) to rely on the
/// extent of an entry. Under a concurrent split or merge a lookup still returns an entry that
/// covered the index during the call, but the order read next to it (from the entry's sibling
/// slots) may be one the entry never had.
///
/// # Invariants
///
/// The RCU read lock is held from creation to drop, in the context of the creator. `xas` is a
/// state of `xa` that is only walked under that lock, so the node it points at, if any, stays
/// allocated while the reader lives.
#[cfg(CONFIG_XARRAY_MULTI)]
pub struct XaReader<'a, T: CopyEntry> {
    xa: &'a XArray<T>,
    xas: UnsafeCell<XaState<'a, T>>,
    walks: Cell<usize>,
    _not_send: PhantomData<*mut ()>,
}

#[cfg(CONFIG_XARRAY_MULTI)]
impl<T: CopyEntry> XaReader<'_, T> {
    /// Returns what covers `index`: nothing, a reservation or an entry, with its extent.
    ///
    /// If the array changes meanwhile, the result is what covered `index` at some point during
    /// the call (see "Exactness" above for the extent).
    #[inline]
    pub fn lookup(&self, index: usize) -> Slot<T> {
        // SAFETY: the reader is neither `Send` nor `Sync`, and no reference to the state outlives
        // a call of one of its public methods, none of which calls another (`walk` only uses the
        // reference it is given): this is the only reference.
        let xas = unsafe { &mut *self.xas.get() };
        loop {
            let entry = self.walk(xas, index);
            if entry.is_null() {
                return Slot::Empty;
            }
            if word::is_retry(entry) {
                // A node is being split or freed under us: walk again from the root.
                xas.set_order(index, 0);
                continue;
            }
            // SAFETY: the state is at the entry just loaded; the RCU read lock is held.
            let order = unsafe { xas.get_order() };
            let first = index & !order_mask(order);
            if word::is_zero(entry) {
                return Slot::Reserved { first, order };
            }
            // `xas_load` returns entries, never siblings or nodes, and retry entries were handled
            // above, so this is an entry from `T::into_foreign`.
            return match XArray::<T>::entry_from_raw(entry) {
                Some(entry) => Slot::Entry {
                    first,
                    order,
                    entry,
                },
                None => Slot::Empty,
            };
        }
    }

    /// Returns the entry at `index`, if any, as [`XArray::load`] does (a reservation reads as
    /// `None`): [`XaReader::lookup`] without the extent, which costs a call into C for an entry.
    #[inline]
    pub fn load(&self, index: usize) -> Option<T> {
        // SAFETY: as in `lookup`, this is the only reference to the state.
        let xas = unsafe { &mut *self.xas.get() };
        loop {
            let entry = self.walk(xas, index);
            if word::is_retry(entry) {
                xas.set_order(index, 0);
                continue;
            }
            if word::is_zero(entry) {
                return None;
            }
            // Null or an entry from `T::into_foreign` (see `lookup`).
            return XArray::<T>::entry_from_raw(entry);
        }
    }

    /// Walks `xas`, the reader's state, to `index` and returns what it holds.
    #[inline]
    fn walk(&self, xas: &mut XaState<'_, T>, index: usize) -> *mut c_void {
        // SAFETY: the RCU read lock is held, and was since the state was walked last (type
        // invariant).
        if let Some(entry) = unsafe { xas.load_near(index) } {
            return entry;
        }
        self.walks.set(self.walks.get() + 1);
        xas.set_order(index, 0);
        // SAFETY: the RCU read lock is held (type invariant).
        unsafe { xas.load() }
    }

    /// Returns whether [`XArray::store_block`] of an entry into the aligned block of order
    /// `order` at `first` would allocate nothing: the array has the node that holds such an
    /// entry. Without it, [`XArray::prepare_store`] makes the store need no memory.
    ///
    /// The answer holds until the array changes; the caller must exclude other writers, and
    /// erasing entries may shrink the array (see [`XArray::prepare_store`]). A block covered by a
    /// larger entry must be split first whatever this returns.
    pub fn storable(&self, first: usize, order: u32) -> bool {
        if order >= usize::BITS || first & order_mask(order) != 0 {
            return false;
        }
        // An entry of order `order` lives in a node of this shift (`XA_STATE_ORDER`).
        let shift = order - order % bindings::XA_CHUNK_SHIFT;
        // SAFETY: as in `lookup`, this is the only reference to the state.
        let near = unsafe { &mut *self.xas.get() };
        if shift == 0 {
            // The node is a leaf: it is on the path of a lookup of `first`.
            let entry = self.walk(near, first);
            if word::is_retry(entry) {
                near.set_order(first, 0);
                return false;
            }
            // SAFETY: the state was just walked under the RCU read lock, still held.
            let at = unsafe { near.node_shift() };
            return at == Some(0);
        }
        // SAFETY: the RCU read lock is held, and was since the state was walked last.
        if unsafe { near.has_node(first, shift) } == Some(true) {
            // That node is in the array, so the walk of a store reaches it without allocating.
            return true;
        }
        self.walks.set(self.walks.get() + 1);
        let mut xas = XaState::new(self.xa, first, order);
        // SAFETY: the RCU read lock is held (type invariant).
        let entry = unsafe { xas.load() };
        if word::is_retry(entry) {
            return false;
        }
        // The walk stops in the node of shift `shift` if the array has it, and above otherwise
        // (`xas_load()` descends while the node's shift is at least the state's).
        // SAFETY: `xas` was walked under the RCU read lock, still held.
        let at = unsafe { xas.node_shift() };
        at == Some(shift)
    }

    /// Returns the number of walks from the root this reader made: a debugging statistic.
    pub fn root_walks(&self) -> usize {
        self.walks.get()
    }
}

#[cfg(CONFIG_XARRAY_MULTI)]
impl<T: CopyEntry> Drop for XaReader<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the RCU read lock is held, taken by this context (type invariant).
        unsafe { bindings::rcu_read_unlock() };
    }
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
/// use kernel::xarray::{
///     multi::{Slot, XaValue},
///     AllocKind, XArray,
/// };
///
/// let xa = KBox::pin_init(XArray::<XaValue>::new(AllocKind::Plain), GFP_KERNEL)?;
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
/// let r = xa.reader();
/// assert_eq!(r.lookup((1 << 30) + 5), Slot::Entry { first: (1 << 30) + 5, order: 0, entry: b });
/// for i in [(1 << 30) + 4, (1 << 30) + 6, (1 << 31) - 1] {
///     assert!(matches!(r.lookup(i), Slot::Entry { entry, .. } if entry == a));
/// }
/// drop(r);
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
/// // Unaligned blocks are rejected.
/// assert_eq!(xa.store_block(3, 1, Some(a), GFP_KERNEL), Err(EINVAL));
/// assert_eq!(xa.prepare_store(3, 1, GFP_KERNEL), Err(EINVAL));
///
/// xa.store_block(1 << 30, 30, None, GFP_KERNEL)?;
/// assert!(xa.is_empty());
/// # Ok::<(), Error>(())
/// ```
#[cfg(CONFIG_XARRAY_MULTI)]
impl<T: CopyEntry> XArray<T> {
    /// Runs `op` under the array's lock, then, if it ran out of memory, allocates with `gfp` and
    /// runs it again (the `xas_nomem()` loop).
    fn locked<'a, R>(
        &'a self,
        xas: &mut XaState<'a, T>,
        gfp: Flags,
        mut op: impl FnMut(&mut XaState<'a, T>, &Guard<'a, T>) -> R,
    ) -> Result<R> {
        loop {
            let ret = {
                let guard = self.lock();
                op(xas, &guard)
            };
            // The lock is not held: `nomem` may sleep if `gfp` allows.
            if !xas.nomem(gfp) {
                return xas.error().map(|()| ret);
            }
        }
    }

    /// Returns what covers `index`: nothing, a reservation or an entry, with its extent.
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
        // SAFETY: taking the RCU read lock has no precondition.
        unsafe { bindings::rcu_read_lock() };
        // INVARIANT: the lock was just taken; `XaReader` is not `Send`, so it is released by the
        // same context. The state was not walked yet.
        XaReader {
            xa: self,
            xas: UnsafeCell::new(XaState::new(self, 0, 0)),
            walks: Cell::new(0),
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
        self.split_to_raw(index, order, gfp.as_raw())
    }

    /// [`XArray::split_to`], allocating with `gfp | __GFP_NOFAIL`: it never fails.
    ///
    /// It may sleep, and must only be called in process context without spinlocks held. Each
    /// level split allocates one node (one `struct xa_node`, an order-0 slab object), so a split
    /// down to order 0 allocates at most `BITS_PER_LONG / XA_CHUNK_SHIFT + 1` nodes: this is for
    /// callers that must not fail and split a bounded number of entries, as the allocator
    /// documentation asks of `__GFP_NOFAIL` users.
    pub fn split_to_nofail(&self, index: usize, order: u32, gfp: Flags) {
        let gfp = gfp.as_raw() | ((1 as bindings::gfp_t) << bindings::___GFP_NOFAIL_BIT);
        // With `__GFP_NOFAIL` the node allocations do not fail, and nothing else does.
        let _ = self.split_to_raw(index, order, gfp);
    }

    fn split_to_raw(&self, index: usize, order: u32, gfp: bindings::gfp_t) -> Result {
        if order >= usize::BITS {
            // No entry is larger than that.
            return Ok(());
        }
        loop {
            let mut xas = XaState::new(self, index, order);
            let (entry, cur, step) = {
                let _guard = self.lock();
                // SAFETY: the lock is held.
                let entry = unsafe { xas.load() };
                if entry.is_null() || word::is_internal(entry) {
                    // Nothing, smaller entries (a node) or a reservation: nothing to split.
                    return Ok(());
                }
                // SAFETY: `xas` is at the entry and the lock is held.
                let cur = unsafe { xas.get_order() };
                if cur <= order {
                    return Ok(());
                }
                // SAFETY: `xas` was walked under the lock, still held. An entry of order > 0
                // lives in a node.
                let Some(shift) = (unsafe { xas.node_shift() }) else {
                    return Ok(());
                };
                // Split one level at a time: `xas_split_alloc` only splits an entry into entries
                // of its own node or of the level just below, the latter with one new node for
                // each slot of the entry. So an entry of several slots is first split into
                // one-slot entries within its node, which needs no memory, and only the one
                // covering `index` is split further.
                let step = if order >= shift {
                    order
                } else if cur > shift {
                    shift
                } else {
                    order.max(shift - bindings::XA_CHUNK_SHIFT)
                };
                if step >= shift {
                    // Within the node: no memory, so no need to drop the lock.
                    xas.set_order(index, step);
                    // SAFETY: the entry of order `cur` covers `index` (`xas_split` walks to it
                    // again), the split stays within its node so it needs no allocated node, the
                    // lock is held, and `T: CopyEntry`.
                    unsafe { xas.split(entry, cur) };
                    if step == order {
                        return Ok(());
                    }
                    continue;
                }
                (entry, cur, step)
            };
            let mut xas = XaState::new(self, index, step);
            // SAFETY: `entry` is an entry of the array of order `cur`, and `T: CopyEntry`: the
            // new nodes are filled with copies of it.
            unsafe { xas.split_alloc(entry, cur, gfp) };
            xas.error()?;
            {
                let _guard = self.lock();
                // SAFETY: the lock is held.
                let now = unsafe { xas.load() };
                // SAFETY: if `now == entry`, `xas` is at that entry, and the lock is held.
                if now == entry && unsafe { xas.get_order() } == cur {
                    // SAFETY: the entry of order `cur` is still there, the nodes it needs were
                    // allocated by `split_alloc` above, the lock is held, and `T: CopyEntry`.
                    unsafe { xas.split(entry, cur) };
                }
            }
            // Free the nodes if the entry changed under us (then try again).
            xas.free_spare();
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
        let mut xas = XaState::new(self, first, order);
        self.locked(&mut xas, gfp, |xas, guard| {
            xas.set_order(first, order);
            // SAFETY: the lock is held (`guard`).
            let entry = unsafe { xas.load() };
            if !entry.is_null() && !word::is_node(entry) {
                // SAFETY: `xas` is at the entry and the lock is held.
                let cur = unsafe { xas.get_order() };
                if cur > order {
                    return Err(EINVAL);
                }
                if cur == order {
                    // The block is one entry (or one reservation) already.
                    return Ok(None);
                }
            }
            // The block holds nothing if the tree does not reach it, if the array is empty (the
            // walk stopped at a null head), or if the walk stopped at an empty slot that covers
            // all of it: a slot of a node of shift `s` covers `2^s` indices, and a block of
            // order `order <= s` that contains the index lies inside them. (A block over several
            // slots, `order > s`, may hold entries in the others.)
            let beyond = xas.invalid();
            // SAFETY: `xas` was walked under the lock, still held.
            let in_empty_slot = !beyond && unsafe { xas.node_shift() }.map_or(true, |s| s >= order);
            let empty_slot = entry.is_null() && (beyond || in_empty_slot);
            let target = if empty_slot || self.find(first, last).is_none() {
                (first, order)
            } else {
                // Entries are stored at a level of the tree where their block takes one slot or
                // a few; one starting at 0 needs a top node above its own size.
                let need = if first == 0 { last + 1 } else { last };
                if need <= Self::top_max(guard) {
                    return Ok(None);
                }
                // `need` is beyond the top node, so it holds no entry.
                (need, 0)
            };
            if target != (first, order) {
                xas.set_order(target.0, target.1);
            }
            // The state is where the load left it, or about to walk from the root: the store
            // goes on from there, as C's load-then-store does.
            // SAFETY: the lock is held; `XA_ZERO_ENTRY` is `xa_mk_internal(257)`, a reservation,
            // and the target holds no entry, so nothing is overwritten.
            unsafe { xas.store(word::mk_internal(257)) };
            Ok(Some(target))
        })?
    }

    /// Returns the largest index the array can hold without growing a new top node.
    fn top_max(guard: &Guard<'_, T>) -> usize {
        // SAFETY: the array is initialised (type invariant) and its lock is held (`guard`), so
        // the head does not change.
        let head = unsafe { (*guard.xa.as_raw()).xa_head };
        if !word::is_node(head) {
            return 0;
        }
        // SAFETY: `head` is a node of the array, kept alive by the lock.
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
        let mut xas = XaState::new(self, first, order);
        self.locked(&mut xas, gfp, |xas, _guard| {
            // SAFETY: the lock is held (`_guard`). `ptr` is null (erase) or checked by
            // `entry_to_raw`, and `T: CopyEntry`.
            unsafe { xas.store(ptr) };
        })
    }

    /// Erases the reservation of order `order` at `first` made by [`XArray::prepare_store`], if
    /// it is still there. Never allocates.
    pub fn release_block(&self, first: usize, order: u32) {
        if order >= usize::BITS || first & order_mask(order) != 0 {
            return;
        }
        let mut xas = XaState::new(self, first, order);
        let _guard = self.lock();
        // SAFETY: the lock is held.
        let entry = unsafe { xas.load() };
        let reserved = word::is_zero(entry);
        // SAFETY: `xas` is at the reservation, if any, and the lock is held.
        if reserved && unsafe { xas.get_order() } == order {
            // SAFETY: the lock is held; erasing allocates nothing.
            unsafe { xas.store(ptr::null_mut()) };
        }
    }
}
