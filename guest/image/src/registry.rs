//! Talking to the registry, through `oci-client`: authentication
//! (anonymous, basic, bearer token, with the credentials the caller gives),
//! TLS via rustls with the caller's extra CA certificates, manifests by
//! tag or digest, and blobs as streams. Transient failures are retried
//! with exponential backoff, and a blob download that breaks off resumes
//! with an HTTP Range request where the registry honours it.
//!
//! `oci-client` fits for authentication and blobs: `pull_blob_stream` /
//! `pull_blob_stream_partial` stream blobs chunk by chunk without
//! buffering them. Manifests come through `cloister_signature::manifest_get`
//! instead, which keeps their exact bytes (their digest is what signatures
//! cover) and caps their size before they reach memory.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cloister_signature::manifest_get::{ManifestGetter, MAX_MANIFEST_BYTES};
use futures_util::StreamExt;
use oci_client::client::BlobResponse;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::sync::mpsc;

use crate::digest::Sha256Digest;
use crate::progress::Progress;
use crate::stream::raw::Chunk;
use crate::stream::DownloadFailed;

/// Credentials for the registry, given by the caller (never by the host).
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A bearer token used as is.
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Anonymous => f.write_str("Anonymous"),
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Retries of transient failures (connection errors, timeouts, 5xx, 429).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, including the first.
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let d = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        d.min(self.max_backoff)
    }
}

#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    pub auth: Auth,
    /// Extra CA certificates (PEM) to trust, besides the system's.
    pub extra_ca_pem: Vec<Vec<u8>>,
    /// Trust only `extra_ca_pem`, not the system's roots.
    pub ca_only: bool,
    /// Trust Mozilla's roots (compiled in) instead of the system's trust
    /// store: the guest has no /etc/ssl, and must not take one from the host.
    pub embedded_roots: bool,
    /// Plain HTTP (for a test registry; never for a real one).
    pub insecure_http: bool,
    pub retry: RetryPolicy,
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    /// Pull mirrors: registry (host[:port]) as the reference names it →
    /// where to fetch it from. The reference's own registry stays the
    /// image's identity (for signature policies); only the transport goes
    /// to the mirror. A guest reaches a registry on the host's loopback this
    /// way (QEMU user networking: `127.0.0.1:5000` → `10.0.2.2:5000`).
    pub mirrors: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("setting up the registry client: {0}")]
    Setup(String),
    #[error("{what}")]
    Request {
        what: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{what}: {reason}")]
    Content { what: String, reason: String },
}

/// A registry connection for one image reference's registry.
pub struct Registry {
    client: Client,
    /// Manifests are fetched with a size cap (see `manifest_get`).
    manifests: ManifestGetter,
    auth: RegistryAuth,
    retry: RetryPolicy,
    mirrors: std::collections::BTreeMap<String, String>,
}

/// Mozilla's roots (compiled in) as a PEM bundle, for a guest that has no
/// trust store of its own (the agent writes it to
/// /etc/ssl/certs/ca-certificates.crt at boot: oci-client builds a default
/// reqwest client that panics when the system store is empty).
pub fn embedded_roots_pem() -> String {
    use base64::Engine as _;
    let mut out = String::new();
    for c in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Whether an error is worth retrying.
fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => {
            r.is_timeout() || r.is_connect() || r.is_request() || r.is_body() || r.is_decode()
        }
        OciDistributionError::ServerError { code, .. } => {
            *code >= 500 || *code == 429 || *code == 408
        }
        OciDistributionError::IoError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == oci_client::errors::OciErrorCode::Toomanyrequests),
        _ => false,
    }
}

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                oci_client::errors::OciErrorCode::ManifestUnknown
                    | oci_client::errors::OciErrorCode::NotFound
                    | oci_client::errors::OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

impl Registry {
    pub fn new(opts: &RegistryOptions) -> Result<Self, RegistryError> {
        let certs: Vec<Certificate> = opts
            .extra_ca_pem
            .iter()
            .map(|pem| Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect();
        let mut config = ClientConfig {
            protocol: if opts.insecure_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // We choose the platform ourselves (crate::manifest).
            platform_resolver: None,
            connect_timeout: opts.connect_timeout.or(Some(Duration::from_secs(30))),
            read_timeout: opts.read_timeout.or(Some(Duration::from_secs(60))),
            ..ClientConfig::default()
        };
        if opts.ca_only {
            config.tls_certs_only = certs;
        } else if opts.embedded_roots {
            let mut all: Vec<Certificate> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| Certificate {
                    encoding: CertificateEncoding::Der,
                    data: c.as_ref().to_vec(),
                })
                .collect();
            all.extend(certs);
            config.tls_certs_only = all;
        } else {
            config.extra_root_certificates = certs;
        }
        let manifests = ManifestGetter::new(&config, MAX_MANIFEST_BYTES)
            .map_err(|e| RegistryError::Setup(crate::error::error_chain(&e)))?;
        let client = Client::try_from(config)
            .map_err(|e| RegistryError::Setup(crate::error::error_chain(&e)))?;
        let auth = match &opts.auth {
            Auth::Anonymous => RegistryAuth::Anonymous,
            Auth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Auth::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        };
        Ok(Self {
            client,
            manifests,
            auth,
            retry: opts.retry.clone(),
            mirrors: opts.mirrors.clone(),
        })
    }

    async fn with_retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let mut attempt = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if is_transient(&e) && attempt < self.retry.attempts => {
                    tracing::warn!(what, attempt, error = %e, "transient registry error, retrying");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(source) => {
                    return Err(RegistryError::Request {
                        what: what.into(),
                        source,
                    })
                }
            }
        }
    }

    /// `reference`, fetched through its registry's mirror if one is set.
    fn route(&self, reference: &Reference) -> Reference {
        let mut r = reference.clone();
        if let Some(m) = self.mirrors.get(reference.registry()) {
            r.set_mirror_registry(m.clone());
        }
        r
    }

    /// Authenticates for pulling from `reference`'s repository (a basic
    /// login, or a bearer token from the registry's token service).
    pub async fn login(&self, reference: &Reference) -> Result<(), RegistryError> {
        let reference = &self.route(reference);
        self.with_retry(
            &format!("authenticating to {}", reference.registry()),
            || {
                self.client
                    .auth(reference, &self.auth, RegistryOperation::Pull)
            },
        )
        .await
        .map(|_| ())
    }

    /// Fetches a manifest (by tag or digest) and returns its bytes and their
    /// sha256. If `reference` has a digest, the bytes must hash to it.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<(Bytes, Sha256Digest), RegistryError> {
        let reference = &self.route(reference);
        let what = format!("fetching manifest {reference}");
        let body = self
            .with_retry(&what, || {
                self.manifests
                    .get(&self.client, &self.auth, reference, accept)
            })
            .await?;
        let actual = Sha256Digest::of(&body);
        if let Some(pinned) = reference.digest() {
            let pinned = Sha256Digest::parse(pinned).map_err(|e| RegistryError::Content {
                what: what.clone(),
                reason: e.to_string(),
            })?;
            if pinned != actual {
                return Err(RegistryError::Content {
                    what,
                    reason: format!("manifest hashes to {actual}, but the reference pins {pinned}"),
                });
            }
        }
        Ok((body, actual))
    }

    /// Like [`Registry::fetch_manifest`], but `None` when the registry says
    /// the manifest does not exist (404 / MANIFEST_UNKNOWN).
    pub async fn fetch_manifest_if_exists(
        &self,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<Option<(Bytes, Sha256Digest)>, RegistryError> {
        match self.fetch_manifest(reference, accept).await {
            Ok(v) => Ok(Some(v)),
            Err(RegistryError::Request { source, .. }) if is_not_found(&source) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fetches a small blob (a config, a signature) whole, refusing more
    /// than `max_size` bytes and checking its digest.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &Sha256Digest,
        max_size: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let reference = &self.route(reference);
        let what = format!("fetching blob {digest}");
        let desc = OciDescriptor {
            digest: digest.to_string(),
            ..Default::default()
        };
        let mut attempt = 1;
        loop {
            let result: Result<Vec<u8>, OciDistributionError> = async {
                let mut s = self.client.pull_blob_stream(reference, &desc).await?;
                let mut out = Vec::new();
                while let Some(chunk) = s.next().await {
                    let chunk = chunk?;
                    if (out.len() + chunk.len()) as u64 > max_size {
                        return Err(OciDistributionError::GenericError(Some(format!(
                            "blob is larger than the {max_size}-byte limit"
                        ))));
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(out)
            }
            .await;
            match result {
                Ok(out) => {
                    let actual = Sha256Digest::of(&out);
                    if actual != *digest {
                        return Err(RegistryError::Content {
                            what,
                            reason: format!("blob hashes to {actual}"),
                        });
                    }
                    return Ok(out);
                }
                Err(e) if is_transient(&e) && attempt < self.retry.attempts => {
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(source) => return Err(RegistryError::Request { what, source }),
            }
        }
    }

    /// Streams a layer blob into `tx`, chunk by chunk, retrying transient
    /// failures and resuming at the byte where the last try stopped. Ends
    /// by closing `tx` (success: the consumer checks size and digest) or by
    /// sending a [`DownloadFailed`]. Stops early if `cancel` is set or the
    /// consumer hangs up.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn stream_blob(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        size: u64,
        index: usize,
        tx: mpsc::Sender<Chunk>,
        cancel: Arc<AtomicBool>,
        progress: &Progress,
    ) {
        let reference = &self.route(reference);
        let mut offset: u64 = 0;
        let mut attempt: u32 = 1;
        let fail = |msg: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(Err(DownloadFailed(msg))).await;
            }
        };
        'request: loop {
            if cancel.load(Ordering::Relaxed) {
                return fail("cancelled because another layer failed".into()).await;
            }
            let opened = if offset == 0 {
                self.client
                    .pull_blob_stream(reference, desc)
                    .await
                    .map(|s| (s, 0u64))
            } else {
                match self
                    .client
                    .pull_blob_stream_partial(reference, desc, offset, None)
                    .await
                {
                    Ok(BlobResponse::Partial(s)) => Ok((s, 0)),
                    // The registry ignored the Range: skip what we have.
                    Ok(BlobResponse::Full(s)) => Ok((s, offset)),
                    Err(e) => Err(e),
                }
            };
            let (mut stream, mut skip) = match opened {
                Ok(s) => s,
                Err(e) if is_transient(&e) && attempt < self.retry.attempts => {
                    progress.retry(index, offset, attempt, e.to_string());
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                    attempt += 1;
                    continue 'request;
                }
                Err(e) => return fail(format!("requesting blob {}: {e}", desc.digest)).await,
            };
            while let Some(item) = stream.next().await {
                if cancel.load(Ordering::Relaxed) {
                    return fail("cancelled because another layer failed".into()).await;
                }
                let mut chunk = match item {
                    Ok(c) => c,
                    Err(e) => {
                        // oci-client's own digest check at the end of a
                        // full response: leave the verdict to our check,
                        // which names expected and actual digests.
                        if e.get_ref()
                            .is_some_and(|i| i.is::<oci_client::errors::DigestError>())
                        {
                            return;
                        }
                        if attempt < self.retry.attempts {
                            progress.retry(index, offset, attempt, e.to_string());
                            tokio::time::sleep(self.retry.backoff(attempt)).await;
                            attempt += 1;
                            continue 'request;
                        }
                        return fail(format!(
                            "downloading blob {} (at byte {offset}): {e}",
                            desc.digest
                        ))
                        .await;
                    }
                };
                if skip > 0 {
                    let drop = skip.min(chunk.len() as u64) as usize;
                    let _ = chunk.split_to(drop);
                    skip -= drop as u64;
                    if chunk.is_empty() {
                        continue;
                    }
                }
                offset += chunk.len() as u64;
                progress.layer_bytes(index, chunk.len() as u64, size);
                if tx.send(Ok(chunk)).await.is_err() {
                    return; // the consumer failed or finished
                }
                if offset > size {
                    return; // the consumer refuses the excess
                }
            }
            if offset < size && attempt < self.retry.attempts {
                // The response ended early without an error: resume.
                progress.retry(index, offset, attempt, "response ended early".into());
                tokio::time::sleep(self.retry.backoff(attempt)).await;
                attempt += 1;
                continue 'request;
            }
            return;
        }
    }
}

/// Installs aws-lc-rs as the process-wide rustls crypto provider. Call at
/// start-up of every binary (and test) that pulls: with both rustls
/// providers compiled into one binary (reqwest brings aws-lc-rs, axum-server
/// ring), rustls cannot pick one by itself and panics.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
