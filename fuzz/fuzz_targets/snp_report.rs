//! An SEV-SNP report with its VCEK/VLEK and its AMD chain, through the whole
//! verifier (report parsing, certificate parsing, chain, signature, claims).
//! Input: a length-prefixed report, then a length-prefixed VEK certificate,
//! then the chain (none when empty: AMD's built-in chain for the product).
#![no_main]
use cloister_evidence::snp::{self, SnpEvidence};
use cloister_evidence::VerifyOptions;
use cloister_fuzz::{evidence_time, split_prefixed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (report, rest) = split_prefixed(data);
    let (vek, chain) = split_prefixed(rest);
    let evidence = SnpEvidence {
        report,
        vek,
        chain: (!chain.is_empty()).then_some(chain),
        product: None,
    };
    let opts = VerifyOptions {
        at: evidence_time(),
        ..Default::default()
    };
    let _ = snp::verify(&evidence, &opts);
    let _ = snp::SnpReport::parse(report);
});
