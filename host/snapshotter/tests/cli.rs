//! How the binary claims its socket and root, and stops. Needs no root.

mod common;

use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::Duration;

use common::{snapshotter_cmd, start_snapshotter, Proc};
use nix::sys::signal::Signal;

/// Runs the binary expecting it to exit on its own; returns (success, stderr).
fn run_to_exit(cmd: Command, log: &std::path::Path) -> (bool, String) {
    let mut p = Proc::spawn("cloister-snapshotter", cmd, log);
    let status = p.wait_exit(Duration::from_secs(20));
    (status.success(), p.log_text())
}

#[test]
fn a_second_instance_on_the_same_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let mut first = start_snapshotter(&dir.path().join("r1"), &socket, &dir.path().join("1.log"));
    let (ok, log) = run_to_exit(
        snapshotter_cmd(&dir.path().join("r2"), &socket),
        &dir.path().join("2.log"),
    );
    assert!(!ok, "second instance started: {log}");
    assert!(log.contains("another snapshotter answers on"), "{log}");
    // The first one still serves, on its socket.
    first.wait_for_socket(&socket);
}

#[test]
fn a_second_instance_on_the_same_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let _first = start_snapshotter(&root, &dir.path().join("1.sock"), &dir.path().join("1.log"));
    let (ok, log) = run_to_exit(
        snapshotter_cmd(&root, &dir.path().join("2.sock")),
        &dir.path().join("2.log"),
    );
    assert!(!ok, "second instance started: {log}");
    assert!(
        log.contains("in use by another cloister-snapshotter"),
        "{log}"
    );
    assert!(!dir.path().join("2.sock").exists());
}

#[test]
fn a_stale_socket_is_replaced_and_removed_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    drop(UnixListener::bind(&socket).unwrap()); // leaves the socket file behind
    assert!(socket.exists());
    let mut p = start_snapshotter(&dir.path().join("root"), &socket, &dir.path().join("s.log"));
    assert!(
        p.log_text().contains("removing stale socket"),
        "{}",
        p.log_text()
    );
    let status = p.stop(Signal::SIGINT);
    assert!(status.success(), "{status}");
    assert!(!socket.exists());
    assert!(p.log_text().contains("SIGINT received"));
}

#[test]
fn a_file_in_the_way_is_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("not-a-socket");
    std::fs::write(&socket, b"precious").unwrap();
    let (ok, log) = run_to_exit(
        snapshotter_cmd(&dir.path().join("root"), &socket),
        &dir.path().join("s.log"),
    );
    assert!(!ok);
    assert!(log.contains("is not a socket"), "{log}");
    assert_eq!(std::fs::read(&socket).unwrap(), b"precious");
}

#[test]
fn corrupt_metadata_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(
        root.join("metadata.json"),
        b"{\"version\": 1, \"snapshots\": [",
    )
    .unwrap();
    let socket = dir.path().join("s.sock");
    let (ok, log) = run_to_exit(snapshotter_cmd(&root, &socket), &dir.path().join("s.log"));
    assert!(!ok);
    assert!(log.contains("metadata.json is corrupt"), "{log}");
    assert!(!socket.exists());
    // The file is left as it was, for the operator.
    assert_eq!(
        std::fs::read(root.join("metadata.json")).unwrap(),
        b"{\"version\": 1, \"snapshots\": ["
    );
}

#[test]
fn a_bad_log_level_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::BIN);
    cmd.arg("--root")
        .arg(dir.path().join("root"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .args(["--log", "loud=["]);
    let (ok, log) = run_to_exit(cmd, &dir.path().join("s.log"));
    assert!(!ok);
    assert!(log.contains("invalid --log value"), "{log}");
}
