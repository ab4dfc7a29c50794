//! `/kbs/v0/auth` and `/kbs/v0/attest`: the Request-Challenge-Attestation steps.
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cloister_evidence::time::format_rfc3339;
use cloister_evidence::{Hex, VerifiedClaims, VerifyOptions};
use kbs_types::{Attestation, Challenge, Request};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{session_cookie, SESSION_COOKIE};
use crate::binding::expected_report_data;
use crate::evidence::{format_for, OwnedEvidence};
use crate::policy::PolicyKind;
use crate::problem::Problem;
use crate::session::{SessionError, Stage};
use crate::token::{now_secs, TokenClaims, ISSUER};
use crate::Kbs;

fn set_cookie(kbs: &Kbs, id: &str) -> HeaderValue {
    let v = format!(
        "{SESSION_COOKIE}={id}; Path=/kbs; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        kbs.sessions.session_ttl.as_secs()
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn json_response(
    status: StatusCode,
    body: &impl serde::Serialize,
    cookie: Option<HeaderValue>,
) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(c) = cookie {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// The session lookup's refusal.
pub fn session_problem(e: SessionError, id: &str) -> Problem {
    match e {
        SessionError::Unknown => Problem::unauthorized(
            "session-unknown",
            format!(
                "session: no live session {SESSION_COOKIE}={id} (POST /kbs/v0/auth to start one)"
            ),
        ),
        SessionError::Expired { at } => Problem::unauthorized(
            "session-expired",
            format!(
                "session expired: valid until {}, now {}",
                format_rfc3339(at),
                format_rfc3339(SystemTime::now())
            ),
        )
        .compared(
            "session",
            format!("before {}", format_rfc3339(at)),
            format_rfc3339(SystemTime::now()),
        ),
        SessionError::Full { live } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-sessions",
            "Too many sessions",
            format!(
                "auth: {live} sessions are alive, the most this KBS keeps; try again when some expire"
            ),
        ),
    }
}

/// POST /kbs/v0/auth: a nonce for the named TEE, and a session cookie.
pub async fn auth(State(kbs): State<Arc<Kbs>>, body: Bytes) -> Result<Response, Problem> {
    let req: Request = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("auth: body is not a KBS Request: {e}")))?;
    if format_for(req.tee).is_none() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "unsupported-tee",
            "Unsupported TEE",
            format!(
                "tee: expected one of snp, tdx, sample (cloister sim), got {}",
                req.tee
            ),
        )
        .compared("tee", "snp, tdx or sample", req.tee.to_string()));
    }
    let (id, nonce) = kbs
        .sessions
        .challenge(req.tee)
        .map_err(|e| session_problem(e, ""))?;
    tracing::debug!(session = %id, tee = %req.tee, version = %req.version, "auth: challenge issued");
    let challenge = Challenge {
        nonce,
        extra_params: json!({"selected-hash-algorithm": "sha384"}),
    };
    Ok(json_response(
        StatusCode::OK,
        &challenge,
        Some(set_cookie(&kbs, &id)),
    ))
}

/// POST /kbs/v0/attest: verify, bind, evaluate, and issue a token.
pub async fn attest(
    State(kbs): State<Arc<Kbs>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let id = session_cookie(&headers).ok_or_else(|| {
        Problem::unauthorized(
            "session-missing",
            format!("session: no {SESSION_COOKIE} cookie (POST /kbs/v0/auth first)"),
        )
    })?;
    let stage = kbs
        .sessions
        .take_for_attest(&id)
        .map_err(|e| session_problem(e, &id))?;
    let (tee, nonce, nonce_expires, nonce_expires_at) = match stage {
        Stage::Challenged {
            tee,
            nonce,
            nonce_expires,
            nonce_expires_at,
        } => (tee, nonce, nonce_expires, nonce_expires_at),
        Stage::Spent | Stage::Attested { .. } => {
            return Err(Problem::unauthorized(
                "nonce-used",
                "nonce already used: each /kbs/v0/auth nonce is good for one /kbs/v0/attest (POST /kbs/v0/auth again)",
            ))
        }
    };
    if Instant::now() > nonce_expires {
        return Err(Problem::unauthorized(
            "nonce-expired",
            format!(
                "nonce expired: valid until {}, now {}",
                format_rfc3339(nonce_expires_at),
                format_rfc3339(SystemTime::now())
            ),
        )
        .compared(
            "nonce",
            format!("before {}", format_rfc3339(nonce_expires_at)),
            format_rfc3339(SystemTime::now()),
        ));
    }
    let att: Attestation = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("attest: body is not a KBS Attestation: {e}")))?;
    if att.runtime_data.nonce != nonce {
        return Err(Problem::unauthorized(
            "nonce-mismatch",
            format!(
                "nonce mismatch: expected {nonce}, got {}",
                att.runtime_data.nonce
            ),
        )
        .compared("nonce", nonce.clone(), att.runtime_data.nonce.clone()));
    }
    let format = format_for(tee)
        .ok_or_else(|| Problem::bad_request(format!("tee {tee} is not supported")))?;
    let evidence = OwnedEvidence::from_json(format, att.tee_evidence.primary_evidence.clone())
        .map_err(Problem::bad_request)?;
    let report_data = expected_report_data(
        &nonce,
        &att.runtime_data.tee_pubkey,
        &att.tee_evidence.additional_evidence,
    )
    .map_err(Problem::bad_request)?;

    let reference = kbs.reference();
    let mut opts = VerifyOptions {
        reference: reference.clone(),
        allow_sim: kbs.allow_sim,
        sim_ark: kbs.sim_ark.clone(),
        ..VerifyOptions::default()
    };
    opts.reference.report_data = Some(Hex(report_data.to_vec()));
    let verified = tokio::task::spawn_blocking(move || {
        cloister_evidence::verify(&evidence.as_evidence(), &opts)
    })
    .await
    .map_err(|e| Problem::internal(format!("verifier task: {e}")))?
    .map_err(|rejected| {
        tracing::info!(session = %id, tee = %tee, error = %rejected, "evidence rejected");
        Problem::from_verify_error(&rejected.error)
    })?;

    let claims =
        serde_json::to_value(&verified.claims).map_err(|e| Problem::internal(e.to_string()))?;
    let tee_name = claims["tee"].as_str().unwrap_or("unknown").to_string();
    if let Some(init) = &att.init_data {
        check_init_data(&verified.claims, &init.body)?;
    }

    let decision = kbs
        .policy(PolicyKind::Attestation)
        .evaluate(&json!({
            "tee": tee_name,
            "claims": claims,
            "init_data": att.init_data.as_ref().map(|i| &i.body),
            "reference": reference,
        }))
        .map_err(|e| Problem::internal(e.to_string()))?;
    if !decision.allow {
        let why = if decision.reasons.is_empty() {
            "data.cloister.attestation.allow is false".to_string()
        } else {
            decision.reasons.join("; ")
        };
        return Err(Problem::unauthorized(
            "attestation-policy-denied",
            format!("attestation policy denied: {why}"),
        ));
    }

    let now = now_secs();
    let token_claims = TokenClaims {
        iss: ISSUER.into(),
        iat: now,
        exp: now + kbs.sessions.session_ttl.as_secs(),
        tee: tee_name.clone(),
        claims,
        tee_pubkey: att.runtime_data.tee_pubkey.clone(),
    };
    let token = kbs
        .tokens
        .issue(&token_claims)
        .map_err(|e| Problem::internal(e.to_string()))?;
    kbs.sessions.attested(&id, token.clone(), token_claims);
    tracing::info!(session = %id, tee = %tee_name, "attested");
    Ok(json_response(
        StatusCode::OK,
        &json!({"token": token}),
        Some(set_cookie(&kbs, &id)),
    ))
}

/// The init data sent with the attestation must be what HOST_DATA (SNP, sim) or
/// MRCONFIGID (TDX) measured: sha256(body), zero-padded to the field.
fn check_init_data(claims: &VerifiedClaims, body: &str) -> Result<(), Problem> {
    let field = match claims {
        VerifiedClaims::Snp(c) => &c.host_data,
        VerifiedClaims::Sim(c) => &c.host_data,
        VerifiedClaims::Tdx(c) => &c.mr_config_id,
        _ => {
            return Err(Problem::bad_request(
                "init_data: not supported for this TEE",
            ))
        }
    };
    let want = hex::encode(Sha256::digest(body.as_bytes()));
    let padded = format!("{want:0<width$}", width = field.len());
    if *field != padded {
        return Err(Problem::unauthorized(
            "initdata-mismatch",
            format!("initdata mismatch: expected HOST_DATA {padded} (sha256 of the init_data sent), got {field}"),
        )
        .compared("init_data", padded, field.clone()));
    }
    Ok(())
}
