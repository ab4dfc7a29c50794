//! Plugs image signature verification (`cloister-signature`: a
//! containers-policy.json with cosign signatures) into the pull pipeline.
//! The pipeline calls it once the manifest digest is known, before the
//! config or any layer is fetched, so an image the policy refuses is never
//! unpacked.
use async_trait::async_trait;
use cloister_signature::{PolicyFile, Reference, SignatureError, SignatureSource};

use crate::digest::Sha256Digest;
use crate::verify::{ManifestToVerify, ManifestVerifier};

/// Media types a cosign signature manifest may have.
const SIGNATURE_MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Verifies each pulled manifest against a signature policy.
pub struct PolicyVerifier {
    policy: PolicyFile,
}

impl PolicyVerifier {
    pub fn new(policy: PolicyFile) -> Self {
        PolicyVerifier { policy }
    }
}

/// Fetches signatures through the pipeline's own registry client (same
/// credentials, CA and retry settings as the image).
struct PipelineSource<'a, 'b> {
    manifest: &'a ManifestToVerify<'b>,
}

fn registry_error(what: &str, e: impl std::fmt::Display) -> SignatureError {
    SignatureError::Registry {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

#[async_trait]
impl SignatureSource for PipelineSource<'_, '_> {
    async fn fetch_manifest(
        &self,
        _image: &Reference,
        tag: &str,
    ) -> Result<Option<Vec<u8>>, SignatureError> {
        let found = self
            .manifest
            .fetch_tag(tag, SIGNATURE_MANIFEST_TYPES)
            .await
            .map_err(|e| registry_error(&format!("fetching signature tag {tag}"), e))?;
        Ok(found.map(|(bytes, _)| bytes.to_vec()))
    }

    async fn fetch_blob(
        &self,
        _image: &Reference,
        digest: &str,
        max_size: u64,
    ) -> Result<Vec<u8>, SignatureError> {
        let d = Sha256Digest::parse(digest)
            .map_err(|e| registry_error(&format!("signature blob {digest}"), e))?;
        self.manifest
            .fetch_blob(&d, max_size)
            .await
            .map_err(|e| registry_error(&format!("fetching signature blob {digest}"), e))
    }
}

#[async_trait]
impl ManifestVerifier for PolicyVerifier {
    async fn verify(
        &self,
        manifest: &ManifestToVerify<'_>,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let image = crate::reference::parse(manifest.reference)?;
        let source = PipelineSource { manifest };
        let verified =
            cloister_signature::verify(&self.policy, &image, &manifest.digest.to_string(), &source)
                .await?;
        Ok(verified.to_string())
    }
}
