//! The REST client: talks to all three providers (docs/API.md).
//!
//! A request is shared locally, one part per provider; the parts are hashed
//! with blake3, the hashes signed together with the request id, kind,
//! account, timestamp, window, the public fields (ttl, extra data, import
//! owners; signed once, sent as each body's `public` object) and the
//! answer-key hashes ([`SignedFields`]), and the three parts are posted
//! concurrently. A provider that answers `202 pending` is polled
//! (`GET /v1/requests/{id}`, with the request's signature in the
//! `Sharecall-Signature` header) with backoff until it is done or the
//! timeout passes. Each request carries three fresh symmetric answer keys,
//! one per provider, each only in its provider's body (inside TLS) and
//! signed by its hash; every provider seals its answer under its own key,
//! so only this client opens all three. Transport failures are retried
//! with the same request id and the
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
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use rand::RngCore;
use reqwest::{Method, Url};
use serde::Serialize;
use sharecall_proto::encoding::{Endpoint, Pseudonym, ENDPOINT_ELEMENTS};
use sharecall_proto::request::{enroll_message, SignedFields};
use sharecall_proto::seal::AnswerKeys;
use sharecall_proto::sharing::{holders_of, reconstruct_two};
use sharecall_proto::{Fp, PartyId, Share, ShareError};
use tokio::sync::watch;

use crate::account::AccountKey;
use crate::import::ImportOrder;
use crate::parts::{
    clip, entry_parts, import_parts, parse_answer, parse_error, query_parts, short, Answer,
    ImportEntry, Kind, Opener, Part, PartError, Public, RequestResult, ResultCode,
};
use crate::registration::{reconstruct_endpoint, share_entry, share_query, ReconstructError};

mod check;
mod error;
mod signing;
pub mod tls;
mod transport;

pub use self::check::*;
pub use self::error::*;
pub use self::signing::*;
pub use self::transport::*;

/// Default time one operation may take, polling included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Default window: how long the providers wait for all three parts.
pub const DEFAULT_WINDOW_MS: u64 = 10_000;

/// Windows the providers accept, in milliseconds.
pub const WINDOW_MS_RANGE: RangeInclusive<u64> = 100..=600_000;

pub use sharecall_proto::limits::REQUEST_ID_MAX_LEN;

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

/// The account's state at one provider after [`Client::enroll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollStatus {
    /// Newly enrolled (`201`).
    Enrolled,
    /// It was enrolled before (`200`).
    AlreadyEnrolled,
}

/// A client of the three providers, acting for one account.
#[derive(Debug, Clone)]
pub struct Client {
    /// One HTTP client per provider (own pool, own pin).
    http: [reqwest::Client; 3],
    /// Base URLs, without pins.
    providers: [String; 3],
    /// Whether `http://` URLs may be used ([`Client::allow_plain_http`]).
    plain_http_allowed: bool,
    key: AccountKey,
    timeout: Duration,
    window_ms: u64,
    import_order: ImportOrder,
    refuse_degraded: bool,
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
        let urls = [
            split_url(0, a.as_ref())?,
            split_url(1, b.as_ref())?,
            split_url(2, c.as_ref())?,
        ];
        let http = [
            http_client(urls[0].1)?,
            http_client(urls[1].1)?,
            http_client(urls[2].1)?,
        ];
        let providers = urls.map(|(base, _)| base);
        Ok(Client {
            http,
            providers,
            plain_http_allowed: false,
            key,
            timeout: DEFAULT_TIMEOUT,
            window_ms: DEFAULT_WINDOW_MS,
            import_order: ImportOrder::default(),
            refuse_degraded: false,
        })
    }

    /// Allows `http://` provider URLs. Without it a plain-HTTP URL is
    /// refused before anything is sent: whoever sees the three plain
    /// connections reads every share and request id. For tests and a
    /// TLS-terminating proxy on the same host only.
    pub fn allow_plain_http(mut self) -> Client {
        self.plain_http_allowed = true;
        self
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

    /// Sets the row order of imports (default [`ImportOrder::Shuffled`];
    /// [`ImportOrder::SortedForTree`] only for a tree deployment).
    pub fn with_import_order(mut self, order: ImportOrder) -> Client {
        self.import_order = order;
        self
    }

    /// Refuses answers that come from two providers only
    /// ([`Error::Degraded`]) instead of returning them marked
    /// [`Degraded`] (default: returned, marked).
    pub fn with_refuse_degraded(mut self, refuse: bool) -> Client {
        self.refuse_degraded = refuse;
        self
    }

    /// The providers' base URLs (without pins), in order.
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
    /// concurrently). `token` is sent to every provider when given. Each
    /// provider gets its own signature, naming it and a fresh nonce, so
    /// none can replay the enrollment to another.
    pub async fn enroll(&self, token: Option<&str>) -> Result<[EnrollStatus; 3], Error> {
        self.check_transport()?;
        let body = |p: PartyId| self.enroll_body(p, token);
        let (b0, b1, b2) = (
            body(PartyId::ALL[0]),
            body(PartyId::ALL[1]),
            body(PartyId::ALL[2]),
        );
        let deadline = Instant::now() + self.timeout;
        let (a, b, c) = tokio::join!(
            self.enroll_one(PartyId::ALL[0], &b0, deadline),
            self.enroll_one(PartyId::ALL[1], &b1, deadline),
            self.enroll_one(PartyId::ALL[2], &b2, deadline),
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

    /// The signed enrollment body for provider `p` (wire form in
    /// `docs/API.md`).
    fn enroll_body(&self, p: PartyId, token: Option<&str>) -> Vec<u8> {
        let timestamp_ms = now_ms();
        let account = self.key.public_key();
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let provider = p.index() as u8;
        let message = enroll_message(provider, &account, timestamp_ms, &nonce, token);
        let signature = self.key.sign(&message);
        let mut body = serde_json::json!({
            "account": hex::encode(account),
            "provider": provider,
            "timestamp_ms": timestamp_ms,
            "nonce": hex::encode(nonce),
            "signature": hex::encode(signature),
        });
        if let (Some(t), Some(obj)) = (token, body.as_object_mut()) {
            obj.insert("token".into(), t.into());
        }
        body.to_string().into_bytes()
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
            .call(
                Method::POST,
                &url,
                Some(body),
                None,
                deadline,
                started,
                &last,
            )
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
    /// providers' shares, checking them against each other. An answer
    /// from two providers only (one provider can force that by
    /// withholding its answer, and then not every share component is
    /// checked) is retried once as a fresh request; if still degraded it
    /// is returned marked ([`Resolution::degraded`]), or refused with
    /// [`Error::Degraded`] under [`Client::with_refuse_degraded`].
    pub async fn resolve(&self, pseudonym: &Pseudonym) -> Result<Resolution, Error> {
        let first = self.resolve_once(pseudonym).await?;
        if first.degraded.is_none() {
            return Ok(first);
        }
        let mut again = self.resolve_once(pseudonym).await?;
        let Some(d) = again.degraded.as_mut() else {
            return Ok(again);
        };
        d.retried_from = Some(first.request_id);
        if self.refuse_degraded {
            let degraded = Box::new(d.clone());
            return Err(Error::Degraded {
                request_id: again.request_id,
                degraded,
            });
        }
        Ok(again)
    }

    /// One resolution attempt: fresh shares, fresh request id.
    async fn resolve_once(&self, pseudonym: &Pseudonym) -> Result<Resolution, Error> {
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
        // Shuffled unless this is a tree deployment (see ImportOrder): slot
        // order must not tell a hash or list provider the key order.
        let entries: Vec<ImportEntry> = self
            .import_order
            .arrange(rows, &mut OsRng)
            .into_iter()
            .map(|r| ImportEntry {
                shares: share_entry(&r.pseudonym, &r.endpoint, &mut OsRng),
                ttl: r.ttl,
                extra: r.extra.clone(),
                owner: r.owner,
            })
            .collect();
        let (public, parts) = import_parts(&entries)?;
        SignedRequest::from_part_bytes(
            &self.key,
            &new_request_id(),
            Kind::Import,
            public,
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

#[cfg(test)]
mod tests;
