//! JWE (RFC 7516) decryption, restricted to what ocicrypt's `jwe` key
//! wrapper writes (it uses go-jose):
//! - JSON serialization, flattened (one recipient) or general
//!   (`recipients`, one per public key);
//! - key management `RSA-OAEP` (SHA-1, what skopeo 1.9 writes for RSA
//!   keys), `RSA-OAEP-256`, and `ECDH-ES+A128KW`/`ECDH-ES+A256KW` (for EC
//!   keys; go-jose uses A256KW for P-256..P-521);
//! - content encryption `A256GCM` only, which is what ocicrypt writes.
//!
//! Written by hand because the one complete Rust JOSE crate (josekit)
//! needs OpenSSL; this is the small subset above on aws-lc-rs + aes-gcm.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::agreement;
use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_128, AES_256};
use aws_lc_rs::rsa::{OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::keys::{KeyMaterial, KeyRing};

#[derive(Debug, thiserror::Error)]
pub enum JweError {
    #[error("JWE is not valid JSON serialization: {0}")]
    Format(String),
    #[error("JWE content encryption {0:?} is not supported (expected A256GCM)")]
    UnsupportedEnc(String),
    #[error("JWE uses compression {0:?}, which is not supported")]
    UnsupportedZip(String),
    #[error(
        "none of the {keys} decryption key(s) [{names}] can unwrap any of the {recipients} \
         recipient(s) ({algs})"
    )]
    NoMatchingKey {
        keys: usize,
        names: String,
        recipients: usize,
        algs: String,
    },
    #[error("JWE payload failed to decrypt with the unwrapped key (tag mismatch)")]
    Payload,
}

#[derive(Deserialize)]
struct JweJson {
    protected: Option<String>,
    unprotected: Option<Map<String, Value>>,
    header: Option<Map<String, Value>>,
    encrypted_key: Option<String>,
    recipients: Option<Vec<Recipient>>,
    iv: String,
    ciphertext: String,
    tag: String,
    aad: Option<String>,
}

#[derive(Deserialize)]
struct Recipient {
    header: Option<Map<String, Value>>,
    encrypted_key: Option<String>,
}

fn b64(field: &str, s: &str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| JweError::Format(format!("{field} is not base64url: {e}")))
}

/// Decrypts a JWE with the first key in `keys` that unwraps a recipient's
/// content key, and returns the payload.
pub fn decrypt(jwe: &[u8], keys: &KeyRing) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let j: JweJson = serde_json::from_slice(jwe).map_err(|e| JweError::Format(e.to_string()))?;
    let protected_b64 = j.protected.clone().unwrap_or_default();
    let mut shared = Map::new();
    if !protected_b64.is_empty() {
        let raw = b64("protected", &protected_b64)?;
        let v: Map<String, Value> = serde_json::from_slice(&raw)
            .map_err(|e| JweError::Format(format!("protected header: {e}")))?;
        shared.extend(v);
    }
    if let Some(u) = &j.unprotected {
        shared.extend(u.clone());
    }
    let recipients: Vec<Recipient> = match j.recipients {
        Some(r) if !r.is_empty() => r,
        _ => vec![Recipient {
            header: j.header.clone(),
            encrypted_key: j.encrypted_key.clone(),
        }],
    };
    let enc = shared
        .get("enc")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if enc != "A256GCM" {
        return Err(JweError::UnsupportedEnc(enc));
    }
    if let Some(zip) = shared.get("zip") {
        return Err(JweError::UnsupportedZip(zip.to_string()));
    }
    let iv = b64("iv", &j.iv)?;
    let ciphertext = b64("ciphertext", &j.ciphertext)?;
    let tag = b64("tag", &j.tag)?;
    if iv.len() != 12 || tag.len() != 16 {
        return Err(JweError::Format(format!(
            "A256GCM needs a 12-byte iv and 16-byte tag, got {} and {}",
            iv.len(),
            tag.len()
        )));
    }
    let mut aad = protected_b64.into_bytes();
    if let Some(extra) = &j.aad {
        aad.push(b'.');
        aad.extend_from_slice(extra.as_bytes());
    }
    let mut sealed = ciphertext;
    sealed.extend_from_slice(&tag);

    let mut algs = Vec::new();
    for r in &recipients {
        let mut header = shared.clone();
        if let Some(h) = &r.header {
            header.extend(h.clone());
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or("(none)")
            .to_string();
        let Some(ek) = &r.encrypted_key else {
            algs.push(alg);
            continue;
        };
        let ek = b64("encrypted_key", ek)?;
        for key in &keys.keys {
            let Some(cek) = unwrap_cek(&alg, &header, &ek, &key.material) else {
                continue;
            };
            let cipher = Aes256Gcm::new_from_slice(&cek)
                .map_err(|_| JweError::Format("unwrapped content key is not 32 bytes".into()))?;
            let plain = cipher
                .decrypt(
                    Nonce::from_slice(&iv),
                    Payload {
                        msg: &sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| JweError::Payload)?;
            tracing::debug!(key = %key.name, alg, "unwrapped layer key");
            return Ok(Zeroizing::new(plain));
        }
        algs.push(alg);
    }
    Err(JweError::NoMatchingKey {
        keys: keys.keys.len(),
        names: keys.names().join(", "),
        recipients: recipients.len(),
        algs: algs.join(", "),
    })
}

/// Unwraps the content key for one recipient with one key; `None` when the
/// key does not fit (wrong type, wrong curve, or decryption fails).
fn unwrap_cek(
    alg: &str,
    header: &Map<String, Value>,
    encrypted_key: &[u8],
    key: &KeyMaterial,
) -> Option<Zeroizing<Vec<u8>>> {
    match (alg, key) {
        ("RSA-OAEP" | "RSA-OAEP-256", KeyMaterial::Rsa(k)) => {
            let oaep = if alg == "RSA-OAEP" {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            let mut out = Zeroizing::new(vec![0u8; k.min_output_size()]);
            let n = k.decrypt(oaep, encrypted_key, &mut out, None).ok()?.len();
            out.truncate(n);
            Some(out)
        }
        (
            "ECDH-ES+A128KW" | "ECDH-ES+A256KW",
            KeyMaterial::Ec {
                curve,
                alg: ec_alg,
                key,
            },
        ) => {
            let epk = header.get("epk")?.as_object()?;
            if epk.get("kty")?.as_str()? != "EC" || epk.get("crv")?.as_str()? != *curve {
                return None;
            }
            let coord_len = match *curve {
                "P-256" => 32,
                "P-384" => 48,
                _ => 66,
            };
            let x = URL_SAFE_NO_PAD.decode(epk.get("x")?.as_str()?).ok()?;
            let y = URL_SAFE_NO_PAD.decode(epk.get("y")?.as_str()?).ok()?;
            if x.len() != coord_len || y.len() != coord_len {
                return None;
            }
            let mut point = vec![0x04];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let peer = agreement::UnparsedPublicKey::new(ec_alg, point);
            let (kw, kek_len) = match alg {
                "ECDH-ES+A128KW" => (&AES_128, 16),
                _ => (&AES_256, 32),
            };
            let apu = header_b64(header, "apu")?;
            let apv = header_b64(header, "apv")?;
            let kek = agreement::agree(key, peer, (), |z| {
                Ok(concat_kdf(z, alg.as_bytes(), &apu, &apv, kek_len))
            })
            .ok()?;
            let kek = AesKek::new(kw, &kek).ok()?;
            let mut out = Zeroizing::new(vec![0u8; encrypted_key.len()]);
            let n = kek.unwrap(encrypted_key, &mut out).ok()?.len();
            out.truncate(n);
            Some(out)
        }
        _ => None,
    }
}

/// An optional base64url header parameter (`apu`, `apv`); `None` only if
/// present but malformed.
fn header_b64(header: &Map<String, Value>, name: &str) -> Option<Vec<u8>> {
    match header.get(name) {
        None => Some(Vec::new()),
        Some(v) => URL_SAFE_NO_PAD.decode(v.as_str()?).ok(),
    }
}

/// The Concat KDF of NIST SP 800-56A as RFC 7518 §4.6.2 uses it for
/// ECDH-ES with key wrapping: AlgorithmID is the `alg` value.
fn concat_kdf(z: &[u8], alg: &[u8], apu: &[u8], apv: &[u8], out_len: usize) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(out_len + 32));
    let mut counter: u32 = 1;
    while out.len() < out_len {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        for part in [alg, apu, apv] {
            h.update((part.len() as u32).to_be_bytes());
            h.update(part);
        }
        h.update(((out_len * 8) as u32).to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(out_len);
    out
}
