//! The verifier against signatures held in memory: real keys, real
//! signatures, real cosign manifests; only the registry is replaced.

use base64::Engine;
use cloister_signature::cosign::{signature_tag, SIGNATURE_ANNOTATION};
use cloister_signature::payload::Payload;
use cloister_signature::{
    verify, MemorySignatureSource, PolicyFile, Reference, SignatureError, SigningKey,
};

const DIGEST: &str = "sha256:0f2b4c6d8e0f2b4c6d8e0f2b4c6d8e0f2b4c6d8e0f2b4c6d8e0f2b4c6d8e0f2b";
const OTHER_DIGEST: &str =
    "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn image(s: &str) -> Reference {
    Reference::try_from(s).unwrap()
}

fn key_data(key: &SigningKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.public_key_pem())
}

fn policy(json: String) -> PolicyFile {
    PolicyFile::from_json(json.as_bytes()).unwrap()
}

/// `default` requires a signature by `key` with the given signedIdentity.
fn signed_policy(key: &SigningKey, identity: &str) -> PolicyFile {
    policy(format!(
        r#"{{"default": [{{"type": "sigstoreSigned", "keyData": "{}", "signedIdentity": {identity}}}]}}"#,
        key_data(key)
    ))
}

fn default_policy(key: &SigningKey) -> PolicyFile {
    policy(format!(
        r#"{{"default": [{{"type": "sigstoreSigned", "keyData": "{}"}}]}}"#,
        key_data(key)
    ))
}

/// Signs a payload for (identity, digest) and attaches it to `img`'s
/// signatures of `attach_to`.
fn attach(
    src: &MemorySignatureSource,
    img: &Reference,
    attach_to: &str,
    key: &SigningKey,
    identity: &str,
    digest: &str,
) {
    let payload = Payload {
        docker_reference: identity.into(),
        manifest_digest: digest.into(),
    }
    .to_bytes();
    let sig = key.sign(&payload).unwrap();
    src.attach_signature(img, attach_to, &payload, &sig)
        .unwrap();
}

async fn check(
    p: &PolicyFile,
    img: &str,
    src: &MemorySignatureSource,
) -> Result<cloister_signature::Verified, String> {
    verify(p, &image(img), DIGEST, src)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn accepts_a_good_signature() {
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    attach(&src, &img, DIGEST, &key, "reg.io/app:v1", DIGEST);
    let v = check(&default_policy(&key), "reg.io/app:v1", &src)
        .await
        .unwrap();
    assert_eq!(v.image, "reg.io/app:v1");
    assert_eq!(v.manifest_digest, DIGEST);
    assert_eq!(v.scope.to_string(), "default");
    assert_eq!(v.signatures.len(), 1);
    assert_eq!(v.signatures[0].docker_reference, "reg.io/app:v1");
    assert!(v.signatures[0]
        .key
        .starts_with("keyData of default requirement 0 (sha256:"));
    assert!(v.to_string().contains("signed by keyData"), "{v}");
}

#[tokio::test]
async fn wrong_key_is_rejected_and_named() {
    let signer = SigningKey::generate().unwrap();
    let trusted = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    attach(&src, &img, DIGEST, &signer, "reg.io/app:v1", DIGEST);
    let e = check(&default_policy(&trusted), "reg.io/app:v1", &src)
        .await
        .unwrap_err();
    assert!(
        e.starts_with(&format!(
            "no signature for {DIGEST} matched key keyData of default requirement 0 (sha256:"
        )),
        "{e}"
    );
    assert!(e.contains("not made by the key"), "{e}");
}

#[tokio::test]
async fn tampered_payload_is_rejected() {
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    let signed = Payload {
        docker_reference: "reg.io/app:v1".into(),
        manifest_digest: OTHER_DIGEST.into(),
    }
    .to_bytes();
    let sig = key.sign(&signed).unwrap();
    // The stored payload claims DIGEST; the signature covers OTHER_DIGEST.
    let tampered = Payload {
        docker_reference: "reg.io/app:v1".into(),
        manifest_digest: DIGEST.into(),
    }
    .to_bytes();
    src.attach_signature(&img, DIGEST, &tampered, &sig).unwrap();
    let e = check(&default_policy(&key), "reg.io/app:v1", &src)
        .await
        .unwrap_err();
    assert!(
        e.contains("not made by the key (signature verification failed)"),
        "{e}"
    );
}

#[tokio::test]
async fn payload_for_another_digest_is_rejected() {
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    // A genuine signature of another image, copied under this image's tag.
    attach(&src, &img, DIGEST, &key, "reg.io/app:v1", OTHER_DIGEST);
    let e = check(&default_policy(&key), "reg.io/app:v1", &src)
        .await
        .unwrap_err();
    assert!(
        e.contains(&format!(
            "payload is for another image: expected digest {DIGEST}, got {OTHER_DIGEST}"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn identity_rules() {
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    attach(&src, &img, DIGEST, &key, "reg.io/app:v2", DIGEST);

    // Default (matchRepoDigestOrExact): a tagged pull needs the same tag.
    let e = check(&default_policy(&key), "reg.io/app:v1", &src)
        .await
        .unwrap_err();
    assert!(
        e.contains("identity mismatch: expected reg.io/app:v1, got reg.io/app:v2"),
        "{e}"
    );
    let e = check(
        &signed_policy(&key, r#"{"type": "matchExact"}"#),
        "reg.io/app:v1",
        &src,
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("identity mismatch: expected reg.io/app:v1, got reg.io/app:v2"),
        "{e}"
    );
    // matchRepository accepts any tag of the repository.
    check(
        &signed_policy(&key, r#"{"type": "matchRepository"}"#),
        "reg.io/app:v1",
        &src,
    )
    .await
    .unwrap();
    // A digest pull under the default accepts any identity in the repository.
    let by_digest = format!("reg.io/app@{DIGEST}");
    check(&default_policy(&key), &by_digest, &src)
        .await
        .unwrap();
    // exactReference: exactly the named identity.
    check(
        &signed_policy(
            &key,
            r#"{"type": "exactReference", "dockerReference": "reg.io/app:v2"}"#,
        ),
        "reg.io/app:v1",
        &src,
    )
    .await
    .unwrap();
    let e = check(
        &signed_policy(
            &key,
            r#"{"type": "exactReference", "dockerReference": "reg.io/app:v1"}"#,
        ),
        "reg.io/app:v1",
        &src,
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("identity mismatch: expected reg.io/app:v1, got reg.io/app:v2"),
        "{e}"
    );
    // exactRepository in another repository.
    let e = check(
        &signed_policy(
            &key,
            r#"{"type": "exactRepository", "dockerRepository": "vendor.io/app"}"#,
        ),
        "reg.io/app:v1",
        &src,
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("identity mismatch: expected repository vendor.io/app, got reg.io/app:v2"),
        "{e}"
    );
}

#[tokio::test]
async fn cosign_style_repository_identity_needs_match_repository() {
    // Go cosign writes the bare repository as identity.
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:latest");
    attach(&src, &img, DIGEST, &key, "reg.io/app", DIGEST);
    let e = check(&default_policy(&key), "reg.io/app:latest", &src)
        .await
        .unwrap_err();
    assert!(
        e.contains("identity mismatch: expected reg.io/app:latest, got reg.io/app"),
        "{e}"
    );
    check(
        &signed_policy(&key, r#"{"type": "matchRepository"}"#),
        "reg.io/app:latest",
        &src,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn remap_identity_for_a_mirror() {
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("mirror.local:5000/vendor/app:1.0");
    attach(
        &src,
        &img,
        DIGEST,
        &key,
        "vendor.example.com/app:1.0",
        DIGEST,
    );
    let p = signed_policy(
        &key,
        r#"{"type": "remapIdentity", "prefix": "mirror.local:5000/vendor", "signedPrefix": "vendor.example.com"}"#,
    );
    check(&p, "mirror.local:5000/vendor/app:1.0", &src)
        .await
        .unwrap();
    let e = check(
        &default_policy(&key),
        "mirror.local:5000/vendor/app:1.0",
        &src,
    )
    .await
    .unwrap_err();
    assert!(e.contains("identity mismatch"), "{e}");
}

#[tokio::test]
async fn unsigned_image_is_rejected() {
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let e = check(&default_policy(&key), "reg.io/app:v1", &src)
        .await
        .unwrap_err();
    let tag = signature_tag(DIGEST).unwrap();
    assert!(
        e.starts_with(&format!(
            "no signature for {DIGEST} matched key keyData of default requirement 0"
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!(
            "image reg.io/app:v1 has no signatures (tag {tag}: not found"
        )),
        "{e}"
    );
}

#[tokio::test]
async fn reject_wins_over_good_signatures_and_fetches_nothing() {
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    attach(&src, &img, DIGEST, &key, "reg.io/app:v1", DIGEST);
    let p = policy(format!(
        r#"{{"default": [{{"type": "sigstoreSigned", "keyData": "{}"}}, {{"type": "reject"}}]}}"#,
        key_data(&key)
    ));
    let e = verify(&p, &img, DIGEST, &src).await.unwrap_err();
    assert!(matches!(e, SignatureError::Rejected { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "image reg.io/app:v1 is rejected by signature policy scope default (requirement \"reject\")"
    );
    let p = policy(
        r#"{"default": [{"type": "insecureAcceptAnything"}],
            "transports": {"docker": {"reg.io/app": [{"type": "reject"}]}}}"#
            .into(),
    );
    let e = check(&p, "reg.io/app:v1", &src).await.unwrap_err();
    assert!(e.contains("scope docker:reg.io/app"), "{e}");
    check(&p, "reg.io/other:v1", &src).await.unwrap();
}

#[tokio::test]
async fn insecure_accept_anything_needs_no_signature() {
    let src = MemorySignatureSource::new();
    let p = policy(r#"{"default": [{"type": "insecureAcceptAnything"}]}"#.into());
    let v = check(&p, "reg.io/app:v1", &src).await.unwrap();
    assert!(v.signatures.is_empty());
    assert!(v.to_string().contains("accepted without signature"), "{v}");
}

#[tokio::test]
async fn every_requirement_must_pass() {
    let a = SigningKey::generate().unwrap();
    let b = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    attach(&src, &img, DIGEST, &a, "reg.io/app:v1", DIGEST);
    let p = policy(format!(
        r#"{{"default": [{{"type": "sigstoreSigned", "keyData": "{}"}}, {{"type": "sigstoreSigned", "keyData": "{}"}}]}}"#,
        key_data(&a),
        key_data(&b)
    ));
    let e = check(&p, "reg.io/app:v1", &src).await.unwrap_err();
    assert!(
        e.contains("matched key keyData of default requirement 1"),
        "{e}"
    );
    // With the second signature both pass.
    attach(&src, &img, DIGEST, &b, "reg.io/app:v1", DIGEST);
    let v = check(&p, "reg.io/app:v1", &src).await.unwrap();
    assert_eq!(v.signatures.len(), 2);
    // The same payload, signed by two keys: two layers with one digest.
    assert_eq!(v.signatures[0].layer_digest, v.signatures[1].layer_digest);
    assert!(v.signatures[0]
        .key
        .starts_with("keyData of default requirement 0"));
    assert!(v.signatures[1]
        .key
        .starts_with("keyData of default requirement 1"));
}

#[tokio::test]
async fn one_good_signature_among_bad_ones_is_enough() {
    let good = SigningKey::generate().unwrap();
    let other = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    attach(&src, &img, DIGEST, &other, "reg.io/app:v1", DIGEST);
    attach(&src, &img, DIGEST, &good, "reg.io/evil:v1", DIGEST);
    let p = policy(format!(
        r#"{{"default": [{{"type": "sigstoreSigned", "keyDatas": ["{}", "{}"]}}]}}"#,
        key_data(&SigningKey::generate().unwrap()),
        key_data(&good)
    ));
    // Two signatures, both fail: each reason is listed.
    let e = check(&p, "reg.io/app:v1", &src).await.unwrap_err();
    assert!(e.contains("not made by the key"), "{e}");
    assert!(
        e.contains("identity mismatch: expected reg.io/app:v1, got reg.io/evil:v1"),
        "{e}"
    );
    attach(&src, &img, DIGEST, &good, "reg.io/app:v1", DIGEST);
    let v = check(&p, "reg.io/app:v1", &src).await.unwrap();
    assert!(v.signatures[0]
        .key
        .starts_with("keyDatas[1] of default requirement 0"));
}

#[tokio::test]
async fn key_files_are_read_at_verification() {
    let key = SigningKey::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cosign.pub");
    let p = policy(format!(
        r#"{{"default": [{{"type": "sigstoreSigned", "keyPath": "{}"}}]}}"#,
        path.display()
    ));
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    attach(&src, &img, DIGEST, &key, "reg.io/app:v1", DIGEST);
    let e = check(&p, "reg.io/app:v1", &src).await.unwrap_err();
    assert!(
        e.starts_with(&format!("public key {}: cannot read", path.display())),
        "{e}"
    );
    std::fs::write(&path, key.public_key_pem()).unwrap();
    let v = check(&p, "reg.io/app:v1", &src).await.unwrap();
    assert!(v.signatures[0].key.starts_with(&path.display().to_string()));
}

#[tokio::test]
async fn blob_not_matching_its_digest_is_malformed() {
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    let payload = Payload {
        docker_reference: "reg.io/app:v1".into(),
        manifest_digest: DIGEST.into(),
    }
    .to_bytes();
    let sig = key.sign(&payload).unwrap();
    src.attach_signature(&img, DIGEST, &payload, &sig).unwrap();
    // The registry serves other bytes (same length) under the layer digest.
    let layer_digest = cloister_signature::cosign::sha256_digest(&payload);
    let mut other = payload.clone();
    other[0] = b' ';
    src.put_blob_as(&img, &layer_digest, other);
    let e = check(&default_policy(&key), "reg.io/app:v1", &src)
        .await
        .unwrap_err();
    assert!(e.contains("hashes to sha256:"), "{e}");
}

#[tokio::test]
async fn layers_without_signature_or_of_other_types_are_skipped_with_reasons() {
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let img = image("reg.io/app:v1");
    let tag = signature_tag(DIGEST).unwrap();
    let payload = Payload {
        docker_reference: "reg.io/app:v1".into(),
        manifest_digest: DIGEST.into(),
    }
    .to_bytes();
    let d = src.put_blob(&img, payload.clone());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": payload.len()},
        "layers": [
            {"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": d, "size": payload.len()},
            {"mediaType": "application/vnd.dsse.envelope.v1+json", "digest": d, "size": payload.len(),
             "annotations": {SIGNATURE_ANNOTATION: key.sign(&payload).unwrap()}},
        ],
    });
    src.put_manifest(&img, &tag, serde_json::to_vec(&manifest).unwrap());
    let e = check(&default_policy(&key), "reg.io/app:v1", &src)
        .await
        .unwrap_err();
    assert!(
        e.contains("no dev.cosignproject.cosign/signature annotation"),
        "{e}"
    );
    assert!(
        e.contains(
            "media type \"application/vnd.dsse.envelope.v1+json\" is not a simple-signing payload"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn reference_and_digest_checks() {
    let key = SigningKey::generate().unwrap();
    let src = MemorySignatureSource::new();
    let p = default_policy(&key);
    let e = verify(
        &p,
        &image(&format!("reg.io/app@{OTHER_DIGEST}")),
        DIGEST,
        &src,
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("image reg.io/app@{OTHER_DIGEST}: the reference pins {OTHER_DIGEST}, but the manifest digest is {DIGEST}")
    );
    let e = verify(&p, &image("reg.io/app:v1"), "sha256:abc", &src)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("invalid digest \"sha256:abc\""),
        "{e}"
    );
}
