//! `signedIdentity`: whether the identity a signature claims
//! (`critical.identity.docker-reference`) is acceptable for the image being
//! pulled, with the semantics of containers/image's policy_reference_match.

use crate::policy::SignedIdentity;
use crate::reference::{ref_matches_prefix, DockerRef};

/// Checks `signed` (the identity in the payload) against `image` (what is
/// being pulled). On mismatch, returns a description of what was expected.
pub fn check(rule: &SignedIdentity, image: &DockerRef, signed: &DockerRef) -> Result<(), String> {
    match rule {
        SignedIdentity::MatchExact => {
            // `image` always has a tag or a digest; the signature must name
            // exactly the same.
            if signed == image {
                Ok(())
            } else {
                Err(image.to_string())
            }
        }
        SignedIdentity::MatchRepoDigestOrExact => repo_digest_or_exact(image, signed),
        SignedIdentity::MatchRepository => same_repository(image, signed),
        SignedIdentity::ExactReference(r) => {
            if signed == r {
                Ok(())
            } else {
                Err(r.to_string())
            }
        }
        SignedIdentity::ExactRepository(r) => same_repository(r, signed),
        SignedIdentity::RemapIdentity {
            prefix,
            signed_prefix,
        } => {
            let image_str = image.to_string();
            if !ref_matches_prefix(&image_str, prefix) {
                return repo_digest_or_exact(image, signed);
            }
            let remapped = format!("{signed_prefix}{}", &image_str[prefix.len()..]);
            match DockerRef::parse(&remapped) {
                Ok(r) => repo_digest_or_exact(&r, signed),
                Err(e) => Err(format!(
                    "{remapped} (remapped from {image_str}, which fails: {e})"
                )),
            }
        }
    }
}

/// A tagged image needs a signature for exactly that `repo:tag`; a digest
/// reference needs a signature for the same repository (the digest itself is
/// checked against the payload separately).
fn repo_digest_or_exact(image: &DockerRef, signed: &DockerRef) -> Result<(), String> {
    if image.digest().is_some() {
        same_repository(image, signed)
    } else if signed == image {
        Ok(())
    } else {
        Err(image.to_string())
    }
}

fn same_repository(expected: &DockerRef, signed: &DockerRef) -> Result<(), String> {
    if signed.name() == expected.name() {
        Ok(())
    } else {
        Err(format!("repository {}", expected.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> DockerRef {
        DockerRef::parse(s).unwrap()
    }

    fn digest() -> String {
        format!("sha256:{}", "d".repeat(64))
    }

    fn ok(rule: &SignedIdentity, image: &str, signed: &str) -> bool {
        check(rule, &r(image), &r(signed)).is_ok()
    }

    #[test]
    fn match_repo_digest_or_exact() {
        let rule = SignedIdentity::MatchRepoDigestOrExact;
        let d = digest();
        // Tagged image: exact repo:tag only.
        assert!(ok(&rule, "reg.io/app:v1", "reg.io/app:v1"));
        assert!(!ok(&rule, "reg.io/app:v1", "reg.io/app:v2"));
        assert!(!ok(&rule, "reg.io/app:v1", "reg.io/app"));
        assert!(!ok(&rule, "reg.io/app:latest", "reg.io/app"));
        assert!(!ok(&rule, "reg.io/app:v1", "reg.io/other:v1"));
        assert!(!ok(&rule, "reg.io/app:v1", &format!("reg.io/app@{d}")));
        // Digest image: any identity in the same repository.
        let img = format!("reg.io/app@{d}");
        assert!(ok(&rule, &img, "reg.io/app:v1"));
        assert!(ok(&rule, &img, "reg.io/app"));
        assert!(!ok(&rule, &img, "reg.io/other:v1"));
        assert!(!ok(&rule, &img, "other.io/app:v1"));
        let e = check(&rule, &r("reg.io/app:v1"), &r("reg.io/app:v2")).unwrap_err();
        assert_eq!(e, "reg.io/app:v1");
        let e = check(&rule, &r(&img), &r("reg.io/x")).unwrap_err();
        assert_eq!(e, "repository reg.io/app");
    }

    #[test]
    fn match_exact() {
        let rule = SignedIdentity::MatchExact;
        let d = digest();
        assert!(ok(&rule, "reg.io/app:v1", "reg.io/app:v1"));
        assert!(!ok(&rule, "reg.io/app:v1", "reg.io/app"));
        let img = format!("reg.io/app@{d}");
        assert!(ok(&rule, &img, &img));
        assert!(!ok(&rule, &img, "reg.io/app:v1"));
    }

    #[test]
    fn match_repository() {
        let rule = SignedIdentity::MatchRepository;
        assert!(ok(&rule, "reg.io/app:v1", "reg.io/app"));
        assert!(ok(&rule, "reg.io/app:v1", "reg.io/app:v9"));
        assert!(!ok(&rule, "reg.io/app:v1", "reg.io/app2:v1"));
        assert!(!ok(&rule, "reg.io/app:v1", "reg.io:5000/app:v1"));
        // Normalization applies to both sides.
        assert!(ok(&rule, "busybox:1", "docker.io/library/busybox"));
    }

    #[test]
    fn exact_reference_ignores_the_pulled_name() {
        let rule = SignedIdentity::ExactReference(r("vendor.io/prod/app:1.0"));
        assert!(ok(
            &rule,
            "mirror.local/app:whatever",
            "vendor.io/prod/app:1.0"
        ));
        assert!(!ok(&rule, "mirror.local/app:1.0", "mirror.local/app:1.0"));
        assert!(!ok(&rule, "vendor.io/prod/app:1.0", "vendor.io/prod/app"));
        assert_eq!(
            check(&rule, &r("m.io/a:1"), &r("vendor.io/prod/app:2.0")).unwrap_err(),
            "vendor.io/prod/app:1.0"
        );
    }

    #[test]
    fn exact_repository() {
        let rule = SignedIdentity::ExactRepository(r("vendor.io/prod/app"));
        assert!(ok(&rule, "mirror.local/app:1", "vendor.io/prod/app:7"));
        assert!(ok(&rule, "mirror.local/app:1", "vendor.io/prod/app"));
        assert!(!ok(&rule, "mirror.local/app:1", "vendor.io/prod/other:7"));
    }

    #[test]
    fn remap_identity() {
        let rule = SignedIdentity::RemapIdentity {
            prefix: "mirror.local:5000/vendor-mirror".into(),
            signed_prefix: "vendor.example.com".into(),
        };
        assert!(ok(
            &rule,
            "mirror.local:5000/vendor-mirror/product/app:1",
            "vendor.example.com/product/app:1"
        ));
        assert!(!ok(
            &rule,
            "mirror.local:5000/vendor-mirror/product/app:1",
            "mirror.local:5000/vendor-mirror/product/app:1"
        ));
        assert!(!ok(
            &rule,
            "mirror.local:5000/vendor-mirror/product/app:1",
            "vendor.example.com/product/app:2"
        ));
        // Not under the prefix: plain matchRepoDigestOrExact.
        assert!(ok(&rule, "other.io/app:1", "other.io/app:1"));
        assert!(!ok(&rule, "other.io/app:1", "vendor.example.com/app:1"));
        // A digest reference is remapped and then matched by repository.
        let d = digest();
        assert!(ok(
            &rule,
            &format!("mirror.local:5000/vendor-mirror/app@{d}"),
            "vendor.example.com/app:any"
        ));
        // A prefix that ends inside a path component does not match.
        let rule = SignedIdentity::RemapIdentity {
            prefix: "mirror.local/ven".into(),
            signed_prefix: "vendor.example.com".into(),
        };
        assert!(!ok(
            &rule,
            "mirror.local/vendor/app:1",
            "vendor.example.comdor/app:1"
        ));
    }
}
