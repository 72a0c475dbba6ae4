//! The coordinator: while this provider leads the raft group, it turns
//! applied requests into `execute` jobs (write batches), runs ready
//! resolutions in read batches between them, and logs expiry sweeps.

use std::sync::Arc;
use std::time::Duration;

use sharecall_proto::sequencer::{log_record, LogRecord, Sweep};
use tokio::sync::{RwLock, Semaphore};
use tracing::warn;

use super::execute::{ExecuteParams, ReadOutput, EXECUTE, NOT_HELD};
use super::reads::ReadyRead;
use super::Executor;
use crate::orchestration::Gateway;
use crate::sharelog::order::parse_not_sealed;

impl Executor {
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
        // When this coordinator last logged a sweep to seal reads (the
        // proposal returns before it is applied: one per seal interval).
        let mut last_seal_sweep: Option<tokio::time::Instant> = None;
        let mut was_leader = false;
        let mut backoff = Duration::ZERO;
        // Consecutive failed write batches: the pause after each grows, so
        // a batch every provider refuses does not spin the coordinator.
        let mut failures = 0u32;
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
                    self.seals.clear();
                    was_leader = false;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            if !was_leader && self.config.log.enabled && status.requests == self.cursor() {
                // Read batches the previous leader ran here and did not
                // seal: seal them too (a peer that lacks one refuses, and
                // it is logged lost at all three instead). Only when this
                // provider has executed all it applied: a provider that is
                // behind holds batches the others sealed already.
                for (batch, digest) in self.pending.held_at(self.cursor()) {
                    self.seals.finished(batch, hex::encode(digest));
                }
            }
            was_leader = true;
            // Finished read batches wait for a write batch to seal them
            // into the share log; with no writes coming, a sweep is one.
            let seal_due = self.config.log.enabled
                && status.requests == self.cursor()
                && self
                    .seals
                    .oldest()
                    .is_some_and(|t| t.elapsed() >= self.config.log.seal_interval)
                && last_seal_sweep.is_none_or(|t| t.elapsed() >= self.config.log.seal_interval);
            if seal_due || last_sweep.elapsed() >= self.config.sweep_interval {
                last_sweep = tokio::time::Instant::now();
                if seal_due {
                    last_seal_sweep = Some(last_sweep);
                }
                let record = LogRecord {
                    body: Some(log_record::Body::Sweep(Sweep {
                        at_ms: super::fault::proposed_time(sharecall_proto::clock::now_ms()),
                    })),
                };
                let _ = self.sequencer.propose(record).await;
            }
            let cursor = self.cursor();
            if status.requests > cursor {
                let _exclusive = gate.clone().write_owned().await;
                if self.run_writes(&gateway, status.requests).await {
                    failures = 0;
                } else {
                    failures = failures.saturating_add(1);
                    backoff = Duration::from_millis(200)
                        .saturating_mul(1 << failures.min(5))
                        .min(Duration::from_secs(5));
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
            let mut next_sweep = last_sweep + self.config.sweep_interval;
            if self.config.log.enabled {
                if let Some(t) = self.seals.oldest() {
                    let mut due = tokio::time::Instant::from_std(t + self.config.log.seal_interval);
                    if let Some(l) = last_seal_sweep {
                        due = due.max(l + self.config.log.seal_interval);
                    }
                    next_sweep = next_sweep.min(due);
                }
            }
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
        // Records whose log time is out of bounds here are named in the
        // job: every peer that judges them alike refuses just those.
        let skip = match self.judge_times(from, to) {
            Ok(v) => {
                if !v.out_of_bounds.is_empty() {
                    warn!(from, to, "skipping records: {}", v.why.join("; "));
                }
                v.out_of_bounds
            }
            Err(e) => {
                warn!(from, to, "cannot judge log times: {e}");
                return false;
            }
        };
        // Every read batch at this cursor has finished (the gate is held
        // exclusively): seal them into the share log with this batch.
        let (seal, lost) = self.seals.take();
        let params = ExecuteParams {
            from,
            to,
            variant: self.config.variant.name(),
            reads: Vec::new(),
            at_ms: 0,
            skip,
            log_batch: 0,
            seal,
            lost,
        };
        let Ok(bytes) = serde_json::to_vec(&params) else {
            self.seals.put_back(params.seal, params.lost, &[]);
            return false;
        };
        match gateway
            .run(EXECUTE, &bytes, &format!("execute {from}..={to}"))
            .await
        {
            Ok(_) => true,
            Err(e) => {
                warn!(from, to, "execute job failed: {e}");
                let not_held = parse_not_sealed(&e.detail);
                self.seals.put_back(params.seal, params.lost, &not_held);
                self.catch_up_after_failure().await;
                false
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
            at_ms: sharecall_proto::clock::now_ms(),
            skip: Vec::new(),
            log_batch: if self.config.log.enabled {
                self.next_log_batch()
            } else {
                0
            },
            seal: Vec::new(),
            lost: Vec::new(),
        };
        let Ok(bytes) = serde_json::to_vec(&params) else {
            return;
        };
        let reads = params.reads;
        let result = gateway.run(EXECUTE, &bytes, &purpose).await;
        if self.config.log.enabled {
            let digest = match &result {
                // All three hold the batch's records with this digest.
                Ok(report) => serde_json::from_slice::<ReadOutput>(&report.output)
                    .ok()
                    .and_then(|o| o.log_digest),
                // The job failed, but the peers may have completed the
                // batch (and answered) all the same: seal what this
                // provider holds; a peer lacking it refuses, and it is
                // logged lost at all three.
                Err(_) => self
                    .pending
                    .held_at(at)
                    .into_iter()
                    .find(|(b, _)| *b == params.log_batch)
                    .map(|(_, d)| hex::encode(d)),
            };
            if let Some(d) = digest {
                self.seals.finished(params.log_batch, d);
                // Wake the loop, which may be asleep with nothing unsealed
                // when this arrives: it times the seal.
                self.board.notify.notify_one();
            }
        }
        if let Err(e) = result {
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
