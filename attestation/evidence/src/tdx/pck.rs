//! The PCK certificate chain: PCK → PCK Platform/Processor CA → Intel SGX Root CA,
//! all ECDSA P-256 with SHA-256. The root is pinned to Intel's published one, which
//! is built in; a chain that brings its own root must bring exactly that one.
use std::time::SystemTime;

use x509_cert::Certificate;

use crate::check::Checks;
use crate::{x509, VerifyError};

const INTEL_ROOT_PEM: &[u8] = include_bytes!("../../testdata/tdx/intel_sgx_root_ca.pem");

/// Intel's SGX Root CA certificate (PEM), the trust anchor for TDX quotes.
pub fn intel_root_pem() -> &'static [u8] {
    INTEL_ROOT_PEM
}

fn cert_error(cert: &str, detail: impl Into<String>) -> VerifyError {
    VerifyError::Certificate {
        cert: cert.to_string(),
        detail: detail.into(),
    }
}

/// The verified PCK leaf and its issuing CA.
pub(crate) struct PckChain {
    pub pck: Certificate,
    pub ca: Certificate,
}

/// The leaf: the one certificate that issued none of the others. (Producers put
/// the chain in either order: Intel's sample quotes are root first.)
fn find_leaf(certs: &[Certificate]) -> Result<usize, VerifyError> {
    let issued_something = |c: &Certificate| {
        certs
            .iter()
            .any(|o| !std::ptr::eq(o, c) && o.tbs_certificate.issuer == c.tbs_certificate.subject)
    };
    let leaves: Vec<usize> = (0..certs.len())
        .filter(|i| !x509::is_self_issued(&certs[*i]) && !issued_something(&certs[*i]))
        .collect();
    match leaves.as_slice() {
        [one] => Ok(*one),
        [] => Err(cert_error(
            "pck chain",
            "no leaf certificate (every certificate issued another, or is self-signed)",
        )),
        many => Err(cert_error(
            "pck chain",
            format!("{} leaf certificates; expected one PCK", many.len()),
        )),
    }
}

/// Verifies the chain (in any order; the root may be present or not) up to the
/// built-in Intel root, each certificate valid at `at`.
pub(crate) fn verify_chain(
    mut certs: Vec<Certificate>,
    at: SystemTime,
    checks: &mut Checks,
) -> Result<PckChain, VerifyError> {
    let root = x509::parse_one(INTEL_ROOT_PEM).map_err(|d| cert_error("built-in Intel root", d))?;
    let pck = certs.remove(find_leaf(&certs)?);
    let rest = certs;

    let ca = rest
        .iter()
        .find(|c| {
            c.tbs_certificate.subject == pck.tbs_certificate.issuer && !x509::is_self_issued(c)
        })
        .cloned()
        .ok_or_else(|| {
            cert_error(
                "pck ca",
                format!(
                    "the chain has no issuer for the PCK (issuer {:?})",
                    x509::issuer_cn(&pck)
                ),
            )
        })?;
    let given_root = rest
        .iter()
        .find(|c| c.tbs_certificate.subject == ca.tbs_certificate.issuer);
    let want = format!(
        "{} (sha256 {})",
        x509::subject_cn(&root),
        x509::fingerprint(&root)
    );
    match given_root {
        Some(r) if *r != root => {
            return Err(VerifyError::UntrustedRoot {
                root: "pck chain root",
                expected: want,
                got: format!("{} (sha256 {})", x509::subject_cn(r), x509::fingerprint(r)),
            })
        }
        Some(_) => checks.pass(
            "pck chain root pinned",
            format!("the chain's root is {want}"),
        ),
        None => checks.pass(
            "pck chain root pinned",
            format!("the chain has no root; using the built-in {want}"),
        ),
    }

    for (name, signer, signee) in [
        ("intel root", &root, &root),
        ("pck ca", &root, &ca),
        ("pck", &ca, &pck),
    ] {
        x509::verify_ecdsa_p256(signer, signee).map_err(|reason| {
            VerifyError::CertificateSignature {
                cert: name.to_string(),
                signer: x509::subject_cn(signer),
                algorithm: "ECDSA P-256 SHA-256",
                reason,
            }
        })?;
        checks.pass(
            format!("{name} signature"),
            format!(
                "{} signed by {} (ECDSA P-256 SHA-256)",
                x509::subject_cn(signee),
                x509::subject_cn(signer)
            ),
        );
    }
    for (name, cert) in [("intel root", &root), ("pck ca", &ca), ("pck", &pck)] {
        let detail = x509::check_validity(cert, name, at)?;
        checks.pass(format!("{name} validity"), detail);
    }
    Ok(PckChain { pck, ca })
}
