//! The policy gate every RPC passes first: turn the request into the policy
//! input (request JSON + the agent's `state`), evaluate
//! `data.agent_policy.<RequestName>`, log and count the decision, and turn a
//! denial into ttrpc PERMISSION_DENIED naming the rule and the reason.
pub mod input;

use std::sync::Mutex;

use cloister_policy::{Decision, Policy, PolicyError};
use protobuf::MessageFull;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::metrics::Metrics;
use std::sync::Arc;

/// The policy in force before CreateSandbox.
pub const BUILTIN_POLICY: &str = include_str!("builtin.rego");

/// Denied inputs larger than this are logged without the input.
const MAX_LOGGED_INPUT: usize = 16 * 1024;

/// Where the active policy came from, for the decision log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Builtin,
    /// From initdata; `bound` is false in the no-TEE development mode.
    Initdata {
        bound: bool,
    },
    SetPolicy {
        bound: bool,
    },
}

impl Source {
    fn describe(&self) -> &'static str {
        match self {
            Source::Builtin => "builtin",
            Source::Initdata { bound: true } => "initdata",
            Source::Initdata { bound: false } => {
                "initdata (NO TEE: initdata not bound to hardware, development only)"
            }
            Source::SetPolicy { bound: true } => "SetPolicy",
            Source::SetPolicy { bound: false } => {
                "SetPolicy (NO TEE: initdata not bound to hardware, development only)"
            }
        }
    }
}

struct Active {
    policy: Policy,
    sha256: String,
    source: Source,
}

pub struct PolicyGate {
    active: Mutex<Active>,
    metrics: Arc<Metrics>,
}

impl PolicyGate {
    /// A gate with the built-in pre-sandbox policy.
    pub fn builtin(metrics: Arc<Metrics>) -> Self {
        let policy = Policy::new(BUILTIN_POLICY, None).expect("the built-in policy is valid Rego");
        PolicyGate {
            active: Mutex::new(Active {
                policy,
                sha256: sha256_hex(BUILTIN_POLICY),
                source: Source::Builtin,
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Active> {
        // A panic inside regorus leaves the policy itself intact.
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evaluates `req` with `state` (the agent's view, see
    /// `Sandbox::policy_state`). Ok on allow; PERMISSION_DENIED otherwise.
    pub fn check<M: MessageFull>(&self, req: &M, state: Value) -> ttrpc::Result<()> {
        let name = M::descriptor().name().to_string();
        let mut inp = input::message_to_json(req);
        if let (Some(obj), Some(spec)) = (inp.as_object_mut(), oci_spec_of(req)) {
            obj.insert("oci_spec".into(), spec);
        }
        if let Value::Object(o) = &mut inp {
            o.insert("state".into(), state);
        }
        self.check_input(&name, inp)
    }

    /// As [`PolicyGate::check`] with a ready input (tests, tools).
    pub fn check_input(&self, name: &str, inp: Value) -> ttrpc::Result<()> {
        let mut active = self.lock();
        let decision = active.policy.evaluate(name, &inp);
        let source = active.source.describe();
        let policy = active.sha256.get(..12).unwrap_or_default().to_string();
        drop(active);
        self.metrics.count_decision(name, decision.is_allowed());
        match decision {
            Decision::Allow => {
                info!(
                    decision = "allow",
                    rule = name,
                    policy,
                    source,
                    "policy decision"
                );
                Ok(())
            }
            Decision::Deny { rule, reason } => {
                let text = inp.to_string();
                let input = if text.len() <= MAX_LOGGED_INPUT {
                    text
                } else {
                    format!("<{} bytes, not logged>", text.len())
                };
                warn!(
                    decision = "deny",
                    rule, reason, policy, source, input, "policy decision"
                );
                Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                    ttrpc::Code::PERMISSION_DENIED,
                    format!("{rule} denied by the agent policy: {reason}"),
                )))
            }
        }
    }

    /// Replaces the policy (CreateSandbox, SetPolicy). The old one stays in
    /// force if the new one does not load.
    pub fn replace(
        &self,
        rego: &str,
        data: Option<&Value>,
        source: Source,
    ) -> Result<String, PolicyError> {
        let policy = Policy::new(rego, data)?;
        let sha256 = sha256_hex(rego);
        let mut active = self.lock();
        *active = Active {
            policy,
            sha256: sha256.clone(),
            source,
        };
        drop(active);
        self.metrics.policy_replacements.inc();
        Ok(sha256)
    }

    pub fn sha256(&self) -> String {
        self.lock().sha256.clone()
    }

    #[cfg(test)]
    pub fn source(&self) -> Source {
        self.lock().source.clone()
    }
}

/// CreateContainerRequest's `oci_spec` bytes, parsed for the policy (`null`
/// when they are not a JSON object; the handler then refuses them).
fn oci_spec_of<M: MessageFull>(req: &M) -> Option<Value> {
    let any: &dyn std::any::Any = req;
    let r = any.downcast_ref::<cloister_protocol::CreateContainerRequest>()?;
    Some(match serde_json::from_slice::<Value>(&r.oci_spec) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Null,
    })
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_protocol::{CreateContainerRequest, ExecProcessRequest, HealthCheckRequest};
    use serde_json::json;

    fn gate() -> PolicyGate {
        PolicyGate::builtin(Arc::new(Metrics::new()))
    }

    fn code(e: ttrpc::Error) -> (ttrpc::Code, String) {
        match e {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn builtin_policy_allows_only_the_pre_sandbox_requests() {
        let g = gate();
        assert!(g.check(&HealthCheckRequest::default(), json!({})).is_ok());
        let (c, msg) = code(
            g.check(&ExecProcessRequest::default(), json!({}))
                .unwrap_err(),
        );
        assert_eq!(c, ttrpc::Code::PERMISSION_DENIED);
        assert!(
            msg.starts_with(
                "ExecProcessRequest denied by the agent policy: the sandbox is not created yet"
            ),
            "{msg}"
        );
    }

    #[test]
    fn create_container_input_carries_the_parsed_spec_and_state() {
        let g = gate();
        g.replace(
            r#"package agent_policy
CreateContainerRequest if {
    input.oci_spec.process.args == ["sh"]
    input.state.request == "CreateContainerRequest"
}"#,
            None,
            Source::Initdata { bound: false },
        )
        .unwrap();
        let mut r = CreateContainerRequest {
            container_id: "c".into(),
            oci_spec: br#"{"process": {"args": ["sh"]}}"#.to_vec(),
            ..Default::default()
        };
        let st = json!({"request": "CreateContainerRequest"});
        assert!(g.check(&r, st.clone()).is_ok());
        r.oci_spec = b"{not json".to_vec();
        assert!(g.check(&r, st).is_err());
    }

    #[test]
    fn a_policy_that_does_not_load_leaves_the_old_one() {
        let g = gate();
        let before = g.sha256();
        assert!(g
            .replace(
                "package agent_policy\nx if {",
                None,
                Source::SetPolicy { bound: false }
            )
            .is_err());
        assert_eq!(g.sha256(), before);
        assert_eq!(g.source(), Source::Builtin);
    }
}
