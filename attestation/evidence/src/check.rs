//! The check-by-check account of one verification. Every step a verifier takes
//! leaves a line here, so a user can see what was proved, what was not looked at,
//! and which check rejected the evidence.
use std::fmt;

use serde::Serialize;

use crate::VerifyError;

/// One verification step and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short stable name, e.g. `report signature`, `vcek hwID`.
    pub name: String,
    /// True when the check ran and passed. False when it failed or was skipped.
    pub passed: bool,
    /// True when the check was not performed (not applicable, or not implemented);
    /// such a check neither accepts nor rejects the evidence.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// What was compared, with the values seen.
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match (self.passed, self.skipped) {
            (true, _) => "[ ok ]",
            (false, true) => "[skip]",
            (false, false) => "[FAIL]",
        };
        write!(f, "{mark} {}: {}", self.name, self.detail)
    }
}

/// Collects checks while a verifier runs.
#[derive(Default)]
pub(crate) struct Checks(Vec<Check>);

impl Checks {
    pub fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Check {
            name: name.into(),
            passed: true,
            skipped: false,
            detail: detail.into(),
        });
    }

    pub fn skip(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Check {
            name: name.into(),
            passed: false,
            skipped: true,
            detail: detail.into(),
        });
    }

    /// Records the check that rejected the evidence.
    pub fn failed(&mut self, error: &VerifyError) {
        let name = error.check();
        let text = error.to_string();
        let detail = text
            .strip_prefix(&format!("{name}: "))
            .unwrap_or(&text)
            .to_string();
        self.0.push(Check {
            name,
            passed: false,
            skipped: false,
            detail,
        });
    }

    pub fn into_vec(self) -> Vec<Check> {
        self.0
    }
}
