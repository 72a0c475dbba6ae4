//! The fast path: at a link epoch the gateway knows to be healthy, one
//! Session broadcast carries the Prepare inline, and a job costs one round
//! trip instead of two.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use sharecall_proto::control::command::Body;
use sharecall_proto::control::{Command, Phase, PhaseResult, Prepare, SessionCommand, Status};

use super::job::{JobError, JobPhase, JobReport};
use super::lanes::LaneGuard;
use super::relink::agreed_epoch;
use super::{status_of, Gateway};
use crate::orchestration::task::TaskKind;

/// Statuses that are a peer's decision about the task, not a glitch: never
/// retried, and on the fast path reported at once as the Prepare would.
pub(super) fn is_decision(s: Status) -> bool {
    matches!(s, Status::Denied | Status::BadRequest | Status::UnknownCmd)
}

/// The link epoch all three peers last reported healthy at, as far as this
/// gateway has seen. Knowing it lets a job skip the Prepare broadcast (the
/// fast path); a stale value only costs the fallback to the full path.
#[derive(Default)]
pub(super) struct LinkCache(AtomicU64);

impl LinkCache {
    /// The known epoch, if any (0 means unknown: real epochs start at 1).
    pub(super) fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            e => Some(e),
        }
    }

    /// Forgets the epoch, so the next job takes the full path.
    pub(super) fn forget(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// Learns from one phase's complete result set: all three succeeded
    /// and are healthy at one epoch → remember it; the peers do not agree
    /// on a healthy link (or one did not answer) → forget. Other failures
    /// (a denial, say) say nothing about the link and change nothing.
    pub(super) fn observe(&self, results: &[PhaseResult]) {
        match agreed_epoch(results.iter().map(|r| (r.link_epoch, r.link_healthy))) {
            None => self.forget(),
            Some(epoch) if results.iter().all(|r| status_of(r) == Status::Success) => {
                self.0.store(epoch, Ordering::Release)
            }
            Some(_) => {}
        }
    }
}

/// How the fast path ended.
pub(super) enum Fast<'a> {
    /// The job is done.
    Done,
    /// The job ends with this error, without falling back: a peer refused
    /// the task, or the peers disagree about the output. Carries the lane
    /// if it must stay reserved until the Abort has stopped the sessions
    /// the other peers started.
    Ended(JobError, Option<LaneGuard<'a>>),
    /// Anything else: the caller falls back to the full path.
    Failed(JobError),
}

impl Gateway {
    /// The fast path: one Session broadcast at the known link `epoch`,
    /// carrying the Prepare inline (each peer reviews it first, exactly as
    /// a Prepare command).
    pub(super) async fn fast_path(
        &self,
        job_id: u64,
        kind: TaskKind,
        epoch: u64,
        prepare: Prepare,
        attempt: &mut u32,
        report: &mut JobReport,
    ) -> Fast<'_> {
        let Some(lane) = self.lanes.acquire().await else {
            return Fast::Failed(JobError::new(
                job_id,
                JobPhase::Session,
                None,
                Status::Unspecified,
                "no lane".into(),
            ));
        };
        *attempt += 1;
        let body = Body::Session(SessionCommand {
            lane: lane.lane,
            session_id: self.next_session_id(),
            epoch,
            prepare: Some(prepare),
        });
        let since = Instant::now();
        let mut calls: FuturesUnordered<_> = self
            .peers
            .iter()
            .map(|p| {
                let cmd = Command {
                    job_id,
                    gateway: self.config.me,
                    phase: Phase::Session as i32,
                    attempt: *attempt,
                    body: Some(body.clone()),
                };
                p.call(cmd, self.config.session_timeout)
            })
            .collect();
        let mut results = Vec::with_capacity(self.peers.len());
        let mut refused = false;
        while let Some(r) = calls.next().await {
            refused |= is_decision(status_of(&r));
            results.push(r);
            if refused {
                // The peers that accepted are now waiting in the session
                // for the one that refused, until the SMC op timeout;
                // don't wait for them: the Abort sent next stops them.
                // Results already in still count, so the error names the
                // same peer a Prepare broadcast would.
                while let Some(Some(r)) = calls.next().now_or_never() {
                    results.push(r);
                }
                break;
            }
        }
        drop(calls);
        self.timed(kind, report, JobPhase::FastPath, since);
        if refused {
            // Report the refusal itself (ranked as among Prepare results),
            // not a communication error that happened to arrive with it.
            results.retain(|r| is_decision(status_of(r)));
            return match self.check(job_id, Phase::Prepare, &results) {
                Err(e) => Fast::Ended(e, Some(lane)),
                // Unreachable: a decision always ranks above success.
                Ok(()) => Fast::Failed(JobError::new(
                    job_id,
                    JobPhase::FastPath,
                    None,
                    Status::Unspecified,
                    "a refusal went missing".into(),
                )),
            };
        }
        drop(lane);
        self.link_cache.observe(&results);
        if let Err(e) = self.check(job_id, Phase::Session, &results) {
            return Fast::Failed(e);
        }
        match Self::agreed_output(job_id, &results) {
            Ok(output) => {
                report.output = output;
                Fast::Done
            }
            // A disagreement is a fault, not a stale link: the full path
            // would not fix it, so it ends the job as it does there.
            Err(e) => Fast::Ended(e, None),
        }
    }
}
