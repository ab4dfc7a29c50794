//! One confidential container, start to finish: boot a measured sandbox,
//! hand it the initdata, let the guest pull, verify and decrypt the image
//! itself (attesting to the KBS for keys), run the container while streaming
//! its output, and tear everything down. `cloister run` and the demo go
//! through here.
use std::time::{Duration, Instant};

use cloister_protocol::CreateContainerResponse;
use tracing::info;

use crate::pod::network::GuestNetwork;
use crate::sandbox::{BootError, BootOptions, Sandbox};

/// What to run, and where.
pub struct RunOptions {
    pub boot: BootOptions,
    /// The initdata document (TOML) given to CreateSandbox; with a TEE its
    /// sha256 is the launch's HOST_DATA (`boot.initdata` must hold the same).
    pub initdata: String,
    pub image: String,
    /// The OCI runtime spec sent with CreateContainer.
    pub spec: serde_json::Value,
    pub container_id: String,
    /// How long the guest may take to pull the image.
    pub pull_timeout: Duration,
    /// The guest's network, configured after CreateSandbox (user
    /// networking when `boot.vm.user_net`).
    pub network: GuestNetwork,
}

/// What happened, for the summary.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub exit_code: i32,
    /// Hex launch measurement (sim TEE), if any.
    pub measurement: Option<String>,
    /// Hex HOST_DATA (sha256 of the initdata).
    pub host_data: String,
    pub bound_to_tee: bool,
    pub created: CreateContainerResponse,
    /// Time per phase, in order.
    pub phases: Vec<(&'static str, Duration)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Pod(#[from] crate::pod::PodError),
    #[error("the guest did not create the container: {0}")]
    Create(String),
    #[error("{what}: {message}")]
    Agent { what: &'static str, message: String },
    /// The VM ended while a step was in progress: the reason is the VM's
    /// end (QEMU killed, the guest powered off or reset), not the broken
    /// connection the step saw.
    #[error("the VM ended during {step} ({why}); {step} failed with: {cause}")]
    VmEnded {
        step: &'static str,
        why: String,
        cause: String,
    },
}

impl RunError {
    /// The agent request the error came from.
    fn step(&self) -> &'static str {
        match self {
            RunError::Boot(_) => "boot",
            RunError::Pod(_) => "CreateSandbox",
            RunError::Create(_) => "CreateContainer",
            RunError::Agent { what, .. } => what,
            RunError::VmEnded { step, .. } => step,
        }
    }
}

/// `e`, or, when the VM has ended (or ends within a moment: a broken
/// connection is usually seen before the VMM's exit is), the VM's end as the
/// reason.
async fn with_vm_end(sb: &mut Sandbox, e: RunError) -> RunError {
    if matches!(e, RunError::VmEnded { .. }) {
        return e;
    }
    // A refusal from the agent (a ttrpc status) comes from a live guest:
    // look once. A broken connection: give the VMM's exit a moment.
    let text = e.to_string();
    let transport = ["socket", "eof", "closed", "reset", "broken pipe"]
        .iter()
        .any(|w| text.to_ascii_lowercase().contains(w));
    for _ in 0..if transport { 20 } else { 1 } {
        if let Some(why) = sb.vm.try_wait() {
            return RunError::VmEnded {
                step: e.step(),
                why,
                cause: e.to_string(),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    e
}

pub fn rpc_message(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

/// Runs the container; `out` and `err` receive its output as it comes.
/// The sandbox is shut down whatever happens.
pub async fn run(
    opts: &RunOptions,
    out: impl FnMut(&[u8]) + Send + 'static,
    err: impl FnMut(&[u8]) + Send + 'static,
) -> Result<RunReport, RunError> {
    let mut phases = Vec::new();
    let t = Instant::now();
    let mut sb = Sandbox::boot(&opts.boot).await?;
    phases.push(("boot", t.elapsed()));
    info!(ms = t.elapsed().as_millis() as u64, "sandbox booted");
    let result = match run_in(&sb, opts, &mut phases, out, err).await {
        Err(e) => Err(with_vm_end(&mut sb, e).await),
        ok => ok,
    };
    let t = Instant::now();
    if result.is_ok() {
        let _ = sb.agent.destroy_sandbox().await;
    }
    let measurement = sb.measurement.map(hex::encode);
    let host_data = hex::encode(sb.host_data);
    sb.shutdown();
    phases.push(("teardown", t.elapsed()));
    let (exit_code, bound_to_tee, created) = result?;
    Ok(RunReport {
        exit_code,
        measurement,
        host_data,
        bound_to_tee,
        created,
        phases,
    })
}

async fn run_in(
    sb: &Sandbox,
    opts: &RunOptions,
    phases: &mut Vec<(&'static str, Duration)>,
    out: impl FnMut(&[u8]) + Send + 'static,
    err: impl FnMut(&[u8]) + Send + 'static,
) -> Result<(i32, bool, CreateContainerResponse), RunError> {
    let agent = &sb.agent;
    let t = Instant::now();
    let created_sb = crate::pod::start_sandbox(
        agent,
        "cloister-run",
        "cloister",
        &opts.initdata,
        &opts.network,
    )
    .await?;
    phases.push(("sandbox", t.elapsed()));
    let t = Instant::now();
    let spec = serde_json::to_vec(&opts.spec).unwrap_or_default();
    let created = agent
        .create_container(&opts.container_id, &opts.image, &spec, opts.pull_timeout)
        .await
        .map_err(|e| RunError::Create(rpc_message(&e)))?;
    phases.push(("attest+pull+create", t.elapsed()));
    let t = Instant::now();
    let id = opts.container_id.clone();
    // Readers first, so that no output waits on them.
    let (a1, i1) = (agent.clone(), id.clone());
    let stdout = tokio::spawn(async move { a1.read_all(&i1, "", false, out).await });
    let (a2, i2) = (agent.clone(), id.clone());
    let stderr = tokio::spawn(async move { a2.read_all(&i2, "", true, err).await });
    agent
        .start_container(&id)
        .await
        .map_err(|e| RunError::Agent {
            what: "StartContainer",
            message: rpc_message(&e),
        })?;
    phases.push(("start", t.elapsed()));
    let t = Instant::now();
    let code = agent.wait(&id, "").await.map_err(|e| RunError::Agent {
        what: "WaitProcess",
        message: rpc_message(&e),
    })?;
    // The output is complete once both streams reached their end.
    let _ = stdout.await;
    let _ = stderr.await;
    phases.push(("run", t.elapsed()));
    agent
        .remove_container(&id, 0)
        .await
        .map_err(|e| RunError::Agent {
            what: "RemoveContainer",
            message: rpc_message(&e),
        })?;
    Ok((code, created_sb.bound_to_tee, created))
}
