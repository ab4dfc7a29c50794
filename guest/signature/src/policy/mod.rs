//! The image signature policy, in the `containers-policy.json(5)` format that
//! containers/image (podman, skopeo, CRI-O) and image-rs use, so a tenant can
//! write one policy for all of them.
//!
//! What cloister implements:
//! - requirement types `reject`, `insecureAcceptAnything` and
//!   `sigstoreSigned` (keys from `keyPath`, `keyPaths`, `keyData`,
//!   `keyDatas`); `signedBy` (GPG), and `sigstoreSigned` with `fulcio`,
//!   `pki` or Rekor fields are refused as unsupported, and an unknown type is
//!   an error: nothing unknown is ever read as "allow";
//! - scopes of the `docker` transport, most specific first, as
//!   containers/image looks them up: the image itself
//!   (`registry/repo:tag` or `registry/repo@digest`), its repository, each
//!   parent namespace, the registry host, `*.`-wildcarded parent domains,
//!   the transport default `""`, then the global `default`;
//! - every `signedIdentity` type: `matchExact`, `matchRepoDigestOrExact`
//!   (the default), `matchRepository`, `exactReference`, `exactRepository`
//!   and `remapIdentity`.
//!
//! Parsing is strict, as containers/image's: unknown or duplicated fields
//! reject the whole file.

mod parse;
mod scope;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::SignatureError;
use crate::reference::DockerRef;

pub use scope::Scope;

/// A parsed `containers-policy.json`.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    pub(crate) default: Vec<Requirement>,
    /// transport name → scope → requirements.
    pub(crate) transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// One policy requirement. All requirements of the applicable scope must be
/// satisfied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Reject,
    InsecureAcceptAnything,
    SigstoreSigned(SigstoreSigned),
}

/// `{"type": "sigstoreSigned", ...}`: at least one signature made by one of
/// `keys`, for this manifest, with an identity `signed_identity` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigstoreSigned {
    pub keys: Vec<KeySource>,
    pub signed_identity: SignedIdentity,
}

/// Where a `sigstoreSigned` public key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `keyPath`/`keyPaths`: a PEM file, read when verifying.
    Path(PathBuf),
    /// `keyData`/`keyDatas`: the PEM itself (base64-decoded from the policy).
    /// `label` says which field it came from, for messages.
    Data { label: String, pem: Vec<u8> },
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Path(p) => write!(f, "{}", p.display()),
            KeySource::Data { label, .. } => f.write_str(label),
        }
    }
}

/// What image identity a signature must claim (`signedIdentity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    ExactReference(DockerRef),
    ExactRepository(DockerRef),
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

impl PolicyFile {
    /// Parses and validates a policy. No file is read: `keyPath` files are
    /// read when an image is verified.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SignatureError> {
        parse::parse_policy(bytes)
    }

    /// Reads and parses a policy file.
    pub fn from_path(path: &Path) -> Result<Self, SignatureError> {
        let bytes = std::fs::read(path).map_err(|source| SignatureError::Io {
            what: format!("reading signature policy {}", path.display()),
            source,
        })?;
        Self::from_json(&bytes)
    }

    /// The requirements that apply to `image` (pulled over the `docker`
    /// transport, i.e. from a registry), and the scope they come from.
    pub fn requirements_for(&self, image: &DockerRef) -> (Scope, &[Requirement]) {
        scope::lookup(self, image)
    }
}

#[cfg(test)]
mod tests;
