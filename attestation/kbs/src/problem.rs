//! Every refusal as an RFC 7807 problem document (`application/problem+json`).
//! The `type` names the failed check (`urn:cloister:kbs:problem:<name>`), the
//! `detail` says what was expected and what was received, and for comparisons
//! the members `check`, `expected` and `got` carry the same values for programs.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cloister_evidence::VerifyError;
use serde::{Deserialize, Serialize};

/// The prefix of every problem type this KBS emits.
pub const TYPE_PREFIX: &str = "urn:cloister:kbs:problem:";

/// One problem document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{detail} [{problem_type}]")]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The check that failed, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub got: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, name: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            problem_type: format!("{TYPE_PREFIX}{name}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            check: None,
            expected: None,
            got: None,
        }
    }

    /// Adds the compared values.
    pub fn compared(
        mut self,
        check: &str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Problem {
        self.check = Some(check.to_string());
        self.expected = Some(expected.into());
        self.got = Some(got.into());
        self
    }

    /// The name after the prefix (`measurement-mismatch`).
    pub fn name(&self) -> &str {
        self.problem_type
            .strip_prefix(TYPE_PREFIX)
            .unwrap_or(&self.problem_type)
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }

    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            detail,
        )
    }

    pub fn unauthorized(name: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, name, "Unauthorized", detail)
    }

    /// A verifier's rejection: the type is named after the failed check.
    pub fn from_verify_error(e: &VerifyError) -> Problem {
        let check = e.check();
        let kebab = check.replace([' ', '_'], "-").to_ascii_lowercase();
        let name = match e {
            VerifyError::ReferenceMismatch { .. } => format!("{kebab}-mismatch"),
            VerifyError::SimNotAllowed => "sim-not-allowed".to_string(),
            _ => format!("evidence-{kebab}"),
        };
        let p = Problem::new(
            StatusCode::UNAUTHORIZED,
            &name,
            "Evidence rejected",
            e.to_string(),
        );
        let pair = match e {
            VerifyError::ReferenceMismatch { expected, got, .. }
            | VerifyError::ProductMismatch { expected, got }
            | VerifyError::SigningKey { expected, got }
            | VerifyError::UntrustedRoot { expected, got, .. }
            | VerifyError::HwIdMismatch { expected, got }
            | VerifyError::TcbExtension { expected, got, .. }
            | VerifyError::QeReportBinding { expected, got } => {
                Some((expected.clone(), got.clone()))
            }
            VerifyError::Vmpl { expected, got } => Some((expected.to_string(), got.to_string())),
            VerifyError::TcbBelowMinimum { min, got, .. } => {
                Some((format!(">= {min}"), got.to_string()))
            }
            _ => None,
        };
        match pair {
            Some((expected, got)) => p.compared(&check, expected, got),
            None => Problem {
                check: Some(check),
                ..p
            },
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        tracing::info!(status = self.status, problem = %self.problem_type, detail = %self.detail, "refused");
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_errors_name_the_check_and_values() {
        let p = Problem::from_verify_error(&VerifyError::ReferenceMismatch {
            field: "host_data",
            expected: "aa".into(),
            got: "bb".into(),
        });
        assert_eq!(
            p.problem_type,
            "urn:cloister:kbs:problem:host-data-mismatch"
        );
        assert_eq!(p.detail, "host_data mismatch: expected aa, got bb");
        assert_eq!(
            (p.expected.as_deref(), p.got.as_deref()),
            (Some("aa"), Some("bb"))
        );
        assert_eq!(p.status, 401);
        let p = Problem::from_verify_error(&VerifyError::SimNotAllowed);
        assert_eq!(p.name(), "sim-not-allowed");
        let p = Problem::from_verify_error(&VerifyError::ReportSignature {
            reason: String::new(),
        });
        assert_eq!(p.name(), "evidence-report-signature");
    }
}
