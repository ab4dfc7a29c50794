//! `cloister install`: places what a node needs to run cloister pods (the
//! binaries, the guest kernel and initramfs, the default policy, the node
//! config and the systemd units of the snapshotter and the monitor) where the node config's
//! defaults point, optionally merges the containerd snippet into
//! containerd's config, and records all of it so that `--uninstall`
//! removes exactly what it placed.
//!
//! Every path is below `root` (`/` on a node, `/host` in the DaemonSet),
//! and the paths written into files are the node's own (without `root`).
//! Running it twice changes nothing the second time. A file that is there
//! already and was not placed by an install is never overwritten: the node
//! config and the policy are the operator's to keep, anything else is an
//! error naming it.
pub mod containerd_config;
pub mod record;

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::node_config::NodeConfig;
use containerd_config::Merge;
use record::{Record, RECORD_PATH};

/// The binaries an install places, all from one directory.
pub const BINARIES: &[&str] = &[
    "cloister",
    "containerd-shim-cloister-v2",
    "cloister-snapshotter",
];
/// Where the binaries go (containerd finds the shim on its PATH).
pub const BIN_DIR: &str = "usr/local/bin";
pub const SNAPSHOTTER_UNIT: &str = "etc/systemd/system/cloister-snapshotter.service";
pub const MONITOR_UNIT: &str = "etc/systemd/system/cloister-monitor.service";
const UNIT_TEXT: &str = include_str!("../../../deploy/systemd/cloister-snapshotter.service");
const MONITOR_UNIT_TEXT: &str = include_str!("../../../deploy/systemd/cloister-monitor.service");
const DEFAULT_POLICY: &str = include_str!("../../../policies/default.rego");

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is there already and was not placed by cloister install; remove it or install elsewhere")]
    NotOurs { path: PathBuf },
    #[error("{path}: not found ({hint})")]
    MissingSource { path: PathBuf, hint: &'static str },
    #[error("the install record {path} is unreadable: {problem}")]
    Record { path: PathBuf, problem: String },
    #[error("nothing to uninstall: {0} does not exist")]
    NothingInstalled(PathBuf),
    #[error("{0} must be an absolute path with no `..`")]
    BadPath(PathBuf),
    #[error(transparent)]
    Containerd(#[from] containerd_config::MergeError),
}

impl InstallError {
    pub fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        InstallError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What to install.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The node's root as this process sees it.
    pub root: PathBuf,
    /// The directory holding [`BINARIES`].
    pub bin_from: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// containerd's config to merge the snippet into (a node path, e.g.
    /// `/etc/containerd/config.toml`), or none to only print it.
    pub containerd_config: Option<PathBuf>,
}

/// What happened to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Placed,
    Updated,
    Unchanged,
    /// There before, not placed by an install: left as it is.
    KeptTheirs,
    /// Placed by an install but changed since: left as it is.
    KeptChanged,
    Removed,
    /// The install placed it, but it was gone already.
    Gone,
    Merged,
    Reverted,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::Placed => "placed",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::KeptTheirs => "kept (not placed by cloister install)",
            Action::KeptChanged => "kept (changed since it was installed)",
            Action::Removed => "removed",
            Action::Gone => "already gone",
            Action::Merged => "merged the cloister snippet into",
            Action::Reverted => "took the cloister snippet out of",
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<(Action, PathBuf)>,
    /// Notes for the operator (replaced containerd keys, kept dirs).
    pub notes: Vec<String>,
}

impl Report {
    fn add(&mut self, a: Action, node_path: &Path) {
        self.lines.push((a, node_path.to_path_buf()));
    }
}

/// Where a node path is below `root`, refusing anything but a plain
/// absolute path.
fn below(root: &Path, node_path: &Path) -> Result<(PathBuf, PathBuf), InstallError> {
    let bad = || InstallError::BadPath(node_path.to_path_buf());
    let rel = node_path.strip_prefix("/").map_err(|_| bad())?;
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) || rel.as_os_str().is_empty() {
        return Err(bad());
    }
    Ok((root.join(rel), rel.to_path_buf()))
}

fn sha256_file(path: &Path) -> Result<Option<String>, InstallError> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InstallError::io("reading", path, e)),
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| InstallError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Some(hex::encode(h.finalize())))
}

enum Content {
    File(PathBuf),
    Text(String),
}

impl Content {
    fn sha256(&self) -> Result<String, InstallError> {
        match self {
            Content::File(p) => sha256_file(p)?.ok_or_else(|| InstallError::MissingSource {
                path: p.clone(),
                hint: "build with `cargo build --workspace`, or pass --from, --kernel, --initrd",
            }),
            Content::Text(t) => Ok(hex::encode(Sha256::digest(t.as_bytes()))),
        }
    }
}

/// One file to place.
struct Item {
    node_path: PathBuf,
    content: Content,
    mode: u32,
    /// The operator may have their own (config, policy): keep theirs.
    theirs_ok: bool,
}

/// Creates the missing parents of `path` (below root), noting each it made.
fn make_parents(root: &Path, rel: &Path, record: &mut Record) -> Result<(), InstallError> {
    let mut dir = PathBuf::new();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            dir.push(c);
            let at = root.join(&dir);
            if !at.exists() {
                std::fs::create_dir(&at).map_err(|e| InstallError::io("creating", &at, e))?;
                record.note_dir(&dir);
            }
        }
    }
    Ok(())
}

/// Writes next to `dest` and renames over it, so a reader never sees half a file.
fn write_atomically(dest: &Path, content: &Content, mode: u32) -> Result<(), InstallError> {
    use std::os::unix::fs::PermissionsExt;
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dest.with_file_name(format!(".{name}.cloister-install"));
    let written = match content {
        Content::File(src) => std::fs::copy(src, &tmp).map(|_| ()),
        Content::Text(t) => std::fs::write(&tmp, t),
    };
    written
        .and_then(|_| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)))
        .and_then(|_| std::fs::rename(&tmp, dest))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            InstallError::io("writing", dest, e)
        })
}

/// What placing `item` would do, without doing it.
fn decide(root: &Path, item: &Item, record: &Record) -> Result<(Action, String), InstallError> {
    let (dest, rel) = below(root, &item.node_path)?;
    let want = item.content.sha256()?;
    let have = sha256_file(&dest)?;
    let action = match (&have, record.files.get(&rel)) {
        (None, _) => Action::Placed,
        (Some(h), _) if *h == want => Action::Unchanged,
        (Some(h), Some(r)) if h == r => Action::Updated,
        (Some(_), Some(_)) => Action::KeptChanged,
        (Some(_), None) if item.theirs_ok => Action::KeptTheirs,
        (Some(_), None) => return Err(InstallError::NotOurs { path: dest }),
    };
    Ok((action, want))
}

fn place(
    root: &Path,
    item: &Item,
    (action, sha): (Action, String),
    record: &mut Record,
    report: &mut Report,
) -> Result<(), InstallError> {
    let (dest, rel) = below(root, &item.node_path)?;
    match action {
        Action::Placed | Action::Updated => {
            make_parents(root, &rel, record)?;
            write_atomically(&dest, &item.content, item.mode)?;
            record.files.insert(rel, sha);
        }
        // Identical bytes that an install placed stay recorded; identical
        // bytes someone else placed stay theirs.
        _ => {}
    }
    report.add(action, &item.node_path);
    Ok(())
}

/// The node config an install writes when there is none: the paths of what
/// it placed, and a pointer to the rest.
fn config_text(cfg: &NodeConfig) -> String {
    format!(
        "# The cloister node config, written by `cloister install`.\n\
         # Every key is optional; docs/operators.md lists them all. An\n\
         # uninstall removes this file only while it is unchanged.\n\
         [hypervisor]\n\
         kernel = \"{}\"\n\
         initrd = \"{}\"\n\
         \n\
         [defaults]\n\
         policy = \"{}\"\n",
        cfg.hypervisor.kernel.display(),
        cfg.hypervisor.initrd.display(),
        cfg.defaults.policy.display(),
    )
}

pub fn config_path() -> PathBuf {
    PathBuf::from(crate::node_config::DEFAULT_PATH)
}

/// Places everything in `plan`; see the module doc.
pub fn install(plan: &Plan) -> Result<Report, InstallError> {
    let root = &plan.root;
    let mut record = Record::load(root)?.unwrap_or_default();
    let mut report = Report::default();
    let defaults = NodeConfig::default();
    let mut items: Vec<Item> = BINARIES
        .iter()
        .map(|b| Item {
            node_path: Path::new("/").join(BIN_DIR).join(b),
            content: Content::File(plan.bin_from.join(b)),
            mode: 0o755,
            theirs_ok: false,
        })
        .collect();
    items.extend([
        Item {
            node_path: defaults.hypervisor.kernel.clone(),
            content: Content::File(plan.kernel.clone()),
            mode: 0o644,
            theirs_ok: false,
        },
        Item {
            node_path: defaults.hypervisor.initrd.clone(),
            content: Content::File(plan.initrd.clone()),
            mode: 0o644,
            theirs_ok: false,
        },
        Item {
            node_path: defaults.defaults.policy.clone(),
            content: Content::Text(DEFAULT_POLICY.to_string()),
            mode: 0o644,
            theirs_ok: true,
        },
        Item {
            node_path: config_path(),
            content: Content::Text(config_text(&defaults)),
            mode: 0o644,
            theirs_ok: true,
        },
        Item {
            node_path: Path::new("/").join(SNAPSHOTTER_UNIT),
            content: Content::Text(UNIT_TEXT.to_string()),
            mode: 0o644,
            theirs_ok: false,
        },
        Item {
            node_path: Path::new("/").join(MONITOR_UNIT),
            content: Content::Text(MONITOR_UNIT_TEXT.to_string()),
            mode: 0o644,
            theirs_ok: false,
        },
    ]);
    // Every source is there and nothing would be overwritten that is not
    // ours, before anything is placed.
    let decisions = items
        .iter()
        .map(|item| decide(root, item, &record))
        .collect::<Result<Vec<_>, _>>()?;
    // containerd's config is merged in memory first: a config it cannot
    // merge is refused before anything is placed.
    let merged = match &plan.containerd_config {
        Some(c) => Some(merge_containerd(root, c, &record)?),
        None => None,
    };
    let result = items
        .iter()
        .zip(decisions)
        .try_for_each(|(item, d)| place(root, item, d, &mut record, &mut report))
        .and_then(|()| match merged {
            Some(m) => write_containerd(root, m, &mut record, &mut report),
            None => Ok(()),
        });
    // What was placed is recorded even when a later step failed, so that
    // an uninstall can still remove it.
    save_record(root, &mut record)?;
    result?;
    Ok(report)
}

fn save_record(root: &Path, record: &mut Record) -> Result<(), InstallError> {
    let rel = Path::new(RECORD_PATH);
    make_parents(root, rel, record)?;
    let text = serde_json::to_string_pretty(record).expect("the record serializes");
    write_atomically(&root.join(rel), &Content::Text(text + "\n"), 0o644)
}

/// containerd's config with the snippet merged, not yet written.
struct MergedConfig {
    node_path: PathBuf,
    old: Option<String>,
    new: String,
    merge: Merge,
}

fn merge_containerd(
    root: &Path,
    node_path: &Path,
    record: &Record,
) -> Result<MergedConfig, InstallError> {
    let (file, rel) = below(root, node_path)?;
    let old = match std::fs::read_to_string(&file) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(InstallError::io("reading", &file, e)),
    };
    let (new, merge) = containerd_config::merge(old.as_deref(), &node_path.display().to_string())?;
    let merge = match record.containerd.get(&rel) {
        Some(earlier) => combine(earlier.clone(), merge),
        None => merge,
    };
    Ok(MergedConfig {
        node_path: node_path.to_path_buf(),
        old,
        new,
        merge,
    })
}

fn write_containerd(
    root: &Path,
    m: MergedConfig,
    record: &mut Record,
    report: &mut Report,
) -> Result<(), InstallError> {
    let (file, rel) = below(root, &m.node_path)?;
    for r in m.merge.replaced() {
        report
            .notes
            .push(format!("{}: replaced {r}", m.node_path.display()));
    }
    if m.old.as_deref() == Some(m.new.as_str()) {
        report.add(Action::Unchanged, &m.node_path);
    } else {
        make_parents(root, &rel, record)?;
        write_atomically(&file, &Content::Text(m.new), 0o644)?;
        report.add(Action::Merged, &m.node_path);
    }
    record.containerd.insert(rel, m.merge);
    Ok(())
}

/// A second merge into a file already merged keeps what the first found
/// there (the operator's values), not cloister's own.
fn combine(earlier: Merge, later: Merge) -> Merge {
    let mut out = earlier.clone();
    for c in later.changes {
        if !out.changes.iter().any(|e| e.key == c.key) {
            out.changes.push(c);
        }
    }
    for t in later.created_tables {
        if !out.created_tables.contains(&t) {
            out.created_tables.push(t);
        }
    }
    out
}

/// Removes what the install record lists, where it is unchanged.
pub fn uninstall(root: &Path) -> Result<Report, InstallError> {
    let mut record = Record::load(root)?
        .ok_or_else(|| InstallError::NothingInstalled(root.join(RECORD_PATH)))?;
    let mut report = Report::default();
    for (rel, merge) in std::mem::take(&mut record.containerd) {
        let file = root.join(&rel);
        let node_path = Path::new("/").join(&rel);
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.add(Action::Gone, &node_path);
                continue;
            }
            Err(e) => return Err(InstallError::io("reading", &file, e)),
        };
        let (back, kept) =
            containerd_config::revert(&text, &node_path.display().to_string(), &merge)?;
        for k in kept {
            report.notes.push(format!(
                "{}: kept `{k}`, changed since the install",
                node_path.display()
            ));
        }
        match back {
            Some(t) => write_atomically(&file, &Content::Text(t), 0o644)?,
            None => {
                std::fs::remove_file(&file).map_err(|e| InstallError::io("removing", &file, e))?
            }
        }
        report.add(Action::Reverted, &node_path);
    }
    for (rel, sha) in std::mem::take(&mut record.files) {
        let path = root.join(&rel);
        let node_path = Path::new("/").join(&rel);
        let action = match sha256_file(&path)? {
            None => Action::Gone,
            Some(h) if h == sha => {
                std::fs::remove_file(&path).map_err(|e| InstallError::io("removing", &path, e))?;
                Action::Removed
            }
            Some(_) => Action::KeptChanged,
        };
        report.add(action, &node_path);
    }
    let record_file = root.join(RECORD_PATH);
    std::fs::remove_file(&record_file)
        .map_err(|e| InstallError::io("removing", &record_file, e))?;
    for rel in record.dirs.iter().rev() {
        let dir = root.join(rel);
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => report.notes.push(format!(
                "kept the directory /{}: it holds files the install did not place",
                rel.display()
            )),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_paths_must_be_plain_and_absolute() {
        let r = Path::new("/host");
        assert_eq!(
            below(r, Path::new("/etc/containerd/config.toml"))
                .unwrap()
                .0,
            Path::new("/host/etc/containerd/config.toml")
        );
        for bad in ["etc/x", "/etc/../x", "/", "/etc/x/.."] {
            assert!(
                matches!(below(r, Path::new(bad)), Err(InstallError::BadPath(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_written_config_is_a_valid_node_config_naming_what_was_placed() {
        let d = NodeConfig::default();
        let text = config_text(&d);
        let parsed = NodeConfig::parse(&text, "config.toml").unwrap();
        assert_eq!(parsed, d, "the written config restates the defaults");
    }
}
