//! The main job when the host side breaks: the VMM killed or the VM reset
//! while the guest is inside CreateContainer (attesting, pulling), the agent
//! dying at start. `cloister run`, the real binary, must exit non-zero with
//! the reason, and leave no process, socket or file behind. The parts are the demo's (registry, KBS, encrypted signed
//! image, sim TEE).
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use cloister_host::demo::Demo;
use common::*;

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

/// `cloister run` of the demo's container, started with its temporary files
/// (its run directory) under a directory of their own, and only there.
struct DemoRun {
    child: std::process::Child,
    tmp: std::path::PathBuf,
    // Dropped in this order: the demo's servers, then their files.
    _demo: Demo,
    _work: tempfile::TempDir,
}

impl DemoRun {
    /// `None` (after saying why) where the demo cannot run here.
    fn start(extra: &[&str]) -> Option<DemoRun> {
        let work = tempfile::tempdir().unwrap();
        let cfg = demo_config(work.path())?;
        let demo =
            Demo::prepare(cfg.clone(), &mut |s| eprintln!("demo: {s}")).expect("demo set-up");
        let tmp = work.path().join("tmp");
        let mut args = vec!["--timeout", "120"];
        args.extend_from_slice(extra);
        let child = demo_run_command(&cfg, &demo, &work.path().join("initdata.toml"), &tmp, &args)
            .spawn()
            .unwrap();
        Some(DemoRun {
            child,
            tmp,
            _demo: demo,
            _work: work,
        })
    }

    /// The run directory, once the guest is inside CreateContainer: the
    /// policy allowed it (the agent logs each decision on the console).
    fn wait_for_create_container(&mut self) -> std::path::PathBuf {
        let started = Instant::now();
        loop {
            if let Some(d) = run_dir_under(&self.tmp) {
                let console = std::fs::read_to_string(d.join("console.log")).unwrap_or_default();
                if console.contains("rule=\"CreateContainerRequest\"")
                    || console.contains("rule=CreateContainerRequest")
                {
                    return d;
                }
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "cloister run ended before CreateContainer"
            );
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the guest never reached CreateContainer"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The one QEMU of the run.
    fn qemu_pid(run_dir: &Path) -> u32 {
        let vmm: Vec<_> = pids_mentioning(&run_dir.display().to_string())
            .into_iter()
            .filter(|(_, c)| c.contains("qemu-system"))
            .collect();
        assert_eq!(vmm.len(), 1, "one QEMU for the run: {vmm:?}");
        vmm[0].0
    }

    /// Waits for `cloister run`; asserts that it failed and left no process
    /// of the run and nothing in its TMPDIR. Returns what it said.
    fn failed_and_left_nothing(self) -> String {
        let out = self.child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        eprintln!("cloister run said: {stderr}");
        assert!(!out.status.success(), "cloister run succeeded: {stderr}");
        std::thread::sleep(Duration::from_millis(200));
        // Every process of the run (QEMU, the VMM) names its run directory,
        // which is under `tmp`; the demo's registry and KBS do not.
        let left = processes_mentioning(&self.tmp.display().to_string());
        assert!(left.is_empty(), "processes left: {left:?}");
        let files: Vec<_> = std::fs::read_dir(&self.tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(files.is_empty(), "left in TMPDIR: {files:?}");
        stderr
    }
}

#[test]
fn killing_the_vmm_during_create_container_fails_the_run_and_leaves_nothing() {
    let Some(mut run) = DemoRun::start(&[]) else {
        return;
    };
    let run_dir = run.wait_for_create_container();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(DemoRun::qemu_pid(&run_dir) as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let stderr = run.failed_and_left_nothing();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("the VM ended during CreateContainer"),
        "the failed step is named: {stderr}"
    );
    assert!(
        last.contains("QEMU ended (signal: 9 (SIGKILL))"),
        "the reason names the VMM's end: {stderr}"
    );
}

/// Sends `command` on QEMU's monitor (QMP) and returns its answer.
fn qmp(socket: &Path, command: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut lines = BufReader::new(s.try_clone().unwrap()).lines();
    let greeting = lines.next().unwrap().unwrap();
    assert!(greeting.contains("QMP"), "{greeting}");
    let mut w = &s;
    writeln!(w, r#"{{"execute":"qmp_capabilities"}}"#).unwrap();
    let ok = lines.next().unwrap().unwrap();
    assert!(ok.contains("return"), "{ok}");
    writeln!(w, r#"{{"execute":"{command}"}}"#).unwrap();
    // Events may come before the answer.
    loop {
        let l = lines.next().unwrap().unwrap();
        if l.contains("\"return\"") || l.contains("\"error\"") {
            return l;
        }
    }
}

/// The VM resets under the agent while it attests and pulls (what PID 1
/// dying does too: the kernel panics, `panic=-1` resets, `-no-reboot` ends
/// QEMU): `cloister run` names the step and the reset, and leaves nothing.
#[test]
fn a_guest_reset_during_create_container_fails_the_run_and_leaves_nothing() {
    let Some(mut run) = DemoRun::start(&[]) else {
        return;
    };
    let run_dir = run.wait_for_create_container();
    let answer = qmp(&run_dir.join("qmp.sock"), "system_reset");
    assert!(answer.contains("return"), "system_reset: {answer}");
    let stderr = run.failed_and_left_nothing();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("the VM ended during CreateContainer (the guest powered off or reset"),
        "the step and the reset are named: {stderr}"
    );
}

/// The agent, PID 1, gives up at start (here on a kernel command line it
/// refuses) and turns the VM off: `cloister run` fails with the agent's own
/// reason from the console, and leaves nothing.
#[test]
fn the_agent_dying_at_start_fails_the_run_with_its_reason() {
    let cmdline = format!(
        "{} cloister.log_format=bogus",
        cloister_host::hypervisor::DEFAULT_CMDLINE
    );
    let Some(run) = DemoRun::start(&["--cmdline", &cmdline]) else {
        return;
    };
    let stderr = run.failed_and_left_nothing();
    let first = stderr
        .lines()
        .find(|l| l.contains("before its agent answered"))
        .unwrap_or_else(|| panic!("the boot failure is named: {stderr}"));
    assert!(
        first.contains(
            "the guest powered off or reset; the agent stopped: log format must be text or json, got \"bogus\""
        ),
        "the agent's reason is in the first line: {stderr}"
    );
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
