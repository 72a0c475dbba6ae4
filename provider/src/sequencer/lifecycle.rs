//! Request lifecycle in the log: a request executes once all three
//! providers have logged that they hold its part, or is aborted by a logged
//! decision when its window passes first. Both outcomes are recorded, so a
//! duplicate request id is answered from its record and never re-executed.

// redb::Error is the error type of the store's transaction callbacks.
#![allow(clippy::result_large_err)]

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use sharecall_proto::sequencer::{AbortRequest, PartReady};

use super::applied;

const PENDING: TableDefinition<&str, &[u8]> = TableDefinition::new("lifecycle_pending");
const OUTCOME: TableDefinition<&str, &[u8]> = TableDefinition::new("lifecycle_outcome");

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Outcome {
    /// Executed with this sequence number (the same at every provider).
    Executed {
        /// Position in the common order.
        seq: u64,
    },
    /// Aborted by a logged decision.
    Aborted {
        /// Why.
        reason: String,
    },
}

/// A request waiting for parts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    /// Bit i set: provider i holds its part.
    pub providers: u8,
    /// Hash over the three part hashes (all parts must agree on it).
    pub parts_hash: Vec<u8>,
    /// When the first part was logged (proposer's clock, ms).
    pub first_at_ms: u64,
    /// Window in ms.
    pub window_ms: u64,
    /// Request type.
    pub kind: String,
    /// (provider, its clock) of each readiness record so far; the
    /// request's log time is their median, so no single provider's clock
    /// decides it.
    #[serde(default)]
    pub times: Vec<(u32, u64)>,
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, redb::Error> {
    serde_json::from_slice(bytes).map_err(|e| redb::Error::Corrupted(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, redb::Error> {
    serde_json::to_vec(v).map_err(|e| redb::Error::Corrupted(e.to_string()))
}

fn decide(txn: &WriteTransaction, id: &str, outcome: &Outcome) -> Result<(), redb::Error> {
    txn.open_table(PENDING)?.remove(id)?;
    txn.open_table(OUTCOME)?
        .insert(id, encode(outcome)?.as_slice())?;
    Ok(())
}

fn existing(txn: &WriteTransaction, id: &str) -> Result<Option<Outcome>, redb::Error> {
    let table = txn.open_table(OUTCOME)?;
    let v = table.get(id)?;
    v.map(|v| decode(v.value())).transpose()
}

/// Applies a PartReady record; returns the outcome if this decided it.
pub fn part_ready(txn: &WriteTransaction, r: &PartReady) -> Result<Option<Outcome>, redb::Error> {
    if r.provider > 2 || existing(txn, &r.request_id)?.is_some() {
        return Ok(None);
    }
    let mut pending = {
        let table = txn.open_table(PENDING)?;
        let v = table.get(r.request_id.as_str())?;
        match v {
            Some(v) => decode::<Pending>(v.value())?,
            None => Pending {
                providers: 0,
                parts_hash: r.parts_hash.to_vec(),
                first_at_ms: r.at_ms,
                window_ms: r.window_ms,
                kind: r.kind.clone(),
                times: Vec::new(),
            },
        }
    };
    if pending.parts_hash != r.parts_hash.as_ref() || pending.kind != r.kind {
        let outcome = Outcome::Aborted {
            reason: format!(
                "provider {} was given a different request under the same id",
                r.provider
            ),
        };
        decide(txn, &r.request_id, &outcome)?;
        return Ok(Some(outcome));
    }
    pending.providers |= 1 << r.provider;
    // A re-proposed record keeps the provider's first time.
    if !pending.times.iter().any(|(p, _)| *p == r.provider) {
        pending.times.push((r.provider, r.at_ms));
    }
    if pending.providers == 0b111 {
        let mut times: Vec<u64> = pending.times.iter().map(|(_, t)| *t).collect();
        let meta = applied::AppliedMeta {
            kind: r.kind.clone(),
            at_ms: crate::execution::log_time::median(&mut times).unwrap_or(r.at_ms),
        };
        let a = applied::apply(txn, &r.request_id, &meta)?;
        let outcome = Outcome::Executed { seq: a.seq };
        decide(txn, &r.request_id, &outcome)?;
        return Ok(Some(outcome));
    }
    txn.open_table(PENDING)?
        .insert(r.request_id.as_str(), encode(&pending)?.as_slice())?;
    Ok(None)
}

/// Applies an abort decision; returns the outcome if this decided it (a
/// request that already executed stays executed).
pub fn abort(txn: &WriteTransaction, r: &AbortRequest) -> Result<Option<Outcome>, redb::Error> {
    if existing(txn, &r.request_id)?.is_some() {
        return Ok(None);
    }
    let outcome = Outcome::Aborted {
        reason: r.reason.clone(),
    };
    decide(txn, &r.request_id, &outcome)?;
    Ok(Some(outcome))
}

/// The recorded outcome of a request.
pub fn outcome(db: &redb::Database, id: &str) -> Result<Option<Outcome>, redb::Error> {
    let Some(table) = applied::read_table(&db.begin_read()?, OUTCOME)? else {
        return Ok(None);
    };
    let v = table.get(id)?;
    v.map(|v| decode(v.value())).transpose()
}

/// Pending requests whose window has passed at `now_ms`, with the reason
/// an abort would give (which providers' parts are missing).
pub fn expired(db: &redb::Database, now_ms: u64) -> Result<Vec<(String, String)>, redb::Error> {
    let Some(table) = applied::read_table(&db.begin_read()?, PENDING)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in table.iter()? {
        let (id, v) = item?;
        let p: Pending = decode(v.value())?;
        if now_ms > p.first_at_ms.saturating_add(p.window_ms) {
            let missing: Vec<String> = (0..3u8)
                .filter(|i| p.providers & (1 << i) == 0)
                .map(|i| i.to_string())
                .collect();
            out.push((
                id.value().to_string(),
                format!(
                    "the part for provider {} did not arrive within {} ms",
                    missing.join(" and "),
                    p.window_ms
                ),
            ));
        }
    }
    Ok(out)
}

#[derive(Serialize, Deserialize, Default)]
struct Export {
    pending: Vec<(String, Pending)>,
    outcomes: Vec<(String, Outcome)>,
}

/// The lifecycle tables, for a snapshot.
pub fn export(db: &redb::Database) -> Result<Vec<u8>, redb::Error> {
    let txn = db.begin_read()?;
    let mut e = Export::default();
    if let Some(t) = applied::read_table(&txn, PENDING)? {
        for item in t.iter()? {
            let (k, v) = item?;
            e.pending.push((k.value().to_string(), decode(v.value())?));
        }
    }
    if let Some(t) = applied::read_table(&txn, OUTCOME)? {
        for item in t.iter()? {
            let (k, v) = item?;
            e.outcomes.push((k.value().to_string(), decode(v.value())?));
        }
    }
    encode(&e)
}

/// Replaces the lifecycle tables with a snapshot's.
pub fn import(txn: &WriteTransaction, bytes: &[u8]) -> Result<(), redb::Error> {
    txn.delete_table(PENDING)?;
    txn.delete_table(OUTCOME)?;
    if bytes.is_empty() {
        return Ok(());
    }
    let e: Export = decode(bytes)?;
    let mut p = txn.open_table(PENDING)?;
    for (k, v) in &e.pending {
        p.insert(k.as_str(), encode(v)?.as_slice())?;
    }
    let mut o = txn.open_table(OUTCOME)?;
    for (k, v) in &e.outcomes {
        o.insert(k.as_str(), encode(v)?.as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: &str, provider: u32, hash: &[u8], at: u64) -> PartReady {
        PartReady {
            request_id: id.into(),
            provider,
            kind: "register".into(),
            parts_hash: hash.to_vec().into(),
            window_ms: 1000,
            at_ms: at,
        }
    }

    #[test]
    fn executes_when_all_three_parts_are_logged_and_only_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("l.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        assert_eq!(part_ready(&txn, &part("a", 0, b"h", 1)).expect("p0"), None);
        assert_eq!(part_ready(&txn, &part("a", 2, b"h", 2)).expect("p2"), None);
        assert_eq!(
            part_ready(&txn, &part("a", 1, b"h", 3)).expect("p1"),
            Some(Outcome::Executed { seq: 1 })
        );
        // A late duplicate or an abort changes nothing.
        assert_eq!(part_ready(&txn, &part("a", 1, b"h", 4)).expect("dup"), None);
        let ab = AbortRequest {
            request_id: "a".into(),
            reason: "late".into(),
            at_ms: 5,
        };
        assert_eq!(abort(&txn, &ab).expect("abort"), None);
        txn.commit().expect("commit");
        assert_eq!(
            outcome(&db, "a").expect("outcome"),
            Some(Outcome::Executed { seq: 1 })
        );
    }

    #[test]
    fn expired_requests_name_the_missing_part_and_abort() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("l.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        part_ready(&txn, &part("b", 0, b"h", 100)).expect("p0");
        part_ready(&txn, &part("b", 1, b"h", 150)).expect("p1");
        txn.commit().expect("commit");
        assert!(expired(&db, 1000).expect("expired").is_empty());
        let e = expired(&db, 1101).expect("expired");
        assert_eq!(e.len(), 1);
        assert!(e[0].1.contains("provider 2"), "{}", e[0].1);
        let exported = export(&db).expect("export");
        let txn = db.begin_write().expect("txn");
        let ab = AbortRequest {
            request_id: "b".into(),
            reason: e[0].1.clone(),
            at_ms: 1101,
        };
        assert!(matches!(
            abort(&txn, &ab).expect("abort"),
            Some(Outcome::Aborted { .. })
        ));
        // A part arriving after the decision does not execute it.
        assert_eq!(
            part_ready(&txn, &part("b", 2, b"h", 1200)).expect("late"),
            None
        );
        txn.commit().expect("commit");
        assert!(expired(&db, 5000).expect("expired").is_empty());
        // Snapshot import restores the pending state as it was.
        let txn = db.begin_write().expect("txn");
        import(&txn, &exported).expect("import");
        txn.commit().expect("commit");
        assert_eq!(expired(&db, 1101).expect("expired").len(), 1);
    }

    #[test]
    fn log_time_is_the_median_of_the_three_readiness_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("l.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        part_ready(&txn, &part("m", 0, b"h", 1_000)).expect("p0");
        // A re-proposal with another time does not count twice.
        part_ready(&txn, &part("m", 0, b"h", 9_000)).expect("p0 again");
        part_ready(&txn, &part("m", 2, b"h", 1_010)).expect("p2");
        // The completing record is far in the future: it does not decide.
        part_ready(&txn, &part("m", 1, b"h", u64::MAX)).expect("p1");
        txn.commit().expect("commit");
        let e = applied::entries(&db, 1, 1).expect("entries");
        assert_eq!(e[0].2.as_ref().map(|m| m.at_ms), Some(1_010));
    }

    #[test]
    fn mismatched_parts_abort() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("l.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        part_ready(&txn, &part("c", 0, b"h", 1)).expect("p0");
        let o = part_ready(&txn, &part("c", 1, b"other", 2)).expect("p1");
        assert!(matches!(o, Some(Outcome::Aborted { .. })));
    }
}
