//! The tenant's Rego policies, evaluated with regorus.
//!
//! * Attestation policy, package `cloister.attestation`, evaluated after the
//!   evidence passed every verifier check. Input:
//!   `{"tee": "snp"|"tdx"|"sim", "claims": <verified claims>, "init_data": <string or null>,
//!     "reference": <reference values>}`.
//!   Rule `allow` (bool) decides; the optional set `deny_reasons` explains a denial.
//! * Resource policy, package `cloister.resource`, evaluated for every resource
//!   request. Input: `{"tee": …, "claims": …, "resource": {"repository", "type", "tag"}}`.
//!   Rule `allow` decides; `deny_reasons` explains.
//!
//! The defaults are [`DEFAULT_ATTESTATION_POLICY`] and [`DEFAULT_RESOURCE_POLICY`].
use std::sync::{Arc, RwLock};

use regorus::{Engine, Value};

/// Default attestation policy: evidence that passed the verifier is accepted
/// only if the tenant configured at least one reference measurement, so a KBS
/// nobody configured releases nothing.
pub const DEFAULT_ATTESTATION_POLICY: &str = r#"package cloister.attestation

default allow := false

allow if {
	count(object.get(input.reference, "measurement", [])) > 0
}

deny_reasons contains "no reference measurement is configured (admin API: PUT /admin/v0/reference-values)" if {
	count(object.get(input.reference, "measurement", [])) == 0
}
"#;

/// Default resource policy: any attested TEE may read any resource.
pub const DEFAULT_RESOURCE_POLICY: &str = r#"package cloister.resource

default allow := false

allow if {
	input.tee in {"snp", "tdx", "sim"}
}
"#;

/// Which of the two policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    Attestation,
    Resource,
}

impl PolicyKind {
    pub fn package(self) -> &'static str {
        match self {
            PolicyKind::Attestation => "cloister.attestation",
            PolicyKind::Resource => "cloister.resource",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Attestation => "attestation policy",
            PolicyKind::Resource => "resource policy",
        }
    }
}

/// A policy could not be compiled or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{kind}: does not compile: {detail}")]
    Compile { kind: &'static str, detail: String },
    #[error("{kind}: must declare package {expected}, got {got:?}")]
    Package {
        kind: &'static str,
        expected: &'static str,
        got: Vec<String>,
    },
    #[error("{kind}: evaluation failed: {detail}")]
    Eval { kind: &'static str, detail: String },
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allow: bool,
    pub reasons: Vec<String>,
}

/// A compiled policy, cloned for each evaluation.
#[derive(Clone)]
pub struct Policy {
    kind: PolicyKind,
    source: Arc<str>,
    engine: Arc<RwLock<Engine>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Policy {
    pub fn compile(kind: PolicyKind, rego: &str) -> Result<Policy, PolicyError> {
        let mut engine = Engine::new();
        engine
            .add_policy(format!("{}.rego", kind.package()), rego.to_string())
            .map_err(|e| PolicyError::Compile {
                kind: kind.name(),
                detail: e.to_string(),
            })?;
        let packages = engine.get_packages().map_err(|e| PolicyError::Compile {
            kind: kind.name(),
            detail: e.to_string(),
        })?;
        let want = format!("data.{}", kind.package());
        if !packages.iter().any(|p| p == &want) {
            return Err(PolicyError::Package {
                kind: kind.name(),
                expected: kind.package(),
                got: packages,
            });
        }
        Ok(Policy {
            kind,
            source: rego.into(),
            engine: Arc::new(RwLock::new(engine)),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates `allow` and `deny_reasons` with `input`.
    pub fn evaluate(&self, input: &serde_json::Value) -> Result<Decision, PolicyError> {
        let eval_err = |detail: String| PolicyError::Eval {
            kind: self.kind.name(),
            detail,
        };
        let mut engine = self
            .engine
            .read()
            .map_err(|_| eval_err("policy engine lock poisoned".into()))?
            .clone();
        let input =
            Value::from_json_str(&input.to_string()).map_err(|e| eval_err(e.to_string()))?;
        engine.set_input(input);
        let allow = engine
            .eval_rule(format!("data.{}.allow", self.kind.package()))
            .map_err(|e| eval_err(e.to_string()))?;
        let allow = match allow {
            Value::Bool(b) => b,
            Value::Undefined => false,
            other => return Err(eval_err(format!("allow must be a boolean, got {other}"))),
        };
        let mut reasons = Vec::new();
        if !allow {
            if let Ok(v) = engine.eval_rule(format!("data.{}.deny_reasons", self.kind.package())) {
                let json: serde_json::Value = v
                    .to_json_str()
                    .ok()
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or_default();
                if let Some(items) = json.as_array() {
                    reasons = items
                        .iter()
                        .map(|i| i.as_str().map_or(i.to_string(), str::to_string))
                        .collect();
                }
            }
        }
        Ok(Decision { allow, reasons })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_attestation_policy_requires_a_reference_measurement() {
        let p = Policy::compile(PolicyKind::Attestation, DEFAULT_ATTESTATION_POLICY).unwrap();
        let d = p
            .evaluate(&json!({"tee": "sim", "claims": {}, "reference": {"policy": {}}}))
            .unwrap();
        assert!(!d.allow);
        assert!(d.reasons[0].contains("no reference measurement"), "{d:?}");
        let d = p
            .evaluate(&json!({"tee": "sim", "claims": {}, "reference": {"measurement": ["aa"]}}))
            .unwrap();
        assert_eq!(
            d,
            Decision {
                allow: true,
                reasons: vec![]
            }
        );
    }

    #[test]
    fn resource_policy_sees_the_resource() {
        let p = Policy::compile(
            PolicyKind::Resource,
            "package cloister.resource\nallow if { input.resource.tag == \"k1\" }\ndeny_reasons contains sprintf(\"tag %s is not k1\", [input.resource.tag]) if { input.resource.tag != \"k1\" }\n",
        )
        .unwrap();
        assert!(
            p.evaluate(&json!({"resource": {"tag": "k1"}}))
                .unwrap()
                .allow
        );
        let d = p.evaluate(&json!({"resource": {"tag": "k2"}})).unwrap();
        assert_eq!(
            d,
            Decision {
                allow: false,
                reasons: vec!["tag k2 is not k1".into()]
            }
        );
        assert!(
            Policy::compile(PolicyKind::Resource, DEFAULT_RESOURCE_POLICY)
                .unwrap()
                .evaluate(&json!({"tee": "snp"}))
                .unwrap()
                .allow
        );
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        let e = Policy::compile(
            PolicyKind::Attestation,
            "package cloister.attestation\nallow if {",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("attestation policy: does not compile"),
            "{e}"
        );
        let e =
            Policy::compile(PolicyKind::Attestation, "package other\nallow := true\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("must declare package cloister.attestation"),
            "{e}"
        );
    }
}
