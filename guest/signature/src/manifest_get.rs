//! Manifest GETs with a size cap, for both registry clients (the image
//! puller's and the signature verifier's).
//!
//! Written by hand because `oci-client` 0.18's `pull_manifest_raw` reads
//! the whole response body into memory (`Response::bytes`) before anything
//! can look at its size, so a hostile registry could make the guest buffer
//! gigabytes. Here the body is streamed and refused as soon as it passes the
//! cap; the registry's `Content-Length` is checked first. Authentication
//! stays with `oci-client` (its `auth` returns the bearer token it obtained),
//! so the token protocol is not written twice.
use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH};
use reqwest::StatusCode;
use tokio::sync::Mutex;

/// The largest manifest either client accepts: containerd's limit (4 MiB),
/// far above any real image manifest or index.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Fetches manifests over its own HTTP client, configured as `oci-client`'s.
pub struct ManifestGetter {
    http: reqwest::Client,
    https: bool,
    max_bytes: usize,
    /// The bearer token per `registry/repository`, as `oci-client` gave it
    /// (`None`: the registry wants none, or basic credentials).
    tokens: Mutex<HashMap<String, Option<String>>>,
}

fn request_error(e: reqwest::Error) -> OciDistributionError {
    OciDistributionError::RequestError(e)
}

impl ManifestGetter {
    /// An HTTP client with the TLS roots, timeouts and protocol of `config`
    /// (the configuration the caller's `oci-client` was built from).
    pub fn new(config: &ClientConfig, max_bytes: usize) -> Result<Self, OciDistributionError> {
        let certs = |list: &[oci_client::client::Certificate]| {
            list.iter()
                .map(reqwest::Certificate::try_from)
                .collect::<Result<Vec<_>, _>>()
        };
        let mut b = reqwest::Client::builder();
        if !config.tls_certs_only.is_empty() {
            b = b.tls_certs_only(certs(&config.tls_certs_only)?);
        }
        b = b.tls_certs_merge(certs(&config.extra_root_certificates)?);
        if let Some(t) = config.read_timeout {
            b = b.read_timeout(t);
        }
        if let Some(t) = config.connect_timeout {
            b = b.connect_timeout(t);
        }
        let https = match config.protocol {
            ClientProtocol::Http => false,
            ClientProtocol::Https => true,
            ClientProtocol::HttpsExcept(_) => {
                return Err(OciDistributionError::GenericError(Some(
                    "per-registry HTTP exceptions are not supported by the manifest client".into(),
                )))
            }
        };
        Ok(ManifestGetter {
            http: b
                .user_agent(config.user_agent)
                .build()
                .map_err(request_error)?,
            https,
            max_bytes,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self, r: &Reference) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let at = r.digest().unwrap_or_else(|| r.tag().unwrap_or("latest"));
        let ns = r
            .namespace()
            .map(|ns| format!("?ns={ns}"))
            .unwrap_or_default();
        format!(
            "{scheme}://{}/v2/{}/manifests/{at}{ns}",
            r.resolve_registry(),
            r.repository()
        )
    }

    /// GETs `reference`'s manifest, authenticating through `oci` as it
    /// would. Errors are `oci-client`'s, so callers classify them (retry,
    /// not-found) as they do for its other calls. A body over the cap is a
    /// `GenericError` naming the limit (not retried).
    pub async fn get(
        &self,
        oci: &Client,
        auth: &RegistryAuth,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<Bytes, OciDistributionError> {
        let key = format!(
            "{}/{}",
            reference.resolve_registry(),
            reference.repository()
        );
        let cached = self.tokens.lock().await.get(&key).cloned();
        let token = match cached {
            Some(t) => t,
            None => self.login(oci, auth, reference, &key).await?,
        };
        match self.get_with(token, auth, reference, accept).await {
            // The token expired (or the registry wants one now): once more.
            Err(OciDistributionError::UnauthorizedError { .. }) => {
                let token = self.login(oci, auth, reference, &key).await?;
                self.get_with(token, auth, reference, accept).await
            }
            other => other,
        }
    }

    async fn login(
        &self,
        oci: &Client,
        auth: &RegistryAuth,
        reference: &Reference,
        key: &str,
    ) -> Result<Option<String>, OciDistributionError> {
        let token = oci.auth(reference, auth, RegistryOperation::Pull).await?;
        self.tokens
            .lock()
            .await
            .insert(key.to_string(), token.clone());
        Ok(token)
    }

    async fn get_with(
        &self,
        token: Option<String>,
        auth: &RegistryAuth,
        reference: &Reference,
        accept: &[&str],
    ) -> Result<Bytes, OciDistributionError> {
        let url = self.url(reference);
        let mut req = self.http.get(&url).header(ACCEPT, accept.join(", "));
        req = match (&token, auth) {
            (Some(t), _) => req.header(AUTHORIZATION, format!("Bearer {t}")),
            (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
            (None, RegistryAuth::Bearer(t)) => req.header(AUTHORIZATION, format!("Bearer {t}")),
            (None, RegistryAuth::Anonymous) => req,
        };
        let res = req.send().await.map_err(request_error)?;
        let status = res.status();
        let too_big = |got: String| {
            OciDistributionError::GenericError(Some(format!(
                "manifest {url}: {got}, over the {}-byte limit",
                self.max_bytes
            )))
        };
        if let Some(len) = res
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if status.is_success() && len > self.max_bytes as u64 {
                return Err(too_big(format!("the registry announces {len} bytes")));
            }
        }
        let mut body = BytesMut::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(request_error)?;
            if body.len() + chunk.len() > self.max_bytes {
                return Err(too_big(format!(
                    "more than {} bytes arrived",
                    body.len() + chunk.len()
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok(body.freeze());
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(OciDistributionError::UnauthorizedError { url });
        }
        if status == StatusCode::NOT_FOUND {
            return Err(OciDistributionError::ImageManifestNotFoundError(format!(
                "{url}: 404 Not Found"
            )));
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        Err(OciDistributionError::ServerError {
            code: status.as_u16(),
            url,
            message: text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn getter(https: bool) -> ManifestGetter {
        let config = ClientConfig {
            protocol: if https {
                ClientProtocol::Https
            } else {
                ClientProtocol::Http
            },
            ..ClientConfig::default()
        };
        ManifestGetter::new(&config, 16).unwrap()
    }

    #[test]
    fn urls_by_tag_by_digest_and_mirror() {
        let g = getter(true);
        let r: Reference = "reg.example:5000/team/app:1.0".parse().unwrap();
        assert_eq!(
            g.url(&r),
            "https://reg.example:5000/v2/team/app/manifests/1.0"
        );
        let d = format!("sha256:{}", "ab".repeat(32));
        let r: Reference = format!("reg.example/app@{d}").parse().unwrap();
        assert_eq!(
            getter(false).url(&r),
            format!("http://reg.example/v2/app/manifests/{d}")
        );
        let mut r: Reference = "127.0.0.1:5000/app:1".parse().unwrap();
        r.set_mirror_registry("10.0.2.2:5000".into());
        // As oci-client does: the mirror is told the original registry.
        assert_eq!(
            g.url(&r),
            "https://10.0.2.2:5000/v2/app/manifests/1?ns=127.0.0.1:5000"
        );
    }
}
