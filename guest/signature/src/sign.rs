//! Signing an image in a registry the way `cosign sign --key` does (without
//! the transparency log): resolve the reference to its manifest digest,
//! sign a simple-signing payload naming that digest and the reference, and
//! add it as a layer of the `sha256-<hex>.sig` manifest.

use oci_client::Reference;
use tracing::info;

use crate::cosign::{build_signature_manifest, parse_signature_manifest, signature_tag};
use crate::error::SignatureError;
use crate::keys::SigningKey;
use crate::payload::Payload;
use crate::reference::DockerRef;
use crate::registry::{with_tag, RegistrySignatureSource};
use crate::source::SignatureSource;

/// What `sign_image` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub manifest_digest: String,
    /// The identity written into the payload.
    pub docker_reference: String,
    /// `registry/repo:sha256-<hex>.sig`.
    pub signature_ref: String,
    /// False if the registry already held this exact signature.
    pub pushed: bool,
}

/// The identity a signature of `image` claims: the reference as given, fully
/// expanded, with its tag (or digest). containers/image's default
/// `matchRepoDigestOrExact` accepts it for `repo:tag` pulls; Go cosign
/// writes the bare repository, which only `matchRepository` accepts.
pub fn identity_for(image: &Reference) -> String {
    DockerRef::from_image(image).to_string()
}

/// Signs `image` with `key` and pushes the signature to the registry.
pub async fn sign_image(
    registry: &RegistrySignatureSource,
    image: &Reference,
    key: &SigningKey,
) -> Result<Signed, SignatureError> {
    let manifest_digest = registry.resolve_digest(image).await?;
    let payload = Payload {
        docker_reference: identity_for(image),
        manifest_digest: manifest_digest.clone(),
    };
    let payload_bytes = payload.to_bytes();
    let signature = key.sign(&payload_bytes)?;

    let tag = signature_tag(&manifest_digest)?;
    let sig_ref = with_tag(image, &tag);
    registry.login_for_push(&sig_ref).await?;
    let existing = match registry.fetch_manifest(image, &tag).await? {
        Some(m) => {
            parse_signature_manifest(&m).map_err(|reason| SignatureError::SignatureManifest {
                tag: tag.clone(),
                reason,
            })?
        }
        None => Vec::new(),
    };
    let upload = build_signature_manifest(&existing, &payload_bytes, &signature);
    if upload.changed {
        for blob in upload.blobs {
            registry.push_blob(&sig_ref, blob).await?;
        }
        registry.push_manifest(&sig_ref, upload.manifest).await?;
    }
    info!(
        image = %image,
        digest = %manifest_digest,
        signature = %sig_ref,
        pushed = upload.changed,
        "signed image"
    );
    Ok(Signed {
        manifest_digest,
        docker_reference: payload.docker_reference,
        signature_ref: sig_ref.to_string(),
        pushed: upload.changed,
    })
}
