//! The sim TEE end to end at the crate level: reports issued by the real sim chip
//! (crate cloister-sim-chip) parse as SNP reports, verify only with allow_sim,
//! and fail on any flipped bit, a foreign sim root or a wrong reference value.
mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use cloister_evidence::sim::{self, wire, SimEvidence};
use cloister_evidence::snp::{self, SnpEvidence, SnpReport};
use cloister_evidence::{
    Evidence, EvidenceFormat, Hex, VerifiedClaims, VerifyError, VerifyOptions,
};
use cloister_sim_chip::{ReportFields, SimChip, SimReportResponse};
use common::*;

const MEASUREMENT: [u8; 48] = [0x11; 48];
const HOST_DATA: [u8; 32] = [0x22; 32];
const REPORT_DATA: [u8; 64] = [0x33; 64];

fn issue(state: &std::path::Path) -> (SimChip, SimReportResponse) {
    let chip = SimChip::load_or_create(state).unwrap();
    let resp = chip.issue(&ReportFields {
        measurement: MEASUREMENT,
        host_data: HOST_DATA,
        report_data: REPORT_DATA,
    });
    (chip, resp)
}

fn evidence(r: &SimReportResponse) -> SimEvidence<'_> {
    SimEvidence {
        report: &r.report,
        vcek: &r.vcek_der,
        chain: &r.chain_pem,
    }
}

fn allow(chip: &SimChip) -> VerifyOptions {
    VerifyOptions {
        allow_sim: true,
        sim_ark: Some(chip.ca().ark_pem().as_bytes().to_vec()),
        ..VerifyOptions::default()
    }
}

#[test]
fn sim_report_has_the_snp_layout_and_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = issue(dir.path());
    assert_eq!(r.report.len(), snp::REPORT_LEN);
    let parsed = SnpReport::parse(&r.report).unwrap();
    assert_eq!(parsed.version, 3);
    assert_eq!(parsed.measurement, MEASUREMENT);
    assert_eq!(parsed.host_data, HOST_DATA);
    assert_eq!(parsed.report_data, REPORT_DATA);
    assert_eq!(parsed.sig_algo, 1);
    assert_eq!(parsed.signing_key(), snp::SigningKey::Vcek);
    assert_eq!(&parsed.chip_id[..22], b"CLOISTER-SIM NOT-A-TEE");
    assert!(snp::looks_like_report(&r.report));
    assert!(sim::looks_like_report(&r.report));
    assert_eq!(EvidenceFormat::detect(&r.report), Some(EvidenceFormat::Sim));
    // A real SNP report is not taken for a sim one.
    let milan = read("snp/virtee-sev/report_milan.bin");
    assert_eq!(EvidenceFormat::detect(&milan), Some(EvidenceFormat::Snp));
}

#[test]
fn verifies_with_allow_sim_and_says_sim() {
    let dir = tempfile::tempdir().unwrap();
    let (chip, r) = issue(dir.path());
    let mut opts = allow(&chip);
    opts.reference.measurement = vec![Hex(MEASUREMENT.to_vec())];
    opts.reference.host_data = vec![Hex(HOST_DATA.to_vec())];
    let v = cloister_evidence::verify(&Evidence::Sim(evidence(&r)), &opts)
        .unwrap_or_else(|e| panic!("{e}: {:#?}", e.checks));
    let VerifiedClaims::Sim(c) = &v.claims else {
        panic!("not sim claims")
    };
    assert_eq!(c.measurement, hex::encode(MEASUREMENT));
    assert!(c.sim.contains("NOT A TEE"));
    let json = serde_json::to_value(&v.claims).unwrap();
    assert_eq!(json["tee"], "sim");
    assert_eq!(json["host_data"], hex::encode(HOST_DATA));
    let passed: Vec<_> = v
        .checks
        .iter()
        .filter(|c| c.passed)
        .map(|c| c.name.as_str())
        .collect();
    for name in [
        "allow_sim",
        "sim marker",
        "sim ark pinned",
        "sim vcek signature",
        "sim chip id",
        "report signature",
        "measurement",
        "host_data",
    ] {
        assert!(passed.contains(&name), "{name} not passed: {:#?}", v.checks);
    }
}

#[test]
fn refused_without_allow_sim() {
    let dir = tempfile::tempdir().unwrap();
    let (chip, r) = issue(dir.path());
    let mut opts = allow(&chip);
    opts.allow_sim = false;
    let e = sim::verify(&evidence(&r), &opts).unwrap_err();
    assert_eq!(e.error, VerifyError::SimNotAllowed);
    assert_eq!(
        e.to_string(),
        "sim evidence refused: verifier not configured with allow_sim"
    );
    assert_eq!(names(&e.checks), ["sim evidence refused"]);
}

#[test]
fn any_flipped_bit_in_the_signed_part_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (chip, r) = issue(dir.path());
    let opts = allow(&chip);
    for (off, check) in [
        (0x50, "report signature"),  // REPORT_DATA
        (0x90, "report signature"),  // MEASUREMENT
        (0xc0, "report signature"),  // HOST_DATA
        (0x1a0, "sim marker"),       // CHIP_ID magic
        (0x1c0, "vcek hwID"),        // CHIP_ID key binding
        (0x2a0, "report signature"), // R
    ] {
        let bad = flip(&r.report, off);
        let e = sim::verify(
            &SimEvidence {
                report: &bad,
                ..evidence(&r)
            },
            &opts,
        )
        .unwrap_err();
        assert_eq!(e.error.check(), check, "offset {off:#x}: {e}");
    }
}

#[test]
fn foreign_sim_root_and_wrong_reference_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let (chip, r) = issue(dir.path());
    let (other_chip, _) = issue(other.path());
    let e = sim::verify(&evidence(&r), &allow(&other_chip)).unwrap_err();
    assert!(
        matches!(
            e.error,
            VerifyError::UntrustedRoot {
                root: "sim ark",
                ..
            }
        ),
        "{e}"
    );

    let mut opts = allow(&chip);
    opts.reference.measurement = vec![Hex(vec![0xaa; 48])];
    let e = sim::verify(&evidence(&r), &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "measurement mismatch: expected {}, got {}",
            "aa".repeat(48),
            hex::encode(MEASUREMENT)
        )
    );
}

#[test]
fn snp_verifier_never_accepts_sim_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = issue(dir.path());
    let e = snp::verify(
        &SnpEvidence {
            report: &r.report,
            vek: &r.vcek_der,
            chain: Some(&r.chain_pem),
            product: None,
        },
        &VerifyOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.error.check(), "vek certificate", "{e}");
}

#[test]
fn the_sim_ca_persists() {
    let dir = tempfile::tempdir().unwrap();
    let a = SimChip::load_or_create(dir.path()).unwrap();
    let b = SimChip::load_or_create(dir.path()).unwrap();
    assert_eq!(a.ca().ark_pem(), b.ca().ark_pem());
    assert_eq!(a.ca().vcek_der(), b.ca().vcek_der());
    assert!(a.ca().ark_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    // A report from one load verifies against the ARK of the other.
    let r = a.issue(&ReportFields {
        measurement: MEASUREMENT,
        host_data: HOST_DATA,
        report_data: REPORT_DATA,
    });
    sim::verify(&evidence(&r), &allow(&b)).unwrap();
}

#[test]
fn the_chip_serves_reports_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let chip = SimChip::load_or_create(dir.path()).unwrap();
    let sock = dir.path().join("vsock.sock_1025");
    let server = chip.serve_unix(&sock, MEASUREMENT, HOST_DATA).unwrap();

    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&wire::encode_request(&REPORT_DATA)).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let r = wire::decode_response(&buf).unwrap();
    let mut opts = allow(&chip);
    opts.reference.report_data = Some(Hex(REPORT_DATA.to_vec()));
    opts.reference.measurement = vec![Hex(MEASUREMENT.to_vec())];
    sim::verify(&evidence(&r), &opts).unwrap();

    // A malformed request is refused with a reason, and the chip keeps serving.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&[0, 0, 0, 5, 1, 2, 3, 4, 5]).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let e = wire::decode_response(&buf).unwrap_err();
    assert!(
        e.to_string()
            .contains("report_data must be 64 bytes, got 5"),
        "{e}"
    );

    server.stop();
    assert!(!sock.exists());
}
