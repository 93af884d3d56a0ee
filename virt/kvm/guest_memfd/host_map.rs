// SPDX-License-Identifier: GPL-2.0

//! Host mappings of a guest_memfd: `mmap()` and its page faults (the 6.18
//! uAPI, `GUEST_MEMFD_FLAG_MMAP` and `GUEST_MEMFD_FLAG_INIT_SHARED`).
//!
//! A guest_memfd created with `GUEST_MEMFD_FLAG_MMAP` may be mapped shared
//! by host userspace.  Its memory is the guest's, so a host fault only gets
//! a page when the memory is shared with the host: with
//! `GUEST_MEMFD_FLAG_INIT_SHARED`, which only VMs without private memory may
//! ask for, all of it is.  Everything else is `SIGBUS`, as are faults at or
//! past the end of the file.  The page a fault maps is the page-cache page
//! KVM maps into the guest: both see the same memory.

use kernel::{
    mm::{
        fault::{VmFault, VmFaultReason, VmOperations},
        virt::{flags, VmaNew},
    },
    prelude::*,
};

use crate::{gmem_file::GmemFile, placement, range};

/// `file_operations::mmap` of a guest_memfd: installs `ops`, whose `fault`
/// is [`fault`], on a shared mapping of a guest_memfd that allows mappings.
///
/// `ENODEV` without `GUEST_MEMFD_FLAG_MMAP` (what 6.12 answers for every
/// guest_memfd), `EINVAL` for a private mapping: a copy-on-write copy of
/// guest memory would be the host's, out of the guest_memfd's reach.
///
/// # Safety
///
/// `vma` is a mapping of the file of `gmem`, and the callbacks of `ops`
/// expect mappings of guest_memfd files.
pub(crate) unsafe fn mmap(gmem: &GmemFile, vma: &VmaNew, ops: &'static VmOperations) -> Result {
    if !gmem.has_flags(range::GUEST_MEMFD_FLAG_MMAP) {
        return Err(ENODEV);
    }
    let shared = flags::SHARED | flags::MAYSHARE;
    if vma.flags() & shared != shared {
        return Err(EINVAL);
    }
    // SAFETY: the vma maps a guest_memfd, which the callbacks of `ops`
    // expect (the caller guarantees both).
    unsafe { vma.set_ops(ops) };
    Ok(())
}

/// `vm_operations_struct::fault` on a mapping of `gmem`: maps the page of
/// the file at the fault's offset, allocating and zeroing it if it is new.
///
/// `SIGBUS` at or past the end of the file and when the memory is not
/// shared with the host (no `GUEST_MEMFD_FLAG_INIT_SHARED`);
/// `VM_FAULT_HWPOISON` on a page hit by a memory error.
///
/// # Safety
///
/// `vmf` is a fault on a mapping of the file of `gmem`.
pub(crate) unsafe fn fault(gmem: &GmemFile, vmf: &VmFault) -> VmFaultReason {
    let index = vmf.pgoff();
    if index >= range::size_in_pages(gmem.size()) {
        return VmFaultReason::SIGBUS;
    }
    if !gmem.has_flags(range::GUEST_MEMFD_FLAG_INIT_SHARED) {
        return VmFaultReason::SIGBUS;
    }
    // SAFETY: the fault is on a mapping of `gmem`'s file (the caller
    // guarantees it), a guest_memfd.
    let folio = match unsafe { placement::grab_folio(vmf.file(), index) } {
        Ok(folio) => folio,
        Err(e) => return VmFaultReason::from_error(e),
    };
    if folio.test_hwpoison() {
        return VmFaultReason::HWPOISON;
    }
    if !folio.test_uptodate() {
        // What KVM's fault path does to a new page, so that neither the
        // host nor the guest sees stale data, whoever touches it first.
        folio.zero();
        folio.mark_uptodate();
    }
    vmf.set_locked_folio(folio, index)
}
