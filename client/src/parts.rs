//! The bytes a client sends to each provider and the answers it gets back
//! (docs/API.md, "Part bytes" and "Answers").
//!
//! A *part* is a UTF-8 JSON object holding one provider's shares of a
//! request: `key` (all kinds), `endpoint` and `ttl_s` (register, update) and
//! the optional plain `extra` (register, update). Its exact bytes are hashed
//! with blake3 and the hashes signed, so [`Part::to_bytes`] is the one place
//! that writes them.
//!
//! A share of one value travels as 64 bytes `first || second`; a share
//! vector of n values as `first[0..n] || second[0..n]` (n·64 bytes); binary
//! values as lowercase hex.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sharecall_proto::encoding::ENDPOINT_ELEMENTS;
use sharecall_proto::{BitShare, Fp, Share};

use crate::registration::{EntryPart, KeyPart};

/// Longest lifetime of a registration, in seconds (365 days).
pub const TTL_MAX_S: u64 = 31_536_000;

/// Longest plain `extra` data, in bytes.
pub const EXTRA_MAX_LEN: usize = 1024;

/// Encoded length of one share (`first || second`).
pub const SHARE_LEN: usize = 64;

/// Encoded length of an endpoint share vector.
pub const ENDPOINT_SHARE_LEN: usize = ENDPOINT_ELEMENTS * SHARE_LEN;

pub use sharecall_proto::request::Kind;

/// Why a part (or a value going into one) is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// The bytes are not the JSON object of a part (or have unknown fields).
    #[error("part is not valid JSON of the expected shape: {0}")]
    Json(String),
    /// A hex field does not decode or has the wrong length.
    #[error("part field `{field}`: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
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
    #[error("a {kind} part must not have the field `{field}`")]
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
    /// An import part is not one [`Part`]: build it with [`import_parts`].
    #[error("an import part holds rows; build it with import_parts")]
    ImportIsRows,
    /// An import with no rows, too many rows, or too many bytes.
    #[error("import: {0}")]
    ImportSize(String),
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

/// Checks the length of extra data.
pub fn check_extra(extra: &[u8]) -> Result<(), PartError> {
    if extra.len() > EXTRA_MAX_LEN {
        return Err(PartError::ExtraTooLong(extra.len()));
    }
    Ok(())
}

/// One provider's part of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// This provider's share of the pseudonym key.
    pub key: Share,
    /// Its XOR share of the same key (required by tree tables).
    pub key_bits: Option<BitShare>,
    /// This provider's shares of the packed endpoint (register, update).
    pub endpoint: Option<Vec<Share>>,
    /// Lifetime in seconds (register, update).
    pub ttl_s: Option<u64>,
    /// Plain extra data, the same in all three parts (register, update;
    /// optional).
    pub extra: Option<Vec<u8>>,
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

impl Part {
    /// A `resolve` or `delete` part: only the key shares.
    pub fn query(key: KeyPart) -> Part {
        Part {
            key: key.key,
            key_bits: Some(key.key_bits),
            endpoint: None,
            ttl_s: None,
            extra: None,
        }
    }

    /// Checks that the part has exactly the fields `kind` needs, with valid
    /// values.
    pub fn validate(&self, kind: Kind) -> Result<(), PartError> {
        if kind == Kind::Import {
            return Err(PartError::ImportIsRows);
        }
        if kind.carries_entry() {
            match &self.endpoint {
                None => {
                    return Err(PartError::MissingField {
                        kind,
                        field: "endpoint",
                    })
                }
                Some(e) if e.len() != ENDPOINT_ELEMENTS => {
                    return Err(PartError::Field {
                        field: "endpoint",
                        reason: format!("{} shares, expected {ENDPOINT_ELEMENTS}", e.len()),
                    })
                }
                Some(_) => {}
            }
            match self.ttl_s {
                None => {
                    return Err(PartError::MissingField {
                        kind,
                        field: "ttl_s",
                    })
                }
                Some(t) => {
                    ttl_seconds(Duration::from_secs(t))?;
                }
            }
            if let Some(extra) = &self.extra {
                check_extra(extra)?;
            }
        } else {
            let unexpected = [
                ("endpoint", self.endpoint.is_some()),
                ("ttl_s", self.ttl_s.is_some()),
                ("extra", self.extra.is_some()),
            ];
            if let Some((field, _)) = unexpected.into_iter().find(|(_, present)| *present) {
                return Err(PartError::UnexpectedField { kind, field });
            }
        }
        Ok(())
    }

    /// The exact part bytes (compact JSON, fields in the order `key`,
    /// `endpoint`, `ttl_s`, `extra`; absent fields are omitted).
    pub fn to_bytes(&self) -> Vec<u8> {
        let json = PartJson {
            key: hex::encode(encode_share(&self.key)),
            key_bits: self.key_bits.map(|b| hex::encode(b.to_bytes())),
            endpoint: self
                .endpoint
                .as_deref()
                .map(|e| hex::encode(encode_share_vector(e))),
            ttl_s: self.ttl_s,
            extra: self.extra.as_deref().map(hex::encode),
        };
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(&json).unwrap_or_default()
    }

    /// Parses part bytes and checks them for `kind` (what a provider does;
    /// unknown fields are refused).
    pub fn from_bytes(kind: Kind, bytes: &[u8]) -> Result<Part, PartError> {
        let json: PartJson =
            serde_json::from_slice(bytes).map_err(|e| PartError::Json(e.to_string()))?;
        let key = decode_hex("key", &json.key)?;
        let key = decode_share("key", &key)?;
        let key_bits = decode_bits(json.key_bits.as_deref())?;
        let endpoint = match &json.endpoint {
            None => None,
            Some(h) => Some(decode_share_vector(
                "endpoint",
                &decode_hex("endpoint", h)?,
                ENDPOINT_ELEMENTS,
            )?),
        };
        let extra = match &json.extra {
            None => None,
            Some(h) => Some(decode_hex("extra", h)?),
        };
        let part = Part {
            key,
            key_bits,
            endpoint,
            ttl_s: json.ttl_s,
            extra,
        };
        part.validate(kind)?;
        Ok(part)
    }
}

/// The three parts of a `register` or `update` from
/// [`share_entry`](crate::registration::share_entry) output.
pub fn entry_parts(
    entry: [EntryPart; 3],
    ttl: Duration,
    extra: Option<&[u8]>,
) -> Result<[Part; 3], PartError> {
    let ttl_s = ttl_seconds(ttl)?;
    if let Some(extra) = extra {
        check_extra(extra)?;
    }
    Ok(entry.map(|e| Part {
        key: e.key,
        key_bits: Some(e.key_bits),
        endpoint: Some(e.endpoint),
        ttl_s: Some(ttl_s),
        extra: extra.map(<[u8]>::to_vec),
    }))
}

/// Most rows in one import request.
pub const IMPORT_MAX_ROWS: usize = 2048;

/// Largest import part (its bytes, before hex encoding).
pub const IMPORT_MAX_PART_LEN: usize = 4 << 20;

/// One row of an import: the three providers' shares of an entry (from
/// [`share_entry`](crate::registration::share_entry)), its lifetime, plain
/// extra data and the public key of the account that will own it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportEntry {
    /// The entry's shares, one per provider.
    pub shares: [EntryPart; 3],
    /// Lifetime (whole seconds, 1 s to 365 days).
    pub ttl: Duration,
    /// Plain extra data (at most 1024 bytes).
    pub extra: Option<Vec<u8>>,
    /// The owning account's ed25519 public key.
    pub owner: [u8; 32],
}

/// The JSON shape of one import row; field order is the order written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRowJson {
    key: String,
    key_bits: String,
    endpoint: String,
    ttl_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<String>,
    owner: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportJson {
    rows: Vec<ImportRowJson>,
}

/// The three part byte strings of an `import`: `{"rows": [ROW, ...]}`,
/// each ROW a register part plus `owner`, rows in the same order in all
/// three parts.
pub fn import_parts(rows: &[ImportEntry]) -> Result<[Vec<u8>; 3], PartError> {
    if rows.is_empty() || rows.len() > IMPORT_MAX_ROWS {
        return Err(PartError::ImportSize(format!(
            "an import carries 1 to {IMPORT_MAX_ROWS} rows, got {}",
            rows.len()
        )));
    }
    let mut per: [Vec<ImportRowJson>; 3] = Default::default();
    for row in rows {
        let ttl_s = ttl_seconds(row.ttl)?;
        if let Some(x) = &row.extra {
            check_extra(x)?;
        }
        let owner = hex::encode(row.owner);
        let extra = row.extra.as_deref().map(hex::encode);
        for (out, share) in per.iter_mut().zip(&row.shares) {
            if share.endpoint.len() != ENDPOINT_ELEMENTS {
                return Err(PartError::Field {
                    field: "endpoint",
                    reason: format!(
                        "{} shares, expected {ENDPOINT_ELEMENTS}",
                        share.endpoint.len()
                    ),
                });
            }
            out.push(ImportRowJson {
                key: hex::encode(encode_share(&share.key)),
                key_bits: hex::encode(share.key_bits.to_bytes()),
                endpoint: hex::encode(encode_share_vector(&share.endpoint)),
                ttl_s,
                extra: extra.clone(),
                owner: owner.clone(),
            });
        }
    }
    let mut out: [Vec<u8>; 3] = Default::default();
    for (bytes, rows) in out.iter_mut().zip(per) {
        // Serialising a struct of strings and integers cannot fail.
        *bytes = serde_json::to_vec(&ImportJson { rows }).unwrap_or_default();
        if bytes.len() > IMPORT_MAX_PART_LEN {
            return Err(PartError::ImportSize(format!(
                "a part of {} bytes is larger than the {IMPORT_MAX_PART_LEN} bytes allowed; \
                 send fewer rows per request",
                bytes.len()
            )));
        }
    }
    Ok(out)
}

/// Parses one import part back into its rows: each a register [`Part`]
/// and the owner's public key (what a provider does).
pub fn parse_import_part(bytes: &[u8]) -> Result<Vec<(Part, [u8; 32])>, PartError> {
    let json: ImportJson =
        serde_json::from_slice(bytes).map_err(|e| PartError::Json(e.to_string()))?;
    if json.rows.is_empty() || json.rows.len() > IMPORT_MAX_ROWS {
        return Err(PartError::ImportSize(format!(
            "an import carries 1 to {IMPORT_MAX_ROWS} rows, got {}",
            json.rows.len()
        )));
    }
    json.rows
        .into_iter()
        .map(|r| {
            let owner = decode_hex("owner", &r.owner)?;
            let owner: [u8; 32] = owner.try_into().map_err(|_| PartError::Field {
                field: "owner",
                reason: "expected 32 bytes".into(),
            })?;
            let key = decode_share("key", &decode_hex("key", &r.key)?)?;
            let key_bits = decode_bits(Some(&r.key_bits))?;
            let endpoint = decode_share_vector(
                "endpoint",
                &decode_hex("endpoint", &r.endpoint)?,
                ENDPOINT_ELEMENTS,
            )?;
            let extra = match &r.extra {
                None => None,
                Some(h) => Some(decode_hex("extra", h)?),
            };
            let part = Part {
                key,
                key_bits,
                endpoint: Some(endpoint),
                ttl_s: Some(r.ttl_s),
                extra,
            };
            part.validate(Kind::Register)?;
            Ok((part, owner))
        })
        .collect()
}

/// The three parts of a `resolve` or `delete` from
/// [`share_query`](crate::registration::share_query) output.
pub fn query_parts(shares: [KeyPart; 3]) -> [Part; 3] {
    shares.map(Part::query)
}

/// Parses an optional hex `key_bits` field.
fn decode_bits(hex_bits: Option<&str>) -> Result<Option<BitShare>, PartError> {
    hex_bits
        .map(|h| {
            decode_hex("key_bits", h).and_then(|b| {
                BitShare::from_bytes(&b).ok_or_else(|| PartError::Field {
                    field: "key_bits",
                    reason: "expected 32 bytes (64 hex digits)".into(),
                })
            })
        })
        .transpose()
}

/// `first || second`, 64 bytes.
pub fn encode_share(s: &Share) -> [u8; SHARE_LEN] {
    let mut out = [0u8; SHARE_LEN];
    out[..32].copy_from_slice(&s.first.to_bytes());
    out[32..].copy_from_slice(&s.second.to_bytes());
    out
}

/// `first[0..n] || second[0..n]`, n·64 bytes.
pub fn encode_share_vector(shares: &[Share]) -> Vec<u8> {
    let mut out = Vec::with_capacity(shares.len() * SHARE_LEN);
    for s in shares {
        out.extend_from_slice(&s.first.to_bytes());
    }
    for s in shares {
        out.extend_from_slice(&s.second.to_bytes());
    }
    out
}

fn decode_hex(field: &'static str, h: &str) -> Result<Vec<u8>, PartError> {
    hex::decode(h).map_err(|e| PartError::Field {
        field,
        reason: format!("not hex: {e}"),
    })
}

fn element(field: &'static str, bytes: &[u8]) -> Result<Fp, PartError> {
    let mut b = [0u8; 32];
    b.copy_from_slice(bytes);
    Fp::from_bytes(&b).map_err(|e| PartError::Field {
        field,
        reason: e.to_string(),
    })
}

/// Decodes a 64-byte share, refusing non-canonical field elements.
pub fn decode_share(field: &'static str, bytes: &[u8]) -> Result<Share, PartError> {
    if bytes.len() != SHARE_LEN {
        return Err(PartError::Field {
            field,
            reason: format!("{} bytes, expected {SHARE_LEN}", bytes.len()),
        });
    }
    Ok(Share {
        first: element(field, &bytes[..32])?,
        second: element(field, &bytes[32..])?,
    })
}

/// Decodes a share vector of exactly `n` shares.
pub fn decode_share_vector(
    field: &'static str,
    bytes: &[u8],
    n: usize,
) -> Result<Vec<Share>, PartError> {
    if bytes.len() != n * SHARE_LEN {
        return Err(PartError::Field {
            field,
            reason: format!("{} bytes, expected {}", bytes.len(), n * SHARE_LEN),
        });
    }
    let (firsts, seconds) = bytes.split_at(n * 32);
    firsts
        .chunks_exact(32)
        .zip(seconds.chunks_exact(32))
        .map(|(a, b)| {
            Ok(Share {
                first: element(field, a)?,
                second: element(field, b)?,
            })
        })
        .collect()
}

/// A request's result code (`result.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResultCode {
    /// Executed.
    Ok,
    /// Resolve/update/delete of an absent or expired pseudonym.
    NotFound,
    /// Register of a pseudonym that is registered and not expired.
    Exists,
    /// Update/delete by an account that does not own the entry.
    Forbidden,
    /// This provider caught up from its peers and has no answer share; use
    /// the other two.
    Unavailable,
}

impl ResultCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultCode::Ok => "ok",
            ResultCode::NotFound => "not_found",
            ResultCode::Exists => "exists",
            ResultCode::Forbidden => "forbidden",
            ResultCode::Unavailable => "unavailable",
        }
    }

    fn parse(s: &str) -> Option<ResultCode> {
        [
            ResultCode::Ok,
            ResultCode::NotFound,
            ResultCode::Exists,
            ResultCode::Forbidden,
            ResultCode::Unavailable,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One provider's `result` of an executed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestResult {
    /// The result code.
    pub code: ResultCode,
    /// This provider's (re-randomised) share vector of the packed endpoint:
    /// present exactly for a `resolve` that is `ok`.
    pub endpoint: Option<Vec<Share>>,
    /// The plain extra data stored with the entry (resolve, ok).
    pub extra: Option<Vec<u8>>,
    /// When the entry expires, ms since the Unix epoch (resolve, ok).
    pub expires_at_ms: Option<u64>,
    /// `(imported, skipped)` row counts (import, ok).
    pub imported: Option<(u64, u64)>,
}

/// A provider's answer to `POST /v1/requests` or `GET /v1/requests/{id}`
/// (status 200 or 202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `"status": "done"`: executed, with this provider's result.
    Done {
        /// The request id.
        request_id: String,
        /// Position in the providers' common order.
        seq: Option<u64>,
        /// The result.
        result: RequestResult,
    },
    /// `"status": "pending"`: ordered (with `seq`) or not yet ordered.
    Pending {
        /// The request id.
        request_id: String,
        /// Position in the order, once ordered.
        seq: Option<u64>,
    },
}

impl Answer {
    /// The request id the answer is about.
    pub fn request_id(&self) -> &str {
        match self {
            Answer::Done { request_id, .. } | Answer::Pending { request_id, .. } => request_id,
        }
    }
}

/// Why an answer body does not follow the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AnswerError(pub String);

#[derive(Deserialize)]
struct AnswerJson {
    request_id: String,
    status: String,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    result: Option<ResultJson>,
}

#[derive(Deserialize)]
struct ResultJson {
    code: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    extra: Option<String>,
    #[serde(default)]
    expires_at_ms: Option<u64>,
    #[serde(default)]
    imported: Option<u64>,
    #[serde(default)]
    skipped: Option<u64>,
}

/// Parses a 200/202 answer body. `kind` says what the result must hold: a
/// `resolve` that is `ok` needs a 640-byte endpoint share vector and an
/// expiry; other fields of other results are ignored.
pub fn parse_answer(kind: Kind, body: &[u8]) -> Result<Answer, AnswerError> {
    let json: AnswerJson = serde_json::from_slice(body)
        .map_err(|e| AnswerError(format!("answer is not the expected JSON: {e}")))?;
    match json.status.as_str() {
        "pending" => Ok(Answer::Pending {
            request_id: json.request_id,
            seq: json.seq,
        }),
        "done" => {
            let r = json
                .result
                .ok_or_else(|| AnswerError("a done answer has no `result`".into()))?;
            let code = ResultCode::parse(&r.code)
                .ok_or_else(|| AnswerError(format!("unknown result code {:?}", short(&r.code))))?;
            let mut result = RequestResult {
                code,
                endpoint: None,
                extra: None,
                expires_at_ms: None,
                imported: None,
            };
            if kind == Kind::Import && code == ResultCode::Ok {
                match (r.imported, r.skipped) {
                    (Some(i), Some(s)) => result.imported = Some((i, s)),
                    _ => {
                        return Err(AnswerError(
                            "an ok import has no `result.imported` and `result.skipped`".into(),
                        ))
                    }
                }
            }
            if kind == Kind::Resolve && code == ResultCode::Ok {
                let hex_ep = r
                    .endpoint
                    .ok_or_else(|| AnswerError("an ok resolve has no `result.endpoint`".into()))?;
                let bytes =
                    decode_hex("endpoint", &hex_ep).map_err(|e| AnswerError(e.to_string()))?;
                result.endpoint = Some(
                    decode_share_vector("endpoint", &bytes, ENDPOINT_ELEMENTS)
                        .map_err(|e| AnswerError(format!("result.{e}")))?,
                );
                result.extra = match r.extra {
                    None => None,
                    Some(h) => {
                        let extra = decode_hex("extra", &h)
                            .map_err(|e| AnswerError(format!("result.{e}")))?;
                        check_extra(&extra).map_err(|e| AnswerError(e.to_string()))?;
                        Some(extra)
                    }
                };
                result.expires_at_ms = Some(r.expires_at_ms.ok_or_else(|| {
                    AnswerError("an ok resolve has no `result.expires_at_ms`".into())
                })?);
            }
            Ok(Answer::Done {
                request_id: json.request_id,
                seq: json.seq,
                result,
            })
        }
        other => Err(AnswerError(format!(
            "unknown status {:?} (expected done or pending)",
            short(other)
        ))),
    }
}

/// A provider's error body `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    /// The stable error code (`bad_signature`, `aborted`, …).
    pub code: String,
    /// The human message.
    pub message: String,
}

#[derive(Deserialize)]
struct ErrorJson {
    error: ErrorBody,
}

/// Parses an error body; `None` if the body is not one.
pub fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    serde_json::from_slice::<ErrorJson>(body)
        .ok()
        .map(|e| e.error)
}

/// At most 80 characters of provider-supplied text (codes, ids), with
/// control characters replaced, for messages.
pub(crate) fn short(s: &str) -> String {
    clip(s, 80)
}

/// At most `n` characters of provider-supplied text, with control
/// characters replaced.
pub(crate) fn clip(s: &str, n: usize) -> String {
    let mut out: String = s
        .chars()
        .take(n)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > n {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::{share_entry, share_query};
    use proptest::prelude::*;
    use rand::rngs::OsRng;
    use sharecall_proto::encoding::{Endpoint, Pseudonym};

    fn entry() -> (Pseudonym, Endpoint) {
        (
            Pseudonym::parse("+49 30 1234567").expect("pseudonym"),
            Endpoint::parse("sip:alice@192.0.2.10:5060").expect("endpoint"),
        )
    }

    #[test]
    fn kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>(), Ok(k));
        }
        assert_eq!(
            "Register".parse::<Kind>(),
            Err(sharecall_proto::request::UnknownKind)
        );
    }

    #[test]
    fn register_parts_round_trip() {
        let (p, e) = entry();
        let parts = entry_parts(
            share_entry(&p, &e, &mut OsRng),
            Duration::from_secs(3600),
            Some(b"hi"),
        )
        .expect("parts");
        for part in &parts {
            let bytes = part.to_bytes();
            assert_eq!(Part::from_bytes(Kind::Register, &bytes), Ok(part.clone()));
            assert_eq!(Part::from_bytes(Kind::Update, &bytes), Ok(part.clone()));
            // Shape of the JSON, as docs/API.md lists it.
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            let obj = v.as_object().expect("object");
            let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
            fields.sort_unstable();
            assert_eq!(fields, ["endpoint", "extra", "key", "key_bits", "ttl_s"]);
            assert_eq!(obj["key"].as_str().map(str::len), Some(128));
            assert_eq!(obj["key_bits"].as_str().map(str::len), Some(64));
            assert_eq!(obj["endpoint"].as_str().map(str::len), Some(1280));
            assert_eq!(obj["ttl_s"].as_u64(), Some(3600));
            assert_eq!(obj["extra"].as_str(), Some("6869"));
            // A register part is not a resolve part.
            assert_eq!(
                Part::from_bytes(Kind::Resolve, &bytes),
                Err(PartError::UnexpectedField {
                    kind: Kind::Resolve,
                    field: "endpoint"
                })
            );
        }
        // The endpoint still reconstructs from the decoded parts.
        let decoded: [Vec<Share>; 3] = parts.map(|p| {
            Part::from_bytes(Kind::Register, &p.to_bytes())
                .expect("decodes")
                .endpoint
                .expect("endpoint")
        });
        assert_eq!(
            crate::registration::reconstruct_endpoint(&decoded).expect("reconstructs"),
            e
        );
    }

    #[test]
    fn import_parts_parse_back_in_order() {
        let rows: Vec<(Pseudonym, Endpoint)> = (0..5)
            .map(|i| {
                (
                    Pseudonym::parse(&format!("+4930123456{i}")).expect("p"),
                    Endpoint::parse(&format!("sip:u{i}@192.0.2.1")).expect("e"),
                )
            })
            .collect();
        let entries: Vec<ImportEntry> = rows
            .iter()
            .enumerate()
            .map(|(i, (p, e))| ImportEntry {
                shares: share_entry(p, e, &mut OsRng),
                ttl: Duration::from_secs(60 + i as u64),
                extra: (i == 2).then(|| b"x".to_vec()),
                owner: [i as u8; 32],
            })
            .collect();
        let parts = import_parts(&entries).expect("parts");
        let parsed = parts
            .each_ref()
            .map(|b| parse_import_part(b).expect("parses"));
        for (i, ((p, e), entry)) in rows.iter().zip(&entries).enumerate() {
            for (prov, rows) in parsed.iter().enumerate() {
                let (part, owner) = &rows[i];
                assert_eq!(*owner, [i as u8; 32]);
                assert_eq!(part.key, entry.shares[prov].key);
                assert_eq!(part.ttl_s, Some(60 + i as u64));
                assert_eq!(part.extra.as_deref(), (i == 2).then_some(&b"x"[..]));
            }
            let eps = [0, 1, 2].map(|k| parsed[k][i].0.endpoint.clone().expect("ep"));
            assert_eq!(
                crate::registration::reconstruct_endpoint(&eps).expect("reconstructs"),
                *e
            );
            let bits = [0, 1, 2].map(|k| parsed[k][i].0.key_bits.expect("key_bits"));
            assert_eq!(
                sharecall_proto::bits::reconstruct_bits(&bits),
                Ok(p.key().as_u128())
            );
            let keys = [0, 1, 2].map(|k| parsed[k][i].0.key);
            assert_eq!(
                sharecall_proto::sharing::reconstruct_all(&keys).expect("key"),
                p.key().to_field()
            );
        }
        // Row JSON shape: a register part plus owner.
        let v: serde_json::Value = serde_json::from_slice(&parts[0]).expect("json");
        let row = v["rows"][0].as_object().expect("row");
        let mut fields: Vec<&str> = row.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["endpoint", "key", "key_bits", "owner", "ttl_s"]);
        // Limits.
        assert!(matches!(import_parts(&[]), Err(PartError::ImportSize(_))));
        let mut bad = entries[0].clone();
        bad.ttl = Duration::ZERO;
        assert!(matches!(import_parts(&[bad]), Err(PartError::BadTtl(_))));
        assert_eq!(
            Part::query(KeyPart {
                key: entries[0].shares[0].key,
                key_bits: entries[0].shares[0].key_bits,
            })
            .validate(Kind::Import),
            Err(PartError::ImportIsRows)
        );
        // Answers carry the counts.
        let body = br#"{"request_id":"r","status":"done","seq":2,"result":{"code":"ok","imported":4,"skipped":1}}"#;
        assert!(matches!(
            parse_answer(Kind::Import, body),
            Ok(Answer::Done {
                result: RequestResult {
                    imported: Some((4, 1)),
                    ..
                },
                ..
            })
        ));
        let body = br#"{"request_id":"r","status":"done","seq":2,"result":{"code":"ok"}}"#;
        assert!(parse_answer(Kind::Import, body).is_err());
    }

    #[test]
    fn share_encodings_follow_the_api() {
        let s = Share {
            first: Fp::from_u64(1),
            second: Fp::from_u64(2),
        };
        let b = encode_share(&s);
        assert_eq!(b[0], 1);
        assert_eq!(b[32], 2);
        let v = encode_share_vector(&[
            s,
            Share {
                first: Fp::from_u64(3),
                second: Fp::from_u64(4),
            },
        ]);
        // All first components, then all second components.
        assert_eq!([v[0], v[32], v[64], v[96]], [1, 3, 2, 4]);
        assert_eq!(
            decode_share_vector("v", &v, 2).expect("decode")[1].second,
            Fp::from_u64(4)
        );
        assert!(decode_share_vector("v", &v, 3).is_err());
        // Non-canonical elements are refused.
        let mut bad = b;
        bad[..32].copy_from_slice(&[0xff; 32]);
        assert!(decode_share("key", &bad).is_err());
    }

    #[test]
    fn query_parts_have_only_a_key() {
        let (p, _) = entry();
        let parts = query_parts(share_query(&p, &mut OsRng));
        for part in &parts {
            let bytes = part.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            // The key, in both forms.
            assert_eq!(v.as_object().map(|o| o.len()), Some(2));
            assert_eq!(Part::from_bytes(Kind::Resolve, &bytes), Ok(part.clone()));
            assert_eq!(Part::from_bytes(Kind::Delete, &bytes), Ok(part.clone()));
            assert!(matches!(
                Part::from_bytes(Kind::Register, &bytes),
                Err(PartError::MissingField {
                    field: "endpoint",
                    ..
                })
            ));
        }
    }

    #[test]
    fn bad_parts_are_refused() {
        let k = hex::encode([0u8; 64]);
        let with = |extra: &str| format!(r#"{{"key":"{k}"{extra}}}"#).into_bytes();
        assert!(matches!(
            Part::from_bytes(Kind::Resolve, &with(r#","colour":"red""#)),
            Err(PartError::Json(_))
        ));
        assert!(matches!(
            Part::from_bytes(Kind::Resolve, br#"{"key":"zz"}"#),
            Err(PartError::Field { field: "key", .. })
        ));
        assert!(matches!(
            Part::from_bytes(Kind::Resolve, br#"{"key":"00"}"#),
            Err(PartError::Field { field: "key", .. })
        ));
        let ep = hex::encode([0u8; ENDPOINT_SHARE_LEN]);
        assert!(matches!(
            Part::from_bytes(
                Kind::Register,
                &with(&format!(r#","endpoint":"{ep}","ttl_s":0"#))
            ),
            Err(PartError::BadTtl(_))
        ));
        assert!(matches!(
            Part::from_bytes(Kind::Register, &with(&format!(r#","endpoint":"{ep}""#))),
            Err(PartError::MissingField { field: "ttl_s", .. })
        ));
        let long = hex::encode([1u8; EXTRA_MAX_LEN + 1]);
        assert_eq!(
            Part::from_bytes(
                Kind::Register,
                &with(&format!(r#","endpoint":"{ep}","ttl_s":5,"extra":"{long}""#))
            ),
            Err(PartError::ExtraTooLong(EXTRA_MAX_LEN + 1))
        );
    }

    #[test]
    fn ttl_and_extra_limits() {
        assert_eq!(ttl_seconds(Duration::from_secs(1)), Ok(1));
        assert_eq!(ttl_seconds(Duration::from_secs(TTL_MAX_S)), Ok(TTL_MAX_S));
        assert!(ttl_seconds(Duration::ZERO).is_err());
        assert!(ttl_seconds(Duration::from_secs(TTL_MAX_S + 1)).is_err());
        assert!(ttl_seconds(Duration::from_millis(1500)).is_err());
        assert!(check_extra(&[0; EXTRA_MAX_LEN]).is_ok());
        let (p, e) = entry();
        assert_eq!(
            entry_parts(
                share_entry(&p, &e, &mut OsRng),
                Duration::from_secs(60),
                Some(&[0; EXTRA_MAX_LEN + 1])
            ),
            Err(PartError::ExtraTooLong(EXTRA_MAX_LEN + 1))
        );
    }

    #[test]
    fn answers_parse() {
        let (p, e) = entry();
        let shares = share_entry(&p, &e, &mut OsRng);
        let ep = hex::encode(encode_share_vector(&shares[1].endpoint));
        let body = format!(
            r#"{{"request_id":"r-1","status":"done","seq":17,"result":{{"code":"ok","endpoint":"{ep}","extra":"6869","expires_at_ms":1790000360000}}}}"#
        );
        assert_eq!(
            parse_answer(Kind::Resolve, body.as_bytes()),
            Ok(Answer::Done {
                request_id: "r-1".into(),
                seq: Some(17),
                result: RequestResult {
                    code: ResultCode::Ok,
                    endpoint: Some(shares[1].endpoint.clone()),
                    extra: Some(b"hi".to_vec()),
                    expires_at_ms: Some(1_790_000_360_000),
                    imported: None,
                }
            })
        );
        let ok = br#"{"request_id":"r-1","status":"done","seq":3,"result":{"code":"exists"}}"#;
        assert!(matches!(
            parse_answer(Kind::Register, ok),
            Ok(Answer::Done {
                result: RequestResult {
                    code: ResultCode::Exists,
                    endpoint: None,
                    ..
                },
                ..
            })
        ));
        assert_eq!(
            parse_answer(
                Kind::Register,
                br#"{"request_id":"r-1","status":"pending"}"#
            ),
            Ok(Answer::Pending {
                request_id: "r-1".into(),
                seq: None
            })
        );
        // An ok resolve without shares, an unknown code or status, garbage.
        for bad in [
            &br#"{"request_id":"r","status":"done","seq":1,"result":{"code":"ok"}}"#[..],
            br#"{"request_id":"r","status":"done","seq":1,"result":{"code":"maybe"}}"#,
            br#"{"request_id":"r","status":"executed","seq":1}"#,
            br#"{"request_id":"r","status":"done","seq":1}"#,
            b"<html>",
        ] {
            assert!(parse_answer(Kind::Resolve, bad).is_err());
        }
        let short_ep = format!(
            r#"{{"request_id":"r","status":"done","result":{{"code":"ok","endpoint":"{}","expires_at_ms":1}}}}"#,
            &ep[..ep.len() - 128]
        );
        let err = parse_answer(Kind::Resolve, short_ep.as_bytes()).expect_err("short");
        assert!(err.0.contains("576 bytes, expected 640"), "{err}");
    }

    #[test]
    fn error_bodies_parse() {
        assert_eq!(
            parse_error(br#"{"error":{"code":"bad_signature","message":"no","request_id":"x"}}"#),
            Some(ErrorBody {
                code: "bad_signature".into(),
                message: "no".into()
            })
        );
        assert_eq!(parse_error(b"Internal Server Error"), None);
    }

    proptest! {
        #[test]
        fn any_part_round_trips(
            key in any::<[u64; 2]>(),
            bits in prop::option::of(any::<(u128, u128)>()),
            ep in prop::collection::vec(any::<(u64, u64)>(), ENDPOINT_ELEMENTS),
            ttl in 1..=TTL_MAX_S,
            extra in prop::option::of(prop::collection::vec(any::<u8>(), 0..=EXTRA_MAX_LEN)),
        ) {
            let part = Part {
                key: Share { first: Fp::from_u64(key[0]), second: Fp::from_u64(key[1]) },
                key_bits: bits.map(|(first, second)| BitShare { first, second }),
                endpoint: Some(ep.iter().map(|&(a, b)| Share { first: Fp::from_u64(a), second: Fp::from_u64(b) }).collect()),
                ttl_s: Some(ttl),
                extra,
            };
            prop_assert_eq!(Part::from_bytes(Kind::Update, &part.to_bytes()), Ok(part));
        }

        #[test]
        fn parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = Part::from_bytes(Kind::Register, &bytes);
            let _ = parse_answer(Kind::Resolve, &bytes);
            let _ = parse_error(&bytes);
        }
    }
}
