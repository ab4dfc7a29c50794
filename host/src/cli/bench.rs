use std::path::PathBuf;

use clap::Subcommand;
use cloister_host::bench::{agent_boots, baseline_boots, ms, Summary};
use cloister_host::hypervisor::accel;

use super::{runtime, VmArgs};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Median of N boots, launch to the agent's Health reply, against plain
    /// QEMU booting the same kernel into a busybox initramfs (to init).
    Boot {
        #[command(flatten)]
        vm: VmArgs,
        /// Boots per variant (at least 5 for the published figures).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Static busybox for the baseline initramfs.
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
    },
    /// The demo container end to end (`cloister demo`), N times, each in a
    /// fresh sandbox: the median of each phase (boot, attest+pull+create,
    /// start, run), against runc starting the same image (unpacked with
    /// umoci, unencrypted) on the host.
    Run {
        /// Guest kernel.
        #[arg(long, env = "CLOISTER_KERNEL")]
        kernel: PathBuf,
        /// Initramfs with the agent.
        #[arg(long, env = "CLOISTER_INITRD")]
        initrd: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Pods through containerd 1.6, cloister against runc in the same run:
    /// CRI RunPodSandbox to container running, `ctr run` to exit, and one
    /// idle pod's host memory and CPU. Needs root, containerd, runc.
    Pods {
        /// Guest kernel.
        #[arg(long, env = "CLOISTER_KERNEL")]
        kernel: PathBuf,
        /// Initramfs with the agent.
        #[arg(long, env = "CLOISTER_INITRD")]
        initrd: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Run {
            kernel,
            initrd,
            runs,
        } => super::bench_run::run(kernel, initrd, runs),
        BenchCommand::Pods {
            kernel,
            initrd,
            runs,
        } => super::bench_pods::run(kernel, initrd, runs),
        BenchCommand::Boot { vm, runs, busybox } => {
            anyhow::ensure!(runs >= 1, "--runs must be at least 1");
            let opts = vm.boot_options()?;
            let accel = opts.accel.unwrap_or_else(accel::detect);
            let agent = runtime()?.block_on(agent_boots(&opts, runs))?;
            let base = baseline_boots(&opts, accel, &busybox, runs)?;
            println!(
                "boot benchmark: {runs} runs each, accel {}, {} MiB, {} vCPU",
                accel.name(),
                opts.vm.memory_mib,
                opts.vm.vcpus
            );
            row("cloister (launch -> agent Health reply)", &agent);
            row("plain QEMU + busybox (launch -> init)", &base);
            println!(
                "ratio of medians (cloister / plain QEMU): {:.2}",
                ms(agent.median()) / ms(base.median())
            );
            Ok(())
        }
    }
}

fn row(name: &str, s: &Summary) {
    let all: Vec<String> = s.runs.iter().map(|d| format!("{:.0}", ms(*d))).collect();
    println!(
        "{name:<44} median {:>7.1} ms  min {:>7.1}  max {:>7.1}  runs [{}]",
        ms(s.median()),
        ms(s.min()),
        ms(s.max()),
        all.join(", ")
    );
}
