//! Ten sandboxes at once on this machine's two cores (QEMU/TCG), each the
//! main job (`cloister_host::run::run`, what `cloister run` calls): boot,
//! attest to the KBS, pull, verify and decrypt the demo image, run it. All
//! must succeed with the right output, and nothing may be left behind. The
//! wall time and the peak memory of everything the runs started are
//! printed for BENCHMARKS.md (not asserted: figures go in benchmarks).
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloister_host::demo::Demo;
use cloister_host::run::run;
use common::*;

const SANDBOXES: usize = 10;

/// Summed RSS (kB) of the processes whose command line mentions `needle`.
fn rss_kb_of(needle: &str) -> (u64, usize) {
    let (mut kb, mut n) = (0, 0);
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let Ok(c) = std::fs::read(p.join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&c).contains(needle) {
            continue;
        }
        if let Ok(status) = std::fs::read_to_string(p.join("status")) {
            if let Some(v) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                kb += v;
                n += 1;
            }
        }
    }
    (kb, n)
}

#[test]
fn ten_sandboxes_at_once_all_succeed_and_leave_nothing() {
    let work = tempfile::tempdir().unwrap();
    let Some(cfg) = demo_config(work.path()) else {
        return;
    };
    let demo = Demo::prepare(cfg, &mut |s| eprintln!("demo: {s}")).expect("demo set-up");
    let runs = work.path().join("runs");
    let needle = runs.display().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Peak memory of every process the runs started (QEMU, vhost-user
    // backends), sampled while they run; plus this process's own RSS.
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
                let own = std::fs::read_to_string("/proc/self/status")
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("VmRSS:"))
                            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    })
                    .unwrap_or(0u64);
                peak_kb.fetch_max(kb + own, Ordering::Relaxed);
                peak_procs.fetch_max(n as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let started = Instant::now();
    let outputs: Vec<Arc<Mutex<Vec<u8>>>> = (0..SANDBOXES).map(|_| Default::default()).collect();
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for (i, out) in outputs.iter().enumerate() {
            let mut opts = demo.run_options(&demo.image, None);
            opts.boot.run_dir = Some(runs.join(format!("vm{i}")));
            // Ten guests share two cores under TCG: boots take longer.
            opts.boot.agent_timeout = Duration::from_secs(300);
            let (o1, o2) = (out.clone(), out.clone());
            tasks.push(tokio::spawn(async move {
                run(
                    &opts,
                    move |b| o1.lock().unwrap().extend_from_slice(b),
                    move |b| o2.lock().unwrap().extend_from_slice(b),
                )
                .await
            }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    });
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();

    for (i, (r, out)) in results.iter().zip(&outputs).enumerate() {
        let output = text(&out.lock().unwrap());
        let report = r
            .as_ref()
            .unwrap_or_else(|e| panic!("sandbox {i}: {e}\n{output}"));
        assert_eq!(report.exit_code, 0, "sandbox {i}: {output}");
        assert!(
            output.contains("hello from a confidential container"),
            "sandbox {i}: {output}"
        );
        assert_eq!(report.created.encrypted_layers, 1, "sandbox {i}");
    }
    println!(
        "{SANDBOXES} sandboxes at once: all ran in {:.1} s wall; peak host memory of the runs \
         {:.0} MiB RSS (the VMMs, up to {} at once, and this process with the vsock backends)",
        wall.as_secs_f64(),
        peak_kb.load(Ordering::Relaxed) as f64 / 1024.0,
        peak_procs.load(Ordering::Relaxed)
    );
    // Nothing left behind: no process, and each run dir without a socket.
    std::thread::sleep(Duration::from_millis(300));
    let (kb, n) = rss_kb_of(&needle);
    assert_eq!(n, 0, "{n} processes of the runs are left ({kb} kB)");
    for i in 0..SANDBOXES {
        let dir = runs.join(format!("vm{i}"));
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            assert!(
                !std::os::unix::fs::FileTypeExt::is_socket(&ft),
                "socket left: {}",
                e.path().display()
            );
        }
    }
    drop(demo);
}
