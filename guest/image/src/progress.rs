//! Pull progress: per-layer byte counts, as counters (for metrics and the
//! CLI) and as events to an optional callback, plus `tracing` lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::digest::Sha256Digest;

/// Something that happened during a pull.
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    /// A layer's download started.
    LayerStarted {
        index: usize,
        digest: Sha256Digest,
        size: u64,
    },
    /// More bytes of a layer arrived (`downloaded` is the running total).
    LayerBytes {
        index: usize,
        downloaded: u64,
        size: u64,
    },
    /// A layer was verified, unpacked and committed to the store.
    LayerDone {
        index: usize,
        digest: Sha256Digest,
        downloaded: u64,
        unpacked: u64,
    },
    /// The layer was already in the store; nothing was downloaded.
    LayerReused { index: usize, diff_id: Sha256Digest },
    /// A transient error; the download resumes at `offset`.
    Retry {
        index: usize,
        offset: u64,
        attempt: u32,
        error: String,
    },
}

type Callback = Box<dyn Fn(&ProgressEvent) + Send + Sync>;

/// Counters for one pull (read them while it runs) and the callback.
#[derive(Default)]
pub struct Progress {
    /// Bytes received from the registry, all layers.
    pub bytes_downloaded: AtomicU64,
    /// Uncompressed tar bytes unpacked, all layers.
    pub bytes_unpacked: AtomicU64,
    pub layers_done: AtomicU64,
    pub layers_reused: AtomicU64,
    pub retries: AtomicU64,
    per_layer: Mutex<Vec<u64>>,
    callback: Option<Callback>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("bytes_downloaded", &self.bytes_downloaded)
            .field("layers_done", &self.layers_done)
            .finish()
    }
}

const LOG_EVERY: u64 = 16 << 20;

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_callback(cb: impl Fn(&ProgressEvent) + Send + Sync + 'static) -> Self {
        Self {
            callback: Some(Box::new(cb)),
            ..Self::default()
        }
    }

    /// Bytes downloaded so far for layer `index`.
    pub fn layer_downloaded(&self, index: usize) -> u64 {
        self.per_layer
            .lock()
            .map(|v| v.get(index).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn emit(&self, e: ProgressEvent) {
        if let Some(cb) = &self.callback {
            cb(&e);
        }
    }

    pub(crate) fn layer_started(&self, index: usize, digest: Sha256Digest, size: u64) {
        tracing::info!(layer = index, %digest, size, "layer download started");
        self.emit(ProgressEvent::LayerStarted {
            index,
            digest,
            size,
        });
    }

    pub(crate) fn layer_bytes(&self, index: usize, n: u64, size: u64) {
        self.bytes_downloaded.fetch_add(n, Ordering::Relaxed);
        let downloaded = match self.per_layer.lock() {
            Ok(mut v) => {
                if v.len() <= index {
                    v.resize(index + 1, 0);
                }
                v[index] += n;
                v[index]
            }
            Err(_) => 0,
        };
        if downloaded / LOG_EVERY != (downloaded - n) / LOG_EVERY {
            tracing::debug!(layer = index, downloaded, size, "layer download progress");
        }
        self.emit(ProgressEvent::LayerBytes {
            index,
            downloaded,
            size,
        });
    }

    pub(crate) fn retry(&self, index: usize, offset: u64, attempt: u32, error: String) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(layer = index, offset, attempt, %error, "transient error, retrying");
        self.emit(ProgressEvent::Retry {
            index,
            offset,
            attempt,
            error,
        });
    }

    pub(crate) fn layer_done(
        &self,
        index: usize,
        digest: Sha256Digest,
        downloaded: u64,
        unpacked: u64,
    ) {
        self.layers_done.fetch_add(1, Ordering::Relaxed);
        self.bytes_unpacked.fetch_add(unpacked, Ordering::Relaxed);
        tracing::info!(layer = index, %digest, downloaded, unpacked, "layer verified and unpacked");
        self.emit(ProgressEvent::LayerDone {
            index,
            digest,
            downloaded,
            unpacked,
        });
    }

    pub(crate) fn layer_reused(&self, index: usize, diff_id: Sha256Digest) {
        self.layers_reused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(layer = index, %diff_id, "layer already in the store");
        self.emit(ProgressEvent::LayerReused { index, diff_id });
    }
}
