//! The whole sim flow on loopback, over real HTTPS: the KBS client (crate
//! cloister-kbs-client) with the sim attester talks to the real sim chip on a
//! Unix socket and to cloister-kbs, whose admin API the test configures. Every
//! refusal is checked for its problem type and for a detail that carries the
//! expected and the received values.
mod common;

use std::path::Path;
use std::time::Duration;

use cloister_kbs::admin_client::{AdminClient, AdminError};
use cloister_kbs_client::TeeKeyKind;
use sha2::{Digest, Sha256};

use common::*;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_guest_gets_its_resource() {
    let env = Env::new(true, Duration::from_secs(300));
    env.good_reference().await;
    env.admin()
        .set_resource("default/key/k1", b"the image key")
        .await
        .unwrap();

    let mut client = env.client();
    assert_eq!(
        client.get_resource("default", "key", "k1").await.unwrap(),
        b"the image key"
    );
    // The token alone (no session) also works.
    client.forget_session();
    assert_eq!(
        client.fetch_resource("default", "key", "k1").await.unwrap(),
        b"the image key"
    );

    // An RSA TEE key gets an RSA-OAEP-256 JWE.
    let mut cfg = env.client_config();
    cfg.key_kind = TeeKeyKind::Rsa2048;
    let mut rsa = env.client_with(cfg);
    assert_eq!(
        rsa.get_resource("default", "key", "k1").await.unwrap(),
        b"the image key"
    );

    let e = client
        .fetch_resource("default", "key", "missing")
        .await
        .unwrap_err();
    let p = refused(&e, "resource-not-found");
    assert_eq!(p.detail, "resource default/key/missing: not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonce_replay_is_refused() {
    let env = Env::new(true, Duration::from_secs(300));
    env.good_reference().await;
    let mut client = env.client();
    let challenge = client.auth().await.unwrap();
    let att = client.build_attestation(&challenge).await.unwrap();
    client.post_attestation(&att).await.unwrap();

    // The same attestation again on the same session: the nonce is spent.
    let e = client.post_attestation(&att).await.unwrap_err();
    let p = refused(&e, "nonce-used");
    assert!(p.detail.starts_with("nonce already used"), "{}", p.detail);
    assert!(
        e.to_string()
            .starts_with("attest: KBS refused: nonce already used"),
        "{e}"
    );

    // On a new session: the old nonce does not match the new one...
    let fresh = client.auth().await.unwrap();
    let e = client.post_attestation(&att).await.unwrap_err();
    let p = refused(&e, "nonce-mismatch");
    assert_eq!(
        p.detail,
        format!(
            "nonce mismatch: expected {}, got {}",
            fresh.nonce, challenge.nonce
        )
    );
    assert_eq!(
        (p.expected.as_deref(), p.got.as_deref()),
        (Some(&*fresh.nonce), Some(&*challenge.nonce))
    );

    // ...and putting the new nonce in the old evidence breaks the REPORT_DATA binding.
    let fresh = client.auth().await.unwrap();
    let mut forged = att.clone();
    forged.runtime_data.nonce = fresh.nonce.clone();
    let e = client.post_attestation(&forged).await.unwrap_err();
    let p = refused(&e, "report-data-mismatch");
    let got = p.got.clone().unwrap();
    let expected = p.expected.clone().unwrap();
    assert_ne!(got, expected);
    assert_eq!(
        p.detail,
        format!("report_data mismatch: expected {expected}, got {got}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_measurement_and_host_data_are_refused() {
    let env = Env::new(true, Duration::from_secs(300));
    let wrong_m = "ab".repeat(48);
    env.reference(&wrong_m, &hex::encode(host_data())).await;
    let e = env.client().attest_once().await.unwrap_err();
    let p = refused(&e, "measurement-mismatch");
    assert_eq!(
        p.detail,
        format!(
            "measurement mismatch: expected {wrong_m}, got {}",
            hex::encode(MEASUREMENT)
        )
    );
    assert_eq!(p.expected.as_deref(), Some(&*wrong_m));
    assert!(
        e.to_string().starts_with(&format!(
            "attest: KBS refused: measurement mismatch: expected {wrong_m}, got "
        )),
        "{e}"
    );

    let wrong_h = "cd".repeat(32);
    env.reference(&hex::encode(MEASUREMENT), &wrong_h).await;
    let e = env.client().attest_once().await.unwrap_err();
    let p = refused(&e, "host-data-mismatch");
    assert_eq!(
        p.detail,
        format!(
            "host_data mismatch: expected {wrong_h}, got {}",
            hex::encode(host_data())
        )
    );

    // Initdata that is not what HOST_DATA measured.
    env.good_reference().await;
    let mut cfg = env.client_config();
    cfg.init_data = Some("something else".into());
    let e = env.client_with(cfg).attest_once().await.unwrap_err();
    let p = refused(&e, "initdata-mismatch");
    assert_eq!(p.got.as_deref(), Some(&*hex::encode(host_data())));
    assert_eq!(
        p.expected.as_deref(),
        Some(&*hex::encode(Sha256::digest(b"something else")))
    );
    assert!(
        p.detail
            .starts_with("initdata mismatch: expected HOST_DATA"),
        "{}",
        p.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_refused_and_the_client_recovers() {
    let env = Env::new(true, Duration::from_secs(1));
    env.good_reference().await;
    env.admin()
        .set_resource("default/key/k1", b"v")
        .await
        .unwrap();
    let mut client = env.client();
    client.attest_once().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let e = client
        .fetch_resource("default", "key", "k1")
        .await
        .unwrap_err();
    let p = refused(&e, "session-expired");
    assert!(
        p.detail.starts_with("session expired: valid until "),
        "{}",
        p.detail
    );
    assert!(
        p.expected.as_deref().unwrap().starts_with("before "),
        "{p:?}"
    );
    assert!(p.got.is_some());
    // get_resource attests again on the 401.
    assert_eq!(
        client.get_resource("default", "key", "k1").await.unwrap(),
        b"v"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_evidence_is_refused_without_allow_sim() {
    let env = Env::new(false, Duration::from_secs(300));
    env.good_reference().await;
    let e = env.client().attest_once().await.unwrap_err();
    let p = refused(&e, "sim-not-allowed");
    assert_eq!(
        p.detail,
        "sim evidence refused: verifier not configured with allow_sim"
    );
    assert_eq!(p.check.as_deref(), Some("sim evidence refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_kbs_keeps_its_state() {
    let mut env = Env::new(true, Duration::from_secs(300));
    env.good_reference().await;
    env.admin()
        .set_resource("repo1/cert/tls", b"persisted")
        .await
        .unwrap();
    env.admin()
        .set_resource_policy(
            "package cloister.resource\nallow if { input.resource.repository == \"repo1\" }\n",
        )
        .await
        .unwrap();
    env.admin()
        .set_resource("repo2/cert/tls", b"other")
        .await
        .unwrap();
    let mut client = env.client();
    client.attest_once().await.unwrap();
    let e = env
        .client()
        .fetch_resource("repo1", "cert", "tls")
        .await
        .unwrap_err();
    refused(&e, "unauthenticated");
    let mut token_only = env.client();
    token_only.attest_once().await.unwrap();
    token_only.forget_session();
    env.restart().await;

    // Same addresses: the client from before the restart holds a session the new
    // KBS does not know; it is told so, attests again, and gets the resource.
    assert_eq!(
        client.get_resource("repo1", "cert", "tls").await.unwrap(),
        b"persisted"
    );
    // Reference values and the resource policy were kept too.
    let e = client
        .fetch_resource("repo2", "cert", "tls")
        .await
        .unwrap_err();
    let p = refused(&e, "resource-policy-denied");
    assert_eq!(
        p.detail,
        "resource policy denied repo2/cert/tls: data.cloister.resource.allow is false"
    );
    // The token signing key was kept: a token from before the restart still works.
    assert_eq!(
        token_only
            .fetch_resource("repo1", "cert", "tls")
            .await
            .unwrap(),
        b"persisted"
    );
    let _ = &env.chip;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_needs_the_admin_token() {
    let env = Env::new(true, Duration::from_secs(300));
    let addr = env.kbs.as_ref().unwrap().admin_addr;
    let wrong = AdminClient::new(
        &format!("https://{addr}"),
        &env.ca(),
        "not-the-admin-token-at-all",
    )
    .unwrap();
    let e = wrong
        .set_resource("default/key/k1", b"x")
        .await
        .unwrap_err();
    let AdminError::Refused(p) = e else {
        panic!("{e}")
    };
    assert_eq!(p.problem_type, format!("{PREFIX}admin-token-mismatch"));
    assert_eq!(p.status, 401);
    assert_eq!(
        p.detail,
        "admin API: the bearer token is not the configured admin token"
    );

    // No token at all, with a plain HTTPS request.
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::pem::PemObject::pem_slice_iter(&env.ca()) {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    })
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let resp = http
        .put(format!("https://{addr}/admin/v0/resource/default/key/k1"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(p["type"], format!("{PREFIX}admin-unauthenticated"));
    assert_eq!(
        p["detail"],
        "admin API: no admin token (expected header Authorization: Bearer <admin token>)"
    );
    // Nothing was stored by either attempt.
    assert!(!Path::new(&env.dir.path().join("kbs/resources/default/key/k1")).exists());

    // Bad policies and reference values are refused with the reason.
    let e = env
        .admin()
        .set_attestation_policy("package cloister.attestation\nallow if {")
        .await
        .unwrap_err();
    let AdminError::Refused(p) = e else {
        panic!("{e}")
    };
    assert_eq!(p.problem_type, format!("{PREFIX}invalid-policy"));
    assert!(
        p.detail.starts_with("attestation policy: does not compile"),
        "{}",
        p.detail
    );
    let e = env
        .admin()
        .set_reference_values(r#"{"measurment": "aa"}"#)
        .await
        .unwrap_err();
    let AdminError::Refused(p) = e else {
        panic!("{e}")
    };
    assert_eq!(p.problem_type, format!("{PREFIX}invalid-reference-values"));
    assert!(
        p.detail.contains("unknown field `measurment`"),
        "{}",
        p.detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_kbs_releases_nothing() {
    let env = Env::new(true, Duration::from_secs(300));
    let e = env.client().attest_once().await.unwrap_err();
    let p = refused(&e, "attestation-policy-denied");
    assert_eq!(
        p.detail,
        "attestation policy denied: no reference measurement is configured (admin API: PUT /admin/v0/reference-values)"
    );
}

/// Fast, bounded retries for the fault tests.
fn quick_retries(env: &Env, attempts: u32) -> cloister_kbs_client::KbsClientConfig {
    let mut c = env.client_config();
    c.retry.attempts = attempts;
    c.retry.initial_backoff = Duration::from_millis(20);
    c.retry.max_backoff = Duration::from_millis(40);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kbs_that_is_down_is_retried_then_named_with_the_step() {
    let mut env = Env::new(true, Duration::from_secs(300));
    let config = quick_retries(&env, 3);
    let url = config.url.clone();
    let addr = env.kbs.as_ref().unwrap().addr;
    env.kbs.take().unwrap().shutdown().await;
    // Something on the port that takes each connection and drops it, as a
    // KBS does while it restarts; it counts the tries.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let tries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = tries.clone();
    let dropper = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            drop(conn);
        }
    });
    let mut client = env.client_with(config);
    let e = client
        .get_resource("default", "key", "k1")
        .await
        .unwrap_err();
    dropper.abort();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    assert!(text.starts_with("auth: "), "{text}");
    assert!(text.contains(&format!("{url}/kbs/v0/auth")), "{text}");
    assert_eq!(
        tries.load(std::sync::atomic::Ordering::Relaxed),
        3,
        "bounded retries: {text}"
    );
}

/// An attester that, the first time it is asked for evidence (between the
/// challenge and the attestation), has the test restart the KBS.
struct RestartMidway {
    inner: cloister_kbs_client::SimAttester,
    restart:
        std::sync::Mutex<Option<tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<()>>>>,
}

#[async_trait::async_trait]
impl cloister_kbs_client::Attester for RestartMidway {
    fn tee(&self) -> kbs_types::Tee {
        self.inner.tee()
    }
    async fn evidence(
        &self,
        report_data: [u8; 64],
    ) -> Result<serde_json::Value, cloister_kbs_client::attester::AttesterError> {
        let tx = self.restart.lock().unwrap().take();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            tx.send(done_tx).unwrap();
            done_rx.await.unwrap();
        }
        self.inner.evidence(report_data).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kbs_restart_mid_attestation_is_survived_by_attesting_again() {
    let mut env = Env::new(true, Duration::from_secs(300));
    env.good_reference().await;
    env.admin()
        .set_resource("default/key/k1", b"after the restart")
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let attester = RestartMidway {
        inner: cloister_kbs_client::SimAttester::new(cloister_kbs_client::UnixTransport(
            env.dir.path().join("vsock.sock_1025"),
        )),
        restart: std::sync::Mutex::new(Some(tx)),
    };
    let mut client =
        cloister_kbs_client::KbsClient::new(quick_retries(&env, 3), Box::new(attester)).unwrap();
    let fetch = tokio::spawn(async move { client.get_resource("default", "key", "k1").await });
    // The client holds a challenge now; the KBS forgets it.
    let done: tokio::sync::oneshot::Sender<()> = rx.await.unwrap();
    env.restart().await;
    done.send(()).unwrap();
    let got = fetch.await.unwrap().unwrap();
    assert_eq!(got, b"after the restart");
}
