//! OCI image layouts built with umoci.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::run;
use crate::tools::BUSYBOX;

/// An OCI layout (`<dir>/layout`) that umoci builds images in.
pub struct Layout {
    pub path: PathBuf,
    work: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("layout");
        run(Command::new("umoci").arg("init").arg("--layout").arg(&path));
        let work = dir.join("umoci-work");
        std::fs::create_dir_all(&work).unwrap();
        Self { path, work }
    }

    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.path.display())
    }

    /// A new image `tag` with busybox-static as /bin/busybox and /bin/sh
    /// (one layer, made by `umoci repack`), for linux/`arch`.
    pub fn busybox(&self, tag: &str, arch: &str) {
        run(Command::new("umoci").args(["new", "--image", &self.image(tag)]));
        self.change(tag, |rootfs| {
            std::fs::create_dir_all(rootfs.join("bin")).unwrap();
            std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
            std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        });
        run(Command::new("umoci").args([
            "config",
            "--image",
            &self.image(tag),
            "--os",
            "linux",
            "--architecture",
            arch,
            "--config.cmd",
            "/bin/sh",
        ]));
    }

    /// Adds a layer: unpack, let `f` change the rootfs, repack (umoci
    /// writes whiteouts for what `f` removed).
    pub fn change(&self, tag: &str, f: impl FnOnce(&Path)) {
        let bundle = self.work.join(format!("bundle-{tag}"));
        let _ = std::fs::remove_dir_all(&bundle);
        let mut unpack = Command::new("umoci");
        unpack.arg("unpack");
        if !is_root() {
            unpack.arg("--rootless");
        }
        run(unpack.args(["--image", &self.image(tag)]).arg(&bundle));
        f(&bundle.join("rootfs"));
        run(Command::new("umoci")
            .args(["repack", "--image", &self.image(tag)])
            .arg(&bundle));
        std::fs::remove_dir_all(&bundle).unwrap();
    }

    /// Adds a layer with `umoci insert` (optionally `--opaque`).
    pub fn insert(&self, tag: &str, source: &Path, target: &str, opaque: bool) {
        let mut cmd = Command::new("umoci");
        cmd.args(["insert", "--image", &self.image(tag)]);
        if opaque {
            cmd.arg("--opaque");
        }
        run(cmd.arg(source).arg(target));
    }

    /// Adds a tag `name` for an image index over the given tags, each with
    /// its platform (os linux, architecture as given).
    pub fn index(&self, name: &str, entries: &[(&str, &str)]) {
        let index_path = self.path.join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
        let manifests = index["manifests"].as_array().unwrap().clone();
        let mut list = Vec::new();
        for (tag, arch) in entries {
            let m = manifests
                .iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == *tag)
                .unwrap_or_else(|| panic!("no tag {tag}"));
            list.push(serde_json::json!({
                "mediaType": m["mediaType"],
                "digest": m["digest"],
                "size": m["size"],
                "platform": {"architecture": arch, "os": "linux"},
            }));
        }
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": list,
        }))
        .unwrap();
        let hex = hex::encode(Sha256::digest(&body));
        std::fs::write(self.path.join("blobs/sha256").join(&hex), &body).unwrap();
        index["manifests"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": format!("sha256:{hex}"),
                "size": body.len(),
                "annotations": {"org.opencontainers.image.ref.name": name},
            }));
        std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// Manifest digest of a tag in the layout.
    pub fn manifest_digest(&self, tag: &str) -> String {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.path.join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()["digest"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The layer digests (`sha256:…`) of `tag`'s manifest, in order.
    pub fn layer_digests(&self, tag: &str) -> Vec<String> {
        let digest = self.manifest_digest(tag);
        let path = self
            .path
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..]);
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    }
}

/// umoci unpacks as the caller's user only with `--rootless`.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective uid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Files (paths relative to the root, sorted) under `dir`, for comparing
/// trees; directories end with '/'.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(base).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &e.path(), out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
