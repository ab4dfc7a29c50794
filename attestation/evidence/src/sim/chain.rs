//! The sim certificate chain: sim ARK (self-signed) → sim ASK → sim VCEK, every
//! signature ECDSA P-384 with SHA-384 (the sim uses one algorithm end to end; AMD's
//! own chain is RSA-PSS). Sorting the chain and checking its signatures lives here.
use p384::ecdsa::signature::Verifier;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Encode;
use x509_cert::Certificate;

use super::layout::{SIM_ARK_CN, SIM_ASK_CN};
use crate::x509;

const OID_ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// The sim ARK and ASK, sorted by role.
pub(crate) struct SimChain {
    pub ark: Certificate,
    pub ask: Certificate,
}

impl SimChain {
    /// Sorts a bundle into the sim ARK and ASK, refusing anything else.
    pub fn from_certs(certs: Vec<Certificate>) -> Result<SimChain, String> {
        let (mut ark, mut ask) = (None, None);
        for cert in certs {
            let cn = x509::subject_cn(&cert);
            let slot = match cn.as_str() {
                SIM_ARK_CN if x509::is_self_issued(&cert) => &mut ark,
                SIM_ASK_CN => &mut ask,
                _ => {
                    return Err(format!(
                        "unexpected certificate {cn:?} (expected {SIM_ARK_CN:?} and {SIM_ASK_CN:?})"
                    ))
                }
            };
            if slot.is_some() {
                return Err(format!("more than one certificate named {cn:?}"));
            }
            *slot = Some(cert);
        }
        Ok(SimChain {
            ark: ark.ok_or("no sim ARK in the chain")?,
            ask: ask.ok_or("no sim ASK in the chain")?,
        })
    }
}

/// The certificate's key as a P-384 verifying key.
pub(crate) fn p384_key(cert: &Certificate) -> Result<p384::ecdsa::VerifyingKey, String> {
    let spki = &cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key;
    p384::ecdsa::VerifyingKey::from_sec1_bytes(spki.raw_bytes())
        .map_err(|_| "public key is not an ECDSA P-384 key".to_string())
}

/// Checks that `issuer` signed `subject` with ecdsa-with-SHA384.
pub(crate) fn verify_ecdsa_p384(issuer: &Certificate, subject: &Certificate) -> Result<(), String> {
    let alg = &subject.signature_algorithm.oid;
    if alg != &OID_ECDSA_WITH_SHA384 {
        return Err(format!(
            "signature algorithm is {alg}, expected ecdsa-with-SHA384"
        ));
    }
    let key = p384_key(issuer)?;
    let sig_bytes = subject
        .signature
        .as_bytes()
        .ok_or("signature BIT STRING has unused bits")?;
    let sig = p384::ecdsa::Signature::from_der(sig_bytes)
        .map_err(|e| format!("signature is not DER ECDSA: {e}"))?;
    let tbs = subject
        .tbs_certificate
        .to_der()
        .map_err(|e| format!("cannot encode TBS certificate: {e}"))?;
    key.verify(&tbs, &sig)
        .map_err(|_| "signature does not verify".to_string())
}
