//! A request's public fields (docs/API.md, "Public fields"): what every
//! provider must read the same, sent once per request as the body's
//! `public` object and signed once ([`crate::request::SignedFields`]
//! carries [`Public::hash`]).
//!
//! For `register` and `update` that is the lifetime and the plain extra
//! data; for `import`, per row, lifetime, extra data and the owner's public
//! key; `resolve` and `delete` have none (`{}`). Parts carry only shares
//! ([`crate::part`]); a provider merges its part with `public`
//! ([`crate::part::Part::merge`], [`crate::part::merge_import`]). Because
//! the signed message is what the providers compare before a request is
//! ordered, a client that signs different public fields for different
//! providers gets the request aborted, never executed.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::limits::{IMPORT_MAX_ROWS, TTL_MAX_S};
use crate::part::{check_extra, PartError};
use crate::request::Kind;

/// Domain separation of the canonical encoding ([`Public::canonical_bytes`]).
const CONTEXT: &[u8] = b"sharecall 2026 public fields v1\0";

/// The public fields of one entry (a register, an update, or an import row
/// without its owner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPublic {
    /// Lifetime in seconds, 1 ..= [`TTL_MAX_S`].
    pub ttl_s: u64,
    /// Plain extra data (at most 1024 bytes; empty when absent).
    pub extra: Vec<u8>,
}

/// The public fields of one import row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowPublic {
    /// Lifetime and extra data.
    pub entry: EntryPublic,
    /// The owning account's ed25519 public key.
    pub owner: [u8; 32],
}

/// A request's public fields, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Public {
    /// `resolve`, `delete`: `{}`.
    None,
    /// `register`, `update`: `{"ttl_s": N, "extra": "<hex>"}` (extra optional).
    Entry(EntryPublic),
    /// `import`: `{"rows": [{"ttl_s": N, "extra": "<hex>", "owner": "<64 hex>"}, ...]}`,
    /// row i describing row i of every part.
    Import(Vec<RowPublic>),
}

fn bad(field: &'static str, message: impl Into<String>) -> PartError {
    PartError::Public {
        field,
        message: message.into(),
    }
}

impl EntryPublic {
    /// Checked public fields of an entry: `ttl` in whole seconds (1 s to
    /// 365 days), `extra` at most 1024 bytes.
    pub fn new(ttl: Duration, extra: Option<&[u8]>) -> Result<EntryPublic, PartError> {
        let ttl_s = crate::part::ttl_seconds(ttl)?;
        let extra = extra.map(<[u8]>::to_vec).unwrap_or_default();
        check_extra(&extra)?;
        Ok(EntryPublic { ttl_s, extra })
    }

    fn check(&self) -> Result<(), PartError> {
        if !(1..=TTL_MAX_S).contains(&self.ttl_s) {
            return Err(PartError::BadTtl(format!("ttl_s {}", self.ttl_s)));
        }
        check_extra(&self.extra)
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("ttl_s".into(), json!(self.ttl_s));
        if !self.extra.is_empty() {
            m.insert("extra".into(), json!(hex::encode(&self.extra)));
        }
        m
    }

    /// Reads `ttl_s` and `extra` out of `m` (removing them).
    fn take(m: &mut Map<String, Value>, at: &str) -> Result<EntryPublic, PartError> {
        let ttl_s = match m.remove("ttl_s") {
            None => return Err(bad("ttl_s", format!("{at}is required"))),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad("ttl_s", format!("{at}must be an integer")))?,
        };
        let extra = match m.remove("extra") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(h)) => {
                hex::decode(h).map_err(|e| bad("extra", format!("{at}not hex: {e}")))?
            }
            Some(_) => return Err(bad("extra", format!("{at}must be a hex string"))),
        };
        let e = EntryPublic { ttl_s, extra };
        e.check()?;
        Ok(e)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ttl_s.to_le_bytes());
        out.extend_from_slice(&(self.extra.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.extra);
    }
}

/// The first field of `m` left over (not allowed where it is).
fn leftover(m: &Map<String, Value>) -> Option<String> {
    m.keys().next().cloned()
}

fn unexpected(kind: Kind, name: String) -> PartError {
    PartError::Public {
        field: match name.as_str() {
            "ttl_s" => "ttl_s",
            "extra" => "extra",
            "owner" => "owner",
            "rows" => "rows",
            _ => "public",
        },
        message: format!("`{name}` is not a public field of a {kind} request"),
    }
}

impl Public {
    /// Whether these public fields are the shape `kind` carries.
    pub fn fits(&self, kind: Kind) -> bool {
        matches!(
            (self, kind),
            (Public::None, Kind::Resolve | Kind::Delete)
                | (Public::Entry(_), Kind::Register | Kind::Update)
                | (Public::Import(_), Kind::Import)
        )
    }

    /// The public fields of a `kind` request whose (merged) parts are
    /// `parts`: refused if the parts disagree on them, so a client never
    /// signs one value while meaning another.
    pub fn of_parts(kind: Kind, parts: &[crate::part::Part; 3]) -> Result<Public, PartError> {
        match kind {
            Kind::Resolve | Kind::Delete => Ok(Public::None),
            Kind::Import => Err(PartError::ImportIsRows),
            Kind::Register | Kind::Update => {
                let e = parts[0].entry_public();
                if parts.iter().any(|p| p.ttl_s != e.ttl_s) {
                    return Err(bad("ttl_s", "the three parts disagree on it"));
                }
                if parts.iter().any(|p| p.extra != e.extra) {
                    return Err(bad("extra", "the three parts disagree on it"));
                }
                e.check()?;
                Ok(Public::Entry(e))
            }
        }
    }

    /// The entry fields, for a register or update.
    pub fn entry(&self) -> Option<&EntryPublic> {
        match self {
            Public::Entry(e) => Some(e),
            _ => None,
        }
    }

    /// The `public` JSON object of a request body.
    pub fn to_json(&self) -> Value {
        match self {
            Public::None => json!({}),
            Public::Entry(e) => Value::Object(e.to_json()),
            Public::Import(rows) => {
                let rows: Vec<Value> = rows
                    .iter()
                    .map(|r| {
                        let mut m = r.entry.to_json();
                        m.insert("owner".into(), json!(hex::encode(r.owner)));
                        Value::Object(m)
                    })
                    .collect();
                json!({ "rows": rows })
            }
        }
    }

    /// Parses and checks a body's `public` object for `kind`: exactly the
    /// fields the kind allows, with valid values; any other field is
    /// refused, named in the error.
    pub fn parse(kind: Kind, value: &Value) -> Result<Public, PartError> {
        let Value::Object(m) = value else {
            return Err(bad("public", "must be a JSON object"));
        };
        let mut m = m.clone();
        let public = match kind {
            Kind::Resolve | Kind::Delete => Public::None,
            Kind::Register | Kind::Update => Public::Entry(EntryPublic::take(&mut m, "")?),
            Kind::Import => {
                let rows = match m.remove("rows") {
                    Some(Value::Array(rows)) => rows,
                    Some(_) => return Err(bad("rows", "must be an array")),
                    None => return Err(bad("rows", "is required for an import")),
                };
                if rows.is_empty() || rows.len() > IMPORT_MAX_ROWS {
                    return Err(bad(
                        "rows",
                        format!(
                            "an import carries 1 to {IMPORT_MAX_ROWS} rows, got {}",
                            rows.len()
                        ),
                    ));
                }
                let rows = rows
                    .into_iter()
                    .enumerate()
                    .map(|(i, row)| Public::parse_row(kind, i, row))
                    .collect::<Result<Vec<_>, _>>()?;
                Public::Import(rows)
            }
        };
        match leftover(&m) {
            Some(name) => Err(unexpected(kind, name)),
            None => Ok(public),
        }
    }

    fn parse_row(kind: Kind, i: usize, row: Value) -> Result<RowPublic, PartError> {
        let at = format!("row {i}: ");
        let Value::Object(mut m) = row else {
            return Err(bad("rows", format!("{at}must be a JSON object")));
        };
        let entry = EntryPublic::take(&mut m, &at)?;
        let owner = match m.remove("owner") {
            Some(Value::String(h)) => {
                let mut out = [0u8; 32];
                hex::decode_to_slice(h, &mut out)
                    .map_err(|_| bad("owner", format!("{at}must be a 64-digit hex public key")))?;
                out
            }
            _ => {
                return Err(bad(
                    "owner",
                    format!("{at}must be a 64-digit hex public key"),
                ))
            }
        };
        match leftover(&m) {
            Some(name) => Err(unexpected(kind, name)),
            None => Ok(RowPublic { entry, owner }),
        }
    }

    /// The canonical bytes: a context string, a tag for the shape, then
    /// every field length-prefixed or fixed-size, so two different public
    /// objects never share an encoding (whatever their JSON spelling).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = CONTEXT.to_vec();
        match self {
            Public::None => out.push(0),
            Public::Entry(e) => {
                out.push(1);
                e.encode(&mut out);
            }
            Public::Import(rows) => {
                out.push(2);
                out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
                for r in rows {
                    r.entry.encode(&mut out);
                    out.extend_from_slice(&r.owner);
                }
            }
        }
        out
    }

    /// Parses [`Public::canonical_bytes`] back (a check that the encoding
    /// is unambiguous; providers never need it).
    pub fn from_canonical(bytes: &[u8]) -> Option<Public> {
        let mut r = Reader(bytes.strip_prefix(CONTEXT)?);
        let public = match r.byte()? {
            0 => Public::None,
            1 => Public::Entry(r.entry()?),
            2 => {
                let n = usize::try_from(r.u64()?).ok()?;
                let mut rows = Vec::with_capacity(n.min(IMPORT_MAX_ROWS));
                for _ in 0..n {
                    let entry = r.entry()?;
                    let owner = r.take(32)?.try_into().ok()?;
                    rows.push(RowPublic { entry, owner });
                }
                Public::Import(rows)
            }
            _ => return None,
        };
        r.0.is_empty().then_some(public)
    }

    /// blake3 of [`Public::canonical_bytes`]: what the request signature
    /// covers.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.canonical_bytes()).as_bytes()
    }
}

/// A cursor over canonical bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn entry(&mut self) -> Option<EntryPublic> {
        let ttl_s = self.u64()?;
        let len = usize::try_from(self.u64()?).ok()?;
        let extra = self.take(len)?.to_vec();
        Some(EntryPublic { ttl_s, extra })
    }
}

#[cfg(test)]
mod tests;
