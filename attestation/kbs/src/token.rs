//! Attestation tokens: after a successful attestation the KBS signs a JWT (ES256)
//! with the claims, the TEE public key and an expiry, as Trustee's KBS does. A
//! client may later present it as `Authorization: Bearer <token>` instead of the
//! session cookie. The signing key is generated on first start and kept in the
//! state directory (`token-key.pem`), so tokens survive a restart.
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kbs_types::TeePubKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// The issuer claim.
pub const ISSUER: &str = "cloister-kbs";

/// What a token says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
    /// `snp`, `tdx` or `sim`.
    pub tee: String,
    /// The verified claims (cloister_evidence::VerifiedClaims as JSON).
    pub claims: serde_json::Value,
    #[serde(rename = "tee-pubkey")]
    pub tee_pubkey: TeePubKey,
}

/// Signs and checks tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("token key {0}")]
    Key(String),
    #[error("token: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenKeys {
    /// Loads `token-key.pem`, creating it on first use.
    pub fn load_or_create(store: &Store) -> Result<TokenKeys, TokenError> {
        // One crypto backend is compiled in; say so explicitly in case another
        // crate in the build enables a second one.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let pem = match store.get("token-key.pem")? {
            Some(p) => String::from_utf8(p)
                .map_err(|_| TokenError::Key("token-key.pem is not UTF-8".into()))?,
            None => {
                let key = p256::SecretKey::random(&mut rand_core::OsRng);
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| TokenError::Key(e.to_string()))?
                    .to_string();
                crate::store::write_atomic(&store.path("token-key.pem"), pem.as_bytes(), true)?;
                pem
            }
        };
        let secret = p256::SecretKey::from_pkcs8_pem(&pem)
            .map_err(|e| TokenError::Key(format!("token-key.pem: {e}")))?;
        let public_pem = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(TokenKeys {
            encoding: EncodingKey::from_ec_pem(pem.as_bytes())?,
            decoding: DecodingKey::from_ec_pem(public_pem.as_bytes())?,
            public_pem,
        })
    }

    /// The public key that verifies tokens (PEM), for relying parties.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    pub fn issue(&self, claims: &TokenClaims) -> Result<String, TokenError> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            claims,
            &self.encoding,
        )?)
    }

    /// Checks signature, issuer and expiry (no leeway).
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[ISSUER]);
        v.leeway = 0;
        Ok(jsonwebtoken::decode::<TokenClaims>(token, &self.decoding, &v)?.claims)
    }
}
