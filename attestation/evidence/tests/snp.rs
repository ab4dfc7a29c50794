//! SEV-SNP verification against every real report in testdata/snp/manifest.json,
//! and against the ways evidence goes wrong: flipped bits, wrong chains, wrong
//! product, expired and tampered certificates, and policy violations.
mod common;

use cloister_evidence::snp::{self, Product, SnpClaims, SnpEvidence};
use cloister_evidence::{
    MinTcb, ReferenceValues, Rejected, Verified, VerifiedClaims, VerifyError, VerifyOptions,
};
use common::*;
use serde_json::Value;

struct Case {
    entry: Value,
    report: Vec<u8>,
    vek: Vec<u8>,
    chain: Vec<u8>,
}

fn cases() -> Vec<Case> {
    manifest("snp/manifest.json")
        .into_iter()
        .map(|entry| Case {
            report: read(entry["report"].as_str().unwrap()),
            vek: read(entry["vek"].as_str().unwrap()),
            chain: read(entry["ca_chain"].as_str().unwrap()),
            entry,
        })
        .collect()
}

fn case(report: &str) -> Case {
    cases()
        .into_iter()
        .find(|c| c.entry["report"] == report)
        .unwrap_or_else(|| panic!("{report} not in manifest"))
}

/// Options that accept the case's own policy (debug only where the policy has it).
fn opts_for(c: &Case) -> VerifyOptions {
    let mut o = opts_at(VALID_AT);
    let policy = u64::from_str_radix(
        c.entry["fields"]["policy"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    o.reference.policy.allow_debug = policy & (1 << 19) != 0;
    o
}

fn run(
    report: &[u8],
    vek: &[u8],
    chain: Option<&[u8]>,
    product: Option<Product>,
    opts: &VerifyOptions,
) -> Result<Verified, Rejected> {
    snp::verify(
        &SnpEvidence {
            report,
            vek,
            chain,
            product,
        },
        opts,
    )
}

fn claims(v: &Verified) -> &SnpClaims {
    match &v.claims {
        VerifiedClaims::Snp(c) => c,
        other => panic!("expected SNP claims, got {other:?}"),
    }
}

fn assert_claims_match_manifest(c: &Case, v: &Verified) {
    let got = claims(v);
    let f = &c.entry["fields"];
    let r = &c.entry["report"];
    assert_eq!(got.product.name(), c.entry["product"], "{r}");
    assert_eq!(got.measurement, f["measurement"], "{r}");
    assert_eq!(got.host_data, f["host_data"], "{r}");
    assert_eq!(got.report_data, f["report_data"], "{r}");
    assert_eq!(got.chip_id, f["chip_id"], "{r}");
    assert_eq!(got.policy.raw, f["policy"], "{r}");
    assert_eq!(u64::from(got.vmpl), f["vmpl"].as_u64().unwrap(), "{r}");
    assert_eq!(got.current_firmware, f["current_fw"], "{r}");
    let t = &f["reported_tcb"];
    assert_eq!(got.reported_tcb.raw, t["raw"], "{r}");
    assert_eq!(
        u64::from(got.reported_tcb.bootloader),
        t["bootloader"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(
        u64::from(got.reported_tcb.tee),
        t["tee"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(
        u64::from(got.reported_tcb.snp),
        t["snp"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(
        u64::from(got.reported_tcb.microcode),
        t["microcode"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(
        got.endorsement.kind,
        c.entry["vek_kind"].as_str().unwrap().to_lowercase(),
        "{r}"
    );
}

#[test]
fn every_manifest_report_is_accepted_with_its_chain() {
    let all = cases();
    assert_eq!(all.len(), 7, "the manifest lists 7 reports");
    for c in &all {
        let v = run(&c.report, &c.vek, Some(&c.chain), None, &opts_for(c))
            .unwrap_or_else(|e| panic!("{}: {e}\n{:#?}", c.entry["report"], e.checks));
        assert_claims_match_manifest(c, &v);
        assert!(
            v.checks.iter().all(|ch| ch.passed || ch.skipped),
            "{:#?}",
            v.checks
        );
        for name in ["ark pinned", "ark signature", "report signature", "policy"] {
            assert!(
                v.checks.iter().any(|ch| ch.name == name && ch.passed),
                "{name} missing for {}",
                c.entry["report"]
            );
        }
    }
}

#[test]
fn every_manifest_report_is_accepted_with_the_built_in_chain() {
    for c in &cases() {
        let v = run(&c.report, &c.vek, None, None, &opts_for(c))
            .unwrap_or_else(|e| panic!("{}: {e}\n{:#?}", c.entry["report"], e.checks));
        assert_claims_match_manifest(c, &v);
        assert!(v
            .checks
            .iter()
            .any(|ch| ch.name == "ark pinned" && ch.detail.contains("built-in")));
    }
}

#[test]
fn every_listed_bit_flip_is_rejected() {
    let mut flips = 0;
    for c in &cases() {
        for (offset, still_valid) in c.entry["sig_valid_after_flipping_bit0_of_byte"]
            .as_object()
            .unwrap()
        {
            assert_eq!(still_valid, &Value::Bool(false));
            let bad = flip(&c.report, hex_offset(offset));
            let e = run(&bad, &c.vek, Some(&c.chain), None, &opts_for(c)).expect_err(&format!(
                "{} with byte {offset} flipped was accepted",
                c.entry["report"]
            ));
            assert!(!e.checks.last().unwrap().passed);
            flips += 1;
        }
    }
    assert_eq!(flips, 70);
}

#[test]
fn flipped_measurement_bit_fails_the_report_signature() {
    let c = case("snp/virtee-sev/report_milan.bin");
    let e = run(
        &flip(&c.report, 0x90),
        &c.vek,
        Some(&c.chain),
        None,
        &opts_for(&c),
    )
    .unwrap_err();
    assert_eq!(
        e.error.to_string(),
        "report signature: invalid (ECDSA P-384 over bytes 0..0x2a0)"
    );
    assert_eq!(e.error.check(), "report signature");
    let last = e.checks.last().unwrap();
    assert_eq!(
        (last.name.as_str(), last.passed),
        ("report signature", false)
    );
    // Every check before it passed, chain included.
    assert!(e.checks[..e.checks.len() - 1]
        .iter()
        .all(|c| c.passed || c.skipped));
}

#[test]
fn flipped_chip_id_and_tcb_bits_are_named() {
    let c = case("snp/virtee-sev/report_milan.bin");
    let e = run(
        &flip(&c.report, 0x1a0),
        &c.vek,
        Some(&c.chain),
        None,
        &opts_for(&c),
    )
    .unwrap_err();
    assert!(
        matches!(e.error, VerifyError::HwIdMismatch { .. }),
        "{}",
        e.error
    );
    let e = run(
        &flip(&c.report, 0x180),
        &c.vek,
        Some(&c.chain),
        None,
        &opts_for(&c),
    )
    .unwrap_err();
    assert_eq!(
        e.error.to_string(),
        "vcek tcb: blSPL expected 2 (reported_tcb), got 3"
    );
}

#[test]
fn genoa_report_against_milan_chain_is_rejected() {
    let c = case("snp/trustee-e2e/genoa-report.bin");
    let milan = read("snp/go-sev-guest/ask_ark_milan.pem");
    let e = run(&c.report, &c.vek, Some(&milan), None, &opts_for(&c)).unwrap_err();
    assert_eq!(e.error.to_string(), "product: expected genoa (report CPUID family 0x19 model 0xa0), got milan (chain ARK-Milan)");
    // Even when told the product, the Milan ARK is not Genoa's pinned ARK.
    let e = run(
        &c.report,
        &c.vek,
        Some(&milan),
        Some(Product::Genoa),
        &opts_for(&c),
    )
    .unwrap_err();
    assert!(
        matches!(e.error, VerifyError::ProductMismatch { .. }),
        "{}",
        e.error
    );
}

#[test]
fn chain_with_foreign_ask_fails_the_ask_signature() {
    // Genoa's ARK with Milan's ASK: the ARK is pinned, but it did not sign that ASK.
    let c = case("snp/trustee-e2e/genoa-report.bin");
    let mut chain = read("snp/ark-ask/milan_ask.pem");
    chain.extend(read("snp/ark-ask/genoa_ark.pem"));
    let e = run(&c.report, &c.vek, Some(&chain), None, &opts_for(&c)).unwrap_err();
    assert!(
        e.error
            .to_string()
            .starts_with("ask signature: invalid (RSA-PSS SHA-384 by ARK-Genoa)"),
        "{}",
        e.error
    );
}

#[test]
fn wrong_product_is_rejected() {
    let c = case("snp/virtee-sev/report_milan.bin");
    let e = run(&c.report, &c.vek, None, Some(Product::Genoa), &opts_for(&c)).unwrap_err();
    assert_eq!(
        e.error.to_string(),
        "product: expected genoa (--product), got milan (VCEK productName Milan-B0)"
    );
    let e = run(&c.report, &c.vek, None, Some(Product::Turin), &opts_for(&c)).unwrap_err();
    assert!(matches!(e.error, VerifyError::ProductMismatch { .. }));
    // The right product passes.
    run(&c.report, &c.vek, None, Some(Product::Milan), &opts_for(&c)).unwrap();
}

#[test]
fn expired_vcek_is_rejected() {
    let c = case("snp/virtee-sev/report_milan.bin");
    let e = run(
        &c.report,
        &c.vek,
        Some(&c.chain),
        None,
        &opts_at("2031-01-01T00:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(e.error.to_string(), "vcek validity: 2031-01-01T00:00:00Z is outside 2023-04-03T19:23:43Z .. 2030-04-03T19:23:43Z");
}

#[test]
fn vlek_is_accepted_before_and_rejected_after_it_expires() {
    let c = case("snp/trustee/test-vlek-report.bin");
    let v = run(
        &c.report,
        &c.vek,
        Some(&c.chain),
        None,
        &opts_at("2025-12-10T22:14:20Z"),
    )
    .unwrap();
    assert_eq!(claims(&v).endorsement.kind, "vlek");
    assert!(v
        .checks
        .iter()
        .any(|ch| ch.name == "vcek hwID" && ch.skipped));
    assert!(v
        .checks
        .iter()
        .any(|ch| ch.name == "asvk signature" && ch.passed));
    let e = run(
        &c.report,
        &c.vek,
        Some(&c.chain),
        None,
        &opts_at("2025-12-10T22:14:22Z"),
    )
    .unwrap_err();
    assert!(
        e.error
            .to_string()
            .starts_with("vlek validity: 2025-12-10T22:14:22Z is outside"),
        "{}",
        e.error
    );
}

#[test]
fn vlek_needs_the_asvk() {
    let c = case("snp/trustee/test-vlek-report.bin");
    let ask_only = read("snp/go-sev-guest/ask_ark_milan.pem");
    let e = run(&c.report, &c.vek, Some(&ask_only), None, &opts_for(&c)).unwrap_err();
    assert!(
        e.error
            .to_string()
            .starts_with("asvk certificate: the chain has no ASVK"),
        "{}",
        e.error
    );
    // The three-certificate bundle (ASK, ARK, ASVK) serves VLEKs too.
    run(
        &c.report,
        &c.vek,
        Some(&read("snp/trustee/milan_ask_ark_asvk.pem")),
        None,
        &opts_for(&c),
    )
    .unwrap();
}

#[test]
fn signing_key_kind_must_match_the_certificate() {
    let vlek_report = case("snp/trustee/test-vlek-report.bin");
    let vcek = read("snp/virtee-sev/vcek_milan.der");
    let e = run(
        &vlek_report.report,
        &vcek,
        None,
        None,
        &opts_for(&vlek_report),
    )
    .unwrap_err();
    assert!(
        e.error
            .to_string()
            .starts_with("signing key: expected VCEK"),
        "{}",
        e.error
    );
}

#[test]
fn deliberately_invalid_vceks_are_rejected() {
    let c = case("snp/trustee/test-report.bin");
    for bad in [
        "snp/trustee/test-vcek-invalid-legacy.der",
        "snp/trustee/test-vcek-invalid-new.der",
    ] {
        let e = run(&c.report, &read(bad), Some(&c.chain), None, &opts_for(&c)).unwrap_err();
        assert!(
            e.error
                .to_string()
                .starts_with("vcek signature: invalid (RSA-PSS SHA-384 by SEV-Milan)"),
            "{bad}: {}",
            e.error
        );
    }
}

#[test]
fn tampered_vcek_is_rejected() {
    let c = case("snp/virtee-sev/report_milan.bin");
    // Flip one bit inside the hwID extension value; the DER stays well-formed.
    let hw_id = hex::decode(c.entry["vek_ext"]["hwID"].as_str().unwrap()).unwrap();
    let at = c
        .vek
        .windows(hw_id.len())
        .position(|w| w == hw_id.as_slice())
        .unwrap();
    let tampered = flip(&c.vek, at + 10);
    let e = run(&c.report, &tampered, Some(&c.chain), None, &opts_for(&c)).unwrap_err();
    assert!(
        e.error
            .to_string()
            .starts_with("vcek signature: invalid (RSA-PSS SHA-384 by SEV-Milan)"),
        "{}",
        e.error
    );
}

#[test]
fn vcek_of_another_chip_is_named_by_hw_id() {
    let c = case("snp/trustee/test-report.bin");
    let other = read("snp/virtee-sev/vcek_milan.der");
    let e = run(&c.report, &other, Some(&c.chain), None, &opts_for(&c)).unwrap_err();
    assert_eq!(
        e.error.to_string(),
        format!("vcek hwID: expected {}, got {}", c.entry["fields"]["chip_id"].as_str().unwrap(), "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6")
    );
}

#[test]
fn debug_policy_is_rejected_unless_allowed() {
    let c = case("snp/go-sev-guest/attestation.bin");
    let mut o = opts_at(VALID_AT);
    o.reference.policy.allow_debug = false;
    let e = run(&c.report, &c.vek, Some(&c.chain), None, &o).unwrap_err();
    assert_eq!(e.error.check(), "policy");
    assert!(
        e.error
            .to_string()
            .contains("debug is allowed by the guest policy but not permitted"),
        "{}",
        e.error
    );
    assert!(e.error.to_string().contains("0xb0000"), "{}", e.error);
    o.reference.policy.allow_debug = true;
    let v = run(&c.report, &c.vek, Some(&c.chain), None, &o).unwrap();
    assert!(claims(&v).policy.debug_allowed);
}

#[test]
fn other_policy_requirements() {
    let c = case("snp/virtee-sev/report_milan.bin"); // policy 0x30000: SMT allowed, no single socket
    let mut o = opts_for(&c);
    o.reference.policy.allow_smt = false;
    let e = run(&c.report, &c.vek, None, None, &o).unwrap_err();
    assert!(
        e.error.to_string().starts_with("policy: SMT is allowed"),
        "{}",
        e.error
    );
    let mut o = opts_for(&c);
    o.reference.policy.require_single_socket = true;
    let e = run(&c.report, &c.vek, None, None, &o).unwrap_err();
    assert!(e.error.to_string().contains("single socket"), "{}", e.error);
}

#[test]
fn minimum_tcb_and_vmpl() {
    let c = case("snp/virtee-sev/report_milan.bin"); // TCB bl 3, tee 0, snp 8, ucode 115; VMPL 0
    let mut o = opts_for(&c);
    o.reference.min_tcb = Some(MinTcb {
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 115,
        fmc: None,
    });
    o.reference.vmpl = Some(0);
    let v = run(&c.report, &c.vek, None, None, &o).unwrap();
    assert!(v
        .checks
        .iter()
        .any(|ch| ch.name == "minimum tcb" && ch.passed));
    o.reference.min_tcb = Some(MinTcb {
        microcode: 116,
        ..MinTcb::default()
    });
    let e = run(&c.report, &c.vek, None, None, &o).unwrap_err();
    assert_eq!(
        e.error.to_string(),
        "minimum tcb: microcode expected at least 116, got 115"
    );

    let vlek = case("snp/trustee/test-vlek-report.bin"); // VMPL 1
    let mut o = opts_for(&vlek);
    o.reference.vmpl = Some(0);
    let e = run(&vlek.report, &vlek.vek, None, None, &o).unwrap_err();
    assert_eq!(e.error.to_string(), "vmpl: expected 0, got 1");
}

#[test]
fn reference_values_measurement_and_host_data() {
    let c = case("snp/trustee/test-report.bin");
    let m = c.entry["fields"]["measurement"].as_str().unwrap();
    let rv = ReferenceValues::from_json(&format!(
        r#"{{"measurement": "{m}", "host_data": "{}", "report_data": "{}"}}"#,
        c.entry["fields"]["host_data"].as_str().unwrap(),
        c.entry["fields"]["report_data"].as_str().unwrap()
    ))
    .unwrap();
    let mut o = opts_for(&c);
    o.reference = ReferenceValues {
        policy: o.reference.policy,
        ..rv
    };
    let v = run(&c.report, &c.vek, Some(&c.chain), None, &o).unwrap();
    for name in ["measurement", "host_data", "report_data"] {
        assert!(
            v.checks.iter().any(|ch| ch.name == name && ch.passed),
            "{name}"
        );
    }
    let wrong = "00".repeat(48);
    o.reference.measurement = vec![wrong.parse().unwrap()];
    let e = run(&c.report, &c.vek, Some(&c.chain), None, &o).unwrap_err();
    assert_eq!(
        e.error.to_string(),
        format!("measurement mismatch: expected {wrong}, got {m}")
    );
    o.reference.measurement = vec![m.parse().unwrap()];
    o.reference.host_data = vec!["01".repeat(32).parse().unwrap()];
    let e = run(&c.report, &c.vek, Some(&c.chain), None, &o).unwrap_err();
    assert!(
        e.error
            .to_string()
            .starts_with("host_data mismatch: expected 0101"),
        "{}",
        e.error
    );
}

#[test]
fn turin_vcek_for_a_milan_report_is_a_product_mismatch() {
    let c = case("snp/virtee-sev/report_milan.bin");
    let turin_vcek = read("snp/virtee-sev/vcek_turin.der");
    let e = run(
        &c.report,
        &turin_vcek,
        None,
        Some(Product::Milan),
        &opts_for(&c),
    )
    .unwrap_err();
    assert_eq!(
        e.error.to_string(),
        "product: expected milan (--product), got turin (VCEK productName Turin)"
    );
}

#[test]
fn garbage_is_rejected_without_panicking() {
    let c = case("snp/virtee-sev/report_milan.bin");
    for len in [0, 1, 100, 1183, 1185] {
        let mut r = c.report.clone();
        r.resize(len, 0);
        let e = run(&r, &c.vek, None, None, &opts_for(&c)).unwrap_err();
        assert_eq!(e.error.check(), "report format");
    }
    let e = run(&c.report, b"not a certificate", None, None, &opts_for(&c)).unwrap_err();
    assert_eq!(e.error.check(), "vek certificate");
    let e = run(
        &c.report,
        &c.vek,
        Some(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
        None,
        &opts_for(&c),
    )
    .unwrap_err();
    assert_eq!(e.error.check(), "chain certificate");
}

#[test]
fn claims_serialize_with_tee_tag() {
    let c = case("snp/trustee-e2e/genoa-report.bin");
    let v = run(&c.report, &c.vek, None, None, &opts_for(&c)).unwrap();
    let json = serde_json::to_value(&v.claims).unwrap();
    assert_eq!(json["tee"], "snp");
    assert_eq!(json["product"], "genoa");
    assert_eq!(json["measurement"], c.entry["fields"]["measurement"]);
    assert_eq!(json["policy"]["debug_allowed"], false);
    assert_eq!(json["cpuid"]["model"], 0xa0);
}
