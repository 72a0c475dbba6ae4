//! Execution of ordered requests against the secret-shared table.
//!
//! The raft log gives every request a sequence number; the table applies
//! them in that order, in batches. The raft leader's [`Executor`] is the
//! coordinator ([`coordinator`]): whenever requests are applied but not
//! yet executed, it submits one `execute` job for the next run of them (up
//! to `max_batch`), through the orchestration core like every other job.
//! Each peer, in the job's Session, runs [`batch::run`] on the same
//! requests and commits the result — table changes, its answer shares and
//! the batch's public transcript — in one durable transaction, then
//! advances its cursor ([`execute`]: the `execute` task kind, which this
//! layer registers with the orchestration core).
//!
//! Resolutions take a shorter path ([`reads`], [`readiness`]): they are not
//! logged, and the coordinator runs them in *read batches* at a cursor it
//! names, several at a time, between write batches.
//!
//! A provider that missed a batch (it crashed after the others committed)
//! fetches the transcripts from a peer and applies them with its own parts
//! ([`catch_up`], [`batch::replay`]); no SMC is re-run.

pub mod batch;
pub mod catch_up;
pub mod coordinator;
pub mod execute;
pub mod fault;
pub mod log_time;
pub mod readiness;
pub mod reads;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sharecall_proto::reads::reads_client::ReadsClient;
use sharecall_proto::transcripts::transcripts_client::TranscriptsClient;
use tokio::sync::{mpsc, watch, RwLock};
use tonic::transport::Channel;
use tracing::info;

use self::batch::{BatchError, Held, Op, Outcome, Request, Transcript};
pub use self::catch_up::TranscriptsService;
pub use self::execute::{Execute, ExecuteError, ExecuteParams, EXECUTE};
use self::reads::{Board, Reads, ReadyRead};
use crate::sequencer::{applied, Sequencer};
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
    /// How far a write batch's log times may be from this provider's
    /// clock (and below the log's time) before it refuses the batch
    /// ([`log_time`]).
    pub max_log_skew: Duration,
    /// The share log (`[log]`).
    pub log: crate::sharelog::Settings,
}

/// The table and its executor at one provider.
pub struct Executor {
    config: ExecutorConfig,
    sequencer: Sequencer,
    /// Write batches take it exclusively; read batches share it.
    index: RwLock<Index>,
    cursor: watch::Sender<u64>,
    peers: Vec<(u8, TranscriptsClient<Channel>)>,
    read_peers: Vec<(u8, ReadsClient<Channel>)>,
    reads: Reads,
    board: Board,
    outbox: mpsc::UnboundedSender<ReadyRead>,
    outbox_rx: std::sync::Mutex<Option<mpsc::UnboundedReceiver<ReadyRead>>>,
    /// Why the last catch-up was refused (cleared by one that succeeds).
    catch_up_refused: std::sync::Mutex<Option<String>>,
    /// Read batches executed here, waiting for a seal (share log).
    pending: crate::sharelog::order::PendingReads,
    /// The coordinator's finished read batches, to be sealed.
    seals: crate::sharelog::order::SealQueue,
    /// The last read-batch id this coordinator gave out.
    last_log_batch: std::sync::Mutex<u64>,
}

fn store_err(e: impl std::fmt::Display) -> BatchError {
    BatchError::Store(e.to_string())
}

impl Executor {
    /// Loads the table from the sequencer's database. `peers` are the
    /// control channels to the other two providers (their `Reads` and
    /// `Transcripts` services).
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
                        TranscriptsClient::new(ch)
                            .max_decoding_message_size(64 << 20)
                            .max_encoding_message_size(64 << 20),
                    )
                })
                .collect(),
            reads: Reads::default(),
            board: Board::new(me),
            outbox,
            outbox_rx: std::sync::Mutex::new(Some(outbox_rx)),
            catch_up_refused: std::sync::Mutex::new(None),
            pending: Default::default(),
            seals: Default::default(),
            last_log_batch: std::sync::Mutex::new(0),
        }))
    }

    fn db(&self) -> &redb::Database {
        self.sequencer.store().database()
    }

    /// The database holding the share log (`crate::sharelog::store`).
    pub fn share_log_db(&self) -> &redb::Database {
        self.db()
    }

    /// The share log's settings.
    pub fn share_log_settings(&self) -> crate::sharelog::Settings {
        self.config.log
    }

    /// Read batches executed here and not yet sealed into the share log.
    pub fn unsealed_reads(&self) -> usize {
        self.pending.len()
    }

    /// A new read-batch id: microseconds since the epoch, strictly
    /// increasing here, so ids stay increasing across restarts and
    /// leaders without coordination.
    fn next_log_batch(&self) -> u64 {
        let mut last = self
            .last_log_batch
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = sharecall_proto::clock::now_ms().saturating_mul(1000);
        *last = now.max(*last + 1);
        *last
    }

    /// The share-log records of a committed batch, appended in `txn`: the
    /// read batches it seals (in the seal's order), markers for lost ones,
    /// its own records, and a purge when it holds a sweep.
    fn log_batch(
        &self,
        txn: &redb::WriteTransaction,
        outcome: &Outcome,
        requests: &[Request],
    ) -> Result<(), BatchError> {
        if !self.config.log.enabled {
            return Ok(());
        }
        let t = &outcome.transcript;
        let mut records = self.pending.sealed(&t.sealed);
        let held: std::collections::HashSet<u64> = records.iter().map(|r| r.batch).collect();
        for s in &t.sealed {
            if !held.contains(&s.batch) {
                // Only after a crash between agreement and commit: this
                // provider's chain then differs and the check shows it.
                tracing::warn!(batch = s.batch, "a sealed read batch is not held here");
                records.push(crate::sharelog::build::lost_record(
                    s.batch,
                    t.from.saturating_sub(1),
                    t.log_time_ms,
                ));
            }
        }
        for b in &t.lost {
            records.push(crate::sharelog::build::lost_record(
                *b,
                t.from.saturating_sub(1),
                t.log_time_ms,
            ));
        }
        records.extend(crate::sharelog::build::write_records(
            requests,
            t,
            |id, kind| {
                let k = Kind::parse(kind)?;
                self.part(id, k).ok().map(|(p, _)| p)
            },
        ));
        crate::sharelog::store::append(txn, &mut records).map_err(store_err)?;
        let sweep = requests
            .iter()
            .filter(|r| matches!(r.op, Op::Sweep))
            .map(|r| r.at_ms)
            .max();
        if let Some(at_ms) = sweep {
            let cut = crate::sharelog::purge::cut(at_ms, self.config.log.retention);
            if let Some(p) = crate::sharelog::purge::purge(txn, at_ms, cut).map_err(store_err)? {
                info!(through = p.aux, removed = p.cursor, "share log purged");
                crate::sharelog::store::append(txn, &mut [p]).map_err(store_err)?;
            }
        }
        Ok(())
    }

    /// After a commit: read batches at cursors before this batch can no
    /// longer be sealed.
    fn forget_pending(&self, t: &Transcript) {
        let dropped = self.pending.drop_before(t.to, &t.sealed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "unsealed read batches dropped from the share log (their coordinator stopped leading)"
            );
        }
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

    /// The log records `from..=to` (sequence number, kind, raw log time).
    fn records(&self, from: u64, to: u64) -> Result<Vec<(u64, applied::AppliedMeta)>, BatchError> {
        let applied = applied::entries(self.db(), from, to).map_err(store_err)?;
        if applied.len() as u64 != to + 1 - from {
            return Err(BatchError::Store(format!(
                "only {} of requests {from}..={to} are applied here",
                applied.len()
            )));
        }
        Ok(applied
            .into_iter()
            .map(|(seq, _, m)| {
                let m = m.unwrap_or(applied::AppliedMeta {
                    kind: String::new(),
                    at_ms: 0,
                });
                (seq, m)
            })
            .collect())
    }

    /// The log time after the last committed batch.
    fn log_time(&self) -> Result<u64, BatchError> {
        store::log_time(self.db()).map_err(store_err)
    }

    /// Effective log times of `from..=to` with `skip` left out, and the
    /// log time after them.
    fn effective_times(
        &self,
        from: u64,
        to: u64,
        skip: &[u64],
    ) -> Result<(std::collections::BTreeMap<u64, u64>, u64), BatchError> {
        let records = self.records(from, to)?;
        Ok(log_time::effective(&records, self.log_time()?, skip))
    }

    /// This provider's verdict on the log times of `from..=to` now.
    fn judge_times(&self, from: u64, to: u64) -> Result<log_time::Verdict, BatchError> {
        let records = self.records(from, to)?;
        Ok(log_time::judge(
            &records,
            self.log_time()?,
            sharecall_proto::clock::now_ms(),
            self.config.max_log_skew.as_millis() as u64,
        ))
    }

    /// The requests `from..=to` as this provider holds them, at their
    /// effective log times; the records in `skip` are refused.
    fn load(&self, from: u64, to: u64, skip: &[u64]) -> Result<Vec<Request>, BatchError> {
        let applied = applied::entries(self.db(), from, to).map_err(store_err)?;
        if applied.len() as u64 != to + 1 - from {
            return Err(BatchError::Store(format!(
                "only {} of requests {from}..={to} are applied here",
                applied.len()
            )));
        }
        let (times, _) = self.effective_times(from, to, skip)?;
        let mut out = Vec::with_capacity(applied.len());
        for (seq, id, meta) in applied {
            let (kind, raw_ms) = meta.map(|m| (m.kind, m.at_ms)).unwrap_or_default();
            let at_ms = times.get(&seq).copied().unwrap_or(raw_ms);
            let mut account = [0u8; 32];
            let op = if skip.contains(&seq) {
                // The share log names who sent a refused request too.
                if let Ok(Some(m)) = store::request(self.db(), &id) {
                    let _ = hex::decode_to_slice(&m.account, &mut account);
                }
                Op::Refused(kind)
            } else if kind == "sweep" {
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
        let rows = crate::tables::part::parse_stored_import(&bytes)
            .map_err(|e| store_err(format!("request {id}: {e}")))?;
        Ok((rows, meta))
    }

    /// What this provider holds of request `id` (row `sub` of an
    /// import): its part, the owner it verified, its sequence number.
    fn held(&self, id: &str, kind: Kind, sub: Option<u32>) -> Result<Held, BatchError> {
        let seq = applied::seq_of(self.db(), id)
            .map_err(store_err)?
            .ok_or_else(|| BatchError::Replay(format!("request {id} is not in this log")))?;
        let (part, owner, meta) = match sub {
            None => {
                let (part, m) = self.part(id, kind)?;
                let mut owner = [0u8; 32];
                hex::decode_to_slice(&m.account, &mut owner)
                    .map_err(|_| store_err(format!("request {id}: account is not hex")))?;
                (part, owner, m)
            }
            Some(i) => {
                let (rows, m) = self.import_rows(id)?;
                let (part, owner) = rows
                    .into_iter()
                    .nth(i as usize)
                    .ok_or_else(|| BatchError::Replay(format!("request {id} has no row {i}")))?;
                (part, owner, m)
            }
        };
        Ok(Held {
            part,
            kind: meta.kind,
            owner,
            seq,
        })
    }

    fn part(&self, id: &str, kind: Kind) -> Result<(Part, store::RequestMeta), BatchError> {
        let bytes = store::part(self.db(), id)
            .map_err(store_err)?
            .ok_or_else(|| store_err(format!("request {id}: no part stored here")))?;
        let meta = store::request(self.db(), id)
            .map_err(store_err)?
            .ok_or_else(|| store_err(format!("request {id}: no metadata stored here")))?;
        let part = Part::parse_stored(kind, &bytes)
            .map_err(|e| store_err(format!("request {id}: {e}")))?;
        Ok((part, meta))
    }

    /// Commits a batch's outcome (and its share-log records) durably,
    /// then to the index.
    fn commit(
        &self,
        index: &mut Index,
        outcome: Outcome,
        requests: &[Request],
    ) -> Result<String, BatchError> {
        let txn = self.db().begin_write().map_err(store_err)?;
        index.write(&txn, &outcome.changes).map_err(store_err)?;
        store::record_batch(&txn, &outcome.answers, &outcome.transcript).map_err(store_err)?;
        self.log_batch(&txn, &outcome, requests)?;
        txn.commit().map_err(store_err)?;
        self.forget_pending(&outcome.transcript);
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
    fn commit_replayed(
        &self,
        index: &mut Index,
        outcome: Outcome,
        requests: &[Request],
    ) -> Result<String, BatchError> {
        let txn = self.db().begin_write().map_err(store_err)?;
        index.write(&txn, &outcome.changes).map_err(store_err)?;
        store::record_batch(&txn, &outcome.answers, &outcome.transcript).map_err(store_err)?;
        self.log_batch(&txn, &outcome, requests)?;
        txn.commit().map_err(store_err)?;
        self.forget_pending(&outcome.transcript);
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
            catch_up_refused: self
                .catch_up_refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// The table variant this provider runs.
    pub fn variant(&self) -> Variant {
        self.config.variant.clone()
    }

    /// The reads held here (the public API submits resolutions to it).
    pub fn reads(&self) -> &Reads {
        &self.reads
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
    /// Why this provider's last catch-up was refused (a peer's transcript
    /// did not match the other peer's or its own records), if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up_refused: Option<String>,
}

/// A short digest of a transcript, compared across the three providers.
pub fn transcript_digest(t: &Transcript) -> String {
    hex::encode(transcript_digest_bytes(t))
}

/// The transcript digest as bytes (what the pre-commit agreement sends).
pub fn transcript_digest_bytes(t: &Transcript) -> [u8; 32] {
    let bytes = serde_json::to_vec(t).unwrap_or_default();
    *blake3::hash(&bytes).as_bytes()
}
