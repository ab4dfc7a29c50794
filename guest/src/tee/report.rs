//! What the agent reads from its own SNP-layout report (real SEV-SNP, or the
//! sim chip's look-alike): HOST_DATA (offset 0xC0, 32 bytes), MEASUREMENT
//! (0x90, 48 bytes) and REPORT_ID, after checking that the report answers
//! the question asked (REPORT_DATA) and comes from the TEE it claims to.
//!
//! The agent does not verify the signature of its own report: a real report
//! comes from the AMD-SP over the encrypted guest channel, and a sim report
//! proves nothing anyway. The KBS verifies signatures.
use cloister_evidence::sim::layout::has_sim_marker;
use cloister_evidence::snp::SnpReport;

/// REPORT_DATA the agent asks for when it only needs HOST_DATA: a fixed
/// label (no freshness is needed to read a launch-time field).
pub const HOST_DATA_LABEL: [u8; 64] = {
    let text = b"cloister-agent: read HOST_DATA";
    let mut out = [0u8; 64];
    let mut i = 0;
    while i < text.len() {
        out[i] = text[i];
        i += 1;
    }
    out
};

/// Where a report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The host-side sim chip (development only, NOT A TEE).
    Sim,
    /// /dev/sev-guest.
    Snp,
}

/// The fields the agent uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportView {
    pub host_data: [u8; 32],
    pub measurement: [u8; 48],
    pub report_id: [u8; 32],
    pub policy: u64,
    pub vmpl: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("malformed report: {0}")]
    Malformed(String),
    #[error("REPORT_DATA {got} is not the {asked} asked for: a stale or substituted report")]
    ReportData { asked: String, got: String },
    #[error("the report lacks the sim marker in CHIP_ID; a sim chip must never issue reports that look real")]
    NotSim,
    #[error(
        "/dev/sev-guest returned a report with the sim marker (cloister-sim: NOT A TEE) in CHIP_ID"
    )]
    SimFromDevice,
}

/// Parses `raw` and checks it answers `asked` and comes from `origin`.
pub fn read(raw: &[u8], asked: &[u8; 64], origin: Origin) -> Result<ReportView, ReportError> {
    let r = SnpReport::parse(raw).map_err(ReportError::Malformed)?;
    if &r.report_data != asked {
        return Err(ReportError::ReportData {
            asked: hex::encode(asked),
            got: hex::encode(r.report_data),
        });
    }
    match (origin, has_sim_marker(raw)) {
        (Origin::Sim, false) => return Err(ReportError::NotSim),
        (Origin::Snp, true) => return Err(ReportError::SimFromDevice),
        _ => {}
    }
    Ok(ReportView {
        host_data: r.host_data,
        measurement: r.measurement,
        report_id: r.report_id,
        policy: r.policy,
        vmpl: r.vmpl,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cloister_evidence::sim::layout::{OFF_CHIP_ID, SIM_MAGIC};

    /// A real SEV-SNP report (virtee/sev's Milan test report, kept by the
    /// evidence crate), with `report_data` and `host_data` written in.
    pub fn real_report(report_data: &[u8; 64], host_data: &[u8; 32]) -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../attestation/evidence/testdata/snp/virtee-sev/report_milan.bin"
        );
        let mut r = std::fs::read(path).unwrap();
        r[0x50..0x90].copy_from_slice(report_data);
        r[0xc0..0xe0].copy_from_slice(host_data);
        r
    }

    /// The same, marked as a sim report.
    pub fn sim_report(report_data: &[u8; 64], host_data: &[u8; 32]) -> Vec<u8> {
        let mut r = real_report(report_data, host_data);
        r[OFF_CHIP_ID..OFF_CHIP_ID + 32].copy_from_slice(&SIM_MAGIC);
        r
    }

    #[test]
    fn reads_host_data_at_0xc0_and_measurement_at_0x90() {
        let hd = [0xabu8; 32];
        let raw = real_report(&HOST_DATA_LABEL, &hd);
        let v = read(&raw, &HOST_DATA_LABEL, Origin::Snp).unwrap();
        assert_eq!(v.host_data, hd);
        // The report's own measurement, as the evidence crate's manifest lists it.
        assert_eq!(
            hex::encode(v.measurement),
            "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
        );
        assert_eq!(v.vmpl, 0);
        let sim = sim_report(&HOST_DATA_LABEL, &hd);
        assert_eq!(
            read(&sim, &HOST_DATA_LABEL, Origin::Sim).unwrap().host_data,
            hd
        );
    }

    #[test]
    fn refuses_wrong_report_data_truncation_and_crossed_origins() {
        let hd = [1u8; 32];
        let mut other = HOST_DATA_LABEL;
        other[63] = 1;
        let raw = real_report(&other, &hd);
        let e = read(&raw, &HOST_DATA_LABEL, Origin::Snp).unwrap_err();
        assert!(matches!(e, ReportError::ReportData { .. }), "{e}");
        assert!(e.to_string().contains("stale or substituted"), "{e}");

        let raw = real_report(&HOST_DATA_LABEL, &hd);
        for cut in [0, 100, 1183] {
            let e = read(&raw[..cut], &HOST_DATA_LABEL, Origin::Snp).unwrap_err();
            assert!(e.to_string().contains("expected 1184 bytes"), "{e}");
        }
        let mut long = raw.clone();
        long.push(0);
        assert!(matches!(
            read(&long, &HOST_DATA_LABEL, Origin::Snp),
            Err(ReportError::Malformed(_))
        ));
        let mut bad_version = raw.clone();
        bad_version[0] = 9;
        assert!(matches!(
            read(&bad_version, &HOST_DATA_LABEL, Origin::Snp),
            Err(ReportError::Malformed(_))
        ));

        // A "sim" report without the marker, and a device report with it.
        assert!(matches!(
            read(&raw, &HOST_DATA_LABEL, Origin::Sim),
            Err(ReportError::NotSim)
        ));
        let sim = sim_report(&HOST_DATA_LABEL, &hd);
        assert!(matches!(
            read(&sim, &HOST_DATA_LABEL, Origin::Snp),
            Err(ReportError::SimFromDevice)
        ));
    }
}
