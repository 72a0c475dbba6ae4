//! Accounts: ed25519 public keys enrolled with this provider, and their
//! rate limits.
//!
//! Each provider keeps its own enrollment list (its operator decides who
//! may use it); a request from an account that is not enrolled at every
//! provider cannot gather its three parts and is refused or aborted.

// redb::Error is the error type of the store's transaction callbacks.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use ed25519_dalek::{Verifier, VerifyingKey};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use redb::TableDefinition;

use crate::config::AccountsConfig;
use crate::sequencer::applied::read_table;

const ACCOUNTS: TableDefinition<&[u8], u64> = TableDefinition::new("accounts");

/// Why an enrollment was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// This provider takes no new accounts.
    #[error("enrollment is closed at this provider")]
    Closed,
    /// A token is required and the one given is missing or wrong.
    #[error("enrollment needs a valid token")]
    BadToken,
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] redb::Error),
}

/// Enrollment list and rate limits.
pub struct Accounts {
    config: AccountsConfig,
    limiter: DefaultKeyedRateLimiter<[u8; 32]>,
    clock: DefaultClock,
    /// Decompressed public keys: decompressing costs about a third of a
    /// verification, and the same accounts sign request after request.
    keys: Mutex<HashMap<[u8; 32], VerifyingKey>>,
    /// Accounts found enrolled (enrollment is never withdrawn, so a hit
    /// stays true; it saves a store read per request).
    enrolled: Mutex<HashSet<[u8; 32]>>,
}

/// Most public keys kept decompressed; the cache starts over when full.
const KEY_CACHE: usize = 1 << 16;

impl Accounts {
    /// Accounts per `config`.
    pub fn new(config: AccountsConfig) -> Accounts {
        let rate = NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
        Accounts {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
            config,
            keys: Mutex::default(),
            enrolled: Mutex::default(),
        }
    }

    /// Whether `signature` is `account`'s ed25519 signature of `message`
    /// (false for a malformed or small-order key, or a malformed
    /// signature).
    pub fn verify(&self, account: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        let cached = self.keys.lock().ok().and_then(|k| k.get(account).copied());
        let key = match cached {
            Some(k) => k,
            None => {
                // A small-order key would verify forged signatures; the
                // strict check refused it at every request, now once here.
                let Ok(k) = VerifyingKey::from_bytes(account) else {
                    return false;
                };
                if k.is_weak() {
                    return false;
                }
                if let Ok(mut keys) = self.keys.lock() {
                    if keys.len() >= KEY_CACHE {
                        keys.clear();
                    }
                    keys.insert(*account, k);
                }
                k
            }
        };
        // Not `verify_strict`: its other check (a small-order R) costs a
        // point decompression per request and matters only for signature
        // malleability, which request ids and replay refusal make moot.
        key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }

    /// Enrolls `account` (signature already checked); true if it is new.
    pub fn enroll(
        &self,
        db: &redb::Database,
        account: &[u8; 32],
        token: Option<&str>,
        now_ms: u64,
    ) -> Result<bool, EnrollError> {
        if is_enrolled(db, account)? {
            return Ok(false);
        }
        match self.config.enrollment.as_str() {
            "open" => {}
            "token" => {
                let ok = token.is_some_and(|t| {
                    self.config
                        .tokens
                        .iter()
                        .any(|k| constant_time_eq(k.as_bytes(), t.as_bytes()))
                });
                if !ok {
                    return Err(EnrollError::BadToken);
                }
            }
            _ => return Err(EnrollError::Closed),
        }
        store(db, account, now_ms)?;
        Ok(true)
    }

    /// Whether `account` is enrolled here ([`is_enrolled`], remembering
    /// the accounts found).
    pub fn is_enrolled(
        &self,
        db: &redb::Database,
        account: &[u8; 32],
    ) -> Result<bool, redb::Error> {
        if self.enrolled.lock().is_ok_and(|e| e.contains(account)) {
            return Ok(true);
        }
        let found = is_enrolled(db, account)?;
        if found {
            if let Ok(mut e) = self.enrolled.lock() {
                if e.len() >= KEY_CACHE {
                    e.clear();
                }
                e.insert(*account);
            }
        }
        Ok(found)
    }

    /// Whether `account` may bulk-import entries for other owners.
    pub fn is_importer(&self, account: &[u8; 32]) -> bool {
        let hex = hex::encode(account);
        self.config
            .importers
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&hex))
    }

    /// Takes one request from `account`'s budget, or says how long to wait.
    pub fn check_rate(&self, account: &[u8; 32]) -> Result<(), Duration> {
        self.limiter
            .check_key(account)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

fn store(db: &redb::Database, account: &[u8; 32], now_ms: u64) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(ACCOUNTS)?
        .insert(account.as_slice(), now_ms)?;
    txn.commit()?;
    Ok(())
}

/// Whether `account` is enrolled here.
pub fn is_enrolled(db: &redb::Database, account: &[u8; 32]) -> Result<bool, redb::Error> {
    let txn = db.begin_read()?;
    let Some(t) = read_table(&txn, ACCOUNTS)? else {
        return Ok(false);
    };
    Ok(t.get(account.as_slice())?.is_some())
}

/// Compares secrets without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(enrollment: &str) -> AccountsConfig {
        AccountsConfig {
            enrollment: enrollment.into(),
            tokens: vec!["s3cret".into()],
            rate_per_second: 1,
            burst: 2,
            importers: Vec::new(),
        }
    }

    #[test]
    fn signatures_verify_and_small_order_keys_never_do() {
        use ed25519_dalek::Signer;
        let accounts = Accounts::new(config("open"));
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let account = key.verifying_key().to_bytes();
        let sig = key.sign(b"message").to_bytes();
        assert!(accounts.verify(&account, b"message", &sig));
        assert!(accounts.verify(&account, b"message", &sig), "cached key");
        assert!(!accounts.verify(&account, b"other", &sig));
        // The identity point accepts R = identity, s = 0 for any message
        // under the plain equation: the weak-key check must refuse it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut forged = [0u8; 64];
        forged[0] = 1;
        assert!(!accounts.verify(&identity, b"anything", &forged));
    }

    #[test]
    fn enrollment_follows_the_configured_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("a.redb")).expect("db");
        let a = [1u8; 32];
        let closed = Accounts::new(config("closed"));
        assert!(matches!(
            closed.enroll(&db, &a, None, 1),
            Err(EnrollError::Closed)
        ));
        let token = Accounts::new(config("token"));
        assert!(matches!(
            token.enroll(&db, &a, Some("wrong"), 1),
            Err(EnrollError::BadToken)
        ));
        assert!(!is_enrolled(&db, &a).expect("read"));
        assert!(!token.is_enrolled(&db, &a).expect("read"));
        assert!(token.enroll(&db, &a, Some("s3cret"), 1).expect("enroll"));
        assert!(is_enrolled(&db, &a).expect("read"));
        assert!(
            token.is_enrolled(&db, &a).expect("read"),
            "a miss is not kept"
        );
        assert!(token.is_enrolled(&db, &a).expect("read"), "a hit is");
        // Again: already enrolled, not new, whatever the mode.
        assert!(!closed.enroll(&db, &a, None, 2).expect("again"));
        let open = Accounts::new(config("open"));
        assert!(open.enroll(&db, &[2u8; 32], None, 3).expect("open"));
    }

    #[test]
    fn rate_limit_allows_the_burst_then_says_how_long_to_wait() {
        let accounts = Accounts::new(config("open"));
        let a = [1u8; 32];
        assert!(accounts.check_rate(&a).is_ok());
        assert!(accounts.check_rate(&a).is_ok());
        let wait = accounts.check_rate(&a).expect_err("over the burst");
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        // Another account has its own budget.
        assert!(accounts.check_rate(&[2u8; 32]).is_ok());
    }
}
