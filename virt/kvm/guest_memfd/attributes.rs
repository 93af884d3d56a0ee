// SPDX-License-Identifier: GPL-2.0

//! `KVM_SET_MEMORY_ATTRIBUTES` and the MMU's attribute queries.
//!
//! The attributes live in the VM's `mem_attr_array` in the canonical form of
//! [`AttrStore`]; the fault path reads them with the C inline
//! `kvm_get_memory_attributes()` (an `xa_load()`), and x86's huge page logic
//! asks [`range_has`] about 2M/1G blocks.  A change runs the MMU hooks of
//! every memslot in the range around the store update, under `slots_lock`,
//! as 6.12 does.

use crate::{
    attr_store::{AttrStore, Update},
    kvm::{Kvm, SlotsLocked},
    range,
};
use kernel::{error::code::EINTR, prelude::*, task};

/// The attributes a VM supports (`KVM_CAP_MEMORY_ATTRIBUTES`); without a
/// VM, the ones some VM may support.
pub(crate) fn supported(kvm: Option<&Kvm>) -> u64 {
    match kvm {
        Some(kvm) if !kvm.has_private_mem() => 0,
        _ => range::KVM_MEMORY_ATTRIBUTE_PRIVATE,
    }
}

/// Whether every gfn of `[start, end)` has attributes whose bits in `mask`
/// (restricted to the supported ones) are `attrs`.  For `attrs == 0` this
/// asks whether no gfn has any attribute, as 6.12 does.
///
/// For more than one gfn the caller must hold `slots_lock`, which excludes
/// changes (see [`AttrStore::range_has`]); all callers do: [`set`], x86's
/// huge page checks and `kvm_gmem_populate()`.
pub(crate) fn range_has(kvm: &Kvm, start: u64, end: u64, mask: u64, attrs: u64) -> bool {
    let mask = mask & supported(Some(kvm));
    if attrs & !mask != 0 {
        return false;
    }
    AttrStore::new(kvm.mem_attrs()).range_has(
        start as usize,
        end as usize,
        mask as usize,
        attrs as usize,
    )
}

/// The KVM side of a change: fatal signals, and the MMU hooks.
struct KvmUpdate<'a> {
    slots: &'a SlotsLocked<'a>,
    start: u64,
    end: u64,
    attrs: u64,
}

impl Update for KvmUpdate<'_> {
    fn checkpoint(&mut self) -> Result {
        task::cond_resched();
        if kernel::current!().fatal_signal_pending() {
            return Err(EINTR);
        }
        Ok(())
    }

    fn before_store(&mut self) {
        self.slots.attrs_pre_set(self.start, self.end, self.attrs);
    }

    fn after_store(&mut self) {
        self.slots.attrs_post_set(self.start, self.end, self.attrs);
    }
}

/// `KVM_SET_MEMORY_ATTRIBUTES`.
///
/// Returns `EINVAL` for bad arguments, `ENOMEM` if the store cannot grow,
/// and `EINTR` if a fatal signal arrives while the change is prepared; in
/// these cases no attribute changed.
pub(crate) fn set(kvm: &Kvm, address: u64, size: u64, attributes: u64, flags: u64) -> Result {
    let (start, end) =
        range::check_set_attributes(address, size, attributes, flags, supported(Some(kvm)))?;
    // The caller's reference keeps the VM alive.
    let slots = kvm.slots_lock();
    // The store returns early, without running the hooks, if the range has
    // the attributes already, as 6.12 does with
    // kvm_range_has_memory_attributes(kvm, start, end, ~0, attributes).
    let mut update = KvmUpdate {
        slots: &slots,
        start,
        end,
        attrs: attributes,
    };
    AttrStore::new(kvm.mem_attrs()).set(
        start as usize,
        end as usize,
        attributes as usize,
        GFP_KERNEL_ACCOUNT,
        &mut update,
    )
}
