// SPDX-License-Identifier: GPL-2.0

//! The C boundary: the entry points KVM calls (declared in
//! `include/linux/kvm_gmem.h`), the file, inode and address-space operations
//! of a guest_memfd, and the inode set-up that needs raw bindings.
//!
//! Errors become negative errnos here and nowhere else.

use core::{
    ffi::c_void,
    ptr::{self, NonNull},
};
use kernel::{
    alloc::{flags::GFP_HIGHUSER, KBox},
    bindings, c_str,
    ffi::{c_int, c_long},
    filemap::Mapping,
    folio::Folio,
    fs::file::{self, flags, File, FileOperations},
    prelude::*,
    types::ARef,
    warn_on,
};

#[cfg(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)]
use crate::attributes;
use crate::{
    bind, fault,
    gmem_file::GmemFile,
    kvm::{Kvm, Memslot},
    populate,
};

/// `struct file_operations` of a guest_memfd: open, release and fallocate;
/// everything else is refused by the VFS (read/write `EINVAL`, mmap
/// `ENODEV`, seek `ESPIPE`).
static GMEM_FOPS: FileOperations = FileOperations::new(bindings::file_operations {
    open: Some(bindings::generic_file_open),
    release: Some(gmem_release),
    fallocate: Some(gmem_fallocate),
    // SAFETY: all-zero is a valid `file_operations`: no owner and no other
    // methods.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
});

/// `struct address_space_operations` of a guest_memfd: no dirty tracking,
/// no migration, memory errors invalidate, freeing runs the arch hook.
static GMEM_AOPS: bindings::address_space_operations = bindings::address_space_operations {
    dirty_folio: Some(bindings::noop_dirty_folio),
    migrate_folio: Some(gmem_migrate_folio),
    error_remove_folio: Some(gmem_error_remove_folio),
    #[cfg(CONFIG_HAVE_KVM_ARCH_GMEM_INVALIDATE)]
    free_folio: Some(gmem_free_folio),
    // SAFETY: all-zero is a valid `address_space_operations`.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
};

/// `struct inode_operations` of a guest_memfd: stat works, changing
/// attributes (truncate, chmod) does not.
static GMEM_IOPS: bindings::inode_operations = bindings::inode_operations {
    getattr: Some(gmem_getattr),
    setattr: Some(gmem_setattr),
    // SAFETY: all-zero is a valid `inode_operations`.
    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
};

/// Whether `file` is a guest_memfd.
pub(crate) fn is_gmem_file(file: &File) -> bool {
    ptr::eq(file.fops(), GMEM_FOPS.as_raw())
}

/// Creates the anonymous-inode file of a new guest_memfd of `size` bytes
/// whose state is `gmem`, and sets its inode up.
pub(crate) fn create_file(gmem: *mut GmemFile, size: i64, gmem_flags: u64) -> Result<ARef<File>> {
    // SAFETY: the callbacks of `GMEM_FOPS` expect a `GmemFile` in the
    // private data, which stays valid until the file's release takes it
    // back; the owner is KVM's module, set by `kvm_gmem_init()`.
    let file = unsafe {
        file::anon_inode_create_getfile(
            c_str!("[kvm-gmem]"),
            GMEM_FOPS.as_raw(),
            gmem.cast(),
            flags::O_RDWR,
        )
    }?;
    file.set_flags(flags::O_LARGEFILE);

    let inode = file.inode_raw();
    // SAFETY: the inode was just created for this file and nobody else
    // uses it yet; its mapping is the file's mapping.
    unsafe {
        (*inode).i_private = gmem_flags as usize as *mut c_void;
        (*inode).i_op = &GMEM_IOPS;
        (*(*inode).i_mapping).a_ops = &GMEM_AOPS;
        (*(*inode).i_mapping).i_private_data = gmem.cast();
        (*inode).i_mode |= bindings::S_IFREG as u16;
        (*inode).i_size = size;
    }
    let mapping = file.mapping();
    mapping.set_gfp_mask(GFP_HIGHUSER);
    mapping.set_inaccessible();
    // Unmovable mappings are supposed to be unevictable as well.
    warn_on!(!mapping.unevictable());
    Ok(file)
}

/// Forgets the `GmemFile` a mapping points to; the caller holds the
/// invalidate lock for writing.
pub(crate) fn detach_mapping(mapping: &Mapping) {
    // SAFETY: the mapping is live and its private data is ours; writers
    // hold the invalidate lock exclusively, readers hold it shared.
    unsafe { (*mapping.as_raw()).i_private_data = ptr::null_mut() };
}

/// The `GmemFile` of a mapping, if its file is not released.  The caller
/// holds the invalidate lock.
fn gmem_of_mapping(mapping: &Mapping) -> Option<&GmemFile> {
    // SAFETY: the mapping is live; its private data is either null or a
    // `GmemFile` that release detaches under the invalidate lock, which the
    // caller holds.
    let p = unsafe { (*mapping.as_raw()).i_private_data };
    // SAFETY: see above.
    NonNull::new(p.cast::<GmemFile>()).map(|p| unsafe { p.as_ref() })
}

/// `cond_resched()`, a macro.
pub(crate) fn cond_resched() {
    // SAFETY: called from process context without spinlocks held.
    unsafe { bindings::kvm_gmem_shim_cond_resched() };
}

// ---------------------------------------------------------------------------
// Entry points.

/// Sets the owner module of guest_memfd files.
///
/// # Safety
///
/// `module` is KVM's module (or null when KVM is built in); KVM calls this
/// once at init, before any guest_memfd exists.
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_init(module: *mut bindings::module) {
    // SAFETY: KVM calls this once at init, before any guest_memfd exists,
    // so the table is not in use yet.
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
    let Some(kvm) = NonNull::new(kvm) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller passes a live VM.
    let kvm = unsafe { Kvm::from_raw(kvm) };
    // SAFETY: the caller passes the ioctl argument.
    let (size, flags) = unsafe { ((*args).size as i64, (*args).flags) };
    match GmemFile::create(kvm, size, flags) {
        Ok(fd) => fd as c_int,
        Err(e) => e.to_errno(),
    }
}

/// Binds a new guest_memfd memslot; 0 or a negative errno.
///
/// # Safety
///
/// `kvm` is a live VM, `slot` a new memslot of it; the caller holds
/// `slots_lock`.
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_bind(
    kvm: *mut bindings::kvm,
    slot: *mut bindings::kvm_memory_slot,
    fd: u32,
    offset: u64,
) -> c_int {
    let (Some(kvm), Some(slot)) = (NonNull::new(kvm), NonNull::new(slot)) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller passes a live VM and one of its new memslots.
    let (kvm, slot) = unsafe { (Kvm::from_raw(kvm), Memslot::from_raw(slot)) };
    match bind::bind(kvm, slot, fd, offset) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Unbinds a guest_memfd memslot that is being deleted.
///
/// # Safety
///
/// `slot` is a live memslot; the caller holds `slots_lock`.
#[no_mangle]
pub unsafe extern "C" fn kvm_gmem_unbind(slot: *mut bindings::kvm_memory_slot) {
    if let Some(slot) = NonNull::new(slot) {
        // SAFETY: the caller passes a live memslot.
        bind::unbind(unsafe { Memslot::from_raw(slot) });
    }
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
    let (Some(kvm), Some(slot)) = (NonNull::new(kvm), NonNull::new(slot)) else {
        return EFAULT.to_errno();
    };
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
    let (Some(kvm), Some(post)) = (NonNull::new(kvm), post_populate) else {
        return EINVAL.to_errno() as c_long;
    };
    // SAFETY: the caller passes a live VM.
    let kvm = unsafe { Kvm::from_raw(kvm) };
    // SAFETY: the caller guarantees the callback contract.
    match unsafe { populate::populate(kvm, gfn, src, npages as i64, post, opaque) } {
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
    attributes::supported(NonNull::new(kvm).map(|kvm| unsafe { Kvm::from_raw(kvm) }))
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
    let (Some(kvm), false) = (NonNull::new(kvm), attrs.is_null()) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the caller passes a live VM.
    let kvm = unsafe { Kvm::from_raw(kvm) };
    // SAFETY: the caller passes the ioctl argument.
    let a = unsafe { &*attrs };
    match attributes::set(kvm, a.address, a.size, a.attributes, a.flags) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
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
    let Some(kvm) = NonNull::new(kvm) else {
        return false;
    };
    // SAFETY: the caller passes a live VM.
    let kvm = unsafe { Kvm::from_raw(kvm) };
    attributes::range_has(kvm, start, end, mask, attrs)
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
    let file = unsafe { File::from_raw(file) };
    let gmem = file.private_data().cast::<GmemFile>();
    // SAFETY: `private_data` holds the pinned `GmemFile` created with the
    // file, which only this release takes back.
    let gmem = unsafe { Pin::new_unchecked(KBox::from_raw(gmem)) };
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
    let file = unsafe { File::from_raw(file) };
    let Some(gmem) = GmemFile::of(file) else {
        return EINVAL.to_errno() as c_long;
    };
    match gmem.fallocate(file, mode, offset, len) {
        Ok(()) => 0,
        Err(e) => e.to_errno() as c_long,
    }
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
/// folio.  Zap its mappings; the page stays, and a later fault on it gets
/// `EHWPOISON`.  What to do about it is userspace's decision.
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
    let _lock = mapping.invalidate_lock_shared();
    if let Some(gmem) = gmem_of_mapping(mapping) {
        let start = folio.index();
        let end = start + folio.nr_pages();
        gmem.invalidate_begin(start, end);
        gmem.invalidate_end(start, end);
    }
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
