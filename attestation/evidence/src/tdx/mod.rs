//! Intel TDX quotes (v4 and v5): parse, then prove in order that
//! 1. the PCK chain ends in Intel's pinned SGX Root CA, every certificate valid at
//!    the given time;
//! 2. the PCK signed the QE report, and the QE report binds the attestation key
//!    (REPORT_DATA[0..32] = SHA-256(attestation key || QE auth data));
//! 3. the attestation key signed the quote header and TD report body;
//! 4. the TD meets the requirements (no debug TD unless allowed) and the reference
//!    MRTD, MRCONFIGID and REPORT_DATA.
//!
//! Not done yet: TCB-info and QE-identity evaluation against Intel's collateral.
//! The check list says so ("tcb-info evaluation: not performed").
mod claims;
mod pck;
mod quote;

use p256::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};

pub use claims::{PckClaims, QeClaims, TdxClaims};
pub use pck::intel_root_pem;
pub use quote::{Header, QeReport, Quote, TdReport};

use crate::check::Checks;
use crate::{run_checks, x509, Rejected, Verified, VerifiedClaims, VerifyError, VerifyOptions};

/// A TDX quote, with the PCK chain when it does not travel inside the quote.
#[derive(Clone, Copy, Debug)]
pub struct TdxEvidence<'a> {
    pub quote: &'a [u8],
    /// PCK chain (PEM or DER), leaf first. `None`: use the chain in the quote's
    /// certification data (type 5).
    pub pck_chain: Option<&'a [u8]>,
}

/// Whether `bytes` starts like a TDX quote (version 4 or 5, TEE type TDX).
pub fn looks_like_quote(bytes: &[u8]) -> bool {
    bytes.len() >= 8
        && matches!(bytes[..2], [4, 0] | [5, 0])
        && u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) == quote::TEE_TYPE_TDX
}

/// Verifies a TDX quote (see the module documentation for the order of checks).
pub fn verify(evidence: &TdxEvidence<'_>, opts: &VerifyOptions) -> Result<Verified, Rejected> {
    run_checks(|checks| verify_steps(evidence, opts, checks).map(VerifiedClaims::Tdx))
}

fn verify_steps(
    e: &TdxEvidence<'_>,
    opts: &VerifyOptions,
    checks: &mut Checks,
) -> Result<TdxClaims, VerifyError> {
    let rv = &opts.reference;
    if rv.min_tcb.is_some() || rv.vmpl.is_some() {
        return Err(VerifyError::ReferenceValues(
            "min_tcb and vmpl apply to SNP reports only, not to a TDX quote".into(),
        ));
    }
    let q = Quote::parse(e.quote).map_err(|detail| VerifyError::Malformed {
        check: "quote format",
        detail,
    })?;
    checks.pass(
        "quote format",
        format!(
            "version {}, {} body, ECDSA P-256 attestation key, {} bytes{}",
            q.header.version,
            if q.body_type == 3 {
                "TDX 1.5"
            } else {
                "TDX 1.0"
            },
            e.quote.len(),
            if q.trailing > 0 {
                format!(" ({} trailing bytes ignored)", q.trailing)
            } else {
                String::new()
            }
        ),
    );

    let chain_bytes = match e.pck_chain {
        Some(b) => b,
        None if q.cert_data_type == quote::CERT_PCK_CHAIN => q.cert_data,
        None => {
            return Err(VerifyError::Malformed {
                check: "certification data",
                detail: format!("expected type 5 (PCK certificate chain) in the quote, got type {}; pass the PCK chain (--chain)", q.cert_data_type),
            })
        }
    };
    let certs = x509::parse_bundle(chain_bytes).map_err(|d| VerifyError::Certificate {
        cert: "pck chain".into(),
        detail: d,
    })?;
    checks.pass(
        "certification data",
        format!(
            "{} certificates from {}",
            certs.len(),
            if e.pck_chain.is_some() {
                "the given chain"
            } else {
                "the quote (type 5)"
            }
        ),
    );
    let chain = pck::verify_chain(certs, opts.at, checks)?;

    // The PCK signs the QE report.
    let pck_key = x509::p256_key(&chain.pck).map_err(|d| VerifyError::Certificate {
        cert: "pck".into(),
        detail: d,
    })?;
    let qe_sig = p256::ecdsa::Signature::from_slice(&q.qe_report_signature).map_err(|_| {
        VerifyError::QeReportSignature {
            reason: "r or s is out of range".into(),
        }
    })?;
    pck_key
        .verify(q.qe_report.raw, &qe_sig)
        .map_err(|_| VerifyError::QeReportSignature {
            reason: String::new(),
        })?;
    checks.pass(
        "qe report signature",
        "ECDSA P-256 over the 384-byte QE report by the PCK",
    );

    // The QE report binds the attestation key.
    let mut hasher = Sha256::new();
    hasher.update(q.attestation_key);
    hasher.update(q.qe_auth_data);
    let mut expected = hasher.finalize().to_vec();
    expected.extend_from_slice(&[0u8; 32]);
    if q.qe_report.report_data() != expected.as_slice() {
        return Err(VerifyError::QeReportBinding {
            expected: format!(
                "REPORT_DATA = SHA-256(attestation key || QE auth data) || 0^32 = {}",
                hex::encode(&expected)
            ),
            got: hex::encode(q.qe_report.report_data()),
        });
    }
    checks.pass(
        "qe report binding",
        "QE REPORT_DATA = SHA-256(attestation key || QE auth data), zero-padded",
    );

    // The attestation key signs header and body.
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[1..].copy_from_slice(&q.attestation_key);
    let att_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| {
        VerifyError::QuoteSignature {
            reason: "the attestation key is not a P-256 point".into(),
        }
    })?;
    let sig = p256::ecdsa::Signature::from_slice(&q.signature).map_err(|_| {
        VerifyError::QuoteSignature {
            reason: "r or s is out of range".into(),
        }
    })?;
    att_key
        .verify(q.signed, &sig)
        .map_err(|_| VerifyError::QuoteSignature {
            reason: String::new(),
        })?;
    checks.pass(
        "quote signature",
        format!(
            "ECDSA P-256 over bytes 0..{:#x} (header and body) by the attestation key",
            q.signed.len()
        ),
    );

    checks.skip(
        "tcb-info evaluation",
        "not performed: TCB status and QE identity are not checked against Intel's collateral yet",
    );

    if q.body.debug() && !rv.policy.allow_debug {
        return Err(VerifyError::TdDebug(format!(
            "the TD is a debug TD (TD_ATTRIBUTES {} has DEBUG set) and debug is not permitted (pass --allow-debug, or policy.allow_debug in the reference values)",
            hex::encode(q.body.td_attributes)
        )));
    }
    checks.pass(
        "td debug",
        format!(
            "DEBUG {} (TD_ATTRIBUTES {})",
            if q.body.debug() {
                "set, allowed"
            } else {
                "clear"
            },
            hex::encode(q.body.td_attributes)
        ),
    );

    rv.check_claims(
        checks,
        ("MRTD", "MRCONFIGID"),
        &q.body.mr_td,
        &q.body.mr_config_id,
        &q.body.report_data,
    )?;

    let pck = PckClaims {
        subject: x509::subject_cn(&chain.pck),
        issuer: x509::subject_cn(&chain.ca),
        not_after: crate::time::format_rfc3339(
            chain
                .pck
                .tbs_certificate
                .validity
                .not_after
                .to_system_time(),
        ),
    };
    Ok(TdxClaims::new(&q, pck))
}
