//! Which TEE the agent runs in, from the devices the guest kernel exposes,
//! where the agent reads the HOST_DATA that binds initdata to it, and the
//! attester that produces evidence for the KBS.
//!
//! * [`report`]: reading HOST_DATA/MEASUREMENT from an SNP-layout report;
//! * [`sim`]: the sim TEE (development only, NOT A TEE) over [`vsock`];
//! * [`snp`]: SEV-SNP through /dev/sev-guest.
pub mod report;
pub mod sim;
pub mod snp;
pub mod vsock;

use std::path::Path;
use std::sync::Arc;

use cloister_kbs_client::{Attester, SimAttester};
use cloister_protocol::TeeType;

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tee {
    None,
    Sim,
    Snp,
    Tdx,
}

impl Tee {
    pub fn name(self) -> &'static str {
        match self {
            Tee::None => "none",
            Tee::Sim => "sim (development only, no protection)",
            Tee::Snp => "snp",
            Tee::Tdx => "tdx",
        }
    }

    pub fn to_proto(self) -> TeeType {
        match self {
            Tee::None => TeeType::TEE_TYPE_NONE,
            Tee::Sim => TeeType::TEE_TYPE_SIM,
            Tee::Snp => TeeType::TEE_TYPE_SNP,
            Tee::Tdx => TeeType::TEE_TYPE_TDX,
        }
    }
}

/// Said in every log line where the missing hardware binding matters.
pub const NO_TEE_WARNING: &str = "NO TEE: initdata not bound to hardware, development only";

#[derive(Debug, thiserror::Error)]
pub enum TeeError {
    #[error("{tee}: no HOST_DATA source is available in this agent build yet; refusing initdata rather than accepting it unbound")]
    NoSource { tee: &'static str },
    #[error("{tee}: no HOST_DATA source reachable ({what}): {message}; refusing initdata rather than accepting it unbound")]
    Unreachable {
        tee: &'static str,
        what: String,
        message: String,
    },
    #[error("{tee}: reading HOST_DATA from the TEE report failed: {message}")]
    Report { tee: &'static str, message: String },
}

/// Where HOST_DATA (SNP) / MRCONFIGID (TDX) comes from: a fresh report of
/// the TEE the agent runs in. The sim and SNP attesters implement this.
pub trait HostDataSource: Send + Sync {
    /// Short name for logs, e.g. `snp`.
    fn name(&self) -> &'static str;
    /// The report's HOST_DATA bytes, or `None` when there is no TEE at all
    /// (the development-only mode in which initdata is not bound).
    fn host_data(&self) -> Result<Option<Vec<u8>>, TeeError>;
}

/// No TEE: nothing binds initdata. Every acceptance is logged with
/// [`NO_TEE_WARNING`].
pub struct NoTee;

impl HostDataSource for NoTee {
    fn name(&self) -> &'static str {
        "none"
    }
    fn host_data(&self) -> Result<Option<Vec<u8>>, TeeError> {
        Ok(None)
    }
}

/// A TEE was detected, but this build has no attester for it yet: initdata
/// is refused, never silently accepted unbound.
pub struct Unsupported(pub &'static str);

impl HostDataSource for Unsupported {
    fn name(&self) -> &'static str {
        self.0
    }
    fn host_data(&self) -> Result<Option<Vec<u8>>, TeeError> {
        Err(TeeError::NoSource { tee: self.0 })
    }
}

/// The HOST_DATA source for the detected TEE. TDX has no MRCONFIGID reader
/// yet: its initdata is refused.
pub fn host_data_source(tee: Tee) -> Arc<dyn HostDataSource> {
    match tee {
        Tee::None => Arc::new(NoTee),
        Tee::Sim => {
            let chip = vsock::VsockTransport::sim_chip();
            tracing::warn!(
                chip = %chip,
                sim = sim::SIM_WARNING,
                "sim TEE selected (cloister.tee=sim): HOST_DATA and evidence come from the host's sim chip, NOT A TEE"
            );
            Arc::new(sim::SimHostData::new(
                Arc::new(SimAttester::new(chip)),
                chip.to_string(),
            ))
        }
        Tee::Snp => Arc::new(snp::SnpHostData::new(Arc::new(snp::SevGuestDevice))),
        Tee::Tdx => Arc::new(Unsupported("tdx")),
    }
}

/// The attester for the KBS (RCAR) in the detected TEE: the sim chip over
/// vsock, or /dev/sev-guest. `None` without a TEE, and for TDX (no quote
/// generation in the agent yet).
pub fn attester(tee: Tee) -> Option<Arc<dyn Attester>> {
    match tee {
        Tee::None | Tee::Tdx => None,
        Tee::Sim => {
            tracing::warn!(
                sim = sim::SIM_WARNING,
                "KBS attester: the sim chip over vsock (NOT A TEE)"
            );
            Some(Arc::new(
                SimAttester::new(vsock::VsockTransport::sim_chip()),
            ))
        }
        Tee::Snp => Some(Arc::new(snp::SnpAttester::new(Arc::new(
            snp::SevGuestDevice,
        )))),
    }
}

/// Hardware devices win over the command-line hint: a host cannot talk a
/// real TEE guest into the simulated TEE.
pub fn detect(cfg: &Config) -> Tee {
    detect_in(Path::new("/"), cfg.tee_hint.as_deref())
}

fn detect_in(root: &Path, hint: Option<&str>) -> Tee {
    if root.join("dev/sev-guest").exists() {
        Tee::Snp
    } else if root.join("dev/tdx_guest").exists() || root.join("dev/tdx-guest").exists() {
        Tee::Tdx
    } else if hint == Some("sim") {
        Tee::Sim
    } else {
        Tee::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_beats_the_hint() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(detect_in(d.path(), None), Tee::None);
        assert_eq!(detect_in(d.path(), Some("sim")), Tee::Sim);
        assert_eq!(
            detect_in(d.path(), Some("snp")),
            Tee::None,
            "a hint alone never claims hardware"
        );
        std::fs::create_dir(d.path().join("dev")).unwrap();
        std::fs::write(d.path().join("dev/sev-guest"), b"").unwrap();
        assert_eq!(detect_in(d.path(), Some("sim")), Tee::Snp);
    }

    #[test]
    fn attesters_by_tee() {
        use kbs_types::Tee as KbsTee;
        assert!(attester(Tee::None).is_none());
        assert!(attester(Tee::Tdx).is_none());
        assert_eq!(attester(Tee::Sim).unwrap().tee(), KbsTee::Sample);
        assert_eq!(attester(Tee::Snp).unwrap().tee(), KbsTee::Snp);
        assert_eq!(host_data_source(Tee::Sim).name(), "sim");
        assert_eq!(host_data_source(Tee::Snp).name(), "snp");
        assert!(matches!(
            host_data_source(Tee::Tdx).host_data(),
            Err(TeeError::NoSource { tee: "tdx" })
        ));
    }
}
