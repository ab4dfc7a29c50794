//! How cosign stores signatures in a registry: for a manifest
//! `sha256:<hex>`, the tag `sha256-<hex>.sig` in the same repository holds an
//! OCI image manifest whose layers are simple-signing payloads
//! (`application/vnd.dev.cosign.simplesigning.v1+json`), each with its
//! base64 signature in the annotation `dev.cosignproject.cosign/signature`.
//! New signatures are appended as further layers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::SignatureError;

pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// Limits on what a (possibly hostile) registry can make us read.
pub const MAX_MANIFEST_SIZE: usize = 1024 * 1024;
pub const MAX_SIGNATURE_LAYERS: usize = 64;

/// Checks a `sha256:<64 lowercase hex>` digest and returns the hex part.
pub fn digest_hex(digest: &str) -> Result<&str, SignatureError> {
    let invalid = || SignatureError::InvalidDigest {
        got: digest.to_string(),
    };
    let hex = digest.strip_prefix("sha256:").ok_or_else(invalid)?;
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid());
    }
    Ok(hex)
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The tag that holds the signatures of `manifest_digest`.
pub fn signature_tag(manifest_digest: &str) -> Result<String, SignatureError> {
    Ok(format!("sha256-{}.sig", digest_hex(manifest_digest)?))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// Reads the layers of a signature manifest. Layers of other media types
/// (e.g. attestations) are returned too; the verifier skips them.
pub fn parse_signature_manifest(bytes: &[u8]) -> Result<Vec<Descriptor>, String> {
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(format!(
            "manifest is {} bytes, more than the {MAX_MANIFEST_SIZE}-byte limit",
            bytes.len()
        ));
    }
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not an image manifest: {e}"))?;
    if m.schema_version != 2 {
        return Err(format!("schemaVersion is {}, expected 2", m.schema_version));
    }
    if let Some(t) = &m.media_type {
        if t != OCI_MANIFEST_MEDIA_TYPE && t != DOCKER_MANIFEST_MEDIA_TYPE {
            return Err(format!("media type {t:?} is not an image manifest"));
        }
    }
    if m.layers.len() > MAX_SIGNATURE_LAYERS {
        return Err(format!(
            "{} layers, more than the limit of {MAX_SIGNATURE_LAYERS}",
            m.layers.len()
        ));
    }
    Ok(m.layers)
}

/// A signature manifest ready to upload: blobs first, then the manifest.
pub struct SignatureUpload {
    /// The payload layer and the config, to push as blobs.
    pub blobs: Vec<Vec<u8>>,
    pub manifest: Vec<u8>,
    /// False if the same signature was already there (nothing to push).
    pub changed: bool,
}

/// Builds the manifest that holds `existing` layers plus a new signature of
/// `payload`, as cosign does (OCI manifest, config listing the layers as
/// diff_ids).
pub fn build_signature_manifest(
    existing: &[Descriptor],
    payload: &[u8],
    signature_b64: &str,
) -> SignatureUpload {
    let mut layers = existing.to_vec();
    let layer = Descriptor {
        media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_string(),
        digest: sha256_digest(payload),
        size: payload.len() as u64,
        annotations: BTreeMap::from([(
            SIGNATURE_ANNOTATION.to_string(),
            signature_b64.to_string(),
        )]),
    };
    let changed = !layers.contains(&layer);
    if changed {
        layers.push(layer);
    }
    let config = serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
        },
        "config": {},
    });
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST_MEDIA_TYPE.to_string()),
        config: Descriptor {
            media_type: OCI_CONFIG_MEDIA_TYPE.to_string(),
            digest: sha256_digest(&config),
            size: config.len() as u64,
            annotations: BTreeMap::new(),
        },
        layers,
    };
    SignatureUpload {
        blobs: vec![payload.to_vec(), config],
        manifest: serde_json::to_vec(&manifest).unwrap_or_default(),
        changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_from_digest() {
        let d = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(
            signature_tag(&d).unwrap(),
            format!("sha256-{}.sig", "0123456789abcdef".repeat(4))
        );
        for bad in [
            "sha256:abc",
            "sha512:00",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}", "g".repeat(64)),
            &"a".repeat(64),
        ] {
            let e = signature_tag(bad).unwrap_err();
            assert!(e.to_string().contains("expected sha256:<64"), "{e}");
        }
    }

    #[test]
    fn build_then_parse_and_append() {
        let first = build_signature_manifest(&[], b"p1", "c2ln");
        let layers = parse_signature_manifest(&first.manifest).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].digest, sha256_digest(b"p1"));
        assert_eq!(layers[0].annotations[SIGNATURE_ANNOTATION], "c2ln");
        assert_eq!(layers[0].media_type, SIMPLE_SIGNING_MEDIA_TYPE);
        let second = build_signature_manifest(&layers, b"p2", "c2lnMg==");
        let layers2 = parse_signature_manifest(&second.manifest).unwrap();
        assert_eq!(layers2.len(), 2);
        assert_eq!(layers2[0], layers[0]);
        // The config lists both layers.
        let config: serde_json::Value = serde_json::from_slice(&second.blobs[1]).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        // The same signature again changes nothing.
        let again = build_signature_manifest(&layers2, b"p2", "c2lnMg==");
        assert!(!again.changed);
        assert_eq!(parse_signature_manifest(&again.manifest).unwrap().len(), 2);
    }

    #[test]
    fn refuses_hostile_manifests() {
        assert!(parse_signature_manifest(b"[]").is_err());
        let too_many = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "x", "digest": "sha256:00", "size": 1},
            "layers": vec![serde_json::json!({"mediaType": "x", "digest": "sha256:00", "size": 1}); 65],
        });
        let e = parse_signature_manifest(&serde_json::to_vec(&too_many).unwrap()).unwrap_err();
        assert!(e.contains("65 layers"), "{e}");
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}"#;
        assert!(parse_signature_manifest(index)
            .unwrap_err()
            .contains("not an image manifest"));
        let negative = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:00","size":-1},"layers":[]}"#;
        assert!(parse_signature_manifest(negative).is_err());
        assert!(parse_signature_manifest(&vec![b' '; MAX_MANIFEST_SIZE + 1]).is_err());
    }
}
