//! `cloister install` into a scratch root: what it places, that a second
//! run changes nothing, that containerd 1.6 accepts the config it merged
//! (`containerd config dump`), and that `--uninstall` gives the root back
//! byte for byte, keeping what the operator owns.
mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// Debian's /etc/containerd/config.toml (containerd 1.6.20~ds1-1+deb12u3).
const DEBIAN_CONTAINERD: &str = r#"version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
"#;

/// Every file and directory below `root`, with a file's sha256 and mode.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let sum = sha256_hex(&bytes);
                out.insert(
                    rel,
                    format!("{sum} {:o}", meta.permissions().mode() & 0o7777),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn install(root: &Path, extra: &[&str]) -> Output {
    Command::new(cloister_bin())
        .arg("install")
        .arg("--root")
        .arg(root)
        .args(extra)
        .env_remove("CLOISTER_KERNEL")
        .env_remove("CLOISTER_INITRD")
        .output()
        .unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "{:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn guest_files(dir: &Path) -> (String, String) {
    let k = dir.join("bzImage");
    let i = dir.join("initrd.cpio");
    std::fs::write(&k, b"a kernel, for the install").unwrap();
    std::fs::write(&i, b"an initramfs, for the install").unwrap();
    (k.display().to_string(), i.display().to_string())
}

#[test]
fn install_places_merges_is_idempotent_and_uninstall_restores_the_root() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("node");
    std::fs::create_dir_all(root.join("etc/containerd")).unwrap();
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::fs::write(root.join("etc/containerd/config.toml"), DEBIAN_CONTAINERD).unwrap();
    // Someone else's file in a directory the install uses.
    std::fs::write(root.join("usr/local/bin/theirs"), b"#!/bin/sh\n").unwrap();
    let before = tree(&root);
    let (kernel, initrd) = guest_files(work.path());
    let args = [
        "--kernel",
        &kernel,
        "--initrd",
        &initrd,
        "--containerd-config",
        "/etc/containerd/config.toml",
    ];

    let o = install(&root, &args);
    assert!(o.status.success(), "{}", show(&o));
    // The snippet on stdout, exactly.
    let snippet =
        std::fs::read_to_string(repo_root().join("deploy/containerd/config.toml")).unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), snippet);
    let bin_dir = cloister_bin().parent().unwrap().to_path_buf();
    for b in [
        "cloister",
        "containerd-shim-cloister-v2",
        "cloister-snapshotter",
    ] {
        let placed = root.join("usr/local/bin").join(b);
        assert_eq!(
            std::fs::read(&placed).unwrap(),
            std::fs::read(bin_dir.join(b)).unwrap(),
            "{b}"
        );
        let mode = std::fs::metadata(&placed).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{b}");
    }
    assert_eq!(
        std::fs::read(root.join("usr/local/share/cloister/vmlinuz")).unwrap(),
        std::fs::read(&kernel).unwrap()
    );
    assert_eq!(
        std::fs::read(root.join("usr/local/share/cloister/initrd.img")).unwrap(),
        std::fs::read(&initrd).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/cloister/policy/default.rego")).unwrap(),
        std::fs::read_to_string(repo_root().join("policies/default.rego")).unwrap()
    );
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/cloister-snapshotter.service"))
            .unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/cloister-snapshotter "),
        "{unit}"
    );
    // The node config it wrote names what it placed, and the shim accepts it.
    let cfg = std::fs::read_to_string(root.join("etc/cloister/config.toml")).unwrap();
    assert!(
        cfg.contains("kernel = \"/usr/local/share/cloister/vmlinuz\""),
        "{cfg}"
    );
    cloister_host::node_config::NodeConfig::parse(&cfg, "config.toml").unwrap();
    // The merged containerd config keeps Debian's keys and adds cloister's.
    let merged = std::fs::read_to_string(root.join("etc/containerd/config.toml")).unwrap();
    let t: toml::Table = toml::from_str(&merged).unwrap();
    let debian: toml::Table = toml::from_str(DEBIAN_CONTAINERD).unwrap();
    assert_eq!(
        t["plugins"]["io.containerd.grpc.v1.cri"]["cni"],
        debian["plugins"]["io.containerd.grpc.v1.cri"]["cni"]
    );
    assert_eq!(
        t["plugins"]["io.containerd.internal.v1.opt"],
        debian["plugins"]["io.containerd.internal.v1.opt"]
    );
    assert_eq!(
        t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["cloister"]
            ["runtime_type"]
            .as_str(),
        Some("io.containerd.cloister.v2")
    );
    containerd_accepts(&root.join("etc/containerd/config.toml"));

    // A second run places nothing and changes no byte.
    let after_first = tree(&root);
    let o = install(&root, &args);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains(" placed ") && !err.contains(" updated "),
        "{err}"
    );
    assert!(err.contains("unchanged /usr/local/bin/cloister"), "{err}");
    assert_eq!(tree(&root), after_first, "the second install changed files");

    // The operator edits the node config: the uninstall keeps it.
    let own = "# mine\n[hypervisor]\nvcpus = 2\n";
    std::fs::write(root.join("etc/cloister/config.toml"), own).unwrap();
    let o = install(&root, &["--uninstall"]);
    assert!(o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("kept (changed since it was installed) /etc/cloister/config.toml"),
        "{err}"
    );
    assert!(
        err.contains("removed /usr/local/bin/containerd-shim-cloister-v2"),
        "{err}"
    );
    let mut want = before.clone();
    want.insert(PathBuf::from("etc/cloister"), "dir".into());
    want.insert(
        PathBuf::from("etc/cloister/config.toml"),
        format!("{} 644", sha256_hex(own.as_bytes())),
    );
    assert_eq!(
        tree(&root),
        want,
        "the uninstall left or removed the wrong files"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/containerd/config.toml")).unwrap(),
        DEBIAN_CONTAINERD,
        "containerd's config is back to its bytes"
    );
    // Nothing more to uninstall.
    let o = install(&root, &["--uninstall"]);
    assert!(!o.status.success());
    assert!(show(&o).contains("nothing to uninstall"), "{}", show(&o));
}

#[test]
fn install_refuses_to_overwrite_what_it_did_not_place_and_places_nothing() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("node");
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::fs::write(
        root.join("usr/local/bin/cloister-snapshotter"),
        b"another one",
    )
    .unwrap();
    let before = tree(&root);
    let (kernel, initrd) = guest_files(work.path());
    let from = work.path().join("bin");
    std::fs::create_dir_all(&from).unwrap();
    for b in [
        "cloister",
        "containerd-shim-cloister-v2",
        "cloister-snapshotter",
    ] {
        std::fs::write(from.join(b), format!("{b} build")).unwrap();
    }
    let from = from.display().to_string();
    let o = install(
        &root,
        &["--from", &from, "--kernel", &kernel, "--initrd", &initrd],
    );
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        show(&o).contains(&format!(
            "{}/usr/local/bin/cloister-snapshotter is there already and was not placed by cloister install",
            root.display()
        )),
        "{}",
        show(&o)
    );
    assert_eq!(tree(&root), before, "a refused install placed files");

    // A missing source is named, and nothing is placed either.
    std::fs::remove_file(root.join("usr/local/bin/cloister-snapshotter")).unwrap();
    let before = tree(&root);
    let o = install(
        &root,
        &[
            "--from",
            &from,
            "--kernel",
            "/nonexistent/bzImage",
            "--initrd",
            &initrd,
        ],
    );
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        show(&o).contains("/nonexistent/bzImage: not found"),
        "{}",
        show(&o)
    );
    assert_eq!(tree(&root), before);

    // A containerd config of another version is refused by name.
    std::fs::create_dir_all(root.join("etc/containerd")).unwrap();
    std::fs::write(root.join("etc/containerd/config.toml"), "version = 3\n").unwrap();
    let before = tree(&root);
    let o = install(
        &root,
        &[
            "--from",
            &from,
            "--kernel",
            &kernel,
            "--initrd",
            &initrd,
            "--containerd-config",
            "/etc/containerd/config.toml",
        ],
    );
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        show(&o).contains("/etc/containerd/config.toml: containerd config `version = 3`"),
        "{}",
        show(&o)
    );
    assert_eq!(tree(&root), before, "a refused merge placed files");
    let o = install(&root, &["--uninstall"]);
    assert!(show(&o).contains("nothing to uninstall"), "{}", show(&o));
}

/// containerd 1.6 itself parses the merged config and sees cloister's
/// runtime, snapshotter and proxy plugin.
fn containerd_accepts(config: &Path) {
    let dump = match Command::new("containerd")
        .arg("--config")
        .arg(config)
        .args(["config", "dump"])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            skip_or_fail(&format!(
                "containerd is missing ({e}); apt-get install containerd"
            ));
            return;
        }
    };
    assert!(dump.status.success(), "{}", show(&dump));
    let text = String::from_utf8_lossy(&dump.stdout);
    let t: toml::Table = toml::from_str(&text).unwrap();
    let cri = &t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"];
    assert_eq!(cri["snapshotter"].as_str(), Some("cloister"), "{text}");
    assert_eq!(
        cri["runtimes"]["cloister"]["runtime_type"].as_str(),
        Some("io.containerd.cloister.v2")
    );
    assert_eq!(
        t["proxy_plugins"]["cloister"]["address"].as_str(),
        Some("/run/cloister/snapshotter.sock")
    );
    assert_eq!(
        t["plugins"]["io.containerd.grpc.v1.cri"]["cni"]["bin_dir"].as_str(),
        Some("/usr/lib/cni")
    );
}
