//! The VM: memory slots, attributes, the vCPU and its exits.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use kvm_bindings::{
    kvm_create_guest_memfd, kvm_enable_cap, kvm_memory_attributes, kvm_userspace_memory_region2,
    CpuId, KVM_CAP_EXIT_HYPERCALL, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEMORY_EXIT_FLAG_PRIVATE,
    KVM_MEM_GUEST_MEMFD, KVM_X86_SW_PROTECTED_VM,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};

use crate::attrs::Attrs;
use crate::bail;
use crate::error::{Context, Error, Result};
use crate::guest::{
    io_pattern, message, probe_marker, sweep_marker, sweep_ranges, Code, Program, SweepLoop,
    BUFFER_PAGES, IO_PAGES, KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE_ENCRYPTED, PROBE_OFFSET,
};
use crate::layout::{write_boot_structures, Layout, PAGE};
use crate::mem::{self, Memory};
use crate::report::{classify, Outcome, Probe, Stats, Sweep};
use crate::secret::Secret;
use crate::vcpu::{self, rip, set_rip};

const PRIVATE: u64 = KVM_MEMORY_ATTRIBUTE_PRIVATE as u64;

pub struct Machine {
    layout: Layout,
    vm: VmFd,
    gmem: OwnedFd,
    /// Userspace memory of slots 0, 1 (the shared alias) and 2: one
    /// anonymous vm-memory region each, at the slot's GPA.
    mem: Memory,
    attrs: Attrs,
    secret: Secret,
    probe_pages: Vec<u64>,
    /// While the guest sweeps: its loops, and the pages whose write faulted.
    sweep_loops: Vec<SweepLoop>,
    sweep_faulted: BTreeSet<u64>,
    pub stats: Stats,
    pub outcome: Outcome,
    /// What the capability checks found, for the header.
    pub caps: String,
}

impl Machine {
    pub fn new(kvm: &Kvm, layout: Layout, secret: Secret) -> Result<Self> {
        let vm = kvm
            .create_vm_with_type(u64::from(KVM_X86_SW_PROTECTED_VM))
            .context("KVM_CREATE_VM(KVM_X86_SW_PROTECTED_VM)")?;
        let caps = check_caps(&vm)?;
        let mut cap = kvm_enable_cap {
            cap: KVM_CAP_EXIT_HYPERCALL,
            ..Default::default()
        };
        cap.args[0] = 1 << KVM_HC_MAP_GPA_RANGE;
        vm.enable_cap(&cap)
            .context("KVM_ENABLE_CAP(KVM_CAP_EXIT_HYPERCALL)")?;

        let gmem = kvm_create_guest_memfd {
            size: layout.ram_size(),
            ..Default::default()
        };
        let fd = vm
            .create_guest_memfd(gmem)
            .context("KVM_CREATE_GUEST_MEMFD")?;
        // SAFETY: a new fd that nothing else owns.
        let gmem = unsafe { OwnedFd::from_raw_fd(fd) };
        let regions = layout
            .slots()
            .iter()
            .map(|&(gpa, size)| mem::anon_region(gpa, size))
            .collect::<Result<Vec<_>>>()?;
        let m = Machine {
            layout,
            vm,
            gmem,
            mem: mem::memory(regions)?,
            attrs: Attrs::new(layout.ram_base(), layout.mem - layout.ram_base(), true),
            secret,
            probe_pages: Vec::new(),
            sweep_loops: Vec::new(),
            sweep_faulted: BTreeSet::new(),
            stats: Stats::default(),
            outcome: Outcome::default(),
            caps,
        };
        m.add_slot(0, false)?;
        m.add_slot(1, true)?;
        m.add_slot(2, false)?;
        // Guest RAM is private: all of slots 1 and 2.
        m.set_attributes(layout.ram_base(), layout.mem - layout.ram_base(), true)?;
        Ok(m)
    }

    fn add_slot(&self, slot: u32, with_gmem: bool) -> Result<()> {
        let (gpa, size) = self.layout.slots()[slot as usize];
        let region = kvm_userspace_memory_region2 {
            slot,
            flags: if with_gmem { KVM_MEM_GUEST_MEMFD } else { 0 },
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: mem::host_addr(&self.mem, gpa)?,
            guest_memfd_offset: 0,
            guest_memfd: if with_gmem {
                self.gmem.as_raw_fd() as u32
            } else {
                0
            },
            ..Default::default()
        };
        // SAFETY: the region belongs to this Machine's memory, which
        // outlives the vCPU (run_private drops the vCPU first) and the VM
        // (declared before `mem`, so dropped first); the kernel only
        // reaches it via GUP.
        unsafe { self.vm.set_user_memory_region2(region) }
            .context(format!("KVM_SET_USER_MEMORY_REGION2 slot {slot}"))
    }

    fn set_attributes(&self, gpa: u64, len: u64, private: bool) -> Result<()> {
        let attr = kvm_memory_attributes {
            address: gpa,
            size: len,
            attributes: if private { PRIVATE } else { 0 },
            flags: 0,
        };
        self.vm.set_memory_attributes(attr).context(format!(
            "KVM_SET_MEMORY_ATTRIBUTES [{gpa:#x}, +{len:#x}) to {}",
            if private { "private" } else { "shared" }
        ))
    }

    /// Writes boot structures and code into slot 0.
    pub fn load(&mut self, program: &Program) -> Result<()> {
        write_boot_structures(&self.mem)?;
        mem::write_bytes(&self.mem, program.main_entry, &program.code)
    }

    pub fn create_vcpu(&self, cpuid: &CpuId, entry: u64) -> Result<VcpuFd> {
        vcpu::create(&self.vm, cpuid, entry)
    }

    /// Converts [gpa, gpa+len) in slots 1-2 and keeps guest_memfd, the
    /// shared alias and the VMM's record in line with it.
    fn convert(&mut self, gpa: u64, len: u64, private: bool) -> Result<()> {
        let aligned = gpa.is_multiple_of(PAGE) && len.is_multiple_of(PAGE);
        let Some((slot, off)) = self.layout.slot_of(gpa, len).filter(|_| aligned && len > 0) else {
            bail!("conversion of [{gpa:#x}, +{len:#x}) outside guest RAM and I/O window");
        };
        self.set_attributes(gpa, len, private)?;
        if slot == 1 && !private {
            mem::punch_hole(&self.gmem, off, len)?;
        } else if slot == 1 {
            mem::fallocate(&self.gmem, libc::FALLOC_FL_KEEP_SIZE, off, len)?;
        }
        if private {
            mem::discard(&self.mem, gpa, len)?;
        }
        self.attrs.set(gpa, len, private);
        Ok(())
    }

    /// The host's view (the userspace mapping) of [gpa, gpa+len) in slot
    /// 1 or 2, copied out.
    fn host_view(&self, gpa: u64, len: u64) -> Option<Vec<u8>> {
        self.layout.slot_of(gpa, len)?;
        mem::read_bytes(&self.mem, gpa, len).ok()
    }

    /// Runs the vCPU until hlt or, if `stop_fault` is given, until a
    /// private memory fault at that address.
    pub fn run(
        &mut self,
        vcpu: &mut VcpuFd,
        stop_fault: Option<u64>,
        max_exits: u64,
    ) -> Result<()> {
        for _ in 0..max_exits {
            match vcpu.run() {
                Ok(VcpuExit::Hypercall(hc)) => {
                    self.stats.exit("hypercall");
                    *hc.ret = self.on_hypercall(hc.nr, hc.args)?;
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    self.stats.exit("mmio_write");
                    self.on_report(addr, data)?;
                }
                Ok(VcpuExit::MemoryFault { flags, gpa, size }) => {
                    self.stats.exit("memory_fault");
                    let private = flags & u64::from(KVM_MEMORY_EXIT_FLAG_PRIVATE) != 0;
                    if stop_fault == Some(gpa) && private {
                        self.outcome.probe_faulted = true;
                        return Ok(());
                    }
                    if !self.sweep_loops.is_empty() {
                        self.on_sweep_fault(vcpu, private, flags, gpa, size)?;
                        continue;
                    }
                    self.on_memory_fault(private, flags, gpa, size)?;
                }
                Ok(VcpuExit::Hlt) => {
                    self.stats.exit("hlt");
                    self.outcome.halted |= stop_fault.is_none();
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

    /// KVM_HC_MAP_GPA_RANGE: the guest asks for a conversion.
    fn on_hypercall(&mut self, nr: u64, args: [u64; 6]) -> Result<u64> {
        if nr != KVM_HC_MAP_GPA_RANGE {
            bail!("unexpected hypercall {nr}");
        }
        let [gpa, npages, attrs, ..] = args;
        let private = attrs & KVM_MAP_GPA_RANGE_ENCRYPTED != 0;
        let len = npages
            .checked_mul(PAGE)
            .ok_or_else(|| Error::new(format!("MAP_GPA_RANGE of {npages} pages")))?;
        self.convert(gpa, len, private)?;
        self.stats.explicit += 1;
        if !private {
            // Newly host-visible memory must not show what was private there.
            let n = self.outcome.range_scans;
            match self.secret.find_in_memory(&self.mem, gpa, len) {
                Ok(None) => {}
                Ok(Some(at)) => {
                    let at = gpa + at;
                    self.outcome
                        .leaks
                        .push(format!("at GPA {at:#x} after conversion #{n} to shared"));
                }
                Err(e) => self
                    .outcome
                    .leaks
                    .push(format!("unknown: scan after conversion #{n} failed: {e}")),
            }
            self.outcome.range_scans += 1;
        }
        Ok(0)
    }

    /// A private access KVM cannot back: the I/O window has no guest_memfd,
    /// so the page becomes shared (an implicit conversion).
    fn on_memory_fault(&mut self, private: bool, flags: u64, gpa: u64, size: u64) -> Result<()> {
        let what = format!("memory fault at {gpa:#x} size {size:#x} flags {flags:#x}");
        if !private || !self.layout.in_io(gpa, size) {
            bail!("unexpected {what}: only private accesses to the I/O window should fault");
        }
        if self.outcome.io_faults.last() == Some(&(gpa, size)) {
            bail!("{what} again after converting it to shared");
        }
        self.convert(gpa, size, false)?;
        self.stats.implicit += 1;
        self.outcome.io_faults.push((gpa, size));
        Ok(())
    }

    /// A private memory fault of the sweep's store: the page is private and
    /// has no guest_memfd.  Recorded, and the guest resumes at the next page.
    fn on_sweep_fault(
        &mut self,
        vcpu: &VcpuFd,
        private: bool,
        flags: u64,
        gpa: u64,
        size: u64,
    ) -> Result<()> {
        let mut regs = vcpu.get_regs().context("KVM_GET_REGS")?;
        let what = format!("memory fault at {gpa:#x} size {size:#x} flags {flags:#x}");
        let Some(sl) = self.sweep_loops.iter().find(|l| l.store == regs.rip) else {
            bail!("unexpected {what} during the sweep, at rip {:#x}", regs.rip);
        };
        if !private || size != PAGE || gpa != regs.rdi & !(PAGE - 1) {
            bail!(
                "unexpected {what} during the sweep: the guest was writing {:#x}",
                regs.rdi
            );
        }
        if !self.sweep_faulted.insert(gpa) {
            bail!("{what} twice during the sweep");
        }
        regs.rip = sl.next;
        vcpu.set_regs(&regs).context("KVM_SET_REGS")
    }

    /// A report from the guest (an MMIO write).
    fn on_report(&mut self, addr: u64, data: &[u8]) -> Result<()> {
        let code = Code::from_addr(addr);
        let value = <[u8; 8]>::try_from(data).ok().map(u64::from_le_bytes);
        let (Some(code), Some(value)) = (code, value) else {
            bail!("unexpected MMIO write of {} bytes at {addr:#x}", data.len());
        };
        let o = &mut self.outcome;
        match code {
            Code::Secret => {
                o.secret_stored = true;
                self.full_scan("after the secret was stored");
            }
            Code::HcRet => o.hc_rets.push(value),
            Code::Message => {
                let i = o.messages_seen.len() as u32;
                let buf = self.layout.buffer();
                let shared =
                    (0..BUFFER_PAGES).all(|p| self.attrs.is_private(buf + p * PAGE) == Some(false));
                let seen = self.host_view(buf, 32).as_deref() == Some(&message(i)[..]);
                self.outcome
                    .messages_seen
                    .push(value == u64::from(i) && shared && seen);
            }
            Code::Readback => o.readbacks.push(value),
            Code::IoWritten => {
                let io = self.layout.io_base();
                let ok = value == IO_PAGES
                    && (0..IO_PAGES).all(|p| {
                        (0..2).all(|w| {
                            mem::read_u64(&self.mem, io + p * PAGE + 8 * w).ok()
                                == Some(io_pattern(p, w))
                        })
                    });
                o.io_pattern_seen = Some(ok);
                self.full_scan("after the I/O-window write");
            }
            Code::SecretCheck => o.secret_checks.push(value),
            Code::Probe => {
                let k = o.probes.len();
                let gpa = self.probe_pages.get(k).copied().unwrap_or(0);
                o.probes.push(Probe {
                    gpa,
                    tracked_private: self.attrs.is_private(gpa) != Some(false),
                    read: value,
                });
            }
            Code::Done => {
                o.done = true;
                self.full_scan("when the guest program ended");
            }
            Code::Sweep => o.sweep.readback = Some(value),
        }
        Ok(())
    }

    /// Scans all host-visible guest memory (slots 0-2) for the secret.
    pub fn full_scan(&mut self, when: &str) {
        for (slot, (gpa, size)) in self.layout.slots().into_iter().enumerate() {
            match self.secret.find_in_memory(&self.mem, gpa, size) {
                Ok(None) => {}
                Ok(Some(at)) => self
                    .outcome
                    .leaks
                    .push(format!("in slot {slot} at +{at:#x} {when}")),
                Err(e) => self.outcome.leaks.push(format!(
                    "unknown: the scan of slot {slot} {when} failed: {e}"
                )),
            }
        }
        self.outcome.full_scans += 1;
    }

    /// Plants a marker in the shared memory of each probe page and points
    /// the vCPU at the probe: a shared page must read the marker, a private
    /// one 0 (guest_memfd), and the private page without guest_memfd must fault.
    pub fn start_probe(&mut self, vcpu: &VcpuFd, program: &Program) -> Result<()> {
        for (k, &gpa) in program.probes.iter().enumerate() {
            if self.layout.slot_of(gpa, PAGE).is_none() {
                bail!("probe page {gpa:#x} outside slots 1-2");
            }
            mem::write_u64(&self.mem, gpa + PROBE_OFFSET, probe_marker(k))?;
        }
        self.probe_pages = program.probes.clone();
        set_rip(vcpu, program.probe_entry)
    }

    /// Points the vCPU at the sweep: the guest writes a marker into every
    /// page of slots 1-2 (of the first SWEEP_RAM_MAX of slot 1).
    pub fn start_sweep(&mut self, vcpu: &VcpuFd, program: &Program) -> Result<()> {
        self.sweep_loops = program.sweep_loops.clone();
        self.sweep_faulted.clear();
        set_rip(vcpu, program.sweep_entry)
    }

    /// Pages the sweep covers.
    pub fn sweep_pages(&self) -> u64 {
        sweep_ranges(&self.layout)
            .iter()
            .map(|&(_, len)| len / PAGE)
            .sum()
    }

    /// After the sweep: what the kernel made of each page, from where the
    /// guest's writes went (the host's memory, guest_memfd, or a fault),
    /// compared with the VMM's record.
    pub fn finish_sweep(&mut self) {
        self.sweep_loops.clear();
        let mut sw = Sweep {
            pages: self.sweep_pages(),
            faults: self.sweep_faulted.len() as u64,
            readback: self.outcome.sweep.readback,
            ..Sweep::default()
        };
        for (base, len) in sweep_ranges(&self.layout) {
            for gpa in (base..base + len).step_by(PAGE as usize) {
                let Some((slot, _)) = self.layout.slot_of(gpa, PAGE) else {
                    sw.odd.push(gpa);
                    continue;
                };
                let at = gpa + PROBE_OFFSET;
                let landed = mem::read_u64(&self.mem, at).ok() == Some(sweep_marker(at));
                let faulted = self.sweep_faulted.contains(&gpa);
                let recorded = self.attrs.is_private(gpa);
                match recorded {
                    Some(true) => sw.recorded.0 += 1,
                    Some(false) => sw.recorded.1 += 1,
                    None => {}
                }
                match classify(slot == 1, faulted, landed) {
                    Some(private) => {
                        if private {
                            sw.private += 1;
                        } else {
                            sw.shared += 1;
                        }
                        if recorded != Some(private) {
                            sw.differ.push(gpa);
                        }
                    }
                    None => sw.odd.push(gpa),
                }
            }
        }
        self.outcome.sweep = sw;
    }
}

fn check_caps(vm: &VmFd) -> Result<String> {
    let gmem = vm.check_extension_int(Cap::GuestMemfd);
    let mem2 = vm.check_extension_int(Cap::UserMemory2);
    let attrs = vm.check_extension_int(Cap::MemoryAttributes) as u64;
    let hc = vm.check_extension_int(Cap::ExitHypercall) as u64;
    if gmem <= 0 || mem2 <= 0 {
        bail!("KVM_CAP_GUEST_MEMFD ({gmem}) or KVM_CAP_USER_MEMORY2 ({mem2}) missing");
    }
    if attrs & PRIVATE == 0 {
        bail!("KVM_CAP_MEMORY_ATTRIBUTES is {attrs:#x}, without PRIVATE");
    }
    if hc & (1 << KVM_HC_MAP_GPA_RANGE) == 0 {
        bail!("KVM_CAP_EXIT_HYPERCALL is {hc:#x}, without KVM_HC_MAP_GPA_RANGE");
    }
    Ok(format!(
        "KVM_CAP_GUEST_MEMFD, KVM_CAP_MEMORY_ATTRIBUTES {attrs:#x} (PRIVATE), KVM_CAP_EXIT_HYPERCALL {hc:#x} (MAP_GPA_RANGE)"
    ))
}
