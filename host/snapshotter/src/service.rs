//! The snapshotter itself: containerd's Snapshotter API in guest-pull mode.
//!
//! * An unpack Prepare (label `containerd.io/snapshot.ref=<chainID>`) never
//!   yields a snapshot to extract into. The committed snapshot `<chainID>` is
//!   recorded (with the requested parent and labels, and no directory) and
//!   the answer is ALREADY_EXISTS, so containerd's unpacker fetches nothing
//!   and moves on to the next layer. The layer is pulled, verified,
//!   decrypted and unpacked by the cloister agent inside the guest.
//! * An extraction Prepare without that label (key `extract-...`, which only
//!   `rootfs/apply.go` sends: `ctr images unpack`, or CRI's fallback when an
//!   image's snapshot is missing) is refused with FAILED_PRECONDITION: the
//!   host must not unpack the layer, and answering ALREADY_EXISTS would make
//!   `applyLayers` retry with new keys forever.
//! * Any other Prepare or View (a container's rootfs) gets an active snapshot
//!   or view whose mounts are one bind mount of an empty directory of its
//!   own under `<root>/snapshots/<id>`: a valid, empty rootfs that the
//!   cloister shim ignores.
//!
//! Every snapshot created here carries the label `cloister.dev/guest-pull=true`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use containerd_snapshots::{api::types::Mount, Info, Snapshotter, Usage};
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::store::{Kind, NewSnapshot, Snapshot, Store};
use crate::validate;

/// Label with which containerd's unpacker names the committed snapshot
/// (the layer's chain ID) a Prepare is meant to produce.
pub const SNAPSHOT_REF_LABEL: &str = "containerd.io/snapshot.ref";
/// Image reference, set by CRI's image handler wrapper.
pub const CRI_IMAGE_REF_LABEL: &str = "containerd.io/snapshot/cri.image-ref";
/// Layer (blob) digest, set by CRI's image handler wrapper.
pub const CRI_LAYER_DIGEST_LABEL: &str = "containerd.io/snapshot/cri.layer-digest";
/// Marks every snapshot this snapshotter created.
pub const GUEST_PULL_LABEL: &str = "cloister.dev/guest-pull";

const METADATA_FILE: &str = "metadata.json";
const SNAPSHOTS_DIR: &str = "snapshots";
const LOCK_FILE: &str = "lock";

/// The guest-pull snapshotter, owning its root directory while it lives.
#[derive(Debug)]
pub struct GuestPullSnapshotter {
    root: PathBuf,
    store: Mutex<Store>,
    _lock: Flock<File>,
}

impl GuestPullSnapshotter {
    /// Opens (or creates) the snapshotter's root: takes its lock, loads the
    /// metadata and removes snapshot directories no snapshot owns (left by
    /// a crash between a directory and a metadata change).
    pub fn open(root: &Path) -> Result<Self> {
        let snapshots = root.join(SNAPSHOTS_DIR);
        fs::create_dir_all(&snapshots)
            .map_err(|e| Error::io("cannot create directory", &snapshots, e))?;
        let lock_path = root.join(LOCK_FILE);
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("cannot open lock file", &lock_path, e))?;
        let lock =
            Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
                Error::io(
                    "root is in use by another cloister-snapshotter; cannot lock",
                    &lock_path,
                    std::io::Error::from(errno),
                )
            })?;
        let store = Store::open(&root.join(METADATA_FILE))?;
        let sn = GuestPullSnapshotter {
            root: root.to_path_buf(),
            store: Mutex::new(store),
            _lock: lock,
        };
        sn.remove_orphan_dirs()?;
        Ok(sn)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A transaction replaces the state only once it is persisted, so the
        // state behind a poisoned lock is still consistent.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join(SNAPSHOTS_DIR).join(id.to_string())
    }

    fn remove_orphan_dirs(&self) -> Result<()> {
        let owned: HashSet<String> = self
            .store()
            .iter()
            .filter(|(_, s)| s.has_dir)
            .map(|(_, s)| s.id.to_string())
            .collect();
        let dir = self.root.join(SNAPSHOTS_DIR);
        let entries = fs::read_dir(&dir).map_err(|e| Error::io("cannot list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if owned.contains(&name) {
                continue;
            }
            let path = entry.path();
            if name.parse::<u64>().is_err() {
                tracing::warn!(path = %path.display(), "leaving a foreign entry in the snapshots directory alone");
                continue;
            }
            tracing::info!(path = %path.display(), "removing a directory no snapshot owns");
            if let Err(e) = fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove orphan directory");
            }
        }
        Ok(())
    }

    /// The bind mount of a snapshot's directory, creating the directory if
    /// it went missing.
    fn mounts_of(&self, key: &str, snapshot: &Snapshot) -> Result<Vec<Mount>> {
        let rw = match snapshot.kind {
            Kind::Active => "rw",
            Kind::View => "ro",
            Kind::Committed => {
                return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is committed; mounts exist only for active snapshots and views"
            )))
            }
        };
        if !snapshot.has_dir {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} has no directory to mount"
            )));
        }
        let dir = self.dir(snapshot.id);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io("cannot create snapshot directory", &dir, e))?;
        Ok(vec![Mount {
            r#type: "bind".into(),
            source: dir.to_string_lossy().into_owned(),
            target: String::new(),
            options: vec!["rbind".into(), rw.into()],
        }])
    }

    /// Creates an active snapshot or a view with its own empty directory.
    fn create_with_dir(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
        kind: Kind,
    ) -> Result<Vec<Mount>> {
        validate::name("key", &key)?;
        validate::parent(&parent)?;
        validate::label_map(&labels)?;
        if kind == Kind::Active && is_extraction_key(&key) {
            return Err(Error::FailedPrecondition(format!(
                "refusing extraction snapshot {key:?}: in guest-pull mode image layers are pulled and unpacked inside the \
                 cloister guest, never on the host (pull the image with unpacking, as CRI does, so that containerd \
                 asks with the {SNAPSHOT_REF_LABEL} label)"
            )));
        }
        let mut store = self.store();
        let snapshot = store.create(NewSnapshot {
            key: &key,
            parent: &parent,
            kind,
            labels: marked(labels),
            has_dir: true,
        })?;
        let dir = self.dir(snapshot.id);
        if let Err(e) = fs::create_dir(&dir) {
            let err = Error::io("cannot create snapshot directory", &dir, e);
            if let Err(undo) = store.remove(&key) {
                tracing::error!(key, error = %undo, "cannot forget a snapshot whose directory failed");
            }
            return Err(err);
        }
        let mounts = self.mounts_of(&key, &snapshot)?;
        tracing::debug!(key, parent, kind = kind.as_str(), dir = %dir.display(), "created snapshot");
        Ok(mounts)
    }

    /// An unpack Prepare: record the target committed snapshot and answer
    /// ALREADY_EXISTS (containerd's signal to skip the layer).
    fn guest_pull(
        &self,
        key: String,
        parent: String,
        target: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        validate::name("key", &key)?;
        validate::parent(&parent)?;
        validate::name(SNAPSHOT_REF_LABEL, &target)?;
        validate::label_map(&labels)?;
        let image_ref = labels.get(CRI_IMAGE_REF_LABEL).map_or("-", String::as_str);
        let layer_digest = labels
            .get(CRI_LAYER_DIGEST_LABEL)
            .map_or("-", String::as_str);
        let mut store = self.store();
        if let Ok(existing) = store.get(&target) {
            if existing.kind != Kind::Committed || existing.parent != parent {
                return Err(Error::FailedPrecondition(format!(
                    "layer snapshot {target:?} exists as a {} snapshot with parent {:?}, but the unpack asks for a \
                     committed one with parent {parent:?}",
                    existing.kind.as_str(),
                    existing.parent
                )));
            }
            tracing::debug!(key, chain_id = %target, "guest pull: layer already recorded");
            return Err(Error::AlreadyExists(target));
        }
        store.create(NewSnapshot {
            key: &target,
            parent: &parent,
            kind: Kind::Committed,
            labels: marked(labels.clone()),
            has_dir: false,
        })?;
        tracing::info!(
            key,
            parent,
            image_ref,
            layer_digest,
            "guest pull: layer {target} left to the guest"
        );
        Err(Error::AlreadyExists(target))
    }
}

/// Whether `key` (possibly prefixed by containerd's `<namespace>/<n>/`)
/// names an extraction snapshot, as `unpacker.go` and `rootfs/apply.go`
/// name them (`extract-<unique> <chainID>`).
fn is_extraction_key(key: &str) -> bool {
    let local = key.splitn(3, '/').nth(2).unwrap_or(key);
    local.starts_with("extract-") || key.starts_with("extract-")
}

fn marked(labels: HashMap<String, String>) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = labels.into_iter().collect();
    labels.insert(GUEST_PULL_LABEL.into(), "true".into());
    labels
}

fn info(name: &str, s: &Snapshot) -> Info {
    Info {
        kind: match s.kind {
            Kind::Active => containerd_snapshots::Kind::Active,
            Kind::View => containerd_snapshots::Kind::View,
            Kind::Committed => containerd_snapshots::Kind::Committed,
        },
        name: name.to_string(),
        parent: s.parent.clone(),
        labels: s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

#[containerd_snapshots::tonic::async_trait]
impl Snapshotter for GuestPullSnapshotter {
    type Error = Error;

    async fn stat(&self, key: String) -> Result<Info> {
        validate::name("key", &key)?;
        let store = self.store();
        Ok(info(&key, store.get(&key)?))
    }

    async fn update(&self, info_in: Info, fieldpaths: Option<Vec<String>>) -> Result<Info> {
        let paths = fieldpaths.unwrap_or_default();
        let mut store = self.store();
        let s = store.update(&info_in.name, &info_in.labels, &paths)?;
        tracing::debug!(name = info_in.name, ?paths, "updated labels");
        Ok(info(&info_in.name, &s))
    }

    async fn usage(&self, key: String) -> Result<Usage> {
        validate::name("key", &key)?;
        self.store().get(&key)?;
        // Nothing is ever stored on the host: an empty directory at most.
        Ok(Usage { size: 0, inodes: 1 })
    }

    async fn mounts(&self, key: String) -> Result<Vec<Mount>> {
        validate::name("key", &key)?;
        let store = self.store();
        let snapshot = store.get(&key)?;
        self.mounts_of(&key, snapshot)
    }

    async fn prepare(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        tracing::debug!(key, parent, ?labels, "prepare");
        match labels.get(SNAPSHOT_REF_LABEL) {
            Some(target) => {
                let target = target.clone();
                self.guest_pull(key, parent, target, labels)
            }
            None => self.create_with_dir(key, parent, labels, Kind::Active),
        }
    }

    async fn view(
        &self,
        key: String,
        parent: String,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        tracing::debug!(key, parent, ?labels, "view");
        self.create_with_dir(key, parent, labels, Kind::View)
    }

    async fn commit(
        &self,
        name: String,
        key: String,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        validate::label_map(&labels)?;
        self.store().commit(&name, &key, marked(labels))?;
        tracing::debug!(name, key, "committed");
        Ok(())
    }

    async fn remove(&self, key: String) -> Result<()> {
        let removed = self.store().remove(&key)?;
        if removed.has_dir {
            let dir = self.dir(removed.id);
            if let Err(e) = fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    // The metadata is gone; the next start removes the directory.
                    tracing::warn!(key, dir = %dir.display(), error = %e, "cannot remove snapshot directory");
                }
            }
        }
        tracing::debug!(key, "removed");
        Ok(())
    }

    type InfoStream = tokio_stream::Iter<std::vec::IntoIter<Result<Info>>>;

    async fn list(&self, snapshotter: String, filters: Vec<String>) -> Result<Self::InfoStream> {
        let filter = Filter::parse(&filters)?;
        let infos: Vec<Result<Info>> = self
            .store()
            .iter()
            .filter(|(name, s)| filter.matches(name, s))
            .map(|(name, s)| Ok(info(name, s)))
            .collect();
        tracing::debug!(snapshotter, ?filters, count = infos.len(), "walk");
        Ok(tokio_stream::iter(infos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_like::collect;

    /// Collects a stream without pulling in `futures`.
    mod futures_like {
        use tokio_stream::StreamExt;
        pub async fn collect<S: tokio_stream::Stream + Unpin>(mut s: S) -> Vec<S::Item> {
            let mut out = Vec::new();
            while let Some(item) = s.next().await {
                out.push(item);
            }
            out
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn unpack_prepare_leaves_layers_to_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let sn = GuestPullSnapshotter::open(dir.path()).unwrap();
        let l1 = labels(&[
            (SNAPSHOT_REF_LABEL, "sha256:c1"),
            (CRI_IMAGE_REF_LABEL, "example.com/app:1"),
        ]);
        let err = sn
            .prepare("ns/1/extract-1 sha256:c1".into(), String::new(), l1.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::AlreadyExists(ref t) if t == "sha256:c1"),
            "{err}"
        );
        let i = sn.stat("sha256:c1".into()).await.unwrap();
        assert_eq!(i.kind, containerd_snapshots::Kind::Committed);
        assert_eq!(i.labels[GUEST_PULL_LABEL], "true");
        assert_eq!(i.labels[SNAPSHOT_REF_LABEL], "sha256:c1");
        assert!(matches!(
            sn.stat("ns/1/extract-1 sha256:c1".into()).await,
            Err(Error::NotFound(_))
        ));
        // Again (another pull, another namespace): still ALREADY_EXISTS.
        let err = sn
            .prepare("ns2/7/extract-2 sha256:c1".into(), String::new(), l1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
        // Same chain ID with another parent is inconsistent.
        let err = sn
            .prepare(
                "ns/2/extract-3 sha256:c1".into(),
                "sha256:c1".into(),
                labels(&[(SNAPSHOT_REF_LABEL, "sha256:c1")]),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        // An unknown parent is NOT_FOUND, and nothing is recorded.
        let err = sn
            .prepare(
                "ns/3/extract-4 sha256:c9".into(),
                "sha256:nope".into(),
                labels(&[(SNAPSHOT_REF_LABEL, "sha256:c9")]),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ParentNotFound(_)), "{err}");
        assert!(sn.stat("sha256:c9".into()).await.is_err());
        // No directory was made for layers.
        assert_eq!(
            fs::read_dir(dir.path().join(SNAPSHOTS_DIR))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn extraction_without_label_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sn = GuestPullSnapshotter::open(dir.path()).unwrap();
        let err = sn
            .prepare(
                "default/4/extract-123-abc sha256:x".into(),
                String::new(),
                HashMap::new(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        assert!(err.to_string().contains("never on the host"), "{err}");
        assert!(is_extraction_key("extract-1 sha256:x"));
        assert!(!is_extraction_key("default/4/my-container"));
    }

    #[tokio::test]
    async fn container_snapshots_are_empty_bind_mounts() {
        let dir = tempfile::tempdir().unwrap();
        let sn = GuestPullSnapshotter::open(dir.path()).unwrap();
        let m = sn
            .prepare("c1".into(), String::new(), HashMap::new())
            .await
            .unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].r#type, "bind");
        assert_eq!(m[0].options, vec!["rbind", "rw"]);
        let src = PathBuf::from(&m[0].source);
        assert!(src.starts_with(dir.path()));
        assert_eq!(fs::read_dir(&src).unwrap().count(), 0);
        assert_eq!(sn.mounts("c1".into()).await.unwrap(), m);
        let u = sn.usage("c1".into()).await.unwrap();
        assert_eq!((u.size, u.inodes), (0, 1));

        sn.commit("base".into(), "c1".into(), labels(&[("x", "y")]))
            .await
            .unwrap();
        let err = sn.mounts("base".into()).await.unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        let v = sn
            .view("v".into(), "base".into(), HashMap::new())
            .await
            .unwrap();
        assert_eq!(v[0].options, vec!["rbind", "ro"]);
        let i = sn.stat("v".into()).await.unwrap();
        assert_eq!(i.labels[GUEST_PULL_LABEL], "true");
        let err = sn.remove("base".into()).await.unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        let vdir = PathBuf::from(&v[0].source);
        sn.remove("v".into()).await.unwrap();
        assert!(!vdir.exists());
        sn.remove("base".into()).await.unwrap();
        assert!(!src.exists());

        let all = collect(sn.list(String::new(), vec![]).await.unwrap()).await;
        assert!(all.is_empty());
    }

    #[tokio::test]
    async fn root_is_locked_and_orphans_removed() {
        let dir = tempfile::tempdir().unwrap();
        let sn = GuestPullSnapshotter::open(dir.path()).unwrap();
        let err = GuestPullSnapshotter::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use by another"), "{err}");
        sn.prepare("keep".into(), String::new(), HashMap::new())
            .await
            .unwrap();
        drop(sn);
        fs::create_dir(dir.path().join(SNAPSHOTS_DIR).join("999")).unwrap();
        let sn = GuestPullSnapshotter::open(dir.path()).unwrap();
        assert!(!dir.path().join(SNAPSHOTS_DIR).join("999").exists());
        let m = sn.mounts("keep".into()).await.unwrap();
        assert!(Path::new(&m[0].source).is_dir());
    }
}
