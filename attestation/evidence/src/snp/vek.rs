//! The versioned endorsement key certificate (VCEK or VLEK) and AMD's extensions
//! on it (VCEK spec 57230, "VCEK Certificate Extensions"): product name, the TCB
//! security patch levels it was issued for, and the chip's hwID (VCEK only).
use x509_cert::der::asn1::{Ia5StringRef, OctetStringRef, Utf8StringRef};
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Decode;
use x509_cert::Certificate;

use crate::x509;

const fn amd_oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(s)
}

const OID_PRODUCT_NAME: ObjectIdentifier = amd_oid("1.3.6.1.4.1.3704.1.2");
const OID_BL_SPL: ObjectIdentifier = amd_oid("1.3.6.1.4.1.3704.1.3.1");
const OID_TEE_SPL: ObjectIdentifier = amd_oid("1.3.6.1.4.1.3704.1.3.2");
const OID_SNP_SPL: ObjectIdentifier = amd_oid("1.3.6.1.4.1.3704.1.3.3");
const OID_UCODE_SPL: ObjectIdentifier = amd_oid("1.3.6.1.4.1.3704.1.3.8");
const OID_FMC_SPL: ObjectIdentifier = amd_oid("1.3.6.1.4.1.3704.1.3.9");
const OID_HW_ID: ObjectIdentifier = amd_oid("1.3.6.1.4.1.3704.1.4");
const OID_CSP_ID: ObjectIdentifier = amd_oid("1.3.6.1.4.1.3704.1.5");

/// VCEK (per chip, signed by the ASK) or VLEK (per cloud provider, signed by the ASVK).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VekKind {
    Vcek,
    Vlek,
}

impl VekKind {
    /// Lower-case name used in check names (`vcek signature`).
    pub fn name(self) -> &'static str {
        match self {
            VekKind::Vcek => "vcek",
            VekKind::Vlek => "vlek",
        }
    }

    /// The name of the intermediate that signs this kind of key.
    pub fn signer_name(self) -> &'static str {
        match self {
            VekKind::Vcek => "ask",
            VekKind::Vlek => "asvk",
        }
    }

    /// Tells the kind from the subject common name AMD gives it.
    pub fn of(cert: &Certificate) -> Result<VekKind, String> {
        match x509::subject_cn(cert).as_str() {
            "SEV-VCEK" => Ok(VekKind::Vcek),
            "SEV-VLEK" => Ok(VekKind::Vlek),
            other => Err(format!(
                "subject CN is {other:?}, expected \"SEV-VCEK\" or \"SEV-VLEK\""
            )),
        }
    }
}

/// AMD's extensions, each `None` when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VekExtensions {
    pub product_name: Option<String>,
    pub bl_spl: Option<u8>,
    pub tee_spl: Option<u8>,
    pub snp_spl: Option<u8>,
    pub ucode_spl: Option<u8>,
    pub fmc_spl: Option<u8>,
    pub hw_id: Option<Vec<u8>>,
    pub csp_id: Option<String>,
}

fn spl(cert: &Certificate, oid: &ObjectIdentifier, name: &str) -> Result<Option<u8>, String> {
    x509::extension(cert, oid)
        .map(|v| {
            u8::from_der(v).map_err(|_| {
                format!(
                    "{name} extension is not a DER INTEGER 0..=255: {}",
                    hex::encode(v)
                )
            })
        })
        .transpose()
}

fn string(value: &[u8]) -> Option<String> {
    if let Ok(s) = Ia5StringRef::from_der(value) {
        return Some(s.as_str().to_string());
    }
    Utf8StringRef::from_der(value)
        .ok()
        .map(|s| s.as_str().to_string())
}

/// hwID is found both as raw bytes and wrapped in a DER OCTET STRING; it is 64
/// bytes (Milan, Genoa) or 8 bytes (Turin).
fn hw_id(value: &[u8]) -> Vec<u8> {
    if let Ok(inner) = OctetStringRef::from_der(value) {
        if matches!(inner.as_bytes().len(), 8 | 64) {
            return inner.as_bytes().to_vec();
        }
    }
    value.to_vec()
}

impl VekExtensions {
    pub fn parse(cert: &Certificate) -> Result<VekExtensions, String> {
        Ok(VekExtensions {
            product_name: x509::extension(cert, &OID_PRODUCT_NAME).and_then(string),
            bl_spl: spl(cert, &OID_BL_SPL, "blSPL")?,
            tee_spl: spl(cert, &OID_TEE_SPL, "teeSPL")?,
            snp_spl: spl(cert, &OID_SNP_SPL, "snpSPL")?,
            ucode_spl: spl(cert, &OID_UCODE_SPL, "ucodeSPL")?,
            fmc_spl: spl(cert, &OID_FMC_SPL, "fmcSPL")?,
            hw_id: x509::extension(cert, &OID_HW_ID).map(hw_id),
            csp_id: x509::extension(cert, &OID_CSP_ID).and_then(string),
        })
    }
}

/// Whether the VCEK's hwID names the chip in the report: equal to CHIP_ID, or for
/// Turin's 8-byte hwID, equal to its first 8 bytes with the rest zero.
pub fn hw_id_matches(hw_id: &[u8], chip_id: &[u8; 64]) -> bool {
    matches!(hw_id.len(), 8 | 64)
        && chip_id[..hw_id.len()] == *hw_id
        && chip_id[hw_id.len()..].iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(der: &[u8]) -> Certificate {
        x509::parse_one(der).unwrap()
    }

    #[test]
    fn milan_vcek_extensions() {
        let c = cert(include_bytes!(
            "../../testdata/snp/virtee-sev/vcek_milan.der"
        ));
        assert_eq!(VekKind::of(&c), Ok(VekKind::Vcek));
        let e = VekExtensions::parse(&c).unwrap();
        assert_eq!(e.product_name.as_deref(), Some("Milan-B0"));
        assert_eq!(
            (e.bl_spl, e.tee_spl, e.snp_spl, e.ucode_spl, e.fmc_spl),
            (Some(3), Some(0), Some(8), Some(115), None)
        );
        assert_eq!(hex::encode(e.hw_id.unwrap()), "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6");
    }

    #[test]
    fn turin_vcek_has_fmc_and_short_hwid() {
        let c = cert(include_bytes!(
            "../../testdata/snp/virtee-sev/vcek_turin.der"
        ));
        let e = VekExtensions::parse(&c).unwrap();
        assert_eq!(e.product_name.as_deref(), Some("Turin"));
        assert_eq!(
            (e.fmc_spl, e.bl_spl, e.tee_spl, e.snp_spl, e.ucode_spl),
            (Some(0), Some(0), Some(0), Some(0), Some(9))
        );
        let hw = e.hw_id.unwrap();
        assert_eq!(hex::encode(&hw), "1e550a8ee5cf9f4d");
        let mut chip = [0u8; 64];
        chip[..8].copy_from_slice(&hw);
        assert!(hw_id_matches(&hw, &chip));
        chip[9] = 1;
        assert!(!hw_id_matches(&hw, &chip));
    }

    #[test]
    fn both_hwid_encodings_are_read() {
        let legacy = VekExtensions::parse(&cert(include_bytes!(
            "../../testdata/snp/trustee/test-vcek-invalid-legacy.der"
        )))
        .unwrap();
        let new = VekExtensions::parse(&cert(include_bytes!(
            "../../testdata/snp/trustee/test-vcek-invalid-new.der"
        )))
        .unwrap();
        assert_eq!(legacy.hw_id.as_ref().map(Vec::len), Some(64));
        assert_eq!(new.hw_id.as_ref().map(Vec::len), Some(64));
    }

    #[test]
    fn vlek_has_csp_id_and_no_hwid() {
        let c = cert(include_bytes!("../../testdata/snp/trustee/test-vlek.der"));
        assert_eq!(VekKind::of(&c), Ok(VekKind::Vlek));
        let e = VekExtensions::parse(&c).unwrap();
        assert_eq!(e.hw_id, None);
        assert_eq!(
            (e.bl_spl, e.snp_spl, e.ucode_spl),
            (Some(4), Some(24), Some(217))
        );
        assert!(e.csp_id.unwrap().contains("amazonaws.com"));
    }
}
