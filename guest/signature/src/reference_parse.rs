//! Image references (`[registry/]repository[:tag][@sha256:…]`), parsed
//! by hand, for the pull pipeline (cloister-image) and for signature
//! identities alike.
//!
//! Why not `oci_client::Reference::from_str`: it compiles a large Unicode
//! regex on first use, which peaks at about 17 MB of heap, over half the
//! guest's memory budget for a whole pull. The grammar (distribution's
//! `reference` package) is small enough to check directly.

use oci_client::Reference;

const DOCKER_HUB: &str = "docker.io";

/// `sha256:` and 64 lower-case hex digits.
fn check_digest(d: &str) -> Result<(), &'static str> {
    let hex_part = d
        .strip_prefix("sha256:")
        .ok_or("only sha256 digests are supported")?;
    if hex_part.len() != 64 {
        return Err("expected 64 hex digits after sha256:");
    }
    if !hex_part
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("digest must be lower-case hex");
    }
    Ok(())
}

fn is_path_component(c: &str) -> bool {
    // [a-z0-9]+ (separated by '.', '_', '__' or '-'+)
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut prev_sep = false;
    let mut underscores = 0;
    for &x in b {
        match x {
            b'a'..=b'z' | b'0'..=b'9' => {
                prev_sep = false;
                underscores = 0;
            }
            b'_' => {
                underscores += 1;
                if underscores > 2 || (prev_sep && underscores == 1) {
                    return false;
                }
                prev_sep = true;
            }
            b'.' => {
                if prev_sep {
                    return false;
                }
                prev_sep = true;
            }
            b'-' => prev_sep = true,
            _ => return false,
        }
    }
    true
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

fn is_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (r, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') {
        return host.ends_with(']') && host.len() > 2;
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Parses a reference the way `docker pull` does: the first path part is
/// a registry if it has a '.' or ':' or is `localhost`; else the image is
/// on Docker Hub (`library/` added for one-part names). A reference with
/// neither tag nor digest means `:latest`.
pub fn parse_reference(s: &str) -> Result<Reference, String> {
    let err = |reason: &str| reason.to_string();
    if s.is_empty() || s.len() > 512 {
        return Err(err("empty or longer than 512 bytes"));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            check_digest(d).map_err(err)?;
            (r, Some(d.to_string()))
        }
        None => (s, None),
    };
    let (registry, path) = match rest.split_once('/') {
        Some((first, p)) if first.contains(['.', ':']) || first == "localhost" => {
            if !is_registry(first) {
                return Err(err("invalid registry host"));
            }
            (first.to_string(), p)
        }
        _ => (DOCKER_HUB.to_string(), rest),
    };
    // A tag follows the last ':' after the last '/'.
    let (repository, tag) = match path.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => {
            if !is_tag(t) {
                return Err(err("invalid tag"));
            }
            (r.to_string(), Some(t.to_string()))
        }
        _ => (path.to_string(), None),
    };
    if repository.is_empty() || !repository.split('/').all(is_path_component) {
        return Err(err(
            "invalid repository (lower-case letters, digits and . _ - separators)",
        ));
    }
    // Docker Hub's legacy name normalizes to docker.io, as in distribution.
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(registry, repository, t, d),
        (None, Some(d)) => Reference::with_digest(registry, repository, d),
        (Some(t), None) => Reference::with_tag(registry, repository, t),
        (None, None) => Reference::with_tag(registry, repository, "latest".into()),
    })
}
