//! AMD SEV-SNP attestation reports: parse, then prove in order that
//! 1. the chain ARK → ASK/ASVK → VCEK/VLEK holds and ends in AMD's pinned ARK for
//!    the report's product, every certificate valid at the given time;
//! 2. the VCEK was issued for this chip (hwID = CHIP_ID) and this TCB (its SPL
//!    extensions = REPORTED_TCB; a VLEK has no hwID);
//! 3. the VCEK/VLEK signed the report (ECDSA P-384 over bytes 0..0x2a0);
//! 4. the report meets the requirements: guest policy, minimum TCB, VMPL, and the
//!    reference measurement, HOST_DATA and REPORT_DATA.
mod chain;
mod claims;
mod endorsement;
mod product;
mod report;
mod requirements;
mod roots;
mod vek;

pub use claims::{Cpuid, Endorsement, Platform, Policy, SnpClaims, Tcb};
pub use product::{Product, UnknownProduct};
pub use report::{FirmwareVersion, SigningKey, SnpReport, REPORT_LEN, SIGNED_LEN};
pub use roots::amd_chain_pem;

use self::chain::AmdChain;
use self::endorsement::{
    check_hw_id, check_pinned_ark, check_report_signature, check_rsa_signature, check_signing_key,
    check_tcb_extensions, determine_product,
};
use self::requirements::check_min_tcb;
pub(crate) use self::requirements::{check_policy, check_vmpl};
use self::vek::{VekExtensions, VekKind};
use crate::check::Checks;
use crate::{run_checks, x509, Rejected, Verified, VerifiedClaims, VerifyError, VerifyOptions};

/// An SNP report with the certificates that endorse it.
#[derive(Clone, Copy, Debug)]
pub struct SnpEvidence<'a> {
    /// The raw 1184-byte report.
    pub report: &'a [u8],
    /// The VCEK or VLEK certificate, DER or PEM.
    pub vek: &'a [u8],
    /// ASK and/or ASVK with the ARK (PEM bundle or DER back to back). `None`: use
    /// AMD's built-in chain for the product.
    pub chain: Option<&'a [u8]>,
    /// The product, when the caller knows it. It must agree with every other source.
    pub product: Option<Product>,
}

/// Whether `bytes` could be an SNP report (right size, plausible version).
pub fn looks_like_report(bytes: &[u8]) -> bool {
    bytes.len() == REPORT_LEN && matches!(bytes.first(), Some(2..=5)) && bytes[1..4] == [0, 0, 0]
}

/// Verifies an SNP report (see the module documentation for the order of checks).
pub fn verify(evidence: &SnpEvidence<'_>, opts: &VerifyOptions) -> Result<Verified, Rejected> {
    run_checks(|checks| verify_steps(evidence, opts, checks).map(VerifiedClaims::Snp))
}

fn cert_error(cert: &str, detail: impl Into<String>) -> VerifyError {
    VerifyError::Certificate {
        cert: cert.to_string(),
        detail: detail.into(),
    }
}

fn verify_steps(
    e: &SnpEvidence<'_>,
    opts: &VerifyOptions,
    checks: &mut Checks,
) -> Result<SnpClaims, VerifyError> {
    let report = SnpReport::parse(e.report).map_err(|detail| VerifyError::Malformed {
        check: "report format",
        detail,
    })?;
    checks.pass(
        "report format",
        format!(
            "version {}, {REPORT_LEN} bytes, signature algorithm 1 (ECDSA P-384 with SHA-384)",
            report.version
        ),
    );

    // The endorsement key and what kind it is.
    let vek = x509::parse_one(e.vek).map_err(|d| cert_error("vek", d))?;
    let kind = VekKind::of(&vek).map_err(|d| cert_error("vek", d))?;
    let ext = VekExtensions::parse(&vek).map_err(|d| cert_error(kind.name(), d))?;
    checks.pass(
        format!("{} certificate", kind.name()),
        format!(
            "{} issued by {}, productName {}",
            x509::subject_cn(&vek),
            x509::issuer_cn(&vek),
            ext.product_name.as_deref().unwrap_or("(none)")
        ),
    );
    check_signing_key(&report, kind, checks)?;

    // The product, and with it the pinned ARK and the TCB layout.
    let given_chain = match e.chain {
        None => None,
        Some(bytes) => {
            let certs = x509::parse_bundle(bytes).map_err(|d| cert_error("chain", d))?;
            Some(AmdChain::from_certs(certs).map_err(|d| cert_error("chain", d))?)
        }
    };
    let product = determine_product(e.product, &report, &ext, given_chain.as_ref(), checks)?;
    let amd = roots::amd_chain(product).map_err(|d| cert_error("built-in AMD chain", d))?;
    let chain = check_pinned_ark(given_chain, amd, product, checks)?;

    // Signatures down the chain, then validity at the given time.
    let signer = chain.intermediate(kind).ok_or_else(|| {
        cert_error(
            kind.signer_name(),
            format!(
                "the chain has no {} (needed to verify a {})",
                kind.signer_name().to_uppercase(),
                kind.name().to_uppercase()
            ),
        )
    })?;
    check_rsa_signature("ark", &chain.ark, &chain.ark, checks)?;
    check_rsa_signature(kind.signer_name(), &chain.ark, signer, checks)?;
    check_rsa_signature(kind.name(), signer, &vek, checks)?;
    for (name, cert) in [
        ("ark", &chain.ark),
        (kind.signer_name(), signer),
        (kind.name(), &vek),
    ] {
        let detail = x509::check_validity(cert, name, opts.at)?;
        checks.pass(format!("{name} validity"), detail);
    }

    // Is this the key of the chip and TCB the report names? (Compared before the
    // signature so that a wrong VCEK is named as such; a mismatch rejects either way.)
    check_hw_id(&report, kind, &ext, checks)?;
    check_tcb_extensions(&report, product, kind, &ext, checks)?;
    check_report_signature(e.report, &report, &vek, kind, checks)?;

    let rv = &opts.reference;
    check_policy(report.policy, &rv.policy, checks)?;
    check_min_tcb(&report, product, rv.min_tcb.as_ref(), checks)?;
    check_vmpl(report.vmpl, rv.vmpl, checks)?;
    rv.check_claims(
        checks,
        ("MEASUREMENT", "HOST_DATA"),
        &report.measurement,
        &report.host_data,
        &report.report_data,
    )?;

    let not_after =
        crate::time::format_rfc3339(vek.tbs_certificate.validity.not_after.to_system_time());
    Ok(SnpClaims::new(
        &report,
        product,
        kind,
        &ext,
        x509::issuer_cn(&vek),
        not_after,
    ))
}
