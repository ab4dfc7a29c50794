//! Errors of policy parsing, verification and signing. Every message names
//! what failed and, where there is one, what was expected and what was found:
//! an operator reading the agent's log must be able to tell a missing
//! signature from a wrong key from a wrong identity.

use std::fmt;

/// Why one signature (one layer of the `sha256-<digest>.sig` manifest) was
/// not accepted by a `sigstoreSigned` requirement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The signature does not verify with any of the requirement's keys.
    #[error("signature {layer}: not made by the key (signature verification failed)")]
    BadSignature { layer: String },
    /// The payload is signed, but for another manifest.
    #[error(
        "signature {layer}: payload is for another image: expected digest {expected}, got {got}"
    )]
    DigestMismatch {
        layer: String,
        expected: String,
        got: String,
    },
    /// The payload is signed, for this manifest, but names an identity the
    /// policy's `signedIdentity` does not accept.
    #[error("signature {layer}: identity mismatch: expected {expected}, got {got}")]
    IdentityMismatch {
        layer: String,
        expected: String,
        got: String,
    },
    /// The layer or its payload is not a cosign simple-signing signature.
    #[error("signature {layer}: {reason}")]
    Malformed { layer: String, reason: String },
}

/// A list of rejections, printed one after another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejections(pub Vec<Rejection>);

impl fmt::Display for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The policy file is malformed or uses something cloister does not
    /// implement. Never treated as "allow".
    #[error("signature policy: {0}")]
    Policy(String),

    /// The applicable scope contains a `reject` requirement.
    #[error(
        "image {image} is rejected by signature policy scope {scope} (requirement \"reject\")"
    )]
    Rejected { image: String, scope: String },

    /// A `sigstoreSigned` requirement applies and the registry holds no
    /// signature manifest for the image.
    #[error("no signature for {digest} matched key {keys}: image {image} has no signatures (tag {tag} not found; policy scope {scope})")]
    Unsigned {
        image: String,
        digest: String,
        tag: String,
        scope: String,
        keys: String,
    },

    /// Signatures exist, but none satisfies a `sigstoreSigned` requirement.
    #[error("no signature for {digest} matched key {keys} (image {image}, policy scope {scope}): {rejections}")]
    NoMatchingSignature {
        image: String,
        digest: String,
        scope: String,
        keys: String,
        rejections: Rejections,
    },

    /// The image reference pins a digest other than the manifest's.
    #[error("image {image}: the reference pins {pinned}, but the manifest digest is {actual}")]
    PinnedDigestMismatch {
        image: String,
        pinned: String,
        actual: String,
    },

    /// A digest string is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {got:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest { got: String },

    /// A reference (image, signed identity, policy field) does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A public key named by the policy cannot be read or parsed.
    #[error("public key {key}: {reason}")]
    PublicKey { key: String, reason: String },

    /// The private key for signing cannot be read, decrypted or used.
    #[error("signing key {key}: {reason}")]
    SigningKey { key: String, reason: String },

    /// The signature manifest (`sha256-<hex>.sig`) is not one we can use.
    #[error("signature manifest {tag}: {reason}")]
    SignatureManifest { tag: String, reason: String },

    /// Talking to the registry failed.
    #[error("registry: {what}: {reason}")]
    Registry { what: String, reason: String },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
