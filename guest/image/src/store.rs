//! The layer store: one directory per unpacked layer, named by its
//! diff_id, so a layer is unpacked once and shared by every container
//! (and image) that has it. In the guest it lives on tmpfs.
//!
//! ```text
//! <root>/layers/sha256/<diff_id hex>/   unpacked layer, overlayfs format
//! <root>/tmp/<diff_id hex>.XXXXXX/      a layer being unpacked
//! ```
//!
//! A layer appears under `layers/` only complete and verified: it is
//! unpacked under `tmp/` and renamed into place (`RENAME_NOREPLACE`; if a
//! concurrent pull got there first, ours is dropped). A failed layer's
//! temp directory is removed, so a failed pull leaves nothing behind.
//!
//! Containers use the layers as overlayfs lowerdirs
//! ([`crate::PulledImage::overlay_lowerdirs`]), or a copy assembled with
//! [`crate::assemble::assemble_rootfs`] where overlayfs is not available.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;

#[derive(Debug, Clone)]
pub struct LayerStore {
    root: PathBuf,
}

/// A layer being unpacked; removed on drop unless committed.
pub struct TempLayer {
    dir: Option<tempfile::TempDir>,
    final_path: PathBuf,
}

impl LayerStore {
    /// Opens (creating if needed) a store at `root`. Leftovers of pulls
    /// that were interrupted (a crash, a kill) are removed from `tmp/`, so
    /// one store must not be shared by two processes pulling at once.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("layers/sha256"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            for e in std::fs::read_dir(&tmp)? {
                let e = e?;
                tracing::info!(path = %e.path().display(), "removing leftover of an interrupted pull");
                // std's remove_dir_all does not follow symlinks.
                if e.file_type()?.is_dir() {
                    std::fs::remove_dir_all(e.path())?;
                } else {
                    std::fs::remove_file(e.path())?;
                }
            }
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the layer with this diff_id lives (whether or not it exists).
    pub fn layer_path(&self, diff_id: &Sha256Digest) -> PathBuf {
        self.root.join("layers/sha256").join(diff_id.hex())
    }

    pub fn contains(&self, diff_id: &Sha256Digest) -> bool {
        self.layer_path(diff_id).is_dir()
    }

    /// The diff_ids of all complete layers.
    pub fn list(&self) -> io::Result<Vec<Sha256Digest>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.root.join("layers/sha256"))? {
            let name = e?.file_name();
            if let Some(d) = name
                .to_str()
                .and_then(|n| Sha256Digest::parse(&format!("sha256:{n}")).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Entries in `tmp/` (layers being unpacked right now).
    pub fn pending(&self) -> io::Result<usize> {
        Ok(std::fs::read_dir(self.root.join("tmp"))?.count())
    }

    /// Deletes a layer (the caller knows no container uses it).
    pub fn remove(&self, diff_id: &Sha256Digest) -> io::Result<()> {
        match std::fs::remove_dir_all(self.layer_path(diff_id)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// Starts unpacking a layer into a fresh temp directory (mode 0755).
    pub(crate) fn begin(&self, diff_id: &Sha256Digest) -> io::Result<TempLayer> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}.", diff_id.hex()))
            .tempdir_in(self.root.join("tmp"))?;
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        Ok(TempLayer {
            dir: Some(dir),
            final_path: self.layer_path(diff_id),
        })
    }
}

impl TempLayer {
    pub fn path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(&self.final_path)
    }

    /// Moves the finished layer into place. If the layer already exists
    /// (another pull of the same layer finished first), ours is removed
    /// and the existing one is used: both were verified against the same
    /// diff_id.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        let Some(dir) = self.dir.take() else {
            return Ok(self.final_path.clone());
        };
        let tmp = dir.keep();
        match rustix::fs::renameat_with(
            rustix::fs::CWD,
            &tmp,
            rustix::fs::CWD,
            &self.final_path,
            rustix::fs::RenameFlags::NOREPLACE,
        ) {
            Ok(()) => Ok(self.final_path.clone()),
            Err(rustix::io::Errno::EXIST) => {
                std::fs::remove_dir_all(&tmp)?;
                Ok(self.final_path.clone())
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(crate::unpack::fsops::errno(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_layer_is_removed_unless_committed() {
        let root = tempfile::tempdir().unwrap();
        let store = LayerStore::open(root.path()).unwrap();
        let d = Sha256Digest::of(b"layer");
        {
            let t = store.begin(&d).unwrap();
            std::fs::write(t.path().join("f"), b"x").unwrap();
            assert_eq!(store.pending().unwrap(), 1);
        }
        assert_eq!(store.pending().unwrap(), 0);
        assert!(!store.contains(&d));

        let t = store.begin(&d).unwrap();
        std::fs::write(t.path().join("f"), b"x").unwrap();
        let p = t.commit().unwrap();
        assert_eq!(std::fs::read(p.join("f")).unwrap(), b"x");
        assert_eq!(store.list().unwrap(), vec![d]);

        // A second commit of the same diff_id keeps the first.
        let t = store.begin(&d).unwrap();
        std::fs::write(t.path().join("f"), b"y").unwrap();
        t.commit().unwrap();
        assert_eq!(std::fs::read(store.layer_path(&d).join("f")).unwrap(), b"x");
        assert_eq!(store.pending().unwrap(), 0);
    }

    #[test]
    fn open_removes_leftovers() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("tmp/abc.123/sub")).unwrap();
        let store = LayerStore::open(root.path()).unwrap();
        assert_eq!(store.pending().unwrap(), 0);
    }
}
