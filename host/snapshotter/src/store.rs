//! The snapshot metadata: every snapshot's key, parent, kind, labels and
//! timestamps, kept in memory and persisted as one JSON file.
//!
//! Every change is a transaction: it is applied to a copy of the state, the
//! copy is written to `<file>.tmp`, flushed, renamed over the file and the
//! directory is flushed; only then does the copy replace the state in memory.
//! A failed write leaves both the file and the memory as they were, and a
//! crash leaves either the old or the new file, never a torn one.
//!
//! The rules are containerd's (`snapshots/snapshotter.go`, and the bolt
//! storage its built-in snapshotters share): a parent must be a committed
//! snapshot; only an active snapshot can be committed, which replaces it by a
//! committed one with the same parent; a snapshot with children cannot be
//! removed; only labels can be updated.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::validate;

/// Version of the metadata file layout.
const FORMAT_VERSION: u32 = 1;

/// What a snapshot is, as containerd's `snapshots.Kind` (minus "unknown").
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Read-write, can be committed.
    Active,
    /// Read-only, cannot be committed.
    View,
    /// Immutable, can be a parent.
    Committed,
}

impl Kind {
    /// The name containerd uses in filters and `ctr` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        }
    }
}

/// One snapshot's metadata.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Number naming the snapshot's directory, unique for the store's life.
    pub id: u64,
    pub kind: Kind,
    /// Name of the parent snapshot, empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    /// Whether the snapshot owns a directory (active snapshots and views,
    /// and what was committed from them; guest-pull layers have none).
    #[serde(default)]
    pub has_dir: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
struct State {
    version: u32,
    next_id: u64,
    snapshots: BTreeMap<String, Snapshot>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: FORMAT_VERSION,
            next_id: 1,
            snapshots: BTreeMap::new(),
        }
    }
}

/// What a new snapshot is made of.
#[derive(Debug, Clone)]
pub struct NewSnapshot<'a> {
    pub key: &'a str,
    pub parent: &'a str,
    pub kind: Kind,
    pub labels: BTreeMap<String, String>,
    pub has_dir: bool,
}

/// The metadata store. Not synchronised: the service holds it in a mutex.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    state: State,
}

impl Store {
    /// Opens the metadata file at `path`, or starts empty if there is none.
    /// A file that does not parse, or whose snapshots do not hang together,
    /// is refused with [`Error::Corrupt`].
    pub fn open(path: &Path) -> Result<Store> {
        let state = match fs::read(path) {
            Ok(bytes) => {
                let state: State = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                check(&state).map_err(|reason| Error::Corrupt {
                    path: path.to_path_buf(),
                    reason,
                })?;
                state
            }
            Err(e) if e.kind() == ErrorKind::NotFound => State::default(),
            Err(e) => return Err(Error::io("cannot read metadata file", path, e)),
        };
        Ok(Store {
            path: path.to_path_buf(),
            state,
        })
    }

    /// The metadata file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The snapshot with this key or name.
    pub fn get(&self, key: &str) -> Result<&Snapshot> {
        self.state
            .snapshots
            .get(key)
            .ok_or_else(|| Error::NotFound(key.to_string()))
    }

    /// Whether a snapshot has this key or name.
    pub fn contains(&self, key: &str) -> bool {
        self.state.snapshots.contains_key(key)
    }

    /// Every snapshot, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Snapshot)> {
        self.state.snapshots.iter().map(|(k, s)| (k.as_str(), s))
    }

    /// Names of the snapshots whose parent is `key`.
    pub fn children(&self, key: &str) -> Vec<String> {
        children(&self.state, key)
    }

    /// Creates a snapshot. The parent, if any, must exist and be committed.
    pub fn create(&mut self, new: NewSnapshot<'_>) -> Result<Snapshot> {
        validate::name("key", new.key)?;
        validate::parent(new.parent)?;
        validate::labels(&new.labels)?;
        self.transact(|state| {
            if state.snapshots.contains_key(new.key) {
                return Err(Error::AlreadyExists(new.key.to_string()));
            }
            if !new.parent.is_empty() {
                let parent = state
                    .snapshots
                    .get(new.parent)
                    .ok_or_else(|| Error::ParentNotFound(new.parent.to_string()))?;
                if parent.kind != Kind::Committed {
                    return Err(Error::InvalidArgument(format!(
                        "parent {:?} of snapshot {:?} is not a committed snapshot (it is {})",
                        new.parent,
                        new.key,
                        parent.kind.as_str()
                    )));
                }
            }
            let now = SystemTime::now();
            let snapshot = Snapshot {
                id: state.next_id,
                kind: new.kind,
                parent: new.parent.to_string(),
                labels: new.labels,
                created_at: now,
                updated_at: now,
                has_dir: new.has_dir,
            };
            state.next_id += 1;
            state
                .snapshots
                .insert(new.key.to_string(), snapshot.clone());
            Ok(snapshot)
        })
    }

    /// Commits the active snapshot `key` as `name`, with `labels`; `key` is
    /// gone afterwards and `name` keeps its parent and directory.
    pub fn commit(
        &mut self,
        name: &str,
        key: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Snapshot> {
        validate::name("name", name)?;
        validate::name("key", key)?;
        validate::labels(&labels)?;
        self.transact(|state| {
            let active = state
                .snapshots
                .get(key)
                .ok_or_else(|| Error::NotFound(key.to_string()))?;
            if active.kind != Kind::Active {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key:?} is {}; only an active snapshot can be committed",
                    active.kind.as_str()
                )));
            }
            if state.snapshots.contains_key(name) {
                return Err(Error::AlreadyExists(name.to_string()));
            }
            let now = SystemTime::now();
            let committed = Snapshot {
                id: active.id,
                kind: Kind::Committed,
                parent: active.parent.clone(),
                labels,
                created_at: now,
                updated_at: now,
                has_dir: active.has_dir,
            };
            state.snapshots.remove(key);
            state.snapshots.insert(name.to_string(), committed.clone());
            Ok(committed)
        })
    }

    /// Removes a snapshot that has no children, and returns what it was.
    pub fn remove(&mut self, key: &str) -> Result<Snapshot> {
        validate::name("key", key)?;
        self.transact(|state| {
            if !state.snapshots.contains_key(key) {
                return Err(Error::NotFound(key.to_string()));
            }
            let kids = children(state, key);
            if let Some(first) = kids.first() {
                return Err(Error::FailedPrecondition(format!(
                    "cannot remove snapshot {key:?}: it has {} child snapshot(s), {first:?} first; remove them first",
                    kids.len()
                )));
            }
            Ok(state.snapshots.remove(key).expect("checked above"))
        })
    }

    /// Updates the labels of `name` as containerd's Update does.
    ///
    /// Without field paths all labels are replaced by `labels`. The path
    /// `labels` does the same; `labels.<key>` sets that one label from
    /// `labels`, or removes it when `labels` has no (or an empty) value for
    /// it. Empty values are never stored: containerd's bolt storage drops
    /// them too, so `ctr snapshots label NAME key=` removes a label. Any other
    /// path is refused: only labels are mutable.
    pub fn update(
        &mut self,
        name: &str,
        labels: &HashMap<String, String>,
        fieldpaths: &[String],
    ) -> Result<Snapshot> {
        validate::name("name", name)?;
        self.transact(|state| {
            let snapshot = state
                .snapshots
                .get_mut(name)
                .ok_or_else(|| Error::NotFound(name.to_string()))?;
            let mut new = snapshot.labels.clone();
            let replace_all = |new: &mut BTreeMap<String, String>| {
                *new = labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
            };
            if fieldpaths.is_empty() {
                replace_all(&mut new);
            }
            for path in fieldpaths {
                if path == "labels" {
                    replace_all(&mut new);
                } else if let Some(key) = path.strip_prefix("labels.") {
                    if key.is_empty() {
                        return Err(Error::InvalidArgument(format!(
                            "field path {path:?} names no label"
                        )));
                    }
                    match labels.get(key).filter(|v| !v.is_empty()) {
                        Some(value) => {
                            new.insert(key.to_string(), value.clone());
                        }
                        None => {
                            new.remove(key);
                        }
                    }
                } else {
                    return Err(Error::InvalidArgument(format!(
                        "cannot update field {path:?} of snapshot {name:?}: only \"labels\" and \"labels.<key>\" are mutable"
                    )));
                }
            }
            validate::labels(&new)?;
            snapshot.labels = new;
            snapshot.updated_at = SystemTime::now();
            Ok(snapshot.clone())
        })
    }

    /// Applies `change` to a copy of the state, persists the copy, and only
    /// then makes it the state.
    fn transact<T>(&mut self, change: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut next = self.state.clone();
        let out = change(&mut next)?;
        write_atomically(&self.path, &next)?;
        self.state = next;
        Ok(out)
    }
}

fn children(state: &State, key: &str) -> Vec<String> {
    state
        .snapshots
        .iter()
        .filter(|(_, s)| s.parent == key)
        .map(|(k, _)| k.clone())
        .collect()
}

/// Checks that a loaded state hangs together; the reason if not.
fn check(state: &State) -> std::result::Result<(), String> {
    if state.version != FORMAT_VERSION {
        return Err(format!(
            "format version {} (this snapshotter reads version {FORMAT_VERSION})",
            state.version
        ));
    }
    let mut ids = std::collections::HashSet::new();
    for (key, snapshot) in &state.snapshots {
        validate::name("key", key).map_err(|e| e.to_string())?;
        validate::labels(&snapshot.labels).map_err(|e| format!("snapshot {key:?}: {e}"))?;
        if snapshot.id == 0 || snapshot.id >= state.next_id {
            return Err(format!(
                "snapshot {key:?} has id {} outside 1..{}",
                snapshot.id, state.next_id
            ));
        }
        if !ids.insert(snapshot.id) {
            return Err(format!("snapshot {key:?} reuses id {}", snapshot.id));
        }
        if snapshot.parent.is_empty() {
            continue;
        }
        match state.snapshots.get(&snapshot.parent) {
            None => {
                return Err(format!(
                    "snapshot {key:?} has parent {:?}, which does not exist",
                    snapshot.parent
                ))
            }
            Some(p) if p.kind != Kind::Committed => {
                return Err(format!(
                    "snapshot {key:?} has parent {:?}, which is not committed",
                    snapshot.parent
                ))
            }
            Some(_) => {}
        }
        // A parent chain longer than the number of snapshots is a cycle.
        let mut at = snapshot.parent.as_str();
        let mut steps = 0usize;
        while !at.is_empty() {
            steps += 1;
            if steps > state.snapshots.len() {
                return Err(format!("snapshot {key:?} is its own ancestor"));
            }
            at = state
                .snapshots
                .get(at)
                .map(|s| s.parent.as_str())
                .unwrap_or("");
        }
    }
    Ok(())
}

fn write_atomically(path: &Path, state: &State) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| Error::io("cannot encode metadata for", path, std::io::Error::other(e)))?;
    bytes.push(b'\n');
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("cannot write metadata file", &tmp, e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("cannot replace metadata file", path, e));
    }
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("cannot flush directory", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn new<'a>(key: &'a str, parent: &'a str, kind: Kind) -> NewSnapshot<'a> {
        NewSnapshot {
            key,
            parent,
            kind,
            labels: labels(&[("a", "1")]),
            has_dir: true,
        }
    }

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("metadata.json")).unwrap()
    }

    #[test]
    fn prepare_commit_view_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let a = store.create(new("a", "", Kind::Active)).unwrap();
        assert_eq!(a.kind, Kind::Active);
        assert!(matches!(
            store.create(new("a", "", Kind::Active)),
            Err(Error::AlreadyExists(k)) if k == "a"
        ));
        // An active snapshot cannot be a parent.
        let err = store.create(new("b", "a", Kind::Active)).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("not a committed"), "{err}");
        assert!(matches!(
            store.create(new("b", "nope", Kind::Active)),
            Err(Error::ParentNotFound(p)) if p == "nope"
        ));

        let c = store.commit("base", "a", labels(&[("c", "2")])).unwrap();
        assert_eq!(c.kind, Kind::Committed);
        assert_eq!(c.id, a.id, "the committed snapshot keeps the directory");
        assert_eq!(c.labels, labels(&[("c", "2")]));
        assert!(!store.contains("a"));
        assert!(matches!(store.get("a"), Err(Error::NotFound(_))));

        let v = store.create(new("v", "base", Kind::View)).unwrap();
        assert_eq!(v.parent, "base");
        assert_ne!(v.id, a.id);
        let err = store.commit("v2", "v", BTreeMap::new()).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        let err = store.commit("v2", "base", BTreeMap::new()).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        store.create(new("x", "base", Kind::Active)).unwrap();
        assert!(matches!(
            store.commit("base", "x", BTreeMap::new()),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            store.commit("y", "missing", BTreeMap::new()),
            Err(Error::NotFound(_))
        ));

        let mut kids = store.children("base");
        kids.sort();
        assert_eq!(kids, vec!["v".to_string(), "x".to_string()]);
        let err = store.remove("base").unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        assert!(err.to_string().contains("2 child"), "{err}");
        store.remove("v").unwrap();
        store.remove("x").unwrap();
        store.remove("base").unwrap();
        assert!(matches!(store.remove("base"), Err(Error::NotFound(_))));
        assert_eq!(store.iter().count(), 0);
    }

    #[test]
    fn update_honours_fieldpaths() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let mut n = new("s", "", Kind::Active);
        n.labels = labels(&[("keep", "1"), ("change", "old"), ("drop", "x")]);
        let before = store.create(n).unwrap();

        let incoming: HashMap<String, String> = [
            ("change", "new"),
            ("drop", ""),
            ("ignored", "not in the paths"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let paths = vec!["labels.change".to_string(), "labels.drop".to_string()];
        let after = store.update("s", &incoming, &paths).unwrap();
        assert_eq!(after.labels, labels(&[("keep", "1"), ("change", "new")]));
        assert!(after.updated_at >= before.updated_at);
        assert_eq!(after.created_at, before.created_at);

        // "labels" replaces them all, dropping empty values.
        let after = store
            .update("s", &incoming, &["labels".to_string()])
            .unwrap();
        assert_eq!(
            after.labels,
            labels(&[("change", "new"), ("ignored", "not in the paths")])
        );
        // No paths: the same.
        let only: HashMap<String, String> = [("z".to_string(), "9".to_string())].into();
        let after = store.update("s", &only, &[]).unwrap();
        assert_eq!(after.labels, labels(&[("z", "9")]));

        let err = store
            .update("s", &only, &["parent".to_string()])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(err.to_string().contains("\"parent\""), "{err}");
        assert!(matches!(
            store.update("nope", &only, &[]),
            Err(Error::NotFound(_))
        ));
        let huge: HashMap<String, String> = [("big".to_string(), "v".repeat(5000))].into();
        let err = store.update("s", &huge, &[]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        // The refused update changed nothing.
        assert_eq!(store.get("s").unwrap().labels, labels(&[("z", "9")]));
    }

    #[test]
    fn walk_sees_everything() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        store.create(new("a", "", Kind::Active)).unwrap();
        store.commit("c", "a", BTreeMap::new()).unwrap();
        store.create(new("v", "c", Kind::View)).unwrap();
        store.create(new("p", "c", Kind::Active)).unwrap();
        let all: Vec<(String, Kind)> = store.iter().map(|(k, s)| (k.to_string(), s.kind)).collect();
        assert_eq!(
            all,
            vec![
                ("c".to_string(), Kind::Committed),
                ("p".to_string(), Kind::Active),
                ("v".to_string(), Kind::View),
            ]
        );
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.json");
        let (committed, view) = {
            let mut store = Store::open(&path).unwrap();
            store.create(new("a", "", Kind::Active)).unwrap();
            let c = store.commit("c", "a", labels(&[("l", "v")])).unwrap();
            let v = store.create(new("v", "c", Kind::View)).unwrap();
            (c, v)
        };
        assert!(!dir.path().join("metadata.json.tmp").exists());
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.get("c").unwrap(), &committed);
        assert_eq!(store.get("v").unwrap(), &view);
        assert!(!store.contains("a"));
        // Ids are never reused after a reopen.
        let next = store.create(new("n", "c", Kind::Active)).unwrap();
        assert!(next.id > view.id);
    }

    #[test]
    fn corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.json");

        fs::write(&path, b"{\"version\": 1, \"next_id\": ").unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("metadata.json is corrupt"), "{msg}");
        assert!(msg.contains("refusing to start"), "{msg}");

        fs::write(&path, b"").unwrap();
        assert!(matches!(Store::open(&path), Err(Error::Corrupt { .. })));

        fs::write(&path, br#"{"version": 7, "next_id": 1, "snapshots": {}}"#).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(err.to_string().contains("format version 7"), "{err}");

        // Parses, but a parent is missing.
        let t = r#"{"secs_since_epoch": 1, "nanos_since_epoch": 0}"#;
        let text = format!(
            r#"{{"version": 1, "next_id": 3, "snapshots": {{
                "x": {{"id": 1, "kind": "active", "parent": "gone", "created_at": {t}, "updated_at": {t}}}
            }}}}"#
        );
        fs::write(&path, text).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(
            err.to_string().contains("\"gone\", which does not exist"),
            "{err}"
        );

        // A cycle.
        let text = format!(
            r#"{{"version": 1, "next_id": 3, "snapshots": {{
                "x": {{"id": 1, "kind": "committed", "parent": "y", "created_at": {t}, "updated_at": {t}}},
                "y": {{"id": 2, "kind": "committed", "parent": "x", "created_at": {t}, "updated_at": {t}}}
            }}}}"#
        );
        fs::write(&path, text).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(err.to_string().contains("own ancestor"), "{err}");
    }

    #[test]
    fn failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("gone");
        fs::create_dir(&sub).unwrap();
        let mut store = Store::open(&sub.join("metadata.json")).unwrap();
        store.create(new("a", "", Kind::Active)).unwrap();
        fs::remove_dir_all(&sub).unwrap();
        let err = store.create(new("b", "", Kind::Active)).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert!(!store.contains("b"));
        assert!(store.contains("a"));
    }
}
