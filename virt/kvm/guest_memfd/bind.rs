// SPDX-License-Identifier: GPL-2.0

//! Binding memslots to guest_memfd ranges (`KVM_SET_USER_MEMORY_REGION2`
//! with `KVM_MEM_GUEST_MEMFD`) and unbinding them when the slot goes away.

use kernel::{alloc::flags::GFP_KERNEL, fs::file::LocalFile, prelude::*};

use crate::{
    gmem_file::{GmemFile, Operations},
    kvm::{BoundSlot, Kvm, Memslot},
    range,
};

/// Binds the new memslot `slot` of `kvm` to the guest_memfd `fd` at byte
/// `offset`.
///
/// Errors: `EBADF` for a bad fd; `EINVAL` if the fd is not a guest_memfd of
/// this VM, if the offset is unaligned or the slot does not fit in the file,
/// or if part of the range is already bound.  On failure nothing changes.
pub(crate) fn bind(kvm: &Kvm, slot: &Memslot, fd: u32, offset: u64, ops: &Operations) -> Result {
    let file = LocalFile::fget(fd)?;
    let gmem = GmemFile::of(&file, ops).ok_or(EINVAL)?;
    if !core::ptr::eq(gmem.kvm(), kvm) {
        return Err(EINVAL);
    }
    let (start, end) = range::bind_span(offset, slot.npages(), gmem.size())?;

    let _lock = file.mapping().invalidate_lock();
    if gmem.bindings.find(start, end - 1).is_some() {
        return Err(EINVAL);
    }

    // The slot is new and not yet visible to vCPUs, so the fault path cannot
    // see it half bound.
    slot.set_binding(&file, start as u64);
    if let Err(e) =
        gmem.bindings
            .store_range(start, end - 1, Some(BoundSlot::new(slot)), GFP_KERNEL)
    {
        // Erasing frees memory, it does not need any.
        let _ = gmem.bindings.store_range(start, end - 1, None, GFP_KERNEL);
        slot.clear_file();
        return Err(e);
    }
    // The file reference is dropped even on success: the file pins the VM,
    // not the other way round, and release unbinds what is left.
    Ok(())
}

/// Removes `slot`'s range from `gmem`'s bindings and clears its file.
fn remove(gmem: &GmemFile, slot: &Memslot) {
    let start = slot.pgoff() as usize;
    let end = start + slot.npages() as usize;
    // Erasing frees memory, it does not need any.
    let _ = gmem.bindings.store_range(start, end - 1, None, GFP_KERNEL);
    // synchronize_srcu() in the caller made sure that the fault path no
    // longer sees this slot.
    slot.clear_file();
}

/// Unbinds a memslot that KVM is deleting.
///
/// Copes with a file that is already released (its release cleared the
/// slot's file pointer) and with one being released right now.
///
/// # Safety
///
/// The caller holds the VM's `slots_lock`.
pub(crate) unsafe fn unbind(slot: &Memslot) {
    if !slot.is_bound() {
        return;
    }
    match slot.gmem_file() {
        Some(file) => {
            // SAFETY: the slot is bound to `file`, a guest_memfd, and we
            // hold a reference on it.
            let gmem = unsafe { GmemFile::of_gmem_file(&file) };
            let _lock = file.mapping().invalidate_lock();
            remove(gmem, slot);
        }
        None => {
            // The file is being closed: its release waits for slots_lock,
            // which our caller holds, before it clears the bindings and
            // frees its state, so both are still here.
            // SAFETY: our caller holds the slots lock, and we use the
            // file only in this call.
            if let Some(file) = unsafe { slot.released_file() } {
                // SAFETY: the slot is bound to `file`, a guest_memfd whose
                // release waits for the slots lock before it takes its
                // state back.
                remove(unsafe { GmemFile::of_gmem_file(file) }, slot);
            }
        }
    }
}
