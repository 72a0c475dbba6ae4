//! The raft node: ticking, the Ready loop, proposals and their waiters.
//!
//! The Ready loop follows raft-rs's contract: messages of a ready may go
//! out at once (they are for the leader's followers), entries and hard
//! state are persisted (fsync'd) before the persisted messages are sent,
//! the commit index is persisted before entries are applied, and
//! `advance` / the light ready / `advance_apply` close each round.

// Storage errors (redb's) are large; they are rare and end the loop.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prost::Message as _;
use raft::prelude::{Entry, EntryType, Message, Snapshot};
use raft::{GetEntriesContext, RaftState, RawNode, StateRole, Storage};
use serde::Serialize;
use sharecall_proto::sequencer::{
    log_record, AbortRequest, AppliedState, LogRecord, PartReady, RequestRecord,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::applied;
use super::lifecycle;
use super::storage::{RaftStore, StoreError};

/// Sequencer settings.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// This node's raft id (provider id + 1).
    pub id: u64,
    /// All voters' raft ids.
    pub voters: Vec<u64>,
    /// Raft tick.
    pub tick: Duration,
    /// Ticks without a leader before an election.
    pub election_ticks: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_ticks: usize,
    /// Compact the log (snapshot) after this many applied entries.
    pub compact_every: u64,
}

impl SequencerConfig {
    /// Defaults for provider `provider_id`: 100 ms ticks, election after
    /// 1 s, heartbeats every 300 ms, compaction every 10 000 entries.
    pub fn for_provider(provider_id: u8) -> SequencerConfig {
        SequencerConfig {
            id: u64::from(provider_id) + 1,
            voters: vec![1, 2, 3],
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 3,
            compact_every: 10_000,
        }
    }
}

/// Why the sequencer failed.
#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    /// Storage failed.
    #[error("raft storage: {0}")]
    Store(#[from] StoreError),
    /// raft-rs refused.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The request was not committed in time (no leader, no quorum).
    #[error("request {0} was not ordered within {1:?} (is a majority of providers up?)")]
    Timeout(String, Duration),
    /// The raft task has stopped.
    #[error("the sequencer has stopped")]
    Stopped,
}

/// Where raft messages go (the gRPC transport in the provider process).
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends messages to their `to` nodes; losing some is fine.
    fn send(&self, messages: Vec<Message>);
}

/// A snapshot of the node's raft state, for the admin API and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RaftStatus {
    /// This node's raft id.
    pub id: u64,
    /// The leader's raft id (0 if unknown).
    pub leader: u64,
    /// Current term.
    pub term: u64,
    /// leader, follower, candidate, pre-candidate.
    pub role: &'static str,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Number of distinct requests applied.
    pub requests: u64,
    /// Hash chain over the applied request ids (hex).
    pub digest: String,
}

enum Input {
    Propose(Vec<u8>, String, oneshot::Sender<u64>),
    ProposeOnly(Vec<u8>),
    Step(Box<Message>),
}

/// Handle to the running raft node.
#[derive(Clone)]
pub struct Sequencer {
    inputs: mpsc::Sender<Input>,
    status: Arc<RwLock<RaftStatus>>,
    store: Arc<RaftStore>,
    /// The applied index and role changes, so waiters wake at once
    /// instead of polling the store.
    changes: watch::Receiver<u64>,
}

/// raft-rs takes its storage by value; this shares ours.
struct Shared(Arc<RaftStore>);

impl Storage for Shared {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.0.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.0.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.0.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.0.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.0.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.0.snapshot(request_index, to)
    }
}

impl Sequencer {
    /// Starts the raft node on `store` (initialised with the voters if new).
    pub fn start(
        config: SequencerConfig,
        store: Arc<RaftStore>,
        transport: Arc<dyn RaftTransport>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Sequencer, SequencerError> {
        store.initialize(&config.voters)?;
        // Applied entries are committed by definition; a store written
        // before the commit index was persisted first would otherwise make
        // raft-rs refuse to start.
        if store.hard_state().commit < store.applied() {
            store.set_commit(store.applied())?;
        }
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: store.applied(),
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_config.validate()?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&raft_config, Shared(store.clone()), &logger)?;
        let (tx, rx) = mpsc::channel(4096);
        let status = Arc::new(RwLock::new(RaftStatus {
            id: config.id,
            ..RaftStatus::default()
        }));
        let (changes_tx, changes) = watch::channel(0);
        let mut task = Loop {
            node,
            store: store.clone(),
            transport,
            waiters: HashMap::new(),
            status: status.clone(),
            config,
            changes: changes_tx,
        };
        let stop_loop = stop.clone();
        tokio::spawn(async move {
            // On shutdown the loop ends and drops its store handle.
            tokio::select! {
                r = task.run(rx) => if let Err(e) = r {
                    warn!("sequencer stopped: {e}");
                },
                _ = stop_loop.cancelled() => {}
            }
        });
        let sequencer = Sequencer {
            inputs: tx,
            status,
            store,
            changes,
        };
        let windows = sequencer.clone().expire_windows();
        tokio::spawn(async move {
            tokio::select! {
                _ = windows => {}
                _ = stop.cancelled() => {}
            }
        });
        Ok(sequencer)
    }

    /// The leader logs an abort for every request whose window has passed
    /// without all parts; all providers apply that decision identically.
    async fn expire_windows(self) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            if self.inputs.is_closed() {
                return;
            }
            if self.status().role != "leader" {
                continue;
            }
            let now = sharecall_proto::clock::now_ms();
            let Ok(expired) = lifecycle::expired(self.store.database(), now) else {
                continue;
            };
            for (request_id, reason) in expired {
                info!(%request_id, "aborting: {reason}");
                let record = LogRecord {
                    body: Some(log_record::Body::Abort(AbortRequest {
                        request_id,
                        reason,
                        at_ms: now,
                    })),
                };
                if self.propose(record).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Feeds a message from a peer (dropped if the node is overloaded:
    /// raft retransmits).
    pub fn step(&self, message: Message) {
        let _ = self.inputs.try_send(Input::Step(Box::new(message)));
    }

    /// The current raft state.
    pub fn status(&self) -> RaftStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A receiver that sees a change whenever entries are applied or the
    /// node's role or leader changes (the value is a change counter).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// The store (for reading the applied state).
    pub fn store(&self) -> &Arc<RaftStore> {
        &self.store
    }

    /// Proposes a record without waiting for it (it may be lost, e.g.
    /// without a leader; records are idempotent, so callers re-propose).
    pub async fn propose(&self, record: LogRecord) -> Result<(), SequencerError> {
        self.inputs
            .send(Input::ProposeOnly(record.encode_to_vec()))
            .await
            .map_err(|_| SequencerError::Stopped)
    }

    /// Logs that this provider holds its part of a request, then waits
    /// (up to the request's window plus `grace`) for the logged outcome.
    pub async fn part_ready(
        &self,
        part: PartReady,
        grace: Duration,
    ) -> Result<lifecycle::Outcome, SequencerError> {
        let mut part = part;
        part.at_ms = crate::execution::fault::proposed_time(part.at_ms);
        let id = part.request_id.clone();
        let wait = Duration::from_millis(part.window_ms) + grace;
        let deadline = tokio::time::Instant::now() + wait;
        let record = LogRecord {
            body: Some(log_record::Body::PartReady(part)),
        };
        let mut next_proposal = tokio::time::Instant::now();
        let mut changes = self.changes();
        loop {
            changes.borrow_and_update();
            if let Some(o) = lifecycle::outcome(self.store.database(), &id)
                .map_err(|e| SequencerError::Store(StoreError::from(e)))?
            {
                return Ok(o);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(SequencerError::Timeout(id, wait));
            }
            if now >= next_proposal {
                // Re-proposing is harmless: the record is idempotent.
                self.propose(record.clone()).await?;
                next_proposal = now + Duration::from_secs(1);
            }
            // Woken by the next applied entry; the timeout re-proposes.
            let until = next_proposal.min(deadline);
            if let Ok(Err(_)) = tokio::time::timeout_at(until, changes.changed()).await {
                return Err(SequencerError::Stopped);
            }
        }
    }

    /// Orders `record`; returns its sequence number once applied here.
    /// A lost proposal is re-proposed with the same id (applied once).
    pub async fn submit(
        &self,
        record: RequestRecord,
        timeout: Duration,
    ) -> Result<u64, SequencerError> {
        let id = record.request_id.clone();
        let data = LogRecord {
            body: Some(log_record::Body::Request(record)),
        }
        .encode_to_vec();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(seq) = applied::seq_of(self.store.database(), &id)
                .map_err(|e| SequencerError::Store(StoreError::from(e)))?
            {
                return Ok(seq);
            }
            let (tx, rx) = oneshot::channel();
            self.inputs
                .send(Input::Propose(data.clone(), id.clone(), tx))
                .await
                .map_err(|_| SequencerError::Stopped)?;
            let retry_at = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
            if let Ok(Ok(seq)) = tokio::time::timeout_at(retry_at, rx).await {
                return Ok(seq);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SequencerError::Timeout(id, timeout));
            }
        }
    }
}

struct Loop {
    node: RawNode<Shared>,
    store: Arc<RaftStore>,
    transport: Arc<dyn RaftTransport>,
    waiters: HashMap<String, Vec<oneshot::Sender<u64>>>,
    status: Arc<RwLock<RaftStatus>>,
    config: SequencerConfig,
    changes: watch::Sender<u64>,
}

impl Loop {
    async fn run(&mut self, mut rx: mpsc::Receiver<Input>) -> Result<(), SequencerError> {
        let mut ticker = tokio::time::interval(self.config.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => { self.node.tick(); }
                input = rx.recv() => {
                    let Some(input) = input else { return Ok(()) };
                    self.input(input);
                    // Take what else is queued: one Ready for many inputs.
                    while let Ok(more) = rx.try_recv() {
                        self.input(more);
                    }
                }
            }
            if self.node.has_ready() {
                self.ready()?;
            }
            self.publish();
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Step(m) => {
                if let Err(e) = self.node.step(*m) {
                    debug!("raft step: {e}");
                }
            }
            Input::ProposeOnly(data) => {
                // Dropped without a leader; the caller retries if it cares.
                let _ = self.node.propose(Vec::new(), data);
            }
            Input::Propose(data, id, reply) => {
                // A follower forwards to the leader; without a leader the
                // proposal is dropped and the submitter re-proposes.
                if self.node.propose(Vec::new(), data).is_ok() {
                    self.waiters.entry(id).or_default().push(reply);
                }
            }
        }
    }

    fn ready(&mut self) -> Result<(), SequencerError> {
        let mut ready = self.node.ready();
        if !ready.messages().is_empty() {
            self.transport.send(ready.take_messages());
        }
        if *ready.snapshot() != Snapshot::default() {
            let snapshot = ready.snapshot().clone();
            self.restore(&snapshot)?;
        }
        if !ready.entries().is_empty() {
            self.store.append(ready.entries())?;
        }
        if let Some(hs) = ready.hs() {
            self.store.set_hard_state(hs)?;
        }
        // After the hard state: the commit index on disk must never be
        // below the applied index, or a restart would not come up.
        self.apply(ready.take_committed_entries())?;
        if !ready.persisted_messages().is_empty() {
            self.transport.send(ready.take_persisted_messages());
        }
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.store.set_commit(commit)?;
        }
        self.transport.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.node.advance_apply();
        self.maybe_compact()?;
        Ok(())
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), SequencerError> {
        let index = snapshot.get_metadata().index;
        info!(index, "installing snapshot from the leader");
        let state = AppliedState::decode(snapshot.data.as_slice()).unwrap_or_default();
        self.store.apply_snapshot_with(snapshot, |txn| {
            applied::restore(txn, &state.request_ids, &state.meta)?;
            lifecycle::import(txn, &state.lifecycle)
        })?;
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), SequencerError> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        if self.store.hard_state().commit < last {
            self.store.set_commit(last)?;
        }
        // One durable transaction for the whole committed batch.
        let done = self.store.apply_with(last, |txn| {
            let mut done = Vec::new();
            for e in &entries {
                if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                    continue;
                }
                let Ok(record) = LogRecord::decode(e.data.as_slice()) else {
                    warn!(index = e.index, "undecodable log entry skipped");
                    continue;
                };
                match record.body {
                    Some(log_record::Body::Request(r)) => {
                        let meta = applied::AppliedMeta {
                            kind: r.kind.clone(),
                            at_ms: r.proposed_at_ms,
                        };
                        let a = applied::apply(txn, &r.request_id, &meta)?;
                        done.push((r.request_id, a.seq));
                    }
                    Some(log_record::Body::PartReady(r)) => {
                        lifecycle::part_ready(txn, &r)?;
                    }
                    Some(log_record::Body::Abort(r)) => {
                        lifecycle::abort(txn, &r)?;
                    }
                    Some(log_record::Body::Sweep(r)) => {
                        let meta = applied::AppliedMeta {
                            kind: "sweep".into(),
                            at_ms: r.at_ms,
                        };
                        applied::apply(txn, &format!("sweep-{}", r.at_ms), &meta)?;
                    }
                    None => {}
                }
            }
            Ok(done)
        })?;
        for (id, seq) in done {
            if let Some(waiters) = self.waiters.remove(&id) {
                for w in waiters {
                    let _ = w.send(seq);
                }
            }
        }
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), SequencerError> {
        let applied_index = self.store.applied();
        let first = self.store.first_index()?;
        if applied_index < first + self.config.compact_every {
            return Ok(());
        }
        let ids = applied::all(self.store.database())
            .map_err(|e| SequencerError::Store(StoreError::from(e)))?;
        let (_, digest) = applied::summary(self.store.database())
            .map_err(|e| SequencerError::Store(StoreError::from(e)))?;
        let lifecycle = lifecycle::export(self.store.database())
            .map_err(|e| SequencerError::Store(StoreError::from(e)))?;
        let meta = applied::export_meta(self.store.database())
            .map_err(|e| SequencerError::Store(StoreError::from(e)))?;
        let data = AppliedState {
            meta: meta.into(),
            request_ids: ids,
            digest: digest.to_vec().into(),
            lifecycle: lifecycle.into(),
        }
        .encode_to_vec();
        self.store.compact(applied_index, data)?;
        debug!(applied_index, "log compacted");
        Ok(())
    }

    fn publish(&self) {
        let raft = &self.node.raft;
        let (requests, digest) = applied::summary(self.store.database()).unwrap_or((0, [0u8; 32]));
        let status = RaftStatus {
            id: self.config.id,
            leader: raft.leader_id,
            term: raft.term,
            role: match raft.state {
                StateRole::Leader => "leader",
                StateRole::Follower => "follower",
                StateRole::Candidate => "candidate",
                StateRole::PreCandidate => "pre-candidate",
            },
            commit: raft.raft_log.committed,
            applied: self.store.applied(),
            requests,
            digest: hex::encode(digest),
        };
        let mut current = self.status.write().unwrap_or_else(|p| p.into_inner());
        let changed = current.applied != status.applied
            || current.role != status.role
            || current.leader != status.leader;
        *current = status;
        drop(current);
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }
}
