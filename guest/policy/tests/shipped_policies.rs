//! The policies shipped in policies/ load, and their own `test_*` rules all
//! pass (the same check `cloister policy test` runs).
use std::path::{Path, PathBuf};

use cloister_policy::{run_tests, Policy};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// Every `X.rego` that has an `X_test.rego` beside it.
fn policies_with_tests() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in [policies_dir(), policies_dir().join("examples")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if let Some(stem) = name.strip_suffix("_test.rego") {
                out.push((dir.join(format!("{stem}.rego")), p));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_shipped_policy_has_passing_tests() {
    let pairs = policies_with_tests();
    let names: Vec<String> = pairs
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for want in [
        "allow-all.rego",
        "default.rego",
        "exec-allowlist.rego",
        "web-pod.rego",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} has no tests: {names:?}"
        );
    }
    for (policy, tests) in pairs {
        let read = |p: &Path| (p.display().to_string(), std::fs::read_to_string(p).unwrap());
        let mut p = Policy::from_modules(&[read(&policy), read(&tests)], None)
            .unwrap_or_else(|e| panic!("{}: {e}", policy.display()));
        let results = run_tests(&mut p);
        assert!(results.len() >= 2, "{}: too few tests", tests.display());
        let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
        assert!(failed.is_empty(), "{}: {failed:#?}", policy.display());
    }
}

#[test]
fn allow_all_says_so_loudly() {
    let text = std::fs::read_to_string(policies_dir().join("allow-all.rego")).unwrap();
    assert!(text.contains("DEVELOPMENT ONLY. NEVER DEPLOY THIS POLICY."));
}

#[test]
fn the_generated_example_is_what_the_generator_produces_today() {
    let dir = policies_dir().join("examples");
    let manifest = std::fs::read_to_string(dir.join("web-pod.yaml")).unwrap();
    let shipped = std::fs::read_to_string(dir.join("web-pod.rego")).unwrap();
    let g = cloister_policy::generate::generate(&manifest, &Default::default()).unwrap();
    assert!(
        g.rego == shipped,
        "policies/examples/web-pod.rego is stale: regenerate it with `cloister policy generate policies/examples/web-pod.yaml -o policies/examples/web-pod.rego`"
    );
}
