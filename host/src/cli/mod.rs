pub mod attest;
pub mod bench;
pub mod bench_pods;
pub mod bench_run;
pub mod demo;
pub mod image;
pub mod image_sign;
pub mod initrd;
pub mod install;
pub mod measure;
pub mod monitor;
pub mod policy;
pub mod run;
pub mod vm;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use cloister_host::hypervisor::accel::Accel;
use cloister_host::hypervisor::HypervisorKind;
use cloister_host::sandbox::BootOptions;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum HypervisorArg {
    /// QEMU -M microvm (KVM where available, TCG otherwise).
    Qemu,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccelArg {
    Kvm,
    Tcg,
}

/// Options shared by every command that boots a VM.
#[derive(Args, Debug, Clone)]
pub struct VmArgs {
    /// Guest kernel (bzImage or ELF vmlinux), e.g. the path kernel-config/build prints.
    #[arg(long, env = "CLOISTER_KERNEL")]
    pub kernel: PathBuf,
    /// Initramfs with the agent as /init (`cloister initrd build`, scripts/build-guest).
    #[arg(long, env = "CLOISTER_INITRD")]
    pub initrd: PathBuf,
    /// Kernel command line (replaces the default).
    #[arg(long, default_value = cloister_host::hypervisor::DEFAULT_CMDLINE)]
    pub cmdline: String,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory: u32,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// Hypervisor backend.
    #[arg(long, value_enum, default_value = "qemu")]
    pub hypervisor: HypervisorArg,
    /// Force an accelerator (default: KVM only if the CPU has vmx/svm).
    #[arg(long, value_enum)]
    pub accel: Option<AccelArg>,
    /// QEMU binary.
    #[arg(long, default_value = cloister_host::hypervisor::qemu::DEFAULT_QEMU)]
    pub qemu: String,
    /// Give the guest QEMU user networking: it reaches the host's loopback
    /// as 10.0.2.2 once it is told its address (UpdateInterface, after
    /// CreateSandbox; `cloister run` does both).
    #[arg(long)]
    pub user_net: bool,
    /// Seconds to wait for the agent's Health reply.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Guest vsock port of the agent (for debugging; the agent uses 1024).
    #[arg(long, default_value_t = cloister_protocol::AGENT_VSOCK_PORT)]
    pub agent_port: u32,
    /// Keep the VM's sockets and logs in this directory (default: a
    /// temporary directory that is removed).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

impl VmArgs {
    pub fn boot_options(&self) -> anyhow::Result<BootOptions> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            anyhow::bail!("--timeout must be a positive number of seconds");
        }
        if self.vcpus == 0 || self.memory < 32 {
            anyhow::bail!("--vcpus must be at least 1 and --memory at least 32 MiB");
        }
        let mut o = BootOptions::new(self.kernel.clone(), self.initrd.clone());
        o.vm.cmdline = self.cmdline.clone();
        o.vm.memory_mib = self.memory;
        o.vm.vcpus = self.vcpus;
        o.vm.user_net = self.user_net;
        o.hypervisor = match self.hypervisor {
            HypervisorArg::Qemu => HypervisorKind::Qemu,
        };
        o.accel = self.accel.map(|a| match a {
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        });
        o.qemu_binary = self.qemu.clone();
        o.agent_timeout = Duration::from_secs_f64(self.timeout);
        o.agent_port = self.agent_port;
        o.run_dir = self.run_dir.clone();
        Ok(o)
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
