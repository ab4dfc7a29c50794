//! The main job end to end, and its refusals: the README's demo (a local KBS
//! and registry, an encrypted signed image, sim attestation) with one thing
//! changed per test. Also the trust-boundary test: after a run, neither the
//! image's secret nor the KBS's secret appears anywhere on the host side.
mod common;

use std::path::{Path, PathBuf};

use cloister_host::demo::{Demo, DemoConfig};
use cloister_host::run::{run, RunError};
use common::*;

/// One demo at a time: each runs a KBS, a registry and a VM, and the
/// trust-boundary test sets the process-wide capture variable.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn prepare(cfg: DemoConfig) -> Demo {
    Demo::prepare(cfg, &mut |s| eprintln!("demo: {s}")).expect("demo set-up")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Every file below `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn the_demo_runs_and_no_secret_reaches_the_host() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let Some(cfg) = demo_config(tmp.path()) else {
        return;
    };
    let demo = prepare(cfg);
    let mut opts = demo.run_options(&demo.image, None);
    let run_dir = tmp.path().join("vm");
    opts.boot.run_dir = Some(run_dir.clone());
    // Everything that crosses vsock, both ways, goes to this file.
    let capture = tmp.path().join("vsock.capture");
    std::env::set_var(cloister_host::devices::vsock::muxer::CAPTURE_ENV, &capture);
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (o1, o2) = (out.clone(), out.clone());
    let report = rt()
        .block_on(run(
            &opts,
            move |b| o1.lock().unwrap().extend_from_slice(b),
            move |b| o2.lock().unwrap().extend_from_slice(b),
        ))
        .expect("the demo container runs");
    std::env::remove_var(cloister_host::devices::vsock::muxer::CAPTURE_ENV);
    let output = text(&out.lock().unwrap());
    assert_eq!(report.exit_code, 0, "{output}");
    assert!(
        output.contains("hello from a confidential container"),
        "{output}"
    );
    assert!(output.contains("the secret file has"), "{output}");
    let c = &report.created;
    assert!(
        report.bound_to_tee,
        "initdata bound to the sim report's HOST_DATA"
    );
    assert_eq!(
        report.measurement.as_deref(),
        Some(hex::encode(demo.measurement).as_str())
    );
    assert_eq!(c.encrypted_layers, 1, "{c:?}");
    assert!(
        c.attestation.starts_with("attested to https://10.0.2.2:"),
        "{c:?}"
    );
    assert!(c.signature.contains(" signed by "), "{c:?}");
    assert!(
        demo.image.ends_with(&c.image_digest),
        "{} vs {c:?}",
        demo.image
    );

    // The trust boundary: search what the host side has.
    let mut searched: Vec<(String, Vec<u8>)> = files(&run_dir)
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(&p).unwrap_or_default(),
            )
        })
        .collect();
    let cap = std::fs::read(&capture).expect("the vsock capture");
    assert!(
        contains(&cap, "hello from a confidential container"),
        "the capture holds the vsock traffic (the container's output crossed it)"
    );
    assert!(
        contains(&cap, "CreateContainer") || cap.len() > 1000,
        "capture too small"
    );
    searched.push(("vsock capture".into(), cap));
    searched.push(("container output".into(), output.into_bytes()));
    searched.push(("run report".into(), format!("{report:?}").into_bytes()));
    assert!(
        searched.iter().any(|(n, _)| n.ends_with("console.log")),
        "{:?}",
        searched.iter().map(|s| &s.0).collect::<Vec<_>>()
    );
    for (what, bytes) in &searched {
        for canary in [&demo.image_canary, &demo.kbs_canary] {
            assert!(!canary.is_empty());
            assert!(!contains(bytes, canary), "{canary} leaked into {what}");
        }
    }
}

#[test]
fn a_tampered_initramfs_changes_the_measurement_and_gets_no_key() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut cfg) = demo_config(tmp.path()) else {
        return;
    };
    // The KBS expects the real initramfs; the VM boots one with an extra
    // file appended (a second cpio archive, which the kernel unpacks too).
    let good = cfg.initrd.clone();
    let tampered = tmp.path().join("tampered.cpio");
    let mut bytes = std::fs::read(&good).unwrap();
    let mut extra = cloister_host::initrd::Initramfs::new();
    extra
        .file("etc/tampered", 0o644, b"the host was here\n".to_vec())
        .unwrap();
    bytes.extend(extra.to_bytes());
    std::fs::write(&tampered, bytes).unwrap();
    cfg.reference_initrd = Some(good);
    let demo = prepare(cfg);
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let o1 = out.clone();
    let err = rt()
        .block_on(run(
            &demo.run_options(&demo.image, Some(&tampered)),
            move |b| o1.lock().unwrap().extend_from_slice(b),
            |_| {},
        ))
        .expect_err("no key for a tampered guest");
    let msg = err.to_string();
    assert!(matches!(err, RunError::Create(_)), "{msg}");
    assert!(
        msg.contains("measurement"),
        "the refusal names the check: {msg}"
    );
    assert!(
        msg.contains(&hex::encode(demo.measurement)),
        "and the expected value: {msg}"
    );
    assert!(out.lock().unwrap().is_empty(), "the container never ran");
}

#[test]
fn an_unsigned_image_is_refused_even_when_the_agent_policy_lists_it() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut cfg) = demo_config(tmp.path()) else {
        return;
    };
    cfg.policy_lists_unsigned = true;
    let demo = prepare(cfg);
    let mut opts = demo.run_options(&demo.unsigned_image, None);
    opts.spec["annotations"]["io.kubernetes.cri.container-name"] = "unsigned".into();
    let err = rt()
        .block_on(run(&opts, |_| {}, |_| {}))
        .expect_err("an unsigned image never runs");
    let msg = err.to_string();
    assert!(matches!(err, RunError::Create(_)), "{msg}");
    assert!(
        msg.contains("FailedPrecondition") || msg.contains("FAILED_PRECONDITION"),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("signature"), "{msg}");
}

#[test]
fn an_exec_the_policy_does_not_list_is_denied() {
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let Some(cfg) = demo_config(tmp.path()) else {
        return;
    };
    let demo = prepare(cfg);
    let mut opts = demo.run_options(&demo.image, None);
    opts.spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "sleep 300"]);
    rt().block_on(async {
        let sb = cloister_host::sandbox::Sandbox::boot(&opts.boot)
            .await
            .unwrap();
        let a = &sb.agent;
        cloister_host::pod::start_sandbox(a, "p", "p", &opts.initdata, &opts.network)
            .await
            .unwrap();
        a.create_container(
            "demo",
            &opts.image,
            &serde_json::to_vec(&opts.spec).unwrap(),
            opts.pull_timeout,
        )
        .await
        .unwrap();
        a.start_container("demo").await.unwrap();
        let e = a
            .exec("demo", "x1", &["/bin/cat", "/demo/secret.txt"])
            .await
            .unwrap_err();
        let msg = format!("{e:?}");
        assert!(msg.contains("PERMISSION_DENIED"), "{msg}");
        assert!(
            msg.contains("ExecProcessRequest"),
            "the denial names the rule: {msg}"
        );
        a.remove_container("demo", 0).await.unwrap();
        sb.shutdown();
    });
}
