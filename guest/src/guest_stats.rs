//! What GetMetrics reports about the guest at the moment it is asked: the
//! agent's resident memory, /proc/meminfo, /proc/loadavg and each
//! container's cgroup. Read fresh on every call; nothing here is kept.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type FGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerLabels {
    pub container: String,
}

/// One container's cgroup figures.
pub struct ContainerSample {
    pub id: String,
    pub cpu_usage_usec: u64,
    pub memory_bytes: u64,
    pub pids: u64,
    pub oom_kills: u64,
}

/// The meminfo fields reported, and the label each gets.
const MEMINFO: &[(&str, &str)] = &[
    ("MemTotal:", "total"),
    ("MemFree:", "free"),
    ("MemAvailable:", "available"),
    ("Buffers:", "buffers"),
    ("Cached:", "cached"),
    ("Shmem:", "shmem"),
];

/// `kB` values of the `fields` of a /proc file like meminfo or status.
fn kib_fields<'a>(text: &'a str, fields: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, u64)> {
    fields
        .iter()
        .filter_map(|(field, label)| {
            let line = text.lines().find_map(|l| l.strip_prefix(field))?;
            let kib = line
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()?;
            Some((*label, kib))
        })
        .collect()
}

/// The 1, 5 and 15 minute load averages of /proc/loadavg.
fn loadavg(text: &str) -> Vec<(&'static str, f64)> {
    ["1m", "5m", "15m"]
        .into_iter()
        .zip(text.split_whitespace())
        .filter_map(|(w, v)| Some((w, v.parse::<f64>().ok()?)))
        .collect()
}

/// A registry holding the figures of this moment, to encode after the
/// agent's counters.
pub fn snapshot(containers: &[ContainerSample]) -> Registry {
    let mut r = Registry::default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some((_, kib)) = kib_fields(&status, &[("VmRSS:", "rss")]).first() {
        let g = Gauge::<i64>::default();
        g.set((*kib * 1024) as i64);
        r.register(
            "cloister_agent_rss_bytes",
            "The agent's resident memory (VmRSS)",
            g,
        );
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = Family::<KindLabels, Gauge>::default();
    for (kind, kib) in kib_fields(&meminfo, MEMINFO) {
        mem.get_or_create(&KindLabels { kind: kind.into() })
            .set((kib * 1024) as i64);
    }
    r.register(
        "cloister_guest_memory_bytes",
        "The guest's /proc/meminfo",
        mem,
    );
    let load = Family::<KindLabels, FGauge>::default();
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for (window, v) in loadavg(&text) {
        load.get_or_create(&KindLabels {
            kind: window.into(),
        })
        .set(v);
    }
    r.register(
        "cloister_guest_load",
        "The guest's load average (/proc/loadavg), by window",
        load,
    );
    let cpu = Family::<ContainerLabels, FGauge>::default();
    let memory = Family::<ContainerLabels, Gauge>::default();
    let pids = Family::<ContainerLabels, Gauge>::default();
    let ooms = Family::<ContainerLabels, Gauge>::default();
    for c in containers {
        let l = ContainerLabels {
            container: c.id.clone(),
        };
        cpu.get_or_create(&l).set(c.cpu_usage_usec as f64 / 1e6);
        memory.get_or_create(&l).set(c.memory_bytes as i64);
        pids.get_or_create(&l).set(c.pids as i64);
        ooms.get_or_create(&l).set(c.oom_kills as i64);
    }
    r.register(
        "cloister_guest_container_cpu_seconds",
        "CPU time of each container's cgroup (cpu.stat usage_usec)",
        cpu,
    );
    r.register(
        "cloister_guest_container_memory_bytes",
        "Memory of each container's cgroup (memory.current)",
        memory,
    );
    r.register(
        "cloister_guest_container_pids",
        "Processes in each container's cgroup (pids.current)",
        pids,
    );
    r.register(
        "cloister_guest_container_oom_kills",
        "Processes the OOM killer ended in each container (memory.events)",
        ooms,
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_loadavg_are_read_by_field() {
        let text = "MemTotal:         496312 kB\nMemFree:          401228 kB\nMemAvailable:     420000 kB\nCached: 12 kB\n";
        assert_eq!(
            kib_fields(text, MEMINFO),
            vec![
                ("total", 496312),
                ("free", 401228),
                ("available", 420000),
                ("cached", 12)
            ]
        );
        assert_eq!(
            loadavg("0.15 0.05 0.01 1/52 123\n"),
            vec![("1m", 0.15), ("5m", 0.05), ("15m", 0.01)]
        );
        assert!(loadavg("garbage").is_empty());
    }

    #[test]
    fn the_snapshot_names_each_container() {
        let r = snapshot(&[ContainerSample {
            id: "web".into(),
            cpu_usage_usec: 1_500_000,
            memory_bytes: 4096,
            pids: 3,
            oom_kills: 0,
        }]);
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &r).unwrap();
        assert!(
            out.contains("cloister_guest_container_cpu_seconds{container=\"web\"} 1.5"),
            "{out}"
        );
        assert!(
            out.contains("cloister_guest_container_pids{container=\"web\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("cloister_guest_memory_bytes{kind=\"total\"}"),
            "{out}"
        );
        assert!(out.contains("cloister_agent_rss_bytes "), "{out}");
    }
}
