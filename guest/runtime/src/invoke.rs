//! The agent's side of the runtime helper ([`crate::helper`]): start it with
//! the container's stdio on fds 3-5, collect its answer, and wait for it
//! through the [`Reaper`] (the agent reaps every child itself).
//!
//! Blocking: call from a blocking thread, never from an async task.
use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helper::{HELPER_ARG, STDIO_FDS};
use crate::reaper::Reaper;
use crate::RuntimeError;

/// Longest a helper call may take (a create under TCG with a cold page cache
/// takes well under a second; this only catches a hung helper).
const HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// The container side of a process's stdio.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// How to run the helper: which binary, and libcontainer's state directory.
#[derive(Debug, Clone)]
pub struct Helper {
    pub exe: PathBuf,
    pub state_root: PathBuf,
}

impl Helper {
    /// Runs `op` for container `id`; returns the pid it printed, if any.
    pub fn call(
        &self,
        op: &str,
        id: &str,
        extra: &[(&str, &Path)],
        stdio: Option<ChildStdio>,
    ) -> Result<Option<i32>, RuntimeError> {
        let mut args: Vec<OsString> = vec![
            HELPER_ARG.into(),
            op.into(),
            "--root".into(),
            self.state_root.clone().into(),
            "--id".into(),
            id.into(),
        ];
        for (flag, value) in extra {
            args.push((*flag).into());
            args.push(value.as_os_str().into());
        }
        let mut cmd = Command::new(&self.exe);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Keep the originals open until after the spawn; the copies are
        // CLOEXEC and numbered >= 10, so the dup2s below cannot clobber them.
        let high: Option<[OwnedFd; 3]> = match stdio {
            Some(s) => {
                args.push("--stdio-fds".into());
                Some([
                    dup_high(&s.stdin)?,
                    dup_high(&s.stdout)?,
                    dup_high(&s.stderr)?,
                ])
            }
            None => None,
        };
        cmd.args(&args);
        if let Some(h) = &high {
            let raw = [h[0].as_raw_fd(), h[1].as_raw_fd(), h[2].as_raw_fd()];
            // SAFETY: the closure runs in the forked child before exec and only
            // calls dup2, which is async-signal-safe; it touches no memory
            // shared with the parent's other threads.
            unsafe {
                cmd.pre_exec(move || {
                    for (src, dst) in raw.iter().zip(STDIO_FDS) {
                        if libc::dup2(*src, dst) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
            exe: self.exe.display().to_string(),
            source,
        })?;
        drop(high);
        let exit = Reaper::global().watch(child.id() as i32);
        let code = wait_blocking(exit, HELPER_TIMEOUT).ok_or_else(|| RuntimeError::Helper {
            op: op.into(),
            id: id.into(),
            message: format!("no exit status within {HELPER_TIMEOUT:?}"),
        })?;
        // Read only after the exit: the container's processes may inherit
        // the pipes, so EOF could be far away. The answer is a few bytes and
        // fits the pipe buffer, so the helper never blocked writing it.
        let out = read_available(child.stdout.take().map(OwnedFd::from));
        let err = read_available(child.stderr.take().map(OwnedFd::from));
        if code != 0 {
            return Err(RuntimeError::Helper {
                op: op.into(),
                id: id.into(),
                message: if err.trim().is_empty() {
                    format!("helper exited with {code}")
                } else {
                    err.trim().to_string()
                },
            });
        }
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| RuntimeError::Helper {
                op: op.into(),
                id: id.into(),
                message: format!("unreadable answer {out:?}: {e}"),
            })?;
        Ok(v.get("pid").and_then(|p| p.as_i64()).map(|p| p as i32))
    }
}

/// What a pipe holds now, without waiting for its writers to close.
fn read_available(fd: Option<OwnedFd>) -> String {
    let Some(fd) = fd else {
        return String::new();
    };
    // Best effort: if it fails, the helper has exited and closed its end
    // anyway, so reads still end.
    let _ = crate::io::set_nonblocking(&fd);
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 << 10 {
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn dup_high(fd: &OwnedFd) -> Result<OwnedFd, RuntimeError> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own alone.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(RuntimeError::Io {
            what: "duplicating a stdio descriptor".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `n` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Waits for a reaper notification from a blocking thread.
pub fn wait_blocking(
    mut rx: tokio::sync::oneshot::Receiver<crate::reaper::ExitCode>,
    timeout: Duration,
) -> Option<i32> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match rx.try_recv() {
            Ok(code) => return Some(code),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return None,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
