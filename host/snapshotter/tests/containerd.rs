//! The snapshotter behind a real containerd 1.6 (`/usr/bin/containerd`), as
//! its `cloister` proxy snapshotter, driven with `ctr` and with containerd's
//! own snapshots gRPC API.
//!
//! containerd needs root. Without root or without containerd and ctr the
//! tests are skipped with the reason printed, unless `CI=true`, where they
//! fail instead.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{client, start_snapshotter, Proc};
use containerd_snapshots::api::snapshots::v1::{
    snapshots_client::SnapshotsClient, Info, ListSnapshotsRequest, PrepareSnapshotRequest,
};
use containerd_snapshots::tonic::{transport::Channel, Code, Request};
use nix::sys::signal::Signal;

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";
const NS: &str = "test";
const REF: &str = "containerd.io/snapshot.ref";
const IMAGE_REF: &str = "containerd.io/snapshot/cri.image-ref";
const LAYER_DIGEST: &str = "containerd.io/snapshot/cri.layer-digest";
const C1: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const C2: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// containerd and the snapshotter in one temporary directory. Fields drop
/// in order: containerd, then the snapshotter are killed and reaped before
/// the directory is removed.
struct Harness {
    containerd: Proc,
    snapshotter: Proc,
    address: PathBuf,
    snap_socket: PathBuf,
    snap_root: PathBuf,
    dir: tempfile::TempDir,
}

fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The harness, or None (with the reason printed) when it cannot run here.
fn harness() -> Option<Harness> {
    let reason = if effective_uid() != Some(0) {
        Some("containerd needs root".to_string())
    } else if !Path::new(CONTAINERD).exists() || !Path::new(CTR).exists() {
        Some(format!("{CONTAINERD} or {CTR} is missing"))
    } else {
        None
    };
    if let Some(reason) = reason {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("cannot run the containerd tests: {reason}, and CI=true forbids skipping");
        }
        eprintln!("skipping containerd test: {reason}");
        return None;
    }
    Some(Harness::start())
}

impl Harness {
    fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let snap_root = d.join("snapshotter");
        let snap_socket = d.join("snap.sock");
        let address = d.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  address = "{debug}"
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

# Collect after every deletion, and let the collector take up to half the
# time: with the default (2 %), one slow collection on a loaded machine
# postpones the next by 50 times its length.
[plugins."io.containerd.gc.v1.scheduler"]
  pause_threshold = 0.5
  deletion_threshold = 1
  schedule_delay = "0ms"

[proxy_plugins.cloister]
  type = "snapshot"
  address = "{snap}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            address = address.display(),
            debug = d.join("debug.sock").display(),
            opt = d.join("opt").display(),
            snap = snap_socket.display(),
        );
        let config_path = d.join("config.toml");
        std::fs::write(&config_path, config).unwrap();

        let snapshotter = start_snapshotter(&snap_root, &snap_socket, &d.join("snapshotter.log"));
        let mut cmd = Command::new(CONTAINERD);
        cmd.arg("--config").arg(&config_path);
        let mut containerd = Proc::spawn("containerd", cmd, &d.join("containerd.log"));
        containerd.wait_for_socket(&address);
        // The snapshots made here have no GC root (ctr's view sets none, and
        // no image record refers to the layers), so let containerd's
        // start-up garbage collection pass before the test begins.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !containerd.log_text().contains("msg=\"garbage collected\"") {
            containerd.assert_running();
            assert!(
                Instant::now() < deadline,
                "containerd's start-up GC did not run"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Harness {
            containerd,
            snapshotter,
            address,
            snap_socket,
            snap_root,
            dir,
        }
    }

    fn ctr_cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(CTR);
        cmd.arg("--address")
            .arg(&self.address)
            .args(["-n", ns, "snapshots", "--snapshotter", "cloister"])
            .args(args);
        cmd
    }

    /// `ctr snapshots ARGS` in namespace `ns`, which must succeed; its stdout.
    fn ctr_in(&self, ns: &str, args: &[&str]) -> String {
        let out = self.ctr_cmd(ns, args).output().expect("run ctr");
        assert!(
            out.status.success(),
            "ctr {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn ctr(&self, args: &[&str]) -> String {
        self.ctr_in(NS, args)
    }

    /// `ctr snapshots ARGS`, which must fail; its stderr.
    fn ctr_fails(&self, args: &[&str]) -> String {
        let out = self.ctr_cmd(NS, args).output().expect("run ctr");
        assert!(!out.status.success(), "ctr {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    /// `ctr snapshots ls` as (key, parent, kind).
    fn ls(&self) -> Vec<(String, String, String)> {
        let out = self.ctr(&["ls"]);
        let mut lines = out.lines();
        assert!(lines.next().unwrap().starts_with("KEY"), "{out}");
        let mut rows: Vec<_> = lines
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                match f.as_slice() {
                    [k, kind] => (k.to_string(), String::new(), kind.to_string()),
                    [k, p, kind] => (k.to_string(), p.to_string(), kind.to_string()),
                    _ => panic!("unexpected ls line {l:?}"),
                }
            })
            .collect();
        rows.sort();
        rows
    }

    /// The bind mount source `ctr snapshots mounts` reports for `key`,
    /// checked to be an empty directory under the snapshotter's root.
    fn mount_source(&self, key: &str, mode: &str) -> PathBuf {
        let out = self.ctr(&["mounts", "/mnt/rootfs", key]);
        let f: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(f.len(), 7, "{out}");
        assert_eq!(&f[..3], ["mount", "-t", "bind"], "{out}");
        assert_eq!(
            f[4..],
            ["/mnt/rootfs", "-o", &format!("rbind,{mode}")],
            "{out}"
        );
        let src = PathBuf::from(f[3]);
        assert!(src.starts_with(&self.snap_root), "{out}");
        assert!(src.is_dir(), "{out}");
        assert_eq!(
            std::fs::read_dir(&src).unwrap().count(),
            0,
            "{out}: not empty"
        );
        src
    }

    async fn backend(&self, filters: &[String]) -> Vec<Info> {
        list(&mut client(&self.snap_socket).await, filters).await
    }
}

async fn list(c: &mut SnapshotsClient<Channel>, filters: &[String]) -> Vec<Info> {
    let mut stream = c
        .list(ListSnapshotsRequest {
            snapshotter: "cloister".into(),
            filters: filters.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(batch) = stream.message().await.unwrap() {
        out.extend(batch.info);
    }
    out
}

fn row(k: &str, p: &str, kind: &str) -> (String, String, String) {
    (k.into(), p.into(), kind.into())
}

#[tokio::test]
async fn ctr_drives_the_snapshot_lifecycle() {
    let Some(h) = harness() else { return };

    h.ctr(&["prepare", "base"]);
    let base_dir = h.mount_source("base", "rw");
    h.ctr(&["commit", "layer1", "base"]);
    h.ctr(&["view", "v1", "layer1"]);
    let view_dir = h.mount_source("v1", "ro");
    let json = h.ctr(&["prepare", "--mounts", "c1", "layer1"]);
    assert!(json.contains("\"Type\": \"bind\""), "{json}");
    let c1_dir = h.mount_source("c1", "rw");
    assert_ne!(view_dir, c1_dir);

    assert_eq!(
        h.ls(),
        vec![
            row("c1", "layer1", "Active"),
            row("layer1", "", "Committed"),
            row("v1", "layer1", "View"),
        ]
    );
    let info = h.ctr(&["info", "layer1"]);
    assert!(info.contains("\"Kind\": \"Committed\""), "{info}");
    assert!(
        info.contains("\"cloister.dev/guest-pull\": \"true\""),
        "{info}"
    );

    // Labels reach the snapshotter as Update with field paths.
    h.ctr(&["label", "layer1", "containerd.io/snapshot/test=one"]);
    let found = h
        .backend(&[r#"labels."containerd.io/snapshot/test"==one"#.to_string()])
        .await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].name.ends_with("/layer1"), "{found:?}");
    assert_eq!(found[0].kind, 3);
    h.ctr(&["label", "layer1", "containerd.io/snapshot/test="]);
    assert!(h
        .backend(&[r#"labels."containerd.io/snapshot/test""#.to_string()])
        .await
        .is_empty());

    let usage = h.ctr(&["usage", "c1"]);
    let line = usage.lines().nth(1).unwrap_or_default().to_string();
    assert!(
        line.starts_with("c1") && line.trim_end().ends_with(" 1"),
        "{usage}"
    );

    let err = h.ctr_fails(&["rm", "layer1"]);
    assert!(err.contains("child"), "{err}");
    h.ctr(&["rm", "v1", "c1"]);
    h.ctr(&["rm", "layer1"]);
    assert!(h.ls().is_empty());

    // containerd's garbage collector removes them from the backend, and
    // their directories go with them.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !h.backend(&[]).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "backend still has {:?}",
            h.backend(&[]).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for d in [base_dir, view_dir, c1_dir] {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let _ = (&h.containerd, &h.snapshotter, &h.dir);
}

fn unpack_request(
    ns: &str,
    key: &str,
    parent: &str,
    labels: &[(&str, &str)],
) -> Request<PrepareSnapshotRequest> {
    let mut req = Request::new(PrepareSnapshotRequest {
        snapshotter: "cloister".into(),
        key: key.into(),
        parent: parent.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    });
    req.metadata_mut()
        .insert("containerd-namespace", ns.parse().unwrap());
    req
}

#[tokio::test]
async fn unpack_prepare_through_containerd_leaves_layers_to_the_guest() {
    let Some(mut h) = harness() else { return };
    // containerd's own snapshots API: the request goes through its metadata
    // layer to the proxy, as the unpacker's Prepare does.
    let mut ctd = client(&h.address).await;

    let image = "registry.example/cloister/demo:1";
    let status = ctd
        .prepare(unpack_request(
            NS,
            &format!("extract-100-AAAA {C1}"),
            "",
            &[(REF, C1), (IMAGE_REF, image), (LAYER_DIGEST, "sha256:1a1a")],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let status = ctd
        .prepare(unpack_request(
            NS,
            &format!("extract-200-BBBB {C2}"),
            C1,
            &[(REF, C2), (IMAGE_REF, image), (LAYER_DIGEST, "sha256:2b2b")],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    // containerd now has the chain as committed snapshots (what the
    // unpacker's Stat(chainID) checks), and no extraction snapshot.
    assert_eq!(
        h.ls(),
        vec![row(C1, "", "Committed"), row(C2, C1, "Committed")]
    );
    let info = h.ctr(&["info", C2]);
    assert!(info.contains(&format!("\"Parent\": \"{C1}\"")), "{info}");
    assert!(
        info.contains("\"cloister.dev/guest-pull\": \"true\""),
        "{info}"
    );

    // The backend holds exactly the two layers, by chain ID, without directories.
    let names: Vec<String> = h.backend(&[]).await.into_iter().map(|i| i.name).collect();
    assert_eq!(names, vec![C1.to_string(), C2.to_string()]);
    assert_eq!(
        std::fs::read_dir(h.snap_root.join("snapshots"))
            .unwrap()
            .count(),
        0
    );

    // A container on the image: an empty bind mount.
    h.ctr(&["prepare", "container-1", C2]);
    h.mount_source("container-1", "rw");

    // Another namespace pulling the same image reuses the layers.
    let status = ctd
        .prepare(unpack_request(
            "other",
            &format!("extract-300-CCCC {C1}"),
            "",
            &[(REF, C1)],
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let info = h.ctr_in("other", &["info", C1]);
    assert!(info.contains("\"Kind\": \"Committed\""), "{info}");

    // rootfs/apply.go's extraction (no ref label) is refused, not unpacked.
    let status = ctd
        .prepare(unpack_request(NS, "extract-400-DDDD sha256:cc", C2, &[]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("never on the host"), "{status:?}");

    h.snapshotter.assert_running();
    let log = h.snapshotter.log_text();
    for want in [
        format!("guest pull: layer {C1} left to the guest"),
        format!("guest pull: layer {C2} left to the guest"),
        image.to_string(),
        "sha256:2b2b".to_string(),
    ] {
        assert!(log.contains(&want), "{want:?} not logged:\n{log}");
    }
    let _ = (&h.containerd, &h.dir);
}

#[tokio::test]
async fn snapshots_survive_a_snapshotter_restart() {
    let Some(mut h) = harness() else { return };
    h.ctr(&["prepare", "a"]);
    h.ctr(&["commit", "base", "a"]);
    h.ctr(&["prepare", "work", "base"]);
    let before = h.ls();
    let dir = h.mount_source("work", "rw");

    let status = h.snapshotter.stop(Signal::SIGTERM);
    assert!(status.success(), "{status}");
    assert!(!h.snap_socket.exists(), "socket left behind");
    h.snapshotter = start_snapshotter(
        &h.snap_root,
        &h.snap_socket,
        &h.dir.path().join("snapshotter-2.log"),
    );

    // containerd reconnects to the proxy on its own, with back-off.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = h.ctr_cmd(NS, &["info", "work"]).output().unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "containerd did not reach the restarted snapshotter: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(h.ls(), before);
    assert_eq!(h.mount_source("work", "rw"), dir);
    h.ctr(&["rm", "work"]);
    h.ctr(&["rm", "base"]);
    let _ = &h.containerd;
}
