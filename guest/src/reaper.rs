//! PID 1 inherits every orphan in the guest and must reap them, or they
//! stay zombies forever.
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use tokio::signal::unix::{signal, SignalKind};
use tracing::debug;

/// Starts a task that reaps children whenever SIGCHLD arrives.
pub fn spawn() -> std::io::Result<()> {
    let mut sigchld = signal(SignalKind::child())?;
    tokio::spawn(async move {
        loop {
            reap_all();
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    });
    Ok(())
}

/// Collects every exited child without blocking.
fn reap_all() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => debug!(?status, "reaped child"),
        }
    }
}
