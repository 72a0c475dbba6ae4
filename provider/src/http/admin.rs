//! The admin router (`listen.admin`): the operator's endpoint.
//!
//! - `GET /v1/admin/peers`: this provider's link state and its view of the
//!   other two (health from heartbeats);
//! - `POST /v1/admin/jobs`: run a task (`{"kind": "secure-sum", "params":
//!   {...}, "purpose": "..."}`) through the orchestration core;
//! - `GET /metrics`: Prometheus/OpenMetrics text;
//! - `GET /v1/admin/raft`, `GET /v1/admin/table`: raft and table status;
//! - `POST /v1/admin/sequence` (order a request id through raft) and
//!   `GET /v1/admin/sequence` (the applied ids in order);
//! - `GET /v1/admin/log/head`, `GET /v1/admin/log/check` and
//!   `GET /v1/admin/log`: the share log's head, the comparison of the three
//!   chains (a `log-check` job), and its records' agreed fields.
//!
//! The routes are [`routes::ADMIN`](super::routes::ADMIN). The endpoint is
//! unauthenticated and binds to loopback by default: it is for the operator.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sharecall_proto::control::Status;
use sharecall_proto::sequencer::RequestRecord;

use super::error::error;
use super::request_id::bad_request_id;
use super::routes::{AdminOp, ADMIN};
use crate::directory::Directory;
use crate::execution::Executor;
use crate::metrics::Metrics;
use crate::orchestration::status::status_name;
use crate::orchestration::{Gateway, JobError, LinkManager};
use crate::sequencer::applied;
use crate::sequencer::Sequencer;

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
    /// The table's executor.
    pub executor: Arc<Executor>,
}

/// The admin routes (operator only: `listen.admin`), served with `state`.
pub fn router(state: Arc<AdminState>) -> Router {
    routes().with_state(state)
}

/// The routes of the table, before their state.
pub(super) fn routes() -> Router<Arc<AdminState>> {
    super::build(ADMIN, handler)
}

/// The handler of `op` for `method`.
fn handler(op: AdminOp, method: MethodFilter) -> MethodRouter<Arc<AdminState>> {
    match op {
        AdminOp::Peers => on(method, peers),
        AdminOp::SubmitJob => on(method, submit_job),
        AdminOp::Metrics => on(method, metrics),
        AdminOp::Raft => on(method, raft_status),
        AdminOp::Table => on(method, table_status),
        AdminOp::Sequence => on(method, sequence),
        AdminOp::Applied => on(method, applied),
        AdminOp::LogHead => on(method, log_head),
        AdminOp::LogCheck => on(method, log_check),
        AdminOp::LogRecords => on(method, log_records),
    }
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
    let kind = match s.gateway.computations().kind(&req.kind) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, "unknown_kind", e.to_string()),
    };
    let params = match &req.params {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => v.to_string().into_bytes(),
    };
    if let Err(e) = s.gateway.computations().review(kind, &params) {
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

/// The table's public state (variant, cursor, entries, digest).
async fn table_status(State(s): State<Arc<AdminState>>) -> Response {
    Json(s.executor.summary().await).into_response()
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
        proposed_at_ms: sharecall_proto::clock::now_ms(),
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

/// The share log's head: records appended, chain head, first stored
/// record, last log time, read batches waiting for a seal.
async fn log_head(State(s): State<Arc<AdminState>>) -> Response {
    match crate::sharelog::store::head(s.executor.share_log_db()) {
        Ok(h) => Json(json!({
            "enabled": s.executor.share_log_settings().enabled,
            "count": h.count,
            "last_seq": h.count,
            "head": h.head,
            "first_seq": h.first_seq,
            "last_time_ms": h.last_time_ms,
            "unsealed_read_batches": s.executor.unsealed_reads(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

/// Compares the three providers' chains at this provider's head (a
/// `log-check` job): each verifies its own stored chain and all three
/// links must be equal; an error names the provider that differs.
async fn log_check(State(s): State<Arc<AdminState>>) -> Response {
    let through = match crate::sharelog::store::state(s.executor.share_log_db()) {
        Ok(st) => st.count,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    };
    match crate::sharelog::check_heads(&s.gateway, through).await {
        Ok(c) => Json(json!({"ok": true, "through": c.through, "link": c.link})).into_response(),
        Err(crate::sharelog::check::HeadsError::Job(e)) => job_error(&e),
        Err(e) => error(StatusCode::BAD_GATEWAY, "log_check", e.to_string()),
    }
}

/// Share-log records from `from` (agreed fields, and how many shares of
/// each kind this provider holds; never the shares themselves).
async fn log_records(
    State(s): State<Arc<AdminState>>,
    axum::extract::Query(p): axum::extract::Query<Page>,
) -> Response {
    let db = s.executor.share_log_db();
    let records = match crate::sharelog::store::records(db, p.from, p.limit.min(10_000) as usize) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    };
    let out: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "at_ms": r.at_ms,
                "kind": r.kind.as_str(),
                "request_id": r.request_id,
                "origin": hex::encode(r.origin),
                "code": r.code.as_str(),
                "tag": r.tag,
                "tag_bits": r.tag_bits,
                "cursor": r.cursor,
                "batch": r.batch,
                "row": r.row,
                "aux": r.aux,
                "key_share": r.key.is_some(),
                "key_bits_share": r.key_bits.is_some(),
                "endpoint_shares": r.endpoint.len(),
                "hash": hex::encode(r.hash),
            })
        })
        .collect();
    Json(json!({"from": p.from, "records": out})).into_response()
}
