//! The pod's initdata: from its annotation (`cloister.dev/initdata`, or
//! Kata's `io.katacontainers.config.hypervisor.cc_init_data` so that pods
//! written for Kata CoCo run unchanged), or the node's configured default.
//!
//! Both annotations carry the TOML document base64-encoded, optionally
//! gzip-compressed first. The decoded bytes are what is hashed into
//! HOST_DATA and sent to the agent, unchanged.
use std::io::Read;

use base64::Engine as _;

use crate::node_config::NodeConfig;

pub const ANNOTATION: &str = "cloister.dev/initdata";
pub const KATA_ANNOTATION: &str = "io.katacontainers.config.hypervisor.cc_init_data";
/// The agent refuses larger documents; so does the shim, before boot.
pub const MAX_INITDATA: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum InitdataError {
    #[error("annotation {annotation}: {problem}")]
    Annotation {
        annotation: &'static str,
        problem: String,
    },
    #[error("annotations {ANNOTATION} and {KATA_ANNOTATION} carry different initdata; give one")]
    Conflict,
    #[error("the default initdata: {what} {path}: {source}")]
    Default {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// Where a pod's initdata came from, for the log and the pod's state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum InitdataSource {
    Annotation(String),
    /// The node's default policy (`[defaults] policy` of the config).
    Default(String),
}

impl std::fmt::Display for InitdataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitdataSource::Annotation(a) => write!(f, "annotation {a}"),
            InitdataSource::Default(p) => write!(f, "the node's default policy {p}"),
        }
    }
}

/// Decodes one annotation value: base64 (standard or URL-safe, padding
/// optional), then gunzip when it starts with the gzip magic.
pub fn decode(annotation: &'static str, value: &str) -> Result<String, InitdataError> {
    let bad = |problem: String| InitdataError::Annotation {
        annotation,
        problem,
    };
    let v: String = value.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if v.len() > MAX_INITDATA * 2 {
        return Err(bad(format!("{} bytes is too long", v.len())));
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let raw = engines
        .iter()
        .find_map(|e| e.decode(&v).ok())
        .ok_or_else(|| bad("is not base64".into()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_INITDATA as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| bad(format!("is gzip but does not inflate: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() > MAX_INITDATA {
        return Err(bad(format!("the document is over {MAX_INITDATA} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| bad("the document is not UTF-8".into()))
}

/// The initdata a pod's annotations carry, if any.
pub fn from_annotations<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<Option<(String, InitdataSource)>, InitdataError> {
    let ours = get(ANNOTATION).map(|v| decode(ANNOTATION, v)).transpose()?;
    let kata = get(KATA_ANNOTATION)
        .map(|v| decode(KATA_ANNOTATION, v))
        .transpose()?;
    Ok(match (ours, kata) {
        (Some(a), Some(b)) if a != b => return Err(InitdataError::Conflict),
        (Some(a), _) => Some((a, InitdataSource::Annotation(ANNOTATION.into()))),
        (None, Some(b)) => Some((b, InitdataSource::Annotation(KATA_ANNOTATION.into()))),
        (None, None) => None,
    })
}

fn read(what: &'static str, p: &std::path::Path) -> Result<String, InitdataError> {
    std::fs::read_to_string(p).map_err(|source| InitdataError::Default {
        what,
        path: p.display().to_string(),
        source,
    })
}

/// The initdata for pods that bring none, composed from the config's
/// `[defaults]` and `[kbs]` (deterministic: the same config gives the same
/// document, so the same HOST_DATA).
pub fn default_initdata(cfg: &NodeConfig) -> Result<(String, InitdataSource), InitdataError> {
    let d = &cfg.defaults;
    let policy = read("reading the policy", &d.policy)?;
    let mut doc = String::from("version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n");
    let entry = |doc: &mut String, key: &str, text: &str| {
        // A TOML literal string cannot hold ''' itself; basic strings can.
        if text.contains("'''") {
            doc.push_str(&format!("\"{key}\" = {}\n", toml_basic(text)));
        } else {
            doc.push_str(&format!("\"{key}\" = '''\n{text}'''\n"));
        }
    };
    entry(&mut doc, "policy.rego", &policy);
    if let Some(p) = &d.image_policy {
        entry(
            &mut doc,
            "image-policy.json",
            &read("reading the image policy", p)?,
        );
    }
    if let Some(p) = &d.registry {
        entry(
            &mut doc,
            "registry.json",
            &read("reading the registry settings", p)?,
        );
    }
    if !cfg.kbs.url.is_empty() {
        doc.push_str(&format!("\"kbs-url\" = {}\n", toml_basic(&cfg.kbs.url)));
    }
    if let Some(p) = &cfg.kbs.cert {
        entry(
            &mut doc,
            "kbs-cert.pem",
            &read("reading the KBS certificate", p)?,
        );
    }
    Ok((doc, InitdataSource::Default(d.policy.display().to_string())))
}

fn toml_basic(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const DOC: &str = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = 'package agent_policy'\n";

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn plain_and_gzipped_base64_decode_to_the_same_bytes() {
        assert_eq!(decode(ANNOTATION, &b64(DOC.as_bytes())).unwrap(), DOC);
        assert_eq!(decode(ANNOTATION, &b64(&gz(DOC.as_bytes()))).unwrap(), DOC);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(gz(DOC.as_bytes()));
        assert_eq!(decode(KATA_ANNOTATION, &url).unwrap(), DOC);
    }

    #[test]
    fn bad_values_name_the_annotation() {
        let e = decode(ANNOTATION, "not base64!").unwrap_err().to_string();
        assert!(
            e.starts_with("annotation cloister.dev/initdata: is not base64"),
            "{e}"
        );
        let e = decode(KATA_ANNOTATION, &b64(&[0x1f, 0x8b, 1, 2, 3]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(KATA_ANNOTATION) && e.contains("gzip"), "{e}");
        let e = decode(ANNOTATION, &b64(&[0xff, 0xfe]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn a_gzip_bomb_is_refused() {
        let big = vec![b'a'; MAX_INITDATA + 10];
        let e = decode(ANNOTATION, &b64(&gz(&big))).unwrap_err().to_string();
        assert!(e.contains("over"), "{e}");
    }

    #[test]
    fn either_annotation_works_and_a_conflict_is_refused() {
        let v = b64(DOC.as_bytes());
        let ours = |k: &str| (k == ANNOTATION).then_some(v.as_str());
        let (d, src) = from_annotations(ours).unwrap().unwrap();
        assert_eq!(d, DOC);
        assert_eq!(src, InitdataSource::Annotation(ANNOTATION.into()));
        let kata = |k: &str| (k == KATA_ANNOTATION).then_some(v.as_str());
        let (_, src) = from_annotations(kata).unwrap().unwrap();
        assert_eq!(src, InitdataSource::Annotation(KATA_ANNOTATION.into()));
        let other = b64(b"x");
        let both = |k: &str| match k {
            ANNOTATION => Some(v.as_str()),
            KATA_ANNOTATION => Some(other.as_str()),
            _ => None,
        };
        assert!(matches!(
            from_annotations(both),
            Err(InitdataError::Conflict)
        ));
        assert!(from_annotations(|_| None).unwrap().is_none());
    }

    #[test]
    fn the_default_is_composed_from_the_config_and_parses_as_toml() {
        let d = tempfile::tempdir().unwrap();
        let policy = d.path().join("p.rego");
        std::fs::write(&policy, "package agent_policy\n# has ''' in it\n").unwrap();
        let mut cfg = NodeConfig::default();
        cfg.defaults.policy = policy.clone();
        cfg.kbs.url = "https://kbs:8080".into();
        let (doc, src) = default_initdata(&cfg).unwrap();
        assert_eq!(src, InitdataSource::Default(policy.display().to_string()));
        let v: toml::Table = toml::from_str(&doc).unwrap();
        assert_eq!(
            v["data"]["policy.rego"].as_str().unwrap(),
            "package agent_policy\n# has ''' in it\n"
        );
        assert_eq!(v["data"]["kbs-url"].as_str().unwrap(), "https://kbs:8080");
        assert_eq!(default_initdata(&cfg).unwrap().0, doc, "deterministic");
        cfg.defaults.policy = d.path().join("missing.rego");
        assert!(default_initdata(&cfg)
            .unwrap_err()
            .to_string()
            .contains("missing.rego"));
    }
}
