//! What execution keeps durably besides the table: each request's part
//! and signed metadata (stored before the part is logged as ready), each
//! request's answer, and each batch's transcript.

// redb::Error is the error type of the store's transaction callbacks.
#![allow(clippy::result_large_err)]

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sharecall_proto::Share;

use super::batch::{Answer, Code, Transcript};
use crate::sequencer::applied::read_table;
use crate::tables::part::{decode_shares, encode_shares};

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

#[derive(Serialize, Deserialize)]
struct StoredAnswer {
    code: Code,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extra: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
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
        let s = StoredAnswer {
            code: a.code,
            endpoint: a.endpoint.as_ref().map(|e| hex::encode(encode_shares(e))),
            extra: a.extra.as_ref().map(hex::encode),
            expires_at_ms: a.expires_at_ms,
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
    let endpoint: Option<Vec<Share>> = match s.endpoint {
        None => None,
        Some(h) => {
            let bytes = hex::decode(h).map_err(corrupt)?;
            let n = bytes.len() / 64;
            Some(decode_shares(&bytes, n).ok_or_else(|| corrupt("answer shares"))?)
        }
    };
    Ok(Some(Answer {
        code: s.code,
        endpoint,
        extra: s.extra.map(hex::decode).transpose().map_err(corrupt)?,
        expires_at_ms: s.expires_at_ms,
        imported: s.imported,
    }))
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
