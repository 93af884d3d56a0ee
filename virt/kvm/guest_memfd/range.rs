// SPDX-License-Identifier: GPL-2.0

//! Argument checks and offset arithmetic of guest_memfd.
//!
//! Pure functions with no kernel state, so that the KUnit suite in
//! `gmem_kunit.rs` can run them under UML, where KVM does not exist.  Every
//! errno here is the one 6.12's `virt/kvm/guest_memfd.c` returns for the same
//! input.

use kernel::{
    error::{code::*, Error, Result},
    uapi,
};

/// log2 of the page size guest_memfd works in.
pub(crate) const PAGE_SHIFT: u32 = kernel::page::PAGE_SHIFT as u32;

/// The page size guest_memfd works in.
pub(crate) const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// `FALLOC_FL_KEEP_SIZE`: allocate without changing the file size.
pub(crate) const FALLOC_FL_KEEP_SIZE: i32 = uapi::FALLOC_FL_KEEP_SIZE as i32;

/// `FALLOC_FL_PUNCH_HOLE`: free a range.
pub(crate) const FALLOC_FL_PUNCH_HOLE: i32 = uapi::FALLOC_FL_PUNCH_HOLE as i32;

/// `KVM_MEMORY_ATTRIBUTE_PRIVATE`: the gfn is private memory.
// The checks below are KUnit-tested on every architecture (also UML); only
// those with memory attributes or private memory (x86) call them.
#[cfg_attr(
    not(any(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES, CONFIG_KVM_GENERIC_PRIVATE_MEM)),
    allow(dead_code)
)]
pub(crate) const KVM_MEMORY_ATTRIBUTE_PRIVATE: u64 = uapi::KVM_MEMORY_ATTRIBUTE_PRIVATE as u64;

/// The interleave index of file page `index` of the guest_memfd whose inode
/// number is `ino`: under an interleaving memory policy, a new page goes to
/// the node this index picks among the policy's nodes (index modulo their
/// number).  Biased by the inode number, as shmem and mainline guest_memfd
/// do, so that consecutive pages of one file alternate between nodes while
/// different files start on different nodes, whatever order their pages are
/// allocated in.  The same index `get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)`
/// reports for a mapping of the file (`fs.c`, and the VMA offset that
/// `get_vma_policy()` adds).
pub(crate) fn interleave_index(ino: usize, index: usize) -> usize {
    ino.wrapping_add(index)
}

/// Whether `v` is a multiple of the page size.
pub(crate) fn page_aligned(v: u64) -> bool {
    v & (PAGE_SIZE - 1) == 0
}

/// The number of pages of a guest_memfd of `size` bytes (positive and page
/// aligned: [`check_create`]).
pub(crate) fn size_in_pages(size: i64) -> usize {
    (size as u64 >> PAGE_SHIFT) as usize
}

/// `GUEST_MEMFD_FLAG_MMAP` (6.18): the guest_memfd may be mapped by host userspace.
pub(crate) const GUEST_MEMFD_FLAG_MMAP: u64 = uapi::GUEST_MEMFD_FLAG_MMAP as u64;

/// `GUEST_MEMFD_FLAG_INIT_SHARED` (6.18): the guest_memfd's memory starts out shared, so that
/// host faults through a mapping get pages.
pub(crate) const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = uapi::GUEST_MEMFD_FLAG_INIT_SHARED as u64;

/// The creation flags a guest_memfd may have (`KVM_CAP_GUEST_MEMFD_FLAGS`), as 6.18 answers:
/// `private_mem` is whether the VM has private memory, `None` for no VM (`/dev/kvm`).
///
/// A mapping is always allowed; memory that starts out shared only where the VM has no
/// private memory (on x86, the DEFAULT VM type), or when asked without a VM.
pub(crate) fn supported_flags(private_mem: Option<bool>) -> u64 {
    match private_mem {
        Some(true) => GUEST_MEMFD_FLAG_MMAP,
        _ => GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
    }
}

/// Checks the arguments of `KVM_CREATE_GUEST_MEMFD` for a VM whose valid flags are `supported`
/// ([`supported_flags`]).
///
/// Any other flag bit is `EINVAL`; the size must be positive and page aligned, with no upper
/// bound.
pub(crate) fn check_create(size: i64, flags: u64, supported: u64) -> Result {
    if flags & !supported != 0 {
        return Err(EINVAL);
    }
    if size <= 0 || !page_aligned(size as u64) {
        return Err(EINVAL);
    }
    Ok(())
}

/// What a valid `fallocate()` on a guest_memfd asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fallocate {
    /// Allocate (and keep) the pages of a range.
    Allocate,
    /// Free the pages of a range, after zapping their mappings.
    PunchHole,
}

/// Checks the arguments of `fallocate()`.
///
/// `FALLOC_FL_KEEP_SIZE` is required and only allocation or hole punching
/// are supported (`EOPNOTSUPP` otherwise); offset and length must be page
/// aligned (`EINVAL`).  Negative offsets and non-positive lengths never get
/// here: `vfs_fallocate()` rejects them.
pub(crate) fn check_fallocate(mode: i32, offset: i64, len: i64) -> Result<Fallocate> {
    if mode & FALLOC_FL_KEEP_SIZE == 0 {
        return Err(EOPNOTSUPP);
    }
    if mode & !(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE) != 0 {
        return Err(EOPNOTSUPP);
    }
    if !page_aligned(offset as u64) || !page_aligned(len as u64) {
        return Err(EINVAL);
    }
    if mode & FALLOC_FL_PUNCH_HOLE != 0 {
        Ok(Fallocate::PunchHole)
    } else {
        Ok(Fallocate::Allocate)
    }
}

/// The page indices `[start, end)` covered by the byte range `offset, len`.
///
/// Both are page aligned (see [`check_fallocate`]).
pub(crate) fn page_span(offset: i64, len: i64) -> (usize, usize) {
    let start = (offset as u64) >> PAGE_SHIFT;
    let end = (offset as u64).wrapping_add(len as u64) >> PAGE_SHIFT;
    (start as usize, end as usize)
}

/// Checks that an allocation of `offset, len` stays inside a file of `size`
/// bytes; the file never grows.
pub(crate) fn check_allocate(offset: i64, len: i64, size: i64) -> Result {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(EINVAL),
    }
}

/// The page indices `[start, end)` a memslot of `npages` pages bound at byte
/// `offset` of a file of `size` bytes occupies.
///
/// The offset must be page aligned and the slot must fit in the file
/// (`EINVAL`); an offset whose sum with the slot size overflows is rejected
/// the same way.
pub(crate) fn bind_span(offset: u64, npages: u64, size: i64) -> Result<(usize, usize)> {
    let bytes = npages.checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
    if !page_aligned(offset) {
        return Err(EINVAL);
    }
    match offset.checked_add(bytes) {
        Some(end) if size >= 0 && end <= size as u64 => {}
        _ => return Err(EINVAL),
    }
    let start = offset >> PAGE_SHIFT;
    Ok((start as usize, (start + npages) as usize))
}

/// The file page index backing `gfn` in a memslot starting at `base_gfn`
/// that is bound at page `pgoff` of its guest_memfd.
pub(crate) fn gfn_to_index(base_gfn: u64, pgoff: u64, gfn: u64) -> usize {
    gfn.wrapping_sub(base_gfn).wrapping_add(pgoff) as usize
}

/// The gfn that file page `index` backs in a memslot starting at `base_gfn`
/// that is bound at page `pgoff`: the inverse of [`gfn_to_index`].
pub(crate) fn index_to_gfn(base_gfn: u64, pgoff: u64, index: usize) -> u64 {
    (index as u64).wrapping_sub(pgoff).wrapping_add(base_gfn)
}

/// The gfns `[start, end)` of a memslot (`base_gfn`, bound at `pgoff` for
/// `npages`) whose file pages fall in `[first, end_index)`.
///
/// The caller found the slot bound inside that range, so the result is not
/// empty.  `end_index` may be `usize::MAX` to mean "to the end of the file".
pub(crate) fn slot_gfn_range(
    base_gfn: u64,
    pgoff: u64,
    npages: u64,
    first: usize,
    end_index: usize,
) -> (u64, u64) {
    let first = first as u64;
    let end_index = end_index as u64;
    let start = base_gfn + first.max(pgoff) - pgoff;
    let end = base_gfn + (pgoff + npages).min(end_index) - pgoff;
    (start, end)
}

/// What `kvm_gmem_populate()` returns after `done` pages when the last step
/// failed with `failed`, if it did: the error if nothing was populated, else
/// the number of pages populated.
#[cfg_attr(not(CONFIG_KVM_GENERIC_PRIVATE_MEM), allow(dead_code))]
pub(crate) fn populate_result(failed: Option<Error>, done: u64) -> Result<u64> {
    match failed {
        Some(e) if done == 0 => Err(e),
        _ => Ok(done),
    }
}

/// Checks the arguments of `KVM_SET_MEMORY_ATTRIBUTES`, given the
/// attributes the VM supports, and returns the gfn range `[start, end)`.
///
/// No flag is defined; the range must be non-empty, must not wrap around
/// and must be page aligned.  No memslot is needed.
#[cfg_attr(not(CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES), allow(dead_code))]
pub(crate) fn check_set_attributes(
    address: u64,
    size: u64,
    attributes: u64,
    flags: u64,
    supported: u64,
) -> Result<(u64, u64)> {
    if flags != 0 || attributes & !supported != 0 {
        return Err(EINVAL);
    }
    let end = match address.checked_add(size) {
        Some(end) if size != 0 => end,
        _ => return Err(EINVAL),
    };
    if !page_aligned(address) || !page_aligned(size) {
        return Err(EINVAL);
    }
    Ok((address >> PAGE_SHIFT, end >> PAGE_SHIFT))
}
