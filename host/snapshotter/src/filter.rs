//! The subset of containerd's filter syntax (`filters/parser.go`) that Walk
//! (the List RPC) honours.
//!
//! Supported: one or more filter strings, any of which may match (OR); in
//! each, comma-separated selectors that must all match (AND); a selector is a
//! field path alone (the field is present and non-empty) or followed by `==`
//! or `!=` and a value. Field paths are `name`, `parent`, `kind` (`active`,
//! `view`, `committed`; these three are always present, possibly empty) and
//! `labels.<key>` (present when set); a path component or a value may
//! be double-quoted with backslash escapes, as in containerd's own query
//! `labels."containerd.io/snapshot.ref"==<chainID>,parent=="<parent>"`, which
//! its metadata layer sends after a remote-snapshot Prepare. Unknown fields
//! never match. Regular-expression selectors (`~=`) are refused with
//! InvalidArgument rather than silently ignored. With no filter, Walk returns
//! every snapshot, which is what containerd's garbage collector asks for.

use crate::error::{Error, Result};
use crate::store::Snapshot;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Present,
    Equal(String),
    NotEqual(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Selector {
    path: Vec<String>,
    op: Op,
}

/// Parsed filters: matches when any alternative matches.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    alternatives: Vec<Vec<Selector>>,
}

impl Filter {
    /// Parses the filter strings of a List request. Empty strings are
    /// skipped; no strings at all match everything.
    pub fn parse(filters: &[String]) -> Result<Filter> {
        let mut alternatives = Vec::new();
        for text in filters {
            if text.trim().is_empty() {
                continue;
            }
            alternatives.push(
                Parser::new(text)
                    .parse()
                    .map_err(|why| Error::InvalidArgument(format!("filter {text:?}: {why}")))?,
            );
        }
        Ok(Filter { alternatives })
    }

    /// Whether the snapshot `name` matches.
    pub fn matches(&self, name: &str, snapshot: &Snapshot) -> bool {
        self.alternatives.is_empty()
            || self
                .alternatives
                .iter()
                .any(|all| all.iter().all(|s| selector_matches(s, name, snapshot)))
    }
}

/// A field's value, as containerd's snapshot adaptor gives it: `name`,
/// `parent` and `kind` are always present (a root snapshot's parent is
/// present and empty, so `parent==""` matches it, which containerd's own
/// remote-snapshot query relies on); a label is present when it is set.
fn field<'a>(path: &[String], name: &'a str, snapshot: &'a Snapshot) -> Option<&'a str> {
    match path.first().map(String::as_str)? {
        "name" if path.len() == 1 => Some(name),
        "parent" if path.len() == 1 => Some(snapshot.parent.as_str()),
        "kind" if path.len() == 1 => Some(snapshot.kind.as_str()),
        "labels" if path.len() > 1 => snapshot
            .labels
            .get(&path[1..].join("."))
            .map(String::as_str),
        _ => None,
    }
}

fn selector_matches(selector: &Selector, name: &str, snapshot: &Snapshot) -> bool {
    let value = field(&selector.path, name, snapshot);
    match &selector.op {
        Op::Present => value.is_some(),
        Op::Equal(want) => value == Some(want.as_str()),
        // As containerd: an absent field differs from any value.
        Op::NotEqual(want) => value != Some(want.as_str()),
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser { text, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_spaces(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }

    fn parse(mut self) -> std::result::Result<Vec<Selector>, String> {
        let mut selectors = Vec::new();
        loop {
            self.skip_spaces();
            selectors.push(self.selector()?);
            self.skip_spaces();
            match self.peek() {
                None => return Ok(selectors),
                Some(',') => self.pos += 1,
                Some(c) => return Err(format!("unexpected {c:?} at byte {}", self.pos)),
            }
        }
    }

    fn selector(&mut self) -> std::result::Result<Selector, String> {
        let mut path = vec![self.component()?];
        while self.peek() == Some('.') {
            self.pos += 1;
            path.push(self.component()?);
        }
        self.skip_spaces();
        let rest = self.rest();
        let op = if rest.starts_with("==") || rest.starts_with("!=") {
            self.pos += 2;
            self.skip_spaces();
            let value = self.value()?;
            if rest.starts_with("==") {
                Op::Equal(value)
            } else {
                Op::NotEqual(value)
            }
        } else if rest.starts_with("~=") {
            return Err("regular-expression selectors (~=) are not supported".into());
        } else {
            Op::Present
        };
        Ok(Selector { path, op })
    }

    fn component(&mut self) -> std::result::Result<String, String> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(format!("expected a field name at byte {start}"));
        }
        Ok(self.text[start..self.pos].to_string())
    }

    fn value(&mut self) -> std::result::Result<String, String> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while let Some(c) = self.peek().filter(|&c| c != ',' && !c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
        if start == self.pos {
            return Err(format!("expected a value at byte {start}"));
        }
        Ok(self.text[start..self.pos].to_string())
    }

    /// A double-quoted string with Go-style escapes (what `%q` writes).
    fn quoted(&mut self) -> std::result::Result<String, String> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let (_, e) = chars
                        .next()
                        .ok_or_else(|| format!("unterminated string at byte {start}"))?;
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        '\\' | '"' | '\'' => e,
                        other => {
                            return Err(format!(
                                "unsupported escape \\{other} in string at byte {start}"
                            ))
                        }
                    });
                }
                c => out.push(c),
            }
        }
        Err(format!("unterminated string at byte {start}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use super::*;
    use crate::store::Kind;

    fn snapshot(kind: Kind, parent: &str, labels: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            id: 1,
            kind,
            parent: parent.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            created_at: SystemTime::now(),
            updated_at: SystemTime::now(),
            has_dir: false,
        }
    }

    fn f(filters: &[&str]) -> Filter {
        Filter::parse(&filters.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn containerd_remote_snapshot_query() {
        let s = snapshot(
            Kind::Committed,
            "sha256:p",
            &[("containerd.io/snapshot.ref", "sha256:c")],
        );
        let q = f(&[r#"labels."containerd.io/snapshot.ref"==sha256:c,parent=="sha256:p""#]);
        assert!(q.matches("sha256:c", &s));
        let q = f(&[r#"labels."containerd.io/snapshot.ref"==sha256:c,parent=="sha256:other""#]);
        assert!(!q.matches("sha256:c", &s));
        // The query for a first layer: its parent is present and empty.
        let root = snapshot(
            Kind::Committed,
            "",
            &[("containerd.io/snapshot.ref", "sha256:c")],
        );
        let q = f(&[r#"labels."containerd.io/snapshot.ref"==sha256:c,parent=="""#]);
        assert!(q.matches("x", &root));
        assert!(!q.matches("x", &s));
        assert!(f(&["parent"]).matches("x", &root));
    }

    #[test]
    fn fields_ops_and_alternatives() {
        let s = snapshot(Kind::Active, "", &[("a.b", "1"), ("c", "x y")]);
        assert!(f(&[]).matches("n", &s));
        assert!(f(&["kind==active"]).matches("n", &s));
        assert!(!f(&["kind==committed"]).matches("n", &s));
        assert!(f(&["kind==committed", "name==n"]).matches("n", &s));
        assert!(f(&["labels.a.b==1"]).matches("n", &s));
        assert!(f(&[r#"labels.c=="x y""#]).matches("n", &s));
        assert!(f(&["labels.c!=z"]).matches("n", &s));
        assert!(f(&["labels.missing!=z"]).matches("n", &s));
        assert!(!f(&["labels.missing"]).matches("n", &s));
        assert!(f(&["labels.c"]).matches("n", &s));
        assert!(!f(&["kind==active, name==m"]).matches("n", &s));
        assert!(!f(&["unknown==1"]).matches("n", &s));
    }

    #[test]
    fn bad_filters_are_refused() {
        for bad in [
            "name~=x",
            "==x",
            "name==",
            r#"labels."open"#,
            "name==a b",
            "name=x",
        ] {
            let err = Filter::parse(&[bad.to_string()]).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
