//! `cloister image keygen` and `cloister image sign`: cosign-compatible key
//! pairs and image signatures (crate `cloister-signature`), so a tenant can
//! sign images for the in-guest verifier without Go cosign. Keys and
//! signatures are interchangeable with cosign's (`cosign sign --key`,
//! without the transparency log).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use cloister_signature::{
    generate_key_pair, sign_image, Reference, RegistryOptions, RegistrySignatureSource, SigningKey,
};

/// The variable cosign reads the key password from.
const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

#[derive(Subcommand)]
pub enum SignCommand {
    /// Sign an image in its registry, as `cosign sign --key` does: the
    /// signature of a simple-signing payload (manifest digest and reference)
    /// is added to the `sha256-<hex>.sig` tag next to the image.
    ///
    /// The key's password is read from COSIGN_PASSWORD (unset: empty).
    Sign(SignArgs),
    /// Generate an ECDSA P-256 key pair in cosign's format: PREFIX.key
    /// (encrypted with the password in COSIGN_PASSWORD; empty allowed) and
    /// PREFIX.pub (PEM public key, for a policy's keyPath/keyData).
    Keygen(KeygenArgs),
}

#[derive(Args)]
pub struct SignArgs {
    /// Image reference, e.g. `registry:5000/app:1.0`. The signature names it
    /// as given (fully expanded), so `matchRepoDigestOrExact` accepts it.
    pub reference: String,
    /// Private key (cosign's encrypted format, or unencrypted PKCS#8 PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Talk plain HTTP to the registry (test registries only).
    #[arg(long)]
    pub registry_insecure_http: bool,
    /// Registry credentials `USER:PASS`.
    #[arg(long, env = "CLOISTER_REGISTRY_AUTH", hide_env_values = true)]
    pub auth: Option<String>,
    /// Extra CA certificate (PEM) to trust for the registry's TLS; repeatable.
    #[arg(long)]
    pub ca: Vec<PathBuf>,
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Write PREFIX.key and PREFIX.pub.
    #[arg(long, default_value = "cosign")]
    pub output_key_prefix: String,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: SignCommand) -> anyhow::Result<()> {
    match cmd {
        SignCommand::Sign(args) => sign(args),
        SignCommand::Keygen(args) => keygen(args),
    }
}

fn password() -> Vec<u8> {
    match std::env::var_os(PASSWORD_ENV) {
        Some(p) => p.into_encoded_bytes(),
        None => {
            eprintln!("cloister: {PASSWORD_ENV} is not set; using an empty password");
            Vec::new()
        }
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let key_path = PathBuf::from(format!("{}.key", args.output_key_prefix));
    let pub_path = PathBuf::from(format!("{}.pub", args.output_key_prefix));
    if !args.force {
        for p in [&key_path, &pub_path] {
            if p.exists() {
                bail!("{} exists (use --force to overwrite)", p.display());
            }
        }
    }
    let pair = generate_key_pair(&password())?;
    write_file(&key_path, pair.private_pem.as_bytes(), 0o600)?;
    write_file(&pub_path, pair.public_pem.as_bytes(), 0o644)?;
    println!("Private key written to {}", key_path.display());
    println!("Public key written to {}", pub_path.display());
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}

fn sign(args: SignArgs) -> anyhow::Result<()> {
    cloister_signature::install_crypto_provider();
    let image = Reference::try_from(args.reference.as_str())
        .with_context(|| format!("invalid image reference {:?}", args.reference))?;
    let pem = std::fs::read(&args.key)
        .with_context(|| format!("reading signing key {}", args.key.display()))?;
    let key = SigningKey::from_pem(&pem, &password(), &args.key.display().to_string())?;
    let mut extra_ca_pem = Vec::new();
    for c in &args.ca {
        extra_ca_pem.push(
            std::fs::read(c).with_context(|| format!("reading CA certificate {}", c.display()))?,
        );
    }
    let basic_auth = match &args.auth {
        None => None,
        Some(s) => match s.split_once(':') {
            Some((u, p)) => Some((u.to_string(), p.to_string())),
            None => bail!("--auth must be USER:PASS"),
        },
    };
    let registry = RegistrySignatureSource::new(&RegistryOptions {
        insecure_http: args.registry_insecure_http,
        basic_auth,
        extra_ca_pem,
    })?;
    let signed = super::runtime()?.block_on(sign_image(&registry, &image, &key))?;
    println!("image      {}", args.reference);
    println!("digest     {}", signed.manifest_digest);
    println!("identity   {}", signed.docker_reference);
    if signed.pushed {
        println!("signature  pushed to {}", signed.signature_ref);
    } else {
        println!("signature  already present in {}", signed.signature_ref);
    }
    Ok(())
}
