// SPDX-License-Identifier: GPL-2.0

//! Inodes, as far as code that creates a file with an inode of its own sets them up.
//!
//! [`Inode`] wraps a C `struct inode` borrowed from an open file ([`LocalFile::inode`]);
//! [`InodeOperations`] is a `struct inode_operations` table that can be put in a `static`.
//! Upstream has a generic `Inode<T>` for file systems written in Rust (in the VFS series of
//! Wedson Almeida Filho, not merged as of 6.16); this one is ours and much smaller.
//!
//! C header: [`include/linux/fs.h`](srctree/include/linux/fs.h)
//!
//! [`LocalFile::inode`]: crate::fs::file::LocalFile::inode

use crate::{bindings, filemap::Mapping, fs::OpsTable, types::Opaque};
use core::ptr::addr_of_mut;

/// The file type bits of a regular file, for [`Inode::add_mode`].
pub const S_IFREG: u16 = bindings::S_IFREG as u16;

/// An inode, a C `struct inode`.
///
/// # Invariants
///
/// A `&Inode` only exists while the inode is alive (for example, while a file that holds it is
/// open).
///
/// # Examples
///
/// ```
/// use kernel::c_str;
/// use kernel::fs::{file::{anon_inode_create_getfile, flags::O_RDWR, FileOperations},
///                  inode::InodeOperations};
///
/// static FOPS: FileOperations = FileOperations::new(
///     // SAFETY: All-zeroes is a valid `file_operations`: no callbacks and no owner.
///     unsafe { core::mem::zeroed() },
/// );
/// static IOPS: InodeOperations = InodeOperations::new(
///     // SAFETY: All-zeroes is a valid `inode_operations`: no callbacks.
///     unsafe { core::mem::zeroed() },
/// );
///
/// // SAFETY: `FOPS` has no callbacks that could look at the private data.
/// let file = unsafe { anon_inode_create_getfile(c_str!("[rust-inode]"), &FOPS, (), O_RDWR)? };
/// let inode = file.inode();
/// assert_eq!(inode.size(), 0);
/// // SAFETY: Nobody else uses the new inode yet.
/// unsafe {
///     inode.init_size(1 << 20);
///     inode.add_mode(kernel::fs::inode::S_IFREG);
///     inode.set_operations(&IOPS);
/// }
/// assert_eq!(inode.size(), 1 << 20);
/// assert_eq!(file.size(), 1 << 20);
/// assert!(core::ptr::eq(inode.mapping(), file.mapping()));
/// # Ok::<(), Error>(())
/// ```
#[repr(transparent)]
pub struct Inode(Opaque<bindings::inode>);

// SAFETY: The methods taking `&self` either read the inode with the accessors C provides for
// lockless readers, or require (`unsafe`) that nobody else uses the inode yet.
unsafe impl Sync for Inode {}

// SAFETY: An `Inode` is only accessed by reference, and nothing in it is tied to a thread.
unsafe impl Send for Inode {}

impl Inode {
    /// Creates a reference to an inode from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to an inode that stays alive for the whole lifetime `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::inode) -> &'a Inode {
        // SAFETY: The caller guarantees that the pointer is valid for `'a`. `Inode` is
        // `repr(transparent)`, so the cast is valid.
        unsafe { &*ptr.cast() }
    }

    /// Returns a raw pointer to the C `struct inode`.
    pub fn as_ptr(&self) -> *mut bindings::inode {
        self.0.get()
    }

    /// Returns the inode number (`i_ino`), which is unique among the inodes of its filesystem.
    pub fn ino(&self) -> usize {
        // SAFETY: By the type invariants the inode is alive. `i_ino` is set when the inode is
        // created and does not change after.
        unsafe { (*self.as_ptr()).i_ino }
    }

    /// Returns the size of the inode in bytes (`i_size_read`).
    pub fn size(&self) -> i64 {
        // SAFETY: By the type invariants the inode is alive. `i_size_read` reads the size
        // consistently without a lock.
        unsafe { bindings::i_size_read(self.as_ptr()) }
    }

    /// Returns the inode's own page cache (`i_mapping`).
    pub fn mapping(&self) -> &Mapping {
        // SAFETY: By the type invariants the inode is alive; `i_mapping` is set when it is
        // created.
        let mapping = unsafe { (*self.as_ptr()).i_mapping };
        // SAFETY: The mapping lives as long as the inode.
        unsafe { Mapping::from_raw(mapping) }
    }

    /// Sets the size of a new inode (`i_size`).
    ///
    /// # Safety
    ///
    /// Nobody else may use the inode yet: it was just created by the caller.
    pub unsafe fn init_size(&self, size: i64) {
        // SAFETY: The inode is alive and, as the caller guarantees, not shared yet.
        unsafe { (*self.as_ptr()).i_size = size };
    }

    /// Adds the bits of `mode` (for example the file type, `S_IFREG`) to a new inode's mode.
    ///
    /// # Safety
    ///
    /// Nobody else may use the inode yet: it was just created by the caller.
    pub unsafe fn add_mode(&self, mode: u16) {
        // SAFETY: The inode is alive and, as the caller guarantees, not shared yet.
        unsafe { *addr_of_mut!((*self.as_ptr()).i_mode) |= mode };
    }

    /// Makes `iops` the inode operations of a new inode (`i_op`).
    ///
    /// # Safety
    ///
    /// Nobody else may use the inode yet, and the callbacks of `iops` must be sound to call on
    /// this inode.
    pub unsafe fn set_operations(&self, iops: &'static InodeOperations) {
        // SAFETY: The inode is alive and, as the caller guarantees, not shared yet.
        unsafe { (*self.as_ptr()).i_op = iops.as_ptr() };
    }
}

/// An `inode_operations` table that can be put in a `static`.
pub type InodeOperations = OpsTable<bindings::inode_operations>;
