//! GET /kbs/v0/resource/<repository>/<type>/<tag>: release a resource to an
//! attested TEE (session cookie or attestation token), if the resource policy
//! allows, encrypted to the TEE key as a JWE.
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::rcar::session_problem;
use super::{bearer, session_cookie, SESSION_COOKIE};
use crate::policy::PolicyKind;
use crate::problem::Problem;
use crate::session::Stage;
use crate::store::ResourcePath;
use crate::token::TokenClaims;
use crate::{jwe, Kbs};

/// Who is asking: the claims of their attestation.
fn caller(kbs: &Kbs, headers: &HeaderMap) -> Result<TokenClaims, Problem> {
    if let Some(id) = session_cookie(headers) {
        let session = kbs.sessions.get(&id).map_err(|e| session_problem(e, &id))?;
        return match session.stage {
            Stage::Attested { claims, .. } => Ok(*claims),
            _ => Err(Problem::unauthorized(
                "session-not-attested",
                format!(
                    "session {SESSION_COOKIE}={id} has not attested (POST /kbs/v0/attest first)"
                ),
            )),
        };
    }
    if let Some(token) = bearer(headers) {
        return kbs.tokens.verify(&token).map_err(|e| {
            Problem::unauthorized("token-invalid", format!("attestation token: {e}"))
        });
    }
    Err(Problem::unauthorized(
        "unauthenticated",
        format!("no attested session ({SESSION_COOKIE} cookie) and no attestation token (Authorization: Bearer)"),
    ))
}

pub async fn get_resource(
    State(kbs): State<Arc<Kbs>>,
    Path((repository, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let claims = caller(&kbs, &headers)?;
    let path = ResourcePath::new(&repository, &kind, &tag).map_err(Problem::bad_request)?;
    let decision = kbs
        .policy(PolicyKind::Resource)
        .evaluate(&json!({"tee": claims.tee, "claims": claims.claims, "resource": path}))
        .map_err(|e| Problem::internal(e.to_string()))?;
    if !decision.allow {
        let why = if decision.reasons.is_empty() {
            "data.cloister.resource.allow is false".to_string()
        } else {
            decision.reasons.join("; ")
        };
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "resource-policy-denied",
            "Forbidden",
            format!("resource policy denied {path}: {why}"),
        ));
    }
    let body = kbs
        .store
        .get_resource(&path)
        .map_err(|e| Problem::internal(e.to_string()))?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "resource-not-found",
                "Not found",
                format!("resource {path}: not found"),
            )
        })?;
    let jwe = jwe::encrypt(&claims.tee_pubkey, &body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "tee-pubkey-unsupported",
            "Bad TEE key",
            e,
        )
    })?;
    tracing::info!(resource = %path, tee = %claims.tee, "resource released");
    Ok((StatusCode::OK, axum::Json(jwe)).into_response())
}
