//! Image references (`[registry/]repository[:tag][@sha256:…]`), parsed
//! by hand.
//!
//! The parser itself lives in `cloister_signature::reference_parse`, so that
//! signature identities are parsed the same way, without oci-client's
//! regex (about 17 MB of heap on first use).

use oci_client::Reference;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: String,
}

/// Parses a reference the way `docker pull` does (see
/// [`cloister_signature::reference_parse::parse_reference`]); a reference
/// with neither tag nor digest means `:latest`.
pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
    cloister_signature::reference_parse::parse_reference(s).map_err(|reason| ReferenceError {
        reference: s.chars().take(300).collect(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = parse(s).unwrap();
        (
            r.registry().to_string(),
            r.repository().to_string(),
            r.tag().map(String::from),
            r.digest().map(String::from),
        )
    }

    #[test]
    fn parses_like_docker() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            p("127.0.0.1:5000/repo/app:1.0"),
            (
                "127.0.0.1:5000".into(),
                "repo/app".into(),
                Some("1.0".into()),
                None
            )
        );
        assert_eq!(
            p("busybox"),
            (
                "docker.io".into(),
                "library/busybox".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(
            p("localhost/x_y__z/a-b.c"),
            (
                "localhost".into(),
                "x_y__z/a-b.c".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(
            p(&format!("quay.io/org/app@{d}")),
            ("quay.io".into(), "org/app".into(), None, Some(d.clone()))
        );
        assert_eq!(
            p(&format!("reg:5000/app:v1@{d}")),
            ("reg:5000".into(), "app".into(), Some("v1".into()), Some(d))
        );
        assert_eq!(p("user/app:tag").1, "user/app");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "UPPER/case",
            "reg:5000/",
            "app:",
            "app@sha256:1234",
            "app:bad tag",
            "a//b",
            "-app",
            "reg:port/app",
            "app:t@sha512:00",
            "../../etc/passwd",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
