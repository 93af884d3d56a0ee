// SPDX-License-Identifier: GPL-2.0

//! Binding memslots to guest_memfd ranges (`KVM_SET_USER_MEMORY_REGION2`
//! with `KVM_MEM_GUEST_MEMFD`) and unbinding them when the slot goes away.

use kernel::{alloc::flags::GFP_KERNEL, fs::file::LocalFile, prelude::*, warn_on};

use crate::{
    gmem_file::{GmemFile, Operations},
    kvm::{BindingsLockGuard, BoundSlot, Kvm, Memslot},
    range,
};

/// Binds the new memslot `slot` of `kvm` to the guest_memfd `fd` at byte
/// `offset`.
///
/// Errors: `EBADF` for a bad fd; `EINVAL` if the fd is not a guest_memfd of
/// this VM, if the offset is unaligned or the slot does not fit in the file,
/// or if part of the range is already bound.  On failure nothing changes.
///
/// # Safety
///
/// `slot` is being created: KVM has not published it yet.
pub(crate) unsafe fn bind(
    kvm: &Kvm,
    slot: &Memslot,
    fd: u32,
    offset: u64,
    ops: &Operations,
) -> Result {
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
    // see it half bound.  Memory errors walk the bindings under the
    // bindings lock alone, so they change under it too.
    let _bindings = BindingsLockGuard::lock();
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
    if gmem.has_flags(range::GUEST_MEMFD_FLAG_MMAP) {
        // As in 6.18: a guest_memfd the host can map backs all of the
        // slot's memory, shared as well as private.
        // SAFETY: the slot is not published yet (our caller guarantees it).
        unsafe { slot.set_gmem_only() };
    }
    // The file reference is dropped even on success: the file pins the VM,
    // not the other way round, and release unbinds what is left.
    Ok(())
}

/// Removes `slot`'s range from `gmem`'s bindings and clears its file.
/// The caller holds the mapping's invalidate lock and the bindings lock.
fn remove(gmem: &GmemFile, slot: &Memslot, _bindings: &BindingsLockGuard) {
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
/// slot's file pointer) and with one being released right now: its last
/// reference is gone, and its release waits for the slots lock, which our
/// caller holds, before it takes the locks below and frees its state.  The
/// bindings change under the same locks in both cases, so that a memory
/// error, which walks them under the bindings lock, or a punch, under the
/// invalidate lock, never sees them change between its begin and its end.
///
/// # Safety
///
/// The caller holds the VM's `slots_lock`.
pub(crate) unsafe fn unbind(slot: &Memslot) {
    if !slot.is_bound() {
        return;
    }
    // A reference on the file while it is live; it keeps the mapping.
    let file = slot.gmem_file();
    let mapping = match &file {
        Some(file) => file.mapping(),
        // The file is being released: reach its mapping without pretending
        // to hold a reference on it.
        // SAFETY: our caller holds the slots lock for the rest of this call.
        None => match unsafe { slot.file_mapping() } {
            Some(mapping) => mapping,
            None => return,
        },
    };
    let _lock = mapping.invalidate_lock();
    let bindings = BindingsLockGuard::lock();
    // SAFETY: the private data of a guest_memfd mapping is null or its
    // `GmemFile`, which its release clears under the bindings lock, held
    // here, before freeing it.  The release has not run: it waits for the
    // slots lock.
    let gmem = unsafe { mapping.private_data::<GmemFile>() };
    match gmem {
        Some(gmem) => remove(gmem, slot, &bindings),
        // Not reached: the slot is bound and the release has not run.
        None => {
            warn_on!(true);
        }
    }
}
