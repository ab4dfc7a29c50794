//! `cloister policy generate`: a policy that allows exactly the containers
//! of one Kubernetes workload (Pod, Deployment, StatefulSet, Job, DaemonSet).
//!
//! The output is one self-contained Rego module: the fixed rules in
//! `rules.rego` followed by `policy_data`, the pod as the runtime will
//! present it (image by digest, args, env, mounts, security context,
//! namespaces, sysctls, devices, allowed exec commands).
pub mod defaults;
pub mod k8s;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{json, Value};

use self::defaults::regex_escape;
use self::k8s::{Container, Metadata, Object, PodSpec, WorkloadSpec};

/// The fixed rules of every generated policy.
pub const RULES: &str = include_str!("rules.rego");

/// Largest manifest accepted, in bytes.
const MAX_MANIFEST: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("manifest is {got} bytes, more than the {max}-byte limit")]
    TooLarge { got: usize, max: usize },
    #[error("manifest is not valid YAML: {0}")]
    Yaml(String),
    #[error("no Pod, Deployment, StatefulSet, Job or DaemonSet in the manifest (found kinds: {found:?})")]
    NoWorkload { found: Vec<String> },
    #[error("the manifest has {0} workloads; a policy covers one pod, generate one per workload")]
    SeveralWorkloads(usize),
    #[error("{kind} {name}: {message}")]
    Spec {
        kind: String,
        name: String,
        message: String,
    },
    #[error("container {container}: image {image:?} is not pinned by digest (name@sha256:…); pass --allow-tags to pin the tag instead")]
    NoDigest { container: String, image: String },
    #[error("annotation {annotation}: {message}")]
    Annotation {
        annotation: &'static str,
        message: String,
    },
}

/// Choices the manifest cannot express.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Accept images referenced by tag (pinned by the exact reference).
    pub allow_tags: bool,
}

#[derive(Debug, Clone)]
pub struct Generated {
    /// The complete Rego module.
    pub rego: String,
    /// The `policy_data` object in it.
    pub data: Value,
    /// Things the author should know (tags, envFrom, hostPath, …).
    pub warnings: Vec<String>,
}

/// Generates the policy for the single workload in `manifest` (YAML, one
/// or more documents).
pub fn generate(manifest: &str, opts: &Options) -> Result<Generated, GenerateError> {
    if manifest.len() > MAX_MANIFEST {
        return Err(GenerateError::TooLarge {
            got: manifest.len(),
            max: MAX_MANIFEST,
        });
    }
    let mut found = Vec::new();
    let mut workloads = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(manifest) {
        let v =
            serde_yaml::Value::deserialize(doc).map_err(|e| GenerateError::Yaml(e.to_string()))?;
        if v.is_null() {
            continue;
        }
        let obj: Object =
            serde_yaml::from_value(v).map_err(|e| GenerateError::Yaml(e.to_string()))?;
        found.push(obj.kind.clone());
        if matches!(
            obj.kind.as_str(),
            "Pod" | "Deployment" | "StatefulSet" | "Job" | "DaemonSet"
        ) {
            workloads.push(obj);
        }
    }
    let obj = match workloads.len() {
        0 => return Err(GenerateError::NoWorkload { found }),
        1 => workloads.remove(0),
        n => return Err(GenerateError::SeveralWorkloads(n)),
    };
    let spec_err = |message: String| GenerateError::Spec {
        kind: obj.kind.clone(),
        name: obj.metadata.name.clone(),
        message,
    };
    let raw = obj
        .spec
        .clone()
        .ok_or_else(|| spec_err("has no spec".into()))?;
    let (meta, pod): (Metadata, PodSpec) = if obj.kind == "Pod" {
        let pod = serde_yaml::from_value(raw).map_err(|e| spec_err(e.to_string()))?;
        (obj.metadata.clone(), pod)
    } else {
        let w: WorkloadSpec = serde_yaml::from_value(raw).map_err(|e| spec_err(e.to_string()))?;
        // Annotations on the pod template reach the pod; the workload's own
        // annotations do not, but authors often put them there: merge both.
        let mut m = w.template.metadata;
        for (k, v) in &obj.metadata.annotations {
            m.annotations.entry(k.clone()).or_insert_with(|| v.clone());
        }
        (m, w.template.spec)
    };
    if pod.containers.is_empty() {
        return Err(spec_err("has no containers".into()));
    }
    let mut warnings = Vec::new();
    let exec = exec_allowlist(&meta)?;
    let read_output = match meta
        .annotations
        .get(k8s::READ_OUTPUT_ANNOTATION)
        .map(String::as_str)
    {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(GenerateError::Annotation {
                annotation: k8s::READ_OUTPUT_ANNOTATION,
                message: format!("expected \"true\" or \"false\", got {other:?}"),
            })
        }
    };
    let host_paths: BTreeSet<&str> = pod
        .volumes
        .iter()
        .filter(|v| v.host_path.is_some())
        .map(|v| v.name.as_str())
        .collect();
    let mut containers = Vec::new();
    let mut seen = BTreeSet::new();
    for c in pod.init_containers.iter().chain(&pod.containers) {
        if !seen.insert(c.name.as_str()) {
            return Err(spec_err(format!("two containers are named {:?}", c.name)));
        }
        containers.push(container(
            &pod,
            c,
            &exec,
            read_output,
            opts,
            &host_paths,
            &mut warnings,
        )?);
    }
    let data = json!({
        "containers": containers,
        "maskedPaths": defaults::MASKED_PATHS,
        "readonlyPaths": defaults::READONLY_PATHS,
        "device_cgroup_allow": defaults::device_cgroup_allow(),
    });
    let rego = format!(
        "# Generated by `cloister policy generate` from {} {:?}. Regenerate rather\n# than edit: the rules are fixed and the pod is `policy_data` at the end.\n{}\npolicy_data := {}\n",
        obj.kind,
        obj.metadata.name,
        RULES,
        serde_json::to_string_pretty(&data).expect("JSON values serialize")
    );
    Ok(Generated {
        rego,
        data,
        warnings,
    })
}

/// Parses the exec annotation: `{"<container>"|"*": [["cmd", …], …]}`.
fn exec_allowlist(meta: &Metadata) -> Result<BTreeMap<String, Vec<Vec<String>>>, GenerateError> {
    let Some(text) = meta.annotations.get(k8s::EXEC_ANNOTATION) else {
        return Ok(BTreeMap::new());
    };
    serde_json::from_str(text).map_err(|e| GenerateError::Annotation {
        annotation: k8s::EXEC_ANNOTATION,
        message: format!(
            "expected a JSON object of container name to a list of commands (lists of strings): {e}"
        ),
    })
}

fn container(
    pod: &PodSpec,
    c: &Container,
    exec: &BTreeMap<String, Vec<Vec<String>>>,
    read_output: bool,
    opts: &Options,
    host_paths: &BTreeSet<&str>,
    warnings: &mut Vec<String>,
) -> Result<Value, GenerateError> {
    if !c.image.contains("@sha256:") {
        if !opts.allow_tags {
            return Err(GenerateError::NoDigest {
                container: c.name.clone(),
                image: c.image.clone(),
            });
        }
        warnings.push(format!(
            "container {}: image {} is pinned by tag, which the registry can move",
            c.name, c.image
        ));
    }
    let sc = &c.security_context;
    let privileged = sc.privileged;
    if privileged {
        warnings.push(format!(
            "container {} is privileged: it gets every capability, rw /sys and the guest's devices",
            c.name
        ));
    }
    // Arguments: command then args, as the runtime writes process.args. An
    // empty list means "the image's entrypoint", which the agent resolves
    // from the verified image.
    let args: Vec<&String> = c.command.iter().chain(&c.args).collect();

    let mut exact = Vec::new();
    let mut patterns = defaults::runtime_env(pod.enable_service_links != Some(false), c.tty);
    for e in &c.env {
        match (&e.value, &e.value_from) {
            (_, Some(_)) => patterns.push(format!("^{}=", regex_escape(&e.name))),
            (v, None) => exact.push(format!("{}={}", e.name, v.as_deref().unwrap_or(""))),
        }
    }
    if !c.env_from.is_empty() {
        warnings.push(format!(
            "container {}: envFrom imports names the manifest does not list; the policy allows any variable name except LD_*",
            c.name
        ));
        patterns.push(
            "^(?:[A-KM-Za-z_][A-Za-z0-9_]*|L|L[A-CE-Za-z0-9_][A-Za-z0-9_]*|LD|LD[A-Za-z0-9][A-Za-z0-9_]*)="
                .into(),
        );
    }

    let mut mounts = defaults::standard_mounts(privileged);
    if pod.automount_service_account_token != Some(false) {
        mounts.push(defaults::service_account_mount());
    }
    for vm in &c.volume_mounts {
        if host_paths.contains(vm.name.as_str()) {
            warnings.push(format!(
                "container {}: volume {} is a hostPath: the host chooses its content",
                c.name, vm.name
            ));
        }
        mounts.push(defaults::volume_mount(
            &vm.mount_path,
            &vm.name,
            &vm.sub_path,
            vm.read_only,
        ));
    }

    // Keyed by destination (see `mount_allowed` in rules.rego).
    let mut by_dest: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for m in mounts {
        let dest = m["destination"].as_str().unwrap_or_default().to_string();
        by_dest.entry(dest).or_default().push(m);
    }
    let capabilities = capabilities(c)?;
    let mut namespaces = vec!["cgroup", "mount", "uts"];
    if !pod.host_network {
        namespaces.push("network");
    }
    if !pod.host_ipc {
        namespaces.push("ipc");
    }
    if !pod.host_pid {
        namespaces.push("pid");
    }
    namespaces.sort_unstable();

    let uid = sc
        .run_as_user
        .or(pod.security_context.run_as_user)
        .unwrap_or(0);
    let gid = sc
        .run_as_group
        .or(pod.security_context.run_as_group)
        .unwrap_or(0);
    let mut additional_gids: BTreeSet<u32> = pod
        .security_context
        .supplemental_groups
        .iter()
        .copied()
        .collect();
    additional_gids.extend(pod.security_context.fs_group);
    additional_gids.insert(gid);

    let sysctls: BTreeMap<&str, &str> = pod
        .security_context
        .sysctls
        .iter()
        .map(|s| (s.name.as_str(), s.value.as_str()))
        .collect();

    let mut exec_cmds: Vec<Vec<String>> = Vec::new();
    for key in [c.name.as_str(), "*"] {
        exec_cmds.extend(exec.get(key).cloned().unwrap_or_default());
    }
    for p in [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
        .into_iter()
        .flatten()
    {
        if let Some(e) = &p.exec {
            exec_cmds.push(e.command.clone());
        }
    }
    exec_cmds.dedup();

    // Kubernetes: privilege escalation is allowed unless turned off (and
    // always for privileged containers).
    let no_new_privileges = !privileged && sc.allow_privilege_escalation == Some(false);

    Ok(json!({
        "name": c.name,
        "image": c.image,
        "args": args,
        "cwd": c.working_dir,
        "tty": c.tty,
        "env": {"exact": exact, "patterns": patterns},
        "mounts": by_dest,
        "capabilities": capabilities,
        "privileged": privileged,
        "uid": uid,
        "gid": gid,
        "additional_gids": additional_gids,
        "readonly_rootfs": sc.read_only_root_filesystem,
        "no_new_privileges": no_new_privileges,
        "namespaces": namespaces,
        "sysctls": sysctls,
        "exec": exec_cmds,
        "read_output": read_output,
    }))
}

/// The effective capability set: containerd's defaults, `add`, `drop`
/// (both accept `ALL`), or everything for privileged containers.
fn capabilities(c: &Container) -> Result<Vec<String>, GenerateError> {
    let sc = &c.security_context;
    if sc.privileged {
        return Ok(defaults::ALL_CAPS.iter().map(|s| s.to_string()).collect());
    }
    let norm = |s: &str| -> Result<String, GenerateError> {
        let up = s.to_ascii_uppercase();
        let name = if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        };
        if defaults::ALL_CAPS.contains(&name.as_str()) || name == "CAP_ALL" {
            Ok(name)
        } else {
            Err(GenerateError::Spec {
                kind: "container".into(),
                name: c.name.clone(),
                message: format!("unknown capability {s:?}"),
            })
        }
    };
    let mut set: BTreeSet<String> = defaults::DEFAULT_CAPS
        .iter()
        .map(|s| s.to_string())
        .collect();
    for a in &sc.capabilities.add {
        let n = norm(a)?;
        if n == "CAP_ALL" {
            set.extend(defaults::ALL_CAPS.iter().map(|s| s.to_string()));
        } else {
            set.insert(n);
        }
    }
    for d in &sc.capabilities.drop {
        let n = norm(d)?;
        if n == "CAP_ALL" {
            set.clear();
        } else {
            set.remove(&n);
        }
    }
    // `drop: [ALL]` with `add: [X]` keeps X (Kubernetes applies add after
    // drop ALL).
    if sc
        .capabilities
        .drop
        .iter()
        .any(|d| d.eq_ignore_ascii_case("ALL"))
    {
        for a in &sc.capabilities.add {
            let n = norm(a)?;
            if n != "CAP_ALL" {
                set.insert(n);
            }
        }
    }
    Ok(set.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  annotations:
    policy.cloister.dev/read-output: "false"
spec:
  replicas: 2
  template:
    metadata:
      annotations:
        policy.cloister.dev/exec: '{"*": [["date"]]}'
    spec:
      hostNetwork: true
      containers:
        - name: api
          image: r.example/api@sha256:abcd
          args: ["serve"]
          securityContext:
            capabilities: {add: ["SYS_TIME"], drop: ["NET_RAW"]}
"#;

    fn first(g: &Generated) -> &Value {
        &g.data["containers"][0]
    }

    #[test]
    fn deployment_template_is_used_with_its_annotations() {
        let g = generate(DEPLOYMENT, &Options::default()).unwrap();
        let c = first(&g);
        assert_eq!(c["name"], "api");
        assert_eq!(c["args"], json!(["serve"]));
        assert_eq!(c["exec"], json!([["date"]]));
        assert_eq!(c["read_output"], json!(false));
        // hostNetwork: no network namespace of its own.
        assert_eq!(
            c["namespaces"],
            json!(["cgroup", "ipc", "mount", "pid", "uts"])
        );
        let caps: Vec<&str> = c["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            caps.contains(&"CAP_SYS_TIME")
                && !caps.contains(&"CAP_NET_RAW")
                && caps.contains(&"CAP_CHOWN")
        );
        // The service-account token is mounted by default.
        assert!(c["mounts"]["/var/run/secrets/kubernetes.io/serviceaccount"].is_array());
        assert!(g
            .rego
            .starts_with("# Generated by `cloister policy generate` from Deployment \"api\""));
        crate::Policy::new(&g.rego, None).unwrap();
    }

    #[test]
    fn every_workload_kind_is_accepted() {
        for kind in ["StatefulSet", "Job", "DaemonSet"] {
            let m = DEPLOYMENT.replace("kind: Deployment", &format!("kind: {kind}"));
            assert!(generate(&m, &Options::default()).is_ok(), "{kind}");
        }
    }

    #[test]
    fn images_must_be_pinned_by_digest_unless_told_otherwise() {
        let m = DEPLOYMENT.replace("r.example/api@sha256:abcd", "r.example/api:1.0");
        assert!(matches!(
            generate(&m, &Options::default()),
            Err(GenerateError::NoDigest { .. })
        ));
        let g = generate(&m, &Options { allow_tags: true }).unwrap();
        assert_eq!(first(&g)["image"], "r.example/api:1.0");
        assert!(g.warnings.iter().any(|w| w.contains("pinned by tag")));
    }

    #[test]
    fn privileged_and_drop_all_capabilities() {
        let m = DEPLOYMENT.replace(
            "capabilities: {add: [\"SYS_TIME\"], drop: [\"NET_RAW\"]}",
            "capabilities: {add: [\"NET_ADMIN\"], drop: [\"ALL\"]}",
        );
        let g = generate(&m, &Options::default()).unwrap();
        assert_eq!(first(&g)["capabilities"], json!(["CAP_NET_ADMIN"]));
        let m = DEPLOYMENT.replace(
            "securityContext:",
            "securityContext:\n            privileged: true",
        );
        let g = generate(&m, &Options::default()).unwrap();
        assert_eq!(
            first(&g)["capabilities"].as_array().unwrap().len(),
            defaults::ALL_CAPS.len()
        );
        assert_eq!(first(&g)["privileged"], json!(true));
    }

    #[test]
    fn bad_manifests_are_explained() {
        let two = format!(
            "{DEPLOYMENT}\n---\n{}",
            DEPLOYMENT.replace("name: api\n  annotations", "name: api2\n  annotations")
        );
        assert!(matches!(
            generate(&two, &Options::default()),
            Err(GenerateError::SeveralWorkloads(2))
        ));
        assert!(matches!(
            generate("kind: Service\nmetadata: {name: s}\n", &Options::default()),
            Err(GenerateError::NoWorkload { .. })
        ));
        assert!(matches!(
            generate("kind: [", &Options::default()),
            Err(GenerateError::Yaml(_))
        ));
        let bad = DEPLOYMENT.replace(r#"'{"*": [["date"]]}'"#, "'[\"date\"]'");
        assert!(matches!(
            generate(&bad, &Options::default()),
            Err(GenerateError::Annotation { .. })
        ));
        let cap = DEPLOYMENT.replace("SYS_TIME", "SYS_EVERYTHING");
        assert!(generate(&cap, &Options::default())
            .unwrap_err()
            .to_string()
            .contains("SYS_EVERYTHING"));
        let big = "#".repeat(MAX_MANIFEST + 1);
        assert!(matches!(
            generate(&big, &Options::default()),
            Err(GenerateError::TooLarge { .. })
        ));
    }

    #[test]
    fn envfrom_pattern_still_refuses_ld_variables() {
        let m = DEPLOYMENT.replace(
            "args: [\"serve\"]",
            "args: [\"serve\"]\n          envFrom: [{configMapRef: {name: cfg}}]",
        );
        let g = generate(&m, &Options::default()).unwrap();
        let pat = first(&g)["env"]["patterns"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string();
        let mut p = crate::Policy::new(
            &format!("package agent_policy\nok(e) if regex.match({pat:?}, e)\nA if ok(input.a)\n"),
            None,
        )
        .unwrap();
        for (e, want) in [
            ("LOG_LEVEL=1", true),
            ("L=1", true),
            ("LDAP=x", true),
            ("LD_PRELOAD=/x", false),
            ("LD_LIBRARY_PATH=/x", false),
        ] {
            assert_eq!(p.evaluate("A", &json!({"a": e})).is_allowed(), want, "{e}");
        }
    }
}
