//! `cloister monitor`: one Prometheus endpoint for every pod on the node.
//!
//! Each scrape walks `<run_dir>/pods/*/state.json` (what the shim
//! persists), and for each pod reports what the host sees itself (its VMM
//! and QEMU processes: RSS, uptime; the VM's vCPUs and memory) and what the
//! guest returns to GetMetrics: the agent's RSS, RPC counts and latency,
//! policy decisions, image pulls, the guest's meminfo, load and each
//! container's cgroup. GetMetrics is an RPC like any other, so the pod's
//! policy decides whether the host may have those; the monitor reports,
//! per pod, whether the guest's figures were returned, denied by the
//! policy, or unreachable, and never guesses them.
pub mod exposition;
pub mod host_stats;
pub mod server;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tracing::{debug, warn};

use crate::agent_client::{connect_vsock, Agent};
use crate::hypervisor::vmm_process::{ready_path, serves, spec_path, VmmReady, VmmSpec};
use exposition::Merged;

type FGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// How long one pod's agent may take to answer a scrape.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(3);

/// The fields of the shim's `state.json` the monitor reads (serde skips
/// the rest).
#[derive(Debug, Deserialize)]
struct PodFile {
    pod_id: String,
    namespace: String,
    vm_dir: PathBuf,
    #[serde(default)]
    tee: String,
    #[serde(default)]
    network_mode: String,
    #[serde(default)]
    containers: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PodLabels {
    pod: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    pod: String,
    namespace: String,
    tee: String,
    network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabels {
    pod: String,
    /// `vmm` (cloister's VMM process) or `qemu`.
    process: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    pod: String,
    /// `returned`, `denied_by_policy` or `unreachable`.
    result: String,
}

/// What became of one pod's GetMetrics.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestMetrics {
    Returned(String),
    DeniedByPolicy(String),
    Unreachable(String),
}

impl GuestMetrics {
    fn word(&self) -> &'static str {
        match self {
            GuestMetrics::Returned(_) => "returned",
            GuestMetrics::DeniedByPolicy(_) => "denied_by_policy",
            GuestMetrics::Unreachable(_) => "unreachable",
        }
    }
}

/// Asks the pod's agent for its metrics over the VM's hybrid-vsock socket.
pub async fn guest_metrics(vm_dir: &Path) -> GuestMetrics {
    let sock = vm_dir.join("vsock.sock");
    let stream = tokio::task::spawn_blocking(move || {
        connect_vsock(&sock, cloister_protocol::AGENT_VSOCK_PORT, AGENT_TIMEOUT)
    })
    .await;
    let stream = match stream {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return GuestMetrics::Unreachable(e.to_string()),
        Err(e) => return GuestMetrics::Unreachable(e.to_string()),
    };
    let agent = match Agent::from_stream(stream, AGENT_TIMEOUT) {
        Ok(a) => a,
        Err(e) => return GuestMetrics::Unreachable(e.to_string()),
    };
    match agent.metrics().await {
        Ok(text) => GuestMetrics::Returned(text),
        Err(ttrpc::Error::RpcStatus(st)) if st.code() == ttrpc::Code::PERMISSION_DENIED => {
            GuestMetrics::DeniedByPolicy(st.message().to_string())
        }
        Err(e) => GuestMetrics::Unreachable(e.to_string()),
    }
}

/// The host's figures for the node's pods, and the guests' where allowed.
struct Families {
    info: Family<InfoLabels, Gauge>,
    rss: Family<ProcessLabels, Gauge>,
    uptime: Family<PodLabels, FGauge>,
    vcpus: Family<PodLabels, Gauge>,
    memory: Family<PodLabels, Gauge>,
    containers: Family<PodLabels, Gauge>,
    guest: Family<ResultLabels, Gauge>,
}

impl Families {
    fn new() -> Self {
        Families {
            info: Family::default(),
            rss: Family::default(),
            uptime: Family::default(),
            vcpus: Family::default(),
            memory: Family::default(),
            containers: Family::default(),
            guest: Family::default(),
        }
    }

    fn register(self, r: &mut Registry) {
        r.register(
            "cloister_pod_info",
            "A pod the node runs, with its TEE and network mode",
            self.info,
        );
        r.register("cloister_vmm_rss_bytes", "Resident memory of the pod's VMM process and of QEMU (guest memory QEMU touched included)", self.rss);
        r.register(
            "cloister_vmm_uptime_seconds",
            "Seconds since the pod's QEMU started",
            self.uptime,
        );
        r.register("cloister_vmm_vcpus", "vCPUs of the pod's VM", self.vcpus);
        r.register(
            "cloister_vmm_memory_bytes",
            "Memory the pod's VM was given",
            self.memory,
        );
        r.register(
            "cloister_pod_containers",
            "Containers the shim runs in the pod",
            self.containers,
        );
        r.register(
            "cloister_pod_guest_metrics",
            "Whether the pod's policy let GetMetrics return the guest's figures (result returned), denied it (denied_by_policy), or the agent did not answer (unreachable)",
            self.guest,
        );
    }
}

fn pod_files(run_dir: &Path) -> Vec<(PathBuf, PodFile)> {
    let Ok(dirs) = std::fs::read_dir(run_dir.join("pods")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in dirs.flatten() {
        let path = d.path().join("state.json");
        match std::fs::read(&path).map(|b| serde_json::from_slice::<PodFile>(&b)) {
            Ok(Ok(p)) => out.push((path, p)),
            Ok(Err(e)) => warn!(file = %path.display(), error = %e, "unreadable pod state"),
            Err(_) => debug!(dir = %d.path().display(), "a pod directory without state"),
        }
    }
    out.sort_by(|a, b| a.1.pod_id.cmp(&b.1.pod_id));
    out
}

fn read_json<T: for<'de> Deserialize<'de>>(p: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// One scrape: the whole OpenMetrics text for the pods below `run_dir`.
pub async fn scrape(run_dir: &Path) -> String {
    let started = Instant::now();
    let fam = Families::new();
    let mut merged = Merged::default();
    let pods = pod_files(run_dir);
    // Every pod's agent is asked at once: one slow guest does not hold up
    // the others beyond AGENT_TIMEOUT.
    let asks = pods.iter().map(|(_, p)| guest_metrics(&p.vm_dir));
    let answers = futures::future::join_all(asks).await;
    for ((_, p), answer) in pods.iter().zip(answers) {
        let pod = PodLabels {
            pod: p.pod_id.clone(),
        };
        fam.info
            .get_or_create(&InfoLabels {
                pod: p.pod_id.clone(),
                namespace: p.namespace.clone(),
                tee: p.tee.clone(),
                network: p.network_mode.clone(),
            })
            .set(1);
        fam.containers
            .get_or_create(&pod)
            .set(p.containers.len() as i64);
        if let Some(spec) = read_json::<VmmSpec>(&spec_path(&p.vm_dir)) {
            fam.vcpus.get_or_create(&pod).set(spec.vm.vcpus as i64);
            fam.memory
                .get_or_create(&pod)
                .set(spec.vm.memory_mib as i64 * 1024 * 1024);
        }
        if let Some(r) = read_json::<VmmReady>(&ready_path(&p.vm_dir)) {
            let vm_dir = p.vm_dir.display().to_string();
            let procs = [
                ("vmm", r.vmm_pid, serves(r.vmm_pid, &p.vm_dir)),
                (
                    "qemu",
                    r.qemu_pid,
                    host_stats::cmdline_mentions(r.qemu_pid, &vm_dir),
                ),
            ];
            for (name, pid, ours) in procs {
                if !ours {
                    continue;
                }
                if let Some(rss) = host_stats::rss_bytes(pid) {
                    fam.rss
                        .get_or_create(&ProcessLabels {
                            pod: p.pod_id.clone(),
                            process: name.into(),
                        })
                        .set(rss as i64);
                }
                if name == "qemu" {
                    if let Some(up) = host_stats::uptime_secs(pid) {
                        fam.uptime.get_or_create(&pod).set(up);
                    }
                }
            }
        }
        let answer = match answer {
            GuestMetrics::Returned(text) => match exposition::parse(&text) {
                Ok(families) => {
                    for clash in merged.add(&p.pod_id, families) {
                        warn!(
                            pod = p.pod_id,
                            family = clash,
                            "a metric family typed differently by another pod; left out"
                        );
                    }
                    GuestMetrics::Returned(String::new())
                }
                Err(e) => {
                    warn!(pod = p.pod_id, error = %e, "the guest's metrics text is refused");
                    GuestMetrics::Unreachable(e.to_string())
                }
            },
            GuestMetrics::DeniedByPolicy(why) => {
                debug!(pod = p.pod_id, why, "the pod's policy denies GetMetrics");
                GuestMetrics::DeniedByPolicy(why)
            }
            GuestMetrics::Unreachable(why) => {
                warn!(
                    pod = p.pod_id,
                    why, "the pod's agent did not answer GetMetrics"
                );
                GuestMetrics::Unreachable(why)
            }
        };
        fam.guest
            .get_or_create(&ResultLabels {
                pod: p.pod_id.clone(),
                result: answer.word().into(),
            })
            .set(1);
    }
    let mut r = Registry::default();
    fam.register(&mut r);
    let count = Gauge::<i64>::default();
    count.set(pods.len() as i64);
    r.register(
        "cloister_monitor_pods",
        "Pods found below the run directory",
        count,
    );
    let took = FGauge::default();
    took.set(started.elapsed().as_secs_f64());
    r.register(
        "cloister_monitor_scrape_seconds",
        "How long this scrape took",
        took,
    );
    let mut out = String::new();
    let _ = encode_registry(&mut out, &r);
    out.push_str(&merged.encode());
    let _ = encode_eof(&mut out);
    out
}
