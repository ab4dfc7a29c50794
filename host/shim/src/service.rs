//! The shim's pod: one VM per pod, the containers containerd created in
//! it, their processes' exits, and the persisted state. The task API
//! (task.rs) is a thin layer over the operations here.
//!
//! Locking: `Inner::rt` is held only for bookkeeping, never across an RPC
//! to the agent (a CreateContainer pulls for minutes), so that State, Wait
//! and Kill always answer.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloister_host::agent_client::Agent;
use cloister_host::node_config::{NetworkChoice, NodeConfig};
use cloister_host::pod::cni::{self, CniAttachment};
use cloister_host::pod::network::GuestNetwork;
use cloister_host::pod::{annotations, initdata, spec as guest_spec};
use cloister_host::run::rpc_message;
use cloister_host::sandbox::{Sandbox, VmHandle};
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskStart,
};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::ExitSignal;
use serde_json::Value;
use sha2::Digest;
use tokio::sync::{watch, Mutex};
use tracing::{error, info, warn};

use crate::errors::{self, ShimError};
use crate::io::Bridges;
use crate::state::{ContainerRecord, Exit, Kind, PodState, ProcessRecord, Status, Stdio};

/// CRI's annotations on every spec it writes.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// The running VM of the pod.
pub struct Pod {
    pub sandbox: Sandbox,
    pub dir: PathBuf,
}

/// A process's exit, observable by every Wait.
struct Proc {
    tx: watch::Sender<Option<Exit>>,
    bridges: Option<Bridges>,
}

impl Proc {
    fn new() -> Proc {
        Proc {
            tx: watch::channel(None).0,
            bridges: None,
        }
    }

    /// Records the exit for every Wait, also one that comes later:
    /// `watch::Sender::send` would drop the value while nobody subscribed
    /// yet (a process that ends before containerd's Wait).
    fn exited(&self, e: Exit) {
        self.tx.send_replace(Some(e));
    }
}

pub struct Runtime {
    pub pod: Option<Pod>,
    pub state: Option<PodState>,
    procs: HashMap<(String, String), Proc>,
    /// Set while the shim itself stops the VM, so the monitor does not
    /// report it as a crash.
    stopping: bool,
}

impl Runtime {
    /// Ends one process, once: every Wait sees `exit` and the persisted
    /// state records it. False when it is unknown or had ended already.
    fn end(&mut self, c: &str, e: &str, exit: &Exit) -> bool {
        let Some(p) = self.procs.get(&(c.to_string(), e.to_string())) else {
            return false;
        };
        if p.tx.borrow().is_some() {
            return false;
        }
        p.exited(exit.clone());
        if let Some(st) = self.state.as_mut() {
            st.record_exit(c, e, exit);
        }
        true
    }

    /// Ends every process still running with `status`; returns those it
    /// ended, for their exit events.
    fn end_all(&mut self, status: u32) -> Vec<(String, String, Exit)> {
        let keys: Vec<_> = self.procs.keys().cloned().collect();
        keys.into_iter()
            .filter_map(|(c, e)| {
                let exit = Exit::now(status);
                self.end(&c, &e, &exit).then_some((c, e, exit))
            })
            .collect()
    }
}

pub struct Inner {
    pub cfg: NodeConfig,
    pub namespace: String,
    pub exe: PathBuf,
    publisher: RemotePublisher,
    pub exit: Arc<ExitSignal>,
    pub rt: Mutex<Runtime>,
}

fn annotations_of(spec: &Value) -> Vec<(String, String)> {
    spec.get("annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads `<bundle>/config.json`.
pub fn read_spec(bundle: &Path) -> Result<Value, ShimError> {
    let p = bundle.join("config.json");
    let bytes =
        std::fs::read(&p).map_err(|e| ShimError::Invalid(format!("{}: {e}", p.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| ShimError::Invalid(format!("{}: {e}", p.display())))
}

/// The task's kind and its pod, from CRI's annotations.
pub fn kind_of(id: &str, spec: &Value) -> (Kind, String) {
    let a = spec.get("annotations");
    let get = |k: &str| a.and_then(|a| a.get(k)).and_then(Value::as_str);
    match (get(CONTAINER_TYPE), get(SANDBOX_ID)) {
        (Some("sandbox"), _) => (Kind::Sandbox, get(SANDBOX_ID).unwrap_or(id).to_string()),
        (Some("container"), Some(sb)) => (Kind::Container, sb.to_string()),
        _ => (Kind::Standalone, id.to_string()),
    }
}

fn network_ns(spec: &Value) -> Option<PathBuf> {
    spec.pointer("/linux/namespaces")?
        .as_array()?
        .iter()
        .find(|n| n.get("type").and_then(Value::as_str) == Some("network"))?
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

fn timestamp(
    e: &Exit,
) -> containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp {
    let mut t = containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp::new();
    t.seconds = e.at_secs;
    t.nanos = e.at_nanos;
    t
}

impl Inner {
    pub fn new(
        cfg: NodeConfig,
        namespace: String,
        publisher: RemotePublisher,
        exit: Arc<ExitSignal>,
    ) -> Arc<Inner> {
        Arc::new(Inner {
            cfg,
            namespace,
            exe: std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("containerd-shim-cloister-v2")),
            publisher,
            exit,
            rt: Mutex::new(Runtime {
                pod: None,
                state: None,
                procs: HashMap::new(),
                stopping: false,
            }),
        })
    }

    pub async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        let ctx = containerd_shim::protos::ttrpc::context::with_timeout(5_000_000_000);
        if let Err(e) = self
            .publisher
            .publish(ctx, topic, &self.namespace, event)
            .await
        {
            warn!(topic, error = %e, "publishing an event to containerd failed");
        }
    }

    fn save(rt: &Runtime) {
        if let (Some(s), Some(p)) = (&rt.state, &rt.pod) {
            if let Err(e) = s.save(&p.dir) {
                error!(error = %e, "persisting the pod state");
            }
        }
    }

    /// The agent of the running pod, or why there is none.
    pub async fn agent(&self) -> Result<(Agent, u32, String), ShimError> {
        let rt = self.rt.lock().await;
        let pod = rt.pod.as_ref().ok_or_else(|| {
            ShimError::Precondition("the pod's VM is not running in this shim".into())
        })?;
        Ok((
            pod.sandbox.agent.clone(),
            pod.sandbox.vm.pid().unwrap_or(0),
            rt.state
                .as_ref()
                .map(|s| s.pod_id.clone())
                .unwrap_or_default(),
        ))
    }

    /// Boots the pod's VM (sandbox or standalone task).
    async fn boot_pod(self: &Arc<Self>, pod_id: &str, spec: &Value) -> Result<(), ShimError> {
        let annotations = annotations_of(spec);
        let overrides = annotations::overrides(
            &self.cfg,
            annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|e| ShimError::Invalid(e.to_string()))?;
        let (doc, source) = match initdata::from_annotations(|k| {
            annotations
                .iter()
                .find(|(a, _)| a == k)
                .map(|(_, v)| v.as_str())
        })
        .map_err(|e| ShimError::Invalid(e.to_string()))?
        {
            Some(x) => x,
            None => initdata::default_initdata(&self.cfg)
                .map_err(|e| ShimError::Invalid(e.to_string()))?,
        };
        let digest = hex::encode(sha2::Sha256::digest(doc.as_bytes()));
        info!(pod = pod_id, initdata = %source, initdata_sha256 = digest, "pod initdata");
        let dir = self.cfg.pod_dir(pod_id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ShimError::Internal(format!("creating {}: {e}", dir.display())))?;
        // The network: the pod's CNI interface when there is one.
        let mut attachment: Option<CniAttachment> = None;
        let (net, mode) = match (self.cfg.runtime.network, network_ns(spec)) {
            (NetworkChoice::None, _) => (GuestNetwork::none(), "none"),
            (NetworkChoice::User, _) | (NetworkChoice::Auto, None) => {
                (GuestNetwork::user(), "user")
            }
            (NetworkChoice::Auto, Some(ns)) => {
                match cni::discover(&ns).map_err(|e| ShimError::Internal(e.to_string()))? {
                    Some(a) => {
                        cni::attach(&a).map_err(|e| ShimError::Internal(e.to_string()))?;
                        let n = a.network.clone();
                        attachment = Some(a);
                        (n, "tap")
                    }
                    None => {
                        info!(netns = %ns.display(), "the pod network namespace has no CNI interface: QEMU user networking");
                        (GuestNetwork::user(), "user")
                    }
                }
            }
        };
        let mut boot = cloister_host::pod::boot_options(&self.cfg, &overrides);
        boot.vm.user_net = mode == "user";
        boot.vm.tap = attachment.as_ref().map(|a| a.tap_net());
        boot.initdata = Some(doc.clone().into_bytes());
        boot.run_dir = Some(dir.join("vm"));
        boot.detached_vmm = Some(self.exe.clone());
        let hostname = spec
            .get("hostname")
            .and_then(Value::as_str)
            .unwrap_or(pod_id)
            .to_string();
        let cleanup = |a: &Option<CniAttachment>| {
            if let Some(a) = a {
                cni::detach(a);
            }
            let _ = std::fs::remove_dir_all(&dir);
        };
        let sandbox = match Sandbox::boot(&boot).await {
            Ok(s) => s,
            Err(e) => {
                cleanup(&attachment);
                return Err(ShimError::Internal(format!(
                    "pod {pod_id}: booting the sandbox VM: {e}"
                )));
            }
        };
        let created =
            cloister_host::pod::start_sandbox(&sandbox.agent, pod_id, &hostname, &doc, &net).await;
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                let mut sb = sandbox;
                sb.vm.shutdown(Duration::from_secs(5));
                cleanup(&attachment);
                return Err(ShimError::Precondition(format!("pod {pod_id}: {e}")));
            }
        };
        info!(
            pod = pod_id,
            bound_to_tee = created.bound_to_tee,
            measurement = sandbox.measurement.map(hex::encode).unwrap_or_default(),
            network = mode,
            ready_ms = sandbox.ready_after.as_millis() as u64,
            "pod VM ready"
        );
        let state = PodState {
            pod_id: pod_id.into(),
            namespace: self.namespace.clone(),
            vm_dir: sandbox.run_dir.clone(),
            tee: sandbox.tee.name().into(),
            measurement: sandbox.measurement.map(hex::encode),
            host_data: hex::encode(sandbox.host_data),
            initdata_source: source.to_string(),
            initdata_sha256: digest,
            network: attachment,
            network_mode: mode.into(),
            containers: Default::default(),
        };
        let mut rt = self.rt.lock().await;
        rt.pod = Some(Pod { sandbox, dir });
        rt.state = Some(state);
        rt.stopping = false;
        Self::save(&rt);
        drop(rt);
        self.spawn_vm_monitor();
        Ok(())
    }

    /// Finds the pod of this shim again after a restart, from its state.
    pub async fn restore(self: &Arc<Self>, pod_id: &str) -> Result<bool, ShimError> {
        let dir = self.cfg.pod_dir(pod_id);
        let Some(state) = PodState::load(&dir).map_err(|e| ShimError::Internal(e.to_string()))?
        else {
            return Ok(false);
        };
        let host_data = hex::decode(&state.host_data)
            .ok()
            .and_then(|v| v.try_into().ok())
            .unwrap_or([0; 32]);
        let measurement = state
            .measurement
            .as_deref()
            .and_then(|m| hex::decode(m).ok())
            .and_then(|v| v.try_into().ok());
        let tee = if state.tee == "sim" {
            cloister_host::hypervisor::tee::TeeKind::Sim
        } else {
            cloister_host::hypervisor::tee::TeeKind::None
        };
        let sandbox = Sandbox::attach(
            &state.vm_dir,
            tee,
            measurement,
            host_data,
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| {
            ShimError::Unavailable(format!(
                "pod {pod_id}: reconnecting to the sandbox VM in {}: {e}",
                state.vm_dir.display()
            ))
        })?;
        info!(
            pod = pod_id,
            containers = state.containers.len(),
            "reconnected to the live pod VM"
        );
        let agent = sandbox.agent.clone();
        let mut rt = self.rt.lock().await;
        for (cid, c) in &state.containers {
            let mut procs = vec![(String::new(), &c.init)];
            procs.extend(c.execs.iter().map(|(e, p)| (e.clone(), p)));
            for (eid, p) in procs {
                let mut proc = Proc::new();
                if let Some(e) = &p.exit {
                    proc.exited(e.clone());
                } else if p.status == Status::Running && c.kind != Kind::Sandbox {
                    proc.bridges = Some(Bridges::start(&agent, cid, &eid, &p.stdio));
                }
                let running =
                    p.status == Status::Running && p.exit.is_none() && c.kind != Kind::Sandbox;
                rt.procs.insert((cid.clone(), eid.clone()), proc);
                if running {
                    self.spawn_waiter(cid.clone(), eid.clone());
                }
            }
        }
        rt.pod = Some(Pod { sandbox, dir });
        rt.state = Some(state);
        drop(rt);
        self.spawn_vm_monitor();
        Ok(true)
    }

    /// Watches the VM; when it ends without the shim stopping it, every
    /// process still running exits with 255 and the reason is logged.
    fn spawn_vm_monitor(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut rt = me.rt.lock().await;
                let Some(pod) = rt.pod.as_mut() else { return };
                let Some(reason) = pod.sandbox.vm.try_wait() else {
                    continue;
                };
                if rt.stopping {
                    return;
                }
                let Some(pod) = rt.pod.as_ref() else { return };
                let tail = pod.sandbox.vm.console_tail(15);
                let pid = pod.sandbox.vm.pid().unwrap_or(0);
                let pod_id = rt
                    .state
                    .as_ref()
                    .map(|s| s.pod_id.clone())
                    .unwrap_or_default();
                error!(
                    pod = pod_id,
                    reason,
                    console = tail,
                    "the pod's VM ended unexpectedly: every process of the pod exits with 255"
                );
                let exits = rt.end_all(255);
                Self::save(&rt);
                drop(rt);
                for (c, e, exit) in exits {
                    me.publish_exit(&c, &e, pid, &exit).await;
                }
                return;
            }
        });
    }

    async fn publish_exit(&self, c: &str, e: &str, pid: u32, exit: &Exit) {
        let ev = TaskExit {
            container_id: c.into(),
            id: if e.is_empty() { c.into() } else { e.into() },
            pid,
            exit_status: exit.status,
            exited_at: Some(timestamp(exit)).into(),
            ..Default::default()
        };
        self.publish("/tasks/exit", Box::new(ev)).await;
    }

    /// Waits for a guest process to end, then records and publishes it.
    fn spawn_waiter(self: &Arc<Self>, c: String, e: String) {
        let me = self.clone();
        tokio::spawn(async move {
            let Ok((agent, pid, _)) = me.agent().await else {
                return;
            };
            let code = agent.wait(&c, &e).await;
            let status = match &code {
                Ok(s) => (*s).clamp(0, 255) as u32,
                // The VM monitor reports a dead VM; anything else is 255.
                Err(err) => {
                    warn!(container = c, exec = e, error = %err, "WaitProcess failed");
                    255
                }
            };
            if e.is_empty() && code.is_ok() {
                let req = cloister_protocol::StatsContainerRequest {
                    container_id: c.clone(),
                    ..Default::default()
                };
                if let Ok(st) = agent
                    .rpc()
                    .stats_container(agent.ctx_for(Duration::from_secs(5)), &req)
                    .await
                {
                    if st.oom_kills > 0 {
                        info!(
                            container = c,
                            oom_kills = st.oom_kills,
                            "the container was OOM-killed"
                        );
                        me.publish(
                            "/tasks/oom",
                            Box::new(TaskOOM {
                                container_id: c.clone(),
                                ..Default::default()
                            }),
                        )
                        .await;
                    }
                }
            }
            let mut bridges = {
                let mut rt = me.rt.lock().await;
                rt.procs
                    .get_mut(&(c.clone(), e.clone()))
                    .and_then(|p| p.bridges.take())
            };
            if let Some(b) = bridges.as_mut() {
                b.done(Duration::from_secs(5)).await;
            }
            let exit = Exit::now(status);
            {
                let mut rt = me.rt.lock().await;
                if !rt.end(&c, &e, &exit) {
                    return;
                }
                Self::save(&rt);
            }
            info!(container = c, exec = e, status, "process exited");
            me.publish_exit(&c, &e, pid, &exit).await;
        });
    }

    // ----------------------------------------------------------- the task API

    pub async fn create(
        self: &Arc<Self>,
        id: &str,
        bundle: &str,
        stdio: Stdio,
    ) -> Result<u32, ShimError> {
        errors::check_id(id)?;
        let spec = read_spec(Path::new(bundle))?;
        let (kind, pod_id) = kind_of(id, &spec);
        {
            let rt = self.rt.lock().await;
            if rt
                .state
                .as_ref()
                .is_some_and(|s| s.containers.contains_key(id))
            {
                return Err(ShimError::Exists(format!("task {id} exists")));
            }
        }
        let has_pod = self.rt.lock().await.pod.is_some();
        match kind {
            Kind::Sandbox | Kind::Standalone => {
                if has_pod {
                    return Err(ShimError::Exists(format!(
                        "pod {pod_id} already has its VM"
                    )));
                }
                self.boot_pod(&pod_id, &spec).await?;
            }
            Kind::Container => {
                if !has_pod && !self.restore(&pod_id).await? {
                    return Err(ShimError::Precondition(format!(
                        "pod {pod_id} has no running sandbox in this shim (create its sandbox container first)"
                    )));
                }
            }
        }
        let (agent, pid, _) = self.agent().await?;
        let mut image = String::new();
        let mut digest = String::new();
        if kind != Kind::Sandbox {
            let result = self.create_in_guest(&agent, id, &spec).await;
            match result {
                Ok((i, d)) => {
                    image = i;
                    digest = d;
                }
                Err(e) => {
                    if kind == Kind::Standalone {
                        self.stop_pod().await;
                    }
                    return Err(e);
                }
            }
        }
        let mut rt = self.rt.lock().await;
        let mut proc = Proc::new();
        if kind != Kind::Sandbox {
            proc.bridges = Some(Bridges::start(&agent, id, "", &stdio));
        }
        rt.procs.insert((id.to_string(), String::new()), proc);
        if let Some(st) = rt.state.as_mut() {
            st.containers.insert(
                id.into(),
                ContainerRecord {
                    kind,
                    bundle: bundle.into(),
                    init: ProcessRecord {
                        stdio: stdio.clone(),
                        status: Status::Created,
                        exit: None,
                        spec: None,
                    },
                    execs: Default::default(),
                    image,
                    image_digest: digest,
                },
            );
        }
        Self::save(&rt);
        drop(rt);
        let ev = TaskCreate {
            container_id: id.into(),
            bundle: bundle.into(),
            io: Some(TaskIO {
                stdin: stdio.stdin.clone(),
                stdout: stdio.stdout.clone(),
                stderr: stdio.stderr.clone(),
                terminal: stdio.terminal,
                ..Default::default()
            })
            .into(),
            pid,
            ..Default::default()
        };
        self.publish("/tasks/create", Box::new(ev)).await;
        Ok(pid)
    }

    async fn create_in_guest(
        &self,
        agent: &Agent,
        id: &str,
        spec: &Value,
    ) -> Result<(String, String), ShimError> {
        let g = guest_spec::for_guest(id, spec).map_err(|e| ShimError::Invalid(e.to_string()))?;
        cloister_host::pod::copy_files(agent, &g.copies)
            .await
            .map_err(|e| ShimError::from_pod(&e))?;
        let bytes = serde_json::to_vec(&g.spec).unwrap_or_default();
        let timeout = Duration::from_secs(self.cfg.runtime.pull_timeout_secs);
        info!(
            container = id,
            image = g.image,
            "CreateContainer: the guest pulls, verifies and decrypts the image"
        );
        let r = agent
            .create_container(id, &g.image, &bytes, timeout)
            .await
            .map_err(|e| ShimError::from_rpc("CreateContainer", &e))?;
        info!(
            container = id,
            image_digest = r.image_digest,
            signature = r.signature,
            encrypted_layers = r.encrypted_layers,
            attestation = r.attestation,
            pull_ms = r.pull_ms,
            "container created in the guest"
        );
        Ok((g.image, r.image_digest))
    }

    fn record<'a>(rt: &'a mut Runtime, id: &str) -> Result<&'a mut ContainerRecord, ShimError> {
        rt.state
            .as_mut()
            .and_then(|s| s.containers.get_mut(id))
            .ok_or_else(|| ShimError::NotFound(format!("task {id} not found")))
    }

    pub async fn start(self: &Arc<Self>, id: &str, exec: &str) -> Result<u32, ShimError> {
        let (agent, pid, _) = self.agent().await?;
        let (kind, proc_spec, stdio) = {
            let mut rt = self.rt.lock().await;
            let rec = Self::record(&mut rt, id)?;
            let kind = rec.kind;
            if exec.is_empty() {
                if rec.init.status != Status::Created {
                    return Err(ShimError::Precondition(format!(
                        "task {id} was started already"
                    )));
                }
                (kind, None, rec.init.stdio.clone())
            } else {
                let e = rec
                    .execs
                    .get(exec)
                    .ok_or_else(|| ShimError::NotFound(format!("exec {exec} of {id} not found")))?;
                if e.status != Status::Created {
                    return Err(ShimError::Precondition(format!(
                        "exec {exec} was started already"
                    )));
                }
                (kind, e.spec.clone(), e.stdio.clone())
            }
        };
        if exec.is_empty() {
            if kind != Kind::Sandbox {
                agent
                    .start_container(id)
                    .await
                    .map_err(|e| ShimError::from_rpc("StartContainer", &e))?;
                self.spawn_waiter(id.into(), String::new());
            }
        } else {
            let process = exec_process(proc_spec.as_ref().unwrap_or(&Value::Null), stdio.terminal)?;
            let req = cloister_protocol::ExecProcessRequest {
                container_id: id.into(),
                exec_id: exec.into(),
                process: Some(process).into(),
                ..Default::default()
            };
            agent
                .rpc()
                .exec_process(agent.ctx_for(Duration::from_secs(60)), &req)
                .await
                .map_err(|e| ShimError::from_rpc("ExecProcess", &e))?;
            let b = Bridges::start(&agent, id, exec, &stdio);
            let mut rt = self.rt.lock().await;
            if let Some(p) = rt.procs.get_mut(&(id.to_string(), exec.to_string())) {
                p.bridges = Some(b);
            }
            drop(rt);
            self.spawn_waiter(id.into(), exec.into());
        }
        let mut rt = self.rt.lock().await;
        if let Ok(rec) = Self::record(&mut rt, id) {
            let p = if exec.is_empty() {
                Some(&mut rec.init)
            } else {
                rec.execs.get_mut(exec)
            };
            if let Some(p) = p {
                if p.exit.is_none() {
                    p.status = Status::Running;
                }
            }
        }
        Self::save(&rt);
        drop(rt);
        if exec.is_empty() {
            self.publish(
                "/tasks/start",
                Box::new(TaskStart {
                    container_id: id.into(),
                    pid,
                    ..Default::default()
                }),
            )
            .await;
        } else {
            self.publish(
                "/tasks/exec-started",
                Box::new(TaskExecStarted {
                    container_id: id.into(),
                    exec_id: exec.into(),
                    pid,
                    ..Default::default()
                }),
            )
            .await;
        }
        Ok(pid)
    }

    pub async fn exec(
        &self,
        id: &str,
        exec: &str,
        stdio: Stdio,
        spec: Value,
    ) -> Result<(), ShimError> {
        errors::check_id(exec)?;
        {
            let mut rt = self.rt.lock().await;
            let rec = Self::record(&mut rt, id)?;
            if rec.kind == Kind::Sandbox {
                return Err(ShimError::Unimplemented(format!(
                    "exec into the sandbox container {id}: nothing of it runs in the guest"
                )));
            }
            if rec.execs.contains_key(exec) {
                return Err(ShimError::Exists(format!("exec {exec} of {id} exists")));
            }
            rec.execs.insert(
                exec.into(),
                ProcessRecord {
                    stdio,
                    status: Status::Created,
                    exit: None,
                    spec: Some(spec),
                },
            );
            rt.procs.insert((id.into(), exec.into()), Proc::new());
            Self::save(&rt);
        }
        self.publish(
            "/tasks/exec-added",
            Box::new(TaskExecAdded {
                container_id: id.into(),
                exec_id: exec.into(),
                ..Default::default()
            }),
        )
        .await;
        Ok(())
    }

    pub async fn kill(
        self: &Arc<Self>,
        id: &str,
        exec: &str,
        signal: u32,
    ) -> Result<(), ShimError> {
        let kind = {
            let mut rt = self.rt.lock().await;
            let rec = Self::record(&mut rt, id)?;
            let p = if exec.is_empty() {
                Some(&rec.init)
            } else {
                rec.execs.get(exec)
            };
            let p =
                p.ok_or_else(|| ShimError::NotFound(format!("exec {exec} of {id} not found")))?;
            if p.exit.is_some() {
                return Err(ShimError::NotFound(format!(
                    "process {id}/{exec} has already exited"
                )));
            }
            rec.kind
        };
        if kind == Kind::Sandbox {
            // The sandbox "process" is the VM itself.
            info!(pod = id, signal, "sandbox killed: stopping the pod VM");
            self.stop_pod().await;
            self.finish_sandbox(id, 128 + signal.min(127)).await;
            return Ok(());
        }
        let (agent, _, _) = self.agent().await?;
        let req = cloister_protocol::SignalProcessRequest {
            container_id: id.into(),
            exec_id: exec.into(),
            signal,
            ..Default::default()
        };
        agent
            .rpc()
            .signal_process(agent.ctx_for(Duration::from_secs(10)), &req)
            .await
            .map_err(|e| ShimError::from_rpc("SignalProcess", &e))?;
        Ok(())
    }

    /// Records the sandbox task's exit (the VM is gone) and publishes it.
    async fn finish_sandbox(&self, id: &str, status: u32) {
        let exit = Exit::now(status);
        let pid = {
            let mut rt = self.rt.lock().await;
            if rt.procs.contains_key(&(id.to_string(), String::new())) {
                if !rt.end(id, "", &exit) {
                    return;
                }
            } else if let Some(st) = rt.state.as_mut() {
                st.record_exit(id, "", &exit);
            }
            // The VM is gone: no host process stands for the sandbox.
            0
        };
        self.publish_exit(id, "", pid, &exit).await;
    }

    /// Stops the VM (orderly: DestroySandbox first) and marks every process
    /// still running as ended.
    pub async fn stop_pod(&self) {
        let mut rt = self.rt.lock().await;
        rt.stopping = true;
        let Some(pod) = rt.pod.as_mut() else { return };
        let agent = pod.sandbox.agent.clone();
        drop(rt);
        let _ = tokio::time::timeout(Duration::from_secs(10), agent.destroy_sandbox()).await;
        let mut rt = self.rt.lock().await;
        if let Some(pod) = rt.pod.as_mut() {
            let vm: &mut VmHandle = &mut pod.sandbox.vm;
            if let Some(how) = vm.shutdown(Duration::from_secs(5)) {
                info!(how, "the pod VM stopped");
            }
        }
        let pid = rt
            .pod
            .as_ref()
            .and_then(|p| p.sandbox.vm.pid())
            .unwrap_or(0);
        let exits = rt.end_all(137);
        Self::save(&rt);
        drop(rt);
        for (c, e, exit) in exits {
            self.publish_exit(&c, &e, pid, &exit).await;
        }
    }

    /// Removes what the pod left on the host: the VM, the tap, the pod
    /// directory.
    async fn remove_pod(&self) {
        self.stop_pod().await;
        let mut rt = self.rt.lock().await;
        if let Some(st) = rt.state.take() {
            if let Some(a) = &st.network {
                cni::detach(a);
            }
        }
        if let Some(pod) = rt.pod.take() {
            let dir = pod.dir.clone();
            drop(pod);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                warn!(dir = %dir.display(), error = %e, "removing the pod directory");
            }
        }
        rt.procs.clear();
    }

    pub async fn wait(&self, id: &str, exec: &str) -> Result<Exit, ShimError> {
        let mut rx = {
            let rt = self.rt.lock().await;
            rt.procs
                .get(&(id.to_string(), exec.to_string()))
                .map(|p| p.tx.subscribe())
                .ok_or_else(|| ShimError::NotFound(format!("process {id}/{exec} not found")))?
        };
        loop {
            if let Some(e) = rx.borrow().clone() {
                return Ok(e);
            }
            if rx.changed().await.is_err() {
                return Err(ShimError::NotFound(format!(
                    "process {id}/{exec} was deleted"
                )));
            }
        }
    }

    pub async fn delete(self: &Arc<Self>, id: &str, exec: &str) -> Result<(u32, Exit), ShimError> {
        let (kind, exit, pid) = {
            let mut rt = self.rt.lock().await;
            let pid = rt
                .pod
                .as_ref()
                .and_then(|p| p.sandbox.vm.pid())
                .unwrap_or(0);
            let rec = Self::record(&mut rt, id)?;
            let p = if exec.is_empty() {
                Some(&rec.init)
            } else {
                rec.execs.get(exec)
            };
            let p =
                p.ok_or_else(|| ShimError::NotFound(format!("exec {exec} of {id} not found")))?;
            if p.status == Status::Running && p.exit.is_none() {
                return Err(ShimError::Precondition(format!(
                    "process {id}/{exec} is running; kill it first"
                )));
            }
            (
                rec.kind,
                p.exit.clone().unwrap_or_else(|| Exit::now(0)),
                pid,
            )
        };
        if !exec.is_empty() {
            let mut rt = self.rt.lock().await;
            if let Ok(rec) = Self::record(&mut rt, id) {
                rec.execs.remove(exec);
            }
            rt.procs.remove(&(id.to_string(), exec.to_string()));
            Self::save(&rt);
            return Ok((pid, exit));
        }
        if kind != Kind::Sandbox {
            if let Ok((agent, _, _)) = self.agent().await {
                if let Err(e) = agent.remove_container(id, 0).await {
                    warn!(container = id, error = %rpc_message(&e), "RemoveContainer in the guest");
                }
            }
        }
        match kind {
            Kind::Sandbox | Kind::Standalone => self.remove_pod().await,
            Kind::Container => {
                let mut rt = self.rt.lock().await;
                if let Some(st) = rt.state.as_mut() {
                    st.containers.remove(id);
                }
                let keys: Vec<_> = rt.procs.keys().filter(|(c, _)| c == id).cloned().collect();
                for k in keys {
                    rt.procs.remove(&k);
                }
                Self::save(&rt);
            }
        }
        let ev = TaskDelete {
            container_id: id.into(),
            id: id.into(),
            pid,
            exit_status: exit.status,
            exited_at: Some(timestamp(&exit)).into(),
            ..Default::default()
        };
        self.publish("/tasks/delete", Box::new(ev)).await;
        Ok((pid, exit))
    }

    pub async fn state(
        &self,
        id: &str,
        exec: &str,
    ) -> Result<(ContainerRecord, ProcessRecord, u32), ShimError> {
        let mut rt = self.rt.lock().await;
        let pid = rt
            .pod
            .as_ref()
            .and_then(|p| p.sandbox.vm.pid())
            .unwrap_or(0);
        let rec = Self::record(&mut rt, id)?.clone();
        let p = if exec.is_empty() {
            Some(rec.init.clone())
        } else {
            rec.execs.get(exec).cloned()
        };
        let p = p.ok_or_else(|| ShimError::NotFound(format!("exec {exec} of {id} not found")))?;
        Ok((rec, p, pid))
    }

    pub async fn stats(
        &self,
        id: &str,
    ) -> Result<cloister_protocol::StatsContainerResponse, ShimError> {
        let kind = {
            let mut rt = self.rt.lock().await;
            Self::record(&mut rt, id)?.kind
        };
        if kind == Kind::Sandbox {
            return Ok(Default::default());
        }
        let (agent, _, _) = self.agent().await?;
        let req = cloister_protocol::StatsContainerRequest {
            container_id: id.into(),
            ..Default::default()
        };
        agent
            .rpc()
            .stats_container(agent.ctx_for(Duration::from_secs(10)), &req)
            .await
            .map_err(|e| ShimError::from_rpc("StatsContainer", &e))
    }

    pub async fn resize(
        &self,
        id: &str,
        exec: &str,
        width: u32,
        height: u32,
    ) -> Result<(), ShimError> {
        let (agent, _, _) = self.agent().await?;
        let req = cloister_protocol::TtyWinResizeRequest {
            container_id: id.into(),
            exec_id: exec.into(),
            rows: height,
            columns: width,
            ..Default::default()
        };
        agent
            .rpc()
            .tty_win_resize(agent.ctx_for(Duration::from_secs(10)), &req)
            .await
            .map_err(|e| ShimError::from_rpc("TtyWinResize", &e))?;
        Ok(())
    }

    pub async fn close_stdin(&self, id: &str, exec: &str) -> Result<(), ShimError> {
        let (agent, _, _) = self.agent().await?;
        {
            let mut rt = self.rt.lock().await;
            if let Some(b) = rt
                .procs
                .get_mut(&(id.to_string(), exec.to_string()))
                .and_then(|p| p.bridges.as_mut())
            {
                b.close_input();
            }
        }
        crate::io::close_stdin(&agent, id, exec).await;
        Ok(())
    }

    /// Shutdown: the shim exits once it has no task left.
    pub async fn shutdown(&self) -> bool {
        let rt = self.rt.lock().await;
        let empty = rt.state.as_ref().is_none_or(|s| s.containers.is_empty());
        if empty {
            self.exit.signal();
        }
        empty
    }
}

/// The agent's Process from containerd's exec spec (an OCI process).
fn exec_process(spec: &Value, terminal: bool) -> Result<cloister_protocol::Process, ShimError> {
    let args: Vec<String> = spec
        .get("args")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if args.is_empty() {
        return Err(ShimError::Invalid("the exec's process has no args".into()));
    }
    let env = spec
        .get("env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let num = |p: &str| spec.pointer(p).and_then(Value::as_u64).unwrap_or(0) as u32;
    Ok(cloister_protocol::Process {
        args,
        env,
        cwd: spec.get("cwd").and_then(Value::as_str).unwrap_or("").into(),
        terminal: terminal
            || spec
                .get("terminal")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        uid: num("/user/uid"),
        gid: num("/user/gid"),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_exit_recorded_before_any_wait_is_seen_by_a_later_wait() {
        let p = super::Proc::new();
        p.exited(crate::state::Exit::now(137));
        let rx = p.tx.subscribe();
        assert_eq!(rx.borrow().as_ref().map(|e| e.status), Some(137));
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn cri_annotations_decide_the_kind_and_the_pod() {
        let s = json!({"annotations": {CONTAINER_TYPE: "sandbox", SANDBOX_ID: "p1"}});
        assert_eq!(kind_of("p1", &s), (Kind::Sandbox, "p1".into()));
        let s = json!({"annotations": {CONTAINER_TYPE: "container", SANDBOX_ID: "p1"}});
        assert_eq!(kind_of("c1", &s), (Kind::Container, "p1".into()));
        assert_eq!(kind_of("c1", &json!({})), (Kind::Standalone, "c1".into()));
    }

    #[test]
    fn the_network_namespace_path_is_read() {
        let s = json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/cni-1"}]}});
        assert_eq!(network_ns(&s), Some(PathBuf::from("/var/run/netns/cni-1")));
        assert_eq!(
            network_ns(&json!({"linux": {"namespaces": [{"type": "network"}]}})),
            None
        );
    }

    #[test]
    fn exec_specs_become_agent_processes() {
        let p = exec_process(&json!({"args": ["sh", "-c", "id"], "env": ["A=1"], "cwd": "/", "user": {"uid": 5, "gid": 6}}), false).unwrap();
        assert_eq!(p.args, vec!["sh", "-c", "id"]);
        assert_eq!((p.uid, p.gid, p.terminal), (5, 6, false));
        assert!(exec_process(&json!({}), false).is_err());
    }
}
