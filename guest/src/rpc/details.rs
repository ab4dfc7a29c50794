//! GetGuestDetails: what the host may know about the guest.
use cloister_protocol::GuestDetails;

use super::AgentState;

pub fn guest_details(s: &AgentState) -> GuestDetails {
    GuestDetails {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_version: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        tee: s.tee.to_proto().into(),
        is_init: s.is_init,
        uptime_ms: s.started.elapsed().as_millis() as u64,
        memory_total_kib: mem_total_kib().unwrap_or(0),
        online_cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(0),
        sandbox_created: s.sandbox().info.is_some(),
        policy_sha256: s.gate.sha256(),
        agent_rss_kib: status_kib("VmRSS:").unwrap_or(0),
        ..Default::default()
    }
}

/// A `kB` line of /proc/self/status.
fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn mem_total_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn mem_total_parses() {
        assert_eq!(
            super::parse_mem_total("MemFree: 1 kB\nMemTotal:     2048 kB\n"),
            Some(2048)
        );
        assert_eq!(super::parse_mem_total("garbage"), None);
    }
}
