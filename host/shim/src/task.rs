//! containerd's task API (v2) over the pod in `service.rs`. Every call
//! either does what containerd asked or answers a ttrpc error whose code
//! and message say why; nothing is acknowledged without being done.
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::protos::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest,
    StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::protos::cgroups_v2::metrics::{
    CPUStat, MemoryEvents, MemoryStat, Metrics, PidsStat,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::ttrpc::r#async::TtrpcContext;
use containerd_shim::protos::ttrpc::Result as TtrpcResult;
use containerd_shim::protos::types::task::{ProcessInfo, Status as TaskStatus};
use tracing::{debug, info, warn};

use crate::errors::ShimError;
use crate::service::Inner;
use crate::state::{Exit, Status, Stdio};

/// What containerd's Stats consumers (CRI, `ctr task metrics`) decode.
const METRICS_TYPE: &str = "io.containerd.cgroups.v2.Metrics";

pub struct CloisterTask {
    pub inner: Arc<Inner>,
    /// The pod this shim serves (its grouping id); the state is restored
    /// from it on the first call that needs the VM.
    pub pod_hint: String,
}

fn ts(e: &Exit) -> Timestamp {
    let mut t = Timestamp::new();
    t.seconds = e.at_secs;
    t.nanos = e.at_nanos;
    t
}

fn unimplemented(what: &str) -> containerd_shim::protos::ttrpc::Error {
    ShimError::Unimplemented(what.to_string()).into()
}

impl CloisterTask {
    /// An unreachable agent's error names the pod and where its VM lives.
    fn named(&self, e: ShimError) -> ShimError {
        match e {
            ShimError::Unavailable(m) => ShimError::Unavailable(format!(
                "pod {} (VM in {}): {m}",
                self.pod_hint,
                self.inner.cfg.pod_dir(&self.pod_hint).join("vm").display()
            )),
            other => other,
        }
    }

    /// After a shim restart the pod is found again from its state file.
    async fn ensure_restored(&self) {
        if self.inner.rt.lock().await.pod.is_some() || self.pod_hint.is_empty() {
            return;
        }
        match self.inner.restore(&self.pod_hint).await {
            Ok(true) | Ok(false) => {}
            Err(e) => {
                warn!(pod = self.pod_hint, error = %e, "restoring the pod after a shim restart")
            }
        }
    }
}

#[async_trait]
impl Task for CloisterTask {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        info!(id = req.id, bundle = req.bundle, "Create");
        if !req.checkpoint.is_empty() {
            return Err(unimplemented("restoring a checkpoint: a confidential VM's memory cannot be checkpointed by the host"));
        }
        self.ensure_restored().await;
        let stdio = Stdio {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
        };
        let pid = self
            .inner
            .create(&req.id, &req.bundle, stdio)
            .await
            .map_err(|e| self.named(e))?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        info!(id = req.id, exec = req.exec_id, "Start");
        self.ensure_restored().await;
        let pid = self
            .inner
            .start(&req.id, &req.exec_id)
            .await
            .map_err(|e| self.named(e))?;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        self.ensure_restored().await;
        let (rec, p, pid) = self
            .inner
            .state(&req.id, &req.exec_id)
            .await
            .map_err(|e| self.named(e))?;
        let status = match (p.status, &p.exit) {
            (_, Some(_)) | (Status::Stopped, _) => TaskStatus::STOPPED,
            (Status::Created, _) => TaskStatus::CREATED,
            (Status::Running, _) => TaskStatus::RUNNING,
        };
        Ok(StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: rec.bundle,
            pid,
            status: status.into(),
            stdin: p.stdio.stdin,
            stdout: p.stdio.stdout,
            stderr: p.stdio.stderr,
            terminal: p.stdio.terminal,
            exit_status: p.exit.as_ref().map(|e| e.status).unwrap_or(0),
            exited_at: p.exit.as_ref().map(ts).into(),
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        info!(id = req.id, exec = req.exec_id, "Delete");
        self.ensure_restored().await;
        let (pid, exit) = self
            .inner
            .delete(&req.id, &req.exec_id)
            .await
            .map_err(|e| self.named(e))?;
        Ok(DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: Some(ts(&exit)).into(),
            ..Default::default()
        })
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        self.ensure_restored().await;
        // The host sees one process of the pod: the VMM. Guest pids mean
        // nothing on the host, and listing them is the agent's business.
        let (_, _, pid) = self
            .inner
            .state(&req.id, "")
            .await
            .map_err(|e| self.named(e))?;
        let processes = if pid == 0 {
            vec![]
        } else {
            vec![ProcessInfo {
                pid,
                ..Default::default()
            }]
        };
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn pause(
        &self,
        _ctx: &TtrpcContext,
        _req: containerd_shim::protos::api::PauseRequest,
    ) -> TtrpcResult<Empty> {
        Err(unimplemented(
            "pause is not supported by cloister: freezing is the guest's decision, not the host's",
        ))
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        _req: containerd_shim::protos::api::ResumeRequest,
    ) -> TtrpcResult<Empty> {
        Err(unimplemented(
            "resume is not supported by cloister (nothing is ever paused)",
        ))
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: containerd_shim::protos::api::CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        Err(unimplemented("checkpoint is not supported by cloister: the host cannot read a confidential VM's memory"))
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        info!(
            id = req.id,
            exec = req.exec_id,
            signal = req.signal,
            all = req.all,
            "Kill"
        );
        self.ensure_restored().await;
        self.inner
            .kill(&req.id, &req.exec_id, req.signal)
            .await
            .map_err(|e| self.named(e))?;
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        info!(id = req.id, exec = req.exec_id, "Exec");
        self.ensure_restored().await;
        let spec = req.spec.as_ref().ok_or_else(|| {
            ShimError::Invalid(format!(
                "exec {} of {} has no process spec",
                req.exec_id, req.id
            ))
        })?;
        let spec: serde_json::Value = serde_json::from_slice(&spec.value).map_err(|e| {
            ShimError::Invalid(format!(
                "exec {} of {}: the process spec is not JSON: {e}",
                req.exec_id, req.id
            ))
        })?;
        let stdio = Stdio {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
        };
        self.inner
            .exec(&req.id, &req.exec_id, stdio, spec)
            .await
            .map_err(|e| self.named(e))?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        debug!(
            id = req.id,
            exec = req.exec_id,
            width = req.width,
            height = req.height,
            "ResizePty"
        );
        self.ensure_restored().await;
        self.inner
            .resize(&req.id, &req.exec_id, req.width, req.height)
            .await?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        debug!(
            id = req.id,
            exec = req.exec_id,
            stdin = req.stdin,
            "CloseIO"
        );
        self.ensure_restored().await;
        if req.stdin {
            self.inner
                .close_stdin(&req.id, &req.exec_id)
                .await
                .map_err(|e| self.named(e))?;
        }
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        Err(ShimError::Unimplemented(format!(
            "update of {}: a cloister pod's resources are fixed when its VM boots (set them with the pod's requests, limits and RuntimeClass overhead)",
            req.id
        ))
        .into())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        self.ensure_restored().await;
        let exit = self
            .inner
            .wait(&req.id, &req.exec_id)
            .await
            .map_err(|e| self.named(e))?;
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: Some(ts(&exit)).into(),
            ..Default::default()
        })
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        self.ensure_restored().await;
        let s = self.inner.stats(&req.id).await.map_err(|e| self.named(e))?;
        let m = Metrics {
            cpu: Some(CPUStat {
                usage_usec: s.cpu_usage_usec,
                ..Default::default()
            })
            .into(),
            memory: Some(MemoryStat {
                usage: s.memory_bytes,
                ..Default::default()
            })
            .into(),
            pids: Some(PidsStat {
                current: s.pids,
                ..Default::default()
            })
            .into(),
            memory_events: Some(MemoryEvents {
                oom_kill: s.oom_kills,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let value = m
            .write_to_bytes()
            .map_err(|e| ShimError::Internal(format!("encoding the metrics of {}: {e}", req.id)))?;
        let any = Any {
            type_url: METRICS_TYPE.into(),
            value,
            ..Default::default()
        };
        Ok(StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        self.ensure_restored().await;
        let task_pid = self
            .inner
            .state(&req.id, "")
            .await
            .map(|(_, _, pid)| pid)
            .unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        if self.inner.shutdown().await {
            info!("Shutdown: no task left, the shim exits");
        } else {
            debug!("Shutdown ignored: the pod still has tasks");
        }
        Ok(Empty::new())
    }
}
