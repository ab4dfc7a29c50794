//! `cloister measure snp` against the reference, sev-snp-measure 0.0.13 (PyPI,
//! installed by scripts/install-deps), on inputs this test makes up: random
//! kernels, initrds and command lines, every vCPU type, several vCPU counts,
//! all three VMM types, both OVMF fixtures, and precomputed OVMF hashes. The
//! seed is printed; set CLOISTER_MEASURE_SEED to replay a run. Also the ways
//! the command must refuse to measure.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{cloister, skip_or_fail, text};

const REFERENCE: &str = "sev-snp-measure";
const REFERENCE_VERSION: &str = "0.0.13";
const VCPU_TYPES: &[&str] = &[
    "EPYC",
    "EPYC-v1",
    "EPYC-v2",
    "EPYC-IBPB",
    "EPYC-v3",
    "EPYC-v4",
    "EPYC-Rome",
    "EPYC-Rome-v1",
    "EPYC-Rome-v2",
    "EPYC-Rome-v3",
    "EPYC-Milan",
    "EPYC-Milan-v1",
    "EPYC-Milan-v2",
    "EPYC-Genoa",
    "EPYC-Genoa-v1",
    "EPYC-Turin",
];

fn fixture(name: &str) -> PathBuf {
    common::repo_root()
        .join("attestation/measure/testdata/fixtures")
        .join(name)
}

fn amd_sev() -> PathBuf {
    fixture("ovmf_AmdSev_suffix.bin")
}

fn ovmf_x64() -> PathBuf {
    fixture("ovmf_OvmfX64_suffix.bin")
}

/// The reference tool, if installed at the right version.
fn reference_available() -> bool {
    match Command::new(REFERENCE).arg("--version").output() {
        Ok(out) if text(&out.stdout).contains(REFERENCE_VERSION) => true,
        Ok(out) => {
            skip_or_fail(&format!(
                "{REFERENCE} is {:?}, not {REFERENCE_VERSION} (pip install {REFERENCE}=={REFERENCE_VERSION})",
                text(&out.stdout).trim()
            ));
            false
        }
        Err(e) => {
            skip_or_fail(&format!(
                "{REFERENCE} is not installed ({e}); scripts/install-deps installs it with pip"
            ));
            false
        }
    }
}

/// The `cloister` binary must be one that has `measure` (not a stale build).
fn assert_cloister_measures() {
    let out = cloister(&["measure", "snp", "--help"]);
    assert!(
        out.status.success(),
        "cloister has no `measure snp`: rebuild it (cargo build -p cloister)\n{}",
        text(&out.stderr)
    );
}

/// SplitMix64: a small deterministic generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn cmdline(&mut self) -> String {
        const WORDS: &[&str] = &[
            "console=ttyS0",
            "root=/dev/vda1",
            "agent.log=debug",
            "quiet",
            "-",
            "--",
            "panic=1",
            "init=/init",
            "µ=ünïcode→",
            "a=\"quoted value\"",
            "tab\there",
        ];
        let n = self.below(6);
        let mut words: Vec<String> = (0..n).map(|_| self.pick(WORDS).to_string()).collect();
        if self.below(3) == 0 {
            // Printable ASCII noise.
            words.push(
                (0..self.below(40) + 1)
                    .map(|_| (b' ' + self.below(95) as u8) as char)
                    .collect(),
            );
        }
        let line = words.join(" ");
        // sev-snp-measure's argparse turns `--append=--` into an empty command
        // line (it drops a bare "--" argument), although QEMU would hash "--":
        // a quirk of the reference's option parsing, so not compared here.
        if line == "--" {
            return "-- --".to_string();
        }
        line
    }
}

/// One measurement's inputs, rendered for both tools.
#[derive(Debug, Default)]
struct Case {
    ovmf: PathBuf,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: Option<String>,
    vcpus: u32,
    vcpu_type: Option<&'static str>,
    vmm: &'static str,
    guest_features: u64,
    ovmf_hash: Option<String>,
}

impl Case {
    fn common_args(&self) -> Vec<String> {
        let mut a = vec![
            format!("--ovmf={}", self.ovmf.display()),
            format!("--vcpus={}", self.vcpus),
        ];
        if let Some(k) = &self.kernel {
            a.push(format!("--kernel={}", k.display()));
        }
        if let Some(i) = &self.initrd {
            a.push(format!("--initrd={}", i.display()));
        }
        if let Some(c) = &self.append {
            a.push(format!("--append={c}"));
        }
        if let Some(t) = self.vcpu_type {
            a.push(format!("--vcpu-type={t}"));
        }
        a.push(format!("--guest-features={:#x}", self.guest_features));
        a
    }

    fn reference(&self) -> Output {
        let mut args = vec!["--mode=snp".to_string()];
        args.extend(self.common_args());
        // sev-snp-measure spells the VMM types QEMU, ec2 and gce.
        let vmm = if self.vmm == "qemu" { "QEMU" } else { self.vmm };
        args.push(format!("--vmm-type={vmm}"));
        if let Some(h) = &self.ovmf_hash {
            args.push(format!("--snp-ovmf-hash={h}"));
        }
        Command::new(REFERENCE).args(&args).output().unwrap()
    }

    fn cloister(&self) -> Output {
        let mut args = vec!["measure".to_string(), "snp".to_string()];
        args.extend(self.common_args());
        args.push(format!("--vmm-type={}", self.vmm));
        if let Some(h) = &self.ovmf_hash {
            args.push(format!("--ovmf-hash={h}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cloister(&args)
    }
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Both tools agree, and cloister prints the digest and nothing else.
fn assert_same(case: &Case, seed: u64) -> String {
    let want = case.reference();
    assert!(
        want.status.success(),
        "{REFERENCE} failed on {case:?} (seed {seed}): {}",
        text(&want.stderr)
    );
    let got = case.cloister();
    assert!(
        got.status.success(),
        "cloister failed on {case:?} (seed {seed}): {}",
        text(&got.stderr)
    );
    let (want, got) = (text(&want.stdout), text(&got.stdout));
    assert_eq!(got.len(), 97, "one line of 96 hex digits: {got:?}");
    assert!(
        got.trim_end()
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{got:?}"
    );
    assert_eq!(
        got.trim_end(),
        want.trim_end(),
        "digest differs for {case:?} (seed {seed})"
    );
    got.trim_end().to_string()
}

#[test]
fn random_inputs_match_sev_snp_measure() {
    if !reference_available() {
        return;
    }
    assert_cloister_measures();
    let seed = std::env::var("CLOISTER_MEASURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!(
        "measure_vs_sev_snp_measure: seed {seed} (set CLOISTER_MEASURE_SEED={seed} to replay)"
    );
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut digests = std::collections::HashSet::new();
    let mut compared = 0;

    // Every vCPU type once under QEMU, with random boot inputs.
    for (i, vcpu_type) in VCPU_TYPES.iter().enumerate() {
        let random_features = 0x1 | (rng.next() & 0xffff_fffe);
        let mut case = Case {
            ovmf: amd_sev(),
            vcpus: *rng.pick(&[1, 2, 3, 4, 8, 16, 64]),
            vcpu_type: Some(vcpu_type),
            vmm: "qemu",
            guest_features: *rng.pick(&[0x1, 0x5, 0x21, 0x31, random_features]),
            ..Case::default()
        };
        if rng.below(4) != 0 {
            let len = rng.below(64 * 1024) + 1;
            case.kernel = Some(write(dir.path(), &format!("kernel{i}"), &rng.bytes(len)));
            if rng.below(3) != 0 {
                let len = rng.below(32 * 1024);
                case.initrd = Some(write(dir.path(), &format!("initrd{i}"), &rng.bytes(len)));
            }
            if rng.below(4) != 0 {
                case.append = Some(rng.cmdline());
            }
        }
        digests.insert(assert_same(&case, seed));
        compared += 1;
    }

    // EC2 and GCE, with and without a vCPU type, and the OvmfX64 build
    // (which can only measure without a kernel).
    for (i, vmm) in ["ec2", "gce", "ec2", "gce", "qemu", "qemu"]
        .into_iter()
        .enumerate()
    {
        let x64 = i >= 4;
        let mut case = Case {
            ovmf: if x64 { ovmf_x64() } else { amd_sev() },
            vcpus: *rng.pick(&[1, 2, 5, 32]),
            vcpu_type: if vmm == "qemu" || i % 2 == 0 {
                Some(*rng.pick(VCPU_TYPES))
            } else {
                None
            },
            vmm,
            guest_features: *rng.pick(&[0x1, 0x21]),
            ..Case::default()
        };
        if !x64 {
            let len = rng.below(8 * 1024);
            case.kernel = Some(write(
                dir.path(),
                &format!("cloud-kernel{i}"),
                &rng.bytes(len),
            ));
            case.append = Some(rng.cmdline());
        }
        digests.insert(assert_same(&case, seed));
        compared += 1;
    }

    // A precomputed OVMF hash: both tools compute the same one, and both
    // start from it (from a real one and from a random one).
    for ovmf in [amd_sev(), ovmf_x64()] {
        let ovmf_arg = format!("--ovmf={}", ovmf.display());
        let want = Command::new(REFERENCE)
            .args(["--mode=snp:ovmf-hash", &ovmf_arg])
            .output()
            .unwrap();
        let got = cloister(&["measure", "snp-ovmf-hash", &ovmf_arg]);
        assert!(
            want.status.success() && got.status.success(),
            "{}{}",
            text(&want.stderr),
            text(&got.stderr)
        );
        assert_eq!(
            text(&got.stdout),
            text(&want.stdout),
            "OVMF hash of {}",
            ovmf.display()
        );
        for hash in [text(&want.stdout).trim().to_string(), hex(&rng.bytes(48))] {
            let case = Case {
                ovmf: ovmf.clone(),
                vcpus: 2,
                vcpu_type: Some("EPYC-Milan"),
                vmm: "qemu",
                guest_features: 0x1,
                ovmf_hash: Some(hash),
                ..Case::default()
            };
            digests.insert(assert_same(&case, seed));
            compared += 1;
        }
    }

    // A real OVMF hash gives the same digest as hashing the OVMF: 3 of the
    // 26 comparisons may coincide, no more.
    eprintln!(
        "measure_vs_sev_snp_measure: {compared} digests compared, {} distinct",
        digests.len()
    );
    assert_eq!(compared, 26);
    assert!(
        digests.len() >= 23,
        "inputs were meant to differ: {} distinct of {compared}",
        digests.len()
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn both_refuse_a_kernel_with_an_ovmf_lacking_kernel_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let case = Case {
        ovmf: ovmf_x64(),
        kernel: Some(write(dir.path(), "kernel", b"not really a kernel")),
        append: Some("console=ttyS0".into()),
        vcpus: 1,
        vcpu_type: Some("EPYC-v4"),
        vmm: "qemu",
        guest_features: 1,
        ..Case::default()
    };
    assert_cloister_measures();
    let got = case.cloister();
    assert!(!got.status.success());
    assert!(
        got.stdout.is_empty(),
        "nothing on stdout: {}",
        text(&got.stdout)
    );
    assert!(
        text(&got.stderr).contains("SNP_KERNEL_HASHES"),
        "{}",
        text(&got.stderr)
    );
    if reference_available() {
        let want = case.reference();
        assert!(!want.status.success(), "{REFERENCE} also refuses");
        assert!(
            text(&want.stderr).contains("SNP_KERNEL_HASHES"),
            "{}",
            text(&want.stderr)
        );
    }
}

/// Each unmeasurable input: a non-zero exit, nothing on stdout, and stderr
/// saying why.
#[test]
fn unmeasurable_inputs_fail_with_a_reason() {
    assert_cloister_measures();
    let dir = tempfile::tempdir().unwrap();
    let tiny = write(dir.path(), "tiny.fd", &[0u8; 16]);
    let zeros = write(dir.path(), "zeros.fd", &[0u8; 8192]);
    let amd = amd_sev();
    let amd = amd.to_str().unwrap();
    let missing = dir.path().join("missing.fd");
    let missing = missing.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--ovmf",
                tiny.to_str().unwrap(),
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
            ],
            "at least 50 are needed",
        ),
        (
            &[
                "--ovmf",
                zeros.to_str().unwrap(),
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
            ],
            "no footer GUID table",
        ),
        (
            &["--ovmf", missing, "--vcpus", "1", "--vcpu-type", "EPYC-v4"],
            "No such file",
        ),
        (
            &["--ovmf", amd, "--vcpus", "1", "--vcpu-type", "EPYC-Zen9"],
            "unknown vCPU type",
        ),
        (&["--ovmf", amd, "--vcpus", "1"], "needs the vCPU model"),
        (
            &["--ovmf", amd, "--vcpus", "0", "--vcpu-type", "EPYC-v4"],
            "at least 1",
        ),
        (
            &[
                "--ovmf",
                amd,
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--vmm-type",
                "kvmtool",
            ],
            "unknown VMM type",
        ),
        (
            &[
                "--ovmf",
                amd,
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--ovmf-hash",
                "xyz",
            ],
            "not valid hex",
        ),
        (
            &[
                "--ovmf",
                amd,
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--ovmf-hash",
                "00ff",
            ],
            "48 bytes",
        ),
        (
            &[
                "--ovmf",
                amd,
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--guest-features",
                "0xzz",
            ],
            "not an integer",
        ),
        (
            &[
                "--ovmf",
                amd,
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--kernel",
                missing,
            ],
            "reading kernel",
        ),
        (
            &[
                "--ovmf",
                amd,
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC-v4",
                "--initrd",
                amd,
            ],
            "--kernel",
        ),
    ];
    for (args, reason) in cases {
        let mut full = vec!["measure", "snp"];
        full.extend_from_slice(args);
        let out = cloister(&full);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(
            out.stdout.is_empty(),
            "{args:?}: nothing on stdout, got {}",
            text(&out.stdout)
        );
        assert!(
            text(&out.stderr).contains(reason),
            "{args:?}: stderr should say {reason:?}: {}",
            text(&out.stderr)
        );
    }
}
