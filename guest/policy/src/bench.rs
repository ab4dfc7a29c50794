//! Decision latency of a generated policy, for `cloister policy bench`: the
//! sample pod's requests (an allowed CreateContainer with a full OCI spec, a
//! denied exec, an allowed stdout read), each evaluated many times.
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::generate::{generate, GenerateError, Options};
use crate::{samples, Policy, PolicyError};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

#[derive(Debug, Clone)]
pub struct Row {
    pub request: &'static str,
    pub allowed: bool,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Generates the policy for `manifest` and times `iterations` decisions per
/// request kind. The inputs are the sample pod's `app` container.
pub fn run(manifest: &str, iterations: usize) -> Result<Vec<Row>, BenchError> {
    let g = generate(manifest, &Options { allow_tags: true })?;
    let mut policy = Policy::new(&g.rego, None)?;
    let spec: Value = serde_json::from_str(samples::APP_SPEC_JSON).expect("sample spec is JSON");
    let running = json!({
        "sandbox_created": true,
        "containers": {"c1": {"name": "app", "image": samples::APP_IMAGE, "started": true, "execs": []}}
    });
    let with = |mut v: Value, req: &str, state: &Value| {
        v["state"] = state.clone();
        v["state"]["request"] = Value::String(req.into());
        v
    };
    let empty = json!({"sandbox_created": true, "containers": {}});
    let cases = [
        (
            "CreateContainerRequest",
            with(
                json!({"container_id": "c2", "image": samples::APP_IMAGE, "oci_spec": spec}),
                "CreateContainerRequest",
                &empty,
            ),
        ),
        (
            "ExecProcessRequest",
            with(
                json!({"container_id": "c1", "exec_id": "e1", "process": {"args": ["sh"], "env": [], "cwd": "/", "terminal": false, "uid": 1000, "gid": 1000}}),
                "ExecProcessRequest",
                &running,
            ),
        ),
        (
            "ReadStdoutRequest",
            with(
                json!({"container_id": "c1", "exec_id": "", "max_len": 4096}),
                "ReadStdoutRequest",
                &running,
            ),
        ),
    ];
    let iterations = iterations.max(1);
    let mut rows = Vec::new();
    for (request, input) in cases {
        let allowed = policy.evaluate(request, &input).is_allowed();
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            let d = policy.evaluate(request, &input);
            times.push(t.elapsed());
            std::hint::black_box(d);
        }
        times.sort_unstable();
        let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
        rows.push(Row {
            request,
            allowed,
            p50: pct(0.50),
            p99: pct(0.99),
            max: times[times.len() - 1],
        });
    }
    Ok(rows)
}
