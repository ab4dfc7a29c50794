//! The snapshotter binary driven over its gRPC socket directly, as
//! containerd's proxy plugin would. Needs no root.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{client, start_snapshotter, Proc};
use containerd_snapshots::api::snapshots::v1::{
    snapshots_client::SnapshotsClient, CommitSnapshotRequest, Info, Kind, ListSnapshotsRequest,
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
    UpdateSnapshotRequest, UsageRequest, ViewSnapshotRequest,
};
use containerd_snapshots::tonic::{transport::Channel, Code};
use nix::sys::signal::Signal;

const REF: &str = "containerd.io/snapshot.ref";
const IMAGE_REF: &str = "containerd.io/snapshot/cri.image-ref";
const LAYER_DIGEST: &str = "containerd.io/snapshot/cri.layer-digest";
const C1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const C2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// The snapshotter in a temporary directory. Fields drop in order: the
/// process is killed before the directory goes.
struct Fixture {
    proc: Proc,
    root: PathBuf,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let socket = dir.path().join("snap.sock");
        let proc = start_snapshotter(&root, &socket, &dir.path().join("snapshotter.log"));
        Fixture {
            proc,
            root,
            socket,
            dir,
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn prepare(key: &str, parent: &str, labels: HashMap<String, String>) -> PrepareSnapshotRequest {
    PrepareSnapshotRequest {
        snapshotter: "cloister".into(),
        key: key.into(),
        parent: parent.into(),
        labels,
    }
}

async fn stat(c: &mut SnapshotsClient<Channel>, key: &str) -> Result<Info, Code> {
    c.stat(StatSnapshotRequest {
        snapshotter: String::new(),
        key: key.into(),
    })
    .await
    .map(|r| r.into_inner().info.unwrap())
    .map_err(|s| s.code())
}

async fn list(c: &mut SnapshotsClient<Channel>, filters: &[&str]) -> Vec<Info> {
    let mut stream = c
        .list(ListSnapshotsRequest {
            snapshotter: String::new(),
            filters: filters.iter().map(|s| s.to_string()).collect(),
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

#[tokio::test]
async fn unpack_prepare_answers_already_exists_and_records_the_layer() {
    let mut fx = Fixture::start();
    let mut c = client(&fx.socket).await;

    // Layer 1, as containerd's unpacker (through the metadata layer) sends it.
    let l1 = labels(&[
        (REF, C1),
        (IMAGE_REF, "registry.example/app:1"),
        (LAYER_DIGEST, "sha256:aaaa"),
    ]);
    let status = c
        .prepare(prepare(&format!("test/5/extract-123-abc {C1}"), "", l1))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert!(status.message().contains(C1), "{status:?}");

    let info = stat(&mut c, C1).await.unwrap();
    assert_eq!(info.kind, Kind::Committed as i32);
    assert_eq!(info.parent, "");
    assert_eq!(info.labels[REF], C1);
    assert_eq!(info.labels[IMAGE_REF], "registry.example/app:1");
    assert_eq!(info.labels["cloister.dev/guest-pull"], "true");
    // The extraction key itself was never created.
    assert_eq!(
        stat(&mut c, &format!("test/5/extract-123-abc {C1}")).await,
        Err(Code::NotFound)
    );

    // Layer 2 on top of it.
    let status = c
        .prepare(prepare(
            &format!("test/6/extract-456-def {C2}"),
            C1,
            labels(&[(REF, C2), (IMAGE_REF, "registry.example/app:1")]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert_eq!(stat(&mut c, C2).await.unwrap().parent, C1);

    // The query containerd's metadata layer makes after AlreadyExists.
    let found = list(
        &mut c,
        &[&format!(
            r#"labels."containerd.io/snapshot.ref"=={C2},parent=="{C1}""#
        )],
    )
    .await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].name, C2);
    assert!(list(
        &mut c,
        &[&format!(
            r#"labels."containerd.io/snapshot.ref"=={C2},parent=="{C2}""#
        )]
    )
    .await
    .is_empty());
    // Walk without filters returns everything.
    assert_eq!(list(&mut c, &[]).await.len(), 2);

    // A repeated unpack of the same layer (another pull): AlreadyExists again.
    let status = c
        .prepare(prepare(
            &format!("other/1/extract-789-ghi {C1}"),
            "",
            labels(&[(REF, C1)]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);

    // A container on the image gets an empty bind mount.
    let mounts = c
        .prepare(prepare("test/7/container", C2, HashMap::new()))
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].r#type, "bind");
    assert_eq!(mounts[0].options, vec!["rbind", "rw"]);
    let src = PathBuf::from(&mounts[0].source);
    assert!(src.starts_with(&fx.root), "{src:?}");
    assert_eq!(std::fs::read_dir(&src).unwrap().count(), 0);

    fx.proc.assert_running();
    let log = fx.proc.log_text();
    assert!(
        log.contains(&format!("guest pull: layer {C1} left to the guest")),
        "{log}"
    );
    assert!(log.contains("registry.example/app:1"), "{log}");
    assert!(log.contains("sha256:aaaa"), "{log}");
    let _ = &fx.dir;
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let mut fx = Fixture::start();
    let mut c = client(&fx.socket).await;

    expect(
        c.prepare(prepare("", "", HashMap::new())).await,
        Code::InvalidArgument,
        "key is empty",
    );
    expect(
        c.prepare(prepare("a\0b", "", HashMap::new())).await,
        Code::InvalidArgument,
        "NUL",
    );
    expect(
        c.prepare(prepare("a", "p\0", HashMap::new())).await,
        Code::InvalidArgument,
        "parent",
    );
    expect(
        c.prepare(prepare("a", "", labels(&[("big", &"x".repeat(4100))])))
            .await,
        Code::InvalidArgument,
        "label \"big\"",
    );
    let many: HashMap<String, String> = (0..20)
        .map(|i| (format!("k{i}"), "v".repeat(4000)))
        .collect();
    expect(
        c.prepare(prepare("a", "", many)).await,
        Code::InvalidArgument,
        "in all",
    );
    expect(
        c.prepare(prepare("a", "missing", HashMap::new())).await,
        Code::NotFound,
        "parent snapshot \"missing\" does not exist",
    );
    expect(
        c.prepare(prepare("x", "", labels(&[(REF, "")]))).await,
        Code::InvalidArgument,
        REF,
    );

    c.prepare(prepare("active", "", HashMap::new()))
        .await
        .unwrap();
    expect(
        c.prepare(prepare("active", "", HashMap::new())).await,
        Code::AlreadyExists,
        "\"active\" already exists",
    );
    expect(
        c.prepare(prepare("child", "active", HashMap::new())).await,
        Code::InvalidArgument,
        "not a committed snapshot",
    );
    c.commit(CommitSnapshotRequest {
        snapshotter: String::new(),
        name: "base".into(),
        key: "active".into(),
        labels: HashMap::new(),
    })
    .await
    .unwrap();
    c.view(ViewSnapshotRequest {
        snapshotter: String::new(),
        key: "view".into(),
        parent: "base".into(),
        labels: HashMap::new(),
    })
    .await
    .unwrap();
    expect(
        c.commit(CommitSnapshotRequest {
            snapshotter: String::new(),
            name: "again".into(),
            key: "view".into(),
            labels: HashMap::new(),
        })
        .await,
        Code::FailedPrecondition,
        "only an active snapshot",
    );
    expect(
        c.remove(RemoveSnapshotRequest {
            snapshotter: String::new(),
            key: "base".into(),
        })
        .await,
        Code::FailedPrecondition,
        "child",
    );
    expect(
        c.mounts(MountsRequest {
            snapshotter: String::new(),
            key: "base".into(),
        })
        .await,
        Code::FailedPrecondition,
        "committed",
    );
    expect(
        c.remove(RemoveSnapshotRequest {
            snapshotter: String::new(),
            key: "nope".into(),
        })
        .await,
        Code::NotFound,
        "\"nope\" does not exist",
    );
    expect(
        c.update(UpdateSnapshotRequest {
            snapshotter: String::new(),
            info: Some(Info {
                name: "base".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types_mask(&["parent"])),
        })
        .await,
        Code::InvalidArgument,
        "cannot update field \"parent\"",
    );
    // List streams: the refusal arrives as the stream's first message.
    let mut stream = c
        .list(ListSnapshotsRequest {
            snapshotter: String::new(),
            filters: vec!["name~=b.*".into()],
        })
        .await
        .unwrap()
        .into_inner();
    expect(
        stream.message().await,
        Code::InvalidArgument,
        "not supported",
    );
    expect(
        c.usage(UsageRequest {
            snapshotter: String::new(),
            key: "nope".into(),
        })
        .await,
        Code::NotFound,
        "nope",
    );

    // Nothing above took the snapshotter down.
    fx.proc.assert_running();
    let kinds: Vec<(String, i32)> = list(&mut c, &[])
        .await
        .into_iter()
        .map(|i| (i.name, i.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("base".to_string(), Kind::Committed as i32),
            ("view".to_string(), Kind::View as i32)
        ]
    );
    let _ = &fx.dir;
}

/// Asserts that `r` failed with `code` and a message containing `text`.
#[track_caller]
fn expect<T>(r: Result<T, containerd_snapshots::tonic::Status>, code: Code, text: &str) {
    let Err(status) = r else {
        panic!("wanted {code:?} ({text:?}), got success");
    };
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(text),
        "wanted {text:?} in {status:?}"
    );
}

fn prost_types_mask(paths: &[&str]) -> prost_types::FieldMask {
    prost_types::FieldMask {
        paths: paths.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn update_and_restart_keep_everything() {
    let mut fx = Fixture::start();
    let mut c = client(&fx.socket).await;
    c.prepare(prepare("a", "", labels(&[("one", "1"), ("two", "2")])))
        .await
        .unwrap();
    c.commit(CommitSnapshotRequest {
        snapshotter: String::new(),
        name: "base".into(),
        key: "a".into(),
        labels: labels(&[("one", "1"), ("two", "2")]),
    })
    .await
    .unwrap();
    let mounts = c
        .view(ViewSnapshotRequest {
            snapshotter: String::new(),
            key: "v".into(),
            parent: "base".into(),
            labels: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(mounts[0].options, vec!["rbind", "ro"]);
    let _ = c
        .prepare(prepare(
            &format!("ns/1/extract-1 {C1}"),
            "",
            labels(&[(REF, C1)]),
        ))
        .await;

    // Update with field paths: set one label, remove another, leave the rest.
    let info = c
        .update(UpdateSnapshotRequest {
            snapshotter: String::new(),
            info: Some(Info {
                name: "base".into(),
                labels: labels(&[("two", ""), ("three", "3"), ("ignored", "x")]),
                ..Default::default()
            }),
            update_mask: Some(prost_types_mask(&["labels.two", "labels.three"])),
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    let mut keys: Vec<_> = info.labels.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, vec!["cloister.dev/guest-pull", "one", "three"]);

    let before = list(&mut c, &[]).await;
    drop(c);
    let status = fx.proc.stop(Signal::SIGTERM);
    assert!(status.success(), "{status}");
    assert!(!fx.socket.exists(), "socket left behind after SIGTERM");
    assert!(fx.proc.log_text().contains("SIGTERM received, stopping"));

    fx.proc = start_snapshotter(
        &fx.root,
        &fx.socket,
        &fx.dir.path().join("snapshotter2.log"),
    );
    let mut c = client(&fx.socket).await;
    let after = list(&mut c, &[]).await;
    assert_eq!(before, after, "snapshots changed across a restart");
    let names: Vec<_> = after.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["base", C1, "v"]);
    let mounts2 = c
        .mounts(MountsRequest {
            snapshotter: String::new(),
            key: "v".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .mounts;
    assert_eq!(mounts, mounts2);
}
