//! The readers a layer flows through, each doing one thing as bytes pass:
//! `raw` (bytes from the download, digest, size and HMAC of the blob),
//! `hashing` (digest of the uncompressed tar, the diff_id) and
//! `decompress` (gzip, zstd). None of them buffers more than a chunk.
//!
//! A check that fails surfaces as an `io::Error` wrapping an
//! [`IntegrityError`] at the end of its stream, so it travels up through
//! the decompressor and tar reader unchanged and is recognised at the top.

pub(crate) mod decompress;
pub(crate) mod hashing;
pub(crate) mod raw;

use std::io;

use crate::digest::Sha256Digest;

/// A layer's bytes were not what the manifest, config or key said.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum IntegrityError {
    #[error("blob digest mismatch: manifest says {expected}, downloaded bytes hash to {actual}")]
    Digest {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("blob size mismatch: manifest says {expected} bytes, registry sent {actual}")]
    Size { expected: u64, actual: String },
    #[error(
        "HMAC mismatch: the encrypted layer or its pubopts annotation was modified \
         (HMAC-SHA256 over the ciphertext does not match)"
    )]
    Hmac,
    #[error("diff_id mismatch: config says {expected}, uncompressed tar hashes to {actual}")]
    DiffId {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
}

impl IntegrityError {
    pub(crate) fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The integrity failure carried by `e`, if it is one.
    pub(crate) fn from_io(e: &io::Error) -> Option<&IntegrityError> {
        e.get_ref()?.downcast_ref::<IntegrityError>()
    }
}

/// The download of a blob failed (after retries) or was cancelled; sent
/// through the chunk channel in place of data.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DownloadFailed(pub String);

impl DownloadFailed {
    pub(crate) fn from_io(e: &io::Error) -> Option<&DownloadFailed> {
        e.get_ref()?.downcast_ref::<DownloadFailed>()
    }
}
