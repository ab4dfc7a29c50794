//! PID 1 (or the subreaper agent) inherits every orphan in the guest and
//! must reap them, or they stay zombies forever. The reaping itself is
//! `cloister_runtime::Reaper`, which hands container exit statuses to
//! WaitProcess instead of discarding them.
use cloister_runtime::Reaper;
use tokio::signal::unix::{signal, SignalKind};

/// Starts a task that reaps children whenever SIGCHLD arrives.
pub fn spawn() -> std::io::Result<()> {
    let mut sigchld = signal(SignalKind::child())?;
    tokio::spawn(async move {
        loop {
            Reaper::global().reap_all();
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    });
    Ok(())
}
