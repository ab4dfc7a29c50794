//! The one place that calls `waitpid`. PID 1 (or a subreaper) inherits every
//! orphan, including each container's init once libcontainer's intermediate
//! process exits, so a reaper that simply reaped everything would steal the
//! exit statuses that WaitProcess must return. Here every reaped status is
//! handed to whoever registered for that pid, or kept for a while for a
//! registration that is still on its way (a short-lived process can exit
//! before its creator has learned its pid).
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// Unclaimed exit statuses kept at most (oldest dropped first).
const KEEP_UNCLAIMED: usize = 4096;

/// How a process ended, in the shell's convention: the exit code, or
/// 128 + the signal number.
pub type ExitCode = i32;

#[derive(Default)]
struct Inner {
    waiting: HashMap<i32, Vec<oneshot::Sender<ExitCode>>>,
    unclaimed: HashMap<i32, ExitCode>,
    order: VecDeque<i32>,
}

pub struct Reaper {
    inner: Mutex<Inner>,
}

impl Reaper {
    /// The process-wide reaper.
    pub fn global() -> &'static Reaper {
        static R: OnceLock<Reaper> = OnceLock::new();
        R.get_or_init(|| Reaper {
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves with `pid`'s exit status. Register before or after it exits;
    /// either works (within [`KEEP_UNCLAIMED`] unclaimed exits).
    pub fn watch(&self, pid: i32) -> oneshot::Receiver<ExitCode> {
        let (tx, rx) = oneshot::channel();
        let mut g = self.lock();
        if let Some(code) = g.unclaimed.remove(&pid) {
            g.order.retain(|p| *p != pid);
            let _ = tx.send(code);
        } else {
            g.waiting.entry(pid).or_default().push(tx);
        }
        rx
    }

    /// Reaps every exited child without blocking; call on SIGCHLD.
    pub fn reap_all(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.exited(pid.as_raw(), code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.exited(pid.as_raw(), 128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    }

    fn exited(&self, pid: i32, code: ExitCode) {
        let mut g = self.lock();
        if let Some(waiters) = g.waiting.remove(&pid) {
            tracing::debug!(pid, code, "reaped a watched process");
            for w in waiters {
                let _ = w.send(code);
            }
            return;
        }
        tracing::debug!(pid, code, "reaped a process nobody watches (yet)");
        if g.unclaimed.insert(pid, code).is_none() {
            g.order.push_back(pid);
        }
        while g.order.len() > KEEP_UNCLAIMED {
            if let Some(old) = g.order.pop_front() {
                g.unclaimed.remove(&old);
            }
        }
    }

    #[cfg(test)]
    fn fake_exit(&self, pid: i32, code: ExitCode) {
        self.exited(pid, code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Reaper {
        Reaper {
            inner: Mutex::new(Inner::default()),
        }
    }

    #[test]
    fn a_watcher_gets_the_status_whether_it_came_first_or_not() {
        let r = fresh();
        let mut early = r.watch(100);
        assert!(early.try_recv().is_err());
        r.fake_exit(100, 7);
        assert_eq!(early.try_recv().unwrap(), 7);
        r.fake_exit(101, 137);
        assert_eq!(r.watch(101).try_recv().unwrap(), 137);
        // Claimed once: a second watch waits for a new process of that pid.
        assert!(r.watch(101).try_recv().is_err());
    }

    #[test]
    fn unclaimed_statuses_are_bounded() {
        let r = fresh();
        for pid in 0..(KEEP_UNCLAIMED as i32 + 10) {
            r.fake_exit(pid, 0);
        }
        assert!(r.watch(0).try_recv().is_err(), "the oldest was dropped");
        assert_eq!(r.watch(KEEP_UNCLAIMED as i32 + 9).try_recv().unwrap(), 0);
        assert!(r.lock().unclaimed.len() <= KEEP_UNCLAIMED);
    }
}
