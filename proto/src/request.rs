//! What a client signs when it sends a request's parts to the providers.
//!
//! One signature covers the request id, type, account, timestamp, window,
//! the blake3 hash of every provider's part, the request's public fields
//! once ([`crate::public::Public::hash`]) and the blake3 hash of every
//! provider's answer key (answers are sealed under them, [`crate::seal`]),
//! so a provider cannot swap or replay another provider's part, and nobody
//! can change the request or redirect its answers without the account key.

use std::fmt;
use std::str::FromStr;

/// The kind of a request (its wire name is signed, see [`SignedFields`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Store a new pseudonym → endpoint binding (fails if the pseudonym is
    /// registered and not expired).
    Register,
    /// Look up the endpoint of a pseudonym.
    Resolve,
    /// Replace endpoint, lifetime and extra data of a pseudonym the
    /// account owns.
    Update,
    /// Remove a pseudonym the account owns.
    Delete,
    /// Bulk-register many entries, each with its owner (only accounts the
    /// providers list as importers).
    Import,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::Register,
        Kind::Resolve,
        Kind::Update,
        Kind::Delete,
        Kind::Import,
    ];

    /// The wire name (`register`, `resolve`, `update`, `delete`, `import`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Resolve => "resolve",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Import => "import",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the kind changes the table when it succeeds.
    pub fn writes(self) -> bool {
        !matches!(self, Kind::Resolve)
    }

    /// Whether its entries carry an endpoint, lifetime and extra data (an
    /// import's rows each do).
    pub fn carries_entry(self) -> bool {
        matches!(self, Kind::Register | Kind::Update | Kind::Import)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is no request kind's wire name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown request kind; expected register, resolve, update, delete or import")]
pub struct UnknownKind;

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        Kind::parse(s).ok_or(UnknownKind)
    }
}

/// Domain separation for request signatures.
// v2: the answer key joined the signed fields; v3: the public fields
// (signed once) or three symmetric answer-key hashes; v4: both. An older
// signature never verifies.
const CONTEXT: &[u8] = b"sharecall 2026 request v4\0";

/// The fields a client signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFields<'a> {
    /// Client-chosen request id.
    pub request_id: &'a str,
    /// Request type.
    pub kind: &'a str,
    /// The account's ed25519 public key.
    pub account: &'a [u8; 32],
    /// Client clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// How long the providers wait for all parts.
    pub window_ms: u64,
    /// blake3 of each provider's part, in provider order.
    pub part_hashes: &'a [[u8; 32]; 3],
    /// blake3 of the canonical bytes of the request's public fields
    /// ([`crate::public::Public::hash`]): ttl, extra data, import owners.
    pub public_hash: &'a [u8; 32],
    /// blake3 of each provider's fresh answer key for this request, in
    /// provider order: provider `i` receives key `i` in its body only and
    /// seals its answer under it ([`crate::seal`]).
    pub answer_key_hashes: &'a [[u8; 32]; 3],
}

/// Domain separation for enrollment signatures (v2: names the provider,
/// a client nonce and the token).
const ENROLL_CONTEXT: &[u8] = b"sharecall 2026 enroll v2\0";

/// Shortest enrollment nonce, in bytes.
pub const ENROLL_NONCE_MIN: usize = 16;
/// Longest enrollment nonce, in bytes.
pub const ENROLL_NONCE_MAX: usize = 64;

/// The bytes an account signs to enroll its public key with provider
/// `provider` (0..=2): proves it holds the private key; the provider id
/// keeps a signature for one provider from being replayed to another, the
/// fresh `nonce` (16..=64 random bytes, refused when seen again) and the
/// timestamp bound replay at the same provider, and `token` is bound so a
/// captured signature cannot be used with another token.
pub fn enroll_message(
    provider: u8,
    account: &[u8; 32],
    timestamp_ms: u64,
    nonce: &[u8],
    token: Option<&str>,
) -> Vec<u8> {
    let token = token.unwrap_or("").as_bytes();
    let mut m = Vec::with_capacity(ENROLL_CONTEXT.len() + 64 + nonce.len() + token.len());
    m.extend_from_slice(ENROLL_CONTEXT);
    m.push(provider);
    m.extend_from_slice(account);
    m.extend_from_slice(&timestamp_ms.to_le_bytes());
    for field in [nonce, token] {
        m.extend_from_slice(&(field.len() as u64).to_le_bytes());
        m.extend_from_slice(field);
    }
    m
}

impl SignedFields<'_> {
    /// The exact bytes that are signed (length-prefixed fields after a
    /// context string, so no two requests share an encoding).
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(CONTEXT.len() + 200);
        m.extend_from_slice(CONTEXT);
        for field in [self.request_id.as_bytes(), self.kind.as_bytes()] {
            m.extend_from_slice(&(field.len() as u64).to_le_bytes());
            m.extend_from_slice(field);
        }
        m.extend_from_slice(self.account);
        m.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        m.extend_from_slice(&self.window_ms.to_le_bytes());
        for h in self.part_hashes {
            m.extend_from_slice(h);
        }
        m.extend_from_slice(self.public_hash);
        for h in self.answer_key_hashes {
            m.extend_from_slice(h);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_message() {
        let account = [7u8; 32];
        let hashes = [[1u8; 32], [2u8; 32], [3u8; 32]];
        let base = SignedFields {
            request_id: "r1",
            kind: "register",
            account: &account,
            timestamp_ms: 10,
            window_ms: 1000,
            part_hashes: &hashes,
            public_hash: &[4u8; 32],
            answer_key_hashes: &hashes,
        };
        let m = base.message();
        let other_account = [8u8; 32];
        let swapped = [[2u8; 32], [1u8; 32], [3u8; 32]];
        for changed in [
            SignedFields {
                request_id: "r2",
                ..base.clone()
            },
            SignedFields {
                kind: "resolve",
                ..base.clone()
            },
            SignedFields {
                account: &other_account,
                ..base.clone()
            },
            SignedFields {
                timestamp_ms: 11,
                ..base.clone()
            },
            SignedFields {
                window_ms: 999,
                ..base.clone()
            },
            SignedFields {
                part_hashes: &swapped,
                ..base.clone()
            },
            SignedFields {
                public_hash: &other_account,
                ..base.clone()
            },
            SignedFields {
                answer_key_hashes: &swapped,
                ..base.clone()
            },
            // Moving bytes between id and kind must not collide.
            SignedFields {
                request_id: "r1r",
                kind: "egister",
                ..base.clone()
            },
        ] {
            assert_ne!(changed.message(), m);
        }
    }
}
