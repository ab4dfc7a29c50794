use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use cloister_host::initrd::{agent_initramfs, busybox_initramfs};

#[derive(Subcommand)]
pub enum InitrdCommand {
    /// Build a deterministic initramfs with the static agent as /init
    /// (or, with --busybox, a busybox-only one running --script).
    Build {
        /// The static cloister-agent binary.
        #[arg(long, required_unless_present = "busybox", conflicts_with = "busybox")]
        agent: Option<PathBuf>,
        /// Build a busybox-only initramfs instead (baselines, tests).
        #[arg(long, requires = "script")]
        busybox: Option<PathBuf>,
        /// Shell script /init runs in the busybox initramfs.
        #[arg(long)]
        script: Option<String>,
        /// Where to write the archive.
        #[arg(long, short)]
        output: PathBuf,
    },
}

pub fn run(cmd: InitrdCommand) -> anyhow::Result<()> {
    match cmd {
        InitrdCommand::Build {
            agent,
            busybox,
            script,
            output,
        } => {
            let fs = match (agent, busybox) {
                (Some(a), _) => agent_initramfs(&a)?,
                (None, Some(b)) => busybox_initramfs(&b, script.as_deref().unwrap_or_default())?,
                (None, None) => anyhow::bail!("give --agent or --busybox"),
            };
            let digest = fs
                .write_to(&output)
                .with_context(|| format!("writing {}", output.display()))?;
            println!("{}  {}", hex::encode(digest), output.display());
            Ok(())
        }
    }
}
