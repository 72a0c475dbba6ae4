//! The table's durable form (redb) and its in-memory index.
//!
//! Durable: per slot the key share with expiry, owner and PRF tag
//! (`table_meta`), the endpoint shares and extra data (`table_data`), the
//! sorted order for the tree (`table_order`, label → slot), and the
//! execution cursor and PRF key share (`table_state`). In memory: what a
//! lookup needs without touching the disk (keys, buckets, order).
//!
//! Slot numbers are the sequence number of the request that registered the
//! entry, so all three providers name every entry alike.

// redb::Error is the error type of the store's transaction callbacks.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashSet};

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use sharecall_proto::bits::BIT_SHARE_LEN;
use sharecall_proto::encoding::ENDPOINT_ELEMENTS;
use sharecall_proto::{BitShare, Share, ShareVec};

use super::part::{decode_shares, encode_shares};
use crate::sequencer::applied::read_table;
use crate::smc::PrfKey;

const META: TableDefinition<u64, &[u8]> = TableDefinition::new("table_meta");
const DATA: TableDefinition<u64, &[u8]> = TableDefinition::new("table_data");
const ORDER: TableDefinition<u128, u64> = TableDefinition::new("table_order");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("table_state");

/// What a lookup needs of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// This provider's share of the pseudonym key.
    pub key: Share,
    /// Log time after which the entry resolves as not found.
    pub expires_at_ms: u64,
    /// The account that registered it.
    pub owner: [u8; 32],
    /// Its PRF tag (hash table; 0 otherwise).
    pub tag: u32,
    /// This provider's XOR share of the key (tree table; zero otherwise).
    pub key_bits: BitShare,
}

const META_LEN: usize = 64 + 8 + 32 + 4 + BIT_SHARE_LEN;

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(META_LEN);
        out.extend_from_slice(&encode_shares(&[self.key]));
        out.extend_from_slice(&self.expires_at_ms.to_le_bytes());
        out.extend_from_slice(&self.owner);
        out.extend_from_slice(&self.tag.to_le_bytes());
        out.extend_from_slice(&self.key_bits.to_bytes());
        out
    }

    fn decode(b: &[u8]) -> Result<Meta, redb::Error> {
        let bad = || redb::Error::Corrupted("table_meta record".into());
        if b.len() != META_LEN {
            return Err(bad());
        }
        let key = decode_shares(&b[..64], 1)
            .and_then(|v| v.first().copied())
            .ok_or_else(bad)?;
        Ok(Meta {
            key,
            expires_at_ms: u64::from_le_bytes(b[64..72].try_into().map_err(|_| bad())?),
            owner: b[72..104].try_into().map_err(|_| bad())?,
            tag: u32::from_le_bytes(b[104..108].try_into().map_err(|_| bad())?),
            key_bits: BitShare::from_bytes(&b[108..]).ok_or_else(bad)?,
        })
    }
}

/// The endpoint shares and extra data of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// Shares of the packed endpoint.
    pub endpoint: Vec<Share>,
    /// Plain extra data.
    pub extra: Vec<u8>,
}

impl Data {
    fn encode(&self) -> Vec<u8> {
        let mut out = encode_shares(&self.endpoint);
        out.extend_from_slice(&self.extra);
        out
    }

    fn decode(b: &[u8]) -> Result<Data, redb::Error> {
        let n = ENDPOINT_ELEMENTS * 64;
        let endpoint = b
            .get(..n)
            .and_then(|e| decode_shares(e, ENDPOINT_ELEMENTS))
            .ok_or_else(|| redb::Error::Corrupted("table_data record".into()))?;
        Ok(Data {
            endpoint,
            extra: b[n..].to_vec(),
        })
    }
}

/// The in-memory index of the table.
#[derive(Default)]
pub struct Index {
    /// Every entry, by slot (ordered, so all providers iterate alike).
    pub meta: BTreeMap<u64, Meta>,
    /// Hash table: slots by PRF tag (the other tables put every entry
    /// under tag 0).
    pub buckets: Buckets,
    /// Tree: slots in key order.
    pub order: Vec<u64>,
    /// Tree: the order label of each entry of `order`, as stored.
    labels: Vec<u128>,
    /// This provider's share of the hash table's PRF key.
    pub prf_key: Option<PrfKey>,
    /// Sequence number of the last executed request.
    pub cursor: u64,
}

/// Slots by PRF tag, findable by the tag's low bits alone: a lookup that
/// computed only a prefix of its tag (`Session::prf_tag_prefix`) gets every
/// slot whose tag agrees on those bits.
///
/// Keyed by the bit-reversed tag, so "low `w` bits equal" is one key range.
#[derive(Debug, Default)]
pub struct Buckets(BTreeMap<u32, BTreeSet<u64>>);

impl Buckets {
    /// Files `slot` under `tag`.
    pub fn insert(&mut self, tag: u32, slot: u64) {
        self.0.entry(tag.reverse_bits()).or_default().insert(slot);
    }

    /// Removes `slot` from under `tag`.
    pub fn remove(&mut self, tag: u32, slot: u64) {
        let key = tag.reverse_bits();
        if let Some(b) = self.0.get_mut(&key) {
            b.remove(&slot);
            if b.is_empty() {
                self.0.remove(&key);
            }
        }
    }

    /// Slots whose tags agree with `tag` on the low `width` bits, in slot
    /// order.
    pub fn matching(&self, tag: u32, width: usize) -> Vec<u64> {
        let lo = (tag & low_mask(width)).reverse_bits();
        let hi = lo | high_free(width);
        let mut out: Vec<u64> = self
            .0
            .range(lo..=hi)
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        out.sort_unstable();
        out
    }
}

/// The low `width` bits set (all of them from 32 on).
pub fn low_mask(width: usize) -> u32 {
    u32::MAX.checked_shr(32 - width.min(32) as u32).unwrap_or(0)
}

/// In bit-reversed keys, the bits a `width`-bit prefix leaves free.
fn high_free(width: usize) -> u32 {
    u32::MAX.checked_shr(width.min(32) as u32).unwrap_or(0)
}

fn corrupted(what: &str) -> redb::Error {
    redb::Error::Corrupted(what.to_string())
}

impl Index {
    /// Loads the index from the database.
    pub fn load(db: &redb::Database) -> Result<Index, redb::Error> {
        let txn = db.begin_read()?;
        let mut index = Index::default();
        if let Some(t) = read_table(&txn, META)? {
            for item in t.iter()? {
                let (slot, v) = item?;
                let m = Meta::decode(v.value())?;
                index.buckets.insert(m.tag, slot.value());
                index.meta.insert(slot.value(), m);
            }
        }
        if let Some(t) = read_table(&txn, ORDER)? {
            for item in t.iter()? {
                let (label, slot) = item?;
                index.order.push(slot.value());
                index.labels.push(label.value());
            }
        }
        if let Some(t) = read_table(&txn, STATE)? {
            if let Some(v) = t.get("cursor")? {
                let raw: [u8; 8] = v.value().try_into().map_err(|_| corrupted("cursor"))?;
                index.cursor = u64::from_le_bytes(raw);
            }
            if let Some(v) = t.get("prf_key")? {
                let bytes = v.value();
                let n = bytes.len() / 64;
                let shares = decode_shares(bytes, n).ok_or_else(|| corrupted("prf_key"))?;
                let mut sv = ShareVec::with_capacity(n);
                for s in shares {
                    sv.push(s);
                }
                index.prf_key = Some(PrfKey(sv));
            }
        }
        Ok(index)
    }

    /// Reads an entry's endpoint shares and extra data.
    pub fn data(db: &redb::Database, slot: u64) -> Result<Option<Data>, redb::Error> {
        let txn = db.begin_read()?;
        let Some(t) = read_table(&txn, DATA)? else {
            return Ok(None);
        };
        let v = t.get(slot)?;
        v.map(|v| Data::decode(v.value())).transpose()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }
}

/// One change to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new entry in `slot`.
    Put(u64, Meta, Data),
    /// New endpoint, expiry and extra data for an existing entry.
    Update(u64, u64, Data),
    /// The entry in `slot` is removed.
    Delete(u64),
}

/// Changes to the table made by one batch, in order, applied to the
/// database (inside the batch's transaction) and then to the index.
#[derive(Default)]
pub struct Changes {
    /// The changes, in log order.
    pub ops: Vec<Change>,
    /// Tree: the order after the batch.
    pub new_order: Option<Vec<u64>>,
    /// The PRF key share, when this batch created it.
    pub prf_key: Option<PrfKey>,
    /// The cursor after the batch.
    pub cursor: u64,
}

/// Spacing of fresh order labels: room for 2^40 inserts between two
/// neighbours before the order is relabelled.
const LABEL_GAP: u128 = 1 << 40;

impl Index {
    /// Writes `changes` in `txn` (the index is unchanged until
    /// [`Index::commit`]).
    pub fn write(&self, txn: &WriteTransaction, changes: &Changes) -> Result<(), redb::Error> {
        let mut meta = txn.open_table(META)?;
        let mut data = txn.open_table(DATA)?;
        for op in &changes.ops {
            match op {
                Change::Delete(slot) => {
                    meta.remove(slot)?;
                    data.remove(slot)?;
                }
                Change::Put(slot, m, d) => {
                    meta.insert(slot, m.encode().as_slice())?;
                    data.insert(slot, d.encode().as_slice())?;
                }
                Change::Update(slot, expires, d) => {
                    let mut m = match meta.get(slot)? {
                        Some(v) => Meta::decode(v.value())?,
                        None => continue,
                    };
                    m.expires_at_ms = *expires;
                    meta.insert(slot, m.encode().as_slice())?;
                    data.insert(slot, d.encode().as_slice())?;
                }
            }
        }
        if let Some(order) = &changes.new_order {
            self.write_order(txn, order, &deleted_in(changes))?;
        }
        let mut state = txn.open_table(STATE)?;
        state.insert("cursor", changes.cursor.to_le_bytes().as_slice())?;
        if let Some(k) = &changes.prf_key {
            let shares: Vec<Share> = k.0.iter().collect();
            state.insert("prf_key", encode_shares(&shares).as_slice())?;
        }
        Ok(())
    }

    /// Stores the new order, touching only labels that changed: a new slot
    /// gets a label between its neighbours', unless there is no room, and
    /// then the whole order is relabelled.
    fn write_order(
        &self,
        txn: &WriteTransaction,
        order: &[u64],
        deleted: &HashSet<u64>,
    ) -> Result<(), redb::Error> {
        let mut table = txn.open_table(ORDER)?;
        let r = relabel(&self.order, &self.labels, order, deleted);
        // Removals first: a relabelled slot may take another's old label.
        for label in &r.removed {
            table.remove(label)?;
        }
        for (label, slot) in &r.added {
            table.insert(label, slot)?;
        }
        Ok(())
    }

    /// Applies committed `changes` to the index.
    pub fn commit(&mut self, changes: Changes) {
        let deleted = deleted_in(&changes);
        for op in changes.ops {
            match op {
                Change::Delete(slot) => {
                    if let Some(m) = self.meta.remove(&slot) {
                        self.buckets.remove(m.tag, slot);
                    }
                }
                Change::Put(slot, m, _) => {
                    self.buckets.insert(m.tag, slot);
                    self.meta.insert(slot, m);
                }
                Change::Update(slot, expires, _) => {
                    if let Some(m) = self.meta.get_mut(&slot) {
                        m.expires_at_ms = expires;
                    }
                }
            }
        }
        if let Some(order) = changes.new_order {
            self.labels = relabel(&self.order, &self.labels, &order, &deleted).labels;
            self.order = order;
        }
        if let Some(k) = changes.prf_key {
            self.prf_key = Some(k);
        }
        self.cursor = changes.cursor;
    }
}

/// The slots a batch deletes.
fn deleted_in(changes: &Changes) -> HashSet<u64> {
    changes
        .ops
        .iter()
        .filter_map(|op| match op {
            Change::Delete(slot) => Some(*slot),
            _ => None,
        })
        .collect()
}

/// The labels of a new order, and the stored labels that change.
#[derive(Debug, PartialEq, Eq)]
struct Relabel {
    /// One per entry of the new order, increasing.
    labels: Vec<u128>,
    /// Stored labels to remove.
    removed: Vec<u128>,
    /// (label, slot) to store.
    added: Vec<(u128, u64)>,
}

/// Labels for `new`, which is `old` minus `deleted` plus new slots (the
/// batch never reorders kept entries). One walk over both orders: kept
/// slots keep their labels, each run of new slots is spread evenly between
/// its neighbours' labels; if there is no room (or `new` is not of that
/// form), everything is relabelled, evenly spaced. Deterministic, so
/// [`Index::write`] and [`Index::commit`] agree.
fn relabel(old: &[u64], old_labels: &[u128], new: &[u64], deleted: &HashSet<u64>) -> Relabel {
    let full = || Relabel {
        labels: (1..=new.len() as u128).map(|k| k * LABEL_GAP).collect(),
        removed: old_labels.to_vec(),
        added: (1..=new.len() as u128)
            .map(|k| k * LABEL_GAP)
            .zip(new.iter().copied())
            .collect(),
    };
    if old.len() != old_labels.len() {
        return full();
    }
    let mut removed = Vec::new();
    let mut kept: Vec<Option<u128>> = Vec::with_capacity(new.len());
    let mut j = 0;
    for &slot in new {
        while j < old.len() && old[j] != slot && deleted.contains(&old[j]) {
            removed.push(old_labels[j]);
            j += 1;
        }
        if j < old.len() && old[j] == slot {
            kept.push(Some(old_labels[j]));
            j += 1;
        } else {
            kept.push(None);
        }
    }
    for k in j..old.len() {
        if !deleted.contains(&old[k]) {
            return full();
        }
        removed.push(old_labels[k]);
    }
    let mut labels: Vec<u128> = Vec::with_capacity(new.len());
    let mut added = Vec::new();
    let mut i = 0;
    while i < new.len() {
        if let Some(l) = kept[i] {
            if labels.last().is_some_and(|p| *p >= l) {
                return full();
            }
            labels.push(l);
            i += 1;
            continue;
        }
        let end = (i..new.len())
            .find(|&k| kept[k].is_some())
            .unwrap_or(new.len());
        let run = (end - i) as u128;
        let lo = labels.last().copied().unwrap_or(0);
        let hi = match kept.get(end).copied().flatten() {
            Some(next) => next,
            None => lo.saturating_add((run + 1) * LABEL_GAP),
        };
        let step = hi.saturating_sub(lo) / (run + 1);
        if step == 0 {
            return full();
        }
        for k in 0..run {
            let label = lo + (k + 1) * step;
            labels.push(label);
            added.push((label, new[i + k as usize]));
        }
        i = end;
    }
    Relabel {
        labels,
        removed,
        added,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smc::TAG_BITS;
    use sharecall_proto::Fp;

    #[test]
    fn labels_keep_order_and_relabel_when_full() {
        let none = HashSet::new();
        let first = relabel(&[], &[], &[5, 1, 9], &none);
        assert!(first.labels.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(first.added.len(), 3);
        // Inserts around and between kept slots; slot 1 deleted.
        let deleted: HashSet<u64> = [1].into();
        let r = relabel(&[5, 1, 9], &first.labels, &[7, 5, 8, 9, 10], &deleted);
        assert!(r.labels.windows(2).all(|w| w[0] < w[1]), "{r:?}");
        assert_eq!(r.labels[1], first.labels[0], "kept slots keep labels");
        assert_eq!(r.labels[3], first.labels[2]);
        assert_eq!(r.removed, vec![first.labels[1]]);
        let added: Vec<u64> = r.added.iter().map(|a| a.1).collect();
        assert_eq!(added, vec![7, 8, 10]);
        // Squeeze: labels 1 and 2 leave no room, so everything moves.
        let tight = relabel(&[1, 2], &[1, 2], &[1, 3, 2], &none);
        assert!(tight.labels.windows(2).all(|w| w[0] < w[1]), "{tight:?}");
        assert_eq!(tight.removed, vec![1, 2]);
        assert_eq!(tight.added.len(), 3);
        // A reordering (never made by a batch) is relabelled, not trusted.
        let odd = relabel(&[1, 2], &[10, 20], &[2, 1], &none);
        assert_eq!(odd.removed, vec![10, 20]);
        assert!(odd.labels.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn buckets_find_every_slot_under_a_tag_prefix() {
        let mut b = Buckets::default();
        b.insert(0b1_0110, 5);
        b.insert(0b0_0110, 3);
        b.insert(0b0_0111, 9);
        b.insert(0xff_ffff, 1);
        assert_eq!(b.matching(0b0110, 4), vec![3, 5]);
        assert_eq!(b.matching(0b1_0110, 5), vec![5]);
        assert_eq!(b.matching(0b1_0110, TAG_BITS), vec![5]);
        assert_eq!(b.matching(0, 0), vec![1, 3, 5, 9]);
        assert_eq!(b.matching(0b11, 2), vec![1, 9]);
        b.remove(0b0_0110, 3);
        assert_eq!(b.matching(0b0110, 4), vec![5]);
        assert_eq!(b.matching(0xff_ffff, 32), vec![1]);
    }

    #[test]
    fn entries_persist_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("t.redb")).expect("db");
        let mut index = Index::load(&db).expect("empty");
        let m = Meta {
            key: Share {
                first: Fp::from_u64(1),
                second: Fp::from_u64(2),
            },
            expires_at_ms: 10,
            owner: [3; 32],
            tag: 7,
            key_bits: BitShare {
                first: 5,
                second: u128::MAX,
            },
        };
        let d = Data {
            endpoint: vec![Share::default(); ENDPOINT_ELEMENTS],
            extra: b"x".to_vec(),
        };
        let changes = Changes {
            ops: vec![Change::Put(4, m, d.clone())],
            new_order: Some(vec![4]),
            cursor: 4,
            ..Changes::default()
        };
        let txn = db.begin_write().expect("txn");
        index.write(&txn, &changes).expect("write");
        txn.commit().expect("commit");
        index.commit(changes);
        let loaded = Index::load(&db).expect("load");
        assert_eq!(loaded.meta.get(&4), Some(&m));
        assert_eq!(loaded.buckets.matching(7, 24), vec![4]);
        assert_eq!(loaded.order, vec![4]);
        assert_eq!(loaded.cursor, 4);
        assert_eq!(Index::data(&db, 4).expect("data"), Some(d));
    }
}
