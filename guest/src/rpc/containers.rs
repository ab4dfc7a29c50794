//! CreateContainer, StartContainer, RemoveContainer, StatsContainer, after
//! the policy allowed them: argument checks, the image pull inside the
//! guest, then the container runtime.
use std::sync::Arc;
use std::time::Duration;

use cloister_protocol::{
    CreateContainerRequest, CreateContainerResponse, Empty, RemoveContainerRequest,
    StartContainerRequest, StartContainerResponse, StatsContainerRequest, StatsContainerResponse,
};
use tracing::{error, info};

use super::{blocking, check_id, status, AgentState};
use crate::sandbox::ContainerRecord;

/// Largest OCI spec accepted.
const MAX_SPEC: usize = 1 << 20;
/// Longest image reference accepted.
const MAX_IMAGE: usize = 4096;
/// Longest grace period RemoveContainer may ask for.
const MAX_GRACE: Duration = Duration::from_secs(300);

pub async fn create(
    s: &Arc<AgentState>,
    req: CreateContainerRequest,
) -> ttrpc::Result<CreateContainerResponse> {
    check_id("container_id", &req.container_id)?;
    if req.oci_spec.len() > MAX_SPEC {
        return Err(status(
            ttrpc::Code::INVALID_ARGUMENT,
            format!(
                "oci_spec is {} bytes, more than {MAX_SPEC}",
                req.oci_spec.len()
            ),
        ));
    }
    let spec: serde_json::Value = serde_json::from_slice(&req.oci_spec).map_err(|e| {
        status(
            ttrpc::Code::INVALID_ARGUMENT,
            format!("oci_spec is not JSON: {e}"),
        )
    })?;
    if !spec.is_object() {
        return Err(status(
            ttrpc::Code::INVALID_ARGUMENT,
            "oci_spec is not a JSON object",
        ));
    }
    if req.image.is_empty() || req.image.len() > MAX_IMAGE {
        return Err(status(
            ttrpc::Code::INVALID_ARGUMENT,
            format!("image must be 1-{MAX_IMAGE} bytes"),
        ));
    }
    let name = spec
        .pointer("/annotations/io.kubernetes.cri.container-name")
        .and_then(|v| v.as_str())
        .unwrap_or(&req.container_id)
        .to_string();
    // Reserve the id while the image is pulled, so that a second request
    // for it is refused at once.
    let initdata = {
        let mut sb = s.sandbox();
        let Some(info) = &sb.info else {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                "CreateSandbox first",
            ));
        };
        let initdata = info.initdata.clone();
        if sb.containers.contains_key(&req.container_id) {
            return Err(status(
                ttrpc::Code::ALREADY_EXISTS,
                format!("container {} exists", req.container_id),
            ));
        }
        sb.containers.insert(
            req.container_id.clone(),
            ContainerRecord {
                name,
                image: req.image.clone(),
                started: false,
                execs: Vec::new(),
            },
        );
        initdata
    };
    let result = create_reserved(s, &req, &initdata).await;
    if result.is_err() {
        s.sandbox().containers.remove(&req.container_id);
    }
    result
}

async fn create_reserved(
    s: &Arc<AgentState>,
    req: &CreateContainerRequest,
    initdata: &crate::initdata::Initdata,
) -> ttrpc::Result<CreateContainerResponse> {
    let started = std::time::Instant::now();
    if s.is_init {
        // Only pulls need it, so it is written at the first one, not at boot.
        crate::init::write_trust_store().map_err(|e| {
            status(
                ttrpc::Code::INTERNAL,
                format!("the guest trust store: {e:#}"),
            )
        })?;
    }
    let (keys, attestation) = s.image_keys(initdata).await?;
    let attest_ms = started.elapsed().as_millis() as u64;
    let pulled = crate::images::pull(
        &req.image,
        initdata,
        keys,
        &s.run_dir.join("layers"),
        s.metrics.clone(),
    )
    .await
    .map_err(|e| status(ttrpc::Code::FAILED_PRECONDITION, e.to_string()))?;
    let pull_ms = started.elapsed().as_millis() as u64;
    let started = std::time::Instant::now();
    let lower = pulled.overlay_lowerdirs();
    // The verified image's entrypoint, environment and working directory
    // where the spec leaves them out (the policy judged the host's spec).
    let mut spec: serde_json::Value = serde_json::from_slice(&req.oci_spec)
        .map_err(|e| status(ttrpc::Code::INVALID_ARGUMENT, format!("oci_spec: {e}")))?;
    let took = crate::image_config::apply(&mut spec, &pulled.config)
        .map_err(|e| status(ttrpc::Code::FAILED_PRECONDITION, e))?;
    if !took.is_empty() {
        info!(container = req.container_id, from_image = ?took, "process settings taken from the verified image");
    }
    let spec = serde_json::to_vec(&spec).unwrap_or_default();
    let rt = s.runtime.clone();
    let id = req.container_id.clone();
    let pid = blocking(move || rt.create(&id, &spec, &lower))
        .await
        .inspect_err(
            |e| error!(container = req.container_id, error = %e, "CreateContainer failed"),
        )?;
    info!(
        container = req.container_id,
        image = req.image,
        digest = %pulled.digest,
        verified = pulled.verification,
        pid,
        "container created from the verified image"
    );
    Ok(CreateContainerResponse {
        image_digest: pulled.digest.to_string(),
        signature: pulled.verification.clone(),
        encrypted_layers: pulled.layers.iter().filter(|l| l.encrypted).count() as u32,
        layers_downloaded: pulled.layers.iter().filter(|l| !l.reused).count() as u32,
        layers_reused: pulled.layers.iter().filter(|l| l.reused).count() as u32,
        pull_ms,
        create_ms: started.elapsed().as_millis() as u64,
        attestation,
        attest_ms,
        ..Default::default()
    })
}

pub async fn start(
    s: &Arc<AgentState>,
    req: StartContainerRequest,
) -> ttrpc::Result<StartContainerResponse> {
    known(s, &req.container_id)?;
    let rt = s.runtime.clone();
    let id = req.container_id.clone();
    let pid = blocking(move || rt.start(&id)).await?;
    if let Some(c) = s.sandbox().containers.get_mut(&req.container_id) {
        c.started = true;
    }
    Ok(StartContainerResponse {
        pid: pid as u32,
        ..Default::default()
    })
}

pub async fn remove(s: &Arc<AgentState>, req: RemoveContainerRequest) -> ttrpc::Result<Empty> {
    known(s, &req.container_id)?;
    let grace = Duration::from_millis(req.timeout_ms.into()).min(MAX_GRACE);
    remove_one(s, &req.container_id, grace).await
}

/// Stops and removes one container, and forgets it.
pub async fn remove_one(s: &Arc<AgentState>, id: &str, grace: Duration) -> ttrpc::Result<Empty> {
    let rt = s.runtime.clone();
    let dropped: u64 = ["".to_string()]
        .into_iter()
        .chain(
            s.sandbox()
                .containers
                .get(id)
                .map(|c| c.execs.clone())
                .unwrap_or_default(),
        )
        .filter_map(|e| rt.process(id, &e).ok())
        .map(|p| p.io.stdout.dropped() + p.io.stderr.dropped())
        .sum();
    s.metrics.output_bytes_dropped.inc_by(dropped);
    let owned = id.to_string();
    blocking(move || rt.remove(&owned, grace)).await?;
    s.sandbox().containers.remove(id);
    Ok(Empty::default())
}

pub async fn stats(
    s: &Arc<AgentState>,
    req: StatsContainerRequest,
) -> ttrpc::Result<StatsContainerResponse> {
    known(s, &req.container_id)?;
    let rt = s.runtime.clone();
    let id = req.container_id.clone();
    let st = blocking(move || rt.stats(&id)).await?;
    Ok(StatsContainerResponse {
        cpu_usage_usec: st.cpu_usage_usec,
        memory_bytes: st.memory_bytes,
        pids: st.pids,
        oom_kills: st.oom_kills,
        ..Default::default()
    })
}

/// NOT_FOUND unless the container exists (the policy may have allowed an
/// unknown id; the agent still refuses it).
pub fn known(s: &AgentState, id: &str) -> ttrpc::Result<()> {
    check_id("container_id", id)?;
    if s.sandbox().containers.contains_key(id) {
        Ok(())
    } else {
        Err(status(
            ttrpc::Code::NOT_FOUND,
            format!("no container {id:?}"),
        ))
    }
}
