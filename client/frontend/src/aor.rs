//! Addresses of record, their pseudonyms, and the front end's routing
//! tokens.
//!
//! An address of record `sip:alice@a.example` is stored in sharecall under
//! the pseudonym `alice@a.example` (normalised by
//! [`sharecall_proto::encoding::Pseudonym::parse`]: lowercased; a user part
//! that is a phone number with a domain stays a name, so two domains may
//! use the same number). What is stored as its endpoint is, by default, the
//! front end's own URI with a routing token, `sip:fe-<token>@<front end>`:
//! callers' front ends then learn which front end serves the user, never
//! the user's own Contact (see docs/ARCHITECTURE.md, "SIP front end").

use sharecall_proto::encoding::{EncodingError, Pseudonym};
use thiserror::Error;

/// Why a URI is no address of record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AorError {
    /// Not a `sip:` or `sips:` URI (the front end answers 416).
    #[error("unsupported URI scheme in {0:?}")]
    Scheme(String),
    /// No user part, or an empty host.
    #[error("not an address of record (user@host): {0:?}")]
    Shape(String),
    /// The user@host text is no valid pseudonym.
    #[error("no valid pseudonym: {0}")]
    Pseudonym(#[from] EncodingError),
}

/// An address of record: `user@host`, host lowercased, without port,
/// parameters or headers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aor {
    user: String,
    host: String,
}

impl Aor {
    /// Builds an address of record from its parts (host lowercased).
    pub fn new(user: &str, host: &str) -> Aor {
        Aor {
            user: user.to_string(),
            host: host.to_ascii_lowercase(),
        }
    }

    /// Parses a bare `sip:`/`sips:` URI (no `<>`): `sip:alice:pw@A.example:5060;transport=tcp?x=y`
    /// is `alice@a.example`.
    pub fn from_uri(uri: &str) -> Result<Aor, AorError> {
        let uri = uri.trim();
        let lower = uri
            .get(..5)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let rest = if lower.starts_with("sips:") {
            &uri[5..]
        } else if lower.starts_with("sip:") {
            &uri[4..]
        } else {
            return Err(AorError::Scheme(uri.to_string()));
        };
        let Some(at) = rest.rfind('@') else {
            return Err(AorError::Shape(uri.to_string()));
        };
        let userinfo = &rest[..at];
        let user = userinfo.split(':').next().unwrap_or_default();
        let hostport = rest[at + 1..].split([';', '?']).next().unwrap_or_default();
        let host = if let Some(v6) = hostport.strip_prefix('[') {
            v6.split(']')
                .next()
                .map(|h| format!("[{h}]"))
                .unwrap_or_default()
        } else {
            hostport.split(':').next().unwrap_or_default().to_string()
        };
        if user.is_empty() || host.is_empty() || host == "[]" {
            return Err(AorError::Shape(uri.to_string()));
        }
        Ok(Aor::new(user, &host))
    }

    /// The user part.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The host, lowercased.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `sip:user@host`.
    pub fn to_uri(&self) -> String {
        format!("sip:{}@{}", self.user, self.host)
    }

    /// The pseudonym this address of record is stored under.
    pub fn pseudonym(&self) -> Result<Pseudonym, AorError> {
        Ok(Pseudonym::parse(&format!("{}@{}", self.user, self.host))?)
    }
}

impl std::fmt::Display for Aor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.user, self.host)
    }
}

/// The secret that turns an address of record into the front end's stable
/// routing token, so a refresh publishes the same endpoint (and costs no
/// sharecall write) and the token tells an outsider nothing.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// A key from 32 secret bytes (kept in the front end's state dir).
    pub fn new(bytes: [u8; 32]) -> TokenKey {
        TokenKey(bytes)
    }

    /// A fresh random key.
    pub fn random() -> TokenKey {
        TokenKey(rand::random())
    }

    /// The token for `aor`: `fe-` and 20 hex digits (80 bits) of a keyed
    /// blake3 hash.
    pub fn token(&self, aor: &Aor) -> String {
        let h = blake3::keyed_hash(&self.0, aor.to_string().as_bytes());
        format!("fe-{}", hex::encode(&h.as_bytes()[..10]))
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris_into_addresses_of_record() {
        let a = Aor::from_uri("sip:alice:pw@A.Example:5060;transport=tcp?x=y").expect("test value");
        assert_eq!(a.to_string(), "alice@a.example");
        assert_eq!(a.to_uri(), "sip:alice@a.example");
        assert_eq!(
            a.pseudonym().expect("test value").as_str(),
            "alice@a.example"
        );
        assert_eq!(
            Aor::from_uri("sips:bob@[::1]:5061")
                .expect("test value")
                .host(),
            "[::1]"
        );
        assert!(matches!(
            Aor::from_uri("tel:+4930"),
            Err(AorError::Scheme(_))
        ));
        assert!(matches!(
            Aor::from_uri("sip:a.example"),
            Err(AorError::Shape(_))
        ));
        assert!(matches!(
            Aor::from_uri("sip:@a.example"),
            Err(AorError::Shape(_))
        ));
    }

    #[test]
    fn tokens_are_stable_per_key_and_differ_across_keys() {
        let a = Aor::new("alice", "a.example");
        let k = TokenKey::new([7; 32]);
        assert_eq!(k.token(&a), k.token(&a));
        assert_eq!(k.token(&a).len(), 23);
        assert_ne!(k.token(&a), TokenKey::new([8; 32]).token(&a));
        assert_ne!(k.token(&a), k.token(&Aor::new("bob", "a.example")));
    }
}
