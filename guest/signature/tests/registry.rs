//! Verification and signing against a real registry (Debian's
//! docker-registry), with images pushed by skopeo and signatures made by an
//! independent implementation (tests/cosign_tool.py, Python `cryptography`).

mod common;

use std::path::Path;
use std::process::Command;

use cloister_signature::{
    generate_key_pair, sign_image, verify, PolicyFile, Reference, RegistryOptions,
    RegistrySignatureSource, SignatureError, SigningKey, Verified,
};
use cloister_test_support::{run, Registry, Setup};
use common::{cosign_tool, skip_reason};

fn source() -> RegistrySignatureSource {
    cloister_signature::install_crypto_provider();
    RegistrySignatureSource::new(&RegistryOptions {
        insecure_http: true,
        ..Default::default()
    })
    .unwrap()
}

fn policy(key: &Path, identity: &str) -> PolicyFile {
    PolicyFile::from_json(
        format!(
            r#"{{"default": [{{"type": "sigstoreSigned", "keyPath": "{}", "signedIdentity": {identity}}}]}}"#,
            key.display()
        )
        .as_bytes(),
    )
    .unwrap()
}

fn default_identity(key: &Path) -> PolicyFile {
    PolicyFile::from_json(
        format!(
            r#"{{"default": [{{"type": "sigstoreSigned", "keyPath": "{}"}}]}}"#,
            key.display()
        )
        .as_bytes(),
    )
    .unwrap()
}

async fn check(
    p: &PolicyFile,
    image: &str,
    digest: &str,
    src: &RegistrySignatureSource,
) -> Result<Verified, SignatureError> {
    verify(p, &Reference::try_from(image).unwrap(), digest, src).await
}

fn py_sign(reg: &Registry, key: &Path, repo: &str, extra: &[&str]) {
    run(cosign_tool()
        .args(["sign", "--key"])
        .arg(key)
        .args(["--registry", &reg.host(), "--repo", repo, "--tag", "v1"])
        .args(extra));
}

#[tokio::test]
async fn python_made_signatures_in_a_real_registry() {
    if skip_reason(true).is_some() {
        return;
    }
    let reg = Registry::start(Setup::HTTP);
    let r = &reg.host();
    let keys = reg.dir.path();
    run(cosign_tool().args(["keygen", "--out"]).arg(keys.join("a")));
    run(cosign_tool().args(["keygen", "--out"]).arg(keys.join("b")));
    let (a_key, a_pub, b_pub) = (keys.join("a.key"), keys.join("a.pub"), keys.join("b.pub"));

    let good = reg.push_busybox("good:v1");
    let tampered = reg.push_busybox("tampered:v1");
    let other_digest = reg.push_busybox("otherdigest:v1");
    let other_id = reg.push_busybox("otherid:v1");
    let unsigned = reg.push_busybox("unsigned:v1");
    py_sign(&reg, &a_key, "good", &[]);
    py_sign(&reg, &a_key, "tampered", &["--tamper"]);
    let wrong = format!("sha256:{}", "1".repeat(64));
    py_sign(&reg, &a_key, "otherdigest", &["--claimed-digest", &wrong]);
    py_sign(
        &reg,
        &a_key,
        "otherid",
        &["--identity", &format!("{r}/otherid:v2")],
    );
    let src = source();

    // Accepted: the right key, digest and identity; also by digest.
    let v = check(
        &default_identity(&a_pub),
        &format!("{r}/good:v1"),
        &good,
        &src,
    )
    .await
    .unwrap();
    assert_eq!(v.manifest_digest, good);
    assert_eq!(v.signatures.len(), 1);
    assert_eq!(v.signatures[0].docker_reference, format!("{r}/good:v1"));
    assert!(v.signatures[0]
        .key
        .starts_with(&a_pub.display().to_string()));
    check(
        &default_identity(&a_pub),
        &format!("{r}/good@{good}"),
        &good,
        &src,
    )
    .await
    .unwrap();

    // A wrong key.
    let e = check(
        &default_identity(&b_pub),
        &format!("{r}/good:v1"),
        &good,
        &src,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(&format!(
            "no signature for {good} matched key {} (sha256:",
            b_pub.display()
        )),
        "{e}"
    );
    assert!(e.contains("not made by the key"), "{e}");

    // A tampered payload.
    let e = check(
        &default_identity(&a_pub),
        &format!("{r}/tampered:v1"),
        &tampered,
        &src,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("signature verification failed"), "{e}");

    // A genuine signature of another digest.
    let e = check(
        &default_identity(&a_pub),
        &format!("{r}/otherdigest:v1"),
        &other_digest,
        &src,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(&format!(
            "payload is for another image: expected digest {other_digest}, got {wrong}"
        )),
        "{e}"
    );

    // Another identity: refused by matchRepoDigestOrExact and exactReference,
    // accepted by matchRepository and by an exactReference naming it.
    let image = format!("{r}/otherid:v1");
    let e = check(&default_identity(&a_pub), &image, &other_id, &src)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "identity mismatch: expected {r}/otherid:v1, got {r}/otherid:v2"
        )),
        "{e}"
    );
    let exact_v1 = format!(r#"{{"type": "exactReference", "dockerReference": "{r}/otherid:v1"}}"#);
    let e = check(&policy(&a_pub, &exact_v1), &image, &other_id, &src)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("identity mismatch"), "{e}");
    check(
        &policy(&a_pub, r#"{"type": "matchRepository"}"#),
        &image,
        &other_id,
        &src,
    )
    .await
    .unwrap();
    let exact_v2 = format!(r#"{{"type": "exactReference", "dockerReference": "{r}/otherid:v2"}}"#);
    check(&policy(&a_pub, &exact_v2), &image, &other_id, &src)
        .await
        .unwrap();

    // Unsigned.
    let e = check(
        &default_identity(&a_pub),
        &format!("{r}/unsigned:v1"),
        &unsigned,
        &src,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, SignatureError::Unsigned { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("no signature for {unsigned} matched key")),
        "{e}"
    );

    // reject, by scope: the repository is rejected although well signed.
    let p = PolicyFile::from_json(
        format!(
            r#"{{"default": [{{"type": "sigstoreSigned", "keyPath": "{}"}}],
                "transports": {{"docker": {{"{r}/good": [{{"type": "reject"}}]}}}}}}"#,
            a_pub.display()
        )
        .as_bytes(),
    )
    .unwrap();
    let e = check(&p, &format!("{r}/good:v1"), &good, &src)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("image {r}/good:v1 is rejected by signature policy scope docker:{r}/good (requirement \"reject\")")
    );
}

#[tokio::test]
async fn cloister_signatures_verify_with_the_independent_implementation() {
    if skip_reason(true).is_some() {
        return;
    }
    let reg = Registry::start(Setup::HTTP);
    let r = &reg.host();
    let dir = reg.dir.path();

    // `cloister image keygen`'s format, decrypted by the Python code.
    let pair = generate_key_pair(b"secret").unwrap();
    std::fs::write(dir.join("cosign.key"), pair.private_pem.as_bytes()).unwrap();
    std::fs::write(dir.join("cosign.pub"), &pair.public_pem).unwrap();
    let key = SigningKey::from_pem(pair.private_pem.as_bytes(), b"secret", "cosign.key").unwrap();

    let digest = reg.push_busybox("signed:v1");
    let src = source();
    let image = Reference::try_from(format!("{r}/signed:v1").as_str()).unwrap();
    let signed = sign_image(&src, &image, &key).await.unwrap();
    assert_eq!(signed.manifest_digest, digest);
    assert_eq!(signed.docker_reference, format!("{r}/signed:v1"));
    assert!(signed.pushed);
    assert_eq!(
        signed.signature_ref,
        format!("{r}/signed:sha256-{}.sig", &digest["sha256:".len()..])
    );

    let py_verify = |pub_key: &Path| {
        cosign_tool()
            .args(["verify", "--pub"])
            .arg(pub_key)
            .args(["--registry", r, "--repo", "signed", "--tag", "v1"])
            .args(["--identity", &format!("{r}/signed:v1")])
            .output()
            .unwrap()
    };
    let out = py_verify(&dir.join("cosign.pub"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert_eq!(report["layers"].as_array().unwrap().len(), 1);
    assert_eq!(report["layers"][0]["payload_digest"], digest.as_str());

    // Our verifier agrees.
    check(
        &default_identity(&dir.join("cosign.pub")),
        &format!("{r}/signed:v1"),
        &digest,
        &src,
    )
    .await
    .unwrap();

    // A second signature, with a key Go cosign generated, is appended.
    let go_key = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/cosign_generated_encrypted_empty_private.key");
    let out = run(cosign_tool()
        .args(["decrypt-key", "--key"])
        .arg(&go_key)
        .env("COSIGN_PASSWORD", ""));
    std::fs::write(dir.join("go.pub"), &out.stdout).unwrap();
    let go = SigningKey::from_pem(&std::fs::read(&go_key).unwrap(), b"", "go cosign key").unwrap();
    sign_image(&src, &image, &go).await.unwrap();
    let out = py_verify(&dir.join("go.pub"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{report}");
    assert_eq!(layers[0]["signature"], "invalid"); // the first key's
    assert_eq!(layers[1]["signature"], "valid");
    // Both keys are needed and both are there.
    let both = PolicyFile::from_json(
        format!(
            r#"{{"default": [{{"type": "sigstoreSigned", "keyPath": "{}"}}, {{"type": "sigstoreSigned", "keyPath": "{}"}}]}}"#,
            dir.join("cosign.pub").display(),
            dir.join("go.pub").display()
        )
        .as_bytes(),
    )
    .unwrap();
    let v = check(&both, &format!("{r}/signed:v1"), &digest, &src)
        .await
        .unwrap();
    assert_eq!(v.signatures.len(), 2);

    // A key the Python code makes does not verify our signatures.
    run(cosign_tool()
        .args(["keygen", "--out"])
        .arg(dir.join("other")));
    let out = py_verify(&dir.join("other.pub"));
    assert!(!out.status.success());
}

#[tokio::test]
async fn skopeo_copied_signatures_and_mirrors() {
    if skip_reason(true).is_some() {
        return;
    }
    let reg = Registry::start(Setup::HTTP);
    let r = &reg.host();
    let dir = reg.dir.path();
    run(cosign_tool()
        .args(["keygen", "--out"])
        .arg(dir.join("vendor")));
    let digest = reg.push_busybox("vendor/app:v1");
    py_sign(&reg, &dir.join("vendor.key"), "vendor/app", &[]);

    // skopeo copies the image and its cosign signature to a mirror.
    run(Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .arg("--registries.d")
        .arg(reg.registries_d())
        .arg(format!("docker://{r}/vendor/app:v1"))
        .arg(format!("docker://{r}/mirror/app:v1")));
    assert_eq!(reg.digest("mirror/app:v1"), digest);

    let src = source();
    let pub_key = dir.join("vendor.pub");
    let mirror = format!("{r}/mirror/app:v1");
    // The signature names the vendor's repository, not the mirror's.
    let e = check(&default_identity(&pub_key), &mirror, &digest, &src)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "identity mismatch: expected {r}/mirror/app:v1, got {r}/vendor/app:v1"
        )),
        "{e}"
    );
    let remap = format!(
        r#"{{"type": "remapIdentity", "prefix": "{r}/mirror", "signedPrefix": "{r}/vendor"}}"#
    );
    let v = check(&policy(&pub_key, &remap), &mirror, &digest, &src)
        .await
        .unwrap();
    assert_eq!(
        v.signatures[0].docker_reference,
        format!("{r}/vendor/app:v1")
    );
    let exact_repo =
        format!(r#"{{"type": "exactRepository", "dockerRepository": "{r}/vendor/app"}}"#);
    check(&policy(&pub_key, &exact_repo), &mirror, &digest, &src)
        .await
        .unwrap();
    // Remapping to another vendor repository does not match.
    let wrong = format!(
        r#"{{"type": "remapIdentity", "prefix": "{r}/mirror", "signedPrefix": "{r}/other"}}"#
    );
    let e = check(&policy(&pub_key, &wrong), &mirror, &digest, &src)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("expected {r}/other/app:v1, got {r}/vendor/app:v1")),
        "{e}"
    );
}

#[test]
fn key_files_match_an_independent_implementation() {
    if skip_reason(false).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The Python decryption reads Go cosign's key (it checks the Python).
    let go_key = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/cosign_generated_encrypted_empty_private.key");
    let out = run(cosign_tool()
        .args(["decrypt-key", "--key"])
        .arg(&go_key)
        .env("COSIGN_PASSWORD", ""));
    let ours = SigningKey::from_pem(&std::fs::read(&go_key).unwrap(), b"", "go").unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        ours.public_key_pem()
    );

    // It reads ours too, with the password, and not without.
    let pair = generate_key_pair(b"pass word").unwrap();
    let path = dir.path().join("cosign.key");
    std::fs::write(&path, pair.private_pem.as_bytes()).unwrap();
    let out = run(cosign_tool()
        .args(["decrypt-key", "--key"])
        .arg(&path)
        .env("COSIGN_PASSWORD", "pass word"));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), pair.public_pem);
    let out = cosign_tool()
        .args(["decrypt-key", "--key"])
        .arg(&path)
        .env("COSIGN_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn tls_registry_with_basic_auth() {
    if skip_reason(true).is_some() {
        return;
    }
    let reg = Registry::start(Setup::htpasswd("tenant", "s3cret pass").with_tls());
    let r = &reg.host();
    let digest = reg.push_busybox("app:v1");
    cloister_signature::install_crypto_provider();
    let ca = reg.ca_pem.clone().unwrap();
    let creds = Some(("tenant".to_string(), "s3cret pass".to_string()));
    let client = |basic_auth: Option<(String, String)>, extra_ca_pem: Vec<Vec<u8>>| {
        RegistrySignatureSource::new(&RegistryOptions {
            insecure_http: false,
            basic_auth,
            extra_ca_pem,
        })
        .unwrap()
    };
    let src = client(creds.clone(), vec![ca.clone()]);
    let image = Reference::try_from(format!("{r}/app:v1").as_str()).unwrap();
    let key = SigningKey::generate().unwrap();
    let signed = sign_image(&src, &image, &key).await.unwrap();
    assert_eq!(signed.manifest_digest, digest);
    let p = PolicyFile::from_json(
        format!(
            r#"{{"default": [{{"type": "sigstoreSigned", "keyData": "{}"}}]}}"#,
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                key.public_key_pem()
            )
        )
        .as_bytes(),
    )
    .unwrap();
    check(&p, &format!("{r}/app:v1"), &digest, &src)
        .await
        .unwrap();

    // Without the CA the TLS handshake fails; without credentials the
    // registry refuses. Neither is mistaken for "unsigned".
    let e = client(creds, vec![])
        .resolve_digest(&image)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("registry: resolving {r}/app:v1")),
        "{e}"
    );
    let e = check(&p, &format!("{r}/app:v1"), &digest, &client(None, vec![ca]))
        .await
        .unwrap_err();
    assert!(matches!(e, SignatureError::Registry { .. }), "{e}");
}
