//! A TDX quote (v4/v5, with its embedded PCK chain) through the verifier.
//! Input: a length-prefixed quote, then an optional PCK chain (PEM or DER).
#![no_main]
use cloister_evidence::tdx::{self, TdxEvidence};
use cloister_evidence::VerifyOptions;
use cloister_fuzz::{evidence_time, split_prefixed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (quote, chain) = split_prefixed(data);
    let evidence = TdxEvidence {
        quote,
        pck_chain: (!chain.is_empty()).then_some(chain),
    };
    let opts = VerifyOptions {
        at: evidence_time(),
        ..Default::default()
    };
    let _ = tdx::verify(&evidence, &opts);
});
