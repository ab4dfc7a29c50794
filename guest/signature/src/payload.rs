//! The cosign "simple signing" payload: the JSON document a cosign signature
//! covers, naming the manifest digest and the image identity.
//!
//! sigstore's `SimpleSigning` type reads the same JSON, but leniently: it
//! ignores unknown fields in `critical` and does not check `critical.type`.
//! The `critical` section exists precisely so that a verifier refuses what it
//! does not understand, so it is parsed here strictly, as containers/image
//! does.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `critical.type` of a cosign container image signature.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// The largest payload we read; cosign's are a few hundred bytes.
pub const MAX_PAYLOAD_SIZE: u64 = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    critical: Critical,
    /// Free-form (creator, timestamp, annotations); not checked.
    #[serde(default)]
    optional: Value,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The claims of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// `critical.identity.docker-reference`.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`.
    pub manifest_digest: String,
}

impl Payload {
    /// The payload bytes cosign writes for this identity and digest
    /// (`"optional": null`, keys in cosign's order).
    pub fn to_bytes(&self) -> Vec<u8> {
        let raw = Raw {
            critical: Critical {
                identity: Identity {
                    docker_reference: self.docker_reference.clone(),
                },
                image: Image {
                    docker_manifest_digest: self.manifest_digest.clone(),
                },
                kind: SIMPLE_SIGNING_TYPE.to_string(),
            },
            optional: Value::Null,
        };
        // Serializing plain strings into a Vec cannot fail.
        serde_json::to_vec(&raw).unwrap_or_default()
    }

    /// Parses a payload; refuses unknown critical fields and other types.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() as u64 > MAX_PAYLOAD_SIZE {
            return Err(format!(
                "payload is {} bytes, more than the {MAX_PAYLOAD_SIZE}-byte limit",
                bytes.len()
            ));
        }
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| format!("payload is not a simple-signing document: {e}"))?;
        if raw.critical.kind != SIMPLE_SIGNING_TYPE {
            return Err(format!(
                "payload critical.type is {:?}, expected {SIMPLE_SIGNING_TYPE:?}",
                raw.critical.kind
            ));
        }
        Ok(Self {
            docker_reference: raw.critical.identity.docker_reference,
            manifest_digest: raw.critical.image.docker_manifest_digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_cosign_layout() {
        let p = Payload {
            docker_reference: "reg.io/app:v1".into(),
            manifest_digest: "sha256:00".into(),
        };
        assert_eq!(
            String::from_utf8(p.to_bytes()).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"reg.io/app:v1"},"image":{"docker-manifest-digest":"sha256:00"},"type":"cosign container image signature"},"optional":null}"#
        );
        assert_eq!(Payload::parse(&p.to_bytes()).unwrap(), p);
    }

    #[test]
    fn reads_cosign_payload_with_optional_fields() {
        let doc = br#"{"critical":{"identity":{"docker-reference":"ghcr.io/x/y"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":{"creator":"cosign","sha":"1"}}"#;
        let p = Payload::parse(doc).unwrap();
        assert_eq!(p.docker_reference, "ghcr.io/x/y");
        assert_eq!(p.manifest_digest, "sha256:ab");
    }

    #[test]
    fn refuses_unknown_critical_fields_and_types() {
        let extra = br#"{"critical":{"identity":{"docker-reference":"a/b"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature","expires":1}}"#;
        assert!(Payload::parse(extra)
            .unwrap_err()
            .contains("unknown field `expires`"));
        let other = br#"{"critical":{"identity":{"docker-reference":"a/b"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"atomic container signature"}}"#;
        assert!(Payload::parse(other).unwrap_err().contains("critical.type"));
        let dup = br#"{"critical":{"identity":{"docker-reference":"a/b"},"image":{"docker-manifest-digest":"sha256:ab","docker-manifest-digest":"sha256:cd"},"type":"cosign container image signature"}}"#;
        assert!(Payload::parse(dup).unwrap_err().contains("duplicate field"));
        assert!(Payload::parse(b"not json").is_err());
        assert!(Payload::parse(b"{}").is_err());
    }
}
