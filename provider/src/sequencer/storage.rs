//! Raft's durable storage on redb: the log, the hard state, the
//! configuration, the last snapshot and the applied index.
//!
//! [`RaftStore`] implements [`raft::Storage`] with the semantics of raft-rs'
//! own `MemStorage`, except that everything is in one redb file and every
//! mutation is committed with `Durability::Immediate` (fsync) before it
//! returns, so the caller may acknowledge or send messages right after.
//!
//! The log keeps a "dummy" position in front of it: the snapshot's index
//! and term. `first_index()` is always `snapshot index + 1` and
//! `term(first_index() - 1)` is answered from the snapshot, which raft needs
//! to match the entry before the first one it sends.
//!
//! The state machine lives in the same database (the caller's own tables),
//! so that [`RaftStore::apply_with`] can write it and the applied index in
//! one transaction: after a crash the two can never disagree.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};

/// Log entries by index, each a prost-encoded `Entry`.
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
/// Everything else, one prost-encoded value per key below.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_HARD_STATE: &str = "hard_state";
const KEY_CONF_STATE: &str = "conf_state";
const KEY_APPLIED: &str = "applied";
const KEY_SNAPSHOT: &str = "snapshot";

/// Why a [`RaftStore`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database (file, transaction, table or commit) failed. Boxed,
    /// as is `Apply`'s, because `redb::Error` would make every `Result`
    /// of this module large.
    #[error("raft store database error: {0}")]
    Db(#[source] Box<redb::Error>),
    /// The caller's state-machine writes in [`RaftStore::apply_with`] or
    /// [`RaftStore::apply_snapshot_with`] failed; nothing was committed.
    #[error("state machine write failed, nothing committed: {0}")]
    Apply(#[source] Box<redb::Error>),
    /// A stored value does not decode.
    #[error("raft store holds an undecodable {what}: {source}")]
    Decode {
        /// Which value (entry, hard state, ...).
        what: &'static str,
        /// The prost error.
        #[source]
        source: prost011::DecodeError,
    },
    /// The stored data breaks an invariant the store maintains.
    #[error("raft store is corrupt: {0}")]
    Corrupt(String),
    /// The entries given to [`RaftStore::append`] do not have consecutive
    /// indexes.
    #[error("entries to append are not consecutive: index {found} follows {previous}")]
    NotConsecutive {
        /// Index of the entry before the break.
        previous: u64,
        /// Index of the entry after it.
        found: u64,
    },
    /// [`RaftStore::append`] would overwrite compacted entries.
    #[error("cannot append at index {index}: entries up to {compacted} are compacted")]
    AppendCompacted {
        /// Index of the first entry given.
        index: u64,
        /// Last compacted index (the snapshot's).
        compacted: u64,
    },
    /// [`RaftStore::append`] would leave a hole in the log.
    #[error("cannot append at index {index}: the log ends at {last}, which would leave a gap")]
    AppendGap {
        /// Index of the first entry given.
        index: u64,
        /// Current last index.
        last: u64,
    },
    /// [`RaftStore::compact`] past the end of the log.
    #[error("cannot compact to {index}: the log ends at {last}")]
    CompactBeyondLog {
        /// The requested compact index.
        index: u64,
        /// Current last index.
        last: u64,
    },
    /// [`RaftStore::compact`] past the applied index: the snapshot data
    /// could not describe the state at that index.
    #[error("cannot compact to {index}: only {applied} is applied")]
    CompactBeyondApplied {
        /// The requested compact index.
        index: u64,
        /// Current applied index.
        applied: u64,
    },
    /// [`RaftStore::apply_snapshot`] with a snapshot older than the log.
    #[error("snapshot at {index} is out of date: the log starts at {first}")]
    SnapshotOutOfDate {
        /// The snapshot's index.
        index: u64,
        /// Current first index.
        first: u64,
    },
    /// The applied index would go backwards, i.e. entries applied twice.
    #[error("applied index cannot go back from {applied} to {index}")]
    AppliedRegression {
        /// Current applied index.
        applied: u64,
        /// The requested one.
        index: u64,
    },
    /// [`RaftStore::initialize`] of a new store without voters.
    #[error("cannot initialise a raft group without voters")]
    NoVoters,
}

impl From<redb::Error> for StoreError {
    fn from(e: redb::Error) -> Self {
        StoreError::Db(Box::new(e))
    }
}

// redb has one error type per operation; all of them convert into
// `redb::Error`, so `?` works on any of them.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::from(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<StoreError> for raft::Error {
    fn from(e: StoreError) -> Self {
        raft::Error::Store(StorageError::Other(Box::new(e)))
    }
}

/// What the store knows besides the entries, mirrored in memory so that
/// the infallible getters need no I/O. Only replaced after a commit.
#[derive(Clone, Default)]
struct State {
    hard_state: HardState,
    conf_state: ConfState,
    applied: u64,
    /// Shared so that cloning `State` per write stays cheap however large
    /// the snapshot data is.
    snapshot: Option<Arc<Snapshot>>,
    /// Index of the last entry, or the snapshot index if there is none.
    last_index: u64,
}

impl State {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.get_metadata().index)
    }

    fn snapshot_term(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.get_metadata().term)
    }

    fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }
}

/// Durable raft storage on redb; see the module documentation.
///
/// All methods take `&self`, so it can be shared in an `Arc` between the
/// raft task and readers. Writers are serialised, and a reader never sees a
/// half-done write: each write holds the state lock from the start of its
/// transaction until the commit and the in-memory mirror agree.
///
/// Do not call `RaftStore` methods from inside the closure given to
/// [`RaftStore::apply_with`] (the lock is held: deadlock), and do not hold a
/// write transaction of [`RaftStore::database`] while calling a writing
/// method (redb allows one writer: deadlock).
pub struct RaftStore {
    db: Database,
    state: RwLock<State>,
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.read_state();
        f.debug_struct("RaftStore")
            .field("hard_state", &s.hard_state)
            .field("conf_state", &s.conf_state)
            .field("applied", &s.applied)
            .field("snapshot_index", &s.snapshot_index())
            .field("last_index", &s.last_index)
            .finish()
    }
}

impl RaftStore {
    /// Creates the redb file at `path`, or opens it, and loads the raft
    /// state. A new store is empty; call [`RaftStore::initialize`] to give
    /// it its voters.
    pub fn open(path: &Path) -> Result<RaftStore, StoreError> {
        let db = Database::create(path)?;
        // Create the tables up front so that reads never meet a missing
        // table.
        let txn = db.begin_write()?;
        txn.open_table(ENTRIES)?;
        txn.open_table(META)?;
        txn.commit()?;
        let state = load(&db)?;
        Ok(RaftStore {
            db,
            state: RwLock::new(state),
        })
    }

    /// Sets the voters of a brand-new store (no hard state, no conf state,
    /// no entries, no snapshot). Does nothing on a store that has any of
    /// those, so it is safe to call on every start.
    pub fn initialize(&self, voters: &[u64]) -> Result<(), StoreError> {
        {
            let s = self.read_state();
            if !is_new(&s) {
                // The common case on restart; no write transaction needed.
                return Ok(());
            }
        }
        self.write(|_, state| {
            // Checked again under the write lock: another caller may have
            // initialised in between.
            if !is_new(state) {
                return Ok(());
            }
            if voters.is_empty() {
                return Err(StoreError::NoVoters);
            }
            state.conf_state.voters = voters.to_vec();
            Ok(())
        })
    }

    /// Appends `entries` to the log, first discarding every stored entry
    /// with an index at or after the first new one (a conflicting suffix),
    /// as `MemStorage::append` does.
    ///
    /// Fails, changing nothing, if the entries are not consecutive, start
    /// inside the compacted prefix, or start after `last_index() + 1`.
    pub fn append(&self, entries: &[Entry]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let (first_new, last_new) = (first.index, last.index);
        for pair in entries.windows(2) {
            if pair[0].index.checked_add(1) != Some(pair[1].index) {
                return Err(StoreError::NotConsecutive {
                    previous: pair[0].index,
                    found: pair[1].index,
                });
            }
        }
        self.write(|txn, state| {
            if first_new < state.first_index() {
                return Err(StoreError::AppendCompacted {
                    index: first_new,
                    compacted: state.snapshot_index(),
                });
            }
            if first_new > state.last_index.saturating_add(1) {
                return Err(StoreError::AppendGap {
                    index: first_new,
                    last: state.last_index,
                });
            }
            let mut table = txn.open_table(ENTRIES)?;
            if first_new <= state.last_index {
                table.retain_in(first_new.., |_, _| false)?;
            }
            for e in entries {
                let bytes = prost011::Message::encode_to_vec(e);
                table.insert(e.index, bytes.as_slice())?;
            }
            state.last_index = last_new;
            Ok(())
        })
    }

    /// Replaces the stored hard state.
    pub fn set_hard_state(&self, hs: &HardState) -> Result<(), StoreError> {
        self.write(|_, state| {
            state.hard_state = hs.clone();
            Ok(())
        })
    }

    /// Replaces only the commit index of the stored hard state.
    pub fn set_commit(&self, commit: u64) -> Result<(), StoreError> {
        self.write(|_, state| {
            state.hard_state.commit = commit;
            Ok(())
        })
    }

    /// Replaces the stored configuration.
    pub fn set_conf_state(&self, cs: &ConfState) -> Result<(), StoreError> {
        self.write(|_, state| {
            state.conf_state = cs.clone();
            Ok(())
        })
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.read_state().hard_state.clone()
    }

    /// The stored configuration.
    pub fn conf_state(&self) -> ConfState {
        self.read_state().conf_state.clone()
    }

    /// The last applied index (0 on a new store).
    pub fn applied(&self) -> u64 {
        self.read_state().applied
    }

    /// Sets the applied index. Fails if it would go backwards.
    pub fn set_applied(&self, index: u64) -> Result<(), StoreError> {
        self.write(|_, state| {
            check_applied(state, index)?;
            state.applied = index;
            Ok(())
        })
    }

    /// Runs the caller's state-machine writes `f` and sets the applied index
    /// to `index` in the same write transaction, committed once (fsync).
    ///
    /// If `f` fails, nothing is committed: neither its writes nor the
    /// applied index. Fails without running `f` if `index` is below the
    /// current applied index (entries would be applied twice).
    ///
    /// `f` must only touch its own tables, not `raft_entries`/`raft_meta`,
    /// and must not call back into this store.
    pub fn apply_with<F, T>(&self, index: u64, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&WriteTransaction) -> Result<T, redb::Error>,
    {
        self.write(|txn, state| {
            check_applied(state, index)?;
            let out = f(txn).map_err(|e| StoreError::Apply(Box::new(e)))?;
            state.applied = index;
            Ok(out)
        })
    }

    /// The database, for the caller's own read transactions (and its
    /// tables, written through [`RaftStore::apply_with`]).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Takes a snapshot at `compact_index` holding `snapshot_data` (the
    /// caller's serialized state machine as of that index) and deletes the
    /// entries up to and including it, so that afterwards
    /// `first_index() == compact_index + 1`.
    ///
    /// The snapshot's term is that of the entry at `compact_index`, its
    /// configuration the current one. Does nothing if `compact_index` is
    /// already compacted; fails if it is past the last entry or past the
    /// applied index.
    pub fn compact(&self, compact_index: u64, snapshot_data: Vec<u8>) -> Result<(), StoreError> {
        if compact_index <= self.read_state().snapshot_index() {
            // Already compacted (as MemStorage, not an error); skip the
            // empty transaction and its fsync.
            return Ok(());
        }
        self.write(|txn, state| {
            if compact_index <= state.snapshot_index() {
                return Ok(());
            }
            if compact_index > state.last_index {
                return Err(StoreError::CompactBeyondLog {
                    index: compact_index,
                    last: state.last_index,
                });
            }
            if compact_index > state.applied {
                return Err(StoreError::CompactBeyondApplied {
                    index: compact_index,
                    applied: state.applied,
                });
            }
            let mut table = txn.open_table(ENTRIES)?;
            let term = read_entry(&table, compact_index)?.term;
            table.retain_in(..=compact_index, |_, _| false)?;
            let mut snapshot = Snapshot {
                data: snapshot_data,
                ..Default::default()
            };
            let meta = snapshot.mut_metadata();
            meta.index = compact_index;
            meta.term = term;
            meta.set_conf_state(state.conf_state.clone());
            state.snapshot = Some(Arc::new(snapshot));
            Ok(())
        })
    }

    /// Installs a snapshot received from the leader, as
    /// `MemStorage::apply_snapshot` does: all entries are discarded, the
    /// hard state's term becomes at least the snapshot's and its commit the
    /// snapshot's index, and the configuration becomes the snapshot's. The
    /// snapshot (with its data) is stored and becomes the one served to
    /// peers.
    ///
    /// The applied index is left alone: a crash before the caller restores
    /// its state machine would leave `applied()` below the snapshot index.
    /// [`RaftStore::apply_snapshot_with`] does both in one transaction.
    pub fn apply_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.write(|txn, state| install_snapshot(txn, state, snapshot))
    }

    /// [`RaftStore::apply_snapshot`], plus the caller's state-machine
    /// restore `f` and applied index = snapshot index, all in one
    /// transaction. If `f` fails nothing is committed.
    pub fn apply_snapshot_with<F, T>(&self, snapshot: &Snapshot, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&WriteTransaction) -> Result<T, redb::Error>,
    {
        self.write(|txn, state| {
            install_snapshot(txn, state, snapshot)?;
            let out = f(txn).map_err(|e| StoreError::Apply(Box::new(e)))?;
            // The state machine now is the snapshot's, whatever was applied
            // before.
            state.applied = snapshot.get_metadata().index;
            Ok(out)
        })
    }

    /// The stored snapshot (from [`RaftStore::compact`] or
    /// [`RaftStore::apply_snapshot`]), if any.
    pub fn stored_snapshot(&self) -> Option<Snapshot> {
        self.read_state().snapshot.as_deref().cloned()
    }

    fn read_state(&self) -> RwLockReadGuard<'_, State> {
        // A panic while the lock was held (only possible inside a write, in
        // the caller's closure) left `State` untouched: it is only replaced
        // after a commit. So the poison carries no meaning here.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `op` in a write transaction on a copy of the state, writes the
    /// metadata that changed, commits durably, and only then publishes the
    /// new state. On any error the transaction is dropped, which aborts it.
    fn write<T>(
        &self,
        op: impl FnOnce(&WriteTransaction, &mut State) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut state = self.write_state();
        let mut next = state.clone();
        let txn = self.db.begin_write()?;
        let out = op(&txn, &mut next)?;
        persist_changes(&txn, &state, &next)?;
        txn.commit()?;
        *state = next;
        Ok(out)
    }

    /// Entries `[low, high)`, bounds already checked, cut as
    /// `raft::util::limit_size` would: at least one, then while the total
    /// encoded size stays within `max_size`.
    fn read_entries(&self, low: u64, high: u64, max_size: u64) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let mut out = Vec::new();
        let mut size: u64 = 0;
        for row in table.range(low..high)? {
            let (key, value) = row?;
            let bytes = value.value();
            // The stored bytes are prost's own encoding of the entry, so
            // their length is the `encoded_len` that `limit_size` sums.
            size = size.saturating_add(bytes.len() as u64);
            if !out.is_empty() && size > max_size {
                return Ok(out);
            }
            out.push(decode_entry(key.value(), bytes)?);
        }
        let expected = high - low;
        if out.len() as u64 != expected {
            return Err(StoreError::Corrupt(format!(
                "entries {low}..{high} should all be stored, found {}",
                out.len()
            )));
        }
        Ok(out)
    }

    fn read_term(&self, index: u64) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        Ok(read_entry(&table, index)?.term)
    }
}

impl Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let s = self.read_state();
        Ok(RaftState::new(s.hard_state.clone(), s.conf_state.clone()))
    }

    /// As `MemStorage::entries`, but a `high` past `last_index() + 1` (or
    /// below `low`) is `Unavailable` instead of a panic. Entries are always
    /// read synchronously, so the context does not matter.
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        // `raft::NO_LIMIT` is `u64::MAX`, the same as no limit at all.
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let s = self.read_state();
        if low < s.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > s.last_index.saturating_add(1) || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        // The read lock stays held so that no write changes the log between
        // the bounds check and the read.
        Ok(self.read_entries(low, high, max_size)?)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let s = self.read_state();
        if idx == s.snapshot_index() {
            return Ok(s.snapshot_term());
        }
        if idx < s.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > s.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.read_term(idx)?)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read_state().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read_state().last_index)
    }

    /// The stored snapshot. Unlike `MemStorage`, which fabricates one at the
    /// commit index, this store only has the snapshot taken by the last
    /// [`RaftStore::compact`] (or received from a leader); if there is none,
    /// or it is older than `request_index`, raft is told to retry later.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        match &self.read_state().snapshot {
            Some(s) if s.get_metadata().index >= request_index => Ok(Snapshot::clone(s)),
            _ => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}

/// Refuses to move the applied index backwards: that would mean applying
/// entries twice.
fn check_applied(state: &State, index: u64) -> Result<(), StoreError> {
    if index < state.applied {
        return Err(StoreError::AppliedRegression {
            applied: state.applied,
            index,
        });
    }
    Ok(())
}

/// Whether nothing at all was ever stored (what `initialize` requires).
fn is_new(s: &State) -> bool {
    s.hard_state == HardState::default()
        && s.conf_state == ConfState::default()
        && s.snapshot.is_none()
        && s.last_index == 0
}

fn install_snapshot(
    txn: &WriteTransaction,
    state: &mut State,
    snapshot: &Snapshot,
) -> Result<(), StoreError> {
    let meta = snapshot.get_metadata();
    let index = meta.index;
    if state.first_index() > index {
        return Err(StoreError::SnapshotOutOfDate {
            index,
            first: state.first_index(),
        });
    }
    txn.open_table(ENTRIES)?.retain(|_, _| false)?;
    state.hard_state.term = state.hard_state.term.max(meta.term);
    state.hard_state.commit = index;
    state.conf_state = meta.get_conf_state().clone();
    state.snapshot = Some(Arc::new(snapshot.clone()));
    state.last_index = index;
    Ok(())
}

/// Writes the metadata that differs between `old` and `new`, so that each
/// operation only pays for what it changed.
fn persist_changes(txn: &WriteTransaction, old: &State, new: &State) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    if new.hard_state != old.hard_state {
        let bytes = prost011::Message::encode_to_vec(&new.hard_state);
        meta.insert(KEY_HARD_STATE, bytes.as_slice())?;
    }
    if new.conf_state != old.conf_state {
        let bytes = prost011::Message::encode_to_vec(&new.conf_state);
        meta.insert(KEY_CONF_STATE, bytes.as_slice())?;
    }
    if new.applied != old.applied {
        meta.insert(KEY_APPLIED, new.applied.to_le_bytes().as_slice())?;
    }
    let same_snapshot = match (&old.snapshot, &new.snapshot) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    };
    if !same_snapshot {
        match &new.snapshot {
            Some(s) => {
                let bytes = prost011::Message::encode_to_vec(s.as_ref());
                meta.insert(KEY_SNAPSHOT, bytes.as_slice())?;
            }
            None => {
                meta.remove(KEY_SNAPSHOT)?;
            }
        }
    }
    Ok(())
}

/// Reads the state of a store whose tables exist, checking that the log is
/// one run of entries right after the snapshot.
fn load(db: &Database) -> Result<State, StoreError> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let get = |key: &str| -> Result<Option<Vec<u8>>, StoreError> {
        Ok(meta.get(key)?.map(|v| v.value().to_vec()))
    };
    let mut state = State::default();
    if let Some(bytes) = get(KEY_HARD_STATE)? {
        state.hard_state = decode(&bytes, "hard state")?;
    }
    if let Some(bytes) = get(KEY_CONF_STATE)? {
        state.conf_state = decode(&bytes, "conf state")?;
    }
    if let Some(bytes) = get(KEY_APPLIED)? {
        let raw: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
            StoreError::Corrupt(format!("applied index is {} bytes, not 8", bytes.len()))
        })?;
        state.applied = u64::from_le_bytes(raw);
    }
    if let Some(bytes) = get(KEY_SNAPSHOT)? {
        state.snapshot = Some(Arc::new(decode(&bytes, "snapshot")?));
    }

    let entries = txn.open_table(ENTRIES)?;
    let first = entries.first()?.map(|(k, _)| k.value());
    let last = entries.last()?.map(|(k, _)| k.value());
    state.last_index = match (first, last) {
        (Some(first), Some(last)) => {
            let len = entries.len()?;
            // Keys are unique and sorted, so the count tells whether the
            // run from first to last has holes.
            if first != state.first_index() || last - first + 1 != len {
                return Err(StoreError::Corrupt(format!(
                    "log holds {len} entries from {first} to {last}, \
                     expected one run starting at {}",
                    state.first_index()
                )));
            }
            last
        }
        _ => state.snapshot_index(),
    };
    Ok(state)
}

fn read_entry<T>(table: &T, index: u64) -> Result<Entry, StoreError>
where
    T: ReadableTable<u64, &'static [u8]>,
{
    match table.get(index)? {
        Some(value) => decode_entry(index, value.value()),
        None => Err(StoreError::Corrupt(format!("entry {index} is missing"))),
    }
}

fn decode_entry(key: u64, bytes: &[u8]) -> Result<Entry, StoreError> {
    let entry: Entry = decode(bytes, "entry")?;
    if entry.index != key {
        return Err(StoreError::Corrupt(format!(
            "entry stored under {key} has index {}",
            entry.index
        )));
    }
    Ok(entry)
}

fn decode<M: prost011::Message + Default>(
    bytes: &[u8],
    what: &'static str,
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|source| StoreError::Decode { what, source })
}

#[cfg(test)]
mod tests;
