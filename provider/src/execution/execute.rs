//! The `execute` task kind: a peer's side of one batch (writes from the
//! log, or a read batch at the coordinator's cursor), run in the job's
//! SMC session and committed here.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::batch::{self, Answer, BatchError, Code, Op, Request};
use super::reads::ReadyRead;
use super::Executor;
use crate::orchestration::{Computation, ComputationError, TaskKind};
use crate::sharelog::order::{SealRef, NOT_SEALED};
use crate::smc::LaneSession;
use crate::tables::part::Kind;

/// The kind's wire name.
pub const EXECUTE: TaskKind = TaskKind::new("execute");

/// How long a peer waits for its part of a read the leader started.
const READ_PART_WAIT: Duration = Duration::from_millis(50);

/// How a peer names reads it does not hold (the coordinator drops them).
pub(super) const NOT_HELD: &str = "reads not held here: ";

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
    /// A write batch: the records whose log time the coordinator found
    /// out of bounds (see [`super::log_time`]); every peer runs the batch
    /// only if its own verdict is the same list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<u64>,
    /// A read batch: its id in the share log (strictly increasing at the
    /// coordinator), so a later seal can name it (`sharelog::order`).
    #[serde(default)]
    pub log_batch: u64,
    /// A write batch: the finished read batches it seals into the share
    /// log, in order, each with its digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seal: Vec<SealRef>,
    /// A write batch: read batches of an earlier seal that a provider did
    /// not hold; every provider logs them as lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<u64>,
}

/// A PRF tag's computed bits and their number.
type Tag = (u32, u8);

/// The output of a read batch (equal at all three providers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadOutput {
    /// Digest of the answers' public parts (ids, codes, expiry).
    pub digest: String,
    /// Digest of the share-log records the batch holds for its seal
    /// (`sharelog::order::digest`); absent with the log off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_digest: Option<String>,
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

/// The `execute` computation, registered by the provider for its executor.
pub struct Execute(Arc<Executor>);

impl Execute {
    /// Runs `execute` jobs on `executor`.
    pub fn new(executor: Arc<Executor>) -> Execute {
        Execute(executor)
    }
}

impl Computation for Execute {
    fn run<'a>(
        &'a self,
        gateway: u32,
        params: &'a [u8],
        session: &'a mut LaneSession,
    ) -> BoxFuture<'a, Result<Vec<u8>, ComputationError>> {
        Box::pin(async move {
            self.0
                .execute(gateway, params, session)
                .await
                .map_err(ComputationError::kind)
        })
    }

    /// A peer whose batch computed must still commit it (a peer that
    /// crashed at that moment catches up from its transcript later).
    fn abortable(&self) -> bool {
        false
    }
}

impl Executor {
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
        // Every provider judges the log times itself before any SMC; a
        // refusal ends the session at the peers at once.
        let verdict = self.judge_times(p.from, p.to)?;
        if verdict.out_of_bounds != p.skip {
            let why = format!(
                "the coordinator skips {:?}, this provider finds {:?} out of bounds{}{}",
                p.skip,
                verdict.out_of_bounds,
                if verdict.why.is_empty() { "" } else { ": " },
                verdict.why.join("; ")
            );
            warn!(from = p.from, to = p.to, "write batch refused: {why}");
            session.refuse(&why).await;
            return Err(BatchError::LogTime(why).into());
        }
        if !p.skip.is_empty() {
            warn!(
                skip = ?p.skip,
                "records with out-of-bounds log times are refused: {}",
                verdict.why.join("; ")
            );
        }
        // The seal names read batches this provider must hold; one it
        // lacks (it restarted since) is refused before any SMC, and the
        // coordinator names it lost instead.
        let missing = if self.config.log.enabled {
            self.pending.missing(&p.seal)
        } else {
            Vec::new()
        };
        if !missing.is_empty() {
            let ids: Vec<String> = missing.iter().map(u64::to_string).collect();
            let why = format!("{NOT_SEALED}{}", ids.join(","));
            warn!(from = p.from, "write batch refused: {why}");
            session.refuse(&why).await;
            return Err(ExecuteError::Params(why));
        }
        let requests = self.load(p.from, p.to, &p.skip)?;
        let mut outcome =
            batch::run(&self.config.variant, &index, self.db(), session, &requests).await?;
        let (_, log_time) = self.effective_times(p.from, p.to, &p.skip)?;
        outcome.transcript.log_time_ms = log_time;
        outcome.transcript.skipped = p.skip.clone();
        outcome.transcript.sealed = p.seal.clone();
        outcome.transcript.lost = p.lost.clone();
        super::fault::alter_outcome(&mut outcome.transcript);
        // Nothing is written unless all three computed the same outcome.
        agree(session, &outcome.transcript).await?;
        super::fault::exit_before_commit(&outcome.transcript).await;
        let digest = self.commit(&mut index, outcome, &requests)?;
        debug!(from = p.from, to = p.to, "batch executed");
        Ok(digest.into_bytes())
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
        let skew = sharecall_proto::clock::now_ms().abs_diff(p.at_ms);
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
        let (results, tags): (Vec<(String, Answer)>, Vec<Tag>) =
            if self.config.variant.table().reads_find_nothing(&index) {
                // Nothing was ever registered: nothing to find, no SMC.
                let results = requests
                    .iter()
                    .map(|r| (r.id.clone(), Answer::code(Code::NotFound)))
                    .collect();
                (results, Vec::new())
            } else {
                let outcome =
                    batch::run(&self.config.variant, &index, self.db(), session, &requests).await?;
                if !outcome.changes.ops.is_empty() || outcome.changes.prf_key.is_some() {
                    return Err(ExecuteError::Params(
                        "a read batch would change the table".into(),
                    ));
                }
                (outcome.answers, outcome.transcript.tags)
            };
        drop(index);
        let mut digest = blake3::Hasher::new_derive_key("sharecall 2026 read batch v1");
        digest.update(&at.to_le_bytes());
        for (id, a) in &results {
            digest.update(id.as_bytes());
            digest.update(a.code.as_str().as_bytes());
            digest.update(&a.expires_at_ms.unwrap_or(0).to_le_bytes());
        }
        let mut log_digest = None;
        if self.config.log.enabled {
            // Held for the seal; the digest of the records' agreed fields
            // joins the output, so the gateway sees all three agree on
            // what they will log.
            let records = crate::sharelog::build::read_records(
                at,
                p.log_batch,
                p.at_ms,
                &requests,
                &results,
                &tags,
            );
            log_digest = Some(hex::encode(self.pending.hold(p.log_batch, at, records)));
        }
        self.config.metrics.reads_executed(results.len() as u64);
        for (id, a) in results {
            self.reads.finish(&id, Ok(a));
        }
        debug!(at, reads = p.reads.len(), "read batch executed");
        let output = ReadOutput {
            digest: digest.finalize().to_hex().to_string(),
            log_digest,
        };
        serde_json::to_vec(&output).map_err(|e| ExecuteError::Params(e.to_string()))
    }
}

/// The pre-commit agreement: sends this provider's transcript digest to
/// both peers (1 round) and fails with [`BatchError::Disagreement`],
/// naming the peers whose digest differs, unless all three are equal.
/// Every honest provider runs the same comparison, so either all honest
/// providers commit the same outcome or none commits.
pub(super) async fn agree(
    session: &mut LaneSession,
    t: &super::batch::Transcript,
) -> Result<(), BatchError> {
    let mine = super::transcript_digest_bytes(t);
    let got = session.exchange_digest(&mine).await?;
    let peers: Vec<u8> = got
        .iter()
        .filter(|(_, d)| *d != mine)
        .map(|(p, _)| p.index() as u8)
        .collect();
    if peers.is_empty() {
        return Ok(());
    }
    warn!(
        from = t.from,
        to = t.to,
        ?peers,
        "batch outcomes differ: nothing committed"
    );
    Err(BatchError::Disagreement { peers })
}
