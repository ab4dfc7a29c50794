//! AMD's certificate chain: the ARK (root, self-signed), the ASK (signs VCEKs) and
//! the ASVK (signs VLEKs), all RSA-PSS with SHA-384. The chain a caller passes is
//! sorted into these roles here, and its ARK is later pinned to AMD's.
use sev::certs::snp::{Certificate as SevCertificate, Verifiable};
use x509_cert::Certificate;

use super::product::Product;
use super::vek::VekKind;
use crate::x509;

/// An ARK with the intermediates that came with it.
#[derive(Clone, Debug)]
pub(crate) struct AmdChain {
    pub ark: Certificate,
    pub ask: Option<Certificate>,
    pub asvk: Option<Certificate>,
}

impl AmdChain {
    /// Sorts certificates into ARK (self-issued), ASVK (`SEV-VLEK-<product>`) and
    /// ASK (`SEV-<product>`). End-entity keys and duplicates are refused.
    pub fn from_certs(certs: Vec<Certificate>) -> Result<AmdChain, String> {
        let (mut ark, mut ask, mut asvk) = (None, None, None);
        for cert in certs {
            let cn = x509::subject_cn(&cert);
            let slot = if x509::is_self_issued(&cert) {
                &mut ark
            } else if cn == "SEV-VCEK" || cn == "SEV-VLEK" {
                return Err(format!(
                    "contains the end-entity certificate {cn}; pass it separately (--vcek)"
                ));
            } else if cn.starts_with("SEV-VLEK-") {
                &mut asvk
            } else if cn.starts_with("SEV-") {
                &mut ask
            } else {
                return Err(format!(
                    "unexpected certificate {cn:?} (expected ARK-*, SEV-* or SEV-VLEK-*)"
                ));
            };
            if slot.is_some() {
                return Err(format!("more than one certificate in the role of {cn}"));
            }
            *slot = Some(cert);
        }
        let ark = ark.ok_or("no self-signed ARK in the chain")?;
        if ask.is_none() && asvk.is_none() {
            return Err("no ASK or ASVK in the chain".into());
        }
        Ok(AmdChain { ark, ask, asvk })
    }

    /// The product the ARK's name says (`ARK-Milan`).
    pub fn product(&self) -> Option<Product> {
        x509::subject_cn(&self.ark)
            .strip_prefix("ARK-")
            .and_then(Product::from_amd_name)
    }

    /// The intermediate that signs `kind` keys.
    pub fn intermediate(&self, kind: VekKind) -> Option<&Certificate> {
        match kind {
            VekKind::Vcek => self.ask.as_ref(),
            VekKind::Vlek => self.asvk.as_ref(),
        }
    }
}

/// Checks that `signer` signed `signee` with RSA-PSS SHA-384, using the `sev`
/// crate's verification (which also insists on the RSASSA-PSS algorithm OID).
pub(crate) fn verify_rsa_pss(signer: &Certificate, signee: &Certificate) -> Result<(), String> {
    let signer = SevCertificate::from(signer.clone());
    let signee = SevCertificate::from(signee.clone());
    (&signer, &signee).verify().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(pem: &[u8]) -> Result<AmdChain, String> {
        AmdChain::from_certs(x509::parse_bundle(pem).unwrap())
    }

    #[test]
    fn sorts_roles() {
        let c = chain(include_bytes!(
            "../../testdata/snp/trustee/genoa_ask_ark_asvk.pem"
        ))
        .unwrap();
        assert_eq!(x509::subject_cn(&c.ark), "ARK-Genoa");
        assert_eq!(x509::subject_cn(c.ask.as_ref().unwrap()), "SEV-Genoa");
        assert_eq!(x509::subject_cn(c.asvk.as_ref().unwrap()), "SEV-VLEK-Genoa");
        assert_eq!(c.product(), Some(Product::Genoa));
        verify_rsa_pss(&c.ark, &c.ark).unwrap();
        verify_rsa_pss(&c.ark, c.ask.as_ref().unwrap()).unwrap();
        verify_rsa_pss(&c.ark, c.asvk.as_ref().unwrap()).unwrap();
    }

    #[test]
    fn refuses_incomplete_or_mixed_chains() {
        assert!(
            chain(include_bytes!("../../testdata/snp/ark-ask/milan_ark.pem"))
                .unwrap_err()
                .contains("no ASK or ASVK")
        );
        assert!(
            chain(include_bytes!("../../testdata/snp/ark-ask/milan_ask.pem"))
                .unwrap_err()
                .contains("no self-signed ARK")
        );
        let mut two = include_bytes!("../../testdata/snp/virtee-sev/cert_chain_milan").to_vec();
        two.extend_from_slice(include_bytes!("../../testdata/snp/ark-ask/milan_ask.pem"));
        assert!(chain(&two).unwrap_err().contains("more than one"));
    }

    #[test]
    fn rsa_pss_rejects_wrong_signer() {
        let milan = chain(include_bytes!(
            "../../testdata/snp/virtee-sev/cert_chain_milan"
        ))
        .unwrap();
        let genoa = chain(include_bytes!(
            "../../testdata/snp/go-sev-guest/ask_ark_genoa.pem"
        ))
        .unwrap();
        assert!(verify_rsa_pss(&genoa.ark, milan.ask.as_ref().unwrap()).is_err());
    }

    #[test]
    fn turin_vcek_is_signed_by_turin_ask() {
        let turin = chain(include_bytes!(
            "../../testdata/snp/virtee-sev/cert_chain_turin"
        ))
        .unwrap();
        let vcek = x509::parse_one(include_bytes!(
            "../../testdata/snp/virtee-sev/vcek_turin.der"
        ))
        .unwrap();
        verify_rsa_pss(turin.ask.as_ref().unwrap(), &vcek).unwrap();
        let milan = chain(include_bytes!(
            "../../testdata/snp/virtee-sev/cert_chain_milan"
        ))
        .unwrap();
        assert!(verify_rsa_pss(milan.ask.as_ref().unwrap(), &vcek).is_err());
    }
}
