//! Strict parsing of `containers-policy.json`: the JSON is read into raw
//! structures that deny unknown and duplicated fields, then each requirement
//! is checked against the fields its type allows.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use base64::Engine;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{KeySource, PolicyFile, Requirement, SignedIdentity, SigstoreSigned};
use crate::error::SignatureError;
use crate::keys::PublicKey;
use crate::reference::{valid_host, validate_name_prefix, DockerRef};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    default: Option<Vec<RawRequirement>>,
    #[serde(default)]
    transports: StrictMap<StrictMap<Vec<RawRequirement>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRequirement {
    #[serde(rename = "type")]
    kind: String,
    key_type: Option<Value>,
    key_path: Option<String>,
    key_paths: Option<Vec<String>>,
    key_data: Option<String>,
    key_datas: Option<Vec<String>>,
    signed_identity: Option<RawIdentity>,
    // Known containers/image fields that cloister does not implement; they
    // are parsed only to refuse them by name.
    fulcio: Option<Value>,
    pki: Option<Value>,
    rekor_public_key_path: Option<Value>,
    rekor_public_key_paths: Option<Value>,
    rekor_public_key_data: Option<Value>,
    rekor_public_key_datas: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawIdentity {
    #[serde(rename = "type")]
    kind: String,
    docker_reference: Option<String>,
    docker_repository: Option<String>,
    prefix: Option<String>,
    signed_prefix: Option<String>,
}

/// A JSON object read in order that refuses duplicated keys (serde's maps
/// keep the last value silently, and a policy with two entries for one
/// scope is ambiguous).
struct StrictMap<V>(Vec<(String, V)>);

impl<V> Default for StrictMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for StrictMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = StrictMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, V>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    out.push((k, v));
                }
                Ok(StrictMap(out))
            }
        }
        d.deserialize_map(V_(PhantomData))
    }
}

fn err(msg: String) -> SignatureError {
    SignatureError::Policy(msg)
}

pub(super) fn parse_policy(bytes: &[u8]) -> Result<PolicyFile, SignatureError> {
    let raw: RawPolicy =
        serde_json::from_slice(bytes).map_err(|e| err(format!("invalid JSON: {e}")))?;
    let default = raw
        .default
        .ok_or_else(|| err("the mandatory \"default\" requirements are missing".into()))?;
    let default = requirements(default, "default")?;
    let mut transports = BTreeMap::new();
    for (transport, scopes) in raw.transports.0 {
        let mut parsed = BTreeMap::new();
        for (scope, reqs) in scopes.0 {
            let at = format!("transports.{transport}[{scope:?}]");
            if transport == "docker" {
                validate_docker_scope(&scope).map_err(|e| err(format!("{at}: {e}")))?;
            }
            parsed.insert(scope, requirements(reqs, &at)?);
        }
        transports.insert(transport, parsed);
    }
    Ok(PolicyFile {
        default,
        transports,
    })
}

fn requirements(raw: Vec<RawRequirement>, at: &str) -> Result<Vec<Requirement>, SignatureError> {
    if raw.is_empty() {
        return Err(err(format!(
            "{at}: the list of requirements is empty (use [{{\"type\":\"insecureAcceptAnything\"}}] to accept, [{{\"type\":\"reject\"}}] to reject)"
        )));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| requirement(r, &format!("{at} requirement {i}")))
        .collect()
}

fn requirement(r: RawRequirement, at: &str) -> Result<Requirement, SignatureError> {
    let only_type = |name: &str, req: Requirement| {
        let extra = r.key_type.is_some()
            || r.key_path.is_some()
            || r.key_paths.is_some()
            || r.key_data.is_some()
            || r.key_datas.is_some()
            || r.signed_identity.is_some()
            || r.fulcio.is_some()
            || r.pki.is_some()
            || r.rekor_public_key_path.is_some()
            || r.rekor_public_key_paths.is_some()
            || r.rekor_public_key_data.is_some()
            || r.rekor_public_key_datas.is_some();
        if extra {
            Err(err(format!("{at}: type {name:?} takes no other fields")))
        } else {
            Ok(req)
        }
    };
    match r.kind.as_str() {
        "reject" => only_type("reject", Requirement::Reject),
        "insecureAcceptAnything" => {
            only_type("insecureAcceptAnything", Requirement::InsecureAcceptAnything)
        }
        "sigstoreSigned" => sigstore_signed(r, at).map(Requirement::SigstoreSigned),
        "signedBy" => Err(err(format!(
            "{at}: type \"signedBy\" (GPG simple signing) is not supported by cloister; use \"sigstoreSigned\""
        ))),
        other => Err(err(format!(
            "{at}: unknown requirement type {other:?} (expected reject, insecureAcceptAnything or sigstoreSigned)"
        ))),
    }
}

fn sigstore_signed(r: RawRequirement, at: &str) -> Result<SigstoreSigned, SignatureError> {
    let unsupported = [
        ("keyType", r.key_type.is_some()),
        ("fulcio", r.fulcio.is_some()),
        ("pki", r.pki.is_some()),
        ("rekorPublicKeyPath", r.rekor_public_key_path.is_some()),
        ("rekorPublicKeyPaths", r.rekor_public_key_paths.is_some()),
        ("rekorPublicKeyData", r.rekor_public_key_data.is_some()),
        ("rekorPublicKeyDatas", r.rekor_public_key_datas.is_some()),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, present)| *present) {
        return Err(err(format!(
            "{at}: sigstoreSigned field {field:?} is not supported by cloister (only public keys: keyPath, keyPaths, keyData, keyDatas)"
        )));
    }
    let given = [
        r.key_path.is_some(),
        r.key_paths.is_some(),
        r.key_data.is_some(),
        r.key_datas.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(err(format!(
            "{at}: sigstoreSigned needs exactly one of keyPath, keyPaths, keyData and keyDatas"
        )));
    }
    let mut keys = Vec::new();
    if let Some(p) = r.key_path {
        keys.push(key_path(p, at)?);
    }
    if let Some(ps) = r.key_paths {
        if ps.is_empty() {
            return Err(err(format!("{at}: keyPaths is empty")));
        }
        for p in ps {
            keys.push(key_path(p, at)?);
        }
    }
    if let Some(d) = r.key_data {
        keys.push(key_data(&d, format!("keyData of {at}"))?);
    }
    if let Some(ds) = r.key_datas {
        if ds.is_empty() {
            return Err(err(format!("{at}: keyDatas is empty")));
        }
        for (i, d) in ds.iter().enumerate() {
            keys.push(key_data(d, format!("keyDatas[{i}] of {at}"))?);
        }
    }
    let signed_identity = match r.signed_identity {
        None => SignedIdentity::MatchRepoDigestOrExact,
        Some(id) => signed_identity(id, &format!("{at} signedIdentity"))?,
    };
    Ok(SigstoreSigned {
        keys,
        signed_identity,
    })
}

fn key_path(p: String, at: &str) -> Result<KeySource, SignatureError> {
    if p.is_empty() {
        return Err(err(format!("{at}: empty key path")));
    }
    Ok(KeySource::Path(PathBuf::from(p)))
}

/// `keyData` is the base64 of a PEM public key; it is decoded and parsed
/// now, so a broken key fails the policy load rather than the first pull.
fn key_data(b64: &str, label: String) -> Result<KeySource, SignatureError> {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| err(format!("{label}: not base64: {e}")))?;
    PublicKey::from_pem(&pem, &label)?;
    Ok(KeySource::Data { label, pem })
}

fn signed_identity(id: RawIdentity, at: &str) -> Result<SignedIdentity, SignatureError> {
    let fields = [
        ("dockerReference", id.docker_reference.is_some()),
        ("dockerRepository", id.docker_repository.is_some()),
        ("prefix", id.prefix.is_some()),
        ("signedPrefix", id.signed_prefix.is_some()),
    ];
    let allowed: &[&str] = match id.kind.as_str() {
        "matchExact" | "matchRepoDigestOrExact" | "matchRepository" => &[],
        "exactReference" => &["dockerReference"],
        "exactRepository" => &["dockerRepository"],
        "remapIdentity" => &["prefix", "signedPrefix"],
        other => {
            return Err(err(format!(
                "{at}: unknown type {other:?} (expected matchExact, matchRepoDigestOrExact, matchRepository, exactReference, exactRepository or remapIdentity)"
            )))
        }
    };
    for (name, present) in fields {
        if present != allowed.contains(&name) {
            let what = if present { "does not take" } else { "needs" };
            return Err(err(format!(
                "{at}: type {:?} {what} field {name:?}",
                id.kind
            )));
        }
    }
    let bad = |field: &str, value: &str, e: String| err(format!("{at}: {field} {value:?}: {e}"));
    Ok(match id.kind.as_str() {
        "matchExact" => SignedIdentity::MatchExact,
        "matchRepoDigestOrExact" => SignedIdentity::MatchRepoDigestOrExact,
        "matchRepository" => SignedIdentity::MatchRepository,
        "exactReference" => {
            let v = id.docker_reference.unwrap_or_default();
            let r = DockerRef::parse(&v).map_err(|e| bad("dockerReference", &v, e.to_string()))?;
            if r.is_name_only() {
                return Err(bad(
                    "dockerReference",
                    &v,
                    "must carry a tag or a digest (use exactRepository for a repository)".into(),
                ));
            }
            SignedIdentity::ExactReference(r)
        }
        "exactRepository" => {
            let v = id.docker_repository.unwrap_or_default();
            let r = DockerRef::parse(&v).map_err(|e| bad("dockerRepository", &v, e.to_string()))?;
            if !r.is_name_only() {
                return Err(bad(
                    "dockerRepository",
                    &v,
                    "must be a repository, without tag or digest".into(),
                ));
            }
            SignedIdentity::ExactRepository(r)
        }
        _ => {
            let prefix = id.prefix.unwrap_or_default();
            let signed_prefix = id.signed_prefix.unwrap_or_default();
            validate_name_prefix(&prefix).map_err(|e| bad("prefix", &prefix, e))?;
            validate_name_prefix(&signed_prefix)
                .map_err(|e| bad("signedPrefix", &signed_prefix, e))?;
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            }
        }
    })
}

/// A `docker` transport scope must be "", a `*.domain` wildcard, a
/// host[:port], or a fully expanded namespace, repository or reference.
fn validate_docker_scope(scope: &str) -> Result<(), String> {
    if scope.is_empty() {
        return Ok(());
    }
    if let Some(domain) = scope.strip_prefix("*.") {
        if domain.contains(['*', ':', '/']) || !valid_host(domain) {
            return Err("a wildcard scope must be *.<domain>, e.g. *.example.com".into());
        }
        return Ok(());
    }
    if !scope.contains('/') {
        return if valid_host(scope) {
            Ok(())
        } else {
            Err("not a registry host[:port]".into())
        };
    }
    let before_digest = scope.split('@').next().unwrap_or(scope);
    if scope.contains('@') || before_digest.rsplit('/').next().unwrap_or("").contains(':') {
        // An image scope: it must be already in its normalized form.
        let r = DockerRef::parse(scope).map_err(|e| e.to_string())?;
        if r.to_string() != scope {
            return Err(format!("not fully expanded (did you mean \"{r}\"?)"));
        }
        if r.tag().is_some() && r.digest().is_some() {
            return Err("an image scope takes a tag or a digest, not both".into());
        }
        return Ok(());
    }
    validate_name_prefix(scope)
}
