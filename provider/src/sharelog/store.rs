//! The share log in redb, in the provider's one database (`raft.redb`):
//! records by sequence number, three indexes (log time, origin account,
//! PRF tag) and the chain state. Appends happen inside the executor's
//! batch transaction, so a batch's table changes and its log records are
//! durable together or not at all.

// redb::Error is the error type of the store's transaction callbacks.
#![allow(clippy::result_large_err)]

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;

use super::chain::{self, ChainError, Verifier};
use super::record::Record;
use crate::sequencer::applied::read_table;

const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("share_log");
const BY_TIME: TableDefinition<(u64, u64), ()> = TableDefinition::new("share_log_by_time");
const BY_ORIGIN: TableDefinition<(&[u8], u64), ()> = TableDefinition::new("share_log_by_origin");
/// (tag bits, tag, seq).
const BY_TAG: TableDefinition<(u8, u32, u64), ()> = TableDefinition::new("share_log_by_tag");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("share_log_state");

/// The log's state: what `GET /v1/admin/log/head` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Head {
    /// Records ever appended (the last sequence number).
    pub count: u64,
    /// The chain head (hex; 64 zeros for an empty log).
    pub head: String,
    /// The first record still stored (count + 1 when none is).
    pub first_seq: u64,
    /// The log time of the last record appended.
    pub last_time_ms: u64,
}

/// The chain state as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// Records ever appended.
    pub count: u64,
    /// The last link.
    pub head: [u8; 32],
    /// The first stored record (`count + 1` when none).
    pub first: u64,
    /// The link before `first` (what a purge left).
    pub base: [u8; 32],
    /// The last record's log time.
    pub last_time_ms: u64,
}

impl State {
    /// The public view.
    pub fn head(&self) -> Head {
        Head {
            count: self.count,
            head: hex::encode(self.head),
            first_seq: self.first,
            last_time_ms: self.last_time_ms,
        }
    }
}

fn corrupt(e: impl std::fmt::Display) -> redb::Error {
    redb::Error::Corrupted(e.to_string())
}

fn get_u64(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    k: &str,
) -> Result<Option<u64>, redb::Error> {
    Ok(t.get(k)?
        .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes)))
}

fn get_hash(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    k: &str,
) -> Result<[u8; 32], redb::Error> {
    Ok(t.get(k)?
        .and_then(|v| v.value().try_into().ok())
        .unwrap_or([0u8; 32]))
}

fn read_state(t: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<State, redb::Error> {
    let count = get_u64(t, "count")?.unwrap_or(0);
    Ok(State {
        count,
        head: get_hash(t, "head")?,
        first: get_u64(t, "first")?.unwrap_or(count + 1),
        base: get_hash(t, "base")?,
        last_time_ms: get_u64(t, "last_time_ms")?.unwrap_or(0),
    })
}

fn write_state(txn: &WriteTransaction, s: &State) -> Result<(), redb::Error> {
    let mut t = txn.open_table(STATE)?;
    t.insert("count", s.count.to_le_bytes().as_slice())?;
    t.insert("head", s.head.as_slice())?;
    t.insert("first", s.first.to_le_bytes().as_slice())?;
    t.insert("base", s.base.as_slice())?;
    t.insert("last_time_ms", s.last_time_ms.to_le_bytes().as_slice())?;
    Ok(())
}

/// The chain state inside a write transaction.
pub fn state_in(txn: &WriteTransaction) -> Result<State, redb::Error> {
    read_state(&txn.open_table(STATE)?)
}

/// The chain state.
pub fn state(db: &redb::Database) -> Result<State, redb::Error> {
    match read_table(&db.begin_read()?, STATE)? {
        Some(t) => read_state(&t),
        None => Ok(State {
            first: 1,
            ..State::default()
        }),
    }
}

/// The public head.
pub fn head(db: &redb::Database) -> Result<Head, redb::Error> {
    Ok(state(db)?.head())
}

fn index(txn: &WriteTransaction, r: &Record, insert: bool) -> Result<(), redb::Error> {
    let mut by_time = txn.open_table(BY_TIME)?;
    let mut by_origin = txn.open_table(BY_ORIGIN)?;
    let mut by_tag = txn.open_table(BY_TAG)?;
    let origin: &[u8] = &r.origin;
    if insert {
        by_time.insert((r.at_ms, r.seq), ())?;
        by_origin.insert((origin, r.seq), ())?;
        if r.tag_bits > 0 {
            by_tag.insert((r.tag_bits, r.tag, r.seq), ())?;
        }
    } else {
        by_time.remove((r.at_ms, r.seq))?;
        by_origin.remove((origin, r.seq))?;
        by_tag.remove((r.tag_bits, r.tag, r.seq))?;
    }
    Ok(())
}

/// Appends `records` in order inside `txn`: numbers and chains them,
/// writes them with their index entries, and moves the head. Returns the
/// new state.
pub fn append(txn: &WriteTransaction, records: &mut [Record]) -> Result<State, redb::Error> {
    let mut s = state_in(txn)?;
    if records.is_empty() {
        return Ok(s);
    }
    {
        let mut t = txn.open_table(RECORDS)?;
        for r in records.iter_mut() {
            s.count += 1;
            s.head = chain::append(&s.head, s.count, r);
            s.last_time_ms = r.at_ms;
            t.insert(r.seq, r.encode().as_slice())?;
        }
    }
    for r in records.iter() {
        index(txn, r, true)?;
    }
    if s.first > s.count {
        // Nothing was stored before: the first record is the first stored.
        s.first = records.first().map_or(s.first, |r| r.seq.min(s.first));
    }
    write_state(txn, &s)?;
    Ok(s)
}

/// Removes the stored records `first..=through` (a purge), keeping the
/// link before the new first record; returns how many were removed.
pub(super) fn remove_prefix(txn: &WriteTransaction, through: u64) -> Result<u64, redb::Error> {
    let mut s = state_in(txn)?;
    let through = through.min(s.count);
    if through < s.first {
        return Ok(0);
    }
    let mut removed = Vec::new();
    {
        let mut t = txn.open_table(RECORDS)?;
        for seq in s.first..=through {
            if let Some(v) = t.remove(seq)? {
                removed.push(Record::decode(v.value()).map_err(corrupt)?);
            }
        }
    }
    for r in &removed {
        index(txn, r, false)?;
    }
    if let Some(last) = removed.last() {
        s.base = last.hash;
    }
    let n = through + 1 - s.first;
    s.first = through + 1;
    write_state(txn, &s)?;
    Ok(n)
}

/// Stored records from `from` (at most `limit`), in order: the batches an
/// SMC scan over the log's shares reads.
pub fn records(db: &redb::Database, from: u64, limit: usize) -> Result<Vec<Record>, redb::Error> {
    let Some(t) = read_table(&db.begin_read()?, RECORDS)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in t.range(from..)?.take(limit) {
        let (_, v) = item?;
        out.push(Record::decode(v.value()).map_err(corrupt)?);
    }
    Ok(out)
}

/// Stored records from `from` inside a write transaction.
pub(super) fn records_in(
    txn: &WriteTransaction,
    from: u64,
    limit: usize,
) -> Result<Vec<Record>, redb::Error> {
    let t = txn.open_table(RECORDS)?;
    let mut out = Vec::new();
    for item in t.range(from..)?.take(limit) {
        let (_, v) = item?;
        out.push(Record::decode(v.value()).map_err(corrupt)?);
    }
    Ok(out)
}

/// Record `seq`, if stored.
pub fn record(db: &redb::Database, seq: u64) -> Result<Option<Record>, redb::Error> {
    Ok(records(db, seq, 1)?.into_iter().find(|r| r.seq == seq))
}

/// Sequence numbers of records with log time in `from_ms..to_ms` (at most
/// `limit`), in time order.
pub fn by_time(
    db: &redb::Database,
    from_ms: u64,
    to_ms: u64,
    limit: usize,
) -> Result<Vec<u64>, redb::Error> {
    let Some(t) = read_table(&db.begin_read()?, BY_TIME)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in t.range((from_ms, 0)..(to_ms, 0))?.take(limit) {
        let (k, _) = item?;
        out.push(k.value().1);
    }
    Ok(out)
}

/// Sequence numbers of records signed by `origin` (at most `limit`), in
/// log order.
pub fn by_origin(
    db: &redb::Database,
    origin: &[u8; 32],
    limit: usize,
) -> Result<Vec<u64>, redb::Error> {
    let Some(t) = read_table(&db.begin_read()?, BY_ORIGIN)? else {
        return Ok(Vec::new());
    };
    let o: &[u8] = origin;
    let mut out = Vec::new();
    for item in t.range((o, 0)..=(o, u64::MAX))?.take(limit) {
        let (k, _) = item?;
        out.push(k.value().1);
    }
    Ok(out)
}

/// Sequence numbers of records whose computed tag bits agree with `tag`
/// (a full 24-bit tag, as an LI query computes for its target), in log
/// order: every width's records whose low bits match.
pub fn by_tag(db: &redb::Database, tag: u32, limit: usize) -> Result<Vec<u64>, redb::Error> {
    let Some(t) = read_table(&db.begin_read()?, BY_TAG)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for bits in 1..=32u8 {
        let mask = if bits >= 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let low = tag & mask;
        for item in t.range((bits, low, 0)..=(bits, low, u64::MAX))? {
            let (k, _) = item?;
            out.push(k.value().2);
        }
    }
    out.sort_unstable();
    out.truncate(limit);
    Ok(out)
}

/// The link after record `seq` (the head when `seq` is the last, the base
/// when it was the last purged), if known.
pub fn link_at(db: &redb::Database, seq: u64) -> Result<Option<[u8; 32]>, redb::Error> {
    let s = state(db)?;
    if seq == s.count {
        return Ok(Some(s.head));
    }
    if seq + 1 == s.first {
        return Ok(Some(s.base));
    }
    Ok(record(db, seq)?.map(|r| r.hash))
}

/// Why [`verify`] failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The store could not be read.
    #[error("store: {0}")]
    Store(#[from] redb::Error),
    /// The chain does not verify.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// Checks every stored record through `through` (or the end): each hashes
/// to its link, each follows the one before from the purge's base, and
/// the stored head is the last link. Reads in pages of 4 096.
pub fn verify(db: &redb::Database, through: u64) -> Result<[u8; 32], VerifyError> {
    let s = state(db)?;
    let through = through.min(s.count);
    let mut v = Verifier::new(s.first, s.base);
    let mut next = s.first;
    while next <= through {
        let page = records(db, next, 4096)?;
        if page.is_empty() {
            return Err(ChainError::Gap {
                expected: next,
                got: 0,
            }
            .into());
        }
        for r in page.iter().take_while(|r| r.seq <= through) {
            v.push(r)?;
        }
        next = page.last().map_or(through + 1, |r| r.seq + 1);
    }
    if through == s.count && v.head() != s.head {
        return Err(ChainError::Head.into());
    }
    Ok(v.head())
}

/// Writes `record` under its sequence number exactly as given, without
/// chaining or re-indexing: for repair tooling and for the tests that
/// show a record altered on disk is caught by [`verify`].
pub fn overwrite(db: &redb::Database, record: &Record) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(RECORDS)?
        .insert(record.seq, record.encode().as_slice())?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::record::RecordKind;
    use super::*;
    use sharecall_proto::answer::Code;

    fn rec(id: &str, at_ms: u64, origin: u8, tag: u32, bits: u8) -> Record {
        let mut r = Record::new(RecordKind::Register, id, [origin; 32], Code::Ok);
        r.at_ms = at_ms;
        r.tag = tag;
        r.tag_bits = bits;
        r
    }

    #[test]
    fn appended_records_are_found_by_time_origin_and_tag_and_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("l.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        let mut batch = vec![
            rec("a", 100, 1, 0xabcdef, 24),
            rec("b", 200, 2, 0x0000ef, 8),
            rec("c", 300, 1, 0x123456, 24),
        ];
        let s = append(&txn, &mut batch).expect("append");
        txn.commit().expect("commit");
        assert_eq!(s.count, 3);
        assert_eq!(s.first, 1);
        assert_eq!(batch[2].seq, 3);
        assert_eq!(by_time(&db, 150, 301, 10).expect("time"), vec![2, 3]);
        assert_eq!(by_origin(&db, &[1; 32], 10).expect("origin"), vec![1, 3]);
        // A full tag meets the write with that tag and the read whose
        // 8 computed bits agree with it.
        assert_eq!(by_tag(&db, 0xabcdef, 10).expect("tag"), vec![1, 2]);
        assert_eq!(verify(&db, u64::MAX).expect("verify"), s.head);
        assert_eq!(records(&db, 2, 10).expect("records").len(), 2);
        assert_eq!(link_at(&db, 3).expect("link"), Some(s.head));
    }

    #[test]
    fn a_record_altered_in_the_file_fails_verification() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("l.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        append(&txn, &mut [rec("a", 1, 1, 0, 0), rec("b", 2, 1, 0, 0)]).expect("append");
        txn.commit().expect("commit");
        let mut r = record(&db, 1).expect("read").expect("stored");
        r.code = Code::NotFound;
        overwrite(&db, &r).expect("overwrite");
        assert!(matches!(
            verify(&db, u64::MAX),
            Err(VerifyError::Chain(ChainError::Altered { seq: 1 }))
        ));
    }

    #[test]
    fn a_removed_prefix_leaves_a_verifiable_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("l.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        append(
            &txn,
            &mut (0..5).map(|i| rec("x", i, 1, 0, 0)).collect::<Vec<_>>(),
        )
        .expect("append");
        assert_eq!(remove_prefix(&txn, 2).expect("remove"), 2);
        txn.commit().expect("commit");
        let s = state(&db).expect("state");
        assert_eq!((s.count, s.first), (5, 3));
        assert_eq!(verify(&db, u64::MAX).expect("verify"), s.head);
        assert_eq!(by_time(&db, 0, 10, 10).expect("time"), vec![3, 4, 5]);
        assert_eq!(records(&db, 1, 10).expect("records")[0].seq, 3);
    }
}
