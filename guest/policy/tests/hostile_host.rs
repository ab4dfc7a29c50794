//! Hostile-host tests at the policy level: the policy generated for the
//! sample pod (testdata/pod.yaml) must deny every request that departs from
//! it. Each test starts from a request the pod really needs (checked to be
//! allowed in `baseline_*`) and changes one thing.
use cloister_policy::generate::{generate, Options};
use cloister_policy::{Decision, Policy};
use serde_json::{json, Value};

const POD: &str = include_str!("../testdata/pod.yaml");
const APP_SPEC: &str = include_str!("../testdata/app-spec.json");
const APP_IMAGE: &str =
    "registry.example/web/app@sha256:4c3f2a1e5d6b7c8a9f0e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382";

fn policy_for(manifest: &str) -> Policy {
    let g = generate(manifest, &Options::default()).expect("generate");
    Policy::new(&g.rego, None).expect("generated policy loads")
}

fn policy() -> Policy {
    policy_for(POD)
}

fn spec() -> Value {
    serde_json::from_str(APP_SPEC).unwrap()
}

/// Agent state once `app` (c1) and `sidecar` (c2) exist; the sidecar has
/// run exec e1.
fn running() -> Value {
    json!({
        "sandbox_created": true,
        "containers": {
            "c1": {"name": "app", "image": APP_IMAGE, "started": true, "execs": []},
            "c2": {"name": "sidecar", "image": "x", "started": true, "execs": ["e1"]}
        }
    })
}

fn with_state(mut input: Value, request: &str, state: Value) -> Value {
    let mut s = state;
    s["request"] = json!(request);
    input["state"] = s;
    input
}

fn create(spec: Value) -> Value {
    with_state(
        json!({"container_id": "c1", "image": APP_IMAGE, "oci_spec": spec}),
        "CreateContainerRequest",
        json!({"sandbox_created": true, "containers": {}}),
    )
}

fn exec(container: &str, exec_id: &str, args: &[&str]) -> Value {
    with_state(
        json!({
            "container_id": container,
            "exec_id": exec_id,
            "process": {"args": args, "env": [], "cwd": "/", "terminal": false, "uid": 1000, "gid": 1000}
        }),
        "ExecProcessRequest",
        running(),
    )
}

fn io(request: &str, container: &str, exec_id: &str) -> Value {
    with_state(
        json!({"container_id": container, "exec_id": exec_id, "max_len": 4096, "data": "", "rows": 24, "columns": 80, "signal": 15, "timeout_ms": 0}),
        request,
        running(),
    )
}

fn eval(p: &mut Policy, request: &str, input: &Value) -> Decision {
    p.evaluate(request, input)
}

#[track_caller]
fn assert_allowed(request: &str, input: Value) {
    let d = eval(&mut policy(), request, &input);
    assert_eq!(d, Decision::Allow, "{request} must be allowed");
}

/// Denied, and the reason mentions `needle` (the field that differed).
#[track_caller]
fn assert_denied(request: &str, input: Value, needle: &str) {
    assert_denied_by(&mut policy(), request, input, needle)
}

#[track_caller]
fn assert_denied_by(p: &mut Policy, request: &str, input: Value, needle: &str) {
    match eval(p, request, &input) {
        Decision::Allow => panic!("{request} was allowed; expected a denial about {needle}"),
        Decision::Deny { rule, reason } => {
            assert_eq!(rule, request);
            assert!(
                reason.contains(needle),
                "reason does not mention {needle:?}: {reason}"
            );
        }
    }
}

/// A CreateContainerRequest for `app` with one change to its spec.
#[track_caller]
fn deny_create(change: impl FnOnce(&mut Value), needle: &str) {
    let mut s = spec();
    change(&mut s);
    assert_denied("CreateContainerRequest", create(s), needle);
}

fn mounts(s: &mut Value) -> &mut Vec<Value> {
    s["mounts"].as_array_mut().unwrap()
}

fn mount_at<'a>(s: &'a mut Value, dest: &str) -> &'a mut Value {
    mounts(s)
        .iter_mut()
        .find(|m| m["destination"] == dest)
        .unwrap()
}

// ---------------------------------------------------------------- baselines

#[test]
fn baseline_app_container_is_allowed() {
    assert_allowed("CreateContainerRequest", create(spec()));
}

#[test]
fn baseline_lifecycle_of_known_containers_is_allowed() {
    for r in [
        "StartContainerRequest",
        "WaitProcessRequest",
        "SignalProcessRequest",
        "WriteStdinRequest",
        "CloseStdinRequest",
        "TtyWinResizeRequest",
        "ReadStdoutRequest",
        "ReadStderrRequest",
        "StatsContainerRequest",
        "RemoveContainerRequest",
    ] {
        assert_allowed(r, io(r, "c1", ""));
    }
    assert_allowed("WaitProcessRequest", io("WaitProcessRequest", "c2", "e1"));
}

#[test]
fn baseline_annotated_and_probe_exec_are_allowed() {
    assert_allowed(
        "ExecProcessRequest",
        exec("c2", "e2", &["sh", "-c", "echo ok"]),
    );
    assert_allowed(
        "ExecProcessRequest",
        exec("c2", "e3", &["cat", "/tmp/ready"]),
    );
}

#[test]
fn baseline_information_requests_are_allowed() {
    for r in [
        "HealthCheckRequest",
        "GetGuestDetailsRequest",
        "GetMetricsRequest",
        "DestroySandboxRequest",
    ] {
        assert_allowed(r, with_state(json!({}), r, running()));
    }
}

// ------------------------------------------------------------ image, args

#[test]
fn other_image_is_denied() {
    let mut i = create(spec());
    i["image"] = json!("registry.example/evil/app@sha256:4c3f2a1e5d6b7c8a9f0e1d2c3b4a5968778695a4b3c2d1e0f9e8d7c6b5a49382");
    assert_denied("CreateContainerRequest", i, "image");
}

#[test]
fn other_digest_is_denied() {
    let mut i = create(spec());
    i["image"] = json!(APP_IMAGE.replace("4c3f", "0000"));
    assert_denied("CreateContainerRequest", i, "image");
}

#[test]
fn tag_instead_of_digest_is_denied() {
    let mut i = create(spec());
    i["image"] = json!("registry.example/web/app:latest");
    assert_denied("CreateContainerRequest", i, "image");
}

#[test]
fn other_command_is_denied() {
    deny_create(
        |s| s["process"]["args"][0] = json!("/bin/sh"),
        "oci_spec.process.args",
    );
}

#[test]
fn extra_args_are_denied() {
    deny_create(
        |s| {
            s["process"]["args"]
                .as_array_mut()
                .unwrap()
                .push(json!("--debug"))
        },
        "oci_spec.process.args",
    );
}

#[test]
fn empty_args_are_denied() {
    deny_create(
        |s| s["process"]["args"] = json!([]),
        "oci_spec.process.args",
    );
}

#[test]
fn other_working_directory_is_denied() {
    deny_create(|s| s["process"]["cwd"] = json!("/"), "oci_spec.process.cwd");
}

#[test]
fn terminal_is_denied_when_the_pod_has_none() {
    deny_create(
        |s| s["process"]["terminal"] = json!(true),
        "oci_spec.process.terminal",
    );
}

// -------------------------------------------------------------------- env

#[test]
fn ld_preload_is_denied() {
    deny_create(
        |s| {
            s["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!("LD_PRELOAD=/tmp/x.so"))
        },
        "LD_PRELOAD",
    );
}

#[test]
fn changed_literal_env_value_is_denied() {
    deny_create(|s| s["process"]["env"][0] = json!("MODE=debug"), "MODE=");
}

#[test]
fn missing_literal_env_is_denied() {
    deny_create(
        |s| {
            s["process"]["env"].as_array_mut().unwrap().remove(0);
        },
        "MODE=production",
    );
}

#[test]
fn path_from_the_host_is_denied() {
    deny_create(
        |s| {
            s["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!("PATH=/tmp/evil:/usr/bin"))
        },
        "PATH=",
    );
}

#[test]
fn oversized_env_entry_is_denied() {
    deny_create(
        |s| {
            s["process"]["env"]
                .as_array_mut()
                .unwrap()
                .push(json!(format!("HOSTNAME={}", "a".repeat(1 << 20))))
        },
        "oci_spec.process.env",
    );
}

// ----------------------------------------------------------------- mounts

#[test]
fn host_root_bind_mount_is_denied() {
    deny_create(
        |s| {
            mounts(s).push(json!({"destination": "/host", "type": "bind", "source": "/", "options": ["rbind", "rw"]}))
        },
        "/host",
    );
}

#[test]
fn volume_destination_from_another_source_is_denied() {
    deny_create(
        |s| mount_at(s, "/data")["source"] = json!("/etc"),
        "oci_spec.mounts",
    );
}

#[test]
fn volume_source_escaping_with_dotdot_is_denied() {
    deny_create(
        |s| {
            mount_at(s, "/data")["source"] = json!("/run/cloister/sandbox/volumes/data/../../../..")
        },
        "oci_spec.mounts",
    );
}

#[test]
fn another_volume_on_a_destination_is_denied() {
    deny_create(
        |s| mount_at(s, "/data")["source"] = json!("/run/cloister/sandbox/volumes/config"),
        "oci_spec.mounts",
    );
}

#[test]
fn proc_bind_mounted_read_write_is_denied() {
    deny_create(
        |s| {
            mounts(s).push(json!({"destination": "/host-proc", "type": "bind", "source": "/proc", "options": ["rbind", "rw"]}))
        },
        "/host-proc",
    );
}

#[test]
fn proc_from_a_host_path_is_denied() {
    deny_create(
        |s| mount_at(s, "/proc")["source"] = json!("/proc/1/root/proc"),
        "oci_spec.mounts",
    );
}

#[test]
fn sys_read_write_is_denied() {
    deny_create(
        |s| mount_at(s, "/sys")["options"] = json!(["nosuid", "noexec", "nodev"]),
        "/sys",
    );
}

#[test]
fn sys_with_ro_then_rw_is_denied() {
    deny_create(
        |s| {
            mount_at(s, "/sys")["options"]
                .as_array_mut()
                .unwrap()
                .push(json!("rw"))
        },
        "/sys",
    );
}

#[test]
fn cgroup_tree_read_write_is_denied() {
    deny_create(
        |s| mount_at(s, "/sys/fs/cgroup")["options"] = json!(["nosuid", "noexec", "nodev", "rw"]),
        "/sys/fs/cgroup",
    );
}

#[test]
fn read_only_volume_made_writable_is_denied() {
    deny_create(
        |s| mount_at(s, "/etc/app")["options"] = json!(["rbind", "rprivate", "rw"]),
        "/etc/app",
    );
}

#[test]
fn missing_volume_mount_is_denied() {
    deny_create(
        |s| mounts(s).retain(|m| m["destination"] != "/data"),
        "/data",
    );
}

#[test]
fn mount_without_type_is_denied() {
    deny_create(
        |s| {
            mount_at(s, "/data").as_object_mut().unwrap().remove("type");
        },
        "oci_spec.mounts",
    );
}

// ----------------------------------------------------------- capabilities

#[test]
fn added_sys_admin_is_denied() {
    deny_create(
        |s| {
            for k in ["bounding", "effective", "permitted"] {
                s["process"]["capabilities"][k]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("CAP_SYS_ADMIN"));
            }
        },
        "capabilities",
    );
}

#[test]
fn default_capability_set_instead_of_dropped_is_denied() {
    deny_create(
        |s| {
            s["process"]["capabilities"]["bounding"] =
                json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SETUID"])
        },
        "capabilities.bounding",
    );
}

#[test]
fn ambient_capabilities_are_denied() {
    deny_create(
        |s| s["process"]["capabilities"]["ambient"] = json!(["CAP_NET_BIND_SERVICE"]),
        "capabilities.ambient",
    );
}

#[test]
fn inheritable_capabilities_are_denied() {
    deny_create(
        |s| s["process"]["capabilities"]["inheritable"] = json!(["CAP_NET_BIND_SERVICE"]),
        "capabilities.inheritable",
    );
}

#[test]
fn effective_set_differing_from_bounding_is_denied() {
    deny_create(
        |s| {
            s["process"]["capabilities"]["effective"] =
                json!(["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"])
        },
        "capabilities.effective",
    );
}

#[test]
fn privileged_spec_is_denied() {
    deny_create(
        |s| {
            let all: Vec<Value> = cloister_policy::generate::defaults::ALL_CAPS
                .iter()
                .map(|c| json!(c))
                .collect();
            for k in ["bounding", "effective", "permitted"] {
                s["process"]["capabilities"][k] = json!(all);
            }
            mount_at(s, "/sys")["options"] = json!(["nosuid", "noexec", "nodev", "rw"]);
            s["linux"]["maskedPaths"] = json!([]);
            s["linux"]["readonlyPaths"] = json!([]);
        },
        "CAP_SYS_ADMIN",
    );
}

#[test]
fn unmasked_proc_kcore_is_denied() {
    deny_create(
        |s| {
            s["linux"]["maskedPaths"]
                .as_array_mut()
                .unwrap()
                .retain(|p| p != "/proc/kcore")
        },
        "/proc/kcore",
    );
}

#[test]
fn writable_proc_sys_is_denied() {
    deny_create(
        |s| {
            s["linux"]["readonlyPaths"]
                .as_array_mut()
                .unwrap()
                .retain(|p| p != "/proc/sys")
        },
        "readonlyPaths",
    );
}

#[test]
fn privilege_escalation_is_denied() {
    deny_create(
        |s| s["process"]["noNewPrivileges"] = json!(false),
        "noNewPrivileges",
    );
}

#[test]
fn writable_root_filesystem_is_denied() {
    deny_create(
        |s| s["root"]["readonly"] = json!(false),
        "oci_spec.root.readonly",
    );
}

// ------------------------------------------------------------------- user

#[test]
fn root_user_is_denied() {
    deny_create(
        |s| s["process"]["user"]["uid"] = json!(0),
        "oci_spec.process.user.uid",
    );
}

#[test]
fn other_group_is_denied() {
    deny_create(
        |s| s["process"]["user"]["gid"] = json!(0),
        "oci_spec.process.user.gid",
    );
}

#[test]
fn extra_supplementary_group_is_denied() {
    deny_create(
        |s| {
            s["process"]["user"]["additionalGids"]
                .as_array_mut()
                .unwrap()
                .push(json!(0))
        },
        "additionalGids",
    );
}

// ------------------------------------------------------------- namespaces

#[test]
fn missing_pid_namespace_is_denied() {
    deny_create(
        |s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "pid")
        },
        "namespaces",
    );
}

#[test]
fn missing_network_namespace_is_denied() {
    deny_create(
        |s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .retain(|n| n["type"] != "network")
        },
        "namespaces",
    );
}

#[test]
fn joining_the_agents_namespace_is_denied() {
    deny_create(
        |s| s["linux"]["namespaces"][4] = json!({"type": "network", "path": "/proc/1/ns/net"}),
        "/proc/1/ns/net",
    );
}

#[test]
fn added_user_namespace_is_denied() {
    deny_create(
        |s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "user"}))
        },
        "namespaces",
    );
}

// ---------------------------------------------------------- sysctl, devices

#[test]
fn added_sysctl_is_denied() {
    deny_create(
        |s| s["linux"]["sysctl"]["kernel.core_pattern"] = json!("|/tmp/x"),
        "sysctl",
    );
}

#[test]
fn changed_sysctl_value_is_denied() {
    deny_create(
        |s| s["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"] = json!("1024"),
        "sysctl",
    );
}

#[test]
fn added_device_is_denied() {
    deny_create(
        |s| {
            s["linux"]["devices"] =
                json!([{"path": "/dev/vda", "type": "b", "major": 254, "minor": 0}])
        },
        "/dev/vda",
    );
}

#[test]
fn device_cgroup_allowing_everything_is_denied() {
    deny_create(
        |s| {
            s["linux"]["resources"]["devices"]
                .as_array_mut()
                .unwrap()
                .push(json!({"allow": true, "access": "rwm"}))
        },
        "resources.devices",
    );
}

#[test]
fn block_device_cgroup_rule_is_denied() {
    deny_create(
        |s| {
            s["linux"]["resources"]["devices"]
                .as_array_mut()
                .unwrap()
                .push(json!({"allow": true, "type": "b", "major": 254, "minor": 0, "access": "rw"}))
        },
        "resources.devices",
    );
}

#[test]
fn hooks_are_denied() {
    deny_create(
        |s| {
            s["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "id"]}]})
        },
        "oci_spec.hooks",
    );
}

// ------------------------------------------------------------- identities

#[test]
fn unknown_container_name_is_denied() {
    deny_create(
        |s| s["annotations"]["io.kubernetes.cri.container-name"] = json!("miner"),
        "container-name",
    );
}

#[test]
fn missing_container_name_annotation_is_denied() {
    deny_create(|s| s["annotations"] = json!({}), "container-name");
}

#[test]
fn path_like_container_id_is_denied() {
    let mut i = create(spec());
    i["container_id"] = json!("../../etc");
    assert_denied("CreateContainerRequest", i, "container_id");
}

#[test]
fn oversized_container_id_is_denied() {
    let mut i = create(spec());
    i["container_id"] = json!("a".repeat(1 << 20));
    assert_denied("CreateContainerRequest", i, "container_id");
}

#[test]
fn reused_container_id_is_denied() {
    let mut i = create(spec());
    i["state"] = running();
    i["state"]["containers"]
        .as_object_mut()
        .unwrap()
        .remove("c2");
    i["state"]["containers"]["c1"]["name"] = json!("old");
    i["state"]["request"] = json!("CreateContainerRequest");
    assert_denied("CreateContainerRequest", i, "an id not in use");
}

#[test]
fn second_container_with_the_same_name_is_denied() {
    let mut i = create(spec());
    i["container_id"] = json!("c9");
    i["state"] = running();
    i["state"]["request"] = json!("CreateContainerRequest");
    assert_denied("CreateContainerRequest", i, "a container not yet created");
}

// ------------------------------------------------------------------- exec

#[test]
fn exec_into_app_is_denied() {
    assert_denied(
        "ExecProcessRequest",
        exec("c1", "e9", &["sh"]),
        "process.args",
    );
}

#[test]
fn exec_with_other_args_is_denied() {
    assert_denied(
        "ExecProcessRequest",
        exec("c2", "e9", &["sh", "-c", "cat /etc/shadow"]),
        "process.args",
    );
}

#[test]
fn exec_as_root_is_denied() {
    let mut i = exec("c2", "e9", &["cat", "/tmp/ready"]);
    i["process"]["uid"] = json!(0);
    assert_denied("ExecProcessRequest", i, "process.uid");
}

#[test]
fn exec_with_ld_preload_is_denied() {
    let mut i = exec("c2", "e9", &["cat", "/tmp/ready"]);
    i["process"]["env"] = json!(["LD_PRELOAD=/tmp/x.so"]);
    assert_denied("ExecProcessRequest", i, "LD_PRELOAD");
}

#[test]
fn exec_in_unknown_container_is_denied() {
    assert_denied(
        "ExecProcessRequest",
        exec("nope", "e9", &["cat", "/tmp/ready"]),
        "",
    );
}

#[test]
fn exec_reusing_an_exec_id_is_denied() {
    assert_denied(
        "ExecProcessRequest",
        exec("c2", "e1", &["cat", "/tmp/ready"]),
        "exec_id",
    );
}

#[test]
fn exec_with_oversized_exec_id_is_denied() {
    let id = "e".repeat(70_000);
    assert_denied(
        "ExecProcessRequest",
        exec("c2", &id, &["cat", "/tmp/ready"]),
        "exec_id",
    );
}

#[test]
fn exec_without_process_is_denied() {
    let mut i = exec("c2", "e9", &["cat", "/tmp/ready"]);
    i["process"] = Value::Null;
    assert_denied("ExecProcessRequest", i, "");
}

// ------------------------------------------------------------------ stdio

fn quiet_pod() -> String {
    POD.replace(
        "policy.cloister.dev/exec:",
        "policy.cloister.dev/read-output: \"false\"\n    policy.cloister.dev/exec:",
    )
}

#[test]
fn reading_stdout_is_denied_when_the_pod_forbids_it() {
    let mut p = policy_for(&quiet_pod());
    assert_denied_by(
        &mut p,
        "ReadStdoutRequest",
        io("ReadStdoutRequest", "c1", ""),
        "read-output",
    );
}

#[test]
fn reading_stderr_of_an_exec_is_denied_when_the_pod_forbids_it() {
    let mut p = policy_for(&quiet_pod());
    assert_denied_by(
        &mut p,
        "ReadStderrRequest",
        io("ReadStderrRequest", "c2", "e1"),
        "read-output",
    );
}

#[test]
fn quiet_pod_still_allows_writing_stdin() {
    let mut p = policy_for(&quiet_pod());
    assert_eq!(
        p.evaluate("WriteStdinRequest", &io("WriteStdinRequest", "c1", "")),
        Decision::Allow
    );
}

#[test]
fn reading_stdout_of_an_unknown_container_is_denied() {
    assert_denied(
        "ReadStdoutRequest",
        io("ReadStdoutRequest", "c7", ""),
        "not a container of this pod",
    );
}

#[test]
fn every_per_container_request_with_an_unknown_id_is_denied() {
    for r in [
        "StartContainerRequest",
        "RemoveContainerRequest",
        "StatsContainerRequest",
        "SignalProcessRequest",
        "WaitProcessRequest",
        "WriteStdinRequest",
        "CloseStdinRequest",
        "TtyWinResizeRequest",
        "ReadStderrRequest",
    ] {
        assert_denied(r, io(r, "ghost", ""), "not a container of this pod");
    }
}

#[test]
fn signal_to_an_unknown_exec_is_denied() {
    assert_denied(
        "SignalProcessRequest",
        io("SignalProcessRequest", "c1", "e1"),
        "exec_id",
    );
}

// ---------------------------------------------------------------- control

#[test]
fn set_policy_is_denied() {
    let i = with_state(
        json!({"policy": "package agent_policy\nExecProcessRequest := true", "data_json": ""}),
        "SetPolicyRequest",
        running(),
    );
    assert_denied("SetPolicyRequest", i, "SetPolicy is not allowed");
}

#[test]
fn second_create_sandbox_is_denied() {
    let i = with_state(
        json!({"sandbox_id": "x", "hostname": "x", "initdata": "version = \"0.1.0\""}),
        "CreateSandboxRequest",
        running(),
    );
    assert_denied("CreateSandboxRequest", i, "accepted once");
}

#[test]
fn requests_the_policy_does_not_know_are_denied() {
    assert_denied(
        "PullImageRequest",
        json!({}),
        "does not define PullImageRequest",
    );
}
