//! TDX quote verification against every real quote in testdata/tdx/manifest.json,
//! a quote chained to a fake root, flipped bits, expired and mismatched chains.
mod common;

use cloister_evidence::tdx::{self, TdxClaims, TdxEvidence};
use cloister_evidence::{
    Evidence, EvidenceFormat, MinTcb, Rejected, Verified, VerifiedClaims, VerifyError,
    VerifyOptions,
};
use common::*;
use serde_json::Value;

fn entries() -> Vec<Value> {
    manifest("tdx/manifest.json")
}

fn entry(quote: &str) -> Value {
    entries().into_iter().find(|e| e["quote"] == quote).unwrap()
}

fn opts_for(e: &Value) -> VerifyOptions {
    let mut o = opts_at(VALID_AT);
    let attrs = hex::decode(e["body"]["td_attributes"].as_str().unwrap()).unwrap();
    o.reference.policy.allow_debug = attrs[0] & 1 != 0;
    o
}

fn run(quote: &[u8], pck_chain: Option<&[u8]>, opts: &VerifyOptions) -> Result<Verified, Rejected> {
    tdx::verify(&TdxEvidence { quote, pck_chain }, opts)
}

fn claims(v: &Verified) -> &TdxClaims {
    match &v.claims {
        VerifiedClaims::Tdx(c) => c,
        other => panic!("expected TDX claims, got {other:?}"),
    }
}

#[test]
fn every_manifest_quote_is_accepted() {
    let all = entries();
    assert_eq!(all.len(), 11);
    for e in &all {
        let name = e["quote"].as_str().unwrap();
        let quote = read(name);
        assert_eq!(
            EvidenceFormat::detect(&quote),
            Some(EvidenceFormat::Tdx),
            "{name}"
        );
        let v = run(&quote, None, &opts_for(e))
            .unwrap_or_else(|err| panic!("{name}: {err}\n{:#?}", err.checks));
        let c = claims(&v);
        let b = &e["body"];
        for (field, got) in [
            ("mr_td", &c.mr_td),
            ("mr_seam", &c.mr_seam),
            ("mr_config_id", &c.mr_config_id),
            ("td_attributes", &c.td_attributes),
            ("xfam", &c.xfam),
            ("tee_tcb_svn", &c.tee_tcb_svn),
            ("rtmr0", &c.rtmr0),
            ("rtmr1", &c.rtmr1),
            ("rtmr2", &c.rtmr2),
            ("rtmr3", &c.rtmr3),
            ("report_data", &c.report_data),
        ] {
            assert_eq!(got, &b[field], "{name} {field}");
        }
        if let Some(svc) = b.get("mr_servicetd") {
            assert_eq!(c.mr_servicetd.as_ref().unwrap(), svc, "{name}");
        }
        assert_eq!(
            u64::from(c.version),
            e["header"]["version"].as_u64().unwrap()
        );
        assert_eq!(c.qe.mr_enclave, e["verify"]["qe_mrenclave"], "{name}");
        assert_eq!(c.qe.mr_signer, e["verify"]["qe_mrsigner"], "{name}");
        assert_eq!(c.pck.issuer, "Intel SGX PCK Platform CA");
        let tcb = v
            .checks
            .iter()
            .find(|ch| ch.name == "tcb-info evaluation")
            .unwrap();
        assert!(tcb.skipped && !tcb.passed && tcb.detail.starts_with("not performed"));
        for name in [
            "pck chain root pinned",
            "pck signature",
            "qe report signature",
            "qe report binding",
            "quote signature",
        ] {
            assert!(
                v.checks.iter().any(|ch| ch.name == name && ch.passed),
                "{name}"
            );
        }
    }
}

#[test]
fn every_listed_bit_flip_is_rejected() {
    let mut n = 0;
    for e in &entries() {
        let quote = read(e["quote"].as_str().unwrap());
        for (offset, valid) in e["quote_sig_valid_after_flip"].as_object().unwrap() {
            assert_eq!(valid, &Value::Bool(false));
            let err = run(&flip(&quote, hex_offset(offset)), None, &opts_for(e))
                .expect_err(&format!("{} {offset}", e["quote"]));
            if hex_offset(offset) >= 0x30 {
                assert_eq!(
                    err.error.check(),
                    "quote signature",
                    "{} {offset}: {}",
                    e["quote"],
                    err.error
                );
            }
            n += 1;
        }
    }
    assert_eq!(n, 44);
}

#[test]
fn flipped_body_bit_names_the_quote_signature() {
    let e = entry("tdx/trustee/tdx_quote_5.dat");
    let err = run(
        &flip(&read("tdx/trustee/tdx_quote_5.dat"), 0x178),
        None,
        &opts_for(&e),
    )
    .unwrap_err();
    assert_eq!(
        err.error.to_string(),
        "quote signature: invalid (ECDSA P-256 over header and body by the attestation key)"
    );
}

#[test]
fn quote_chained_to_a_fake_root_is_rejected() {
    let quote = read("tdx/teekit/intel-qvl-sample/quote.dat");
    let err = run(&quote, None, &opts_at(VALID_AT)).unwrap_err();
    assert_eq!(err.error.check(), "pck chain root pinned");
    let msg = err.error.to_string();
    assert!(
        msg.starts_with("pck chain root pinned: expected Intel SGX Root CA (sha256 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3), got Intel SGX Root CA (sha256 "),
        "{msg}"
    );
    // Its own PEM files tell the same story.
    let mut chain = read("tdx/teekit/intel-qvl-sample/pckCert.pem");
    chain.extend(read("tdx/teekit/intel-qvl-sample/pckSignChain.pem"));
    let err = run(&quote, Some(&chain), &opts_at(VALID_AT)).unwrap_err();
    assert_eq!(err.error.check(), "pck chain root pinned");
}

#[test]
fn debug_td_is_rejected_unless_allowed() {
    let quote = read("tdx/trustee/tdx_quote_4.dat");
    let err = run(&quote, None, &opts_at(VALID_AT)).unwrap_err();
    assert_eq!(err.error.check(), "td debug");
    assert!(err.error.to_string().contains("debug is not permitted"));
    let mut o = opts_at(VALID_AT);
    o.reference.policy.allow_debug = true;
    assert!(claims(&run(&quote, None, &o).unwrap()).debug);
}

#[test]
fn external_pck_chain() {
    let e = entry("tdx/trustee/tdx_quote_5.dat");
    let quote = read("tdx/trustee/tdx_quote_5.dat");
    let v = run(
        &quote,
        Some(&read("tdx/trustee/tdx_quote_5.pck_chain.pem")),
        &opts_for(&e),
    )
    .unwrap();
    assert!(v
        .checks
        .iter()
        .any(|c| c.name == "certification data" && c.detail.contains("the given chain")));
    // Another platform's PCK did not sign this QE report.
    let err = run(
        &quote,
        Some(&read("tdx/azure-tdx-vtpm/td-quote.pck_chain.pem")),
        &opts_for(&e),
    )
    .unwrap_err();
    assert_eq!(
        err.error.to_string(),
        "qe report signature: invalid (ECDSA P-256 over the 384-byte QE report by the PCK)"
    );
}

#[test]
fn chain_without_root_uses_the_built_in_root() {
    let e = entry("tdx/trustee/tdx_quote_5.dat");
    let pem = String::from_utf8(read("tdx/trustee/tdx_quote_5.pck_chain.pem")).unwrap();
    let end = "-----END CERTIFICATE-----";
    let two: Vec<&str> = pem.split_inclusive(end).take(2).collect();
    let v = run(
        &read("tdx/trustee/tdx_quote_5.dat"),
        Some(two.concat().as_bytes()),
        &opts_for(&e),
    )
    .unwrap();
    assert!(v
        .checks
        .iter()
        .any(|c| c.name == "pck chain root pinned" && c.detail.contains("built-in")));
}

#[test]
fn expired_pck_is_rejected() {
    let e = entry("tdx/trustee/tdx_quote_4.dat");
    let mut o = opts_for(&e);
    o.at = at("2031-01-01T00:00:00Z");
    let err = run(&read("tdx/trustee/tdx_quote_4.dat"), None, &o).unwrap_err();
    assert_eq!(err.error.to_string(), "pck validity: 2031-01-01T00:00:00Z is outside 2023-02-07T08:02:55Z .. 2030-02-07T08:02:55Z");
    o.at = at("2018-01-01T00:00:00Z");
    let err = run(&read("tdx/trustee/tdx_quote_4.dat"), None, &o).unwrap_err();
    assert_eq!(err.error.check(), "intel root validity");
}

#[test]
fn reference_values_for_tdx() {
    let e = entry("tdx/trustee/tdx_quote_6.dat");
    let quote = read("tdx/trustee/tdx_quote_6.dat");
    let mut o = opts_for(&e);
    o.reference.measurement = vec![e["body"]["mr_td"].as_str().unwrap().parse().unwrap()];
    o.reference.host_data = vec![e["body"]["mr_config_id"].as_str().unwrap().parse().unwrap()];
    run(&quote, None, &o).unwrap();
    o.reference.measurement = vec!["ab".repeat(48).parse().unwrap()];
    let err = run(&quote, None, &o).unwrap_err();
    assert_eq!(
        err.error.to_string(),
        format!(
            "measurement mismatch: expected {}, got {}",
            "ab".repeat(48),
            e["body"]["mr_td"].as_str().unwrap()
        )
    );
    let mut o = opts_for(&e);
    o.reference.min_tcb = Some(MinTcb::default());
    let err = run(&quote, None, &o).unwrap_err();
    assert!(matches!(err.error, VerifyError::ReferenceValues(_)));
}

#[test]
fn generic_entry_point_dispatches() {
    let e = entry("tdx/teekit/tdx-v4-gcp.bin");
    let quote = read("tdx/teekit/tdx-v4-gcp.bin");
    let v = cloister_evidence::verify(
        &Evidence::Tdx(TdxEvidence {
            quote: &quote,
            pck_chain: None,
        }),
        &opts_for(&e),
    )
    .unwrap();
    let json = serde_json::to_value(&v.claims).unwrap();
    assert_eq!(json["tee"], "tdx");
    assert_eq!(json["mr_td"], e["body"]["mr_td"]);
    assert!(v
        .checks
        .iter()
        .any(|c| c.name == "quote format" && c.detail.contains("trailing bytes ignored")));
}
