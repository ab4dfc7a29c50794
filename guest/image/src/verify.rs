//! The hook through which image signature verification (crate
//! `cloister-signature`) takes part in a pull. It is called once the
//! manifest digest is known and before any config or layer is fetched;
//! if it refuses, nothing is downloaded or unpacked.

use async_trait::async_trait;

use crate::digest::Sha256Digest;
use crate::registry::Registry;

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
