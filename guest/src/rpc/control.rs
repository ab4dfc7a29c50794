//! GetMetrics and SetPolicy.
use cloister_protocol::{Empty, Metrics, SetPolicyRequest};
use tracing::{info, warn};

use std::sync::Arc;

use super::{status, AgentState};
use crate::guest_stats::{snapshot, ContainerSample};
use crate::policy::Source;
use crate::tee::NO_TEE_WARNING;

/// The agent's counters and this moment's guest figures, each container's
/// cgroup included.
pub async fn metrics(s: &Arc<AgentState>) -> Metrics {
    let ids: Vec<String> = s.sandbox().containers.keys().cloned().collect();
    let rt = s.runtime.clone();
    let samples = tokio::task::spawn_blocking(move || {
        ids.into_iter()
            .filter_map(|id| {
                let st = rt.stats(&id).ok()?;
                Some(ContainerSample {
                    id,
                    cpu_usage_usec: st.cpu_usage_usec,
                    memory_bytes: st.memory_bytes,
                    pids: st.pids,
                    oom_kills: st.oom_kills,
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Metrics {
        text: s.metrics.render(&snapshot(&samples)),
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
