//! Guest memory as rust-vmm VMMs hold it: vm-memory regions of mmap()ed
//! host memory, reached only through volatile accessors (`Bytes`), never
//! through `&[u8]` over memory the guest can write.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap, MemoryRegionAddress, MmapRegion,
};

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::layout::within;

/// Guest memory without dirty-page tracking.
pub type Memory = GuestMemoryMmap<()>;

/// Bytes read at a time when guest memory is scanned.
const CHUNK: u64 = 1 << 20;

fn region(map: MmapRegion<()>, gpa: u64) -> Result<GuestRegionMmap<()>> {
    GuestRegionMmap::new(map, GuestAddress(gpa))
        .ok_or_else(|| Error::new(format!("a region at GPA {gpa:#x} wraps around")))
}

/// An anonymous, private, read/write mapping of `size` bytes at `gpa`.
pub fn anon_region(gpa: u64, size: u64) -> Result<GuestRegionMmap<()>> {
    let len = usize::try_from(size).context("region size")?;
    let map = MmapRegion::new(len).context(format!("mmap {size:#x} anonymous bytes"))?;
    region(map, gpa)
}

/// A MAP_SHARED, read/write mapping of [0, size) of `file` at `gpa`.
pub fn file_region(file: &Arc<File>, gpa: u64, size: u64) -> Result<GuestRegionMmap<()>> {
    let len = usize::try_from(size).context("region size")?;
    let map = MmapRegion::from_file(FileOffset::from_arc(Arc::clone(file), 0), len)
        .context(format!("mmap(MAP_SHARED) {size:#x} bytes of the file"))?;
    region(map, gpa)
}

/// Guest memory made of `regions` (which must not overlap).
pub fn memory(regions: Vec<GuestRegionMmap<()>>) -> Result<Memory> {
    Memory::from_regions(regions).context("guest memory regions")
}

/// The region holding all of [gpa, gpa+len), and the offset of gpa in it.
fn region_of(mem: &Memory, gpa: u64, len: u64) -> Result<(&GuestRegionMmap<()>, u64)> {
    let r = mem.find_region(GuestAddress(gpa));
    match r {
        Some(r) if within(gpa, len, r.start_addr().0, r.len()) => Ok((r, gpa - r.start_addr().0)),
        _ => bail!("[{gpa:#x}, +{len:#x}) is not inside one region of guest memory"),
    }
}

/// The host address of `gpa`, as KVM_SET_USER_MEMORY_REGION2 wants it.
pub fn host_addr(mem: &Memory, gpa: u64) -> Result<u64> {
    let (r, off) = region_of(mem, gpa, 1)?;
    let p = r
        .get_host_address(MemoryRegionAddress(off))
        .context(format!("host address of GPA {gpa:#x}"))?;
    Ok(p as u64)
}

/// Drops [gpa, gpa+len) of an anonymous region so that it reads back zeros.
pub fn discard(mem: &Memory, gpa: u64, len: u64) -> Result<()> {
    region_of(mem, gpa, len)?;
    let addr = host_addr(mem, gpa)?;
    let n = usize::try_from(len).context("discard length")?;
    // SAFETY: [addr, addr+len) lies inside one region that `mem` maps and
    // keeps mapped; MADV_DONTNEED only replaces its contents with zeros,
    // which no Rust reference observes (all accesses are volatile).
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, n, libc::MADV_DONTNEED) };
    if r != 0 {
        bail!("madvise(DONTNEED): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the u64 at `gpa` (native, i.e. little-endian, byte order).
pub fn read_u64(mem: &Memory, gpa: u64) -> Result<u64> {
    mem.read_obj(GuestAddress(gpa))
        .context(format!("read GPA {gpa:#x}"))
}

pub fn write_u64(mem: &Memory, gpa: u64, value: u64) -> Result<()> {
    mem.write_obj(value, GuestAddress(gpa))
        .context(format!("write GPA {gpa:#x}"))
}

/// Copies [gpa, gpa+len) out of guest memory.
pub fn read_bytes(mem: &Memory, gpa: u64, len: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).context("read length")?];
    mem.read_slice(&mut buf, GuestAddress(gpa))
        .context(format!("read [{gpa:#x}, +{len:#x})"))?;
    Ok(buf)
}

pub fn write_bytes(mem: &Memory, gpa: u64, data: &[u8]) -> Result<()> {
    mem.write_slice(data, GuestAddress(gpa))
        .context(format!("write [{gpa:#x}, +{:#x})", data.len()))
}

/// The first offset in [gpa, gpa+len) at which `find` matches, reading
/// the range a chunk at a time into a private buffer; chunks overlap by
/// `needle - 1` bytes so that a match of up to `needle` bytes across a
/// chunk boundary is found too.
pub fn scan(
    mem: &Memory,
    gpa: u64,
    len: u64,
    needle: u64,
    find: impl Fn(&[u8]) -> Option<usize>,
) -> Result<Option<u64>> {
    let end = gpa
        .checked_add(len)
        .ok_or_else(|| Error::new("scan range wraps around"))?;
    let mut at = gpa;
    while at < end {
        let n = (CHUNK + needle.saturating_sub(1)).min(end - at);
        let buf = read_bytes(mem, at, n)?;
        if let Some(k) = find(&buf) {
            return Ok(Some(at - gpa + k as u64));
        }
        at += CHUNK;
    }
    Ok(None)
}

/// fallocate(2) on `file` (a guest_memfd).
pub fn fallocate(file: &impl AsRawFd, mode: i32, off: u64, len: u64) -> Result<()> {
    let (Ok(o), Ok(l)) = (libc::off_t::try_from(off), libc::off_t::try_from(len)) else {
        bail!("fallocate range [{off:#x}, +{len:#x}) out of range");
    };
    // SAFETY: a plain syscall on a file descriptor the caller owns.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), mode, o, l) };
    if r != 0 {
        bail!(
            "fallocate(guest_memfd, {mode:#x}, {off:#x}, {len:#x}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Punches [off, off+len) out of `file`: the range reads zeros afterwards.
pub fn punch_hole(file: &impl AsRawFd, off: u64, len: u64) -> Result<()> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fallocate(file, mode, off, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn two_regions() -> Memory {
        let a = anon_region(0, 4 * PAGE).unwrap();
        let b = anon_region(0x10_0000, 3 * CHUNK).unwrap();
        memory(vec![a, b]).unwrap()
    }

    #[test]
    fn read_write_discard() {
        let m = two_regions();
        write_u64(&m, 0x1008, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(read_u64(&m, 0x1008).unwrap(), 0x1122_3344_5566_7788);
        assert_eq!(read_bytes(&m, 0x1008, 2).unwrap(), [0x88, 0x77]);
        write_bytes(&m, 0x10_0ffe, b"abcd").unwrap();
        assert_eq!(read_bytes(&m, 0x10_0ffc, 8).unwrap(), b"\0\0abcd\0\0");
        discard(&m, 0x10_0000, PAGE).unwrap();
        assert_eq!(read_bytes(&m, 0x10_0ffc, 8).unwrap(), b"\0\0\0\0cd\0\0");
        // Outside memory, or across two regions.
        assert!(read_u64(&m, 4 * PAGE).is_err());
        assert!(discard(&m, 3 * PAGE, 2 * PAGE).is_err());
        assert!(discard(&m, 0x8000, PAGE).is_err());
        assert!(host_addr(&m, 0x8000).is_err());
        let (a, b) = (host_addr(&m, 0).unwrap(), host_addr(&m, 0x1000).unwrap());
        assert_eq!(b - a, 0x1000);
    }

    #[test]
    fn scan_across_chunks() {
        let m = two_regions();
        let find = |hay: &[u8]| hay.windows(4).position(|w| w == b"find");
        let base = 0x10_0000;
        assert_eq!(scan(&m, base, 3 * CHUNK, 4, find).unwrap(), None);
        for at in [0, 5, CHUNK - 2, 2 * CHUNK - 3, 3 * CHUNK - 4] {
            write_bytes(&m, base + at, b"find").unwrap();
            assert_eq!(scan(&m, base, 3 * CHUNK, 4, find).unwrap(), Some(at));
            // Only part of the match lies in the scanned range.
            if at > 0 {
                assert_eq!(scan(&m, base, at + 3, 4, find).unwrap(), None);
            }
            write_bytes(&m, base + at, b"\0\0\0\0").unwrap();
        }
        assert!(scan(&m, base, 4 * CHUNK, 4, find).is_err());
    }
}
