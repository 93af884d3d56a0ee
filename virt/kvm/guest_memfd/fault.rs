// SPDX-License-Identifier: GPL-2.0

//! The private-fault path: from a gfn of a bound memslot to the pfn of a
//! zeroed, prepared page (`kvm_gmem_get_pfn()`), and its use by populate.

use kernel::{folio::LockedFolio, fs::file::LocalFile, prelude::*, warn_on};

use crate::{
    gmem_file::GmemFile,
    kvm::{prepare_warn_ratelimit, Kvm, Memslot},
    placement, range,
};

/// A page found for a gfn: its folio, still locked, and the pfn and order
/// KVM may map.
pub(crate) struct Found {
    /// The folio holding the page, locked.
    pub(crate) folio: LockedFolio,
    /// The pfn of the page.
    pub(crate) pfn: usize,
    /// The order KVM may map at; always 0 (no huge folios in 6.12).
    pub(crate) max_order: u32,
}

/// Looks up (allocating if needed) the folio backing file page `index` of
/// the guest_memfd `file` for `slot`.
///
/// Errors: `EFAULT` if the slot is no longer bound to `file`, `EIO` if the
/// bindings disagree with the slot, `EHWPOISON` if the page is poisoned,
/// and allocation errors.
pub(crate) fn find(file: &LocalFile, slot: &Memslot, index: usize) -> Result<Found> {
    if !slot.is_bound_to(file) {
        // The slot was unbound (its file pointer cleared) since the caller
        // took the file; any other file is a bug.
        warn_on!(slot.is_bound());
        return Err(EFAULT);
    }
    // SAFETY: the slot is bound to `file` (checked just above), so it is
    // a guest_memfd, on which the caller holds a reference.
    let gmem = unsafe { GmemFile::of_gmem_file(file) };
    let bound = gmem.bindings.load(index);
    if !bound.is_some_and(|b| b.is(slot)) {
        // The index may be unbound, but never bound to another slot.
        warn_on!(bound.is_some());
        return Err(EIO);
    }
    // SAFETY: the slot is bound to `file`, a guest_memfd (as above).
    let folio = unsafe { placement::grab_folio(file, index) }?;
    if folio.test_hwpoison() {
        return Err(EHWPOISON);
    }
    let pfn = folio.file_pfn(index);
    Ok(Found {
        folio,
        pfn,
        max_order: 0,
    })
}

/// Makes a fresh folio, which holds file page `index` of `slot`, usable by
/// the guest: zeroes it so that no host data leaks, runs the architecture's
/// prepare hook and marks it up to date.
pub(crate) fn prepare(kvm: &Kvm, slot: &Memslot, index: usize, folio: &LockedFolio) -> Result {
    folio.zero();

    let order = folio.order();
    // Memslot creation checks that the file offset is aligned to the
    // largest folio the guest_memfd can hold.
    warn_on!(slot.pgoff() & ((1u64 << order) - 1) != 0);
    let index = index & !((1usize << order) - 1);
    let pfn = folio.file_pfn(index);
    let first_gfn = range::index_to_gfn(slot.base_gfn(), slot.pgoff(), index);
    if let Err(e) = kvm.arch_prepare(first_gfn, pfn as u64, order) {
        if prepare_warn_ratelimit() {
            pr_warn!(
                "Failed to prepare folio for index {:x} GFN {:x} PFN {:x} error {}.\n",
                index,
                first_gfn,
                pfn,
                e.to_errno()
            );
        }
        return Err(e);
    }
    folio.mark_uptodate();
    Ok(())
}

/// `kvm_gmem_get_pfn()`: the pfn and maximum mapping order for `gfn` of
/// `slot`.  On success the caller owns a reference on the page.
pub(crate) fn get_pfn(kvm: &Kvm, slot: &Memslot, gfn: u64) -> Result<(usize, u32)> {
    let index = range::gfn_to_index(slot.base_gfn(), slot.pgoff(), gfn);
    let file = slot.gmem_file().ok_or(EFAULT)?;

    let found = find(&file, slot, index)?;
    if !found.folio.test_uptodate() {
        prepare(kvm, slot, index, &found.folio)?;
    }
    let folio = found.folio.unlock();
    // The reference goes to the caller, which drops it with
    // kvm_release_pfn_*() once the page is mapped.
    core::mem::forget(folio);
    Ok((found.pfn, found.max_order))
}
