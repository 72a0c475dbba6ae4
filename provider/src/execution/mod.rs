//! Execution of ordered requests against the secret-shared table.
//!
//! The raft log gives every request a sequence number; the table applies
//! them in that order, in batches. The raft leader's [`Executor`] is the
//! coordinator: whenever requests are applied but not yet executed, it
//! submits one `execute` job for the next run of them (up to
//! `max_batch`), through the orchestration core like every other job.
//! Each peer, in the job's Session, runs [`batch::run`] on the same
//! requests and commits the result — table changes, its answer shares and
//! the batch's public transcript — in one durable transaction, then
//! advances its cursor.
//!
//! Resolutions take a shorter path ([`reads`]): they are not logged, and
//! the coordinator runs them in *read batches* at a cursor it names,
//! several at a time, between write batches.
//!
//! A provider that missed a batch (it crashed after the others committed)
//! fetches the transcripts from a peer and applies them with its own parts
//! ([`batch::replay`]); no SMC is re-run.

pub mod batch;
pub mod reads;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sharecall_proto::control::control_client::ControlClient;
use sharecall_proto::control::TranscriptsRequest;
use sharecall_proto::reads::reads_client::ReadsClient;
use sharecall_proto::reads::{ReadyBatch, ReadyRead as WireReady};
use sharecall_proto::sequencer::{log_record, LogRecord, Sweep};
use tokio::sync::{mpsc, watch, RwLock, Semaphore};
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use self::batch::{Answer, BatchError, Code, Op, Outcome, Request, Transcript};
use self::reads::{Board, Reads, ReadyRead};
use crate::orchestration::{Gateway, TaskKind};
use crate::sequencer::{applied, Sequencer};
use crate::smc::LaneSession;
use crate::tables::part::{Kind, Part};
use crate::tables::{Index, Variant};

/// Executor settings.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// This provider.
    pub me: u8,
    /// The table variant (all three must agree).
    pub variant: Variant,
    /// Most requests per batch.
    pub max_batch: usize,
    /// How often the leader logs an expiry sweep.
    pub sweep_interval: Duration,
    /// Where batch sizes and table size are reported.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Read batches the coordinator runs at once.
    pub read_jobs: usize,
}

/// How long a peer waits for its part of a read the leader started.
const READ_PART_WAIT: Duration = Duration::from_millis(50);

/// How a peer names reads it does not hold (the coordinator drops them).
const NOT_HELD: &str = "reads not held here: ";

/// Parameters of an `execute` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecuteParams {
    /// First sequence number of the batch.
    pub from: u64,
    /// Last sequence number.
    pub to: u64,
    /// The coordinator's table variant (peers refuse another).
    pub variant: String,
    /// A read batch: these resolutions, against the table as it stands
    /// after `from - 1` (then `to` is `from - 1`: no writes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<ReadyRead>,
    /// A read batch's time (decides expiry), from the coordinator's clock.
    #[serde(default)]
    pub at_ms: u64,
}

/// Why a batch was not executed here.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The job's parameters are not valid.
    #[error("bad execute parameters: {0}")]
    Params(String),
    /// This provider already executed past the batch's start.
    #[error("ahead: executed through {0}")]
    Ahead(u64),
    /// This provider could not reach the batch's start.
    #[error("behind: executed through {have}, batch starts at {from}: {why}")]
    Behind {
        /// Executed through.
        have: u64,
        /// Batch start.
        from: u64,
        /// Why catching up failed.
        why: String,
    },
    /// The batch failed.
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// The table and its executor at one provider.
pub struct Executor {
    config: ExecutorConfig,
    sequencer: Sequencer,
    /// Write batches take it exclusively; read batches share it.
    index: RwLock<Index>,
    cursor: watch::Sender<u64>,
    peers: Vec<(u8, ControlClient<Channel>)>,
    read_peers: Vec<(u8, ReadsClient<Channel>)>,
    reads: Reads,
    board: Board,
    outbox: mpsc::UnboundedSender<ReadyRead>,
    outbox_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<ReadyRead>>>,
}

fn store_err(e: impl std::fmt::Display) -> BatchError {
    BatchError::Store(e.to_string())
}

impl Executor {
    /// Loads the table from the sequencer's database. `peers` are the
    /// control channels to the other two providers.
    pub fn open(
        config: ExecutorConfig,
        sequencer: Sequencer,
        peers: Vec<(u8, Channel)>,
    ) -> Result<Arc<Executor>, BatchError> {
        let index = Index::load(sequencer.store().database()).map_err(store_err)?;
        let (cursor, _) = watch::channel(index.cursor);
        info!(
            entries = index.len(),
            cursor = index.cursor,
            variant = %config.variant.name(),
            "table loaded"
        );
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let me = config.me;
        Ok(Arc::new(Executor {
            config,
            sequencer,
            index: RwLock::new(index),
            cursor,
            read_peers: peers
                .iter()
                .map(|(id, ch)| (*id, ReadsClient::new(ch.clone())))
                .collect(),
            peers: peers
                .into_iter()
                .map(|(id, ch)| {
                    (
                        id,
                        ControlClient::new(ch)
                            .max_decoding_message_size(64 << 20)
                            .max_encoding_message_size(64 << 20),
                    )
                })
                .collect(),
            reads: Reads::default(),
            board: Board::new(me),
            outbox,
            outbox_rx: std::sync::Mutex::new(Some(outbox_rx)),
        }))
    }

    fn db(&self) -> &redb::Database {
        self.sequencer.store().database()
    }

    /// Sequence number of the last executed request.
    pub fn cursor(&self) -> u64 {
        *self.cursor.borrow()
    }

    /// Waits until request `seq` has executed here (or `timeout`).
    pub async fn wait_executed(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.cursor.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c >= seq))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// Number of live entries (expired ones included until swept).
    pub async fn entries(&self) -> usize {
        self.index.read().await.len()
    }

    /// The requests `from..=to` as this provider holds them.
    fn load(&self, from: u64, to: u64) -> Result<Vec<Request>, BatchError> {
        let applied = applied::entries(self.db(), from, to).map_err(store_err)?;
        if applied.len() as u64 != to + 1 - from {
            return Err(BatchError::Store(format!(
                "only {} of requests {from}..={to} are applied here",
                applied.len()
            )));
        }
        let mut out = Vec::with_capacity(applied.len());
        for (seq, id, meta) in applied {
            let (kind, at_ms) = meta.map(|m| (m.kind, m.at_ms)).unwrap_or_default();
            let mut account = [0u8; 32];
            let op = if kind == "sweep" {
                Op::Sweep
            } else if kind == Kind::Import.as_str() {
                let (rows, m) = self.import_rows(&id)?;
                hex::decode_to_slice(&m.account, &mut account)
                    .map_err(|_| store_err(format!("request {id}: account is not hex")))?;
                Op::Import(rows)
            } else if let Some(k) = Kind::parse(&kind) {
                let (part, m) = self.part(&id, k)?;
                hex::decode_to_slice(&m.account, &mut account)
                    .map_err(|_| store_err(format!("request {id}: account is not hex")))?;
                Op::Table(k, part)
            } else {
                Op::Skip
            };
            out.push(Request {
                seq,
                id,
                op,
                at_ms,
                account,
            });
        }
        Ok(out)
    }

    #[allow(clippy::type_complexity)]
    fn import_rows(
        &self,
        id: &str,
    ) -> Result<(Vec<(Part, [u8; 32])>, store::RequestMeta), BatchError> {
        let bytes = store::part(self.db(), id)
            .map_err(store_err)?
            .ok_or_else(|| store_err(format!("request {id}: no part stored here")))?;
        let meta = store::request(self.db(), id)
            .map_err(store_err)?
            .ok_or_else(|| store_err(format!("request {id}: no metadata stored here")))?;
        let rows = crate::tables::part::parse_import(&bytes)
            .map_err(|e| store_err(format!("request {id}: {e}")))?;
        Ok((rows, meta))
    }

    /// This provider's part of request `id` (row `sub` of an import).
    fn part_or_row(&self, id: &str, kind: Kind, sub: Option<u32>) -> Result<Part, BatchError> {
        match sub {
            None => self.part(id, kind).map(|(p, _)| p),
            Some(i) => self
                .import_rows(id)?
                .0
                .into_iter()
                .nth(i as usize)
                .map(|(p, _)| p)
                .ok_or_else(|| store_err(format!("request {id} has no row {i}"))),
        }
    }

    fn part(&self, id: &str, kind: Kind) -> Result<(Part, store::RequestMeta), BatchError> {
        let bytes = store::part(self.db(), id)
            .map_err(store_err)?
            .ok_or_else(|| store_err(format!("request {id}: no part stored here")))?;
        let meta = store::request(self.db(), id)
            .map_err(store_err)?
            .ok_or_else(|| store_err(format!("request {id}: no metadata stored here")))?;
        let part =
            Part::parse(kind, &bytes).map_err(|e| store_err(format!("request {id}: {e}")))?;
        Ok((part, meta))
    }

    /// Commits a batch's outcome durably, then to the index.
    fn commit(&self, index: &mut Index, outcome: Outcome) -> Result<String, BatchError> {
        fault_exit_before_commit(&outcome.transcript);
        let txn = self.db().begin_write().map_err(store_err)?;
        index.write(&txn, &outcome.changes).map_err(store_err)?;
        store::record_batch(&txn, &outcome.answers, &outcome.transcript).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        let digest = transcript_digest(&outcome.transcript);
        let to = outcome.changes.cursor;
        let requests = to + 1 - outcome.transcript.from;
        index.commit(outcome.changes);
        self.config
            .metrics
            .batch_executed(requests, index.len(), to);
        self.cursor.send_replace(to);
        Ok(digest)
    }

    /// Commits a replayed batch (no fault injection: the crash it tests
    /// happens on the live path).
    fn commit_replayed(&self, index: &mut Index, outcome: Outcome) -> Result<String, BatchError> {
        let txn = self.db().begin_write().map_err(store_err)?;
        index.write(&txn, &outcome.changes).map_err(store_err)?;
        store::record_batch(&txn, &outcome.answers, &outcome.transcript).map_err(store_err)?;
        txn.commit().map_err(store_err)?;
        let digest = transcript_digest(&outcome.transcript);
        let to = outcome.changes.cursor;
        index.commit(outcome.changes);
        self.config.metrics.batch_executed(0, index.len(), to);
        self.cursor.send_replace(to);
        Ok(digest)
    }

    /// The table's public state: variant, cursor, entry count and a digest
    /// over everything the three providers must agree on (slots, expiry,
    /// owners, tags, tree order; never shares).
    pub async fn summary(&self) -> TableSummary {
        let index = self.index.read().await;
        let mut h = blake3::Hasher::new_derive_key("sharecall 2026 table state v1");
        h.update(&index.cursor.to_le_bytes());
        for (slot, m) in &index.meta {
            h.update(&slot.to_le_bytes());
            h.update(&m.expires_at_ms.to_le_bytes());
            h.update(&m.owner);
            h.update(&m.tag.to_le_bytes());
        }
        for slot in &index.order {
            h.update(&slot.to_le_bytes());
        }
        TableSummary {
            variant: self.config.variant.name(),
            cursor: index.cursor,
            entries: index.len(),
            digest: h.finalize().to_hex().to_string(),
        }
    }

    /// The peer side of an `execute` job: run the batch on `session` and
    /// commit it. Returns the transcript digest (the gateway checks that
    /// all three agree).
    pub async fn execute(
        &self,
        gateway: u32,
        params: &[u8],
        session: &mut LaneSession,
    ) -> Result<Vec<u8>, ExecuteError> {
        let p: ExecuteParams =
            serde_json::from_slice(params).map_err(|e| ExecuteError::Params(e.to_string()))?;
        if p.variant != self.config.variant.name() {
            return Err(ExecuteError::Params(format!(
                "the coordinator's table is {:?}, this provider's is {:?}",
                p.variant,
                self.config.variant.name()
            )));
        }
        if !p.reads.is_empty() {
            return self.execute_reads(gateway, &p, session).await;
        }
        if p.to < p.from || p.to - p.from >= self.config.max_batch.max(1) as u64 * 4 {
            return Err(ExecuteError::Params(format!(
                "bad range {}..={}",
                p.from, p.to
            )));
        }
        let mut index = self.index.write().await;
        if index.cursor >= p.from {
            return Err(ExecuteError::Ahead(index.cursor));
        }
        if index.cursor + 1 < p.from {
            if let Err(e) = self
                .catch_up_locked(&mut index, gateway as u8, p.from - 1)
                .await
            {
                return Err(ExecuteError::Behind {
                    have: index.cursor,
                    from: p.from,
                    why: e.to_string(),
                });
            }
        }
        // The log may reach this provider a moment after the coordinator.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut changes = self.sequencer.changes();
        while self.sequencer.status().requests < p.to {
            let woke = tokio::time::timeout_at(deadline, changes.changed()).await;
            if !matches!(woke, Ok(Ok(()))) {
                return Err(ExecuteError::Behind {
                    have: index.cursor,
                    from: p.from,
                    why: format!("request {} is not applied here yet", p.to),
                });
            }
        }
        let requests = self.load(p.from, p.to)?;
        let outcome =
            batch::run(&self.config.variant, &index, self.db(), session, &requests).await?;
        let digest = self.commit(&mut index, outcome)?;
        debug!(from = p.from, to = p.to, "batch executed");
        Ok(digest.into_bytes())
    }

    /// Applies peers' transcripts until this provider has executed
    /// `through` (or as far as `peer` has).
    async fn catch_up_locked(
        &self,
        index: &mut Index,
        peer: u8,
        through: u64,
    ) -> Result<(), BatchError> {
        let Some((_, client)) = self.peers.iter().find(|(id, _)| *id == peer) else {
            return Err(BatchError::Replay(format!("provider {peer} is not a peer")));
        };
        while index.cursor < through {
            let reply = client
                .clone()
                .transcripts(TranscriptsRequest {
                    from: index.cursor + 1,
                    limit: 64,
                })
                .await
                .map_err(|e| BatchError::Replay(format!("provider {peer}: {}", e.message())))?
                .into_inner();
            if reply.transcripts.is_empty() {
                return Err(BatchError::Replay(format!(
                    "provider {peer} has no transcript from {}",
                    index.cursor + 1
                )));
            }
            for bytes in reply.transcripts {
                let t: Transcript = serde_json::from_slice(&bytes)
                    .map_err(|e| BatchError::Replay(format!("transcript: {e}")))?;
                if t.from != index.cursor + 1 {
                    return Err(BatchError::Replay(format!(
                        "provider {peer} sent the batch from {}, expected {}",
                        t.from,
                        index.cursor + 1
                    )));
                }
                let outcome = batch::replay(&self.config.variant, index, &t, |id, kind, sub| {
                    self.part_or_row(id, kind, sub)
                })?;
                self.commit_replayed(index, outcome)?;
                info!(
                    from = t.from,
                    to = t.to,
                    peer,
                    "caught up from a transcript"
                );
            }
        }
        Ok(())
    }

    /// Catches up from `peer` as far as it has executed.
    pub async fn catch_up(&self, peer: u8, through: u64) -> Result<(), BatchError> {
        let mut index = self.index.write().await;
        self.catch_up_locked(&mut index, peer, through).await
    }

    /// This provider's transcripts from `from` (for a peer catching up).
    pub fn transcripts(&self, from: u64, limit: usize) -> Result<Vec<Vec<u8>>, BatchError> {
        store::transcripts(self.db(), from, limit.clamp(1, 256))
            .map_err(store_err)?
            .iter()
            .map(|t| serde_json::to_vec(t).map_err(store_err))
            .collect()
    }

    /// The table variant this provider runs.
    pub fn variant(&self) -> Variant {
        self.config.variant.clone()
    }

    /// The reads held here (the public API submits resolutions to it).
    pub fn reads(&self) -> &Reads {
        &self.reads
    }

    /// Tells the coordinator that this provider holds read `id` of the
    /// signed request `signed`: at once if this provider leads (its own
    /// part starts the read), otherwise only if the read is still
    /// unanswered after [`reads::STRAGGLER_DELAY`].
    pub fn announce(&self, id: &str, signed: &str) {
        if self.sequencer.status().role == "leader" {
            self.board.mark(self.config.me, id, signed);
        }
        let _ = self.outbox.send(ReadyRead {
            id: id.to_string(),
            signed: signed.to_string(),
        });
    }

    /// Marks reads that `provider` reports holding (the `Reads.Ready`
    /// RPC); returns whether this provider leads.
    pub fn peer_ready(&self, provider: u8, reads: &[WireReady]) -> bool {
        if self.sequencer.status().role != "leader" {
            debug!(provider, "read report, but not leading");
            return false;
        }
        for r in reads {
            self.board.mark(provider, &r.request_id, &r.signed);
        }
        true
    }

    /// Reports reads this provider holds that are still unanswered after
    /// [`reads::STRAGGLER_DELAY`] to the leader (batched); a new leader
    /// hears of every read still held.
    async fn report_ready(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let Some(mut rx) = self
            .outbox_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let mut changes = self.sequencer.changes();
        let mut waiting: std::collections::VecDeque<(tokio::time::Instant, ReadyRead)> =
            std::collections::VecDeque::new();
        let mut queue: Vec<ReadyRead> = Vec::new();
        let mut last_leader = 0;
        loop {
            let due = waiting.front().map(|(t, _)| *t);
            tokio::select! {
                _ = stop.cancelled() => return,
                r = rx.recv() => match r {
                    Some(r) => waiting.push_back(
                        (tokio::time::Instant::now() + reads::STRAGGLER_DELAY, r),
                    ),
                    None => return,
                },
                _ = changes.changed() => {}
                _ = async {
                    match due {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            while let Ok(r) = rx.try_recv() {
                waiting.push_back((tokio::time::Instant::now() + reads::STRAGGLER_DELAY, r));
            }
            let now = tokio::time::Instant::now();
            while waiting.front().is_some_and(|(t, _)| *t <= now) {
                if let Some((_, r)) = waiting.pop_front() {
                    queue.push(r);
                }
            }
            let status = self.sequencer.status();
            if status.leader != last_leader && status.leader != 0 {
                last_leader = status.leader;
                for r in self.reads.unfinished() {
                    if !queue.contains(&r) {
                        queue.push(r);
                    }
                }
            }
            // Answered meanwhile (the usual case): nothing to report.
            queue.retain(|r| self.reads.part(&r.id).is_some());
            if queue.is_empty() {
                continue;
            }
            debug!(
                leader = status.leader,
                reads = queue.len(),
                "reporting held reads"
            );
            match status.leader.checked_sub(1).map(|l| l as u8) {
                Some(l) if l == self.config.me => {
                    for r in queue.drain(..) {
                        self.board.mark(l, &r.id, &r.signed);
                    }
                }
                Some(l) => {
                    let client = self
                        .read_peers
                        .iter()
                        .find(|(id, _)| *id == l)
                        .map(|(_, c)| c.clone());
                    if let Some(mut client) = client {
                        let wire = ReadyBatch {
                            reads: queue
                                .iter()
                                .map(|r| WireReady {
                                    request_id: r.id.clone(),
                                    signed: r.signed.clone(),
                                })
                                .collect(),
                        };
                        if let Ok(ack) = client.ready(wire).await {
                            if ack.into_inner().leader {
                                queue.clear();
                            }
                        }
                    }
                }
                None => {}
            }
            if !queue.is_empty() {
                // No leader, or it did not take the report: again soon.
                waiting.extend(
                    queue
                        .drain(..)
                        .map(|r| (tokio::time::Instant::now() + Duration::from_millis(50), r)),
                );
            }
        }
    }

    /// The peer side of a read batch: stand at the coordinator's cursor,
    /// run the resolutions, hand the answers to the waiting API calls.
    async fn execute_reads(
        &self,
        gateway: u32,
        p: &ExecuteParams,
        session: &mut LaneSession,
    ) -> Result<Vec<u8>, ExecuteError> {
        if p.from == 0 || p.to + 1 != p.from {
            return Err(ExecuteError::Params(format!(
                "a read batch writes nothing: bad range {}..={}",
                p.from, p.to
            )));
        }
        if p.reads.len() > self.config.max_batch.max(1) * 4 {
            return Err(ExecuteError::Params(format!(
                "{} reads in one batch",
                p.reads.len()
            )));
        }
        let skew = crate::orchestration::task::now_ms().abs_diff(p.at_ms);
        if skew > 60_000 {
            return Err(ExecuteError::Params(format!(
                "read batch time is {skew} ms away from this provider's clock"
            )));
        }
        let at = p.from - 1;
        let behind = {
            let index = self.index.read().await;
            if index.cursor > at {
                return Err(ExecuteError::Ahead(index.cursor));
            }
            index.cursor < at
        };
        if behind {
            let mut index = self.index.write().await;
            if index.cursor < at {
                if let Err(e) = self.catch_up_locked(&mut index, gateway as u8, at).await {
                    return Err(ExecuteError::Behind {
                        have: index.cursor,
                        from: p.from,
                        why: e.to_string(),
                    });
                }
            }
        }
        let index = self.index.read().await;
        if index.cursor != at {
            return Err(ExecuteError::Ahead(index.cursor));
        }
        let mut requests = Vec::with_capacity(p.reads.len());
        let mut missing = Vec::new();
        // The leader starts a read on its own part: ours may be a moment
        // behind. One wait for the whole batch, not one per read.
        let deadline = tokio::time::Instant::now() + READ_PART_WAIT;
        for (i, r) in p.reads.iter().enumerate() {
            match self.reads.wait_part(&r.id, deadline).await {
                Some(read) if read.signed == r.signed => requests.push(Request {
                    seq: at + 1 + i as u64,
                    id: r.id.clone(),
                    op: Op::Table(Kind::Resolve, read.part),
                    at_ms: p.at_ms,
                    account: read.account,
                }),
                _ => missing.push(r.id.as_str()),
            }
        }
        if !missing.is_empty() {
            // The coordinator retries the batch without these.
            return Err(ExecuteError::Params(format!(
                "{NOT_HELD}{}",
                missing.join(",")
            )));
        }
        let results: Vec<(String, Answer)> =
            if self.config.variant.table().reads_find_nothing(&index) {
                // Nothing was ever registered: nothing to find, no SMC.
                requests
                    .iter()
                    .map(|r| (r.id.clone(), Answer::code(Code::NotFound)))
                    .collect()
            } else {
                let outcome =
                    batch::run(&self.config.variant, &index, self.db(), session, &requests).await?;
                if !outcome.changes.ops.is_empty() || outcome.changes.prf_key.is_some() {
                    return Err(ExecuteError::Params(
                        "a read batch would change the table".into(),
                    ));
                }
                outcome.answers
            };
        drop(index);
        let mut digest = blake3::Hasher::new_derive_key("sharecall 2026 read batch v1");
        digest.update(&at.to_le_bytes());
        for (id, a) in &results {
            digest.update(id.as_bytes());
            digest.update(a.code.as_str().as_bytes());
            digest.update(&a.expires_at_ms.unwrap_or(0).to_le_bytes());
        }
        self.config.metrics.reads_executed(results.len() as u64);
        for (id, a) in results {
            self.reads.finish(&id, Ok(a));
        }
        debug!(at, reads = p.reads.len(), "read batch executed");
        Ok(digest.finalize().to_hex().to_string().into_bytes())
    }

    /// The coordinator loop: while this provider leads, execute whatever
    /// is applied but not executed, run ready reads (several read batches
    /// at once, never beside a write batch), and log expiry sweeps.
    pub async fn coordinate(
        self: Arc<Self>,
        gateway: Arc<Gateway>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        tokio::spawn(self.clone().report_ready(stop.clone()));
        let mut changes = self.sequencer.changes();
        // Read batches hold it shared, write batches exclusively: a read
        // batch names the cursor it runs at, which must not move under it.
        let gate = Arc::new(RwLock::new(()));
        let read_slots = Arc::new(Semaphore::new(self.config.read_jobs.max(1)));
        let mut last_sweep = tokio::time::Instant::now();
        let mut was_leader = false;
        let mut backoff = Duration::ZERO;
        loop {
            if !backoff.is_zero() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = Duration::ZERO;
            }
            changes.borrow_and_update();
            let status = self.sequencer.status();
            if status.role != "leader" {
                if was_leader {
                    self.board.clear();
                    was_leader = false;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            was_leader = true;
            if last_sweep.elapsed() >= self.config.sweep_interval {
                last_sweep = tokio::time::Instant::now();
                let record = LogRecord {
                    body: Some(log_record::Body::Sweep(Sweep {
                        at_ms: crate::orchestration::task::now_ms(),
                    })),
                };
                let _ = self.sequencer.propose(record).await;
            }
            let cursor = self.cursor();
            if status.requests > cursor {
                let _exclusive = gate.clone().write_owned().await;
                if !self.run_writes(&gateway, status.requests).await {
                    backoff = Duration::from_millis(200);
                }
                continue;
            }
            if self.board.has_ready() {
                let permit = tokio::select! {
                    _ = stop.cancelled() => return,
                    p = read_slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                };
                let shared = gate.clone().read_owned().await;
                // Leave some for the other free slots, so concurrent read
                // batches share the queue instead of one taking it all.
                let share = self
                    .board
                    .ready_len()
                    .div_ceil(read_slots.available_permits() + 1);
                let reads = self
                    .board
                    .take(share.clamp(1, self.config.max_batch.max(1)));
                if reads.is_empty() {
                    continue;
                }
                let this = self.clone();
                let gateway = gateway.clone();
                // The cursor cannot move while `shared` is held.
                let at = self.cursor();
                tokio::spawn(async move {
                    this.run_reads(&gateway, at, reads).await;
                    drop(shared);
                    drop(permit);
                });
                continue;
            }
            let next_sweep = last_sweep + self.config.sweep_interval;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = changes.changed() => {}
                _ = self.board.notify.notified() => {}
                _ = tokio::time::sleep_until(next_sweep) => {}
            }
        }
    }

    /// Runs one write batch from the cursor (up to `max_batch` requests);
    /// returns whether it succeeded.
    async fn run_writes(&self, gateway: &Gateway, applied: u64) -> bool {
        let cursor = self.cursor();
        let from = cursor + 1;
        let to = applied.min(cursor + self.config.max_batch.max(1) as u64);
        let params = ExecuteParams {
            from,
            to,
            variant: self.config.variant.name(),
            reads: Vec::new(),
            at_ms: 0,
        };
        let Ok(params) = serde_json::to_vec(&params) else {
            return false;
        };
        match gateway
            .run(
                TaskKind::Execute,
                &params,
                &format!("execute {from}..={to}"),
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                warn!(from, to, "execute job failed: {e}");
                self.catch_up_after_failure().await;
                false
            }
        }
    }

    /// After a failed job: peers that committed batches this coordinator
    /// did not (it crashed before its commit) would refuse every batch
    /// from here as "ahead", and which peer's error the gateway reports
    /// varies; so ask each peer for transcripts past our cursor.
    async fn catch_up_after_failure(&self) {
        for (peer, _) in &self.peers {
            if let Err(e) = self.catch_up(*peer, u64::MAX).await {
                debug!("catch-up from provider {peer}: {e}");
            }
        }
    }

    /// Runs one read batch at cursor `at`; failed reads are queued again
    /// (a few times) for the next batch.
    async fn run_reads(&self, gateway: &Gateway, at: u64, reads: Vec<ReadyRead>) {
        let purpose = format!("resolve {} at {at}", reads.len());
        let params = ExecuteParams {
            from: at + 1,
            to: at,
            variant: self.config.variant.name(),
            reads,
            at_ms: crate::orchestration::task::now_ms(),
        };
        let Ok(bytes) = serde_json::to_vec(&params) else {
            return;
        };
        let reads = params.reads;
        if let Err(e) = gateway.run(TaskKind::Execute, &bytes, &purpose).await {
            warn!(at, reads = reads.len(), "read batch failed: {e}");
            self.catch_up_after_failure().await;
            // Reads a peer does not hold (finished or expired there) would
            // fail every batch they are in.
            let gone: Vec<&str> = e
                .detail
                .split_once(NOT_HELD)
                .map(|(_, ids)| ids.split([',', ' ']).collect())
                .unwrap_or_default();
            self.board.retry(reads, &gone);
        }
    }
}

/// The table's public state, for operators and consistency checks.
#[derive(Debug, Clone, Serialize)]
pub struct TableSummary {
    /// Table variant.
    pub variant: String,
    /// Last executed sequence number.
    pub cursor: u64,
    /// Entries (expired ones until swept).
    pub entries: usize,
    /// Digest of the public state (equal at all three providers).
    pub digest: String,
}

/// Fault injection for crash tests: with `SHARECALL_FAULT_EXIT_BEFORE_COMMIT`
/// set to a sequence number, the process exits just before committing the
/// live batch that contains it, as a crash at the worst moment would.
fn fault_exit_before_commit(t: &Transcript) {
    let Ok(v) = std::env::var("SHARECALL_FAULT_EXIT_BEFORE_COMMIT") else {
        return;
    };
    if let Ok(seq) = v.parse::<u64>() {
        if (t.from..=t.to).contains(&seq) {
            warn!(seq, "fault injection: exiting before commit");
            std::process::exit(86);
        }
    }
}

/// A short digest of a transcript, compared across the three providers.
pub fn transcript_digest(t: &Transcript) -> String {
    let bytes = serde_json::to_vec(t).unwrap_or_default();
    blake3::hash(&bytes).to_hex().to_string()
}
