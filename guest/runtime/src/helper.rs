//! The runtime helper: a short-lived, single-threaded process (the agent's own
//! binary, started as `cloister-agent runtime …`) that makes libcontainer's
//! calls, the way containerd's shim runs `runc`.
//!
//! Why a process of its own: libcontainer clones with raw `clone3`, which
//! skips glibc's fork handlers, and its child code allocates. In the agent,
//! with its async runtime and blocking-pool threads, another thread may hold
//! the allocator's lock at that moment and the child would deadlock. A
//! single-threaded helper has no such thread. It also keeps libcontainer's
//! memory out of the long-lived agent.
//!
//! Protocol: arguments in, one JSON line on stdout (`{"pid":N}` or `{}`),
//! errors on stderr with a non-zero exit. The container's stdio, when given,
//! arrives as fds 3, 4 and 5 (stdin, stdout, stderr).
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;

/// The first argument that selects the helper in the agent's binary.
pub const HELPER_ARG: &str = "runtime";
/// Where the container's stdin, stdout and stderr arrive in the helper.
pub const STDIO_FDS: [i32; 3] = [3, 4, 5];

#[derive(Debug, Default)]
struct Args {
    op: String,
    root: Option<PathBuf>,
    id: Option<String>,
    bundle: Option<PathBuf>,
    process: Option<PathBuf>,
    console_socket: Option<PathBuf>,
    stdio: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let mut a = Args {
        op: it.next().ok_or("no operation")?.clone(),
        ..Args::default()
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--root" => a.root = Some(value()?.into()),
            "--id" => a.id = Some(value()?),
            "--bundle" => a.bundle = Some(value()?.into()),
            "--process" => a.process = Some(value()?.into()),
            "--console-socket" => a.console_socket = Some(value()?.into()),
            "--stdio-fds" => a.stdio = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// Runs the helper; returns the process exit code.
pub fn main(args: &[String]) -> i32 {
    // libcontainer says what failed through `tracing` (its returned errors
    // are often just "failed syscall"): its error lines go to stderr, the
    // helper's error channel, ahead of the final error.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_max_level(tracing::Level::ERROR)
        .try_init();
    match run(args) {
        Ok(out) => {
            println!("{out}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let a = parse(args)?;
    let root = a.root.clone().ok_or("--root is required")?;
    let id = a.id.clone().ok_or("--id is required")?;
    match a.op.as_str() {
        "create" => {
            let bundle = a.bundle.clone().ok_or("--bundle is required")?;
            let c = builder(&a, &root, &id)?
                .as_init(&bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
                .map_err(|e| format!("creating container {id}: {e}"))?;
            let pid = c.pid().ok_or("libcontainer returned no pid")?;
            Ok(format!("{{\"pid\":{}}}", pid.as_raw()))
        }
        "start" => {
            let mut c = Container::load(root.join(&id))
                .map_err(|e| format!("loading container {id}: {e}"))?;
            c.start()
                .map_err(|e| format!("starting container {id}: {e}"))?;
            Ok("{}".into())
        }
        "exec" => {
            let process = a.process.clone().ok_or("--process is required")?;
            let pid = builder(&a, &root, &id)?
                .as_tenant()
                .with_process(Some(process))
                .with_detach(true)
                .build()
                .map_err(|e| format!("exec in container {id}: {e}"))?;
            Ok(format!("{{\"pid\":{}}}", pid.as_raw()))
        }
        "delete" => {
            let mut c = Container::load(root.join(&id))
                .map_err(|e| format!("loading container {id}: {e}"))?;
            c.delete(true)
                .map_err(|e| format!("deleting container {id}: {e}"))?;
            Ok("{}".into())
        }
        other => Err(format!("unknown operation {other:?}")),
    }
}

fn builder(a: &Args, root: &PathBuf, id: &str) -> Result<ContainerBuilder, String> {
    let mut b = ContainerBuilder::new(id.to_string(), SyscallType::Linux)
        .with_root_path(root)
        .map_err(|e| format!("state directory {}: {e}", root.display()))?
        .with_console_socket(a.console_socket.as_ref());
    if a.stdio {
        // SAFETY: the agent started this process with fds 3-5 open and
        // owned by nobody else in it (see `invoke`); each is taken once.
        let [i, o, e] = STDIO_FDS.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        b = b.with_stdin(i).with_stdout(o).with_stderr(e);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments_are_checked() {
        assert!(parse(&[]).is_err());
        assert!(parse(&s(&["create", "--root"])).is_err());
        assert!(parse(&s(&["create", "--bogus", "x"])).is_err());
        let a = parse(&s(&[
            "exec",
            "--root",
            "/r",
            "--id",
            "c",
            "--process",
            "/p.json",
            "--stdio-fds",
        ]))
        .unwrap();
        assert_eq!(a.op, "exec");
        assert!(a.stdio);
        assert_eq!(
            run(&s(&["frobnicate", "--root", "/r", "--id", "c"])).unwrap_err(),
            "unknown operation \"frobnicate\""
        );
        assert!(run(&s(&["create", "--id", "c"]))
            .unwrap_err()
            .contains("--root"));
    }
}
