//! A pod's processes on the host (its shim and everything below it: for
//! cloister the VMM process and QEMU, for runc the pause and the
//! container's processes), their memory and their CPU time.
use std::collections::BTreeMap;

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(String::from).collect())
}

/// Every process's parent.
fn parents() -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Fields after the command: state, ppid, …
        if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1)?.parse().ok()) {
            out.insert(pid, ppid);
        }
    }
    out
}

/// The processes whose command line contains all of `needles`.
pub fn find(needles: &[&str]) -> Vec<u32> {
    parents()
        .keys()
        .copied()
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            needles.iter().all(|n| cmd.contains(n))
        })
        .collect()
}

/// `root` and its descendants.
pub fn tree(root: u32) -> Vec<u32> {
    let p = parents();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(p.iter().filter(|(_, pp)| **pp == parent).map(|(c, _)| *c));
        i += 1;
    }
    out
}

fn kib_line(text: &str, field: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// (RSS, PSS) of `pids` together, in bytes.
pub fn memory(pids: &[u32]) -> (u64, u64) {
    pids.iter().fold((0, 0), |(rss, pss), pid| {
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        (
            rss + kib_line(&rollup, "Rss:") * 1024,
            pss + kib_line(&rollup, "Pss:") * 1024,
        )
    })
}

/// The user+system CPU time of `pids` together, in clock ticks.
pub fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| {
            let f = stat_fields(*pid)?;
            // utime and stime are fields 14 and 15 of stat: 11 and 12 here.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_found_with_its_memory_and_cpu() {
        let me = std::process::id();
        assert!(tree(me).contains(&me));
        let (rss, pss) = memory(&[me]);
        assert!(rss > 1 << 20 && pss > 0 && pss <= rss, "{rss} {pss}");
        // Spinning for a while shows up as CPU time.
        let t0 = cpu_ticks(&[me]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0u64;
        while cpu_ticks(&[me]) <= t0 && std::time::Instant::now() < deadline {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        assert!(cpu_ticks(&[me]) > t0, "no CPU time counted");
    }
}
