//! `cloister policy explain`: turns a denial from the agent's log (one JSON
//! log line) into a readable account: which rule, which field differed,
//! expected vs received.
//!
//! The agent logs every decision as a structured event (see
//! docs/policy.md): `decision`, `rule`, `reason` and, for denials, `input`
//! (the policy input as JSON text, omitted when larger than 16 KiB). Given
//! the policy too, the input is evaluated again for the policy's
//! `mismatches` rule, which generated policies define field by field.
use serde_json::Value;

use crate::Policy;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("the log line is not JSON: {0}")]
    NotJson(String),
    #[error("the log line is not a policy decision (no `rule`/`decision` fields)")]
    NotADecision,
    #[error("the decision was `allow`: nothing to explain")]
    Allowed,
}

/// One field that differed.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub field: String,
    pub expected: Value,
    pub received: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub rule: String,
    pub reason: String,
    /// The policy input, when the log line carried it.
    pub input: Option<Value>,
    /// Field-level differences (from the policy's `mismatches` rule when a
    /// policy was given, else parsed from the reason).
    pub mismatches: Vec<Mismatch>,
}

/// Parses a decision log line. Accepts the agent's JSON log format
/// (`{"fields": {...}}`) or the bare fields object.
pub fn parse_log_line(line: &str) -> Result<(String, String, Option<Value>), ExplainError> {
    let v: Value =
        serde_json::from_str(line.trim()).map_err(|e| ExplainError::NotJson(e.to_string()))?;
    let f = v.get("fields").unwrap_or(&v);
    let s = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(decision), Some(rule)) = (s("decision"), s("rule")) else {
        return Err(ExplainError::NotADecision);
    };
    if decision == "allow" {
        return Err(ExplainError::Allowed);
    }
    let reason = s("reason").unwrap_or_default();
    let input = match f.get("input") {
        Some(Value::String(t)) => serde_json::from_str(t).ok(),
        Some(o @ Value::Object(_)) => Some(o.clone()),
        _ => None,
    };
    Ok((rule, reason, input))
}

/// Explains a denial log line, using `policy` (the one the agent enforced)
/// when available.
pub fn explain(line: &str, policy: Option<&mut Policy>) -> Result<Explanation, ExplainError> {
    let (rule, reason, input) = parse_log_line(line)?;
    let mut mismatches = Vec::new();
    if let (Some(p), Some(inp)) = (policy, &input) {
        let mut inp = inp.clone();
        ensure_request(&mut inp, &rule);
        if let Some(Value::Array(ms)) =
            p.query_rule(&format!("data.{}.mismatches", crate::PACKAGE), &inp)
        {
            for m in ms {
                mismatches.push(Mismatch {
                    field: m
                        .get("field")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                        .to_string(),
                    expected: m.get("expected").cloned().unwrap_or(Value::Null),
                    received: m.get("received").cloned().unwrap_or(Value::Null),
                });
            }
        }
    }
    if mismatches.is_empty() {
        mismatches = parse_reason(&reason);
    }
    Ok(Explanation {
        rule,
        reason,
        input,
        mismatches,
    })
}

/// Sets `input.state.request` if the input lacks it (the agent always sets
/// it; hand-written inputs may not).
pub fn ensure_request(input: &mut Value, rule: &str) {
    if let Value::Object(o) = input {
        let state = o
            .entry("state")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(s) = state {
            s.entry("request")
                .or_insert_with(|| Value::String(rule.to_string()));
        }
    }
}

/// Splits reasons of the form `field: expected X, got Y` (joined by "; "),
/// the form generated policies use.
fn parse_reason(reason: &str) -> Vec<Mismatch> {
    reason
        .split("; ")
        .filter_map(|part| {
            let (field, rest) = part.split_once(": expected ")?;
            let (expected, received) = rest.rsplit_once(", got ")?;
            let val =
                |t: &str| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string()));
            Some(Mismatch {
                field: field.to_string(),
                expected: val(expected),
                received: val(received),
            })
        })
        .collect()
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "denied: {}", self.rule)?;
        if self.mismatches.is_empty() {
            writeln!(f, "reason: {}", self.reason)?;
            return Ok(());
        }
        for m in &self.mismatches {
            writeln!(f, "- {}", m.field)?;
            writeln!(f, "    expected: {}", compact(&m.expected))?;
            writeln!(f, "    received: {}", compact(&m.received))?;
        }
        Ok(())
    }
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_only_lines_are_split_into_fields() {
        let line = r#"{"timestamp":"t","level":"WARN","fields":{"message":"policy decision","decision":"deny","rule":"CreateContainerRequest","reason":"image: expected a@sha256:1, got evil; oci_spec.process.args: expected [\"a\"], got [\"b\"]"}}"#;
        let e = explain(line, None).unwrap();
        assert_eq!(e.rule, "CreateContainerRequest");
        assert_eq!(e.mismatches.len(), 2);
        assert_eq!(e.mismatches[0].field, "image");
        assert_eq!(e.mismatches[0].expected, Value::String("a@sha256:1".into()));
        assert_eq!(e.mismatches[1].received, serde_json::json!(["b"]));
        let text = e.to_string();
        assert!(text.contains("received: evil"), "{text}");
    }

    #[test]
    fn non_decisions_and_allows_are_refused() {
        assert!(matches!(
            explain("not json", None),
            Err(ExplainError::NotJson(_))
        ));
        assert!(matches!(
            explain(r#"{"fields":{"message":"hi"}}"#, None),
            Err(ExplainError::NotADecision)
        ));
        assert!(matches!(
            explain(r#"{"decision":"allow","rule":"X"}"#, None),
            Err(ExplainError::Allowed)
        ));
    }
}
