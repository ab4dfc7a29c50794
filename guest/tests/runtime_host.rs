//! The container runtime (libcontainer through the agent's helper) on the
//! host, without a VM: real namespaces, a real overlayfs rootfs of busybox,
//! cgroup2, pipes and ptys. Needs root; the test re-runs itself in a private
//! mount namespace with cgroup2 mounted, so that the host is untouched.
//! The same code runs in the guest in `tests/tests/containers_vm.rs`.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cloister_runtime::{ExecProcess, Reaper, Runtime, RuntimeConfig};
use serde_json::{json, Value};

const INNER: &str = "CLOISTER_RUNTIME_TEST_INNER";

fn skip_or_fail(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("prerequisite missing under CI=true: {reason}");
    }
    eprintln!("SKIP: {reason}");
}

/// The default spec (runc's), with /proc/cmdline masked too: a masked path
/// that exists on every kernel, so the test can see the mask.
fn spec(args: &[&str]) -> Value {
    let mut s = cloister_protocol::oci::default_spec(args);
    s["process"]["env"] = json!(["PATH=/bin", "HOME=/"]);
    s["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}]);
    s["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/proc/cmdline"));
    s
}

/// A busybox rootfs as one "layer".
fn busybox_layer(dir: &Path) -> Option<PathBuf> {
    let bb = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())?;
    let layer = dir.join("layer");
    let bin = layer.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(layer.join(d)).unwrap();
    }
    std::fs::write(layer.join("etc/secret"), "image file\n").unwrap();
    std::fs::copy(&bb, bin.join("busybox")).unwrap();
    for tool in [
        "sh", "cat", "echo", "id", "grep", "sleep", "tty", "stty", "head", "dd", "ls", "touch",
        "ps", "hostname", "stat", "mkdir", "pwd",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
    }
    Some(layer)
}

#[test]
fn containers_run_on_the_host_runtime() {
    if std::env::var_os(INNER).is_some() {
        inner();
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        skip_or_fail("needs root (namespaces, overlayfs, cgroup2)");
        return;
    }
    // A private mount namespace: the cgroup2 mount and the overlays stay in it.
    let st = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "containers_run_on_the_host_runtime",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, "1")
        .status()
        .expect("running unshare");
    assert!(st.success(), "the test in its mount namespace failed: {st}");
}

async fn read_all(p: &cloister_runtime::Process, stderr: bool) -> String {
    let out = if stderr { &p.io.stderr } else { &p.io.stdout };
    let mut all = Vec::new();
    loop {
        let (d, eof) = tokio::time::timeout(Duration::from_secs(20), out.read(1 << 16))
            .await
            .expect("output within 20 s");
        all.extend(d);
        if eof {
            return String::from_utf8_lossy(&all).into_owned();
        }
    }
}

fn inner() {
    nix::mount::mount(
        Some("cgroup2"),
        "/sys/fs/cgroup",
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mounting cgroup2 in the private namespace");
    cloister_runtime::become_subreaper().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let Some(layer) = busybox_layer(dir.path()) else {
        skip_or_fail("busybox-static is not installed");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // The reaper, as the agent runs it.
        tokio::spawn(async {
            let mut sig =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).unwrap();
            loop {
                Reaper::global().reap_all();
                sig.recv().await;
            }
        });
        let mut cfg = RuntimeConfig::under(
            &dir.path().join("run"),
            PathBuf::from(env!("CARGO_BIN_EXE_cloister-agent")),
        );
        cfg.cgroup_root = "/sys/fs/cgroup".into();
        let runtime = Arc::new(Runtime::new(cfg, tokio::runtime::Handle::current()).unwrap());
        let lower = vec![layer.clone()];
        let blocking = |f: Box<dyn FnOnce() -> i32 + Send>| tokio::task::spawn_blocking(f);

        // 1. A container's security settings, output, and exit code.
        let script =
            "echo out; echo err >&2; grep -E '^(NoNewPrivs|CapEff|CapBnd)' /proc/self/status; \
             id -u; hostname; cat /etc/secret; ulimit -n; \
             (echo x > /proc/sys/kernel/hostname) 2>/dev/null || echo proc-sys-ro; \
             (touch /etc/new) 2>/dev/null || echo rootfs-ro; \
             echo masked=$(stat -c %t:%T /proc/cmdline); \
             echo cwd=$(pwd) groups=$(id -G); grep '^Seccomp:' /proc/self/status; \
             (mkdir /tmp/d) 2>/dev/null && echo mkdir-allowed || echo mkdir-denied; \
             touch /tmp/f && echo touch-allowed; \
             exit 7";
        let mut s = spec(&["/bin/sh", "-c", script]);
        s["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [2000, 3000]});
        s["process"]["cwd"] = json!("/tmp");
        // seccomp: mkdir fails with EPERM, everything else is allowed.
        s["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        let body = serde_json::to_vec(&s).unwrap();
        let r = runtime.clone();
        let l = lower.clone();
        blocking(Box::new(move || r.create("c1", &body, &l).unwrap()))
            .await
            .unwrap();
        let r = runtime.clone();
        blocking(Box::new(move || r.start("c1").unwrap()))
            .await
            .unwrap();
        let p = runtime.process("c1", "").unwrap();
        let out = read_all(&p, false).await;
        let err = read_all(&p, true).await;
        assert_eq!(
            p.wait().await,
            7,
            "exit code; stdout:\n{out}\nstderr:\n{err}"
        );
        assert!(out.starts_with("out\n"), "{out}");
        assert_eq!(err, "err\n");
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");
        // The bounding set is exactly CAP_KILL (5), CAP_NET_BIND_SERVICE (10)
        // and CAP_AUDIT_WRITE (29); the effective set is within it.
        // (libcontainer 0.7 does not carry ambient capabilities over to a
        // non-root user, unlike runc: CapEff is then empty.)
        assert!(out.contains("CapBnd:\t0000000020000420"), "{out}");
        assert!(
            out.contains("CapEff:\t0000000020000420") || out.contains("CapEff:\t0000000000000000"),
            "{out}"
        );
        assert!(out.contains("\n1000\nbox\nimage file\n512\n"), "{out}");
        assert!(
            out.contains("cwd=/tmp groups=1000 2000 3000\n"),
            "cwd and groups: {out}"
        );
        assert!(
            out.contains("Seccomp:\t2\n"),
            "a seccomp filter is on: {out}"
        );
        assert!(
            out.contains("mkdir-denied\ntouch-allowed\n"),
            "the filter denies mkdir only: {out}"
        );
        assert!(out.contains("proc-sys-ro"), "{out}");
        assert!(out.contains("rootfs-ro"), "{out}");
        // Masked: /dev/null (char 1:3) is mounted over it.
        assert!(out.contains("masked=1:3"), "{out}");
        let r = runtime.clone();
        blocking(Box::new(move || {
            r.remove("c1", Duration::ZERO).unwrap();
            0
        }))
        .await
        .unwrap();
        assert!(
            !dir.path().join("run/containers/c1").exists(),
            "bundle removed"
        );
        assert!(
            !Path::new("/sys/fs/cgroup/cloister/c1").exists(),
            "cgroup removed"
        );

        // 2. Exec into a running container, with pipes and with a terminal;
        //    stdin; signals.
        let s = spec(&["/bin/sh", "-c", "read line; echo got:$line; sleep 1000"]);
        let body = serde_json::to_vec(&s).unwrap();
        let r = runtime.clone();
        let l = lower.clone();
        blocking(Box::new(move || r.create("c2", &body, &l).unwrap()))
            .await
            .unwrap();
        let r = runtime.clone();
        blocking(Box::new(move || r.start("c2").unwrap()))
            .await
            .unwrap();
        let init = runtime.process("c2", "").unwrap();
        assert_eq!(init.io.stdin.write(b"hello\n").unwrap(), 6);
        let (first, _) = tokio::time::timeout(Duration::from_secs(20), init.io.stdout.read(100))
            .await
            .unwrap();
        assert_eq!(first, b"got:hello\n");
        let r = runtime.clone();
        blocking(Box::new(move || {
            r.exec(
                "c2",
                "e1",
                &ExecProcess {
                    args: vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        "echo exec:$(id -u):$FOO; ps -o pid,args | grep -c sleep; exit 3".into(),
                    ],
                    env: vec!["PATH=/bin".into(), "FOO=bar".into()],
                    uid: 1234,
                    gid: 1234,
                    ..Default::default()
                },
            )
            .unwrap()
        }))
        .await
        .unwrap();
        let e1 = runtime.process("c2", "e1").unwrap();
        let out = read_all(&e1, false).await;
        assert_eq!(e1.wait().await, 3);
        assert!(out.starts_with("exec:1234:bar\n"), "{out}");
        let r = runtime.clone();
        blocking(Box::new(move || {
            r.exec(
                "c2",
                "t1",
                &ExecProcess {
                    args: vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        "sleep 0.5; tty; stty size".into(),
                    ],
                    terminal: true,
                    ..Default::default()
                },
            )
            .unwrap()
        }))
        .await
        .unwrap();
        let t1 = runtime.process("c2", "t1").unwrap();
        t1.io.resize(33, 77).unwrap();
        let out = read_all(&t1, false).await;
        assert_eq!(t1.wait().await, 0);
        assert!(out.contains("/dev/pts/"), "{out:?}");
        assert!(out.contains("33 77"), "{out:?}");
        assert!(init.io.resize(1, 1).is_err(), "no terminal, no resize");
        // Two execs with one id at the same time: exactly one is created.
        let sleeper = ExecProcess {
            args: vec!["/bin/sleep".into(), "0.2".into()],
            ..Default::default()
        };
        let (r1, r2) = (runtime.clone(), runtime.clone());
        let (s1, s2) = (sleeper.clone(), sleeper.clone());
        let a = tokio::task::spawn_blocking(move || r1.exec("c2", "dup", &s1).is_ok());
        let b = tokio::task::spawn_blocking(move || r2.exec("c2", "dup", &s2).is_ok());
        let (a, b) = (a.await.unwrap(), b.await.unwrap());
        assert!(
            a ^ b,
            "one of two concurrent execs with the same id: {a} {b}"
        );
        init.signal(nix::sys::signal::Signal::SIGKILL).unwrap();
        assert_eq!(init.wait().await, 128 + 9);
        assert!(
            init.signal(nix::sys::signal::Signal::SIGTERM).is_err(),
            "no signal after exit"
        );
        let r = runtime.clone();
        blocking(Box::new(move || {
            r.remove("c2", Duration::ZERO).unwrap();
            0
        }))
        .await
        .unwrap();

        // 3. Output nobody reads never blocks the container.
        let s = spec(&[
            "/bin/sh",
            "-c",
            "dd if=/dev/zero bs=65536 count=128 2>/dev/null; echo done >&2",
        ]);
        let body = serde_json::to_vec(&s).unwrap();
        let r = runtime.clone();
        let l = lower.clone();
        blocking(Box::new(move || {
            let pid = r.create("c3", &body, &l).unwrap();
            r.start("c3").unwrap();
            pid
        }))
        .await
        .unwrap();
        let p = runtime.process("c3", "").unwrap();
        let code = tokio::time::timeout(Duration::from_secs(30), p.wait())
            .await
            .expect("an unread writer of 8 MiB still exits");
        assert_eq!(code, 0);
        while !p.io.stdout.ended() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(p.io.stdout.total(), 8 << 20);
        assert!(p.io.stdout.dropped() > 0);
        let r = runtime.clone();
        blocking(Box::new(move || {
            r.remove("c3", Duration::ZERO).unwrap();
            0
        }))
        .await
        .unwrap();

        // 4. A refused spec leaves nothing behind.
        let mut s = spec(&["/bin/sh"]);
        s["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/host", "type": "bind", "source": "/", "options": ["rbind"]}),
        );
        let body = serde_json::to_vec(&s).unwrap();
        let r = runtime.clone();
        let l = lower.clone();
        let e = tokio::task::spawn_blocking(move || r.create("c4", &body, &l).unwrap_err())
            .await
            .unwrap();
        assert!(e.to_string().contains("bind mount of /"), "{e}");
        assert!(!dir.path().join("run/containers/c4").exists());
        assert!(runtime.ids().is_empty(), "{:?}", runtime.ids());
    });
}
