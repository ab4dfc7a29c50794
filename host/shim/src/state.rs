//! What the shim persists about its pod, in `<run_dir>/pods/<pod>/state.json`
//! (written atomically after every change), so that a restarted shim can
//! find the live VM again, `delete` can clean up after a dead shim, and
//! `cloister monitor` can list the node's sandboxes.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use cloister_host::pod::cni::CniAttachment;

/// How a containerd task relates to its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// CRI's sandbox (pause) container: it is the VM; nothing runs for it
    /// in the guest.
    Sandbox,
    /// A container of a pod whose sandbox exists.
    Container,
    /// A container without a pod (`ctr run`): it boots its own VM and runs
    /// in it.
    Standalone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    pub status: u32,
    /// Seconds and nanoseconds since the epoch.
    pub at_secs: i64,
    pub at_nanos: i32,
}

impl Exit {
    pub fn now(status: u32) -> Exit {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Exit {
            status,
            at_secs: t.as_secs() as i64,
            at_nanos: t.subsec_nanos() as i32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub stdio: Stdio,
    pub status: Status,
    pub exit: Option<Exit>,
    /// The OCI process (JSON) of an exec, kept until Start.
    #[serde(default)]
    pub spec: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub kind: Kind,
    pub bundle: String,
    pub init: ProcessRecord,
    pub execs: BTreeMap<String, ProcessRecord>,
    /// The image the guest pulled, and what it verified.
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub image_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodState {
    pub pod_id: String,
    pub namespace: String,
    /// The VM's directory (vmm.json, vmm.ready, vsock.sock, console.log).
    pub vm_dir: PathBuf,
    pub tee: String,
    pub measurement: Option<String>,
    pub host_data: String,
    /// Where the initdata came from (annotation or the node default).
    pub initdata_source: String,
    pub initdata_sha256: String,
    pub network: Option<CniAttachment>,
    /// "tap" (CNI), "user" or "none".
    pub network_mode: String,
    pub containers: BTreeMap<String, ContainerRecord>,
}

pub const STATE_FILE: &str = "state.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a pod state: {detail}")]
    Corrupt { path: String, detail: String },
}

impl PodState {
    /// Records that process `exec` of `container` ("" for its init) ended.
    pub fn record_exit(&mut self, container: &str, exec: &str, exit: &Exit) {
        let Some(rec) = self.containers.get_mut(container) else {
            return;
        };
        let p = if exec.is_empty() {
            Some(&mut rec.init)
        } else {
            rec.execs.get_mut(exec)
        };
        if let Some(p) = p {
            p.status = Status::Stopped;
            p.exit = Some(exit.clone());
        }
    }

    pub fn path(pod_dir: &Path) -> PathBuf {
        pod_dir.join(STATE_FILE)
    }

    /// Reads `<pod_dir>/state.json`; `Ok(None)` when there is none.
    pub fn load(pod_dir: &Path) -> Result<Option<PodState>, StateError> {
        let p = Self::path(pod_dir);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    what: "reading",
                    path: p.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: p.display().to_string(),
                detail: e.to_string(),
            })
    }

    /// Writes the state atomically.
    pub fn save(&self, pod_dir: &Path) -> Result<(), StateError> {
        let p = Self::path(pod_dir);
        let tmp = pod_dir.join(".state.json.tmp");
        let io = |what, path: &Path| {
            let path = path.display().to_string();
            move |source| StateError::Io { what, path, source }
        };
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("serializable"))
            .map_err(io("writing", &tmp))?;
        std::fs::rename(&tmp, &p).map_err(io("renaming to", &p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_corrupt_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(PodState::load(d.path()).unwrap(), None);
        let mut s = PodState {
            pod_id: "p".into(),
            namespace: "k8s.io".into(),
            vm_dir: d.path().join("vm"),
            tee: "sim".into(),
            measurement: Some("ab".into()),
            host_data: "cd".into(),
            initdata_source: "annotation cloister.dev/initdata".into(),
            initdata_sha256: "ef".into(),
            network: None,
            network_mode: "user".into(),
            containers: BTreeMap::new(),
        };
        s.containers.insert(
            "c1".into(),
            ContainerRecord {
                kind: Kind::Container,
                bundle: "/b".into(),
                init: ProcessRecord {
                    stdio: Stdio::default(),
                    status: Status::Stopped,
                    exit: Some(Exit::now(7)),
                    spec: None,
                },
                execs: BTreeMap::new(),
                image: "i".into(),
                image_digest: "sha256:1".into(),
            },
        );
        s.save(d.path()).unwrap();
        assert_eq!(PodState::load(d.path()).unwrap(), Some(s));
        std::fs::write(PodState::path(d.path()), "{").unwrap();
        let e = PodState::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("state.json is not a pod state"), "{e}");
    }
}
