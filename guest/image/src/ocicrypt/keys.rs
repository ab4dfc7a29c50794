//! Private keys that can unwrap layer keys: RSA (for `RSA-OAEP`,
//! `RSA-OAEP-256`) and EC P-256/P-384/P-521 (for `ECDH-ES+A*KW`), loaded
//! from PEM given by the caller (files today, the KBS later).
//!
//! The private-key operations run in aws-lc (through aws-lc-rs, already in
//! the build as rustls' provider), whose RSA decryption is constant-time;
//! the `rsa` crate 0.9 is not (RUSTSEC-2023-0071), and in a confidential
//! guest the host is exactly the party that can time us.

use std::path::Path;

use aws_lc_rs::agreement;
use aws_lc_rs::rsa::{OaepPrivateDecryptingKey, PrivateDecryptingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading key {name}")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key {name} is not a PEM private key (PKCS#1, PKCS#8 or SEC1): {reason}")]
    Pem { name: String, reason: String },
    #[error("key {name} was rejected: {reason}")]
    Rejected { name: String, reason: String },
}

pub(crate) enum KeyMaterial {
    Rsa(OaepPrivateDecryptingKey),
    Ec {
        curve: &'static str,
        alg: &'static agreement::Algorithm,
        key: agreement::PrivateKey,
    },
}

pub(crate) struct DecryptionKey {
    pub name: String,
    pub material: KeyMaterial,
}

/// The decryption keys available to a pull.
#[derive(Default)]
pub struct KeyRing {
    pub(crate) keys: Vec<DecryptionKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.name))
            .finish()
    }
}

impl KeyRing {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Names of the loaded keys (for messages; never the key material).
    pub fn names(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.name.clone()).collect()
    }

    pub fn add_pem_file(&mut self, path: &Path) -> Result<(), KeyError> {
        let name = path.display().to_string();
        let pem =
            zeroize::Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Read {
                name: name.clone(),
                source,
            })?);
        self.add_pem(&name, &pem)
    }

    /// Adds a PEM private key; `name` labels it in messages.
    pub fn add_pem(&mut self, name: &str, pem: &[u8]) -> Result<(), KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| KeyError::Pem {
            name: name.into(),
            reason: e.to_string(),
        })?;
        let rejected = |reason: String| KeyError::Rejected {
            name: name.into(),
            reason,
        };
        let material = match &der {
            PrivateKeyDer::Pkcs1(k) => {
                let pkcs8 = zeroize::Zeroizing::new(rsa_pkcs1_to_pkcs8(k.secret_pkcs1_der()));
                rsa_key(&pkcs8).map_err(rejected)?
            }
            PrivateKeyDer::Pkcs8(k) => {
                let bytes = k.secret_pkcs8_der();
                match rsa_key(bytes) {
                    Ok(m) => m,
                    Err(rsa_err) => ec_key(bytes).map_err(|ec_err| {
                        rejected(format!("not RSA ({rsa_err}) nor EC ({ec_err})"))
                    })?,
                }
            }
            PrivateKeyDer::Sec1(k) => ec_key(k.secret_sec1_der()).map_err(rejected)?,
            _ => return Err(rejected("unsupported private key format".into())),
        };
        self.keys.push(DecryptionKey {
            name: name.into(),
            material,
        });
        Ok(())
    }
}

fn rsa_key(pkcs8: &[u8]) -> Result<KeyMaterial, String> {
    let key = PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|e| e.to_string())?;
    let key = OaepPrivateDecryptingKey::new(key).map_err(|e| e.to_string())?;
    Ok(KeyMaterial::Rsa(key))
}

fn ec_key(der: &[u8]) -> Result<KeyMaterial, String> {
    for (curve, alg) in [
        ("P-256", &agreement::ECDH_P256),
        ("P-384", &agreement::ECDH_P384),
        ("P-521", &agreement::ECDH_P521),
    ] {
        if let Ok(key) = agreement::PrivateKey::from_private_key_der(alg, der) {
            return Ok(KeyMaterial::Ec { curve, alg, key });
        }
    }
    Err("not a P-256, P-384 or P-521 key".into())
}

/// Wraps a PKCS#1 RSAPrivateKey in a PKCS#8 PrivateKeyInfo, since aws-lc-rs
/// reads RSA decryption keys only as PKCS#8 and `openssl genrsa -traditional`
/// (and older OpenSSL) write PKCS#1. A few lines of DER beat a dependency.
fn rsa_pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }
    const ALG_ID: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut body = vec![0x02, 0x01, 0x00]; // version INTEGER 0
    body.extend_from_slice(&ALG_ID);
    body.push(0x04); // OCTET STRING
    der_len(&mut body, pkcs1.len());
    body.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    zeroize::Zeroize::zeroize(&mut body);
    out
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_with_name() {
        let mut ring = KeyRing::new();
        let err = ring.add_pem("k.pem", b"not a key").unwrap_err();
        assert!(err.to_string().contains("k.pem"), "{err}");
        assert!(ring.is_empty());
    }

    #[test]
    fn der_length_encoding() {
        let mut v = Vec::new();
        der_len(&mut v, 0x7f);
        der_len(&mut v, 0x80);
        der_len(&mut v, 0x1234);
        assert_eq!(v, [0x7f, 0x81, 0x80, 0x82, 0x12, 0x34]);
    }
}
