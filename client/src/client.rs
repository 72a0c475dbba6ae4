//! The REST client: talks to all three providers (docs/API.md).
//!
//! A request is shared locally, one part per provider; the parts are hashed
//! with blake3, the hashes signed together with the request id, kind,
//! account, timestamp and window ([`SignedFields`]), and the three parts
//! are posted concurrently. A provider that answers `202 pending` is polled
//! (`GET /v1/requests/{id}`) with backoff until it is done or the timeout
//! passes. Transport failures are retried with the same request id and the
//! byte-identical signed body, so a retry can never execute twice.
//!
//! Answers are checked against each other: result codes must agree (a
//! disagreement names the odd provider), endpoint shares are reconstructed
//! with every component compared between its two holders, and a provider
//! that answers `unavailable` or fails is left out: the answer then comes
//! from the other two, and the result says so ([`Degraded`]).

use std::fmt;
use std::ops::RangeInclusive;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::OsRng;
use rand::RngCore;
use reqwest::{Method, Url};
use serde::Serialize;
use sharecall_proto::encoding::{Endpoint, Pseudonym, ENDPOINT_ELEMENTS};
use sharecall_proto::request::{enroll_message, SignedFields};
use sharecall_proto::sharing::{holders_of, reconstruct_two};
use sharecall_proto::{Fp, PartyId, Share, ShareError};
use tokio::sync::watch;

use crate::account::AccountKey;
use crate::parts::{
    clip, entry_parts, import_parts, parse_answer, parse_error, query_parts, short, Answer,
    ImportEntry, Kind, Part, PartError, RequestResult, ResultCode,
};
use crate::registration::{reconstruct_endpoint, share_entry, share_query, ReconstructError};

/// Default time one operation may take, polling included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default window: how long the providers wait for all three parts.
pub const DEFAULT_WINDOW_MS: u64 = 10_000;

/// Windows the providers accept, in milliseconds.
pub const WINDOW_MS_RANGE: RangeInclusive<u64> = 100..=600_000;

/// Longest request id.
pub const REQUEST_ID_MAX_LEN: usize = 128;

/// Longest single HTTP exchange (a provider waits a few seconds for a
/// request to execute before it answers `202`).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest time to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Consecutive transport failures (or 502/503/504) before a provider is
/// given up as unreachable.
const TRANSIENT_ATTEMPTS: u32 = 5;
/// First delay after a transport failure; doubles each time.
const RETRY_START: Duration = Duration::from_millis(100);
/// First and longest delay between polls.
const POLL_START: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(1);
/// Wait after a `429` without a usable `Retry-After`.
const RATE_LIMIT_DEFAULT: Duration = Duration::from_secs(1);
/// Longest provider message quoted in an error.
const MESSAGE_MAX: usize = 300;
/// Largest answer body read from a provider.
const MAX_BODY: usize = 1 << 20;

/// What went wrong with one provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No HTTP answer (connection refused, reset, timed out, TLS failure…),
    /// or only `502/503/504`, on every attempt.
    #[error("unreachable after {attempts} attempts: {detail}")]
    Unreachable {
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// The provider answered with an error status.
    #[error("HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        /// HTTP status.
        status: u16,
        /// The provider's error code, if the body was a sharecall error.
        code: Option<String>,
        /// The provider's message (or the start of the body).
        message: String,
    },
    /// `409 aborted`: the window passed before all parts arrived, or the
    /// providers were given different requests under one id.
    #[error("HTTP 409 aborted: {message}")]
    Aborted {
        /// The provider's message (names the missing provider).
        message: String,
    },
    /// A 2xx answer that does not follow the API.
    #[error("answer does not follow the API (HTTP {status}): {detail}")]
    BadAnswer {
        /// HTTP status.
        status: u16,
        /// What is wrong.
        detail: String,
    },
    /// No final answer before the client's timeout.
    #[error("no final answer within {} (last: {last})", humantime::format_duration(*waited))]
    Timeout {
        /// How long the client waited.
        waited: Duration,
        /// The last thing the provider said (or why it could not).
        last: String,
    },
    /// The provider answered `unavailable`: it caught up from its peers'
    /// transcript and holds no answer share.
    #[error("answered `unavailable` (caught up from its peers; it has no answer share)")]
    Unavailable,
    /// The client stopped waiting because another provider refused the
    /// request (so it cannot execute).
    #[error("not waited for after {because} refused the request (last: {last})")]
    Cancelled {
        /// The provider whose refusal ended the request.
        because: PartyId,
        /// The last thing this provider said (or why it could not).
        last: String,
    },
}

impl ProviderError {
    /// Whether this refusal means the request can never execute (the part
    /// was refused, or the request is aborted everywhere).
    fn is_final_refusal(&self) -> bool {
        match self {
            ProviderError::Refused { status, .. } => (400..500).contains(status),
            ProviderError::Aborted { .. } => true,
            _ => false,
        }
    }

    /// Ordering for reports: root causes first, knock-on effects last.
    fn rank(&self) -> u8 {
        match self {
            ProviderError::Refused { .. } | ProviderError::BadAnswer { .. } => 0,
            ProviderError::Unreachable { .. } => 1,
            ProviderError::Aborted { .. } => 2,
            ProviderError::Unavailable => 3,
            ProviderError::Timeout { .. } => 4,
            ProviderError::Cancelled { .. } => 5,
        }
    }
}

/// A failure at one named provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    /// Which provider.
    pub provider: PartyId,
    /// Its base URL.
    pub url: String,
    /// What went wrong.
    pub error: ProviderError,
}

impl fmt::Display for ProviderFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.provider, self.url, self.error)
    }
}

fn list(failures: &[ProviderFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn names(ps: &[PartyId]) -> String {
    match ps {
        [] => "none".into(),
        [a] => a.to_string(),
        [init @ .., last] => format!(
            "{} and {last}",
            init.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Everything that can go wrong talking to the providers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad client configuration (provider URLs, window, request id).
    #[error("{0}")]
    Config(String),
    /// A part or a value going into one is not valid.
    #[error(transparent)]
    Part(#[from] PartError),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
    /// Fewer than two providers gave a usable answer (or one refused the
    /// request, so it cannot execute).
    #[error("{kind} request {request_id} failed: {}", list(failures))]
    Failed {
        /// The request id (retry with the same id to reuse its outcome).
        request_id: String,
        /// The request kind.
        kind: Kind,
        /// Every provider that did not answer usably, root causes first.
        failures: Vec<ProviderFailure>,
    },
    /// The providers' answers disagree.
    #[error("{}", describe_disagreement(request_id, what, *odd, values))]
    Disagreement {
        /// The request id.
        request_id: String,
        /// What they disagree about (`result code`, `extra data`).
        what: &'static str,
        /// The provider that differs from the two others, if one does.
        odd: Option<PartyId>,
        /// Each answering provider's value.
        values: Vec<(PartyId, String)>,
    },
    /// Two providers disagree about a component of the endpoint shares they
    /// both hold.
    #[error("request {request_id}: {detail}")]
    Inconsistent {
        /// The request id.
        request_id: String,
        /// The provider whose share is wrong, when the answers single it
        /// out.
        suspect: Option<PartyId>,
        /// What disagrees, and why the suspect is named.
        detail: String,
    },
    /// The providers' endpoint shares cannot be turned into an endpoint.
    #[error("request {request_id}: cannot reconstruct the endpoint: {source}")]
    Reconstruct {
        /// The request id.
        request_id: String,
        /// Which element and component, and which provider is suspect.
        source: ReconstructError,
    },
    /// The endpoint shares of the two answering providers do not fit
    /// together.
    #[error(
        "request {request_id}: cannot reconstruct the endpoint from {} and {} \
         ({missing} did not answer): {reason}",
        providers[0], providers[1]
    )]
    ReconstructTwo {
        /// The request id.
        request_id: String,
        /// The two providers whose shares were used.
        providers: [PartyId; 2],
        /// The provider left out.
        missing: PartyId,
        /// What did not fit.
        reason: String,
    },
    /// Enrollment failed at one or more providers (it may have succeeded at
    /// others; enrolling again is harmless).
    #[error("enrollment failed: {}{}", list(failures),
        if enrolled.is_empty() { String::new() } else { format!(" (enrolled at {})", names(enrolled)) })]
    Enroll {
        /// Providers where the account is enrolled.
        enrolled: Vec<PartyId>,
        /// Providers where enrollment failed.
        failures: Vec<ProviderFailure>,
    },
}

fn describe_disagreement(
    request_id: &str,
    what: &str,
    odd: Option<PartyId>,
    values: &[(PartyId, String)],
) -> String {
    let said = values
        .iter()
        .map(|(p, v)| format!("{p} answered {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    match odd {
        Some(p) => format!(
            "request {request_id}: providers disagree about the {what} ({said}); \
             {p} is the odd one out"
        ),
        None => format!(
            "request {request_id}: providers disagree about the {what} ({said}); \
             cannot tell which one is wrong"
        ),
    }
}

impl Error {
    /// The provider this error points at, when it points at exactly one:
    /// the odd one in a disagreement, the suspect of an inconsistent share,
    /// or the only provider that failed.
    pub fn blamed(&self) -> Option<PartyId> {
        match self {
            Error::Disagreement { odd, .. } => *odd,
            Error::Inconsistent { suspect, .. } => *suspect,
            Error::Reconstruct { source, .. } => match source {
                ReconstructError::WrongShape { provider, .. } => Some(*provider),
                ReconstructError::Inconsistent {
                    source: ShareError::Inconsistent { suspect, .. },
                    ..
                } => *suspect,
                _ => None,
            },
            Error::Failed { failures, .. } | Error::Enroll { failures, .. } => {
                let mut root = failures
                    .iter()
                    .filter(|f| !matches!(f.error, ProviderError::Cancelled { .. }));
                match (root.next(), root.next()) {
                    (Some(f), None) => Some(f.provider),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// One provider's final reply to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderReply {
    /// Executed (`status: done`), with this provider's result.
    Done {
        /// Position in the providers' common order.
        seq: Option<u64>,
        /// The result.
        result: RequestResult,
    },
    /// No usable answer.
    Failed(ProviderError),
}

/// A provider left out of an answer, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    /// The provider whose answer is missing.
    pub missing: PartyId,
    /// Why it is missing.
    pub reason: ProviderError,
    /// The two providers the answer comes from.
    pub from: [PartyId; 2],
}

impl fmt::Display for Degraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "answer from {} and {} only; {} {}",
            self.from[0], self.from[1], self.missing, self.reason
        )
    }
}

/// The checked outcome of a request at all three providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The request id.
    pub request_id: String,
    /// The request kind.
    pub kind: Kind,
    /// The result code the answering providers agree on (never
    /// `unavailable`).
    pub code: ResultCode,
    /// Each provider's reply, indexed by provider.
    pub replies: [ProviderReply; 3],
    /// Set when the outcome rests on two providers only.
    pub degraded: Option<Degraded>,
}

impl Submission {
    /// The providers whose results make up the outcome (two or three).
    pub fn used(&self) -> Vec<PartyId> {
        PartyId::ALL
            .into_iter()
            .filter(|p| self.degraded.as_ref().is_none_or(|d| d.missing != *p))
            .collect()
    }

    fn result(&self, p: PartyId) -> Option<&RequestResult> {
        match &self.replies[p.index()] {
            ProviderReply::Done { result, .. } => Some(result),
            ProviderReply::Failed(_) => None,
        }
    }
}

/// The outcome of a `register`, `update` or `delete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The request id.
    pub request_id: String,
    /// The agreed result code (`ok`, `exists`, `not_found`, `forbidden`).
    pub code: ResultCode,
    /// Set when only two providers answered.
    pub degraded: Option<Degraded>,
}

/// The outcome of a `resolve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The request id.
    pub request_id: String,
    /// `ok` or `not_found`.
    pub code: ResultCode,
    /// The reconstructed endpoint (when `ok`).
    pub endpoint: Option<Endpoint>,
    /// The plain extra data stored with the entry (when `ok` and present).
    pub extra: Option<Vec<u8>>,
    /// When the entry expires, ms since the Unix epoch (when `ok`; the
    /// answering providers must agree on it).
    pub expires_at_ms: Option<u64>,
    /// Set when the endpoint was reconstructed from two providers only.
    pub degraded: Option<Degraded>,
}

/// The account's state at one provider after [`Client::enroll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollStatus {
    /// Newly enrolled (`201`).
    Enrolled,
    /// It was enrolled before (`200`).
    AlreadyEnrolled,
}

/// A request, shared, hashed and signed: ready to send, and to resend
/// byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    request_id: String,
    kind: Kind,
    account: [u8; 32],
    timestamp_ms: u64,
    window_ms: u64,
    parts: [Vec<u8>; 3],
    part_hashes: [[u8; 32]; 3],
    signature: [u8; 64],
    bodies: [Vec<u8>; 3],
}

#[derive(Serialize)]
struct RequestBody<'a> {
    request_id: &'a str,
    kind: &'a str,
    account: String,
    timestamp_ms: u64,
    window_ms: u64,
    part_hashes: [String; 3],
    signature: String,
    part: String,
}

/// Checks a request id: 1..=128 of `[A-Za-z0-9._:-]`, and not `.` or `..`
/// (which would be path segments in `GET /v1/requests/{id}`).
pub fn check_request_id(id: &str) -> Result<(), Error> {
    let charset_ok = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    if id.is_empty() || id.len() > REQUEST_ID_MAX_LEN || !charset_ok {
        return Err(Error::Config(
            "a request id is 1 to 128 characters from A-Z a-z 0-9 . _ : -".into(),
        ));
    }
    if id == "." || id == ".." {
        return Err(Error::Config(
            "a request id cannot be \".\" or \"..\"".into(),
        ));
    }
    Ok(())
}

/// A fresh random request id (`c-` and 32 hex digits).
pub fn new_request_id() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    format!("c-{}", hex::encode(b))
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn check_window(window_ms: u64) -> Result<(), Error> {
    if !WINDOW_MS_RANGE.contains(&window_ms) {
        return Err(Error::Config(format!(
            "the window must be 100 ms to 600 s, got {window_ms} ms"
        )));
    }
    Ok(())
}

impl SignedRequest {
    /// Hashes the three parts, signs [`SignedFields`] with `key` and builds
    /// the three `POST /v1/requests` bodies. The parts are checked against
    /// `kind` first.
    pub fn new(
        key: &AccountKey,
        request_id: &str,
        kind: Kind,
        parts: &[Part; 3],
        timestamp_ms: u64,
        window_ms: u64,
    ) -> Result<SignedRequest, Error> {
        for part in parts {
            part.validate(kind)?;
        }
        SignedRequest::from_part_bytes(
            key,
            request_id,
            kind,
            parts.each_ref().map(Part::to_bytes),
            timestamp_ms,
            window_ms,
        )
    }

    /// Like [`SignedRequest::new`], from the exact part bytes (an `import`'s
    /// parts from [`import_parts`]); the bytes are not checked.
    pub fn from_part_bytes(
        key: &AccountKey,
        request_id: &str,
        kind: Kind,
        parts: [Vec<u8>; 3],
        timestamp_ms: u64,
        window_ms: u64,
    ) -> Result<SignedRequest, Error> {
        check_request_id(request_id)?;
        check_window(window_ms)?;
        let account = key.public_key();
        let part_hashes = parts.each_ref().map(|p| *blake3::hash(p).as_bytes());
        let message = SignedFields {
            request_id,
            kind: kind.as_str(),
            account: &account,
            timestamp_ms,
            window_ms,
            part_hashes: &part_hashes,
        }
        .message();
        let signature = key.sign(&message);
        let hashes_hex = part_hashes.map(hex::encode);
        let bodies = parts.each_ref().map(|part| {
            let body = RequestBody {
                request_id,
                kind: kind.as_str(),
                account: hex::encode(account),
                timestamp_ms,
                window_ms,
                part_hashes: hashes_hex.clone(),
                signature: hex::encode(signature),
                part: hex::encode(part),
            };
            // A struct of strings and integers always serialises.
            serde_json::to_vec(&body).unwrap_or_default()
        });
        Ok(SignedRequest {
            request_id: request_id.to_owned(),
            kind,
            account,
            timestamp_ms,
            window_ms,
            parts,
            part_hashes,
            signature,
            bodies,
        })
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The request kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The signing account's public key.
    pub fn account(&self) -> &[u8; 32] {
        &self.account
    }

    /// The signed timestamp.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The signed window.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// The part bytes for provider `p` (what `part_hashes[p]` hashes).
    pub fn part(&self, p: PartyId) -> &[u8] {
        &self.parts[p.index()]
    }

    /// blake3 of each part, in provider order.
    pub fn part_hashes(&self) -> &[[u8; 32]; 3] {
        &self.part_hashes
    }

    /// The ed25519 signature over [`SignedRequest::signed_message`].
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The exact bytes signed: `SignedFields { .. }.message()`.
    pub fn signed_message(&self) -> Vec<u8> {
        SignedFields {
            request_id: &self.request_id,
            kind: self.kind.as_str(),
            account: &self.account,
            timestamp_ms: self.timestamp_ms,
            window_ms: self.window_ms,
            part_hashes: &self.part_hashes,
        }
        .message()
    }

    /// The JSON body posted to provider `p`.
    pub fn body(&self, p: PartyId) -> &[u8] {
        &self.bodies[p.index()]
    }
}

/// Parses a comma-separated list of exactly three provider base URLs
/// (`http://` or `https://`), in provider order P0, P1, P2.
pub fn parse_provider_list(list: &str) -> Result<[String; 3], Error> {
    let urls: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let [a, b, c] = urls.as_slice() else {
        return Err(Error::Config(format!(
            "expected three provider URLs (P0,P1,P2), got {}",
            urls.len()
        )));
    };
    Ok([check_url(0, a)?, check_url(1, b)?, check_url(2, c)?])
}

fn check_url(i: usize, s: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::Config(format!("provider URL {} ({:?}): {why}", i, short(s)));
    let url = Url::parse(s).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// An HTTP answer as read.
struct Exchange {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl Exchange {
    fn refused(&self) -> ProviderError {
        match parse_error(&self.body) {
            Some(e) if e.code == "aborted" => ProviderError::Aborted {
                message: clip(&e.message, MESSAGE_MAX),
            },
            Some(e) => ProviderError::Refused {
                status: self.status,
                code: Some(short(&e.code)),
                message: clip(&e.message, MESSAGE_MAX),
            },
            None => ProviderError::Refused {
                status: self.status,
                code: None,
                message: if self.body.is_empty() {
                    "(empty body)".into()
                } else {
                    clip(&String::from_utf8_lossy(&self.body), MESSAGE_MAX)
                },
            },
        }
    }
}

/// The deepest cause of a transport error ("Connection refused (os error
/// 111)" rather than "error sending request").
fn transport_detail(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A client of the three providers, acting for one account.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    providers: [String; 3],
    key: AccountKey,
    timeout: Duration,
    window_ms: u64,
}

impl Client {
    /// A client of the providers at `providers` (base URLs in order P0, P1,
    /// P2) acting for `key`, with [`DEFAULT_TIMEOUT`] and
    /// [`DEFAULT_WINDOW_MS`].
    pub fn new<S: AsRef<str>>(providers: &[S], key: AccountKey) -> Result<Client, Error> {
        let [a, b, c] = providers else {
            return Err(Error::Config(format!(
                "expected three provider URLs (P0,P1,P2), got {}",
                providers.len()
            )));
        };
        let providers = [
            check_url(0, a.as_ref())?,
            check_url(1, b.as_ref())?,
            check_url(2, c.as_ref())?,
        ];
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("sharecall-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Http(e.to_string()))?;
        Ok(Client {
            http,
            providers,
            key,
            timeout: DEFAULT_TIMEOUT,
            window_ms: DEFAULT_WINDOW_MS,
        })
    }

    /// Sets how long one operation may take, polling and retries included.
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Sets the window (100 ..= 600000 ms) the providers wait for all parts.
    pub fn with_window_ms(mut self, window_ms: u64) -> Result<Client, Error> {
        check_window(window_ms)?;
        self.window_ms = window_ms;
        Ok(self)
    }

    /// The providers' base URLs, in order.
    pub fn providers(&self) -> &[String; 3] {
        &self.providers
    }

    /// The account key.
    pub fn account(&self) -> &AccountKey {
        &self.key
    }

    /// The operation timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The window in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    fn failure(&self, provider: PartyId, error: ProviderError) -> ProviderFailure {
        ProviderFailure {
            provider,
            url: self.providers[provider.index()].clone(),
            error,
        }
    }

    /// Enrolls the account with all three providers (`POST /v1/accounts`,
    /// concurrently). `token` is sent to every provider when given.
    pub async fn enroll(&self, token: Option<&str>) -> Result<[EnrollStatus; 3], Error> {
        let timestamp_ms = now_ms();
        let account = self.key.public_key();
        let signature = self.key.sign(&enroll_message(&account, timestamp_ms));
        let mut body = serde_json::json!({
            "account": hex::encode(account),
            "timestamp_ms": timestamp_ms,
            "signature": hex::encode(signature),
        });
        if let (Some(t), Some(obj)) = (token, body.as_object_mut()) {
            obj.insert("token".into(), t.into());
        }
        let body = body.to_string().into_bytes();
        let deadline = Instant::now() + self.timeout;
        let (a, b, c) = tokio::join!(
            self.enroll_one(PartyId::ALL[0], &body, deadline),
            self.enroll_one(PartyId::ALL[1], &body, deadline),
            self.enroll_one(PartyId::ALL[2], &body, deadline),
        );
        let results = [a, b, c];
        let mut enrolled = Vec::new();
        let mut failures = Vec::new();
        let mut statuses = [EnrollStatus::Enrolled; 3];
        for (p, r) in PartyId::ALL.into_iter().zip(results) {
            match r {
                Ok(s) => {
                    statuses[p.index()] = s;
                    enrolled.push(p);
                }
                Err(e) => failures.push(self.failure(p, e)),
            }
        }
        if failures.is_empty() {
            Ok(statuses)
        } else {
            Err(Error::Enroll { enrolled, failures })
        }
    }

    async fn enroll_one(
        &self,
        p: PartyId,
        body: &[u8],
        deadline: Instant,
    ) -> Result<EnrollStatus, ProviderError> {
        let url = format!("{}/v1/accounts", self.providers[p.index()]);
        let started = Instant::now();
        let last = Mutex::new(String::from("no answer yet"));
        let x = self
            .call(Method::POST, &url, Some(body), deadline, started, &last)
            .await?;
        let status = match x.status {
            201 => EnrollStatus::Enrolled,
            200 => EnrollStatus::AlreadyEnrolled,
            _ => return Err(x.refused()),
        };
        let bad = |detail: String| ProviderError::BadAnswer {
            status: x.status,
            detail,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&x.body).map_err(|e| bad(format!("answer is not JSON: {e}")))?;
        if v.get("enrolled").and_then(serde_json::Value::as_bool) != Some(true) {
            return Err(bad("answer lacks \"enrolled\": true".into()));
        }
        let ours = self.key.account_hex();
        match v.get("account").and_then(serde_json::Value::as_str) {
            Some(a) if a.eq_ignore_ascii_case(&ours) => Ok(status),
            _ => Err(bad("answer is about a different account".into())),
        }
    }

    /// Registers `pseudonym` → `endpoint` for `ttl` (whole seconds, 1 s to
    /// 365 days) with optional plain `extra` data (at most 1024 bytes; the
    /// providers see it).
    pub async fn register(
        &self,
        pseudonym: &Pseudonym,
        endpoint: &Endpoint,
        ttl: Duration,
        extra: Option<&[u8]>,
    ) -> Result<Outcome, Error> {
        let parts = entry_parts(share_entry(pseudonym, endpoint, &mut OsRng), ttl, extra)?;
        Ok(outcome(self.submit(Kind::Register, parts).await?))
    }

    /// Replaces the endpoint (and ttl, extra) of a pseudonym this account
    /// registered.
    pub async fn update(
        &self,
        pseudonym: &Pseudonym,
        endpoint: &Endpoint,
        ttl: Duration,
        extra: Option<&[u8]>,
    ) -> Result<Outcome, Error> {
        let parts = entry_parts(share_entry(pseudonym, endpoint, &mut OsRng), ttl, extra)?;
        Ok(outcome(self.submit(Kind::Update, parts).await?))
    }

    /// Removes a pseudonym this account registered.
    pub async fn delete(&self, pseudonym: &Pseudonym) -> Result<Outcome, Error> {
        let parts = query_parts(share_query(pseudonym, &mut OsRng));
        Ok(outcome(self.submit(Kind::Delete, parts).await?))
    }

    /// Looks up the endpoint of `pseudonym` and reconstructs it from the
    /// providers' shares, checking them against each other.
    pub async fn resolve(&self, pseudonym: &Pseudonym) -> Result<Resolution, Error> {
        let parts = query_parts(share_query(pseudonym, &mut OsRng));
        let submission = self.submit(Kind::Resolve, parts).await?;
        resolution(submission)
    }

    /// Signs `parts` as a new request of `kind` (fresh id, current time,
    /// this client's window) without sending it.
    pub fn prepare(&self, kind: Kind, parts: [Part; 3]) -> Result<SignedRequest, Error> {
        SignedRequest::new(
            &self.key,
            &new_request_id(),
            kind,
            &parts,
            now_ms(),
            self.window_ms,
        )
    }

    /// Shares `rows` locally and signs them as one `import` request (fresh
    /// id, current time, this client's window) without sending it. Send it
    /// with [`Client::send`] (again, to retry) and read the answer with
    /// [`import_outcome`].
    pub fn prepare_import(&self, rows: &[ImportRow]) -> Result<SignedRequest, Error> {
        // Rows go in key order: a tree table then checks each neighbouring
        // pair once instead of comparing every pair of new keys.
        let mut sorted: Vec<&ImportRow> = rows.iter().collect();
        sorted.sort_by_key(|r| r.pseudonym.key());
        let entries: Vec<ImportEntry> = sorted
            .into_iter()
            .map(|r| ImportEntry {
                shares: share_entry(&r.pseudonym, &r.endpoint, &mut OsRng),
                ttl: r.ttl,
                extra: r.extra.clone(),
                owner: r.owner,
            })
            .collect();
        let parts = import_parts(&entries)?;
        SignedRequest::from_part_bytes(
            &self.key,
            &new_request_id(),
            Kind::Import,
            parts,
            now_ms(),
            self.window_ms,
        )
    }

    /// Imports `rows` (1 to 2048) in one `import` request: each entry is
    /// registered for its owner unless its pseudonym is registered and
    /// live. Only accounts the providers list as importers may import.
    /// The three providers must agree on the imported and skipped counts.
    pub async fn import(&self, rows: &[ImportRow]) -> Result<ImportOutcome, Error> {
        let request = self.prepare_import(rows)?;
        import_outcome(self.send(&request).await?)
    }

    /// Signs and sends a request: the lower-level form of the methods above.
    pub async fn submit(&self, kind: Kind, parts: [Part; 3]) -> Result<Submission, Error> {
        let request = self.prepare(kind, parts)?;
        self.send(&request).await
    }

    /// Sends a signed request to the three providers concurrently, waits for
    /// their results and checks that they agree. Sending the same
    /// [`SignedRequest`] again is safe: providers answer a repeated request
    /// from its recorded outcome.
    pub async fn send(&self, request: &SignedRequest) -> Result<Submission, Error> {
        let deadline = Instant::now() + self.timeout;
        let (cancel, _keep) = watch::channel(None::<PartyId>);
        let cancel = &cancel;
        let run = |p: PartyId| async move {
            let mut rx = cancel.subscribe();
            let last = Mutex::new(String::from("no answer yet"));
            let reply = tokio::select! {
                r = self.drive(p, request, deadline, &last) => r,
                Some(because) = wait_cancelled(&mut rx) => {
                    ProviderReply::Failed(ProviderError::Cancelled { because, last: get(&last) })
                }
            };
            if let ProviderReply::Failed(e) = &reply {
                if e.is_final_refusal() {
                    cancel.send_if_modified(|v| {
                        let first = v.is_none();
                        if first {
                            *v = Some(p);
                        }
                        first
                    });
                }
            }
            reply
        };
        let (a, b, c) = tokio::join!(
            run(PartyId::ALL[0]),
            run(PartyId::ALL[1]),
            run(PartyId::ALL[2])
        );
        decide(
            request.request_id(),
            request.kind(),
            &self.providers,
            [a, b, c],
        )
    }

    /// One provider's side of a request: post the part, poll while pending.
    async fn drive(
        &self,
        p: PartyId,
        request: &SignedRequest,
        deadline: Instant,
        last: &Mutex<String>,
    ) -> ProviderReply {
        let base = &self.providers[p.index()];
        let post_url = format!("{base}/v1/requests");
        let get_url = format!("{base}/v1/requests/{}", request.request_id());
        let body = request.body(p);
        let started = Instant::now();
        let mut posting = true;
        let mut poll_delay = POLL_START;
        loop {
            let x = if posting {
                self.call(Method::POST, &post_url, Some(body), deadline, started, last)
                    .await
            } else {
                self.call(Method::GET, &get_url, None, deadline, started, last)
                    .await
            };
            let x = match x {
                Ok(x) => x,
                Err(e) => return ProviderReply::Failed(e),
            };
            match x.status {
                200 | 202 => match parse_answer(request.kind(), &x.body) {
                    Err(e) => {
                        return ProviderReply::Failed(ProviderError::BadAnswer {
                            status: x.status,
                            detail: e.0,
                        })
                    }
                    Ok(a) if a.request_id() != request.request_id() => {
                        return ProviderReply::Failed(ProviderError::BadAnswer {
                            status: x.status,
                            detail: format!("answer is about request {:?}", short(a.request_id())),
                        })
                    }
                    Ok(Answer::Done { seq, result, .. }) => {
                        return ProviderReply::Done { seq, result }
                    }
                    Ok(Answer::Pending { seq, .. }) => {
                        posting = false;
                        set(
                            last,
                            match seq {
                                Some(s) => format!("pending, ordered as seq {s}"),
                                None => "pending, not yet ordered".into(),
                            },
                        );
                    }
                },
                // The provider does not know the request (it never got or
                // lost the part): send the same signed part again.
                404 if !posting => {
                    posting = true;
                    set(
                        last,
                        "the provider did not know the request; sending the part again".into(),
                    );
                }
                _ => return ProviderReply::Failed(x.refused()),
            }
            let now = Instant::now();
            if now >= deadline {
                return ProviderReply::Failed(ProviderError::Timeout {
                    waited: started.elapsed(),
                    last: get(last),
                });
            }
            tokio::time::sleep_until((now + poll_delay).min(deadline).into()).await;
            poll_delay = (poll_delay * 2).min(POLL_MAX);
        }
    }

    /// One HTTP exchange with retries of transport failures, `429` (after
    /// `Retry-After`) and `502/503/504`, always with the same body. Any
    /// other answer is returned for the caller to interpret.
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        deadline: Instant,
        started: Instant,
        last: &Mutex<String>,
    ) -> Result<Exchange, ProviderError> {
        let mut failures = 0u32;
        loop {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() {
                return Err(ProviderError::Timeout {
                    waited: started.elapsed(),
                    last: get(last),
                });
            }
            let delay = match self
                .exchange(method.clone(), url, body, remaining.min(ATTEMPT_TIMEOUT))
                .await
            {
                Err(detail) => {
                    failures += 1;
                    set(last, format!("unreachable: {detail}"));
                    if failures >= TRANSIENT_ATTEMPTS {
                        return Err(ProviderError::Unreachable {
                            attempts: failures,
                            detail,
                        });
                    }
                    RETRY_START * 2u32.pow(failures - 1)
                }
                Ok(x) if x.status == 429 => {
                    set(last, "rate limited (429)".into());
                    x.retry_after.unwrap_or(RATE_LIMIT_DEFAULT)
                }
                Ok(x) if matches!(x.status, 502..=504) => {
                    failures += 1;
                    let refused = x.refused();
                    set(last, refused.to_string());
                    if failures >= TRANSIENT_ATTEMPTS {
                        return Err(refused);
                    }
                    RETRY_START * 2u32.pow(failures - 1)
                }
                Ok(x) => return Ok(x),
            };
            tracing::debug!(url, ?delay, last = %get(last), "retrying");
            tokio::time::sleep_until((Instant::now() + delay).min(deadline).into()).await;
        }
    }

    /// One HTTP request; `Err` is a transport failure.
    async fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Exchange, String> {
        let mut rb = self.http.request(method, url).timeout(timeout);
        if let Some(b) = body {
            rb = rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_vec());
        }
        let mut resp = rb.send().await.map_err(|e| transport_detail(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_detail(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("answer body larger than {MAX_BODY} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Exchange {
            status,
            retry_after,
            body,
        })
    }
}

fn set(cell: &Mutex<String>, value: String) {
    *cell.lock().unwrap_or_else(PoisonError::into_inner) = value;
}

fn get(cell: &Mutex<String>) -> String {
    cell.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

async fn wait_cancelled(rx: &mut watch::Receiver<Option<PartyId>>) -> Option<PartyId> {
    rx.wait_for(Option::is_some).await.ok().and_then(|v| *v)
}

/// The common value of `values`, or a [`Error::Disagreement`] naming the
/// odd provider when one differs from two others that agree.
fn agree<T: PartialEq + Clone>(
    request_id: &str,
    what: &'static str,
    values: &[(PartyId, T)],
    show: impl Fn(&T) -> String,
) -> Result<T, Error> {
    let Some((_, first)) = values.first() else {
        return Err(Error::Config(format!("no {what} to compare")));
    };
    if values.iter().all(|(_, v)| v == first) {
        return Ok(first.clone());
    }
    Err(Error::Disagreement {
        request_id: request_id.to_owned(),
        what,
        odd: odd_one_out(values),
        values: values.iter().map(|(p, v)| (*p, show(v))).collect(),
    })
}

/// Of three values, the party whose value differs from the two others'
/// (which agree); `None` with fewer than three values or no such party.
fn odd_one_out<T: PartialEq>(values: &[(PartyId, T)]) -> Option<PartyId> {
    let [(pa, a), (pb, b), (pc, c)] = values else {
        return None;
    };
    if b == c && a != b {
        Some(*pa)
    } else if a == c && b != a {
        Some(*pb)
    } else if a == b && c != a {
        Some(*pc)
    } else {
        None
    }
}

/// One entry to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The pseudonym.
    pub pseudonym: Pseudonym,
    /// Its endpoint.
    pub endpoint: Endpoint,
    /// Lifetime (whole seconds, 1 s to 365 days).
    pub ttl: Duration,
    /// The ed25519 public key of the account that will own the entry.
    pub owner: [u8; 32],
    /// Plain extra data (at most 1024 bytes; the providers see it).
    pub extra: Option<Vec<u8>>,
}

/// The outcome of an `import`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The request id.
    pub request_id: String,
    /// The agreed result code.
    pub code: ResultCode,
    /// Rows registered.
    pub imported: u64,
    /// Rows whose pseudonym was already registered and live.
    pub skipped: u64,
    /// Set when only two providers answered.
    pub degraded: Option<Degraded>,
}

/// Turns a checked `import` submission into its counts, which the
/// answering providers must agree on.
pub fn import_outcome(s: Submission) -> Result<ImportOutcome, Error> {
    let counts: Vec<(PartyId, Option<(u64, u64)>)> = s
        .used()
        .into_iter()
        .filter_map(|p| s.result(p).map(|r| (p, r.imported)))
        .collect();
    let counts = agree(
        &s.request_id,
        "imported/skipped counts",
        &counts,
        |c| match c {
            Some((i, k)) => format!("imported {i}, skipped {k}"),
            None => "no counts".into(),
        },
    )?;
    let (imported, skipped) = match (s.code, counts) {
        (_, Some(c)) => c,
        (ResultCode::Ok, None) => {
            return Err(Error::Config(format!(
                "request {}: an ok import answer has no counts",
                s.request_id
            )))
        }
        (_, None) => (0, 0),
    };
    Ok(ImportOutcome {
        request_id: s.request_id,
        code: s.code,
        imported,
        skipped,
        degraded: s.degraded,
    })
}

fn outcome(s: Submission) -> Outcome {
    Outcome {
        request_id: s.request_id,
        code: s.code,
        degraded: s.degraded,
    }
}

/// Checks the three providers' replies against each other: at least two
/// must have answered (not `unavailable`), and their result codes must
/// agree.
pub fn decide(
    request_id: &str,
    kind: Kind,
    urls: &[String; 3],
    replies: [ProviderReply; 3],
) -> Result<Submission, Error> {
    let mut answered: Vec<(PartyId, ResultCode)> = Vec::new();
    let mut missing: Vec<ProviderFailure> = Vec::new();
    for p in PartyId::ALL {
        let error = match &replies[p.index()] {
            ProviderReply::Done { result, .. } if result.code != ResultCode::Unavailable => {
                answered.push((p, result.code));
                continue;
            }
            ProviderReply::Done { .. } => ProviderError::Unavailable,
            ProviderReply::Failed(e) => e.clone(),
        };
        missing.push(ProviderFailure {
            provider: p,
            url: urls[p.index()].clone(),
            error,
        });
    }
    if answered.len() < 2 {
        missing.sort_by_key(|f| f.error.rank());
        return Err(Error::Failed {
            request_id: request_id.to_owned(),
            kind,
            failures: missing,
        });
    }
    let first = answered[0].1;
    if answered.iter().any(|(_, c)| *c != first) {
        let odd = odd_one_out(&answered);
        return Err(Error::Disagreement {
            request_id: request_id.to_owned(),
            what: "result code",
            odd,
            values: answered.iter().map(|(p, c)| (*p, c.to_string())).collect(),
        });
    }
    // The sequence number is the request's place in the common order: the
    // same at every provider.
    let seqs: Vec<(PartyId, Option<u64>)> = answered
        .iter()
        .map(|(p, _)| match &replies[p.index()] {
            ProviderReply::Done { seq, .. } => (*p, *seq),
            ProviderReply::Failed(_) => (*p, None),
        })
        .collect();
    agree(request_id, "sequence number", &seqs, |s| {
        s.map_or_else(|| "none".into(), |s| s.to_string())
    })?;
    let degraded = match (missing.pop(), answered.as_slice()) {
        (Some(f), [(a, _), (b, _)]) => Some(Degraded {
            missing: f.provider,
            reason: f.error,
            from: [*a, *b],
        }),
        _ => None,
    };
    Ok(Submission {
        request_id: request_id.to_owned(),
        kind,
        code: first,
        replies,
        degraded,
    })
}

/// Turns a checked `resolve` submission into the endpoint: reconstructed
/// from all three providers' shares (every component checked against both
/// holders), or from the two that answered.
pub fn resolution(s: Submission) -> Result<Resolution, Error> {
    let mut r = Resolution {
        request_id: s.request_id.clone(),
        code: s.code,
        endpoint: None,
        extra: None,
        expires_at_ms: None,
        degraded: s.degraded.clone(),
    };
    if s.code != ResultCode::Ok {
        return Ok(r);
    }
    let used: Vec<(PartyId, &RequestResult)> = s
        .used()
        .into_iter()
        .filter_map(|p| s.result(p).map(|res| (p, res)))
        .collect();
    let shares = |res: &RequestResult| res.endpoint.clone().unwrap_or_default();
    r.endpoint = Some(match used.as_slice() {
        [(_, a), (_, b), (_, c)] => {
            let parts = [shares(a), shares(b), shares(c)];
            match reconstruct_endpoint(&parts) {
                Ok(e) => e,
                Err(ReconstructError::Inconsistent { .. }) => {
                    let (suspect, detail) = blame(&parts);
                    return Err(Error::Inconsistent {
                        request_id: s.request_id.clone(),
                        suspect,
                        detail,
                    });
                }
                Err(source) => {
                    return Err(Error::Reconstruct {
                        request_id: s.request_id.clone(),
                        source,
                    })
                }
            }
        }
        [(pa, a), (pb, b)] => {
            let missing = s
                .degraded
                .as_ref()
                .map(|d| d.missing)
                .unwrap_or(PartyId::ALL[0]);
            reconstruct_from_two((*pa, &shares(a)), (*pb, &shares(b))).map_err(|reason| {
                Error::ReconstructTwo {
                    request_id: s.request_id.clone(),
                    providers: [*pa, *pb],
                    missing,
                    reason,
                }
            })?
        }
        _ => {
            return Err(Error::Failed {
                request_id: s.request_id.clone(),
                kind: s.kind,
                failures: Vec::new(),
            })
        }
    });
    // Extra data and expiry are public at every provider (the expiry comes
    // from the common order): the copies must agree.
    let extras: Vec<(PartyId, Option<Vec<u8>>)> = used
        .iter()
        .map(|(p, res)| (*p, res.extra.clone()))
        .collect();
    let extra = agree(&s.request_id, "extra data", &extras, |e| {
        e.as_ref()
            .map_or_else(|| "none".into(), |b| format!("{} bytes", b.len()))
    })?;
    // Providers store no extra data as empty extra data.
    r.extra = extra.filter(|x| !x.is_empty());
    let expiries: Vec<(PartyId, Option<u64>)> = used
        .iter()
        .map(|(p, res)| (*p, res.expires_at_ms))
        .collect();
    r.expires_at_ms = agree(&s.request_id, "expiry (expires_at_ms)", &expiries, |t| {
        t.map_or_else(|| "none".into(), |t| t.to_string())
    })?;
    Ok(r)
}

/// Works out which provider's endpoint shares are wrong, over all elements
/// (`parts` indexed by provider, [`ENDPOINT_ELEMENTS`] shares each).
///
/// Every component is held by two providers. With one provider lying (the
/// honest-majority assumption), every disagreeing component involves it:
///
/// * if components with different holder pairs disagree, the one provider
///   in all those pairs is named;
/// * if only one component disagrees, its two holders' copies are each
///   tried: the honest copy reconstructs the true endpoint, which always
///   decodes, so when exactly one copy gives a valid endpoint the holder of
///   the other copy is named. When both or neither decode, both holders are
///   reported and none is named.
pub fn blame(parts: &[Vec<Share>; 3]) -> (Option<PartyId>, String) {
    let get = |p: PartyId, e: usize| parts[p.index()].get(e).copied().unwrap_or_default();
    let mut bad: Vec<(usize, usize)> = Vec::new(); // (component, element)
    for e in 0..ENDPOINT_ELEMENTS {
        for c in 0..3 {
            let [owner, other] = holders_of(c);
            if get(owner, e).first != get(other, e).second {
                bad.push((c, e));
            }
        }
    }
    let mut components: Vec<usize> = bad.iter().map(|(c, _)| *c).collect();
    components.sort_unstable();
    components.dedup();
    let elements = |c: usize| {
        bad.iter()
            .filter(|(d, _)| *d == c)
            .map(|(_, e)| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match components.as_slice() {
        [] => (None, "the endpoint shares are consistent".into()),
        [c] => {
            let c = *c;
            let [owner, other] = holders_of(c);
            // All other components agree; build the endpoint with either
            // holder's copy of component c.
            let candidate = |use_owner: bool| {
                let elements: Vec<Fp> = (0..ENDPOINT_ELEMENTS)
                    .map(|e| {
                        (0..3)
                            .map(|k| {
                                let [o, p] = holders_of(k);
                                if k == c && !use_owner {
                                    get(p, e).second
                                } else {
                                    get(o, e).first
                                }
                            })
                            .sum()
                    })
                    .collect();
                Endpoint::unpack(&elements).is_ok()
            };
            let what = format!(
                "share component x{c} disagrees between {owner} and {other} (endpoint element {})",
                elements(c)
            );
            match (candidate(true), candidate(false)) {
                (true, false) => (
                    Some(other),
                    format!(
                        "{other} returned an inconsistent endpoint share: {what}, \
                         and only {owner}'s copy gives a valid endpoint"
                    ),
                ),
                (false, true) => (
                    Some(owner),
                    format!(
                        "{owner} returned an inconsistent endpoint share: {what}, \
                         and only {other}'s copy gives a valid endpoint"
                    ),
                ),
                _ => (
                    None,
                    format!("{what}; one of them returned an inconsistent share"),
                ),
            }
        }
        many => {
            let suspect = PartyId::ALL
                .into_iter()
                .find(|p| many.iter().all(|&c| holders_of(c).contains(p)));
            let what = many
                .iter()
                .map(|&c| format!("x{c} (element {})", elements(c)))
                .collect::<Vec<_>>()
                .join(", ");
            match suspect {
                Some(p) => (
                    Some(p),
                    format!(
                        "{p} returned inconsistent endpoint shares: its copies of \
                         share components {what} disagree with both other providers"
                    ),
                ),
                None => (
                    None,
                    format!("endpoint share components {what} disagree between providers"),
                ),
            }
        }
    }
}

/// Rebuilds an endpoint from two providers' share vectors, comparing the
/// component both hold for every element.
pub fn reconstruct_from_two(
    a: (PartyId, &[Share]),
    b: (PartyId, &[Share]),
) -> Result<Endpoint, String> {
    let mut elements = Vec::with_capacity(ENDPOINT_ELEMENTS);
    for i in 0..ENDPOINT_ELEMENTS {
        let (Some(&sa), Some(&sb)) = (a.1.get(i), b.1.get(i)) else {
            return Err(format!(
                "expected {ENDPOINT_ELEMENTS} endpoint shares from each provider"
            ));
        };
        let x = reconstruct_two((a.0, sa), (b.0, sb))
            .map_err(|e| format!("endpoint element {i}: {e}"))?;
        elements.push(x);
    }
    Endpoint::unpack(&elements).map_err(|e| format!("the reconstructed endpoint is not valid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::encode_share_vector;
    use ed25519_dalek::{Signature, VerifyingKey};

    fn p(i: usize) -> PartyId {
        PartyId::ALL[i]
    }

    fn urls() -> [String; 3] {
        ["http://a", "http://b", "http://c"].map(String::from)
    }

    fn entry() -> (Pseudonym, Endpoint) {
        (
            Pseudonym::parse("alice@example.org").expect("pseudonym"),
            Endpoint::parse("sip:alice@192.0.2.10:5060").expect("endpoint"),
        )
    }

    fn register_request(key: &AccountKey) -> SignedRequest {
        let (ps, ep) = entry();
        let parts = entry_parts(
            share_entry(&ps, &ep, &mut OsRng),
            Duration::from_secs(60),
            Some(b"x"),
        )
        .expect("parts");
        SignedRequest::new(
            key,
            "r-0001",
            Kind::Register,
            &parts,
            1_790_000_000_000,
            30_000,
        )
        .expect("signed")
    }

    #[test]
    fn signature_covers_exactly_the_signed_fields() {
        let key = AccountKey::generate(&mut OsRng);
        let req = register_request(&key);
        let vk = VerifyingKey::from_bytes(&key.public_key()).expect("key");
        let sig = Signature::from_bytes(req.signature());
        // The message is SignedFields{..}.message() over the hashes of the
        // exact part bytes.
        let hashes = PartyId::ALL.map(|q| *blake3::hash(req.part(q)).as_bytes());
        let message = SignedFields {
            request_id: "r-0001",
            kind: "register",
            account: &key.public_key(),
            timestamp_ms: 1_790_000_000_000,
            window_ms: 30_000,
            part_hashes: &hashes,
        }
        .message();
        assert_eq!(req.signed_message(), message);
        vk.verify_strict(&message, &sig).expect("verifies");
        // Any other part bytes, id or window do not verify.
        let mut other = hashes;
        other[2][0] ^= 1;
        let tampered = SignedFields {
            part_hashes: &other,
            request_id: "r-0001",
            kind: "register",
            account: &key.public_key(),
            timestamp_ms: 1_790_000_000_000,
            window_ms: 30_000,
        };
        assert!(vk.verify_strict(&tampered.message(), &sig).is_err());
        let other_window = SignedFields {
            window_ms: 30_001,
            part_hashes: &hashes,
            ..tampered
        };
        assert!(vk.verify_strict(&other_window.message(), &sig).is_err());
    }

    #[test]
    fn bodies_follow_the_api() {
        let key = AccountKey::generate(&mut OsRng);
        let req = register_request(&key);
        for q in PartyId::ALL {
            let v: serde_json::Value = serde_json::from_slice(req.body(q)).expect("json");
            let obj = v.as_object().expect("object");
            let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
            fields.sort_unstable();
            assert_eq!(
                fields,
                [
                    "account",
                    "kind",
                    "part",
                    "part_hashes",
                    "request_id",
                    "signature",
                    "timestamp_ms",
                    "window_ms"
                ]
            );
            assert_eq!(v["request_id"], "r-0001");
            assert_eq!(v["kind"], "register");
            assert_eq!(v["account"], key.account_hex());
            assert_eq!(v["timestamp_ms"], 1_790_000_000_000u64);
            assert_eq!(v["window_ms"], 30_000);
            assert_eq!(v["signature"].as_str().map(str::len), Some(128));
            let part = hex::decode(v["part"].as_str().expect("part")).expect("hex");
            assert_eq!(part, req.part(q));
            // Each provider's body carries its own part and all three hashes.
            let hashes: Vec<String> = v["part_hashes"]
                .as_array()
                .expect("array")
                .iter()
                .map(|h| h.as_str().expect("str").to_owned())
                .collect();
            assert_eq!(hashes.len(), 3);
            assert_eq!(hashes[q.index()], blake3::hash(&part).to_hex().as_str());
            assert_eq!(
                Part::from_bytes(Kind::Register, &part).map(|x| x.extra),
                Ok(Some(b"x".to_vec()))
            );
        }
        assert_ne!(req.body(p(0)), req.body(p(1)));
    }

    #[test]
    fn requests_are_checked_before_signing() {
        let key = AccountKey::generate(&mut OsRng);
        let (ps, _) = entry();
        let parts = query_parts(share_query(&ps, &mut OsRng));
        let sign = |id: &str, kind, window| SignedRequest::new(&key, id, kind, &parts, 1, window);
        assert!(sign("r", Kind::Resolve, 100).is_ok());
        assert!(matches!(
            sign("", Kind::Resolve, 100),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            sign("a/b", Kind::Resolve, 100),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            sign("..", Kind::Resolve, 100),
            Err(Error::Config(_))
        ));
        assert!(sign(&"x".repeat(128), Kind::Resolve, 100).is_ok());
        assert!(matches!(
            sign(&"x".repeat(129), Kind::Resolve, 100),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            sign("r", Kind::Resolve, 99),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            sign("r", Kind::Resolve, 600_001),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            sign("r", Kind::Register, 100),
            Err(Error::Part(PartError::MissingField { .. }))
        ));
        let id = new_request_id();
        assert!(check_request_id(&id).is_ok(), "{id}");
        assert_ne!(id, new_request_id());
    }

    #[test]
    fn provider_lists_are_checked() {
        let ok =
            parse_provider_list("http://127.0.0.1:1/, https://p1.example:8443 ,http://[::1]:3")
                .expect("valid");
        assert_eq!(ok[0], "http://127.0.0.1:1");
        assert_eq!(ok[1], "https://p1.example:8443");
        for (bad, why) in [
            ("http://a,http://b", "expected three"),
            ("http://a,http://b,http://c,http://d", "expected three"),
            ("http://a,ftp://b,http://c", "provider URL 1"),
            ("http://a,http://b,not a url", "provider URL 2"),
            ("http://a?x=1,http://b,http://c", "query"),
        ] {
            let err = parse_provider_list(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let key = AccountKey::generate(&mut OsRng);
        assert!(Client::new(&["http://a", "http://b"], key.clone()).is_err());
        let c = Client::new(&["http://a", "http://b", "http://c"], key).expect("client");
        assert!(c.clone().with_window_ms(50).is_err());
        assert_eq!(c.with_window_ms(500).expect("window").window_ms(), 500);
    }

    fn done(code: ResultCode) -> ProviderReply {
        ProviderReply::Done {
            seq: Some(1),
            result: RequestResult {
                code,
                endpoint: None,
                extra: None,
                expires_at_ms: None,
                imported: None,
            },
        }
    }

    #[test]
    fn agreeing_codes_are_the_outcome() {
        let s = decide(
            "r",
            Kind::Delete,
            &urls(),
            [0, 1, 2].map(|_| done(ResultCode::NotFound)),
        )
        .expect("agree");
        assert_eq!(s.code, ResultCode::NotFound);
        assert_eq!(s.degraded, None);
        assert_eq!(s.used(), PartyId::ALL.to_vec());
    }

    #[test]
    fn code_disagreement_names_the_odd_provider() {
        for odd in 0..3 {
            let mut replies = [0, 1, 2].map(|_| done(ResultCode::Ok));
            replies[odd] = done(ResultCode::NotFound);
            let err = decide("r-7", Kind::Resolve, &urls(), replies).expect_err("disagree");
            assert_eq!(err.blamed(), Some(p(odd)), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("P{odd} is the odd one out")), "{msg}");
            assert!(msg.contains("r-7") && msg.contains("result code"), "{msg}");
        }
        // Three different codes: nobody can be singled out.
        let err = decide(
            "r",
            Kind::Update,
            &urls(),
            [
                done(ResultCode::Ok),
                done(ResultCode::NotFound),
                done(ResultCode::Forbidden),
            ],
        )
        .expect_err("disagree");
        assert_eq!(err.blamed(), None);
        assert!(err.to_string().contains("cannot tell"), "{err}");
        // Two answers that differ: neither can be named either.
        let err = decide(
            "r",
            Kind::Update,
            &urls(),
            [
                done(ResultCode::Ok),
                done(ResultCode::Unavailable),
                done(ResultCode::Forbidden),
            ],
        )
        .expect_err("disagree");
        assert_eq!(err.blamed(), None);
    }

    #[test]
    fn unavailable_or_failed_provider_leaves_two() {
        let mut replies = [0, 1, 2].map(|_| done(ResultCode::Ok));
        replies[1] = done(ResultCode::Unavailable);
        let s = decide("r", Kind::Register, &urls(), replies).expect("two agree");
        let d = s.degraded.clone().expect("degraded");
        assert_eq!((d.missing, d.from), (p(1), [p(0), p(2)]));
        assert_eq!(d.reason, ProviderError::Unavailable);
        assert_eq!(s.used(), vec![p(0), p(2)]);
        assert!(d.to_string().contains("P0 and P2 only"), "{d}");

        let mut replies = [0, 1, 2].map(|_| done(ResultCode::Exists));
        replies[0] = ProviderReply::Failed(ProviderError::Unreachable {
            attempts: 5,
            detail: "Connection refused".into(),
        });
        let s = decide("r", Kind::Register, &urls(), replies).expect("two agree");
        assert_eq!(s.code, ResultCode::Exists);
        assert_eq!(s.degraded.map(|d| d.missing), Some(p(0)));
    }

    #[test]
    fn fewer_than_two_answers_fail_with_root_cause_first() {
        let replies = [
            ProviderReply::Failed(ProviderError::Cancelled {
                because: p(2),
                last: "pending".into(),
            }),
            done(ResultCode::Ok),
            ProviderReply::Failed(ProviderError::Refused {
                status: 403,
                code: Some("not_enrolled".into()),
                message: "account is not enrolled".into(),
            }),
        ];
        let err = decide("r-9", Kind::Register, &urls(), replies).expect_err("too few");
        assert_eq!(err.blamed(), Some(p(2)));
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "register request r-9 failed: P2 (http://c): HTTP 403 not_enrolled: account is not enrolled; P0"
            ),
            "{msg}"
        );
    }

    fn resolved(shares: &[Vec<Share>; 3], extra: [Option<&[u8]>; 3]) -> [ProviderReply; 3] {
        [0, 1, 2].map(|i| ProviderReply::Done {
            seq: Some(4),
            result: RequestResult {
                code: ResultCode::Ok,
                endpoint: Some(shares[i].clone()),
                extra: extra[i].map(<[u8]>::to_vec),
                expires_at_ms: Some(1000),
                imported: None,
            },
        })
    }

    fn endpoint_shares() -> [Vec<Share>; 3] {
        let (ps, ep) = entry();
        share_entry(&ps, &ep, &mut OsRng).map(|e| e.endpoint)
    }

    #[test]
    fn resolve_reconstructs_and_checks_extra() {
        let shares = endpoint_shares();
        let x: &[u8] = b"note";
        let s = decide("r", Kind::Resolve, &urls(), resolved(&shares, [Some(x); 3])).expect("ok");
        let r = resolution(s).expect("reconstructs");
        assert_eq!(r.endpoint, Some(entry().1));
        assert_eq!(r.extra.as_deref(), Some(x));
        assert_eq!(r.expires_at_ms, Some(1000));

        let s = decide(
            "r",
            Kind::Resolve,
            &urls(),
            resolved(&shares, [Some(x), Some(b"other"), Some(x)]),
        )
        .expect("codes agree");
        let err = resolution(s).expect_err("extra differs");
        assert_eq!(err.blamed(), Some(p(1)), "{err}");
        assert!(err.to_string().contains("extra data"), "{err}");
    }

    #[test]
    fn expiry_and_sequence_must_agree() {
        let shares = endpoint_shares();
        let mut replies = resolved(&shares, [None; 3]);
        if let ProviderReply::Done { result, .. } = &mut replies[2] {
            result.expires_at_ms = Some(999_999);
        }
        let s = decide("r", Kind::Resolve, &urls(), replies).expect("codes agree");
        let err = resolution(s).expect_err("expiry differs");
        assert_eq!(err.blamed(), Some(p(2)), "{err}");
        assert!(err.to_string().contains("P2 answered 999999"), "{err}");

        let mut replies = [0, 1, 2].map(|_| done(ResultCode::Ok));
        if let ProviderReply::Done { seq, .. } = &mut replies[0] {
            *seq = Some(2);
        }
        let err = decide("r", Kind::Delete, &urls(), replies).expect_err("seq differs");
        assert_eq!(err.blamed(), Some(p(0)), "{err}");
        assert!(err.to_string().contains("sequence number"), "{err}");
    }

    #[test]
    fn tampered_share_names_the_provider() {
        // A provider that changes both of its components, or only one (as
        // the provider's fault injection does): either way it is named.
        for who in 0..3 {
            for both in [true, false] {
                let mut shares = endpoint_shares();
                let el = if both { 3 } else { 0 };
                shares[who][el].first += Fp::ONE;
                if both {
                    shares[who][el].second += Fp::from_u64(7);
                }
                let s = decide("r", Kind::Resolve, &urls(), resolved(&shares, [None; 3]))
                    .expect("codes agree");
                let err = resolution(s).expect_err("tampered");
                assert_eq!(err.blamed(), Some(p(who)), "{err}");
                assert!(
                    err.to_string().contains(&format!("P{who} returned")),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn undecidable_tampering_names_both_holders() {
        // A change of one component that still decodes: either holder may
        // have lied. Replace P1's copy of x1 so that the endpoint becomes
        // another valid one.
        let (ps, ep) = entry();
        let mut shares = share_entry(&ps, &ep, &mut OsRng).map(|e| e.endpoint);
        let other = Endpoint::parse("sip:alice@192.0.2.10:5061")
            .expect("valid")
            .pack();
        let delta = other[0] - ep.pack()[0];
        shares[1][0].first += delta;
        let (suspect, detail) = blame(&shares);
        assert_eq!(suspect, None);
        assert!(detail.contains("between P1 and P0"), "{detail}");
    }

    #[test]
    fn two_provider_fallback_reconstructs() {
        for missing in 0..3 {
            let shares = endpoint_shares();
            let mut replies = resolved(&shares, [None; 3]);
            replies[missing] = ProviderReply::Failed(ProviderError::Refused {
                status: 500,
                code: Some("store".into()),
                message: "disk full".into(),
            });
            let s = decide("r", Kind::Resolve, &urls(), replies).expect("two answer");
            let r = resolution(s).expect("reconstructs from two");
            assert_eq!(r.endpoint, Some(entry().1));
            let d = r.degraded.expect("degraded");
            assert_eq!(d.missing, p(missing));

            // The two remaining providers' shared component is still checked.
            let mut shares = endpoint_shares();
            let (a, b) = ((missing + 1) % 3, (missing + 2) % 3);
            shares[a][2].second += Fp::ONE;
            shares[b][2].first += Fp::ONE;
            let mut replies = resolved(&shares, [None; 3]);
            replies[missing] = done(ResultCode::Unavailable);
            let s = decide("r", Kind::Resolve, &urls(), replies).expect("two answer");
            let err = resolution(s).expect_err("tampered");
            assert!(matches!(err, Error::ReconstructTwo { .. }), "{err}");
            assert!(
                err.to_string()
                    .contains(&format!("P{missing} did not answer")),
                "{err}"
            );
        }
    }

    #[test]
    fn wire_layout_of_answers_matches_parts() {
        // What a provider sends back parses to the shares it holds.
        let shares = endpoint_shares();
        let body = serde_json::json!({
            "request_id": "r", "status": "done", "seq": 1,
            "result": {"code": "ok", "endpoint": hex::encode(encode_share_vector(&shares[2])),
                       "expires_at_ms": 5}
        });
        let a = parse_answer(Kind::Resolve, body.to_string().as_bytes()).expect("parses");
        let Answer::Done { result, .. } = a else {
            panic!("not done");
        };
        assert_eq!(result.endpoint.as_ref(), Some(&shares[2]));
    }
}
