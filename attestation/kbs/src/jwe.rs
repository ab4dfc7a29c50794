//! Resources leave the KBS encrypted to the TEE key from the attestation, as a
//! flattened JWE (kbs-types `Response`), the way Trustee's KBS and client do it:
//!
//! * EC P-256 key (`"alg": "ECDH-ES+A256KW"`): an ephemeral P-256 key agrees a
//!   secret with the TEE key; Concat KDF (RFC 7518 §4.6.2: SHA-256, AlgorithmID
//!   "ECDH-ES+A256KW", empty PartyUInfo/PartyVInfo, 256 bits) derives the key that
//!   AES-KW-wraps the content key; the header carries the ephemeral key as `epk`.
//! * RSA key (`"alg": "RSA-OAEP-256"`): the content key is RSA-OAEP (SHA-256)
//!   encrypted. RSA1_5 is refused.
//!
//! Either way the content is AES-256-GCM (`"enc": "A256GCM"`) under a fresh
//! 256-bit key and 96-bit IV, with AAD = BASE64URL(protected header), RFC 7516.
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kbs_types::{ProtectedHeader, Response, TeePubKey};
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use rand_core::{OsRng, RngCore};
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
pub const RSA_OAEP_256: &str = "RSA-OAEP-256";
pub const A256GCM: &str = "A256GCM";

/// Concat KDF (NIST SP 800-56A as profiled by RFC 7518 §4.6.2), one SHA-256
/// round, so for keys of at most 256 bits.
pub fn concat_kdf(z: &[u8], alg: &str, apu: &[u8], apv: &[u8], bits: u32) -> Zeroizing<Vec<u8>> {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    for field in [alg.as_bytes(), apu, apv] {
        h.update((field.len() as u32).to_be_bytes());
        h.update(field);
    }
    h.update(bits.to_be_bytes());
    let mut out = h.finalize().to_vec();
    out.truncate((bits.min(256) / 8) as usize);
    Zeroizing::new(out)
}

/// The AES-KW key for ECDH-ES+A256KW.
pub fn ecdh_es_a256kw_kek(z: &[u8]) -> Zeroizing<[u8; 32]> {
    let k = concat_kdf(z, ECDH_ES_A256KW, &[], &[], 256);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&k);
    out
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("tee-pubkey {what} is not base64url: {e}"))
}

/// Encrypts `payload` to the TEE key.
pub fn encrypt(key: &TeePubKey, payload: &[u8]) -> Result<Response, String> {
    let mut cek = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(cek.as_mut());
    let (protected, encrypted_key) = match key {
        TeePubKey::EC { crv, alg, x, y } => {
            if alg != ECDH_ES_A256KW || crv != "P-256" {
                return Err(format!(
                    "tee-pubkey: expected EC P-256 with alg {ECDH_ES_A256KW} or RSA with alg {RSA_OAEP_256}, got EC {crv} with alg {alg}"
                ));
            }
            let (x, y) = (b64(x, "x")?, b64(y, "y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err(format!(
                    "tee-pubkey: P-256 coordinates must be 32 bytes, got {} and {}",
                    x.len(),
                    y.len()
                ));
            }
            let point = p256::EncodedPoint::from_affine_coordinates(
                x.as_slice().into(),
                y.as_slice().into(),
                false,
            );
            let tee = Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&point))
                .ok_or("tee-pubkey: not a point on P-256")?;
            let eph = p256::ecdh::EphemeralSecret::random(&mut OsRng);
            let shared = eph.diffie_hellman(&tee);
            let kek = ecdh_es_a256kw_kek(shared.raw_secret_bytes());
            let wrapped = aes_kw::KekAes256::from(*kek)
                .wrap_vec(cek.as_ref())
                .map_err(|e| format!("AES key wrap: {e:?}"))?;
            let epk = eph.public_key().to_encoded_point(false);
            let (ex, ey) = (
                epk.x().ok_or("ephemeral key without x")?,
                epk.y().ok_or("ephemeral key without y")?,
            );
            let header = ProtectedHeader {
                alg: ECDH_ES_A256KW.into(),
                enc: A256GCM.into(),
                other_fields: json!({"epk": {"crv": "P-256", "kty": "EC", "x": URL_SAFE_NO_PAD.encode(ex), "y": URL_SAFE_NO_PAD.encode(ey)}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            };
            (header, wrapped)
        }
        TeePubKey::RSA { alg, k_mod, k_exp } => {
            if alg != RSA_OAEP_256 {
                return Err(format!(
                    "tee-pubkey: RSA alg must be {RSA_OAEP_256}, got {alg}"
                ));
            }
            let n = rsa::BigUint::from_bytes_be(&b64(k_mod, "n")?);
            let e = rsa::BigUint::from_bytes_be(&b64(k_exp, "e")?);
            let key = rsa::RsaPublicKey::new(n, e)
                .map_err(|e| format!("tee-pubkey: invalid RSA key: {e}"))?;
            if rsa::traits::PublicKeyParts::size(&key) < 256 {
                return Err("tee-pubkey: RSA keys must have at least 2048 bits".into());
            }
            let enc = key
                .encrypt(&mut OsRng, rsa::Oaep::new::<Sha256>(), cek.as_ref())
                .map_err(|e| format!("RSA-OAEP: {e}"))?;
            (
                ProtectedHeader {
                    alg: RSA_OAEP_256.into(),
                    enc: A256GCM.into(),
                    other_fields: Default::default(),
                },
                enc,
            )
        }
        TeePubKey::AKP { alg, .. } => {
            return Err(format!("tee-pubkey: AKP keys ({alg}) are not supported"))
        }
    };
    let aad = protected
        .generate_aad()
        .map_err(|e| format!("JWE header: {e}"))?;
    let mut iv = [0u8; 12];
    OsRng.fill_bytes(&mut iv);
    let mut ciphertext = payload.to_vec();
    let tag = Aes256Gcm::new_from_slice(cek.as_ref())
        .map_err(|e| format!("AES-GCM key: {e}"))?
        .encrypt_in_place_detached(Nonce::from_slice(&iv), &aad, &mut ciphertext)
        .map_err(|e| format!("AES-GCM: {e}"))?;
    Ok(Response {
        protected,
        encrypted_key,
        aad: None,
        iv: iv.to_vec(),
        ciphertext,
        tag: tag.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_matches_rfc7518_appendix_c() {
        let z = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let k = concat_kdf(&z, "A128GCM", b"Alice", b"Bob", 128);
        assert_eq!(URL_SAFE_NO_PAD.encode(&*k), "VqqN6vgjbSBcIijNcacQGg");
    }

    #[test]
    fn refuses_unsupported_keys() {
        let e = encrypt(
            &TeePubKey::RSA {
                alg: "RSA1_5".into(),
                k_mod: "AQAB".into(),
                k_exp: "AQAB".into(),
            },
            b"x",
        )
        .unwrap_err();
        assert!(e.contains("RSA-OAEP-256"), "{e}");
        let e = encrypt(
            &TeePubKey::EC {
                crv: "P-256".into(),
                alg: ECDH_ES_A256KW.into(),
                x: "AA".into(),
                y: "AA".into(),
            },
            b"x",
        )
        .unwrap_err();
        assert!(e.contains("32 bytes"), "{e}");
    }
}
