//! The Intel TDX DCAP quote, versions 4 and 5 (Intel "TDX DCAP Quoting Library
//! API", appendix "Quote Format"), read with bounds checks at every step.
//!
//! Hand-written because the Rust crates that parse quotes (e.g. dcap-qvl) couple
//! parsing to full collateral verification in one call and their own error types;
//! here each step must be checked and reported on its own, before collateral
//! (TCB info, QE identity) is available.
//!
//! Layout:
//! ```text
//! header (48) | v5: body type (2), body size (4) | TD report body (584 or 648)
//! signature data size (4)
//! signature data: quote signature (64) | attestation key (64)
//!   | certification data: type (2) = 6, size (4)
//!       QE report (384) | QE report signature (64) | QE auth data size (2) + data
//!       | certification data: type (2) = 5 (PCK chain), size (4), data
//! ```

/// Header `tee_type` of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Header `att_key_type` for ECDSA-256 with P-256.
pub const ATT_KEY_ECDSA_P256: u16 = 2;
const TD10_BODY_LEN: usize = 584;
const TD15_BODY_LEN: usize = 648;
const QE_REPORT_LEN: usize = 384;
/// Certification data type: the QE report and what certifies it.
const CERT_QE_REPORT: u16 = 6;
/// Certification data type: the PCK certificate chain.
pub const CERT_PCK_CHAIN: u16 = 5;

/// A bounds-checked reader over the quote.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "{what}: needs {n} bytes at offset {:#x}, only {} left",
                    self.pos,
                    self.bytes.len() - self.pos
                )
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

/// The quote header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub att_key_type: u16,
    pub tee_type: u32,
    pub qe_vendor_id: [u8; 16],
    pub user_data: [u8; 20],
}

/// The TD report body (TDX 1.0; TDX 1.5 adds the last two fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TdReport {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    pub tee_tcb_svn2: Option<[u8; 16]>,
    pub mr_servicetd: Option<[u8; 48]>,
}

impl TdReport {
    /// TD_ATTRIBUTES.DEBUG (bit 0): the TD may be inspected by the host.
    pub fn debug(&self) -> bool {
        self.td_attributes[0] & 1 != 0
    }

    fn parse(body: &[u8]) -> Result<TdReport, String> {
        let mut r = Reader::new(body);
        let mut td = TdReport {
            tee_tcb_svn: r.array("tee_tcb_svn")?,
            mr_seam: r.array("mr_seam")?,
            mr_signer_seam: r.array("mr_signer_seam")?,
            seam_attributes: r.array("seam_attributes")?,
            td_attributes: r.array("td_attributes")?,
            xfam: r.array("xfam")?,
            mr_td: r.array("mr_td")?,
            mr_config_id: r.array("mr_config_id")?,
            mr_owner: r.array("mr_owner")?,
            mr_owner_config: r.array("mr_owner_config")?,
            rtmr: [
                r.array("rtmr0")?,
                r.array("rtmr1")?,
                r.array("rtmr2")?,
                r.array("rtmr3")?,
            ],
            report_data: r.array("report_data")?,
            tee_tcb_svn2: None,
            mr_servicetd: None,
        };
        if body.len() == TD15_BODY_LEN {
            td.tee_tcb_svn2 = Some(r.array("tee_tcb_svn2")?);
            td.mr_servicetd = Some(r.array("mr_servicetd")?);
        }
        Ok(td)
    }
}

/// The QE report (an SGX enclave report body) and the fields a verifier reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QeReport<'a> {
    pub raw: &'a [u8],
}

impl QeReport<'_> {
    pub fn mr_enclave(&self) -> &[u8] {
        &self.raw[64..96]
    }
    pub fn mr_signer(&self) -> &[u8] {
        &self.raw[128..160]
    }
    pub fn isv_prod_id(&self) -> u16 {
        u16::from_le_bytes([self.raw[256], self.raw[257]])
    }
    pub fn isv_svn(&self) -> u16 {
        u16::from_le_bytes([self.raw[258], self.raw[259]])
    }
    pub fn report_data(&self) -> &[u8] {
        &self.raw[320..384]
    }
}

/// A parsed quote, borrowing from the bytes it came from.
#[derive(Clone, Debug)]
pub struct Quote<'a> {
    pub header: Header,
    /// 2 = TDX 1.0 body, 3 = TDX 1.5 body (v4 quotes are always 2).
    pub body_type: u16,
    pub body: TdReport,
    /// Header and body: what the attestation key signed.
    pub signed: &'a [u8],
    /// r || s, big-endian.
    pub signature: [u8; 64],
    /// x || y of the P-256 attestation key.
    pub attestation_key: [u8; 64],
    pub qe_report: QeReport<'a>,
    pub qe_report_signature: [u8; 64],
    pub qe_auth_data: &'a [u8],
    pub cert_data_type: u16,
    pub cert_data: &'a [u8],
    /// Bytes after the signature data (padding some producers add).
    pub trailing: usize,
}

impl<'a> Quote<'a> {
    /// Reads a v4 or v5 TDX quote with ECDSA P-256 attestation key.
    pub fn parse(bytes: &'a [u8]) -> Result<Quote<'a>, String> {
        let mut r = Reader::new(bytes);
        let version = r.u16("header version")?;
        let att_key_type = r.u16("header att_key_type")?;
        let tee_type = r.u32("header tee_type")?;
        if version != 4 && version != 5 {
            return Err(format!("version: expected 4 or 5, got {version}"));
        }
        if tee_type != TEE_TYPE_TDX {
            return Err(format!(
                "tee_type: expected {TEE_TYPE_TDX:#x} (TDX), got {tee_type:#x}"
            ));
        }
        if att_key_type != ATT_KEY_ECDSA_P256 {
            return Err(format!(
                "att_key_type: expected {ATT_KEY_ECDSA_P256} (ECDSA P-256), got {att_key_type}"
            ));
        }
        r.take(4, "header reserved")?;
        let header = Header {
            version,
            att_key_type,
            tee_type,
            qe_vendor_id: r.array("qe_vendor_id")?,
            user_data: r.array("user_data")?,
        };

        let (body_type, body_len) = if version == 4 {
            (2, TD10_BODY_LEN)
        } else {
            let body_type = r.u16("body type")?;
            let body_size = r.u32("body size")? as usize;
            let expected = match body_type {
                2 => TD10_BODY_LEN,
                3 => TD15_BODY_LEN,
                other => {
                    return Err(format!(
                        "body type: expected 2 (TDX 1.0) or 3 (TDX 1.5), got {other}"
                    ))
                }
            };
            if body_size != expected {
                return Err(format!(
                    "body size: expected {expected} for body type {body_type}, got {body_size}"
                ));
            }
            (body_type, expected)
        };
        let body = TdReport::parse(r.take(body_len, "TD report body")?)?;
        let signed = &bytes[..r.pos];

        let sig_len = r.u32("signature data size")? as usize;
        let mut s = Reader::new(r.take(sig_len, "signature data")?);
        let trailing = r.remaining();
        let signature = s.array("quote signature")?;
        let attestation_key = s.array("attestation key")?;
        let outer_type = s.u16("certification data type")?;
        if outer_type != CERT_QE_REPORT {
            return Err(format!(
                "certification data type: expected {CERT_QE_REPORT} (QE report), got {outer_type}"
            ));
        }
        let outer_len = s.u32("certification data size")? as usize;
        let mut c = Reader::new(s.take(outer_len, "certification data")?);
        if s.remaining() != 0 {
            return Err(format!(
                "signature data: {} bytes after the certification data",
                s.remaining()
            ));
        }
        let qe_report = QeReport {
            raw: c.take(QE_REPORT_LEN, "QE report")?,
        };
        let qe_report_signature = c.array("QE report signature")?;
        let auth_len = c.u16("QE auth data size")? as usize;
        let qe_auth_data = c.take(auth_len, "QE auth data")?;
        let cert_data_type = c.u16("PCK certification data type")?;
        let cert_len = c.u32("PCK certification data size")? as usize;
        let cert_data = c.take(cert_len, "PCK certification data")?;
        if c.remaining() != 0 {
            return Err(format!(
                "QE certification data: {} bytes after the PCK certification data",
                c.remaining()
            ));
        }
        Ok(Quote {
            header,
            body_type,
            body,
            signed,
            signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            cert_data_type,
            cert_data,
            trailing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &[u8] = include_bytes!("../../testdata/tdx/trustee/tdx_quote_4.dat");
    const V5: &[u8] = include_bytes!("../../testdata/tdx/trustee/tdx_quote_5.dat");

    #[test]
    fn parses_v4_and_v5() {
        let q = Quote::parse(V4).unwrap();
        assert_eq!(
            (q.header.version, q.body_type, q.signed.len(), q.trailing),
            (4, 2, 48 + 584, 0)
        );
        assert_eq!(hex::encode(q.body.mr_td), "705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031");
        assert!(q.body.debug());
        assert_eq!(q.cert_data_type, CERT_PCK_CHAIN);
        assert_eq!((q.qe_report.isv_prod_id(), q.qe_report.isv_svn()), (2, 4));
        let q = Quote::parse(V5).unwrap();
        assert_eq!(
            (q.header.version, q.body_type, q.signed.len()),
            (5, 3, 48 + 6 + 648)
        );
        assert!(q.body.mr_servicetd.is_some());
        assert!(!q.body.debug());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let end = 48 + 584 + 4 + 4300;
        for len in (0..end).step_by(7).chain([end - 1]) {
            assert!(Quote::parse(&V4[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn rejects_other_tees_and_versions() {
        let mut q = V4.to_vec();
        q[4] = 0;
        assert!(Quote::parse(&q).unwrap_err().contains("tee_type"));
        let mut q = V4.to_vec();
        q[0] = 3;
        assert!(Quote::parse(&q)
            .unwrap_err()
            .contains("version: expected 4 or 5, got 3"));
    }
}
