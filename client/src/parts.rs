//! The bytes a client sends to each provider and the answers it gets back
//! (docs/API.md, "Part bytes" and "Answers").
//!
//! The part JSON, the share layout, the limits and the result codes are
//! the wire contract of [`sharecall_proto`] ([`sharecall_proto::part`],
//! [`sharecall_proto::layout`], [`sharecall_proto::limits`],
//! [`sharecall_proto::answer`]), re-exported here. This module builds the
//! three parts of a request from the client-side shares
//! ([`crate::registration`]) and parses the providers' answers.

use std::time::Duration;

use serde::Deserialize;
use sharecall_proto::encoding::ENDPOINT_ELEMENTS;
use sharecall_proto::layout::decode_share_vector;
use sharecall_proto::seal::{AnswerKeys, Sealed};
use sharecall_proto::Share;

use crate::registration::{EntryPart, KeyPart};

pub use sharecall_proto::answer::Code as ResultCode;
pub use sharecall_proto::layout::{
    decode_share, encode_share, encode_share_vector, ENDPOINT_SHARE_LEN, SHARE_LEN,
};
pub use sharecall_proto::limits::{
    EXTRA_MAX_LEN, IMPORT_MAX_ROWS, IMPORT_PART_MAX_LEN as IMPORT_MAX_PART_LEN, TTL_MAX_S,
};
pub use sharecall_proto::part::{
    check_extra, import_to_bytes, merge_import, ttl_seconds, Kind, Part, PartError,
};
pub use sharecall_proto::public::{EntryPublic, Public, RowPublic};

/// The `resolve` or `delete` part of one provider's key shares.
pub fn query_part(key: KeyPart) -> Part {
    Part::query(key.key, Some(key.key_bits))
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
        endpoint: e.endpoint,
        ttl_s,
        extra: extra.map(<[u8]>::to_vec).unwrap_or_default(),
    }))
}

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

/// The public fields and the three part byte strings of an `import`: the
/// parts are `{"rows": [ROW, ...]}`, each ROW a register part's shares,
/// rows in the same order in all three parts and in `public.rows` (which
/// holds each row's ttl, extra data and owner, once).
pub fn import_parts(rows: &[ImportEntry]) -> Result<(Public, [Vec<u8>; 3]), PartError> {
    if rows.is_empty() || rows.len() > IMPORT_MAX_ROWS {
        return Err(PartError::ImportSize(format!(
            "an import carries 1 to {IMPORT_MAX_ROWS} rows, got {}",
            rows.len()
        )));
    }
    let mut per: [Vec<Part>; 3] = Default::default();
    let mut public = Vec::with_capacity(rows.len());
    for row in rows {
        let [a, b, c] = entry_parts(row.shares.clone(), row.ttl, row.extra.as_deref())?;
        public.push(RowPublic {
            entry: a.entry_public(),
            owner: row.owner,
        });
        for (out, part) in per.iter_mut().zip([a, b, c]) {
            out.push(part);
        }
    }
    let [a, b, c] = per;
    Ok((
        Public::Import(public),
        [
            import_to_bytes(&a)?,
            import_to_bytes(&b)?,
            import_to_bytes(&c)?,
        ],
    ))
}

/// The three parts of a `resolve` or `delete` from
/// [`share_query`](crate::registration::share_query) output.
pub fn query_parts(shares: [KeyPart; 3]) -> [Part; 3] {
    shares.map(query_part)
}

fn decode_hex(field: &'static str, h: &str) -> Result<Vec<u8>, String> {
    hex::decode(h).map_err(|e| format!("part field `{field}`: not hex: {e}"))
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
    sealed_result: Option<SealedJson>,
}

/// `sealed_result`: the `result` object sealed to the request's answer key.
#[derive(Deserialize)]
struct SealedJson {
    nonce: String,
    ciphertext: String,
}

/// What opens a provider's sealed answer: the request's answer keys (the
/// provider's own opens it), its id and the provider (the AAD binds
/// both).
#[derive(Debug, Clone, Copy)]
pub struct Opener<'a> {
    /// The request's answer keys.
    pub keys: &'a AnswerKeys,
    /// The request id.
    pub request_id: &'a str,
    /// The answering provider.
    pub provider: u8,
}

impl Opener<'_> {
    fn open(&self, s: &SealedJson) -> Result<ResultJson, AnswerError> {
        let mut nonce = [0u8; sharecall_proto::seal::NONCE_LEN];
        hex::decode_to_slice(&s.nonce, &mut nonce)
            .map_err(|_| AnswerError("`sealed_result.nonce` is not 24 hex digits".into()))?;
        let ciphertext = hex::decode(&s.ciphertext)
            .map_err(|_| AnswerError("`sealed_result.ciphertext` is not hex".into()))?;
        let clear = self
            .keys
            .open(
                self.request_id,
                self.provider,
                &Sealed { nonce, ciphertext },
            )
            .map_err(|e| AnswerError(e.to_string()))?;
        serde_json::from_slice(&clear)
            .map_err(|e| AnswerError(format!("the opened result is not the expected JSON: {e}")))
    }
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

/// Parses a 200/202 answer body, opening its `sealed_result` with
/// `opener`. `kind` says what the result must hold: a `resolve` that is
/// `ok` needs a 640-byte endpoint share vector and an expiry; other fields
/// of other results are ignored.
pub fn parse_answer(kind: Kind, body: &[u8], opener: Opener<'_>) -> Result<Answer, AnswerError> {
    let json: AnswerJson = serde_json::from_slice(body)
        .map_err(|e| AnswerError(format!("answer is not the expected JSON: {e}")))?;
    match json.status.as_str() {
        "pending" => Ok(Answer::Pending {
            request_id: json.request_id,
            seq: json.seq,
        }),
        "done" => {
            let r = json
                .sealed_result
                .ok_or_else(|| AnswerError("a done answer has no `sealed_result`".into()))?;
            let r = opener.open(&r)?;
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
                let bytes = decode_hex("endpoint", &hex_ep).map_err(AnswerError)?;
                result.endpoint = Some(
                    decode_share_vector(&bytes, ENDPOINT_ELEMENTS)
                        .map_err(|e| AnswerError(format!("result.part field `endpoint`: {e}")))?,
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

    /// The answer keys of the test requests.
    fn keys() -> &'static AnswerKeys {
        static S: std::sync::OnceLock<AnswerKeys> = std::sync::OnceLock::new();
        S.get_or_init(|| AnswerKeys::generate(&mut OsRng))
    }

    /// Provider 1's opener for request `id`.
    fn op(id: &str) -> Opener<'_> {
        Opener {
            keys: keys(),
            request_id: id,
            provider: 1,
        }
    }

    /// `body` (written with a clear `result`) as provider 1 sends it: the
    /// result sealed under provider 1's key of [`keys`].
    fn seal_body(body: impl AsRef<[u8]>) -> Vec<u8> {
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body.as_ref()) else {
            return body.as_ref().to_vec();
        };
        if let Some(r) = v.as_object_mut().and_then(|o| o.remove("result")) {
            let id = v["request_id"].as_str().unwrap_or_default().to_string();
            let sealed = keys()
                .key(1)
                .seal(&id, 1, r.to_string().as_bytes(), &mut OsRng)
                .expect("seal");
            v["sealed_result"] = serde_json::json!({
                "nonce": hex::encode(sealed.nonce),
                "ciphertext": hex::encode(&sealed.ciphertext),
            });
        }
        v.to_string().into_bytes()
    }

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
        let public = Public::of_parts(Kind::Register, &parts).expect("public");
        // The public fields, once, as docs/API.md lists them.
        assert_eq!(
            public.to_json(),
            serde_json::json!({"ttl_s": 3600, "extra": "6869"})
        );
        for part in &parts {
            let bytes = part.to_bytes();
            assert_eq!(
                Part::merge(Kind::Register, &bytes, &public),
                Ok(part.clone())
            );
            assert_eq!(Part::merge(Kind::Update, &bytes, &public), Ok(part.clone()));
            // Shape of the JSON, as docs/API.md lists it: shares only.
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            let obj = v.as_object().expect("object");
            let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
            fields.sort_unstable();
            assert_eq!(fields, ["endpoint", "key", "key_bits"]);
            assert_eq!(obj["key"].as_str().map(str::len), Some(128));
            assert_eq!(obj["key_bits"].as_str().map(str::len), Some(64));
            assert_eq!(obj["endpoint"].as_str().map(str::len), Some(1280));
            // A register part is not a resolve part.
            assert_eq!(
                Part::merge(Kind::Resolve, &bytes, &Public::None),
                Err(PartError::UnexpectedField {
                    kind: Kind::Resolve,
                    field: "endpoint"
                })
            );
        }
        // The endpoint still reconstructs from the decoded parts.
        let decoded: [Vec<Share>; 3] = parts.map(|p| {
            Part::merge(Kind::Register, &p.to_bytes(), &public)
                .expect("decodes")
                .endpoint
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
        let (public, parts) = import_parts(&entries).expect("parts");
        let parsed = parts
            .each_ref()
            .map(|b| merge_import(b, &public).expect("parses"));
        for (i, ((p, e), entry)) in rows.iter().zip(&entries).enumerate() {
            for (prov, rows) in parsed.iter().enumerate() {
                let (part, owner) = &rows[i];
                assert_eq!(*owner, [i as u8; 32]);
                assert_eq!(part.key, entry.shares[prov].key);
                assert_eq!(part.ttl_s, 60 + i as u64);
                assert_eq!(part.extra, if i == 2 { b"x".to_vec() } else { Vec::new() });
            }
            let eps = [0, 1, 2].map(|k| parsed[k][i].0.endpoint.clone());
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
        // Row JSON shape: a register part's shares; ttl and owner are in
        // `public.rows`, once.
        let v: serde_json::Value = serde_json::from_slice(&parts[0]).expect("json");
        let row = v["rows"][0].as_object().expect("row");
        let mut fields: Vec<&str> = row.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["endpoint", "key", "key_bits"]);
        let row = public.to_json()["rows"][0].clone();
        assert_eq!(
            row,
            serde_json::json!({"ttl_s": 60, "owner": hex::encode([0u8; 32])})
        );
        // Limits.
        assert!(matches!(import_parts(&[]), Err(PartError::ImportSize(_))));
        let mut bad = entries[0].clone();
        bad.ttl = Duration::ZERO;
        assert!(matches!(import_parts(&[bad]), Err(PartError::BadTtl(_))));
        assert_eq!(
            query_part(KeyPart {
                key: entries[0].shares[0].key,
                key_bits: entries[0].shares[0].key_bits,
            })
            .validate(Kind::Import),
            Err(PartError::ImportIsRows)
        );
        // Answers carry the counts.
        let body = br#"{"request_id":"r","status":"done","seq":2,"result":{"code":"ok","imported":4,"skipped":1}}"#;
        assert!(matches!(
            parse_answer(Kind::Import, &seal_body(body), op("r")),
            Ok(Answer::Done {
                result: RequestResult {
                    imported: Some((4, 1)),
                    ..
                },
                ..
            })
        ));
        let body = br#"{"request_id":"r","status":"done","seq":2,"result":{"code":"ok"}}"#;
        assert!(parse_answer(Kind::Import, &seal_body(body), op("r")).is_err());
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
            assert_eq!(
                Part::merge(Kind::Resolve, &bytes, &Public::None),
                Ok(part.clone())
            );
            assert_eq!(
                Part::merge(Kind::Delete, &bytes, &Public::None),
                Ok(part.clone())
            );
            let entry = Public::Entry(EntryPublic {
                ttl_s: 5,
                extra: Vec::new(),
            });
            assert!(matches!(
                Part::merge(Kind::Register, &bytes, &entry),
                Err(PartError::MissingField {
                    field: "endpoint",
                    ..
                })
            ));
        }
    }

    #[test]
    fn ttl_and_extra_limits() {
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
            parse_answer(Kind::Resolve, &seal_body(body.as_bytes()), op("r-1")),
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
            parse_answer(Kind::Register, &seal_body(ok), op("r-1")),
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
                br#"{"request_id":"r-1","status":"pending"}"#,
                op("r-1")
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
            assert!(parse_answer(Kind::Resolve, &seal_body(bad), op("r")).is_err());
        }
        let short_ep = format!(
            r#"{{"request_id":"r","status":"done","result":{{"code":"ok","endpoint":"{}","expires_at_ms":1}}}}"#,
            &ep[..ep.len() - 128]
        );
        let err = parse_answer(Kind::Resolve, &seal_body(short_ep.as_bytes()), op("r"))
            .expect_err("short");
        assert!(err.0.contains("576 bytes, expected 640"), "{err}");
    }

    #[test]
    fn answers_open_only_as_their_provider_and_never_in_the_clear() {
        let body =
            seal_body(br#"{"request_id":"r","status":"done","seq":3,"result":{"code":"ok"}}"#);
        assert!(parse_answer(Kind::Register, &body, op("r")).is_ok());
        // Provider 1's answer does not open as provider 2's, nor as another
        // request's.
        let as_p2 = Opener {
            provider: 2,
            ..op("r")
        };
        assert!(parse_answer(Kind::Register, &body, as_p2).is_err());
        assert!(parse_answer(Kind::Register, &body, op("r-1")).is_err());
        // A clear `result` is not accepted.
        let clear = br#"{"request_id":"r","status":"done","seq":3,"result":{"code":"ok"}}"#;
        let err = parse_answer(Kind::Register, clear, op("r")).expect_err("clear");
        assert!(err.0.contains("sealed_result"), "{err}");
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
        fn parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_answer(Kind::Resolve, &bytes, op("r"));
            let _ = parse_error(&bytes);
        }
    }
}
