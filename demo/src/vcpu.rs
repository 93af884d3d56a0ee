//! The one vCPU of either scenario: straight into long mode at an entry.

use kvm_bindings::{kvm_regs, CpuId};
use kvm_ioctls::{VcpuFd, VmFd};

use crate::error::{Context, Result};
use crate::layout::{long_mode_sregs, STACK_TOP};

/// The CPU vendor string of CPUID leaf 0.
pub fn vendor(cpuid: &CpuId) -> String {
    let Some(e) = cpuid.as_slice().iter().find(|e| e.function == 0) else {
        return String::from("unknown");
    };
    let bytes: Vec<u8> = [e.ebx, e.edx, e.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// vCPU 0 of `vm`, in 64-bit mode with the identity map of layout.rs,
/// about to run at `entry`.
pub fn create(vm: &VmFd, cpuid: &CpuId, entry: u64) -> Result<VcpuFd> {
    let vcpu = vm.create_vcpu(0).context("KVM_CREATE_VCPU")?;
    vcpu.set_cpuid2(cpuid).context("KVM_SET_CPUID2")?;
    let mut sregs = vcpu.get_sregs().context("KVM_GET_SREGS")?;
    long_mode_sregs(&mut sregs);
    vcpu.set_sregs(&sregs).context("KVM_SET_SREGS")?;
    set_rip(&vcpu, entry)?;
    Ok(vcpu)
}

/// Points the vCPU at `rip` with a fresh stack and clean registers.
pub fn set_rip(vcpu: &VcpuFd, rip: u64) -> Result<()> {
    let regs = kvm_regs {
        rip,
        rsp: STACK_TOP,
        rflags: 2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).context("KVM_SET_REGS")
}

/// "rip 0x...", for error messages.
pub fn rip(vcpu: &VcpuFd) -> String {
    match vcpu.get_regs() {
        Ok(r) => format!("rip {:#x}", r.rip),
        Err(_) => "unknown rip".into(),
    }
}
