//! cloister's in-guest container runtime: youki's `libcontainer` (run in a
//! single-threaded helper process, see [`helper`]) behind a spec the host
//! cannot point outside the agent's rootfs ([`spec`]), with stdio that is
//! always drained ([`io`]) and one reaper that hands every exit status to
//! whoever waits for it ([`reaper`]).
pub mod console;
pub mod container;
pub mod helper;
pub mod invoke;
pub mod io;
pub mod reaper;
pub mod rootfs;
pub mod spec;
pub mod stats;

pub use container::{ExecProcess, Process, Runtime, RuntimeConfig};
pub use reaper::{ExitCode, Reaper};
pub use spec::SpecError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("no container {0:?}")]
    NoContainer(String),
    #[error("no process {0:?}")]
    NoProcess(String),
    #[error("process {0} has already exited")]
    Exited(i32),
    #[error("{0}")]
    State(String),
    #[error("rootfs: {0}")]
    Rootfs(String),
    #[error("starting the runtime helper {exe}: {source}")]
    Spawn {
        exe: String,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime {op} {id}: {message}")]
    Helper {
        op: String,
        id: String,
        message: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Makes this process the reaper of its orphaned descendants (the agent
/// when it is not PID 1), so container processes come back to it.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
