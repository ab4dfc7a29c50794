//! One layer, start to finish, on a blocking thread: the blob's chunks
//! flow through
//!
//! ```text
//! raw (size, digest, HMAC) -> decrypt (AES-CTR) -> plaintext digest
//!   -> decompress (gzip/zstd) -> diff_id -> tar -> unpack into tmp dir
//! ```
//!
//! and the layer is committed to the store only if every check passed at
//! the end of the stream. On any failure its temp directory is removed.

use std::cell::Cell;
use std::io::Read;
use std::path::PathBuf;
use std::rc::Rc;

use tokio::sync::mpsc;

use crate::digest::Sha256Digest;
use crate::manifest::LayerInfo;
use crate::ocicrypt::LayerKey;
use crate::store::LayerStore;
use crate::stream::decompress::{decompressor, Compression};
use crate::stream::hashing::HashingReader;
use crate::stream::raw::{Chunk, RawReader, RawState};
use crate::stream::{DownloadFailed, IntegrityError};
use crate::tar::{TarError, TarReader};
use crate::unpack::{unpack, UnpackError, UnpackOptions, UnpackStats};

/// Why a layer failed.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    #[error("download failed: {0}")]
    Download(String),
    #[error("{compression} stream")]
    Decompress {
        compression: Compression,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error("layer store")]
    Store(#[source] std::io::Error),
    #[error(transparent)]
    Crypt(#[from] crate::ocicrypt::OcicryptError),
    #[error("cancelled because another layer failed")]
    Cancelled,
}

/// Everything the blocking side needs for one layer.
pub(crate) struct LayerJob {
    pub info: LayerInfo,
    pub diff_id: Sha256Digest,
    pub key: Option<LayerKey>,
    pub rx: mpsc::Receiver<Chunk>,
    pub store: LayerStore,
    pub unpack: UnpackOptions,
    pub zstd_window_log_max: u32,
}

/// What a finished layer looked like.
#[derive(Debug, Clone)]
pub(crate) struct LayerOutcome {
    pub path: PathBuf,
    pub downloaded: u64,
    pub uncompressed: u64,
    pub stats: UnpackStats,
}

/// Classifies an I/O error that came up the reader chain.
fn classify(e: &std::io::Error) -> Option<LayerError> {
    if let Some(i) = IntegrityError::from_io(e) {
        return Some(LayerError::Integrity(i.clone()));
    }
    if let Some(DownloadFailed(msg)) = DownloadFailed::from_io(e) {
        return Some(if msg.starts_with("cancelled") {
            LayerError::Cancelled
        } else {
            LayerError::Download(msg.clone())
        });
    }
    None
}

pub(crate) fn process(job: LayerJob) -> Result<LayerOutcome, LayerError> {
    let hmac = job.key.as_ref().map(|k| (k.hmac_state(), k.hmac));
    let raw = RawState::new(job.rx, job.info.digest, job.info.size, hmac);
    let tmp = job.store.begin(&job.diff_id).map_err(LayerError::Store)?;
    let uncompressed = Rc::new(Cell::new(0u64));

    let result = (|| -> Result<UnpackStats, LayerError> {
        let source: Box<dyn Read> = match &job.key {
            None => Box::new(RawReader(raw.clone())),
            Some(k) => Box::new(k.decryptor(RawReader(raw.clone()))),
        };
        let compression = job.info.compression;
        let tar_stream =
            decompressor(source, compression, job.zstd_window_log_max).map_err(|e| {
                classify(&e).unwrap_or(LayerError::Decompress {
                    compression,
                    source: e,
                })
            })?;
        let tar_stream = HashingReader::new(
            tar_stream,
            job.diff_id,
            |expected, actual| IntegrityError::DiffId { expected, actual },
            uncompressed.clone(),
        );
        let mut tar = TarReader::new(tar_stream, job.unpack.limits.clone());
        let stats = unpack(&mut tar, tmp.path(), &job.unpack).map_err(|e| {
            e.io_source()
                .and_then(classify)
                .unwrap_or(LayerError::Unpack(e))
        })?;
        // Read to the very end, so that every check above sees its EOF.
        tar.finish().map_err(|e| match e {
            TarError::Io(io) => classify(&io).unwrap_or(LayerError::Decompress {
                compression,
                source: io,
            }),
            other => LayerError::Unpack(UnpackError::Tar(other)),
        })?;
        Ok(stats)
    })();

    let stats = match result {
        Ok(stats) => stats,
        Err(e) => {
            // A corrupt stream usually shows up as a decompression or tar
            // error first; if the blob itself fails its digest or HMAC,
            // report that instead.
            let root_cause = match &e {
                LayerError::Integrity(_) | LayerError::Download(_) | LayerError::Cancelled => None,
                _ => raw.borrow_mut().drain_verdict(),
            };
            drop(tmp); // removes the partial layer
            return Err(root_cause.map(LayerError::Integrity).unwrap_or(e));
        }
    };
    let downloaded = raw.borrow().received();
    let path = tmp.commit().map_err(LayerError::Store)?;
    Ok(LayerOutcome {
        path,
        downloaded,
        uncompressed: uncompressed.get(),
        stats,
    })
}
