//! The hook through which image signature verification (crate
//! `cloister-signature`) takes part in a pull. It is called once the
//! manifest digest is known and before any config or layer is fetched;
//! if it refuses, nothing is downloaded or unpacked.

use async_trait::async_trait;
use bytes::Bytes;

use crate::digest::Sha256Digest;
use crate::registry::{Registry, RegistryError};

/// What the verifier gets to look at.
pub struct ManifestToVerify<'a> {
    /// The reference as the caller gave it (e.g. `registry:5000/app:1.0`).
    pub reference: &'a str,
    /// Registry host (with port) and repository of the reference.
    pub registry: &'a str,
    pub repository: &'a str,
    /// Digest of the manifest the reference resolves to: the index (manifest
    /// list) for a multi-platform image, else the image manifest. This is
    /// what cosign and simple signing sign.
    pub digest: Sha256Digest,
    pub media_type: &'a str,
    /// The raw bytes hashed to `digest`.
    pub manifest: &'a [u8],
    /// The platform image manifest chosen from the index (the same as
    /// `digest`/`manifest` for a single-platform image).
    pub image_digest: Sha256Digest,
    pub image_manifest: &'a [u8],
    /// Access to the same registry, with the same credentials and TLS
    /// settings, to fetch signatures (cosign `sha256-<hex>.sig` tags,
    /// referrers).
    pub registry_client: &'a Registry,
    pub(crate) parsed: &'a oci_client::Reference,
}

impl ManifestToVerify<'_> {
    /// Fetches the manifest tagged `tag` in the same repository (e.g. a
    /// cosign signature, `sha256-<hex>.sig`): its bytes and digest, or
    /// `None` if there is no such tag.
    pub async fn fetch_tag(
        &self,
        tag: &str,
        accept: &[&str],
    ) -> Result<Option<(Bytes, Sha256Digest)>, RegistryError> {
        let r = oci_client::Reference::with_tag(
            self.parsed.registry().to_string(),
            self.parsed.repository().to_string(),
            tag.to_string(),
        );
        self.registry_client
            .fetch_manifest_if_exists(&r, accept)
            .await
    }

    /// Fetches a blob of the same repository (at most `max_size` bytes),
    /// checked against `digest`.
    pub async fn fetch_blob(
        &self,
        digest: &Sha256Digest,
        max_size: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        self.registry_client
            .fetch_blob(self.parsed, digest, max_size)
            .await
    }
}

/// Decides whether a manifest may be used. Return a short description of
/// what was verified (shown to the user and logged), or an error to
/// refuse the image.
#[async_trait]
pub trait ManifestVerifier: Send + Sync {
    async fn verify(
        &self,
        manifest: &ManifestToVerify<'_>,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>>;
}

/// Accepts every manifest. The name says what it does: a pull that uses it
/// trusts the registry (or the digest in the reference) for integrity.
pub struct NoSignatureVerification;

#[async_trait]
impl ManifestVerifier for NoSignatureVerification {
    async fn verify(
        &self,
        _manifest: &ManifestToVerify<'_>,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        Ok("signatures not checked (no signature policy)".into())
    }
}
