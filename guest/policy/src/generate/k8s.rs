//! The subset of Kubernetes workload objects a policy is generated from.
//! Unknown fields are ignored; the generator only reads what it pins.
use std::collections::BTreeMap;

use serde::Deserialize;

/// Annotation listing the commands `kubectl exec` may run, per container:
/// a JSON object `{"<container>": [["cmd", "arg", …], …]}`, `"*"` for all.
pub const EXEC_ANNOTATION: &str = "policy.cloister.dev/exec";
/// Annotation that, set to `"false"`, forbids reading containers' output.
pub const READ_OUTPUT_ANNOTATION: &str = "policy.cloister.dev/read-output";

#[derive(Debug, Deserialize)]
pub struct Object {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: Metadata,
    pub spec: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// `spec.template` of Deployment, StatefulSet, Job, DaemonSet.
#[derive(Debug, Deserialize)]
pub struct WorkloadSpec {
    pub template: PodTemplate,
}

#[derive(Debug, Deserialize)]
pub struct PodTemplate {
    #[serde(default)]
    pub metadata: Metadata,
    pub spec: PodSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<Container>,
    #[serde(default)]
    pub init_containers: Vec<Container>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub security_context: PodSecurityContext,
    #[serde(default)]
    pub host_network: bool,
    #[serde(default)]
    pub host_pid: bool,
    #[serde(default)]
    pub host_ipc: bool,
    #[serde(default)]
    pub share_process_namespace: bool,
    pub automount_service_account_token: Option<bool>,
    pub enable_service_links: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    pub fs_group: Option<u32>,
    #[serde(default)]
    pub sysctls: Vec<Sysctl>,
}

#[derive(Debug, Deserialize)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    pub host_path: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<EnvVar>,
    #[serde(default)]
    pub env_from: Vec<serde_yaml::Value>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(default)]
    pub security_context: ContainerSecurityContext,
    #[serde(default)]
    pub tty: bool,
    pub liveness_probe: Option<Probe>,
    pub readiness_probe: Option<Probe>,
    pub startup_probe: Option<Probe>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub sub_path: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSecurityContext {
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub privileged: bool,
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    pub allow_privilege_escalation: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub drop: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Probe {
    pub exec: Option<ExecAction>,
}

#[derive(Debug, Deserialize)]
pub struct ExecAction {
    #[serde(default)]
    pub command: Vec<String>,
}
