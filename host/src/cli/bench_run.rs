//! `cloister bench run`: the demo container's phases, median of N fresh
//! sandboxes, against runc starting the same image on the host.
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cloister_host::bench::{ms, Summary};
use cloister_host::demo::{Demo, DemoConfig, DEMO_COMMAND};

use super::runtime;

fn median(runs: Vec<Duration>) -> Duration {
    Summary { runs }.median()
}

pub fn run(kernel: PathBuf, initrd: PathBuf, runs: usize) -> anyhow::Result<()> {
    anyhow::ensure!(runs >= 1, "--runs must be at least 1");
    let exe = std::env::current_exe()?;
    let work = tempfile::Builder::new()
        .prefix("cloister-bench-")
        .tempdir()?;
    let cfg = DemoConfig {
        kernel,
        initrd,
        bin_dir: exe.parent().context("binary directory")?.to_path_buf(),
        sim_state: work.path().join("sim"),
        work: work.path().join("demo"),
        reference_initrd: None,
        policy_lists_unsigned: false,
    };
    let demo = Demo::prepare(cfg, &mut |s| eprintln!("bench: {s}"))?;
    let rt = runtime()?;
    let mut phases: Vec<(&'static str, Vec<Duration>)> = Vec::new();
    let mut totals = Vec::new();
    for i in 0..runs {
        let opts = demo.run_options(&demo.image, None);
        let t = Instant::now();
        let r = rt.block_on(cloister_host::run::run(&opts, |_| {}, |_| {}))?;
        if r.exit_code != 0 {
            bail!("run {i}: the demo container exited with {}", r.exit_code);
        }
        // Launch to the container's exit, without the teardown.
        let teardown = r.phases.last().map(|p| p.1).unwrap_or_default();
        totals.push(t.elapsed().saturating_sub(teardown));
        // The agent splits its part: attestation (and key fetch), pull
        // (download, verify, decrypt, unpack) and libcontainer's create.
        let c = &r.created;
        let ms_ = Duration::from_millis;
        let mut split: Vec<(&'static str, Duration)> = Vec::new();
        for (name, d) in r.phases {
            if name == "attest+pull+create" {
                split.push(("attest (RCAR + key)", ms_(c.attest_ms)));
                split.push(("pull", ms_(c.pull_ms.saturating_sub(c.attest_ms))));
                split.push(("create", ms_(c.create_ms)));
                split.push((
                    "(rpc overhead)",
                    d.saturating_sub(ms_(c.pull_ms + c.create_ms)),
                ));
            } else {
                split.push((name, d));
            }
        }
        for (name, d) in split {
            match phases.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => v.push(d),
                None => phases.push((name, vec![d])),
            }
        }
        eprintln!("bench: run {} of {runs} done", i + 1);
    }
    let (unpack, runc) = runc_baseline(&demo, runs)?;
    println!("confidential container start (cloister run, sim TEE, TCG): {runs} fresh sandboxes");
    for (name, v) in &phases {
        println!("  {name:<20} median {:>8.1} ms", ms(median(v.clone())));
    }
    let cloister_total = median(totals);
    println!(
        "  {:<20} median {:>8.1} ms",
        "launch -> exit",
        ms(cloister_total)
    );
    println!("runc on the host, same image (plaintext layout): {runs} runs");
    println!("  {:<20} median {:>8.1} ms", "umoci unpack", ms(unpack));
    println!("  {:<20} median {:>8.1} ms", "runc run", ms(runc));
    let peer = unpack + runc;
    println!("  {:<20} median {:>8.1} ms", "unpack + run", ms(peer));
    println!(
        "ratio (cloister launch->exit / runc unpack+run): {:.1}",
        ms(cloister_total) / ms(peer)
    );
    Ok(())
}

/// `umoci unpack` + `runc run` of the plaintext image, medians.
fn runc_baseline(demo: &Demo, runs: usize) -> anyhow::Result<(Duration, Duration)> {
    let (layout, tag) = demo.plain_layout();
    let dir = tempfile::Builder::new()
        .prefix("cloister-runc-")
        .tempdir()?;
    let mut unpacks = Vec::new();
    let mut starts = Vec::new();
    for i in 0..runs {
        let bundle = dir.path().join(format!("b{i}"));
        let t = Instant::now();
        let st = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle)
            .status()?;
        anyhow::ensure!(st.success(), "umoci unpack failed");
        unpacks.push(t.elapsed());
        let mut spec = cloister_protocol::oci::default_spec(DEMO_COMMAND);
        spec["root"] = serde_json::json!({"path": "rootfs", "readonly": true});
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&spec)?)?;
        let t = Instant::now();
        let out = Command::new("runc")
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("cloister-bench-{}-{i}", std::process::id()))
            .output()
            .context("running runc (apt-get install runc)")?;
        starts.push(t.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "runc run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((median(unpacks), median(starts)))
}
