//! The KBS client the agent uses: Trustee's RCAR protocol against cloister-kbs
//! (or a Trustee KBS for the parts both speak), then resources decrypted with
//! the TEE key.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use cloister_kbs_client::{KbsClient, KbsClientConfig, SimAttester, UnixTransport};
//! let ca = std::fs::read("kbs-ca.pem")?; // from initdata
//! let attester = SimAttester::new(UnixTransport("vsock.sock_1025".into()));
//! let mut client = KbsClient::new(KbsClientConfig::new("https://kbs:8080", ca), Box::new(attester))?;
//! let key = client.get_resource("default", "key", "image-key").await?;
//! # Ok(()) }
//! ```
//!
//! Parts: [`attester`] (where evidence comes from), [`binding`] (REPORT_DATA),
//! [`key`] (the TEE key and JWE decryption), [`client`] (HTTPS, retries),
//! [`error`] (which step failed, and the KBS's problem document).
pub mod attester;
pub mod binding;
pub mod client;
pub mod error;
pub mod key;

pub use attester::{
    sim_evidence_json, Attester, AttesterError, SimAttester, SimTransport, UnixTransport,
};
pub use client::{KbsClient, KbsClientConfig, Retry};
pub use error::{KbsClientError, Problem, Step};
pub use key::{TeeKey, TeeKeyKind};
