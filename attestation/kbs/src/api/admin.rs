//! The admin API, on its own listener: set resources, the attestation and
//! resource policies, and the reference values. Every request must carry
//! `Authorization: Bearer <admin token>` (the token given to the KBS at start).
//!
//! | method | path                                        | body                          |
//! |--------|---------------------------------------------|-------------------------------|
//! | PUT    | /admin/v0/resource/<repository>/<type>/<tag> | the resource bytes            |
//! | PUT    | /admin/v0/attestation-policy                | Rego, package cloister.attestation |
//! | PUT    | /admin/v0/resource-policy                   | Rego, package cloister.resource |
//! | PUT    | /admin/v0/reference-values                  | JSON (cloister_evidence::ReferenceValues) |
//! | GET    | the three above                             | returns what is in force      |
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;
use cloister_evidence::ReferenceValues;

use super::bearer;
use crate::policy::{Policy, PolicyKind};
use crate::problem::Problem;
use crate::store::{self, ResourcePath};
use crate::Kbs;

/// Routes of the admin listener.
pub fn router(kbs: Arc<Kbs>) -> Router {
    Router::new()
        .route(
            "/admin/v0/resource/{repository}/{kind}/{tag}",
            put(put_resource),
        )
        .route(
            "/admin/v0/attestation-policy",
            put(put_attestation_policy).get(get_attestation_policy),
        )
        .route(
            "/admin/v0/resource-policy",
            put(put_resource_policy).get(get_resource_policy),
        )
        .route(
            "/admin/v0/reference-values",
            put(put_reference).get(get_reference),
        )
        .layer(middleware::from_fn_with_state(kbs.clone(), authenticate))
        .with_state(kbs)
}

async fn authenticate(
    State(kbs): State<Arc<Kbs>>,
    req: Request,
    next: Next,
) -> Result<Response, Problem> {
    match bearer(req.headers()) {
        None => Err(Problem::unauthorized(
            "admin-unauthenticated",
            "admin API: no admin token (expected header Authorization: Bearer <admin token>)",
        )),
        Some(t) if !kbs.admin_token_matches(&t) => Err(Problem::unauthorized(
            "admin-token-mismatch",
            "admin API: the bearer token is not the configured admin token",
        )),
        Some(_) => Ok(next.run(req).await),
    }
}

fn stored(e: store::StoreError) -> Problem {
    Problem::internal(e.to_string())
}

async fn put_resource(
    State(kbs): State<Arc<Kbs>>,
    Path((repository, kind, tag)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<StatusCode, Problem> {
    let path = ResourcePath::new(&repository, &kind, &tag).map_err(Problem::bad_request)?;
    kbs.store.set_resource(&path, &body).map_err(stored)?;
    tracing::info!(resource = %path, bytes = body.len(), "admin: resource set");
    Ok(StatusCode::NO_CONTENT)
}

fn set_policy(kbs: &Kbs, kind: PolicyKind, body: &[u8]) -> Result<StatusCode, Problem> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Problem::bad_request(format!("{}: not UTF-8", kind.name())))?;
    let policy = Policy::compile(kind, text).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-policy",
            "Invalid policy",
            e.to_string(),
        )
    })?;
    let (file, lock) = match kind {
        PolicyKind::Attestation => (store::ATTESTATION_POLICY, &kbs.attestation_policy),
        PolicyKind::Resource => (store::RESOURCE_POLICY, &kbs.resource_policy),
    };
    kbs.store.set(file, body).map_err(stored)?;
    *lock.write().unwrap_or_else(|p| p.into_inner()) = policy;
    tracing::info!(policy = kind.name(), "admin: policy set");
    Ok(StatusCode::NO_CONTENT)
}

async fn put_attestation_policy(
    State(kbs): State<Arc<Kbs>>,
    body: Bytes,
) -> Result<StatusCode, Problem> {
    set_policy(&kbs, PolicyKind::Attestation, &body)
}

async fn put_resource_policy(
    State(kbs): State<Arc<Kbs>>,
    body: Bytes,
) -> Result<StatusCode, Problem> {
    set_policy(&kbs, PolicyKind::Resource, &body)
}

async fn get_attestation_policy(State(kbs): State<Arc<Kbs>>) -> String {
    kbs.policy(PolicyKind::Attestation).source().to_string()
}

async fn get_resource_policy(State(kbs): State<Arc<Kbs>>) -> String {
    kbs.policy(PolicyKind::Resource).source().to_string()
}

async fn put_reference(State(kbs): State<Arc<Kbs>>, body: Bytes) -> Result<StatusCode, Problem> {
    let text = String::from_utf8_lossy(&body);
    let rv = ReferenceValues::from_json(&text).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-reference-values",
            "Invalid reference values",
            e.to_string(),
        )
    })?;
    let canonical = serde_json::to_vec_pretty(&rv).map_err(|e| Problem::internal(e.to_string()))?;
    kbs.store
        .set(store::REFERENCE_VALUES, &canonical)
        .map_err(stored)?;
    *kbs.reference.write().unwrap_or_else(|p| p.into_inner()) = rv;
    tracing::info!("admin: reference values set");
    Ok(StatusCode::NO_CONTENT)
}

async fn get_reference(State(kbs): State<Arc<Kbs>>) -> Response {
    axum::Json(kbs.reference()).into_response()
}
