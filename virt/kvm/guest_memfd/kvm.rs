// SPDX-License-Identifier: GPL-2.0

//! The KVM objects guest_memfd works with: the VM, its memslots, their
//! locks and the architecture's hooks.
//!
//! They are modelled as `kernel::mm` models `mm_struct`: a [`Kvm`] or a
//! [`Memslot`] is the C object itself (`Opaque`), only ever used by
//! reference; an owned reference on a VM is an [`ARef<Kvm>`]; a memslot is
//! borrowed for as long as the lock or the reference that keeps it alive
//! ([`SlotsLocked::gfn_to_memslot`]).  The fields, macros and inlines
//! involved are reached through the C shim (`shim.c`, declared in `shim.h`).
//!
//! This module and the FFI module are the only ones that touch raw
//! bindings.

use core::{ffi::c_void, marker::PhantomData, ptr};
#[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
use kernel::page::PAGE_SIZE;
#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
use kernel::xarray::{multi::XaValue, XArray};
use kernel::{
    bindings,
    error::to_result,
    filemap::Mapping,
    fs::{
        file::{File, LocalFile},
        inode::Inode,
    },
    mm::mempolicy::SharedPolicy,
    prelude::*,
    types::{ARef, AlwaysRefCounted, ForeignOwnable, Opaque},
    xarray::multi::{CopyEntry, UnownedPtr},
};

/// A VM, a C `struct kvm`.
///
/// # Invariants
///
/// A `&Kvm` only exists while a reference on the VM is held (by the KVM
/// caller of an entry point, or by an [`ARef<Kvm>`]), so the VM is live for
/// the lifetime of the borrow.
#[repr(transparent)]
pub(crate) struct Kvm(Opaque<bindings::kvm>);

// SAFETY: a VM reference may be taken and dropped on any thread.
unsafe impl Send for Kvm {}
// SAFETY: the methods taking `&self` use the VM's own locks.
unsafe impl Sync for Kvm {}

// SAFETY: VMs are reference counted by `kvm_get_kvm()`/`kvm_put_kvm()`,
// and destroyed only when the count drops to zero.
unsafe impl AlwaysRefCounted for Kvm {
    fn inc_ref(&self) {
        // SAFETY: by the type invariant the VM is live, so its count is not
        // zero.
        unsafe { bindings::kvm_gmem_shim_get_kvm(self.as_ptr()) };
    }

    unsafe fn dec_ref(obj: ptr::NonNull<Self>) {
        // SAFETY: the caller gives up a reference it owns. `Kvm` is
        // `repr(transparent)`, so the cast is valid.
        unsafe { bindings::kvm_gmem_shim_put_kvm(obj.cast().as_ptr()) };
    }
}

impl Kvm {
    /// Borrows the VM an entry point received.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a VM on which the caller holds a reference for
    /// the lifetime `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::kvm) -> &'a Kvm {
        // SAFETY: guaranteed by the caller; `Kvm` is `repr(transparent)`.
        unsafe { &*ptr.cast() }
    }

    /// The VM as a raw pointer, for the C calls of this module and of the
    /// FFI module.
    pub(crate) fn as_ptr(&self) -> *mut bindings::kvm {
        self.0.get()
    }

    /// Takes `kvm->slots_lock`.
    pub(crate) fn slots_lock(&self) -> SlotsLockGuard<'_> {
        // SAFETY: by the type invariant the VM is live.
        unsafe { bindings::kvm_gmem_shim_slots_lock(self.as_ptr()) };
        // INVARIANT: the lock was just taken, by this task.
        SlotsLockGuard(SlotsLocked {
            kvm: self,
            _not_send: PhantomData,
        })
    }

    /// Borrows `kvm->slots_lock` that the caller already holds (lockdep
    /// checks it).
    ///
    /// # Safety
    ///
    /// The current task must hold the VM's `slots_lock` for the lifetime
    /// `'a`.
    #[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
    pub(crate) unsafe fn slots_locked(&self) -> SlotsLocked<'_> {
        // SAFETY: by the type invariant the VM is live.
        unsafe { bindings::kvm_gmem_shim_assert_slots_locked(self.as_ptr()) };
        // INVARIANT: guaranteed by the caller.
        SlotsLocked {
            kvm: self,
            _not_send: PhantomData,
        }
    }

    /// Takes `kvm->mmu_lock` for writing.
    pub(crate) fn mmu_lock(&self) -> MmuLockGuard<'_> {
        // SAFETY: by the type invariant the VM is live.
        unsafe { bindings::kvm_gmem_shim_mmu_lock(self.as_ptr()) };
        // INVARIANT: the lock was just taken, by this task.
        MmuLockGuard {
            kvm: self,
            _not_send: PhantomData,
        }
    }

    /// Whether the VM can have private memory (`kvm_arch_has_private_mem()`).
    pub(crate) fn has_private_mem(&self) -> bool {
        // SAFETY: by the type invariant the VM is live.
        unsafe { bindings::kvm_gmem_shim_has_private_mem(self.as_ptr()) }
    }

    /// The VM's memory attribute store, `kvm->mem_attr_array`.
    #[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
    pub(crate) fn mem_attrs(&self) -> &XArray<XaValue> {
        // SAFETY: by the type invariant the VM is live, so its array is.
        let xa = unsafe { bindings::kvm_gmem_shim_mem_attr_array(self.as_ptr()) };
        // SAFETY: KVM initialised the array when it created the VM and
        // destroys it only when the VM is freed, after the last reference
        // is gone; only this crate stores in it, and only value entries.
        unsafe { XArray::from_raw(xa) }
    }

    /// The architecture's hook that makes a fresh folio of `1 << order`
    /// pages usable as private memory (SEV-SNP: RMP update).
    pub(crate) fn arch_prepare(&self, gfn: u64, pfn: u64, order: u32) -> Result {
        // SAFETY: by the type invariant the VM is live. CAST: orders are
        // small.
        to_result(unsafe {
            bindings::kvm_gmem_shim_arch_prepare(self.as_ptr(), gfn, pfn, order as i32)
        })
    }
}

/// `kvm->slots_lock`, known to be held by the current task: the proof that
/// memslots cannot change.
///
/// # Invariants
///
/// The current task holds the slots lock of `kvm` for the lifetime `'a`.
pub(crate) struct SlotsLocked<'a> {
    kvm: &'a Kvm,
    /// A mutex is released by the task that took it.
    _not_send: PhantomData<*mut ()>,
}

impl<'a> SlotsLocked<'a> {
    /// The VM whose lock this is.
    #[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
    pub(crate) fn kvm(&self) -> &'a Kvm {
        self.kvm
    }

    /// The memslot holding `gfn`, if any, live while the lock is held.
    #[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
    pub(crate) fn gfn_to_memslot(&self, gfn: u64) -> Option<&'a Memslot> {
        // SAFETY: the VM is live and its slots lock is held (type
        // invariant).
        let slot = unsafe { bindings::kvm_gmem_shim_gfn_to_memslot(self.kvm.as_ptr(), gfn) };
        // SAFETY: a non-null result is a memslot of the VM, which cannot be
        // freed while the slots lock is held.
        (!slot.is_null()).then(|| unsafe { Memslot::from_raw(slot) })
    }

    /// Runs the MMU side of a change of the attributes of `[start, end)` to
    /// `attrs` before the store changes: for each memslot in the range,
    /// starts an MMU invalidation and zaps the mappings
    /// (`kvm_arch_pre_set_memory_attributes()`).
    #[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
    pub(crate) fn attrs_pre_set(&self, start: u64, end: u64, attrs: u64) {
        // SAFETY: the VM is live and its slots lock is held (type
        // invariant).
        unsafe { bindings::kvm_gmem_shim_attrs_pre_set(self.kvm.as_ptr(), start, end, attrs as _) };
    }

    /// Runs the MMU side of a change of attributes after the store changed:
    /// recomputes the huge page limits of the memslots in the range
    /// (`kvm_arch_post_set_memory_attributes()`) and ends the invalidation
    /// [`SlotsLocked::attrs_pre_set`] began.
    #[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
    pub(crate) fn attrs_post_set(&self, start: u64, end: u64, attrs: u64) {
        // SAFETY: as in `attrs_pre_set`.
        unsafe {
            bindings::kvm_gmem_shim_attrs_post_set(self.kvm.as_ptr(), start, end, attrs as _)
        };
    }
}

/// `kvm->slots_lock`, taken by [`Kvm::slots_lock`] and released on drop.
///
/// # Invariants
///
/// The current task holds the lock, and the guard is responsible for
/// releasing it.
#[must_use = "the lock is released when the guard is dropped"]
pub(crate) struct SlotsLockGuard<'a>(SlotsLocked<'a>);

impl<'a> core::ops::Deref for SlotsLockGuard<'a> {
    type Target = SlotsLocked<'a>;

    fn deref(&self) -> &SlotsLocked<'a> {
        &self.0
    }
}

impl Drop for SlotsLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we hold the lock.
        unsafe { bindings::kvm_gmem_shim_slots_unlock(self.0.kvm.as_ptr()) };
    }
}

/// The lock that every guest_memfd's bindings change under, in addition
/// to the file's invalidate lock, and that memory errors read them under
/// instead of the invalidate lock.  One mutex for all guest_memfds: it also
/// keeps a guest_memfd's state from going away while a memory error finds
/// it through the mapping, which outlives that state.
///
/// It nests inside the invalidate lock and outside `kvm->mmu_lock`, and is
/// taken with a folio locked by memory-failure handling; nothing takes a
/// folio lock while holding it.
///
/// # Invariants
///
/// The current task holds the lock, and the guard is responsible for
/// releasing it.
#[must_use = "the lock is released when the guard is dropped"]
pub(crate) struct BindingsLockGuard {
    /// A mutex is released by the task that took it.
    _not_send: PhantomData<*mut ()>,
}

impl BindingsLockGuard {
    /// Takes the bindings lock.
    pub(crate) fn lock() -> Self {
        // SAFETY: the lock is a static mutex of the shim, taken in process
        // context.
        unsafe { bindings::kvm_gmem_shim_bindings_lock() };
        // INVARIANT: the lock was just taken, by this task.
        Self {
            _not_send: PhantomData,
        }
    }
}

impl Drop for BindingsLockGuard {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we hold the lock.
        unsafe { bindings::kvm_gmem_shim_bindings_unlock() };
    }
}

/// `kvm->mmu_lock`, held for writing.
///
/// # Invariants
///
/// The current task holds the MMU lock of `kvm`, and the guard is
/// responsible for releasing it.
#[must_use = "the lock is released when the guard is dropped"]
pub(crate) struct MmuLockGuard<'a> {
    kvm: &'a Kvm,
    /// A lock is released by the task that took it.
    _not_send: PhantomData<*mut ()>,
}

impl MmuLockGuard<'_> {
    /// `kvm_mmu_invalidate_begin()`: starts an invalidation, so that faults
    /// racing with it retry.
    pub(crate) fn invalidate_begin(&self) {
        // SAFETY: the VM is live and, by the type invariant, its MMU lock
        // is held as `kvm_mmu_invalidate_begin()` requires.
        unsafe { bindings::kvm_gmem_shim_mmu_invalidate_begin(self.kvm.as_ptr()) };
    }

    /// `kvm_mmu_invalidate_end()`: ends an invalidation begun earlier.
    pub(crate) fn invalidate_end(&self) {
        // SAFETY: as in `invalidate_begin`.
        unsafe { bindings::kvm_gmem_shim_mmu_invalidate_end(self.kvm.as_ptr()) };
    }

    /// Zaps the guest's mappings of gfns `[start, end)` of `slot`, one of
    /// the VM's memslots: the shared ones if `shared`, else the private
    /// ones (the range's attribute filter); returns whether TLBs must be
    /// flushed.
    pub(crate) fn unmap(&self, slot: &Memslot, start: u64, end: u64, shared: bool) -> bool {
        // SAFETY: the VM is live, its MMU lock is held (type invariant) and
        // `slot` is live (its type invariant).
        unsafe {
            bindings::kvm_gmem_shim_unmap(self.kvm.as_ptr(), slot.as_ptr(), start, end, shared)
        }
    }

    /// Flushes the TLBs of every vCPU of the VM.
    pub(crate) fn flush_remote_tlbs(&self) {
        // SAFETY: the VM is live.
        unsafe { bindings::kvm_gmem_shim_flush_remote_tlbs(self.kvm.as_ptr()) };
    }
}

impl Drop for MmuLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we hold the lock.
        unsafe { bindings::kvm_gmem_shim_mmu_unlock(self.kvm.as_ptr()) };
    }
}

/// A memslot, a C `struct kvm_memory_slot`.
///
/// # Invariants
///
/// A `&Memslot` only exists while the slot is live: the borrow is tied to
/// what keeps it so (the slots lock, the memslots SRCU read lock of the KVM
/// caller of an entry point, or the invalidate lock or the bindings lock
/// of a guest_memfd whose bindings hold it: KVM unbinds a slot before
/// freeing it).  Its
/// `gmem.file` is null or a guest_memfd file that [`Memslot::set_binding`]
/// stored, which the file's release clears before the file is freed.
#[repr(transparent)]
pub(crate) struct Memslot(Opaque<bindings::kvm_memory_slot>);

// SAFETY: the fields read through `&Memslot` are fixed while the slot is
// live, except `gmem.file`, which is read and written with READ_ONCE and
// WRITE_ONCE.
unsafe impl Sync for Memslot {}
// SAFETY: a memslot is not tied to a thread.
unsafe impl Send for Memslot {}

impl Memslot {
    /// Borrows a memslot an entry point received.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a memslot that stays live for the lifetime `'a`,
    /// and its `gmem.file` must be as the type invariant says.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::kvm_memory_slot) -> &'a Memslot {
        // SAFETY: guaranteed by the caller; `Memslot` is
        // `repr(transparent)`.
        unsafe { &*ptr.cast() }
    }

    fn as_ptr(&self) -> *mut bindings::kvm_memory_slot {
        self.0.get()
    }

    /// The first gfn of the slot.
    pub(crate) fn base_gfn(&self) -> u64 {
        // SAFETY: the slot is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_slot_base_gfn(self.as_ptr()) }
    }

    /// The number of pages in the slot.
    pub(crate) fn npages(&self) -> u64 {
        // SAFETY: the slot is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_slot_npages(self.as_ptr()) as u64 }
    }

    /// The page offset of the slot in its guest_memfd.
    pub(crate) fn pgoff(&self) -> u64 {
        // SAFETY: the slot is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_slot_pgoff(self.as_ptr()) as u64 }
    }

    /// Whether the slot may hold private memory.
    #[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
    pub(crate) fn can_be_private(&self) -> bool {
        // SAFETY: the slot is live (type invariant).
        unsafe { bindings::kvm_gmem_shim_slot_can_be_private(self.as_ptr()) }
    }

    /// A reference on the slot's guest_memfd file, unless the slot is
    /// unbound or the file is being released (C's `kvm_gmem_get_file()`).
    pub(crate) fn gmem_file(&self) -> Option<ARef<File>> {
        // SAFETY: the slot is live, and its file pointer is null or a
        // guest_memfd file that the file's release clears before the file
        // is freed (type invariant), which is what `get_active` needs.
        unsafe { File::get_active(bindings::kvm_gmem_shim_slot_file_slot(self.as_ptr())) }
    }

    /// Whether the slot has a guest_memfd file (`READ_ONCE`), possibly one
    /// being released.
    pub(crate) fn is_bound(&self) -> bool {
        // SAFETY: the slot is live (type invariant).
        !unsafe { bindings::kvm_gmem_shim_slot_file(self.as_ptr()) }.is_null()
    }

    /// Whether the slot is bound to `file` (`READ_ONCE`).
    pub(crate) fn is_bound_to(&self, file: &LocalFile) -> bool {
        // SAFETY: the slot is live (type invariant).
        ptr::eq(
            unsafe { bindings::kvm_gmem_shim_slot_file(self.as_ptr()) },
            file.as_ptr(),
        )
    }

    /// The mapping of the slot's guest_memfd file, reached through the
    /// slot's file pointer without a reference on the file: for a file
    /// whose last reference is gone and whose release has not run yet.
    ///
    /// Only the mapping is handed out, never the file: its count may be
    /// zero, and a `&File` or `&LocalFile` promises a reference.
    ///
    /// # Safety
    ///
    /// The caller holds the VM's slots lock for the lifetime `'a`.  The
    /// release of a guest_memfd takes that lock before it clears the
    /// slot's file pointer, and the VFS frees the file and lets its inode
    /// go only after the release.
    pub(crate) unsafe fn file_mapping<'a>(&self) -> Option<&'a Mapping> {
        // SAFETY: the slot is live (type invariant); a non-null file
        // pointer is a guest_memfd file, valid until its release.
        let mapping = unsafe { bindings::kvm_gmem_shim_slot_file_mapping(self.as_ptr()) };
        // SAFETY: the file's release cannot run while the caller holds the
        // slots lock, so the file, its inode and the inode's mapping stay
        // valid for `'a`.
        (!mapping.is_null()).then(|| unsafe { Mapping::from_raw(mapping) })
    }

    /// Records that the new slot is bound to `file` from file page `pgoff`.
    pub(crate) fn set_binding(&self, file: &LocalFile, pgoff: u64) {
        // SAFETY: the slot is live (type invariant); `file` is a
        // guest_memfd (the caller checked), which clears the pointer in its
        // release.
        unsafe {
            bindings::kvm_gmem_shim_slot_set_binding(self.as_ptr(), file.as_ptr(), pgoff as _)
        };
    }

    /// Marks the new slot as guest_memfd-only (`KVM_MEMSLOT_GMEM_ONLY`):
    /// KVM then takes its shared pages from the guest_memfd too.
    ///
    /// # Safety
    ///
    /// The slot is being created: KVM has not published it yet, so nobody
    /// else reads its flags.
    pub(crate) unsafe fn set_gmem_only(&self) {
        // SAFETY: the slot is live (type invariant) and not yet visible to
        // anyone else (the caller guarantees it), so its flags may be
        // written.
        unsafe { bindings::kvm_gmem_shim_slot_set_gmem_only(self.as_ptr()) };
    }

    /// Clears the slot's file pointer, keeping its offset.
    pub(crate) fn clear_file(&self) {
        // SAFETY: the slot is live (type invariant); a null file keeps the
        // invariant.
        unsafe {
            bindings::kvm_gmem_shim_slot_set_binding(
                self.as_ptr(),
                ptr::null_mut(),
                self.pgoff() as _,
            )
        };
    }
}

/// The architecture's per-page callback of `kvm_gmem_populate()` with its
/// arguments: copies (and encrypts) a source page into a guest page.
///
/// # Invariants
///
/// `post` is not `None`, and may be called with the VM of the populate
/// call, `src` advanced by whole pages (or null), and `opaque`.
#[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
pub(crate) struct PostPopulate {
    post: bindings::kvm_gmem_populate_cb,
    src: *mut c_void,
    opaque: *mut c_void,
}

#[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
impl PostPopulate {
    /// Wraps the callback `kvm_gmem_populate()` received; `None` if it is
    /// null.
    ///
    /// # Safety
    ///
    /// `post` must be safe to call with the VM being populated, `src`
    /// advanced page by page (or null) and `opaque`, as the architecture
    /// code that passes them promises.
    pub(crate) unsafe fn new(
        post: bindings::kvm_gmem_populate_cb,
        src: *mut c_void,
        opaque: *mut c_void,
    ) -> Option<Self> {
        // INVARIANT: checked here, and guaranteed by the caller.
        post.is_some().then_some(Self { post, src, opaque })
    }

    /// Calls the callback for `1 << order` pages at `gfn`, backed by `pfn`,
    /// whose source is page `page` of the source buffer.
    pub(crate) fn call(&self, kvm: &Kvm, gfn: u64, pfn: u64, page: u64, order: u32) -> Result {
        let Some(post) = self.post else {
            // Not reached: the type invariant says it is set.
            return Err(EINVAL);
        };
        let src = if self.src.is_null() {
            ptr::null_mut()
        } else {
            // A user pointer: only the callback dereferences it, with
            // copy_from_user().
            self.src.wrapping_byte_add(page as usize * PAGE_SIZE)
        };
        // SAFETY: by the type invariant the callback may be called with
        // these arguments. CAST: orders are small.
        to_result(unsafe { post(kvm.as_ptr(), gfn, pfn, src, order as i32, self.opaque) })
    }
}

/// Whether the warning about a failed prepare hook may be printed now: C
/// prints it with `pr_warn_ratelimited()`, whose per-call-site state is a
/// C macro.
pub(crate) fn prepare_warn_ratelimit() -> bool {
    // SAFETY: only updates the call site's static rate-limit state, under
    // its own lock.
    unsafe { bindings::kvm_gmem_shim_prepare_warn_ratelimit() }
}

/// The architecture's hook run when guest_memfd frees pages
/// `[start, end)` (SEV-SNP: return them to the hypervisor state).
#[cfg(CONFIG_HAVE_KVM_ARCH_GMEM_INVALIDATE)]
pub(crate) fn arch_invalidate(start_pfn: u64, end_pfn: u64) {
    // SAFETY: the hook only looks at the pfns, which belong to a folio
    // being freed by the caller.
    unsafe { bindings::kvm_gmem_shim_arch_invalidate(start_pfn, end_pfn) };
}

/// The shared memory policy of a guest_memfd's inode (`fs.c`), which
/// `mbind()` on a mapping of the file sets.
///
/// # Safety
///
/// `inode` is the inode of a guest_memfd: one of the guest_memfd
/// filesystem's.
pub(crate) unsafe fn inode_policy(inode: &Inode) -> &SharedPolicy {
    // SAFETY: guest_memfd inodes are `struct kvm_gmem_inode`s (the caller
    // guarantees it is one), whose policy `fs.c` initialises when it
    // allocates them and frees with them: it lives as long as `inode`.
    unsafe { SharedPolicy::from_raw(bindings::kvm_gmem_fs_inode_policy(inode.as_ptr())) }
}

/// A memslot in a guest_memfd's bindings: a pointer the bindings do not
/// own.
///
/// # Invariants
///
/// Points to a memslot.  While the value is in the bindings of a
/// guest_memfd, the slot is live: KVM unbinds a slot, under the
/// guest_memfd's invalidate lock and the bindings lock
/// ([`BindingsLockGuard`]), before freeing it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct BoundSlot(UnownedPtr<Memslot>);

impl BoundSlot {
    /// The bindings entry of `slot`.
    pub(crate) fn new(slot: &Memslot) -> Self {
        Self(UnownedPtr::from(slot))
    }

    /// Whether this is the entry of `slot`.
    pub(crate) fn is(self, slot: &Memslot) -> bool {
        ptr::eq(self.0.as_non_null().as_ptr(), slot)
    }

    /// The memslot.
    ///
    /// # Safety
    ///
    /// The entry was read from the bindings of a guest_memfd whose
    /// invalidate lock, or the bindings lock, the caller holds for the
    /// lifetime `'a`.
    pub(crate) unsafe fn get<'a>(self) -> &'a Memslot {
        // SAFETY: by the type invariant the slot is live while it is in
        // the bindings, which change only under both locks, one of which
        // the caller holds.
        unsafe { self.0.as_non_null().as_ref() }
    }
}

impl ForeignOwnable for BoundSlot {
    type Borrowed<'a> = BoundSlot;

    fn into_foreign(self) -> *const c_void {
        self.0.into_foreign()
    }

    unsafe fn borrow<'a>(ptr: *const c_void) -> Self::Borrowed<'a> {
        // SAFETY: the caller passes on the requirements of `borrow`.
        Self(unsafe { UnownedPtr::borrow(ptr) })
    }

    unsafe fn from_foreign(ptr: *const c_void) -> Self {
        // SAFETY: the caller passes on the requirements of `from_foreign`.
        Self(unsafe { UnownedPtr::from_foreign(ptr) })
    }
}

// SAFETY: the conversions are those of `UnownedPtr`, which is a
// `CopyEntry`.
unsafe impl CopyEntry for BoundSlot {}
