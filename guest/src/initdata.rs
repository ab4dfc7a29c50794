//! Initdata: the per-pod TOML document (agent policy, image-signature
//! policy, KBS URL and certificate) whose sha256 the host put into the TEE
//! report's HOST_DATA at launch. The agent accepts it only when the digest
//! of the bytes it received equals its own report's HOST_DATA.
//!
//! Format (docs/initdata.md), after CoCo's initdata specification:
//!
//! ```toml
//! version = "0.1.0"
//! algorithm = "sha256"
//! [data]
//! "policy.rego" = '''package agent_policy …'''
//! "policy-data.json" = '''{…}'''          # optional
//! "image-policy.json" = '''{"default": …}''' # optional (containers-policy.json)
//! "kbs-url" = "https://kbs.example:8080"     # optional
//! "kbs-cert.pem" = '''-----BEGIN CERTIFICATE-----…'''  # optional
//! ```
use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::tee::{HostDataSource, TeeError};

pub const VERSION: &str = "0.1.0";
pub const ALGORITHM: &str = "sha256";
/// Largest initdata accepted (it must fit a ttrpc message anyway).
pub const MAX_BYTES: usize = 1 << 20;

const KNOWN_KEYS: &[&str] = &[
    "policy.rego",
    "policy-data.json",
    "image-policy.json",
    "kbs-url",
    "kbs-cert.pem",
    "registry.json",
    "image-keys",
];

#[derive(Debug, thiserror::Error)]
pub enum InitdataError {
    #[error("initdata is {got} bytes, more than the {max}-byte limit")]
    TooLarge { got: usize, max: usize },
    #[error("initdata is not valid TOML: {0}")]
    Toml(String),
    #[error("initdata version {got:?} is not supported, expected {VERSION:?}")]
    Version { got: String },
    #[error("initdata algorithm {got:?} is not supported, expected {ALGORITHM:?}")]
    Algorithm { got: String },
    #[error("initdata [data] has unknown key {0:?} (known: policy.rego, policy-data.json, image-policy.json, kbs-url, kbs-cert.pem, registry.json, image-keys)")]
    UnknownKey(String),
    #[error("initdata [data] lacks \"policy.rego\", the agent policy")]
    NoPolicy,
    #[error("initdata {key}: {message}")]
    Field { key: &'static str, message: String },
    #[error("initdata sha256 {digest} does not match the TEE report's HOST_DATA {host_data}")]
    Mismatch { digest: String, host_data: String },
    #[error(transparent)]
    Tee(#[from] TeeError),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: String,
    algorithm: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// Parsed and validated initdata.
#[derive(Debug, Clone)]
pub struct Initdata {
    /// The document as received (sent to the KBS with the evidence).
    pub raw: String,
    pub sha256: [u8; 32],
    pub policy_rego: String,
    pub policy_data: Option<serde_json::Value>,
    pub image_policy: Option<serde_json::Value>,
    pub kbs_url: Option<String>,
    pub kbs_cert_pem: Option<String>,
    /// How the agent reaches registries (`registry.json`).
    pub registry: RegistrySettings,
    /// Image decryption keys to fetch from the KBS after attestation
    /// (`image-keys`: one `kbs:///repository/type/tag` per line).
    pub image_keys: Vec<String>,
}

/// `registry.json`: the tenant's registry settings. The host has no say in
/// them: they are part of the measured initdata.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// PEM CA certificates to trust for registries, besides the system's.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Trust only `ca_pem`, not the public roots compiled into the agent.
    #[serde(default)]
    pub ca_only: bool,
    /// Plain HTTP (a development registry only).
    #[serde(default)]
    pub insecure_http: bool,
    /// Registry as image references name it → where to fetch from.
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

/// How the digest was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Equal to the TEE report's HOST_DATA.
    Tee,
    /// No TEE: not checked (development only).
    Unbound,
}

impl Initdata {
    /// Parses `text` and checks its fields (not yet its binding).
    pub fn parse(text: &str) -> Result<Self, InitdataError> {
        if text.len() > MAX_BYTES {
            return Err(InitdataError::TooLarge {
                got: text.len(),
                max: MAX_BYTES,
            });
        }
        let doc: Document = toml::from_str(text).map_err(|e| InitdataError::Toml(e.to_string()))?;
        if doc.version != VERSION {
            return Err(InitdataError::Version { got: doc.version });
        }
        if doc.algorithm != ALGORITHM {
            return Err(InitdataError::Algorithm { got: doc.algorithm });
        }
        if let Some(k) = doc.data.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(InitdataError::UnknownKey(k.clone()));
        }
        let policy_rego = doc
            .data
            .get("policy.rego")
            .cloned()
            .ok_or(InitdataError::NoPolicy)?;
        let json_field = |key: &'static str| -> Result<Option<serde_json::Value>, InitdataError> {
            doc.data
                .get(key)
                .map(|t| {
                    let v: serde_json::Value =
                        serde_json::from_str(t).map_err(|e| InitdataError::Field {
                            key,
                            message: format!("not JSON: {e}"),
                        })?;
                    if v.is_object() {
                        Ok(v)
                    } else {
                        Err(InitdataError::Field {
                            key,
                            message: "must be a JSON object".into(),
                        })
                    }
                })
                .transpose()
        };
        let policy_data = json_field("policy-data.json")?;
        let image_policy = json_field("image-policy.json")?;
        let kbs_url = doc.data.get("kbs-url").cloned();
        if let Some(u) = &kbs_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) || u.len() > 2048 {
                return Err(InitdataError::Field {
                    key: "kbs-url",
                    message: format!("expected an http(s) URL, got {u:?}"),
                });
            }
        }
        let kbs_cert_pem = doc.data.get("kbs-cert.pem").cloned();
        if let Some(p) = &kbs_cert_pem {
            if !p.trim_start().starts_with("-----BEGIN CERTIFICATE-----") {
                return Err(InitdataError::Field {
                    key: "kbs-cert.pem",
                    message: "expected a PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                });
            }
        }
        let registry: RegistrySettings = match doc.data.get("registry.json") {
            None => RegistrySettings::default(),
            Some(t) => serde_json::from_str(t).map_err(|e| InitdataError::Field {
                key: "registry.json",
                message: e.to_string(),
            })?,
        };
        if registry.username.is_some() != registry.password.is_some() {
            return Err(InitdataError::Field {
                key: "registry.json",
                message: "username and password go together".into(),
            });
        }
        let image_keys: Vec<String> = doc
            .data
            .get("image-keys")
            .map(|t| {
                t.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        for k in &image_keys {
            let path = k.strip_prefix("kbs:///").unwrap_or("");
            if path.split('/').count() != 3 || path.split('/').any(|p| p.is_empty()) {
                return Err(InitdataError::Field {
                    key: "image-keys",
                    message: format!("{k:?} is not kbs:///REPOSITORY/TYPE/TAG"),
                });
            }
        }
        Ok(Initdata {
            raw: text.to_string(),
            sha256: Sha256::digest(text.as_bytes()).into(),
            registry,
            image_keys,
            policy_rego,
            policy_data,
            image_policy,
            kbs_url,
            kbs_cert_pem,
        })
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// Checks the digest against HOST_DATA from `tee`. HOST_DATA fields
    /// longer than 32 bytes (TDX MRCONFIGID, 48) hold the digest followed by
    /// zeros.
    pub fn bind(&self, tee: &dyn HostDataSource) -> Result<Binding, InitdataError> {
        let Some(host_data) = tee.host_data()? else {
            return Ok(Binding::Unbound);
        };
        let ok = host_data.len() >= 32
            && host_data[..32] == self.sha256
            && host_data[32..].iter().all(|&b| b == 0);
        if ok {
            Ok(Binding::Tee)
        } else {
            Err(InitdataError::Mismatch {
                digest: self.sha256_hex(),
                host_data: hex::encode(&host_data),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"version = "0.1.0"
algorithm = "sha256"

[data]
"policy.rego" = '''
package agent_policy
default HealthCheckRequest := true
'''
"policy-data.json" = '''{"containers": []}'''
"image-policy.json" = '''{"default": [{"type": "reject"}]}'''
"kbs-url" = "https://kbs.example:8080"
"kbs-cert.pem" = '''
-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----
'''
"#;

    struct Fixed(Vec<u8>);
    impl HostDataSource for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn host_data(&self) -> Result<Option<Vec<u8>>, TeeError> {
            Ok(Some(self.0.clone()))
        }
    }

    #[test]
    fn parses_every_field() {
        let i = Initdata::parse(GOOD).unwrap();
        assert!(i.policy_rego.contains("package agent_policy"));
        assert_eq!(
            i.policy_data.as_ref().unwrap()["containers"],
            serde_json::json!([])
        );
        assert!(i.image_policy.is_some());
        assert_eq!(i.kbs_url.as_deref(), Some("https://kbs.example:8080"));
        assert!(i
            .kbs_cert_pem
            .as_deref()
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
        // The digest is over the exact bytes.
        assert_eq!(i.sha256_hex(), hex::encode(Sha256::digest(GOOD.as_bytes())));
    }

    #[test]
    fn binding_compares_with_host_data() {
        let i = Initdata::parse(GOOD).unwrap();
        assert_eq!(i.bind(&Fixed(i.sha256.to_vec())).unwrap(), Binding::Tee);
        let mut tdx = i.sha256.to_vec();
        tdx.extend([0u8; 16]);
        assert_eq!(i.bind(&Fixed(tdx.clone())).unwrap(), Binding::Tee);
        *tdx.last_mut().unwrap() = 1;
        assert!(matches!(
            i.bind(&Fixed(tdx)),
            Err(InitdataError::Mismatch { .. })
        ));
        let mut other = i.sha256;
        other[0] ^= 1;
        let e = i.bind(&Fixed(other.to_vec())).unwrap_err();
        assert!(e.to_string().contains(&i.sha256_hex()), "{e}");
        assert!(matches!(
            i.bind(&Fixed(vec![0; 8])),
            Err(InitdataError::Mismatch { .. })
        ));
        assert_eq!(i.bind(&crate::tee::NoTee).unwrap(), Binding::Unbound);
        assert!(matches!(
            i.bind(&crate::tee::Unsupported("snp")),
            Err(InitdataError::Tee(TeeError::NoSource { .. }))
        ));
    }

    #[test]
    fn a_changed_byte_changes_the_digest() {
        let a = Initdata::parse(GOOD).unwrap();
        let b = Initdata::parse(&GOOD.replace("kbs.example", "kbs.exampl3")).unwrap();
        assert_ne!(a.sha256, b.sha256);
        assert!(matches!(
            b.bind(&Fixed(a.sha256.to_vec())),
            Err(InitdataError::Mismatch { .. })
        ));
    }

    #[test]
    fn registry_settings_and_image_keys() {
        let text = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"x\"\n\
            \"registry.json\" = '{\"mirrors\": {\"127.0.0.1:5000\": \"10.0.2.2:5000\"}, \"insecure_http\": true}'\n\
            \"image-keys\" = \"\"\"\nkbs:///default/image-key/a\n\n  kbs:///default/image-key/b\n\"\"\"\n";
        let d = Initdata::parse(text).unwrap();
        assert!(d.registry.insecure_http);
        assert_eq!(d.registry.mirrors["127.0.0.1:5000"], "10.0.2.2:5000");
        assert_eq!(
            d.image_keys,
            ["kbs:///default/image-key/a", "kbs:///default/image-key/b"]
        );
    }

    #[test]
    fn rejects_bad_documents() {
        let cases: &[(&str, &str)] = &[
            ("not toml [", "TOML"),
            ("version = \"9\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"x\"", "version"),
            ("version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"policy.rego\" = \"x\"", "algorithm"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = \"x\"", "unknown key"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n", "policy.rego"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\nextra = 1\n[data]\n\"policy.rego\" = \"x\"", "TOML"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"x\"\n\"kbs-url\" = \"file:///etc/passwd\"", "kbs-url"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"x\"\n\"kbs-cert.pem\" = \"hello\"", "kbs-cert.pem"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"x\"\n\"policy-data.json\" = \"[1]\"", "policy-data.json"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"x\"\n\"registry.json\" = '{\"mirror\": {}}'", "registry.json"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"x\"\n\"registry.json\" = '{\"username\": \"u\"}'", "username and password"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"x\"\n\"image-keys\" = \"https://kbs/key\"", "image-keys"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"x\"\n\"image-keys\" = \"kbs:///a/b\"", "image-keys"),
            ("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"policy.rego\" = \"x\"\n\"image-keys\" = \"kbs:///a//c\"", "image-keys"),
        ];
        for (text, needle) in cases {
            let e = Initdata::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let big = format!("{GOOD}#{}", "x".repeat(MAX_BYTES));
        assert!(matches!(
            Initdata::parse(&big),
            Err(InitdataError::TooLarge { .. })
        ));
    }
}
