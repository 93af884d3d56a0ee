//! The guest program: straight-line machine code the VMM generates.
//!
//! The guest reports to the VMM by 8-byte writes to `MMIO_BASE + 8 * code`
//! (no memslot there, so each one is a `KVM_EXIT_MMIO` write).

use crate::asm::{Asm, Hypercall, Reg::*};
use crate::layout::{report_addr, report_index, Layout, CODE_ADDR, CODE_END, MIB, PAGE};
use crate::secret::Secret;

/// `KVM_HC_MAP_GPA_RANGE` and its "encrypted" (= private) attribute, from
/// the hypercall ABI (include/uapi/linux/kvm_para.h); kvm-bindings has no
/// constants for them.
pub const KVM_HC_MAP_GPA_RANGE: u64 = 12;
pub const KVM_MAP_GPA_RANGE_ENCRYPTED: u64 = 1 << 4;

/// Pages of the buffer that goes back and forth.
pub const BUFFER_PAGES: u64 = 2;
/// Pages of the I/O window the guest writes without asking first.
pub const IO_PAGES: u64 = 2;
/// Where in a page the attribute probe reads (clear of the secret).
pub const PROBE_OFFSET: u64 = 0x100;
/// The sweep covers at most this much of slot 1 (each page it writes
/// costs a guest_memfd page), and all of slot 2.
pub const SWEEP_RAM_MAX: u64 = 256 * MIB;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The secret is in private memory.
    Secret,
    /// Value: what a MAP_GPA_RANGE hypercall returned (rax).
    HcRet,
    /// Value: i; message i is in the (shared) buffer.
    Message,
    /// Value: first word of the buffer after it became private again.
    Readback,
    /// Value: pages of the I/O window written.
    IoWritten,
    /// Value: secret half XOR expected (0 if intact).
    SecretCheck,
    /// Value: the word the attribute probe read.
    Probe,
    /// The main program is done; hlt follows.
    Done,
    /// Value: the OR of (written ^ read back) over the sweep (0 if each
    /// page read back what the guest wrote); hlt follows.
    Sweep,
}

impl Code {
    const ALL: [Code; 9] = [
        Code::Secret,
        Code::HcRet,
        Code::Message,
        Code::Readback,
        Code::IoWritten,
        Code::SecretCheck,
        Code::Probe,
        Code::Done,
        Code::Sweep,
    ];

    pub fn addr(self) -> u64 {
        report_addr(self as u64)
    }

    pub fn from_addr(addr: u64) -> Option<Code> {
        Self::ALL.get(report_index(addr)?).copied()
    }
}

/// "hello from the guest #i", zero padded to 32 bytes.
pub fn message(i: u32) -> [u8; 32] {
    let mut m = [0u8; 32];
    let s = format!("hello from the guest #{i}");
    m[..s.len()].copy_from_slice(s.as_bytes());
    m
}

/// The word the guest writes at `word` of I/O-window page `page`.
pub fn io_pattern(page: u64, word: u64) -> u64 {
    0x494f_5749_4e44_4f57 ^ ((page << 8) | word)
}

/// What the host writes at PROBE_OFFSET of probe page `k`'s shared memory.
pub fn probe_marker(k: usize) -> u64 {
    0x7072_6f62_6500_0000 | k as u64
}

/// What the sweep writes at `gpa` (PROBE_OFFSET of each page).
pub fn sweep_marker(gpa: u64) -> u64 {
    0x7377_6565_7000_0000 ^ gpa
}

/// The ranges the sweep covers, (gpa, len): the start of slot 1, up to
/// SWEEP_RAM_MAX (all of it at the default size), and all of slot 2.
pub fn sweep_ranges(l: &Layout) -> Vec<(u64, u64)> {
    vec![
        (l.ram_base(), l.ram_size().min(SWEEP_RAM_MAX)),
        (l.io_base(), l.io_size()),
    ]
}

/// One loop of the sweep: the store that faults on a private page
/// without guest_memfd, and where the VMM resumes the guest then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepLoop {
    pub store: u64,
    pub next: u64,
}

#[derive(Debug)]
pub struct Program {
    pub code: Vec<u8>,
    pub main_entry: u64,
    pub probe_entry: u64,
    /// MMIO reports the main part makes.
    pub main_reports: u64,
    /// Pages the probe reads (at PROBE_OFFSET), each reported in order.
    pub probes: Vec<u64>,
    /// The page the probe touches last: private without guest_memfd, it must fault.
    pub fault_probe: u64,
    /// The sweep, entered by the VMM after the probe: the guest writes
    /// sweep_marker() into every page of sweep_ranges() and reads it back.
    pub sweep_entry: u64,
    pub sweep_loops: Vec<SweepLoop>,
}

struct Gen {
    a: Asm,
    reports: u64,
    insn: Hypercall,
}

impl Gen {
    /// Reports rax under `code`.
    fn report(&mut self, code: Code) {
        self.a.mov_imm(Rdi, code.addr());
        self.a.store(Rdi, Rax);
        self.reports += 1;
    }

    fn report_imm(&mut self, code: Code, value: u64) {
        self.a.mov_imm(Rax, value);
        self.report(code);
    }

    /// Writes sweep_marker() at PROBE_OFFSET of each page of [gpa,
    /// gpa+len), reads it back and ORs the difference into r8.
    fn sweep_loop(&mut self, gpa: u64, len: u64) -> SweepLoop {
        let a = &mut self.a;
        a.mov_imm(Rdi, gpa + PROBE_OFFSET);
        a.mov_imm(Rsi, gpa + len + PROBE_OFFSET);
        a.mov_imm(Rdx, sweep_marker(0));
        let top = a.len();
        a.mov(Rax, Rdi);
        a.xor(Rax, Rdx);
        let store = CODE_ADDR + a.len() as u64;
        a.store(Rdi, Rax);
        a.load(Rcx, Rdi);
        a.xor(Rcx, Rax);
        a.or(R8, Rcx);
        let next = CODE_ADDR + a.len() as u64;
        a.add_imm(Rdi, PAGE as i32);
        a.cmp(Rdi, Rsi);
        a.jb(top);
        SweepLoop { store, next }
    }

    fn store_imm(&mut self, gpa: u64, value: u64) {
        self.a.mov_imm(Rdi, gpa);
        self.a.mov_imm(Rax, value);
        self.a.store(Rdi, Rax);
    }

    /// Unmasks the secret in registers and stores it at `gpa`.
    fn store_secret(&mut self, gpa: u64, s: &Secret) {
        for i in 0..2 {
            self.a.mov_imm(Rdi, gpa + 8 * i as u64);
            self.a.mov_imm(Rax, s.masked()[i]);
            self.a.mov_imm(Rbx, s.masks[i]);
            self.a.xor(Rax, Rbx);
            self.a.store(Rdi, Rax);
        }
        self.a.xor(Rax, Rax);
        self.a.xor(Rbx, Rbx);
    }

    /// Reports `[gpa + 8i] ^ secret[i]` for both halves (0 if intact).
    fn check_secret(&mut self, gpa: u64, s: &Secret) {
        for i in 0..2 {
            self.a.mov_imm(Rdi, gpa + 8 * i as u64);
            self.a.load(Rax, Rdi);
            self.a.mov_imm(Rbx, s.masked()[i]);
            self.a.xor(Rax, Rbx);
            self.a.mov_imm(Rbx, s.masks[i]);
            self.a.xor(Rax, Rbx);
            self.report(Code::SecretCheck);
        }
    }

    /// KVM_HC_MAP_GPA_RANGE(gpa, npages, attrs); reports the result.
    fn map_gpa_range(&mut self, gpa: u64, npages: u64, private: bool) {
        let attrs = if private {
            KVM_MAP_GPA_RANGE_ENCRYPTED
        } else {
            0
        };
        self.a.mov_imm(Rax, KVM_HC_MAP_GPA_RANGE);
        self.a.mov_imm(Rbx, gpa);
        self.a.mov_imm(Rcx, npages);
        self.a.mov_imm(Rdx, attrs);
        self.a.hypercall(self.insn);
        self.report(Code::HcRet);
    }
}

/// The pages the probe reads: RAM start (secret page), the buffer, the
/// last RAM page, and the I/O-window pages the guest wrote.
pub fn probe_pages(l: &Layout) -> Vec<u64> {
    let mut p = vec![
        l.ram_base(),
        l.buffer(),
        l.buffer() + PAGE,
        l.ram_base() + l.ram_size() - PAGE,
    ];
    p.extend((0..IO_PAGES).map(|i| l.io_base() + i * PAGE));
    p
}

/// Generates the main program (steps a-d) followed by the probe.
pub fn build(l: &Layout, conversions: u32, s: &Secret, insn: Hypercall) -> Option<Program> {
    let mut g = Gen {
        a: Asm::new(),
        reports: 0,
        insn,
    };
    // a. the secret, in private memory
    g.store_secret(l.ram_base(), s);
    g.report_imm(Code::Secret, 0);
    // b. round trips of the buffer: private -> shared -> private
    let buf = l.buffer();
    for i in 0..conversions {
        g.store_secret(buf, s);
        g.map_gpa_range(buf, BUFFER_PAGES, false);
        for (w, chunk) in message(i).chunks(8).enumerate() {
            let word = u64::from_le_bytes(chunk.try_into().ok()?);
            g.store_imm(buf + 8 * w as u64, word);
        }
        g.report_imm(Code::Message, u64::from(i));
        g.map_gpa_range(buf, BUFFER_PAGES, true);
        g.a.mov_imm(Rdi, buf);
        g.a.load(Rax, Rdi);
        g.report(Code::Readback);
    }
    // c. the I/O window, without asking
    for p in 0..IO_PAGES {
        for w in 0..2 {
            g.store_imm(l.io_base() + p * PAGE + 8 * w, io_pattern(p, w));
        }
    }
    g.report_imm(Code::IoWritten, IO_PAGES);
    g.check_secret(l.ram_base(), s);
    g.report_imm(Code::Done, 0);
    // d.
    g.a.hlt();
    let main_reports = g.reports;

    // The probe, entered by the VMM after the hlt.
    let probe_entry = CODE_ADDR + g.a.len() as u64;
    let probes = probe_pages(l);
    for &p in &probes {
        g.a.mov_imm(Rdi, p + PROBE_OFFSET);
        g.a.load(Rax, Rdi);
        g.report(Code::Probe);
    }
    let fault_probe = l.io_base() + MIB;
    g.a.mov_imm(Rdi, fault_probe);
    g.a.load(Rax, Rdi);
    g.a.hlt();

    // The sweep, entered by the VMM after the probe's fault.
    let sweep_entry = CODE_ADDR + g.a.len() as u64;
    g.a.xor(R8, R8);
    let sweep_loops = sweep_ranges(l)
        .into_iter()
        .map(|(gpa, len)| g.sweep_loop(gpa, len))
        .collect();
    g.a.mov_imm(Rdi, Code::Sweep.addr());
    g.a.store(Rdi, R8);
    g.a.hlt();

    let code = g.a.bytes().to_vec();
    (CODE_ADDR + code.len() as u64 <= CODE_END).then_some(Program {
        code,
        main_entry: CODE_ADDR,
        probe_entry,
        main_reports,
        probes,
        fault_probe,
        sweep_entry,
        sweep_loops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::MAX_CONVERSIONS;

    fn secret() -> Secret {
        Secret::pattern(29, 3)
    }

    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    #[test]
    fn codes() {
        assert_eq!(Code::Secret.addr(), 0xd000_0000);
        assert_eq!(Code::Done.addr(), 0xd000_0038);
        assert_eq!(Code::Sweep.addr(), 0xd000_0040);
        for c in Code::ALL {
            assert_eq!(Code::from_addr(c.addr()), Some(c));
        }
        assert_eq!(Code::from_addr(0xd000_0004), None);
        assert_eq!(Code::from_addr(0xd000_0048), None);
        assert_eq!(Code::from_addr(0x1000), None);
    }

    #[test]
    fn messages() {
        let m = message(7);
        assert_eq!(&m[..23], b"hello from the guest #7");
        assert!(m[23..].iter().all(|&b| b == 0));
        assert_eq!(&message(4095)[..26], b"hello from the guest #4095");
    }

    #[test]
    fn program_shape() {
        let l = Layout::new(64 * MIB);
        let s = secret();
        let p = build(&l, 4, &s, Hypercall::Vmmcall).unwrap();
        // starts with: mov rdi, ram_base
        assert_eq!(&p.code[..10], &[0x48, 0xbf, 0, 0, 0x20, 0, 0, 0, 0, 0]);
        assert_eq!(count(&p.code, &[0x0f, 0x01, 0xd9]), 8);
        assert_eq!(count(&p.code, &[0x0f, 0x01, 0xc1]), 0);
        assert_eq!(count(&p.code, &[0xf4]), 3);
        assert_eq!(p.main_reports, 4 * 4 + 5);
        assert_eq!(p.code[(p.probe_entry - CODE_ADDR - 1) as usize], 0xf4);
        assert_eq!(p.probes.len(), 6);
        assert_eq!(p.fault_probe, l.io_base() + MIB);
        // The sweep follows the probe's last load; each loop's store is
        // "mov [rdi], rax" and the VMM resumes a faulting one at "add rdi, 4096".
        let at = |gpa: u64, n: usize| &p.code[(gpa - CODE_ADDR) as usize..][..n];
        assert_eq!(at(p.sweep_entry - 4, 4), [0x48, 0x8b, 0x07, 0xf4]);
        assert_eq!(p.sweep_loops.len(), 2);
        for sl in &p.sweep_loops {
            assert_eq!(at(sl.store, 3), [0x48, 0x89, 0x07]);
            assert_eq!(at(sl.next, 7), [0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00]);
        }
        assert_eq!(*p.code.last().unwrap(), 0xf4);
        // Only the masked secret is in the code.
        assert_eq!(s.find_in(&p.code), None);
        assert_eq!(count(&p.code, &s.masked()[0].to_le_bytes()), 5 + 1);
    }

    #[test]
    fn sweep_covers_slots_1_and_2() {
        let l = Layout::new(64 * MIB);
        let r = sweep_ranges(&l);
        assert_eq!(r, [(0x20_0000, 60 * MIB), (0x3e0_0000, 2 * MIB)]);
        let pages: u64 = r.iter().map(|&(_, len)| len / PAGE).sum();
        assert_eq!(pages, 15872);
        let big = Layout::new(3 << 30);
        assert_eq!(sweep_ranges(&big)[0], (0x20_0000, SWEEP_RAM_MAX));
        assert_eq!(sweep_ranges(&big)[1], (big.io_base(), 2 * MIB));
        assert_eq!(sweep_marker(0x20_0100), 0x7377_6565_7020_0100);
    }

    #[test]
    fn largest_program_fits() {
        let l = Layout::new(8 * MIB);
        let p = build(&l, MAX_CONVERSIONS, &secret(), Hypercall::Vmcall).unwrap();
        assert_eq!(
            count(&p.code, &[0x0f, 0x01, 0xc1]),
            2 * MAX_CONVERSIONS as usize
        );
    }
}
