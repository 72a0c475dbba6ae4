//! Three tiny stand-in providers (axum on 127.0.0.1) for contract tests of
//! the client.
//!
//! They check every request exactly as docs/API.md specifies — the JSON
//! shape, lowercase hex, the ed25519 signature over
//! `SignedFields{..}.message()`, freshness, enrollment, the blake3 hash of
//! the part bytes against `part_hashes[me]`, and the part's own shape per
//! kind — and answer like a provider would: wait briefly for all three
//! parts, execute once (a trusted simulation that reconstructs the key in
//! one place, which real providers never do), re-share resolve answers
//! with fresh randomness, answer `202` and poll answers, abort when the
//! window passes. Contract violations that a status code cannot express
//! (a retry whose body differs) are collected in [`Inner::violations`].
//!
//! Per-provider [`Behaviour`] knobs make a provider misbehave: tamper with
//! its answer shares, lie about the result code, answer `unavailable`,
//! fail, rate-limit, or keep answering `202`.
//!
//! The part and share decoding here is written from docs/API.md on purpose,
//! not taken from the client library, so the two are checked against each
//! other.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ed25519_dalek::{Signature, VerifyingKey};
use rand::rngs::OsRng;
use serde::Deserialize;
use serde_json::{json, Value};
use sharecall_proto::clock::now_ms;
use sharecall_proto::encoding::ENDPOINT_ELEMENTS;
use sharecall_proto::limits::{PART_MAX_LEN, REQUEST_ID_MAX_LEN, REQUEST_SKEW_MAX_MS};
use sharecall_proto::request::{enroll_message, SignedFields};
use sharecall_proto::sharing::{reconstruct_all, share};
use sharecall_proto::{Fp, Share};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How a provider alters the endpoint shares of its resolve answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tamper {
    /// Honest.
    #[default]
    None,
    /// Both components of element 3 (disagrees with both other providers).
    BothComponents,
    /// The first component of element 0 only, as the real provider's fault
    /// injection does (disagrees with one other provider).
    FirstOfElement0,
}

/// How one stand-in provider behaves.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Alter the endpoint shares of resolve answers.
    pub tamper: Tamper,
    /// Answer this result code instead of the real one.
    pub lie_code: Option<&'static str>,
    /// Answer other extra data than stored.
    pub lie_extra: bool,
    /// Answer `unavailable` (caught up, no answer share).
    pub unavailable: bool,
    /// Answer `500` once the request is executed.
    pub error_500_when_done: bool,
    /// Store the part, then answer `503` this many times.
    pub fail_after_store: u32,
    /// Answer `429` (`Retry-After: 0`) to this many posts before reading
    /// them.
    pub rate_limit_first: u32,
    /// Answer `202` to the post and to this many polls before the result.
    pub pending_polls: u32,
}

/// How long a post waits for the request to execute before `202`.
const POST_WAIT: Duration = Duration::from_millis(1000);

/// One provider's part, as decoded by the stand-in.
#[derive(Clone, Debug)]
struct PartData {
    key: Share,
    endpoint: Option<Vec<Share>>,
    ttl_s: Option<u64>,
    extra: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
struct Res {
    code: &'static str,
    endpoint: Option<Vec<Share>>,
    extra: Option<Vec<u8>>,
    expires_at_ms: Option<u64>,
}

#[derive(Clone, Debug)]
enum Outcome {
    Done { seq: u64, results: Box<[Res; 3]> },
    Aborted(String),
}

struct Req {
    kind: String,
    account: [u8; 32],
    bodies: [Option<Vec<u8>>; 3],
    signed: [Option<Vec<u8>>; 3],
    parts: [Option<PartData>; 3],
    first_at: Instant,
    window: Duration,
    outcome: Option<Outcome>,
    /// Each provider's answer key (its hash is signed; answers are sealed
    /// under it), as that provider received it.
    answer_keys: [[u8; 32]; 3],
    /// The request's signature (a poll must present it).
    signature: [u8; 64],
}

struct Entry {
    elements: Vec<Fp>,
    extra: Vec<u8>,
    expires_at_ms: u64,
    owner: [u8; 32],
}

/// The state the three stand-ins share.
#[derive(Default)]
pub struct Inner {
    enrolled: [HashSet<[u8; 32]>; 3],
    requests: HashMap<String, Req>,
    table: HashMap<[u8; 32], Entry>,
    next_seq: u64,
    rate_limited: [u32; 3],
    failed_after_store: HashMap<(usize, String), u32>,
    gets: HashMap<(usize, String), u32>,
    /// Contract violations seen (must stay empty).
    pub violations: Vec<String>,
    /// Posts per (provider, request id).
    pub posts: HashMap<(usize, String), u32>,
    /// How many requests executed.
    pub executions: u32,
}

/// Everything the stand-ins share.
pub struct Shared {
    inner: Mutex<Inner>,
    behaviour: Mutex<[Behaviour; 3]>,
    token: Option<String>,
}

impl Shared {
    /// The shared state.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("fake provider state")
    }

    fn behaviour(&self, me: usize) -> Behaviour {
        self.behaviour.lock().expect("behaviour")[me].clone()
    }
}

/// Three stand-in providers.
pub struct Cluster {
    /// Base URLs, P0..P2.
    pub urls: [String; 3],
    /// Their state.
    pub shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cluster {
    /// Three honest, serving stand-ins.
    pub async fn start() -> Cluster {
        Cluster::start_with(Default::default(), None, None).await
    }

    /// Stand-ins with the given behaviours and enrollment token. Provider
    /// `missing` (if any) gets a URL whose port nobody listens on (until
    /// [`Cluster::serve_late`]).
    pub async fn start_with(
        behaviours: [Behaviour; 3],
        token: Option<&str>,
        missing: Option<usize>,
    ) -> Cluster {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            behaviour: Mutex::new(behaviours),
            token: token.map(str::to_owned),
        });
        let mut urls: [String; 3] = Default::default();
        let mut tasks = Vec::new();
        for (me, url) in urls.iter_mut().enumerate() {
            if Some(me) == missing {
                // Reserve a port, then free it: connections are refused.
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                *url = format!("http://{}", l.local_addr().expect("addr"));
                continue;
            }
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            *url = format!("http://{}", l.local_addr().expect("addr"));
            tasks.push(serve(me, l, shared.clone()));
        }
        Cluster {
            urls,
            shared,
            tasks,
        }
    }

    /// Starts serving provider `me` on the port of its URL.
    pub async fn serve_late(&mut self, me: usize) {
        let addr = self.urls[me].trim_start_matches("http://").to_owned();
        let l = TcpListener::bind(&addr)
            .await
            .expect("rebind reserved port");
        self.tasks.push(serve(me, l, self.shared.clone()));
    }

    /// Changes a provider's behaviour.
    pub fn set_behaviour(&self, me: usize, b: Behaviour) {
        self.shared.behaviour.lock().expect("behaviour")[me] = b;
    }

    /// Enrolls `account` at all three providers directly.
    pub fn enroll_directly(&self, account: &[u8; 32]) {
        for set in &mut self.shared.lock().enrolled {
            set.insert(*account);
        }
    }

    /// Forgets that `account` is enrolled at provider `me`.
    pub fn unenroll(&self, me: usize, account: &[u8; 32]) {
        self.shared.lock().enrolled[me].remove(account);
    }

    /// The violations seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }
}

#[derive(Clone)]
struct Me {
    me: usize,
    shared: Arc<Shared>,
}

fn serve(me: usize, listener: TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    let app = Router::new()
        .route("/v1/accounts", post(enroll))
        .route("/v1/requests", post(submit))
        .route("/v1/requests/:id", get(poll))
        .layer(axum::extract::DefaultBodyLimit::max(
            2 * PART_MAX_LEN + 4096,
        ))
        .with_state(Me { me, shared });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

/// Lowercase hex of exactly `n` bytes.
fn hex_n(s: &str, n: usize) -> Option<Vec<u8>> {
    if s.len() != 2 * n || s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    hex::decode(s).ok()
}

fn fp(b: &[u8]) -> Option<Fp> {
    Fp::from_bytes(&b.try_into().ok()?).ok()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollWire {
    account: String,
    provider: u8,
    timestamp_ms: u64,
    nonce: String,
    signature: String,
    #[serde(default)]
    token: Option<String>,
}

async fn enroll(State(s): State<Me>, body: Bytes) -> Response {
    let w: EnrollWire = match serde_json::from_slice(&body) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e.to_string()),
    };
    let Some(account) = hex_n(&w.account, 32).and_then(|a| <[u8; 32]>::try_from(a).ok()) else {
        return error(StatusCode::BAD_REQUEST, "bad_account", "64 hex digits");
    };
    let Some(sig) = hex_n(&w.signature, 64).and_then(|a| <[u8; 64]>::try_from(a).ok()) else {
        return error(StatusCode::BAD_REQUEST, "bad_signature", "128 hex digits");
    };
    if usize::from(w.provider) != s.me {
        return error(StatusCode::FORBIDDEN, "wrong_provider", "another provider");
    }
    let nonce = hex::decode(&w.nonce).unwrap_or_default();
    let message = enroll_message(
        w.provider,
        &account,
        w.timestamp_ms,
        &nonce,
        w.token.as_deref(),
    );
    let ok = VerifyingKey::from_bytes(&account)
        .and_then(|k| k.verify_strict(&message, &Signature::from_bytes(&sig)));
    if ok.is_err() {
        return error(StatusCode::UNAUTHORIZED, "bad_signature", "does not verify");
    }
    if now_ms().abs_diff(w.timestamp_ms) > REQUEST_SKEW_MAX_MS {
        return error(StatusCode::UNAUTHORIZED, "stale_timestamp", "clock skew");
    }
    if let Some(t) = &s.shared.token {
        if w.token.as_deref() != Some(t.as_str()) {
            return error(
                StatusCode::FORBIDDEN,
                "bad_token",
                "unknown enrollment token",
            );
        }
    }
    let new = s.shared.lock().enrolled[s.me].insert(account);
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(json!({"account": w.account, "enrolled": true})),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestWire {
    request_id: String,
    kind: String,
    account: String,
    timestamp_ms: u64,
    window_ms: u64,
    part_hashes: Vec<String>,
    signature: String,
    answer_key_hashes: Vec<String>,
    answer_key: String,
    part: String,
}

struct Checked {
    id: String,
    answer_key: [u8; 32],
    signature: [u8; 64],
    kind: String,
    account: [u8; 32],
    signed: Vec<u8>,
    window: Duration,
    part: PartData,
}

/// Every check docs/API.md lists for `POST /v1/requests`, in order.
/// A refusal: status, error code, message.
type Refusal = (StatusCode, &'static str, String);

fn check_request(me: usize, body: &[u8]) -> Result<Checked, Refusal> {
    let bad = |status, code: &'static str, msg: &str| Err((status, code, msg.to_owned()));
    let w: RequestWire = match serde_json::from_slice(body) {
        Ok(w) => w,
        Err(e) => return bad(StatusCode::BAD_REQUEST, "bad_json", &e.to_string()),
    };
    let id_ok = (1..=REQUEST_ID_MAX_LEN).contains(&w.request_id.len())
        && w.request_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if !id_ok {
        return bad(StatusCode::BAD_REQUEST, "bad_request_id", "bad id");
    }
    if !["register", "resolve", "update", "delete"].contains(&w.kind.as_str()) {
        return bad(StatusCode::BAD_REQUEST, "bad_kind", "bad kind");
    }
    if !(100..=600_000).contains(&w.window_ms) {
        return bad(StatusCode::BAD_REQUEST, "bad_window", "bad window");
    }
    let hashes: Option<Vec<[u8; 32]>> = w
        .part_hashes
        .iter()
        .map(|h| hex_n(h, 32).and_then(|v| v.try_into().ok()))
        .collect();
    let Some(Ok(hashes)) = hashes.map(<[[u8; 32]; 3]>::try_from) else {
        return bad(StatusCode::BAD_REQUEST, "bad_part_hash", "three hashes");
    };
    let Some(account) = hex_n(&w.account, 32).and_then(|a| <[u8; 32]>::try_from(a).ok()) else {
        return bad(StatusCode::BAD_REQUEST, "bad_account", "64 hex digits");
    };
    let Some(sig) = hex_n(&w.signature, 64).and_then(|a| <[u8; 64]>::try_from(a).ok()) else {
        return bad(StatusCode::BAD_REQUEST, "bad_signature", "128 hex digits");
    };
    let key_hashes: Option<Vec<[u8; 32]>> = w
        .answer_key_hashes
        .iter()
        .map(|h| hex_n(h, 32).and_then(|v| v.try_into().ok()))
        .collect();
    let Some(Ok(key_hashes)) = key_hashes.map(<[[u8; 32]; 3]>::try_from) else {
        return bad(StatusCode::BAD_REQUEST, "bad_answer_key", "three hashes");
    };
    let Some(answer_key) = hex_n(&w.answer_key, 32).and_then(|a| <[u8; 32]>::try_from(a).ok())
    else {
        return bad(StatusCode::BAD_REQUEST, "bad_answer_key", "64 hex digits");
    };
    let signed = SignedFields {
        request_id: &w.request_id,
        kind: &w.kind,
        account: &account,
        timestamp_ms: w.timestamp_ms,
        window_ms: w.window_ms,
        part_hashes: &hashes,
        answer_key_hashes: &key_hashes,
    }
    .message();
    let verified = VerifyingKey::from_bytes(&account)
        .and_then(|k| k.verify_strict(&signed, &Signature::from_bytes(&sig)));
    if verified.is_err() {
        return bad(StatusCode::UNAUTHORIZED, "bad_signature", "does not verify");
    }
    if now_ms().abs_diff(w.timestamp_ms) > REQUEST_SKEW_MAX_MS {
        return bad(StatusCode::UNAUTHORIZED, "stale_timestamp", "clock skew");
    }
    if *blake3::hash(&answer_key).as_bytes() != key_hashes[me] {
        return bad(
            StatusCode::BAD_REQUEST,
            "answer_key_mismatch",
            "answer_key does not match answer_key_hashes[me]",
        );
    }
    if w.part.bytes().any(|b| b.is_ascii_uppercase()) {
        return bad(
            StatusCode::BAD_REQUEST,
            "bad_part",
            "part hex must be lowercase",
        );
    }
    let Ok(part) = hex::decode(&w.part) else {
        return bad(StatusCode::BAD_REQUEST, "bad_part", "part must be hex");
    };
    if part.len() > PART_MAX_LEN {
        return bad(StatusCode::PAYLOAD_TOO_LARGE, "part_too_large", "too large");
    }
    if *blake3::hash(&part).as_bytes() != hashes[me] {
        return bad(
            StatusCode::BAD_REQUEST,
            "part_hash_mismatch",
            "part does not match part_hashes[me]",
        );
    }
    let part = match parse_part(&w.kind, &part) {
        Ok(p) => p,
        Err(e) => return bad(StatusCode::BAD_REQUEST, "bad_part", &e),
    };
    Ok(Checked {
        id: w.request_id,
        answer_key,
        signature: sig,
        kind: w.kind,
        account,
        signed,
        window: Duration::from_millis(w.window_ms),
        part,
    })
}

/// The part bytes of docs/API.md, decoded independently of the client.
fn parse_part(kind: &str, bytes: &[u8]) -> Result<PartData, String> {
    let v: serde_json::Map<String, Value> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON object: {e}"))?;
    let entry = kind == "register" || kind == "update";
    for k in v.keys() {
        let allowed = k == "key"
            || k == "key_bits"
            || (entry && ["endpoint", "ttl_s", "extra"].contains(&k.as_str()));
        if !allowed {
            return Err(format!("field {k} not allowed in a {kind} part"));
        }
    }
    let str_field = |name: &str| {
        v.get(name)
            .map(|x| x.as_str().ok_or(format!("{name} not a string")))
    };
    let key = str_field("key").ok_or("no key")??;
    let key = hex_n(key, 64).ok_or("key: 128 lowercase hex digits")?;
    let key = Share {
        first: fp(&key[..32]).ok_or("key: non-canonical")?,
        second: fp(&key[32..]).ok_or("key: non-canonical")?,
    };
    if let Some(bits) = str_field("key_bits") {
        hex_n(bits?, 32).ok_or("key_bits: 64 lowercase hex digits")?;
    }
    if !entry {
        return Ok(PartData {
            key,
            endpoint: None,
            ttl_s: None,
            extra: None,
        });
    }
    let ep = str_field("endpoint").ok_or("no endpoint")??;
    let ep = hex_n(ep, ENDPOINT_ELEMENTS * 64).ok_or("endpoint: 1280 lowercase hex digits")?;
    let (firsts, seconds) = ep.split_at(ENDPOINT_ELEMENTS * 32);
    let endpoint = firsts
        .chunks(32)
        .zip(seconds.chunks(32))
        .map(|(a, b)| {
            Some(Share {
                first: fp(a)?,
                second: fp(b)?,
            })
        })
        .collect::<Option<Vec<Share>>>()
        .ok_or("endpoint: non-canonical")?;
    let ttl = v
        .get("ttl_s")
        .and_then(Value::as_u64)
        .ok_or("ttl_s: an integer")?;
    if !(1..=31_536_000).contains(&ttl) {
        return Err("ttl_s out of range".into());
    }
    let extra = match str_field("extra") {
        None => None,
        Some(x) => {
            let x = x?;
            if x.len() % 2 != 0 || x.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err("extra: lowercase hex".into());
            }
            let x = hex::decode(x).map_err(|_| "extra: hex")?;
            if x.len() > 1024 {
                return Err("extra too long".into());
            }
            Some(x)
        }
    };
    Ok(PartData {
        key,
        endpoint: Some(endpoint),
        ttl_s: Some(ttl),
        extra,
    })
}

async fn submit(State(s): State<Me>, body: Bytes) -> Response {
    let me = s.me;
    let behaviour = s.shared.behaviour(me);
    {
        let mut st = s.shared.lock();
        if st.rate_limited[me] < behaviour.rate_limit_first {
            st.rate_limited[me] += 1;
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("0"));
            return r;
        }
    }
    let c = match check_request(me, &body) {
        Ok(c) => c,
        Err((status, code, message)) => return error(status, code, message),
    };
    {
        let mut st = s.shared.lock();
        if !st.enrolled[me].contains(&c.account) {
            return error(
                StatusCode::FORBIDDEN,
                "not_enrolled",
                format!("account is not enrolled at provider {me}"),
            );
        }
        *st.posts.entry((me, c.id.clone())).or_default() += 1;
        let req = st.requests.entry(c.id.clone()).or_insert_with(|| Req {
            kind: c.kind.clone(),
            account: c.account,
            bodies: Default::default(),
            signed: Default::default(),
            parts: Default::default(),
            first_at: Instant::now(),
            window: c.window,
            outcome: None,
            answer_keys: [[0; 32]; 3],
            signature: c.signature,
        });
        let mut violation = None;
        match &req.signed[me] {
            Some(prev) if *prev != c.signed => {
                return error(
                    StatusCode::CONFLICT,
                    "id_reused",
                    format!("request id {} was already used for another request", c.id),
                );
            }
            Some(_) => {
                if req.bodies[me].as_deref() != Some(&body[..]) {
                    violation = Some(format!(
                        "P{me}: a retry of {} has a different body than the first post",
                        c.id
                    ));
                }
            }
            None => {
                req.bodies[me] = Some(body.to_vec());
                req.signed[me] = Some(c.signed.clone());
                req.parts[me] = Some(c.part.clone());
                req.answer_keys[me] = c.answer_key;
            }
        }
        if let Some(v) = violation {
            st.violations.push(v);
        }
        settle(&mut st, &c.id);
        let failed = st.failed_after_store.entry((me, c.id.clone())).or_default();
        if *failed < behaviour.fail_after_store {
            *failed += 1;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "stored, but answering 503 (test)",
            );
        }
    }
    answer(&s, &c.id, POST_WAIT, true).await
}

async fn poll(
    State(s): State<Me>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    let sig = headers
        .get("sharecall-signature")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| hex_n(v, 64));
    let Some(sig) = sig else {
        return error(StatusCode::UNAUTHORIZED, "unauthenticated", "no signature");
    };
    {
        let mut st = s.shared.lock();
        let Some(req) = st.requests.get(&id) else {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_request",
                format!("no request {id}"),
            );
        };
        if req.signature[..] != sig[..] {
            return error(StatusCode::FORBIDDEN, "forbidden", "not its signature");
        }
        *st.gets.entry((s.me, id.clone())).or_default() += 1;
    }
    answer(&s, &id, Duration::ZERO, false).await
}

/// Executes a request once all three parts are in; aborts it once its
/// window has passed without them.
fn settle(st: &mut Inner, id: &str) {
    let Some(req) = st.requests.get(id) else {
        return;
    };
    if req.outcome.is_some() {
        return;
    }
    let missing: Vec<usize> = (0..3).filter(|&p| req.parts[p].is_none()).collect();
    if !missing.is_empty() {
        if req.first_at.elapsed() > req.window {
            let who = missing
                .iter()
                .map(|p| format!("P{p}"))
                .collect::<Vec<_>>()
                .join(", ");
            if let Some(r) = st.requests.get_mut(id) {
                r.outcome = Some(Outcome::Aborted(format!(
                    "its window passed before the part of {who} arrived"
                )));
            }
        }
        return;
    }
    if req.signed.iter().any(|s| *s != req.signed[0]) {
        if let Some(r) = st.requests.get_mut(id) {
            r.outcome = Some(Outcome::Aborted(
                "the providers were given different requests under one id".into(),
            ));
        }
        return;
    }
    let parts: Vec<PartData> = req.parts.iter().flatten().cloned().collect();
    let (kind, account) = (req.kind.clone(), req.account);
    let outcome = execute(st, &kind, account, &parts);
    if let Some(r) = st.requests.get_mut(id) {
        r.outcome = Some(outcome);
    }
}

fn execute(st: &mut Inner, kind: &str, account: [u8; 32], parts: &[PartData]) -> Outcome {
    let key_shares = [parts[0].key, parts[1].key, parts[2].key];
    let key = match reconstruct_all(&key_shares) {
        Ok(k) => k.to_bytes(),
        Err(e) => {
            st.violations
                .push(format!("client key shares inconsistent: {e}"));
            return Outcome::Aborted("inconsistent key shares".into());
        }
    };
    if parts
        .iter()
        .any(|p| p.ttl_s != parts[0].ttl_s || p.extra != parts[0].extra)
    {
        st.violations
            .push("ttl_s or extra differ between the parts".into());
    }
    let elements = || -> Option<Vec<Fp>> {
        (0..ENDPOINT_ELEMENTS)
            .map(|e| {
                let s = [0, 1, 2].map(|p| parts[p].endpoint.as_ref().map(|v| v[e]));
                reconstruct_all(&[s[0]?, s[1]?, s[2]?]).ok()
            })
            .collect()
    };
    let now = now_ms();
    let live = st
        .table
        .get(&key)
        .filter(|e| e.expires_at_ms > now)
        .is_some();
    let owned = st.table.get(&key).is_some_and(|e| e.owner == account);
    let plain = |code| Res {
        code,
        endpoint: None,
        extra: None,
        expires_at_ms: None,
    };
    let mut results = [plain("ok"), plain("ok"), plain("ok")];
    let store_entry = |st: &mut Inner| {
        let Some(elements) = elements() else {
            st.violations
                .push("client endpoint shares inconsistent".into());
            return;
        };
        st.table.insert(
            key,
            Entry {
                elements,
                extra: parts[0].extra.clone().unwrap_or_default(),
                expires_at_ms: now + parts[0].ttl_s.unwrap_or(1) * 1000,
                owner: account,
            },
        );
    };
    let code = match (kind, live) {
        ("register", true) => "exists",
        ("register", false) => {
            store_entry(st);
            "ok"
        }
        ("resolve", true) => {
            if let Some(e) = st.table.get(&key) {
                // A fresh sharing of the stored value: different shares
                // from what the owner registered.
                let mut per: [Vec<Share>; 3] = Default::default();
                for x in &e.elements {
                    for (p, s) in share(*x, &mut OsRng).into_iter().enumerate() {
                        per[p].push(s);
                    }
                }
                for (r, shares) in results.iter_mut().zip(per) {
                    r.endpoint = Some(shares);
                    r.extra = Some(e.extra.clone());
                    r.expires_at_ms = Some(e.expires_at_ms);
                }
            }
            "ok"
        }
        ("update" | "delete", false) | ("resolve", false) => "not_found",
        ("update" | "delete", true) if !owned => "forbidden",
        ("update", true) => {
            store_entry(st);
            "ok"
        }
        ("delete", true) => {
            st.table.remove(&key);
            "ok"
        }
        _ => "not_found",
    };
    for r in &mut results {
        r.code = code;
    }
    st.next_seq += 1;
    st.executions += 1;
    Outcome::Done {
        seq: st.next_seq,
        results: Box::new(results),
    }
}

/// Share vector layout: all first components, then all second ones.
fn encode_vector(shares: &[Share]) -> String {
    let mut out = Vec::new();
    for s in shares {
        out.extend_from_slice(&s.first.to_bytes());
    }
    for s in shares {
        out.extend_from_slice(&s.second.to_bytes());
    }
    hex::encode(out)
}

fn result_json(r: &Res, b: &Behaviour) -> Value {
    if b.unavailable {
        return json!({"code": "unavailable"});
    }
    if let Some(code) = b.lie_code {
        return json!({"code": code});
    }
    let mut v = json!({"code": r.code});
    if let Some(e) = &r.endpoint {
        let mut e = e.clone();
        match b.tamper {
            Tamper::None => {}
            Tamper::BothComponents => {
                e[3].first += Fp::ONE;
                e[3].second += Fp::from_u64(7);
            }
            Tamper::FirstOfElement0 => e[0].first += Fp::ONE,
        }
        v["endpoint"] = json!(encode_vector(&e));
    }
    if let Some(x) = &r.extra {
        let x = if b.lie_extra {
            b"forged".to_vec()
        } else {
            x.clone()
        };
        v["extra"] = json!(hex::encode(x));
    }
    if let Some(t) = r.expires_at_ms {
        v["expires_at_ms"] = json!(t);
    }
    v
}

async fn answer(s: &Me, id: &str, wait: Duration, is_post: bool) -> Response {
    let until = Instant::now() + wait;
    let behaviour = s.shared.behaviour(s.me);
    loop {
        {
            let mut st = s.shared.lock();
            settle(&mut st, id);
            let polls = st.gets.get(&(s.me, id.to_owned())).copied().unwrap_or(0);
            let outcome = st.requests.get(id).and_then(|r| r.outcome.clone());
            let answer_key = st
                .requests
                .get(id)
                .map(|r| r.answer_keys[s.me])
                .unwrap_or_default();
            match outcome {
                Some(Outcome::Done { seq, results }) => {
                    if behaviour.error_500_when_done {
                        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "boom (test)");
                    }
                    if is_post && behaviour.pending_polls > 0
                        || !is_post && polls <= behaviour.pending_polls
                    {
                        return (
                            StatusCode::ACCEPTED,
                            Json(json!({"request_id": id, "status": "pending", "seq": seq})),
                        )
                            .into_response();
                    }
                    let clear = result_json(&results[s.me], &behaviour).to_string();
                    let key = sharecall_proto::seal::AnswerKey::from_bytes(answer_key);
                    let Ok(sealed) = key.seal(id, s.me as u8, clear.as_bytes(), &mut OsRng) else {
                        return error(StatusCode::INTERNAL_SERVER_ERROR, "seal", "too long");
                    };
                    return Json(json!({
                        "request_id": id,
                        "status": "done",
                        "seq": seq,
                        "sealed_result": {
                            "nonce": hex::encode(sealed.nonce),
                            "ciphertext": hex::encode(&sealed.ciphertext),
                        },
                    }))
                    .into_response();
                }
                Some(Outcome::Aborted(reason)) => {
                    return error(
                        StatusCode::CONFLICT,
                        "aborted",
                        format!("request {id} was aborted: {reason}"),
                    );
                }
                None if Instant::now() >= until => {
                    return (
                        StatusCode::ACCEPTED,
                        Json(json!({"request_id": id, "status": "pending"})),
                    )
                        .into_response();
                }
                None => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
