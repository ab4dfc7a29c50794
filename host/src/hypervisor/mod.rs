//! Hypervisor backends. A backend boots kernel + initramfs + command line and
//! exposes the guest's vsock as a hybrid-vsock Unix socket; nothing about the
//! workload is decided here.
pub mod accel;
mod confidential;
pub mod guest_end;
pub mod qemu;
pub mod qemu_version;
pub mod sim_tee;
pub mod snp_launch;
pub mod tdx_launch;
pub mod tee;
pub mod vmm_process;

use std::path::PathBuf;

/// Which VMM boots the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HypervisorKind {
    /// QEMU `-M microvm`: KVM where the CPU has it, TCG otherwise.
    Qemu,
}

/// What to boot. The same values feed the launch measurement later, so the
/// backend must boot exactly these. The network is not part of it: the
/// guest learns its addresses through UpdateInterface and UpdateRoutes
/// after boot, so that one measurement serves every pod.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    /// A virtio-net device on QEMU's user networking, through which the
    /// guest reaches the host's loopback as [`USER_NET_HOST`].
    pub user_net: bool,
    /// A virtio-net device on a tap in the pod's network namespace (CNI),
    /// instead of user networking.
    #[serde(default)]
    pub tap: Option<TapNet>,
}

/// The pod's tap: QEMU runs in `netns` and opens `tap` there; the guest NIC
/// gets `mac` (that of the pod's CNI interface, which the tap mirrors).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TapNet {
    pub netns: PathBuf,
    pub tap: String,
    pub mac: String,
}

/// The host's loopback as the guest sees it on QEMU's user networking.
pub const USER_NET_HOST: &str = "10.0.2.2";
/// The guest's address there, and its prefix.
pub const USER_NET_GUEST: &str = "10.0.2.15";
pub const USER_NET_PREFIX: u32 = 24;
/// The guest NIC's MAC on user networking (QEMU's own default).
pub const USER_NET_MAC: &str = "52:54:00:12:34:56";

/// Kernel parameters every cloister guest gets unless the user replaces
/// them: the serial console, and a reset (not a hang) on panic or reboot,
/// which the VMM turns into its own exit.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";
