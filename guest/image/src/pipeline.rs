//! A pull, top to bottom: resolve the reference to a manifest (through an
//! index if there is one), let the signature verifier decide, fetch and
//! check the config, unwrap the keys of encrypted layers, then stream the
//! layers (a bounded number at a time) into the layer store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use oci_client::manifest::OciDescriptor;
use oci_client::Reference;
use tokio::sync::mpsc;

use crate::digest::Sha256Digest;
use crate::error::Error;
use crate::layer::{self, LayerError, LayerJob, LayerOutcome};
use crate::manifest::{self, Fetched, ImageConfig, LayerInfo, Platform, ACCEPTED_MANIFEST_TYPES};
use crate::ocicrypt::{EncryptionInfo, KeyRing, LayerKey};
use crate::progress::Progress;
use crate::pulled::{PulledImage, PulledLayer};
use crate::registry::{Registry, RegistryOptions};
use crate::store::LayerStore;
use crate::unpack::UnpackOptions;
use crate::verify::{ManifestToVerify, ManifestVerifier};

/// Everything about how to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub registry: RegistryOptions,
    pub keys: Arc<KeyRing>,
    pub unpack: UnpackOptions,
    pub platform: Platform,
    /// Layers downloaded and unpacked at the same time.
    pub max_parallel_layers: usize,
    /// Chunks buffered between a layer's download and its unpacking.
    pub chunk_queue: usize,
    /// See [`crate::stream::decompress`]: 23 (8 MiB) by default.
    pub zstd_window_log_max: u32,
    pub max_config_size: u64,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            registry: RegistryOptions::default(),
            keys: Arc::new(KeyRing::new()),
            unpack: UnpackOptions::default(),
            platform: Platform::default(),
            max_parallel_layers: 3,
            chunk_queue: 4,
            zstd_window_log_max: 23,
            max_config_size: 8 << 20,
        }
    }
}

pub struct ImagePuller {
    store: LayerStore,
    options: PullOptions,
}

/// The work for one layer that is not yet in the store.
struct Work {
    info: LayerInfo,
    diff_id: Sha256Digest,
    key: Option<LayerKey>,
}

impl ImagePuller {
    pub fn new(store: LayerStore, options: PullOptions) -> Self {
        Self { store, options }
    }

    pub fn store(&self) -> &LayerStore {
        &self.store
    }

    /// Pulls `image` into the layer store. Nothing of a layer stays in the
    /// store unless all its checks passed; on error, no layer of this pull
    /// is half there (complete, verified layers may stay, for reuse).
    pub async fn pull(
        &self,
        image: &str,
        verifier: &dyn ManifestVerifier,
        progress: Arc<Progress>,
    ) -> Result<PulledImage, Error> {
        let reference: Reference =
            crate::reference::parse(image).map_err(|e| Error::Reference {
                reference: image.into(),
                reason: e.reason,
            })?;
        let registry = Registry::new(&self.options.registry)?;
        registry.login(&reference).await?;

        // 1. Manifest (through the index, if any).
        let (top, top_digest) = registry
            .fetch_manifest(&reference, ACCEPTED_MANIFEST_TYPES)
            .await?;
        let parsed = manifest::parse(&top, None).map_err(|source| Error::Manifest {
            digest: top_digest,
            source,
        })?;
        let (media_type, image_bytes, image_digest, image_manifest) = match parsed {
            Fetched::Image(m) => {
                let mt = m
                    .media_type
                    .clone()
                    .unwrap_or_else(|| oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.into());
                (mt, top.clone(), top_digest, m)
            }
            Fetched::Index(ix) => {
                let mt = ix
                    .media_type
                    .clone()
                    .unwrap_or_else(|| oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE.into());
                let entry = manifest::select_platform(&ix, &self.options.platform).map_err(
                    |available| Error::NoPlatform {
                        digest: top_digest,
                        wanted: self.options.platform.to_string(),
                        available,
                    },
                )?;
                let entry_digest =
                    Sha256Digest::parse(&entry.digest).map_err(|e| Error::Manifest {
                        digest: top_digest,
                        source: manifest::ManifestError::Digest {
                            what: "index entry".into(),
                            source: e,
                        },
                    })?;
                tracing::info!(index = %top_digest, manifest = %entry_digest, platform = %self.options.platform, "selected platform manifest");
                // By digest: fetch_manifest checks the bytes hash to it.
                let by_digest = reference.clone_with_digest(entry_digest.to_string());
                let (bytes, digest) = registry
                    .fetch_manifest(&by_digest, ACCEPTED_MANIFEST_TYPES)
                    .await?;
                match manifest::parse(&bytes, None)
                    .map_err(|source| Error::Manifest { digest, source })?
                {
                    Fetched::Image(m) => (mt, bytes, digest, m),
                    Fetched::Index(_) => {
                        return Err(Error::Manifest {
                            digest,
                            source: manifest::ManifestError::MediaType(
                                "an index inside an index".into(),
                            ),
                        })
                    }
                }
            }
        };

        // 2. Signature verification, before anything else is fetched.
        let verification = verifier
            .verify(&ManifestToVerify {
                reference: image,
                registry: reference.registry(),
                repository: reference.repository(),
                digest: top_digest,
                media_type: &media_type,
                manifest: &top,
                image_digest,
                image_manifest: &image_bytes,
                registry_client: &registry,
                parsed: &reference,
            })
            .await
            .map_err(|e| Error::Refused {
                reference: image.into(),
                reason: e.to_string(),
            })?;
        tracing::info!(%top_digest, %image_digest, %verification, "manifest accepted");

        // 3. Config.
        let config_digest =
            manifest::descriptor_digest(&image_manifest.config, "config").map_err(|source| {
                Error::Manifest {
                    digest: image_digest,
                    source,
                }
            })?;
        let config_bytes = registry
            .fetch_blob(&reference, &config_digest, self.options.max_config_size)
            .await?;
        let config_err = |reason: String| Error::Config {
            digest: config_digest,
            reason,
        };
        let config = ImageConfig::parse(&config_bytes).map_err(config_err)?;
        let want = &self.options.platform;
        if config.os.as_deref().is_some_and(|os| os != want.os)
            || config
                .architecture
                .as_deref()
                .is_some_and(|a| a != want.architecture)
        {
            return Err(config_err(format!(
                "image is for {}/{}, not {want}",
                config.os.as_deref().unwrap_or("?"),
                config.architecture.as_deref().unwrap_or("?")
            )));
        }
        let diff_ids = config.diff_ids().map_err(config_err)?;
        let layers = manifest::layers(&image_manifest).map_err(|source| Error::Manifest {
            digest: image_digest,
            source,
        })?;
        if diff_ids.len() != layers.len() {
            return Err(config_err(format!(
                "config lists {} diff_ids but the manifest has {} layers",
                diff_ids.len(),
                layers.len()
            )));
        }

        // 4. Layer keys, before any download: a missing or wrong key
        // fails the pull without fetching a byte of layer data.
        let mut work = Vec::new();
        let mut first_of: HashMap<Sha256Digest, usize> = HashMap::new();
        for (info, diff_id) in layers.iter().zip(&diff_ids) {
            let key = if info.encrypted {
                let k = EncryptionInfo::from_annotations(info.annotations.as_ref())
                    .and_then(|e| e.unwrap(&self.options.keys))
                    .map_err(|source| Error::LayerKey {
                        index: info.index,
                        digest: info.digest,
                        source,
                    })?;
                Some(k)
            } else {
                None
            };
            if first_of.contains_key(diff_id) || self.store.contains(diff_id) {
                first_of.entry(*diff_id).or_insert(info.index);
                continue;
            }
            first_of.insert(*diff_id, info.index);
            work.push(Work {
                info: info.clone(),
                diff_id: *diff_id,
                key,
            });
        }

        // 5. Layers, a bounded number at a time.
        let cancel = Arc::new(AtomicBool::new(false));
        let parallel = self.options.max_parallel_layers.max(1);
        let results: Vec<(usize, Result<LayerOutcome, LayerError>)> =
            futures_util::stream::iter(work.into_iter().map(|w| {
                let index = w.info.index;
                let fut =
                    self.run_layer(w, &reference, &registry, cancel.clone(), progress.clone());
                async move { (index, fut.await) }
            }))
            .buffer_unordered(parallel)
            .collect()
            .await;

        let mut outcomes: HashMap<usize, LayerOutcome> = HashMap::new();
        let mut first_err: Option<(usize, LayerError)> = None;
        for (index, r) in results {
            match r {
                Ok(o) => {
                    outcomes.insert(index, o);
                }
                Err(e) => {
                    let replace = match &first_err {
                        None => true,
                        Some((_, LayerError::Cancelled)) => !matches!(e, LayerError::Cancelled),
                        Some((i, _)) => !matches!(e, LayerError::Cancelled) && index < *i,
                    };
                    if replace {
                        first_err = Some((index, e));
                    }
                }
            }
        }
        if let Some((index, source)) = first_err {
            return Err(Error::Layer {
                index,
                digest: layers[index].digest,
                source,
            });
        }

        let pulled_layers = layers
            .iter()
            .zip(&diff_ids)
            .map(|(info, diff_id)| {
                let fresh = outcomes.get(&info.index);
                if fresh.is_none() {
                    progress.layer_reused(info.index, *diff_id);
                }
                PulledLayer {
                    index: info.index,
                    digest: info.digest,
                    diff_id: *diff_id,
                    media_type: info.media_type.clone(),
                    compression: info.compression,
                    encrypted: info.encrypted,
                    size: info.size,
                    downloaded: fresh.map(|o| o.downloaded).unwrap_or(0),
                    uncompressed: fresh.map(|o| o.uncompressed),
                    reused: fresh.is_none(),
                    stats: fresh.map(|o| o.stats),
                    path: fresh
                        .map(|o| o.path.clone())
                        .unwrap_or_else(|| self.store.layer_path(diff_id)),
                }
            })
            .collect();
        Ok(PulledImage {
            reference: image.into(),
            digest: top_digest,
            media_type,
            image_digest,
            config_digest,
            config: config_bytes,
            verification,
            layers: pulled_layers,
        })
    }

    async fn run_layer(
        &self,
        w: Work,
        reference: &Reference,
        registry: &Registry,
        cancel: Arc<AtomicBool>,
        progress: Arc<Progress>,
    ) -> Result<LayerOutcome, LayerError> {
        if cancel.load(Ordering::Relaxed) {
            return Err(LayerError::Cancelled);
        }
        let index = w.info.index;
        let digest = w.info.digest;
        let size = w.info.size;
        let desc = OciDescriptor {
            media_type: w.info.media_type.clone(),
            digest: digest.to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            urls: w.info.urls.clone(),
            ..Default::default()
        };
        let (tx, rx) = mpsc::channel(self.options.chunk_queue.max(1));
        let job = LayerJob {
            info: w.info,
            diff_id: w.diff_id,
            key: w.key,
            rx,
            store: self.store.clone(),
            unpack: self.options.unpack.clone(),
            zstd_window_log_max: self.options.zstd_window_log_max,
        };
        progress.layer_started(index, digest, size);
        let unpacking = tokio::task::spawn_blocking(move || layer::process(job));
        let download =
            registry.stream_blob(reference, &desc, size, index, tx, cancel.clone(), &progress);
        let ((), joined) = tokio::join!(download, unpacking);
        let result =
            joined.unwrap_or_else(|e| Err(LayerError::Download(format!("layer task: {e}"))));
        match &result {
            Ok(o) => progress.layer_done(index, digest, o.downloaded, o.uncompressed),
            Err(e) => {
                if !matches!(e, LayerError::Cancelled) {
                    tracing::warn!(layer = index, %digest, error = %crate::error::error_chain(e), "layer failed");
                }
                cancel.store(true, Ordering::Relaxed);
            }
        }
        result
    }
}
