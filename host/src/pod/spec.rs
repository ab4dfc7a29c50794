//! containerd's OCI spec for a container, made into the one the guest gets.
//!
//! containerd writes the spec for a host runtime: namespaces joined by host
//! path, bind mounts of host files (hosts, hostname, resolv.conf, the
//! termination log, Kubernetes volumes), a rootfs on the host. The guest
//! shares no filesystem with the host, so:
//! - namespace paths are dropped (the types stay; the pod's network is the
//!   guest's own, see guest/runtime/src/spec.rs);
//! - the rootfs path is dropped (the agent builds it from the image);
//! - each host bind mount becomes a CopyFile of its contents below the
//!   agent's sandbox directory plus a bind mount from there, at the paths
//!   `cloister policy generate` expects; the pod's /dev/shm becomes a tmpfs;
//! - a bind mount whose contents cannot be copied (a socket, a device, an
//!   arbitrary host directory) is refused, naming it.
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The guest's sandbox directory (guest/policy/src/generate/defaults.rs).
pub const GUEST_SANDBOX_DIR: &str = "/run/cloister/sandbox";
/// What CRI names a container's image with (and `ctr run --annotation`).
pub const IMAGE_ANNOTATION: &str = "io.kubernetes.cri.image-name";
/// Largest single file copied into the guest.
pub const MAX_FILE: u64 = 1 << 20;
/// Most bytes and files one container's mounts may copy.
pub const MAX_TOTAL: u64 = 16 << 20;
pub const MAX_FILES: usize = 1024;

/// One CopyFile for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyItem {
    /// Relative to the guest's sandbox directory.
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
    pub directory: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("the container's OCI spec is not a JSON object")]
    NotObject,
    #[error("no image: the container's spec has no {IMAGE_ANNOTATION} annotation (CRI sets it; with ctr, pass --annotation {IMAGE_ANNOTATION}=REF)")]
    NoImage,
    #[error("mount {destination}: a bind mount of {from} cannot reach the guest: {why}")]
    Mount {
        destination: String,
        from: String,
        why: String,
    },
}

/// What the shim sends for one container.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    pub spec: Value,
    pub image: String,
    pub copies: Vec<CopyItem>,
}

fn is_bind(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("bind")
        || m.get("options")
            .and_then(Value::as_array)
            .is_some_and(|o| o.iter().any(|x| x == "bind" || x == "rbind"))
}

/// Where a host bind mount goes in the guest's sandbox directory, by its
/// destination or its kubelet volume source. `None`: not a known kind.
fn guest_place(container_id: &str, destination: &str, source: &str) -> Option<String> {
    match destination {
        "/etc/hosts" => return Some("hosts".into()),
        "/etc/hostname" => return Some("hostname".into()),
        "/etc/resolv.conf" => return Some("resolv.conf".into()),
        "/dev/termination-log" => {
            return Some(format!("containers/{container_id}/termination-log"))
        }
        "/var/run/secrets/kubernetes.io/serviceaccount" => return Some("serviceaccount".into()),
        _ => {}
    }
    // kubelet: /var/lib/kubelet/pods/<uid>/volumes/<plugin>/<name>
    let parts: Vec<&str> = source.trim_start_matches('/').split('/').collect();
    if let Some(i) = parts.iter().position(|p| *p == "volumes") {
        if i >= 2 && parts[i - 2] == "pods" && parts.len() == i + 3 {
            let name = parts[i + 2];
            if valid_component(name) {
                return Some(format!("volumes/{name}"));
            }
        }
    }
    None
}

fn valid_component(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && c.len() <= 255
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

struct Copier {
    items: Vec<CopyItem>,
    bytes: u64,
}

impl Copier {
    fn file(
        &mut self,
        src: &Path,
        dest: &str,
        fail: &dyn Fn(String) -> SpecError,
    ) -> Result<(), SpecError> {
        use std::os::unix::fs::PermissionsExt;
        let md = std::fs::metadata(src).map_err(|e| fail(format!("{}: {e}", src.display())))?;
        if md.len() > MAX_FILE {
            return Err(fail(format!(
                "{} is {} bytes; files over {MAX_FILE} bytes are not copied",
                src.display(),
                md.len()
            )));
        }
        self.bytes += md.len();
        if self.bytes > MAX_TOTAL || self.items.len() >= MAX_FILES {
            return Err(fail(format!(
                "the container's mounts copy more than {MAX_TOTAL} bytes or {MAX_FILES} files"
            )));
        }
        let data = std::fs::read(src).map_err(|e| fail(format!("{}: {e}", src.display())))?;
        self.items.push(CopyItem {
            path: dest.into(),
            data,
            mode: md.permissions().mode() & 0o7777,
            directory: false,
        });
        Ok(())
    }

    /// A directory tree; symlinks are followed (Kubernetes' configMap and
    /// secret volumes are symlinks into a `..data` directory), entries whose
    /// names start with `..` (kubelet's own bookkeeping) are skipped.
    fn tree(
        &mut self,
        src: &Path,
        dest: &str,
        depth: usize,
        fail: &dyn Fn(String) -> SpecError,
    ) -> Result<(), SpecError> {
        use std::os::unix::fs::PermissionsExt;
        if depth > 8 {
            return Err(fail(format!(
                "{} is nested more than 8 levels",
                src.display()
            )));
        }
        let md = std::fs::metadata(src).map_err(|e| fail(format!("{}: {e}", src.display())))?;
        self.items.push(CopyItem {
            path: dest.into(),
            data: Vec::new(),
            mode: md.permissions().mode() & 0o7777,
            directory: true,
        });
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .map_err(|e| fail(format!("{}: {e}", src.display())))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("..") {
                continue;
            }
            if !valid_component(&name) {
                return Err(fail(format!(
                    "{} has a name outside [A-Za-z0-9_.-]",
                    e.path().display()
                )));
            }
            let p = e.path();
            let child = format!("{dest}/{name}");
            let md =
                std::fs::metadata(&p).map_err(|err| fail(format!("{}: {err}", p.display())))?;
            if md.is_dir() {
                self.tree(&p, &child, depth + 1, fail)?;
            } else if md.is_file() {
                self.file(&p, &child, fail)?;
            } else {
                return Err(fail(format!(
                    "{} is neither a file nor a directory",
                    p.display()
                )));
            }
        }
        Ok(())
    }
}

/// Makes `spec` (containerd's config.json) into the guest's.
pub fn for_guest(container_id: &str, spec: &Value) -> Result<GuestSpec, SpecError> {
    let mut spec = spec.clone();
    let obj = spec.as_object_mut().ok_or(SpecError::NotObject)?;
    let image = obj
        .get("annotations")
        .and_then(|a| a.get(IMAGE_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(SpecError::NoImage)?
        .to_string();
    if let Some(root) = obj.get_mut("root").and_then(Value::as_object_mut) {
        root.remove("path");
    }
    if let Some(linux) = obj.get_mut("linux").and_then(Value::as_object_mut) {
        if let Some(nss) = linux.get_mut("namespaces").and_then(Value::as_array_mut) {
            for ns in nss.iter_mut() {
                if let Some(n) = ns.as_object_mut() {
                    n.remove("path");
                }
            }
        }
    }
    // The guest kernel has no AppArmor; the host's profile name means
    // nothing there.
    if let Some(p) = obj.get_mut("process").and_then(Value::as_object_mut) {
        p.remove("apparmorProfile");
    }
    let mut copier = Copier {
        items: Vec::new(),
        bytes: 0,
    };
    let mut mounts = Vec::new();
    for m in obj
        .get("mounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        if !is_bind(&m) {
            mounts.push(m);
            continue;
        }
        let destination = m
            .get("destination")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let source = m
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let fail = |why: String| SpecError::Mount {
            destination: destination.clone(),
            from: source.clone(),
            why,
        };
        if destination == "/dev/shm" {
            // The pod's shared memory: a tmpfs in the guest.
            mounts.push(json!({
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
            }));
            continue;
        }
        let place = guest_place(container_id, &destination, &source).ok_or_else(|| {
            fail("only the standard files (hosts, hostname, resolv.conf, termination log), the service account and pod volumes are copied into the guest; the guest shares no filesystem with the host".into())
        })?;
        let src = PathBuf::from(&source);
        let md = std::fs::metadata(&src).map_err(|e| fail(e.to_string()))?;
        if md.is_dir() {
            copier.tree(&src, &place, 0, &fail)?;
        } else if md.is_file() {
            copier.file(&src, &place, &fail)?;
        } else {
            return Err(fail("it is neither a file nor a directory".into()));
        }
        let mut m = m.clone();
        m["source"] = json!(format!("{GUEST_SANDBOX_DIR}/{place}"));
        mounts.push(m);
    }
    obj.insert("mounts".into(), Value::Array(mounts));
    Ok(GuestSpec {
        spec,
        image,
        copies: copier.items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cri_spec(dir: &Path) -> Value {
        let sb = dir.join("sandboxes/s1");
        std::fs::create_dir_all(&sb).unwrap();
        std::fs::write(sb.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::write(sb.join("resolv.conf"), "nameserver 10.96.0.10\n").unwrap();
        let vol = dir.join("kubelet/pods/uid-1/volumes/kubernetes.io~configmap/config");
        std::fs::create_dir_all(vol.join("..2024_01")).unwrap();
        std::fs::write(vol.join("..2024_01/app.conf"), "x=1\n").unwrap();
        std::os::unix::fs::symlink("..2024_01", vol.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/app.conf", vol.join("app.conf")).unwrap();
        json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["/app"], "apparmorProfile": "cri-containerd.apparmor.d"},
            "root": {"path": "rootfs", "readonly": true},
            "annotations": {IMAGE_ANNOTATION: "reg/app@sha256:00", "io.kubernetes.cri.container-name": "app"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": sb.join("hosts"), "options": ["rbind", "rw"]},
                {"destination": "/etc/resolv.conf", "type": "bind", "source": sb.join("resolv.conf"), "options": ["rbind", "ro"]},
                {"destination": "/dev/shm", "type": "bind", "source": sb.join("shm"), "options": ["rbind", "rw"]},
                {"destination": "/etc/app", "type": "bind", "source": vol, "options": ["rbind", "ro"]}
            ],
            "linux": {"namespaces": [
                {"type": "pid"}, {"type": "ipc", "path": "/proc/42/ns/ipc"},
                {"type": "network", "path": "/var/run/netns/cni-1"}, {"type": "mount"}
            ]}
        })
    }

    #[test]
    fn a_cri_spec_becomes_the_guests() {
        let d = tempfile::tempdir().unwrap();
        let g = for_guest("c1", &cri_spec(d.path())).unwrap();
        assert_eq!(g.image, "reg/app@sha256:00");
        let s = &g.spec;
        assert_eq!(s["root"], json!({"readonly": true}));
        assert!(s["process"].get("apparmorProfile").is_none());
        assert_eq!(
            s["linux"]["namespaces"],
            json!([{"type": "pid"}, {"type": "ipc"}, {"type": "network"}, {"type": "mount"}])
        );
        let m = s["mounts"].as_array().unwrap();
        assert_eq!(m[0]["type"], "proc");
        assert_eq!(m[1]["source"], "/run/cloister/sandbox/hosts");
        assert_eq!(m[2]["source"], "/run/cloister/sandbox/resolv.conf");
        assert_eq!(m[3]["type"], "tmpfs");
        assert_eq!(m[3]["source"], "shm");
        assert_eq!(m[4]["source"], "/run/cloister/sandbox/volumes/config");
        let paths: Vec<(&str, bool)> = g
            .copies
            .iter()
            .map(|c| (c.path.as_str(), c.directory))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("hosts", false),
                ("resolv.conf", false),
                ("volumes/config", true),
                ("volumes/config/app.conf", false)
            ]
        );
        assert_eq!(g.copies[3].data, b"x=1\n");
    }

    #[test]
    fn a_host_path_bind_is_refused_by_name() {
        let d = tempfile::tempdir().unwrap();
        let mut s = cri_spec(d.path());
        s["mounts"] = json!([{"destination": "/host", "type": "bind", "source": "/etc", "options": ["rbind"]}]);
        let e = for_guest("c1", &s).unwrap_err().to_string();
        assert!(
            e.starts_with("mount /host: a bind mount of /etc cannot reach the guest"),
            "{e}"
        );
    }

    #[test]
    fn the_image_must_be_named() {
        let d = tempfile::tempdir().unwrap();
        let mut s = cri_spec(d.path());
        s["annotations"] = json!({});
        assert_eq!(for_guest("c1", &s).unwrap_err(), SpecError::NoImage);
        assert_eq!(
            for_guest("c1", &json!([])).unwrap_err(),
            SpecError::NotObject
        );
    }

    #[test]
    fn big_files_and_sockets_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut s = cri_spec(d.path());
        let big = d.path().join("sandboxes/s1/hostname");
        std::fs::write(&big, vec![b'x'; (MAX_FILE + 1) as usize]).unwrap();
        s["mounts"] = json!([{"destination": "/etc/hostname", "type": "bind", "source": big, "options": ["rbind"]}]);
        let e = for_guest("c1", &s).unwrap_err().to_string();
        assert!(e.contains("not copied"), "{e}");
        let sock = d.path().join("sandboxes/s1/sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        s["mounts"] = json!([{"destination": "/etc/hosts", "type": "bind", "source": sock, "options": ["rbind"]}]);
        let e = for_guest("c1", &s).unwrap_err().to_string();
        assert!(e.contains("neither a file nor a directory"), "{e}");
    }

    #[test]
    fn termination_log_and_service_account_go_where_policies_expect() {
        assert_eq!(
            guest_place("c9", "/dev/termination-log", "/x").as_deref(),
            Some("containers/c9/termination-log")
        );
        assert_eq!(
            guest_place("c", "/var/run/secrets/kubernetes.io/serviceaccount", "/x").as_deref(),
            Some("serviceaccount")
        );
        assert_eq!(
            guest_place(
                "c",
                "/data",
                "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/cache"
            )
            .as_deref(),
            Some("volumes/cache")
        );
        assert_eq!(guest_place("c", "/data", "/srv/data"), None);
    }
}
