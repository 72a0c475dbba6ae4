//! Request handlers of the public API (`docs/API.md`, `docs/openapi.json`):
//! `POST /v1/requests` (a signed request part) and `GET /v1/requests/{id}`
//! (its outcome).
//!
//! A request's part is verified (signature over the id, kind, account,
//! timestamp, window, every part's hash, the public fields once and every
//! answer key's hash; freshness; this provider's answer key and part
//! against their signed hashes; the part's shape; enrollment; rate limit),
//! merged with the request's `public` fields, stored durably in that
//! merged form, then logged as ready. The readiness record carries the
//! hash of the signed message, so a request whose three providers verified
//! different public fields (or answer-key hashes) is aborted, never
//! executed. Once all three providers hold their part the request is
//! ordered, and the answer is what this provider's executor recorded for
//! it, sealed under this provider's answer key (`sealed_result`); polling
//! it needs the request's signature (`Sharecall-Signature` header).
//!
//! A resolution changes nothing and takes a shorter path: its part is held
//! in memory and announced to the coordinator, which runs it in a read
//! batch (`execution::reads`); the answer comes from that batch.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, info_span, Instrument};

use super::error::error;
use super::public::PublicState;
use super::request_id::bad_request_id;
use super::signed::{account_and_signature, decode_hex, stale};
use crate::execution::batch::Answer;
use crate::execution::fault::Withheld;
use crate::execution::reads::{ReadPart, ReadResult, Submitted, READ_GRACE};
use crate::execution::store::{self, RequestMeta};
use crate::sequencer::lifecycle::{self, Outcome};
use crate::tables::part::{Kind, Part, PartError, Public};
use crate::tables::Variant;
use sharecall_proto::clock::now_ms;

/// Largest accepted part (decoded).
const MAX_PART: usize = sharecall_proto::limits::PART_MAX_LEN;
/// Largest accepted import part (decoded).
const MAX_IMPORT_PART: usize = sharecall_proto::limits::IMPORT_PART_MAX_LEN;
/// Largest `public` object: an import's 2048 rows, each with the longest
/// extra data (2048 hex digits), an owner and a ttl, stay below it.
const MAX_PUBLIC: usize = 5 << 20;
/// Largest accepted request body (an import part, hex-encoded, and its
/// public fields).
pub const MAX_REQUEST_BODY: usize = 2 * MAX_IMPORT_PART + MAX_PUBLIC + 4096;

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
    /// blake3 of each provider's answer key, hex, in provider order
    /// (signed).
    answer_key_hashes: Vec<String>,
    /// This provider's fresh answer key for this request, hex (secret: it
    /// travels only inside TLS to this provider): the answer is sealed
    /// under it.
    answer_key: String,
    /// This provider's part (shares only), hex.
    part: String,
    /// The public fields (`sharecall_proto::public`), the same in all
    /// three bodies and signed once.
    public: Value,
}

/// The header that proves a poll comes from the requester: the request's
/// signature, hex.
pub const SIGNATURE_HEADER: &str = "sharecall-signature";

/// The `done` body with the answer sealed under `answer_key`.
fn done(
    s: &PublicState,
    id: &str,
    seq: Option<u64>,
    a: &Answer,
    answer_key: &[u8; 32],
) -> Response {
    match store::seal_answer(a, answer_key, id, s.me) {
        Ok(sealed) => done_sealed(id, seq, sealed),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "seal", e.to_string()),
    }
}

fn done_sealed(id: &str, seq: Option<u64>, sealed: Value) -> Response {
    // Never set outside fault-injection builds.
    match crate::execution::fault::withheld() {
        Some(Withheld::Internal) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "fault injection: answer withheld",
            )
        }
        Some(Withheld::Pending) => return pending(id, seq),
        None => {}
    }
    Json(json!({
        "request_id": id,
        "status": "done",
        "seq": seq,
        "sealed_result": sealed,
    }))
    .into_response()
}

fn pending(id: &str, seq: Option<u64>) -> Response {
    let mut body = json!({"request_id": id, "status": "pending"});
    if let Some(seq) = seq {
        body["seq"] = json!(seq);
    }
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// The answer for a request whose outcome is `o`, waiting up to `wait`
/// for it to execute, sealed under `answer_key`.
async fn answer(
    s: &PublicState,
    id: &str,
    o: &Outcome,
    wait: Duration,
    answer_key: &[u8; 32],
) -> Response {
    match o {
        Outcome::Executed { seq } => {
            s.executor.wait_executed(*seq, wait).await;
            match store::answer(s.sequencer.store().database(), id) {
                Ok(Some(a)) => done(s, id, Some(*seq), &a, answer_key),
                Ok(None) => pending(id, Some(*seq)),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
            }
        }
        Outcome::Aborted { reason } => aborted(id, reason),
    }
}

/// `409 aborted` for request `id`.
fn aborted(id: &str, reason: &str) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({"error": {
            "code": "aborted",
            "message": format!("request {id} was aborted: {reason}"),
            "request_id": id,
        }})),
    )
        .into_response()
}

/// `POST /v1/requests`: one provider's part of a client request.
pub async fn submit_part(State(s): State<Arc<PublicState>>, body: Bytes) -> Response {
    let req: PartRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
    };
    if let Some(r) = bad_request_id(&req.request_id) {
        return r;
    }
    let span = info_span!("request", id = %req.request_id, kind = %req.kind);
    submit_checked(s, req).instrument(span).await
}

async fn submit_checked(s: Arc<PublicState>, req: PartRequest) -> Response {
    let Some(kind) = Kind::parse(&req.kind) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_kind",
            "kind must be one of register, resolve, update, delete, import",
        );
    };
    let window_ms = req.window_ms;
    if !(100..=600_000).contains(&window_ms) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_window",
            "window_ms must be 100..=600000",
        );
    }
    let hashes: Option<Vec<[u8; 32]>> = req.part_hashes.iter().map(|h| decode_hex(h)).collect();
    let Some(Ok(hashes)) = hashes.map(<[[u8; 32]; 3]>::try_from) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_part_hash",
            "part_hashes must be three 64-digit hex blake3 hashes",
        );
    };
    let (account, signature) = match account_and_signature(&req.account, &req.signature) {
        Ok(both) => both,
        Err(refusal) => return refusal,
    };
    let key_hashes: Option<Vec<[u8; 32]>> = req
        .answer_key_hashes
        .iter()
        .map(|h| decode_hex(h))
        .collect();
    let Some(Ok(key_hashes)) = key_hashes.map(<[[u8; 32]; 3]>::try_from) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_answer_key",
            "answer_key_hashes must be three 64-digit hex blake3 hashes",
        );
    };
    let Some(answer_key) = decode_hex::<32>(&req.answer_key) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_answer_key",
            "answer_key must be a 64-digit hex key (32 bytes)",
        );
    };
    // The public fields are checked before the signature: the signature
    // covers their canonical bytes, whatever their JSON spelling.
    let public = match Public::parse(kind, &req.public) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_public", e.to_string()),
    };
    let signed = sharecall_proto::request::SignedFields {
        request_id: &req.request_id,
        kind: &req.kind,
        account: &account,
        timestamp_ms: req.timestamp_ms,
        window_ms,
        part_hashes: &hashes,
        public_hash: &public.hash(),
        answer_key_hashes: &key_hashes,
    }
    .message();
    if !s.accounts.verify(&account, &signed, &signature) {
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the request signature does not verify for this account \
             (over its id, kind, timestamp, window, part hashes, public fields and answer key)",
        );
    }
    if let Some(refusal) = stale("request", req.timestamp_ms) {
        return refusal;
    }
    // The signature fixes every provider's key through its hash; a key
    // that is not the signed one (a provider or a relay substituting its
    // own) is refused, so the answer is sealed only under the client's.
    // blake3 hashes compare in constant time.
    let key_hash = blake3::Hash::from(sharecall_proto::seal::key_hash(&answer_key));
    if key_hash != blake3::Hash::from(key_hashes[usize::from(s.me)]) {
        return error(
            StatusCode::BAD_REQUEST,
            "answer_key_mismatch",
            format!("answer_key does not match answer_key_hashes[{}]", s.me),
        );
    }
    let max = if kind == Kind::Import {
        MAX_IMPORT_PART
    } else {
        MAX_PART
    };
    let part = match hex::decode(&req.part) {
        Ok(p) if p.len() <= max => p,
        Ok(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "part_too_large",
                format!("a {} part is at most {max} bytes", kind.as_str()),
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
    let parsed = if kind == Kind::Import {
        if !s.accounts.is_importer(&account) {
            return error(
                StatusCode::FORBIDDEN,
                "not_importer",
                format!(
                    "account {} may not import at provider {}",
                    req.account, s.me
                ),
            );
        }
        crate::tables::part::merge_import(&part, &public).and_then(|rows| {
            let parts: Vec<&Part> = rows.iter().map(|(p, _)| p).collect();
            check_key_bits(s.executor.variant(), &parts).map(|_| Merged::Import(rows))
        })
    } else {
        Part::merge(kind, &part, &public)
            .and_then(|p| check_key_bits(s.executor.variant(), &[&p]).map(|_| Merged::Entry(p)))
    };
    let merged = match parsed {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_part", e.to_string()),
    };
    let db = s.sequencer.store().database();
    match s.accounts.is_enrolled(db, &account) {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::FORBIDDEN,
                "not_enrolled",
                format!(
                    "account {} is not enrolled at provider {}",
                    req.account, s.me
                ),
            )
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
    let signed_hash = blake3::hash(&signed).to_hex().to_string();
    let proof = store::signature_proof(&signature);
    let merged = match merged {
        Merged::Entry(p) if kind == Kind::Resolve => {
            return submit_read(&s, &req, account, signed_hash, p, answer_key, proof).await;
        }
        m => m,
    };
    if s.executor.reads().knows(&req.request_id) {
        return id_reused(&req.request_id);
    }
    // A retry (same id, same signed request) is answered from the record;
    // the same id for another request is refused.
    let known = match store::request(db, &req.request_id) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    };
    if let Some(k) = &known {
        if k.signed != signed_hash {
            return error(
                StatusCode::CONFLICT,
                "id_reused",
                format!(
                    "request id {} was already used for another request",
                    req.request_id
                ),
            );
        }
    }
    match lifecycle::outcome(db, &req.request_id) {
        Ok(Some(o)) => return answer(&s, &req.request_id, &o, s.answer_wait, &answer_key).await,
        Ok(None) => {}
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
    if known.is_none() {
        if let Some(r) = rate_limited(&s, &account) {
            return r;
        }
        let meta = RequestMeta {
            kind: req.kind.clone(),
            account: req.account.to_ascii_lowercase(),
            signed: signed_hash.clone(),
            sealing_key: Some(hex::encode(answer_key)),
            proof: Some(proof.to_hex().to_string()),
        };
        let store = s.sequencer.store().clone();
        let id = req.request_id.clone();
        // Serialised only here: resolutions and retries store nothing.
        let bytes = merged.stored_bytes();
        let stored = tokio::task::spawn_blocking(move || {
            store::put_request(store.database(), &id, &meta, &bytes).map_err(|e| e.to_string())
        })
        .await;
        match stored {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
        }
        info!("part stored");
    }
    // All three providers must have verified the same signed request.
    let ready = sharecall_proto::sequencer::PartReady {
        request_id: req.request_id.clone(),
        provider: u32::from(s.me),
        kind: req.kind,
        parts_hash: blake3::hash(&signed).as_bytes().to_vec().into(),
        window_ms,
        at_ms: now_ms(),
    };
    match s.sequencer.part_ready(ready, Duration::from_secs(5)).await {
        Ok(o) => answer(&s, &req.request_id, &o, s.answer_wait, &answer_key).await,
        Err(e) => error(StatusCode::GATEWAY_TIMEOUT, "not_ordered", e.to_string()),
    }
}

/// 429 with Retry-After if `account` is over its rate here.
fn rate_limited(s: &PublicState, account: &[u8; 32]) -> Option<Response> {
    let wait = s.accounts.check_rate(account).err()?;
    let secs = wait.as_secs() + 1;
    let mut r = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from this account; retry in {secs} s"),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(r)
}

fn id_reused(id: &str) -> Response {
    error(
        StatusCode::CONFLICT,
        "id_reused",
        format!("request id {id} was already used for another request"),
    )
}

/// A verified part merged with the request's public fields: what
/// execution reads, stored only for a new write request.
enum Merged {
    /// A register, update, delete or resolve part.
    Entry(Part),
    /// An import's rows and their owners.
    Import(Vec<(Part, [u8; 32])>),
}

impl Merged {
    /// The stored form (proto's stored part JSON).
    fn stored_bytes(&self) -> Vec<u8> {
        match self {
            Merged::Entry(p) => p.to_stored_bytes(),
            Merged::Import(rows) => crate::tables::part::import_to_stored_bytes(rows),
        }
    }
}

/// A verified resolution: held in memory, announced to the coordinator,
/// answered when its read batch has run.
async fn submit_read(
    s: &PublicState,
    req: &PartRequest,
    account: [u8; 32],
    signed: String,
    parsed: Part,
    answer_key: [u8; 32],
    proof: blake3::Hash,
) -> Response {
    let id = &req.request_id;
    match store::request(s.sequencer.store().database(), id) {
        Ok(Some(_)) => return id_reused(id),
        Ok(None) => {}
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
    let reads = s.executor.reads();
    if !reads.knows(id) {
        if let Some(r) = rate_limited(s, &account) {
            return r;
        }
    }
    let window = Duration::from_millis(req.window_ms);
    let read = ReadPart {
        part: parsed,
        account,
        signed: signed.clone(),
        window,
        answer_key,
        proof,
        provider: s.me,
    };
    let rx = match reads.submit(id, read) {
        Submitted::Reused => return id_reused(id),
        Submitted::Replayed => {
            return error(
                StatusCode::CONFLICT,
                "replayed",
                format!("request {id} was answered already; send a new request"),
            )
        }
        Submitted::Wait(rx) => rx,
    };
    if rx.borrow().is_none() {
        // New, or a retry of one not answered yet: (re)announce it.
        s.executor.announce(id, &signed);
        info!("read held");
    }
    read_answer(s, id, rx, s.answer_wait.min(window + READ_GRACE)).await
}

/// The proof a poll presents: blake3 of its `Sharecall-Signature` header,
/// or the 401 for a missing or malformed one.
#[allow(clippy::result_large_err)]
fn poll_proof(headers: &HeaderMap) -> Result<blake3::Hash, Response> {
    let sig = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| decode_hex::<64>(v.trim()));
    sig.map(|s| store::signature_proof(&s)).ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "polling an answer needs the request's signature (128 hex digits) \
             in the Sharecall-Signature header",
        )
    })
}

fn forbidden(id: &str) -> Response {
    error(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("the Sharecall-Signature header is not request {id}'s signature"),
    )
}

/// The answer to read `id` once its batch has run (waiting up to `wait`).
async fn read_answer(
    s: &PublicState,
    id: &str,
    mut rx: tokio::sync::watch::Receiver<Option<ReadResult>>,
    wait: Duration,
) -> Response {
    let _ = tokio::time::timeout(wait, rx.wait_for(|r| r.is_some())).await;
    let result = rx.borrow().clone();
    let result = match result {
        Some(r) => r,
        None => match s.executor.reads().expire(id) {
            Some(r) => r,
            None => return pending(id, None),
        },
    };
    match result {
        Ok(sealed) => done_sealed(id, None, sealed),
        Err(reason) => aborted(id, &reason),
    }
}

/// `GET /v1/requests/{id}`: a request's answer at this provider, for the
/// requester only: the `Sharecall-Signature` header must carry the
/// request's signature (third parties are refused; the other providers
/// know the signature, but the answer is sealed to the client).
pub async fn request_outcome(
    State(s): State<Arc<PublicState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = bad_request_id(&id) {
        return r;
    }
    let proof = match poll_proof(&headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Some((rx, held)) = s.executor.reads().status(&id) {
        // blake3 hashes compare in constant time.
        if held != proof {
            return forbidden(&id);
        }
        return read_answer(&s, &id, rx, Duration::from_millis(200)).await;
    }
    let db = s.sequencer.store().database();
    let meta = match store::request(db, &id) {
        Ok(Some(m)) => m,
        // Without the part (and its signature) here no answer is served;
        // an abort is no answer (every provider logged it), so it is said.
        Ok(None) => {
            return match lifecycle::outcome(db, &id) {
                Ok(Some(Outcome::Aborted { reason })) => aborted(&id, &reason),
                Ok(_) => error(
                    StatusCode::NOT_FOUND,
                    "unknown_request",
                    format!("no request {id} is known here"),
                ),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
            }
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    };
    let stored_proof = meta
        .proof
        .as_deref()
        .and_then(|h| blake3::Hash::from_hex(h).ok());
    let key = meta.sealing_key.as_deref().and_then(decode_hex::<32>);
    let (Some(stored_proof), Some(key)) = (stored_proof, key) else {
        // A record from before sealed answers: its answer is not served.
        return forbidden(&id);
    };
    if stored_proof != proof {
        return forbidden(&id);
    }
    match lifecycle::outcome(db, &id) {
        Ok(Some(o)) => answer(&s, &id, &o, Duration::from_millis(200), &key).await,
        Ok(None) => pending(&id, None),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

/// The tree table compares XOR shares of keys: its parts must carry them.
fn check_key_bits(variant: Variant, parts: &[&Part]) -> Result<(), PartError> {
    if variant.needs_key_bits() && parts.iter().any(|p| p.key_bits.is_none()) {
        return Err(PartError::Field {
            field: "key_bits",
            message: "is required by this provider's tree table".into(),
        });
    }
    Ok(())
}
