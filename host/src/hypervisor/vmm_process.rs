//! A VM in a process of its own, so that it outlives the process that
//! asked for it: the containerd shim can crash or be restarted, and the
//! next shim finds the live VM from the files in its run directory.
//!
//! The parent writes `vmm.json` (a [`VmmSpec`]) and starts its own binary
//! as `<exe> vmm-serve <run-dir>/vmm.json` in a new session. That process
//! starts the sim chip (sim TEE), the vsock backend and QEMU exactly as an
//! in-process boot does ([`QemuVm::launch`]), writes `vmm.ready` with
//! QEMU's pid, and then waits: when QEMU exits it writes `vmm.exit` (the
//! status and the console's last lines) and exits; on SIGTERM it stops QEMU
//! first. QEMU dies with it (PR_SET_PDEATHSIG), so killing it kills the VM.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::accel::Accel;
use super::qemu::{QemuPaths, QemuVm};
use super::sim_tee::SimTee;
use super::tee::TeeKind;
use super::VmConfig;

/// The argument that makes a cloister binary serve a VM.
pub const SERVE_ARG: &str = "vmm-serve";

/// Everything the VMM process needs, written by the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmmSpec {
    pub vm: VmConfig,
    pub qemu_binary: String,
    pub accel: Accel,
    pub tee: TeeKind,
    /// Hex HOST_DATA and launch measurement the sim chip reports (sim TEE).
    pub host_data: String,
    pub measurement: String,
    pub sim_state: Option<PathBuf>,
    pub run_dir: PathBuf,
}

/// Written by the VMM process once QEMU runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmmReady {
    pub qemu_pid: u32,
    pub vmm_pid: u32,
}

/// Written by the VMM process when the VM has ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VmmExit {
    /// Why the VM ended, for the task's exit event and the log.
    pub reason: String,
    /// QEMU's exit code, if it exited (rather than was killed).
    pub code: Option<i32>,
    pub console_tail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("starting the VMM process {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("the VMM process failed before QEMU ran: {0}")]
    Failed(String),
    #[error("the VMM process did not start QEMU within {0:?}")]
    Timeout(Duration),
    #[error("no live VMM in {dir}: {why}")]
    NotLive { dir: String, why: String },
}

fn file_err<'a>(what: &'static str, p: &'a Path) -> impl FnOnce(std::io::Error) -> VmmError + 'a {
    move |source| VmmError::File {
        what,
        path: p.display().to_string(),
        source,
    }
}

pub fn spec_path(dir: &Path) -> PathBuf {
    dir.join("vmm.json")
}
pub fn ready_path(dir: &Path) -> PathBuf {
    dir.join("vmm.ready")
}
pub fn exit_path(dir: &Path) -> PathBuf {
    dir.join("vmm.exit")
}
pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("vmm.log")
}

/// Writes `value` as JSON to `path` atomically (a temporary file renamed).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), VmmError> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(value).expect("plain data serializes");
    std::fs::write(&tmp, text).map_err(file_err("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(file_err("renaming to", path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// A VM served by a VMM process (spawned by us, or found again).
#[derive(Debug)]
pub struct VmmProcess {
    pub dir: PathBuf,
    pub vmm_pid: u32,
    pub qemu_pid: u32,
    /// Our child when we spawned it (a re-attached one is not).
    child: Option<Child>,
    pub launched_at: Instant,
    exited: Option<VmmExit>,
}

impl VmmProcess {
    /// Starts `exe vmm-serve` for `spec` and waits until QEMU runs.
    pub fn spawn(exe: &Path, spec: &VmmSpec, timeout: Duration) -> Result<VmmProcess, VmmError> {
        let dir = &spec.run_dir;
        for p in [ready_path(dir), exit_path(dir)] {
            let _ = std::fs::remove_file(p);
        }
        write_json(&spec_path(dir), spec)?;
        let log = std::fs::File::create(log_path(dir)).map_err(file_err("creating", dir))?;
        let log2 = log.try_clone().map_err(file_err("creating", dir))?;
        let launched_at = Instant::now();
        let mut cmd = Command::new(exe);
        cmd.arg(SERVE_ARG)
            .arg(spec_path(dir))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // A session of its own: signals for the parent's process group
        // (a terminal's ^C, containerd stopping the shim) do not reach it.
        // SAFETY: setsid(2) is async-signal-safe; the closure runs in the
        // child between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| VmmError::Spawn {
            exe: exe.display().to_string(),
            source,
        })?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = read_json::<VmmReady>(&ready_path(dir)) {
                info!(
                    vmm_pid = r.vmm_pid,
                    qemu_pid = r.qemu_pid,
                    "VMM process runs QEMU"
                );
                return Ok(VmmProcess {
                    dir: dir.clone(),
                    vmm_pid: r.vmm_pid,
                    qemu_pid: r.qemu_pid,
                    child: Some(child),
                    launched_at,
                    exited: None,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = super::qemu::tail_of_file(&log_path(dir), 20);
                return Err(VmmError::Failed(format!("it exited ({status}):\n{log}")));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(VmmError::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Finds the VMM process of `dir` again (after a restart of the
    /// process that spawned it).
    pub fn attach(dir: &Path) -> Result<VmmProcess, VmmError> {
        let not_live = |why: String| VmmError::NotLive {
            dir: dir.display().to_string(),
            why,
        };
        let r: VmmReady =
            read_json(&ready_path(dir)).ok_or_else(|| not_live("no readable vmm.ready".into()))?;
        if !serves(r.vmm_pid, dir) {
            return Err(not_live(format!(
                "process {} is gone or is not its VMM",
                r.vmm_pid
            )));
        }
        Ok(VmmProcess {
            dir: dir.to_path_buf(),
            vmm_pid: r.vmm_pid,
            qemu_pid: r.qemu_pid,
            child: None,
            launched_at: Instant::now(),
            exited: None,
        })
    }

    pub fn paths(&self) -> QemuPaths {
        QemuPaths::in_dir(&self.dir)
    }

    /// The spec it was started with.
    pub fn spec(&self) -> Option<VmmSpec> {
        read_json(&spec_path(&self.dir))
    }

    /// `Some` once the VM has ended, with why.
    pub fn try_wait(&mut self) -> Option<VmmExit> {
        if self.exited.is_some() {
            return self.exited.clone();
        }
        let gone = match &mut self.child {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => !serves(self.vmm_pid, &self.dir),
        };
        if gone {
            let exit = read_json::<VmmExit>(&exit_path(&self.dir)).unwrap_or_else(|| VmmExit {
                reason: format!("the VMM process {} died", self.vmm_pid),
                code: None,
                console_tail: super::qemu::tail_of_file(&self.paths().console_log, 30),
            });
            self.exited = Some(exit);
        }
        self.exited.clone()
    }

    /// Stops the VM: SIGTERM to the VMM process (which stops QEMU), then
    /// SIGKILL to both after `grace`. Waits until both are gone.
    pub fn shutdown(&mut self, grace: Duration) -> Option<VmmExit> {
        if self.try_wait().is_none() {
            let _ = kill(Pid::from_raw(self.vmm_pid as i32), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while self.try_wait().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.try_wait().is_none() {
                warn!(
                    vmm_pid = self.vmm_pid,
                    "the VMM did not stop on SIGTERM; killing it"
                );
                let _ = kill(Pid::from_raw(self.vmm_pid as i32), Signal::SIGKILL);
            }
        }
        if let Some(c) = &mut self.child {
            let _ = c.wait();
        }
        // QEMU has PDEATHSIG; make sure, in case it was stuck.
        let deadline = Instant::now() + grace;
        while alive(self.qemu_pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if alive(self.qemu_pid) && is_qemu_of(self.qemu_pid, &self.dir) {
            let _ = kill(Pid::from_raw(self.qemu_pid as i32), Signal::SIGKILL);
        }
        self.try_wait()
    }
}

impl Drop for VmmProcess {
    fn drop(&mut self) {
        // Only a VM this process spawned is stopped on drop; a re-attached
        // one is stopped explicitly (shutdown) or left to its owner.
        if self.child.is_some() {
            self.shutdown(Duration::from_secs(2));
        }
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 is the state; a zombie has exited.
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn cmdline_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Whether `pid` is alive and is the VMM process serving `dir` (pids are
/// reused: the command line must name the spec in `dir`).
pub fn serves(pid: u32, dir: &Path) -> bool {
    alive(pid) && cmdline_of(pid).contains(&spec_path(dir).display().to_string())
}

fn is_qemu_of(pid: u32, dir: &Path) -> bool {
    cmdline_of(pid).contains(&dir.display().to_string())
}

/// The VMM process's body (`<exe> vmm-serve SPEC`). Returns the process's
/// exit code.
pub fn serve(spec_file: &Path) -> i32 {
    let spec: VmmSpec = match std::fs::read(spec_file)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmm-serve: {}: {e}", spec_file.display());
            return 2;
        }
    };
    match serve_spec(&spec) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmm-serve: {e:#}");
            1
        }
    }
}

fn hex_array<const N: usize>(s: &str) -> anyhow::Result<[u8; N]> {
    let v = hex::decode(s)?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("{s:?} is not {N} bytes of hex"))
}

fn serve_spec(spec: &VmmSpec) -> anyhow::Result<i32> {
    use anyhow::Context;
    let paths = QemuPaths::in_dir(&spec.run_dir);
    // The sim chip first: the guest asks it for a report early.
    let sim = match spec.tee {
        TeeKind::None => None,
        TeeKind::Sim => {
            let state = spec
                .sim_state
                .clone()
                .context("the sim TEE needs a sim state directory")?;
            Some(SimTee::start(
                &state,
                &paths.vsock_socket,
                hex_array(&spec.measurement)?,
                hex_array(&spec.host_data)?,
            )?)
        }
    };
    let mut vm = QemuVm::launch(&spec.qemu_binary, &spec.vm, spec.accel, &spec.run_dir)?;
    write_json(
        &ready_path(&spec.run_dir),
        &VmmReady {
            qemu_pid: vm.pid().unwrap_or(0),
            vmm_pid: std::process::id(),
        },
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stop = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        loop {
            if let Some(status) = vm.try_wait() {
                return Ok::<_, std::io::Error>(Err(status));
            }
            tokio::select! {
                _ = term.recv() => return Ok(Ok("SIGTERM")),
                _ = int.recv() => return Ok(Ok("SIGINT")),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })?;
    let exit = match stop {
        Ok(signal) => {
            let status = vm.shutdown(Duration::from_secs(5));
            VmmExit {
                reason: format!("stopped on {signal}"),
                code: status.and_then(|s| s.code()),
                console_tail: vm.console_tail(30),
            }
        }
        Err(status) => {
            // Drain the vsock backend as a normal shutdown does.
            vm.shutdown(Duration::from_secs(1));
            let qemu_tail = vm.qemu_log_tail(10);
            VmmExit {
                reason: super::guest_end::describe_exit(status, &qemu_tail),
                code: status.code(),
                console_tail: vm.console_tail(30),
            }
        }
    };
    write_json(&exit_path(&spec.run_dir), &exit)?;
    drop(vm);
    if let Some(s) = sim {
        s.stop();
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_files_are_written_atomically_and_read_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vmm.exit");
        let e = VmmExit {
            reason: "r".into(),
            code: Some(0),
            console_tail: "t".into(),
        };
        write_json(&p, &e).unwrap();
        assert_eq!(read_json::<VmmExit>(&p), Some(e));
        assert!(!p.with_extension("tmp").exists());
        std::fs::write(&p, "{garbage").unwrap();
        assert_eq!(read_json::<VmmExit>(&p), None);
    }

    #[test]
    fn attach_refuses_a_dir_without_a_live_vmm() {
        let d = tempfile::tempdir().unwrap();
        let e = VmmProcess::attach(d.path()).unwrap_err().to_string();
        assert!(e.contains("no readable vmm.ready"), "{e}");
        // Our own pid is alive but is not a VMM serving that directory.
        write_json(
            &ready_path(d.path()),
            &VmmReady {
                qemu_pid: 1,
                vmm_pid: std::process::id(),
            },
        )
        .unwrap();
        let e = VmmProcess::attach(d.path()).unwrap_err().to_string();
        assert!(e.contains("is not its VMM"), "{e}");
    }

    #[test]
    fn a_bad_spec_is_exit_code_2() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vmm.json");
        std::fs::write(&p, "{}").unwrap();
        assert_eq!(serve(&p), 2);
        assert_eq!(serve(&d.path().join("missing.json")), 2);
    }
}
