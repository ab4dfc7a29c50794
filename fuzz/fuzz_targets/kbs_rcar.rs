//! The KBS's RCAR request bodies through its real HTTP routes (axum router,
//! in process): the input is first POSTed as a `/kbs/v0/auth` body; then a
//! valid auth for the TEE the first byte names opens a session, and the
//! input is POSTed as that session's `/kbs/v0/attest` body, and again as a
//! replay on the spent session.
#![no_main]
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use cloister_kbs::{Kbs, KbsConfig};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Env {
    rt: tokio::runtime::Runtime,
    router: Router,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cloister-fuzz-kbs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let chip = cloister_sim_chip::SimChip::load_or_create(&dir.join("sim"))
            .expect("creating the sim chip's keys");
        let mut config = KbsConfig::new(dir.join("kbs"), "fuzz-admin-token-0123456789".into());
        config.sim_ark = Some(chip.ca().ark_pem().as_bytes().to_vec());
        // Sim evidence gets past the first check to the parsing and chain
        // checks behind it (it still needs a valid signature to pass).
        config.allow_sim = true;
        // Every input opens a session: short lives keep the fuzzer's
        // memory flat (expired sessions are purged as new ones come).
        config.nonce_ttl = std::time::Duration::from_secs(2);
        config.session_ttl = std::time::Duration::from_secs(2);
        let kbs: Arc<Kbs> = Kbs::open(&config).expect("opening the KBS state");
        Env {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            router: cloister_kbs::api::router(kbs),
        }
    })
}

async fn post(router: &Router, path: &str, cookie: Option<&str>, body: Vec<u8>) -> (StatusCode, Option<String>) {
    let mut req = Request::post(path).header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .expect("the router is infallible");
    let status = resp.status();
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_string);
    let _ = resp.into_body().collect().await;
    (status, cookie)
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let env = env();
    env.rt.block_on(async {
        let r = &env.router;
        post(r, "/kbs/v0/auth", None, body.to_vec()).await;
        let tee = ["snp", "tdx", "sample"][usize::from(choice % 3)];
        let auth = format!(r#"{{"version":"0.4.0","tee":"{tee}","extra-params":""}}"#);
        let (status, cookie) = post(r, "/kbs/v0/auth", None, auth.into_bytes()).await;
        assert_eq!(status, StatusCode::OK, "a valid auth is refused");
        let cookie = cookie.expect("auth sets the session cookie");
        let (first, _) = post(r, "/kbs/v0/attest", Some(&cookie), body.to_vec()).await;
        // Nothing the fuzzer can make is valid evidence for a fresh nonce.
        assert_ne!(first, StatusCode::OK, "attest accepted fuzzed evidence");
        let (again, _) = post(r, "/kbs/v0/attest", Some(&cookie), body.to_vec()).await;
        assert_ne!(again, StatusCode::OK, "a spent session attested");
    });
});
