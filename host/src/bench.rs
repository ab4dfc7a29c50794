//! `cloister bench boot`: launch-to-agent-ready against plain QEMU booting
//! the same kernel into a busybox-only initramfs, in the same run.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::hypervisor::accel::Accel;
use crate::hypervisor::qemu::plain_args;
use crate::initrd::busybox_initramfs;
use crate::sandbox::{BootOptions, Sandbox};

/// What busybox's /init prints once it runs: the baseline's finish line.
pub const BASELINE_MARKER: &str = "cloister-baseline: init reached";

#[derive(Debug, Clone)]
pub struct Summary {
    pub runs: Vec<Duration>,
}

impl Summary {
    pub fn median(&self) -> Duration {
        let mut v = self.runs.clone();
        v.sort();
        let n = v.len();
        if n == 0 {
            return Duration::ZERO;
        }
        if !n.is_multiple_of(2) {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2
        }
    }
    pub fn min(&self) -> Duration {
        self.runs.iter().copied().min().unwrap_or_default()
    }
    pub fn max(&self) -> Duration {
        self.runs.iter().copied().max().unwrap_or_default()
    }
}

/// Boots the agent guest `runs` times; each sample is launch → Health reply.
pub async fn agent_boots(opts: &BootOptions, runs: usize) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let sb = Sandbox::boot(opts)
            .await
            .with_context(|| format!("agent boot {}", i + 1))?;
        samples.push(sb.ready_after);
        sb.shutdown();
    }
    Ok(Summary { runs: samples })
}

/// Boots plain QEMU into busybox `runs` times; each sample is launch → the
/// marker that /init prints on the serial console.
pub fn baseline_boots(
    opts: &BootOptions,
    accel: Accel,
    busybox: &Path,
    runs: usize,
) -> anyhow::Result<Summary> {
    let dir = tempfile::Builder::new()
        .prefix("cloister-bench-")
        .tempdir()?;
    let initrd = dir.path().join("busybox.cpio");
    busybox_initramfs(
        busybox,
        &format!("echo '{BASELINE_MARKER}'\n/bin/busybox reboot -f"),
    )?
    .write_to(&initrd)?;
    let mut cfg = opts.vm.clone();
    cfg.initrd = initrd;
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let console: PathBuf = dir.path().join(format!("console-{i}.log"));
        let started = Instant::now();
        let mut child = Command::new(&opts.qemu_binary)
            .args(plain_args(&cfg, accel, &console))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", opts.qemu_binary))?;
        let reached = loop {
            if std::fs::read_to_string(&console)
                .map(|s| s.contains(BASELINE_MARKER))
                .unwrap_or(false)
            {
                break Some(started.elapsed());
            }
            if child.try_wait()?.is_some() || started.elapsed() > opts.agent_timeout {
                break None;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let _ = child.kill();
        let _ = child.wait();
        match reached {
            Some(d) => samples.push(d),
            None => bail!(
                "baseline boot {} never reached init; console:\n{}",
                i + 1,
                crate::hypervisor::qemu::tail_of_file(&console, 20)
            ),
        }
    }
    Ok(Summary { runs: samples })
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        let s = |v: &[u64]| Summary {
            runs: v.iter().map(|&m| Duration::from_millis(m)).collect(),
        };
        assert_eq!(s(&[5, 1, 3]).median(), Duration::from_millis(3));
        assert_eq!(s(&[4, 1, 3, 2]).median(), Duration::from_micros(2500));
        assert_eq!(s(&[]).median(), Duration::ZERO);
        assert_eq!(s(&[4, 1, 3]).max(), Duration::from_millis(4));
    }
}
