//! Merging cloister's snippet (`deploy/containerd/config.toml`) into a
//! node's containerd config, and taking it out again.
//!
//! The merge sets each leaf key of the snippet in the node's file with
//! toml_edit, which keeps the operator's formatting and comments, and
//! records what each key held before; the revert puts back exactly that and
//! drops the tables the merge created, so an install followed by an
//! uninstall gives the original bytes back.
use serde::{Deserialize, Serialize};
use toml_edit::{DocumentMut, Item, Table};

/// The snippet `cloister install` prints and merges.
pub const SNIPPET: &str = include_str!("../../../deploy/containerd/config.toml");

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("{path}: not TOML: {message}")]
    Syntax { path: String, message: String },
    #[error(
        "{path}: containerd config `version = {found}`; cloister's snippet is for version 2 (containerd 1.6/1.7)"
    )]
    Version { path: String, found: String },
    #[error("{path}: key `{key}` is not a table, so cloister's `{key}.…` keys cannot be set")]
    NotATable { path: String, key: String },
}

/// One key the merge set: what it held before (TOML text), and what it was set to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    pub key: Vec<String>,
    pub previous: Option<String>,
    pub placed: String,
}

/// What a merge did to one file, for the revert.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merge {
    pub changes: Vec<KeyChange>,
    /// Tables the merge created, outermost first.
    pub created_tables: Vec<Vec<String>>,
    /// The file did not exist and the merge wrote it.
    pub created_file: bool,
}

impl Merge {
    /// The keys whose old value the merge replaced (not just added), as
    /// `dotted.key: old -> new`, for the operator to read.
    pub fn replaced(&self) -> Vec<String> {
        self.changes
            .iter()
            .filter_map(|c| {
                let old = c.previous.as_ref()?;
                (old != &c.placed).then(|| format!("{}: {old} -> {}", c.key.join("."), c.placed))
            })
            .collect()
    }
}

fn parse(text: &str, path: &str) -> Result<DocumentMut, MergeError> {
    text.parse::<DocumentMut>().map_err(|e| MergeError::Syntax {
        path: path.into(),
        message: e.to_string(),
    })
}

/// The snippet's leaf keys with their values.
fn leaves(t: &Table, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Item)>) {
    for (k, item) in t.iter() {
        prefix.push(k.to_string());
        match item.as_table() {
            Some(sub) => leaves(sub, prefix, out),
            None => out.push((prefix.clone(), item.clone())),
        }
        prefix.pop();
    }
}

fn value_text(item: &Item) -> String {
    match item.as_value() {
        Some(v) => v.clone().decorated("", "").to_string(),
        None => item.to_string().trim().to_string(),
    }
}

/// Merges the snippet into `text` (the node's file, `None` if it does not
/// exist). Returns the new text and the record of what changed.
pub fn merge(text: Option<&str>, path: &str) -> Result<(String, Merge), MergeError> {
    let mut doc = parse(text.unwrap_or("version = 2\n"), path)?;
    match doc.get("version").and_then(Item::as_integer) {
        Some(2) => {}
        other => {
            return Err(MergeError::Version {
                path: path.into(),
                found: other.map_or("missing".to_string(), |v| v.to_string()),
            })
        }
    }
    let snippet = parse(SNIPPET, "the built-in snippet").expect("the snippet is valid TOML");
    let mut wanted = Vec::new();
    leaves(snippet.as_table(), &mut Vec::new(), &mut wanted);
    let mut record = Merge {
        created_file: text.is_none(),
        ..Merge::default()
    };
    for (key, value) in wanted {
        let (last, tables) = key.split_last().expect("a leaf has a name");
        let mut t = doc.as_table_mut();
        for (depth, name) in tables.iter().enumerate() {
            if !t.contains_key(name) {
                let mut new = Table::new();
                // Tables that hold only tables print no header of their own.
                new.set_implicit(true);
                t.insert(name, Item::Table(new));
                record.created_tables.push(key[..=depth].to_vec());
            }
            t = t
                .get_mut(name)
                .and_then(Item::as_table_mut)
                .ok_or_else(|| MergeError::NotATable {
                    path: path.into(),
                    key: key[..=depth].join("."),
                })?;
        }
        // A table that gets keys of its own needs its header.
        t.set_implicit(false);
        let previous = t.get(last).map(value_text);
        let placed = value_text(&value);
        t.insert(last, value);
        record.changes.push(KeyChange {
            key: key.clone(),
            previous,
            placed,
        });
    }
    Ok((doc.to_string(), record))
}

/// Takes a merge out of `text`: every key that still holds what the merge
/// placed gets its previous value back (or goes), and the tables the merge
/// created go once empty. Returns the new text, or `None` when the merge
/// created the file and nothing else is left in it; and the keys that were
/// changed since the install and so were left as they are.
pub fn revert(
    text: &str,
    path: &str,
    record: &Merge,
) -> Result<(Option<String>, Vec<String>), MergeError> {
    let mut doc = parse(text, path)?;
    let mut kept = Vec::new();
    for change in &record.changes {
        let (last, tables) = change.key.split_last().expect("a leaf has a name");
        let Some(t) = table_mut(&mut doc, tables) else {
            continue;
        };
        match t.get(last).map(value_text) {
            Some(now) if now == change.placed => {}
            Some(_) => {
                kept.push(change.key.join("."));
                continue;
            }
            None => continue,
        }
        match &change.previous {
            Some(old) => {
                let mut put = format!("{last} = {old}\n")
                    .parse::<DocumentMut>()
                    .ok()
                    .and_then(|d| d.as_table().get(last).cloned());
                // A previous value that no longer parses on its own (it
                // always does for values toml_edit wrote) is dropped.
                if let Some(Item::Value(v)) = put.as_mut() {
                    let decor = t
                        .get(last)
                        .and_then(Item::as_value)
                        .map(|cur| cur.decor().clone());
                    if let Some(d) = decor {
                        *v.decor_mut() = d;
                    }
                }
                match put {
                    Some(item) => {
                        t.insert(last, item);
                    }
                    None => {
                        t.remove(last);
                    }
                }
            }
            None => {
                t.remove(last);
            }
        }
    }
    for table in record.created_tables.iter().rev() {
        let (last, parents) = table.split_last().expect("a table has a name");
        if let Some(parent) = table_mut(&mut doc, parents) {
            if parent
                .get(last)
                .and_then(Item::as_table)
                .is_some_and(Table::is_empty)
            {
                parent.remove(last);
            }
        }
    }
    let only_version = doc.as_table().len() == 1 && doc.contains_key("version");
    if record.created_file && only_version {
        return Ok((None, kept));
    }
    Ok((Some(doc.to_string()), kept))
}

fn table_mut<'a>(doc: &'a mut DocumentMut, path: &[String]) -> Option<&'a mut Table> {
    let mut t = doc.as_table_mut();
    for name in path {
        t = t.get_mut(name)?.as_table_mut()?;
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";

    fn as_toml(s: &str) -> toml::Table {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn merging_keeps_the_nodes_keys_and_adds_cloisters() {
        let (text, rec) = merge(Some(DEBIAN), "c.toml").unwrap();
        let t = as_toml(&text);
        let cri = &t["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["cni"]["bin_dir"].as_str(), Some("/usr/lib/cni"));
        assert_eq!(cri["containerd"]["snapshotter"].as_str(), Some("cloister"));
        assert_eq!(
            cri["containerd"]["runtimes"]["cloister"]["runtime_type"].as_str(),
            Some("io.containerd.cloister.v2")
        );
        assert_eq!(
            t["proxy_plugins"]["cloister"]["address"].as_str(),
            Some("/run/cloister/snapshotter.sock")
        );
        assert!(rec.replaced().is_empty(), "{:?}", rec.replaced());
        assert!(!rec.created_file);
    }

    #[test]
    fn a_merge_then_a_revert_gives_back_the_same_bytes() {
        let with_comment = format!("# the operator's note\n{DEBIAN}");
        let (merged, rec) = merge(Some(&with_comment), "c.toml").unwrap();
        assert!(merged.starts_with("# the operator's note\n"), "{merged}");
        let (back, kept) = revert(&merged, "c.toml", &rec).unwrap();
        assert_eq!(back.as_deref(), Some(with_comment.as_str()));
        assert!(kept.is_empty());
        // Merging twice changes nothing the second time.
        let (again, rec2) = merge(Some(&merged), "c.toml").unwrap();
        assert_eq!(again, merged);
        assert!(rec2.created_tables.is_empty());
    }

    #[test]
    fn a_replaced_value_is_named_and_restored() {
        let old = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"overlayfs\"\n";
        let (merged, rec) = merge(Some(old), "c.toml").unwrap();
        assert_eq!(
            rec.replaced(),
            vec!["plugins.io.containerd.grpc.v1.cri.containerd.snapshotter: \"overlayfs\" -> \"cloister\"".to_string()]
        );
        let (back, _) = revert(&merged, "c.toml", &rec).unwrap();
        assert_eq!(as_toml(back.as_deref().unwrap()), as_toml(old), "{back:?}");
    }

    #[test]
    fn a_key_the_operator_changed_after_the_install_is_left_alone() {
        let (merged, rec) = merge(Some(DEBIAN), "c.toml").unwrap();
        let edited = merged.replace(
            "runtime_type = \"io.containerd.cloister.v2\"",
            "runtime_type = \"io.containerd.mine.v2\"",
        );
        let (back, kept) = revert(&edited, "c.toml", &rec).unwrap();
        assert_eq!(
            kept,
            vec!["plugins.io.containerd.grpc.v1.cri.containerd.runtimes.cloister.runtime_type"]
        );
        let t = as_toml(back.as_deref().unwrap());
        assert_eq!(
            t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["cloister"]
                ["runtime_type"]
                .as_str(),
            Some("io.containerd.mine.v2")
        );
        assert!(!t.contains_key("proxy_plugins"));
    }

    #[test]
    fn a_missing_file_is_created_and_removed_again() {
        let (text, rec) = merge(None, "c.toml").unwrap();
        assert!(rec.created_file);
        assert!(text.starts_with("version = 2\n"), "{text}");
        let (back, _) = revert(&text, "c.toml", &rec).unwrap();
        assert_eq!(back, None);
    }

    #[test]
    fn other_versions_and_bad_shapes_are_refused_by_name() {
        let e = merge(Some("version = 3\n"), "/etc/c.toml").unwrap_err();
        assert!(
            e.to_string()
                .contains("/etc/c.toml: containerd config `version = 3`"),
            "{e}"
        );
        let e = merge(Some("root = \"/x\"\n"), "c.toml").unwrap_err();
        assert!(e.to_string().contains("`version = missing`"), "{e}");
        let e = merge(Some("version = 2\nproxy_plugins = 1\n"), "c.toml").unwrap_err();
        assert!(
            e.to_string().contains("key `proxy_plugins` is not a table"),
            "{e}"
        );
        let e = merge(Some("version = = 2\n"), "c.toml").unwrap_err();
        assert!(e.to_string().starts_with("c.toml: not TOML"), "{e}");
    }
}
