//! The RCAR exchange and resource requests over HTTPS, with a pinned KBS CA.
use std::time::Duration;

use kbs_types::{Attestation, Challenge, CompositeEvidence, InitData, Request, RuntimeData};
use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::attester::Attester;
use crate::error::{KbsClientError, Problem, Step};
use crate::key::{TeeKey, TeeKeyKind};

/// Version string sent in the Request.
pub const PROTOCOL_VERSION: &str = "0.4.0";
const SESSION_COOKIE: &str = "kbs-session-id";

/// How often and how patiently to retry transient failures.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Where the KBS is and how to trust it.
#[derive(Clone, Debug)]
pub struct KbsClientConfig {
    /// `https://host:port` (no trailing path).
    pub url: String,
    /// PEM certificate(s) the KBS's certificate must chain to; nothing else is trusted.
    pub ca_pem: Vec<u8>,
    pub key_kind: TeeKeyKind,
    pub retry: Retry,
    /// The initdata document, sent with the attestation (its sha256 is HOST_DATA).
    pub init_data: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl KbsClientConfig {
    pub fn new(url: impl Into<String>, ca_pem: impl Into<Vec<u8>>) -> KbsClientConfig {
        KbsClientConfig {
            url: url.into(),
            ca_pem: ca_pem.into(),
            key_kind: TeeKeyKind::default(),
            retry: Retry::default(),
            init_data: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A KBS client with its TEE key and, once attested, its session and token.
pub struct KbsClient {
    config: KbsClientConfig,
    http: reqwest::Client,
    attester: Box<dyn Attester>,
    key: TeeKey,
    session: Option<String>,
    token: Option<String>,
}

/// rustls with the ring provider, trusting only `ca_pem`.
fn tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, KbsClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert =
            cert.map_err(|e| KbsClientError::Config(format!("KBS CA: not PEM certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| KbsClientError::Config(format!("KBS CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(KbsClientError::Config(
            "KBS CA: no certificate given".into(),
        ));
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| KbsClientError::Config(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

async fn problem(step: Step, resp: reqwest::Response) -> KbsClientError {
    let status = resp.status().as_u16();
    let body = resp.bytes().await.unwrap_or_default();
    let problem = serde_json::from_slice::<Problem>(&body).unwrap_or_else(|_| Problem {
        problem_type: "about:blank".into(),
        detail: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
        ..Problem::default()
    });
    KbsClientError::Refused {
        step,
        status,
        problem,
    }
}

impl KbsClient {
    pub fn new(
        config: KbsClientConfig,
        attester: Box<dyn Attester>,
    ) -> Result<KbsClient, KbsClientError> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(&config.ca_pem)?)
            .timeout(config.timeout)
            .build()
            .map_err(|e| KbsClientError::Config(format!("HTTP client: {e}")))?;
        let key = TeeKey::generate(config.key_kind).map_err(KbsClientError::Config)?;
        Ok(KbsClient {
            config,
            http,
            attester,
            key,
            session: None,
            token: None,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/kbs/v0/{path}", self.config.url.trim_end_matches('/'))
    }

    /// The attestation token, once attested.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Forgets the session (the token is kept).
    pub fn forget_session(&mut self) {
        self.session = None;
    }

    /// RCAR step 1: a Request, answered by a Challenge and a session cookie.
    pub async fn auth(&mut self) -> Result<Challenge, KbsClientError> {
        let req = Request {
            version: PROTOCOL_VERSION.into(),
            tee: self.attester.tee(),
            extra_params: serde_json::json!({"supported-hash-algorithms": ["sha384"]}),
        };
        let resp = self
            .http
            .post(self.url("auth"))
            .json(&req)
            .send()
            .await
            .map_err(|source| KbsClientError::Http {
                step: Step::Auth,
                source,
            })?;
        if resp.status() != StatusCode::OK {
            return Err(problem(Step::Auth, resp).await);
        }
        let cookie = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| {
                v.split(';')
                    .next()?
                    .trim()
                    .strip_prefix(&format!("{SESSION_COOKIE}="))
                    .map(str::to_string)
            })
            .next()
            .ok_or_else(|| KbsClientError::Protocol {
                step: Step::Auth,
                detail: format!("no {SESSION_COOKIE} cookie in the answer"),
            })?;
        self.session = Some(cookie);
        resp.json::<Challenge>()
            .await
            .map_err(|e| KbsClientError::Protocol {
                step: Step::Auth,
                detail: format!("not a Challenge: {e}"),
            })
    }

    /// RCAR step 3, first half: evidence over the challenge and the TEE key.
    pub async fn build_attestation(
        &self,
        challenge: &Challenge,
    ) -> Result<Attestation, KbsClientError> {
        if let Some(alg) = challenge
            .extra_params
            .get("selected-hash-algorithm")
            .and_then(|v| v.as_str())
        {
            if !alg.eq_ignore_ascii_case("sha384") {
                return Err(KbsClientError::Protocol {
                    step: Step::Auth,
                    detail: format!("selected-hash-algorithm: expected sha384, got {alg}"),
                });
            }
        }
        let tee_pubkey = self.key.public();
        let report_data =
            crate::binding::report_data(&challenge.nonce, &tee_pubkey, "").map_err(|detail| {
                KbsClientError::Protocol {
                    step: Step::Evidence,
                    detail,
                }
            })?;
        let evidence = self.attester.evidence(report_data).await?;
        Ok(Attestation {
            init_data: self.config.init_data.as_ref().map(|body| InitData {
                format: "toml".into(),
                body: body.clone(),
            }),
            runtime_data: RuntimeData {
                nonce: challenge.nonce.clone(),
                tee_pubkey,
            },
            tee_evidence: CompositeEvidence {
                primary_evidence: evidence,
                additional_evidence: String::new(),
            },
        })
    }

    /// RCAR step 3, second half: send the attestation; returns the token.
    pub async fn post_attestation(&mut self, att: &Attestation) -> Result<String, KbsClientError> {
        let mut req = self.http.post(self.url("attest")).json(att);
        if let Some(s) = &self.session {
            req = req.header(COOKIE, format!("{SESSION_COOKIE}={s}"));
        }
        let resp = req.send().await.map_err(|source| KbsClientError::Http {
            step: Step::Attest,
            source,
        })?;
        if resp.status() != StatusCode::OK {
            return Err(problem(Step::Attest, resp).await);
        }
        #[derive(serde::Deserialize)]
        struct TokenBody {
            token: String,
        }
        let body: TokenBody = resp.json().await.map_err(|e| KbsClientError::Protocol {
            step: Step::Attest,
            detail: format!("no token in the answer: {e}"),
        })?;
        self.token = Some(body.token.clone());
        Ok(body.token)
    }

    /// One RCAR handshake, no retries.
    pub async fn attest_once(&mut self) -> Result<String, KbsClientError> {
        let challenge = self.auth().await?;
        let att = self.build_attestation(&challenge).await?;
        self.post_attestation(&att).await
    }

    /// RCAR with retries (backoff) on transient failures, and from the
    /// start when the KBS lost the session between the challenge and the
    /// attestation (it restarted, or the nonce expired meanwhile). Bounded by
    /// `retry.attempts` either way.
    pub async fn attest(&mut self) -> Result<String, KbsClientError> {
        let retry = self.config.retry;
        let mut wait = retry.initial_backoff;
        let mut attempt = 1;
        loop {
            match self.attest_once().await {
                Ok(t) => return Ok(t),
                Err(e)
                    if (e.is_transient() || e.is_session_lost())
                        && attempt < retry.attempts.max(1) =>
                {
                    tracing::warn!(attempt, error = %e, wait_ms = wait.as_millis() as u64, "KBS attestation failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(retry.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One resource request with the current session (or token), no retries.
    pub async fn fetch_resource(
        &self,
        repository: &str,
        kind: &str,
        tag: &str,
    ) -> Result<Vec<u8>, KbsClientError> {
        let path = format!("{repository}/{kind}/{tag}");
        let mut req = self.http.get(self.url(&format!("resource/{path}")));
        if let Some(s) = &self.session {
            req = req.header(COOKIE, format!("{SESSION_COOKIE}={s}"));
        } else if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|source| KbsClientError::Http {
            step: Step::Resource,
            source,
        })?;
        if resp.status() != StatusCode::OK {
            return Err(problem(Step::Resource, resp).await);
        }
        let body = resp.bytes().await.map_err(|source| KbsClientError::Http {
            step: Step::Resource,
            source,
        })?;
        self.key
            .decrypt(&body)
            .map_err(|detail| KbsClientError::Decrypt {
                resource: path,
                detail,
            })
    }

    /// A resource: attests first if needed, attests again once if the KBS no
    /// longer knows the session (401), and retries transient failures.
    pub async fn get_resource(
        &mut self,
        repository: &str,
        kind: &str,
        tag: &str,
    ) -> Result<Vec<u8>, KbsClientError> {
        if self.session.is_none() && self.token.is_none() {
            self.attest().await?;
        }
        let retry = self.config.retry;
        let mut wait = retry.initial_backoff;
        let mut reattested = false;
        let mut attempt = 1;
        loop {
            match self.fetch_resource(repository, kind, tag).await {
                Ok(v) => return Ok(v),
                Err(KbsClientError::Refused { status: 401, .. }) if !reattested => {
                    tracing::info!("KBS session no longer valid; attesting again");
                    reattested = true;
                    self.token = None;
                    self.attest().await?;
                }
                Err(e) if e.is_transient() && attempt < retry.attempts.max(1) => {
                    tracing::warn!(attempt, error = %e, "KBS resource request failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(retry.max_backoff);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
