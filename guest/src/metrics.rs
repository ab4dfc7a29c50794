//! The agent's counters, exposed by GetMetrics in the Prometheus text
//! format. Counted: what an operator or tenant would ask about, starting
//! with every policy decision.
use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// Request message name, e.g. `CreateContainerRequest`.
    pub request: String,
    /// `allow` or `deny`.
    pub decision: String,
}

pub struct Metrics {
    registry: Registry,
    pub policy_decisions: Family<DecisionLabels, Counter>,
    pub policy_replacements: Counter,
    /// Image pulls by outcome (`ok`, `failed`).
    pub image_pulls: Family<OutcomeLabels, Counter>,
    /// Layer bytes downloaded from registries.
    pub image_bytes_downloaded: Counter,
    /// Layers verified, decrypted and unpacked.
    pub image_layers_unpacked: Counter,
    /// Layers found in the guest's store and not downloaded again.
    pub image_layers_reused: Counter,
    /// Container output dropped because nobody read it in time.
    pub output_bytes_dropped: Counter,
    /// Every RPC's latency (policy check included), by request and outcome.
    pub rpc_duration: Family<RpcLabels, Histogram, RpcBuckets>,
    /// Image pulls running now.
    pub image_pulls_running: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub request: String,
    /// `ok` or the ttrpc code's name, e.g. `PERMISSION_DENIED`.
    pub outcome: String,
}

/// 50 µs to about 52 s, by factors of 4.
#[derive(Clone)]
pub struct RpcBuckets;

impl MetricConstructor<Histogram> for RpcBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.000_05, 4.0, 11))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cloister_agent");
        let policy_decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "policy_decisions",
            "Agent policy decisions, by request and outcome",
            policy_decisions.clone(),
        );
        let policy_replacements = Counter::default();
        registry.register(
            "policy_loads",
            "Policies loaded after start (CreateSandbox, SetPolicy)",
            policy_replacements.clone(),
        );
        let image_pulls = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "image_pulls",
            "Image pulls inside the guest, by outcome",
            image_pulls.clone(),
        );
        let image_bytes_downloaded = Counter::default();
        registry.register(
            "image_bytes_downloaded",
            "Layer bytes downloaded from registries",
            image_bytes_downloaded.clone(),
        );
        let image_layers_unpacked = Counter::default();
        registry.register(
            "image_layers_unpacked",
            "Layers verified, decrypted and unpacked",
            image_layers_unpacked.clone(),
        );
        let image_layers_reused = Counter::default();
        registry.register(
            "image_layers_reused",
            "Layers already in the guest's layer store",
            image_layers_reused.clone(),
        );
        let output_bytes_dropped = Counter::default();
        registry.register(
            "output_bytes_dropped",
            "Container stdout/stderr bytes dropped because nobody read them in time",
            output_bytes_dropped.clone(),
        );
        let rpc_duration = Family::new_with_constructor(RpcBuckets);
        registry.register(
            "rpc_duration_seconds",
            "Agent RPC latency, policy check included, by request and outcome",
            rpc_duration.clone(),
        );
        let image_pulls_running = Gauge::default();
        registry.register(
            "image_pulls_running",
            "Image pulls in progress in the guest",
            image_pulls_running.clone(),
        );
        Metrics {
            registry,
            rpc_duration,
            image_pulls_running,
            policy_decisions,
            policy_replacements,
            image_pulls,
            image_bytes_downloaded,
            image_layers_unpacked,
            image_layers_reused,
            output_bytes_dropped,
        }
    }

    pub fn count_decision(&self, request: &str, allowed: bool) {
        self.policy_decisions
            .get_or_create(&DecisionLabels {
                request: request.to_string(),
                decision: if allowed { "allow" } else { "deny" }.to_string(),
            })
            .inc();
    }

    pub fn observe_rpc(&self, request: &str, outcome: &str, took: Duration) {
        self.rpc_duration
            .get_or_create(&RpcLabels {
                request: request.to_string(),
                outcome: outcome.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// OpenMetrics text exposition: the agent's counters, then the guest
    /// figures of this moment (`now`, from [`crate::guest_stats::snapshot`]).
    pub fn render(&self, now: &Registry) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, now);
        let _ = encode_eof(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_counted_per_request_and_outcome() {
        let m = super::Metrics::new();
        m.count_decision("ExecProcessRequest", false);
        m.count_decision("ExecProcessRequest", false);
        m.count_decision("HealthCheckRequest", true);
        m.observe_rpc(
            "ExecProcessRequest",
            "PERMISSION_DENIED",
            Duration::from_micros(30),
        );
        let t = m.render(&Registry::default());
        assert!(t.ends_with("# EOF\n"), "{t}");
        assert!(
            t.contains(r#"cloister_agent_rpc_duration_seconds_count{request="ExecProcessRequest",outcome="PERMISSION_DENIED"} 1"#),
            "{t}"
        );
        assert!(
            t.contains(r#"cloister_agent_rpc_duration_seconds_bucket{le="5.0e-5",request="ExecProcessRequest",outcome="PERMISSION_DENIED"} 1"#)
                || t.contains("le=\"0.00005\""),
            "{t}"
        );
        assert!(
            t.contains(r#"cloister_agent_policy_decisions_total{request="ExecProcessRequest",decision="deny"} 2"#),
            "{t}"
        );
        assert!(
            t.contains(r#"cloister_agent_policy_decisions_total{request="HealthCheckRequest",decision="allow"} 1"#),
            "{t}"
        );
    }
}
