//! Why evidence was rejected. Each variant names the check that failed and, where
//! there is one, the expected and the received value; `check()` gives the name that
//! the check-by-check account uses for it.

/// The first check that rejected the evidence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The evidence bytes do not have the expected layout.
    #[error("{check}: {detail}")]
    Malformed { check: &'static str, detail: String },

    /// The SNP product (Milan, Genoa, Turin) could not be determined.
    #[error("product: {0}")]
    UnknownProduct(String),

    /// Two sources disagree about the SNP product.
    #[error("product: expected {expected}, got {got}")]
    ProductMismatch { expected: String, got: String },

    /// A certificate is missing, unparsable or of the wrong kind.
    #[error("{cert} certificate: {detail}")]
    Certificate { cert: String, detail: String },

    /// The report says it was signed by one kind of key, the certificate is of another.
    #[error("signing key: expected {expected}, got {got}")]
    SigningKey { expected: String, got: String },

    /// The chain does not end in the pinned vendor root.
    #[error("{root} pinned: expected {expected}, got {got}")]
    UntrustedRoot {
        root: &'static str,
        expected: String,
        got: String,
    },

    /// A certificate is not signed by its issuer.
    #[error("{cert} signature: invalid ({algorithm} by {signer}){}", reason_suffix(.reason))]
    CertificateSignature {
        cert: String,
        signer: String,
        algorithm: &'static str,
        reason: String,
    },

    /// A certificate is not valid at the verification time.
    #[error("{cert} validity: {at} is outside {not_before} .. {not_after}")]
    CertificateValidity {
        cert: String,
        at: String,
        not_before: String,
        not_after: String,
    },

    /// The SNP report signature does not verify under the VCEK/VLEK.
    #[error("report signature: invalid (ECDSA P-384 over bytes 0..0x2a0){}", reason_suffix(.reason))]
    ReportSignature { reason: String },

    /// The VCEK was issued for another chip.
    #[error("vcek hwID: expected {expected}, got {got}")]
    HwIdMismatch { expected: String, got: String },

    /// A VCEK/VLEK TCB extension differs from the report's REPORTED_TCB.
    #[error("{cert} tcb: {field} expected {expected} (reported_tcb), got {got}")]
    TcbExtension {
        cert: String,
        field: &'static str,
        expected: String,
        got: String,
    },

    /// The guest policy allows something the requirement forbids.
    #[error("policy: {0}")]
    Policy(String),

    /// A TCB component is below the required minimum.
    #[error("minimum tcb: {component} expected at least {min}, got {got}")]
    TcbBelowMinimum {
        component: &'static str,
        min: u8,
        got: u8,
    },

    /// The report came from another VMPL than required.
    #[error("vmpl: expected {expected}, got {got}")]
    Vmpl { expected: u32, got: u32 },

    /// The TD is a debug TD and debug is not allowed.
    #[error("td debug: {0}")]
    TdDebug(String),

    /// The TDX quote signature does not verify under the attestation key.
    #[error("quote signature: invalid (ECDSA P-256 over header and body by the attestation key){}", reason_suffix(.reason))]
    QuoteSignature { reason: String },

    /// The QE report is not signed by the PCK.
    #[error("qe report signature: invalid (ECDSA P-256 over the 384-byte QE report by the PCK){}", reason_suffix(.reason))]
    QeReportSignature { reason: String },

    /// The QE report does not bind the attestation key.
    #[error("qe report binding: expected {expected}, got {got}")]
    QeReportBinding { expected: String, got: String },

    /// A claim differs from the reference value.
    #[error("{field} mismatch: expected {expected}, got {got}")]
    ReferenceMismatch {
        field: &'static str,
        expected: String,
        got: String,
    },

    /// The reference values cannot be applied to this evidence.
    #[error("reference values: {0}")]
    ReferenceValues(String),

    /// Sim evidence reached a verifier that was not told to accept it.
    #[error("sim evidence refused: verifier not configured with allow_sim")]
    SimNotAllowed,
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl VerifyError {
    /// The name of the failed check, as it appears in the check-by-check account.
    pub fn check(&self) -> String {
        match self {
            VerifyError::Malformed { check, .. } => check.to_string(),
            VerifyError::UnknownProduct(_) | VerifyError::ProductMismatch { .. } => {
                "product".into()
            }
            VerifyError::Certificate { cert, .. } => format!("{cert} certificate"),
            VerifyError::SigningKey { .. } => "signing key".into(),
            VerifyError::UntrustedRoot { root, .. } => format!("{root} pinned"),
            VerifyError::CertificateSignature { cert, .. } => format!("{cert} signature"),
            VerifyError::CertificateValidity { cert, .. } => format!("{cert} validity"),
            VerifyError::ReportSignature { .. } => "report signature".into(),
            VerifyError::HwIdMismatch { .. } => "vcek hwID".into(),
            VerifyError::TcbExtension { cert, .. } => format!("{cert} tcb"),
            VerifyError::Policy(_) => "policy".into(),
            VerifyError::TcbBelowMinimum { .. } => "minimum tcb".into(),
            VerifyError::Vmpl { .. } => "vmpl".into(),
            VerifyError::TdDebug(_) => "td debug".into(),
            VerifyError::QuoteSignature { .. } => "quote signature".into(),
            VerifyError::QeReportSignature { .. } => "qe report signature".into(),
            VerifyError::QeReportBinding { .. } => "qe report binding".into(),
            VerifyError::ReferenceMismatch { field, .. } => field.to_string(),
            VerifyError::ReferenceValues(_) => "reference values".into(),
            VerifyError::SimNotAllowed => "sim evidence refused".into(),
        }
    }
}
