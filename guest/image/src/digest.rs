//! Content digests (`sha256:<64 hex>`), parsed once and compared as bytes.
//!
//! Every blob the pipeline touches is addressed by a digest that came from a
//! manifest or config; this module is the one place that says what a valid
//! digest looks like, so that a malformed one is refused before it is used
//! as a URL component or a directory name.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A parsed `sha256:` digest. Other algorithms are refused: OCI images in
/// practice use sha256, and refusing the rest keeps store paths uniform.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {value:?}: {reason}")]
pub struct DigestParseError {
    pub value: String,
    pub reason: &'static str,
}

impl Sha256Digest {
    pub fn parse(s: &str) -> Result<Self, DigestParseError> {
        let err = |reason| DigestParseError {
            value: s.chars().take(100).collect(),
            reason,
        };
        let hex_part = s
            .strip_prefix("sha256:")
            .ok_or_else(|| err("only sha256 digests are supported"))?;
        if hex_part.len() != 64 {
            return Err(err("expected 64 hex digits after sha256:"));
        }
        if hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(err("hex digits must be lower case"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| err("not hex"))?;
        Ok(Self(out))
    }

    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits, as used for file names in the layer store.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        let d = Sha256Digest::of(b"");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Sha256Digest::parse(&s).unwrap(), d);
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "sha512:00",
            "sha256:abc",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:../../../../etc/passwd/../../../../../../../../../../../../x",
        ] {
            assert!(Sha256Digest::parse(bad).is_err(), "{bad}");
        }
    }
}
