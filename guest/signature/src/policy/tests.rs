//! Parsing and scope lookup of containers-policy.json documents.

use base64::Engine;

use super::*;
use crate::keys::SigningKey;

fn parse(json: &str) -> Result<PolicyFile, SignatureError> {
    PolicyFile::from_json(json.as_bytes())
}

fn parse_err(json: &str) -> String {
    match parse(json) {
        Ok(p) => panic!("parsed, expected an error: {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn key_data() -> String {
    let key = SigningKey::generate().unwrap();
    base64::engine::general_purpose::STANDARD.encode(key.public_key_pem())
}

fn scope_of(p: &PolicyFile, image: &str) -> (String, Vec<Requirement>) {
    let (s, r) = p.requirements_for(&DockerRef::parse(image).unwrap());
    (s.to_string(), r.to_vec())
}

#[test]
fn parses_the_man_page_example_subset() {
    let p = parse(
        r#"{
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                "docker.io/openshift": [{"type": "insecureAcceptAnything"}],
                "docker.io/library/busybox": [{"type": "insecureAcceptAnything"}],
                "*.temporary-project.example.com": [{"type": "insecureAcceptAnything"}],
                "hostname:5000/myns/sigstore-signed-with-full-references": [
                    {"type": "sigstoreSigned", "keyPath": "/path/to/sigstore-pubkey.pub"}
                ],
                "hostname:5000/myns/sigstore-signed-allows-malicious-tag-substitution": [
                    {"type": "sigstoreSigned", "keyPath": "/path/to/sigstore-pubkey.pub",
                     "signedIdentity": {"type": "matchRepository"}}
                ]
            },
            "dir": {"": [{"type": "insecureAcceptAnything"}]}
        }
    }"#,
    )
    .unwrap();
    assert_eq!(p.default, vec![Requirement::Reject]);
    let (scope, reqs) = scope_of(
        &p,
        "hostname:5000/myns/sigstore-signed-with-full-references:v1",
    );
    assert_eq!(
        scope,
        "docker:hostname:5000/myns/sigstore-signed-with-full-references"
    );
    assert_eq!(
        reqs,
        vec![Requirement::SigstoreSigned(SigstoreSigned {
            keys: vec![KeySource::Path("/path/to/sigstore-pubkey.pub".into())],
            signed_identity: SignedIdentity::MatchRepoDigestOrExact,
        })]
    );
    let (_, reqs) = scope_of(
        &p,
        "hostname:5000/myns/sigstore-signed-allows-malicious-tag-substitution:v1",
    );
    let Requirement::SigstoreSigned(s) = &reqs[0] else {
        panic!("{reqs:?}")
    };
    assert_eq!(s.signed_identity, SignedIdentity::MatchRepository);
    assert_eq!(
        scope_of(&p, "busybox:1.36").0,
        "docker:docker.io/library/busybox"
    );
    assert_eq!(
        scope_of(&p, "docker.io/openshift/hello-openshift:latest").0,
        "docker:docker.io/openshift"
    );
    assert_eq!(
        scope_of(&p, "a.b.temporary-project.example.com/x/y:1").0,
        "docker:*.temporary-project.example.com"
    );
    // Not named anywhere: the global default (the "dir" transport's default
    // does not apply to registry pulls).
    let (scope, reqs) = scope_of(&p, "quay.io/other/app:1");
    assert_eq!(scope, "default");
    assert_eq!(reqs, vec![Requirement::Reject]);
}

#[test]
fn most_specific_scope_wins() {
    let p = parse(
        r#"{
        "default": [{"type": "reject"}],
        "transports": {"docker": {
            "": [{"type": "insecureAcceptAnything"}],
            "reg.io": [{"type": "reject"}],
            "reg.io/ns": [{"type": "insecureAcceptAnything"}],
            "reg.io/ns/app": [{"type": "reject"}],
            "reg.io/ns/app:trusted": [{"type": "insecureAcceptAnything"}],
            "*.example.com": [{"type": "reject"}],
            "*.sub.example.com": [{"type": "insecureAcceptAnything"}]
        }}
    }"#,
    )
    .unwrap();
    let cases = [
        ("reg.io/ns/app:trusted", "docker:reg.io/ns/app:trusted"),
        ("reg.io/ns/app:other", "docker:reg.io/ns/app"),
        ("reg.io/ns/app2:1", "docker:reg.io/ns"),
        ("reg.io/ns/deeper/app:1", "docker:reg.io/ns"),
        ("reg.io/other/app:1", "docker:reg.io"),
        ("reg.io:5000/ns/app:1", "docker:\"\""),
        ("x.sub.example.com/a:1", "docker:*.sub.example.com"),
        ("sub.example.com/a:1", "docker:*.example.com"),
        ("example.com/a:1", "docker:\"\""),
        ("busybox", "docker:\"\""),
    ];
    for (image, want) in cases {
        assert_eq!(scope_of(&p, image).0, want, "{image}");
    }
    let d = format!("sha256:{}", "e".repeat(64));
    assert_eq!(
        scope_of(&p, &format!("reg.io/ns/app@{d}")).0,
        "docker:reg.io/ns/app"
    );
}

#[test]
fn digest_scope_matches_only_that_digest() {
    let d1 = format!("sha256:{}", "1".repeat(64));
    let d2 = format!("sha256:{}", "2".repeat(64));
    let p = parse(&format!(
        r#"{{"default": [{{"type": "reject"}}],
            "transports": {{"docker": {{"reg.io/app@{d1}": [{{"type": "insecureAcceptAnything"}}]}}}}}}"#
    ))
    .unwrap();
    assert_eq!(
        scope_of(&p, &format!("reg.io/app@{d1}")).0,
        format!("docker:reg.io/app@{d1}")
    );
    assert_eq!(scope_of(&p, &format!("reg.io/app@{d2}")).0, "default");
    assert_eq!(scope_of(&p, "reg.io/app:latest").0, "default");
}

#[test]
fn key_sources_and_identities() {
    let kd = key_data();
    let p = parse(&format!(
        r#"{{"default": [
            {{"type": "sigstoreSigned", "keyData": "{kd}"}},
            {{"type": "sigstoreSigned", "keyPaths": ["/a.pub", "/b.pub"],
              "signedIdentity": {{"type": "exactReference", "dockerReference": "vendor.io/app:1.0"}}}},
            {{"type": "sigstoreSigned", "keyDatas": ["{kd}", "{kd}"],
              "signedIdentity": {{"type": "exactRepository", "dockerRepository": "vendor.io/app"}}}},
            {{"type": "sigstoreSigned", "keyPath": "/c.pub",
              "signedIdentity": {{"type": "remapIdentity", "prefix": "mirror.io/v", "signedPrefix": "vendor.io"}}}},
            {{"type": "sigstoreSigned", "keyPath": "/d.pub", "signedIdentity": {{"type": "matchExact"}}}}
        ]}}"#
    ))
    .unwrap();
    let s: Vec<&SigstoreSigned> = p
        .default
        .iter()
        .map(|r| match r {
            Requirement::SigstoreSigned(s) => s,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(matches!(&s[0].keys[..], [KeySource::Data { label, pem }]
        if label.starts_with("keyData of default requirement 0") && pem.starts_with(b"-----BEGIN PUBLIC KEY-----")));
    assert_eq!(s[0].signed_identity, SignedIdentity::MatchRepoDigestOrExact);
    assert_eq!(
        s[1].keys,
        vec![
            KeySource::Path("/a.pub".into()),
            KeySource::Path("/b.pub".into())
        ]
    );
    assert_eq!(
        s[1].signed_identity,
        SignedIdentity::ExactReference(DockerRef::parse("vendor.io/app:1.0").unwrap())
    );
    assert_eq!(s[2].keys.len(), 2);
    assert_eq!(
        s[2].signed_identity,
        SignedIdentity::ExactRepository(DockerRef::parse("vendor.io/app").unwrap())
    );
    assert_eq!(
        s[3].signed_identity,
        SignedIdentity::RemapIdentity {
            prefix: "mirror.io/v".into(),
            signed_prefix: "vendor.io".into()
        }
    );
    assert_eq!(s[4].signed_identity, SignedIdentity::MatchExact);
}

#[test]
fn unknown_and_unsupported_types_are_errors() {
    let cases = [
        (
            r#"{"default": [{"type": "allowEverything"}]}"#,
            "unknown requirement type \"allowEverything\"",
        ),
        (
            r#"{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k"}]}"#,
            "\"signedBy\" (GPG simple signing) is not supported",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "fulcio": {}}]}"#,
            "field \"fulcio\" is not supported",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "rekorPublicKeyPath": "/r"}]}"#,
            "field \"rekorPublicKeyPath\" is not supported",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "pki": {}}]}"#,
            "field \"pki\" is not supported",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {"type": "matchAnything"}}]}"#,
            "unknown type \"matchAnything\"",
        ),
        (
            r#"{"default": [{"kind": "reject"}]}"#,
            "unknown field `kind`",
        ),
        (r#"{"default": [{}]}"#, "missing field `type`"),
        (
            r#"{"default": [{"type": "REJECT"}]}"#,
            "unknown requirement type \"REJECT\"",
        ),
        (r#"{"default": [{"type": 1}]}"#, "invalid JSON"),
    ];
    for (json, want) in cases {
        let e = parse_err(json);
        assert!(e.starts_with("signature policy: "), "{e}");
        assert!(e.contains(want), "{json}: got {e}, want {want}");
    }
}

#[test]
fn unknown_transports_are_still_parsed_strictly() {
    let e = parse_err(
        r#"{"default": [{"type": "reject"}], "transports": {"atomic": {"x": [{"type": "nope"}]}}}"#,
    );
    assert!(
        e.contains("transports.atomic[\"x\"] requirement 0: unknown requirement type \"nope\""),
        "{e}"
    );
}

#[test]
fn structural_errors() {
    let cases = [
        (r#"{}"#, "mandatory \"default\""),
        (
            r#"{"default": []}"#,
            "default: the list of requirements is empty",
        ),
        (
            r#"{"default": [{"type": "reject"}], "transports": {"docker": {"reg.io": []}}}"#,
            "transports.docker[\"reg.io\"]: the list of requirements is empty",
        ),
        (
            r#"{"default": [{"type": "reject"}], "extra": 1}"#,
            "unknown field `extra`",
        ),
        (
            r#"{"default": [{"type": "reject"}], "default": [{"type": "insecureAcceptAnything"}]}"#,
            "duplicate field `default`",
        ),
        (
            r#"{"default": [{"type": "reject"}], "transports": {"docker": {"reg.io": [{"type": "reject"}], "reg.io": [{"type": "insecureAcceptAnything"}]}}}"#,
            "duplicate key \"reg.io\"",
        ),
        (
            r#"{"default": [{"type": "reject"}], "transports": {"docker": {}, "docker": {}}}"#,
            "duplicate key \"docker\"",
        ),
        (
            r#"{"default": [{"type": "reject", "keyPath": "/k"}]}"#,
            "type \"reject\" takes no other fields",
        ),
        (
            r#"{"default": [{"type": "insecureAcceptAnything", "signedIdentity": {"type": "matchExact"}}]}"#,
            "takes no other fields",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned"}]}"#,
            "exactly one of keyPath, keyPaths, keyData and keyDatas",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "keyPath": "/a", "keyData": "eA=="}]}"#,
            "exactly one of",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "keyPaths": []}]}"#,
            "keyPaths is empty",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "keyPath": ""}]}"#,
            "empty key path",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "keyData": "%%%"}]}"#,
            "not base64",
        ),
        (
            r#"{"default": [{"type": "sigstoreSigned", "keyData": "aGVsbG8="}]}"#,
            "public key keyData of default requirement 0: not PEM",
        ),
        (r#"[]"#, "invalid JSON"),
        ("", "invalid JSON"),
    ];
    for (json, want) in cases {
        let e = parse_err(json);
        assert!(e.contains(want), "{json}: got {e}, want {want}");
    }
}

#[test]
fn signed_identity_field_errors() {
    let req = |id: &str| {
        format!(
            r#"{{"default": [{{"type": "sigstoreSigned", "keyPath": "/k", "signedIdentity": {id}}}]}}"#
        )
    };
    let cases = [
        (
            r#"{"type": "matchRepository", "dockerReference": "a.io/b:1"}"#,
            "type \"matchRepository\" does not take field \"dockerReference\"",
        ),
        (
            r#"{"type": "exactReference"}"#,
            "type \"exactReference\" needs field \"dockerReference\"",
        ),
        (
            r#"{"type": "exactReference", "dockerReference": "a.io/b"}"#,
            "must carry a tag or a digest",
        ),
        (
            r#"{"type": "exactReference", "dockerReference": "A.io/B:1"}"#,
            "invalid image reference",
        ),
        (
            r#"{"type": "exactRepository", "dockerRepository": "a.io/b:1"}"#,
            "must be a repository, without tag or digest",
        ),
        (
            r#"{"type": "exactRepository", "dockerReference": "a.io/b:1"}"#,
            "does not take field \"dockerReference\"",
        ),
        (
            r#"{"type": "remapIdentity", "prefix": "a.io"}"#,
            "needs field \"signedPrefix\"",
        ),
        (
            r#"{"type": "remapIdentity", "prefix": "library/busybox", "signedPrefix": "b.io"}"#,
            "prefix \"library/busybox\"",
        ),
        (
            r#"{"type": "remapIdentity", "prefix": "a.io/x:1", "signedPrefix": "b.io"}"#,
            "tags and digests are not allowed",
        ),
        (
            r#"{"type": "matchExact", "extra": 1}"#,
            "unknown field `extra`",
        ),
    ];
    for (id, want) in cases {
        let e = parse_err(&req(id));
        assert!(
            e.contains("default requirement 0") || e.contains("unknown field"),
            "{e}"
        );
        assert!(e.contains(want), "{id}: got {e}, want {want}");
    }
}

#[test]
fn docker_scope_validation() {
    let with_scope = |s: &str| {
        format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"{s}": [{{"type": "reject"}}]}}}}}}"#
        )
    };
    for ok in [
        "",
        "reg.io",
        "reg.io:5000",
        "localhost",
        "reg.io/ns",
        "reg.io/ns/app",
        "reg.io/ns/app:tag",
        "docker.io/library/busybox:latest",
        "*.example.com",
    ] {
        parse(&with_scope(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, want) in [
        (
            "docker.io/busybox:latest",
            "not fully expanded (did you mean \\\"docker.io/library/busybox:latest\\\"?)",
        ),
        ("busybox:latest", "not a registry host[:port]"),
        ("library/busybox", "is not fully expanded"),
        ("*.", "wildcard"),
        ("*example.com", "not a registry host"),
        ("ex*.example.com", "not a registry host"),
        ("reg.io/App", "invalid path component"),
        ("reg.io/app:a:b", "invalid image reference"),
    ] {
        let e = parse_err(&with_scope(bad));
        assert!(e.contains("transports.docker["), "{e}");
        let want = want.replace("\\\"", "\"");
        assert!(e.contains(&want), "{bad}: got {e}, want {want}");
    }
}

#[test]
fn reads_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    std::fs::write(
        &path,
        r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let p = PolicyFile::from_path(&path).unwrap();
    assert_eq!(p.default, vec![Requirement::InsecureAcceptAnything]);
    let e = PolicyFile::from_path(&dir.path().join("missing.json")).unwrap_err();
    assert!(e.to_string().contains("reading signature policy"), "{e}");
}
