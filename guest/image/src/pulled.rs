//! What a pull produces: the verified image and where its layers are in
//! the layer store, in the shapes a container runtime needs (the layer
//! directories in order, or overlayfs' lowerdirs).

use std::path::PathBuf;

use crate::digest::Sha256Digest;
use crate::stream::decompress::Compression;
use crate::unpack::UnpackStats;

/// One layer of a pulled image.
#[derive(Debug, Clone)]
pub struct PulledLayer {
    pub index: usize,
    pub digest: Sha256Digest,
    /// Verified: the sha256 of the uncompressed tar equals this.
    pub diff_id: Sha256Digest,
    pub media_type: String,
    pub compression: Compression,
    /// Decrypted with one of the caller's keys (HMAC verified).
    pub encrypted: bool,
    pub size: u64,
    /// Bytes fetched for this layer in this pull (0 if reused).
    pub downloaded: u64,
    /// Uncompressed tar size, when unpacked in this pull.
    pub uncompressed: Option<u64>,
    /// The layer was already in the store (or earlier in this image).
    pub reused: bool,
    pub stats: Option<UnpackStats>,
    /// Its directory in the layer store.
    pub path: PathBuf,
}

/// A pulled image: verified, unpacked, in the layer store.
#[derive(Debug, Clone)]
pub struct PulledImage {
    pub reference: String,
    /// Digest of what the reference resolved to (index or manifest).
    pub digest: Sha256Digest,
    pub media_type: String,
    /// Digest of the platform's image manifest.
    pub image_digest: Sha256Digest,
    pub config_digest: Sha256Digest,
    /// The config JSON, verified against `config_digest`.
    pub config: Vec<u8>,
    /// What the signature verifier said.
    pub verification: String,
    pub layers: Vec<PulledLayer>,
}

impl PulledImage {
    /// Layer directories, bottom layer first.
    pub fn layer_dirs(&self) -> Vec<PathBuf> {
        self.layers.iter().map(|l| l.path.clone()).collect()
    }

    /// The directories for overlayfs' `lowerdir=` option, top layer first.
    /// A layer that occurs twice is listed once, at its upper position
    /// (overlayfs refuses a directory twice; in practice the repeats are
    /// empty layers).
    pub fn overlay_lowerdirs(&self) -> Vec<PathBuf> {
        let mut seen = std::collections::HashSet::new();
        self.layers
            .iter()
            .rev()
            .filter(|l| seen.insert(l.diff_id))
            .map(|l| l.path.clone())
            .collect()
    }
}
