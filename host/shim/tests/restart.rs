//! A shim that dies comes back to its pod: the VM lives in its own VMM
//! process, the pod's state is on disk, and a new shim for the pod
//! reconnects to the live VM and its agent and serves the task API for it
//! (State, Kill, Wait, Delete), stopping it in the end. When the VM died
//! while no shim was there, the new shim's error names the pod, its VM's
//! directory and what it tried.
//!
//! Driven as containerd drives it, but without containerd (which would run
//! `shim delete` for a dead shim's tasks): the task API over the shim's
//! ttrpc socket, events to a socket of the test's own. Boots a real guest
//! (QEMU/TCG).
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use containerd_shim::protos::api::{
    CreateTaskRequest, DeleteRequest, KillRequest, ShutdownRequest, StartRequest, StateRequest,
    WaitRequest,
};
use containerd_shim::protos::shim_async::TaskClient;
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::types::task::Status;

const BIN: &str = env!("CARGO_BIN_EXE_containerd-shim-cloister-v2");

fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("prerequisite missing under CI=true: {why}");
    }
    eprintln!("SKIP: {why}");
}

fn guest() -> Option<(PathBuf, PathBuf)> {
    let get = |v: &str| {
        std::env::var_os(v)
            .map(PathBuf::from)
            .filter(|p| p.is_file())
    };
    match (get("CLOISTER_KERNEL"), get("CLOISTER_INITRD")) {
        (Some(k), Some(i)) => Some((k, i)),
        _ => {
            skip_or_fail(
                "CLOISTER_KERNEL and CLOISTER_INITRD must name the guest (scripts/test sets them)",
            );
            None
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

struct Shim {
    child: Child,
    log: PathBuf,
}

impl Shim {
    fn spawn(dir: &Path, config: &Path, n: usize) -> Shim {
        let log = dir.join(format!("shim{n}.log"));
        let child = Command::new(BIN)
            .args(["-namespace", "t", "-id", "pod1", "-address"])
            .arg(dir.join("containerd.sock"))
            .arg("-socket")
            .arg(format!("unix://{}", dir.join("shim.sock").display()))
            .current_dir(dir)
            .env("TTRPC_ADDRESS", dir.join("events.sock"))
            .env("CLOISTER_CONFIG", config)
            .env("CLOISTER_POD_ID", "pod1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Shim { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive: its /proc/PID/stat state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

async fn client(dir: &Path, shim: &mut Shim) -> TaskClient {
    let sock = format!("unix://{}", dir.join("shim.sock").display());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = ttrpc::asynchronous::Client::connect(&sock).await {
            let t = TaskClient::new(c);
            let probe = t
                .connect(
                    ctx(),
                    &containerd_shim::protos::api::ConnectRequest::default(),
                )
                .await;
            if probe.is_ok() {
                return t;
            }
        }
        if let Ok(Some(st)) = shim.child.try_wait() {
            panic!("the shim exited ({st}):\n{}", shim.log());
        }
        assert!(
            Instant::now() < deadline,
            "no shim on {sock}:\n{}",
            shim.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(Duration::from_secs(60).as_nanos() as i64)
}

fn vmm_pids(vm_dir: &Path) -> (u32, u32) {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vm_dir.join("vmm.ready")).unwrap()).unwrap();
    (
        v["vmm_pid"].as_u64().unwrap() as u32,
        v["qemu_pid"].as_u64().unwrap() as u32,
    )
}

fn write_bundle(dir: &Path, annotations: serde_json::Value) -> String {
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["/pause"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
        "root": {"path": "rootfs"},
        "annotations": annotations,
    });
    std::fs::write(dir.join("config.json"), spec.to_string()).unwrap();
    dir.display().to_string()
}

#[test]
fn a_restarted_shim_reattaches_to_the_live_vm_and_names_a_dead_one() {
    let Some((kernel, initrd)) = guest() else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let run = dir.join("run");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[hypervisor]\nkernel = \"{}\"\ninitrd = \"{}\"\n\n[tee]\ntype = \"none\"\n\n\
             [defaults]\npolicy = \"{}\"\n\n[runtime]\nrun_dir = \"{}\"\nnetwork = \"none\"\n\n[log]\nlevel = \"debug\"\n",
            kernel.display(),
            initrd.display(),
            repo_root().join("policies/allow-all.rego").display(),
            run.display()
        ),
    )
    .unwrap();
    // containerd's event socket: accepted and held, never answered.
    let events = UnixListener::bind(dir.join("events.sock")).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = events.accept() {
            held.push(s);
        }
    });
    let sandbox = write_bundle(
        &dir.join("pod1"),
        serde_json::json!({
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": "pod1",
        }),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let vm_dir = run.join("pods/pod1/vm");

    // 1. The first shim boots the pod's VM; then it dies.
    let mut first = Shim::spawn(dir, &config, 1);
    let task_pid = rt.block_on(async {
        let t = client(dir, &mut first).await;
        let created = t
            .create(
                ctx(),
                &CreateTaskRequest {
                    id: "pod1".into(),
                    bundle: sandbox.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("Create: {e:?}\n{}", first.log()));
        t.start(
            ctx(),
            &StartRequest {
                id: "pod1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        created.pid
    });
    let (vmm, qemu) = vmm_pids(&vm_dir);
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(alive(vmm) && alive(qemu), "the VM outlives its shim");

    // 2. A new shim finds the pod again and serves it.
    let mut second = Shim::spawn(dir, &config, 2);
    rt.block_on(async {
        let t = client(dir, &mut second).await;
        let st = t
            .state(
                ctx(),
                &StateRequest {
                    id: "pod1".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("State after the restart: {e:?}\n{}", second.log()));
        assert_eq!(st.status.enum_value(), Ok(Status::RUNNING), "{st:?}");
        assert_eq!(st.pid, task_pid, "the same task");
        assert_eq!(vmm_pids(&vm_dir), (vmm, qemu), "the same VM, not a new one");
        t.kill(
            ctx(),
            &KillRequest {
                id: "pod1".into(),
                signal: 9,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let w = t
            .wait(
                ctx(),
                &WaitRequest {
                    id: "pod1".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("Wait after Kill: {e:?}\n{}", second.log()));
        assert_eq!(w.exit_status, 137, "{w:?}");
        t.delete(
            ctx(),
            &DeleteRequest {
                id: "pod1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    });
    let log = second.log();
    assert!(log.contains("reconnected to the live pod VM"), "{log}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(vmm) || alive(qemu) {
        assert!(
            Instant::now() < deadline,
            "the restored shim did not stop the VM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(async {
        let t = client(dir, &mut second).await;
        let _ = t
            .shutdown(
                ctx(),
                &ShutdownRequest {
                    id: "pod1".into(),
                    ..Default::default()
                },
            )
            .await;
    });
    drop(second);

    // 3. The VM dies while no shim is there: the next shim's error names
    // the pod, the VM's directory and what it tried.
    let mut third = Shim::spawn(dir, &config, 3);
    rt.block_on(async {
        let t = client(dir, &mut third).await;
        t.create(
            ctx(),
            &CreateTaskRequest {
                id: "pod1".into(),
                bundle: sandbox.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("Create: {e:?}\n{}", third.log()));
    });
    let (vmm, qemu) = vmm_pids(&vm_dir);
    third.child.kill().unwrap();
    third.child.wait().unwrap();
    for pid in [qemu, vmm] {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    let container = write_bundle(
        &dir.join("app"),
        serde_json::json!({
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "pod1",
            "io.kubernetes.cri.image-name": "127.0.0.1:1/none:v1",
        }),
    );
    let mut fourth = Shim::spawn(dir, &config, 4);
    let err = rt.block_on(async {
        let t = client(dir, &mut fourth).await;
        t.create(
            ctx(),
            &CreateTaskRequest {
                id: "app".into(),
                bundle: container,
                ..Default::default()
            },
        )
        .await
        .expect_err("a container in a pod whose VM is gone")
    });
    let msg = format!("{err:?}");
    assert!(msg.contains("UNAVAILABLE"), "{msg}");
    assert!(msg.contains("pod pod1"), "{msg}");
    assert!(msg.contains(&vm_dir.display().to_string()), "{msg}");
    assert!(msg.contains("reconnecting to the sandbox VM"), "{msg}");
}
