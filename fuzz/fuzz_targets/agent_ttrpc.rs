//! What the untrusted host sends the agent: a byte stream of ttrpc frames,
//! read as the ttrpc server reads them (header, size check, body), each
//! request decoded as its protobuf message and put through the agent's
//! policy gate (request → policy input → Rego decision), under the node's
//! default policy or the generated example policy (first byte chooses).
#![no_main]
use std::sync::OnceLock;

use cloister_agent::metrics::Metrics;
use cloister_agent::policy::{PolicyGate, Source};
use cloister_protocol::*;
use libfuzzer_sys::fuzz_target;
use protobuf::{Message, MessageFull};
use serde_json::{json, Value};
use ttrpc::proto::{GenMessage, MESSAGE_TYPE_REQUEST};

fn gates() -> &'static [PolicyGate; 2] {
    static GATES: OnceLock<[PolicyGate; 2]> = OnceLock::new();
    GATES.get_or_init(|| {
        let load = |rego: &str| {
            let g = PolicyGate::builtin(std::sync::Arc::new(Metrics::new()));
            g.replace(rego, None, Source::Initdata { bound: true })
                .expect("the policy loads");
            g
        };
        [
            load(include_str!("../../policies/default.rego")),
            load(include_str!("../../policies/examples/web-pod.rego")),
        ]
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}

fn check<M: MessageFull>(gate: &PolicyGate, payload: &[u8], state: &Value) {
    if let Ok(req) = M::parse_from_bytes(payload) {
        let mut state = state.clone();
        state["request"] = json!(M::descriptor().name());
        let _ = gate.check(&req, state);
    }
}

fn dispatch(gate: &PolicyGate, method: &str, payload: &[u8], state: &Value) {
    match method {
        "Check" => check::<HealthCheckRequest>(gate, payload, state),
        "CreateSandbox" => check::<CreateSandboxRequest>(gate, payload, state),
        "DestroySandbox" => check::<DestroySandboxRequest>(gate, payload, state),
        "CreateContainer" => check::<CreateContainerRequest>(gate, payload, state),
        "StartContainer" => check::<StartContainerRequest>(gate, payload, state),
        "RemoveContainer" => check::<RemoveContainerRequest>(gate, payload, state),
        "ExecProcess" => check::<ExecProcessRequest>(gate, payload, state),
        "SignalProcess" => check::<SignalProcessRequest>(gate, payload, state),
        "WaitProcess" => check::<WaitProcessRequest>(gate, payload, state),
        "WriteStdin" => check::<WriteStdinRequest>(gate, payload, state),
        "ReadStdout" => check::<ReadStdoutRequest>(gate, payload, state),
        "ReadStderr" => check::<ReadStderrRequest>(gate, payload, state),
        "CloseStdin" => check::<CloseStdinRequest>(gate, payload, state),
        "TtyWinResize" => check::<TtyWinResizeRequest>(gate, payload, state),
        "StatsContainer" => check::<StatsContainerRequest>(gate, payload, state),
        "GetMetrics" => check::<GetMetricsRequest>(gate, payload, state),
        "GetGuestDetails" => check::<GetGuestDetailsRequest>(gate, payload, state),
        "SetPolicy" => check::<SetPolicyRequest>(gate, payload, state),
        "UpdateInterface" => check::<UpdateInterfaceRequest>(gate, payload, state),
        "UpdateRoutes" => check::<UpdateRoutesRequest>(gate, payload, state),
        "CopyFile" => check::<CopyFileRequest>(gate, payload, state),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, mut stream)) = data.split_first() else {
        return;
    };
    let gate = &gates()[usize::from(choice & 1)];
    let state = json!({
        "sandbox_created": choice & 2 != 0,
        "tee_bound": choice & 4 != 0,
        "containers": {"web": {"name": "web", "image": "registry.example/web:1", "started": choice & 8 != 0, "execs": []}},
    });
    runtime().block_on(async {
        // At most a few frames per input: enough for the stream logic,
        // few enough that the fuzzer's inputs stay small.
        for _ in 0..8 {
            let msg = match GenMessage::read_from(&mut stream).await {
                Ok(m) => m,
                Err(_) => return,
            };
            if msg.check().is_err() || msg.header.type_ != MESSAGE_TYPE_REQUEST {
                continue;
            }
            let Ok(req) = ttrpc::Request::parse_from_bytes(&msg.payload) else {
                continue;
            };
            let service = req.service.as_str();
            if service == "cloister.agent.v1.Agent" || service == "cloister.agent.v1.Health" {
                dispatch(gate, &req.method, &req.payload, &state);
            }
        }
    });
});
