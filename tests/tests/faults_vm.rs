//! The main job when the host side breaks: the VMM killed while the guest is
//! inside CreateContainer (attesting, pulling). `cloister run`, the real
//! binary, must exit non-zero with the reason, and leave no process, socket
//! or file behind. The parts are the demo's (registry, KBS, encrypted signed
//! image, sim TEE).
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloister_host::demo::{Demo, DEMO_COMMAND};
use common::*;

/// Pids of the processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                out.push((pid, c));
            }
        }
    }
    out
}

/// The one `cloister-vm-*` run directory that appears under `tmp`.
fn run_dir_under(tmp: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(tmp)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cloister-vm-"))
        })
}

#[test]
fn killing_the_vmm_during_create_container_fails_the_run_and_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let Some(cfg) = demo_config(work.path()) else {
        return;
    };
    let demo = Demo::prepare(cfg.clone(), &mut |s| eprintln!("demo: {s}")).expect("demo set-up");
    let initdata = work.path().join("initdata.toml");
    std::fs::write(&initdata, &demo.initdata).unwrap();
    // cloister run's own temporary files (its run dir) go here, and only here.
    let tmp = work.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = Command::new(cloister_bin())
        .env("TMPDIR", &tmp)
        .args(["run", "--tee", "sim", "--timeout", "120"])
        .arg("--kernel")
        .arg(&cfg.kernel)
        .arg("--initrd")
        .arg(&cfg.initrd)
        .arg("--sim-state")
        .arg(&cfg.sim_state)
        .arg("--initdata")
        .arg(&initdata)
        .arg("--id")
        .arg("demo")
        .arg(&demo.image)
        .arg("--")
        .args(DEMO_COMMAND)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait until the guest is inside CreateContainer: the policy allowed it
    // (the agent logs each decision on the console).
    let started = Instant::now();
    let run_dir = loop {
        if let Some(d) = run_dir_under(&tmp) {
            let console = std::fs::read_to_string(d.join("console.log")).unwrap_or_default();
            if console.contains("rule=\"CreateContainerRequest\"")
                || console.contains("rule=CreateContainerRequest")
            {
                break d;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "cloister run ended before CreateContainer"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the guest never reached CreateContainer"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let needle = run_dir.display().to_string();
    let vmm: Vec<_> = processes_mentioning(&needle)
        .into_iter()
        .filter(|(_, c)| c.contains("qemu-system"))
        .collect();
    assert_eq!(vmm.len(), 1, "one QEMU for the run: {vmm:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(vmm[0].0 as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    eprintln!(
        "cloister run said: {}",
        stderr.lines().last().unwrap_or_default()
    );
    assert!(!out.status.success(), "cloister run succeeded: {stderr}");
    assert!(
        stderr.contains("CreateContainer") || stderr.contains("create the container"),
        "the failed step is named: {stderr}"
    );
    assert!(
        stderr.contains("VM") || stderr.contains("QEMU") || stderr.contains("qemu"),
        "the reason names the VM: {stderr}"
    );
    // Nothing left: no process of the run, no run directory, no socket.
    std::thread::sleep(Duration::from_millis(200));
    let left = processes_mentioning(&needle);
    assert!(left.is_empty(), "processes left: {left:?}");
    let files: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(files.is_empty(), "left in TMPDIR: {files:?}");
    drop(demo);
}

/// The guest's disk (its tmpfs root, half its memory) fills while a layer
/// is unpacked: CreateContainer fails naming that, the container is not
/// created, the partial layer is removed (a smaller image pulls and runs
/// right after, in the same guest), and the agent carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_out_of_disk_while_unpacking_fails_the_pull_and_recovers() {
    use cloister_host::sandbox::{BootOptions, Sandbox};
    use cloister_test_support::{tools, Layout, Registry, Setup};
    if !tools::registry_tools_present() {
        return;
    }
    let (Some(k), Some(i)) = (kernel(), agent_initrd()) else {
        return;
    };
    if !qemu() {
        return;
    }
    let reg = Registry::start(Setup::HTTP);
    let work = tempfile::tempdir().unwrap();
    let layout = Layout::new(work.path());
    layout.busybox("small", "amd64");
    reg.push(&layout.path, "small", "small:1", &[]);
    layout.busybox("big", "amd64");
    layout.change("big", |rootfs| {
        // Random bytes: gzip cannot shrink them, the guest must store them.
        let mut f = std::fs::File::create(rootfs.join("big")).unwrap();
        let mut rng = std::fs::File::open("/dev/urandom").unwrap();
        std::io::copy(&mut std::io::Read::take(&mut rng, 112 << 20), &mut f).unwrap();
    });
    reg.push(&layout.path, "big", "big:1", &[]);

    let run = tempfile::tempdir().unwrap();
    let mut opts = BootOptions::new(k, i);
    // 192 MiB of memory: a 96 MiB tmpfs root, less than the big layer.
    opts.vm.memory_mib = 192;
    opts.vm.user_net = true;
    opts.run_dir = Some(run.path().join("vm"));
    opts.agent_timeout = Duration::from_secs(60);
    let sb = Sandbox::boot(&opts).await.expect("boot");
    let allow_all = std::fs::read_to_string(repo_root().join("policies/allow-all.rego")).unwrap();
    let registry = serde_json::json!({
        "insecure_http": true,
        "mirrors": {reg.host(): format!("{}:{}", cloister_host::hypervisor::USER_NET_HOST, reg.port)}
    });
    let initdata = format!(
        "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = '''\n{allow_all}\n'''\n\"image-policy.json\" = '''{{\"default\": [{{\"type\": \"insecureAcceptAnything\"}}]}}'''\n\"registry.json\" = '''{registry}'''\n"
    );
    cloister_host::pod::start_sandbox(
        &sb.agent,
        "pod1",
        "pod-one",
        &initdata,
        &cloister_host::pod::network::GuestNetwork::user(),
    )
    .await
    .unwrap();
    let spec = serde_json::to_vec(&cloister_protocol::oci::default_spec(&[
        "/bin/busybox",
        "echo",
        "still here",
    ]))
    .unwrap();
    let e = sb
        .agent
        .create_container(
            "big",
            &format!("{}/big:1", reg.host()),
            &spec,
            Duration::from_secs(300),
        )
        .await
        .expect_err("a layer larger than the guest's disk was unpacked");
    let msg = cloister_host::run::rpc_message(&e);
    eprintln!("CreateContainer said: {msg}");
    assert!(msg.contains("No space left on device"), "{msg}");
    assert!(
        msg.contains("big"),
        "the failing entry or layer is named: {msg}"
    );
    // Not created: nothing to start.
    assert!(sb.agent.start_container("big").await.is_err());

    sb.agent
        .create_container(
            "small",
            &format!("{}/small:1", reg.host()),
            &spec,
            Duration::from_secs(300),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the small image after the failed one: {}",
                cloister_host::run::rpc_message(&e)
            )
        });
    sb.agent.start_container("small").await.unwrap();
    let out = sb.agent.read_all("small", "", false, |_| {}).await.unwrap();
    assert_eq!(sb.agent.wait("small", "").await.unwrap(), 0);
    assert_eq!(text(&out), "still here\n");
    sb.shutdown();
}
