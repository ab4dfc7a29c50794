//! The install record, `<root>/var/lib/cloister/install.json`: every file
//! `cloister install` placed with the sha256 it placed, the directories it
//! created, and its changes to containerd's config. `--uninstall` removes
//! exactly these, and nothing that changed since.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::containerd_config::Merge;
use super::InstallError;

/// Where the record lives, below the install root.
pub const RECORD_PATH: &str = "var/lib/cloister/install.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Paths relative to the root, each with the sha256 (hex) it was placed with.
    pub files: BTreeMap<PathBuf, String>,
    /// Directories the install created (relative), in creation order.
    pub dirs: Vec<PathBuf>,
    /// containerd config files (relative) and what the merge changed in each.
    pub containerd: BTreeMap<PathBuf, Merge>,
}

impl Record {
    pub fn load(root: &Path) -> Result<Option<Record>, InstallError> {
        let path = root.join(RECORD_PATH);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| InstallError::Record {
                        path,
                        problem: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(InstallError::io("reading", &path, e)),
        }
    }

    pub fn note_dir(&mut self, rel: &Path) {
        if !self.dirs.iter().any(|d| d == rel) {
            self.dirs.push(rel.to_path_buf());
        }
    }
}
