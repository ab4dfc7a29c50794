//! The errors a pull can end with, each saying which step failed and,
//! for checks, what was expected and what was found.

use crate::digest::Sha256Digest;
use crate::layer::LayerError;
use crate::manifest::ManifestError;
use crate::ocicrypt::OcicryptError;
use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("manifest {digest}")]
    Manifest {
        digest: Sha256Digest,
        #[source]
        source: ManifestError,
    },
    #[error("index {digest} has no manifest for {wanted} (it has: {available})")]
    NoPlatform {
        digest: Sha256Digest,
        wanted: String,
        available: String,
    },
    #[error("image {reference} refused by the signature verifier: {reason}")]
    Refused { reference: String, reason: String },
    #[error("config {digest}: {reason}")]
    Config {
        digest: Sha256Digest,
        reason: String,
    },
    #[error("layer {index} ({digest})")]
    LayerKey {
        index: usize,
        digest: Sha256Digest,
        #[source]
        source: OcicryptError,
    },
    #[error("layer {index} ({digest})")]
    Layer {
        index: usize,
        digest: Sha256Digest,
        #[source]
        source: LayerError,
    },
}

/// An error and its sources, `a: b: c`, for logs (Display shows only the
/// outermost message; the sources carry the detail).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
