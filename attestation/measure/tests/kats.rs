//! Every known answer sev-snp-measure 0.0.13 gave (testdata/snp_launch_digest_kats.json),
//! through the public API, from the OVMF, kernel and initrd bytes the cases name.
mod common;

use cloister_measure::{
    parse_ovmf_hash, snp_launch_digest, KernelHashes, SnpLaunchInputs, VcpuType, VmmType,
};
use common::{num, read, s};

#[test]
fn all_known_answers_match() {
    let kats = common::kats();
    let cases = kats["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 40, "the KAT file has 40 cases");
    let mut matched = 0;
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(s(case, "mode"), "SEV_SNP");
        assert!(
            case["expected_error"].is_null(),
            "case {i} expects an error; not handled here"
        );
        let ovmf = read(s(case, "ovmf"));
        let vcpu_sig = match case["vcpu_type"].as_str() {
            Some(name) => {
                let t: VcpuType = name.parse().unwrap_or_else(|e| panic!("case {i}: {e}"));
                assert_eq!(
                    u64::from(t.signature()),
                    num(case, "vcpu_sig"),
                    "case {i}: signature of {name}"
                );
                t.signature()
            }
            None => 0,
        };
        let vmm: VmmType = s(case, "vmm_type").parse().expect("vmm type");
        let features = num(case, "guest_features");
        let mut inputs =
            SnpLaunchInputs::new(&ovmf, case["vcpus"].as_u64().unwrap() as u32, vcpu_sig)
                .with_vmm(vmm)
                .with_guest_features(features);
        if let Some(kernel) = case["kernel"].as_str() {
            let initrd = case["initrd"].as_str().map(read).unwrap_or_default();
            let cmdline = case["append"].as_str().unwrap_or("");
            inputs =
                inputs.with_kernel(KernelHashes::from_contents(&read(kernel), &initrd, cmdline));
        }
        if let Some(seed) = case["snp_ovmf_hash_seed"].as_str() {
            inputs = inputs.with_ovmf_hash(parse_ovmf_hash(seed).expect("seed"));
        }
        let got = snp_launch_digest(&inputs).unwrap_or_else(|e| panic!("case {i}: {e}"));
        if got.to_hex() == s(case, "expected") {
            matched += 1;
        } else {
            failures.push(format!("case {i} {case}: got {got}"));
        }
    }
    eprintln!("{matched}/{} known answers match", cases.len());
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(matched, 40);
}
