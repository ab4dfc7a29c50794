//! Shared helpers for the end-to-end tests: where the artifacts are, and
//! skipping (or, under CI=true, failing) when a prerequisite is missing.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Skips the test with a reason, or fails it under CI=true, where every
/// prerequisite must be present.
pub fn skip_or_fail(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("prerequisite missing under CI=true: {reason}");
    }
    eprintln!("SKIP: {reason}");
}

fn env_file(var: &str, what: &str) -> Option<PathBuf> {
    match std::env::var_os(var).map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        Some(p) => {
            skip_or_fail(&format!("{var}={} does not exist ({what})", p.display()));
            None
        }
        None => {
            skip_or_fail(&format!(
                "{var} is not set ({what}); run scripts/test, which builds it"
            ));
            None
        }
    }
}

pub fn kernel() -> Option<PathBuf> {
    env_file("CLOISTER_KERNEL", "guest kernel from kernel-config/build")
}

pub fn agent_initrd() -> Option<PathBuf> {
    env_file("CLOISTER_INITRD", "initramfs from `cloister initrd build`")
}

pub fn busybox() -> Option<PathBuf> {
    let p = PathBuf::from("/bin/busybox");
    if p.is_file() {
        Some(p)
    } else {
        skip_or_fail("/bin/busybox is missing (apt-get install busybox-static)");
        None
    }
}

pub fn qemu() -> bool {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        skip_or_fail("qemu-system-x86_64 is missing (apt-get install qemu-system-x86)");
    }
    ok
}

/// The `cloister` binary cargo built next to this test.
pub fn cloister_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("cloister");
    assert!(
        p.is_file(),
        "{} not built; run cargo test --workspace",
        p.display()
    );
    p
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn cloister(args: &[&str]) -> Output {
    Command::new(cloister_bin()).args(args).output().unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Processes whose command line mentions `needle` (to prove nothing is left).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    pids_mentioning(needle)
        .into_iter()
        .map(|(_, c)| c)
        .collect()
}

/// Pids and command lines of the other processes whose command line
/// mentions `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push((pid, cmd));
            }
        }
    }
    found
}

/// `cloister run` (the real binary) of the demo's container under the sim
/// TEE, with its temporary files (its run directory) under `tmp` and only
/// there; `initdata` is where the demo's initdata is written.
pub fn demo_run_command(
    cfg: &cloister_host::demo::DemoConfig,
    demo: &cloister_host::demo::Demo,
    initdata: &Path,
    tmp: &Path,
    extra: &[&str],
) -> std::process::Command {
    // Written beside and renamed into place, so that a run started earlier
    // with the same `initdata` never reads a file cut short by this one.
    let part = initdata.with_extension(format!("part{}", std::process::id()));
    std::fs::write(&part, &demo.initdata).unwrap();
    std::fs::rename(&part, initdata).unwrap();
    std::fs::create_dir_all(tmp).unwrap();
    let mut c = std::process::Command::new(cloister_bin());
    c.env("TMPDIR", tmp)
        // 512 MiB as the demo measured it for the KBS.
        .args(["run", "--tee", "sim", "--memory", "512"])
        .args(extra)
        .arg("--kernel")
        .arg(&cfg.kernel)
        .arg("--initrd")
        .arg(&cfg.initrd)
        .arg("--sim-state")
        .arg(&cfg.sim_state)
        .arg("--initdata")
        .arg(initdata)
        // The name the demo's policy lists.
        .args(["--id", "demo"])
        .arg(&demo.image)
        .arg("--")
        .args(cloister_host::demo::DEMO_COMMAND)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c
}

/// The demo's parts (registry, KBS, encrypted signed image, sim TEE) under
/// `work`, or None (skipped, or failed under CI=true) when something they
/// need is missing.
pub fn demo_config(work: &Path) -> Option<cloister_host::demo::DemoConfig> {
    let (Some(kernel), Some(initrd)) = (kernel(), agent_initrd()) else {
        return None;
    };
    if !qemu() {
        return None;
    }
    let bin_dir = cloister_bin().parent().unwrap().to_path_buf();
    if !bin_dir.join("cloister-kbs").is_file() {
        skip_or_fail("cloister-kbs is not built (cargo build --workspace)");
        return None;
    }
    for tool in [
        "/usr/bin/docker-registry",
        "/usr/bin/skopeo",
        "/usr/bin/umoci",
        "/usr/bin/openssl",
    ] {
        if !Path::new(tool).exists() {
            skip_or_fail(&format!("{tool} is missing (scripts/install-deps)"));
            return None;
        }
    }
    Some(cloister_host::demo::DemoConfig {
        kernel,
        initrd,
        bin_dir,
        sim_state: work.join("sim"),
        work: work.join("demo"),
        reference_initrd: None,
        policy_lists_unsigned: false,
    })
}
