//! `cloister vm launch-args`: the SEV-SNP and TDX command lines, which no
//! machine here can run (no SEV, no TDX, QEMU 7.2). What can be proven here:
//! the QEMU argv it prints and the MEASUREMENT it prints agree — reading the
//! -bios/-kernel/-initrd/-append/-smp/-cpu values back out of the argv and
//! measuring them with `cloister measure snp` and with sev-snp-measure (the
//! reference, when installed) gives the printed value; host-data is
//! base64(sha256(initdata)); TDX's mrconfigid is the padded digest.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{cloister, skip_or_fail, text};
use sha2::{Digest, Sha256};

fn fixture(name: &str) -> PathBuf {
    common::repo_root()
        .join("attestation/measure/testdata/fixtures")
        .join(name)
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = cloister(args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn argv(v: &serde_json::Value) -> Vec<String> {
    v["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn value_of<'a>(argv: &'a [String], flag: &str) -> &'a str {
    let i = argv
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {argv:?}"));
    &argv[i + 1]
}

fn object<'a>(argv: &'a [String], prefix: &str) -> &'a str {
    argv.iter()
        .find(|a| a.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} object in {argv:?}"))
}

fn property<'a>(obj: &'a str, key: &str) -> &'a str {
    obj.split(',')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {obj}"))
}

struct Inputs {
    _dir: tempfile::TempDir,
    kernel: PathBuf,
    initrd: PathBuf,
    initdata: PathBuf,
}

fn inputs() -> Inputs {
    let d = tempfile::tempdir().unwrap();
    let kernel = write(
        d.path(),
        "bzImage",
        &(0..70_000u32)
            .map(|x| (x * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let initrd = write(
        d.path(),
        "initrd.cpio",
        &(0..30_000u32)
            .map(|x| (x * 13 % 253) as u8)
            .collect::<Vec<_>>(),
    );
    let initdata = write(
        d.path(),
        "initdata.toml",
        b"version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = '''\npackage agent_policy\n'''\n",
    );
    Inputs {
        _dir: d,
        kernel,
        initrd,
        initdata,
    }
}

const CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet cloister.note='x y'";

fn snp_launch(i: &Inputs, extra: &[&str]) -> serde_json::Value {
    let ovmf = fixture("ovmf_AmdSev_suffix.bin");
    let mut args = vec![
        "vm",
        "launch-args",
        "--tee",
        "snp",
        "--json",
        "--firmware",
        ovmf.to_str().unwrap(),
        "--kernel",
        i.kernel.to_str().unwrap(),
        "--initrd",
        i.initrd.to_str().unwrap(),
        "--initdata",
        i.initdata.to_str().unwrap(),
        "--cmdline",
        CMDLINE,
        "--vcpus",
        "3",
        "--memory",
        "1024",
        "--vcpu-type",
        "EPYC-Genoa",
    ];
    args.extend_from_slice(extra);
    json(&args)
}

#[test]
fn snp_argv_and_measurement_agree_with_cloister_measure() {
    let i = inputs();
    let v = snp_launch(&i, &[]);
    let a = argv(&v);
    assert_eq!(a[0], "qemu-system-x86_64");
    let measurement = v["measurement"].as_str().unwrap();
    assert_eq!(measurement.len(), 96);

    // Measure what the argv boots.
    let m = cloister(&[
        "measure",
        "snp",
        &format!("--ovmf={}", value_of(&a, "-bios")),
        &format!("--kernel={}", value_of(&a, "-kernel")),
        &format!("--initrd={}", value_of(&a, "-initrd")),
        &format!("--append={}", value_of(&a, "-append")),
        &format!("--vcpus={}", value_of(&a, "-smp")),
        &format!("--vcpu-type={}", value_of(&a, "-cpu")),
        "--guest-features=0x1",
    ]);
    assert!(m.status.success(), "{}", text(&m.stderr));
    assert_eq!(text(&m.stdout).trim(), measurement);
    assert_eq!(
        value_of(&a, "-append"),
        CMDLINE,
        "the cmdline is passed unchanged"
    );

    // And measure_args is the same invocation.
    let margs: Vec<String> = v["measure_args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    let mut full = vec!["measure".to_string(), "snp".to_string()];
    full.extend(margs);
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    let m2 = cloister(&full);
    assert_eq!(text(&m2.stdout).trim(), measurement);

    // host-data is base64(sha256(initdata)), and matches the printed HOST_DATA.
    let digest = Sha256::digest(std::fs::read(&i.initdata).unwrap());
    let obj = object(&a, "sev-snp-guest,");
    assert_eq!(property(obj, "host-data"), STANDARD.encode(digest));
    assert_eq!(v["host_data"], hex::encode(digest));
    assert_eq!(property(obj, "policy"), "0x30000");
    assert_eq!(property(obj, "kernel-hashes"), "on");
    assert!(value_of(&a, "-machine").contains("confidential-guest-support=sev0"));

    // The installed QEMU is checked: Debian 12's 7.2 is too old, and says so.
    let qemu = Command::new("qemu-system-x86_64").arg("--version").output();
    if let Ok(q) = qemu {
        if text(&q.stdout).contains("version 7.") || text(&q.stdout).contains("version 8.") {
            let w = v["warnings"].to_string();
            assert!(w.contains("no sev-snp-guest object"), "{w}");
            assert!(w.contains("needs QEMU 9.1.0 or later"), "{w}");
        }
    }
}

#[test]
fn snp_measurement_matches_sev_snp_measure() {
    match Command::new("sev-snp-measure").arg("--version").output() {
        Ok(o) if text(&o.stdout).contains("0.0.13") => {}
        _ => {
            skip_or_fail("sev-snp-measure 0.0.13 is not installed (scripts/install-deps)");
            return;
        }
    }
    let i = inputs();
    let v = snp_launch(&i, &["--policy-no-smt"]);
    let a = argv(&v);
    let out = Command::new("sev-snp-measure")
        .args([
            "--mode=snp".to_string(),
            "--vmm-type=QEMU".to_string(),
            format!("--ovmf={}", value_of(&a, "-bios")),
            format!("--kernel={}", value_of(&a, "-kernel")),
            format!("--initrd={}", value_of(&a, "-initrd")),
            format!("--append={}", value_of(&a, "-append")),
            format!("--vcpus={}", value_of(&a, "-smp")),
            format!("--vcpu-type={}", value_of(&a, "-cpu")),
            "--guest-features=0x1".to_string(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), v["measurement"].as_str().unwrap());
    // The policy does not enter the launch digest, but is in the argv.
    assert_eq!(property(object(&a, "sev-snp-guest,"), "policy"), "0x20000");
}

#[test]
fn snp_policy_flags_and_refusals() {
    let i = inputs();
    let v = snp_launch(
        &i,
        &[
            "--policy-debug",
            "--policy-single-socket",
            "--policy-migrate-ma",
        ],
    );
    let a = argv(&v);
    assert_eq!(property(object(&a, "sev-snp-guest,"), "policy"), "0x1f0000");
    assert!(v["warnings"].to_string().contains("allows debugging"));

    // A firmware that cannot measure a kernel is refused with the reason.
    let out = cloister(&[
        "vm",
        "launch-args",
        "--tee",
        "snp",
        "--firmware",
        fixture("ovmf_OvmfX64_suffix.bin").to_str().unwrap(),
        "--kernel",
        i.kernel.to_str().unwrap(),
        "--initrd",
        i.initrd.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("SNP_KERNEL_HASHES") && e.contains("AmdSev"),
        "{e}"
    );
    assert_eq!(e.matches("SNP_KERNEL_HASHES").count(), 1, "said once: {e}");

    let bad_cbit = cloister(&[
        "vm",
        "launch-args",
        "--tee",
        "snp",
        "--firmware",
        fixture("ovmf_AmdSev_suffix.bin").to_str().unwrap(),
        "--kernel",
        i.kernel.to_str().unwrap(),
        "--initrd",
        i.initrd.to_str().unwrap(),
        "--cbitpos",
        "7",
    ]);
    assert!(!bad_cbit.status.success());
    assert!(
        text(&bad_cbit.stderr).contains("cbitpos 7"),
        "{}",
        text(&bad_cbit.stderr)
    );

    let missing = cloister(&[
        "vm",
        "launch-args",
        "--tee",
        "snp",
        "--firmware",
        fixture("ovmf_AmdSev_suffix.bin").to_str().unwrap(),
        "--kernel",
        "/nonexistent/bzImage",
        "--initrd",
        i.initrd.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("reading kernel /nonexistent/bzImage"));
}

#[test]
fn tdx_argv_carries_the_padded_initdata_digest_in_mrconfigid() {
    let i = inputs();
    let v = json(&[
        "vm",
        "launch-args",
        "--tee",
        "tdx",
        "--json",
        "--firmware",
        "/fw/OVMF.tdx.fd",
        "--kernel",
        i.kernel.to_str().unwrap(),
        "--initrd",
        i.initrd.to_str().unwrap(),
        "--initdata",
        i.initdata.to_str().unwrap(),
    ]);
    let a = argv(&v);
    let obj = object(&a, "tdx-guest,");
    let raw = STANDARD.decode(property(obj, "mrconfigid")).unwrap();
    let digest = Sha256::digest(std::fs::read(&i.initdata).unwrap());
    assert_eq!(raw.len(), 48);
    assert_eq!(raw[..32], digest[..]);
    assert_eq!(raw[32..], [0u8; 16]);
    assert_eq!(v["mrconfigid"], hex::encode(&raw));
    assert!(
        value_of(&a, "-machine").contains("kernel-irqchip=split,confidential-guest-support=tdx0")
    );
    assert_eq!(value_of(&a, "-cpu"), "host");
    assert!(v["measurement"].is_null(), "no TDX measurement yet");
    assert!(v["warnings"].to_string().contains("no expected MRTD/RTMR"));
}
