//! The OCI runtime spec the host sends, made safe to run: the policy has
//! already judged it, and this is the floor under every policy, even
//! `allow-all.rego`. The host can never:
//! - choose the rootfs (`root.path` is replaced by the one the agent built);
//! - run a binary outside the container (hooks are refused);
//! - bind-mount a guest path into the container, other than below the
//!   directories the agent shares on purpose;
//! - join an existing namespace by path (it could name the agent's own);
//! - leave out the mount namespace (the container would share the agent's
//!   mounts) or choose the cgroup (it is always `/cloister/<id>`).
//!
//! A `network` namespace is always the pod's (the guest's own, where the
//! pod interface is): containers of a pod share it, as in Kubernetes.
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// The cgroup (below the cgroup2 root) of every container.
pub const CGROUP_PARENT: &str = "/cloister";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("the OCI spec is not valid: {0}")]
    Parse(String),
    #[error("the OCI spec has no process")]
    NoProcess,
    #[error("process.args is empty")]
    NoArgs,
    #[error("the OCI spec has hooks ({0}): hooks would run host-chosen binaries outside the container, and cloister never runs them")]
    Hooks(String),
    #[error("mount {destination}: bind mount of {from} is refused: only paths below {allowed} can be bind-mounted")]
    BindSource {
        destination: String,
        from: String,
        allowed: String,
    },
    #[error("mount {destination}: destination must be an absolute path without `..`")]
    BadDestination { destination: String },
    #[error("namespace {kind}: joining an existing namespace by path ({path}) is refused")]
    NamespacePath { kind: String, path: String },
    #[error("the OCI spec has no mount namespace: the container would share the agent's mounts")]
    NoMountNamespace,
    #[error("the OCI spec has no linux section")]
    NoLinux,
}

/// What the agent decides, whatever the spec says.
pub struct Placement<'a> {
    pub container_id: &'a str,
    /// The rootfs the agent prepared from the verified image.
    pub rootfs: &'a Path,
    /// Directories below which bind-mount sources are allowed (the agent's
    /// own shared files, such as the pod's /etc/hosts). Empty: no binds.
    pub bind_roots: &'a [PathBuf],
}

/// Parses the host's spec and returns the one the runtime will use.
pub fn prepare(json: &[u8], place: &Placement) -> Result<Spec, SpecError> {
    let mut spec: Spec =
        serde_json::from_slice(json).map_err(|e| SpecError::Parse(e.to_string()))?;
    let process = spec.process().as_ref().ok_or(SpecError::NoProcess)?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::NoArgs);
    }
    if let Some(hooks) = spec.hooks() {
        let mut kinds = Vec::new();
        let v = serde_json::to_value(hooks).unwrap_or_default();
        if let Some(map) = v.as_object() {
            for (k, list) in map {
                if list.as_array().is_some_and(|a| !a.is_empty()) {
                    kinds.push(k.clone());
                }
            }
        }
        if !kinds.is_empty() {
            return Err(SpecError::Hooks(kinds.join(", ")));
        }
        spec.set_hooks(None);
    }
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination();
        if !dest.is_absolute()
            || dest
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(SpecError::BadDestination {
                destination: dest.display().to_string(),
            });
        }
        let is_bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if is_bind {
            let source = m.source().clone().unwrap_or_default();
            if !below_any(&source, place.bind_roots) {
                return Err(SpecError::BindSource {
                    destination: dest.display().to_string(),
                    from: source.display().to_string(),
                    allowed: if place.bind_roots.is_empty() {
                        "(none)".into()
                    } else {
                        place
                            .bind_roots
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                });
            }
        }
    }
    let linux = spec.linux_mut().as_mut().ok_or(SpecError::NoLinux)?;
    let mut has_mount_ns = false;
    for ns in linux.namespaces().iter().flatten() {
        if let Some(p) = ns.path() {
            return Err(SpecError::NamespacePath {
                kind: ns.typ().to_string(),
                path: p.display().to_string(),
            });
        }
        has_mount_ns |= ns.typ() == LinuxNamespaceType::Mount;
    }
    if !has_mount_ns {
        return Err(SpecError::NoMountNamespace);
    }
    // A pod's containers share the pod's network, as in Kubernetes. Inside
    // the guest that network is the VM's own namespace (the pod interface
    // the host configured with UpdateInterface lives there), so a `network`
    // namespace without a path means "the pod's": the container joins the
    // agent's network namespace instead of getting an empty new one.
    if let Some(nss) = linux.namespaces_mut() {
        nss.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
    }
    let cgroup = PathBuf::from(format!("{CGROUP_PARENT}/{}", place.container_id));
    if let Some(asked) = linux.cgroups_path() {
        if asked != &cgroup {
            tracing::info!(asked = %asked.display(), using = %cgroup.display(), "the host's cgroupsPath is replaced");
        }
    }
    linux.set_cgroups_path(Some(cgroup));
    let readonly = spec.root().as_ref().and_then(|r| r.readonly());
    let mut root = oci_spec::runtime::Root::default();
    root.set_path(place.rootfs.to_path_buf());
    root.set_readonly(readonly);
    spec.set_root(Some(root));
    Ok(spec)
}

/// True when `p` is absolute, has no `..`, and is strictly below one of
/// `roots`. (A symlink below a root cannot lead out either: the agent owns
/// those directories and puts no links there.)
fn below_any(p: &Path, roots: &[PathBuf]) -> bool {
    p.is_absolute()
        && !p
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        && roots.iter().any(|r| p.starts_with(r) && p != r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["/bin/sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "root": {"path": "/host/chosen/rootfs", "readonly": true},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "mount"}],
                "cgroupsPath": "/kubepods/x"
            }
        })
    }

    fn run(v: serde_json::Value) -> Result<Spec, SpecError> {
        let roots = [PathBuf::from("/run/cloister/sandbox")];
        prepare(
            &serde_json::to_vec(&v).unwrap(),
            &Placement {
                container_id: "c1",
                rootfs: Path::new("/run/cloister/containers/c1/rootfs"),
                bind_roots: &roots,
            },
        )
    }

    #[test]
    fn the_host_cannot_choose_the_rootfs_or_the_cgroup() {
        let s = run(base()).unwrap();
        let root = s.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("/run/cloister/containers/c1/rootfs"));
        assert_eq!(root.readonly(), Some(true));
        assert_eq!(
            s.linux().as_ref().unwrap().cgroups_path().as_deref(),
            Some(Path::new("/cloister/c1"))
        );
    }

    #[test]
    fn hooks_are_refused() {
        let mut v = base();
        v["hooks"] = json!({"prestart": [{"path": "/usr/bin/evil"}]});
        assert_eq!(run(v).unwrap_err(), SpecError::Hooks("prestart".into()));
        let mut v = base();
        v["hooks"] = json!({"createRuntime": [{"path": "/x"}], "poststop": []});
        assert_eq!(
            run(v).unwrap_err(),
            SpecError::Hooks("createRuntime".into())
        );
        let mut v = base();
        v["hooks"] = json!({"poststop": []});
        assert!(run(v).unwrap().hooks().is_none());
    }

    #[test]
    fn bind_mounts_of_guest_paths_are_refused() {
        for (typ, opts, src) in [
            ("bind", json!([]), "/"),
            ("bind", json!(["rbind"]), "/run/cloister"),
            ("none", json!(["rbind", "rw"]), "/proc/1/root"),
            ("bind", json!([]), "/run/cloister/sandbox/../../keys"),
            ("bind", json!([]), "/run/cloister/sandbox"),
        ] {
            let mut v = base();
            v["mounts"] =
                json!([{"destination": "/x", "type": typ, "source": src, "options": opts}]);
            let e = run(v).unwrap_err();
            assert!(matches!(e, SpecError::BindSource { .. }), "{src}: {e}");
            assert!(e.to_string().contains(src), "{e}");
        }
        let mut v = base();
        v["mounts"] = json!([{"destination": "/etc/hosts", "type": "bind", "source": "/run/cloister/sandbox/hosts", "options": ["rbind", "ro"]}]);
        run(v).unwrap();
    }

    #[test]
    fn mount_destinations_stay_absolute() {
        let mut v = base();
        v["mounts"] = json!([{"destination": "../../etc", "type": "tmpfs", "source": "tmpfs"}]);
        assert!(matches!(
            run(v).unwrap_err(),
            SpecError::BadDestination { .. }
        ));
        let mut v = base();
        v["mounts"] = json!([{"destination": "/a/../../etc", "type": "tmpfs", "source": "tmpfs"}]);
        assert!(matches!(
            run(v).unwrap_err(),
            SpecError::BadDestination { .. }
        ));
    }

    #[test]
    fn namespaces_cannot_be_joined_by_path_and_mount_ns_is_required() {
        let mut v = base();
        v["linux"]["namespaces"] =
            json!([{"type": "mount"}, {"type": "network", "path": "/proc/1/ns/net"}]);
        let e = run(v).unwrap_err();
        assert!(matches!(e, SpecError::NamespacePath { .. }), "{e}");
        assert!(e.to_string().contains("/proc/1/ns/net"));
        let mut v = base();
        v["linux"]["namespaces"] = json!([{"type": "pid"}]);
        assert_eq!(run(v).unwrap_err(), SpecError::NoMountNamespace);
        let mut v = base();
        v.as_object_mut().unwrap().remove("linux");
        assert_eq!(run(v).unwrap_err(), SpecError::NoLinux);
    }

    #[test]
    fn a_network_namespace_is_the_pods() {
        let mut v = base();
        v["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "network"}, {"type": "pid"}]);
        let spec = run(v).unwrap();
        let kinds: Vec<_> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect();
        assert_eq!(
            kinds,
            vec![LinuxNamespaceType::Mount, LinuxNamespaceType::Pid]
        );
    }

    #[test]
    fn malformed_specs_name_the_problem() {
        let mut v = base();
        v["process"]["args"] = json!("not a list");
        assert!(matches!(run(v).unwrap_err(), SpecError::Parse(_)));
        let mut v = base();
        v["process"]["args"] = json!([]);
        assert_eq!(run(v).unwrap_err(), SpecError::NoArgs);
        let mut v = base();
        v.as_object_mut().unwrap().remove("process");
        assert_eq!(run(v).unwrap_err(), SpecError::NoProcess);
        assert!(matches!(
            prepare(
                b"{",
                &Placement {
                    container_id: "c",
                    rootfs: Path::new("/r"),
                    bind_roots: &[]
                }
            )
            .unwrap_err(),
            SpecError::Parse(_)
        ));
    }
}
