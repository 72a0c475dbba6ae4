//! The admin HTTP endpoint: peer directory, job submission, metrics.
//!
//! - `GET /v1/admin/peers`: this provider's link state and its view of the
//!   other two (health from heartbeats);
//! - `POST /v1/admin/jobs`: run a task (`{"kind": "secure-sum", "params":
//!   {...}, "purpose": "..."}`) through the orchestration core;
//! - `GET /metrics`: Prometheus/OpenMetrics text.
//!
//! Errors are JSON: `{"error": {"code": ..., "message": ...}}`. The
//! endpoint binds to loopback by default: it is for the operator.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sharecall_proto::control::Status;

use crate::directory::Directory;
use crate::metrics::Metrics;
use crate::orchestration::status::status_name;
use crate::orchestration::{Gateway, JobError, LinkManager, TaskKind};
use crate::sequencer::applied;
use crate::sequencer::Sequencer;
use sharecall_proto::sequencer::RequestRecord;

/// Largest accepted request body.
const MAX_BODY: usize = 64 * 1024;

/// What the admin handlers share.
pub struct AdminState {
    /// This provider's id.
    pub me: u8,
    /// Changes at every process start.
    pub incarnation: u64,
    /// Runs jobs.
    pub gateway: Arc<Gateway>,
    /// Peer health.
    pub directory: Arc<Directory>,
    /// The SMC link.
    pub link: Arc<LinkManager>,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// The raft sequencer.
    pub sequencer: Sequencer,
}

/// The admin routes.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/v1/admin/peers", get(peers))
        .route("/v1/admin/jobs", post(submit_job))
        .route("/metrics", get(metrics))
        .route("/v1/admin/raft", get(raft_status))
        .route("/v1/requests", post(submit_part))
        .route("/v1/requests/:id", get(request_outcome))
        .route("/v1/admin/sequence", post(sequence).get(applied))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// A JSON error response.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn peers(State(s): State<Arc<AdminState>>) -> Response {
    let (epoch, healthy) = s.link.state();
    Json(json!({
        "me": s.me,
        "incarnation": s.incarnation,
        "link": {"epoch": epoch, "healthy": healthy},
        "peers": s.directory.snapshot(Instant::now()),
    }))
    .into_response()
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    let r = s.sequencer.status();
    s.metrics.raft(r.term, r.commit, r.applied, r.leader);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        s.metrics.encode(),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobRequest {
    kind: String,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    purpose: Option<String>,
}

async fn submit_job(State(s): State<Arc<AdminState>>, body: Bytes) -> Response {
    let req: JobRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
    };
    let kind: TaskKind = match req.kind.parse() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, "unknown_kind", e.to_string()),
    };
    let params = match &req.params {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => v.to_string().into_bytes(),
    };
    if let Err(e) = crate::orchestration::computation::validate(kind, &params) {
        return error(StatusCode::BAD_REQUEST, "bad_params", e.to_string());
    }
    let purpose = req.purpose.unwrap_or_else(|| "admin request".into());
    match s.gateway.run(kind, &params, &purpose).await {
        Ok(report) => {
            let output: Value = if report.output.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&report.output).unwrap_or(Value::Null)
            };
            Json(json!({
                "job_id": report.job_id,
                "kind": report.kind,
                "output": output,
                "phases": report.phases,
                "relinked": report.relinked,
                "total_us": report.total_us,
            }))
            .into_response()
        }
        Err(e) => job_error(&e),
    }
}

fn job_error(e: &JobError) -> Response {
    if e.is_busy() {
        let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "busy", e.detail.clone());
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let status = match e.status {
        Status::Denied => StatusCode::FORBIDDEN,
        Status::BadRequest | Status::UnknownCmd => StatusCode::BAD_REQUEST,
        Status::Timeout | Status::StreamErr | Status::LinkFailed => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    (
        status,
        Json(json!({"error": {
            "code": status_name(e.status),
            "message": e.to_string(),
            "job_id": e.job_id,
            "phase": e.phase,
            "peer": e.peer,
            "class": e.class,
        }})),
    )
        .into_response()
}

async fn raft_status(State(s): State<Arc<AdminState>>) -> Response {
    Json(s.sequencer.status()).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SequenceRequest {
    request_id: String,
    #[serde(default)]
    kind: Option<String>,
}

/// Longest accepted request id.
const MAX_REQUEST_ID: usize = 128;

/// The 400 answer for an invalid request id, if it is invalid.
fn bad_request_id(id: &str) -> Option<Response> {
    (id.is_empty() || id.len() > MAX_REQUEST_ID).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request_id",
            format!("request_id must be 1..={MAX_REQUEST_ID} bytes"),
        )
    })
}

/// Orders a request through raft and answers with its sequence number once
/// it is applied here (the same number at every provider).
async fn sequence(State(s): State<Arc<AdminState>>, body: Bytes) -> Response {
    let req: SequenceRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
    };
    if let Some(r) = bad_request_id(&req.request_id) {
        return r;
    }
    let record = RequestRecord {
        request_id: req.request_id.clone(),
        kind: req.kind.unwrap_or_else(|| "admin".into()),
        origin: u32::from(s.me),
        proposed_at_ms: crate::orchestration::task::now_ms(),
    };
    match s
        .sequencer
        .submit(record, std::time::Duration::from_secs(15))
        .await
    {
        Ok(seq) => Json(json!({"request_id": req.request_id, "seq": seq})).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ordered",
            e.to_string(),
        ),
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default = "first")]
    from: u64,
    #[serde(default = "page")]
    limit: u64,
}

fn first() -> u64 {
    1
}

fn page() -> u64 {
    1000
}

/// Applied request ids in order, from sequence number `from`.
async fn applied(
    State(s): State<Arc<AdminState>>,
    axum::extract::Query(p): axum::extract::Query<Page>,
) -> Response {
    let db = s.sequencer.store().database();
    match applied::range(db, p.from.max(1), p.limit.min(100_000)) {
        Ok(ids) => Json(json!({"from": p.from.max(1), "ids": ids})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartRequest {
    request_id: String,
    kind: String,
    /// How long the providers wait for all parts (100 ms to 10 min).
    window_ms: u64,
    /// The account's ed25519 public key, hex.
    account: String,
    /// Client clock (ms since the Unix epoch), signed.
    timestamp_ms: u64,
    /// blake3 of each provider's part, hex, in provider order.
    part_hashes: Vec<String>,
    /// ed25519 signature over `sharecall_proto::request::SignedFields`, hex.
    signature: String,
    /// This provider's part, hex.
    part: String,
}

/// Largest accepted distance between a request's timestamp and our clock.
const MAX_REQUEST_SKEW_MS: u64 = 5 * 60 * 1000;
/// Largest accepted part (decoded).
const MAX_PART: usize = 64 * 1024;

fn outcome_response(id: &str, o: &crate::sequencer::lifecycle::Outcome) -> Response {
    use crate::sequencer::lifecycle::Outcome;
    match o {
        Outcome::Executed { seq } => {
            Json(json!({"request_id": id, "status": "executed", "seq": seq})).into_response()
        }
        Outcome::Aborted { reason } => (
            StatusCode::CONFLICT,
            Json(json!({"error": {"code": "aborted", "message": format!("request {id} was aborted: {reason}"), "request_id": id}})),
        )
            .into_response(),
    }
}

/// One provider's part of a client request: verified against its hash,
/// stored durably, then logged as ready; answers with the request's logged
/// outcome (executed with its sequence number, or aborted and why).
async fn submit_part(State(s): State<Arc<AdminState>>, body: Bytes) -> Response {
    let req: PartRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
    };
    if let Some(r) = bad_request_id(&req.request_id) {
        return r;
    }
    if req.kind.is_empty() || req.kind.len() > 64 {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_kind",
            "kind must be 1..=64 bytes",
        );
    }
    let window_ms = req.window_ms;
    if !(100..=600_000).contains(&window_ms) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_window",
            "window_ms must be 100..=600000",
        );
    }
    let mut hashes = Vec::with_capacity(3);
    for h in &req.part_hashes {
        let mut out = [0u8; 32];
        if hex::decode_to_slice(h, &mut out).is_err() {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_part_hash",
                "part_hashes must be three 64-digit hex blake3 hashes",
            );
        }
        hashes.push(out);
    }
    if hashes.len() != 3 {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_part_hash",
            "part_hashes must be three 64-digit hex blake3 hashes",
        );
    }
    let hashes: [[u8; 32]; 3] = [hashes[0], hashes[1], hashes[2]];
    let mut account = [0u8; 32];
    if hex::decode_to_slice(&req.account, &mut account).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_account",
            "account must be a 64-digit hex ed25519 public key",
        );
    }
    let mut signature = [0u8; 64];
    if hex::decode_to_slice(&req.signature, &mut signature).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_signature",
            "signature must be 128 hex digits",
        );
    }
    let signed = sharecall_proto::request::SignedFields {
        request_id: &req.request_id,
        kind: &req.kind,
        account: &account,
        timestamp_ms: req.timestamp_ms,
        window_ms,
        part_hashes: &hashes,
    }
    .message();
    let verified = ed25519_dalek::VerifyingKey::from_bytes(&account).and_then(|key| {
        key.verify_strict(&signed, &ed25519_dalek::Signature::from_bytes(&signature))
    });
    if verified.is_err() {
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the request signature does not verify for this account",
        );
    }
    let skew = crate::orchestration::task::now_ms().abs_diff(req.timestamp_ms);
    if skew > MAX_REQUEST_SKEW_MS {
        return error(
            StatusCode::UNAUTHORIZED,
            "stale_timestamp",
            format!("request timestamp is {skew} ms away from this provider's clock"),
        );
    }
    let part = match hex::decode(&req.part) {
        Ok(p) if p.len() <= MAX_PART => p,
        Ok(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "part_too_large",
                format!("a part is at most {MAX_PART} bytes"),
            )
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "bad_part", "part must be hex"),
    };
    if *blake3::hash(&part).as_bytes() != hashes[usize::from(s.me)] {
        return error(
            StatusCode::BAD_REQUEST,
            "part_hash_mismatch",
            format!("this part does not match part_hashes[{}]", s.me),
        );
    }
    // A duplicate id is answered from its record, never executed twice.
    let db = s.sequencer.store().database();
    match crate::sequencer::lifecycle::outcome(db, &req.request_id) {
        Ok(Some(o)) => return outcome_response(&req.request_id, &o),
        Ok(None) => {}
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
    let store = s.sequencer.store().clone();
    let id = req.request_id.clone();
    let stored =
        tokio::task::spawn_blocking(move || store_part(store.database(), &id, &part)).await;
    match stored {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
    // All three providers must have verified the same signed request.
    let all = blake3::hash(&signed);
    let ready = sharecall_proto::sequencer::PartReady {
        request_id: req.request_id.clone(),
        provider: u32::from(s.me),
        kind: req.kind,
        parts_hash: all.as_bytes().to_vec().into(),
        window_ms,
        at_ms: crate::orchestration::task::now_ms(),
    };
    match s
        .sequencer
        .part_ready(ready, std::time::Duration::from_secs(5))
        .await
    {
        Ok(o) => outcome_response(&req.request_id, &o),
        Err(e) => error(StatusCode::GATEWAY_TIMEOUT, "not_ordered", e.to_string()),
    }
}

const PARTS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("request_parts");

/// Stores a part durably (fsync'd on commit) before it is logged as ready.
fn store_part(db: &redb::Database, id: &str, part: &[u8]) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(PARTS).map_err(|e| e.to_string())?;
        table.insert(id, part).map_err(|e| e.to_string())?;
    }
    txn.commit().map_err(|e| e.to_string())
}

async fn request_outcome(
    State(s): State<Arc<AdminState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    match crate::sequencer::lifecycle::outcome(s.sequencer.store().database(), &id) {
        Ok(Some(o)) => outcome_response(&id, &o),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown_request",
            format!("no outcome recorded for request {id}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}
