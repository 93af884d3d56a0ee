// SPDX-License-Identifier: GPL-2.0

//! `kvm_gmem_populate()`: filling private memory with initial guest data
//! before launch (SEV-SNP `SNP_LAUNCH_UPDATE`).

use kernel::{fs::file::LocalFile, prelude::*, warn_on};

use crate::{
    fault,
    kvm::{Kvm, Memslot, PostPopulate, SlotsLocked},
    range,
};

/// Whether every gfn in `[start, end)` has the PRIVATE attribute.
#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
fn range_is_private(kvm: &Kvm, start: u64, end: u64) -> bool {
    let private = range::KVM_MEMORY_ATTRIBUTE_PRIVATE;
    crate::attributes::range_has(kvm, start, end, private, private)
}

/// Without memory attributes no gfn is private.
#[cfg(not(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES))]
fn range_is_private(_kvm: &Kvm, _start: u64, _end: u64) -> bool {
    false
}

/// Populates up to `npages` pages from `start_gfn`, calling `post` on each.
///
/// Returns the number of pages populated, or an error if none was:
/// `EINVAL` for a negative count, a slot that cannot be private or a page
/// that is not PRIVATE, `EFAULT` for a slot whose file is gone, `EEXIST`
/// for a page already prepared, `EINTR` on a pending signal, or what
/// `post` returned.
pub(crate) fn populate(
    slots: &SlotsLocked<'_>,
    start_gfn: u64,
    npages: i64,
    post: &PostPopulate,
) -> Result<u64> {
    if npages < 0 {
        return Err(EINVAL);
    }
    let kvm = slots.kvm();
    let slot = slots.gfn_to_memslot(start_gfn).ok_or(EINVAL)?;
    if !slot.can_be_private() {
        return Err(EINVAL);
    }
    let file = slot.gmem_file().ok_or(EFAULT)?;

    let _lock = file.mapping().invalidate_lock();
    let npages = (slot.npages() - (start_gfn - slot.base_gfn())).min(npages as u64);
    let mut done = 0;
    let mut failed = None;
    while done < npages {
        match populate_one(
            kvm,
            &file,
            slot,
            start_gfn + done,
            npages - done,
            done,
            post,
        ) {
            Ok(n) => done += n,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    range::populate_result(failed, done)
}

/// Populates the pages at `gfn`, page `page` of the source: as many as the
/// folio there holds that are PRIVATE and no more than `left`.  Returns how
/// many.
fn populate_one(
    kvm: &Kvm,
    file: &LocalFile,
    slot: &Memslot,
    gfn: u64,
    left: u64,
    page: u64,
    post: &PostPopulate,
) -> Result<u64> {
    let index = range::gfn_to_index(slot.base_gfn(), slot.pgoff(), gfn);

    if kernel::current!().signal_pending() {
        return Err(EINTR);
    }
    let found = fault::find(file, slot, index)?;
    if found.folio.test_uptodate() {
        return Err(EEXIST);
    }
    let mut order = found.max_order;
    let folio = found.folio.unlock();
    warn_on!(gfn & ((1u64 << order) - 1) != 0 || left < 1u64 << order);

    while !range_is_private(kvm, gfn, gfn + (1u64 << order)) {
        if order == 0 {
            return Err(EINVAL);
        }
        order -= 1;
    }
    post.call(kvm, gfn, found.pfn as u64, page, order)?;
    // Prepared: the fault path must not zero it again.
    folio.lock().mark_uptodate();
    Ok(1 << order)
}
