//! Where signatures come from. The verifier needs two things from a
//! registry: the manifest under a tag (`sha256-<hex>.sig`) and blobs by
//! digest. [`SignatureSource`] is that much, so the agent's image pipeline can
//! serve it with its own registry connection, [`crate::RegistrySignatureSource`]
//! serves it with `oci-client`, and [`MemorySignatureSource`] serves it from
//! memory for tests and for signatures delivered out of band.
//!
//! Nothing a source returns is trusted: the verifier checks blob digests,
//! sizes and signatures itself.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use oci_client::Reference;

use crate::cosign::{self, sha256_digest, signature_tag};
use crate::error::SignatureError;

#[async_trait]
pub trait SignatureSource: Send + Sync {
    /// The manifest stored under `tag` in `image`'s repository, or `None` if
    /// there is no such tag.
    async fn fetch_manifest(
        &self,
        image: &Reference,
        tag: &str,
    ) -> Result<Option<Vec<u8>>, SignatureError>;

    /// The blob `digest` of `image`'s repository. A source should stop
    /// reading after `max_size` bytes; the verifier checks size and digest
    /// again.
    async fn fetch_blob(
        &self,
        image: &Reference,
        digest: &str,
        max_size: u64,
    ) -> Result<Vec<u8>, SignatureError>;
}

/// Signature manifests and blobs held in memory, keyed by repository
/// (`registry/repository`).
#[derive(Default)]
pub struct MemorySignatureSource {
    manifests: Mutex<HashMap<(String, String), Vec<u8>>>,
    blobs: Mutex<HashMap<(String, String), Vec<u8>>>,
}

fn repo_key(image: &Reference) -> String {
    format!("{}/{}", image.registry(), image.repository())
}

impl MemorySignatureSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a manifest under a tag.
    pub fn put_manifest(&self, image: &Reference, tag: &str, manifest: Vec<u8>) {
        lock(&self.manifests).insert((repo_key(image), tag.to_string()), manifest);
    }

    /// Stores a blob and returns its digest.
    pub fn put_blob(&self, image: &Reference, blob: Vec<u8>) -> String {
        let digest = sha256_digest(&blob);
        lock(&self.blobs).insert((repo_key(image), digest.clone()), blob);
        digest
    }

    /// Stores a blob under a digest it may not have (to test that the
    /// verifier checks).
    pub fn put_blob_as(&self, image: &Reference, digest: &str, blob: Vec<u8>) {
        lock(&self.blobs).insert((repo_key(image), digest.to_string()), blob);
    }

    /// Adds a signature of `payload` for `manifest_digest`, as cosign would
    /// (appending to the signature manifest).
    pub fn attach_signature(
        &self,
        image: &Reference,
        manifest_digest: &str,
        payload: &[u8],
        signature_b64: &str,
    ) -> Result<(), SignatureError> {
        let tag = signature_tag(manifest_digest)?;
        let existing = match lock(&self.manifests).get(&(repo_key(image), tag.clone())) {
            Some(m) => cosign::parse_signature_manifest(m).map_err(|reason| {
                SignatureError::SignatureManifest {
                    tag: tag.clone(),
                    reason,
                }
            })?,
            None => Vec::new(),
        };
        let upload = cosign::build_signature_manifest(&existing, payload, signature_b64);
        for blob in upload.blobs {
            self.put_blob(image, blob);
        }
        self.put_manifest(image, &tag, upload.manifest);
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated in a
    // way that matters for tests; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl SignatureSource for MemorySignatureSource {
    async fn fetch_manifest(
        &self,
        image: &Reference,
        tag: &str,
    ) -> Result<Option<Vec<u8>>, SignatureError> {
        Ok(lock(&self.manifests)
            .get(&(repo_key(image), tag.to_string()))
            .cloned())
    }

    async fn fetch_blob(
        &self,
        image: &Reference,
        digest: &str,
        _max_size: u64,
    ) -> Result<Vec<u8>, SignatureError> {
        lock(&self.blobs)
            .get(&(repo_key(image), digest.to_string()))
            .cloned()
            .ok_or_else(|| SignatureError::Registry {
                what: format!("fetching blob {digest} of {}", repo_key(image)),
                reason: "blob unknown".into(),
            })
    }
}
