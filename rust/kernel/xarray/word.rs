// SPDX-License-Identifier: GPL-2.0

//! The encoding of the words in XArray slots, as the C inline functions of `xarray.h` decode it.
//!
//! Those functions are `static inline`: without cross-language inlining, Rust would call each
//! through an out-of-line helper, a call per bit test, several per lookup. They are only bit
//! tests on a word, part of the XArray's format (the radix tree and the page cache rely on the
//! same encoding), so they are mirrored here as Rust inline functions. The doc test below checks
//! every one against its C helper.
//!
//! C header: [`include/linux/xarray.h`](srctree/include/linux/xarray.h)
//!
//! # Examples
//!
//! ```
//! use kernel::{bindings, ffi::c_void, xarray::word};
//!
//! let words: [usize; 15] = [
//!     0, 1, 2, 3, 4, 6, 0x102, 0x402, 0x406, 0x1002, 0x1006, usize::MAX - 4094 * 4 + 3,
//!     usize::MAX, usize::MAX - 1, 0x7fff_0000_0000_1236,
//! ];
//! for w in words {
//!     let p = w as *mut c_void;
//!     // SAFETY: these helpers only look at the bits of the word.
//!     unsafe {
//!         assert_eq!(word::is_internal(p), bindings::xa_is_internal(p));
//!         assert_eq!(word::is_node(p), bindings::xa_is_node(p));
//!         assert_eq!(word::is_sibling(p), bindings::xa_is_sibling(p));
//!         assert_eq!(word::is_retry(p), bindings::xa_is_retry(p));
//!         assert_eq!(word::is_zero(p), bindings::xa_is_zero(p));
//!         assert_eq!(word::is_value(p), bindings::xa_is_value(p));
//!         assert_eq!(word::err(p), bindings::xa_err(p));
//!         if word::is_value(p) {
//!             assert_eq!(word::to_value(p), bindings::xa_to_value(p));
//!         }
//!         if word::is_sibling(p) {
//!             assert_eq!(word::to_sibling(p), bindings::xa_to_sibling(p) as usize);
//!         }
//!     }
//! }
//! for v in [0usize, 1, 0x1234, isize::MAX as usize] {
//!     // SAFETY: `xa_mk_value` only encodes the integer.
//!     assert_eq!(word::mk_value(v), unsafe { bindings::xa_mk_value(v) });
//! }
//! for v in [0usize, 256, 257, 4094] {
//!     // SAFETY: `xa_mk_internal` only encodes the integer.
//!     assert_eq!(word::mk_internal(v), unsafe { bindings::xa_mk_internal(v) });
//! }
//! ```

use crate::{bindings, ffi::c_void};

/// Returns the internal entry that encodes `v` (`xa_mk_internal`).
#[inline]
pub const fn mk_internal(v: usize) -> *mut c_void {
    ((v << 2) | 2) as *mut c_void
}

/// Returns whether `entry` is an internal entry: a node, a sibling, a retry, a zero (reserved)
/// entry or an error (`xa_is_internal`).
#[inline]
pub fn is_internal(entry: *const c_void) -> bool {
    entry as usize & 3 == 2
}

/// Returns whether `entry` is a pointer to a node (`xa_is_node`).
#[inline]
pub fn is_node(entry: *const c_void) -> bool {
    is_internal(entry) && entry as usize > 4096
}

/// Returns whether `entry` points to a sibling slot of a multi-index entry (`xa_is_sibling`).
#[inline]
pub fn is_sibling(entry: *const c_void) -> bool {
    cfg!(CONFIG_XARRAY_MULTI)
        && is_internal(entry)
        && (entry as usize) < mk_internal((1usize << bindings::XA_CHUNK_SHIFT) - 1) as usize
}

/// Returns the slot offset a sibling entry points to (`xa_to_sibling`).
#[inline]
pub fn to_sibling(entry: *const c_void) -> usize {
    entry as usize >> 2
}

/// Returns whether `entry` is the retry entry of a node being freed or split (`xa_is_retry`).
#[inline]
pub fn is_retry(entry: *const c_void) -> bool {
    entry == mk_internal(256)
}

/// Returns whether `entry` is the zero entry of a reservation (`xa_is_zero`).
#[inline]
pub fn is_zero(entry: *const c_void) -> bool {
    entry == mk_internal(257)
}

/// Returns whether `entry` is a value entry (`xa_is_value`).
#[inline]
pub fn is_value(entry: *const c_void) -> bool {
    entry as usize & 1 != 0
}

/// Returns the value entry that encodes `v`, at most `LONG_MAX` (`xa_mk_value`).
#[inline]
pub fn mk_value(v: usize) -> *mut c_void {
    ((v << 1) | 1) as *mut c_void
}

/// Returns the integer a value entry encodes (`xa_to_value`).
#[inline]
pub fn to_value(entry: *const c_void) -> usize {
    entry as usize >> 1
}

/// Returns the errno an error entry encodes, 0 for any other word (`xa_err`).
#[inline]
pub fn err(entry: *const c_void) -> i32 {
    let max_errno = bindings::MAX_ERRNO as usize;
    if is_internal(entry) && entry as usize >= mk_internal(max_errno.wrapping_neg()) as usize {
        // An error entry is `xa_mk_internal(-errno)`, errno at most `MAX_ERRNO`: the shift is
        // arithmetic, as C's `(long)entry >> 2`. CAST: the result is in `-MAX_ERRNO..0`.
        ((entry as isize) >> 2) as i32
    } else {
        0
    }
}
