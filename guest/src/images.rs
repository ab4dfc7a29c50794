//! Image pulls for the pod, inside the guest: the tenant's registry settings
//! and signature policy from the initdata, decryption keys from the KBS,
//! layers into the guest's layer store (tmpfs, shared by the pod's
//! containers). The host never sees a layer in plaintext.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cloister_image::{
    Auth, ImagePuller, KeyRing, LayerStore, PolicyVerifier, Progress, ProgressEvent, PullOptions,
    PulledImage, RegistryOptions,
};
use tracing::info;

use crate::initdata::Initdata;
use crate::metrics::{Metrics, OutcomeLabels};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("the initdata has no image-policy.json: every image needs a signature policy (use {{\"default\": [{{\"type\": \"insecureAcceptAnything\"}}]}} to accept unsigned images explicitly)")]
    NoSignaturePolicy,
    #[error("image-policy.json: {0}")]
    SignaturePolicy(String),
    #[error("layer store {path}: {source}")]
    Store {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registry.json ca_pem: {0}")]
    Ca(String),
    #[error("pulling {image}: {message}")]
    Pull { image: String, message: String },
}

/// Pulls `image` with the settings of `initdata` and the `keys` obtained
/// from the KBS. Progress goes to the log and the metrics.
pub async fn pull(
    image: &str,
    initdata: &Initdata,
    keys: Arc<KeyRing>,
    store_dir: &Path,
    metrics: Arc<Metrics>,
) -> Result<PulledImage, PullError> {
    cloister_image::install_crypto_provider();
    let policy_json = initdata
        .image_policy
        .as_ref()
        .ok_or(PullError::NoSignaturePolicy)?;
    let policy = cloister_signature::PolicyFile::from_json(
        &serde_json::to_vec(policy_json).unwrap_or_default(),
    )
    .map_err(|e| PullError::SignaturePolicy(e.to_string()))?;
    let reg = &initdata.registry;
    let mut extra_ca_pem = Vec::new();
    if let Some(pem) = &reg.ca_pem {
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(PullError::Ca("not a PEM certificate".into()));
        }
        extra_ca_pem.push(pem.clone().into_bytes());
    }
    let auth = match (&reg.username, &reg.password) {
        (Some(u), Some(p)) => Auth::Basic {
            username: u.clone(),
            password: p.clone(),
        },
        _ => Auth::Anonymous,
    };
    let store = LayerStore::open(store_dir).map_err(|source| PullError::Store {
        path: store_dir.to_path_buf(),
        source,
    })?;
    let options = PullOptions {
        registry: RegistryOptions {
            auth,
            extra_ca_pem,
            insecure_http: reg.insecure_http,
            ca_only: reg.ca_only,
            embedded_roots: true,
            mirrors: reg.mirrors.clone(),
            ..RegistryOptions::default()
        },
        keys,
        ..PullOptions::default()
    };
    let puller = ImagePuller::new(store, options);
    let image_name = image.to_string();
    let m = metrics.clone();
    let progress = Arc::new(Progress::with_callback(move |ev| {
        report(&image_name, ev, &m)
    }));
    let started = Instant::now();
    info!(image, "pulling image in the guest");
    let verifier = PolicyVerifier::new(policy);
    metrics.image_pulls_running.inc();
    let pulled = puller.pull(image, &verifier, progress).await;
    metrics.image_pulls_running.dec();
    match pulled {
        Ok(p) => {
            metrics
                .image_pulls
                .get_or_create(&OutcomeLabels {
                    outcome: "ok".into(),
                })
                .inc();
            info!(
                image,
                digest = %p.digest,
                verified = p.verification,
                layers = p.layers.len(),
                ms = started.elapsed().as_millis() as u64,
                "image pulled and verified"
            );
            Ok(p)
        }
        Err(e) => {
            metrics
                .image_pulls
                .get_or_create(&OutcomeLabels {
                    outcome: "failed".into(),
                })
                .inc();
            let message = cloister_image::error_chain(&e);
            tracing::error!(image, error = %message, "image pull failed");
            Err(PullError::Pull {
                image: image.into(),
                message,
            })
        }
    }
}

/// Progress to the metrics (bytes, layers) and the log (reuse, retries;
/// the pipeline logs each layer's start and end itself).
fn report(image: &str, ev: &ProgressEvent, m: &Metrics) {
    match ev {
        ProgressEvent::LayerStarted { .. } | ProgressEvent::LayerBytes { .. } => {}
        ProgressEvent::LayerDone { downloaded, .. } => {
            m.image_bytes_downloaded.inc_by(*downloaded);
            m.image_layers_unpacked.inc();
        }
        ProgressEvent::LayerReused { index, diff_id } => {
            m.image_layers_reused.inc();
            info!(image, layer = index, %diff_id, "layer already in the guest's store");
        }
        ProgressEvent::Retry {
            index,
            offset,
            attempt,
            error,
        } => tracing::warn!(
            image,
            layer = index,
            offset,
            attempt,
            error,
            "layer download resumed after an error"
        ),
    }
}
