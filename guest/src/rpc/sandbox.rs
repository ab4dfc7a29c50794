//! CreateSandbox and DestroySandbox: accept initdata once (bound to the TEE
//! report's HOST_DATA, or loudly unbound without a TEE), load its policy.
use cloister_protocol::{CreateSandboxRequest, CreateSandboxResponse, Empty};
use tracing::{error, info, warn};

use super::{status, AgentState};
use crate::initdata::{Binding, Initdata};
use crate::policy::Source;
use crate::sandbox::SandboxInfo;
use crate::tee::NO_TEE_WARNING;

pub fn create(s: &AgentState, req: CreateSandboxRequest) -> ttrpc::Result<CreateSandboxResponse> {
    // Held throughout, so that two concurrent CreateSandbox cannot both pass.
    let mut sb = s.sandbox();
    if let Some(info) = &sb.info {
        warn!(
            initdata_sha256 = info.initdata.sha256_hex(),
            "second CreateSandbox refused: initdata is accepted once"
        );
        return Err(status(
            ttrpc::Code::ALREADY_EXISTS,
            format!(
                "the sandbox exists: initdata {} was accepted already, and is accepted once",
                info.initdata.sha256_hex()
            ),
        ));
    }
    crate::net::check_dns(&req.dns)
        .map_err(|e| status(ttrpc::Code::INVALID_ARGUMENT, e.to_string()))?;
    let initdata = Initdata::parse(&req.initdata).map_err(|e| {
        error!(error = %e, "CreateSandbox: initdata refused");
        status(ttrpc::Code::INVALID_ARGUMENT, e.to_string())
    })?;
    let binding = initdata.bind(s.host_data.as_ref()).map_err(|e| {
        error!(error = %e, tee = s.host_data.name(), "CreateSandbox: initdata refused");
        status(ttrpc::Code::PERMISSION_DENIED, e.to_string())
    })?;
    let bound = binding == Binding::Tee;
    s.gate
        .replace(
            &initdata.policy_rego,
            initdata.policy_data.as_ref(),
            Source::Initdata { bound },
        )
        .map_err(|e| {
            error!(error = %e, "CreateSandbox: the initdata policy does not load");
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("initdata policy.rego: {e}"),
            )
        })?;
    let digest = initdata.sha256_hex();
    let kbs_url = initdata.kbs_url.as_deref().unwrap_or("");
    let kbs_cert = initdata.kbs_cert_pem.is_some();
    let image_policy = initdata.image_policy.is_some();
    if bound {
        info!(
            sandbox_id = req.sandbox_id,
            initdata_sha256 = digest,
            tee = s.host_data.name(),
            kbs_url,
            kbs_cert,
            image_policy,
            "initdata accepted: its sha256 equals HOST_DATA"
        );
    } else {
        warn!(
            sandbox_id = req.sandbox_id,
            initdata_sha256 = digest,
            tee = NO_TEE_WARNING,
            kbs_url,
            kbs_cert,
            image_policy,
            "initdata accepted WITHOUT a TEE binding: {NO_TEE_WARNING}"
        );
    }
    if s.is_init && !req.hostname.is_empty() {
        if let Err(e) = nix::unistd::sethostname(&req.hostname) {
            warn!(hostname = req.hostname, error = %e, "could not set the pod hostname");
        }
    }
    if let Err(e) = super::network::set_dns(s, &req.dns) {
        warn!(error = %e, "could not write the guest's resolv.conf");
    }
    sb.info = Some(SandboxInfo {
        id: req.sandbox_id,
        hostname: req.hostname,
        initdata,
        binding,
    });
    Ok(CreateSandboxResponse {
        initdata_sha256: digest,
        bound_to_tee: bound,
        ..Default::default()
    })
}

pub async fn destroy(s: &std::sync::Arc<AgentState>) -> ttrpc::Result<Empty> {
    let ids: Vec<String> = s.sandbox().containers.keys().cloned().collect();
    let n = ids.len();
    let mut failed = Vec::new();
    for id in ids {
        if let Err(e) = super::containers::remove_one(s, &id, std::time::Duration::ZERO).await {
            error!(container = id, error = %e, "DestroySandbox: removing a container failed");
            failed.push(id);
        }
    }
    let sb = s.sandbox();
    let (id, hostname) = sb
        .info
        .as_ref()
        .map(|i| (i.id.as_str(), i.hostname.as_str()))
        .unwrap_or_default();
    info!(
        sandbox_id = id,
        hostname,
        containers = n,
        "sandbox destroyed"
    );
    if !failed.is_empty() {
        return Err(status(
            ttrpc::Code::INTERNAL,
            format!("containers not removed: {}", failed.join(", ")),
        ));
    }
    Ok(Empty::default())
}
