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
    /// A virtio-net device on QEMU's user networking, through which the
    /// guest reaches the host's loopback as [`USER_NET_HOST`]. The guest
    /// learns its address from `cloister.ip=` on the (measured) command line.
    pub user_net: bool,
}

/// The host's loopback as the guest sees it on QEMU's user networking.
pub const USER_NET_HOST: &str = "10.0.2.2";
/// The guest's address there.
pub const USER_NET_GUEST_CIDR: &str = "10.0.2.15/24";

/// `cmdline` with the guest's address when `user_net` is on (idempotent).
pub fn cmdline_with_net(cmdline: &str, user_net: bool) -> String {
    if !user_net
        || cmdline
            .split_whitespace()
            .any(|w| w.starts_with("cloister.ip="))
    {
        return cmdline.to_string();
    }
    format!("{cmdline} cloister.ip={USER_NET_GUEST_CIDR}")
}

/// Kernel parameters every cloister guest gets unless the user replaces
/// them: the serial console, and a reset (not a hang) on panic or reboot,
/// which the VMM turns into its own exit.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";
