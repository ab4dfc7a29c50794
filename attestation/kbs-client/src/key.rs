//! The TEE key: generated in the guest for each client, sent to the KBS as a JWK
//! in the Attestation (and bound into REPORT_DATA), and used to decrypt the JWE
//! resources the KBS returns. EC P-256 with ECDH-ES+A256KW is the default: its
//! private-key operations are constant-time, unlike `rsa` 0.9's (RUSTSEC-2023-0071),
//! which matters where the host can time the guest. RSA-OAEP-256 (2048 bits) is
//! offered for KBSes that only speak RSA.
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kbs_types::TeePubKey;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const ECDH_ES_A256KW: &str = "ECDH-ES+A256KW";
pub const RSA_OAEP_256: &str = "RSA-OAEP-256";

/// Which kind of TEE key to generate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TeeKeyKind {
    #[default]
    EcP256,
    Rsa2048,
}

pub enum TeeKey {
    Ec(p256::SecretKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

#[derive(Deserialize)]
struct Epk {
    crv: String,
    x: String,
    y: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    enc: String,
    #[serde(default)]
    epk: Option<Epk>,
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("{what} is not base64url: {e}"))
}

/// Concat KDF (RFC 7518 §4.6.2) for ECDH-ES+A256KW: SHA-256, empty party info, 256 bits.
fn kek(z: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    h.update((ECDH_ES_A256KW.len() as u32).to_be_bytes());
    h.update(ECDH_ES_A256KW.as_bytes());
    h.update(0u32.to_be_bytes());
    h.update(0u32.to_be_bytes());
    h.update(256u32.to_be_bytes());
    Zeroizing::new(h.finalize().into())
}

impl TeeKey {
    pub fn generate(kind: TeeKeyKind) -> Result<TeeKey, String> {
        Ok(match kind {
            TeeKeyKind::EcP256 => TeeKey::Ec(p256::SecretKey::random(&mut OsRng)),
            TeeKeyKind::Rsa2048 => TeeKey::Rsa(Box::new(
                rsa::RsaPrivateKey::new(&mut OsRng, 2048)
                    .map_err(|e| format!("generating RSA key: {e}"))?,
            )),
        })
    }

    /// The public key as the JWK the Attestation carries.
    pub fn public(&self) -> TeePubKey {
        match self {
            TeeKey::Ec(k) => {
                let p = k.public_key().to_encoded_point(false);
                TeePubKey::EC {
                    crv: "P-256".into(),
                    alg: ECDH_ES_A256KW.into(),
                    x: URL_SAFE_NO_PAD.encode(p.x().map(|x| x.as_slice()).unwrap_or_default()),
                    y: URL_SAFE_NO_PAD.encode(p.y().map(|y| y.as_slice()).unwrap_or_default()),
                }
            }
            TeeKey::Rsa(k) => TeePubKey::RSA {
                alg: RSA_OAEP_256.into(),
                k_mod: URL_SAFE_NO_PAD.encode(k.n().to_bytes_be()),
                k_exp: URL_SAFE_NO_PAD.encode(k.e().to_bytes_be()),
            },
        }
    }

    /// Decrypts a flattened JWE (the KBS's resource response, as JSON).
    pub fn decrypt(&self, jwe_json: &[u8]) -> Result<Vec<u8>, String> {
        let v: serde_json::Value =
            serde_json::from_slice(jwe_json).map_err(|e| format!("not JSON: {e}"))?;
        let field = |name: &str| {
            v.get(name)
                .and_then(|f| f.as_str())
                .ok_or_else(|| format!("no {name:?} member"))
        };
        // The AAD is the protected header exactly as sent (RFC 7516 §5.2 step 14).
        let protected_b64 = field("protected")?;
        let header: Header = serde_json::from_slice(&b64(protected_b64, "protected")?)
            .map_err(|e| format!("protected header: {e}"))?;
        if header.enc != "A256GCM" {
            return Err(format!("enc: expected A256GCM, got {}", header.enc));
        }
        let encrypted_key = b64(field("encrypted_key")?, "encrypted_key")?;
        let cek: Zeroizing<Vec<u8>> = match (self, header.alg.as_str()) {
            (TeeKey::Ec(k), ECDH_ES_A256KW) => {
                let epk = header.epk.ok_or("ECDH-ES+A256KW header without epk")?;
                if epk.crv != "P-256" {
                    return Err(format!("epk crv: expected P-256, got {}", epk.crv));
                }
                let (x, y) = (b64(&epk.x, "epk x")?, b64(&epk.y, "epk y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("epk coordinates must be 32 bytes".into());
                }
                let point = p256::EncodedPoint::from_affine_coordinates(
                    x.as_slice().into(),
                    y.as_slice().into(),
                    false,
                );
                let epk =
                    Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&point))
                        .ok_or("epk is not a P-256 point")?;
                let shared = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), epk.as_affine());
                let kek = kek(shared.raw_secret_bytes());
                Zeroizing::new(
                    aes_kw::KekAes256::from(*kek)
                        .unwrap_vec(&encrypted_key)
                        .map_err(|_| {
                            "AES key unwrap failed (wrong key or tampered encrypted_key)"
                                .to_string()
                        })?,
                )
            }
            (TeeKey::Rsa(k), RSA_OAEP_256) => Zeroizing::new(
                k.decrypt(rsa::Oaep::new::<Sha256>(), &encrypted_key)
                    .map_err(|_| "RSA-OAEP decryption of the content key failed".to_string())?,
            ),
            (_, alg) => return Err(format!("alg {alg} does not match this TEE key")),
        };
        let iv = b64(field("iv")?, "iv")?;
        let tag = b64(field("tag")?, "tag")?;
        if iv.len() != 12 || tag.len() != 16 || cek.len() != 32 {
            return Err(format!(
                "A256GCM needs a 12-byte iv, 16-byte tag and 32-byte key; got {}, {}, {}",
                iv.len(),
                tag.len(),
                cek.len()
            ));
        }
        let mut plain = b64(field("ciphertext")?, "ciphertext")?;
        Aes256Gcm::new_from_slice(&cek)
            .map_err(|e| e.to_string())?
            .decrypt_in_place_detached(
                Nonce::from_slice(&iv),
                protected_b64.as_bytes(),
                &mut plain,
                tag.as_slice().into(),
            )
            .map_err(|_| {
                "AES-GCM authentication failed (tampered ciphertext, tag or header)".to_string()
            })?;
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_jwks_of_the_right_size() {
        let TeePubKey::EC { crv, alg, x, y } =
            TeeKey::generate(TeeKeyKind::EcP256).unwrap().public()
        else {
            panic!("not EC")
        };
        assert_eq!((crv.as_str(), alg.as_str()), ("P-256", ECDH_ES_A256KW));
        assert_eq!(
            (b64(&x, "x").unwrap().len(), b64(&y, "y").unwrap().len()),
            (32, 32)
        );
        let TeePubKey::RSA { alg, k_mod, k_exp } =
            TeeKey::generate(TeeKeyKind::Rsa2048).unwrap().public()
        else {
            panic!("not RSA")
        };
        assert_eq!(alg, RSA_OAEP_256);
        assert_eq!(b64(&k_mod, "n").unwrap().len(), 256);
        assert_eq!(b64(&k_exp, "e").unwrap(), [1, 0, 1]);
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let k = TeeKey::generate(TeeKeyKind::EcP256).unwrap();
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            br#"{"protected":"!!"}"#,
            br#"{"protected":"e30"}"#,
        ] {
            assert!(k.decrypt(bad).is_err());
        }
    }
}
