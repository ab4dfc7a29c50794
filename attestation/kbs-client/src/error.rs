//! What can go wrong, by RCAR step, so that a message says which step failed and
//! why: `attest: KBS refused: measurement mismatch: expected …, got … [type, HTTP 401]`.
use std::fmt;

/// The step of the exchange that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Auth,
    Evidence,
    Attest,
    Resource,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Auth => "auth",
            Step::Evidence => "evidence",
            Step::Attest => "attest",
            Step::Resource => "resource",
        })
    }
}

/// An RFC 7807 problem document as the KBS sent it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Problem {
    #[serde(rename = "type", default)]
    pub problem_type: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub check: Option<String>,
    #[serde(default)]
    pub expected: Option<String>,
    #[serde(default)]
    pub got: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KbsClientError {
    /// The KBS answered with an error status.
    #[error("{step}: KBS refused: {} [{}, HTTP {status}]", .problem.detail, .problem.problem_type)]
    Refused {
        step: Step,
        status: u16,
        problem: Problem,
    },
    /// The request did not complete (connection, TLS, timeout).
    #[error("{step}: {source}")]
    Http {
        step: Step,
        #[source]
        source: reqwest::Error,
    },
    /// The KBS's answer was not what the protocol says.
    #[error("{step}: unexpected answer from the KBS: {detail}")]
    Protocol { step: Step, detail: String },
    /// The attester could not produce evidence.
    #[error("evidence: {0}")]
    Evidence(#[from] crate::attester::AttesterError),
    /// A resource could not be decrypted with the TEE key.
    #[error("resource {resource}: decrypting the JWE: {detail}")]
    Decrypt { resource: String, detail: String },
    /// The client configuration is unusable.
    #[error("KBS client configuration: {0}")]
    Config(String),
}

impl KbsClientError {
    /// The KBS no longer knew the session at the attest step (it restarted,
    /// or the session or its nonce expired): a new RCAR from auth can work.
    pub fn is_session_lost(&self) -> bool {
        const LOST: [&str; 3] = ["session-unknown", "session-expired", "nonce-expired"];
        match self {
            KbsClientError::Refused {
                step: Step::Attest,
                status: 401,
                problem,
            } => LOST
                .iter()
                .any(|t| problem.problem_type.rsplit(':').next() == Some(t)),
            _ => false,
        }
    }

    /// Worth another try: the KBS could not be reached, or failed on its side.
    pub fn is_transient(&self) -> bool {
        match self {
            KbsClientError::Http { source, .. } => !source.is_builder() && !source.is_decode(),
            KbsClientError::Refused { status, .. } => *status >= 500,
            KbsClientError::Evidence(e) => e.is_transient(),
            _ => false,
        }
    }

    /// The problem document, when the KBS refused.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            KbsClientError::Refused { problem, .. } => Some(problem),
            _ => None,
        }
    }
}
