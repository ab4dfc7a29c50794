//! The agent as an ordinary process on a Unix socket: the fast path for
//! testing the API without a VM.
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloister_protocol::agent_ttrpc::{AgentClient, HealthClient};
use cloister_protocol::{
    health_check_response::ServingStatus, GetGuestDetailsRequest, HealthCheckRequest, TeeType,
};

struct Agent {
    child: Child,
    _dir: tempfile::TempDir,
    sock: std::path::PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_cloister-agent"))
        .arg("--listen")
        .arg(format!("unix://{}", sock.display()))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "agent never created its socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    Agent {
        child,
        _dir: dir,
        sock,
    }
}

async fn client(a: &Agent) -> (HealthClient, AgentClient) {
    // The socket file appears at bind(), a moment before listen().
    let deadline = Instant::now() + Duration::from_secs(10);
    let c = loop {
        match ttrpc::asynchronous::Client::connect(&format!("unix://{}", a.sock.display())).await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("cannot connect to the agent: {e:?}"),
        }
    };
    (HealthClient::new(c.clone()), AgentClient::new(c))
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(5_000_000_000)
}

#[tokio::test]
async fn health_and_guest_details_over_unix_socket() {
    let a = start(&[]);
    let (health, agent) = client(&a).await;
    let h = health
        .check(ctx(), &HealthCheckRequest::default())
        .await
        .unwrap();
    assert_eq!(h.status.enum_value(), Ok(ServingStatus::SERVING));
    let d = agent
        .get_guest_details(ctx(), &GetGuestDetailsRequest::default())
        .await
        .unwrap();
    assert_eq!(d.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(!d.is_init);
    assert_eq!(d.tee.enum_value(), Ok(TeeType::TEE_TYPE_NONE));
    assert!(!d.kernel_version.is_empty());
    assert!(d.memory_total_kib > 0 && d.online_cpus > 0);
}

#[tokio::test]
async fn sim_hint_is_reported_as_sim() {
    let a = start(&["--tee", "sim"]);
    let (_, agent) = client(&a).await;
    let d = agent
        .get_guest_details(ctx(), &GetGuestDetailsRequest::default())
        .await
        .unwrap();
    assert_eq!(d.tee.enum_value(), Ok(TeeType::TEE_TYPE_SIM));
}

#[test]
fn sigterm_stops_the_agent_and_removes_its_socket() {
    let mut a = start(&[]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = a.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!a.sock.exists());
}

#[test]
fn bad_arguments_exit_with_usage() {
    let out = Command::new(env!("CARGO_BIN_EXE_cloister-agent"))
        .args(["--listen", "tcp://0.0.0.0:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen must be"));
}

#[test]
fn malformed_ttrpc_frames_do_not_kill_the_agent() {
    use std::io::Write;
    let a = start(&[]);
    // Wait until the agent listens (the socket file appears at bind()).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(client(&a));
    for junk in [
        &b"\xff\xff\xff\xff\x00\x00\x00\x01\x01\x00"[..],
        b"GET / HTTP/1.0\r\n\r\n",
        &[0u8; 4096][..],
    ] {
        let mut s = std::os::unix::net::UnixStream::connect(&a.sock).unwrap();
        let _ = s.write_all(junk);
    }
    std::thread::sleep(Duration::from_millis(100));
    rt.block_on(async {
        let (health, _) = client(&a).await;
        let h = health
            .check(ctx(), &HealthCheckRequest::default())
            .await
            .unwrap();
        assert_eq!(h.status.enum_value(), Ok(ServingStatus::SERVING));
    });
}
