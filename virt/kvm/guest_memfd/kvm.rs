// SPDX-License-Identifier: GPL-2.0

//! The KVM objects guest_memfd works with: the VM, its memslots and the MMU
//! lock.
//!
//! They are reached through the C shim (`shim.c`, declared in
//! `include/linux/kvm_gmem.h`) because the fields and locks involved are C
//! structure members, macros and static inlines.

use core::ptr::{self, NonNull};
use kernel::bindings;
#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
use kernel::xarray::{XArray, XaValue};

/// A reference on a VM (`kvm_get_kvm()`), dropped with `kvm_put_kvm()`.
///
/// # Invariants
///
/// `self.0` points to a `struct kvm` on which this object owns a reference.
pub(crate) struct KvmRef(NonNull<bindings::kvm>);

// SAFETY: a VM reference may be taken and dropped on any thread.
unsafe impl Send for KvmRef {}
// SAFETY: all methods of `KvmRef` may be called concurrently.
unsafe impl Sync for KvmRef {}

impl KvmRef {
    /// Takes a new reference on `kvm`.
    ///
    /// # Safety
    ///
    /// `kvm` must point to a live VM on which the caller holds a reference
    /// for the duration of the call.
    pub(crate) unsafe fn get(kvm: NonNull<bindings::kvm>) -> Self {
        // SAFETY: the caller guarantees that `kvm` is live.
        unsafe { bindings::kvm_gmem_shim_get_kvm(kvm.as_ptr()) };
        // INVARIANT: we just took the reference.
        Self(kvm)
    }

    /// The VM as a raw pointer, valid as long as `self` is.
    pub(crate) fn as_ptr(&self) -> *mut bindings::kvm {
        self.0.as_ptr()
    }

    /// Takes `kvm->slots_lock`.
    pub(crate) fn slots_lock(&self) -> SlotsLockGuard<'_> {
        // SAFETY: by the type invariant the VM is live.
        unsafe { bindings::kvm_gmem_shim_slots_lock(self.as_ptr()) };
        // INVARIANT: the lock was just taken.
        SlotsLockGuard(self)
    }

    /// Takes `kvm->mmu_lock` for writing.
    pub(crate) fn mmu_lock(&self) -> MmuLockGuard<'_> {
        // SAFETY: by the type invariant the VM is live.
        unsafe { bindings::kvm_gmem_shim_mmu_lock(self.as_ptr()) };
        // INVARIANT: the lock was just taken.
        MmuLockGuard(self)
    }
}

impl Drop for KvmRef {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own a reference, given up here.
        unsafe { bindings::kvm_gmem_shim_put_kvm(self.0.as_ptr()) };
    }
}

/// `kvm->slots_lock`, held.
///
/// # Invariants
///
/// The current thread holds the slots lock of `self.0`.
pub(crate) struct SlotsLockGuard<'a>(&'a KvmRef);

impl Drop for SlotsLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we hold the lock.
        unsafe { bindings::kvm_gmem_shim_slots_unlock(self.0.as_ptr()) };
    }
}

/// `kvm->mmu_lock`, held for writing.
///
/// # Invariants
///
/// The current thread holds the MMU lock of `self.0`.
pub(crate) struct MmuLockGuard<'a>(&'a KvmRef);

impl MmuLockGuard<'_> {
    /// `kvm_mmu_invalidate_begin()`: starts an invalidation, so that faults
    /// racing with it retry.
    pub(crate) fn invalidate_begin(&self) {
        // SAFETY: the VM is live and, by the type invariant, its MMU lock
        // is held as `kvm_mmu_invalidate_begin()` requires.
        unsafe { bindings::kvm_gmem_shim_mmu_invalidate_begin(self.0.as_ptr()) };
    }

    /// `kvm_mmu_invalidate_end()`: ends an invalidation begun earlier.
    pub(crate) fn invalidate_end(&self) {
        // SAFETY: as in `invalidate_begin`.
        unsafe { bindings::kvm_gmem_shim_mmu_invalidate_end(self.0.as_ptr()) };
    }

    /// Zaps the private mappings of gfns `[start, end)` of `slot`; returns
    /// whether TLBs must be flushed.
    pub(crate) fn unmap_private(&self, slot: Memslot, start: u64, end: u64) -> bool {
        // SAFETY: the VM is live, its MMU lock is held (type invariant) and
        // `slot` is one of its memslots (`Memslot` invariant).
        unsafe {
            bindings::kvm_gmem_shim_unmap_private(self.0.as_ptr(), slot.0.as_ptr(), start, end)
        }
    }

    /// Flushes the TLBs of every vCPU of the VM.
    pub(crate) fn flush_remote_tlbs(&self) {
        // SAFETY: the VM is live.
        unsafe { bindings::kvm_gmem_shim_flush_remote_tlbs(self.0.as_ptr()) };
    }
}

impl Drop for MmuLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we hold the lock.
        unsafe { bindings::kvm_gmem_shim_mmu_unlock(self.0.as_ptr()) };
    }
}

/// A memslot bound (or being bound) to a guest_memfd.
///
/// # Invariants
///
/// `self.0` points to a live `struct kvm_memory_slot`.  A slot stays live
/// while it is in a guest_memfd's bindings: KVM unbinds it (under the
/// guest_memfd's invalidate lock, or under `slots_lock` against release)
/// before freeing it, and every user of a `Memslot` holds one of those
/// locks, an SRCU read lock on the VM's memslots, or is the KVM code that
/// owns the slot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Memslot(NonNull<bindings::kvm_memory_slot>);

impl Memslot {
    /// Wraps a memslot pointer received from KVM.
    ///
    /// # Safety
    ///
    /// `slot` must point to a live memslot and stay live for as long as the
    /// returned value (or a copy of it) is used, as the type invariant says.
    pub(crate) unsafe fn from_raw(slot: NonNull<bindings::kvm_memory_slot>) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self(slot)
    }

    /// The memslot as a pointer, for storing in the bindings.
    pub(crate) fn as_non_null(self) -> NonNull<bindings::kvm_memory_slot> {
        self.0
    }

    /// The first gfn of the slot.
    pub(crate) fn base_gfn(self) -> u64 {
        // SAFETY: the slot is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_slot_base_gfn(self.0.as_ptr()) }
    }

    /// The number of pages in the slot.
    pub(crate) fn npages(self) -> u64 {
        // SAFETY: the slot is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_slot_npages(self.0.as_ptr()) as u64 }
    }

    /// The page offset of the slot in its guest_memfd.
    pub(crate) fn pgoff(self) -> u64 {
        // SAFETY: the slot is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_slot_pgoff(self.0.as_ptr()) as u64 }
    }

    /// The guest_memfd file the slot is bound to (`READ_ONCE`), possibly
    /// null or already released.
    pub(crate) fn file(self) -> *mut bindings::file {
        // SAFETY: the slot is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_slot_file(self.0.as_ptr()) }
    }

    /// Where the slot keeps its file pointer, for `get_file_active()`.
    pub(crate) fn file_slot(self) -> *mut *mut bindings::file {
        // SAFETY: the slot is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_slot_file_slot(self.0.as_ptr()) }
    }

    /// Records (or with a null `file`, clears) the slot's binding.
    pub(crate) fn set_binding(self, file: *mut bindings::file, pgoff: u64) {
        // SAFETY: the slot is live (type invariant); the file pointer is
        // only stored, and readers treat it as possibly stale.
        unsafe { bindings::kvm_gmem_shim_slot_set_binding(self.0.as_ptr(), file, pgoff as _) };
    }

    /// Clears the slot's file pointer, keeping its offset.
    pub(crate) fn clear_file(self) {
        self.set_binding(ptr::null_mut(), self.pgoff());
    }

    /// Whether the slot may hold private memory.
    pub(crate) fn can_be_private(self) -> bool {
        // SAFETY: the slot is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_slot_can_be_private(self.0.as_ptr()) }
    }
}

/// A VM borrowed from the KVM caller of an entry point.
///
/// # Invariants
///
/// `self.0` points to a live VM for the lifetime of the value (the caller
/// of the entry point holds a reference).
#[derive(Clone, Copy)]
pub(crate) struct Kvm(NonNull<bindings::kvm>);

impl Kvm {
    /// Wraps the VM pointer an entry point received.
    ///
    /// # Safety
    ///
    /// `kvm` must point to a live VM for as long as the returned value is
    /// used.
    pub(crate) unsafe fn from_raw(kvm: NonNull<bindings::kvm>) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self(kvm)
    }

    /// The VM as a raw pointer.
    pub(crate) fn as_ptr(self) -> *mut bindings::kvm {
        self.0.as_ptr()
    }

    /// Takes a reference on the VM.
    pub(crate) fn get(self) -> KvmRef {
        // SAFETY: the VM is live (type invariant).
        unsafe { KvmRef::get(self.0) }
    }

    /// Checks that the caller holds `kvm->slots_lock` (lockdep).
    pub(crate) fn assert_slots_locked(self) {
        // SAFETY: the VM is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_assert_slots_locked(self.as_ptr()) };
    }

    /// The memslot holding `gfn`, if any.
    pub(crate) fn gfn_to_memslot(self, gfn: u64) -> Option<Memslot> {
        // SAFETY: the VM is live (type invariant); the caller holds
        // slots_lock, which keeps the returned slot live.
        let slot = unsafe { bindings::kvm_gmem_shim_gfn_to_memslot(self.as_ptr(), gfn) };
        // SAFETY: a non-null result is a live memslot of the VM.
        NonNull::new(slot).map(|s| unsafe { Memslot::from_raw(s) })
    }

    /// Whether the VM can have private memory (`kvm_arch_has_private_mem()`).
    pub(crate) fn has_private_mem(self) -> bool {
        // SAFETY: the VM is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_has_private_mem(self.as_ptr()) }
    }

    /// The VM's memory attribute store, `kvm->mem_attr_array`.
    #[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
    pub(crate) fn mem_attrs(&self) -> &XArray<XaValue> {
        // SAFETY: the VM is live (type invariant), so its array is.
        let xa = unsafe { bindings::kvm_gmem_shim_mem_attr_array(self.as_ptr()) };
        // SAFETY: KVM initialised the array when it created the VM and
        // destroys it only when the VM is freed, after the last reference
        // is gone; only this crate stores in it, and only value entries.
        unsafe { XArray::from_raw(xa) }
    }

    /// Runs the MMU side of a change of the attributes of `[start, end)` to
    /// `attrs` before the store changes: for each memslot in the range,
    /// starts an MMU invalidation and zaps the mappings
    /// (`kvm_arch_pre_set_memory_attributes()`).  Needs `slots_lock`.
    #[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
    pub(crate) fn attrs_pre_set(self, start: u64, end: u64, attrs: u64) {
        // SAFETY: the VM is live (type invariant); the caller holds
        // slots_lock.
        unsafe { bindings::kvm_gmem_shim_attrs_pre_set(self.as_ptr(), start, end, attrs as _) };
    }

    /// Runs the MMU side of a change of attributes after the store changed:
    /// recomputes the huge page limits of the memslots in the range
    /// (`kvm_arch_post_set_memory_attributes()`) and ends the invalidation.
    #[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
    pub(crate) fn attrs_post_set(self, start: u64, end: u64, attrs: u64) {
        // SAFETY: as in `attrs_pre_set`, which the caller called before.
        unsafe { bindings::kvm_gmem_shim_attrs_post_set(self.as_ptr(), start, end, attrs as _) };
    }

    /// The architecture's hook that makes a fresh page usable as private
    /// memory (SEV-SNP: RMP update); a negative errno on failure.
    pub(crate) fn arch_prepare(self, gfn: u64, pfn: u64, order: u32) -> i32 {
        // SAFETY: the VM is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_arch_prepare(self.as_ptr(), gfn, pfn, order as i32) }
    }
}

/// The architecture's hook run when guest_memfd frees pages
/// `[start, end)` (SEV-SNP: return them to the hypervisor state).
#[cfg(CONFIG_HAVE_KVM_ARCH_GMEM_INVALIDATE)]
pub(crate) fn arch_invalidate(start_pfn: u64, end_pfn: u64) {
    // SAFETY: the hook only looks at the pfns, which belong to a folio
    // being freed by the caller.
    unsafe { bindings::kvm_gmem_shim_arch_invalidate(start_pfn, end_pfn) };
}

/// Whether the current task has a fatal signal pending.
pub(crate) fn fatal_signal_pending() -> bool {
    // SAFETY: only looks at the current task.
    unsafe { bindings::kvm_gmem_shim_fatal_signal_pending() }
}
