//! cloister-kbs: the tenant's key broker. It speaks Trustee's KBS protocol v0
//! (RCAR: `/kbs/v0/auth`, `/kbs/v0/attest`, `/kbs/v0/resource/<repo>/<type>/<tag>`)
//! over HTTPS, verifies evidence with `cloister-evidence` (SNP, TDX and, only with
//! `allow_sim`, the sim TEE), checks that REPORT_DATA binds its nonce and the TEE
//! key ([`binding`]), evaluates the tenant's Rego policies ([`policy`]), issues an
//! ES256 token ([`token`]), and releases resources encrypted to the TEE key
//! ([`jwe`]). Every refusal is an RFC 7807 problem ([`problem`]).
//!
//! A second listener serves the admin API ([`api::admin`]), authenticated by a
//! bearer token fixed at start; it sets resources, policies and reference values,
//! which are kept in the state directory ([`store`]) and survive restarts.
// Handlers return `Result<_, Problem>`: the problem is the response body of a
// refused request, built once per refusal, so boxing it would buy nothing.
#![allow(clippy::result_large_err)]

pub mod admin_client;
pub mod api;
pub mod binding;
pub mod evidence;
pub mod jwe;
pub mod policy;
pub mod problem;
pub mod server;
pub mod session;
pub mod store;
pub mod tls;
pub mod token;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloister_evidence::ReferenceValues;
use sha2::{Digest, Sha256};

use crate::policy::{Policy, PolicyKind, DEFAULT_ATTESTATION_POLICY, DEFAULT_RESOURCE_POLICY};
use crate::session::Sessions;
use crate::store::Store;
use crate::token::TokenKeys;

pub use server::{KbsServer, ServerConfig, TlsSource};

/// What the KBS is told at start (besides where to listen, see [`ServerConfig`]).
#[derive(Clone, Debug)]
pub struct KbsConfig {
    /// Where resources, policies, reference values and keys are kept.
    pub state_dir: PathBuf,
    /// The admin API's bearer token.
    pub admin_token: String,
    /// Accept sim evidence (development only).
    pub allow_sim: bool,
    /// The sim ARK certificate sim evidence must chain to (required with allow_sim).
    pub sim_ark: Option<Vec<u8>>,
    /// How long an `/auth` nonce may be used.
    pub nonce_ttl: Duration,
    /// How long a session (and its token) lasts.
    pub session_ttl: Duration,
}

impl KbsConfig {
    pub fn new(state_dir: PathBuf, admin_token: String) -> KbsConfig {
        KbsConfig {
            state_dir,
            admin_token,
            allow_sim: false,
            sim_ark: None,
            nonce_ttl: Duration::from_secs(60),
            session_ttl: Duration::from_secs(300),
        }
    }
}

/// The KBS could not start.
#[derive(Debug, thiserror::Error)]
pub enum KbsError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Token(#[from] token::TokenError),
    #[error("stored {file}: {detail}")]
    StoredState { file: &'static str, detail: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// The broker's state, shared by all requests.
pub struct Kbs {
    pub store: Store,
    pub sessions: Sessions,
    pub tokens: TokenKeys,
    pub attestation_policy: RwLock<Policy>,
    pub resource_policy: RwLock<Policy>,
    pub reference: RwLock<ReferenceValues>,
    pub allow_sim: bool,
    pub sim_ark: Option<Vec<u8>>,
    admin_token_sha256: [u8; 32],
}

fn load_policy(
    store: &Store,
    file: &'static str,
    kind: PolicyKind,
    default: &str,
) -> Result<Policy, KbsError> {
    let text = match store.get(file)? {
        Some(b) => String::from_utf8(b).map_err(|_| KbsError::StoredState {
            file,
            detail: "not UTF-8".into(),
        })?,
        None => default.to_string(),
    };
    Policy::compile(kind, &text).map_err(|e| KbsError::StoredState {
        file,
        detail: e.to_string(),
    })
}

impl Kbs {
    /// Opens the state directory and loads what was stored there.
    pub fn open(config: &KbsConfig) -> Result<Arc<Kbs>, KbsError> {
        if config.admin_token.trim().len() < 16 {
            return Err(KbsError::Config(
                "the admin token must be at least 16 characters".into(),
            ));
        }
        if config.allow_sim && config.sim_ark.is_none() {
            return Err(KbsError::Config(
                "allow_sim needs the sim ARK to pin (--sim-ark <sim state>/ca/ark.pem)".into(),
            ));
        }
        let store = Store::open(&config.state_dir)?;
        let reference = match store.get(store::REFERENCE_VALUES)? {
            Some(b) => ReferenceValues::from_json(&String::from_utf8_lossy(&b)).map_err(|e| {
                KbsError::StoredState {
                    file: store::REFERENCE_VALUES,
                    detail: e.to_string(),
                }
            })?,
            None => ReferenceValues::default(),
        };
        if config.allow_sim {
            tracing::warn!("!!! cloister-kbs accepts SIM evidence (--allow-sim): development only, attestation proves NOTHING !!!");
        }
        Ok(Arc::new(Kbs {
            attestation_policy: RwLock::new(load_policy(
                &store,
                store::ATTESTATION_POLICY,
                PolicyKind::Attestation,
                DEFAULT_ATTESTATION_POLICY,
            )?),
            resource_policy: RwLock::new(load_policy(
                &store,
                store::RESOURCE_POLICY,
                PolicyKind::Resource,
                DEFAULT_RESOURCE_POLICY,
            )?),
            reference: RwLock::new(reference),
            tokens: TokenKeys::load_or_create(&store)?,
            sessions: Sessions::new(config.nonce_ttl, config.session_ttl),
            store,
            allow_sim: config.allow_sim,
            sim_ark: config.sim_ark.clone(),
            admin_token_sha256: Sha256::digest(config.admin_token.trim().as_bytes()).into(),
        }))
    }

    /// Compares a presented admin token with the configured one in constant time
    /// (over their SHA-256 digests, so lengths do not leak either).
    pub fn admin_token_matches(&self, presented: &str) -> bool {
        let got: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        got.iter()
            .zip(self.admin_token_sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    pub fn reference(&self) -> ReferenceValues {
        self.reference
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn policy(&self, kind: PolicyKind) -> Policy {
        let lock = match kind {
            PolicyKind::Attestation => &self.attestation_policy,
            PolicyKind::Resource => &self.resource_policy,
        };
        lock.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
