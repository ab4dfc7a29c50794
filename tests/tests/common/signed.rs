//! A signed busybox image in a test registry, and the initdata that lets a
//! guest pull it (shared by the tests that run containers in a real VM).
#![allow(dead_code)] // each test binary uses a part of it
use std::path::Path;
use std::process::Command;

use base64::Engine as _;

use crate::common::{cloister_bin, text};
use cloister_test_support::{Layout, Registry};

pub const PASSWORD: &str = "test-pass";

/// A busybox image with the applets the tests use, signed with a fresh key.
pub struct SignedImage {
    pub reference: String,
    pub unsigned: String,
    pub public_pem: Vec<u8>,
}

pub fn signed_image(reg: &Registry, dir: &Path) -> SignedImage {
    let layout = Layout::new(dir);
    layout.busybox("v1", "amd64");
    layout.change("v1", |rootfs| {
        for tool in [
            "cat", "echo", "id", "grep", "sleep", "head", "dd", "ls", "hostname", "env",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(tool)).unwrap();
        }
        for d in ["proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::write(rootfs.join("etc/motd"), "hello from the image\n").unwrap();
    });
    reg.push(&layout.path, "v1", "demo:v1", &[]);
    reg.push(&layout.path, "v1", "unsigned:v1", &[]);
    let reference = format!("{}/demo:v1", reg.host());
    let prefix = dir.join("cosign");
    let out = Command::new(cloister_bin())
        .args(["image", "keygen", "--output-key-prefix"])
        .arg(&prefix)
        .env("COSIGN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = Command::new(cloister_bin())
        .args(["image", "sign", "--registry-insecure-http", "--key"])
        .arg(prefix.with_extension("key"))
        .arg(&reference)
        .env("COSIGN_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    SignedImage {
        reference,
        unsigned: format!("{}/unsigned:v1", reg.host()),
        public_pem: std::fs::read(prefix.with_extension("pub")).unwrap(),
    }
}

/// Initdata: `policy`, a signature policy requiring the test key, and the
/// registry on the host's loopback through the guest's 10.0.2.2.
pub fn initdata(policy: &str, reg: &Registry, public_pem: &[u8]) -> String {
    initdata_via(
        policy,
        reg,
        public_pem,
        cloister_host::hypervisor::USER_NET_HOST,
    )
}

/// The same, with the guest reaching the registry's port at `host`.
pub fn initdata_via(policy: &str, reg: &Registry, public_pem: &[u8], host: &str) -> String {
    let key = base64::engine::general_purpose::STANDARD.encode(public_pem);
    let image_policy = serde_json::json!({
        "default": [{"type": "reject"}],
        "transports": {"docker": {reg.host(): [{"type": "sigstoreSigned", "keyData": key}]}}
    });
    let registry = serde_json::json!({
        "insecure_http": true,
        "mirrors": {reg.host(): format!("{host}:{}", reg.port)}
    });
    format!(
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = '''\n{policy}\n'''\n\"image-policy.json\" = '''{image_policy}'''\n\"registry.json\" = '''{registry}'''\n"
    )
}
