//! CreateContainer, StartContainer, RemoveContainer, StatsContainer, after
//! the policy allowed them: argument checks, then the container runtime.
use cloister_protocol::{
    CreateContainerRequest, Empty, RemoveContainerRequest, StartContainerRequest,
    StartContainerResponse, StatsContainerRequest, StatsContainerResponse,
};

use super::{check_id, status, AgentState};

/// Largest OCI spec accepted.
const MAX_SPEC: usize = 1 << 20;

pub fn create(s: &AgentState, req: CreateContainerRequest) -> ttrpc::Result<Empty> {
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
    if s.sandbox().info.is_none() {
        return Err(status(
            ttrpc::Code::FAILED_PRECONDITION,
            "CreateSandbox first",
        ));
    }
    if s.sandbox().containers.contains_key(&req.container_id) {
        return Err(status(
            ttrpc::Code::ALREADY_EXISTS,
            format!("container {} exists", req.container_id),
        ));
    }
    Err(status(
        ttrpc::Code::UNIMPLEMENTED,
        "this agent build has no container runtime yet (image pull and libcontainer are pending)",
    ))
}

pub fn start(s: &AgentState, req: StartContainerRequest) -> ttrpc::Result<StartContainerResponse> {
    known(s, &req.container_id)?;
    Err(not_running())
}

pub fn remove(s: &AgentState, req: RemoveContainerRequest) -> ttrpc::Result<Empty> {
    known(s, &req.container_id)?;
    s.sandbox().containers.remove(&req.container_id);
    Ok(Empty::default())
}

pub fn stats(s: &AgentState, req: StatsContainerRequest) -> ttrpc::Result<StatsContainerResponse> {
    known(s, &req.container_id)?;
    Err(not_running())
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

fn not_running() -> ttrpc::Error {
    status(
        ttrpc::Code::UNIMPLEMENTED,
        "this agent build has no container runtime yet",
    )
}
