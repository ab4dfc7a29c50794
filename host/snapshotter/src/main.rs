//! `cloister-snapshotter`: containerd proxy snapshotter in guest-pull mode.
//! See the library documentation (`lib.rs`) for what it does and why.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use cloister_snapshotter::{server::Listener, service::GuestPullSnapshotter};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::{filter::LevelFilter, EnvFilter};

/// containerd proxy snapshotter for cloister: image layers are left to the
/// guest, containers get an empty rootfs.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Directory for the metadata file and the empty snapshot directories.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/cloister/snapshotter"
    )]
    root: PathBuf,
    /// Unix socket to serve the snapshots gRPC API on (containerd's
    /// `proxy_plugins.<name>.address`).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/cloister/snapshotter.sock"
    )]
    socket: PathBuf,
    /// Log level of the snapshotter (error, warn, info, debug, trace; other
    /// crates log warnings only), or a full tracing filter directive such as
    /// `debug,h2=info`.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let directive = match args.log.parse::<LevelFilter>() {
        Ok(level) => format!("warn,cloister_snapshotter={level}"),
        Err(_) => args.log.clone(),
    };
    let filter = EnvFilter::try_new(&directive)
        .with_context(|| format!("invalid --log value {:?}", args.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let snapshotter = GuestPullSnapshotter::open(&args.root)
        .with_context(|| format!("cannot open snapshotter root {}", args.root.display()))?;
    let listener = Listener::bind(&args.socket)?;

    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let shutdown = async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("{name} received, stopping");
    };
    listener.serve(snapshotter, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}
