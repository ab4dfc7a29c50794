//! kernel-config/build: the cache key follows the fragments, and a rerun
//! reuses the cached kernel.
mod common;

use std::process::Command;

use common::*;

fn build_script() -> std::path::PathBuf {
    repo_root().join("kernel-config/build")
}

fn key_of(dir: &std::path::Path) -> String {
    let out = Command::new(dir.join("build"))
        .arg("--key")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

#[test]
fn cache_key_changes_with_a_fragment_and_only_then() {
    if !std::path::Path::new("/usr/src/linux-source-6.1.tar.xz").exists() {
        skip_or_fail("linux-source-6.1 is not installed");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let copy = d.path().join("kernel-config");
    let st = Command::new("cp")
        .arg("-r")
        .arg(repo_root().join("kernel-config"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    let k1 = key_of(&copy);
    assert_eq!(
        k1,
        key_of(&repo_root().join("kernel-config")),
        "same inputs, same key"
    );
    assert_eq!(k1.len(), 16);
    let frag = copy.join("fragments/41-vsock.config");
    let mut s = std::fs::read_to_string(&frag).unwrap();
    s.push_str("CONFIG_VSOCKETS_DIAG=y\n");
    std::fs::write(&frag, s).unwrap();
    assert_ne!(k1, key_of(&copy), "a changed fragment must change the key");
}

#[test]
fn rerun_reuses_the_cached_kernel() {
    let Some(k) = kernel() else { return };
    let before = std::fs::metadata(&k).unwrap().modified().unwrap();
    let out = Command::new(build_script()).output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("cache hit"), "{stderr}");
    assert_eq!(
        stdout.trim(),
        k.to_str().unwrap(),
        "the rerun prints the same path"
    );
    assert_eq!(
        std::fs::metadata(&k).unwrap().modified().unwrap(),
        before,
        "not rebuilt"
    );
}
