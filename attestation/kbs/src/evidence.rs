//! The `tee-evidence` (primary evidence) this KBS understands, by the TEE named
//! in the RCAR Request. Byte strings are standard base64; certificate chains are
//! PEM text.
//!
//! | Request `tee` | evidence JSON                                                        |
//! |---------------|----------------------------------------------------------------------|
//! | `snp`         | `{"report": b64, "vcek": b64 DER/PEM, "chain": PEM?, "product": str?}` |
//! | `tdx`         | `{"quote": b64, "pck_chain": PEM?}`                                  |
//! | `sample`      | sim: `{"report": b64, "vcek": b64 DER, "chain": PEM}`               |
//!
//! kbs-types has no variant for cloister's sim TEE, so the sim announces itself as
//! `sample`, Trustee's own no-security test TEE. The SNP shape is cloister's, not
//! Trustee's attester's (which serializes the `sev` crate's report structure).
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cloister_evidence::sim::SimEvidence;
use cloister_evidence::snp::{Product, SnpEvidence};
use cloister_evidence::tdx::TdxEvidence;
use cloister_evidence::{Evidence, EvidenceFormat};
use kbs_types::Tee;
use serde::Deserialize;

/// Evidence bytes decoded from JSON, borrowed by [`OwnedEvidence::as_evidence`].
pub enum OwnedEvidence {
    Snp {
        report: Vec<u8>,
        vcek: Vec<u8>,
        chain: Option<Vec<u8>>,
        product: Option<Product>,
    },
    Tdx {
        quote: Vec<u8>,
        pck_chain: Option<Vec<u8>>,
    },
    Sim {
        report: Vec<u8>,
        vcek: Vec<u8>,
        chain: Vec<u8>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnpJson {
    report: String,
    vcek: String,
    #[serde(default)]
    chain: Option<String>,
    #[serde(default)]
    product: Option<Product>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TdxJson {
    quote: String,
    #[serde(default)]
    pck_chain: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SimJson {
    report: String,
    vcek: String,
    chain: String,
}

fn b64(s: &str, what: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(s.trim())
        .map_err(|e| format!("tee-evidence {what}: not base64: {e}"))
}

/// The evidence format for a Request's `tee`.
pub fn format_for(tee: Tee) -> Option<EvidenceFormat> {
    match tee {
        Tee::Snp => Some(EvidenceFormat::Snp),
        Tee::Tdx => Some(EvidenceFormat::Tdx),
        Tee::Sample => Some(EvidenceFormat::Sim),
        _ => None,
    }
}

impl OwnedEvidence {
    /// Decodes the evidence JSON for `format`.
    pub fn from_json(
        format: EvidenceFormat,
        v: serde_json::Value,
    ) -> Result<OwnedEvidence, String> {
        let shape = |e: serde_json::Error| format!("tee-evidence for {format}: {e}");
        Ok(match format {
            EvidenceFormat::Snp => {
                let j: SnpJson = serde_json::from_value(v).map_err(shape)?;
                OwnedEvidence::Snp {
                    report: b64(&j.report, "report")?,
                    vcek: b64(&j.vcek, "vcek")?,
                    chain: j.chain.map(String::into_bytes),
                    product: j.product,
                }
            }
            EvidenceFormat::Tdx => {
                let j: TdxJson = serde_json::from_value(v).map_err(shape)?;
                OwnedEvidence::Tdx {
                    quote: b64(&j.quote, "quote")?,
                    pck_chain: j.pck_chain.map(String::into_bytes),
                }
            }
            EvidenceFormat::Sim => {
                let j: SimJson = serde_json::from_value(v).map_err(shape)?;
                OwnedEvidence::Sim {
                    report: b64(&j.report, "report")?,
                    vcek: b64(&j.vcek, "vcek")?,
                    chain: j.chain.into_bytes(),
                }
            }
            other => {
                return Err(format!(
                    "evidence format {other} is not supported by this KBS"
                ))
            }
        })
    }

    pub fn as_evidence(&self) -> Evidence<'_> {
        match self {
            OwnedEvidence::Snp {
                report,
                vcek,
                chain,
                product,
            } => Evidence::Snp(SnpEvidence {
                report,
                vek: vcek,
                chain: chain.as_deref(),
                product: *product,
            }),
            OwnedEvidence::Tdx { quote, pck_chain } => Evidence::Tdx(TdxEvidence {
                quote,
                pck_chain: pck_chain.as_deref(),
            }),
            OwnedEvidence::Sim {
                report,
                vcek,
                chain,
            } => Evidence::Sim(SimEvidence {
                report,
                vcek,
                chain,
            }),
        }
    }
}
