//! Tests of [`super::RaftStore`] against raft-rs' own `MemStorage`.

// The closures given to `apply_with` return `redb::Error`, as the caller's
// state-machine helpers do; its size is not worth boxing in tests.
#![allow(clippy::result_large_err)]

use super::*;
use proptest::prelude::*;
use raft::storage::MemStorage;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

fn entry_with(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec(),
        ..Default::default()
    }
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn store_err<T>(e: StorageError) -> raft::Result<T> {
    Err(raft::Error::Store(e))
}

fn open(dir: &tempfile::TempDir) -> RaftStore {
    RaftStore::open(&dir.path().join("raft.redb")).expect("open store")
}

/// A store and a MemStorage both holding entries 1..=5 (term = index),
/// with the store compacted to 2 and MemStorage to the same first
/// index.
fn compacted_pair(dir: &tempfile::TempDir) -> (RaftStore, MemStorage) {
    let store = open(dir);
    let mem = MemStorage::new();
    let ents: Vec<Entry> = (1..=5).map(|i| entry(i, i)).collect();
    store.append(&ents).expect("append");
    mem.wl().append(&ents).expect("mem append");
    store.set_applied(5).expect("applied");
    store.compact(2, b"state".to_vec()).expect("compact");
    mem.wl().compact(3).expect("mem compact");
    (store, mem)
}

#[test]
fn term_matches_mem_storage_and_keeps_the_snapshot_term() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mem) = compacted_pair(&dir);
    assert_eq!(store.first_index(), Ok(3));
    assert_eq!(store.last_index(), Ok(5));
    assert_eq!(store.term(1), store_err(StorageError::Compacted));
    assert_eq!(mem.term(1), store_err(StorageError::Compacted));
    // MemStorage forgets the term before its first entry; this store
    // keeps it in the snapshot, as raft's Storage contract asks.
    assert_eq!(store.term(2), Ok(2));
    for i in 3..=6 {
        assert_eq!(store.term(i), mem.term(i), "term({i})");
    }
    assert_eq!(store.term(6), store_err(StorageError::Unavailable));
}

#[test]
fn entries_match_mem_storage_with_size_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mem = MemStorage::new();
    let ents: Vec<Entry> = (1..=6)
        .map(|i| entry_with(i, i, &vec![7u8; i as usize * 3]))
        .collect();
    store.append(&ents).expect("append");
    mem.wl().append(&ents).expect("mem append");
    store.set_applied(2).expect("applied");
    store.compact(2, Vec::new()).expect("compact");
    mem.wl().compact(3).expect("mem compact");

    let size = |i: usize| prost011::Message::encoded_len(&ents[i]) as u64;
    let limits = [
        None,
        Some(raft::NO_LIMIT),
        Some(0),
        Some(size(3)),
        Some(size(3) + size(4)),
        Some(size(3) + size(4) - 1),
        Some(size(3) + size(4) + size(5) / 2),
        Some(size(3) + size(4) + size(5)),
    ];
    for low in 2..=6 {
        for high in low..=7 {
            for max in limits {
                assert_eq!(
                    store.entries(low, high, max, ctx()),
                    mem.entries(low, high, max, ctx()),
                    "entries({low}, {high}, {max:?})"
                );
            }
        }
    }
    assert_eq!(
        store.entries(2, 4, None, ctx()),
        store_err(StorageError::Compacted)
    );
    // MemStorage panics here; raft never asks, but a panic is no answer.
    assert_eq!(
        store.entries(3, 8, None, ctx()),
        store_err(StorageError::Unavailable)
    );
    assert_eq!(
        store.entries(5, 4, None, ctx()),
        store_err(StorageError::Unavailable)
    );
}

#[test]
fn append_truncates_a_conflicting_suffix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store
        .append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
        .expect("append");
    store.append(&[entry(2, 2)]).expect("overwrite");
    assert_eq!(store.last_index(), Ok(2));
    assert_eq!(
        store.entries(1, 3, None, ctx()),
        Ok(vec![entry(1, 1), entry(2, 2)])
    );
    assert_eq!(store.term(3), store_err(StorageError::Unavailable));
}

#[test]
fn bad_appends_fail_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = compacted_pair(&dir);
    let before = store.entries(3, 6, None, ctx()).expect("entries");
    assert!(matches!(
        store.append(&[entry(7, 5)]),
        Err(StoreError::AppendGap { index: 7, last: 5 })
    ));
    assert!(matches!(
        store.append(&[entry(2, 5), entry(3, 5)]),
        Err(StoreError::AppendCompacted {
            index: 2,
            compacted: 2
        })
    ));
    assert!(matches!(
        store.append(&[entry(4, 5), entry(6, 5)]),
        Err(StoreError::NotConsecutive {
            previous: 4,
            found: 6
        })
    ));
    assert!(matches!(
        store.append(&[entry(u64::MAX, 5), entry(0, 5)]),
        Err(StoreError::NotConsecutive { .. })
    ));
    assert_eq!(store.entries(3, 6, None, ctx()), Ok(before));
    assert_eq!(store.last_index(), Ok(5));
    store.append(&[]).expect("empty append is a no-op");
}

#[test]
fn compact_stores_a_snapshot_and_serves_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.initialize(&[1, 2, 3]).expect("init");
    assert_eq!(
        store.snapshot(0, 2),
        store_err(StorageError::SnapshotTemporarilyUnavailable)
    );
    store
        .append(&[entry(1, 1), entry(2, 1), entry(3, 2)])
        .expect("append");
    assert!(matches!(
        store.compact(3, Vec::new()),
        Err(StoreError::CompactBeyondApplied {
            index: 3,
            applied: 0
        })
    ));
    store.set_applied(3).expect("applied");
    assert!(matches!(
        store.compact(4, Vec::new()),
        Err(StoreError::CompactBeyondLog { index: 4, last: 3 })
    ));
    // Compacting the whole log keeps first = last + 1 and the term.
    store.compact(3, b"sm".to_vec()).expect("compact");
    assert_eq!(store.first_index(), Ok(4));
    assert_eq!(store.last_index(), Ok(3));
    assert_eq!(store.term(3), Ok(2));
    assert_eq!(store.term(2), store_err(StorageError::Compacted));
    assert_eq!(store.entries(4, 4, None, ctx()), Ok(Vec::new()));

    let snap = store.snapshot(0, 2).expect("snapshot");
    assert_eq!(snap.get_metadata().index, 3);
    assert_eq!(snap.get_metadata().term, 2);
    assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
    assert_eq!(snap.data, b"sm".to_vec());
    assert_eq!(store.stored_snapshot(), Some(snap));
    assert_eq!(
        store.snapshot(4, 2),
        store_err(StorageError::SnapshotTemporarilyUnavailable)
    );
    // Already compacted: a no-op, the snapshot stays.
    store.compact(2, b"old".to_vec()).expect("no-op compact");
    assert_eq!(
        store.stored_snapshot().map(|s| s.data),
        Some(b"sm".to_vec())
    );
    // The log goes on after the snapshot.
    store.append(&[entry(4, 3)]).expect("append after");
    assert_eq!(store.entries(4, 5, None, ctx()), Ok(vec![entry(4, 3)]));
}

fn snapshot_at(index: u64, term: u64, voters: Vec<u64>, data: &[u8]) -> Snapshot {
    let mut s = Snapshot {
        data: data.to_vec(),
        ..Default::default()
    };
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().voters = voters;
    s
}

#[test]
fn apply_snapshot_matches_mem_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mem) = compacted_pair(&dir);
    let hs = HardState {
        term: 9,
        vote: 2,
        commit: 4,
    };
    store.set_hard_state(&hs).expect("hs");
    mem.wl().set_hardstate(hs);

    let stale = snapshot_at(2, 2, vec![1], b"");
    assert!(matches!(
        store.apply_snapshot(&stale),
        Err(StoreError::SnapshotOutOfDate { index: 2, first: 3 })
    ));
    assert_eq!(
        mem.wl().apply_snapshot(stale),
        store_err(StorageError::SnapshotOutOfDate)
    );

    let snap = snapshot_at(8, 7, vec![1, 2], b"leader state");
    store.apply_snapshot(&snap).expect("apply");
    mem.wl().apply_snapshot(snap.clone()).expect("mem apply");
    let (ours, theirs) = (
        store.initial_state().expect("state"),
        mem.initial_state().expect("mem state"),
    );
    assert_eq!(ours.hard_state, theirs.hard_state);
    assert_eq!(ours.conf_state, theirs.conf_state);
    assert_eq!(store.hard_state().term, 9);
    assert_eq!(store.hard_state().commit, 8);
    assert_eq!(store.first_index(), mem.first_index());
    assert_eq!(store.last_index(), mem.last_index());
    assert_eq!(store.term(8), mem.term(8));
    assert_eq!(store.stored_snapshot(), Some(snap));
    // The applied index is the caller's business with apply_snapshot.
    assert_eq!(store.applied(), 5);
}

#[test]
fn apply_snapshot_with_restores_atomically() {
    let sm: TableDefinition<&str, u64> = TableDefinition::new("sm");
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = compacted_pair(&dir);
    let snap = snapshot_at(9, 3, vec![1, 2, 3], b"x");
    let failed = store.apply_snapshot_with(&snap, |txn| {
        txn.open_table(sm)?.insert("k", 1)?;
        Err::<(), _>(redb::Error::Corrupted("refused".into()))
    });
    assert!(matches!(failed, Err(StoreError::Apply(_))));
    assert_eq!(store.last_index(), Ok(5));
    assert_eq!(
        store.stored_snapshot().map(|s| s.get_metadata().index),
        Some(2)
    );

    store
        .apply_snapshot_with(&snap, |txn| {
            txn.open_table(sm)?.insert("k", 1)?;
            Ok(())
        })
        .expect("apply");
    assert_eq!(store.applied(), 9);
    assert_eq!(store.first_index(), Ok(10));
    let read = store.database().begin_read().expect("read");
    let table = read.open_table(sm).expect("table");
    assert_eq!(table.get("k").expect("get").map(|v| v.value()), Some(1));
}

#[test]
fn initialize_only_touches_a_new_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    assert!(matches!(store.initialize(&[]), Err(StoreError::NoVoters)));
    store.initialize(&[1, 2, 3]).expect("init");
    store.initialize(&[4, 5]).expect("second init is a no-op");
    let state = store.initial_state().expect("state");
    assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
    assert!(state.initialized());
    drop(store);

    let store = open(&dir);
    store
        .initialize(&[7])
        .expect("init after reopen is a no-op");
    assert_eq!(store.conf_state().voters, vec![1, 2, 3]);

    // A store with only a hard state is not new either.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store
        .set_hard_state(&HardState {
            term: 1,
            ..Default::default()
        })
        .expect("hs");
    store.initialize(&[1]).expect("no-op");
    assert_eq!(store.conf_state(), ConfState::default());
}

#[test]
fn everything_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hs = HardState {
        term: 4,
        vote: 3,
        commit: 6,
    };
    let ents: Vec<Entry> = (1..=7).map(|i| entry_with(i, 1 + i / 3, b"req")).collect();
    {
        let store = open(&dir);
        store.initialize(&[1, 2, 3]).expect("init");
        store.append(&ents).expect("append");
        store.set_hard_state(&hs).expect("hs");
        store.set_commit(7).expect("commit");
        store.set_applied(5).expect("applied");
        store
            .compact(3, b"applied state".to_vec())
            .expect("compact");
    }
    let store = open(&dir);
    assert_eq!(store.hard_state(), HardState { commit: 7, ..hs });
    assert_eq!(store.conf_state().voters, vec![1, 2, 3]);
    assert_eq!(store.applied(), 5);
    assert_eq!(store.first_index(), Ok(4));
    assert_eq!(store.last_index(), Ok(7));
    assert_eq!(store.term(3), Ok(2));
    assert_eq!(store.entries(4, 8, None, ctx()), Ok(ents[3..].to_vec()));
    let snap = store.stored_snapshot().expect("snapshot");
    assert_eq!(snap.get_metadata().index, 3);
    assert_eq!(snap.get_metadata().term, 2);
    assert_eq!(snap.data, b"applied state".to_vec());

    let cs = ConfState {
        voters: vec![1, 2],
        learners: vec![3],
        ..Default::default()
    };
    store.set_conf_state(&cs).expect("cs");
    drop(store);
    assert_eq!(open(&dir).conf_state(), cs);
}

#[test]
fn apply_with_is_atomic() {
    let sm: TableDefinition<&str, u64> = TableDefinition::new("sm");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let n = store
        .apply_with(3, |txn| {
            txn.open_table(sm)?.insert("a", 1)?;
            Ok(42)
        })
        .expect("apply");
    assert_eq!(n, 42);
    assert_eq!(store.applied(), 3);

    let failed = store.apply_with(4, |txn| {
        txn.open_table(sm)?.insert("a", 2)?;
        txn.open_table(sm)?.insert("b", 2)?;
        Err::<(), _>(redb::Error::Corrupted("state machine refused".into()))
    });
    assert!(matches!(failed, Err(StoreError::Apply(_))));
    assert_eq!(store.applied(), 3);
    let check = |store: &RaftStore| {
        let read = store.database().begin_read().expect("read");
        let table = read.open_table(sm).expect("table");
        assert_eq!(table.get("a").expect("get").map(|v| v.value()), Some(1));
        assert!(table.get("b").expect("get").is_none());
    };
    check(&store);

    // Applying the same entries twice is refused before `f` runs.
    let regressed = store.apply_with(2, |_| -> Result<(), redb::Error> { panic!("must not run") });
    assert!(matches!(
        regressed,
        Err(StoreError::AppliedRegression {
            applied: 3,
            index: 2
        })
    ));
    drop(store);
    let store = open(&dir);
    assert_eq!(store.applied(), 3);
    check(&store);
}

#[test]
fn shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RaftStore>();

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(&dir));
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            for i in 1..=50 {
                store.append(&[entry(i, 1)]).expect("append");
            }
        })
    };
    // Readers always see a consistent log: every index up to the last
    // one has an entry.
    for _ in 0..200 {
        let last = store.last_index().expect("last");
        let got = store.entries(1, last + 1, None, ctx()).expect("entries");
        assert_eq!(got.len() as u64, last);
    }
    writer.join().expect("writer");
    assert_eq!(store.last_index(), Ok(50));
}

#[test]
fn corrupt_log_is_reported_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(&dir);
        store
            .append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
            .expect("append");
        let txn = store.database().begin_write().expect("write");
        txn.open_table(ENTRIES)
            .expect("table")
            .remove(2)
            .expect("remove");
        txn.commit().expect("commit");
    }
    let err = RaftStore::open(&dir.path().join("raft.redb")).expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

/// One step of the comparison with MemStorage. Positions are selectors
/// resolved against the current log, so that most steps are valid.
#[derive(Debug, Clone)]
enum Op {
    Append {
        at: u64,
        ents: Vec<(u64, Vec<u8>)>,
    },
    Compact {
        at: u64,
    },
    ApplySnapshot {
        at: u64,
        term: u64,
    },
    SetHardState {
        term: u64,
        vote: u64,
        commit: u64,
    },
    SetCommit(u64),
    Entries {
        low: u64,
        high: u64,
        max: Option<u64>,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u64>(), prop::collection::vec((1u64..6, prop::collection::vec(any::<u8>(), 0..24)), 1..6))
            .prop_map(|(at, ents)| Op::Append { at, ents }),
        2 => any::<u64>().prop_map(|at| Op::Compact { at }),
        1 => (any::<u64>(), 0u64..8).prop_map(|(at, term)| Op::ApplySnapshot { at, term }),
        1 => (0u64..10, 0u64..4, 0u64..20)
            .prop_map(|(term, vote, commit)| Op::SetHardState { term, vote, commit }),
        1 => (0u64..20).prop_map(Op::SetCommit),
        3 => (any::<u64>(), any::<u64>(), prop::option::of(0u64..120))
            .prop_map(|(low, high, max)| Op::Entries { low, high, max }),
        1 => Just(Op::Reopen),
    ]
}

/// A value in `lo..=hi` chosen by `sel`.
fn pick(sel: u64, lo: u64, hi: u64) -> u64 {
    lo + sel % (hi - lo + 1)
}

fn assert_same(store: &RaftStore, mem: &MemStorage, dummy: (u64, u64)) {
    let first = mem.first_index().expect("first");
    let last = mem.last_index().expect("last");
    assert_eq!(store.first_index(), Ok(first));
    assert_eq!(store.last_index(), Ok(last));
    let (ours, theirs) = (
        store.initial_state().expect("state"),
        mem.initial_state().expect("mem state"),
    );
    assert_eq!(ours.hard_state, theirs.hard_state);
    assert_eq!(ours.conf_state, theirs.conf_state);
    for idx in 0..=last + 1 {
        if idx == dummy.0 {
            assert_eq!(store.term(idx), Ok(dummy.1), "term of the snapshot {idx}");
        } else if idx < dummy.0 {
            // MemStorage still answers 0 for index 0 after compacting
            // past it; everything before the snapshot is compacted.
            assert_eq!(store.term(idx), store_err(StorageError::Compacted));
        } else {
            assert_eq!(store.term(idx), mem.term(idx), "term({idx})");
        }
    }
    if first <= last {
        assert_eq!(
            store.entries(first, last + 1, None, ctx()),
            mem.entries(first, last + 1, None, ctx())
        );
    }
}

fn run_against_mem_storage(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&dir);
    let mem = MemStorage::new();
    // The store's snapshot (index, term), which MemStorage forgets
    // after its own compaction.
    let mut dummy = (0u64, 0u64);
    let mut next_term = 1;
    for op in ops {
        let first = mem.first_index().expect("first");
        let last = mem.last_index().expect("last");
        match op {
            Op::Append { at, ents } => {
                let start = pick(at, first.saturating_sub(1), last + 2);
                let ents: Vec<Entry> = ents
                    .iter()
                    .enumerate()
                    .map(|(i, (bump, data))| {
                        next_term += bump - 1;
                        entry_with(start + i as u64, next_term, data)
                    })
                    .collect();
                if start >= first && start <= last + 1 {
                    store.append(&ents).expect("valid append");
                    mem.wl().append(&ents).expect("mem append");
                } else {
                    // MemStorage would panic.
                    assert!(store.append(&ents).is_err(), "append at {start}");
                }
            }
            Op::Compact { at } => {
                let c = pick(at, first - 1, last);
                // MemStorage cannot compact its whole log without
                // losing its first index; the unit tests cover that.
                if c >= last {
                    continue;
                }
                store.set_applied(store.applied().max(c)).expect("applied");
                if c >= first {
                    dummy = (c, mem.term(c).expect("term before compact"));
                }
                store.compact(c, c.to_le_bytes().to_vec()).expect("compact");
                mem.wl().compact(c + 1).expect("mem compact");
            }
            Op::ApplySnapshot { at, term } => {
                let index = pick(at, first - 1, last + 3);
                let snap = snapshot_at(index, term, vec![1, 2, 3], b"s");
                let ours = store.apply_snapshot(&snap);
                let theirs = mem.wl().apply_snapshot(snap);
                assert_eq!(ours.is_ok(), theirs.is_ok(), "{ours:?} vs {theirs:?}");
                if ours.is_ok() {
                    dummy = (index, term);
                }
            }
            Op::SetHardState { term, vote, commit } => {
                let hs = HardState { term, vote, commit };
                store.set_hard_state(&hs).expect("hs");
                mem.wl().set_hardstate(hs);
            }
            Op::SetCommit(commit) => {
                store.set_commit(commit).expect("commit");
                mem.wl().mut_hard_state().commit = commit;
            }
            Op::Entries { low, high, max } => {
                let low = pick(low, 0, last + 2);
                let high = pick(high, low, last + 2);
                let ours = store.entries(low, high, max, ctx());
                if low < first {
                    assert_eq!(ours, store_err(StorageError::Compacted));
                } else if high > last + 1 {
                    // MemStorage panics.
                    assert_eq!(ours, store_err(StorageError::Unavailable));
                } else if first > last {
                    // MemStorage panics on an empty log even for an
                    // empty range.
                    assert_eq!(ours, Ok(Vec::new()));
                } else {
                    assert_eq!(ours, mem.entries(low, high, max, ctx()));
                }
            }
            Op::Reopen => {
                drop(store);
                store = open(&dir);
            }
        }
        assert_same(&store, &mem, dummy);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn behaves_like_mem_storage(ops in prop::collection::vec(op(), 1..40)) {
        run_against_mem_storage(ops);
    }
}
