//! Hypervisor backends. A backend boots kernel + initramfs + command line and
//! exposes the guest's vsock as a hybrid-vsock Unix socket; nothing about the
//! workload is decided here.
pub mod accel;
mod confidential;
pub mod qemu;
pub mod qemu_version;
pub mod sim_tee;
pub mod snp_launch;
pub mod tdx_launch;
pub mod tee;

use std::path::PathBuf;

/// Which VMM boots the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypervisorKind {
    /// QEMU `-M microvm`: KVM where the CPU has it, TCG otherwise.
    Qemu,
}

/// What to boot. The same values feed the launch measurement later, so the
/// backend must boot exactly these.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub memory_mib: u32,
    pub vcpus: u32,
}

/// Kernel parameters every cloister guest gets unless the user replaces
/// them: the serial console, and a reset (not a hang) on panic or reboot,
/// which the VMM turns into its own exit.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";
