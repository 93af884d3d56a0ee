// SPDX-License-Identifier: GPL-2.0

//! `kvm_gmem_populate()`: filling private memory with initial guest data
//! before launch (SEV-SNP `SNP_LAUNCH_UPDATE`).

use core::ffi::c_void;
use kernel::{bindings, fs::file::File, prelude::*, warn_on};

use crate::{fault, kvm::Kvm, range};

/// The architecture's per-page callback: copies and encrypts the source
/// page into `pfn`; 0 or a negative errno.
pub(crate) type PostPopulate = unsafe extern "C" fn(
    kvm: *mut bindings::kvm,
    gfn: u64,
    pfn: u64,
    src: *mut c_void,
    order: i32,
    opaque: *mut c_void,
) -> i32;

/// Whether every gfn in `[start, end)` has the PRIVATE attribute.
#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
fn range_is_private(kvm: Kvm, start: u64, end: u64) -> bool {
    let private = range::KVM_MEMORY_ATTRIBUTE_PRIVATE;
    crate::attributes::range_has(kvm, start, end, private, private)
}

/// Without memory attributes no gfn is private.
#[cfg(not(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES))]
fn range_is_private(_kvm: Kvm, _start: u64, _end: u64) -> bool {
    false
}

/// Populates up to `npages` pages from `start_gfn`, calling `post` on each.
///
/// The caller holds `slots_lock`.  Returns the number of pages populated,
/// or an error if none was: `EINVAL` for a negative count, a slot that
/// cannot be private or a page that is not PRIVATE, `EFAULT` for a slot
/// whose file is gone, `EEXIST` for a page already prepared, `EINTR` on a
/// pending signal, or what `post` returned.
///
/// # Safety
///
/// `post` must be safe to call with `kvm`, `src` advanced page by page and
/// `opaque`, as the architecture code that passes them promises.
pub(crate) unsafe fn populate(
    kvm: Kvm,
    start_gfn: u64,
    src: *mut c_void,
    npages: i64,
    post: PostPopulate,
    opaque: *mut c_void,
) -> Result<i64> {
    kvm.assert_slots_locked();
    if npages < 0 {
        return Err(EINVAL);
    }
    let slot = kvm.gfn_to_memslot(start_gfn).ok_or(EINVAL)?;
    if !slot.can_be_private() {
        return Err(EINVAL);
    }
    // SAFETY: slots_lock, held by the caller, keeps the slot and its file
    // pointer valid.
    let file = unsafe { File::get_active(slot.file_slot()) }.ok_or(EFAULT)?;

    let _lock = file.mapping().invalidate_lock();
    let npages = (slot.npages() - (start_gfn - slot.base_gfn())).min(npages as u64) as i64;
    let mut ret: i64 = 0;
    let mut i: i64 = 0;
    while i < npages {
        let gfn = start_gfn + i as u64;
        let index = range::gfn_to_index(slot.base_gfn(), slot.pgoff(), gfn);

        if kernel::current!().signal_pending() {
            ret = EINTR.to_errno() as i64;
            break;
        }
        let found = match fault::find(&file, slot, index) {
            Ok(found) => found,
            Err(e) => {
                ret = e.to_errno() as i64;
                break;
            }
        };
        if found.folio.test_uptodate() {
            ret = EEXIST.to_errno() as i64;
            break;
        }
        let mut order = found.max_order;
        let folio = found.folio.unlock();
        warn_on!(gfn & ((1u64 << order) - 1) != 0 || npages - i < 1i64 << order);

        ret = EINVAL.to_errno() as i64;
        let mut private = true;
        while !range_is_private(kvm, gfn, gfn + (1u64 << order)) {
            if order == 0 {
                private = false;
                break;
            }
            order -= 1;
        }
        if private {
            let p = if src.is_null() {
                core::ptr::null_mut()
            } else {
                src.wrapping_byte_add(i as usize * range::PAGE_SIZE as usize)
            };
            // SAFETY: the caller guarantees that `post` may be called with
            // these arguments.
            ret = unsafe { post(kvm.as_ptr(), gfn, found.pfn as u64, p, order as i32, opaque) }
                as i64;
            if ret == 0 {
                // Prepared: the fault path must not zero it again.
                folio.lock().mark_uptodate();
            }
        }
        drop(folio);
        if ret != 0 {
            break;
        }
        i += 1 << order;
    }
    Ok(range::populate_result(ret, i))
}
