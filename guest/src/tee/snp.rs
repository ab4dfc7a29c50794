//! SEV-SNP in the guest: reports from the AMD-SP through the kernel's
//! /dev/sev-guest (SNP_GET_REPORT / SNP_GET_EXT_REPORT ioctls, through the
//! `sev` crate's `firmware::guest::Firmware`).
//!
//! Nothing here can run on the development machines (no SEV); the device
//! access is a thin call into `sev`, and what the agent does with the bytes
//! (report checks, picking the endorsement key, the evidence JSON) is
//! unit-tested with real reports.
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cloister_evidence::snp::{SigningKey, SnpReport};
use cloister_kbs_client::{Attester, AttesterError};
use kbs_types::Tee as KbsTee;
use serde_json::json;
use sev::firmware::host::CertType;
use tracing::info;

use super::report::{self, Origin, HOST_DATA_LABEL};
use super::{HostDataSource, TeeError};

pub const DEVICE: &str = "/dev/sev-guest";

/// An endorsement-key certificate from the extended report's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cert {
    Vcek(Vec<u8>),
    Vlek(Vec<u8>),
    Other,
}

/// Access to the AMD-SP. The device in production, a fake in tests.
pub trait SnpFirmware: Send + Sync {
    /// A report (VMPL 0) over `report_data`.
    fn report(&self, report_data: [u8; 64]) -> Result<Vec<u8>, String>;
    /// A report with the host-provided certificate table.
    fn ext_report(&self, report_data: [u8; 64]) -> Result<(Vec<u8>, Vec<Cert>), String>;
}

/// /dev/sev-guest, opened for each request (the `sev` handle needs `&mut`).
pub struct SevGuestDevice;

fn open() -> Result<sev::firmware::guest::Firmware, String> {
    sev::firmware::guest::Firmware::open().map_err(|e| format!("opening {DEVICE}: {e}"))
}

/// The agent runs at VMPL 0 (no SVSM); the `sev` crate defaults to 1.
const VMPL: u32 = 0;

impl SnpFirmware for SevGuestDevice {
    fn report(&self, report_data: [u8; 64]) -> Result<Vec<u8>, String> {
        open()?
            .get_report(None, Some(report_data), Some(VMPL))
            .map_err(|e| format!("SNP_GET_REPORT: {e}"))
    }

    fn ext_report(&self, report_data: [u8; 64]) -> Result<(Vec<u8>, Vec<Cert>), String> {
        let (report, certs) = open()?
            .get_ext_report(None, Some(report_data), Some(VMPL))
            .map_err(|e| format!("SNP_GET_EXT_REPORT: {e}"))?;
        let certs = certs
            .unwrap_or_default()
            .into_iter()
            .map(|c| match c.cert_type {
                CertType::VCEK => Cert::Vcek(c.data),
                CertType::VLEK => Cert::Vlek(c.data),
                _ => Cert::Other,
            })
            .collect();
        Ok((report, certs))
    }
}

/// HOST_DATA from a fresh SNP report.
pub struct SnpHostData {
    fw: Arc<dyn SnpFirmware>,
}

impl SnpHostData {
    pub fn new(fw: Arc<dyn SnpFirmware>) -> Self {
        SnpHostData { fw }
    }
}

impl HostDataSource for SnpHostData {
    fn name(&self) -> &'static str {
        "snp"
    }

    fn host_data(&self) -> Result<Option<Vec<u8>>, TeeError> {
        let raw = self.fw.report(HOST_DATA_LABEL).map_err(|message| {
            if message.starts_with("opening") {
                TeeError::Unreachable {
                    tee: "snp",
                    what: DEVICE.into(),
                    message,
                }
            } else {
                TeeError::Report {
                    tee: "snp",
                    message,
                }
            }
        })?;
        let view =
            report::read(&raw, &HOST_DATA_LABEL, Origin::Snp).map_err(|e| TeeError::Report {
                tee: "snp",
                message: e.to_string(),
            })?;
        info!(
            host_data = %hex::encode(view.host_data),
            measurement = %hex::encode(view.measurement),
            policy = format_args!("{:#x}", view.policy),
            vmpl = view.vmpl,
            "SEV-SNP report read"
        );
        Ok(Some(view.host_data.to_vec()))
    }
}

/// Evidence for the KBS: the report and the endorsement key that signed it,
/// from the extended report's certificate table (which the host provides).
/// AMD's ASK/ARK come from the verifier's built-in roots.
pub struct SnpAttester {
    fw: Arc<dyn SnpFirmware>,
}

impl SnpAttester {
    pub fn new(fw: Arc<dyn SnpFirmware>) -> Self {
        SnpAttester { fw }
    }
}

/// The certificate of the key that signed `report` (KEY_INFO.SIGNING_KEY).
pub fn signing_cert(report: &[u8], certs: &[Cert]) -> Result<Vec<u8>, String> {
    let parsed = SnpReport::parse(report).map_err(|e| format!("malformed report: {e}"))?;
    let want = parsed.signing_key();
    let found = certs.iter().find_map(|c| match (c, &want) {
        (Cert::Vcek(der), SigningKey::Vcek) | (Cert::Vlek(der), SigningKey::Vlek) => {
            Some(der.clone())
        }
        _ => None,
    });
    match (found, want) {
        (Some(der), _) => Ok(der),
        (None, k @ (SigningKey::Vcek | SigningKey::Vlek)) => Err(format!(
            "the report is signed with the {k}, but the host's certificate table has no {k} \
             (the host must provide the certificates for extended guest requests; docs/snp-launch.md)"
        )),
        (None, k) => Err(format!(
            "the report's signing key is {k}: nothing to attest with"
        )),
    }
}

/// The `tee-evidence` JSON cloister-kbs expects for `snp`.
pub fn evidence_json(report: &[u8], vek_der: &[u8]) -> serde_json::Value {
    json!({"report": STANDARD.encode(report), "vcek": STANDARD.encode(vek_der)})
}

#[async_trait]
impl Attester for SnpAttester {
    fn tee(&self) -> KbsTee {
        KbsTee::Snp
    }

    async fn evidence(&self, report_data: [u8; 64]) -> Result<serde_json::Value, AttesterError> {
        let fw = self.fw.clone();
        // An ioctl that waits for the AMD-SP: off the async threads.
        let (raw, certs) = tokio::task::spawn_blocking(move || fw.ext_report(report_data))
            .await
            .map_err(|e| AttesterError::Other(format!("SNP report task: {e}")))?
            .map_err(AttesterError::Other)?;
        report::read(&raw, &report_data, Origin::Snp)
            .map_err(|e| AttesterError::Other(e.to_string()))?;
        let vek = signing_cert(&raw, &certs).map_err(AttesterError::Other)?;
        Ok(evidence_json(&raw, &vek))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tee::report::tests::{real_report, sim_report};

    /// A fake AMD-SP answering with a real report carrying `host_data`, or an error.
    struct Fake {
        host_data: [u8; 32],
        certs: Vec<Cert>,
        fail: Option<String>,
        sim: bool,
    }

    impl SnpFirmware for Fake {
        fn report(&self, rd: [u8; 64]) -> Result<Vec<u8>, String> {
            if let Some(f) = &self.fail {
                return Err(f.clone());
            }
            Ok(if self.sim {
                sim_report(&rd, &self.host_data)
            } else {
                real_report(&rd, &self.host_data)
            })
        }
        fn ext_report(&self, rd: [u8; 64]) -> Result<(Vec<u8>, Vec<Cert>), String> {
            Ok((self.report(rd)?, self.certs.clone()))
        }
    }

    fn fake(host_data: [u8; 32]) -> Fake {
        Fake {
            host_data,
            certs: vec![Cert::Other, Cert::Vcek(vec![0x30, 1, 2])],
            fail: None,
            sim: false,
        }
    }

    #[test]
    fn host_data_is_read_from_the_report() {
        let s = SnpHostData::new(Arc::new(fake([9; 32])));
        assert_eq!(s.host_data().unwrap().unwrap(), vec![9u8; 32]);
    }

    #[test]
    fn device_errors_refuse_initdata() {
        let mut f = fake([0; 32]);
        f.fail = Some("opening /dev/sev-guest: No such file or directory".into());
        let e = SnpHostData::new(Arc::new(f)).host_data().unwrap_err();
        assert!(matches!(e, TeeError::Unreachable { tee: "snp", .. }), "{e}");
        let mut f = fake([0; 32]);
        f.fail = Some("SNP_GET_REPORT: firmware error".into());
        let e = SnpHostData::new(Arc::new(f)).host_data().unwrap_err();
        assert!(matches!(e, TeeError::Report { tee: "snp", .. }), "{e}");
        let mut f = fake([0; 32]);
        f.sim = true;
        let e = SnpHostData::new(Arc::new(f)).host_data().unwrap_err();
        assert!(e.to_string().contains("sim marker"), "{e}");
    }

    #[test]
    fn the_signing_key_picks_the_certificate() {
        let r = real_report(&[0; 64], &[0; 32]); // KEY_INFO: VCEK
        let certs = [Cert::Vlek(vec![2]), Cert::Vcek(vec![1])];
        assert_eq!(signing_cert(&r, &certs).unwrap(), vec![1]);
        let e = signing_cert(&r, &[Cert::Vlek(vec![2])]).unwrap_err();
        assert!(e.contains("has no VCEK"), "{e}");
        let mut vlek = r.clone();
        vlek[0x48] = 1 << 2; // SIGNING_KEY = 1 (VLEK), bits 4:2
        assert_eq!(signing_cert(&vlek, &certs).unwrap(), vec![2]);
        assert!(signing_cert(&r[..10], &certs).is_err());
    }

    #[tokio::test]
    async fn evidence_is_the_report_and_its_vcek() {
        let a = SnpAttester::new(Arc::new(fake([3; 32])));
        assert_eq!(a.tee(), KbsTee::Snp);
        let v = a.evidence([5; 64]).await.unwrap();
        let report = STANDARD.decode(v["report"].as_str().unwrap()).unwrap();
        assert_eq!(report[0x50..0x90], [5u8; 64]);
        assert_eq!(report[0xc0..0xe0], [3u8; 32]);
        assert_eq!(v["vcek"], STANDARD.encode([0x30, 1, 2]));
        assert_eq!(v.as_object().unwrap().len(), 2);
    }
}
