//! Where evidence comes from: the [`Attester`] trait, and the sim attester that
//! asks the host-side sim chip over a stream (vsock port 1025 in a guest, a Unix
//! socket in tests). An SNP attester (/dev/sev-guest) plugs in the same way.
use std::io;
use std::path::PathBuf;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cloister_evidence::sim::wire;
use kbs_types::Tee;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum AttesterError {
    #[error("connecting to the sim chip: {0}")]
    Connect(#[source] io::Error),
    #[error("talking to the sim chip: {0}")]
    Io(#[source] io::Error),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error("{0}")]
    Other(String),
}

impl AttesterError {
    pub fn is_transient(&self) -> bool {
        matches!(self, AttesterError::Connect(_) | AttesterError::Io(_))
    }
}

/// A source of TEE evidence.
#[async_trait]
pub trait Attester: Send + Sync {
    /// The TEE named in the RCAR Request.
    fn tee(&self) -> Tee;
    /// Evidence whose REPORT_DATA is `report_data`, as the KBS's `tee-evidence`.
    async fn evidence(&self, report_data: [u8; 64]) -> Result<serde_json::Value, AttesterError>;
}

/// A shared attester is an attester (the agent keeps one and hands it to
/// each [`crate::KbsClient`]).
#[async_trait]
impl<T: Attester + ?Sized> Attester for std::sync::Arc<T> {
    fn tee(&self) -> Tee {
        (**self).tee()
    }

    async fn evidence(&self, report_data: [u8; 64]) -> Result<serde_json::Value, AttesterError> {
        (**self).evidence(report_data).await
    }
}

/// A byte stream to the sim chip.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How to reach the sim chip.
#[async_trait]
pub trait SimTransport: Send + Sync {
    async fn connect(&self) -> io::Result<Box<dyn Stream>>;
}

/// The sim chip's Unix socket (on the host: `<vsock-uds>_1025`).
pub struct UnixTransport(pub PathBuf);

#[async_trait]
impl SimTransport for UnixTransport {
    async fn connect(&self) -> io::Result<Box<dyn Stream>> {
        Ok(Box::new(tokio::net::UnixStream::connect(&self.0).await?))
    }
}

/// Evidence from the sim chip (development only: NOT A TEE). Announces itself as
/// `sample`, kbs-types' no-security test TEE.
pub struct SimAttester {
    transport: Box<dyn SimTransport>,
}

impl SimAttester {
    pub fn new(transport: impl SimTransport + 'static) -> SimAttester {
        SimAttester {
            transport: Box::new(transport),
        }
    }

    /// The raw response of the sim chip.
    pub async fn report(
        &self,
        report_data: [u8; 64],
    ) -> Result<wire::SimReportResponse, AttesterError> {
        let mut s = self
            .transport
            .connect()
            .await
            .map_err(AttesterError::Connect)?;
        s.write_all(&wire::encode_request(&report_data))
            .await
            .map_err(AttesterError::Io)?;
        s.flush().await.map_err(AttesterError::Io)?;
        let mut buf = Vec::new();
        (&mut s)
            .take(wire::MAX_RESPONSE as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(AttesterError::Io)?;
        Ok(wire::decode_response(&buf)?)
    }
}

/// The `tee-evidence` JSON for a sim report (see cloister-kbs's `evidence` module).
pub fn sim_evidence_json(r: &wire::SimReportResponse) -> serde_json::Value {
    json!({
        "report": STANDARD.encode(&r.report),
        "vcek": STANDARD.encode(&r.vcek_der),
        "chain": String::from_utf8_lossy(&r.chain_pem),
    })
}

#[async_trait]
impl Attester for SimAttester {
    fn tee(&self) -> Tee {
        Tee::Sample
    }

    async fn evidence(&self, report_data: [u8; 64]) -> Result<serde_json::Value, AttesterError> {
        tracing::warn!("attesting with the sim TEE (cloister-sim: NOT A TEE)");
        Ok(sim_evidence_json(&self.report(report_data).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_shared_attester_is_an_attester() {
        let shared: Arc<dyn Attester> = Arc::new(SimAttester::new(UnixTransport(
            "/nonexistent/chip.sock".into(),
        )));
        let boxed: Box<dyn Attester> = Box::new(shared.clone());
        assert_eq!(boxed.tee(), Tee::Sample);
        // Calls reach the inner attester (and its transport's error).
        let e = boxed.evidence([0; 64]).await.unwrap_err();
        assert!(matches!(e, AttesterError::Connect(_)), "{e}");
        assert!(e.is_transient());
    }
}
