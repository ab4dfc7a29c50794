//! A real Linux guest under QEMU with cloister-agent as PID 1, reached over
//! cloister's own vhost-user vsock device: the foundation end to end, and
//! the ways a boot must fail loudly.
mod common;

use common::*;

#[test]
fn real_guest_boots_and_agent_answers_over_vsock() {
    let (Some(k), Some(i)) = (kernel(), agent_initrd()) else {
        return;
    };
    if !qemu() {
        return;
    }
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().join("vm");
    let out = cloister(&[
        "vm",
        "boot",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("agent is init:   true"), "{stdout}");
    assert!(stdout.contains("kernel version:  6.1"), "{stdout}");
    assert!(stdout.contains("tee:             none"), "{stdout}");
    assert!(stdout.contains("agent ready in:"), "{stdout}");
    // Nothing left behind: no QEMU for this VM, no sockets.
    assert!(processes_mentioning(run_dir.to_str().unwrap()).is_empty());
    let socks: Vec<_> = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sock"))
        .map(|e| e.path())
        .collect();
    assert!(socks.is_empty(), "sockets left behind: {socks:?}");
    // The console shows the agent started as init.
    let console = std::fs::read_to_string(run_dir.join("console.log")).unwrap();
    assert!(console.contains("cloister-agent starting"), "{console}");
}

#[test]
fn two_vcpus_and_more_memory_are_what_the_guest_sees() {
    let (Some(k), Some(i)) = (kernel(), agent_initrd()) else {
        return;
    };
    if !qemu() {
        return;
    }
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
        "512",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("guest cpus:      2"), "{stdout}");
    let kib: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("guest memory:"))
        .and_then(|v| v.trim().trim_end_matches("KiB").trim().parse().ok())
        .unwrap();
    assert!(kib > 400 * 1024 && kib <= 512 * 1024, "{kib} KiB");
}

#[test]
fn missing_kernel_is_refused() {
    let Some(i) = agent_initrd() else { return };
    let out = cloister(&[
        "vm",
        "boot",
        "--kernel",
        "/nonexistent/bzImage",
        "--initrd",
        i.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("kernel /nonexistent/bzImage does not exist"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn garbage_kernel_is_refused() {
    let Some(i) = agent_initrd() else { return };
    let d = tempfile::tempdir().unwrap();
    let k = d.path().join("bzImage");
    std::fs::write(
        &k,
        (0..100_000u32)
            .map(|x| (x.wrapping_mul(2654435761) >> 24) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let out = cloister(&[
        "vm",
        "boot",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("is not an x86 Linux kernel"), "{e}");
}

#[test]
fn missing_initrd_is_refused() {
    let Some(k) = kernel() else { return };
    let out = cloister(&[
        "vm",
        "boot",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        "/nonexistent/initrd",
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("initramfs /nonexistent/initrd does not exist"));
}

fn busybox_initrd(dir: &std::path::Path, script: &str) -> Option<std::path::PathBuf> {
    let bb = busybox()?;
    let out = dir.join("bb.cpio");
    let o = cloister(&[
        "initrd",
        "build",
        "--busybox",
        bb.to_str().unwrap(),
        "--script",
        script,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    Some(out)
}

#[test]
fn vm_that_dies_before_the_agent_is_reported_with_its_console() {
    let Some(k) = kernel() else { return };
    if !qemu() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let Some(i) = busybox_initrd(d.path(), "echo guest-init-gives-up; /bin/busybox reboot -f")
    else {
        return;
    };
    let out = cloister(&[
        "vm",
        "boot",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--timeout",
        "60",
    ]);
    let e = text(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("the VM exited"), "{e}");
    assert!(
        e.contains("guest-init-gives-up"),
        "serial tail must be shown: {e}"
    );
}

#[test]
fn agent_timeout_is_reported_with_the_serial_tail() {
    let Some(k) = kernel() else { return };
    if !qemu() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let Some(i) = busybox_initrd(d.path(), "echo no-agent-here; exec /bin/busybox sleep 600")
    else {
        return;
    };
    let run_dir = d.path().join("vm");
    let out = cloister(&[
        "vm",
        "boot",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--timeout",
        "20",
        "--run-dir",
        run_dir.to_str().unwrap(),
    ]);
    let e = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        e.contains("the agent did not answer on vsock port 1024"),
        "{e}"
    );
    assert!(e.contains("no-agent-here"), "{e}");
    assert!(
        processes_mentioning(run_dir.to_str().unwrap()).is_empty(),
        "QEMU left running"
    );
}

#[test]
fn wrong_vsock_port_is_refused() {
    let (Some(k), Some(i)) = (kernel(), agent_initrd()) else {
        return;
    };
    if !qemu() {
        return;
    }
    let out = cloister(&[
        "vm",
        "boot",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--agent-port",
        "1025",
        "--timeout",
        "20",
    ]);
    let e = text(&out.stderr);
    assert!(!out.status.success());
    assert!(e.contains("did not answer on vsock port 1025"), "{e}");
    assert!(
        e.contains("the guest refused vsock port 1025: nothing listens there"),
        "{e}"
    );
}

#[test]
fn killing_cloister_does_not_leave_qemu_running() {
    let Some(k) = kernel() else { return };
    if !qemu() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let Some(i) = busybox_initrd(d.path(), "exec /bin/busybox sleep 600") else {
        return;
    };
    let run_dir = d.path().join("vm");
    let mut child = std::process::Command::new(cloister_bin())
        .args([
            "vm",
            "boot",
            "--kernel",
            k.to_str().unwrap(),
            "--initrd",
            i.to_str().unwrap(),
        ])
        .args(["--timeout", "120", "--run-dir", run_dir.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let needle = run_dir.join("console.log");
    let needle = needle.to_str().unwrap();
    let wait_for = |want_running: bool| {
        for _ in 0..500 {
            let running = processes_mentioning(needle)
                .iter()
                .any(|c| c.contains("qemu-system"));
            if running == want_running {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    };
    assert!(wait_for(true), "QEMU never started");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(wait_for(false), "QEMU outlived a SIGKILLed cloister");
}
