//! Cosign keys: public keys from the policy (PEM SubjectPublicKeyInfo), and
//! signing keys in cosign's encrypted format (`ENCRYPTED SIGSTORE PRIVATE
//! KEY` / `ENCRYPTED COSIGN PRIVATE KEY`: JSON with scrypt parameters and a
//! nacl secretbox holding the PKCS#8 key). The `sigstore` crate implements
//! the formats and the signature algorithms; this module adds the names and
//! fingerprints that messages show, and clear errors.

use base64::Engine;
use sha2::{Digest, Sha256};
use sigstore::crypto::signing_key::{
    kdf, SigStoreKeyPair, SigStoreSigner, COSIGN_PRIVATE_KEY_PEM_LABEL, PRIVATE_KEY_PEM_LABEL,
    SIGSTORE_PRIVATE_KEY_PEM_LABEL,
};
use sigstore::crypto::{CosignVerificationKey, Signature, SigningScheme};
use zeroize::Zeroizing;

use crate::error::SignatureError;
use crate::policy::KeySource;

/// The PEM label of a public key.
const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";

/// A public key that signatures are checked against.
pub struct PublicKey {
    key: CosignVerificationKey,
    description: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of the DER
/// SubjectPublicKeyInfo: short enough to read, long enough to tell keys
/// apart in a message.
pub fn fingerprint(spki_der: &[u8]) -> String {
    let h = hex::encode(Sha256::digest(spki_der));
    format!("sha256:{}", &h[..16])
}

impl PublicKey {
    /// Parses a PEM public key; `origin` (a path, a policy field) names it in
    /// messages.
    pub fn from_pem(pem_bytes: &[u8], origin: &str) -> Result<Self, SignatureError> {
        let bad = |reason: String| SignatureError::PublicKey {
            key: origin.to_string(),
            reason,
        };
        let p = pem::parse(pem_bytes).map_err(|e| bad(format!("not PEM: {e}")))?;
        if p.tag() != PUBLIC_KEY_LABEL {
            return Err(bad(format!(
                "PEM label is {:?}, expected {PUBLIC_KEY_LABEL:?}",
                p.tag()
            )));
        }
        let key = CosignVerificationKey::try_from_der(p.contents())
            .map_err(|e| bad(format!("unsupported or malformed public key: {e}")))?;
        Ok(Self {
            key,
            description: format!("{origin} ({})", fingerprint(p.contents())),
        })
    }

    /// Reads the key a policy names.
    pub fn load(source: &KeySource) -> Result<Self, SignatureError> {
        match source {
            KeySource::Path(path) => {
                let pem = std::fs::read(path).map_err(|e| SignatureError::PublicKey {
                    key: path.display().to_string(),
                    reason: format!("cannot read: {e}"),
                })?;
                Self::from_pem(&pem, &path.display().to_string())
            }
            KeySource::Data { label, pem } => Self::from_pem(pem, label),
        }
    }

    /// Where the key came from and its fingerprint.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether `signature_b64` (base64, as in cosign's annotation) is a valid
    /// signature of `payload` by this key.
    pub fn verify(&self, signature_b64: &str, payload: &[u8]) -> bool {
        self.key
            .verify_signature(Signature::Base64Encoded(signature_b64.as_bytes()), payload)
            .is_ok()
    }
}

/// A private key to sign with.
pub struct SigningKey {
    pair: SigStoreKeyPair,
    signer: SigStoreSigner,
    public_pem: String,
}

impl SigningKey {
    /// Reads a cosign private key: encrypted (`ENCRYPTED SIGSTORE PRIVATE
    /// KEY`, `ENCRYPTED COSIGN PRIVATE KEY`) with `password` (may be empty),
    /// or a plain PKCS#8 `PRIVATE KEY`. `origin` names it in messages.
    pub fn from_pem(
        pem_bytes: &[u8],
        password: &[u8],
        origin: &str,
    ) -> Result<Self, SignatureError> {
        let bad = |reason: String| SignatureError::SigningKey {
            key: origin.to_string(),
            reason,
        };
        let p = pem::parse(pem_bytes).map_err(|e| bad(format!("not PEM: {e}")))?;
        let der = match p.tag() {
            SIGSTORE_PRIVATE_KEY_PEM_LABEL | COSIGN_PRIVATE_KEY_PEM_LABEL => Zeroizing::new(
                kdf::decrypt(p.contents(), password)
                    .map_err(|e| bad(format!("cannot decrypt (wrong password?): {e}")))?,
            ),
            PRIVATE_KEY_PEM_LABEL => Zeroizing::new(p.contents().to_vec()),
            other => {
                return Err(bad(format!(
                    "PEM label is {other:?}, expected {SIGSTORE_PRIVATE_KEY_PEM_LABEL:?}"
                )))
            }
        };
        let pair = SigStoreKeyPair::from_der(&der)
            .map_err(|e| bad(format!("not a PKCS#8 ECDSA or Ed25519 key: {e}")))?;
        Self::from_pair(pair).map_err(bad)
    }

    /// Generates an ECDSA P-256 key (cosign's default).
    pub fn generate() -> Result<Self, SignatureError> {
        let bad = |reason: String| SignatureError::SigningKey {
            key: "new key".into(),
            reason,
        };
        let pair = SigningScheme::ECDSA_P256_SHA256_ASN1
            .create_signer()
            .and_then(|s| s.to_sigstore_keypair())
            .map_err(|e| bad(format!("generating: {e}")))?;
        Self::from_pair(pair).map_err(bad)
    }

    fn from_pair(pair: SigStoreKeyPair) -> Result<Self, String> {
        let signer = [
            SigningScheme::ECDSA_P256_SHA256_ASN1,
            SigningScheme::ECDSA_P384_SHA384_ASN1,
            SigningScheme::ED25519,
        ]
        .iter()
        .find_map(|scheme| pair.to_sigstore_signer(scheme).ok())
        .ok_or_else(|| {
            format!("{pair} is not supported for signing (use ECDSA P-256, P-384 or Ed25519)")
        })?;
        let public_pem = pair
            .public_key_to_pem()
            .map_err(|e| format!("cannot export the public key: {e}"))?
            .replace("\r\n", "\n");
        Ok(Self {
            pair,
            signer,
            public_pem,
        })
    }

    /// The private key in cosign's encrypted format (`ENCRYPTED SIGSTORE
    /// PRIVATE KEY`), protected by `password` (may be empty).
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<Zeroizing<String>, SignatureError> {
        let pem = self
            .pair
            .private_key_to_encrypted_pem(password)
            .map_err(|e| SignatureError::SigningKey {
                key: "export".into(),
                reason: format!("encrypting: {e}"),
            })?;
        // sigstore's PEM has CRLF line ends; cosign's files have LF.
        Ok(Zeroizing::new(pem.replace("\r\n", "\n")))
    }

    /// Signs `payload`; returns the base64 signature cosign stores in the
    /// `dev.cosignproject.cosign/signature` annotation.
    pub fn sign(&self, payload: &[u8]) -> Result<String, SignatureError> {
        let sig = self
            .signer
            .sign(payload)
            .map_err(|e| SignatureError::SigningKey {
                key: "signing".into(),
                reason: e.to_string(),
            })?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sig))
    }

    /// The matching public key, PEM.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }
}

/// A freshly generated key pair, in the files `cosign generate-key-pair`
/// writes.
pub struct GeneratedKeyPair {
    /// `-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----`.
    pub private_pem: Zeroizing<String>,
    /// `-----BEGIN PUBLIC KEY-----`.
    pub public_pem: String,
}

/// Generates an ECDSA P-256 key pair (cosign's default) and encrypts the
/// private key with `password` (which may be empty, as cosign allows).
pub fn generate_key_pair(password: &[u8]) -> Result<GeneratedKeyPair, SignatureError> {
    let key = SigningKey::generate()?;
    Ok(GeneratedKeyPair {
        private_pem: key.to_encrypted_pem(password)?,
        public_pem: key.public_key_pem().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key that Go cosign generated with an empty password (from
    /// sigstore-rs' test data, see testdata/README.md).
    const COSIGN_KEY: &[u8] =
        include_bytes!("../testdata/cosign_generated_encrypted_empty_private.key");

    #[test]
    fn generated_pair_round_trips() {
        let pair = generate_key_pair(b"pw").unwrap();
        assert!(pair
            .private_pem
            .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
        assert!(pair.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(!pair.private_pem.contains('\r') && !pair.public_pem.contains('\r'));
        let key = SigningKey::from_pem(pair.private_pem.as_bytes(), b"pw", "k").unwrap();
        assert_eq!(key.public_key_pem(), pair.public_pem);
        let public = PublicKey::from_pem(pair.public_pem.as_bytes(), "pub").unwrap();
        let sig = key.sign(b"payload").unwrap();
        assert!(public.verify(&sig, b"payload"));
        assert!(!public.verify(&sig, b"payloaD"));
        let e = SigningKey::from_pem(pair.private_pem.as_bytes(), b"wrong", "cosign.key")
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("cosign.key: cannot decrypt (wrong password?)"),
            "{e}"
        );
    }

    #[test]
    fn reads_a_key_made_by_go_cosign() {
        let key = SigningKey::from_pem(COSIGN_KEY, b"", "cosign.key").unwrap();
        let public = PublicKey::from_pem(key.public_key_pem().as_bytes(), "cosign.pub").unwrap();
        let sig = key.sign(b"x").unwrap();
        assert!(public.verify(&sig, b"x"));
    }

    #[test]
    fn public_key_errors_name_the_key() {
        let e = PublicKey::from_pem(b"junk", "/etc/k.pub").unwrap_err();
        assert!(
            e.to_string().starts_with("public key /etc/k.pub: not PEM"),
            "{e}"
        );
        let e = PublicKey::from_pem(COSIGN_KEY, "/etc/k.pub").unwrap_err();
        assert!(e.to_string().contains("expected \"PUBLIC KEY\""), "{e}");
    }

    #[test]
    fn fingerprint_is_stable() {
        let key = SigningKey::generate().unwrap();
        let a = PublicKey::from_pem(key.public_key_pem().as_bytes(), "a").unwrap();
        let b = PublicKey::from_pem(key.public_key_pem().as_bytes(), "b").unwrap();
        assert_eq!(a.description()[1..], b.description()[1..]);
        assert!(a.description().starts_with("a (sha256:"));
    }
}
