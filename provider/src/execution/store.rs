//! What execution keeps durably besides the table: each request's part
//! and signed metadata (stored before the part is logged as ready), each
//! request's answer, and each batch's transcript.
//!
//! No answer share is kept here: a write's answer is a result code (and
//! an import's counts), public values the transcript holds as well; a
//! resolution's answer lives in memory, sealed ([`super::reads`]).
//! Answers leave this provider only sealed under the client's answer key
//! for this provider ([`seal_answer`]). That key is kept with the
//! request's metadata (execution runs after the POST returns, and a poll
//! re-seals); it opens only this provider's own answer, which this
//! provider computed anyway (docs/SECURITY.md §7b).

// redb::Error is the error type of the store's transaction callbacks.
#![allow(clippy::result_large_err)]

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::batch::{Answer, Code, Transcript};
use crate::sequencer::applied::read_table;
use crate::tables::part::encode_shares;

const PARTS: TableDefinition<&str, &[u8]> = TableDefinition::new("request_parts");
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("request_meta");
const ANSWERS: TableDefinition<&str, &[u8]> = TableDefinition::new("request_answers");
const TRANSCRIPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("batch_transcripts");

/// What a provider verified of a request when it accepted its part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMeta {
    /// Request kind.
    pub kind: String,
    /// Signing account (hex).
    pub account: String,
    /// blake3 of the signed message (a retry must match it).
    pub signed: String,
    /// The client's symmetric answer key for this provider (hex; its
    /// blake3 hash is signed): answers are sealed under it. Absent in
    /// records older than symmetric sealed answers (whose `answer_key`
    /// was an X25519 public key, which must not be used as a symmetric
    /// key: it is public), and their answers are then not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing_key: Option<String>,
    /// blake3 of the request's signature (hex): `GET /v1/requests/{id}`
    /// must present the signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// blake3 of a request signature: what a poll's `Sharecall-Signature`
/// header is compared with (blake3 hashes compare in constant time).
pub fn signature_proof(signature: &[u8; 64]) -> blake3::Hash {
    blake3::hash(signature)
}

/// The `result` object of an answer (docs/API.md, "Answers"), in the
/// clear: only ever an input to [`seal_answer`].
fn result_json(a: &Answer) -> serde_json::Value {
    let mut r = serde_json::json!({"code": a.code.as_str()});
    if let Some(e) = &a.endpoint {
        r["endpoint"] = serde_json::json!(hex::encode(encode_shares(e)));
    }
    if let Some(x) = &a.extra {
        r["extra"] = serde_json::json!(hex::encode(x));
    }
    if let Some(t) = a.expires_at_ms {
        r["expires_at_ms"] = serde_json::json!(t);
    }
    if let Some((ok, skipped)) = a.imported {
        r["imported"] = serde_json::json!(ok);
        r["skipped"] = serde_json::json!(skipped);
    }
    r
}

/// Provider `me`'s answer to request `id`, sealed under the client's
/// `answer_key` for this provider: the `sealed_result` object
/// `{"nonce", "ciphertext"}` of docs/API.md. One ChaCha20-Poly1305 seal;
/// the clear result never leaves this call.
pub fn seal_answer(
    a: &Answer,
    answer_key: &[u8; 32],
    id: &str,
    me: u8,
) -> Result<serde_json::Value, sharecall_proto::seal::SealError> {
    // A JSON value of strings and integers always serialises.
    let clear = serde_json::to_vec(&result_json(a)).unwrap_or_default();
    let key = sharecall_proto::seal::AnswerKey::from_bytes(*answer_key);
    let sealed = key.seal(id, me, &clear, &mut rand::rngs::OsRng)?;
    Ok(serde_json::json!({
        "nonce": hex::encode(sealed.nonce),
        "ciphertext": hex::encode(&sealed.ciphertext),
    }))
}

fn corrupt(e: impl std::fmt::Display) -> redb::Error {
    redb::Error::Corrupted(e.to_string())
}

/// Stores a part and its metadata (fsync'd on commit).
pub fn put_request(
    db: &redb::Database,
    id: &str,
    meta: &RequestMeta,
    part: &[u8],
) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        txn.open_table(PARTS)?.insert(id, part)?;
        let m = serde_json::to_vec(meta).map_err(corrupt)?;
        txn.open_table(REQUESTS)?.insert(id, m.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// A request's metadata, if its part was accepted here.
pub fn request(db: &redb::Database, id: &str) -> Result<Option<RequestMeta>, redb::Error> {
    let txn = db.begin_read()?;
    let Some(t) = read_table(&txn, REQUESTS)? else {
        return Ok(None);
    };
    let v = t.get(id)?;
    v.map(|v| serde_json::from_slice(v.value()).map_err(corrupt))
        .transpose()
}

/// A request's part bytes.
pub fn part(db: &redb::Database, id: &str) -> Result<Option<Vec<u8>>, redb::Error> {
    let txn = db.begin_read()?;
    let Some(t) = read_table(&txn, PARTS)? else {
        return Ok(None);
    };
    let v = t.get(id)?;
    Ok(v.map(|v| v.value().to_vec()))
}

/// A recorded answer: public values only (records written before sealed
/// answers may hold more fields; they are ignored).
#[derive(Serialize, Deserialize)]
struct StoredAnswer {
    code: Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    imported: Option<(u64, u64)>,
}

/// Records a batch: its answers and transcript, in `txn`.
pub fn record_batch(
    txn: &WriteTransaction,
    answers: &[(String, Answer)],
    transcript: &Transcript,
) -> Result<(), redb::Error> {
    let mut t = txn.open_table(ANSWERS)?;
    for (id, a) in answers {
        // A resolution is never logged (it runs in a read batch), so a
        // logged answer carries no shares; should one ever, its shares are
        // not written: it is recorded as unavailable here.
        let code = if a.endpoint.is_some() {
            Code::Unavailable
        } else {
            a.code
        };
        let s = StoredAnswer {
            code,
            imported: a.imported,
        };
        t.insert(
            id.as_str(),
            serde_json::to_vec(&s).map_err(corrupt)?.as_slice(),
        )?;
    }
    let bytes = serde_json::to_vec(transcript).map_err(corrupt)?;
    txn.open_table(TRANSCRIPTS)?
        .insert(transcript.from, bytes.as_slice())?;
    Ok(())
}

/// A request's answer at this provider.
pub fn answer(db: &redb::Database, id: &str) -> Result<Option<Answer>, redb::Error> {
    let txn = db.begin_read()?;
    let Some(t) = read_table(&txn, ANSWERS)? else {
        return Ok(None);
    };
    let Some(v) = t.get(id)? else {
        return Ok(None);
    };
    let s: StoredAnswer = serde_json::from_slice(v.value()).map_err(corrupt)?;
    let mut a = Answer::code(s.code);
    a.imported = s.imported;
    Ok(Some(a))
}

/// Transcripts of the batches starting at `from` or later (at most
/// `limit`), in order.
pub fn transcripts(
    db: &redb::Database,
    from: u64,
    limit: usize,
) -> Result<Vec<Transcript>, redb::Error> {
    let txn = db.begin_read()?;
    let Some(t) = read_table(&txn, TRANSCRIPTS)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in t.range(from..)?.take(limit) {
        let (_, v) = item?;
        out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
    }
    Ok(out)
}

/// The log time after the last committed batch (0 before any, or when
/// the last batch was recorded before log times were kept).
pub fn log_time(db: &redb::Database) -> Result<u64, redb::Error> {
    let txn = db.begin_read()?;
    let Some(t) = read_table(&txn, TRANSCRIPTS)? else {
        return Ok(0);
    };
    let Some(last) = t.last()? else {
        return Ok(0);
    };
    let t: Transcript = serde_json::from_slice(last.1.value()).map_err(corrupt)?;
    Ok(t.log_time_ms)
}
