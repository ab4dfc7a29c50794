//! Ten sandboxes at once on this machine's two cores (QEMU/TCG), each the
//! main job through `cloister run`, the real binary, ten processes started
//! together: boot, attest to the KBS, pull, verify and decrypt the demo
//! image, run it. All must succeed with the right output, and nothing may be
//! left behind (no process, nothing in any run's TMPDIR). The wall time and
//! the peak memory of everything the runs started are printed for
//! BENCHMARKS.md (not asserted: figures go in benchmarks).
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_host::demo::Demo;
use common::*;

const SANDBOXES: usize = 10;

/// Summed RSS (kB) of the processes whose command line mentions `needle`,
/// and how many there are.
fn rss_kb_of(needle: &str) -> (u64, usize) {
    let pids = pids_mentioning(needle);
    let kb = pids
        .iter()
        .filter_map(|(pid, _)| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum();
    (kb, pids.len())
}

#[test]
fn ten_sandboxes_at_once_all_succeed_and_leave_nothing() {
    let work = tempfile::tempdir().unwrap();
    let Some(cfg) = demo_config(work.path()) else {
        return;
    };
    let demo = Demo::prepare(cfg.clone(), &mut |s| eprintln!("demo: {s}")).expect("demo set-up");
    // Every process of the runs (`cloister run` through its --initdata,
    // QEMU through its run directory) names `runs`; the demo's registry and
    // KBS do not.
    let runs = work.path().join("runs");
    let needle = runs.display().to_string();
    std::fs::create_dir_all(&runs).unwrap();
    // Peak memory of every process of the runs, sampled while they run.
    let done = Arc::new(AtomicBool::new(false));
    let peak_kb = Arc::new(AtomicU64::new(0));
    let peak_procs = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak_kb, peak_procs, needle) = (
            done.clone(),
            peak_kb.clone(),
            peak_procs.clone(),
            needle.clone(),
        );
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let (kb, n) = rss_kb_of(&needle);
                peak_kb.fetch_max(kb, Ordering::Relaxed);
                peak_procs.fetch_max(n as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let started = Instant::now();
    let children: Vec<_> = (0..SANDBOXES)
        .map(|i| {
            let tmp = runs.join(format!("tmp{i}"));
            let initdata = runs.join(format!("initdata{i}.toml"));
            // Ten guests share two cores under TCG: boots take longer.
            let args = ["--timeout", "300", "--summary-json"];
            demo_run_command(&cfg, &demo, &initdata, &tmp, &args)
                .spawn()
                .unwrap()
        })
        .collect();
    // One thread per run drains its pipes, so that none blocks on a full one.
    let waiters: Vec<_> = children
        .into_iter()
        .map(|c| std::thread::spawn(move || c.wait_with_output().unwrap()))
        .collect();
    let outputs: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    for (i, out) in outputs.iter().enumerate() {
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "sandbox {i}: {stderr}");
        assert!(
            stdout.contains("hello from a confidential container"),
            "sandbox {i}: {stdout}\n{stderr}"
        );
        let summary: serde_json::Value = stderr
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("sandbox {i}: no JSON summary: {stderr}"));
        assert_eq!(summary["exit_code"], 0, "sandbox {i}: {stderr}");
        assert_eq!(summary["encrypted_layers"], 1, "sandbox {i}: {stderr}");
    }
    println!(
        "{SANDBOXES} sandboxes at once through `cloister run`: all ran in {:.1} s wall; peak \
         host memory of the runs {:.0} MiB RSS (up to {} processes at once: each `cloister \
         run` with its vsock backend, and its QEMU)",
        wall.as_secs_f64(),
        peak_kb.load(Ordering::Relaxed) as f64 / 1024.0,
        peak_procs.load(Ordering::Relaxed)
    );
    // Nothing left behind: no process of the runs, nothing in any TMPDIR.
    std::thread::sleep(Duration::from_millis(300));
    let (kb, n) = rss_kb_of(&needle);
    assert_eq!(n, 0, "{n} processes of the runs are left ({kb} kB)");
    for i in 0..SANDBOXES {
        let tmp = runs.join(format!("tmp{i}"));
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "sandbox {i} left in its TMPDIR: {left:?}");
    }
    drop(demo);
}
