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
/// because a table is never changed once it is used (only [`file::FileOperations::set_owner`]
/// writes one, before that), and C code only reads it.
#[repr(transparent)]
pub struct OpsTable<T: OpsKind>(UnsafeCell<T>);

// SAFETY: A table is only written by methods whose callers guarantee that nothing reads it at the
// same time and that it was not handed out yet; afterwards it is immutable, and reading function
// pointers and a module pointer from several threads is fine.
unsafe impl<T: OpsKind> Sync for OpsTable<T> {}

impl<T: OpsKind> OpsTable<T> {
    /// Wraps an operations table.
    pub const fn new(ops: T) -> Self {
        Self(UnsafeCell::new(ops))
    }

    /// Returns the C table, to give it to C code.
    pub fn as_raw(&'static self) -> &'static T {
        // SAFETY: The table is only written before it is first handed out (see the `Sync`
        // implementation); from then on it is immutable.
        unsafe { &*self.0.get() }
    }

    /// Returns a pointer to the table, for the writers of this module.
    fn as_mut_ptr(&'static self) -> *mut T {
        self.0.get()
    }
}
