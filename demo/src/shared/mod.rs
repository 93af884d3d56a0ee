//! The shared scenario: a DEFAULT VM whose whole RAM is one guest_memfd
//! created with MMAP | INIT_SHARED, as QEMU 11 (`memory-backend-memfd,
//! guest-memfd=on`), Firecracker and libkrun run VMs.  The VMM maps the
//! guest_memfd MAP_SHARED, holds the mapping as vm-memory guest memory,
//! and binds it to one guest_memfd-only memslot: the guest sees exactly
//! what the host writes through the mapping, and the other way round.

pub mod guest;
pub mod report;

use std::fmt::Write;
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use kvm_bindings::{
    kvm_create_guest_memfd, kvm_userspace_memory_region2, CpuId, KVM_MEM_GUEST_MEMFD,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};

use crate::bail;
use crate::error::{Context, Error, Result};
use crate::layout::{write_boot_structures, MIB, MMIO_BASE, PAGE};
use crate::mem::{self, Memory};
use crate::report::{render_checks, render_exits, verdict, Stats, Status};
use crate::vcpu::{self, rip};
use guest::{
    pattern_bytes, untouched, words_matching, Code, Program, DATA, DATA_PAGES, GUEST_KEY, HOLE,
    HOST_KEY, REFILL_KEY, RESULTS, RESULT_PAGES,
};
use report::{evaluate, Outcome};

/// The flags of KVM_CREATE_GUEST_MEMFD and the capability that lists
/// those a VM accepts, from the Linux 6.18 uAPI (include/uapi/linux/kvm.h);
/// kvm-bindings 0.14 has no constants for them.
pub const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;
pub const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = 1 << 1;
pub const KVM_CAP_GUEST_MEMFD_FLAGS: u64 = 244;
/// What this scenario creates its guest_memfd with.
const FLAGS: u64 = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

/// "MMAP | INIT_SHARED" for the flags of `flags` this scenario knows.
fn flag_names(flags: u64) -> String {
    let names: Vec<&str> = [
        (GUEST_MEMFD_FLAG_MMAP, "MMAP"),
        (GUEST_MEMFD_FLAG_INIT_SHARED, "INIT_SHARED"),
    ]
    .iter()
    .filter(|(f, _)| flags & f != 0)
    .map(|&(_, n)| n)
    .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(" | ")
    }
}

/// Why a VM whose KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD_FLAGS) answered
/// `answer` cannot run this scenario, or None if it can.
pub fn missing_flags(answer: i32) -> Option<String> {
    let flags = u64::try_from(answer).unwrap_or(0);
    if answer >= 0 && flags & FLAGS == FLAGS {
        return None;
    }
    Some(format!(
        "KVM_CAP_GUEST_MEMFD_FLAGS is {answer:#x} on a DEFAULT VM, without {}: this kernel has no \
         mmap-able guest_memfd (the Linux 6.18 uAPI; 6.12's C guest_memfd lacks it)",
        flag_names(FLAGS & !flags)
    ))
}

struct SharedVm {
    /// Declared before `mem`: the VM (and its memslot) goes first.
    vm: VmFd,
    gmem: Arc<File>,
    /// The one region: all of guest_memfd, mapped MAP_SHARED at GPA 0.
    mem: Memory,
    size: u64,
    stats: Stats,
    outcome: Outcome,
}

impl SharedVm {
    /// Binds all of the mapping to slot 0 with its guest_memfd, as QEMU
    /// does: guest_memfd at offset 0, and the mapping's address.
    fn bind(&self) -> Result<()> {
        let region = kvm_userspace_memory_region2 {
            slot: 0,
            flags: KVM_MEM_GUEST_MEMFD,
            guest_phys_addr: 0,
            memory_size: self.size,
            userspace_addr: mem::host_addr(&self.mem, 0)?,
            guest_memfd_offset: 0,
            guest_memfd: std::os::fd::AsRawFd::as_raw_fd(&*self.gmem) as u32,
            ..Default::default()
        };
        // SAFETY: the mapping belongs to this SharedVm and outlives the vCPU
        // (run drops the vCPU first) and the VM (declared before `mem`, so
        // dropped first); guest_memfd is the memory behind it.
        unsafe { self.vm.set_user_memory_region2(region) }
            .context("KVM_SET_USER_MEMORY_REGION2 slot 0 (guest_memfd-only)")
    }

    /// Writes the boot structures, the code and the data through the mapping.
    fn load(&self, program: &Program) -> Result<()> {
        write_boot_structures(&self.mem)?;
        mem::write_bytes(&self.mem, program.entry, &program.code)?;
        let data = pattern_bytes(HOST_KEY, DATA, DATA_PAGES * PAGE);
        mem::write_bytes(&self.mem, DATA, &data)
    }

    /// Runs the vCPU until hlt.
    fn run(&mut self, vcpu: &mut VcpuFd, max_exits: usize) -> Result<()> {
        for _ in 0..max_exits {
            match vcpu.run() {
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    self.stats.exit("mmio_write");
                    self.on_report(addr, data)?;
                }
                Ok(VcpuExit::Hlt) => {
                    self.stats.exit("hlt");
                    self.outcome.halted = true;
                    return Ok(());
                }
                Ok(other) => {
                    let what = format!("{other:?}");
                    bail!("unexpected exit {what} at {}", rip(vcpu))
                }
                Err(e) => bail!("KVM_RUN failed: {e} at {}", rip(vcpu)),
            }
        }
        bail!("the guest did not stop within {max_exits} exits")
    }

    /// Whether [gpa, gpa+len) reads all zeros through the mapping.
    fn zeros(&self, gpa: u64, len: u64) -> Result<bool> {
        Ok(mem::read_bytes(&self.mem, gpa, len)?
            .iter()
            .all(|&b| b == 0))
    }

    /// Whether every word of [gpa, gpa+len) is pattern(key, ·) through the mapping.
    fn holds(&self, key: u64, gpa: u64, len: u64) -> Result<bool> {
        let bytes = mem::read_bytes(&self.mem, gpa, len)?;
        Ok(words_matching(&bytes, key, gpa) == len / 8)
    }

    /// A report from the guest (an MMIO write); the guest waits meanwhile.
    fn on_report(&mut self, addr: u64, data: &[u8]) -> Result<()> {
        let code = Code::from_addr(addr);
        let value = <[u8; 8]>::try_from(data).ok().map(u64::from_le_bytes);
        let (Some(code), Some(value)) = (code, value) else {
            bail!("unexpected MMIO write of {} bytes at {addr:#x}", data.len());
        };
        self.outcome.reports.push(code);
        match code {
            Code::Start | Code::Done => {}
            Code::Data => self.outcome.data = Some(value),
            Code::Results => {
                let len = RESULT_PAGES * PAGE;
                let bytes = mem::read_bytes(&self.mem, RESULTS, len)?;
                let read = words_matching(&bytes, GUEST_KEY, RESULTS);
                self.outcome.results = Some((read, value));
            }
            Code::Untouched => {
                self.outcome.untouched_guest = Some(value);
                self.outcome.untouched_host_zero = Some(self.zeros(untouched(self.size), PAGE)?);
            }
            Code::Punch => {
                if value != HOLE {
                    bail!("the guest asked for a punch at {value:#x}, not {HOLE:#x}");
                }
                self.outcome.hole_before = Some(self.holds(HOST_KEY, HOLE, PAGE)?);
                // guest_memfd offset = GPA: the slot maps it from offset 0.
                mem::punch_hole(&*self.gmem, HOLE, PAGE)?;
                self.outcome.punched = true;
            }
            Code::Hole => {
                self.outcome.hole_guest = Some(value);
                self.outcome.hole_host_zero = Some(self.zeros(HOLE, PAGE)?);
                let after = HOLE + PAGE;
                let end = DATA + DATA_PAGES * PAGE;
                self.outcome.neighbours_host = Some(
                    self.holds(HOST_KEY, DATA, HOLE - DATA)?
                        && self.holds(HOST_KEY, after, end - after)?,
                );
                let refill = pattern_bytes(REFILL_KEY, HOLE, PAGE);
                mem::write_bytes(&self.mem, HOLE, &refill)?;
            }
            Code::Refill => self.outcome.refill = Some(value),
            Code::Neighbours => self.outcome.neighbours_guest = Some(value),
        }
        Ok(())
    }
}

/// Capabilities beyond the flags; what they are, for the header.
fn check_caps(vm: &VmFd, flags: i32) -> Result<String> {
    let gmem = vm.check_extension_int(Cap::GuestMemfd);
    let mem2 = vm.check_extension_int(Cap::UserMemory2);
    if gmem <= 0 || mem2 <= 0 {
        bail!(
            "KVM_CAP_GUEST_MEMFD_FLAGS is {flags:#x} but KVM_CAP_GUEST_MEMFD ({gmem}) or \
             KVM_CAP_USER_MEMORY2 ({mem2}) is missing on a DEFAULT VM"
        );
    }
    Ok(format!(
        "KVM_CAP_GUEST_MEMFD {gmem}, KVM_CAP_GUEST_MEMFD_FLAGS {flags:#x} ({})",
        flag_names(flags as u64)
    ))
}

/// Runs the shared scenario with `size` bytes of guest RAM.
pub fn run(kvm: &Kvm, cpuid: &CpuId, size: u64, vendor: &str) -> Result<Status> {
    let start = Instant::now();
    let program =
        guest::build(size).ok_or_else(|| Error::new("the shared guest program does not fit"))?;
    let vm = kvm
        .create_vm_with_type(0)
        .context("KVM_CREATE_VM(0, the DEFAULT VM type)")?;
    let flags = vm.check_extension_raw(KVM_CAP_GUEST_MEMFD_FLAGS as libc::c_ulong);
    if let Some(why) = missing_flags(flags) {
        println!("gmem-demo: shared: skipped: {why}");
        return Ok(Status::Skipped);
    }
    let caps = check_caps(&vm, flags)?;
    let gmem = kvm_create_guest_memfd {
        size,
        flags: FLAGS,
        ..Default::default()
    };
    let fd = vm
        .create_guest_memfd(gmem)
        .context("KVM_CREATE_GUEST_MEMFD(MMAP | INIT_SHARED)")?;
    // SAFETY: a new fd that nothing else owns.
    let gmem = Arc::new(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    let mem = mem::memory(vec![mem::file_region(&gmem, 0, size)?])?;
    let mut m = SharedVm {
        vm,
        gmem,
        mem,
        size,
        stats: Stats::default(),
        outcome: Outcome::default(),
    };
    m.bind()?;

    println!(
        "gmem-demo: shared: DEFAULT VM, {} MiB, all of it one guest_memfd, CPU {vendor}",
        size / MIB
    );
    println!("  caps: {caps}");
    println!(
        "  slot 0 [0x0, {size:#x}): guest_memfd (MMAP | INIT_SHARED) only, mapped MAP_SHARED \
         in vm-memory: page tables, GDT, code ({} bytes), stack, data",
        program.code.len()
    );
    println!(
        "  data {DATA:#x} ({DATA_PAGES} pages) from the VMM, page {HOLE:#x} punched; results \
         {RESULTS:#x} ({RESULT_PAGES} pages) from the guest; reports by MMIO at {MMIO_BASE:#x}"
    );

    m.load(&program)?;
    let mut vcpu = vcpu::create(&m.vm, cpuid, program.entry)?;
    m.run(&mut vcpu, 2 * program.reports.len())?;
    drop(vcpu);

    let checks = evaluate(&m.outcome, &m.stats, &program.reports);
    let mut s = String::new();
    render_checks(&mut s, &checks);
    render_exits(&mut s, &m.stats);
    let _ = writeln!(s, "wall time: {:.2} s", start.elapsed().as_secs_f64());
    s.push_str(&verdict("shared", &checks));
    println!("{s}");
    Ok(if checks.iter().all(|c| c.ok) {
        Status::Passed
    } else {
        Status::Failed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        assert_eq!(missing_flags(3), None);
        assert_eq!(missing_flags(7), None);
        let none = missing_flags(0).unwrap();
        assert!(none.starts_with(
            "KVM_CAP_GUEST_MEMFD_FLAGS is 0x0 on a DEFAULT VM, without MMAP | INIT_SHARED:"
        ));
        assert!(missing_flags(1).unwrap().contains("without INIT_SHARED:"));
        assert!(missing_flags(2).unwrap().contains("without MMAP:"));
        assert!(missing_flags(-1).is_some());
        assert_eq!(flag_names(3), "MMAP | INIT_SHARED");
        assert_eq!(flag_names(4), "none");
    }
}
