//! GetMetrics and SetPolicy.
use cloister_protocol::{Empty, Metrics, SetPolicyRequest};
use tracing::{info, warn};

use super::{status, AgentState};
use crate::policy::Source;
use crate::tee::NO_TEE_WARNING;

pub fn metrics(s: &AgentState) -> Metrics {
    Metrics {
        text: s.metrics.render(),
        ..Default::default()
    }
}

/// Replaces the policy; reached only when the current policy allowed it.
pub fn set_policy(s: &AgentState, req: SetPolicyRequest) -> ttrpc::Result<Empty> {
    let bound = {
        let sb = s.sandbox();
        let Some(info) = &sb.info else {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                "CreateSandbox first",
            ));
        };
        info.binding == crate::initdata::Binding::Tee
    };
    let data = if req.data_json.trim().is_empty() {
        None
    } else {
        Some(
            serde_json::from_str::<serde_json::Value>(&req.data_json).map_err(|e| {
                status(
                    ttrpc::Code::INVALID_ARGUMENT,
                    format!("data_json is not JSON: {e}"),
                )
            })?,
        )
    };
    let sha = s
        .gate
        .replace(&req.policy, data.as_ref(), Source::SetPolicy { bound })
        .map_err(|e| status(ttrpc::Code::INVALID_ARGUMENT, e.to_string()))?;
    if bound {
        info!(policy_sha256 = sha, "policy replaced by SetPolicy");
    } else {
        warn!(
            policy_sha256 = sha,
            tee = NO_TEE_WARNING,
            "policy replaced by SetPolicy"
        );
    }
    Ok(Empty::default())
}
