// SPDX-License-Identifier: GPL-2.0

//! Kernel file systems.
//!
//! C header: [`include/linux/fs.h`](srctree/include/linux/fs.h)

use crate::bindings;
use core::cell::UnsafeCell;

pub mod file;
pub mod inode;

mod private {
    /// Seals [`super::OpsKind`].
    pub trait Sealed {}
}

/// The C operations tables that an [`OpsTable`] may hold: structures of function pointers (and
/// a module pointer) that C code only reads.
pub trait OpsKind: private::Sealed {}

macro_rules! ops_kind {
    ($($t:ty),*) => {$(
        impl private::Sealed for $t {}
        impl OpsKind for $t {}
    )*};
}

ops_kind!(
    bindings::file_operations,
    bindings::inode_operations,
    bindings::address_space_operations
);

/// A C operations table that can be put in a `static`: [`file::FileOperations`],
/// [`inode::InodeOperations`] or [`crate::filemap::AddressSpaceOperations`].
///
/// The C structures hold raw pointers, so they are not [`Sync`] by themselves; this wrapper is,
/// because a table is only changed while nothing uses it (only [`file::FileOperations::set_owner`]
/// writes one), and C code only reads it.  It is handed to C as a pointer ([`OpsTable::as_ptr`]),
/// never as a Rust reference, so such a write does not invalidate a borrow.
#[repr(transparent)]
pub struct OpsTable<T: OpsKind>(UnsafeCell<T>);

// SAFETY: A table is only written by methods whose callers guarantee that nothing reads it at the
// same time; reading function pointers and a module pointer from several threads is fine.
unsafe impl<T: OpsKind> Sync for OpsTable<T> {}

impl<T: OpsKind> OpsTable<T> {
    /// Wraps an operations table.
    pub const fn new(ops: T) -> Self {
        Self(UnsafeCell::new(ops))
    }

    /// Returns a pointer to the C table, to give it to C code.
    ///
    /// The pointer is valid forever; C code may read the table through it whenever it is not
    /// being written (see [`file::FileOperations::set_owner`]).
    pub fn as_ptr(&'static self) -> *const T {
        self.0.get()
    }

    /// Returns a pointer to the table, for the writers of this module.
    fn as_mut_ptr(&'static self) -> *mut T {
        self.0.get()
    }
}
