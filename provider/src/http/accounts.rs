//! The enrollment handler of the public API: `POST /v1/accounts` enrolls
//! an ed25519 public key, signed by its own key (`docs/API.md`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use tracing::info;

use super::error::error;
use super::public::PublicState;
use super::signed::{account_and_signature, stale, MAX_REQUEST_SKEW_MS};
use sharecall_proto::clock::now_ms;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    account: String,
    /// The provider this enrollment is for (0..=2), signed.
    provider: u8,
    timestamp_ms: u64,
    /// 16..=64 fresh random bytes, hex, signed; refused when seen again.
    nonce: String,
    signature: String,
    #[serde(default)]
    token: Option<String>,
}

/// `POST /v1/accounts`: enroll an ed25519 public key.
pub async fn enroll(State(s): State<Arc<PublicState>>, body: Bytes) -> Response {
    let req: EnrollRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
    };
    let (account, signature) = match account_and_signature(&req.account, &req.signature) {
        Ok(both) => both,
        Err(refusal) => return refusal,
    };
    use sharecall_proto::request::{ENROLL_NONCE_MAX, ENROLL_NONCE_MIN};
    let nonce = match hex::decode(&req.nonce) {
        Ok(n) if (ENROLL_NONCE_MIN..=ENROLL_NONCE_MAX).contains(&n.len()) => n,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_nonce",
                format!("nonce must be {ENROLL_NONCE_MIN} to {ENROLL_NONCE_MAX} random bytes, hex"),
            )
        }
    };
    if req.provider != s.me {
        return error(
            StatusCode::FORBIDDEN,
            "wrong_provider",
            format!(
                "this enrollment is signed for provider {}, this is provider {}",
                req.provider, s.me
            ),
        );
    }
    let message = sharecall_proto::request::enroll_message(
        req.provider,
        &account,
        req.timestamp_ms,
        &nonce,
        req.token.as_deref(),
    );
    if !s.accounts.verify(&account, &message, &signature) {
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the enrollment signature does not verify for this account",
        );
    }
    if let Some(refusal) = stale("enrollment", req.timestamp_ms) {
        return refusal;
    }
    let db = s.sequencer.store().database();
    use crate::accounts::EnrollError;
    match s.accounts.enroll(
        db,
        &account,
        req.token.as_deref(),
        &nonce,
        req.timestamp_ms,
        MAX_REQUEST_SKEW_MS,
        now_ms(),
    ) {
        Ok(true) => {
            info!(account = %req.account, "account enrolled");
            (
                StatusCode::CREATED,
                Json(json!({"account": req.account, "enrolled": true})),
            )
                .into_response()
        }
        Ok(false) => Json(json!({"account": req.account, "enrolled": true})).into_response(),
        Err(EnrollError::Closed) => error(
            StatusCode::FORBIDDEN,
            "enrollment_closed",
            "this provider takes no new accounts",
        ),
        Err(EnrollError::BadToken) => error(
            StatusCode::FORBIDDEN,
            "bad_token",
            "enrollment at this provider needs a valid token",
        ),
        Err(EnrollError::TokenUsedUp) => error(
            StatusCode::FORBIDDEN,
            "token_used_up",
            "this enrollment token has enrolled as many accounts as it may",
        ),
        Err(EnrollError::Replayed) => error(
            StatusCode::UNAUTHORIZED,
            "replayed_enrollment",
            "this enrollment nonce was seen before; sign a new enrollment",
        ),
        Err(EnrollError::Busy) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "enrollment_busy",
            "too many enrollments at once; try again in a minute",
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}
