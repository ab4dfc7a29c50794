//! The decision: does the policy accept this image manifest? Runs before
//! any config or layer of the image is fetched.
//!
//! For each requirement of the applicable scope: `reject` refuses,
//! `insecureAcceptAnything` passes, and `sigstoreSigned` needs at least one
//! cosign signature that (1) verifies with one of its keys, (2) is a
//! simple-signing payload for exactly this manifest digest, and (3) claims an
//! identity its `signedIdentity` accepts. All requirements must pass.

use oci_client::Reference;
use tracing::{info, warn};

use crate::cosign::{
    digest_hex, sha256_digest, signature_tag, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE,
};
use crate::error::{Rejection, Rejections, SignatureError};
use crate::identity;
use crate::keys::PublicKey;
use crate::payload::{Payload, MAX_PAYLOAD_SIZE};
use crate::policy::{PolicyFile, Requirement, Scope, SigstoreSigned};
use crate::reference::DockerRef;
use crate::source::SignatureSource;

/// What was verified, for logs and for the caller's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The image identity the policy was applied to (fully expanded).
    pub image: String,
    pub manifest_digest: String,
    /// The policy scope whose requirements applied.
    pub scope: Scope,
    /// One accepted signature per `sigstoreSigned` requirement; empty when
    /// the scope only has `insecureAcceptAnything`.
    pub signatures: Vec<AcceptedSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedSignature {
    /// The key that verified it (origin and fingerprint).
    pub key: String,
    /// The identity the signature claims.
    pub docker_reference: String,
    /// The digest of the payload layer.
    pub layer_digest: String,
}

impl Verified {
    /// The image pinned to the verified digest, once: a reference that
    /// already names the digest is not given it a second time.
    pub fn pinned(&self) -> String {
        let name = self
            .image
            .split_once('@')
            .map_or(self.image.as_str(), |(n, _)| n);
        format!("{name}@{}", self.manifest_digest)
    }
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.signatures.is_empty() {
            write!(
                f,
                "{} accepted without signature (policy scope {}: insecureAcceptAnything)",
                self.pinned(),
                self.scope
            )
        } else {
            write!(f, "{} signed", self.pinned())?;
            for s in &self.signatures {
                write!(f, " by {} as {}", s.key, s.docker_reference)?;
            }
            write!(f, " (policy scope {})", self.scope)
        }
    }
}

/// One layer of the signature manifest, fetched.
struct Fetched {
    layer: String,
    /// The payload and its signature, or why the layer is unusable.
    content: Result<(Vec<u8>, String), String>,
}

/// Verifies `manifest_digest` (the digest of the manifest `image_ref`
/// resolved to) against `policy`, with signatures from `sigs`.
pub async fn verify(
    policy: &PolicyFile,
    image_ref: &Reference,
    manifest_digest: &str,
    sigs: &dyn SignatureSource,
) -> Result<Verified, SignatureError> {
    digest_hex(manifest_digest)?;
    let image = DockerRef::from_image(image_ref);
    if let Some(pinned) = image_ref.digest() {
        if pinned != manifest_digest {
            return Err(SignatureError::PinnedDigestMismatch {
                image: image_ref.to_string(),
                pinned: pinned.to_string(),
                actual: manifest_digest.to_string(),
            });
        }
    }
    let (scope, requirements) = policy.requirements_for(&image);
    // A reject anywhere in the scope decides before anything is fetched.
    if requirements.contains(&Requirement::Reject) {
        warn!(image = %image, %scope, "image rejected by signature policy");
        return Err(SignatureError::Rejected {
            image: image.to_string(),
            scope: scope.to_string(),
        });
    }
    let mut fetched: Option<Vec<Fetched>> = None;
    let mut signatures = Vec::new();
    for req in requirements {
        let Requirement::SigstoreSigned(rule) = req else {
            continue;
        };
        let keys = rule
            .keys
            .iter()
            .map(PublicKey::load)
            .collect::<Result<Vec<_>, _>>()?;
        let key_names = keys
            .iter()
            .map(|k| k.description())
            .collect::<Vec<_>>()
            .join(", ");
        if fetched.is_none() {
            fetched = Some(
                fetch_signatures(image_ref, &image, manifest_digest, sigs, &scope, &key_names)
                    .await?,
            );
        }
        let layers = fetched.as_deref().unwrap_or_default();
        match check_requirement(rule, &keys, &image, manifest_digest, layers) {
            Ok(accepted) => signatures.push(accepted),
            Err(rejections) => {
                let e = SignatureError::NoMatchingSignature {
                    image: image.to_string(),
                    digest: manifest_digest.to_string(),
                    scope: scope.to_string(),
                    keys: key_names,
                    rejections: Rejections(rejections),
                };
                warn!(error = %e, "image signature verification failed");
                return Err(e);
            }
        }
    }
    let verified = Verified {
        image: image.to_string(),
        manifest_digest: manifest_digest.to_string(),
        scope,
        signatures,
    };
    info!(%verified, "image signature policy satisfied");
    Ok(verified)
}

/// Fetches the signature manifest and every payload layer. A missing tag
/// or an empty manifest is "unsigned"; a broken layer only disqualifies
/// that layer.
async fn fetch_signatures(
    image_ref: &Reference,
    image: &DockerRef,
    manifest_digest: &str,
    sigs: &dyn SignatureSource,
    scope: &Scope,
    key_names: &str,
) -> Result<Vec<Fetched>, SignatureError> {
    let tag = signature_tag(manifest_digest)?;
    let unsigned = |detail: &str| SignatureError::Unsigned {
        image: image.to_string(),
        digest: manifest_digest.to_string(),
        tag: format!("{tag}: {detail}"),
        scope: scope.to_string(),
        keys: key_names.to_string(),
    };
    let Some(manifest) = sigs.fetch_manifest(image_ref, &tag).await? else {
        return Err(unsigned("not found"));
    };
    let layers = crate::cosign::parse_signature_manifest(&manifest).map_err(|reason| {
        SignatureError::SignatureManifest {
            tag: tag.clone(),
            reason,
        }
    })?;
    if layers.is_empty() {
        return Err(unsigned("no signature layers"));
    }
    let mut out = Vec::with_capacity(layers.len());
    for l in layers {
        let content = async {
            if l.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
                return Err(format!(
                    "media type {:?} is not a simple-signing payload",
                    l.media_type
                ));
            }
            digest_hex(&l.digest).map_err(|e| e.to_string())?;
            let sig = l
                .annotations
                .get(SIGNATURE_ANNOTATION)
                .ok_or_else(|| format!("no {SIGNATURE_ANNOTATION} annotation"))?
                .clone();
            if l.size > MAX_PAYLOAD_SIZE {
                return Err(format!(
                    "payload size {} is over the {MAX_PAYLOAD_SIZE}-byte limit",
                    l.size
                ));
            }
            let blob = sigs
                .fetch_blob(image_ref, &l.digest, l.size)
                .await
                .map_err(|e| e.to_string())?;
            if blob.len() as u64 != l.size {
                return Err(format!(
                    "payload is {} bytes, the manifest says {}",
                    blob.len(),
                    l.size
                ));
            }
            let actual = sha256_digest(&blob);
            if actual != l.digest {
                return Err(format!("payload hashes to {actual}, not to its digest"));
            }
            Ok((blob, sig))
        }
        .await;
        out.push(Fetched {
            layer: l.digest,
            content,
        });
    }
    Ok(out)
}

/// Finds a signature that satisfies `rule`, or says why each one fails.
fn check_requirement(
    rule: &SigstoreSigned,
    keys: &[PublicKey],
    image: &DockerRef,
    manifest_digest: &str,
    layers: &[Fetched],
) -> Result<AcceptedSignature, Vec<Rejection>> {
    let mut rejections = Vec::new();
    for f in layers {
        match check_one(rule, keys, image, manifest_digest, f) {
            Ok(a) => return Ok(a),
            Err(r) => rejections.push(r),
        }
    }
    Err(rejections)
}

fn check_one(
    rule: &SigstoreSigned,
    keys: &[PublicKey],
    image: &DockerRef,
    manifest_digest: &str,
    f: &Fetched,
) -> Result<AcceptedSignature, Rejection> {
    let layer = f.layer.clone();
    let (payload, sig) = f.content.as_ref().map_err(|reason| Rejection::Malformed {
        layer: layer.clone(),
        reason: reason.clone(),
    })?;
    // The signature first: nothing in an unverified payload is looked at.
    let key = keys
        .iter()
        .find(|k| k.verify(sig, payload))
        .ok_or_else(|| Rejection::BadSignature {
            layer: layer.clone(),
        })?;
    let claims = Payload::parse(payload).map_err(|reason| Rejection::Malformed {
        layer: layer.clone(),
        reason,
    })?;
    if claims.manifest_digest != manifest_digest {
        return Err(Rejection::DigestMismatch {
            layer,
            expected: manifest_digest.to_string(),
            got: claims.manifest_digest,
        });
    }
    let signed = DockerRef::parse(&claims.docker_reference).map_err(|e| Rejection::Malformed {
        layer: layer.clone(),
        reason: format!("signed identity: {e}"),
    })?;
    identity::check(&rule.signed_identity, image, &signed).map_err(|expected| {
        Rejection::IdentityMismatch {
            layer: layer.clone(),
            expected,
            got: claims.docker_reference.clone(),
        }
    })?;
    Ok(AcceptedSignature {
        key: key.description().to_string(),
        docker_reference: claims.docker_reference,
        layer_digest: layer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verified_reference_names_its_digest_once() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let v = |image: String| Verified {
            image,
            manifest_digest: d.clone(),
            scope: Scope::Default,
            signatures: vec![AcceptedSignature {
                key: "key".into(),
                docker_reference: "r".into(),
                layer_digest: "l".into(),
            }],
        };
        let plain = v("127.0.0.1:5000/demo:v1".into()).to_string();
        let pinned = v(format!("127.0.0.1:5000/demo@{d}")).to_string();
        assert!(
            plain.starts_with(&format!("127.0.0.1:5000/demo:v1@{d} signed by key")),
            "{plain}"
        );
        assert!(
            pinned.starts_with(&format!("127.0.0.1:5000/demo@{d} signed by key")),
            "{pinned}"
        );
        assert_eq!(pinned.matches("sha256:").count(), 1, "{pinned}");
    }
}
