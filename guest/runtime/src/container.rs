//! The pod's containers and their processes: create from a checked spec and
//! a rootfs of verified layers, start, exec, signal, wait, stats, remove.
//!
//! Every method blocks (helper calls, mounts): call them from a blocking
//! thread. Waiting for an exit and reading output are async.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use tokio::sync::watch;

use crate::console::ConsoleSocket;
use crate::invoke::Helper;
use crate::io::ProcessIo;
use crate::reaper::{ExitCode, Reaper};
use crate::spec::{self, Placement, CGROUP_PARENT};
use crate::stats::{self, Stats};
use crate::RuntimeError;

/// How long a terminal process may take to send its pty master.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where things live in the guest.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The binary that runs the helper (the agent itself).
    pub helper_exe: PathBuf,
    /// libcontainer's state (`<dir>/<id>/state.json`).
    pub state_root: PathBuf,
    /// One directory per container: config.json, rootfs, overlay scratch.
    pub bundles: PathBuf,
    /// The cgroup2 mount.
    pub cgroup_root: PathBuf,
    /// Bind-mount sources must be below one of these.
    pub bind_roots: Vec<PathBuf>,
}

impl RuntimeConfig {
    /// The guest layout, below `run` (the agent uses `/run/cloister`).
    pub fn under(run: &Path, helper_exe: PathBuf) -> Self {
        RuntimeConfig {
            helper_exe,
            state_root: run.join("runtime"),
            bundles: run.join("containers"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            bind_roots: vec![run.join("sandbox")],
        }
    }
}

/// A container process (the init or an exec) as the agent tracks it.
pub struct Process {
    pub pid: i32,
    pub io: ProcessIo,
    exit: watch::Receiver<Option<ExitCode>>,
}

impl Process {
    fn new(pid: i32, io: ProcessIo, rt: &tokio::runtime::Handle) -> Arc<Process> {
        let (tx, rx) = watch::channel(None);
        let reaped = Reaper::global().watch(pid);
        rt.spawn(async move {
            if let Ok(code) = reaped.await {
                let _ = tx.send(Some(code));
            }
        });
        Arc::new(Process { pid, io, exit: rx })
    }

    /// The exit code once the process has ended.
    pub fn exit_code(&self) -> Option<ExitCode> {
        *self.exit.borrow()
    }

    /// Waits until the process ends.
    pub async fn wait(&self) -> ExitCode {
        let mut rx = self.exit.clone();
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return code;
            }
            if rx.changed().await.is_err() {
                // The waiter thread is gone without a status: cannot happen
                // unless the reaper lost it; report it as killed.
                return 128 + libc::SIGKILL;
            }
        }
    }

    /// Sends `sig`, unless the process has already ended (its pid may
    /// belong to someone else by now).
    pub fn signal(&self, sig: Signal) -> Result<(), RuntimeError> {
        if self.exit_code().is_some() {
            return Err(RuntimeError::Exited(self.pid));
        }
        kill(Pid::from_raw(self.pid), sig).map_err(|e| RuntimeError::Io {
            what: format!("signalling pid {}", self.pid),
            source: e.into(),
        })
    }
}

/// libcontainer's error lines from a process that failed before it ran the
/// container's program (at most 4 KiB, waiting briefly for the drain).
fn early_stderr(io: &ProcessIo) -> String {
    let deadline = std::time::Instant::now() + Duration::from_millis(300);
    while !io.stderr.ended() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let bytes = io.stderr.peek(4096);
    // Only libcontainer's own error lines: what the container's process
    // wrote itself is its output, which reaches the host only through
    // ReadStderr, when the policy allows it.
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| l.starts_with("ERROR "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an exec runs, as the request gave it.
#[derive(Debug, Clone, Default)]
pub struct ExecProcess {
    pub args: Vec<String>,
    /// Empty: the container's environment.
    pub env: Vec<String>,
    /// Empty: the container's working directory.
    pub cwd: String,
    pub terminal: bool,
    pub uid: u32,
    pub gid: u32,
}

struct Container {
    bundle: PathBuf,
    rootfs: PathBuf,
    spec: Spec,
    init: Arc<Process>,
    execs: Mutex<BTreeMap<String, Arc<Process>>>,
    /// Exec ids being created (not yet in `execs`).
    pending_execs: Mutex<std::collections::BTreeSet<String>>,
    started: Mutex<bool>,
}

pub struct Runtime {
    cfg: RuntimeConfig,
    helper: Helper,
    rt: tokio::runtime::Handle,
    containers: Mutex<BTreeMap<String, Arc<Container>>>,
}

impl Runtime {
    /// `rt` runs the tasks that wait for exits.
    pub fn new(cfg: RuntimeConfig, rt: tokio::runtime::Handle) -> Result<Runtime, RuntimeError> {
        for d in [&cfg.state_root, &cfg.bundles] {
            std::fs::create_dir_all(d).map_err(|source| RuntimeError::Io {
                what: format!("creating {}", d.display()),
                source,
            })?;
        }
        for d in &cfg.bind_roots {
            let _ = std::fs::create_dir_all(d);
        }
        Ok(Runtime {
            helper: Helper {
                exe: cfg.helper_exe.clone(),
                state_root: cfg.state_root.clone(),
            },
            cfg,
            rt,
            containers: Mutex::new(BTreeMap::new()),
        })
    }

    fn get(&self, id: &str) -> Result<Arc<Container>, RuntimeError> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NoContainer(id.into()))
    }

    /// Creates container `id` from the host's spec over `lowerdirs` (top
    /// first). Its init process waits for [`Runtime::start`]. On error
    /// nothing of it is left: no mount, no directory, no cgroup.
    pub fn create(
        &self,
        id: &str,
        spec_json: &[u8],
        lowerdirs: &[PathBuf],
    ) -> Result<i32, RuntimeError> {
        if self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
        {
            return Err(RuntimeError::Exists(id.into()));
        }
        let bundle = self.cfg.bundles.join(id);
        if bundle.exists() {
            return Err(RuntimeError::Exists(id.into()));
        }
        let rootfs = bundle.join("rootfs");
        let result = self.create_in(id, spec_json, lowerdirs, &bundle, &rootfs);
        if result.is_err() {
            let _ = self.helper.call("delete", id, &[], None);
            let _ = crate::rootfs::unmount(&rootfs);
            let _ = std::fs::remove_dir_all(&bundle);
        }
        result
    }

    fn create_in(
        &self,
        id: &str,
        spec_json: &[u8],
        lowerdirs: &[PathBuf],
        bundle: &Path,
        rootfs: &Path,
    ) -> Result<i32, RuntimeError> {
        // Check the spec before touching anything.
        let spec = spec::prepare(
            spec_json,
            &Placement {
                container_id: id,
                rootfs,
                bind_roots: &self.cfg.bind_roots,
            },
        )?;
        std::fs::create_dir_all(bundle).map_err(|source| RuntimeError::Io {
            what: format!("creating {}", bundle.display()),
            source,
        })?;
        crate::rootfs::mount_overlay(lowerdirs, &bundle.join("scratch"), rootfs)?;
        spec.save(bundle.join("config.json"))
            .map_err(|e| RuntimeError::Spec(spec::SpecError::Parse(e.to_string())))?;
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let (pid, io) = self.run_helper(
            "create",
            id,
            &[("--bundle", bundle)],
            terminal,
            bundle,
            "init",
        )?;
        let init = Process::new(pid, io, &self.rt);
        tracing::info!(container = id, pid, terminal, "container created");
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id.to_string(),
                Arc::new(Container {
                    bundle: bundle.to_path_buf(),
                    rootfs: rootfs.to_path_buf(),
                    spec,
                    init,
                    execs: Mutex::new(BTreeMap::new()),
                    pending_execs: Mutex::new(Default::default()),
                    started: Mutex::new(false),
                }),
            );
        Ok(pid)
    }

    /// Runs the helper with pipes, or with a console socket for a terminal.
    fn run_helper(
        &self,
        op: &str,
        id: &str,
        extra: &[(&str, &Path)],
        terminal: bool,
        dir: &Path,
        label: &str,
    ) -> Result<(i32, ProcessIo), RuntimeError> {
        let io_err = |what: &str| {
            let what = what.to_string();
            move |source| RuntimeError::Io { what, source }
        };
        if terminal {
            let sock = ConsoleSocket::bind(&dir.join(format!("{label}.tty")))
                .map_err(io_err("binding the console socket"))?;
            let mut args = extra.to_vec();
            args.push(("--console-socket", sock.path()));
            let pid =
                self.helper
                    .call(op, id, &args, None)?
                    .ok_or_else(|| RuntimeError::Helper {
                        op: op.into(),
                        id: id.into(),
                        message: "no pid".into(),
                    })?;
            let master = sock
                .receive_master(CONSOLE_TIMEOUT)
                .map_err(io_err("receiving the pty master"))?;
            let io = ProcessIo::terminal(master, &format!("{id}-{label}"))
                .map_err(io_err("setting up the terminal"))?;
            Ok((pid, io))
        } else {
            let (io, child) = ProcessIo::pipes(&format!("{id}-{label}"))
                .map_err(io_err("creating stdio pipes"))?;
            let pid = match self.helper.call(op, id, extra, Some(child)) {
                Ok(Some(pid)) => pid,
                Ok(None) => {
                    return Err(RuntimeError::Helper {
                        op: op.into(),
                        id: id.into(),
                        message: "no pid".into(),
                    })
                }
                // The container's own process says what went wrong on its
                // stderr (libcontainer's init logs there once stdio is set
                // up): add that to the error.
                Err(RuntimeError::Helper { op, id, message }) => {
                    let said = early_stderr(&io);
                    return Err(RuntimeError::Helper {
                        op,
                        id,
                        message: if said.is_empty() {
                            message
                        } else {
                            format!("{message}\ncontainer stderr: {said}")
                        },
                    });
                }
                Err(e) => return Err(e),
            };
            Ok((pid, io))
        }
    }

    /// Starts the container's process.
    pub fn start(&self, id: &str) -> Result<i32, RuntimeError> {
        let c = self.get(id)?;
        let mut started = c.started.lock().unwrap_or_else(|e| e.into_inner());
        if *started {
            return Err(RuntimeError::State(format!(
                "container {id} is already started"
            )));
        }
        self.helper.call("start", id, &[], None)?;
        *started = true;
        tracing::info!(container = id, pid = c.init.pid, "container started");
        Ok(c.init.pid)
    }

    /// Runs another process in the running container. It inherits the
    /// container's capabilities, rlimits, no_new_privileges, and security
    /// profile; the request chooses args, env, cwd, terminal and user.
    pub fn exec(&self, id: &str, exec_id: &str, p: &ExecProcess) -> Result<i32, RuntimeError> {
        let c = self.get(id)?;
        if !*c.started.lock().unwrap_or_else(|e| e.into_inner()) || c.init.exit_code().is_some() {
            return Err(RuntimeError::State(format!(
                "container {id} is not running"
            )));
        }
        {
            // Checked and reserved under one lock, so that two concurrent
            // execs with the same id cannot both pass.
            let execs = c.execs.lock().unwrap_or_else(|e| e.into_inner());
            let mut pending = c.pending_execs.lock().unwrap_or_else(|e| e.into_inner());
            if execs.contains_key(exec_id) || !pending.insert(exec_id.to_string()) {
                return Err(RuntimeError::Exists(format!("{id}/{exec_id}")));
            }
        }
        let result = self.exec_reserved(&c, id, exec_id, p);
        c.pending_execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(exec_id);
        result
    }

    fn exec_reserved(
        &self,
        c: &Container,
        id: &str,
        exec_id: &str,
        p: &ExecProcess,
    ) -> Result<i32, RuntimeError> {
        if p.args.is_empty() {
            return Err(RuntimeError::Spec(spec::SpecError::NoArgs));
        }
        let mut process = c.spec.process().clone().ok_or(spec::SpecError::NoProcess)?;
        process.set_args(Some(p.args.clone()));
        if !p.env.is_empty() {
            process.set_env(Some(p.env.clone()));
        }
        if !p.cwd.is_empty() {
            process.set_cwd(PathBuf::from(&p.cwd));
        }
        process.set_terminal(Some(p.terminal));
        process.set_console_size(None);
        let mut user = process.user().clone();
        user.set_uid(p.uid);
        user.set_gid(p.gid);
        process.set_user(user);
        let dir = c.bundle.join("execs");
        std::fs::create_dir_all(&dir).map_err(|source| RuntimeError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let file = dir.join(format!("{exec_id}.json"));
        let json = serde_json::to_vec(&process)
            .map_err(|e| RuntimeError::Spec(spec::SpecError::Parse(e.to_string())))?;
        std::fs::write(&file, json).map_err(|source| RuntimeError::Io {
            what: format!("writing {}", file.display()),
            source,
        })?;
        let (pid, io) = self.run_helper(
            "exec",
            id,
            &[("--process", &file)],
            p.terminal,
            &dir,
            exec_id,
        )?;
        let _ = std::fs::remove_file(&file);
        c.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(exec_id.to_string(), Process::new(pid, io, &self.rt));
        tracing::info!(container = id, exec = exec_id, pid, "exec started");
        Ok(pid)
    }

    /// The container's init (`exec_id` empty) or one of its execs.
    pub fn process(&self, id: &str, exec_id: &str) -> Result<Arc<Process>, RuntimeError> {
        let c = self.get(id)?;
        if exec_id.is_empty() {
            return Ok(c.init.clone());
        }
        let execs = c.execs.lock().unwrap_or_else(|e| e.into_inner());
        execs
            .get(exec_id)
            .cloned()
            .ok_or_else(|| RuntimeError::NoProcess(format!("{id}/{exec_id}")))
    }

    /// cgroup v2 statistics of the container.
    pub fn stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        self.get(id)?;
        let dir = self
            .cfg
            .cgroup_root
            .join(CGROUP_PARENT.trim_start_matches('/'))
            .join(id);
        stats::read(&dir).map_err(|source| RuntimeError::Io {
            what: format!("reading the statistics of {id}"),
            source,
        })
    }

    /// Stops the container (SIGTERM, then SIGKILL after `grace`), deletes
    /// its cgroup and state, unmounts and removes its rootfs.
    pub fn remove(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let c = self.get(id)?;
        if c.init.exit_code().is_none()
            && *c.started.lock().unwrap_or_else(|e| e.into_inner())
            && !grace.is_zero()
        {
            let _ = c.init.signal(Signal::SIGTERM);
            let deadline = std::time::Instant::now() + grace;
            while c.init.exit_code().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // `delete --force` kills whatever is left in the container's cgroup.
        self.helper.call("delete", id, &[], None)?;
        crate::rootfs::unmount(&c.rootfs)?;
        std::fs::remove_dir_all(&c.bundle).map_err(|source| RuntimeError::Io {
            what: format!("removing {}", c.bundle.display()),
            source,
        })?;
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        tracing::info!(container = id, "container removed");
        Ok(())
    }

    /// Ids of the containers.
    pub fn ids(&self) -> Vec<String> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}
