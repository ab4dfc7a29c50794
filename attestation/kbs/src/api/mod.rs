//! The HTTP routes: [`rcar`] (auth and attest), [`resource`] (resource release)
//! on the attestation listener, and [`admin`] on the admin listener.
pub mod admin;
pub mod rcar;
pub mod resource;

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;

use crate::Kbs;

/// The session cookie's name (Trustee's).
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// Routes of the attestation listener.
pub fn router(kbs: Arc<Kbs>) -> Router {
    Router::new()
        .route("/kbs/v0/auth", post(rcar::auth))
        .route("/kbs/v0/attest", post(rcar::attest))
        .route(
            "/kbs/v0/resource/{repository}/{kind}/{tag}",
            get(resource::get_resource),
        )
        .with_state(kbs)
}

/// The value of the session cookie, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim().to_string())
}

/// The bearer token of an `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}
