//! Digest authentication (RFC 3261 §22, RFC 8760), sans-IO. SKELETON: the
//! auth helper fills this in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sharecall_sip::Message;

use crate::aor::Aor;
use crate::users::Users;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256 (RFC 8760).
    Sha256,
    /// MD5 (old phones).
    Md5,
}

/// Authentication settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The realm.
    pub realm: String,
    /// Challenge algorithms in order (one challenge header each).
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce is good; after, `stale=true`.
    pub nonce_lifetime: Duration,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid credentials of this local user.
    Authorized {
        /// The user's address of record.
        user: Aor,
    },
    /// Answer with `status` (401 or 407) and these extra header lines
    /// (`WWW-Authenticate: Digest ...` or `Proxy-Authenticate: ...`).
    Challenge {
        /// 401 or 407.
        status: u16,
        /// Full header lines, one per algorithm.
        headers: Vec<String>,
    },
    /// Answer 403 (e.g. a replayed nonce count is challenged, not this; this
    /// is for credentials of an unknown user after a challenge).
    Forbidden {
        /// Reason phrase detail for logs.
        reason: String,
    },
    /// Answer 400: malformed credentials.
    Bad {
        /// What is wrong.
        reason: String,
    },
}

/// The authenticator: nonce key, per-nonce nonce-count state.
#[derive(Debug)]
pub struct Authenticator {
    _todo: (),
}

impl Authenticator {
    /// A new authenticator; `secret` keys the nonces (random per process is
    /// fine: a restart makes old nonces stale).
    pub fn new(
        _cfg: AuthConfig,
        _users: Arc<Users>,
        _secret: [u8; 32],
        _now: Instant,
    ) -> Authenticator {
        todo!("auth helper")
    }

    /// Checks `msg`'s credentials: `proxy` false uses Authorization and
    /// 401/WWW-Authenticate (registrar), true Proxy-Authorization and
    /// 407/Proxy-Authenticate (proxy).
    pub fn check(&mut self, _msg: &Message, _proxy: bool, _now: Instant) -> Verdict {
        todo!("auth helper")
    }

    /// Forgets the state of expired nonces.
    pub fn sweep(&mut self, _now: Instant) {
        todo!("auth helper")
    }
}
