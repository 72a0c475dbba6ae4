//! A provider's part of a client request (docs/API.md, "Part bytes"): the
//! UTF-8 JSON object holding what the client sends that provider only,
//! its shares.
//!
//! `key` (all kinds) is the provider's share of the pseudonym key and
//! `key_bits` its XOR share of the same key (the tree table compares
//! those); `endpoint` (register, update) is its share of the entry. An
//! import part is `{"rows": [ROW, ...]}`, each row a register part. The
//! public fields (lifetime, extra data, import owners) are not in parts:
//! they are sent once per request, signed once ([`crate::public`]), and a
//! part that carries one is refused. The exact part bytes are hashed with
//! blake3 and signed by the client, so [`Part::to_bytes`] is the one
//! writer and [`Part::merge`] reads them without re-encoding, merged with
//! the request's public fields.
//!
//! A [`Part`] value is that merged form; providers store it so
//! ([`Part::to_stored_bytes`], [`Part::parse_stored`]) and execution reads
//! one value.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bits::BIT_SHARE_LEN;
use crate::encoding::ENDPOINT_ELEMENTS;
use crate::layout::{decode_share, decode_share_vector, encode_share, encode_share_vector};
use crate::limits::{EXTRA_MAX_LEN, IMPORT_MAX_ROWS, IMPORT_PART_MAX_LEN, TTL_MAX_S};
use crate::{BitShare, Share};

use crate::public::{EntryPublic, Public};
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
    #[error("a {kind} part carries only a key (no endpoint) but has `{field}`")]
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
    /// A public field (`ttl_s`, `extra`, `owner`) inside a part: public
    /// fields are sent and signed once, in the request's `public` object.
    #[error(
        "part field `{field}` is a public field: it belongs once in the request's signed \
         `public` object, not in a part"
    )]
    PublicInPart {
        /// The offending field.
        field: &'static str,
    },
    /// The request's `public` object is not valid for its kind.
    #[error("public field `{field}`: {message}")]
    Public {
        /// The field (`public` for the object itself or an unknown field).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An import part whose row count differs from `public.rows`.
    #[error("part field `rows`: the part has {part} rows but `public.rows` has {public}")]
    RowCount {
        /// Rows in the part.
        part: usize,
        /// Rows in `public`.
        public: usize,
    },
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

/// One provider's part of a request, merged with the request's public
/// fields.
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
    /// Lifetime in seconds (register and update; public, from the
    /// request's `public` object).
    pub ttl_s: u64,
    /// Plain extra data (register and update; public, from the request's
    /// `public` object).
    pub extra: Vec<u8>,
}

/// The JSON shape of a part, on the wire (shares only) and at rest (with
/// the public fields merged in); field order is the order written.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportJson<R> {
    rows: Vec<R>,
}

fn decode_hex(name: &'static str, h: &str) -> Result<Vec<u8>, PartError> {
    hex::decode(h).map_err(|e| field(name, format!("not hex: {e}")))
}

/// Refuses public fields in a part on the wire.
fn no_public_fields(json: &PartJson) -> Result<(), PartError> {
    let public = [
        ("ttl_s", json.ttl_s.is_some()),
        ("extra", json.extra.is_some()),
        ("owner", json.owner.is_some()),
    ];
    match public.into_iter().find(|(_, present)| *present) {
        Some((field, _)) => Err(PartError::PublicInPart { field }),
        None => Ok(()),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, PartError> {
    serde_json::from_slice(bytes).map_err(|e| PartError::Json(e.to_string()))
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

    /// The public fields this (merged) part carries.
    pub fn entry_public(&self) -> EntryPublic {
        EntryPublic {
            ttl_s: self.ttl_s,
            extra: self.extra.clone(),
        }
    }

    fn shares_json(&self) -> PartJson {
        PartJson {
            key: hex::encode(encode_share(&self.key)),
            key_bits: self.key_bits.map(|b| hex::encode(b.to_bytes())),
            endpoint: (!self.endpoint.is_empty())
                .then(|| hex::encode(encode_share_vector(&self.endpoint))),
            ttl_s: None,
            extra: None,
            owner: None,
        }
    }

    fn stored_json(&self) -> PartJson {
        PartJson {
            ttl_s: (self.ttl_s != 0).then_some(self.ttl_s),
            extra: (!self.extra.is_empty()).then(|| hex::encode(&self.extra)),
            ..self.shares_json()
        }
    }

    /// The exact part bytes sent on the wire: shares only (compact JSON,
    /// fields in the order `key`, `key_bits`, `endpoint`; empty fields are
    /// omitted). The public fields go in the request's `public` object.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(&self.shares_json()).unwrap_or_default()
    }

    /// Parses wire part bytes for `kind` and merges them with the
    /// request's public fields. A part carrying a public field, unknown
    /// fields, or public fields of another kind are refused (for an
    /// import, see [`merge_import`]).
    pub fn merge(kind: Kind, bytes: &[u8], public: &Public) -> Result<Part, PartError> {
        if kind == Kind::Import {
            return Err(PartError::ImportIsRows);
        }
        let json: PartJson = parse_json(bytes)?;
        no_public_fields(&json)?;
        let mut part = Part::shares_from_json(kind, &json)?;
        match (public, kind.carries_entry()) {
            (Public::None, false) => {}
            (Public::Entry(e), true) => {
                part.ttl_s = e.ttl_s;
                part.extra = e.extra.clone();
            }
            _ => {
                return Err(PartError::Public {
                    field: "public",
                    message: format!("does not hold the public fields of a {kind} request"),
                })
            }
        }
        part.validate(kind)?;
        Ok(part)
    }

    /// The merged part as a provider stores it (the wire JSON plus
    /// `ttl_s` and `extra`).
    pub fn to_stored_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(&self.stored_json()).unwrap_or_default()
    }

    /// Reads a part stored with [`Part::to_stored_bytes`].
    pub fn parse_stored(kind: Kind, bytes: &[u8]) -> Result<Part, PartError> {
        if kind == Kind::Import {
            return Err(PartError::ImportIsRows);
        }
        Part::stored_from_json(kind, parse_json(bytes)?)
    }

    fn stored_from_json(kind: Kind, json: PartJson) -> Result<Part, PartError> {
        let mut part = Part::shares_from_json(kind, &json)?;
        if kind.carries_entry() {
            part.ttl_s = json.ttl_s.ok_or(PartError::MissingField {
                kind,
                field: "ttl_s",
            })?;
            part.extra = match &json.extra {
                None => Vec::new(),
                Some(h) => decode_hex("extra", h)?,
            };
        }
        part.validate(kind)?;
        Ok(part)
    }

    /// The shares of a part (ttl and extra left empty).
    fn shares_from_json(kind: Kind, json: &PartJson) -> Result<Part, PartError> {
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
            if json.endpoint.is_some() {
                return Err(PartError::UnexpectedField {
                    kind,
                    field: "endpoint",
                });
            }
            return Ok(Part::query(key, key_bits));
        }
        let endpoint = json.endpoint.as_deref().ok_or(PartError::MissingField {
            kind,
            field: "endpoint",
        })?;
        let endpoint = decode_share_vector(&decode_hex("endpoint", endpoint)?, ENDPOINT_ELEMENTS)
            .map_err(|e| field("endpoint", e.to_string()))?;
        Ok(Part {
            key,
            key_bits,
            endpoint,
            ttl_s: 0,
            extra: Vec::new(),
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

/// The wire bytes of an import part: `{"rows": [ROW, ...]}`, each ROW a
/// register part's shares (at most [`IMPORT_PART_MAX_LEN`] bytes). Each
/// row's public fields go in `public.rows`, at the same index.
pub fn import_to_bytes(rows: &[Part]) -> Result<Vec<u8>, PartError> {
    check_row_count(rows.len())?;
    let rows = rows
        .iter()
        .map(|part| {
            part.validate(Kind::Register)?;
            Ok(part.shares_json())
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

/// Parses an import part's wire bytes and merges row i with
/// `public.rows[i]`: each row a register [`Part`] and the owner's public
/// key, in order. A row carrying a public field, or a row count that
/// differs from `public.rows`, is refused.
pub fn merge_import(bytes: &[u8], public: &Public) -> Result<Vec<(Part, [u8; 32])>, PartError> {
    let Public::Import(publics) = public else {
        return Err(PartError::Public {
            field: "public",
            message: "does not hold the public fields of an import request".into(),
        });
    };
    let json: ImportJson<serde_json::Value> = parse_json(bytes)?;
    check_row_count(json.rows.len())?;
    if json.rows.len() != publics.len() {
        return Err(PartError::RowCount {
            part: json.rows.len(),
            public: publics.len(),
        });
    }
    json.rows
        .into_iter()
        .zip(publics)
        .enumerate()
        .map(|(i, (row, public))| {
            let json: PartJson = serde_json::from_value(row).map_err(|e| {
                field(
                    "rows",
                    format!("row {i}: {}", PartError::Json(e.to_string())),
                )
            })?;
            no_public_fields(&json).map_err(|e| field("rows", format!("row {i}: {e}")))?;
            let mut part = Part::shares_from_json(Kind::Register, &json)
                .map_err(|e| field("rows", format!("row {i}: {e}")))?;
            part.ttl_s = public.entry.ttl_s;
            part.extra = public.entry.extra.clone();
            part.validate(Kind::Register)
                .map_err(|e| field("rows", format!("row {i}: {e}")))?;
            Ok((part, public.owner))
        })
        .collect()
}

/// The merged rows of an import as a provider stores them: each row the
/// stored form of a register part plus `owner`.
pub fn import_to_stored_bytes(rows: &[(Part, [u8; 32])]) -> Vec<u8> {
    let rows: Vec<PartJson> = rows
        .iter()
        .map(|(part, owner)| PartJson {
            owner: Some(hex::encode(owner)),
            ..part.stored_json()
        })
        .collect();
    // Serialising a struct of strings and integers cannot fail.
    serde_json::to_vec(&ImportJson { rows }).unwrap_or_default()
}

/// Reads import rows stored with [`import_to_stored_bytes`], in order.
pub fn parse_stored_import(bytes: &[u8]) -> Result<Vec<(Part, [u8; 32])>, PartError> {
    let json: ImportJson<PartJson> = parse_json(bytes)?;
    json.rows
        .into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            let owner = row
                .owner
                .take()
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
            let part = Part::stored_from_json(Kind::Register, row)
                .map_err(|e| field("rows", format!("row {i}: {e}")))?;
            Ok((part, owner))
        })
        .collect()
}

#[cfg(test)]
mod tests;
