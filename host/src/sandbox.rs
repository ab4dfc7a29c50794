//! Boots a VM with a hypervisor backend and waits until its agent answers
//! Health over vsock; tears everything down again. The CLI's `vm boot` and
//! the benchmarks both go through here.
//!
//! With the sim TEE, the sim chip is started before QEMU and lives as long as
//! the [`Sandbox`] (see [`crate::hypervisor::sim_tee`]).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloister_protocol::{GuestDetails, AGENT_VSOCK_PORT};
use tracing::{debug, info, warn};

use crate::agent_client::{connect_vsock, Agent, ConnectError};
use crate::hypervisor::accel::{self, Accel};
use crate::hypervisor::guest_end;
use crate::hypervisor::qemu::{self, QemuError, QemuPaths, QemuVm, DEFAULT_QEMU};
use crate::hypervisor::sim_tee::{self, SimTee, SimTeeError};
use crate::hypervisor::tee::{self, TeeKind};
use crate::hypervisor::vmm_process::{VmmError, VmmProcess, VmmSpec};
use crate::hypervisor::{HypervisorKind, VmConfig};
use crate::kernel::{self, KernelError};

/// Lines of the serial console shown with an error.
const TAIL_LINES: usize = 30;

#[derive(Debug, Clone)]
pub struct BootOptions {
    pub vm: VmConfig,
    pub hypervisor: HypervisorKind,
    pub qemu_binary: String,
    /// Force an accelerator instead of detecting one.
    pub accel: Option<Accel>,
    /// How long to wait for the agent's Health reply after launch.
    pub agent_timeout: Duration,
    /// The guest vsock port the agent is expected on.
    pub agent_port: u32,
    /// Where the VM's sockets and logs go; a fresh temporary directory
    /// (removed afterwards) when `None`.
    pub run_dir: Option<PathBuf>,
    /// The TEE to launch with.
    pub tee: TeeKind,
    /// The pod's initdata: HOST_DATA = sha256(initdata), zeros when `None`.
    /// Without a TEE nothing carries it.
    pub initdata: Option<Vec<u8>>,
    /// The sim CA's state directory (sim TEE only); `None` is
    /// [`sim_tee::default_state_dir`].
    pub sim_state: Option<PathBuf>,
    /// Run the VM in a process of its own, started from this binary
    /// (`<exe> vmm-serve`), so that it outlives this process: what the
    /// containerd shim does. `None` runs QEMU's vsock backend and the sim
    /// chip in this process (`cloister run`, `vm boot`).
    pub detached_vmm: Option<PathBuf>,
}

impl BootOptions {
    pub fn new(kernel: PathBuf, initrd: PathBuf) -> Self {
        BootOptions {
            vm: VmConfig {
                kernel,
                initrd,
                cmdline: crate::hypervisor::DEFAULT_CMDLINE.to_string(),
                memory_mib: 256,
                vcpus: 1,
                user_net: false,
                tap: None,
            },
            hypervisor: HypervisorKind::Qemu,
            qemu_binary: DEFAULT_QEMU.to_string(),
            accel: None,
            agent_timeout: Duration::from_secs(30),
            agent_port: AGENT_VSOCK_PORT,
            run_dir: None,
            tee: TeeKind::None,
            initdata: None,
            sim_state: None,
            detached_vmm: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error("initramfs {0} does not exist")]
    InitrdMissing(String),
    #[error("creating the run directory: {0}")]
    RunDir(std::io::Error),
    #[error(transparent)]
    Qemu(#[from] QemuError),
    #[error(transparent)]
    Sim(#[from] SimTeeError),
    #[error(transparent)]
    Vmm(#[from] VmmError),
    #[error("the VM exited ({status}) before its agent answered\n--- QEMU output ---\n{qemu_tail}\n--- serial console (last lines) ---\n{console_tail}")]
    VmDied {
        status: String,
        qemu_tail: String,
        console_tail: String,
    },
    #[error("the agent did not answer on vsock port {port} within {waited:?}: {last}\n--- serial console (last lines) ---\n{console_tail}")]
    AgentTimeout {
        port: u32,
        waited: Duration,
        last: String,
        console_tail: String,
    },
}

/// The running VM: QEMU in this process, or a VMM process of its own.
pub enum VmHandle {
    InProcess(QemuVm),
    Detached(VmmProcess),
}

impl VmHandle {
    pub fn paths(&self) -> QemuPaths {
        match self {
            VmHandle::InProcess(q) => q.paths.clone(),
            VmHandle::Detached(v) => v.paths(),
        }
    }

    pub fn vsock_socket(&self) -> PathBuf {
        self.paths().vsock_socket
    }

    /// `Some(why)` once the VM has ended: how QEMU ended, and the guest's
    /// last words on its console when it left any.
    pub fn try_wait(&mut self) -> Option<String> {
        let why = match self {
            VmHandle::InProcess(q) => q
                .try_wait()
                .map(|s| guest_end::describe_exit(s, &q.qemu_log_tail(10)))?,
            VmHandle::Detached(v) => v.try_wait().map(|e| e.reason)?,
        };
        Some(guest_end::with_last_words(why, &self.console_tail(200)))
    }

    /// The pid of the process running the guest (QEMU).
    pub fn pid(&self) -> Option<u32> {
        match self {
            VmHandle::InProcess(q) => q.pid(),
            VmHandle::Detached(v) => Some(v.qemu_pid),
        }
    }

    pub fn launched_at(&self) -> Instant {
        match self {
            VmHandle::InProcess(q) => q.launched_at,
            VmHandle::Detached(v) => v.launched_at,
        }
    }

    pub fn console_tail(&self, lines: usize) -> String {
        qemu::tail_of_file(&self.paths().console_log, lines)
    }

    pub fn qemu_log_tail(&self, lines: usize) -> String {
        qemu::tail_of_file(&self.paths().qemu_log, lines)
    }

    /// Stops the VM; returns how it ended.
    pub fn shutdown(&mut self, grace: Duration) -> Option<String> {
        match self {
            VmHandle::InProcess(q) => q.shutdown(grace).map(|s| s.to_string()),
            VmHandle::Detached(v) => v.shutdown(grace).map(|e| e.reason),
        }
    }
}

/// A booted VM whose agent answered.
pub struct Sandbox {
    // Fields drop in order: QEMU goes before the sim chip it talks to.
    pub vm: VmHandle,
    pub agent: Agent,
    /// From launch to the first SERVING Health reply.
    pub ready_after: Duration,
    /// The TEE it was launched with.
    pub tee: TeeKind,
    /// The kernel command line booted (the user's, plus what the TEE adds).
    pub cmdline: String,
    /// The launch measurement the TEE reports for this VM (the sim launch
    /// digest with the sim TEE); `None` without a TEE.
    pub measurement: Option<[u8; 48]>,
    /// HOST_DATA: sha256(initdata), zeros without initdata.
    pub host_data: [u8; 32],
    /// The VM's run directory (sockets, logs).
    pub run_dir: PathBuf,
    /// The accelerator it runs on.
    pub accel: Accel,
    sim: Option<SimTee>,
    _run_dir: Option<tempfile::TempDir>,
}

impl Sandbox {
    /// Boots and waits for the agent.
    pub async fn boot(opts: &BootOptions) -> Result<Sandbox, BootError> {
        let HypervisorKind::Qemu = opts.hypervisor;
        kernel::inspect(&opts.vm.kernel)?;
        if !opts.vm.initrd.is_file() {
            return Err(BootError::InitrdMissing(
                opts.vm.initrd.display().to_string(),
            ));
        }
        let (dir, tmp) = run_dir(opts.run_dir.as_deref())?;
        let host_data = tee::host_data(opts.initdata.as_deref());
        // What is booted is what is measured: one VmConfig feeds both.
        let mut cfg = opts.vm.clone();
        let measurement = match opts.tee {
            TeeKind::None => {
                if opts.initdata.is_some() {
                    warn!("initdata given without a TEE: nothing carries its HOST_DATA, the guest cannot bind it");
                }
                None
            }
            TeeKind::Sim => {
                cfg.cmdline = sim_tee::cmdline_with_sim(&cfg.cmdline)?;
                Some(sim_tee::measurement(&cfg)?)
            }
        };
        let sim_state = match (&opts.tee, &opts.sim_state) {
            (TeeKind::Sim, Some(s)) => Some(s.clone()),
            (TeeKind::Sim, None) => {
                Some(sim_tee::default_state_dir().ok_or(SimTeeError::NoStateDir)?)
            }
            _ => None,
        };
        let accel = opts.accel.unwrap_or_else(accel::detect);
        info!(
            accel = accel.name(),
            why = accel.reason(),
            tee = opts.tee.name(),
            detached = opts.detached_vmm.is_some(),
            "accelerator"
        );
        let (mut vm, sim) = match &opts.detached_vmm {
            Some(exe) => {
                let spec = VmmSpec {
                    vm: cfg.clone(),
                    qemu_binary: opts.qemu_binary.clone(),
                    accel,
                    tee: opts.tee,
                    host_data: hex::encode(host_data),
                    measurement: hex::encode(measurement.unwrap_or([0; 48])),
                    sim_state,
                    run_dir: dir.clone(),
                };
                let v = VmmProcess::spawn(exe, &spec, Duration::from_secs(30))?;
                (VmHandle::Detached(v), None)
            }
            None => {
                let sim = match (measurement, sim_state) {
                    (Some(m), Some(state)) => {
                        let vsock = QemuPaths::in_dir(&dir).vsock_socket;
                        Some(SimTee::start(&state, &vsock, m, host_data)?)
                    }
                    _ => None,
                };
                // On an error below, `sim` is dropped after QEMU is gone.
                let q = QemuVm::launch(&opts.qemu_binary, &cfg, accel, &dir)?;
                (VmHandle::InProcess(q), sim)
            }
        };
        let agent = match wait_for_agent(&mut vm, opts.agent_port, opts.agent_timeout).await {
            Ok(a) => a,
            Err(e) => {
                vm.shutdown(Duration::from_secs(2));
                if let Some(s) = sim {
                    s.stop();
                }
                return Err(e);
            }
        };
        let ready_after = vm.launched_at().elapsed();
        info!(ms = ready_after.as_millis() as u64, "agent ready");
        Ok(Sandbox {
            vm,
            agent,
            ready_after,
            tee: opts.tee,
            cmdline: cfg.cmdline,
            measurement,
            host_data,
            run_dir: dir,
            accel,
            sim,
            _run_dir: tmp,
        })
    }

    /// Finds a sandbox booted with `detached_vmm` again, from its run
    /// directory: the VMM process must be alive and the agent must answer.
    pub async fn attach(
        run_dir: &Path,
        tee: TeeKind,
        measurement: Option<[u8; 48]>,
        host_data: [u8; 32],
        timeout: Duration,
    ) -> Result<Sandbox, BootError> {
        let v = VmmProcess::attach(run_dir)?;
        let accel = v.spec().map(|s| s.accel).unwrap_or(Accel::Tcg);
        let mut vm = VmHandle::Detached(v);
        let agent = wait_for_agent(&mut vm, AGENT_VSOCK_PORT, timeout).await?;
        Ok(Sandbox {
            cmdline: String::new(),
            vm,
            agent,
            ready_after: Duration::ZERO,
            tee,
            measurement,
            host_data,
            run_dir: run_dir.to_path_buf(),
            accel,
            sim: None,
            _run_dir: None,
        })
    }

    /// The sim ARK certificate the KBS must be configured with (sim TEE,
    /// in-process VM only).
    pub fn sim_ark(&self) -> Option<&Path> {
        self.sim.as_ref().map(|s| s.ark_path())
    }

    /// The sim chip's Unix socket (sim TEE).
    pub fn sim_socket(&self) -> Option<PathBuf> {
        match (&self.sim, self.tee) {
            (Some(s), _) => Some(s.socket().to_path_buf()),
            (None, TeeKind::Sim) => Some(sim_tee::chip_socket(&self.vm.vsock_socket())),
            _ => None,
        }
    }

    pub async fn details(&self) -> anyhow::Result<GuestDetails> {
        Ok(self.agent.guest_details().await?)
    }

    /// Stops the VM and waits until QEMU and the vsock backend are gone,
    /// then stops the sim chip.
    pub fn shutdown(mut self) -> Option<String> {
        let status = self.vm.shutdown(Duration::from_secs(5));
        if let Some(sim) = self.sim.take() {
            sim.stop();
        }
        status
    }
}

fn run_dir(given: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>), BootError> {
    match given {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(BootError::RunDir)?;
            Ok((d.to_path_buf(), None))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("cloister-vm-")
                .tempdir()
                .map_err(BootError::RunDir)?;
            Ok((t.path().to_path_buf(), Some(t)))
        }
    }
}

/// Polls the agent: connect over vsock, then Health, until SERVING, the VM
/// dies, or the timeout passes. A guest that resets the connection is not
/// ready yet (or has nothing on that port; only the timeout can tell).
async fn wait_for_agent(
    vm: &mut VmHandle,
    port: u32,
    timeout: Duration,
) -> Result<Agent, BootError> {
    let started = Instant::now();
    let mut last = String::from("no attempt yet");
    // Each reason is logged when it first appears, not on every 10 ms try.
    let mut logged = String::new();
    loop {
        if let Some(status) = vm.try_wait() {
            return Err(BootError::VmDied {
                status,
                qemu_tail: vm.qemu_log_tail(TAIL_LINES),
                console_tail: vm.console_tail(TAIL_LINES),
            });
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            return Err(BootError::AgentTimeout {
                port,
                waited: elapsed,
                last,
                console_tail: vm.console_tail(TAIL_LINES),
            });
        }
        let per_try = (timeout - elapsed).min(Duration::from_secs(2));
        let sock = vm.vsock_socket();
        let attempt = tokio::task::spawn_blocking(move || connect_vsock(&sock, port, per_try))
            .await
            .expect("connect task");
        match attempt {
            Ok(stream) => match Agent::from_stream(stream, per_try) {
                Ok(agent) => match agent.health().await {
                    Ok(true) => return Ok(agent),
                    Ok(false) => last = "agent reports NOT_SERVING".into(),
                    Err(e) => last = format!("Health.Check failed: {e}"),
                },
                Err(e) => last = format!("setting up the ttrpc client: {e}"),
            },
            Err(e @ ConnectError::Refused { .. }) => last = e.to_string(),
            Err(e @ ConnectError::Socket { .. }) => last = e.to_string(),
            Err(e) => last = e.to_string(),
        }
        if last != logged {
            debug!(%last, "agent not ready");
            logged.clone_from(&last);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
