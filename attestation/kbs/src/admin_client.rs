//! A small client for the admin API, used by `cloister-kbs admin …`, the
//! benchmark and the tests.
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::problem::Problem;

/// The admin API refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin API: {0}")]
    Http(#[from] reqwest::Error),
    #[error("admin API refused: {0}")]
    Refused(Problem),
    #[error("admin client configuration: {0}")]
    Config(String),
}

pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    /// `base` is `https://host:admin-port`; `ca_pem` the CA the KBS certificate chains to.
    pub fn new(base: &str, ca_pem: &[u8], token: &str) -> Result<AdminClient, AdminError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem) {
            roots
                .add(c.map_err(|e| AdminError::Config(format!("CA: {e}")))?)
                .map_err(|e| AdminError::Config(format!("CA: {e}")))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| AdminError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(AdminClient {
            http: reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .build()?,
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
        })
    }

    async fn put(&self, path: &str, body: Vec<u8>) -> Result<(), AdminError> {
        let resp = self
            .http
            .put(format!("{}/admin/v0/{path}", self.base))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        Err(AdminError::Refused(
            serde_json::from_slice(&body).unwrap_or_else(|_| Problem {
                problem_type: "about:blank".into(),
                title: String::new(),
                status,
                detail: String::from_utf8_lossy(&body).into_owned(),
                check: None,
                expected: None,
                got: None,
            }),
        ))
    }

    pub async fn set_resource(&self, path: &str, body: &[u8]) -> Result<(), AdminError> {
        self.put(&format!("resource/{path}"), body.to_vec()).await
    }

    pub async fn set_attestation_policy(&self, rego: &str) -> Result<(), AdminError> {
        self.put("attestation-policy", rego.as_bytes().to_vec())
            .await
    }

    pub async fn set_resource_policy(&self, rego: &str) -> Result<(), AdminError> {
        self.put("resource-policy", rego.as_bytes().to_vec()).await
    }

    pub async fn set_reference_values(&self, json: &str) -> Result<(), AdminError> {
        self.put("reference-values", json.as_bytes().to_vec()).await
    }
}
