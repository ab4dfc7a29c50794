//! Helpers shared by the integration tests: child processes that are always
//! killed and reaped, the snapshotter binary, and a gRPC client.

#![allow(dead_code)] // each test file uses a different part

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use containerd_snapshots::api::snapshots::v1::snapshots_client::SnapshotsClient;
use containerd_snapshots::tonic::transport::{Channel, Endpoint, Uri};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const BIN: &str = env!("CARGO_BIN_EXE_cloister-snapshotter");

/// A child process that is killed and waited for when dropped, so that a
/// failing test leaves nothing running. Its output goes to a log file.
pub struct Proc {
    pub name: &'static str,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> Proc {
        let out = File::create(log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name,
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!(
                "{} exited early ({status}); log:\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    /// Waits until `socket` accepts connections.
    pub fn wait_for_socket(&mut self, socket: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.assert_running();
            if UnixStream::connect(socket).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} does not answer on {}; log:\n{}",
                    self.name,
                    socket.display(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself (within `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("process already reaped");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {timeout:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits for the exit.
    pub fn stop(&mut self, signal: Signal) -> ExitStatus {
        let pid = self.child.as_ref().expect("process already reaped").id();
        kill(Pid::from_raw(pid as i32), signal).expect("send signal");
        self.wait_exit(Duration::from_secs(10))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- {} log ({}) -----\n{}",
                self.name,
                self.log.display(),
                self.log_text()
            );
        }
    }
}

/// Starts the snapshotter binary on `root` and `socket`, and waits for it.
pub fn start_snapshotter(root: &Path, socket: &Path, log: &Path) -> Proc {
    let mut p = Proc::spawn("cloister-snapshotter", snapshotter_cmd(root, socket), log);
    p.wait_for_socket(socket);
    p
}

pub fn snapshotter_cmd(root: &Path, socket: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--root")
        .arg(root)
        .arg("--socket")
        .arg(socket)
        .args(["--log", "debug"]);
    cmd
}

/// A snapshots API client on a Unix socket (the snapshotter's, or
/// containerd's own, which serves the same service).
pub async fn client(socket: &Path) -> SnapshotsClient<Channel> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            tokio::net::UnixStream::connect(socket.clone())
        }))
        .await
        .expect("connect to snapshots socket");
    SnapshotsClient::new(channel)
}
