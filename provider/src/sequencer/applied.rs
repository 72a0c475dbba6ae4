//! The sequencer's state machine: applied requests in log order.
//!
//! A request id is applied once: a duplicate (a retried proposal) gets the
//! sequence number of its first application. A blake3 hash chain over the
//! applied ids lets the providers compare their states with one value.

// redb::Error is large, but it is the error type of the store's
// transaction callbacks; these functions run inside them.
#![allow(clippy::result_large_err)]

use redb::{
    Key, ReadOnlyTable, ReadTransaction, ReadableTable, TableDefinition, Value, WriteTransaction,
};

const SEQ_BY_ID: TableDefinition<&str, u64> = TableDefinition::new("applied_seq_by_id");
const ID_BY_SEQ: TableDefinition<u64, &str> = TableDefinition::new("applied_id_by_seq");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("applied_state");
const META_BY_SEQ: TableDefinition<u64, &[u8]> = TableDefinition::new("applied_meta_by_seq");

/// What the executor needs of an applied id besides its order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedMeta {
    /// Request kind ("register", "sweep", ...).
    pub kind: String,
    /// Log time: the proposer's clock when the request became ready.
    pub at_ms: u64,
}

/// Outcome of applying one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Its sequence number (1-based, in log order).
    pub seq: u64,
    /// False if the id had been applied before (the retry got the old seq).
    pub fresh: bool,
}

/// Applies request `id` inside `txn`.
pub fn apply(txn: &WriteTransaction, id: &str, meta: &AppliedMeta) -> Result<Applied, redb::Error> {
    let mut by_id = txn.open_table(SEQ_BY_ID)?;
    if let Some(seq) = by_id.get(id)? {
        return Ok(Applied {
            seq: seq.value(),
            fresh: false,
        });
    }
    let mut state = txn.open_table(STATE)?;
    let (count, digest) = read_state(&state)?;
    let seq = count + 1;
    let next = chain(&digest, id);
    by_id.insert(id, seq)?;
    txn.open_table(ID_BY_SEQ)?.insert(seq, id)?;
    let m = serde_json::to_vec(meta).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
    txn.open_table(META_BY_SEQ)?.insert(seq, m.as_slice())?;
    state.insert("count", seq.to_le_bytes().as_slice())?;
    state.insert("digest", next.as_slice())?;
    Ok(Applied { seq, fresh: true })
}

/// The next link of the hash chain.
pub fn chain(prev: &[u8; 32], id: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("sharecall 2026 applied chain v1");
    h.update(prev);
    h.update(&(id.len() as u64).to_le_bytes());
    h.update(id.as_bytes());
    *h.finalize().as_bytes()
}

/// Count and chain head as stored in the state table (zero when empty).
fn read_state(
    state: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<(u64, [u8; 32]), redb::Error> {
    let count = state
        .get("count")?
        .and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes))
        .unwrap_or(0);
    let digest = state
        .get("digest")?
        .and_then(|v| v.value().try_into().ok())
        .unwrap_or([0u8; 32]);
    Ok((count, digest))
}

/// Opens a table for reading; `None` if nothing was ever written to it.
pub(crate) fn read_table<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, redb::Error> {
    match txn.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Number of applied requests and the chain head.
pub fn summary(db: &redb::Database) -> Result<(u64, [u8; 32]), redb::Error> {
    match read_table(&db.begin_read()?, STATE)? {
        Some(state) => read_state(&state),
        None => Ok((0, [0u8; 32])),
    }
}

/// Applied ids with sequence numbers in `from..from+limit` (1-based).
pub fn range(db: &redb::Database, from: u64, limit: u64) -> Result<Vec<String>, redb::Error> {
    let Some(table) = read_table(&db.begin_read()?, ID_BY_SEQ)? else {
        return Ok(Vec::new());
    };
    let end = from.saturating_add(limit);
    let mut out = Vec::new();
    for item in table.range(from..end)? {
        let (_, id) = item?;
        out.push(id.value().to_string());
    }
    Ok(out)
}

/// The sequence number of an applied id.
pub fn seq_of(db: &redb::Database, id: &str) -> Result<Option<u64>, redb::Error> {
    let Some(table) = read_table(&db.begin_read()?, SEQ_BY_ID)? else {
        return Ok(None);
    };
    Ok(table.get(id)?.map(|v| v.value()))
}

/// Applied ids with their metadata for sequence numbers `from..=to`.
pub fn entries(
    db: &redb::Database,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, String, Option<AppliedMeta>)>, redb::Error> {
    let txn = db.begin_read()?;
    let Some(ids) = read_table(&txn, ID_BY_SEQ)? else {
        return Ok(Vec::new());
    };
    let metas = read_table(&txn, META_BY_SEQ)?;
    let mut out = Vec::new();
    for item in ids.range(from..=to)? {
        let (seq, id) = item?;
        let meta = match &metas {
            Some(t) => t
                .get(seq.value())?
                .map(|v| serde_json::from_slice(v.value()))
                .transpose()
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?,
            None => None,
        };
        out.push((seq.value(), id.value().to_string(), meta));
    }
    Ok(out)
}

/// Every applied id's metadata (for snapshots), JSON.
pub fn export_meta(db: &redb::Database) -> Result<Vec<u8>, redb::Error> {
    let all: Vec<(u64, Option<AppliedMeta>)> = entries(db, 1, u64::MAX)?
        .into_iter()
        .map(|(seq, _, m)| (seq, m))
        .collect();
    serde_json::to_vec(&all).map_err(|e| redb::Error::Corrupted(e.to_string()))
}

/// Every applied id in order (for snapshots).
pub fn all(db: &redb::Database) -> Result<Vec<String>, redb::Error> {
    range(db, 1, u64::MAX - 1)
}

/// Replaces the state with `ids` and their metadata (from a leader's
/// snapshot; `meta` as made by [`export_meta`], empty if none).
pub fn restore(txn: &WriteTransaction, ids: &[String], meta: &[u8]) -> Result<(), redb::Error> {
    txn.delete_table(SEQ_BY_ID)?;
    txn.delete_table(ID_BY_SEQ)?;
    txn.delete_table(STATE)?;
    txn.delete_table(META_BY_SEQ)?;
    let metas: std::collections::HashMap<u64, AppliedMeta> = if meta.is_empty() {
        Default::default()
    } else {
        serde_json::from_slice::<Vec<(u64, Option<AppliedMeta>)>>(meta)
            .map_err(|e| redb::Error::Corrupted(e.to_string()))?
            .into_iter()
            .filter_map(|(s, m)| Some((s, m?)))
            .collect()
    };
    for (i, id) in ids.iter().enumerate() {
        let seq = i as u64 + 1;
        let m = metas.get(&seq).cloned().unwrap_or(AppliedMeta {
            kind: String::new(),
            at_ms: 0,
        });
        apply(txn, id, &m)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(txn: &WriteTransaction, id: &str) -> Result<Applied, redb::Error> {
        super::apply(
            txn,
            id,
            &AppliedMeta {
                kind: "probe".into(),
                at_ms: 5,
            },
        )
    }

    #[test]
    fn duplicates_keep_their_first_sequence_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("a.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        assert_eq!(
            apply(&txn, "a").expect("a"),
            Applied {
                seq: 1,
                fresh: true
            }
        );
        assert_eq!(
            apply(&txn, "b").expect("b"),
            Applied {
                seq: 2,
                fresh: true
            }
        );
        assert_eq!(
            apply(&txn, "a").expect("a again"),
            Applied {
                seq: 1,
                fresh: false
            }
        );
        txn.commit().expect("commit");
        let (count, digest) = summary(&db).expect("summary");
        assert_eq!(count, 2);
        assert_eq!(digest, chain(&chain(&[0; 32], "a"), "b"));
        assert_eq!(range(&db, 1, 10).expect("range"), vec!["a", "b"]);
        assert_eq!(seq_of(&db, "b").expect("seq"), Some(2));
        let e = entries(&db, 2, 2).expect("entries");
        assert_eq!(e[0].1, "b");
        assert_eq!(e[0].2.as_ref().map(|m| m.at_ms), Some(5));

        let txn = db.begin_write().expect("txn");
        let meta = export_meta(&db).expect("meta");
        restore(&txn, &["x".to_string()], &meta).expect("restore");
        txn.commit().expect("commit");
        assert_eq!(all(&db).expect("all"), vec!["x"]);
        assert_eq!(seq_of(&db, "a").expect("seq"), None);
    }
}
