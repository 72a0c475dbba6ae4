//! The gateway side of the orchestration: runs a task as a job across the
//! three peers.
//!
//! - [`job`]: what a job reports (timings, or the failing phase and peer);
//! - `peer_conn`: the command stream to one peer;
//! - `lanes`: the SMC lanes this gateway may use;
//! - `fast_path`: one broadcast per job while the link is known healthy;
//! - `relink`: the Link phase, when the peers disagree about the link;
//! - here: admission and the full path (Prepare, Link, Session, then
//!   Finish or Abort).

mod fast_path;
pub mod job;
mod lanes;
mod peer_conn;
mod relink;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::RngCore;
use sharecall_proto::control::command::Body;
use sharecall_proto::control::{
    Abort, Command, Finish, Phase, PhaseResult, Prepare, SessionCommand, SignedTask, Status,
};
use tokio::sync::Semaphore;
use tonic::transport::Channel;
use tracing::{debug, info, info_span, warn, Instrument};

use self::fast_path::{Fast, LinkCache};
pub use self::job::{JobError, JobPhase, JobReport, PhaseTiming, FAST_PHASE};
use self::lanes::{LaneGuard, Lanes};
use self::peer_conn::PeerConn;
use super::registry::Registry;
use super::status::status_name;
use super::task::{RequesterKey, TaskKind};
use crate::metrics::Metrics;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// This provider's id.
    pub me: u32,
    /// Total SMC lanes; this gateway uses those with `lane % 3 == me`, so
    /// the three gateways never start sessions on the same lane.
    pub lanes: u32,
    /// Jobs that may wait for a lane on top of those running; more are
    /// refused at once (back-pressure) instead of queueing without bound.
    pub max_queued: usize,
    /// Timeout of Prepare (and of Abort/Finish).
    pub prepare_timeout: Duration,
    /// Timeout of Link.
    pub link_timeout: Duration,
    /// Timeout of one Session.
    pub session_timeout: Duration,
    /// Retries of Prepare and Link after a recoverable or communication
    /// error.
    pub phase_retries: u32,
    /// Retries of a failed Session before the job is aborted.
    pub session_retries: u32,
}

/// The status a result carries (unknown numbers as unspecified).
pub(super) fn status_of(r: &PhaseResult) -> Status {
    Status::try_from(r.status).unwrap_or(Status::Unspecified)
}

/// Runs tasks as jobs on the three peers.
pub struct Gateway {
    config: GatewayConfig,
    peers: Vec<Arc<PeerConn>>,
    key: RequesterKey,
    lanes: Lanes,
    admission: Arc<Semaphore>,
    admitted: usize,
    next_job: AtomicU64,
    last_session: Mutex<u64>,
    linking: tokio::sync::Mutex<()>,
    link_cache: LinkCache,
    metrics: Arc<Metrics>,
    computations: Arc<Registry>,
}

impl Gateway {
    /// A gateway over control channels to providers 0, 1, 2 (index = id),
    /// submitting the kinds of `computations`.
    pub fn new(
        config: GatewayConfig,
        channels: [Channel; 3],
        key: RequesterKey,
        metrics: Arc<Metrics>,
        computations: Arc<Registry>,
    ) -> Gateway {
        let mine: Vec<u32> = (0..config.lanes).filter(|l| l % 3 == config.me).collect();
        let admitted = config.max_queued + mine.len();
        let peers = channels
            .into_iter()
            .enumerate()
            .map(|(i, ch)| Arc::new(PeerConn::new(i as u32, ch)))
            .collect();
        Gateway {
            lanes: Lanes::new(mine),
            admission: Arc::new(Semaphore::new(admitted)),
            admitted,
            next_job: AtomicU64::new(rand::rngs::OsRng.next_u64() >> 16),
            last_session: Mutex::new(0),
            linking: tokio::sync::Mutex::new(()),
            link_cache: LinkCache::default(),
            config,
            peers,
            key,
            metrics,
            computations,
        }
    }

    /// The kinds this gateway's provider runs (job submission checks a
    /// task against them before sending it).
    pub fn computations(&self) -> &Registry {
        &self.computations
    }

    /// Session ids must grow per lane at every peer, across gateway
    /// restarts too: microseconds since the epoch, made strictly increasing.
    pub(super) fn next_session_id(&self) -> u64 {
        let now = sharecall_proto::clock::now_ms().saturating_mul(1000);
        let mut last = self.last_session.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last + 1).max(now);
        *last
    }

    pub(super) async fn broadcast(
        &self,
        job_id: u64,
        phase: Phase,
        attempt: u32,
        body: Body,
        timeout: Duration,
    ) -> Vec<PhaseResult> {
        let cmds = self.peers.iter().map(|p| {
            let cmd = Command {
                job_id,
                gateway: self.config.me,
                phase: phase as i32,
                attempt,
                body: Some(body.clone()),
            };
            p.call(cmd, timeout)
        });
        join_all(cmds).await
    }

    /// Runs a task to completion (or a clean failure).
    pub async fn run(
        &self,
        kind: TaskKind,
        params: &[u8],
        purpose: &str,
    ) -> Result<JobReport, JobError> {
        if self.lanes.available() == 0 && self.admitted == self.config.max_queued {
            // No lane at all for this gateway (fewer than three lanes).
            return Err(JobError::new(
                0,
                JobPhase::Admission,
                None,
                Status::Unspecified,
                "this gateway has no SMC lane; configure jobs.lanes >= 3".into(),
            ));
        }
        let Ok(_admitted) = self.admission.clone().try_acquire_owned() else {
            self.metrics.job_finished(kind.as_str(), "busy");
            return Err(JobError::new(
                0,
                JobPhase::Admission,
                None,
                Status::Unspecified,
                format!("{} jobs already admitted; retry later", self.admitted),
            ));
        };
        let job_id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let in_flight = self.admitted - self.admission.available_permits();
        self.metrics.jobs_in_flight(in_flight as i64);
        let span = info_span!("job", job = job_id, kind = %kind);
        let result = self
            .run_job(job_id, kind, params, purpose)
            .instrument(span)
            .await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => status_name(e.status),
        };
        self.metrics.job_finished(kind.as_str(), outcome);
        self.metrics.jobs_in_flight(
            (self.admitted - self.admission.available_permits()).saturating_sub(1) as i64,
        );
        result
    }

    async fn run_job(
        &self,
        job_id: u64,
        kind: TaskKind,
        params: &[u8],
        purpose: &str,
    ) -> Result<JobReport, JobError> {
        let started = Instant::now();
        let signed = self.key.sign(kind, purpose, params);
        let mut report = JobReport {
            job_id,
            kind: kind.as_str().to_string(),
            output: Vec::new(),
            phases: Vec::new(),
            relinked: false,
            total_us: 0,
        };
        let mut attempt = 0u32;
        let mut held = None;
        let result = self
            .phases(job_id, kind, signed, &mut attempt, &mut report, &mut held)
            .await;
        match &result {
            Ok(()) => {
                attempt += 1;
                // Peers drop the job's state; the requester does not wait
                // for that.
                for peer in &self.peers {
                    let peer = peer.clone();
                    let cmd = Command {
                        job_id,
                        gateway: self.config.me,
                        phase: Phase::Finish as i32,
                        attempt,
                        body: Some(Body::Finish(Finish {})),
                    };
                    let timeout = self.config.prepare_timeout;
                    tokio::spawn(async move { peer.call(cmd, timeout).await });
                }
            }
            Err(e) => {
                attempt += 1;
                warn!("job fails: {e}");
                let _ = self
                    .broadcast(
                        job_id,
                        Phase::Abort,
                        attempt,
                        Body::Abort(Abort {
                            reason: e.to_string(),
                        }),
                        self.config.prepare_timeout,
                    )
                    .await;
            }
        }
        // Only now may another job of this gateway use the lane (see
        // `Fast::Ended`).
        drop(held);
        result?;
        report.total_us = started.elapsed().as_micros() as u64;
        info!(total_us = report.total_us, "job done");
        Ok(report)
    }

    pub(super) fn timed(
        &self,
        kind: TaskKind,
        report: &mut JobReport,
        phase: JobPhase,
        since: Instant,
    ) {
        let d = since.elapsed();
        self.metrics
            .phase_duration(kind.as_str(), phase.as_str(), d);
        report.phases.push(PhaseTiming {
            phase,
            us: d.as_micros() as u64,
        });
    }

    /// The output all three peers opened, or an error naming a peer that
    /// disagrees.
    pub(super) fn agreed_output(job_id: u64, results: &[PhaseResult]) -> Result<Vec<u8>, JobError> {
        let Some(first) = results.first() else {
            return Err(JobError::new(
                job_id,
                JobPhase::Session,
                None,
                Status::Unspecified,
                "no peer answered".into(),
            ));
        };
        if let Some(r) = results.iter().find(|r| r.output != first.output) {
            return Err(JobError::new(
                job_id,
                JobPhase::Session,
                Some(r.peer),
                Status::Aborted,
                "peers disagree about the opened output".into(),
            ));
        }
        Ok(first.output.clone())
    }

    async fn phases<'a>(
        &'a self,
        job_id: u64,
        kind: TaskKind,
        signed: SignedTask,
        attempt: &mut u32,
        report: &mut JobReport,
        held: &mut Option<LaneGuard<'a>>,
    ) -> Result<(), JobError> {
        let prepare = Prepare {
            task: Some(signed),
            participants: vec![0, 1, 2],
        };
        if let Some(epoch) = self.link_cache.get() {
            match self
                .fast_path(job_id, kind, epoch, prepare.clone(), attempt, report)
                .await
            {
                Fast::Done => return Ok(()),
                Fast::Ended(e, lane) => {
                    *held = lane;
                    return Err(e);
                }
                Fast::Failed(e) => {
                    // Most likely a peer restarted or another gateway
                    // re-linked: the full path finds out and re-links.
                    self.link_cache.forget();
                    debug!("fast path failed, taking the full path: {e}");
                }
            }
        }

        // Prepare (again, for peers that already saw it inline: they
        // review it anew under the same job id).
        let prepare = Body::Prepare(prepare);
        let mut states = self
            .until_all_succeed(
                job_id,
                kind,
                Phase::Prepare,
                prepare,
                self.config.prepare_timeout,
                attempt,
                report,
            )
            .await?;

        let mut session_failures = 0;
        loop {
            // Link, unless all three are healthy at the same epoch.
            let epoch = self
                .ensure_linked(job_id, kind, &states, attempt, report)
                .await?;

            // Session.
            let Some(lane) = self.lanes.acquire().await else {
                return Err(JobError::new(
                    job_id,
                    JobPhase::Session,
                    None,
                    Status::Unspecified,
                    "no lane".into(),
                ));
            };
            let session = Body::Session(SessionCommand {
                lane: lane.lane,
                session_id: self.next_session_id(),
                epoch,
                prepare: None,
            });
            *attempt += 1;
            let since = Instant::now();
            let results = self
                .broadcast(
                    job_id,
                    Phase::Session,
                    *attempt,
                    session,
                    self.config.session_timeout,
                )
                .await;
            drop(lane);
            self.timed(kind, report, JobPhase::Session, since);
            self.link_cache.observe(&results);
            match self.check(job_id, Phase::Session, &results) {
                Ok(()) => {
                    report.output = Self::agreed_output(job_id, &results)?;
                    return Ok(());
                }
                Err(e) if e.status == Status::UnknownJob => return Err(e),
                Err(e) if session_failures < self.config.session_retries => {
                    session_failures += 1;
                    debug!("session failed, retrying: {e}");
                    states = results;
                }
                Err(e) => return Err(e),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn until_all_succeed(
        &self,
        job_id: u64,
        kind: TaskKind,
        phase: Phase,
        body: Body,
        timeout: Duration,
        attempt: &mut u32,
        report: &mut JobReport,
    ) -> Result<Vec<PhaseResult>, JobError> {
        let mut tries = 0;
        loop {
            *attempt += 1;
            let since = Instant::now();
            let results = self
                .broadcast(job_id, phase, *attempt, body.clone(), timeout)
                .await;
            self.timed(kind, report, JobPhase::from(phase), since);
            self.link_cache.observe(&results);
            match self.check(job_id, phase, &results) {
                Ok(()) => return Ok(results),
                // A denial is a decision, not a glitch: no retry.
                Err(e) if e.status == Status::Denied || e.status == Status::BadRequest => {
                    return Err(e)
                }
                Err(e) if tries >= self.config.phase_retries => return Err(e),
                Err(e) => debug!("{} failed, retrying: {e}", JobPhase::from(phase)),
            }
            tries += 1;
        }
    }

    /// The first non-success result as an error, preferring the peer that
    /// caused a failure over peers that merely saw it (e.g. a denial or a
    /// dead peer over the others' aborts).
    pub(super) fn check(
        &self,
        job_id: u64,
        phase: Phase,
        results: &[PhaseResult],
    ) -> Result<(), JobError> {
        let status = status_of;
        let rank = |s: Status| match s {
            Status::Success => 0,
            Status::Aborted => 1,
            Status::LinkFailed => 2,
            Status::UnknownJob | Status::UnknownCmd => 3,
            Status::StreamErr | Status::Timeout => 4,
            Status::BadRequest | Status::Unspecified => 5,
            Status::Denied => 6,
        };
        match results.iter().max_by_key(|r| rank(status(r))) {
            Some(r) if status(r) != Status::Success => Err(JobError::new(
                job_id,
                JobPhase::from(phase),
                Some(r.peer),
                status(r),
                r.detail.clone(),
            )),
            _ => Ok(()),
        }
    }
}
