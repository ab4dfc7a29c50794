//! cloister-agent: PID 1 of a cloister guest, or an ordinary process serving
//! the same API on a Unix socket (for tests without a VM).
//!
//! As PID 1 it mounts the pseudo-filesystems, reaps orphans, serves the ttrpc
//! API on vsock port 1024, and powers the VM off on any fatal error, so that a
//! broken guest never hangs.

use std::time::Instant;

use anyhow::Context;
use tracing::info;

use cloister_agent::config::Config;
use cloister_agent::{init, net, reaper, rpc, server, switch_root, tee};

fn main() {
    let started = Instant::now();
    let is_init = std::process::id() == 1;
    // The runtime helper (cloister_runtime::helper): the agent starts its
    // own binary as `cloister-agent runtime …` for libcontainer's calls.
    // Never as PID 1, whose arguments come from the kernel command line.
    if !is_init {
        let args: Vec<String> = std::env::args().collect();
        if args.get(1).map(String::as_str) == Some(cloister_runtime::helper::HELPER_ARG) {
            std::process::exit(cloister_runtime::helper::main(&args[2..]));
        }
    }
    if is_init {
        init::install_panic_hook();
        // First boot step: leave the initramfs for a tmpfs root, so that
        // containers can pivot_root (the kernel refuses it on the ramfs).
        if std::env::args().nth(1).as_deref() != Some(switch_root::SWITCHED) {
            match switch_root::switch_to_tmpfs() {
                Ok(never) => match never {},
                Err(e) => init::fatal(&format!("switching to a tmpfs root: {e:#}")),
            }
        }
        if let Err(e) = init::setup_filesystems() {
            init::fatal(&format!("{e:#}"));
        }
    }
    let cfg = match Config::load(is_init) {
        Ok(c) => c,
        Err(e) if is_init => init::fatal(&format!("{e:#}")),
        Err(e) => {
            eprintln!("cloister-agent: {e:#}");
            std::process::exit(2);
        }
    };
    init_logging(&cfg);
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("creating the async runtime")
        .and_then(|rt| rt.block_on(run(cfg, started)));
    match result {
        Ok(()) if is_init => init::fatal("the agent's server stopped"),
        Ok(()) => {}
        Err(e) if is_init => init::fatal(&format!("{e:#}")),
        Err(e) => {
            eprintln!("cloister-agent: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(cfg: Config, started: Instant) -> anyhow::Result<()> {
    let tee = tee::detect(&cfg);
    info!(
        version = env!("CARGO_PKG_VERSION"),
        is_init = cfg.is_init,
        listen = %cfg.listen,
        tee = tee.name(),
        "cloister-agent starting"
    );
    if !cfg.is_init {
        // Container processes are orphaned when libcontainer's intermediate
        // process exits; as a subreaper the agent inherits them, as PID 1
        // does in the guest.
        cloister_runtime::become_subreaper().context("becoming a child subreaper")?;
    }
    reaper::spawn().context("starting the child reaper")?;
    if cfg.is_init {
        // Loopback only: the pod's interface and routes come from the host
        // through UpdateInterface and UpdateRoutes (policy-checked).
        if let Err(e) = net::loopback_up() {
            tracing::error!(error = %e, "bringing up lo failed");
        }
    }
    let host_data = tee::host_data_source(tee);
    if tee == tee::Tee::None {
        tracing::warn!(
            tee = tee::NO_TEE_WARNING,
            "no TEE found: {}",
            tee::NO_TEE_WARNING
        );
    }
    let runtime = rpc::open_runtime(&cfg).context("setting up the container runtime")?;
    let state = rpc::AgentState::new(
        cfg.is_init,
        tee,
        host_data,
        started,
        runtime,
        cfg.run_dir.clone(),
    );
    server::serve(&cfg.listen, state).await
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false);
    if cfg.log_json {
        // One JSON object per line: what `cloister policy explain` reads.
        fmt.json().init();
    } else {
        fmt.init();
    }
}
