//! The location service: where an address of record is reachable.
//!
//! The core never calls it: it emits jobs, and the server runs them on a
//! [`Location`] and feeds the results back.

use std::future::Future;
use std::time::Duration;

use thiserror::Error;

use crate::aor::{Aor, AorError};

pub mod plaintext;
pub mod sharecall;

/// A resolved address of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The stored endpoint (a SIP URI).
    pub endpoint: String,
    /// When the entry expires, ms since the Unix epoch, if known.
    pub expires_at_ms: Option<u64>,
}

/// One endpoint to store for an address of record, signed by its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The address of record (a local user; its account signs).
    pub aor: Aor,
    /// The endpoint (a SIP URI).
    pub endpoint: String,
    /// How long the entry lives.
    pub ttl: Duration,
}

/// Why the location service could not answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LocationError {
    /// The providers could not be reached or did not agree: 503.
    #[error("location service unavailable: {0}")]
    Unavailable(String),
    /// The service refused (e.g. another account owns the pseudonym, or the
    /// user has no account key): 403 for a REGISTER, 500 otherwise.
    #[error("location service refused: {0}")]
    Refused(String),
    /// The AOR is no valid pseudonym: 404 for a call, 400 for a REGISTER.
    #[error(transparent)]
    Aor(#[from] AorError),
}

/// A location service.
pub trait Location: Send + Sync + 'static {
    /// Looks up `aor`: `None` when nothing (or only an expired entry) is
    /// stored.
    fn resolve(
        &self,
        aor: &Aor,
    ) -> impl Future<Output = Result<Option<Resolved>, LocationError>> + Send;

    /// Stores (creates or replaces) `p`.
    fn publish(&self, p: &Publication) -> impl Future<Output = Result<(), LocationError>> + Send;
}
