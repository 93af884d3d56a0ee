// SPDX-License-Identifier: GPL-2.0

//! NUMA placement of guest_memfd pages (6.19's semantics).
//!
//! A guest_memfd's inode comes from the guest_memfd pseudo-filesystem
//! (`fs.c`) and holds a shared memory policy, which `mbind()` on a host
//! mapping of the file sets (`vm_operations_struct::set_policy`, also in
//! `fs.c`).  Every page the file allocates afterwards is placed by the
//! policy of its index, whoever asks for it: a host fault through a
//! mapping, a vCPU's fault in KVM, `fallocate()` or populate.  Where no
//! policy is set, the allocating task's applies, as before.  Pages already
//! allocated stay where they are; a punched page is allocated again by the
//! policy of the moment.
//!
//! Interleaving spreads a file's pages by index, starting from a node that
//! depends on the inode ([`range::interleave_index`]), so that two
//! guest_memfds interleave independently of each other and of the order in
//! which their pages are touched.

use kernel::{folio::LockedFolio, fs::file::LocalFile, prelude::*};

use crate::{kvm, range};

/// Finds the folio of file page `index` of `file`, or allocates one by the
/// file's memory policy for that page, and locks it.
///
/// # Safety
///
/// `file` is a guest_memfd.
pub(crate) unsafe fn grab_folio(file: &LocalFile, index: usize) -> Result<LockedFolio> {
    let inode = file.inode();
    // SAFETY: the caller passes a guest_memfd, whose inode is one of the
    // guest_memfd filesystem's; `file` keeps it alive.
    let policy = unsafe { kvm::inode_policy(inode) }.lookup(index);
    let ilx = range::interleave_index(inode.ino(), index);
    file.mapping().grab_folio_mpol(index, policy.as_ref(), ilx)
}
