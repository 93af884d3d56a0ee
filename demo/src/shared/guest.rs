//! The guest program of the shared scenario, and the data it works on.
//!
//! All of guest RAM is one guest_memfd the VMM maps: the boot structures
//! and code sit where the private scenario puts them (layout.rs), the
//! data below lives in the same memory.  The guest reports by 8-byte
//! writes to `MMIO_BASE + 8 * code`, as in the private scenario.

use crate::asm::{Asm, Reg::*};
use crate::layout::{report_addr, report_index, CODE_ADDR, CODE_END, MIB, PAGE};

/// Pages the VMM fills with host_pattern() before the guest runs.
pub const DATA: u64 = 2 * MIB;
pub const DATA_PAGES: u64 = 16;
/// The data page the VMM punches out of guest_memfd while the guest waits.
pub const HOLE: u64 = DATA + 5 * PAGE;
/// Pages the guest fills with guest_pattern() for the VMM to read.
pub const RESULTS: u64 = 3 * MIB;
pub const RESULT_PAGES: u64 = 16;

// The hole has data pages on both sides; code, data and results do not overlap.
const _: () = assert!(HOLE > DATA && HOLE + PAGE < DATA + DATA_PAGES * PAGE);
const _: () =
    assert!(HOLE.is_multiple_of(PAGE) && CODE_END <= DATA && DATA + DATA_PAGES * PAGE <= RESULTS);

/// What each kind of writer puts at `gpa`: the key XOR the address, so
/// that a word read at the wrong offset does not match either.
pub const HOST_KEY: u64 = 0x686f_7374_0000_0000; // "host"
pub const GUEST_KEY: u64 = 0x6775_6573_0000_0000; // "gues"
pub const REFILL_KEY: u64 = 0x7265_6669_0000_0000; // "refi"

pub fn pattern(key: u64, gpa: u64) -> u64 {
    key ^ gpa
}

/// [gpa, gpa+len) filled with pattern(key, ·), one u64 per 8 bytes.
pub fn pattern_bytes(key: u64, gpa: u64, len: u64) -> Vec<u8> {
    (gpa..gpa + len)
        .step_by(8)
        .flat_map(|a| pattern(key, a).to_le_bytes())
        .collect()
}

/// How many of the u64 words of `bytes` (read at `gpa`) are pattern(key, ·).
pub fn words_matching(bytes: &[u8], key: u64, gpa: u64) -> u64 {
    let mut n = 0;
    for (i, w) in bytes.chunks_exact(8).enumerate() {
        let value = w.try_into().ok().map(u64::from_le_bytes);
        if value == Some(pattern(key, gpa + 8 * i as u64)) {
            n += 1;
        }
    }
    n
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The guest runs: code, page tables and GDT came through the mapping.
    Start,
    /// Value: the OR of (read ^ host_pattern) over the data pages.
    Data,
    /// Value: words of guest_pattern() the guest wrote to the results.
    Results,
    /// Value: the OR of the last page of RAM, which nobody wrote.
    Untouched,
    /// The guest waits: the VMM punches HOLE out of guest_memfd now.
    Punch,
    /// Value: the OR of the punched page, as the guest reads it.
    Hole,
    /// Value: the OR of (read ^ refill_pattern) over the punched page,
    /// after the VMM wrote it again.
    Refill,
    /// Value: the OR of (read ^ host_pattern) over the data pages but
    /// the punched one.
    Neighbours,
    /// The program is done; hlt follows.
    Done,
}

impl Code {
    const ALL: [Code; 9] = [
        Code::Start,
        Code::Data,
        Code::Results,
        Code::Untouched,
        Code::Punch,
        Code::Hole,
        Code::Refill,
        Code::Neighbours,
        Code::Done,
    ];

    pub fn addr(self) -> u64 {
        report_addr(self as u64)
    }

    pub fn from_addr(addr: u64) -> Option<Code> {
        Self::ALL.get(report_index(addr)?).copied()
    }
}

/// The last page of guest RAM: nobody writes it.
pub fn untouched(mem: u64) -> u64 {
    mem - PAGE
}

#[derive(Debug)]
pub struct Program {
    pub code: Vec<u8>,
    pub entry: u64,
    /// The reports the program makes, in order.
    pub reports: Vec<Code>,
}

struct Gen {
    a: Asm,
    reports: Vec<Code>,
}

impl Gen {
    /// Reports r8 under `code`.
    fn report_r8(&mut self, code: Code) {
        self.a.mov(Rax, R8);
        self.report(code);
    }

    fn report(&mut self, code: Code) {
        self.a.mov_imm(Rdi, code.addr());
        self.a.store(Rdi, Rax);
        self.reports.push(code);
    }

    fn report_imm(&mut self, code: Code, value: u64) {
        self.a.mov_imm(Rax, value);
        self.report(code);
    }

    /// ORs into r8, for each word of [gpa, gpa+len), the word read XOR
    /// pattern(key, its address), or the word itself if `key` is None.
    fn fold(&mut self, gpa: u64, len: u64, key: Option<u64>) {
        let a = &mut self.a;
        a.mov_imm(Rdi, gpa);
        a.mov_imm(Rsi, gpa + len);
        if let Some(k) = key {
            a.mov_imm(Rdx, k);
        }
        let top = a.len();
        a.load(Rax, Rdi);
        if key.is_some() {
            a.mov(Rcx, Rdi);
            a.xor(Rcx, Rdx);
            a.xor(Rax, Rcx);
        }
        a.or(R8, Rax);
        a.add_imm(Rdi, 8);
        a.cmp(Rdi, Rsi);
        a.jb(top);
    }

    /// Writes pattern(key, ·) into each word of [gpa, gpa+len).
    fn fill(&mut self, gpa: u64, len: u64, key: u64) {
        let a = &mut self.a;
        a.mov_imm(Rdi, gpa);
        a.mov_imm(Rsi, gpa + len);
        a.mov_imm(Rdx, key);
        let top = a.len();
        a.mov(Rax, Rdi);
        a.xor(Rax, Rdx);
        a.store(Rdi, Rax);
        a.add_imm(Rdi, 8);
        a.cmp(Rdi, Rsi);
        a.jb(top);
    }
}

/// The program for a guest of `mem` bytes: checks the VMM's data, writes
/// its results, reads untouched memory, waits for the punch, reads the
/// hole, the rewritten page and the neighbours, and halts.
pub fn build(mem: u64) -> Option<Program> {
    let mut g = Gen {
        a: Asm::new(),
        reports: Vec::new(),
    };
    let data_len = DATA_PAGES * PAGE;
    g.report_imm(Code::Start, 0);
    g.a.xor(R8, R8);
    g.fold(DATA, data_len, Some(HOST_KEY));
    g.report_r8(Code::Data);
    g.fill(RESULTS, RESULT_PAGES * PAGE, GUEST_KEY);
    g.report_imm(Code::Results, RESULT_PAGES * PAGE / 8);
    g.a.xor(R8, R8);
    g.fold(untouched(mem), PAGE, None);
    g.report_r8(Code::Untouched);
    // The guest read HOLE above, so the page is mapped for it when the
    // VMM punches it.
    g.report_imm(Code::Punch, HOLE);
    g.a.xor(R8, R8);
    g.fold(HOLE, PAGE, None);
    g.report_r8(Code::Hole);
    g.a.xor(R8, R8);
    g.fold(HOLE, PAGE, Some(REFILL_KEY));
    g.report_r8(Code::Refill);
    g.a.xor(R8, R8);
    g.fold(DATA, HOLE - DATA, Some(HOST_KEY));
    g.fold(HOLE + PAGE, DATA + data_len - HOLE - PAGE, Some(HOST_KEY));
    g.report_r8(Code::Neighbours);
    g.report_imm(Code::Done, 0);
    g.a.hlt();

    let code = g.a.bytes().to_vec();
    let fits = CODE_ADDR + code.len() as u64 <= CODE_END && untouched(mem) >= RESULTS + MIB;
    fits.then_some(Program {
        code,
        entry: CODE_ADDR,
        reports: g.reports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Code::Start.addr(), 0xd000_0000);
        assert_eq!(Code::Done.addr(), 0xd000_0040);
        for c in Code::ALL {
            assert_eq!(Code::from_addr(c.addr()), Some(c));
        }
        assert_eq!(Code::from_addr(0xd000_0003), None);
        assert_eq!(Code::from_addr(0xd000_0048), None);
        assert_eq!(Code::from_addr(0x20_0000), None);
    }

    #[test]
    fn patterns() {
        assert_eq!(pattern(HOST_KEY, 0x20_0008), 0x686f_7374_0020_0008);
        let b = pattern_bytes(GUEST_KEY, RESULTS, 32);
        assert_eq!(b.len(), 32);
        assert_eq!(&b[8..16], &pattern(GUEST_KEY, RESULTS + 8).to_le_bytes());
        assert_eq!(words_matching(&b, GUEST_KEY, RESULTS), 4);
        // At the wrong address, or with the wrong key, nothing matches.
        assert_eq!(words_matching(&b, GUEST_KEY, RESULTS + 8), 0);
        assert_eq!(words_matching(&b, HOST_KEY, RESULTS), 0);
        assert_eq!(words_matching(&[0; 4096], REFILL_KEY, HOLE), 0);
        // A trailing partial word is not a word.
        assert_eq!(words_matching(&b[..31], GUEST_KEY, RESULTS), 3);
    }

    #[test]
    fn untouched_page() {
        assert_eq!(untouched(8 * MIB), 0x7f_f000);
    }

    #[test]
    fn program_shape() {
        let p = build(64 * MIB).unwrap();
        assert_eq!(p.entry, CODE_ADDR);
        assert_eq!(p.reports, Code::ALL);
        assert_eq!(*p.code.last().unwrap(), 0xf4);
        assert_eq!(p.code.iter().filter(|&&b| b == 0xf4).count(), 1);
        // Seven loops: one jb each.
        assert_eq!(p.code.windows(2).filter(|w| w == &[0x0f, 0x82]).count(), 7);
        // The smallest guest still fits; one below it would not.
        assert!(build(8 * MIB).is_some());
        assert!(build(4 * MIB).is_none());
    }
}
