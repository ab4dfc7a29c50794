//! Image signature policy (containers-policy.json) and cosign signatures.
//!
//! The agent pulls images itself, from registries the host chooses; the host
//! can serve any bytes. Before any layer is unpacked, the agent asks
//! [`verify`] whether the tenant's policy (delivered in the measured
//! initdata) accepts the manifest digest the reference resolved to. The
//! policy language is containers/image's, so one policy serves podman,
//! CRI-O and cloister; signatures are cosign's (`sha256-<hex>.sig` tags), so
//! images signed with `cosign sign --key` or `cloister image sign` verify.
//!
//! Modules, in the order a verification runs:
//! - [`policy`]: parsing the policy, finding the scope for an image;
//! - [`source`], [`registry`]: fetching the signature manifest and payloads;
//! - [`cosign`]: the signature manifest layout;
//! - [`keys`]: public keys, signing keys, key generation;
//! - [`payload`]: the simple-signing payload;
//! - [`identity`]: `signedIdentity` matching;
//! - [`verify`](mod@verify): the decision; [`sign`]: the other direction.

pub mod cosign;
pub mod error;
pub mod identity;
pub mod keys;
pub mod manifest_get;
pub mod payload;
pub mod policy;
pub mod reference;
pub mod reference_parse;
pub mod registry;
pub mod sign;
pub mod source;
pub mod verify;

pub use error::{Rejection, SignatureError};
pub use keys::{generate_key_pair, GeneratedKeyPair, PublicKey, SigningKey};
pub use oci_client::Reference;
pub use policy::{PolicyFile, Scope};
pub use registry::{RegistryOptions, RegistrySignatureSource};
pub use sign::{sign_image, Signed};
pub use source::{MemorySignatureSource, SignatureSource};
pub use verify::{verify, AcceptedSignature, Verified};

/// Installs aws-lc-rs as the process-wide rustls crypto provider. Call it at
/// the start of every binary and test that talks to a registry: when a
/// build links two rustls providers (reqwest brings aws-lc-rs, axum-server
/// ring), rustls cannot choose and panics. The same provider as
/// `cloister_image::registry::install_crypto_provider`; calling both is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
