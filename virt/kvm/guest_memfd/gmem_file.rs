// SPDX-License-Identifier: GPL-2.0

//! A guest_memfd file: its creation, `fallocate()`, release, and the
//! invalidation of the guest mappings it backs.

use core::ptr::NonNull;
use kernel::{
    alloc::{flags::GFP_KERNEL, KBox},
    bindings,
    filemap::Mapping,
    fs::file::{FdReservation, File},
    prelude::*,
    warn_on,
    xarray::{AllocFlags, XArray},
};

use crate::{
    ffi,
    kvm::{Kvm, KvmRef, Memslot},
    range::{self, Fallocate},
};

/// The state of one guest_memfd, hung off its file's `private_data` and its
/// mapping's `i_private_data`.
///
/// # Invariants
///
/// Every memslot in `bindings` is live and bound to this file (see
/// [`Memslot`]); `bindings` only changes under the mapping's invalidate
/// lock held for writing.
#[pin_data]
pub(crate) struct GmemFile {
    /// The memslots bound to this file, indexed by file page.
    #[pin]
    pub(crate) bindings: XArray<NonNull<bindings::kvm_memory_slot>>,
    /// The file's size in bytes; a guest_memfd never changes size.
    pub(crate) size: i64,
    /// The VM this guest_memfd belongs to.  The file pins the VM, not the
    /// other way round.  Declared after `bindings` so that it is dropped
    /// last.
    pub(crate) kvm: KvmRef,
}

impl GmemFile {
    fn new(kvm: Kvm, size: i64) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            bindings <- XArray::new(AllocFlags::NONE),
            size,
            kvm: kvm.get(),
        })
    }

    /// The guest_memfd state of `file`, if `file` is a guest_memfd.
    pub(crate) fn of(file: &File) -> Option<&GmemFile> {
        if !ffi::is_gmem_file(file) {
            return None;
        }
        // SAFETY: guest_memfd files keep a `GmemFile` in `private_data`
        // until their release, and `file` is a live reference.
        Some(unsafe { &*file.private_data().cast::<GmemFile>() })
    }

    /// `KVM_CREATE_GUEST_MEMFD`: returns the new file descriptor.
    pub(crate) fn create(kvm: Kvm, size: i64, flags: u64) -> Result<u32> {
        range::check_create(size, flags)?;

        let fd = FdReservation::get_unused(0)?;
        let gmem = KBox::pin_init(Self::new(kvm, size), GFP_KERNEL)?;
        // SAFETY: the `GmemFile` is never moved out of its allocation; the
        // file's release turns the pointer back into the pinned box.
        let gmem = KBox::into_raw(unsafe { Pin::into_inner_unchecked(gmem) });
        let file = match ffi::create_file(gmem, size, flags) {
            Ok(file) => file,
            Err(e) => {
                // SAFETY: `gmem` came from `KBox::into_raw` above and was not
                // handed to any file.
                drop(unsafe { KBox::from_raw(gmem) });
                return Err(e);
            }
        };
        Ok(fd.install(file))
    }

    /// Zaps the guest's private mappings of file pages `[start, end)` in
    /// every bound memslot and starts an MMU invalidation, which
    /// [`Self::invalidate_end`] ends.  The caller holds the invalidate lock.
    pub(crate) fn invalidate_begin(&self, start: usize, end: usize) {
        let mut mmu = None;
        let mut flush = false;

        for (_, slot) in self.bindings.iter_range(start, end - 1) {
            // SAFETY: slots in the bindings are live (type invariant).
            let slot = unsafe { Memslot::from_raw(slot) };
            let (first, last) =
                range::slot_gfn_range(slot.base_gfn(), slot.pgoff(), slot.npages(), start, end);
            let guard = mmu.get_or_insert_with(|| {
                let guard = self.kvm.mmu_lock();
                guard.invalidate_begin();
                guard
            });
            flush |= guard.unmap_private(slot, first, last);
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
    pub(crate) fn fallocate(&self, file: &File, mode: i32, offset: i64, len: i64) -> Result {
        let ret = match range::check_fallocate(mode, offset, len)? {
            Fallocate::PunchHole => self.punch_hole(file.mapping(), offset, len),
            Fallocate::Allocate => self.allocate(file.mapping(), offset, len),
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
        mapping.truncate_range(offset, offset + len - 1);
        self.invalidate_end(start, end);
        Ok(())
    }

    /// Allocates the pages of a range inside the file.
    fn allocate(&self, mapping: &Mapping, offset: i64, len: i64) -> Result {
        range::check_allocate(offset, len, self.size)?;
        let (start, end) = range::page_span(offset, len);

        let _lock = mapping.invalidate_lock_shared();
        let mut index = start;
        while index < end {
            if kernel::current!().signal_pending() {
                return Err(EINTR);
            }
            let folio = mapping.grab_folio(index)?;
            index = folio.next_index();
            drop(folio);
            // 64-bit only: the index cannot wrap.
            if warn_on!(index == 0) {
                break;
            }
            ffi::cond_resched();
        }
        Ok(())
    }

    /// The file's last reference is gone: unbind every memslot, zap the
    /// guest's mappings and let the VM go.
    ///
    /// The memory itself stays with the inode, which the page cache frees.
    pub(crate) fn release(self: Pin<KBox<Self>>, mapping: &Mapping) {
        {
            // Keeps memslot updates from freeing a bound slot under us;
            // unbind cannot get the file any more (its count is zero) and
            // relies on this lock to find the bindings intact.
            let _slots = self.kvm.slots_lock();
            let _lock = mapping.invalidate_lock();

            for (_, slot) in self.bindings.iter_range(0, usize::MAX) {
                // SAFETY: slots in the bindings are live (type invariant).
                unsafe { Memslot::from_raw(slot) }.clear_file();
            }
            self.invalidate_begin(0, usize::MAX);
            self.invalidate_end(0, usize::MAX);
            ffi::detach_mapping(mapping);
        }
        // Dropping destroys the bindings, then puts the VM.
        drop(self);
    }
}
