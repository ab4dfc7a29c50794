//! The sim TEE (development only, NO SECURITY): reports in the SEV-SNP layout,
//! signed by a simulated chip key (the sim VCEK) chained to a simulated root (the
//! sim ARK), so that the whole attestation path — report parsing, chain, report
//! signature, reference values, the KBS — runs without SEV hardware.
//!
//! A verifier accepts sim evidence only when told to ([`crate::VerifyOptions::allow_sim`]);
//! otherwise the first check refuses it. With `sim_ark` set, the chain must end in
//! that exact sim ARK (the one the developer's sim chip generated). Sim claims are
//! tagged `"tee": "sim"` and carry the marker [`layout::SIM_LABEL`].
//!
//! The order of checks: allow_sim, report format, sim marker, VCEK, chain and the
//! pinned sim ARK, ECDSA P-384 signatures down the chain, validity, the CHIP_ID
//! binding to the VCEK key, signing key, report signature, then the same policy,
//! VMPL and reference-value checks as SNP.
//!
//! The issuer (the sim chip itself) is the crate `cloister-sim-chip`.
mod chain;
pub mod layout;
pub mod wire;

use serde::Serialize;
use sha2::{Digest, Sha256};

use self::chain::{p384_key, verify_ecdsa_p384, SimChain};
use self::layout::{SIM_LABEL, SIM_MAGIC, SIM_VCEK_CN};
use crate::check::Checks;
use crate::snp::{Policy, SigningKey, SnpReport, REPORT_LEN, SIGNED_LEN};
use crate::{run_checks, x509, Rejected, Verified, VerifiedClaims, VerifyError, VerifyOptions};

/// A sim report with its sim VCEK and chain, as the sim chip hands them out.
#[derive(Clone, Copy, Debug)]
pub struct SimEvidence<'a> {
    /// The 1184-byte report.
    pub report: &'a [u8],
    /// The sim VCEK certificate, DER or PEM.
    pub vcek: &'a [u8],
    /// The sim ASK and ARK, PEM bundle or DER back to back.
    pub chain: &'a [u8],
}

/// Whether `bytes` is an SNP-layout report carrying the sim marker.
pub fn looks_like_report(bytes: &[u8]) -> bool {
    crate::snp::looks_like_report(bytes) && layout::has_sim_marker(bytes)
}

/// The claims of verified sim evidence. Byte fields are lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimClaims {
    /// Always [`layout::SIM_LABEL`]: this evidence proves nothing about hardware.
    pub sim: &'static str,
    pub version: u32,
    pub measurement: String,
    pub host_data: String,
    pub report_data: String,
    pub chip_id: String,
    pub report_id: String,
    pub policy: Policy,
    pub vmpl: u32,
    /// SHA-256 of the sim ARK the chain ends in.
    pub sim_ark_sha256: String,
    pub vcek_not_after: String,
}

/// Verifies sim evidence (see the module documentation for the order of checks).
pub fn verify(evidence: &SimEvidence<'_>, opts: &VerifyOptions) -> Result<Verified, Rejected> {
    run_checks(|checks| verify_steps(evidence, opts, checks).map(VerifiedClaims::Sim))
}

fn cert_error(cert: &str, detail: impl Into<String>) -> VerifyError {
    VerifyError::Certificate {
        cert: cert.to_string(),
        detail: detail.into(),
    }
}

fn verify_steps(
    e: &SimEvidence<'_>,
    opts: &VerifyOptions,
    checks: &mut Checks,
) -> Result<SimClaims, VerifyError> {
    if !opts.allow_sim {
        return Err(VerifyError::SimNotAllowed);
    }
    tracing::warn!("verifying sim evidence: {SIM_LABEL}");
    checks.pass(
        "allow_sim",
        "the verifier is configured to accept sim evidence (development only, no security)",
    );

    let report = SnpReport::parse(e.report).map_err(|detail| VerifyError::Malformed {
        check: "report format",
        detail,
    })?;
    checks.pass(
        "report format",
        format!("SNP layout version {}, {REPORT_LEN} bytes", report.version),
    );
    if report.chip_id[..32] != SIM_MAGIC {
        return Err(VerifyError::Malformed {
            check: "sim marker",
            detail: format!(
                "CHIP_ID[0..32]: expected {} (\"CLOISTER-SIM NOT-A-TEE\"), got {}",
                hex::encode(SIM_MAGIC),
                hex::encode(&report.chip_id[..32])
            ),
        });
    }
    checks.pass(
        "sim marker",
        format!("CHIP_ID carries the marker: {SIM_LABEL}"),
    );

    let vcek = x509::parse_one(e.vcek).map_err(|d| cert_error("sim vcek", d))?;
    let cn = x509::subject_cn(&vcek);
    if cn != SIM_VCEK_CN {
        return Err(cert_error(
            "sim vcek",
            format!("subject CN: expected {SIM_VCEK_CN:?}, got {cn:?}"),
        ));
    }
    checks.pass(
        "sim vcek certificate",
        format!("{cn} issued by {}", x509::issuer_cn(&vcek)),
    );

    let chain = x509::parse_bundle(e.chain)
        .and_then(SimChain::from_certs)
        .map_err(|d| cert_error("sim chain", d))?;
    let ark_fp = x509::fingerprint(&chain.ark);
    match &opts.sim_ark {
        None => checks.skip(
            "sim ark pinned",
            format!("no sim ARK configured; accepting the chain's sim ARK (sha256 {ark_fp})"),
        ),
        Some(pinned) => {
            let pinned =
                x509::parse_one(pinned).map_err(|d| cert_error("configured sim ark", d))?;
            if pinned != chain.ark {
                return Err(VerifyError::UntrustedRoot {
                    root: "sim ark",
                    expected: format!(
                        "the configured sim ARK (sha256 {})",
                        x509::fingerprint(&pinned)
                    ),
                    got: format!("{} (sha256 {ark_fp})", x509::subject_cn(&chain.ark)),
                });
            }
            checks.pass(
                "sim ark pinned",
                format!("the chain's ARK is the configured sim ARK (sha256 {ark_fp})"),
            );
        }
    }

    for (name, signer, signee) in [
        ("sim ark", &chain.ark, &chain.ark),
        ("sim ask", &chain.ark, &chain.ask),
        ("sim vcek", &chain.ask, &vcek),
    ] {
        verify_ecdsa_p384(signer, signee).map_err(|reason| VerifyError::CertificateSignature {
            cert: name.to_string(),
            signer: x509::subject_cn(signer),
            algorithm: "ECDSA P-384 SHA-384",
            reason,
        })?;
        checks.pass(
            format!("{name} signature"),
            format!(
                "signed by {} (ECDSA P-384 SHA-384)",
                x509::subject_cn(signer)
            ),
        );
    }
    for (name, cert) in [
        ("sim ark", &chain.ark),
        ("sim ask", &chain.ask),
        ("sim vcek", &vcek),
    ] {
        let detail = x509::check_validity(cert, name, opts.at)?;
        checks.pass(format!("{name} validity"), detail);
    }

    let key = p384_key(&vcek).map_err(|d| cert_error("sim vcek", d))?;
    let key_hash = Sha256::digest(key.to_encoded_point(false).as_bytes());
    if report.chip_id[32..] != key_hash[..] {
        return Err(VerifyError::HwIdMismatch {
            expected: format!(
                "CHIP_ID[32..64] = sha256(sim VCEK key) = {}",
                hex::encode(key_hash)
            ),
            got: hex::encode(&report.chip_id[32..]),
        });
    }
    checks.pass(
        "sim chip id",
        "CHIP_ID[32..64] is the SHA-256 of the sim VCEK key",
    );

    if report.signing_key() != SigningKey::Vcek {
        return Err(VerifyError::SigningKey {
            expected: "VCEK".into(),
            got: format!(
                "{} (report KEY_INFO {:#x})",
                report.signing_key(),
                report.key_info
            ),
        });
    }
    let sig = report
        .signature()
        .map_err(|reason| VerifyError::ReportSignature { reason })?;
    let signed = e
        .report
        .get(..SIGNED_LEN)
        .ok_or_else(|| VerifyError::ReportSignature {
            reason: "report too short".into(),
        })?;
    use p384::ecdsa::signature::Verifier;
    key.verify(signed, &sig)
        .map_err(|_| VerifyError::ReportSignature {
            reason: String::new(),
        })?;
    checks.pass(
        "report signature",
        "ECDSA P-384 over bytes 0..0x2a0 by the sim VCEK",
    );

    let rv = &opts.reference;
    if rv.min_tcb.is_some() {
        return Err(VerifyError::ReferenceValues(
            "min_tcb applies to SNP only; the sim TEE has no TCB".into(),
        ));
    }
    crate::snp::check_policy(report.policy, &rv.policy, checks)?;
    crate::snp::check_vmpl(report.vmpl, rv.vmpl, checks)?;
    rv.check_claims(
        checks,
        ("MEASUREMENT", "HOST_DATA"),
        &report.measurement,
        &report.host_data,
        &report.report_data,
    )?;

    Ok(SimClaims {
        sim: SIM_LABEL,
        version: report.version,
        measurement: hex::encode(report.measurement),
        host_data: hex::encode(report.host_data),
        report_data: hex::encode(report.report_data),
        chip_id: hex::encode(report.chip_id),
        report_id: hex::encode(report.report_id),
        policy: Policy::decode(report.policy),
        vmpl: report.vmpl,
        sim_ark_sha256: ark_fp,
        vcek_not_after: crate::time::format_rfc3339(
            vcek.tbs_certificate.validity.not_after.to_system_time(),
        ),
    })
}
