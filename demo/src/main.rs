//! gmem-demo: a tiny VMM that shows guest_memfd at work in two scenarios:
//! "private", a guest in a KVM_X86_SW_PROTECTED_VM with guest_memfd-backed
//! private RAM, and "shared", a guest in a DEFAULT VM whose whole RAM is
//! one guest_memfd the VMM maps, as QEMU 11 runs VMs.

mod args;
mod asm;
mod attrs;
mod error;
mod guest;
mod layout;
mod mem;
mod report;
mod secret;
mod shared;
mod vcpu;
mod vmm;

use std::process::ExitCode;
use std::time::Instant;

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;

use crate::args::{Command, Options, USAGE};
use crate::asm::Hypercall;
use crate::error::{Context, Error, Result};
use crate::layout::{Layout, MIB};
use crate::report::{summary, Status};
use crate::secret::Secret;
use crate::vmm::Machine;

fn main() -> ExitCode {
    let opts = match args::parse(std::env::args().skip(1)) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("gmem-demo: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (kvm, cpuid) = match open_kvm() {
        Ok(k) => k,
        Err(e) => {
            println!("gmem-demo: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut runs = Vec::new();
    if opts.scenario.private() {
        let r = run_private(&kvm, &cpuid, opts);
        runs.push(("private", status("private", r)));
    }
    if opts.scenario.shared() {
        let vendor = vcpu::vendor(&cpuid);
        let r = shared::run(&kvm, &cpuid, opts.mem, &vendor);
        runs.push(("shared", status("shared", r)));
    }
    let (code, line) = summary(&runs);
    if let Some(line) = line {
        println!("{line}");
    }
    ExitCode::from(code)
}

/// /dev/kvm and the CPUID it supports, for either scenario.
fn open_kvm() -> Result<(Kvm, CpuId)> {
    let kvm = Kvm::new().context("open /dev/kvm")?;
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .context("KVM_GET_SUPPORTED_CPUID")?;
    Ok((kvm, cpuid))
}

/// How scenario `name` ended; an error is printed here.
fn status(name: &str, r: Result<Status>) -> Status {
    r.unwrap_or_else(|e| {
        println!("gmem-demo: {name}: error: {e}");
        Status::Error
    })
}

/// Runs the private scenario.
fn run_private(kvm: &Kvm, cpuid: &CpuId, opts: Options) -> Result<Status> {
    let start = Instant::now();
    let layout = Layout::new(opts.mem);
    let secret = Secret::random()?;
    let vendor = vcpu::vendor(cpuid);
    let insn = Hypercall::for_vendor(&vendor);
    let program = guest::build(&layout, opts.conversions, &secret, insn)
        .ok_or_else(|| Error::new("the guest program does not fit in slot 0"))?;

    let mut m = Machine::new(kvm, layout, secret)?;
    println!(
        "gmem-demo: private: KVM_X86_SW_PROTECTED_VM, {} MiB, {} conversions, CPU {vendor} -> {}",
        opts.mem / MIB,
        opts.conversions,
        insn.name()
    );
    println!("  caps: {}", m.caps);
    println!(
        "  slot 0 [0x0, {:#x}): plain memory: page tables, GDT, code ({} bytes), stack",
        layout.ram_base(),
        program.code.len()
    );
    println!(
        "  slot 1 [{:#x}, {:#x}): guest RAM, guest_memfd + shared mapping, PRIVATE",
        layout.ram_base(),
        layout.io_base()
    );
    println!(
        "  slot 2 [{:#x}, {:#x}): I/O window, plain memory, PRIVATE",
        layout.io_base(),
        layout.mem
    );
    println!(
        "  buffer {:#x} ({} pages) converted by hypercall; reports by MMIO at {:#x}",
        layout.buffer(),
        guest::BUFFER_PAGES,
        layout::MMIO_BASE
    );

    m.load(&program)?;
    let mut vcpu = m.create_vcpu(cpuid, program.main_entry)?;
    let budget = 64 + 8 * u64::from(opts.conversions);
    m.run(&mut vcpu, None, budget)?;
    m.start_probe(&vcpu, &program)?;
    m.run(&mut vcpu, Some(program.fault_probe), 64)?;
    m.start_sweep(&vcpu, &program)?;
    let budget = 64 + m.sweep_pages();
    m.run(&mut vcpu, None, budget)?;
    m.finish_sweep();
    m.full_scan("at the end");
    drop(vcpu);

    m.outcome.main_reports = program.main_reports;
    let checks = report::evaluate(&m.outcome, &m.stats, opts.conversions);
    println!(
        "{}",
        report::render(&checks, &m.stats, &m.outcome.sweep, start.elapsed())
    );
    Ok(if checks.iter().all(|c| c.ok) {
        Status::Passed
    } else {
        Status::Failed
    })
}
