//! Where resolutions go in the log: read batches held until a seal.
//!
//! Resolutions do not pass through raft, and several read batches run at
//! once (`tables.read_jobs`), finishing in any order at each provider, so
//! "append when done" would give three different chains. Instead:
//!
//! 1. The coordinator names every read batch with an id (strictly
//!    increasing microseconds) and a time; each peer checks the time
//!    against its clock, runs the batch, and *holds* its records in memory
//!    ([`PendingReads`]), digested over their agreed fields
//!    ([`digest`]). That digest is the batch's job output, so the gateway
//!    sees all three providers agree on it before the batch counts as
//!    done.
//! 2. The next write batch (the coordinator runs one within
//!    `log.seal_interval` when there are unsealed reads, by logging a
//!    sweep) carries the *seal*: the list of finished read batches, by id
//!    and digest, in id order. Every peer checks it holds each with that
//!    digest (else it refuses the batch naming them, and the coordinator
//!    marks them lost), and appends them, in the seal's order, before the
//!    write batch's own records, in the batch's one transaction.
//!
//! A new leader seals the batches it holds at its cursor as well (its
//! predecessor ran them and may not have sealed them); a provider lacking
//! one refuses, and it is logged lost.
//!
//! So the order of resolutions in the log is (write cursor, seal position,
//! position in batch): named by the leader, checked by every peer, and the
//! same at all three regardless of when each batch finished where.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::record::Record;

/// How a peer names the read batches of a seal it does not hold (the
/// coordinator then marks them lost).
pub const NOT_SEALED: &str = "read batches not held here: ";

/// One read batch of a seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealRef {
    /// The read batch's id.
    pub batch: u64,
    /// The digest of its records' agreed fields (hex).
    pub digest: String,
}

/// The digest of a read batch's records (agreed fields, no sequence
/// numbers: the seal assigns them), at table cursor `at`.
pub fn digest(at: u64, batch: u64, records: &[Record]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("sharecall 2026 read batch log v1");
    h.update(&at.to_le_bytes());
    h.update(&batch.to_le_bytes());
    h.update(&(records.len() as u64).to_le_bytes());
    for r in records {
        let b = r.agreed_bytes(false);
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(&b);
    }
    *h.finalize().as_bytes()
}

struct Pending {
    at: u64,
    digest: [u8; 32],
    records: Vec<Record>,
}

/// Read batches executed here and not yet sealed.
#[derive(Default)]
pub struct PendingReads {
    inner: Mutex<BTreeMap<u64, Pending>>,
}

impl PendingReads {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Pending>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds read batch `batch` (run at cursor `at`); returns its digest.
    pub fn hold(&self, batch: u64, at: u64, records: Vec<Record>) -> [u8; 32] {
        let digest = digest(at, batch, &records);
        self.lock().insert(
            batch,
            Pending {
                at,
                digest,
                records,
            },
        );
        digest
    }

    /// The batches of `seal` not held here with that digest.
    pub fn missing(&self, seal: &[SealRef]) -> Vec<u64> {
        let g = self.lock();
        seal.iter()
            .filter(|s| {
                g.get(&s.batch)
                    .is_none_or(|p| hex::encode(p.digest) != s.digest)
            })
            .map(|s| s.batch)
            .collect()
    }

    /// The records of `seal`'s batches, in the seal's order (a batch not
    /// held is left out: [`PendingReads::missing`] is checked first).
    pub fn sealed(&self, seal: &[SealRef]) -> Vec<Record> {
        let g = self.lock();
        seal.iter()
            .filter_map(|s| g.get(&s.batch))
            .flat_map(|p| p.records.iter().cloned())
            .collect()
    }

    /// Forgets every batch run at a cursor before `cursor` (sealed ones
    /// are in the log; the others can never be sealed); returns how many
    /// unsealed ones were dropped besides `sealed`.
    pub fn drop_before(&self, cursor: u64, sealed: &[SealRef]) -> usize {
        let mut g = self.lock();
        let before = g.len();
        g.retain(|_, p| p.at >= cursor);
        (before - g.len()).saturating_sub(sealed.len())
    }

    /// The batches held that ran at `cursor`, in id order, with their
    /// digests (what a new leader seals of its predecessor's batches).
    pub fn held_at(&self, cursor: u64) -> Vec<(u64, [u8; 32])> {
        self.lock()
            .iter()
            .filter(|(_, p)| p.at == cursor)
            .map(|(b, p)| (*b, p.digest))
            .collect()
    }

    /// Read batches held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The coordinator's side: finished read batches waiting for a seal.
#[derive(Default)]
pub struct SealQueue {
    inner: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    unsealed: Vec<SealRef>,
    lost: Vec<u64>,
    since: Option<Instant>,
}

impl SealQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A read batch finished at all three with `digest` (hex).
    pub fn finished(&self, batch: u64, digest: String) {
        let mut q = self.lock();
        q.unsealed.push(SealRef { batch, digest });
        q.since.get_or_insert_with(Instant::now);
    }

    /// When the oldest unsealed batch finished, if any.
    pub fn oldest(&self) -> Option<Instant> {
        self.lock().since
    }

    /// Takes the seal for the next write batch: unsealed batches in id
    /// order, and the ones marked lost.
    pub fn take(&self) -> (Vec<SealRef>, Vec<u64>) {
        let mut q = self.lock();
        q.since = None;
        let mut seal = std::mem::take(&mut q.unsealed);
        seal.sort_by_key(|s| s.batch);
        (seal, std::mem::take(&mut q.lost))
    }

    /// Puts back a seal whose write batch failed; the batches in
    /// `not_held` (a peer lacks them) become lost.
    pub fn put_back(&self, seal: Vec<SealRef>, lost: Vec<u64>, not_held: &[u64]) {
        let mut q = self.lock();
        for s in seal {
            if not_held.contains(&s.batch) {
                q.lost.push(s.batch);
            } else {
                q.unsealed.push(s);
            }
        }
        q.lost.extend(lost);
        q.lost.sort_unstable();
        q.lost.dedup();
        if !q.unsealed.is_empty() || !q.lost.is_empty() {
            q.since.get_or_insert_with(Instant::now);
        }
    }

    /// Forgets everything (this provider stopped leading).
    pub fn clear(&self) {
        *self.lock() = Queue::default();
    }
}

/// The batch ids a refusal names after [`NOT_SEALED`].
pub fn parse_not_sealed(detail: &str) -> Vec<u64> {
    detail
        .split_once(NOT_SEALED)
        .map(|(_, ids)| {
            ids.split([',', ' ', ')', '"'])
                .map_while(|s| s.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::record::RecordKind;
    use super::*;
    use sharecall_proto::answer::Code;

    fn batch(ids: &[&str]) -> Vec<Record> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| {
                let mut r = Record::new(RecordKind::Resolve, id, [1; 32], Code::Ok);
                r.row = i as u32;
                r
            })
            .collect()
    }

    #[test]
    fn the_seal_orders_batches_however_they_finished() {
        // Provider A finished batch 7 before 5, provider B 5 before 7.
        let (a, b) = (PendingReads::default(), PendingReads::default());
        let d7 = a.hold(7, 3, batch(&["x", "y"]));
        let d5 = a.hold(5, 3, batch(&["z"]));
        assert_eq!(b.hold(5, 3, batch(&["z"])), d5);
        assert_eq!(b.hold(7, 3, batch(&["x", "y"])), d7);
        let q = SealQueue::default();
        q.finished(7, hex::encode(d7));
        q.finished(5, hex::encode(d5));
        let (seal, lost) = q.take();
        assert!(lost.is_empty());
        assert_eq!(seal.iter().map(|s| s.batch).collect::<Vec<_>>(), [5, 7]);
        assert!(a.missing(&seal).is_empty() && b.missing(&seal).is_empty());
        let ids = |p: &PendingReads| -> Vec<String> {
            p.sealed(&seal).into_iter().map(|r| r.request_id).collect()
        };
        assert_eq!(ids(&a), ["z", "x", "y"]);
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(a.held_at(3), [(5, d5), (7, d7)]);
        assert!(a.held_at(4).is_empty());
        assert_eq!(a.drop_before(4, &seal), 0);
        assert!(a.is_empty());
    }

    #[test]
    fn a_batch_held_differently_or_not_at_all_is_missing_and_then_lost() {
        let p = PendingReads::default();
        let d = p.hold(1, 0, batch(&["a"]));
        let other = digest(0, 2, &batch(&["b"]));
        let seal = vec![
            SealRef {
                batch: 1,
                digest: hex::encode(d),
            },
            SealRef {
                batch: 2,
                digest: hex::encode(other),
            },
            SealRef {
                batch: 1,
                digest: hex::encode([0u8; 32]),
            },
        ];
        assert_eq!(p.missing(&seal), [2, 1]);
        let detail = format!("refused by provider 2: {NOT_SEALED}2,1");
        assert_eq!(parse_not_sealed(&detail), [2, 1]);
        let q = SealQueue::default();
        q.put_back(seal[..2].to_vec(), Vec::new(), &[2]);
        let (seal, lost) = q.take();
        assert_eq!((seal.len(), lost), (1, vec![2]));
    }
}
