// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the argument checks and offset arithmetic of the Rust
//! guest_memfd (`range.rs`).
//!
//! They need no KVM, so they also run under UML.  `#[kunit_tests]` registers
//! them as the `gmem_rs_range` KUnit suite.

use kernel::prelude::*;

/// The prefix of this crate's log messages.
const __LOG_PREFIX: &[u8] = b"gmem_rs_range\0";

#[allow(dead_code)]
#[path = "range.rs"]
mod range;

#[kunit_tests(gmem_rs_range)]
mod tests {
    use super::range::*;
    use kernel::{error::code::*, prelude::*};

    fn errno<T>(r: Result<T>) -> i32 {
        match r {
            Ok(_) => 0,
            Err(e) => e.to_errno(),
        }
    }

    const P: i64 = PAGE_SIZE as i64;

    /// Interleaving: consecutive pages of a file alternate between nodes;
    /// two files start on the nodes their inode numbers pick, whatever order
    /// their pages come in; the index wraps instead of overflowing.
    #[test]
    fn interleave_index_case() {
        // The node a page goes to under an interleave policy over `n` nodes.
        let node = |ino: usize, index: usize, n: usize| interleave_index(ino, index) % n;
        for n in 2..=4 {
            for index in 0..64 {
                assert_eq!(node(7, index + 1, n), (node(7, index, n) + 1) % n);
            }
        }
        assert_ne!(node(10, 0, 2), node(11, 0, 2));
        assert_eq!(node(10, 5, 2), node(11, 4, 2));
        assert_eq!(interleave_index(usize::MAX, 2), 1);
        assert_eq!(interleave_index(0, 0), 0);
    }

    /// `KVM_CREATE_GUEST_MEMFD` argument checks.
    #[test]
    fn create_case() {
        let all = supported_flags(None);
        assert!(check_create(P, 0, all).is_ok());
        assert!(check_create(1 << 40, 0, all).is_ok());
        assert!(check_create(i64::MAX & !(P - 1), 0, all).is_ok());
        assert!(errno(check_create(P, 1 << 63, all)) == EINVAL.to_errno());
        assert!(errno(check_create(0, 0, all)) == EINVAL.to_errno());
        assert!(errno(check_create(-P, 0, all)) == EINVAL.to_errno());
        assert!(errno(check_create(i64::MIN, 0, all)) == EINVAL.to_errno());
        assert!(errno(check_create(P + 1, 0, all)) == EINVAL.to_errno());
        assert!(errno(check_create(P - 1, 0, all)) == EINVAL.to_errno());
        // Flags are checked before the size.
        assert!(errno(check_create(0, 1 << 2, all)) == EINVAL.to_errno());
    }

    /// The 6.18 creation flags: their uAPI values, which VMs may use them, and that every
    /// other bit is refused.
    #[test]
    fn create_flags_case() {
        let (mmap, shared) = (GUEST_MEMFD_FLAG_MMAP, GUEST_MEMFD_FLAG_INIT_SHARED);
        assert!(mmap == 1 && shared == 2);
        // /dev/kvm and a VM without private memory: both; with private memory, no INIT_SHARED.
        assert!(supported_flags(None) == mmap | shared);
        assert!(supported_flags(Some(false)) == mmap | shared);
        assert!(supported_flags(Some(true)) == mmap);
        for private_mem in [None, Some(false), Some(true)] {
            let valid = supported_flags(private_mem);
            for bit in 0..64 {
                let flag = 1u64 << bit;
                let ok = check_create(P, flag, valid).is_ok();
                assert!(ok == (flag & valid != 0));
            }
            assert!(check_create(P, valid, valid).is_ok());
        }
        assert!(errno(check_create(P, shared, supported_flags(Some(true)))) == EINVAL.to_errno());
    }

    /// `fallocate()` mode and alignment checks, and the page span.
    #[test]
    fn fallocate_case() {
        let keep = FALLOC_FL_KEEP_SIZE;
        let punch = FALLOC_FL_PUNCH_HOLE;
        assert!(check_fallocate(keep, 0, P) == Ok(Fallocate::Allocate));
        assert!(check_fallocate(keep | punch, P, 4 * P) == Ok(Fallocate::PunchHole));
        // KEEP_SIZE is required.
        assert!(errno(check_fallocate(0, 0, P)) == EOPNOTSUPP.to_errno());
        assert!(errno(check_fallocate(punch, 0, P)) == EOPNOTSUPP.to_errno());
        // COLLAPSE_RANGE, ZERO_RANGE, INSERT_RANGE, UNSHARE_RANGE.
        for extra in [0x08, 0x10, 0x20, 0x40] {
            assert!(errno(check_fallocate(keep | extra, 0, P)) == EOPNOTSUPP.to_errno());
            assert!(errno(check_fallocate(keep | punch | extra, 0, P)) == EOPNOTSUPP.to_errno());
        }
        // The mode is checked before alignment.
        assert!(errno(check_fallocate(0, 1, 1)) == EOPNOTSUPP.to_errno());
        assert!(errno(check_fallocate(keep, 1, P)) == EINVAL.to_errno());
        assert!(errno(check_fallocate(keep, 0, P + 1)) == EINVAL.to_errno());
        assert!(errno(check_fallocate(keep | punch, P / 2, P)) == EINVAL.to_errno());
        assert!(page_span(0, P) == (0, 1));
        assert!(page_span(3 * P, 5 * P) == (3, 8));
        assert!(
            page_span(1 << 40, 1 << 30)
                == ((1 << 40) / P as usize, ((1 << 40) + (1 << 30)) / P as usize)
        );
    }

    /// Allocation must stay inside the file.
    #[test]
    fn allocate_bounds_case() {
        let size = 16 * P;
        assert!(check_allocate(0, size, size).is_ok());
        assert!(check_allocate(15 * P, P, size).is_ok());
        assert!(errno(check_allocate(15 * P, 2 * P, size)) == EINVAL.to_errno());
        assert!(errno(check_allocate(size, P, size)) == EINVAL.to_errno());
        assert!(errno(check_allocate(i64::MAX - P + 1, P, size)) == EINVAL.to_errno());
        assert!(errno(check_allocate(i64::MAX, i64::MAX, size)) == EINVAL.to_errno());
    }

    /// Binding offsets: alignment, end of file and overflow.
    #[test]
    fn bind_span_case() {
        let size = 64 * P;
        let pu = P as u64;
        assert!(bind_span(0, 64, size) == Ok((0, 64)));
        assert!(bind_span(16 * pu, 48, size) == Ok((16, 64)));
        assert!(bind_span(63 * pu, 1, size) == Ok((63, 64)));
        assert!(errno(bind_span(16 * pu, 49, size)) == EINVAL.to_errno());
        assert!(errno(bind_span(64 * pu, 1, size)) == EINVAL.to_errno());
        assert!(errno(bind_span(1, 1, size)) == EINVAL.to_errno());
        assert!(errno(bind_span(pu / 2, 1, size)) == EINVAL.to_errno());
        // Offsets whose sum with the slot size overflows.
        assert!(errno(bind_span(!(pu - 1), 1, size)) == EINVAL.to_errno());
        assert!(errno(bind_span(1 << 63, 1, size)) == EINVAL.to_errno());
        assert!(errno(bind_span((1 << 63) - pu, 2, i64::MAX)) == EINVAL.to_errno());
        assert!(errno(bind_span(0, u64::MAX / pu + 1, size)) == EINVAL.to_errno());
        // The largest file: a slot ending at its last page fits.
        let max = i64::MAX & !(P - 1);
        assert!(bind_span(max as u64 - pu, 1, max).is_ok());
    }

    /// Gfn to file index, and the gfns of a slot inside a file range.
    #[test]
    fn gfn_math_case() {
        // Slot at gfn 0x100, bound at file page 16, 32 pages.
        let (base, pgoff, npages) = (0x100u64, 16u64, 32u64);
        assert!(gfn_to_index(base, pgoff, base) == 16);
        assert!(gfn_to_index(base, pgoff, base + 31) == 47);
        assert!(gfn_to_index(0, 0, 0) == 0);
        assert!(index_to_gfn(base, pgoff, 16) == base);
        assert!(index_to_gfn(base, pgoff, 47) == base + 31);
        assert!(index_to_gfn(base, pgoff, gfn_to_index(base, pgoff, base + 9)) == base + 9);
        // Range covering the whole slot and more.
        assert!(slot_gfn_range(base, pgoff, npages, 0, usize::MAX) == (base, base + npages));
        assert!(slot_gfn_range(base, pgoff, npages, 16, 48) == (base, base + npages));
        // Partial overlaps at either end and in the middle.
        assert!(slot_gfn_range(base, pgoff, npages, 20, 100) == (base + 4, base + npages));
        assert!(slot_gfn_range(base, pgoff, npages, 0, 18) == (base, base + 2));
        assert!(slot_gfn_range(base, pgoff, npages, 30, 31) == (base + 14, base + 15));
        // A slot at the top of the gfn space.
        let top = (1u64 << 52) - 8;
        assert!(slot_gfn_range(top, 0, 8, 0, usize::MAX) == (top, top + 8));
    }

    /// What populate returns.
    #[test]
    fn populate_result_case() {
        assert_eq!(populate_result(None, 0), Ok(0));
        assert_eq!(populate_result(None, 8), Ok(8));
        assert_eq!(populate_result(Some(EINVAL), 0), Err(EINVAL));
        assert_eq!(populate_result(Some(EINVAL), 3), Ok(3));
    }

    /// `KVM_SET_MEMORY_ATTRIBUTES` argument checks.
    #[test]
    fn set_attributes_case() {
        let pv = KVM_MEMORY_ATTRIBUTE_PRIVATE;
        let p = P as u64;
        let einval = EINVAL.to_errno();
        // Valid: any page-aligned, non-empty range, no memslot needed.
        assert!(check_set_attributes(0, p, pv, 0, pv) == Ok((0, 1)));
        assert!(check_set_attributes(p, 4 * p, 0, 0, pv) == Ok((1, 5)));
        assert!(check_set_attributes(0, 1 << 40, pv, 0, pv) == Ok((0, 1 << 28)));
        // Up to the last page of the address space; wrapping to 0 is rejected.
        let last = u64::MAX - p + 1;
        assert!(check_set_attributes(last - p, p, pv, 0, pv) == Ok(((last >> 12) - 1, last >> 12)));
        assert!(errno(check_set_attributes(last, p, pv, 0, pv)) == einval);
        assert!(errno(check_set_attributes(p, u64::MAX - p + 1, pv, 0, pv)) == einval);
        // Flags, unsupported bits, empty and unaligned ranges.
        assert!(errno(check_set_attributes(0, p, pv, 1, pv)) == einval);
        assert!(errno(check_set_attributes(0, p, pv, 1 << 63, pv)) == einval);
        assert!(errno(check_set_attributes(0, p, 1, 0, pv)) == einval);
        assert!(errno(check_set_attributes(0, p, pv | 1, 0, pv)) == einval);
        assert!(errno(check_set_attributes(0, 0, pv, 0, pv)) == einval);
        assert!(errno(check_set_attributes(1, p, pv, 0, pv)) == einval);
        assert!(errno(check_set_attributes(0, p + 1, pv, 0, pv)) == einval);
        assert!(errno(check_set_attributes(p / 2, p / 2, pv, 0, pv)) == einval);
        // A VM without private memory supports no attribute: only 0 passes.
        assert!(errno(check_set_attributes(0, p, pv, 0, 0)) == einval);
        assert!(check_set_attributes(0, p, 0, 0, 0) == Ok((0, 1)));
    }
}
