//! The shim binary as containerd invokes it, without containerd: `start`
//! refuses a bad node config by name, `delete` cleans up what a dead shim
//! left, and `vmm-serve` refuses a bad spec. Needs no root and no VM.
//!
//! These tests also make `cargo test --workspace` build the binary that the
//! containerd end-to-end tests in `tests/` run.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_containerd-shim-cloister-v2");

fn shim(config: &Path, bundle: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(bundle)
        .env("CLOISTER_CONFIG", config)
        .env("TTRPC_ADDRESS", bundle.join("no-containerd.sock"))
        .output()
        .expect("running the shim")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn start_refuses_a_bad_node_config_naming_the_file_line_and_key() {
    let d = tempfile::tempdir().unwrap();
    let config = d.path().join("config.toml");
    std::fs::write(&config, "[hypervisor]\nvcpus = 1\nmemroy_mib = 3\n").unwrap();
    let o = shim(
        &config,
        d.path(),
        &["-namespace", "t", "-id", "pod1", "-address", "/x", "start"],
    );
    let all = text(&o);
    assert!(!o.status.success(), "{all}");
    let want = format!("{}:3: key `hypervisor.memroy_mib`", config.display());
    assert!(all.contains(&want), "wanted {want:?} in\n{all}");
    assert!(o.stdout.is_empty(), "no address is printed: {all}");
    assert!(
        !d.path().join("address").exists(),
        "no address file is written"
    );
}

#[test]
fn start_refuses_a_config_whose_kernel_is_missing() {
    let d = tempfile::tempdir().unwrap();
    let config = d.path().join("config.toml");
    std::fs::write(&config, "[hypervisor]\nkernel = \"/nonexistent/bzImage\"\n").unwrap();
    let o = shim(
        &config,
        d.path(),
        &["-namespace", "t", "-id", "pod1", "-address", "/x", "start"],
    );
    let all = text(&o);
    assert!(!o.status.success(), "{all}");
    assert!(all.contains(":2: key `hypervisor.kernel`"), "{all}");
    assert!(all.contains("/nonexistent/bzImage does not exist"), "{all}");
}

#[test]
fn delete_stops_nothing_live_and_removes_a_dead_shims_pod_dir() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let config = d.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[runtime]\nrun_dir = \"{}\"\n", run.display()),
    )
    .unwrap();
    // What a shim that died leaves: the pod dir with its VM dir, no VMM.
    let pod = run.join("pods").join("pod1");
    std::fs::create_dir_all(pod.join("vm")).unwrap();
    std::fs::write(pod.join("vm").join("console.log"), "guest said bye\n").unwrap();
    // A pod this delete is not about stays.
    let other = run.join("pods").join("pod2");
    std::fs::create_dir_all(&other).unwrap();

    let bundle = d.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let o = shim(
        &config,
        &bundle,
        &[
            "-namespace",
            "t",
            "-id",
            "pod1",
            "-bundle",
            bundle.to_str().unwrap(),
            "delete",
        ],
    );
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    assert!(!pod.exists(), "the dead pod's dir is removed: {all}");
    assert!(other.exists(), "another pod's dir is left alone");
    // The DeleteResponse (protobuf): field 2, exit_status 137, is in it.
    assert!(
        o.stdout.windows(2).any(|w| w == [0x10, 137]),
        "exit status 137 in the response: {:?}",
        o.stdout
    );
}

#[test]
fn delete_refuses_to_touch_paths_outside_the_run_dir() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let config = d.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[runtime]\nrun_dir = \"{}\"\n", run.display()),
    )
    .unwrap();
    let victim = d.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::create_dir_all(run.join("pods")).unwrap();
    let bundle = d.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let o = shim(
        &config,
        &bundle,
        &[
            "-namespace",
            "t",
            "-id",
            "../../victim",
            "-bundle",
            bundle.to_str().unwrap(),
            "delete",
        ],
    );
    assert!(
        victim.exists(),
        "a traversing id removed a dir: {}",
        text(&o)
    );
}

#[test]
fn vmm_serve_refuses_a_missing_or_bad_spec_by_name() {
    let o = Command::new(BIN).arg("vmm-serve").output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("usage: containerd-shim-cloister-v2 vmm-serve VMM.JSON"));

    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("vmm.json");
    let o = Command::new(BIN)
        .arg("vmm-serve")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(&format!("vmm-serve: {}", missing.display())));

    std::fs::write(&missing, b"{\"qemu\": 7}").unwrap();
    let o = Command::new(BIN)
        .arg("vmm-serve")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains(&format!("vmm-serve: {}", missing.display())));
}
