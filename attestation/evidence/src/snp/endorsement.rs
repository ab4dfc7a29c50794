//! The checks that tie a report to AMD: which key signed it, which product it
//! comes from, the pinned ARK, the RSA-PSS chain, the report signature, and the
//! VCEK's hwID and TCB extensions.
use p384::ecdsa::signature::Verifier;
use x509_cert::Certificate;

use super::cert_error;
use super::chain::{verify_rsa_pss, AmdChain};
use super::claims::Tcb;
use super::product::Product;
use super::report::{SigningKey, SnpReport, SIGNED_LEN};
use super::vek::{hw_id_matches, VekExtensions, VekKind};
use crate::check::Checks;
use crate::{x509, VerifyError};

pub(super) fn check_signing_key(
    report: &SnpReport,
    kind: VekKind,
    checks: &mut Checks,
) -> Result<(), VerifyError> {
    let expected = match kind {
        VekKind::Vcek => SigningKey::Vcek,
        VekKind::Vlek => SigningKey::Vlek,
    };
    let got = report.signing_key();
    if got != expected {
        return Err(VerifyError::SigningKey {
            expected: format!("{expected} (the certificate given is a {expected})"),
            got: format!("{got} (report KEY_INFO {:#x})", report.key_info),
        });
    }
    checks.pass(
        "signing key",
        format!("report KEY_INFO says {got}, matching the certificate"),
    );
    Ok(())
}

/// Collects the product from every source, takes the first, and requires the rest
/// to agree.
pub(super) fn determine_product(
    explicit: Option<Product>,
    report: &SnpReport,
    ext: &VekExtensions,
    chain: Option<&AmdChain>,
    checks: &mut Checks,
) -> Result<Product, VerifyError> {
    let mut sources: Vec<(Product, String)> = Vec::new();
    if let Some(p) = explicit {
        sources.push((p, "--product".into()));
    }
    if let Some((family, model, _)) = report.cpuid_present() {
        let p = Product::from_cpuid(family, model).map_err(VerifyError::UnknownProduct)?;
        sources.push((
            p,
            format!("report CPUID family {family:#x} model {model:#x}"),
        ));
    }
    if let Some(name) = &ext.product_name {
        let p = Product::from_amd_name(name).ok_or_else(|| {
            VerifyError::UnknownProduct(format!(
                "VCEK productName {name:?} is not Milan, Genoa or Turin"
            ))
        })?;
        sources.push((p, format!("VCEK productName {name}")));
    }
    if let Some(c) = chain {
        if let Some(p) = c.product() {
            sources.push((p, format!("chain {}", x509::subject_cn(&c.ark))));
        }
    }
    let Some((product, source)) = sources.first().cloned() else {
        return Err(VerifyError::UnknownProduct(format!(
            "cannot tell the product: the report is version {} (no CPUID), the certificate has no productName and no chain was given; pass --chain or --product",
            report.version
        )));
    };
    if let Some((other, other_source)) = sources.iter().find(|(p, _)| *p != product) {
        return Err(VerifyError::ProductMismatch {
            expected: format!("{product} ({source})"),
            got: format!("{other} ({other_source})"),
        });
    }
    let all: Vec<&str> = sources.iter().map(|(_, s)| s.as_str()).collect();
    checks.pass("product", format!("{product} (from {})", all.join("; ")));
    Ok(product)
}

/// Uses the caller's chain if its ARK is AMD's, else AMD's chain when none was given.
pub(super) fn check_pinned_ark(
    given: Option<AmdChain>,
    amd: AmdChain,
    product: Product,
    checks: &mut Checks,
) -> Result<AmdChain, VerifyError> {
    let want = format!(
        "AMD ARK-{} (sha256 {})",
        product.amd_name(),
        x509::fingerprint(&amd.ark)
    );
    match given {
        None => {
            checks.pass(
                "ark pinned",
                format!("no chain given; using the built-in {want} with its ASK and ASVK"),
            );
            Ok(amd)
        }
        Some(chain) if chain.ark == amd.ark => {
            checks.pass("ark pinned", format!("the chain's ARK is {want}"));
            Ok(chain)
        }
        Some(chain) => Err(VerifyError::UntrustedRoot {
            root: "ark",
            expected: want,
            got: format!(
                "{} (sha256 {})",
                x509::subject_cn(&chain.ark),
                x509::fingerprint(&chain.ark)
            ),
        }),
    }
}

pub(super) fn check_rsa_signature(
    name: &str,
    signer: &Certificate,
    signee: &Certificate,
    checks: &mut Checks,
) -> Result<(), VerifyError> {
    let signer_cn = x509::subject_cn(signer);
    verify_rsa_pss(signer, signee).map_err(|reason| VerifyError::CertificateSignature {
        cert: name.to_string(),
        signer: signer_cn.clone(),
        algorithm: "RSA-PSS SHA-384",
        reason,
    })?;
    let detail = if std::ptr::eq(signer, signee) {
        format!("{signer_cn} is self-signed (RSA-PSS SHA-384)")
    } else {
        format!(
            "{} signed by {signer_cn} (RSA-PSS SHA-384)",
            x509::subject_cn(signee)
        )
    };
    checks.pass(format!("{name} signature"), detail);
    Ok(())
}

pub(super) fn check_report_signature(
    raw: &[u8],
    report: &SnpReport,
    vek: &Certificate,
    kind: VekKind,
    checks: &mut Checks,
) -> Result<(), VerifyError> {
    let spki = &vek
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key;
    let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(spki.raw_bytes())
        .map_err(|_| cert_error(kind.name(), "public key is not an ECDSA P-384 key"))?;
    let sig = report
        .signature()
        .map_err(|reason| VerifyError::ReportSignature { reason })?;
    // `raw` is exactly REPORT_LEN bytes: SnpReport::parse checked it.
    let signed = raw
        .get(..SIGNED_LEN)
        .ok_or_else(|| VerifyError::ReportSignature {
            reason: "report too short".into(),
        })?;
    key.verify(signed, &sig)
        .map_err(|_| VerifyError::ReportSignature {
            reason: String::new(),
        })?;
    checks.pass(
        "report signature",
        format!(
            "ECDSA P-384 over bytes 0..0x2a0 by the {}",
            kind.name().to_uppercase()
        ),
    );
    Ok(())
}

pub(super) fn check_hw_id(
    report: &SnpReport,
    kind: VekKind,
    ext: &VekExtensions,
    checks: &mut Checks,
) -> Result<(), VerifyError> {
    if kind == VekKind::Vlek {
        checks.skip(
            "vcek hwID",
            "not applicable: a VLEK is not bound to one chip",
        );
        return Ok(());
    }
    let chip_id = hex::encode(report.chip_id);
    match &ext.hw_id {
        Some(hw) if hw_id_matches(hw, &report.chip_id) => {
            checks.pass("vcek hwID", format!("equals CHIP_ID {}", hex::encode(hw)));
            Ok(())
        }
        Some(hw) => Err(VerifyError::HwIdMismatch {
            expected: chip_id,
            got: hex::encode(hw),
        }),
        None => Err(VerifyError::HwIdMismatch {
            expected: chip_id,
            got: "no hwID extension".into(),
        }),
    }
}

pub(super) fn check_tcb_extensions(
    report: &SnpReport,
    product: Product,
    kind: VekKind,
    ext: &VekExtensions,
    checks: &mut Checks,
) -> Result<(), VerifyError> {
    let tcb = Tcb::decode(report.reported_tcb, product);
    let mut pairs = vec![
        ("blSPL", ext.bl_spl, tcb.bootloader),
        ("teeSPL", ext.tee_spl, tcb.tee),
        ("snpSPL", ext.snp_spl, tcb.snp),
        ("ucodeSPL", ext.ucode_spl, tcb.microcode),
    ];
    if let Some(fmc) = tcb.fmc {
        pairs.insert(0, ("fmcSPL", ext.fmc_spl, fmc));
    }
    for (field, cert_value, reported) in &pairs {
        if *cert_value != Some(*reported) {
            return Err(VerifyError::TcbExtension {
                cert: kind.name().to_string(),
                field,
                expected: reported.to_string(),
                got: cert_value.map_or("no such extension".to_string(), |v| v.to_string()),
            });
        }
    }
    let listed: Vec<String> = pairs.iter().map(|(f, _, v)| format!("{f}={v}")).collect();
    checks.pass(
        format!("{} tcb", kind.name()),
        format!("{} equal REPORTED_TCB {}", listed.join(" "), tcb.raw),
    );
    Ok(())
}
