//! `cloister image pull`: runs the guest's image pipeline (crate
//! `cloister-image`) outside a VM, to check an image and its keys before
//! deploying it, and prints what was verified.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use cloister_image::{
    assemble_rootfs, AssembleMode, Auth, ImagePuller, KeyRing, LayerStore, PolicyVerifier,
    Progress, PullOptions, RegistryOptions,
};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Pull, verify, decrypt and unpack an image into a rootfs directory.
    Pull(PullArgs),
    /// `image sign` and `image keygen` (cosign-compatible signatures).
    #[command(flatten)]
    Sign(super::image_sign::SignCommand),
}

#[derive(Args)]
pub struct PullArgs {
    /// Image reference, e.g. `registry:5000/app:1.0` or `…@sha256:…`.
    pub reference: String,
    /// Directory to create with the image's root filesystem (must not
    /// exist, or be empty).
    #[arg(long)]
    pub dest: PathBuf,
    /// Private key (PEM) for encrypted layers; repeat for several.
    #[arg(long = "decryption-key")]
    pub decryption_keys: Vec<PathBuf>,
    /// Extra CA certificate (PEM) to trust for the registry's TLS.
    #[arg(long)]
    pub ca: Vec<PathBuf>,
    /// Registry credentials `USER:PASS` (basic auth, or exchanged for a
    /// bearer token if the registry asks for one).
    #[arg(long, env = "CLOISTER_REGISTRY_AUTH", hide_env_values = true)]
    pub auth: Option<String>,
    /// Talk plain HTTP to the registry (test registries only).
    #[arg(long)]
    pub insecure_http: bool,
    /// Keep unpacked layers in this layer store (default: a temporary one
    /// next to --dest, removed afterwards).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Layers pulled at the same time.
    #[arg(long, default_value_t = 3)]
    pub parallel: usize,
    /// Allow device nodes in layers.
    #[arg(long)]
    pub allow_devices: bool,
    /// Image signature policy (containers-policy.json). Verified before any
    /// layer is fetched; use a policy with `insecureAcceptAnything` to pull
    /// unsigned images knowingly.
    #[arg(long)]
    pub signature_policy: PathBuf,
}

pub fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    match cmd {
        ImageCommand::Pull(args) => pull(args),
        ImageCommand::Sign(c) => super::image_sign::run(c),
    }
}

fn pull(args: PullArgs) -> anyhow::Result<()> {
    cloister_image::install_crypto_provider();
    let mut keys = KeyRing::new();
    for k in &args.decryption_keys {
        keys.add_pem_file(k)?;
    }
    let mut ca = Vec::new();
    for c in &args.ca {
        ca.push(
            std::fs::read(c).with_context(|| format!("reading CA certificate {}", c.display()))?,
        );
    }
    let auth = match &args.auth {
        None => Auth::Anonymous,
        Some(s) => match s.split_once(':') {
            Some((u, p)) => Auth::Basic {
                username: u.into(),
                password: p.into(),
            },
            None => bail!("--auth must be USER:PASS"),
        },
    };
    if let Ok(mut rd) = std::fs::read_dir(&args.dest) {
        if rd.next().is_some() {
            bail!("--dest {} exists and is not empty", args.dest.display());
        }
    }
    let parent = args
        .dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let temp_store;
    let (store_path, throwaway) = match &args.store {
        Some(s) => (s.clone(), false),
        None => {
            temp_store = tempfile::Builder::new()
                .prefix(".cloister-layers.")
                .tempdir_in(&parent)
                .with_context(|| {
                    format!("creating a temporary layer store in {}", parent.display())
                })?;
            (temp_store.path().to_path_buf(), true)
        }
    };
    let store = LayerStore::open(&store_path)
        .with_context(|| format!("opening layer store {}", store_path.display()))?;
    let options = PullOptions {
        registry: RegistryOptions {
            auth,
            extra_ca_pem: ca,
            insecure_http: args.insecure_http,
            ..RegistryOptions::default()
        },
        keys: Arc::new(keys),
        max_parallel_layers: args.parallel,
        unpack: cloister_image::UnpackOptions {
            allow_devices: args.allow_devices,
            ..Default::default()
        },
        ..PullOptions::default()
    };
    let puller = ImagePuller::new(store, options);
    let progress = Arc::new(Progress::new());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let policy =
        cloister_signature::PolicyFile::from_path(&args.signature_policy).with_context(|| {
            format!(
                "reading the signature policy {}",
                args.signature_policy.display()
            )
        })?;
    let verifier = PolicyVerifier::new(policy);
    let image = rt.block_on(puller.pull(&args.reference, &verifier, progress.clone()))?;
    // A throwaway store can lend its files by hard link; a kept store must
    // stay pristine, so its layers are copied.
    let mode = if throwaway {
        AssembleMode::Hardlink
    } else {
        AssembleMode::Copy
    };
    assemble_rootfs(&image.layer_dirs(), &args.dest, mode)
        .with_context(|| format!("assembling the rootfs in {}", args.dest.display()))?;
    let elapsed = started.elapsed();

    println!("image      {}", image.reference);
    println!("resolved   {} ({})", image.digest, image.media_type);
    if image.image_digest != image.digest {
        println!("manifest   {} (linux/amd64)", image.image_digest);
    }
    println!("config     {}: digest verified", image.config_digest);
    println!("signature  {}", image.verification);
    for l in &image.layers {
        println!(
            "layer {:<4} {} ({}{})",
            l.index,
            l.digest,
            l.compression,
            if l.encrypted { ", encrypted" } else { "" }
        );
        if l.reused {
            println!(
                "           diff_id {} already in the layer store",
                l.diff_id
            );
            continue;
        }
        println!(
            "           blob digest verified; {}diff_id {} verified",
            if l.encrypted {
                "decrypted, HMAC verified; "
            } else {
                ""
            },
            l.diff_id
        );
        println!(
            "           {} bytes downloaded, {} bytes unpacked",
            l.downloaded,
            l.uncompressed.unwrap_or(0)
        );
    }
    println!(
        "rootfs     {} ({} layers, {} bytes downloaded in {:.2}s)",
        args.dest.display(),
        image.layers.len(),
        progress
            .bytes_downloaded
            .load(std::sync::atomic::Ordering::Relaxed),
        elapsed.as_secs_f64()
    );
    Ok(())
}
