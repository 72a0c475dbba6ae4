//! A provider's part of a client request (docs/API.md, "Part bytes"): the
//! UTF-8 JSON object holding what the client sends that provider only,
//! its shares.
//!
//! `key` (all kinds) is the provider's share of the pseudonym key and
//! `key_bits` its XOR share of the same key (the tree table compares
//! those); `endpoint` and `ttl_s` (register, update) and the optional
//! plain `extra` (register, update) describe the entry. An import part is
//! `{"rows": [ROW, ...]}`, each row a register part plus the owner's public
//! key. The exact bytes are hashed with blake3 and signed by the client,
//! so [`Part::to_bytes`] is the one writer and [`Part::parse`] reads them
//! without re-encoding.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bits::BIT_SHARE_LEN;
use crate::encoding::ENDPOINT_ELEMENTS;
use crate::layout::{decode_share, decode_share_vector, encode_share, encode_share_vector};
use crate::limits::{EXTRA_MAX_LEN, IMPORT_MAX_ROWS, IMPORT_PART_MAX_LEN, TTL_MAX_S};
use crate::{BitShare, Share};

pub use crate::request::Kind;

/// Why a part (or a value going into one) is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// The bytes are not the JSON object of a part (or have unknown fields).
    #[error("part is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// A field does not decode or has the wrong length.
    #[error("part field `{field}`: {message}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A field required for the kind is absent.
    #[error("a {kind} part needs the field `{field}`")]
    MissingField {
        /// The request kind.
        kind: Kind,
        /// The missing field.
        field: &'static str,
    },
    /// A field not allowed for the kind is present.
    #[error("a {kind} part carries only a key (no endpoint, ttl_s or extra) but has `{field}`")]
    UnexpectedField {
        /// The request kind.
        kind: Kind,
        /// The offending field.
        field: &'static str,
    },
    /// A lifetime outside 1 s ..= 365 days or not in whole seconds.
    #[error("ttl must be whole seconds from 1 s to 365 days (31536000 s), got {0}")]
    BadTtl(String),
    /// More than [`EXTRA_MAX_LEN`] bytes of extra data.
    #[error("extra data is {0} bytes long; at most 1024 bytes are allowed")]
    ExtraTooLong(usize),
    /// An import part is rows of register parts, not one part.
    #[error("an import part holds rows, not one entry")]
    ImportIsRows,
    /// An import with no rows, too many rows, or too many bytes.
    #[error("import: {0}")]
    ImportSize(String),
}

fn field(field: &'static str, message: impl Into<String>) -> PartError {
    PartError::Field {
        field,
        message: message.into(),
    }
}

/// Checks a lifetime and returns it in seconds (1 ..= [`TTL_MAX_S`], whole
/// seconds only).
pub fn ttl_seconds(ttl: Duration) -> Result<u64, PartError> {
    let s = ttl.as_secs();
    if ttl.subsec_nanos() != 0 || !(1..=TTL_MAX_S).contains(&s) {
        return Err(PartError::BadTtl(format!("{ttl:?}")));
    }
    Ok(s)
}

/// Checks the length of extra data (at most [`EXTRA_MAX_LEN`] bytes).
pub fn check_extra(extra: &[u8]) -> Result<(), PartError> {
    if extra.len() > EXTRA_MAX_LEN {
        return Err(PartError::ExtraTooLong(extra.len()));
    }
    Ok(())
}

/// One provider's part of a request.
///
/// Fields a kind does not carry are empty: a `resolve` or `delete` part
/// has no endpoint shares, a zero `ttl_s` and no extra data. Empty extra
/// data is not written.
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
    /// Plain extra data, the same in all three parts (register and update).
    pub extra: Vec<u8>,
}

/// The JSON shape of a part; field order is the order written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartJson {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_bits: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<String>,
}

/// The JSON shape of an import row: a part plus its owner, written last.
#[derive(Serialize)]
struct ImportRowJson {
    #[serde(flatten)]
    part: PartJson,
    owner: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportJson<R> {
    rows: Vec<R>,
}

fn decode_hex(name: &'static str, h: &str) -> Result<Vec<u8>, PartError> {
    hex::decode(h).map_err(|e| field(name, format!("not hex: {e}")))
}

impl Part {
    /// A `resolve` or `delete` part: only the key shares.
    pub fn query(key: Share, key_bits: Option<BitShare>) -> Part {
        Part {
            key,
            key_bits,
            endpoint: Vec::new(),
            ttl_s: 0,
            extra: Vec::new(),
        }
    }

    /// Checks that the part has exactly the fields `kind` needs, with valid
    /// values.
    pub fn validate(&self, kind: Kind) -> Result<(), PartError> {
        if kind == Kind::Import {
            return Err(PartError::ImportIsRows);
        }
        if !kind.carries_entry() {
            let unexpected = [
                ("endpoint", !self.endpoint.is_empty()),
                ("ttl_s", self.ttl_s != 0),
                ("extra", !self.extra.is_empty()),
            ];
            return match unexpected.into_iter().find(|(_, present)| *present) {
                Some((field, _)) => Err(PartError::UnexpectedField { kind, field }),
                None => Ok(()),
            };
        }
        if self.endpoint.is_empty() {
            return Err(PartError::MissingField {
                kind,
                field: "endpoint",
            });
        }
        if self.endpoint.len() != ENDPOINT_ELEMENTS {
            return Err(field(
                "endpoint",
                format!(
                    "{} shares, expected {ENDPOINT_ELEMENTS}",
                    self.endpoint.len()
                ),
            ));
        }
        if self.ttl_s == 0 {
            return Err(PartError::MissingField {
                kind,
                field: "ttl_s",
            });
        }
        ttl_seconds(Duration::from_secs(self.ttl_s))?;
        check_extra(&self.extra)
    }

    fn to_json(&self) -> PartJson {
        PartJson {
            key: hex::encode(encode_share(&self.key)),
            key_bits: self.key_bits.map(|b| hex::encode(b.to_bytes())),
            endpoint: (!self.endpoint.is_empty())
                .then(|| hex::encode(encode_share_vector(&self.endpoint))),
            ttl_s: (self.ttl_s != 0).then_some(self.ttl_s),
            extra: (!self.extra.is_empty()).then(|| hex::encode(&self.extra)),
        }
    }

    /// The exact part bytes (compact JSON, fields in the order `key`,
    /// `key_bits`, `endpoint`, `ttl_s`, `extra`; empty fields are omitted).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }

    /// Parses part bytes and checks them for `kind` (unknown fields are
    /// refused; for an import, see [`parse_import`]).
    pub fn parse(kind: Kind, bytes: &[u8]) -> Result<Part, PartError> {
        if kind == Kind::Import {
            return Err(PartError::ImportIsRows);
        }
        let json: PartJson =
            serde_json::from_slice(bytes).map_err(|e| PartError::Json(e.to_string()))?;
        Part::from_json(kind, json)
    }

    fn from_json(kind: Kind, json: PartJson) -> Result<Part, PartError> {
        let key = decode_share(&decode_hex("key", &json.key)?).map_err(|e| {
            field(
                "key",
                format!("{e}; must be 128 hex digits: two canonical field elements"),
            )
        })?;
        let key_bits = match &json.key_bits {
            None => None,
            Some(h) => Some(
                BitShare::from_bytes(&decode_hex("key_bits", h)?).ok_or_else(|| {
                    field(
                        "key_bits",
                        format!(
                            "expected {BIT_SHARE_LEN} bytes (64 hex digits: two 128-bit words)"
                        ),
                    )
                })?,
            ),
        };
        if !kind.carries_entry() {
            let unexpected = [
                ("endpoint", json.endpoint.is_some()),
                ("ttl_s", json.ttl_s.is_some()),
                ("extra", json.extra.is_some()),
            ];
            if let Some((field, _)) = unexpected.into_iter().find(|(_, present)| *present) {
                return Err(PartError::UnexpectedField { kind, field });
            }
            return Ok(Part::query(key, key_bits));
        }
        let endpoint = json.endpoint.as_deref().ok_or(PartError::MissingField {
            kind,
            field: "endpoint",
        })?;
        let endpoint = decode_share_vector(&decode_hex("endpoint", endpoint)?, ENDPOINT_ELEMENTS)
            .map_err(|e| field("endpoint", e.to_string()))?;
        let ttl_s = json.ttl_s.ok_or(PartError::MissingField {
            kind,
            field: "ttl_s",
        })?;
        if !(1..=TTL_MAX_S).contains(&ttl_s) {
            return Err(PartError::BadTtl(format!("ttl_s {ttl_s}")));
        }
        let extra = match &json.extra {
            None => Vec::new(),
            Some(h) => decode_hex("extra", h)?,
        };
        check_extra(&extra)?;
        Ok(Part {
            key,
            key_bits,
            endpoint,
            ttl_s,
            extra,
        })
    }
}

fn check_row_count(n: usize) -> Result<(), PartError> {
    if n == 0 || n > IMPORT_MAX_ROWS {
        return Err(PartError::ImportSize(format!(
            "an import carries 1 to {IMPORT_MAX_ROWS} rows, got {n}"
        )));
    }
    Ok(())
}

/// The bytes of an import part: `{"rows": [ROW, ...]}`, each ROW a register
/// part plus `owner`, the owning account's public key (at most
/// [`IMPORT_PART_MAX_LEN`] bytes).
pub fn import_to_bytes(rows: &[(Part, [u8; 32])]) -> Result<Vec<u8>, PartError> {
    check_row_count(rows.len())?;
    let rows = rows
        .iter()
        .map(|(part, owner)| {
            part.validate(Kind::Register)?;
            Ok(ImportRowJson {
                part: part.to_json(),
                owner: hex::encode(owner),
            })
        })
        .collect::<Result<Vec<_>, PartError>>()?;
    // Serialising a struct of strings and integers cannot fail.
    let bytes = serde_json::to_vec(&ImportJson { rows }).unwrap_or_default();
    if bytes.len() > IMPORT_PART_MAX_LEN {
        return Err(PartError::ImportSize(format!(
            "a part of {} bytes is larger than the {IMPORT_PART_MAX_LEN} bytes allowed; \
             send fewer rows per request",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Parses an import part into its rows, in order: each a register [`Part`]
/// and the owner's public key.
pub fn parse_import(bytes: &[u8]) -> Result<Vec<(Part, [u8; 32])>, PartError> {
    let json: ImportJson<serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| PartError::Json(e.to_string()))?;
    check_row_count(json.rows.len())?;
    json.rows
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
            let json: PartJson = serde_json::from_value(row).map_err(|e| {
                field(
                    "rows",
                    format!("row {i}: {}", PartError::Json(e.to_string())),
                )
            })?;
            let part = Part::from_json(Kind::Register, json)
                .map_err(|e| field("rows", format!("row {i}: {e}")))?;
            Ok((part, owner))
        })
        .collect()
}

#[cfg(test)]
mod tests;
