//! Docker references in the fully expanded form that containers-policy.json
//! scopes and signed identities use (`docker.io/library/busybox:latest`, not
//! `busybox`).
//!
//! `reference_parse` parses and normalizes names (by hand, not with
//! oci-client's 17 MB regex), but it adds the tag `latest` to a bare name, and a signed identity must keep the difference
//! between "repository only" (what cosign writes) and "repository:latest"
//! (`matchRepoDigestOrExact` accepts only the latter for a tagged image).
//! [`DockerRef`] wraps the parse and remembers whether a tag was given.

use std::fmt;

use oci_client::Reference;

use crate::error::SignatureError;

/// A normalized docker reference: `name` is `registry/repository`, plus an
/// optional tag and an optional digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRef {
    name: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl DockerRef {
    /// Parses and normalizes a reference; a name without tag or digest stays
    /// name-only.
    pub fn parse(s: &str) -> Result<Self, SignatureError> {
        let invalid = |reason: String| SignatureError::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        let r = crate::reference_parse::parse_reference(s).map_err(invalid)?;
        if r.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase".into()));
        }
        // The parser accepted `s`, so the part before '@' is `name[:tag]`, and
        // a ':' in its last path segment starts the tag (a ':' before the
        // last '/' is a registry port).
        let before_digest = s.split('@').next().unwrap_or(s);
        let last_segment = before_digest.rsplit('/').next().unwrap_or(before_digest);
        let explicit_tag = last_segment.contains(':');
        Ok(Self {
            name: format!("{}/{}", r.registry(), r.repository()),
            tag: if explicit_tag {
                r.tag().map(str::to_string)
            } else {
                None
            },
            digest: r.digest().map(str::to_string),
        })
    }

    /// The identity of an image being pulled. A reference with both a tag
    /// and a digest is treated as a digest reference: the digest is what is
    /// pulled, so the tag is not part of the identity (containers/image
    /// refuses such references; we accept them as their digest form).
    pub fn from_image(r: &Reference) -> Self {
        let name = format!("{}/{}", r.registry(), r.repository());
        match r.digest() {
            Some(d) => Self {
                name,
                tag: None,
                digest: Some(d.to_string()),
            },
            None => Self {
                name,
                tag: Some(r.tag().unwrap_or("latest").to_string()),
                digest: None,
            },
        }
    }

    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry host (with port), e.g. `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        self.name.split('/').next().unwrap_or(&self.name)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// The same reference without tag and digest.
    pub fn repository(&self) -> DockerRef {
        DockerRef {
            name: self.name.clone(),
            tag: None,
            digest: None,
        }
    }
}

impl fmt::Display for DockerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Whether `prefix` (a host[:port], a namespace or a repository, fully
/// expanded) covers the reference string `r`: equal, or followed by '/',
/// '@', or — only when the prefix is more than a host — ':' (a tag). A bare
/// host does not match the same host with another port.
pub fn ref_matches_prefix(r: &str, prefix: &str) -> bool {
    let Some(rest) = r.strip_prefix(prefix) else {
        return false;
    };
    match rest.chars().next() {
        None => true,
        Some('/') | Some('@') => true,
        Some(':') => prefix.contains('/'),
        Some(_) => false,
    }
}

/// Checks a remapIdentity `prefix`/`signedPrefix` value: a host[:port], or a
/// fully expanded namespace or repository, without tag or digest.
pub fn validate_name_prefix(p: &str) -> Result<(), String> {
    let mut parts = p.split('/');
    let host = parts.next().unwrap_or_default();
    if !valid_host(host) {
        return Err(format!("{p:?} does not start with a registry host[:port]"));
    }
    let has_path = p.contains('/');
    if has_path && !(host.contains('.') || host.contains(':') || host == "localhost") {
        return Err(format!(
            "{p:?} is not fully expanded (the first component must be a registry host, e.g. docker.io/{p})"
        ));
    }
    for c in parts {
        if !valid_path_component(c) {
            return Err(format!(
                "{p:?}: invalid path component {c:?} (tags and digests are not allowed)"
            ));
        }
    }
    Ok(())
}

/// `host[:port]` as docker references allow it.
pub fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (h, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A repository path component: `[a-z0-9]+` joined by `.`, `_`, `__` or
/// runs of `-`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let dashes = sep.bytes().all(|x| x == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DockerRef {
        DockerRef::parse(s).unwrap()
    }

    #[test]
    fn normalizes_docker_hub_names() {
        assert_eq!(p("busybox").to_string(), "docker.io/library/busybox");
        assert_eq!(
            p("busybox:1.36").to_string(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(p("user/app").to_string(), "docker.io/user/app");
        assert_eq!(
            p("index.docker.io/library/busybox:latest").to_string(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn keeps_name_only_apart_from_latest() {
        let bare = p("127.0.0.1:5000/busybox");
        assert!(bare.is_name_only());
        assert_eq!(bare.to_string(), "127.0.0.1:5000/busybox");
        let latest = p("127.0.0.1:5000/busybox:latest");
        assert_eq!(latest.tag(), Some("latest"));
        assert_ne!(bare, latest);
        assert_eq!(bare.registry(), "127.0.0.1:5000");
    }

    #[test]
    fn keeps_digest_and_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = p(&format!("reg.example.com/ns/app:v1@{d}"));
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest(), Some(d.as_str()));
        let r = p(&format!("reg.example.com/ns/app@{d}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.name(), "reg.example.com/ns/app");
    }

    #[test]
    fn image_identity_prefers_digest() {
        let d = format!("sha256:{}", "b".repeat(64));
        let img = Reference::try_from(format!("localhost:5000/app:v1@{d}").as_str()).unwrap();
        let id = DockerRef::from_image(&img);
        assert_eq!(id.to_string(), format!("localhost:5000/app@{d}"));
        let img = Reference::try_from("localhost:5000/app").unwrap();
        assert_eq!(
            DockerRef::from_image(&img).to_string(),
            "localhost:5000/app:latest"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "UPPER/case",
            "a b",
            "reg.io/app@sha256:abc",
            "reg.io/app:",
        ] {
            let e = DockerRef::parse(bad).unwrap_err();
            assert!(
                e.to_string().contains("invalid image reference"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn prefix_matching() {
        assert!(ref_matches_prefix("example.com/a/b:1", "example.com"));
        assert!(ref_matches_prefix("example.com/a/b:1", "example.com/a"));
        assert!(ref_matches_prefix("example.com/a/b:1", "example.com/a/b"));
        assert!(ref_matches_prefix(
            "example.com/a/b@sha256:00",
            "example.com/a/b"
        ));
        assert!(!ref_matches_prefix("example.com/a/bc:1", "example.com/a/b"));
        assert!(!ref_matches_prefix("example.com:5000/a:1", "example.com"));
        assert!(!ref_matches_prefix("example.comx/a:1", "example.com"));
        assert!(!ref_matches_prefix("other.com/a:1", "example.com"));
    }

    #[test]
    fn name_prefix_validation() {
        for ok in [
            "example.com",
            "example.com:5000",
            "localhost/ns",
            "docker.io/library",
            "reg.io/a/b-c/d__e",
        ] {
            validate_name_prefix(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "library/busybox",
            "reg.io/app:v1",
            "reg.io/App",
            "reg.io/a@x",
            "-x.io",
        ] {
            assert!(validate_name_prefix(bad).is_err(), "{bad}");
        }
    }
}
