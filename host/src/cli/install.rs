use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use cloister_host::install::{self, containerd_config::SNIPPET, Plan};

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// The node's root as this process sees it (`/host` in the DaemonSet).
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Directory holding cloister, containerd-shim-cloister-v2 and
    /// cloister-snapshotter (default: the directory of this binary).
    #[arg(long)]
    from: Option<PathBuf>,
    /// Guest kernel to place (kernel-config/build prints its path).
    #[arg(long, env = "CLOISTER_KERNEL", required_unless_present = "uninstall")]
    kernel: Option<PathBuf>,
    /// Initramfs to place (scripts/build-guest).
    #[arg(long, env = "CLOISTER_INITRD", required_unless_present = "uninstall")]
    initrd: Option<PathBuf>,
    /// Also merge the containerd snippet into this containerd config (a node
    /// path, e.g. /etc/containerd/config.toml); without it the snippet is
    /// only printed.
    #[arg(long)]
    containerd_config: Option<PathBuf>,
    /// Remove exactly what an earlier install placed (files changed since
    /// are kept), and take the snippet out of containerd's config.
    #[arg(long)]
    uninstall: bool,
}

pub fn run(a: InstallArgs) -> anyhow::Result<()> {
    let report = if a.uninstall {
        install::uninstall(&a.root)?
    } else {
        let bin_from = match a.from {
            Some(d) => d,
            None => std::env::current_exe()
                .context("finding this binary's directory")?
                .parent()
                .context("this binary has no directory")?
                .to_path_buf(),
        };
        let plan = Plan {
            root: a.root.clone(),
            bin_from,
            kernel: a.kernel.context("--kernel is required")?,
            initrd: a.initrd.context("--initrd is required")?,
            containerd_config: a.containerd_config.clone(),
        };
        install::install(&plan)?
    };
    for (action, path) in &report.lines {
        eprintln!("cloister install: {} {}", action.word(), path.display());
    }
    for note in &report.notes {
        eprintln!("cloister install: note: {note}");
    }
    if !a.uninstall {
        if a.containerd_config.is_none() {
            eprintln!(
                "cloister install: merge this into containerd's config (or pass --containerd-config):"
            );
        }
        // The snippet on stdout, alone, so it can be redirected.
        print!("{SNIPPET}");
        eprintln!(
            "cloister install: next: systemctl daemon-reload && systemctl enable --now cloister-snapshotter cloister-monitor && systemctl restart containerd; then label the node cloister.dev/runtime=true"
        );
    }
    Ok(())
}
