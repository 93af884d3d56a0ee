//! Guest-physical layout, identity page tables, GDT and long-mode registers.

use kvm_bindings::{kvm_segment, kvm_sregs};

use crate::error::Result;
use crate::mem::{write_u64, Memory};

pub const PAGE: u64 = 4096;
pub const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Slot 0: 2 MiB of plain memory for the boot structures, code and stack.
pub const SLOT0_SIZE: u64 = 2 * MIB;
pub const GDT_ADDR: u64 = 0x1000;
pub const PML4_ADDR: u64 = 0x2000;
pub const PDPT_ADDR: u64 = 0x3000;
/// Four page directories (one per GiB) follow the PDPT.
pub const PD_ADDR: u64 = 0x4000;
pub const CODE_ADDR: u64 = 0x1_0000;
/// Code must end below the stack page.
pub const CODE_END: u64 = SLOT0_SIZE - PAGE;
pub const STACK_TOP: u64 = SLOT0_SIZE;
/// The identity map covers the first 4 GiB with 2 MiB pages.
pub const MAPPED: u64 = 4 * GIB;
/// Guest writes here have no memslot: they reach the VMM as MMIO exits.
pub const MMIO_BASE: u64 = 0xd000_0000;

/// The address of the guest's report number `n` (both scenarios): an
/// 8-byte write there is an MMIO exit the VMM decodes.
pub const fn report_addr(n: u64) -> u64 {
    MMIO_BASE + 8 * n
}

/// The report number of `addr`, if it is a report address.
pub fn report_index(addr: u64) -> Option<usize> {
    let off = addr.checked_sub(MMIO_BASE)?;
    if off % 8 != 0 {
        return None;
    }
    usize::try_from(off / 8).ok()
}

pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;
/// Null, 64-bit code (L=1, P, DPL 0, exec/read), data (P, read/write).
pub const GDT: [u64; 3] = [0, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff];

const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_PS: u64 = 1 << 7;

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Where everything is for a guest of `mem` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub mem: u64,
}

impl Layout {
    pub fn new(mem: u64) -> Self {
        Layout { mem }
    }
    /// Slot 1: guest_memfd-backed RAM.
    pub fn ram_base(&self) -> u64 {
        SLOT0_SIZE
    }
    pub fn ram_size(&self) -> u64 {
        self.mem - 4 * MIB
    }
    /// Slot 2: the plain "I/O window", private by attribute but without guest_memfd.
    pub fn io_base(&self) -> u64 {
        self.mem - 2 * MIB
    }
    pub fn io_size(&self) -> u64 {
        2 * MIB
    }
    /// The 2-page buffer that goes back and forth between private and shared.
    pub fn buffer(&self) -> u64 {
        self.ram_base() + MIB
    }
    pub fn in_ram(&self, gpa: u64, len: u64) -> bool {
        within(gpa, len, self.ram_base(), self.ram_size())
    }
    pub fn in_io(&self, gpa: u64, len: u64) -> bool {
        within(gpa, len, self.io_base(), self.io_size())
    }
    /// (GPA, size) of slots 0, 1 and 2: together all of [0, mem).
    pub fn slots(&self) -> [(u64, u64); 3] {
        [
            (0, SLOT0_SIZE),
            (self.ram_base(), self.ram_size()),
            (self.io_base(), self.io_size()),
        ]
    }
    /// The slot (1 or 2) that holds all of [gpa, gpa+len), and the offset
    /// of gpa in it.
    pub fn slot_of(&self, gpa: u64, len: u64) -> Option<(usize, u64)> {
        if self.in_ram(gpa, len) {
            Some((1, gpa - self.ram_base()))
        } else if self.in_io(gpa, len) {
            Some((2, gpa - self.io_base()))
        } else {
            None
        }
    }
}

/// Whether [gpa, gpa+len) lies inside [base, base+size).
pub fn within(gpa: u64, len: u64, base: u64, size: u64) -> bool {
    gpa >= base && len <= size && gpa - base <= size - len
}

/// Writes the GDT and the identity page tables into guest memory (the
/// first 32 KiB of guest-physical memory).
pub fn write_boot_structures(mem: &Memory) -> Result<()> {
    for (i, d) in GDT.iter().enumerate() {
        write_u64(mem, GDT_ADDR + 8 * i as u64, *d)?;
    }
    write_u64(mem, PML4_ADDR, PDPT_ADDR | PTE_P | PTE_RW)?;
    for g in 0..MAPPED / GIB {
        let pd = PD_ADDR + g * PAGE;
        write_u64(mem, PDPT_ADDR + 8 * g, pd | PTE_P | PTE_RW)?;
        for j in 0..512 {
            let pde = (g * GIB + j * 2 * MIB) | PTE_P | PTE_RW | PTE_PS;
            write_u64(mem, pd + 8 * j, pde)?;
        }
    }
    Ok(())
}

fn segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        ..Default::default()
    }
}

/// Puts the vCPU straight into 64-bit long mode with paging on.
pub fn long_mode_sregs(sregs: &mut kvm_sregs) {
    sregs.cs = segment(CODE_SELECTOR, 0xb, true);
    let data = segment(DATA_SELECTOR, 0x3, false);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (8 * GDT.len() - 1) as u16;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 = CR4_PAE;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.efer = EFER_LME | EFER_LMA;
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::mem::{anon_region, memory, read_bytes, read_u64};

    fn read(mem: &Memory, addr: u64) -> u64 {
        read_u64(mem, addr).unwrap()
    }

    #[test]
    fn layout_64m() {
        let l = Layout::new(64 * MIB);
        assert_eq!(l.ram_base(), 0x20_0000);
        assert_eq!(l.ram_size(), 60 * MIB);
        assert_eq!(l.io_base(), 0x3e0_0000);
        assert_eq!(l.buffer(), 0x30_0000);
        assert!(l.in_ram(l.buffer(), 2 * PAGE));
        assert!(!l.in_ram(l.io_base(), PAGE));
        assert!(l.in_io(l.io_base() + 2 * MIB - PAGE, PAGE));
        assert!(!l.in_io(l.io_base() + 2 * MIB - PAGE, 2 * PAGE));
        assert!(!within(u64::MAX - 1, 4, 0, u64::MAX));
        assert_eq!(l.slot_of(l.buffer(), 2 * PAGE), Some((1, MIB)));
        assert_eq!(l.slot_of(l.io_base() + PAGE, PAGE), Some((2, PAGE)));
        assert_eq!(l.slot_of(l.io_base() - PAGE, 2 * PAGE), None);
        assert_eq!(l.slot_of(0, PAGE), None);
        let s = l.slots();
        assert_eq!(s[1], (l.ram_base(), l.ram_size()));
        assert_eq!(s[2].0 + s[2].1, l.mem);
        assert!(s.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
    }

    #[test]
    fn page_tables_identity_map() {
        let mem = memory(vec![anon_region(0, SLOT0_SIZE).unwrap()]).unwrap();
        write_boot_structures(&mem).unwrap();
        assert_eq!(read(&mem, GDT_ADDR + 8), 0x00af_9b00_0000_ffff);
        assert_eq!(read(&mem, PML4_ADDR), 0x3003);
        assert_eq!(read(&mem, PML4_ADDR + 8), 0);
        assert_eq!(read(&mem, PDPT_ADDR), 0x4003);
        assert_eq!(read(&mem, PDPT_ADDR + 3 * 8), 0x7003);
        assert_eq!(read(&mem, PDPT_ADDR + 4 * 8), 0);
        assert_eq!(read(&mem, PD_ADDR), 0x83);
        assert_eq!(read(&mem, PD_ADDR + 8), 0x20_0083);
        // 0xd000_0000 = GiB 3, 2 MiB page 128.
        assert_eq!(read(&mem, PD_ADDR + 3 * PAGE + 128 * 8), MMIO_BASE | 0x83);
        assert_eq!(read(&mem, PD_ADDR + 4 * PAGE - 8), 0xffe0_0083);
        // Nothing written past the last page directory.
        let end = PD_ADDR + 4 * PAGE;
        let rest = read_bytes(&mem, end, SLOT0_SIZE - end).unwrap();
        assert!(rest.iter().all(|&b| b == 0));
    }

    #[test]
    fn sregs() {
        let mut s = kvm_sregs::default();
        long_mode_sregs(&mut s);
        assert_eq!((s.cs.l, s.cs.db, s.cs.selector), (1, 0, 0x08));
        assert_eq!((s.ss.l, s.ss.db, s.ss.type_), (0, 1, 3));
        assert_eq!(s.cr0, 0x8001_0033);
        assert_eq!(s.cr4, 0x20);
        assert_eq!(s.efer, 0x500);
        assert_eq!((s.gdt.base, s.gdt.limit), (0x1000, 23));
    }
}
