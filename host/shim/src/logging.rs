//! The shim logs with `tracing` into the `log` fifo containerd opened in
//! the bundle (containerd copies it into its own log). The level comes
//! from `[log] level` of the node config, or `debug` with containerd's
//! `-debug`, and applies to cloister's crates only.
use std::fs::OpenOptions;

use tracing_subscriber::EnvFilter;

pub fn init(level: Option<&str>, debug: bool) {
    let level = if debug {
        "debug"
    } else {
        level.filter(|l| !l.is_empty()).unwrap_or("info")
    };
    let filter = if level.contains('=') || level.contains(',') {
        level.to_string()
    } else {
        // The shim's own lines carry its binary's crate name as target.
        format!("warn,containerd_shim_cloister_v2={level},cloister_host={level}")
    };
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // containerd opened the fifo read-write and non-blocking, so this open
    // does not wait for a reader.
    match OpenOptions::new().write(true).open("log") {
        Ok(f) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init();
        }
        Err(_) => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(std::io::stderr)
                .try_init();
        }
    }
}
