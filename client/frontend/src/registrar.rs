//! The registrar (RFC 3261 §10.3), sans-IO. SKELETON: the registrar helper
//! fills this in.
//!
//! Bindings live here, in the front end's memory (it sees its own users'
//! plaintext, like their phones do). What goes to the location service is
//! one endpoint per address of record (see [`crate::config::Publish`]); a
//! refresh that changes nothing publishes nothing.

use std::time::{Duration, Instant};

use sharecall_sip::Message;

use crate::aor::{Aor, TokenKey};
use crate::config::Publish;
use crate::location::Publication;
use crate::peer::{Local, Peer};

/// Registrar settings.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Expiry when none is asked for, seconds.
    pub default_expires: u32,
    /// Below this: 423 with Min-Expires.
    pub min_expires: u32,
    /// Longer expiries are cut to this.
    pub max_expires: u32,
    /// Bindings per AOR.
    pub max_bindings: usize,
    /// What is published.
    pub publish: Publish,
    /// Time to live of a published entry; refreshed when less than half is
    /// left.
    pub publish_ttl: Duration,
    /// The transport published endpoints name (`sip:fe-TOKEN@host:port;transport=x`).
    pub public: Local,
}

/// Where a call to a local AOR goes: one current binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The Contact URI (the new Request-URI).
    pub uri: String,
    /// Path headers stored with the binding (RFC 3327), top first: they
    /// become Route headers.
    pub path: Vec<String>,
    /// Where to send: the flow the binding was registered over (NAT, TCP),
    /// or `None` to send to the Contact's host.
    pub via: Option<Peer>,
}

/// What to do with a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterResult {
    /// Send this response now (200 listing bindings, 400, 423, 500 for an
    /// out-of-order CSeq, ...).
    Reply(Vec<u8>),
    /// Publish first, then send `ok` (the 200) on success, or answer 503 on
    /// failure (and [`Registrar::publish_failed`]).
    Publish {
        /// What to publish.
        publication: Publication,
        /// The 200 to send once it is done.
        ok: Vec<u8>,
    },
}

/// The binding table.
#[derive(Debug)]
pub struct Registrar {
    _todo: (),
}

impl Registrar {
    /// An empty registrar.
    pub fn new(_cfg: RegistrarConfig, _tokens: TokenKey) -> Registrar {
        todo!("registrar helper")
    }

    /// Handles an authenticated REGISTER for `aor` (the To URI, already
    /// checked to be `user`'s) received from `from`.
    pub fn register(
        &mut self,
        _req: &Message,
        _aor: &Aor,
        _from: Peer,
        _now: Instant,
    ) -> RegisterResult {
        todo!("registrar helper")
    }

    /// A publication finished: remember what the location service holds.
    pub fn published(&mut self, _p: &Publication, _now: Instant) {
        todo!("registrar helper")
    }

    /// A publication failed: the next REGISTER publishes again.
    pub fn publish_failed(&mut self, _p: &Publication) {
        todo!("registrar helper")
    }

    /// The AOR a routing token (`fe-...`, the user part of a published
    /// endpoint) stands for, if it is one of ours.
    pub fn token_aor(&self, _token: &str) -> Option<&Aor> {
        todo!("registrar helper")
    }

    /// The current bindings of `aor`, best (highest q, then newest) first.
    pub fn targets(&self, _aor: &Aor, _now: Instant) -> Vec<Target> {
        todo!("registrar helper")
    }

    /// Drops expired bindings.
    pub fn expire(&mut self, _now: Instant) {
        todo!("registrar helper")
    }
}
