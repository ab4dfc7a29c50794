//! The policy engine: a loaded Rego policy that answers, for one request and
//! its JSON input, allow or deny-with-reason.
//!
//! Conventions every policy follows (documented in docs/policy.md):
//! * the package is `agent_policy`; request `X` is allowed only when
//!   `data.agent_policy.X` evaluates to exactly `true`;
//! * on a denial the policy may explain itself with `data.agent_policy.reason`:
//!   a string, or a set/array of strings (joined with "; ").
use std::time::Duration;

use regorus::{Engine, Value};

/// The Rego package every agent policy declares.
pub const PACKAGE: &str = "agent_policy";

/// Rule the agent evaluates after a denial, for the policy's own words.
const REASON_RULE: &str = "reason";

/// Longest policy text accepted (Rego source), so that a hostile SetPolicy
/// or initdata cannot make the agent parse megabytes.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// Upper bound on one evaluation, so that a pathological policy cannot hang
/// the agent.
const EVAL_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy text is {got} bytes, more than the {max}-byte limit")]
    TooLarge { got: usize, max: usize },
    #[error("policy {name} does not parse as Rego v1: {message}")]
    Parse { name: String, message: String },
    #[error("policy {name} declares package {got}, expected data.{PACKAGE} (or a test package)")]
    WrongPackage { name: String, got: String },
    #[error("no module of the policy declares package data.{PACKAGE}")]
    NoAgentPolicy,
    #[error("policy data is not a JSON object: {0}")]
    Data(String),
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny {
        /// The rule that was evaluated, e.g. `CreateContainerRequest`.
        rule: String,
        /// Why: the policy's `reason`, or a description of what went wrong.
        reason: String,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// A loaded agent policy.
#[derive(Clone)]
pub struct Policy {
    engine: Engine,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").finish_non_exhaustive()
    }
}

impl Policy {
    /// Loads one Rego module (`package agent_policy`) and an optional data
    /// document (a JSON object merged at the root of `data`).
    pub fn new(rego: &str, data: Option<&serde_json::Value>) -> Result<Self, PolicyError> {
        Self::from_modules(&[("policy.rego".to_string(), rego.to_string())], data)
    }

    /// Loads several modules (e.g. a policy and its `_test.rego` file). One of
    /// them must declare `package agent_policy`; the others may be test
    /// packages (`agent_policy_test`, `agent_policy.test…`).
    pub fn from_modules(
        modules: &[(String, String)],
        data: Option<&serde_json::Value>,
    ) -> Result<Self, PolicyError> {
        let mut engine = Engine::new();
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: EVAL_TIMEOUT,
            check_interval: std::num::NonZeroU32::new(256).expect("non-zero"),
        });
        let mut found = false;
        for (name, text) in modules {
            if text.len() > MAX_POLICY_BYTES {
                return Err(PolicyError::TooLarge {
                    got: text.len(),
                    max: MAX_POLICY_BYTES,
                });
            }
            let package =
                engine
                    .add_policy(name.clone(), text.clone())
                    .map_err(|e| PolicyError::Parse {
                        name: name.clone(),
                        message: format!("{e:#}"),
                    })?;
            let want = format!("data.{PACKAGE}");
            if package == want {
                found = true;
            } else if !package.starts_with(&want) {
                return Err(PolicyError::WrongPackage {
                    name: name.clone(),
                    got: package,
                });
            }
        }
        if !found {
            return Err(PolicyError::NoAgentPolicy);
        }
        if let Some(d) = data {
            if !d.is_object() {
                return Err(PolicyError::Data(format!("got {}", json_kind(d))));
            }
            engine
                .add_data(Value::from(d.clone()))
                .map_err(|e| PolicyError::Data(format!("{e:#}")))?;
        }
        Ok(Policy { engine })
    }

    /// Evaluates `data.agent_policy.<request>` with `input`. Allowed only
    /// when the rule's value is exactly `true`; undefined rules, other values
    /// and evaluation errors are denials.
    pub fn evaluate(&mut self, request: &str, input: &serde_json::Value) -> Decision {
        self.evaluate_value(request, Value::from(input.clone()))
    }

    /// As [`Policy::evaluate`], with the input already a regorus value.
    pub fn evaluate_value(&mut self, request: &str, input: Value) -> Decision {
        if !is_rule_name(request) {
            return Decision::Deny {
                rule: request.to_string(),
                reason: "not a request name".into(),
            };
        }
        self.engine.set_input(input);
        let verdict = match self.engine.eval_rule(format!("data.{PACKAGE}.{request}")) {
            Ok(Value::Bool(true)) => return Decision::Allow,
            Ok(Value::Undefined) => format!("{request} is not true for this request"),
            Ok(v) => format!("{request} is {}, not true", short(&v)),
            Err(e) if is_undefined_rule(&e) => {
                format!("the policy does not define {request}, so it is denied")
            }
            Err(e) => format!("evaluating {request} failed: {e:#}"),
        };
        let reason = self.reason().unwrap_or(verdict);
        Decision::Deny {
            rule: request.to_string(),
            reason,
        }
    }

    /// The policy's own explanation for the current input, if it has one.
    fn reason(&mut self) -> Option<String> {
        let v = self
            .engine
            .eval_rule(format!("data.{PACKAGE}.{REASON_RULE}"))
            .ok()?;
        let parts: Vec<String> = match &v {
            Value::String(s) => vec![s.to_string()],
            Value::Set(s) => s.iter().map(text_of).collect(),
            Value::Array(a) => a.iter().map(text_of).collect(),
            _ => return None,
        };
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("; "))
        }
    }

    /// Evaluates any rule of the policy (for tools such as `explain`), as
    /// JSON; `None` when it is undefined or fails.
    pub fn query_rule(
        &mut self,
        path: &str,
        input: &serde_json::Value,
    ) -> Option<serde_json::Value> {
        self.engine.set_input(Value::from(input.clone()));
        let v = self.engine.eval_rule(path.to_string()).ok()?;
        if v == Value::Undefined {
            return None;
        }
        serde_json::to_value(&v).ok()
    }

    /// Direct access to the engine, for the test runner.
    pub(crate) fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }
}

/// regorus reports a rule path the policy never declares as this error.
fn is_undefined_rule(e: &impl std::fmt::Display) -> bool {
    e.to_string().contains("not a valid rule path")
}

fn is_rule_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => short(other),
    }
}

fn short(v: &Value) -> String {
    let mut s = v.to_json_str().unwrap_or_else(|_| "<unprintable>".into());
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POLICY: &str = r#"
package agent_policy

default CreateContainerRequest := false

CreateContainerRequest if input.image == "good"

GetMetricsRequest := 7

BrokenRequest if 1 / input.zero > 0

reason contains msg if {
    input.image
    input.image != "good"
    msg := sprintf("image %s is not allowed", [input.image])
}
"#;

    fn policy() -> Policy {
        Policy::new(POLICY, None).unwrap()
    }

    #[test]
    fn true_allows() {
        assert_eq!(
            policy().evaluate("CreateContainerRequest", &json!({"image": "good"})),
            Decision::Allow
        );
    }

    #[test]
    fn false_denies_with_the_policy_reason() {
        let d = policy().evaluate("CreateContainerRequest", &json!({"image": "evil"}));
        assert_eq!(
            d,
            Decision::Deny {
                rule: "CreateContainerRequest".into(),
                reason: "image evil is not allowed".into()
            }
        );
    }

    #[test]
    fn undefined_rule_denies_and_says_so() {
        let d = policy().evaluate("ExecProcessRequest", &json!({}));
        let Decision::Deny { rule, reason } = d else {
            panic!("allowed")
        };
        assert_eq!(rule, "ExecProcessRequest");
        assert!(
            reason.contains("does not define ExecProcessRequest"),
            "{reason}"
        );
    }

    #[test]
    fn non_boolean_value_denies() {
        let d = policy().evaluate("GetMetricsRequest", &json!({}));
        assert!(
            matches!(d, Decision::Deny { ref reason, .. } if reason.contains("is 7")),
            "{d:?}"
        );
    }

    #[test]
    fn evaluation_error_denies() {
        let d = policy().evaluate("BrokenRequest", &json!({"zero": "x"}));
        assert!(!d.is_allowed());
    }

    #[test]
    fn hostile_rule_names_are_denied_without_evaluation() {
        for name in ["", "a.b", "x[\"y\"]", "reason; true", "9abc"] {
            assert!(!policy().evaluate(name, &json!({})).is_allowed(), "{name}");
        }
    }

    #[test]
    fn load_errors_name_the_problem() {
        assert!(matches!(
            Policy::new("package other\nx := 1", None),
            Err(PolicyError::WrongPackage { .. })
        ));
        assert!(matches!(
            Policy::new("package agent_policy\nx if {", None),
            Err(PolicyError::Parse { .. })
        ));
        let big = format!("package agent_policy\n#{}", "a".repeat(MAX_POLICY_BYTES));
        assert!(matches!(
            Policy::new(&big, None),
            Err(PolicyError::TooLarge { .. })
        ));
        assert!(matches!(
            Policy::new(POLICY, Some(&json!([1]))),
            Err(PolicyError::Data(_))
        ));
    }

    #[test]
    fn data_document_is_visible_to_rules() {
        let rego =
            "package agent_policy\nStartContainerRequest if input.container_id in data.ids\n";
        let mut p = Policy::new(rego, Some(&json!({"ids": ["a", "b"]}))).unwrap();
        assert!(p
            .evaluate("StartContainerRequest", &json!({"container_id": "b"}))
            .is_allowed());
        assert!(!p
            .evaluate("StartContainerRequest", &json!({"container_id": "c"}))
            .is_allowed());
    }

    #[test]
    fn rego_v0_syntax_is_rejected() {
        // Rego v1 requires `if` and `contains`; v0 bodies must not load.
        assert!(Policy::new("package agent_policy\nallow { true }\n", None).is_err());
    }
}
