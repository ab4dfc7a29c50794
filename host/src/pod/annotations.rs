//! `cloister.dev/` pod annotations: the initdata, and the VM-size overrides
//! the node's config explicitly allows. Any other key under the prefix is
//! refused, naming it: a misspelt override must not be silently ignored.
use crate::node_config::{NodeConfig, ANNOTATION_PREFIX};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overrides {
    pub memory_mib: Option<u32>,
    pub vcpus: Option<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnotationError {
    #[error("annotation {0}: unknown (cloister.dev/ annotations: initdata, memory-mib, vcpus)")]
    Unknown(String),
    #[error(
        "annotation {0}: the node's config does not allow this override ([annotations] allow)"
    )]
    NotAllowed(String),
    #[error("annotation {key}={value:?}: {problem}")]
    Value {
        key: String,
        value: String,
        problem: String,
    },
}

/// Checks every `cloister.dev/` annotation and returns the overrides.
pub fn overrides<'a>(
    cfg: &NodeConfig,
    annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Overrides, AnnotationError> {
    let mut o = Overrides::default();
    for (k, v) in annotations {
        let Some(name) = k.strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        if name == "initdata" {
            continue;
        }
        if !crate::node_config::OVERRIDABLE.contains(&name) {
            return Err(AnnotationError::Unknown(k.into()));
        }
        if !cfg.annotations.allow.iter().any(|a| a == name) {
            return Err(AnnotationError::NotAllowed(k.into()));
        }
        let bad = |problem: String| AnnotationError::Value {
            key: k.into(),
            value: v.chars().take(64).collect(),
            problem,
        };
        let n: u32 = v
            .trim()
            .parse()
            .map_err(|_| bad("is not a whole number".into()))?;
        match name {
            "memory-mib" => {
                if !(64..=cfg.annotations.max_memory_mib).contains(&n) {
                    return Err(bad(format!(
                        "must be 64-{} (annotations.max_memory_mib)",
                        cfg.annotations.max_memory_mib
                    )));
                }
                o.memory_mib = Some(n);
            }
            _ => {
                if !(1..=cfg.annotations.max_vcpus).contains(&n) {
                    return Err(bad(format!(
                        "must be 1-{} (annotations.max_vcpus)",
                        cfg.annotations.max_vcpus
                    )));
                }
                o.vcpus = Some(n);
            }
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(allow: &[&str]) -> NodeConfig {
        let mut c = NodeConfig::default();
        c.annotations.allow = allow.iter().map(|s| s.to_string()).collect();
        c
    }

    #[test]
    fn allowed_overrides_are_read_and_bounded() {
        let c = cfg(&["memory-mib", "vcpus"]);
        let o = overrides(
            &c,
            [
                ("cloister.dev/memory-mib", "1024"),
                ("cloister.dev/vcpus", "2"),
                ("other/x", "y"),
            ],
        )
        .unwrap();
        assert_eq!(
            o,
            Overrides {
                memory_mib: Some(1024),
                vcpus: Some(2)
            }
        );
        let e = overrides(&c, [("cloister.dev/memory-mib", "999999")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cloister.dev/memory-mib") && e.contains("64-4096"),
            "{e}"
        );
        let e = overrides(&c, [("cloister.dev/vcpus", "two")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number"), "{e}");
    }

    #[test]
    fn overrides_need_the_config_and_unknown_keys_are_named() {
        let c = cfg(&[]);
        assert_eq!(
            overrides(&c, [("cloister.dev/vcpus", "2")]).unwrap_err(),
            AnnotationError::NotAllowed("cloister.dev/vcpus".into())
        );
        assert_eq!(
            overrides(&c, [("cloister.dev/kernel", "/evil")]).unwrap_err(),
            AnnotationError::Unknown("cloister.dev/kernel".into())
        );
        assert_eq!(
            overrides(&c, [("cloister.dev/initdata", "…")]).unwrap(),
            Overrides::default()
        );
    }
}
