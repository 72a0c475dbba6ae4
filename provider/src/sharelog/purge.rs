//! Retention: a deterministic purge, itself logged.
//!
//! A purge runs only inside a write batch that holds a sweep, and its cut
//! is that sweep's effective log time minus the retention: a value every
//! provider reads from its own copy of the replicated log, never from its
//! clock. It removes the longest *prefix* of stored records older than the
//! cut (a record's log time can be a few ms out of sequence order, so a
//! prefix keeps the rest of the chain contiguous and verifiable from the
//! base link), and appends a `purge` record naming what it removed. All
//! three providers hold the same records with the same times, so all three
//! remove exactly the same ones.

// redb::Error is the error type of the store's transaction callbacks.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use redb::WriteTransaction;
use sharecall_proto::answer::Code;

use super::record::{Record, RecordKind};
use super::store;

/// The cut of a purge at log time `at_ms`: records older than it go.
pub fn cut(at_ms: u64, retention: Duration) -> u64 {
    at_ms.saturating_sub(retention.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// Removes the stored prefix older than `cut_ms` inside `txn`; returns
/// the `purge` record to append (at log time `at_ms`), or `None` when
/// nothing is old enough.
pub fn purge(
    txn: &WriteTransaction,
    at_ms: u64,
    cut_ms: u64,
) -> Result<Option<Record>, redb::Error> {
    let s = store::state_in(txn)?;
    let mut through = s.first.saturating_sub(1);
    let mut next = s.first;
    'pages: while next <= s.count {
        // Usually the first record is young enough: read a few at a time.
        let page = store::records_in(txn, next, 64)?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            if r.at_ms >= cut_ms {
                break 'pages;
            }
            through = r.seq;
        }
        next = page.last().map_or(s.count + 1, |r| r.seq + 1);
    }
    if through < s.first {
        return Ok(None);
    }
    let removed = store::remove_prefix(txn, through)?;
    let mut r = Record::new(RecordKind::Purge, "", [0; 32], Code::Ok);
    r.at_ms = at_ms;
    r.cursor = removed;
    r.aux = through;
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at_ms: u64) -> Record {
        let mut r = Record::new(RecordKind::Resolve, "r", [1; 32], Code::Ok);
        r.at_ms = at_ms;
        r
    }

    #[test]
    fn a_purge_removes_the_old_prefix_and_is_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("l.redb")).expect("db");
        let txn = db.begin_write().expect("txn");
        // The fourth record is older than the third (times are nearly,
        // not strictly, in order): the prefix stops at the third.
        let mut rs: Vec<Record> = [10, 20, 95, 30, 200].into_iter().map(rec).collect();
        store::append(&txn, &mut rs).expect("append");
        assert_eq!(cut(100, Duration::from_millis(50)), 50);
        let p = purge(&txn, 100, 50)
            .expect("purge")
            .expect("something purged");
        assert_eq!((p.cursor, p.aux, p.at_ms), (2, 2, 100));
        store::append(&txn, &mut [p]).expect("log the purge");
        assert!(
            purge(&txn, 100, 5).expect("again").is_none(),
            "nothing older"
        );
        txn.commit().expect("commit");
        let s = store::state(&db).expect("state");
        assert_eq!((s.first, s.count), (3, 6));
        store::verify(&db, u64::MAX).expect("the rest verifies");
        let kinds: Vec<RecordKind> = store::records(&db, 0, 10)
            .expect("records")
            .iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                RecordKind::Resolve,
                RecordKind::Resolve,
                RecordKind::Resolve,
                RecordKind::Purge
            ]
        );
    }
}
