//! `cloister bench pods`: pods through containerd 1.6, cloister against
//! runc in the same run. Two containerds of the benchmark's own on this
//! node: one with the cloister runtime and the guest-pull snapshotter, one
//! with runc and overlayfs (containerd 1.6 picks the CRI snapshotter per
//! node). Both pull from one loopback registry, and both pods use the
//! node's network (hostNetwork), so CNI is in neither figure.
//!
//! - CRI, N fresh pods each: RunPodSandbox, PullImage, CreateContainer,
//!   StartContainer until ContainerStatus says RUNNING. cloister runs the
//!   demo image (encrypted, signed; sim TEE, the key from a real KBS), runc
//!   the same image unencrypted and unsigned. Every run starts without the
//!   image (RemoveImage after each), so runc's host pull and unpack count
//!   as cloister's guest pull does.
//! - `ctr run --rm` to exit, N times each, the same two images.
//! - One idle pod each: host memory (RSS, PSS) of the shim and everything
//!   below it (cloister: VMM process and QEMU, guest memory QEMU touched
//!   included; runc: pause and the container) and its CPU over 10 s.
mod containerd;
mod proc_tree;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cloister_host::bench::{ms, Summary};
use cloister_host::demo::{Demo, DemoConfig, DEMO_COMMAND};
use k8s_cri::v1::*;

use containerd::{Containerd, NodeKind};

/// The long-running command of the benchmark's container: it reads the
/// image's secret file (so the layer is really there), then waits.
const APP: &[&str] = &[
    "/bin/sh",
    "-c",
    "cat /demo/secret.txt > /dev/null && exec sleep 3600",
];

fn median(v: &[Duration]) -> Duration {
    Summary { runs: v.to_vec() }.median()
}

struct Handler<'a> {
    name: &'static str,
    runtime_handler: &'static str,
    image: String,
    annotations: Vec<(String, String)>,
    node: &'a Containerd,
}

/// Phase durations of one CRI run.
#[derive(Default, Clone)]
struct CriRun {
    sandbox: Duration,
    pull: Duration,
    create: Duration,
    start: Duration,
    total: Duration,
}

/// The node's network namespace (hostNetwork), for a pod and its containers.
fn node_network() -> Option<NamespaceOption> {
    Some(NamespaceOption {
        network: NamespaceMode::Node as i32,
        ..Default::default()
    })
}

fn host_network() -> Option<LinuxPodSandboxConfig> {
    Some(LinuxPodSandboxConfig {
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: node_network(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn sandbox_config(h: &Handler, i: usize, logs: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("bench-{}-{i}", h.name),
            uid: format!("uid-{}-{i}", h.name),
            namespace: "default".into(),
            attempt: 0,
        }),
        // hostNetwork pods share the node's UTS namespace: no hostname.
        hostname: String::new(),
        log_directory: logs.display().to_string(),
        annotations: h.annotations.iter().cloned().collect(),
        linux: host_network(),
        ..Default::default()
    }
}

/// One pod from nothing to its container RUNNING; returns the phases and
/// the pod's id (left running).
async fn cri_pod(
    h: &Handler<'_>,
    i: usize,
    logs: &Path,
) -> anyhow::Result<(CriRun, String, String)> {
    let (mut rt, mut images) = h.node.cri().await?;
    let sb = sandbox_config(h, i, logs);
    let mut r = CriRun::default();
    let fail = |what: &str, e: tonic::Status| {
        anyhow::anyhow!(
            "{} {what}: {}\n{}",
            h.name,
            e.message(),
            h.node.log_tail(40)
        )
    };
    let t0 = Instant::now();
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sb.clone()),
            runtime_handler: h.runtime_handler.into(),
        })
        .await
        .map_err(|e| fail("RunPodSandbox", e))?
        .into_inner()
        .pod_sandbox_id;
    r.sandbox = t0.elapsed();
    let t = Instant::now();
    let spec = ImageSpec {
        image: h.image.clone(),
        ..Default::default()
    };
    images
        .pull_image(PullImageRequest {
            image: Some(spec.clone()),
            sandbox_config: Some(sb.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| fail("PullImage", e))?;
    r.pull = t.elapsed();
    let t = Instant::now();
    let linux = LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            namespace_options: node_network(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ContainerConfig {
                // The demo's policy lists its container by this name.
                metadata: Some(ContainerMetadata {
                    name: "demo".into(),
                    attempt: 0,
                }),
                image: Some(spec),
                command: APP.iter().map(|s| s.to_string()).collect(),
                log_path: format!("{}-{i}.log", h.name),
                linux: Some(linux),
                ..Default::default()
            }),
            sandbox_config: Some(sb),
        })
        .await
        .map_err(|e| fail("CreateContainer", e))?
        .into_inner()
        .container_id;
    r.create = t.elapsed();
    let t = Instant::now();
    rt.start_container(StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .map_err(|e| fail("StartContainer", e))?;
    loop {
        let s = rt
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .map_err(|e| fail("ContainerStatus", e))?
            .into_inner()
            .status
            .context("no container status")?;
        if s.state == ContainerState::ContainerRunning as i32 {
            break;
        }
        if s.state == ContainerState::ContainerExited as i32 {
            bail!(
                "{}: the container exited ({}): {}",
                h.name,
                s.exit_code,
                s.message
            );
        }
        if t.elapsed() > Duration::from_secs(120) {
            bail!("{}: the container is not running after 120 s", h.name);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r.start = t.elapsed();
    r.total = t0.elapsed();
    Ok((r, pod, id))
}

async fn cri_remove(h: &Handler<'_>, pod: String) -> anyhow::Result<()> {
    let (mut rt, mut images) = h.node.cri().await?;
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await?;
    images
        .remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: h.image.clone(),
                ..Default::default()
            }),
        })
        .await?;
    Ok(())
}

/// The shim of a pod, found by containerd's socket and the sandbox id.
fn shim_of(node: &Containerd, pod: &str) -> anyhow::Result<u32> {
    let sock = node.sock().display().to_string();
    let found = proc_tree::find(&["containerd-shim", &sock, &pod[..12.min(pod.len())]]);
    match found.as_slice() {
        [pid] => Ok(*pid),
        other => bail!("expected one shim for pod {pod}, found {other:?}"),
    }
}

/// Host memory and 10 s of idle CPU of one running pod.
fn footprint(node: &Containerd, pod: &str) -> anyhow::Result<(u64, u64, f64)> {
    let shim = shim_of(node, pod)?;
    let pids = proc_tree::tree(shim);
    let (rss, pss) = proc_tree::memory(&pids);
    let t0 = proc_tree::cpu_ticks(&pids);
    let window = Duration::from_secs(10);
    std::thread::sleep(window);
    let cpu = (proc_tree::cpu_ticks(&proc_tree::tree(shim)) - t0) as f64
        / proc_tree::ticks_per_second()
        / window.as_secs_f64();
    Ok((rss, pss, cpu))
}

fn timed(cmd: &mut Command, what: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "{what}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

fn require_root_and_tools() -> anyhow::Result<()> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("cloister bench pods needs root (containerd, runc, QEMU's tap-less user net)");
    }
    for tool in ["containerd", "ctr", "runc", "umoci", "skopeo"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("{tool} is missing (scripts/install-deps)");
        }
    }
    Ok(())
}

/// The pause image runc's sandboxes run: the demo layout with a command
/// that waits (and exits on TERM).
fn push_pause(demo: &Demo) -> anyhow::Result<String> {
    let (layout, tag) = demo.plain_layout();
    let image = format!("{}:{tag}", layout.display());
    let pause = format!("{}:pause", layout.display());
    let mut cfg = Command::new("umoci");
    cfg.args(["config", "--image", &image, "--tag", "pause"]);
    for a in [
        "/bin/sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 1; done",
    ] {
        cfg.arg("--config.cmd").arg(a);
    }
    timed(&mut cfg, "umoci config (the pause image)")?;
    let dest = format!("127.0.0.1:{}/pause:v1", demo.registry_port);
    timed(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{pause}"))
            .arg(format!("docker://{dest}")),
        "skopeo copy (the pause image)",
    )?;
    Ok(dest)
}

/// Kills whatever still names the work directory when the benchmark ends
/// (a failed run can leave a shim, a VMM or QEMU behind).
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let me = std::process::id();
        for pid in proc_tree::find(&[&self.0.display().to_string()]) {
            if pid != me {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

struct Snapshotter(Child);

impl Drop for Snapshotter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(kernel: PathBuf, initrd: PathBuf, runs: usize) -> anyhow::Result<()> {
    anyhow::ensure!(runs >= 1, "--runs must be at least 1");
    require_root_and_tools()?;
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().context("binary directory")?.to_path_buf();
    for b in [
        "containerd-shim-cloister-v2",
        "cloister-snapshotter",
        "cloister-kbs",
    ] {
        anyhow::ensure!(
            bin_dir.join(b).is_file(),
            "{} is missing: cargo build --workspace",
            bin_dir.join(b).display()
        );
    }
    let work = tempfile::Builder::new()
        .prefix("cloister-bench-pods-")
        .tempdir()?;
    let w = work.path();
    let _leftovers = Leftovers(w.to_path_buf());
    let sim = w.join("sim");
    let demo = Demo::prepare(
        DemoConfig {
            kernel: kernel.clone(),
            initrd: initrd.clone(),
            bin_dir: bin_dir.clone(),
            sim_state: sim.clone(),
            work: w.join("demo"),
            reference_initrd: None,
            policy_lists_unsigned: false,
        },
        &mut |s| eprintln!("bench: {s}"),
    )?;
    let registry = format!("127.0.0.1:{}", demo.registry_port);
    let pause = push_pause(&demo)?;

    eprintln!("bench: starting the guest-pull snapshotter and two containerds");
    let snap_sock = w.join("snap.sock");
    let snap = Snapshotter(
        Command::new(bin_dir.join("cloister-snapshotter"))
            .arg("--root")
            .arg(w.join("snap"))
            .arg("--socket")
            .arg(&snap_sock)
            .stderr(std::fs::File::create(w.join("snap.log"))?)
            .spawn()
            .context("starting cloister-snapshotter")?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !snap_sock.exists() {
        anyhow::ensure!(Instant::now() < deadline, "the snapshotter did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The cloister node: the VM the KBS's reference measurement is for.
    let node_cfg = w.join("cloister.toml");
    std::fs::write(
        &node_cfg,
        format!(
            "[hypervisor]\nkernel = \"{}\"\ninitrd = \"{}\"\nmemory_mib = 512\n\n\
             [tee]\ntype = \"sim\"\nsim_state = \"{}\"\n\n\
             [defaults]\npolicy = \"{}\"\n\n[runtime]\nrun_dir = \"{}\"\nnetwork = \"user\"\n",
            kernel.display(),
            initrd.display(),
            sim.display(),
            w.join("demo/none.rego").display(),
            w.join("run").display()
        ),
    )?;
    std::fs::write(w.join("demo/none.rego"), "package agent_policy\n")?;
    let a = Containerd::start(
        &w.join("ctd-cloister"),
        NodeKind {
            snapshotter: Some(&snap_sock),
            cloister_config: Some(&node_cfg),
        },
        &registry,
        &pause,
        &bin_dir,
    )?;
    let b = Containerd::start(
        &w.join("ctd-runc"),
        NodeKind {
            snapshotter: None,
            cloister_config: None,
        },
        &registry,
        &pause,
        &bin_dir,
    )?;
    let init = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&demo.initdata)
    };
    let cloister = Handler {
        name: "cloister",
        runtime_handler: "cloister",
        image: demo.image.clone(),
        annotations: vec![("cloister.dev/initdata".into(), init.clone())],
        node: &a,
    };
    let runc = Handler {
        name: "runc",
        runtime_handler: "runc",
        image: demo.unsigned_image.clone(),
        annotations: Vec::new(),
        node: &b,
    };
    let logs = w.join("logs");
    std::fs::create_dir_all(&logs)?;
    let rt = super::runtime()?;

    // CRI.
    let mut cri: Vec<(&str, Vec<CriRun>)> = Vec::new();
    for h in [&runc, &cloister] {
        let mut v = Vec::new();
        for i in 0..runs {
            let (r, pod, _) = rt.block_on(cri_pod(h, i, &logs))?;
            rt.block_on(cri_remove(h, pod))?;
            eprintln!(
                "bench: CRI {} run {} of {runs}: {:.0} ms",
                h.name,
                i + 1,
                ms(r.total)
            );
            v.push(r);
        }
        cri.push((h.name, v));
    }

    // One idle pod each: memory and CPU.
    let mut foot = Vec::new();
    for h in [&runc, &cloister] {
        let (_, pod, _) = rt.block_on(cri_pod(h, runs, &logs))?;
        eprintln!(
            "bench: {} pod idle, measuring its footprint for 10 s",
            h.name
        );
        foot.push((h.name, footprint(h.node, &pod)?));
        rt.block_on(cri_remove(h, pod))?;
    }

    // ctr run --rm to exit.
    let empty = w.join("empty-rootfs");
    std::fs::create_dir_all(&empty)?;
    let pull_runc = timed(
        b.ctr()
            .args(["image", "pull", "--plain-http"])
            .arg(&demo.unsigned_image),
        "ctr image pull (runc)",
    )?;
    let mut ctr_runc = Vec::new();
    let mut ctr_cloister = Vec::new();
    for i in 0..runs {
        ctr_runc.push(timed(
            b.ctr()
                .args(["run", "--rm"])
                .arg(&demo.unsigned_image)
                .arg(format!("r{i}"))
                .args(DEMO_COMMAND),
            "ctr run (runc)",
        )?);
        ctr_cloister.push(timed(
            a.ctr()
                .args([
                    "run",
                    "--rm",
                    "--runtime",
                    "io.containerd.cloister.v2",
                    "--rootfs",
                ])
                .arg("--annotation")
                .arg(format!("cloister.dev/initdata={init}"))
                .arg("--annotation")
                .arg(format!("io.kubernetes.cri.image-name={}", demo.image))
                .args(["--annotation", "io.kubernetes.cri.container-name=demo"])
                .arg(&empty)
                .arg(format!("c{i}"))
                .args(DEMO_COMMAND),
            "ctr run (cloister)",
        )?);
    }
    drop(snap);

    // The report.
    println!(
        "pods through containerd 1.6: {runs} runs each, hostNetwork, QEMU {}",
        cloister_host::hypervisor::accel::detect().name()
    );
    println!("CRI, RunPodSandbox -> container RUNNING (image removed before each run), medians:");
    println!(
        "  {:<10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "sandbox", "pull", "create", "start", "total"
    );
    for (name, v) in &cri {
        let m = |f: fn(&CriRun) -> Duration| ms(median(&v.iter().map(f).collect::<Vec<_>>()));
        println!(
            "  {name:<10} {:>8.0}ms {:>8.0}ms {:>8.0}ms {:>8.0}ms {:>8.0}ms",
            m(|r| r.sandbox),
            m(|r| r.pull),
            m(|r| r.create),
            m(|r| r.start),
            m(|r| r.total)
        );
    }
    let total = |i: usize| {
        ms(median(
            &cri[i].1.iter().map(|r| r.total).collect::<Vec<_>>(),
        ))
    };
    println!(
        "  ratio (cloister / runc, total): {:.1}",
        total(1) / total(0)
    );
    println!("ctr run --rm to exit, medians:");
    println!(
        "  runc      {:>8.0}ms  (image pulled and unpacked once before: {:.0} ms)",
        ms(median(&ctr_runc)),
        ms(pull_runc)
    );
    println!(
        "  cloister  {:>8.0}ms  (VM boot, attestation, guest pull and decrypt every run)",
        ms(median(&ctr_cloister))
    );
    println!(
        "  ratio (cloister / runc): {:.1}",
        ms(median(&ctr_cloister)) / ms(median(&ctr_runc))
    );
    println!("one idle pod, the shim and everything below it on the host:");
    for (name, (rss, pss, cpu)) in &foot {
        println!(
            "  {name:<10} RSS {:>7.1} MB  PSS {:>7.1} MB  CPU {:>5.1} % of a core",
            *rss as f64 / 1e6,
            *pss as f64 / 1e6,
            cpu * 100.0
        );
    }
    Ok(())
}
