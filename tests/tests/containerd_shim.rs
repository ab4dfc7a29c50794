//! cloister as containerd's runtime: Debian's containerd 1.6, started by
//! the test with its own root, state and socket, finds
//! `containerd-shim-cloister-v2` on its PATH, and `ctr` runs containers in
//! a real guest (QEMU/TCG) whose agent pulls a signed image from a real
//! registry on loopback. The host rootfs containerd hands over is an empty
//! directory: the host pulls and unpacks nothing.
mod common;
#[path = "common/signed.rs"]
mod signed;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use cloister_test_support::{keys, tools, Layout, Registry, Setup};
use common::*;
use signed::{initdata, initdata_via, signed_image};

const RUNTIME: &str = "io.containerd.cloister.v2";
const NS: &str = "cloister-test";

fn shim_bin() -> PathBuf {
    let p = cloister_bin().with_file_name("containerd-shim-cloister-v2");
    assert!(
        p.is_file(),
        "{} not built; run cargo test --workspace",
        p.display()
    );
    p
}

/// Why this machine cannot run the test, if it cannot.
fn missing() -> Option<String> {
    if !nix_is_root() {
        return Some("containerd needs root".into());
    }
    for tool in ["containerd", "ctr"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("{tool} is not installed (scripts/install-deps)"));
        }
    }
    if kernel().is_none() || agent_initrd().is_none() || !qemu() {
        return Some("no guest kernel, initramfs or QEMU".into());
    }
    if !tools::registry_tools_present() {
        return Some("docker-registry, skopeo or umoci missing".into());
    }
    for plugin in ["bridge", "host-local", "loopback"] {
        if !Path::new("/usr/lib/cni").join(plugin).is_file() {
            return Some(format!(
                "/usr/lib/cni/{plugin} missing (containernetworking-plugins)"
            ));
        }
    }
    None
}

fn nix_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A containerd of the test's own.
struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    /// The cloister run directory of the node config it was started with.
    run_dir: Option<PathBuf>,
}

impl Containerd {
    fn start(cloister_config: &Path) -> Containerd {
        Self::start_with(cloister_config, |_| {
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n".to_string()
        })
    }

    /// `extra(dir)` adds to containerd's config (before its first table).
    fn start_with(cloister_config: &Path, extra: impl FnOnce(&Path) -> String) -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let bin = d.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(shim_bin(), bin.join("containerd-shim-cloister-v2")).unwrap();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n{extra}\n\
             [grpc]\n  address = \"{sock}\"\n[debug]\n  level = \"debug\"\n",
            extra = extra(d),
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .env("CLOISTER_CONFIG", cloister_config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let run_dir = std::fs::read_to_string(cloister_config)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| Some(PathBuf::from(t.get("runtime")?.get("run_dir")?.as_str()?)));
        let c = Containerd {
            dir,
            child,
            run_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.sock().exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(&self, args: &[S]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.sock())
            .args(["--namespace", NS])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ctr_ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(&self, args: &[S]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}\n{}\n--- containerd ---\n{}",
            text(&out.stdout),
            text(&out.stderr),
            tail(&self.log(), 60)
        );
        text(&out.stdout)
    }
}

impl Drop for Containerd {
    /// Stops containerd and, when a test failed half way, the shims and
    /// VMs it left (shims name containerd's socket, VMMs the run dir).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut marks = vec![self.dir.path().display().to_string()];
        marks.extend(self.run_dir.iter().map(|d| d.display().to_string()));
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if pid != std::process::id() as i32 && marks.iter().any(|m| cmd.contains(m.as_str())) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The node config of the test: its kernel and initramfs, a run directory
/// of its own, no TEE (QEMU/TCG).
fn node_config(dir: &Path) -> PathBuf {
    node_config_with(dir, "auto")
}

/// `network`: the node config's `[runtime] network`.
fn node_config_with(dir: &Path, network: &str) -> PathBuf {
    let run = dir.join("run");
    let policy = repo_root().join("policies/allow-all.rego");
    let text = format!(
        "[hypervisor]\nkernel = \"{}\"\ninitrd = \"{}\"\nmemory_mib = 512\n\n[tee]\ntype = \"none\"\n\n\
         [defaults]\npolicy = \"{}\"\n\n[runtime]\nrun_dir = \"{}\"\nnetwork = \"{network}\"\n\n[log]\nlevel = \"debug\"\n",
        kernel().unwrap().display(),
        agent_initrd().unwrap().display(),
        policy.display(),
        run.display()
    );
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn pods_left(run: &Path) -> Vec<String> {
    std::fs::read_dir(run.join("pods"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `ctr run` of a cloister task on an (ignored) host rootfs: `--rm` or
/// `-d`, the annotations, the rootfs, the id and the command.
fn run_args(mode: &str, annotations: &[&str], rootfs: &str, id: &str, cmd: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["run", mode, "--runtime", RUNTIME, "--rootfs"]
        .map(String::from)
        .into();
    for ann in annotations {
        a.push("--annotation".into());
        a.push(ann.to_string());
    }
    a.extend([rootfs, id].map(String::from));
    a.extend(cmd.iter().map(|c| c.to_string()));
    a
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn task_status(c: &Containerd, id: &str) -> Option<String> {
    let out = c.ctr(&["task", "ls"]);
    text(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2).map(String::from))
}

#[test]
fn ctr_runs_containers_in_a_cloister_vm() {
    if let Some(why) = missing() {
        skip_or_fail(&format!("ctr_runs_containers_in_a_cloister_vm: {why}"));
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let reg = Registry::start(Setup::HTTP);
    let img = signed_image(&reg, work.path());
    let allow_all = std::fs::read_to_string(repo_root().join("policies/allow-all.rego")).unwrap();
    let initdata_b64 = base64::engine::general_purpose::STANDARD.encode(initdata(
        &allow_all,
        &reg,
        &img.public_pem,
    ));
    let cfg = node_config(work.path());
    let run_dir = work.path().join("run");
    let ctd = Containerd::start(&cfg);
    // The host rootfs containerd would mount: cloister ignores it.
    let empty = work.path().join("empty-rootfs");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.to_str().unwrap().to_string();
    let image_ann = format!("io.kubernetes.cri.image-name={}", img.reference);
    let init_ann = format!("cloister.dev/initdata={initdata_b64}");
    let mut events = Command::new("ctr")
        .arg("--address")
        .arg(ctd.sock())
        .args(["--namespace", NS, "events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // 1. A standalone container: its output and exit code through ctr.
    let t0 = Instant::now();
    let out = ctd.ctr(&run_args(
        "--rm",
        &[&image_ann, &init_ann],
        &empty,
        "solo",
        &[
            "/bin/sh",
            "-c",
            "echo out-line; echo err-line >&2; cat /etc/motd; exit 3",
        ],
    ));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout:\n{stdout}\nstderr:\n{}\n--- containerd ---\n{}",
        text(&out.stderr),
        tail(&ctd.log(), 80)
    );
    assert!(stdout.contains("out-line\n"), "{stdout}");
    assert!(stdout.contains("hello from the image\n"), "{stdout}");
    assert!(
        text(&out.stderr).contains("err-line"),
        "{}",
        text(&out.stderr)
    );
    eprintln!("ctr run to exit: {:?}", t0.elapsed());
    wait_until(
        "the solo pod to be cleaned up",
        Duration::from_secs(20),
        || pods_left(&run_dir).is_empty(),
    );

    // 2. A pod: the sandbox task boots the VM, two containers join it.
    let sb_type = "io.kubernetes.cri.container-type=sandbox";
    let sb_id = "io.kubernetes.cri.sandbox-id=pod1";
    ctd.ctr_ok(&run_args(
        "-d",
        &[sb_type, sb_id, &init_ann],
        &empty,
        "pod1",
        &["/pause"],
    ));
    assert_eq!(task_status(&ctd, "pod1").as_deref(), Some("RUNNING"));
    let c_type = "io.kubernetes.cri.container-type=container";
    let out = ctd.ctr(&run_args(
        "--rm",
        &[c_type, sb_id, &image_ann],
        &empty,
        "pod1-a",
        &["/bin/sh", "-c", "echo from-a; exit 0"],
    ));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stderr),
        tail(&ctd.log(), 60)
    );
    assert!(
        text(&out.stdout).contains("from-a"),
        "{}",
        text(&out.stdout)
    );
    // A long-running container: exec into it, then kill and delete it.
    ctd.ctr_ok(&run_args(
        "-d",
        &[c_type, sb_id, &image_ann],
        &empty,
        "pod1-b",
        &["/bin/sh", "-c", "sleep 600"],
    ));
    let out = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "pod1-b",
        "/bin/sh",
        "-c",
        "echo exec-ok; exit 4",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}\n{}",
        text(&out.stderr),
        tail(&ctd.log(), 60)
    );
    assert!(
        text(&out.stdout).contains("exec-ok"),
        "{}",
        text(&out.stdout)
    );
    // One VM serves the pod: one VMM process for both containers.
    let ours = format!("-id pod1 -address {}", ctd.sock().display());
    let shims = processes_mentioning(&ours);
    assert_eq!(shims.len(), 1, "one shim per pod: {shims:?}");
    ctd.ctr_ok(&["task", "kill", "--signal", "SIGKILL", "pod1-b"]);
    wait_until("pod1-b to stop", Duration::from_secs(30), || {
        task_status(&ctd, "pod1-b").as_deref() == Some("STOPPED")
    });
    ctd.ctr_ok(&["task", "delete", "pod1-b"]);
    ctd.ctr_ok(&["container", "delete", "pod1-b"]);
    ctd.ctr_ok(&["task", "kill", "--signal", "SIGKILL", "pod1"]);
    wait_until("the pod's sandbox to stop", Duration::from_secs(30), || {
        task_status(&ctd, "pod1").as_deref() == Some("STOPPED")
    });
    ctd.ctr_ok(&["task", "delete", "pod1"]);
    ctd.ctr_ok(&["container", "delete", "pod1"]);

    // 3. The VMM dies under a running container: the task exits (255) and
    // containerd hears of it.
    ctd.ctr_ok(&run_args(
        "-d",
        &[&image_ann, &init_ann],
        &empty,
        "doomed",
        &["/bin/sh", "-c", "sleep 600"],
    ));
    let vm_dir = run_dir.join("pods/doomed/vm");
    let qemu = processes_mentioning(vm_dir.to_str().unwrap());
    assert!(!qemu.is_empty(), "the pod's VMM runs");
    let ready: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vm_dir.join("vmm.ready")).unwrap()).unwrap();
    let pid = ready["qemu_pid"]
        .as_u64()
        .expect("vmm.ready names QEMU's pid");
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    wait_until("the doomed task to stop", Duration::from_secs(30), || {
        task_status(&ctd, "doomed").as_deref() == Some("STOPPED")
    });
    let out = ctd.ctr_ok(&["task", "ls"]);
    assert!(out.contains("doomed"), "{out}");
    ctd.ctr_ok(&["task", "delete", "doomed"]);
    ctd.ctr_ok(&["container", "delete", "doomed"]);

    // Events containerd received from the shim.
    let _ = events.kill();
    let ev = events.wait_with_output().unwrap();
    let ev = text(&ev.stdout);
    for topic in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/exec-added",
        "/tasks/exec-started",
        "/tasks/delete",
    ] {
        assert!(ev.contains(topic), "no {topic} event:\n{ev}");
    }
    assert!(
        ev.lines()
            .any(|l| l.contains("/tasks/exit") && l.contains("doomed") && l.contains("255")),
        "the VMM's death reached containerd as an exit with 255:\n{ev}"
    );

    // Nothing left behind: no pod directory, no process, no shim socket.
    wait_until(
        "every pod to be cleaned up",
        Duration::from_secs(20),
        || pods_left(&run_dir).is_empty(),
    );
    let left = processes_mentioning(run_dir.to_str().unwrap());
    assert!(left.is_empty(), "processes left: {left:?}");
    let shims = processes_mentioning(&format!("-address {}", ctd.sock().display()))
        .into_iter()
        .filter(|c| c.contains("containerd-shim-cloister-v2"))
        .collect::<Vec<_>>();
    assert!(shims.is_empty(), "shims left: {shims:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(run_dir.to_str().unwrap()),
        "mounts left under the run dir"
    );
    let ls = ctd.ctr_ok(&["task", "ls"]);
    assert_eq!(ls.lines().count(), 1, "tasks left: {ls}");
}

#[test]
fn a_bad_node_config_or_annotation_is_refused_by_name() {
    if let Some(why) = missing() {
        skip_or_fail(&format!(
            "a_bad_node_config_or_annotation_is_refused_by_name: {why}"
        ));
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty-rootfs");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.to_str().unwrap().to_string();

    // A config with a misspelt key: the shim refuses to start, naming the
    // file, the line and the key, and no VM is booted.
    let bad = work.path().join("bad.toml");
    std::fs::write(&bad, "[hypervisor]\nmemory_mib = 512\nvcpu = 2\n").unwrap();
    let ctd = Containerd::start(&bad);
    let out = ctd.ctr(&run_args("--rm", &[], &empty, "c1", &["/bin/true"]));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:3: key `hypervisor.vcpu`: unknown field",
            bad.display()
        )),
        "{err}"
    );
    assert!(processes_mentioning("qemu-system")
        .iter()
        .all(|p| !p.contains(work.path().to_str().unwrap())));
    drop(ctd);

    // A good config, an annotation cloister does not know: refused by name.
    let cfg = node_config(work.path());
    let ctd = Containerd::start(&cfg);
    let out = ctd.ctr(&run_args(
        "--rm",
        &[
            "cloister.dev/kernel=/evil",
            "io.kubernetes.cri.image-name=127.0.0.1:1/x:y",
        ],
        &empty,
        "c2",
        &["/bin/true"],
    ));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("annotation cloister.dev/kernel: unknown"),
        "{err}"
    );
    // An override the config does not allow.
    let out = ctd.ctr(&run_args(
        "--rm",
        &[
            "cloister.dev/vcpus=2",
            "io.kubernetes.cri.image-name=127.0.0.1:1/x:y",
        ],
        &empty,
        "c3",
        &["/bin/true"],
    ));
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cloister.dev/vcpus"),
        "{err}"
    );
    assert!(
        pods_left(&work.path().join("run")).is_empty(),
        "a refused pod leaves nothing"
    );
}

fn snapshotter_bin() -> PathBuf {
    let p = cloister_bin().with_file_name("cloister-snapshotter");
    assert!(
        p.is_file(),
        "{} not built; run cargo test --workspace",
        p.display()
    );
    p
}

/// kubelet's side: CRI over containerd's socket.
mod cri {
    use std::path::PathBuf;

    use k8s_cri::v1::image_service_client::ImageServiceClient;
    use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
    use tonic::transport::Channel;

    pub async fn channel(sock: PathBuf) -> Channel {
        cloister_host::cri_client::channel(sock).await.unwrap()
    }

    pub fn runtime(c: Channel) -> RuntimeServiceClient<Channel> {
        cloister_host::cri_client::clients(c).0
    }

    pub fn images(c: Channel) -> ImageServiceClient<Channel> {
        cloister_host::cri_client::clients(c).1
    }
}

/// The CRI plugin needs a pod IP from CNI, so the pod gets a real bridge
/// network; all of it (containerd, the registry, the CNI bridge, the pod)
/// lives in a network namespace of this test's thread, never the host's.
#[test]
fn kubelet_runs_a_signed_pod_through_the_cri_plugin_without_a_host_pull() {
    if let Some(why) = missing() {
        skip_or_fail(&format!("the CRI test: {why}"));
        return;
    }
    // This thread (and every process it spawns) gets its own netns.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(up.success());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(cri_pod());
}

/// The CNI bridge's address in the test's netns (the pods' gateway).
const GATEWAY: &str = "10.99.0.1";

/// Forwards `GATEWAY:port` to `127.0.0.1:port` (the registry).
async fn forward_to_loopback(port: u16) {
    let l = tokio::net::TcpListener::bind((GATEWAY, port))
        .await
        .unwrap_or_else(|e| panic!("binding {GATEWAY}:{port}: {e}"));
    tokio::spawn(async move {
        while let Ok((mut a, _)) = l.accept().await {
            tokio::spawn(async move {
                if let Ok(mut b) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
}

/// A CRI CreateContainer of `command` from `image`, logging to `<name>.log`.
fn create_request(
    pod: &str,
    sandbox: &k8s_cri::v1::PodSandboxConfig,
    name: &str,
    image: &str,
    command: Vec<String>,
) -> k8s_cri::v1::CreateContainerRequest {
    use k8s_cri::v1::*;
    CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command,
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        }),
        sandbox_config: Some(sandbox.clone()),
    }
}

async fn cri_pod() {
    use k8s_cri::v1::*;
    let work = tempfile::tempdir().unwrap();
    let reg = Registry::start(Setup::HTTP);
    let img = signed_image(&reg, work.path());
    let pause_dir = work.path().join("pause");
    std::fs::create_dir_all(&pause_dir).unwrap();
    let pause = Layout::new(&pause_dir);
    pause.busybox("v1", "amd64");
    reg.push(&pause.path, "v1", "pause:v1", &[]);
    let pause_ref = format!("{}/pause:v1", reg.host());
    let allow_all = std::fs::read_to_string(repo_root().join("policies/allow-all.rego")).unwrap();
    let initdata_b64 = base64::engine::general_purpose::STANDARD.encode(initdata_via(
        &allow_all,
        &reg,
        &img.public_pem,
        GATEWAY,
    ));
    // The guest is on the pod's CNI interface (tap + tc redirect); it
    // reaches the registry through the bridge's gateway address, where a
    // forwarder of this test passes connections to the registry's loopback.
    let cfg = node_config_with(work.path(), "auto");
    let run_dir = work.path().join("run");

    // The guest-pull snapshotter, and containerd's CRI plugin using it.
    let snap_sock = work.path().join("snap.sock");
    let mut snap = Command::new(snapshotter_bin())
        .arg("--root")
        .arg(work.path().join("snap"))
        .arg("--socket")
        .arg(&snap_sock)
        .stderr(std::fs::File::create(work.path().join("snap.log")).unwrap())
        .spawn()
        .unwrap();
    wait_until("the snapshotter socket", Duration::from_secs(10), || {
        snap_sock.exists()
    });
    let cni = work.path().join("cni");
    std::fs::create_dir_all(&cni).unwrap();
    std::fs::write(
        cni.join("10-cloister-test.conflist"),
        r#"{"cniVersion": "0.4.0", "name": "cloister-test", "plugins": [
            {"type": "bridge", "bridge": "cnitest0", "isGateway": true, "ipMasq": false,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "loopback"}]}"#,
    )
    .unwrap();
    let host = reg.host();
    let (snap_addr, cni_dir) = (snap_sock.clone(), cni.clone());
    let ctd = Containerd::start_with(&cfg, move |d| {
        format!(
            "[proxy_plugins.cloister]\n  type = \"snapshot\"\n  address = \"{snap}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{pause_ref}\"\n  \
             stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"cloister\"\n  \
             disable_snapshot_annotations = false\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  \
             runtime_type = \"io.containerd.runc.v2\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.cloister]\n  \
             runtime_type = \"{RUNTIME}\"\n  pod_annotations = [\"cloister.dev/*\"]\n\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{cni}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"{host}\"]\n  endpoint = [\"http://{host}\"]\n\
             [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"{host}\".tls]\n  insecure_skip_verify = true\n",
            snap = snap_addr.display(),
            cni = cni_dir.display(),
        ) + &format!("# state under {}\n", d.display())
    });
    let ch = cri::channel(ctd.sock()).await;
    let mut rt = cri::runtime(ch.clone());
    let mut images = cri::images(ch);

    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web".into(),
        log_directory: logs.display().to_string(),
        annotations: [("cloister.dev/initdata".to_string(), initdata_b64)].into(),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    let t0 = Instant::now();
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: "cloister".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", tail(&ctd.log(), 80)))
        .into_inner()
        .pod_sandbox_id;
    let pod_ready = t0.elapsed();
    // CNI made the bridge: now the gateway address exists.
    forward_to_loopback(reg.port).await;
    images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: img.reference.clone(),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config.clone()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("PullImage: {e}\n{}", tail(&ctd.log(), 80)));
    let created = rt
        .create_container(create_request(
            &pod,
            &sandbox_config,
            "app",
            &img.reference,
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo cri-hello; cat /etc/motd; exit 6".into(),
            ],
        ))
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", tail(&ctd.log(), 80)))
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: created.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", tail(&ctd.log(), 80)));
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        let s = rt
            .container_status(ContainerStatusRequest {
                container_id: created.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if s.state == ContainerState::ContainerExited as i32 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the container did not exit: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let to_exit = t0.elapsed();
    assert_eq!(status.exit_code, 6, "{status:?}");
    let log = std::fs::read_to_string(logs.join("app.log")).unwrap_or_default();
    assert!(log.contains(" stdout F cri-hello"), "CRI log: {log}");
    assert!(log.contains("hello from the image"), "CRI log: {log}");
    eprintln!("CRI RunPodSandbox: {pod_ready:?}; RunPodSandbox to container exited: {to_exit:?}");

    // The host pulled and unpacked no layer: the snapshots CRI prepared
    // through the guest-pull snapshotter exist and are empty directories.
    let snaps = work.path().join("snap/snapshots");
    let (mut dirs, mut files) = (0, Vec::new());
    let mut stack = vec![snaps.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs += 1;
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    assert!(dirs > 0, "no snapshot under {}", snaps.display());
    assert!(files.is_empty(), "image files on the host: {files:?}");

    // The pod's IP reaches a server in the container: host → bridge → veth
    // → tc redirect → tap → the guest's interface.
    let ip = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    assert!(ip.starts_with("10.99.0."), "pod IP {ip:?}");
    let web = rt
        .create_container(create_request(
            &pod,
            &sandbox_config,
            "web",
            &img.reference,
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo pod-says-hi > /tmp/i; exec /bin/busybox httpd -f -p 8080 -h /tmp".into(),
            ],
        ))
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: web.clone(),
    })
    .await
    .unwrap_or_else(|e| panic!("StartContainer web: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let got = async {
            let mut s = tokio::net::TcpStream::connect((ip.as_str(), 8080))
                .await
                .ok()?;
            s.write_all(b"GET /i HTTP/1.0\r\n\r\n").await.ok()?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.ok()?;
            Some(String::from_utf8_lossy(&buf).into_owned())
        };
        match tokio::time::timeout(Duration::from_secs(5), got).await {
            Ok(Some(p)) if p.contains("pod-says-hi") => break p,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no answer from {ip}:8080 in the pod"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    rt.stop_container(StopContainerRequest {
        container_id: web.clone(),
        timeout: 5,
    })
    .await
    .unwrap();
    rt.remove_container(RemoveContainerRequest { container_id: web })
        .await
        .unwrap();

    // An ocicrypt-encrypted, signed image: containerd on Debian cannot
    // unpack it ("failed to get stream processor"), and through the
    // guest-pull snapshotter it does not have to. The guest verifies it and,
    // with no key released to this no-TEE pod, refuses to run it, naming why.
    // (Its own layer: a layer the guest already unpacked from the signed
    // image above would be reused by diff_id, needing no key.)
    let secret_dir = work.path().join("secret");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let secret_layout = Layout::new(&secret_dir);
    secret_layout.busybox("v1", "amd64");
    secret_layout.change("v1", |rootfs| {
        std::fs::write(rootfs.join("secret.txt"), "only the guest may read this\n").unwrap();
    });
    let (_, key_pub) = keys::rsa_keypair(work.path(), "enc");
    let enc = format!("jwe:{}", key_pub.display());
    reg.push(
        &secret_layout.path,
        "v1",
        "secret:v1",
        &["--encryption-key", &enc],
    );
    let secret = format!("{}/secret:v1", reg.host());
    let out = Command::new(cloister_bin())
        .args(["image", "sign", "--registry-insecure-http", "--key"])
        .arg(work.path().join("cosign.key"))
        .arg(&secret)
        .env("COSIGN_PASSWORD", signed::PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: secret.clone(),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config.clone()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PullImage of the encrypted image: {e}\n{}",
                tail(&ctd.log(), 40)
            )
        });
    let enc_id = rt
        .create_container(create_request(
            &pod,
            &sandbox_config,
            "secret",
            &secret,
            vec!["/bin/cat".into(), "/secret.txt".into()],
        ))
        .await
        .unwrap()
        .into_inner()
        .container_id;
    let e = rt
        .start_container(StartContainerRequest {
            container_id: enc_id.clone(),
        })
        .await
        .expect_err("an encrypted image without its key must not run");
    eprintln!("encrypted image without a key: {}", e.message());
    assert!(e.message().contains("encrypt"), "{}", e.message());
    rt.remove_container(RemoveContainerRequest {
        container_id: enc_id,
    })
    .await
    .unwrap();

    rt.remove_container(RemoveContainerRequest {
        container_id: created,
    })
    .await
    .unwrap();
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    wait_until("the pod to be cleaned up", Duration::from_secs(20), || {
        pods_left(&run_dir).is_empty()
    });
    let left = processes_mentioning(run_dir.to_str().unwrap());
    assert!(left.is_empty(), "processes left: {left:?}");
    let _ = snap.kill();
    let _ = snap.wait();
}

/// Prometheus's HTTP API on loopback: `query` → (labels, value) per series.
fn prom_query(port: u16, query: &str) -> Vec<(serde_json::Map<String, serde_json::Value>, f64)> {
    use std::io::{Read, Write};
    let enc: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    let _ = write!(
        s,
        "GET /api/v1/query?query={enc} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    );
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let Some((_, body)) = resp.split_once("\r\n\r\n") else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["data"]["result"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    let labels = r["metric"].as_object()?.clone();
                    let value = r["value"][1].as_str()?.parse().ok()?;
                    Some((labels, value))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_scrapes_the_monitor_for_every_pod_and_only_what_each_policy_allows() {
    if let Some(why) = missing() {
        skip_or_fail(&format!("prometheus_scrapes_the_monitor…: {why}"));
        return;
    }
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_or_fail("prometheus is missing (apt-get install prometheus)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let reg = Registry::start(Setup::HTTP);
    let img = signed_image(&reg, work.path());
    let cfg = node_config(work.path());
    let run_dir = work.path().join("run");
    let ctd = Containerd::start(&cfg);
    let empty = work.path().join("empty-rootfs");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.to_str().unwrap().to_string();
    let sandbox = |id: &str, initdata: &str| {
        let sb_id = format!("io.kubernetes.cri.sandbox-id={id}");
        let anns = ["io.kubernetes.cri.container-type=sandbox", &sb_id, initdata];
        ctd.ctr_ok(&run_args("-d", &anns, &empty, id, &["/pause"]));
    };
    // mon1: allow-all, with a container of a signed image.
    let allow_all = std::fs::read_to_string(repo_root().join("policies/allow-all.rego")).unwrap();
    let encode = |policy: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(initdata(
            policy,
            &reg,
            &img.public_pem,
        ));
        format!("cloister.dev/initdata={b64}")
    };
    let allow_ann = encode(&allow_all);
    sandbox("mon1", &allow_ann);
    let image_ann = format!("io.kubernetes.cri.image-name={}", img.reference);
    ctd.ctr_ok(&run_args(
        "-d",
        &[
            "io.kubernetes.cri.container-type=container",
            "io.kubernetes.cri.sandbox-id=mon1",
            &image_ann,
        ],
        &empty,
        "mon1-c",
        &["/bin/sh", "-c", "sleep 600"],
    ));
    // mon2: a policy that denies GetMetrics.
    let deny = allow_all.replace(
        "default GetMetricsRequest := true",
        "default GetMetricsRequest := false",
    );
    assert_ne!(deny, allow_all);
    let deny_ann = encode(&deny);
    sandbox("mon2", &deny_ann);

    let mon_port = free_port();
    let _monitor = Killed(
        Command::new(cloister_bin())
            .args(["monitor", "--listen", &format!("127.0.0.1:{mon_port}")])
            .env("CLOISTER_CONFIG", &cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path().join("monitor.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let prom_port = free_port();
    let prom_dir = work.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: cloister\n    static_configs:\n      - targets: ['127.0.0.1:{mon_port}']\n"
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                prom_dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(prom_dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let logs = || {
        format!(
            "--- monitor ---\n{}\n--- prometheus ---\n{}",
            tail(
                &std::fs::read_to_string(work.path().join("monitor.log")).unwrap_or_default(),
                30
            ),
            tail(
                &std::fs::read_to_string(prom_dir.join("prometheus.log")).unwrap_or_default(),
                30
            )
        )
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let up = prom_query(prom_port, "up{job=\"cloister\"}");
        let results = prom_query(prom_port, "cloister_pod_guest_metrics");
        if up.first().map(|(_, v)| *v) == Some(1.0) && results.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped both pods: up {up:?}, {results:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let one = |q: &str| -> f64 {
        let r = prom_query(prom_port, q);
        assert_eq!(r.len(), 1, "{q}: {r:?}\n{}", logs());
        r[0].1
    };
    // Per pod, whether the guest's figures came, in the pod's own words.
    let results = prom_query(prom_port, "cloister_pod_guest_metrics");
    let result_of = |pod: &str| {
        results
            .iter()
            .find(|(l, _)| l["pod"] == pod)
            .map(|(l, _)| l["result"].as_str().unwrap().to_string())
    };
    assert_eq!(
        result_of("mon1").as_deref(),
        Some("returned"),
        "{results:?}"
    );
    assert_eq!(
        result_of("mon2").as_deref(),
        Some("denied_by_policy"),
        "{results:?}"
    );
    // What the host sees itself, for both pods.
    for pod in ["mon1", "mon2"] {
        let qemu = one(&format!(
            "cloister_vmm_rss_bytes{{pod=\"{pod}\",process=\"qemu\"}}"
        ));
        assert!(qemu > 20e6, "{pod}: QEMU RSS {qemu}");
        let vmm = one(&format!(
            "cloister_vmm_rss_bytes{{pod=\"{pod}\",process=\"vmm\"}}"
        ));
        assert!(vmm > 1e6 && vmm < qemu, "{pod}: VMM RSS {vmm}");
        assert_eq!(one(&format!("cloister_vmm_vcpus{{pod=\"{pod}\"}}")), 1.0);
        assert_eq!(
            one(&format!("cloister_vmm_memory_bytes{{pod=\"{pod}\"}}")),
            512.0 * 1048576.0
        );
        let up = one(&format!("cloister_vmm_uptime_seconds{{pod=\"{pod}\"}}"));
        assert!(up > 0.0 && up < 600.0, "{pod}: uptime {up}");
    }
    assert_eq!(
        one("cloister_pod_containers{pod=\"mon1\"}"),
        2.0,
        "sandbox and container"
    );
    // What mon1's guest returned.
    let rss = one("cloister_agent_rss_bytes{pod=\"mon1\"}");
    assert!(rss > 1e6 && rss < 64e6, "agent RSS {rss}");
    let total = one("cloister_guest_memory_bytes{pod=\"mon1\",kind=\"total\"}");
    assert!(
        total > 400e6 && total <= 512.0 * 1048576.0,
        "guest MemTotal {total}"
    );
    assert!(one("cloister_guest_load{pod=\"mon1\",kind=\"1m\"}") >= 0.0);
    assert!(one("cloister_guest_container_pids{pod=\"mon1\",container=\"mon1-c\"}") >= 1.0);
    assert!(one("cloister_guest_container_memory_bytes{pod=\"mon1\",container=\"mon1-c\"}") > 0.0);
    assert!(
        one("cloister_agent_policy_decisions_total{pod=\"mon1\",request=\"CreateContainerRequest\",decision=\"allow\"}") >= 1.0
    );
    assert!(
        one("cloister_agent_rpc_duration_seconds_count{pod=\"mon1\",request=\"CreateContainerRequest\",outcome=\"ok\"}") >= 1.0
    );
    assert!(one("cloister_agent_image_pulls_total{pod=\"mon1\",outcome=\"ok\"}") >= 1.0);
    assert!(one("cloister_agent_image_bytes_downloaded_total{pod=\"mon1\"}") > 0.0);
    // Nothing of mon2's guest: its policy said no.
    let leaked = prom_query(
        prom_port,
        "{pod=\"mon2\",__name__=~\"cloister_(agent|guest)_.*\"}",
    );
    assert!(
        leaked.is_empty(),
        "mon2's guest figures reached Prometheus: {leaked:?}"
    );

    for id in ["mon1-c", "mon1", "mon2"] {
        ctd.ctr_ok(&["task", "kill", "--signal", "SIGKILL", id]);
        wait_until(&format!("{id} to stop"), Duration::from_secs(30), || {
            task_status(&ctd, id).as_deref() == Some("STOPPED")
        });
        ctd.ctr_ok(&["task", "delete", id]);
        ctd.ctr_ok(&["container", "delete", id]);
    }
    wait_until("the pods to be cleaned up", Duration::from_secs(20), || {
        pods_left(&run_dir).is_empty()
    });
}

/// Every file below `dir`, for searching what the host side has.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}

/// The confidential path through containerd: a sim-TEE pod attests to a
/// real KBS, which releases the image key only for the reference
/// measurement and this initdata; the guest pulls, verifies and decrypts
/// the ocicrypt image and runs it. Neither the key nor the plaintext is in
/// anything on the host side: containerd's root and state, the pod
/// directory, the shim's log, the container's output aside from what it
/// prints.
#[test]
fn ctr_runs_an_encrypted_image_with_its_key_from_the_kbs() {
    use cloister_host::demo::{Demo, DemoConfig, DEMO_COMMAND};
    if let Some(why) = missing() {
        skip_or_fail(&format!("the encrypted pod test: {why}"));
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let bin_dir = cloister_bin().parent().unwrap().to_path_buf();
    assert!(
        bin_dir.join("cloister-kbs").is_file(),
        "cloister-kbs not built; run cargo test --workspace"
    );
    let sim = work.path().join("sim");
    let demo = Demo::prepare(
        DemoConfig {
            kernel: kernel().unwrap(),
            initrd: agent_initrd().unwrap(),
            bin_dir,
            sim_state: sim.clone(),
            work: work.path().join("demo"),
            reference_initrd: None,
            policy_lists_unsigned: false,
        },
        &mut |s| eprintln!("set-up: {s}"),
    )
    .expect("registry, KBS and the encrypted, signed image");
    // The node: sim TEE (its CA is what the KBS accepts), the same VM the
    // KBS's reference measurement was computed for.
    let run_dir = work.path().join("run");
    let cfg = work.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[hypervisor]\nkernel = \"{}\"\ninitrd = \"{}\"\nmemory_mib = 512\n\n\
             [tee]\ntype = \"sim\"\nsim_state = \"{}\"\n\n\
             [defaults]\npolicy = \"{}\"\n\n[runtime]\nrun_dir = \"{}\"\nnetwork = \"user\"\n",
            kernel().unwrap().display(),
            agent_initrd().unwrap().display(),
            sim.display(),
            repo_root().join("policies/default.rego").display(),
            run_dir.display()
        ),
    )
    .unwrap();
    let ctd = Containerd::start(&cfg);
    let empty = work.path().join("empty-rootfs");
    std::fs::create_dir_all(&empty).unwrap();
    let init = base64::engine::general_purpose::STANDARD.encode(&demo.initdata);
    let out = ctd.ctr(&run_args(
        "--rm",
        &[
            &format!("cloister.dev/initdata={init}"),
            &format!("io.kubernetes.cri.image-name={}", demo.image),
            "io.kubernetes.cri.container-name=demo",
        ],
        empty.to_str().unwrap(),
        "demo",
        DEMO_COMMAND,
    ));
    let stdout = text(&out.stdout);
    let shim_log = ctd.log();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}\n--- containerd ---\n{}",
        text(&out.stderr),
        tail(&shim_log, 80)
    );
    assert!(
        stdout.contains("hello from a confidential container"),
        "{stdout}"
    );
    assert!(stdout.contains("the secret file has"), "{stdout}");
    // The shim's log: the guest attested to the KBS and decrypted a layer.
    let created = shim_log
        .lines()
        .find(|l| l.contains("container created in the guest"))
        .unwrap_or_else(|| panic!("no CreateContainer line:\n{}", tail(&shim_log, 60)));
    assert!(created.contains("encrypted_layers=1"), "{created}");
    assert!(
        created.contains(&format!("attested to https://10.0.2.2:{}", demo.kbs_port)),
        "{created}"
    );
    assert!(created.contains(" signed by "), "{created}");
    wait_until("the pod to be cleaned up", Duration::from_secs(20), || {
        pods_left(&run_dir).is_empty()
    });

    // The trust boundary: nothing the host side kept holds the image's
    // plaintext or the key the KBS released.
    let mut searched: Vec<(String, Vec<u8>)> = files_below(ctd.dir.path())
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/bin/"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(&p).unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        searched.iter().any(|(n, _)| n.ends_with("containerd.log")),
        "containerd's log (with the shim's) is searched"
    );
    searched.push(("ctr's output".into(), out.stdout.clone()));
    searched.push(("ctr's errors".into(), out.stderr.clone()));
    for (what, bytes) in &searched {
        for canary in [&demo.image_canary, &demo.kbs_canary] {
            assert!(!canary.is_empty());
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "a secret leaked into {what}"
            );
        }
    }
}

/// `cloister bench pods` keeps working: one run of each, every figure
/// printed (the figures themselves go to BENCHMARKS.md, not into asserts).
#[test]
fn bench_pods_compares_cloister_and_runc_through_containerd() {
    if let Some(why) = missing() {
        skip_or_fail(&format!("bench pods: {why}"));
        return;
    }
    let out = Command::new(cloister_bin())
        .args(["bench", "pods", "--runs", "1"])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        tail(&text(&out.stderr), 40)
    );
    for (row, want) in [("  runc ", 5), ("  cloister ", 5)] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(row) && l.matches("ms").count() == want)
            .unwrap_or_else(|| panic!("no CRI row {row:?}:\n{stdout}"));
        assert!(!line.contains(" 0ms"), "{line}");
    }
    for label in [
        "ratio (cloister / runc, total): ",
        "ratio (cloister / runc): ",
    ] {
        let ratio: f64 = stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {label:?}:\n{stdout}"));
        assert!(ratio > 0.0, "{label}{ratio}");
    }
    let feet: Vec<&str> = stdout.lines().filter(|l| l.contains(" RSS ")).collect();
    assert_eq!(feet.len(), 2, "{stdout}");
    // Nothing of the benchmark is left running.
    let left = processes_mentioning("cloister-bench-pods-");
    assert!(left.is_empty(), "left behind: {left:?}");
}
