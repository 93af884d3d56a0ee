// SPDX-License-Identifier: GPL-2.0

//! A guest_memfd file: its creation, `fallocate()`, release, memory
//! errors, and the invalidation of the guest mappings it backs.

use kernel::{
    alloc::{
        flags::{GFP_HIGHUSER, GFP_KERNEL},
        KBox,
    },
    c_str,
    filemap::{AddressSpaceOperations, Mapping},
    folio::Folio,
    fs::{
        file::{
            create_getfile, flags, FileDescriptorReservation, FileOperations, InodeSource,
            LocalFile,
        },
        inode::InodeOperations,
    },
    prelude::*,
    task,
    types::ARef,
    warn_on,
    xarray::{AllocKind, XArray},
};

use crate::{
    kvm::{BindingsLockGuard, BoundSlot, Kvm},
    placement,
    range::{self, Fallocate},
};

/// What a guest_memfd file holds in its private data.
pub(crate) type GmemBox = Pin<KBox<GmemFile>>;

/// The C operations tables of a guest_memfd file, its inode and its
/// mapping, which the FFI module defines.  A file is a guest_memfd if and
/// only if its file operations are `file`.
pub(crate) struct Operations {
    /// `file_operations`: open, release and fallocate.
    pub(crate) file: &'static FileOperations,
    /// `inode_operations`: getattr and setattr.
    pub(crate) inode: &'static InodeOperations,
    /// `address_space_operations`: no dirty tracking, no migration, memory
    /// errors and freeing.
    pub(crate) mapping: &'static AddressSpaceOperations,
    /// Where the files get their inodes: the guest_memfd filesystem, whose
    /// inodes hold the memory's NUMA policy (`placement.rs`).
    pub(crate) inodes: &'static InodeSource,
}

/// The state of one guest_memfd, owned by its file's `private_data` and
/// pointed to by its mapping's `i_private_data` until the file's release.
///
/// # Invariants
///
/// Every memslot in `bindings` is live and bound to this file (see
/// [`BoundSlot`]); `bindings` only changes under both the mapping's
/// invalidate lock held for writing and the bindings lock
/// ([`BindingsLockGuard`]), so that holding either keeps it still.
#[pin_data]
pub(crate) struct GmemFile {
    /// The memslots bound to this file, indexed by file page.
    #[pin]
    pub(crate) bindings: XArray<BoundSlot>,
    /// The file's size in bytes; a guest_memfd never changes size.
    size: i64,
    /// The flags it was created with (`GUEST_MEMFD_FLAG_*`).
    flags: u64,
    /// The VM this guest_memfd belongs to.  The file pins the VM, not the
    /// other way round.  Declared after `bindings` so that it is dropped
    /// last.
    kvm: ARef<Kvm>,
}

impl GmemFile {
    fn new(kvm: ARef<Kvm>, size: i64, flags: u64) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            bindings <- XArray::new(AllocKind::Plain),
            size,
            flags,
            kvm,
        })
    }

    /// The guest_memfd state of `file`, if `file` is a guest_memfd.
    pub(crate) fn of<'a>(file: &'a LocalFile, ops: &Operations) -> Option<&'a GmemFile> {
        if !file.has_operations(ops.file) {
            return None;
        }
        // SAFETY: files with the guest_memfd file operations hold a
        // `GmemBox` in their private data, which only their release takes
        // back.
        Some(unsafe { file.private_data::<GmemBox>() }.get_ref())
    }

    /// The guest_memfd state of `file`, known to be a guest_memfd.
    ///
    /// # Safety
    ///
    /// `file` is a guest_memfd whose release has not taken its state back:
    /// a file that a memslot is bound to (only [`crate::bind::bind`] binds
    /// one, after [`GmemFile::of`] accepted it), or the file of a
    /// guest_memfd callback.
    pub(crate) unsafe fn of_gmem_file(file: &LocalFile) -> &GmemFile {
        // SAFETY: the private data of a guest_memfd is a `GmemBox` until
        // its release, which the caller guarantees has not run.
        unsafe { file.private_data::<GmemBox>() }.get_ref()
    }

    /// The VM this guest_memfd belongs to.
    pub(crate) fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// The file's size in bytes.
    pub(crate) fn size(&self) -> i64 {
        self.size
    }

    /// Whether the guest_memfd was created with all of `flags`.
    pub(crate) fn has_flags(&self, flags: u64) -> bool {
        self.flags & flags == flags
    }

    /// `KVM_CREATE_GUEST_MEMFD`: returns the new file descriptor.
    pub(crate) fn create(
        kvm: &Kvm,
        size: i64,
        flags: u64,
        ops: &'static Operations,
    ) -> Result<u32> {
        let supported = range::supported_flags(Some(kvm.has_private_mem()));
        range::check_create(size, flags, supported)?;

        let fd = FileDescriptorReservation::get_unused_fd_flags(0)?;
        let gmem = KBox::pin_init(Self::new(kvm.into(), size, flags), GFP_KERNEL)?;
        let name = c_str!("[kvm-gmem]");
        // SAFETY: the guest_memfd callbacks treat the private data as a
        // `GmemBox`, and the release takes it back; the owner of the
        // table is KVM's module, set by `kvm_gmem_init()`.  The inode is a
        // new one of the guest_memfd filesystem (`ops.inodes`).
        let file = unsafe { create_getfile(ops.inodes, name, ops.file, gmem, flags::O_RDWR) }?;
        file.set_flags(flags::O_LARGEFILE);

        let inode = file.inode();
        let mapping = inode.mapping();
        // SAFETY: the inode and its mapping were just created for this
        // file, nobody else uses them yet, and the guest_memfd callbacks
        // expect what is set up here; the file is a guest_memfd, just
        // created with its state.
        unsafe {
            inode.set_operations(ops.inode);
            inode.add_mode(kernel::fs::inode::S_IFREG);
            inode.init_size(size);
            mapping.set_operations(ops.mapping);
            // The file owns its state until its release, which clears
            // this pointer under the bindings lock first.  Nobody reads
            // it yet: the file has no pages.
            mapping.set_private_data(Some(Self::of_gmem_file(&file)));
        }
        mapping.set_gfp_mask(GFP_HIGHUSER);
        mapping.set_inaccessible();
        // Unmovable mappings are supposed to be unevictable as well.
        warn_on!(!mapping.unevictable());

        let fd_num = fd.reserved_fd();
        fd.fd_install(file);
        Ok(fd_num)
    }

    /// Zaps the guest's mappings of file pages `[start, end)` in every
    /// bound memslot and starts an MMU invalidation, which
    /// [`Self::invalidate_end`] ends.  The caller holds the invalidate lock
    /// or the bindings lock until then, so that both see the same bindings.
    ///
    /// The mappings are the private ones, or, for memory that starts out
    /// shared (`GUEST_MEMFD_FLAG_INIT_SHARED`, which only VMs without
    /// private memory have), the shared ones: 6.18's filter.
    pub(crate) fn invalidate_begin(&self, start: usize, end: usize) {
        let mut mmu = None;
        let mut flush = false;
        let shared = self.has_flags(range::GUEST_MEMFD_FLAG_INIT_SHARED);

        for (_, slot) in self.bindings.iter_range(start, end - 1) {
            // SAFETY: the slot is in the bindings, and the caller holds
            // the invalidate lock or the bindings lock.
            let slot = unsafe { slot.get() };
            let (first, last) =
                range::slot_gfn_range(slot.base_gfn(), slot.pgoff(), slot.npages(), start, end);
            let guard = mmu.get_or_insert_with(|| {
                let guard = self.kvm.mmu_lock();
                guard.invalidate_begin();
                guard
            });
            flush |= guard.unmap(slot, first, last, shared);
        }
        if let Some(guard) = &mmu {
            if flush {
                guard.flush_remote_tlbs();
            }
        }
    }

    /// Ends the invalidation [`Self::invalidate_begin`] started, if it found
    /// a bound memslot.
    pub(crate) fn invalidate_end(&self, start: usize, end: usize) {
        if self.bindings.find(start, end - 1).is_some() {
            let guard = self.kvm.mmu_lock();
            guard.invalidate_end();
        }
    }

    /// `fallocate()` on a guest_memfd.
    ///
    /// # Safety
    ///
    /// `file` is the file of this guest_memfd.
    pub(crate) unsafe fn fallocate(
        &self,
        file: &LocalFile,
        mode: i32,
        offset: i64,
        len: i64,
    ) -> Result {
        let ret = match range::check_fallocate(mode, offset, len)? {
            Fallocate::PunchHole => self.punch_hole(file.mapping(), offset, len),
            Fallocate::Allocate => self.allocate(file, offset, len),
        };
        if ret.is_ok() {
            // As in C, the timestamp update cannot fail the operation.
            let _ = file.modified();
        }
        ret
    }

    /// Frees the pages of a range after zapping the guest's mappings of it.
    /// Punching past the end of the file is not an error.
    fn punch_hole(&self, mapping: &Mapping, offset: i64, len: i64) -> Result {
        let (start, end) = range::page_span(offset, len);

        // The bindings must not change between begin and end.
        let _lock = mapping.invalidate_lock();
        self.invalidate_begin(start, end);
        if self.has_flags(range::GUEST_MEMFD_FLAG_MMAP) && end > start {
            // Host mappings, in one walk each; truncation would find
            // them folio by folio.
            mapping.unmap_range(start, end - start);
        }
        mapping.truncate_range(offset, offset + len - 1);
        self.invalidate_end(start, end);
        Ok(())
    }

    /// Allocates the pages of a range inside `file`, this guest_memfd's
    /// file, each by its NUMA policy.
    fn allocate(&self, file: &LocalFile, offset: i64, len: i64) -> Result {
        range::check_allocate(offset, len, self.size)?;
        let (start, end) = range::page_span(offset, len);

        let _lock = file.mapping().invalidate_lock_shared();
        let mut index = start;
        while index < end {
            if kernel::current!().signal_pending() {
                return Err(EINTR);
            }
            // SAFETY: `file` is this guest_memfd's (the caller of
            // `fallocate` guarantees it).
            let folio = unsafe { placement::grab_folio(file, index) }?;
            index = folio.next_index();
            drop(folio);
            // 64-bit only: the index cannot wrap.
            if warn_on!(index == 0) {
                break;
            }
            task::cond_resched();
        }
        Ok(())
    }

    /// A memory error hit `folio` of the guest_memfd whose mapping is
    /// `mapping`: zap the guest's mappings of it.  The page stays, and a
    /// later fault on it gets `EHWPOISON`; what to do about it is
    /// userspace's decision.
    ///
    /// Unlike C, this does not take the invalidate lock: memory-failure
    /// handling calls us with `folio` locked, and a punch holds the
    /// invalidate lock while it waits for the locks of the folios it
    /// truncates.  The bindings lock, which punches do not take, keeps the
    /// bindings still between begin and end instead.
    ///
    /// # Safety
    ///
    /// `mapping` is the mapping of a guest_memfd.
    pub(crate) unsafe fn memory_failure(mapping: &Mapping, folio: &Folio) {
        let _bindings = BindingsLockGuard::lock();
        // SAFETY: the private data of a guest_memfd mapping (the caller
        // guarantees it is one) is null or its `GmemFile`, which the
        // release clears under the bindings lock, held here, before
        // freeing it.
        if let Some(gmem) = unsafe { mapping.private_data::<GmemFile>() } {
            let start = folio.index();
            let end = start + folio.nr_pages();
            gmem.invalidate_begin(start, end);
            gmem.invalidate_end(start, end);
        }
    }

    /// The file's last reference is gone: unbind every memslot, zap the
    /// guest's mappings and let the VM go.
    ///
    /// The memory itself stays with the inode, which the page cache frees.
    pub(crate) fn release(self: GmemBox, mapping: &Mapping) {
        {
            // Keeps memslot updates from freeing a bound slot under us;
            // unbind cannot get the file any more (its count is zero) and
            // relies on this lock to find the file, its mapping and the
            // state intact; it then takes the two locks below, as we do.
            let _slots = self.kvm.slots_lock();
            let _lock = mapping.invalidate_lock();

            for (_, slot) in self.bindings.iter_range(0, usize::MAX) {
                // SAFETY: the slot is in the bindings, and we hold the
                // invalidate lock.
                unsafe { slot.get() }.clear_file();
            }
            self.invalidate_begin(0, usize::MAX);
            self.invalidate_end(0, usize::MAX);
            // Memory errors find the state through the mapping, under the
            // bindings lock alone; once the pointer is cleared under it,
            // none can be using the state.
            let _bindings = BindingsLockGuard::lock();
            // SAFETY: readers of the private data hold the bindings lock,
            // which we hold.
            unsafe { mapping.set_private_data::<GmemFile>(None) };
        }
        // Dropping destroys the bindings, then puts the VM.
        drop(self);
    }
}
