//! `cloister attest verify`, the real binary against the real evidence kept in
//! attestation/evidence/testdata: accepted evidence prints claims as JSON, and
//! rejected evidence exits non-zero naming the failed check.
mod common;

use std::path::PathBuf;
use std::process::Output;

use common::*;

fn data(rel: &str) -> String {
    let p = repo_root().join("attestation/evidence/testdata").join(rel);
    assert!(p.is_file(), "{} missing", p.display());
    p.to_str().unwrap().to_string()
}

fn attest(args: &[&str]) -> Output {
    let mut all = vec!["attest", "verify"];
    all.extend_from_slice(args);
    cloister(&all)
}

fn ok(out: &Output) -> serde_json::Value {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}"))
}

fn rejected(out: &Output) -> String {
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "accepted:\n{}\n{stderr}",
        text(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "rejected evidence printed claims: {}",
        text(&out.stdout)
    );
    stderr
}

/// A copy of `rel` with bit 0 of byte `offset` flipped.
fn flipped(dir: &tempfile::TempDir, rel: &str, offset: usize) -> PathBuf {
    let mut bytes = std::fs::read(data(rel)).unwrap();
    bytes[offset] ^= 1;
    let p = dir.path().join("flipped.bin");
    std::fs::write(&p, bytes).unwrap();
    p
}

const AT: &str = "2025-06-01T00:00:00Z";

#[test]
fn snp_report_is_accepted_and_claims_printed() {
    let out = attest(&[
        "--evidence",
        &data("snp/virtee-sev/report_milan.bin"),
        "--vcek",
        &data("snp/virtee-sev/vcek_milan.der"),
        "--chain",
        &data("snp/virtee-sev/cert_chain_milan"),
        "--at",
        AT,
    ]);
    let claims = ok(&out);
    assert_eq!(claims["tee"], "snp");
    assert_eq!(claims["product"], "milan");
    assert_eq!(
        claims["measurement"],
        "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
    );
    assert_eq!(claims["reported_tcb"]["microcode"], 115);
    let stderr = text(&out.stderr);
    for line in [
        "[ ok ] ark pinned: the chain's ARK is AMD ARK-Milan",
        "[ ok ] vcek signature: SEV-VCEK signed by SEV-Milan (RSA-PSS SHA-384)",
        "[ ok ] report signature: ECDSA P-384 over bytes 0..0x2a0 by the VCEK",
        "[skip] measurement: no reference value given",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
}

#[test]
fn snp_report_uses_built_in_chain_for_its_product() {
    // A version 3 Genoa report: the product comes from its CPUID fields.
    let claims = ok(&attest(&[
        "--evidence",
        &data("snp/trustee-e2e/genoa-report.bin"),
        "--vcek",
        &data("snp/trustee-e2e/genoa-vcek.der"),
        "--format",
        "snp",
        "--at",
        AT,
    ]));
    assert_eq!(claims["product"], "genoa");
}

#[test]
fn flipped_bit_is_rejected_naming_the_report_signature() {
    let dir = tempfile::tempdir().unwrap();
    let bad = flipped(&dir, "snp/virtee-sev/report_milan.bin", 0x90);
    let stderr = rejected(&attest(&[
        "--evidence",
        bad.to_str().unwrap(),
        "--vcek",
        &data("snp/virtee-sev/vcek_milan.der"),
        "--at",
        AT,
    ]));
    assert!(
        stderr.contains("[FAIL] report signature: invalid (ECDSA P-384 over bytes 0..0x2a0)"),
        "{stderr}"
    );
    assert!(
        stderr.trim_end().ends_with("cloister: error: evidence rejected: report signature: invalid (ECDSA P-384 over bytes 0..0x2a0)"),
        "{stderr}"
    );
}

#[test]
fn genoa_report_against_milan_chain_is_rejected() {
    let stderr = rejected(&attest(&[
        "--evidence",
        &data("snp/trustee-e2e/genoa-report.bin"),
        "--vcek",
        &data("snp/trustee-e2e/genoa-vcek.der"),
        "--chain",
        &data("snp/go-sev-guest/ask_ark_milan.pem"),
        "--at",
        AT,
    ]));
    assert!(
        stderr.contains(
            "evidence rejected: product: expected genoa (report CPUID family 0x19 model 0xa0), got milan (chain ARK-Milan)"
        ),
        "{stderr}"
    );
}

#[test]
fn wrong_vcek_is_rejected_by_hw_id() {
    let stderr = rejected(&attest(&[
        "--evidence",
        &data("snp/trustee/test-report.bin"),
        "--vcek",
        &data("snp/virtee-sev/vcek_milan.der"),
        "--at",
        AT,
    ]));
    assert!(
        stderr.contains("evidence rejected: vcek hwID: expected c38427a30d4c7af9"),
        "{stderr}"
    );
}

#[test]
fn debug_policy_needs_allow_debug() {
    let args = [
        "--evidence",
        &data("snp/go-sev-guest/attestation.bin"),
        "--vcek",
        &data("snp/go-sev-guest/vcek.testcer"),
        "--chain",
        &data("snp/go-sev-guest/ask_ark_milan.pem"),
        "--at",
        AT,
    ];
    let stderr = rejected(&attest(&args));
    assert!(
        stderr.contains(
            "evidence rejected: policy: debug is allowed by the guest policy but not permitted"
        ),
        "{stderr}"
    );
    let mut allowed = args.to_vec();
    allowed.push("--allow-debug");
    assert_eq!(ok(&attest(&allowed))["policy"]["debug_allowed"], true);
}

#[test]
fn expired_vlek_is_rejected_at_its_time_and_accepted_before() {
    let base = [
        "--evidence",
        &data("snp/trustee/test-vlek-report.bin"),
        "--vcek",
        &data("snp/trustee/test-vlek.der"),
        "--product",
        "milan",
    ];
    let mut before = base.to_vec();
    before.extend(["--at", AT]);
    assert_eq!(ok(&attest(&before))["endorsement"]["kind"], "vlek");
    let mut after = base.to_vec();
    after.extend(["--at", "2026-01-01T00:00:00Z"]);
    let stderr = rejected(&attest(&after));
    assert!(
        stderr.contains("evidence rejected: vlek validity: 2026-01-01T00:00:00Z is outside"),
        "{stderr}"
    );
}

#[test]
fn reference_values_mismatch_names_expected_and_got() {
    let dir = tempfile::tempdir().unwrap();
    let rv = dir.path().join("rv.json");
    let good = "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c";
    let args = |rv: &str| {
        attest(&[
            "--evidence",
            &data("snp/trustee/test-report.bin"),
            "--vcek",
            &data("snp/trustee/test-vcek.der"),
            "--at",
            AT,
            "--reference-values",
            rv,
        ])
    };
    std::fs::write(
        &rv,
        format!(
            r#"{{"measurement": "{good}", "host_data": "{}", "min_tcb": {{"snp": 8}}}}"#,
            "00".repeat(32)
        ),
    )
    .unwrap();
    ok(&args(rv.to_str().unwrap()));
    let wrong = "11".repeat(48);
    std::fs::write(&rv, format!(r#"{{"measurement": "{wrong}"}}"#)).unwrap();
    let stderr = rejected(&args(rv.to_str().unwrap()));
    assert!(
        stderr.contains(&format!(
            "evidence rejected: measurement mismatch: expected {wrong}, got {good}"
        )),
        "{stderr}"
    );
    std::fs::write(&rv, r#"{"min_tcb": {"microcode": 200}}"#).unwrap();
    let stderr = rejected(&args(rv.to_str().unwrap()));
    assert!(
        stderr.contains("minimum tcb: microcode expected at least 200, got 115"),
        "{stderr}"
    );
}

#[test]
fn tdx_quote_is_accepted_with_tcb_info_not_performed() {
    let out = attest(&[
        "--evidence",
        &data("tdx/trustee/tdx_quote_5.dat"),
        "--at",
        AT,
    ]);
    let claims = ok(&out);
    assert_eq!(claims["tee"], "tdx");
    assert_eq!(claims["version"], 5);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("[skip] tcb-info evaluation: not performed"),
        "{stderr}"
    );
    assert!(stderr.contains("[ ok ] quote signature"), "{stderr}");
}

#[test]
fn tdx_quote_with_fake_root_is_rejected() {
    let stderr = rejected(&attest(&[
        "--evidence",
        &data("tdx/teekit/intel-qvl-sample/quote.dat"),
        "--at",
        AT,
    ]));
    assert!(
        stderr.contains(
            "evidence rejected: pck chain root pinned: expected Intel SGX Root CA (sha256 44a0196b"
        ),
        "{stderr}"
    );
}

#[test]
fn usage_errors_are_explained() {
    let stderr = rejected(&attest(&[
        "--evidence",
        &data("snp/virtee-sev/report_milan.bin"),
    ]));
    assert!(
        stderr.contains("--vcek is required for SNP evidence"),
        "{stderr}"
    );
    let stderr = rejected(&attest(&[
        "--evidence",
        &data("snp/virtee-sev/vcek_milan.der"),
    ]));
    assert!(stderr.contains("pass --format snp|tdx"), "{stderr}");
    let stderr = rejected(&attest(&[
        "--evidence",
        &data("snp/virtee-sev/report_milan.bin"),
        "--format",
        "sev",
    ]));
    assert!(stderr.contains("unknown evidence format"), "{stderr}");
}
