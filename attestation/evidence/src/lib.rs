//! TEE evidence formats and their verifiers (SEV-SNP, TDX, and the development-only sim TEE).
//!
//! A verifier takes raw evidence (an SNP attestation report with its VCEK/VLEK and
//! AMD chain, or a TDX quote with its embedded PCK chain), checks it against pinned
//! vendor roots at a given time, and returns the claims it proved together with a
//! check-by-check account. The same account, up to and including the failed check,
//! comes back on rejection, so a CLI or a KBS can show exactly why evidence failed.
//!
//! Entry points: [`verify`] for any format, or [`snp::verify`], [`tdx::verify`] and
//! [`sim::verify`]. Sim evidence is refused unless [`VerifyOptions::allow_sim`] is set.
//! Reference values (expected measurement, HOST_DATA, minimum TCB, policy) are in
//! [`ReferenceValues`].

mod check;
mod error;
mod reference;
pub mod sim;
pub mod snp;
pub mod tdx;
pub mod time;
mod x509;

use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::Serialize;

pub use check::Check;
pub use error::VerifyError;
pub use reference::{Hex, MinTcb, PolicyRequirement, ReferenceError, ReferenceValues};

/// The kinds of evidence this crate verifies. New TEEs (the sim TEE) add a variant
/// here, a case in [`EvidenceFormat::detect`] and one in [`verify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EvidenceFormat {
    /// A raw 1184-byte AMD SEV-SNP attestation report.
    Snp,
    /// An Intel TDX quote, version 4 or 5, with certification data type 6.
    Tdx,
    /// A cloister-sim report (SNP layout, sim marker in CHIP_ID). Development only.
    Sim,
}

impl EvidenceFormat {
    /// Every format, in the order `detect` tries them.
    pub const ALL: &'static [EvidenceFormat] = &[
        EvidenceFormat::Sim,
        EvidenceFormat::Snp,
        EvidenceFormat::Tdx,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EvidenceFormat::Snp => "snp",
            EvidenceFormat::Tdx => "tdx",
            EvidenceFormat::Sim => "sim",
        }
    }

    /// Guesses the format from the bytes alone (used when the caller does not say).
    /// This only chooses a parser; it proves nothing about the evidence.
    pub fn detect(evidence: &[u8]) -> Option<EvidenceFormat> {
        if tdx::looks_like_quote(evidence) {
            Some(EvidenceFormat::Tdx)
        } else if sim::looks_like_report(evidence) {
            Some(EvidenceFormat::Sim)
        } else if snp::looks_like_report(evidence) {
            Some(EvidenceFormat::Snp)
        } else {
            None
        }
    }
}

impl fmt::Display for EvidenceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `--format` value was not a known evidence format.
#[derive(Debug, thiserror::Error)]
#[error("unknown evidence format {0:?}: expected one of snp, tdx, sim")]
pub struct UnknownFormat(pub String);

impl FromStr for EvidenceFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EvidenceFormat::ALL
            .iter()
            .copied()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// Evidence as it arrives, with whatever endorsements travel beside it.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Evidence<'a> {
    Snp(snp::SnpEvidence<'a>),
    Tdx(tdx::TdxEvidence<'a>),
    Sim(sim::SimEvidence<'a>),
}

/// What the verifier is told besides the evidence.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// The time at which certificates must be valid.
    pub at: SystemTime,
    /// Expected claim values and policy requirements.
    pub reference: ReferenceValues,
    /// Accept sim evidence (development only, no security). Default false: sim
    /// evidence is then refused by its first check.
    pub allow_sim: bool,
    /// The sim ARK certificate (DER or PEM) sim evidence must chain to. `None`:
    /// the chain's own sim ARK is accepted (the check is shown as skipped).
    pub sim_ark: Option<Vec<u8>>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            at: SystemTime::now(),
            reference: ReferenceValues::default(),
            allow_sim: false,
            sim_ark: None,
        }
    }
}

/// The claims a verifier proved, tagged by TEE (`"tee": "snp"` in JSON).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "tee", rename_all = "lowercase")]
#[non_exhaustive]
pub enum VerifiedClaims {
    Snp(snp::SnpClaims),
    Tdx(tdx::TdxClaims),
    Sim(sim::SimClaims),
}

/// Accepted evidence: its claims and every check that was made.
#[derive(Clone, Debug, Serialize)]
pub struct Verified {
    pub claims: VerifiedClaims,
    pub checks: Vec<Check>,
}

/// Rejected evidence: the first failed check, and the checks made up to it (the
/// failed one last).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{error}")]
pub struct Rejected {
    pub error: VerifyError,
    pub checks: Vec<Check>,
}

/// Verifies evidence of any supported format.
pub fn verify(evidence: &Evidence<'_>, opts: &VerifyOptions) -> Result<Verified, Rejected> {
    match evidence {
        Evidence::Snp(e) => snp::verify(e, opts),
        Evidence::Tdx(e) => tdx::verify(e, opts),
        Evidence::Sim(e) => sim::verify(e, opts),
    }
}

/// Runs `steps`, recording checks; turns the outcome into `Verified` or `Rejected`.
pub(crate) fn run_checks(
    steps: impl FnOnce(&mut check::Checks) -> Result<VerifiedClaims, VerifyError>,
) -> Result<Verified, Rejected> {
    let mut checks = check::Checks::default();
    match steps(&mut checks) {
        Ok(claims) => Ok(Verified {
            claims,
            checks: checks.into_vec(),
        }),
        Err(error) => {
            checks.failed(&error);
            tracing::debug!(%error, "evidence rejected");
            Err(Rejected {
                error,
                checks: checks.into_vec(),
            })
        }
    }
}
