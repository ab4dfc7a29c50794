//! The sim TEE end to end (development only, NOT A TEE): a real guest under
//! QEMU, booted with `--tee sim` and an initdata. The host measures exactly
//! what it boots and serves the sim chip on the VM's vsock port 1025; the
//! agent reads its report over vsock and binds initdata to HOST_DATA.
//!
//! What is proven:
//! * the host's measurement is `cloister measure sim` of the kernel, initrd
//!   and command line booted (with `cloister.tee=sim`, which is measured);
//! * GetGuestDetails reports the sim TEE;
//! * the guest logs the report it obtained: HOST_DATA = sha256(initdata) and
//!   MEASUREMENT = the host's value;
//! * CreateSandbox refuses a different initdata, naming the mismatch, and
//!   then accepts the right one as bound to the TEE;
//! * the chip's evidence verifies against the sim ARK of the state
//!   directory with those reference values (what a KBS would check);
//! * a guest told `cloister.tee=sim` without a chip refuses initdata.
mod common;

use std::path::Path;
use std::time::Duration;

use cloister_evidence::sim::SimEvidence;
use cloister_evidence::{Evidence, ReferenceValues, VerifyOptions};
use cloister_host::agent_client::connect_vsock;
use cloister_host::hypervisor::tee::TeeKind;
use cloister_host::hypervisor::DEFAULT_CMDLINE;
use cloister_host::sandbox::{BootOptions, Sandbox};
use cloister_kbs_client::{SimAttester, UnixTransport};
use cloister_measure::cloister_sim::{sim_launch_digest, SimLaunchInputs};
use cloister_protocol::agent_ttrpc::AgentClient;
use cloister_protocol::{CreateSandboxRequest, CreateSandboxResponse, TeeType};
use common::*;
use sha2::{Digest, Sha256};

const ALLOW_ALL: &str = include_str!("../../policies/allow-all.rego");

fn initdata(kbs: &str) -> String {
    format!(
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = '''\n{ALLOW_ALL}'''\n\"kbs-url\" = \"{kbs}\"\n"
    )
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(30_000_000_000)
}

/// A ttrpc client of the agent, on its own vsock connection.
fn agent_rpc(sb: &Sandbox) -> AgentClient {
    let s = connect_vsock(
        &sb.vm.vsock_socket(),
        cloister_protocol::AGENT_VSOCK_PORT,
        Duration::from_secs(10),
    )
    .unwrap();
    s.set_nonblocking(true).unwrap();
    let s = tokio::net::UnixStream::from_std(s).unwrap();
    AgentClient::new(ttrpc::asynchronous::Client::new(
        ttrpc::asynchronous::transport::Socket::from(s),
    ))
}

async fn create_sandbox(c: &AgentClient, initdata: &str) -> ttrpc::Result<CreateSandboxResponse> {
    c.create_sandbox(
        ctx(),
        &CreateSandboxRequest {
            sandbox_id: "sb1".into(),
            hostname: "pod".into(),
            initdata: initdata.into(),
            ..Default::default()
        },
    )
    .await
}

fn failure<T: std::fmt::Debug>(r: ttrpc::Result<T>) -> (ttrpc::Code, String) {
    match r {
        Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected an RPC status, got {other:?}"),
    }
}

fn options(k: &Path, i: &Path, dir: &Path) -> BootOptions {
    let mut o = BootOptions::new(k.to_path_buf(), i.to_path_buf());
    o.run_dir = Some(dir.join("vm"));
    o.agent_timeout = Duration::from_secs(90);
    o
}

/// The value of `key=` in a tracing line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_tee_binds_initdata_to_the_guests_report() {
    let (Some(k), Some(i)) = (kernel(), agent_initrd()) else {
        return;
    };
    if !qemu() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("sim-state");
    let good = initdata("https://kbs.example:8080");
    let other = initdata("https://kbs.evil:8080");
    let mut o = options(&k, &i, d.path());
    o.tee = TeeKind::Sim;
    o.initdata = Some(good.clone().into_bytes());
    o.sim_state = Some(state.clone());
    let sb = Sandbox::boot(&o).await.unwrap();

    // The host measured what it booted, with cloister.tee=sim in it.
    let cmdline = format!("{DEFAULT_CMDLINE} cloister.tee=sim");
    assert_eq!(sb.cmdline, cmdline);
    let expected = sim_launch_digest(&SimLaunchInputs::from_contents(
        &std::fs::read(&k).unwrap(),
        &std::fs::read(&i).unwrap(),
        &cmdline,
        1,
        256,
    ));
    assert_eq!(sb.measurement, Some(expected));
    let digest: [u8; 32] = Sha256::digest(good.as_bytes()).into();
    assert_eq!(sb.host_data, digest);

    let details = sb.details().await.unwrap();
    assert_eq!(details.tee.enum_value(), Ok(TeeType::TEE_TYPE_SIM));

    // A different initdata is refused, naming the mismatch; it does not use
    // up the one CreateSandbox.
    let c = agent_rpc(&sb);
    let (code, msg) = failure(create_sandbox(&c, &other).await);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{msg}");
    assert!(
        msg.contains("does not match the TEE report's HOST_DATA"),
        "{msg}"
    );
    assert!(
        msg.contains(&hex::encode(Sha256::digest(other.as_bytes()))),
        "{msg}"
    );
    assert!(msg.contains(&hex::encode(digest)), "HOST_DATA shown: {msg}");

    let r = create_sandbox(&c, &good).await.unwrap();
    assert!(r.bound_to_tee, "bound to the sim TEE's HOST_DATA");
    assert_eq!(r.initdata_sha256, hex::encode(digest));

    // The guest says what its report carried.
    let console = std::fs::read_to_string(sb.vm.paths().console_log.clone()).unwrap();
    let reports: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("sim TEE report read"))
        .collect();
    assert_eq!(reports.len(), 2, "one report per CreateSandbox:\n{console}");
    for l in &reports {
        assert_eq!(
            field(l, "host_data"),
            Some(hex::encode(digest).as_str()),
            "{l}"
        );
        assert_eq!(
            field(l, "measurement"),
            Some(hex::encode(expected).as_str()),
            "{l}"
        );
        assert!(l.contains("NOT A TEE"), "{l}");
    }
    assert!(
        console.contains("initdata accepted: its sha256 equals HOST_DATA"),
        "{console}"
    );

    // What a KBS configured with this state's sim ARK would accept.
    let chip = sb.sim_socket().unwrap().to_path_buf();
    assert_eq!(chip, sb.vm.vsock_socket().with_file_name("vsock.sock_1025"));
    let ark_path = sb.sim_ark().unwrap().to_path_buf();
    assert_eq!(ark_path, state.join("ca/ark.pem"));
    let resp = SimAttester::new(UnixTransport(chip.clone()))
        .report([7; 64])
        .await
        .unwrap();
    let opts = VerifyOptions {
        allow_sim: true,
        sim_ark: Some(std::fs::read(&ark_path).unwrap()),
        reference: ReferenceValues::from_json(
            &serde_json::json!({
                "measurement": hex::encode(expected),
                "host_data": hex::encode(digest),
            })
            .to_string(),
        )
        .unwrap(),
        ..Default::default()
    };
    let ev = Evidence::Sim(SimEvidence {
        report: &resp.report,
        vcek: &resp.vcek_der,
        chain: &resp.chain_pem,
    });
    if let Err(e) = cloister_evidence::verify(&ev, &opts) {
        panic!("sim evidence refused: {e}");
    }

    sb.shutdown();
    assert!(!chip.exists(), "the chip's socket is removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sim_hint_without_a_chip_refuses_initdata() {
    let (Some(k), Some(i)) = (kernel(), agent_initrd()) else {
        return;
    };
    if !qemu() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // No TEE on the host, but the guest is told it has the sim TEE.
    let mut o = options(&k, &i, d.path());
    o.vm.cmdline = format!("{DEFAULT_CMDLINE} cloister.tee=sim");
    let sb = Sandbox::boot(&o).await.unwrap();
    assert!(sb.measurement.is_none() && sb.sim_socket().is_none());
    let details = sb.details().await.unwrap();
    assert_eq!(details.tee.enum_value(), Ok(TeeType::TEE_TYPE_SIM));
    let c = agent_rpc(&sb);
    let (code, msg) = failure(create_sandbox(&c, &initdata("https://kbs.example:8080")).await);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED, "{msg}");
    assert!(
        msg.contains("sim: no HOST_DATA source reachable (the sim chip on vsock cid 2 port 1025)"),
        "{msg}"
    );
    assert!(msg.contains("refusing initdata"), "{msg}");
    sb.shutdown();
}

#[test]
fn vm_boot_prints_the_measurement_cloister_measure_sim_computes() {
    let (Some(k), Some(i)) = (kernel(), agent_initrd()) else {
        return;
    };
    if !qemu() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let init = d.path().join("initdata.toml");
    std::fs::write(&init, initdata("https://kbs.example:8080")).unwrap();
    let state = d.path().join("state");
    let out = cloister(&[
        "vm",
        "boot",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--vcpus",
        "2",
        "--memory",
        "300",
        "--tee",
        "sim",
        "--initdata",
        init.to_str().unwrap(),
        "--sim-state",
        state.to_str().unwrap(),
        "--timeout",
        "90",
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("tee:             sim (development only)"),
        "{stdout}"
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no {prefix:?} in {stdout}"))
    };
    let printed = line("measurement:");
    let cmdline = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kernel cmdline:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(cmdline.ends_with(" cloister.tee=sim"), "{cmdline}");
    let m = cloister(&[
        "measure",
        "sim",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--append",
        &cmdline,
        "--vcpus",
        "2",
        "--memory",
        "300",
    ]);
    assert!(m.status.success(), "{}", text(&m.stderr));
    assert_eq!(text(&m.stdout).trim(), printed);
    let hd = line("host data:");
    assert_eq!(
        hd,
        hex::encode(Sha256::digest(std::fs::read(&init).unwrap()))
    );
    assert!(
        stdout.contains(&format!(
            "sim ARK:         {}",
            state.join("ca/ark.pem").display()
        )),
        "{stdout}"
    );
    assert!(state.join("ca/ark.pem").is_file());
}

#[test]
fn a_contradicting_cmdline_is_refused_before_booting() {
    let (Some(k), Some(i)) = (kernel(), agent_initrd()) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let out = cloister(&[
        "vm",
        "boot",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 cloister.tee=none",
        "--tee",
        "sim",
        "--sim-state",
        d.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("already sets \"cloister.tee=none\", which contradicts --tee sim"),
        "{e}"
    );
    let out = cloister(&[
        "vm",
        "boot",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--tee",
        "snp",
    ]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("cloister vm launch-args --tee snp"), "{e}");
}
