//! A provider's part of a client request: what the client sent this
//! provider only (its shares), parsed and checked per request kind.
//!
//! The wire form is the JSON object in `docs/API.md` ("Part bytes"); its
//! exact bytes are hashed and signed by the client, so it is parsed here
//! without re-encoding.

use serde::Deserialize;
use sharecall_proto::encoding::ENDPOINT_ELEMENTS;
use sharecall_proto::{BitShare, Fp, Share};

/// Longest accepted extra data (plain bytes).
pub const MAX_EXTRA: usize = 1024;
/// Longest accepted lifetime: one year.
pub const MAX_TTL_S: u64 = 365 * 24 * 3600;

pub use sharecall_proto::request::Kind;

/// Why a part was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// Not the JSON object of docs/API.md.
    #[error("part is not valid JSON: {0}")]
    Json(String),
    /// A field is missing, malformed or out of range.
    #[error("part field {field}: {message}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn field(field: &'static str, message: impl Into<String>) -> PartError {
    PartError::Field {
        field,
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    key: String,
    #[serde(default)]
    key_bits: Option<String>,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    ttl_s: Option<u64>,
    #[serde(default)]
    extra: Option<String>,
}

/// Most rows in one import part.
pub const MAX_IMPORT_PART_ROWS: usize = 2048;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportWire {
    rows: Vec<serde_json::Value>,
}

/// Parses an import part: `{"rows": [{key, endpoint, ttl_s, extra?,
/// owner}]}`, each row like a register part plus the owner's public key.
pub fn parse_import(bytes: &[u8]) -> Result<Vec<(Part, [u8; 32])>, PartError> {
    let w: ImportWire =
        serde_json::from_slice(bytes).map_err(|e| PartError::Json(e.to_string()))?;
    if w.rows.is_empty() || w.rows.len() > MAX_IMPORT_PART_ROWS {
        return Err(field(
            "rows",
            format!("an import carries 1..={MAX_IMPORT_PART_ROWS} rows"),
        ));
    }
    w.rows
        .into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            let owner = row
                .as_object_mut()
                .and_then(|o| o.remove("owner"))
                .and_then(|v| v.as_str().map(str::to_string))
                .and_then(|h| {
                    let mut out = [0u8; 32];
                    hex::decode_to_slice(h, &mut out).ok().map(|_| out)
                })
                .ok_or_else(|| {
                    field(
                        "rows",
                        format!("row {i}: owner must be a 64-digit hex public key"),
                    )
                })?;
            let bytes = serde_json::to_vec(&row).map_err(|e| PartError::Json(e.to_string()))?;
            let part = Part::parse(Kind::Register, &bytes)
                .map_err(|e| field("rows", format!("row {i}: {e}")))?;
            Ok((part, owner))
        })
        .collect()
}

/// A parsed part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// This provider's share of the pseudonym key.
    pub key: Share,
    /// Its XOR share of the same key: what the tree table compares (the
    /// API requires it there; other tables ignore it).
    pub key_bits: Option<BitShare>,
    /// Its shares of the packed endpoint (register and update).
    pub endpoint: Vec<Share>,
    /// Lifetime in seconds (register and update).
    pub ttl_s: u64,
    /// Plain extra data (register and update).
    pub extra: Vec<u8>,
}

/// Decodes `n` shares laid out as all first components, then all second.
pub fn decode_shares(bytes: &[u8], n: usize) -> Option<Vec<Share>> {
    if bytes.len() != n * 64 {
        return None;
    }
    let element = |i: usize| -> Option<Fp> {
        let raw: [u8; 32] = bytes[i * 32..(i + 1) * 32].try_into().ok()?;
        Fp::from_bytes(&raw).ok()
    };
    (0..n)
        .map(|i| {
            Some(Share {
                first: element(i)?,
                second: element(n + i)?,
            })
        })
        .collect()
}

/// Encodes shares as all first components, then all second.
pub fn encode_shares(shares: &[Share]) -> Vec<u8> {
    let mut out = Vec::with_capacity(shares.len() * 64);
    for s in shares {
        out.extend_from_slice(&s.first.to_bytes());
    }
    for s in shares {
        out.extend_from_slice(&s.second.to_bytes());
    }
    out
}

impl Part {
    /// Parses and checks a part of a `kind` request (for an import, see
    /// [`parse_import`]).
    pub fn parse(kind: Kind, bytes: &[u8]) -> Result<Part, PartError> {
        if kind == Kind::Import {
            return Err(field("rows", "an import part has rows, not one entry"));
        }
        let w: Wire = serde_json::from_slice(bytes).map_err(|e| PartError::Json(e.to_string()))?;
        let key = hex::decode(&w.key)
            .ok()
            .and_then(|b| decode_shares(&b, 1))
            .and_then(|v| v.first().copied())
            .ok_or_else(|| {
                field(
                    "key",
                    "must be 128 hex digits: two canonical field elements",
                )
            })?;
        let key_bits = match &w.key_bits {
            None => None,
            Some(h) => Some(
                hex::decode(h)
                    .ok()
                    .and_then(|b| BitShare::from_bytes(&b))
                    .ok_or_else(|| field("key_bits", "must be 64 hex digits: two 128-bit words"))?,
            ),
        };
        if !kind.carries_entry() {
            if w.endpoint.is_some() || w.ttl_s.is_some() || w.extra.is_some() {
                return Err(field(
                    "endpoint",
                    format!("a {} part carries only a key", kind.as_str()),
                ));
            }
            return Ok(Part {
                key,
                key_bits,
                endpoint: Vec::new(),
                ttl_s: 0,
                extra: Vec::new(),
            });
        }
        let endpoint = w
            .endpoint
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| decode_shares(&b, ENDPOINT_ELEMENTS))
            .ok_or_else(|| {
                field(
                    "endpoint",
                    format!(
                        "must be {} hex digits: {ENDPOINT_ELEMENTS} shares",
                        ENDPOINT_ELEMENTS * 128
                    ),
                )
            })?;
        let ttl_s = w.ttl_s.ok_or_else(|| field("ttl_s", "is required"))?;
        if !(1..=MAX_TTL_S).contains(&ttl_s) {
            return Err(field("ttl_s", format!("must be 1..={MAX_TTL_S} seconds")));
        }
        let extra = match &w.extra {
            None => Vec::new(),
            Some(h) => hex::decode(h).map_err(|_| field("extra", "must be hex"))?,
        };
        if extra.len() > MAX_EXTRA {
            return Err(field("extra", format!("at most {MAX_EXTRA} bytes")));
        }
        Ok(Part {
            key,
            key_bits,
            endpoint,
            ttl_s,
            extra,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    fn shares(n: usize) -> Vec<Share> {
        (0..n)
            .map(|_| Share {
                first: Fp::random(&mut OsRng),
                second: Fp::random(&mut OsRng),
            })
            .collect()
    }

    #[test]
    fn register_part_round_trips() {
        let key = shares(1);
        let endpoint = shares(ENDPOINT_ELEMENTS);
        let json = serde_json::json!({
            "key": hex::encode(encode_shares(&key)),
            "endpoint": hex::encode(encode_shares(&endpoint)),
            "ttl_s": 60,
            "extra": hex::encode(b"hi"),
        });
        let p = Part::parse(Kind::Register, json.to_string().as_bytes()).expect("parse");
        assert_eq!(p.key, key[0]);
        assert_eq!(p.endpoint, endpoint);
        assert_eq!(p.ttl_s, 60);
        assert_eq!(p.extra, b"hi");
    }

    #[test]
    fn bad_parts_are_refused_with_the_field() {
        let key = hex::encode(encode_shares(&shares(1)));
        let cases: Vec<(Kind, serde_json::Value, &str)> = vec![
            (Kind::Resolve, serde_json::json!({"key": "00"}), "key"),
            (
                Kind::Resolve,
                serde_json::json!({"key": key, "ttl_s": 5}),
                "endpoint",
            ),
            (
                Kind::Register,
                serde_json::json!({"key": key, "ttl_s": 5}),
                "endpoint",
            ),
            (
                Kind::Register,
                serde_json::json!({"key": key, "endpoint": hex::encode(encode_shares(&shares(ENDPOINT_ELEMENTS))), "ttl_s": 0}),
                "ttl_s",
            ),
            (
                Kind::Update,
                serde_json::json!({"key": key, "endpoint": hex::encode(encode_shares(&shares(ENDPOINT_ELEMENTS))), "ttl_s": 5, "extra": hex::encode(vec![0u8; MAX_EXTRA + 1])}),
                "extra",
            ),
        ];
        for (kind, json, f) in cases {
            let err = Part::parse(kind, json.to_string().as_bytes()).expect_err("refused");
            assert!(err.to_string().contains(f), "{err} should name {f}");
        }
        assert!(matches!(
            Part::parse(Kind::Resolve, b"{\"key\": 1, \"x\": 2}"),
            Err(PartError::Json(_))
        ));
        // A non-canonical element (p itself, all ones) is refused.
        let bad = hex::encode([0xffu8; 64]);
        assert!(Part::parse(Kind::Delete, format!("{{\"key\":\"{bad}\"}}").as_bytes()).is_err());
    }
}
