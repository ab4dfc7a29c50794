//! The KBS's state on disk: resources, the two policies, the reference values
//! and the token signing key, under one state directory. Every write goes to a
//! temporary file that is synced and renamed over the old one (and the directory
//! synced), so a crash leaves either the old or the new value, and a restarted
//! KBS serves what was last written.
//!
//! ```text
//! <state>/resources/<repository>/<type>/<tag>
//! <state>/attestation-policy.rego
//! <state>/resource-policy.rego
//! <state>/reference-values.json
//! <state>/token-key.pem           ES256 key that signs attestation tokens (0600)
//! <state>/tls/{ca.pem,cert.pem,key.pem}   with --tls-self-signed
//! ```
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A state directory operation failed.
#[derive(Debug, thiserror::Error)]
#[error("KBS state {path}: {what}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    pub what: &'static str,
    pub source: std::io::Error,
}

fn err(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError { path, what, source }
}

/// Writes `body` to `path` atomically: temp file, fsync, rename, fsync directory.
pub fn write_atomic(path: &Path, body: &[u8], secret: bool) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err(dir, "creating directory"))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        random_suffix()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if secret { 0o600 } else { 0o644 })
            .open(&tmp)
            .map_err(err(&tmp, "creating temporary file"))?;
        f.write_all(body).map_err(err(&tmp, "writing"))?;
        f.sync_all().map_err(err(&tmp, "syncing"))?;
        fs::rename(&tmp, path).map_err(err(path, "renaming into place"))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err(dir, "syncing directory"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn random_suffix() -> String {
    let mut b = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// Reads a file, `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(path, "reading")(e)),
    }
}

/// A resource's path: `<repository>/<type>/<tag>`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ResourcePath {
    pub repository: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub tag: String,
}

impl ResourcePath {
    /// Accepts components of `[A-Za-z0-9._-]`, 1 to 128 long, and not `.` or `..`,
    /// so that no resource name can leave the resources directory.
    pub fn new(repository: &str, kind: &str, tag: &str) -> Result<ResourcePath, String> {
        for (what, c) in [("repository", repository), ("type", kind), ("tag", tag)] {
            let ok_chars = c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if c.is_empty() || c.len() > 128 || !ok_chars || c == "." || c == ".." {
                return Err(format!(
                    "resource {what} {c:?}: expected 1 to 128 characters of [A-Za-z0-9._-], not . or .."
                ));
            }
        }
        Ok(ResourcePath {
            repository: repository.into(),
            kind: kind.into(),
            tag: tag.into(),
        })
    }
}

impl std::fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.repository, self.kind, self.tag)
    }
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

pub const ATTESTATION_POLICY: &str = "attestation-policy.rego";
pub const RESOURCE_POLICY: &str = "resource-policy.rego";
pub const REFERENCE_VALUES: &str = "reference-values.json";

impl Store {
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(root.join("resources"))
            .map_err(err(root, "creating state directory"))?;
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.root.join(file)
    }

    fn resource_file(&self, r: &ResourcePath) -> PathBuf {
        self.root
            .join("resources")
            .join(&r.repository)
            .join(&r.kind)
            .join(&r.tag)
    }

    pub fn get_resource(&self, r: &ResourcePath) -> Result<Option<Vec<u8>>, StoreError> {
        read_optional(&self.resource_file(r))
    }

    pub fn set_resource(&self, r: &ResourcePath, body: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.resource_file(r), body, true)
    }

    pub fn get(&self, file: &str) -> Result<Option<Vec<u8>>, StoreError> {
        read_optional(&self.path(file))
    }

    pub fn set(&self, file: &str, body: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.path(file), body, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_cannot_escape() {
        assert!(ResourcePath::new("default", "key", "k1").is_ok());
        for bad in ["..", ".", "", "a/b", "a\0", &"x".repeat(129)] {
            assert!(ResourcePath::new(bad, "key", "k1").is_err(), "{bad:?}");
            assert!(ResourcePath::new("r", "key", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = ResourcePath::new("default", "key", "k1").unwrap();
        assert_eq!(store.get_resource(&r).unwrap(), None);
        store.set_resource(&r, b"one").unwrap();
        store.set_resource(&r, b"two").unwrap();
        assert_eq!(
            store.get_resource(&r).unwrap().as_deref(),
            Some(&b"two"[..])
        );
        let left: Vec<_> = fs::read_dir(dir.path().join("resources/default/key"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["k1"]);
    }
}
