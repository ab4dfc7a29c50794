//! Checks on what containerd (or anyone reaching the socket) sends.
//!
//! The limits on labels follow containerd's own `labels.Validate`: a key and
//! its value together at most 4096 bytes. The total limit (64 KiB) keeps one
//! snapshot from bloating the metadata file. A NUL byte is refused anywhere in
//! a name or label: containerd's bolt store could not hold it either.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Most bytes one label (key plus value) may take, as containerd's `labels.Validate`.
pub const MAX_LABEL_BYTES: usize = 4096;
/// Most bytes all labels of one snapshot may take together.
pub const MAX_LABELS_TOTAL_BYTES: usize = 64 * 1024;
/// Most bytes of a key or name. containerd's keys are far shorter
/// (`<namespace>/<n>/<key>`); this only bounds what one request can store.
pub const MAX_NAME_BYTES: usize = 4096;

/// A key or name that identifies a snapshot: `what` says which argument it
/// was ("key", "name", "parent") for the error message.
pub fn name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidArgument(format!("snapshot {what} is empty")));
    }
    if value.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "snapshot {what} {value:?} contains a NUL byte"
        )));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(Error::InvalidArgument(format!(
            "snapshot {what} is {} bytes long, more than the {MAX_NAME_BYTES} allowed",
            value.len()
        )));
    }
    Ok(())
}

/// A parent, which may be empty (no parent).
pub fn parent(value: &str) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    name("parent", value)
}

/// The labels of one snapshot.
pub fn labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Result<()> {
    let mut total = 0usize;
    for (key, value) in labels {
        if key.is_empty() {
            return Err(Error::InvalidArgument("label with an empty key".into()));
        }
        if key.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "label key {key:?} contains a NUL byte"
            )));
        }
        if value.contains('\0') {
            return Err(Error::InvalidArgument(format!(
                "value of label {key:?} contains a NUL byte"
            )));
        }
        let size = key.len() + value.len();
        if size > MAX_LABEL_BYTES {
            return Err(Error::InvalidArgument(format!(
                "label {:?} is {size} bytes (key and value), more than the {MAX_LABEL_BYTES} allowed",
                truncate(key)
            )));
        }
        total += size;
    }
    if total > MAX_LABELS_TOTAL_BYTES {
        return Err(Error::InvalidArgument(format!(
            "labels take {total} bytes in all, more than the {MAX_LABELS_TOTAL_BYTES} allowed"
        )));
    }
    Ok(())
}

/// Labels as they arrive over gRPC.
pub fn label_map(map: &HashMap<String, String>) -> Result<()> {
    labels(map.iter())
}

fn truncate(key: &str) -> String {
    if key.len() <= 64 {
        return key.to_string();
    }
    let mut end = 64;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &key[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("key", "ns/1/extract-1 sha256:aa").is_ok());
        assert!(name("key", "").unwrap_err().to_string().contains("empty"));
        assert!(name("key", "a\0b").unwrap_err().to_string().contains("NUL"));
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(name("key", &long).is_err());
        assert!(parent("").is_ok());
        assert!(parent("p\0").is_err());
    }

    #[test]
    fn label_limits() {
        let mut map = HashMap::new();
        map.insert("k".to_string(), "v".repeat(MAX_LABEL_BYTES - 1));
        assert!(label_map(&map).is_ok());
        map.insert("k".to_string(), "v".repeat(MAX_LABEL_BYTES));
        let err = label_map(&map).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(err.to_string().contains("\"k\""), "{err}");

        let mut map = HashMap::new();
        for i in 0..20 {
            map.insert(format!("k{i}"), "v".repeat(4000));
        }
        let err = label_map(&map).unwrap_err();
        assert!(err.to_string().contains("in all"), "{err}");

        let mut map = HashMap::new();
        map.insert("bad\0key".to_string(), String::new());
        assert!(label_map(&map).is_err());
        let mut map = HashMap::new();
        map.insert(String::new(), "v".to_string());
        assert!(label_map(&map).is_err());
    }
}
