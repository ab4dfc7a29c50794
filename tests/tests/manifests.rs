//! The deploy/ manifests parse into the Kubernetes API types, and the
//! containerd snippet names the shim and the snapshotter the binaries serve.
mod common;

use common::repo_root;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_runtime_class_names_the_cloister_handler_and_its_measured_overhead() {
    let rc: RuntimeClass =
        serde_yaml::from_str(&read("deploy/kubernetes/runtimeclass.yaml")).unwrap();
    assert_eq!(rc.metadata.name.as_deref(), Some("cloister"));
    assert_eq!(rc.handler, "cloister");
    let fixed = rc
        .overhead
        .and_then(|o| o.pod_fixed)
        .expect("overhead.podFixed");
    assert_eq!(fixed.get("memory"), Some(&Quantity("256Mi".into())));
    assert!(fixed.contains_key("cpu"));
    let sel = rc
        .scheduling
        .and_then(|s| s.node_selector)
        .expect("a node selector");
    assert_eq!(
        sel.get("cloister.dev/runtime").map(String::as_str),
        Some("true")
    );
}

#[test]
fn the_example_pod_uses_the_runtime_class_and_carries_initdata() {
    let pod: Pod =
        serde_yaml::from_str(&read("deploy/kubernetes/examples/confidential-pod.yaml")).unwrap();
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.runtime_class_name.as_deref(), Some("cloister"));
    let ann = pod.metadata.annotations.expect("annotations");
    assert!(ann.contains_key("cloister.dev/initdata"));
    assert!(spec.containers[0]
        .image
        .as_deref()
        .unwrap()
        .contains("@sha256:"));
}

#[test]
fn the_containerd_snippet_wires_the_shim_and_the_guest_pull_snapshotter() {
    let t: toml::Table = toml::from_str(&read("deploy/containerd/config.toml")).unwrap();
    let cri = &t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"];
    assert_eq!(cri["snapshotter"].as_str(), Some("cloister"));
    assert_eq!(cri["disable_snapshot_annotations"].as_bool(), Some(false));
    let rt = &cri["runtimes"]["cloister"];
    // containerd turns io.containerd.cloister.v2 into containerd-shim-cloister-v2.
    assert_eq!(
        rt["runtime_type"].as_str(),
        Some("io.containerd.cloister.v2")
    );
    let pa: Vec<&str> = rt["pod_annotations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        pa.contains(&"cloister.dev/*") && pa.contains(&"io.katacontainers.*"),
        "{pa:?}"
    );
    let proxy = &t["proxy_plugins"]["cloister"];
    assert_eq!(proxy["type"].as_str(), Some("snapshot"));
    // The address the snapshotter listens on by default.
    let main = read("host/snapshotter/src/main.rs");
    let addr = proxy["address"].as_str().unwrap();
    assert!(
        main.contains(&format!("default_value = \"{addr}\"")),
        "{addr}"
    );
}

#[test]
fn the_daemonset_installs_on_the_runtime_class_nodes_and_uninstalls_on_stop() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let ds: DaemonSet =
        serde_yaml::from_str(&read("deploy/kubernetes/cloister-deploy.yaml")).unwrap();
    let spec = ds.spec.expect("spec");
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    assert_eq!(
        spec.selector.match_labels, labels,
        "the selector matches the pod template"
    );
    let pod = spec.template.spec.expect("pod spec");
    // The same nodes the RuntimeClass schedules cloister pods on.
    let rc: RuntimeClass =
        serde_yaml::from_str(&read("deploy/kubernetes/runtimeclass.yaml")).unwrap();
    assert_eq!(
        pod.node_selector,
        rc.scheduling.and_then(|s| s.node_selector)
    );
    assert_eq!(
        pod.host_pid,
        Some(true),
        "systemctl on the node needs PID 1"
    );
    let host = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.host_path.as_ref().is_some_and(|h| h.path == "/"))
        .expect("the node's root as a hostPath volume");
    let c = &pod.containers[0];
    assert_eq!(
        c.security_context.as_ref().and_then(|s| s.privileged),
        Some(true)
    );
    let mount = c
        .volume_mounts
        .as_ref()
        .and_then(|m| m.iter().find(|m| m.name == host.name))
        .expect("the node's root mounted");
    let script = c.args.as_ref().expect("the install script").join("\n");
    let root = format!("--root {}", mount.mount_path);
    assert!(
        script.contains(&format!("cloister install {root}")),
        "{script}"
    );
    assert!(script.contains("--containerd-config /etc/containerd/config.toml"));
    assert!(script.contains("systemctl restart containerd"));
    // The unit the install places is the one the script starts.
    let unit = cloister_host::install::SNAPSHOTTER_UNIT;
    let unit_name = unit
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(".service");
    assert!(
        script.contains(&format!("enable --now {unit_name}")),
        "{script}"
    );
    let stop = c
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.as_ref())
        .expect("a preStop hook")
        .join(" ");
    assert!(
        stop.contains(&format!("cloister install {root} --uninstall")),
        "{stop}"
    );
    // The paths the script passes are where the image puts them.
    let image = read("deploy/image/Containerfile");
    assert!(image.contains("/opt/cloister/bin/") && image.contains("/opt/cloister/share/"));
    for f in ["vmlinuz", "initrd.img"] {
        assert!(script.contains(&format!("/opt/cloister/share/{f}")), "{f}");
        assert!(image.contains(&format!("deploy/image/{f}")), "{f}");
    }
}
