//! The main job when the host side breaks: the VMM killed while the guest is
//! inside CreateContainer (attesting, pulling). `cloister run`, the real
//! binary, must exit non-zero with the reason, and leave no process, socket
//! or file behind. The parts are the demo's (registry, KBS, encrypted signed
//! image, sim TEE).
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cloister_host::demo::{Demo, DemoConfig, DEMO_COMMAND};
use common::*;

fn config(work: &Path) -> Option<DemoConfig> {
    let (Some(kernel), Some(initrd)) = (kernel(), agent_initrd()) else {
        return None;
    };
    if !qemu() {
        return None;
    }
    let bin_dir = cloister_bin().parent().unwrap().to_path_buf();
    if !bin_dir.join("cloister-kbs").is_file() {
        skip_or_fail("cloister-kbs is not built (cargo build --workspace)");
        return None;
    }
    Some(DemoConfig {
        kernel,
        initrd,
        bin_dir,
        sim_state: work.join("sim"),
        work: work.join("demo"),
        reference_initrd: None,
        policy_lists_unsigned: false,
    })
}

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
    let Some(cfg) = config(work.path()) else {
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
