// SPDX-License-Identifier: GPL-2.0

//! Binding memslots to guest_memfd ranges (`KVM_SET_USER_MEMORY_REGION2`
//! with `KVM_MEM_GUEST_MEMFD`) and unbinding them when the slot goes away.

use kernel::{alloc::flags::GFP_KERNEL, fs::file::File, prelude::*};

use crate::{
    gmem_file::GmemFile,
    kvm::{Kvm, Memslot},
    range,
};

/// Binds the new memslot `slot` of `kvm` to the guest_memfd `fd` at byte
/// `offset`.
///
/// Errors: `EBADF` for a bad fd; `EINVAL` if the fd is not a guest_memfd of
/// this VM, if the offset is unaligned or the slot does not fit in the file,
/// or if part of the range is already bound.  On failure nothing changes.
pub(crate) fn bind(kvm: Kvm, slot: Memslot, fd: u32, offset: u64) -> Result {
    let file = File::fget(fd)?;
    let gmem = GmemFile::of(&file).ok_or(EINVAL)?;
    if gmem.kvm.as_ptr() != kvm.as_ptr() {
        return Err(EINVAL);
    }
    let (start, end) = range::bind_span(offset, slot.npages(), gmem.size)?;

    let _lock = file.mapping().invalidate_lock();
    if gmem.bindings.find(start, end - 1).is_some() {
        return Err(EINVAL);
    }

    // The slot is new and not yet visible to vCPUs, so the fault path cannot
    // see it half bound.
    slot.set_binding(file.as_raw(), start as u64);
    if let Err(e) = gmem
        .bindings
        .store_range(start, end - 1, Some(slot.as_non_null()), GFP_KERNEL)
    {
        // Erasing frees memory, it does not need any.
        let _ = gmem.bindings.store_range(start, end - 1, None, GFP_KERNEL);
        slot.set_binding(core::ptr::null_mut(), 0);
        return Err(e);
    }
    // The file reference is dropped even on success: the file pins the VM,
    // not the other way round, and release unbinds what is left.
    Ok(())
}

/// Removes `slot`'s range from `gmem`'s bindings and clears its file.
fn remove(gmem: &GmemFile, slot: Memslot) {
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
pub(crate) fn unbind(slot: Memslot) {
    let raw = slot.file();
    if raw.is_null() {
        return;
    }
    // SAFETY: the slot's file pointer is read under slots_lock, which the
    // release of a guest_memfd takes before clearing it.
    match unsafe { File::get_active(slot.file_slot()) } {
        Some(file) => {
            if let Some(gmem) = GmemFile::of(&file) {
                let _lock = file.mapping().invalidate_lock();
                remove(gmem, slot);
            }
        }
        None => {
            // The file is being closed: its release waits for slots_lock,
            // which our caller holds, before it clears the bindings and
            // frees its state, so both are still here.
            // SAFETY: see above; `raw` is the dying file, not yet freed.
            let file = unsafe { File::from_raw(raw) };
            if let Some(gmem) = GmemFile::of(file) {
                remove(gmem, slot);
            }
        }
    }
}
