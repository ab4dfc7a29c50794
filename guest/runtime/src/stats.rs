//! Container statistics from its cgroup v2 directory.
use std::path::Path;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub cpu_usage_usec: u64,
    pub memory_bytes: u64,
    pub pids: u64,
    /// `oom_kill` of `memory.events`: processes the OOM killer ended.
    pub oom_kills: u64,
}

/// Reads `cpu.stat` usage_usec, `memory.current` and `pids.current`. A file
/// whose controller is not enabled reads as 0.
pub fn read(cgroup_dir: &Path) -> std::io::Result<Stats> {
    if !cgroup_dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("cgroup {} does not exist", cgroup_dir.display()),
        ));
    }
    let num = |f: &str| -> u64 {
        std::fs::read_to_string(cgroup_dir.join(f))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let cpu = std::fs::read_to_string(cgroup_dir.join("cpu.stat"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("usage_usec ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0);
    let oom_kills = std::fs::read_to_string(cgroup_dir.join("memory.events"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0);
    Ok(Stats {
        cpu_usage_usec: cpu,
        memory_bytes: num("memory.current"),
        pids: num("pids.current"),
        oom_kills,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cgroup_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("cpu.stat"),
            "usage_usec 1234\nuser_usec 1000\n",
        )
        .unwrap();
        std::fs::write(d.path().join("memory.current"), "4096\n").unwrap();
        std::fs::write(d.path().join("memory.events"), "low 0\noom 2\noom_kill 1\n").unwrap();
        let s = read(d.path()).unwrap();
        assert_eq!(
            s,
            Stats {
                cpu_usage_usec: 1234,
                memory_bytes: 4096,
                oom_kills: 1,
                pids: 0
            }
        );
        assert!(read(&d.path().join("nope")).is_err());
    }
}
