//! `cloister demo`: the README's first command after the set-up. A local
//! KBS and registry, an encrypted and signed image, initdata, and one
//! confidential container run with `cloister run`'s code; everything it
//! starts is stopped and everything it makes removed.
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use cloister_host::demo::{Demo, DemoConfig};

use super::runtime;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Guest kernel (kernel-config/build prints it).
    #[arg(long, env = "CLOISTER_KERNEL")]
    pub kernel: PathBuf,
    /// Initramfs with the agent (scripts/build-guest prints it).
    #[arg(long, env = "CLOISTER_INITRD")]
    pub initrd: PathBuf,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the cloister binary")?;
    let bin_dir = exe
        .parent()
        .context("the binary's directory")?
        .to_path_buf();
    let work = tempfile::Builder::new()
        .prefix("cloister-demo-")
        .tempdir()
        .context("creating a work directory")?
        .keep();
    let cfg = DemoConfig {
        kernel: args.kernel,
        initrd: args.initrd,
        bin_dir,
        sim_state: work.join("sim"),
        work: work.clone(),
        reference_initrd: None,
        policy_lists_unsigned: false,
    };
    let mut say = |s: &str| eprintln!("demo: {s}");
    let demo = Demo::prepare(cfg, &mut say)?;
    say(&format!(
        "image {} (encrypted with JWE, signed); KBS https://127.0.0.1:{} (guest: https://10.0.2.2:{})",
        demo.image, demo.kbs_port, demo.kbs_port
    ));
    say("booting the sandbox (sim TEE) and running the container; its output follows");
    let opts = demo.run_options(&demo.image, None);
    let report = runtime()?.block_on(cloister_host::run::run(
        &opts,
        |b| {
            let _ = std::io::stdout().lock().write_all(b);
        },
        |b| {
            let _ = std::io::stderr().lock().write_all(b);
        },
    ));
    drop(demo);
    let report = report?;
    eprint!("{}", super::run::summary(&opts.image, &report));
    eprintln!(
        "demo: stopped the KBS, the registry and the VM; removed {}",
        work.display()
    );
    std::process::exit(report.exit_code.clamp(0, 255));
}
