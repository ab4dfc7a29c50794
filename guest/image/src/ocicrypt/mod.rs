//! ocicrypt layer encryption (containers/ocicrypt `docs/spec.md`), the
//! decrypting half.
//!
//! An encrypted layer has media type `…+encrypted` and two annotations:
//! - `org.opencontainers.image.enc.keys.jwe`: base64 of a JWE whose
//!   payload is the *private options* JSON
//!   `{"symkey": b64, "digest": "sha256:…", "cipheroptions": {"nonce": b64}}`;
//! - `org.opencontainers.image.enc.pubopts`: base64 of the *public options*
//!   `{"cipher": "AES_256_CTR_HMAC_SHA256", "hmac": b64, "cipheroptions": {}}`.
//!
//! The layer blob is AES-256-CTR of the plain (compressed) layer with the
//! 16-byte nonce as initial counter block; `hmac` is HMAC-SHA256 with the
//! same 32-byte key over the ciphertext. (Checked against what skopeo
//! 1.9.3 writes.) The HMAC is computed as the ciphertext streams in
//! (`crate::stream::raw`) and checked at its end; nothing of a layer is
//! kept unless it matches.
//!
//! The private options' `digest` is meant to be the plaintext blob's digest,
//! but it is not checked: skopeo 1.9.3 writes the *source* blob's digest
//! even when it recompresses while encrypting (`--dest-compress-format
//! zstd`), so correct images fail such a check. Integrity is covered without
//! it: the blob digest and HMAC cover the ciphertext, the diff_id the tar.

mod jwe;
mod keys;

use std::io::{self, Read};

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::digest::Sha256Digest;
pub use jwe::JweError;
pub use keys::{KeyError, KeyRing};

pub const ANNOTATION_KEYS_JWE: &str = "org.opencontainers.image.enc.keys.jwe";
pub const ANNOTATION_KEYS_PREFIX: &str = "org.opencontainers.image.enc.keys.";
pub const ANNOTATION_PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";
pub const CIPHER_AES_256_CTR_HMAC_SHA256: &str = "AES_256_CTR_HMAC_SHA256";

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

#[derive(Debug, thiserror::Error)]
pub enum OcicryptError {
    #[error("encrypted layer has no {ANNOTATION_KEYS_JWE} annotation{}", others_note(.0))]
    NoJweKeys(Vec<String>),
    #[error("encrypted layer has no {ANNOTATION_PUBOPTS} annotation")]
    NoPubOpts,
    #[error("annotation {annotation} is malformed: {reason}")]
    BadAnnotation {
        annotation: &'static str,
        reason: String,
    },
    #[error("layer cipher {0:?} is not supported (only {CIPHER_AES_256_CTR_HMAC_SHA256})")]
    UnsupportedCipher(String),
    #[error("layer is encrypted but no decryption key was given")]
    NoKeys,
    #[error(transparent)]
    Jwe(#[from] JweError),
    #[error("decrypted layer options are malformed: {0}")]
    BadPrivateOptions(String),
}

fn others_note(others: &[String]) -> String {
    if others.is_empty() {
        String::new()
    } else {
        format!(
            " (it has {}, which this runtime does not support)",
            others.join(", ")
        )
    }
}

#[derive(Deserialize)]
struct PublicOptions {
    cipher: String,
    hmac: String,
}

#[derive(Deserialize)]
struct PrivateOptions {
    symkey: String,
    digest: Option<String>,
    #[serde(default)]
    cipheroptions: std::collections::BTreeMap<String, String>,
}

/// The encryption annotations of one layer, decoded but not yet unwrapped.
#[derive(Debug, Clone)]
pub struct EncryptionInfo {
    /// One or more JWE documents (ocicrypt joins several with ',').
    jwes: Vec<Vec<u8>>,
    pub cipher: String,
    pub hmac: [u8; 32],
}

impl EncryptionInfo {
    /// Decodes the annotations of an encrypted layer.
    pub fn from_annotations(
        annotations: Option<&std::collections::BTreeMap<String, String>>,
    ) -> Result<Self, OcicryptError> {
        let empty = Default::default();
        let a = annotations.unwrap_or(&empty);
        let bad = |annotation, reason: String| OcicryptError::BadAnnotation { annotation, reason };
        let Some(keys) = a.get(ANNOTATION_KEYS_JWE) else {
            let others = a
                .keys()
                .filter(|k| k.starts_with(ANNOTATION_KEYS_PREFIX))
                .cloned()
                .collect();
            return Err(OcicryptError::NoJweKeys(others));
        };
        let jwes = keys
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| STANDARD.decode(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(ANNOTATION_KEYS_JWE, format!("not base64: {e}")))?;
        let pub_b64 = a.get(ANNOTATION_PUBOPTS).ok_or(OcicryptError::NoPubOpts)?;
        let pub_json = STANDARD
            .decode(pub_b64)
            .map_err(|e| bad(ANNOTATION_PUBOPTS, format!("not base64: {e}")))?;
        let p: PublicOptions = serde_json::from_slice(&pub_json)
            .map_err(|e| bad(ANNOTATION_PUBOPTS, e.to_string()))?;
        if p.cipher != CIPHER_AES_256_CTR_HMAC_SHA256 {
            return Err(OcicryptError::UnsupportedCipher(p.cipher));
        }
        let hmac: [u8; 32] = STANDARD
            .decode(&p.hmac)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad(ANNOTATION_PUBOPTS, "hmac is not 32 bytes of base64".into()))?;
        Ok(Self {
            jwes,
            cipher: p.cipher,
            hmac,
        })
    }

    /// Unwraps the layer key with the first key in `keys` that fits.
    pub fn unwrap(&self, keys: &KeyRing) -> Result<LayerKey, OcicryptError> {
        if keys.is_empty() {
            return Err(OcicryptError::NoKeys);
        }
        let mut last = None;
        for jwe in &self.jwes {
            match jwe::decrypt(jwe, keys) {
                Ok(payload) => return self.parse_private(&payload),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .map(OcicryptError::Jwe)
            .unwrap_or(OcicryptError::NoJweKeys(Vec::new())))
    }

    fn parse_private(&self, payload: &[u8]) -> Result<LayerKey, OcicryptError> {
        let bad = |s: String| OcicryptError::BadPrivateOptions(s);
        let p: PrivateOptions = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
        let key = Zeroizing::new(STANDARD.decode(&p.symkey).map_err(|e| bad(e.to_string()))?);
        let key: Zeroizing<[u8; 32]> = Zeroizing::new(
            key.as_slice()
                .try_into()
                .map_err(|_| bad(format!("symkey is {} bytes, expected 32", key.len())))?,
        );
        let nonce_b64 = p
            .cipheroptions
            .get("nonce")
            .ok_or_else(|| bad("cipheroptions has no nonce".into()))?;
        let nonce: [u8; 16] = STANDARD
            .decode(nonce_b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("nonce is not 16 bytes of base64".into()))?;
        let plaintext_digest = match p.digest.as_deref() {
            None | Some("") => None,
            Some(d) => Some(Sha256Digest::parse(d).map_err(|e| bad(e.to_string()))?),
        };
        Ok(LayerKey {
            key,
            nonce,
            hmac: self.hmac,
            plaintext_digest,
        })
    }
}

/// The unwrapped key material for one layer.
pub struct LayerKey {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; 16],
    /// Expected HMAC-SHA256 of the ciphertext (from the public options).
    pub hmac: [u8; 32],
    /// What the private options say the plaintext digest is (not checked,
    /// see the module comment).
    pub plaintext_digest: Option<Sha256Digest>,
}

impl LayerKey {
    /// HMAC-SHA256 keyed for this layer, to run over the ciphertext.
    pub fn hmac_state(&self) -> hmac::Hmac<sha2::Sha256> {
        <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.key[..])
            .expect("HMAC accepts any key length")
    }

    /// A reader that decrypts `inner` (AES-256-CTR).
    pub fn decryptor<R: Read>(&self, inner: R) -> CtrDecryptor<R> {
        CtrDecryptor {
            inner,
            cipher: Aes256Ctr::new(self.key[..].into(), (&self.nonce).into()),
        }
    }
}

/// AES-256-CTR over a stream. CTR is its own inverse, and needs no
/// buffering: each byte read is decrypted in place.
pub struct CtrDecryptor<R> {
    inner: R,
    cipher: Aes256Ctr,
}

impl<R: Read> Read for CtrDecryptor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.cipher.apply_keystream(&mut buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::path::PathBuf;

    use hmac::Mac;

    use super::*;

    fn td(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/ocicrypt")
            .join(name)
    }

    /// The skopeo-encrypted test layer: annotations, blob, diff_id.
    fn layer() -> (BTreeMap<String, String>, Vec<u8>, Sha256Digest) {
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(td("layer.json")).unwrap()).unwrap();
        let ann = serde_json::from_value(j["descriptor"]["annotations"].clone()).unwrap();
        let diff_id = Sha256Digest::parse(j["diff_id"].as_str().unwrap()).unwrap();
        (ann, std::fs::read(td("layer.blob")).unwrap(), diff_id)
    }

    fn ring(names: &[&str]) -> KeyRing {
        let mut r = KeyRing::new();
        for n in names {
            r.add_pem_file(&td(n)).unwrap();
        }
        r
    }

    #[test]
    fn every_recipient_key_unwraps_and_decrypts_the_layer() {
        let (ann, blob, diff_id) = layer();
        let info = EncryptionInfo::from_annotations(Some(&ann)).unwrap();
        for key in ["rsa.pem", "rsa-pkcs1.pem", "ec384.pem"] {
            let k = info.unwrap(&ring(&["other.pem", key])).unwrap();
            let mut mac = k.hmac_state();
            mac.update(&blob);
            mac.verify_slice(&k.hmac).expect("HMAC over the ciphertext");
            let mut tar = Vec::new();
            flate2::read::GzDecoder::new(k.decryptor(&blob[..]))
                .read_to_end(&mut tar)
                .unwrap();
            assert_eq!(Sha256Digest::of(&tar), diff_id, "{key}");
            let mut r = crate::tar::TarReader::new(&tar[..], Default::default());
            let mut found = false;
            while let Some(e) = r.next_entry().unwrap() {
                if e.path.ends_with(b"hello.txt") {
                    let mut buf = [0u8; 64];
                    let n = r.read_data(&mut buf).unwrap();
                    assert_eq!(&buf[..n], b"hello from an encrypted layer\n");
                    found = true;
                }
            }
            assert!(found, "{key}");
        }
    }

    #[test]
    fn a_key_that_is_not_a_recipient_is_refused() {
        let (ann, _, _) = layer();
        let info = EncryptionInfo::from_annotations(Some(&ann)).unwrap();
        match info.unwrap(&ring(&["other.pem"])) {
            Err(OcicryptError::Jwe(JweError::NoMatchingKey {
                keys: 1,
                recipients: 3,
                algs,
                ..
            })) => assert_eq!(algs, "RSA-OAEP, RSA-OAEP, ECDH-ES+A256KW"),
            other => panic!("expected NoMatchingKey, got {:?}", other.err()),
        }
        assert!(matches!(
            info.unwrap(&KeyRing::new()),
            Err(OcicryptError::NoKeys)
        ));
    }

    #[test]
    fn a_modified_jwe_is_refused() {
        let (mut ann, _, _) = layer();
        let jwe = STANDARD.decode(&ann[ANNOTATION_KEYS_JWE]).unwrap();
        let mut j: serde_json::Value = serde_json::from_slice(&jwe).unwrap();
        let ct = j["ciphertext"].as_str().unwrap().to_string();
        let flipped = if ct.starts_with('A') { "B" } else { "A" };
        j["ciphertext"] = format!("{flipped}{}", &ct[1..]).into();
        ann.insert(
            ANNOTATION_KEYS_JWE.into(),
            STANDARD.encode(serde_json::to_vec(&j).unwrap()),
        );
        let info = EncryptionInfo::from_annotations(Some(&ann)).unwrap();
        assert!(matches!(
            info.unwrap(&ring(&["rsa.pem"])),
            Err(OcicryptError::Jwe(JweError::Payload))
        ));
    }

    #[test]
    fn annotation_problems_are_named() {
        let (ann, _, _) = layer();
        let mut no_keys = ann.clone();
        no_keys.remove(ANNOTATION_KEYS_JWE);
        no_keys.insert("org.opencontainers.image.enc.keys.pgp".into(), "x".into());
        let err = EncryptionInfo::from_annotations(Some(&no_keys)).unwrap_err();
        assert!(err.to_string().contains("keys.pgp"), "{err}");

        let mut other_cipher = ann.clone();
        other_cipher.insert(
            ANNOTATION_PUBOPTS.into(),
            STANDARD.encode(br#"{"cipher":"AES_128_GCM","hmac":"","cipheroptions":{}}"#),
        );
        assert!(matches!(
            EncryptionInfo::from_annotations(Some(&other_cipher)),
            Err(OcicryptError::UnsupportedCipher(_))
        ));
        assert!(matches!(
            EncryptionInfo::from_annotations(None),
            Err(OcicryptError::NoJweKeys(_))
        ));
    }
}
