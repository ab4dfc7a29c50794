//! The sim TEE's chip — development only, NOT A TEE, NO SECURITY.
//!
//! It plays the part of the AMD-SP for guests booted without SEV: it issues
//! reports in the SEV-SNP layout whose MEASUREMENT is the launch digest of what
//! was booted (`cloister measure sim`), whose HOST_DATA is sha256(initdata), and
//! whose REPORT_DATA is what the guest asked for, signed (ECDSA P-384, as SNP) by
//! a sim VCEK chained to a sim ASK and sim ARK ([`SimCa`]). CHIP_ID carries a
//! fixed marker and every certificate says "cloister-sim — NOT A TEE", so sim
//! evidence can never be taken for real evidence; verifiers accept it only
//! with `allow_sim` (`cloister_evidence::VerifyOptions`).
//!
//! Typical host use, next to a VM whose vsock Unix socket is `vsock.sock`:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cloister_sim_chip::SimChip;
//! let chip = SimChip::load_or_create(std::path::Path::new("/var/lib/cloister/sim"))?;
//! let measurement = [0u8; 48]; // cloister_measure::cloister_sim::sim_launch_digest(..)
//! let host_data = [0u8; 32]; // sha256(initdata)
//! let server = chip.serve_unix("vsock.sock_1025".as_ref(), measurement, host_data)?;
//! // ... boot the guest; its connection to vsock port 1025 reaches the chip ...
//! drop(server);
//! # Ok(()) }
//! ```
mod ca;
mod report;
mod serve;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use ca::SimCa;
pub use cloister_evidence::sim::wire::{SimReportResponse, SIM_CHIP_VSOCK_PORT};
pub use report::{build_report, ReportFields};
pub use serve::SimChipServer;

/// The sim chip's state could not be created or read.
#[derive(Debug, thiserror::Error)]
pub enum SimChipError {
    #[error("sim chip state {path}: {what}: {source}")]
    State {
        path: PathBuf,
        what: String,
        source: io::Error,
    },
    #[error("sim chip state {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("generating the sim CA: {0}")]
    Generate(String),
}

/// A sim chip: the sim CA, able to issue reports. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SimChip {
    ca: Arc<SimCa>,
}

impl SimChip {
    /// Loads the sim CA from `state` (creating it on first use).
    pub fn load_or_create(state: &Path) -> Result<SimChip, SimChipError> {
        Ok(SimChip {
            ca: Arc::new(SimCa::load_or_create(state)?),
        })
    }

    /// The sim CA (for the sim ARK to configure verifiers with).
    pub fn ca(&self) -> &SimCa {
        &self.ca
    }

    /// Issues one report, with the sim VCEK and chain a verifier needs.
    pub fn issue(&self, fields: &ReportFields) -> SimReportResponse {
        tracing::info!(
            measurement = %hex::encode(fields.measurement),
            host_data = %hex::encode(fields.host_data),
            "sim chip: issuing a report (cloister-sim: NOT A TEE)"
        );
        SimReportResponse {
            report: build_report(fields, &self.ca.vcek_key).to_vec(),
            vcek_der: self.ca.vcek_der().to_vec(),
            chain_pem: self.ca.chain_pem().into_bytes(),
        }
    }

    /// Serves reports on the Unix socket `path` (for a VM: `<vsock-uds>_1025`),
    /// every one over `measurement` and `host_data`. Runs on its own threads until
    /// the returned server is dropped.
    pub fn serve_unix(
        &self,
        path: &Path,
        measurement: [u8; 48],
        host_data: [u8; 32],
    ) -> io::Result<SimChipServer> {
        SimChipServer::start(self.clone(), path, measurement, host_data)
    }
}
