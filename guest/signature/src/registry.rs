//! A registry reached with `oci-client`: reads signature manifests and
//! payloads for the verifier, and resolves references and pushes signature
//! manifests for `cloister image sign`.

use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use async_trait::async_trait;

use crate::cosign::{
    sha256_digest, DOCKER_MANIFEST_MEDIA_TYPE, MAX_MANIFEST_SIZE, OCI_MANIFEST_MEDIA_TYPE,
};
use crate::error::SignatureError;
use crate::manifest_get::ManifestGetter;
use crate::source::SignatureSource;

/// How to reach the registry.
#[derive(Clone, Default)]
pub struct RegistryOptions {
    /// Plain HTTP (a local test registry; never for a real one).
    pub insecure_http: bool,
    /// Basic credentials (user, password); anonymous if `None`.
    pub basic_auth: Option<(String, String)>,
    /// Extra CA certificates (PEM) to trust besides the system roots.
    pub extra_ca_pem: Vec<Vec<u8>>,
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("insecure_http", &self.insecure_http)
            .field(
                "basic_auth",
                &self.basic_auth.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .field("extra_ca_pem", &self.extra_ca_pem.len())
            .finish()
    }
}

/// An `oci-client` registry connection.
pub struct RegistrySignatureSource {
    client: Client,
    auth: RegistryAuth,
    manifests: ManifestGetter,
}

fn registry_err(what: impl Into<String>, e: impl std::fmt::Display) -> SignatureError {
    SignatureError::Registry {
        what: what.into(),
        reason: e.to_string(),
    }
}

/// Whether the registry said "no such manifest/repository" (for a signature
/// tag: the image is unsigned). Public so that a [`SignatureSource`] over
/// another `oci-client` connection can tell "unsigned" from a failure.
pub fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => {
            !envelope.errors.is_empty()
                && envelope.errors.iter().all(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                })
        }
        _ => false,
    }
}

impl RegistrySignatureSource {
    pub fn new(opts: &RegistryOptions) -> Result<Self, SignatureError> {
        let config = ClientConfig {
            protocol: if opts.insecure_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates: opts
                .extra_ca_pem
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(60)),
            ..ClientConfig::default()
        };
        let manifests = ManifestGetter::new(&config, MAX_MANIFEST_SIZE)
            .map_err(|e| registry_err("setting up the client", e))?;
        let client =
            Client::try_from(config).map_err(|e| registry_err("setting up the client", e))?;
        let auth = match &opts.basic_auth {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        };
        Ok(Self {
            client,
            auth,
            manifests,
        })
    }

    /// The digest of the manifest `image` names (for a multi-platform image,
    /// the index: what cosign signs).
    pub async fn resolve_digest(&self, image: &Reference) -> Result<String, SignatureError> {
        let what = format!("resolving {image}");
        let digest = self
            .client
            .fetch_manifest_digest(image, &self.auth)
            .await
            .map_err(|e| registry_err(&what, e))?;
        crate::cosign::digest_hex(&digest)?;
        Ok(digest)
    }

    /// Authenticates for pushing to `image`'s repository.
    pub async fn login_for_push(&self, image: &Reference) -> Result<(), SignatureError> {
        self.client
            .auth(image, &self.auth, RegistryOperation::Push)
            .await
            .map(|_| ())
            .map_err(|e| registry_err(format!("authenticating to push to {image}"), e))
    }

    /// Uploads a blob into `image`'s repository; returns its digest.
    pub async fn push_blob(
        &self,
        image: &Reference,
        data: Vec<u8>,
    ) -> Result<String, SignatureError> {
        let digest = sha256_digest(&data);
        self.client
            .push_blob(image, data, &digest)
            .await
            .map_err(|e| registry_err(format!("uploading blob {digest} to {image}"), e))?;
        Ok(digest)
    }

    /// Uploads an OCI image manifest under `image`'s tag.
    pub async fn push_manifest(
        &self,
        image: &Reference,
        manifest: Vec<u8>,
    ) -> Result<(), SignatureError> {
        let content_type = OCI_MANIFEST_MEDIA_TYPE
            .parse()
            .map_err(|e| registry_err("content type", e))?;
        self.client
            .push_manifest_raw(image, manifest, content_type)
            .await
            .map_err(|e| registry_err(format!("uploading manifest {image}"), e))?;
        Ok(())
    }
}

/// `image`'s repository with another tag.
pub fn with_tag(image: &Reference, tag: &str) -> Reference {
    Reference::with_tag(
        image.registry().to_string(),
        image.repository().to_string(),
        tag.to_string(),
    )
}

#[async_trait]
impl SignatureSource for RegistrySignatureSource {
    async fn fetch_manifest(
        &self,
        image: &Reference,
        tag: &str,
    ) -> Result<Option<Vec<u8>>, SignatureError> {
        let r = with_tag(image, tag);
        match self
            .manifests
            .get(
                &self.client,
                &self.auth,
                &r,
                &[OCI_MANIFEST_MEDIA_TYPE, DOCKER_MANIFEST_MEDIA_TYPE],
            )
            .await
        {
            Ok(body) => Ok(Some(body.to_vec())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(registry_err(format!("fetching {r}"), e)),
        }
    }

    async fn fetch_blob(
        &self,
        image: &Reference,
        digest: &str,
        max_size: u64,
    ) -> Result<Vec<u8>, SignatureError> {
        let what = format!(
            "fetching blob {digest} of {}/{}",
            image.registry(),
            image.repository()
        );
        let desc = OciDescriptor {
            digest: digest.to_string(),
            ..Default::default()
        };
        self.client
            .store_auth_if_needed(image.resolve_registry(), &self.auth)
            .await;
        let mut stream = self
            .client
            .pull_blob_stream(image, &desc)
            .await
            .map_err(|e| registry_err(&what, e))?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.stream.next().await {
            let chunk = chunk.map_err(|e| registry_err(&what, e))?;
            if (out.len() + chunk.len()) as u64 > max_size {
                return Err(registry_err(
                    &what,
                    format!("more than the expected {max_size} bytes"),
                ));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}
