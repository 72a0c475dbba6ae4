//! The sans-IO front end. SKELETON: the proxy helper fills this in.
//!
//! [`Core`] takes received messages and location results with the current
//! time, and pushes [`Output`]s: bytes to send and location jobs to run.
//! It owns the transactions, the registrar, the authenticator and the
//! proxy contexts; the server only moves bytes and runs jobs.

use std::sync::Arc;
use std::time::Instant;

use sharecall_sip::transaction::TimerConfig;
use sharecall_sip::Message;

use crate::aor::{Aor, TokenKey};
use crate::auth::AuthConfig;
use crate::config::Mode;
use crate::location::{LocationError, Publication, Resolved};
use crate::metrics::Metrics;
use crate::peer::{Dest, Local, Peer};
use crate::registrar::RegistrarConfig;
use crate::users::Users;

/// Everything the core needs to know.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Local domains (registrar and authentication for these).
    pub domains: Vec<String>,
    /// Our transports as we name ourselves, one per listener.
    pub locals: Vec<Local>,
    /// Proxy or redirect.
    pub mode: Mode,
    /// Add Record-Route.
    pub record_route: bool,
    /// Registrar settings.
    pub registrar: RegistrarConfig,
    /// Digest settings.
    pub auth: AuthConfig,
    /// Transaction timers.
    pub timers: TimerConfig,
    /// Local users.
    pub users: Arc<Users>,
    /// Routing-token key.
    pub token_key: TokenKey,
    /// Nonce key.
    pub auth_secret: [u8; 32],
    /// Transactions at most; beyond, 503.
    pub max_transactions: usize,
}

/// A location job's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(pub u64);

/// A transaction's number, for transport failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxId(pub u64);

/// What happened.
#[derive(Debug)]
pub enum Input {
    /// A message arrived (already framed and parsed).
    Received {
        /// The message.
        msg: Message,
        /// Its source.
        from: Peer,
    },
    /// A resolution finished.
    Resolved {
        /// The job.
        job: JobId,
        /// Its result.
        result: Result<Option<Resolved>, LocationError>,
    },
    /// A publication finished.
    Published {
        /// The job.
        job: JobId,
        /// Its result.
        result: Result<(), LocationError>,
    },
    /// Sending for this transaction failed (no route, connection refused).
    SendFailed {
        /// The transaction.
        tx: TxId,
    },
}

/// What the server must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send bytes.
    Send {
        /// Where.
        to: Dest,
        /// The message.
        bytes: Vec<u8>,
        /// The transaction to tell if it fails.
        tx: Option<TxId>,
    },
    /// Resolve an AOR through the location service.
    Resolve {
        /// The job.
        job: JobId,
        /// Whom.
        aor: Aor,
    },
    /// Publish an endpoint.
    Publish {
        /// The job.
        job: JobId,
        /// What.
        publication: Publication,
    },
}

/// The front end's state.
#[derive(Debug)]
pub struct Core {
    _todo: (),
}

impl Core {
    /// A core with no transactions and no bindings.
    pub fn new(_cfg: CoreConfig, _metrics: Metrics, _now: Instant) -> Core {
        todo!("proxy helper")
    }

    /// Handles one input.
    pub fn handle(&mut self, _input: Input, _now: Instant, _out: &mut Vec<Output>) {
        todo!("proxy helper")
    }

    /// Fires due timers (retransmissions, timeouts, binding expiry).
    pub fn on_timer(&mut self, _now: Instant, _out: &mut Vec<Output>) {
        todo!("proxy helper")
    }

    /// When [`Core::on_timer`] wants to be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        todo!("proxy helper")
    }

    /// Transactions alive (for metrics and graceful shutdown).
    pub fn transactions(&self) -> usize {
        todo!("proxy helper")
    }
}
