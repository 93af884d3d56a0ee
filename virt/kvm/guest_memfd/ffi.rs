// SPDX-License-Identifier: GPL-2.0

//! The C boundary: the entry points KVM calls (declared in
//! `include/linux/kvm_gmem.h`) and the file, inode and address-space
//! operations of a guest_memfd.
//!
//! Each function here only turns raw arguments into the typed objects of
//! [`crate::kvm`] and the kernel crate, calls the core, and turns its
//! `Result` into what C expects: errors become negative errnos here and
//! nowhere else.  Nothing else in the crate imports this module.

use kernel::{
    bindings,
    ffi::{c_int, c_long},
    filemap::{AddressSpaceOperations, Mapping},
    folio::Folio,
    fs::{
        file::{FileOperations, InodeSource, LocalFile},
        inode::InodeOperations,
    },
    mm::{
        fault::{VmFault, VmOperations},
        virt::VmaNew,
    },
    prelude::*,
    warn_on,
};

#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
use crate::attributes;
use crate::{
    bind, fault,
    gmem_file::{GmemBox, GmemFile, Operations},
    host_map,
    kvm::{Kvm, Memslot},
    range,
};
#[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
use crate::{kvm::PostPopulate, populate};
#[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
use core::ffi::c_void;

/// Checks at compile time that the Rust definition of a C entry point has
/// exactly the type of its prototype in `include/linux/kvm_gmem.h`, as
/// bindgen read it: the two branches must coerce to one function pointer
/// type.
macro_rules! matches_c_prototype {
    ($($name:ident),* $(,)?) => {
        $(
            const _: () = {
                let _ = if true { bindings::$name } else { $name };
            };
        )*
    };
}

matches_c_prototype!(
    kvm_gmem_init,
    kvm_gmem_create,
    kvm_gmem_bind,
    kvm_gmem_unbind,
    kvm_gmem_get_pfn,
    kvm_gmem_supported_flags,
);
#[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
matches_c_prototype!(kvm_gmem_populate);
#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
matches_c_prototype!(
    kvm_gmem_supported_mem_attributes,
    kvm_gmem_set_mem_attributes,
);

/// The result of a C entry point that returns 0 or a negative errno.
fn to_c_int(r: Result) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

// ---------------------------------------------------------------------------
// Operations tables.

/// `struct file_operations` of a guest_memfd: open, release, fallocate and
/// mmap (which only the 6.18 flags allow); everything else is refused by
/// the VFS (read/write `EINVAL`, seek `ESPIPE`).
static GMEM_FOPS: FileOperations = FileOperations::new(bindings::file_operations {
    open: Some(bindings::generic_file_open),
    release: Some(gmem_release),
    fallocate: Some(gmem_fallocate),
    mmap: Some(gmem_mmap),
    // SAFETY: all-zero is a valid `file_operations`: no owner and no other
    // methods.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});

/// `struct address_space_operations` of a guest_memfd: no dirty tracking,
/// no migration, memory errors invalidate, freeing runs the arch hook.
static GMEM_AOPS: AddressSpaceOperations =
    AddressSpaceOperations::new(bindings::address_space_operations {
        dirty_folio: Some(bindings::noop_dirty_folio),
        migrate_folio: Some(gmem_migrate_folio),
        error_remove_folio: Some(gmem_error_remove_folio),
        #[cfg(CONFIG_HAVE_KVM_ARCH_GMEM_INVALIDATE)]
        free_folio: Some(gmem_free_folio),
        // SAFETY: all-zero is a valid `address_space_operations`.
        ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
    });

/// `struct inode_operations` of a guest_memfd: stat works, changing
/// attributes (truncate, chmod) does not.
static GMEM_IOPS: InodeOperations = InodeOperations::new(bindings::inode_operations {
    getattr: Some(gmem_getattr),
    setattr: Some(gmem_setattr),
    // SAFETY: all-zero is a valid `inode_operations`.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});

/// `struct vm_operations_struct` of a host mapping of a guest_memfd: the
/// page fault, and the NUMA policy of the file's pages (`mbind()` and
/// `get_mempolicy()`), which the inode keeps (`fs.c`).
static GMEM_VM_OPS: VmOperations = VmOperations::new(bindings::vm_operations_struct {
    fault: Some(gmem_fault),
    #[cfg(CONFIG_NUMA)]
    set_policy: Some(bindings::kvm_gmem_fs_set_policy),
    #[cfg(CONFIG_NUMA)]
    get_policy: Some(bindings::kvm_gmem_fs_get_policy),
    // SAFETY: all-zero is a valid `vm_operations_struct`: no other methods.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});

/// Where guest_memfd files get their inodes: the guest_memfd
/// pseudo-filesystem (`fs.c`).
// SAFETY: `kvm_gmem_fs_getfile()` has the contract of
// `anon_inode_create_getfile()`, and is part of KVM, as this crate is.
static GMEM_INODES: InodeSource = unsafe { InodeSource::new(bindings::kvm_gmem_fs_getfile) };

/// The tables, for the core.
static OPS: Operations = Operations {
    file: &GMEM_FOPS,
    inode: &GMEM_IOPS,
    mapping: &GMEM_AOPS,
    inodes: &GMEM_INODES,
};

// ---------------------------------------------------------------------------
// Entry points.

/// Sets the owner module of guest_memfd files.
///
/// # Safety
///
/// `module` is the module of the KVM vendor module being loaded (or null
/// when it is built in): `kvm_init()` calls this each time one is loaded,
/// before it registers `/dev/kvm`.
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_init(module: *mut bindings::module) {
    // SAFETY: no guest_memfd is open: each holds a reference on a VM, and
    // each VM one on the vendor module of `/dev/kvm` (`kvm_create_vm()`),
    // so the previous vendor module, if any, could only be unloaded once
    // they were all gone; and no new one can be created before `/dev/kvm`
    // is registered, after this call.
    unsafe { GMEM_FOPS.set_owner(module) };
}

/// `KVM_CREATE_GUEST_MEMFD`: the new fd, or a negative errno.
///
/// # Safety
///
/// `kvm` is a live VM and `args` points to the copied-in ioctl argument.
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_create(
    kvm: *mut bindings::kvm,
    args: *mut bindings::kvm_create_guest_memfd,
) -> c_int {
    // SAFETY: the caller passes a live VM and the ioctl argument.
    let (kvm, args) = unsafe { (Kvm::from_raw(kvm), &*args) };
    match GmemFile::create(kvm, args.size as i64, args.flags, &OPS) {
        // CAST: file descriptors fit in an int.
        Ok(fd) => fd as c_int,
        Err(e) => e.to_errno(),
    }
}

/// `KVM_CAP_GUEST_MEMFD_FLAGS`: the `GUEST_MEMFD_FLAG_*` valid for `kvm`, or
/// supported at all when `kvm` is null (the capability asked of `/dev/kvm`).
///
/// # Safety
///
/// `kvm` is a live VM or null.
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_supported_flags(kvm: *mut bindings::kvm) -> u64 {
    // SAFETY: the caller passes a live VM or null.
    let kvm = (!kvm.is_null()).then(|| unsafe { Kvm::from_raw(kvm) });
    range::supported_flags(kvm.map(Kvm::has_private_mem))
}

/// Binds a new guest_memfd memslot; 0 or a negative errno.
///
/// # Safety
///
/// `kvm` is a live VM, `slot` a new memslot of it that KVM has not
/// published yet; the caller holds `slots_lock`.
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_bind(
    kvm: *mut bindings::kvm,
    slot: *mut bindings::kvm_memory_slot,
    fd: u32,
    offset: u64,
) -> c_int {
    // SAFETY: the caller passes a live VM and one of its new memslots,
    // which has no guest_memfd yet.
    let (kvm, slot) = unsafe { (Kvm::from_raw(kvm), Memslot::from_raw(slot)) };
    // SAFETY: the caller passes a memslot it has not published yet.
    to_c_int(unsafe { bind::bind(kvm, slot, fd, offset, &OPS) })
}

/// Unbinds a guest_memfd memslot that is being deleted.
///
/// # Safety
///
/// `slot` is a live memslot; the caller holds `slots_lock`.
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_unbind(slot: *mut bindings::kvm_memory_slot) {
    // SAFETY: the caller passes a live memslot and holds `slots_lock`.
    unsafe { bind::unbind(Memslot::from_raw(slot)) };
}

/// The pfn backing a private gfn; 0 or a negative errno.  On success the
/// caller owns a reference on the page.
///
/// # Safety
///
/// `kvm` is a live VM, `slot` one of its memslots, read under the memslots
/// SRCU; `pfn` is writable; `max_order` is writable or null.
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_get_pfn(
    kvm: *mut bindings::kvm,
    slot: *mut bindings::kvm_memory_slot,
    gfn: u64,
    pfn: *mut u64,
    max_order: *mut c_int,
) -> c_int {
    // SAFETY: the caller passes a live VM and one of its memslots.
    let (kvm, slot) = unsafe { (Kvm::from_raw(kvm), Memslot::from_raw(slot)) };
    match fault::get_pfn(kvm, slot, gfn) {
        Ok((p, order)) => {
            // SAFETY: the caller passes writable outputs.
            unsafe {
                *pfn = p as u64;
                if !max_order.is_null() {
                    *max_order = order as c_int;
                }
            }
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Populates private memory before launch; pages populated or a negative
/// errno.
///
/// # Safety
///
/// `kvm` is a live VM whose `slots_lock` the caller holds; `post_populate`
/// may be called with `kvm`, `src` (advanced page by page) and `opaque`.
#[cfg(CONFIG_KVM_GENERIC_PRIVATE_MEM)]
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_populate(
    kvm: *mut bindings::kvm,
    gfn: u64,
    src: *mut c_void,
    npages: c_long,
    post_populate: bindings::kvm_gmem_populate_cb,
    opaque: *mut c_void,
) -> c_long {
    // SAFETY: the caller passes a live VM whose slots lock it holds.
    let slots = unsafe { Kvm::from_raw(kvm).slots_locked() };
    // SAFETY: the caller guarantees the callback contract.
    let Some(post) = (unsafe { PostPopulate::new(post_populate, src, opaque) }) else {
        return EINVAL.to_errno() as c_long;
    };
    match populate::populate(&slots, gfn, npages as i64, &post) {
        // CAST: at most `npages` pages.
        Ok(n) => n as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// `KVM_CAP_MEMORY_ATTRIBUTES`: the attributes `kvm` supports, or that
/// some VM may support when `kvm` is null (the system ioctl).
///
/// # Safety
///
/// `kvm` is null or a live VM.
#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_supported_mem_attributes(kvm: *mut bindings::kvm) -> u64 {
    // SAFETY: the caller passes null or a live VM.
    attributes::supported((!kvm.is_null()).then(|| unsafe { Kvm::from_raw(kvm) }))
}

/// `KVM_SET_MEMORY_ATTRIBUTES`: 0 or a negative errno.
///
/// # Safety
///
/// `kvm` is a live VM and `attrs` points to the copied-in ioctl argument.
#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_set_mem_attributes(
    kvm: *mut bindings::kvm,
    attrs: *const bindings::kvm_memory_attributes,
) -> c_int {
    // SAFETY: the caller passes a live VM and the ioctl argument.
    let (kvm, a) = unsafe { (Kvm::from_raw(kvm), &*attrs) };
    to_c_int(attributes::set(
        kvm,
        a.address,
        a.size,
        a.attributes,
        a.flags,
    ))
}

/// Whether every gfn of `[start, end)` has attributes whose bits in `mask`
/// are `attrs`; replaces the C function of `virt/kvm/kvm_main.c`.  `mask`
/// and `attrs` are `unsigned long`, which memory attributes (64-bit only)
/// make `u64`.
///
/// # Safety
///
/// `kvm` is a live VM.
#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
#[no_mangle]
pub unsafe extern "C" fn kvm_range_has_memory_attributes(
    kvm: *mut bindings::kvm,
    start: u64,
    end: u64,
    mask: u64,
    attrs: u64,
) -> bool {
    // SAFETY: the caller passes a live VM.
    attributes::range_has(unsafe { Kvm::from_raw(kvm) }, start, end, mask, attrs)
}

// ---------------------------------------------------------------------------
// File, inode and address-space operations.

/// `file_operations::release`: the last reference to the file is gone.
///
/// # Safety
///
/// Called by the VFS, once, with a guest_memfd file whose last reference
/// was just dropped.
unsafe extern "C" fn gmem_release(
    _inode: *mut bindings::inode,
    file: *mut bindings::file,
) -> c_int {
    // SAFETY: the VFS passes the file being released; it is still valid.
    let file = unsafe { LocalFile::from_raw_file(file) };
    // SAFETY: the private data is the `GmemBox` the file was created with,
    // which only this release takes back.
    let gmem = unsafe { file.take_private_data::<GmemBox>() };
    gmem.release(file.mapping());
    0
}

/// `file_operations::fallocate`.
///
/// # Safety
///
/// Called by the VFS with a guest_memfd file it holds a reference on.
unsafe extern "C" fn gmem_fallocate(
    file: *mut bindings::file,
    mode: c_int,
    offset: bindings::loff_t,
    len: bindings::loff_t,
) -> c_long {
    // SAFETY: the VFS passes a file it holds a reference on.
    let file = unsafe { LocalFile::from_raw_file(file) };
    // SAFETY: the VFS only calls our fallocate for guest_memfd files.
    let gmem = unsafe { GmemFile::of_gmem_file(file) };
    // SAFETY: `gmem` is the state of `file`.
    to_c_int(unsafe { gmem.fallocate(file, mode, offset, len) }) as c_long
}

/// `file_operations::mmap`: a host mapping of a guest_memfd.
///
/// # Safety
///
/// Called by `mmap()` with a guest_memfd file it holds a reference on and
/// the new vma mapping it, under the mmap lock held for writing.
unsafe extern "C" fn gmem_mmap(
    file: *mut bindings::file,
    vma: *mut bindings::vm_area_struct,
) -> c_int {
    // SAFETY: `mmap()` passes a file it holds a reference on and the vma
    // it is setting up, under the mmap lock.
    let (file, vma) = unsafe { (LocalFile::from_raw_file(file), VmaNew::from_raw(vma)) };
    // SAFETY: `mmap()` only calls our mmap for guest_memfd files.
    let gmem = unsafe { GmemFile::of_gmem_file(file) };
    // SAFETY: the vma maps this guest_memfd; `gmem_fault` expects that.
    to_c_int(unsafe { host_map::mmap(gmem, vma, &GMEM_VM_OPS) })
}

/// `vm_operations_struct::fault`: a host fault on a guest_memfd mapping.
///
/// # Safety
///
/// Called by the fault path for a vma that `gmem_mmap` set up, which it
/// keeps alive (with its file) during the call.
unsafe extern "C" fn gmem_fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
    // SAFETY: the fault path passes the fault it handles, on a file
    // mapping that it keeps alive.
    let vmf = unsafe { VmFault::from_raw(vmf) };
    // SAFETY: only `gmem_mmap` installs this callback, on mappings of
    // guest_memfd files; the mapping holds a reference on the file, so its
    // release has not run.
    let gmem = unsafe { GmemFile::of_gmem_file(vmf.file()) };
    // SAFETY: the fault is on a mapping of that file.
    unsafe { host_map::fault(gmem, vmf) }.as_raw()
}

/// `address_space_operations::migrate_folio`: guest_memfd pages never move.
extern "C" fn gmem_migrate_folio(
    _mapping: *mut bindings::address_space,
    _dst: *mut bindings::folio,
    _src: *mut bindings::folio,
    _mode: bindings::migrate_mode,
) -> c_int {
    // The mapping is unmovable: migration never picks its folios.
    warn_on!(true);
    EINVAL.to_errno()
}

/// `address_space_operations::error_remove_folio`: a memory error hit a
/// folio of a guest_memfd.
///
/// # Safety
///
/// Called by memory-failure handling with a live guest_memfd mapping and
/// one of its folios, on which it holds a reference.
unsafe extern "C" fn gmem_error_remove_folio(
    mapping: *mut bindings::address_space,
    folio: *mut bindings::folio,
) -> c_int {
    // SAFETY: memory-failure handling passes a live mapping and one of its
    // folios, on which it holds a reference.
    let (mapping, folio) = unsafe { (Mapping::from_raw(mapping), Folio::from_raw(folio)) };
    // SAFETY: memory-failure handling calls the callbacks of the folio's
    // own mapping, a guest_memfd's.
    unsafe { GmemFile::memory_failure(mapping, folio) };
    MF_DELAYED
}

/// `MF_DELAYED` from `enum mf_result`.
const MF_DELAYED: c_int = bindings::mf_result_MF_DELAYED as c_int;

/// `address_space_operations::free_folio`: tell the architecture the pages
/// go back to the host.
///
/// # Safety
///
/// Called by the page cache with a folio of a guest_memfd it is freeing.
#[cfg(CONFIG_HAVE_KVM_ARCH_GMEM_INVALIDATE)]
unsafe extern "C" fn gmem_free_folio(folio: *mut bindings::folio) {
    // SAFETY: the page cache passes the folio it is freeing.
    let folio = unsafe { Folio::from_raw(folio) };
    let pfn = folio.pfn() as u64;
    crate::kvm::arch_invalidate(pfn, pfn + (1u64 << folio.order()));
}

/// `inode_operations::getattr`: plain stat of the inode.
///
/// # Safety
///
/// Called by the VFS with a valid path to a guest_memfd inode and a stat
/// buffer to fill.
unsafe extern "C" fn gmem_getattr(
    idmap: *mut bindings::mnt_idmap,
    path: *const bindings::path,
    stat: *mut bindings::kstat,
    request_mask: u32,
    _query_flags: u32,
) -> c_int {
    // SAFETY: the VFS passes a valid path whose dentry has our inode, and a
    // stat buffer to fill.
    unsafe {
        let inode = (*(*path).dentry).d_inode;
        bindings::generic_fillattr(idmap, request_mask, inode, stat);
    }
    0
}

/// `inode_operations::setattr`: a guest_memfd's size and mode are fixed.
extern "C" fn gmem_setattr(
    _idmap: *mut bindings::mnt_idmap,
    _dentry: *mut bindings::dentry,
    _attr: *mut bindings::iattr,
) -> c_int {
    EINVAL.to_errno()
}
