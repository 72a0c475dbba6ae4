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
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::config::AccountsConfig;
use crate::sequencer::applied::read_table;

const ACCOUNTS: TableDefinition<&[u8], u64> = TableDefinition::new("accounts");
/// Enrollment nonces seen, with their signed timestamps: kept while a
/// replay would still be inside the timestamp window.
const ENROLL_NONCES: TableDefinition<&[u8], u64> = TableDefinition::new("enroll_nonces");
/// Accounts enrolled per token, keyed by blake3 of the token (the store
/// does not keep the secret).
const TOKEN_USES: TableDefinition<&[u8], u64> = TableDefinition::new("token_uses");

/// Most enrollment nonces kept at once; past it new enrollments wait
/// (429) until old nonces leave the window.
const MAX_NONCES: u64 = 1 << 16;

/// Why an enrollment was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// This provider takes no new accounts.
    #[error("enrollment is closed at this provider")]
    Closed,
    /// A token is required and the one given is missing or wrong.
    #[error("enrollment needs a valid token")]
    BadToken,
    /// The token has enrolled as many accounts as it may.
    #[error("this enrollment token is used up")]
    TokenUsedUp,
    /// The nonce was seen before: a replayed enrollment.
    #[error("this enrollment nonce was seen before")]
    Replayed,
    /// Too many enrollments inside the timestamp window.
    #[error("too many enrollments at once")]
    Busy,
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

    /// Enrolls `account` (signature, provider id and timestamp already
    /// checked); true if it is new. An account already enrolled is not
    /// new, whatever the rest (so a client's retry is harmless). For a new
    /// one, in one store transaction: `nonce` must not have been seen
    /// within `window_ms` of its `timestamp_ms`, the token (mode
    /// `"token"`) must match and have a use left, which it then spends.
    #[allow(clippy::too_many_arguments)]
    pub fn enroll(
        &self,
        db: &redb::Database,
        account: &[u8; 32],
        token: Option<&str>,
        nonce: &[u8],
        timestamp_ms: u64,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<bool, EnrollError> {
        if is_enrolled(db, account)? {
            return Ok(false);
        }
        let counted = match self.config.enrollment.as_str() {
            "open" => None,
            "token" => {
                let found = token.and_then(|t| {
                    self.config
                        .tokens
                        .iter()
                        .find(|k| constant_time_eq(k.token().as_bytes(), t.as_bytes()))
                });
                match found {
                    Some(k) => Some((blake3::hash(k.token().as_bytes()), k.uses())),
                    None => return Err(EnrollError::BadToken),
                }
            }
            _ => return Err(EnrollError::Closed),
        };
        let txn = db.begin_write().map_err(redb::Error::from)?;
        let new = enroll_in(
            &txn,
            account,
            counted,
            nonce,
            timestamp_ms,
            window_ms,
            now_ms,
        )?;
        if new {
            txn.commit().map_err(redb::Error::from)?;
        }
        Ok(new)
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

/// The checks and writes of [`Accounts::enroll`] inside `txn`; false if
/// the account turned out to be enrolled already (nothing written).
fn enroll_in(
    txn: &redb::WriteTransaction,
    account: &[u8; 32],
    token: Option<(blake3::Hash, u64)>,
    nonce: &[u8],
    timestamp_ms: u64,
    window_ms: u64,
    now_ms: u64,
) -> Result<bool, EnrollError> {
    let mut accounts = txn.open_table(ACCOUNTS).map_err(redb::Error::from)?;
    if accounts
        .get(account.as_slice())
        .map_err(redb::Error::from)?
        .is_some()
    {
        return Ok(false);
    }
    let mut nonces = txn.open_table(ENROLL_NONCES).map_err(redb::Error::from)?;
    if nonces.get(nonce).map_err(redb::Error::from)?.is_some() {
        return Err(EnrollError::Replayed);
    }
    // A nonce whose timestamp left the window cannot be replayed (the
    // timestamp check refuses it first): forget it, which bounds the table.
    nonces
        .retain(|_, ts| ts.saturating_add(window_ms) >= now_ms)
        .map_err(redb::Error::from)?;
    if nonces.len().map_err(redb::Error::from)? >= MAX_NONCES {
        return Err(EnrollError::Busy);
    }
    if let Some((key, uses)) = token {
        let mut counts = txn.open_table(TOKEN_USES).map_err(redb::Error::from)?;
        let used = counts
            .get(key.as_bytes().as_slice())
            .map_err(redb::Error::from)?
            .map_or(0, |v| v.value());
        if used >= uses {
            return Err(EnrollError::TokenUsedUp);
        }
        counts
            .insert(key.as_bytes().as_slice(), used + 1)
            .map_err(redb::Error::from)?;
    }
    nonces
        .insert(nonce, timestamp_ms)
        .map_err(redb::Error::from)?;
    accounts
        .insert(account.as_slice(), now_ms)
        .map_err(redb::Error::from)?;
    Ok(true)
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
    use crate::config::TokenConfig;

    const W: u64 = 1_000;

    /// `enroll` with a nonce made from `n`, signed at time 1, now 1.
    fn enroll(
        a: &Accounts,
        db: &redb::Database,
        account: &[u8; 32],
        token: Option<&str>,
        n: u8,
    ) -> Result<bool, EnrollError> {
        a.enroll(db, account, token, &[n; 16], 1, W, 1)
    }

    fn config(enrollment: &str) -> AccountsConfig {
        AccountsConfig {
            enrollment: enrollment.into(),
            tokens: vec![
                TokenConfig::Single("s3cret".into()),
                TokenConfig::Counted {
                    token: "twice".into(),
                    uses: 2,
                },
            ],
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
            enroll(&closed, &db, &a, None, 1),
            Err(EnrollError::Closed)
        ));
        let token = Accounts::new(config("token"));
        assert!(matches!(
            enroll(&token, &db, &a, Some("wrong"), 2),
            Err(EnrollError::BadToken)
        ));
        assert!(!is_enrolled(&db, &a).expect("read"));
        assert!(!token.is_enrolled(&db, &a).expect("read"));
        assert!(enroll(&token, &db, &a, Some("s3cret"), 3).expect("enroll"));
        assert!(is_enrolled(&db, &a).expect("read"));
        assert!(
            token.is_enrolled(&db, &a).expect("read"),
            "a miss is not kept"
        );
        assert!(token.is_enrolled(&db, &a).expect("read"), "a hit is");
        // Again: already enrolled, not new, whatever the mode.
        assert!(!enroll(&closed, &db, &a, None, 4).expect("again"));
        let open = Accounts::new(config("open"));
        assert!(enroll(&open, &db, &[2u8; 32], None, 5).expect("open"));
    }

    #[test]
    fn tokens_are_counted_durably_and_nonces_refused_when_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.redb");
        {
            let db = redb::Database::create(&path).expect("db");
            let token = Accounts::new(config("token"));
            // A plain-string token enrolls one account.
            assert!(enroll(&token, &db, &[1; 32], Some("s3cret"), 1).expect("first"));
            assert!(matches!(
                enroll(&token, &db, &[2; 32], Some("s3cret"), 2),
                Err(EnrollError::TokenUsedUp)
            ));
            // A counted token enrolls `uses` accounts.
            assert!(enroll(&token, &db, &[3; 32], Some("twice"), 3).expect("1 of 2"));
            // The same nonce again, for another account: a replay.
            assert!(matches!(
                enroll(&token, &db, &[4; 32], Some("twice"), 3),
                Err(EnrollError::Replayed)
            ));
            // Refusals spend nothing.
            assert!(enroll(&token, &db, &[4; 32], Some("twice"), 4).expect("2 of 2"));
        }
        // After a restart the counts and nonces are still there.
        let db = redb::Database::create(&path).expect("reopen");
        let token = Accounts::new(config("token"));
        assert!(matches!(
            enroll(&token, &db, &[5; 32], Some("twice"), 5),
            Err(EnrollError::TokenUsedUp)
        ));
        assert!(matches!(
            enroll(&token, &db, &[5; 32], Some("s3cret"), 6),
            Err(EnrollError::TokenUsedUp)
        ));
        let open = Accounts::new(config("open"));
        assert!(matches!(
            enroll(&open, &db, &[5; 32], None, 4),
            Err(EnrollError::Replayed)
        ));
        // Once out of the window a nonce is forgotten (the timestamp check
        // refuses such a replay before it gets here).
        assert!(open
            .enroll(&db, &[6; 32], None, &[9; 16], 10 * W, W, 10 * W)
            .expect("fresh"));
        let left = db.begin_read().expect("read");
        let nonces = left.open_table(ENROLL_NONCES).expect("nonces");
        assert_eq!(nonces.len().expect("len"), 1, "old nonces pruned");
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
