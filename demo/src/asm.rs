//! A tiny x86-64 encoder: just the instructions the guest program needs.

/// The 16 general-purpose registers, numbered as in the ModRM encoding
/// (the guest program uses a few; the encoder handles all).
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Rax = 0,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Reg {
    fn low(self) -> u8 {
        self as u8 & 7
    }
    fn ext(self) -> u8 {
        (self as u8 >> 3) & 1
    }
}

/// Which instruction makes a hypercall: it depends on the CPU vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hypercall {
    /// AMD (and Hygon): `vmmcall`.
    Vmmcall,
    /// Intel (and other VMX CPUs): `vmcall`.
    Vmcall,
}

impl Hypercall {
    /// Picks the instruction from the CPUID leaf 0 vendor string.
    pub fn for_vendor(vendor: &str) -> Self {
        match vendor {
            "AuthenticAMD" | "HygonGenuine" => Hypercall::Vmmcall,
            _ => Hypercall::Vmcall,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Hypercall::Vmmcall => "vmmcall",
            Hypercall::Vmcall => "vmcall",
        }
    }
}

/// A growing buffer of machine code.
#[derive(Debug, Default)]
pub struct Asm {
    code: Vec<u8>,
}

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.code.len()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.code
    }

    /// REX.W with the R (ModRM.reg) and B (ModRM.rm / opcode reg) bits.
    fn rex_w(&mut self, reg: Reg, rm: Reg) {
        self.code.push(0x48 | (reg.ext() << 2) | rm.ext());
    }

    /// ModRM for `[base]` with no displacement.
    fn mem(&mut self, reg: Reg, base: Reg) {
        match base.low() {
            // rsp/r12: rm=100 means "SIB follows"; SIB 0x24 = [base] alone.
            4 => self.code.extend([(reg.low() << 3) | 4, 0x24]),
            // rbp/r13: mod=00 rm=101 is RIP-relative, so use disp8 = 0.
            5 => self.code.extend([0x40 | (reg.low() << 3) | 5, 0]),
            b => self.code.push((reg.low() << 3) | b),
        }
    }

    /// `mov dst, imm64`
    pub fn mov_imm(&mut self, dst: Reg, imm: u64) {
        self.code.push(0x48 | dst.ext());
        self.code.push(0xb8 + dst.low());
        self.code.extend(imm.to_le_bytes());
    }

    /// `mov [base], src` (64-bit store)
    pub fn store(&mut self, base: Reg, src: Reg) {
        self.rex_w(src, base);
        self.code.push(0x89);
        self.mem(src, base);
    }

    /// `mov dst, [base]` (64-bit load)
    pub fn load(&mut self, dst: Reg, base: Reg) {
        self.rex_w(dst, base);
        self.code.push(0x8b);
        self.mem(dst, base);
    }

    /// `xor dst, src`
    pub fn xor(&mut self, dst: Reg, src: Reg) {
        self.rex_w(src, dst);
        self.code
            .extend([0x31, 0xc0 | (src.low() << 3) | dst.low()]);
    }

    /// `mov dst, src` (64-bit registers)
    pub fn mov(&mut self, dst: Reg, src: Reg) {
        self.rex_w(src, dst);
        self.code
            .extend([0x89, 0xc0 | (src.low() << 3) | dst.low()]);
    }

    /// `or dst, src`
    pub fn or(&mut self, dst: Reg, src: Reg) {
        self.rex_w(src, dst);
        self.code
            .extend([0x09, 0xc0 | (src.low() << 3) | dst.low()]);
    }

    /// `add dst, imm32` (sign-extended)
    pub fn add_imm(&mut self, dst: Reg, imm: i32) {
        self.code.push(0x48 | dst.ext());
        self.code.extend([0x81, 0xc0 | dst.low()]);
        self.code.extend(imm.to_le_bytes());
    }

    /// `cmp a, b` (flags of a - b)
    pub fn cmp(&mut self, a: Reg, b: Reg) {
        self.rex_w(b, a);
        self.code.extend([0x39, 0xc0 | (b.low() << 3) | a.low()]);
    }

    /// `jb target` (unsigned below), target an offset in this code.
    pub fn jb(&mut self, target: usize) {
        let end = self.code.len() as i64 + 6;
        let rel = i32::try_from(target as i64 - end).expect("jump within 2 GiB");
        self.code.extend([0x0f, 0x82]);
        self.code.extend(rel.to_le_bytes());
    }

    /// `vmmcall` or `vmcall`
    pub fn hypercall(&mut self, insn: Hypercall) {
        self.code.extend(match insn {
            Hypercall::Vmmcall => [0x0f, 0x01, 0xd9],
            Hypercall::Vmcall => [0x0f, 0x01, 0xc1],
        });
    }

    /// `hlt`
    pub fn hlt(&mut self) {
        self.code.push(0xf4);
    }
}

#[cfg(test)]
mod tests {
    use super::Reg::*;
    use super::*;

    fn enc(f: impl FnOnce(&mut Asm)) -> Vec<u8> {
        let mut a = Asm::new();
        f(&mut a);
        a.bytes().to_vec()
    }

    #[test]
    fn mov_imm64() {
        assert_eq!(
            enc(|a| a.mov_imm(Rax, 0x1122_3344_5566_7788)),
            [0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
        assert_eq!(
            enc(|a| a.mov_imm(Rdi, 0xd000_0000)),
            [0x48, 0xbf, 0, 0, 0, 0xd0, 0, 0, 0, 0]
        );
        assert_eq!(
            enc(|a| a.mov_imm(R15, 1)),
            [0x49, 0xbf, 1, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn loads_and_stores() {
        assert_eq!(enc(|a| a.store(Rdi, Rax)), [0x48, 0x89, 0x07]);
        assert_eq!(enc(|a| a.load(Rax, Rdi)), [0x48, 0x8b, 0x07]);
        assert_eq!(enc(|a| a.store(Rdi, R9)), [0x4c, 0x89, 0x0f]);
        assert_eq!(enc(|a| a.load(R8, Rbx)), [0x4c, 0x8b, 0x03]);
        assert_eq!(enc(|a| a.store(Rsp, Rax)), [0x48, 0x89, 0x04, 0x24]);
        assert_eq!(enc(|a| a.store(R12, Rax)), [0x49, 0x89, 0x04, 0x24]);
        assert_eq!(enc(|a| a.store(Rbp, Rax)), [0x48, 0x89, 0x45, 0x00]);
        assert_eq!(enc(|a| a.store(R13, Rax)), [0x49, 0x89, 0x45, 0x00]);
        assert_eq!(enc(|a| a.load(Rsi, Rsp)), [0x48, 0x8b, 0x34, 0x24]);
    }

    #[test]
    fn xor_hypercall_hlt() {
        assert_eq!(enc(|a| a.xor(Rax, Rbx)), [0x48, 0x31, 0xd8]);
        assert_eq!(enc(|a| a.xor(Rax, Rax)), [0x48, 0x31, 0xc0]);
        assert_eq!(enc(|a| a.xor(R10, Rcx)), [0x49, 0x31, 0xca]);
        assert_eq!(enc(|a| a.hypercall(Hypercall::Vmmcall)), [0x0f, 0x01, 0xd9]);
        assert_eq!(enc(|a| a.hypercall(Hypercall::Vmcall)), [0x0f, 0x01, 0xc1]);
        assert_eq!(enc(|a| a.hlt()), [0xf4]);
    }

    #[test]
    fn loop_instructions() {
        assert_eq!(enc(|a| a.mov(Rax, Rdi)), [0x48, 0x89, 0xf8]);
        assert_eq!(enc(|a| a.mov(R8, Rcx)), [0x49, 0x89, 0xc8]);
        assert_eq!(enc(|a| a.or(R8, Rcx)), [0x49, 0x09, 0xc8]);
        assert_eq!(enc(|a| a.or(Rax, R9)), [0x4c, 0x09, 0xc8]);
        assert_eq!(
            enc(|a| a.add_imm(Rdi, 4096)),
            [0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00]
        );
        assert_eq!(
            enc(|a| a.add_imm(R9, -1)),
            [0x49, 0x81, 0xc1, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(enc(|a| a.cmp(Rdi, Rsi)), [0x48, 0x39, 0xf7]);
        assert_eq!(enc(|a| a.cmp(R10, Rax)), [0x49, 0x39, 0xc2]);
        // A jump to itself: rel32 = -6.
        assert_eq!(enc(|a| a.jb(0)), [0x0f, 0x82, 0xfa, 0xff, 0xff, 0xff]);
        // A jump back over a 3-byte instruction.
        let code = enc(|a| {
            a.xor(Rax, Rax);
            a.jb(0);
        });
        assert_eq!(&code[3..], [0x0f, 0x82, 0xf7, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn vendor() {
        assert_eq!(Hypercall::for_vendor("AuthenticAMD"), Hypercall::Vmmcall);
        assert_eq!(Hypercall::for_vendor("GenuineIntel"), Hypercall::Vmcall);
    }
}
