//! X.509 plumbing shared by the SNP and TDX verifiers: loading certificates from
//! DER, PEM or bundles, naming them, checking validity windows, and verifying the
//! ECDSA P-256 signatures of Intel's PCK chain. (AMD's RSA-PSS signatures go
//! through the `sev` crate, see `snp::chain`.)
use std::time::SystemTime;

use p256::ecdsa::signature::Verifier;
use sha2::{Digest, Sha256};
use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::{Decode, Encode, Reader, SliceReader};
use x509_cert::name::Name;
use x509_cert::Certificate;

use crate::time::format_rfc3339;
use crate::VerifyError;

const OID_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Strips what transports leave around certificates: NUL padding and whitespace.
fn trim(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, 0 | b' ' | b'\t' | b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    let start = bytes[..end]
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(end);
    &bytes[start..end]
}

/// Parses one or more certificates: a PEM bundle, or DER certificates back to back.
///
/// Only PEM text is trimmed. DER is binary: its last byte can be 0x00, a
/// space or a newline (it is part of the signature), so DER is never trimmed
/// from the end; padding is recognized only *after* the certificates that
/// the DER length fields delimit.
pub(crate) fn parse_bundle(bytes: &[u8]) -> Result<Vec<Certificate>, String> {
    let trimmed = trim(bytes);
    if trimmed.is_empty() {
        return Err("empty input".into());
    }
    let certs = if is_pem(trimmed) {
        Certificate::load_pem_chain(trimmed)
            .map_err(|e| format!("not a PEM certificate bundle: {e}"))?
    } else {
        let start = bytes.len() - trim_start(bytes).len();
        let mut rest = &bytes[start..];
        let mut certs = Vec::new();
        while !rest.is_empty()
            && !rest
                .iter()
                .all(|b| matches!(b, 0 | b' ' | b'\t' | b'\r' | b'\n'))
        {
            let mut reader = SliceReader::new(rest).map_err(|e| format!("not DER: {e}"))?;
            certs.push(
                Certificate::decode(&mut reader)
                    .map_err(|e| format!("not a DER X.509 certificate: {e}"))?,
            );
            let used = u32::from(reader.position()) as usize;
            rest = &rest[used..];
        }
        certs
    };
    if certs.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(certs)
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Parses exactly one certificate, DER or PEM.
pub(crate) fn parse_one(bytes: &[u8]) -> Result<Certificate, String> {
    let mut certs = parse_bundle(bytes)?;
    if certs.len() != 1 {
        return Err(format!("expected one certificate, got {}", certs.len()));
    }
    Ok(certs.remove(0))
}

/// The first common name of a distinguished name, or the whole name when it has none.
pub(crate) fn name_cn(name: &Name) -> String {
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid != OID_COMMON_NAME {
                continue;
            }
            if let Ok(s) = atv.value.decode_as::<Utf8StringRef<'_>>() {
                return s.as_str().to_string();
            }
            if let Ok(s) = atv.value.decode_as::<PrintableStringRef<'_>>() {
                return s.as_str().to_string();
            }
            if let Ok(s) = atv.value.decode_as::<Ia5StringRef<'_>>() {
                return s.as_str().to_string();
            }
        }
    }
    name.to_string()
}

pub(crate) fn subject_cn(cert: &Certificate) -> String {
    name_cn(&cert.tbs_certificate.subject)
}

pub(crate) fn issuer_cn(cert: &Certificate) -> String {
    name_cn(&cert.tbs_certificate.issuer)
}

pub(crate) fn is_self_issued(cert: &Certificate) -> bool {
    cert.tbs_certificate.subject == cert.tbs_certificate.issuer
}

/// SHA-256 of the DER encoding, hex.
pub(crate) fn fingerprint(cert: &Certificate) -> String {
    match cert.to_der() {
        Ok(der) => hex::encode(Sha256::digest(der)),
        Err(_) => "<unencodable>".into(),
    }
}

/// The raw value of an extension, if present.
pub(crate) fn extension<'c>(cert: &'c Certificate, oid: &ObjectIdentifier) -> Option<&'c [u8]> {
    cert.tbs_certificate
        .extensions
        .as_ref()?
        .iter()
        .find(|e| &e.extn_id == oid)
        .map(|e| e.extn_value.as_bytes())
}

/// Checks that `at` lies within the certificate's validity window.
pub(crate) fn check_validity(
    cert: &Certificate,
    name: &str,
    at: SystemTime,
) -> Result<String, VerifyError> {
    let v = &cert.tbs_certificate.validity;
    let (not_before, not_after) = (v.not_before.to_system_time(), v.not_after.to_system_time());
    let window = format!(
        "{} .. {}",
        format_rfc3339(not_before),
        format_rfc3339(not_after)
    );
    if at < not_before || at > not_after {
        return Err(VerifyError::CertificateValidity {
            cert: name.to_string(),
            at: format_rfc3339(at),
            not_before: format_rfc3339(not_before),
            not_after: format_rfc3339(not_after),
        });
    }
    Ok(format!("{} within {window}", format_rfc3339(at)))
}

/// Verifies that `issuer`'s P-256 key signed `subject` with ecdsa-with-SHA256.
pub(crate) fn verify_ecdsa_p256(issuer: &Certificate, subject: &Certificate) -> Result<(), String> {
    let alg = &subject.signature_algorithm.oid;
    if alg != &OID_ECDSA_WITH_SHA256 {
        return Err(format!(
            "signature algorithm is {alg}, expected ecdsa-with-SHA256"
        ));
    }
    let key = p256_key(issuer)?;
    let sig_bytes = subject
        .signature
        .as_bytes()
        .ok_or("signature BIT STRING has unused bits")?;
    let sig = p256::ecdsa::Signature::from_der(sig_bytes)
        .map_err(|e| format!("signature is not DER ECDSA: {e}"))?;
    let tbs = subject
        .tbs_certificate
        .to_der()
        .map_err(|e| format!("cannot encode TBS certificate: {e}"))?;
    key.verify(&tbs, &sig)
        .map_err(|_| "signature does not verify".to_string())
}

/// The certificate's public key as a P-256 verifying key.
pub(crate) fn p256_key(cert: &Certificate) -> Result<p256::ecdsa::VerifyingKey, String> {
    let spki = &cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key;
    p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.raw_bytes())
        .map_err(|_| "public key is not an ECDSA P-256 key".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MILAN_CHAIN: &[u8] = include_bytes!("../testdata/snp/virtee-sev/cert_chain_milan");
    const VCEK_DER: &[u8] = include_bytes!("../testdata/snp/virtee-sev/vcek_milan.der");

    #[test]
    fn der_ending_in_a_whitespace_or_nul_byte_is_not_truncated() {
        // The last byte of a DER certificate belongs to its signature and
        // can be any value; parsing (not verifying) must keep it.
        for last in [0u8, b' ', b'\n', b'\r', b'\t'] {
            let mut der = VCEK_DER.to_vec();
            *der.last_mut().unwrap() = last;
            let cert = parse_one(&der).unwrap_or_else(|e| panic!("last byte {last:#x}: {e}"));
            assert_eq!(subject_cn(&cert), "SEV-VCEK");
            // NUL padding after the certificate (as in SNP certificate tables) is ignored.
            der.extend_from_slice(&[0, 0, 0, b'\n']);
            assert!(parse_one(&der).is_ok(), "padded, last byte {last:#x}");
        }
        // Two DER certificates back to back still parse as two.
        let two = [VCEK_DER, VCEK_DER].concat();
        assert_eq!(parse_bundle(&two).unwrap().len(), 2);
    }

    #[test]
    fn parses_pem_bundle_and_der() {
        let chain = parse_bundle(MILAN_CHAIN).unwrap();
        assert_eq!(
            chain.iter().map(subject_cn).collect::<Vec<_>>(),
            ["SEV-Milan", "ARK-Milan"]
        );
        assert!(is_self_issued(&chain[1]));
        assert!(!is_self_issued(&chain[0]));
        let vcek = parse_one(VCEK_DER).unwrap();
        assert_eq!(subject_cn(&vcek), "SEV-VCEK");
        assert_eq!(issuer_cn(&vcek), "SEV-Milan");
    }

    #[test]
    fn rejects_garbage_and_empty() {
        assert!(parse_bundle(b"").is_err());
        assert!(parse_bundle(b"\0\0\n").is_err());
        assert!(parse_bundle(&VCEK_DER[..100]).is_err());
        assert!(parse_one(MILAN_CHAIN)
            .unwrap_err()
            .contains("expected one certificate, got 2"));
    }
}
