//! The gateway side of the orchestration: runs a task as a job across the
//! three peers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rand::RngCore;
use serde::Serialize;
use sharecall_proto::control::command::Body;
use sharecall_proto::control::control_client::ControlClient;
use sharecall_proto::control::{
    Abort, Command, Finish, Link, Phase, PhaseResult, Prepare, SessionCommand, SignedTask, Status,
};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tonic::transport::Channel;
use tracing::{debug, info, info_span, warn, Instrument};

use super::status::{class_of, status_name, ErrorClass};
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

/// A finished job.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// The job id.
    pub job_id: u64,
    /// The task kind.
    pub kind: String,
    /// The public output all three peers agreed on (kind-specific).
    #[serde(skip)]
    pub output: Vec<u8>,
    /// Duration of each phase run, in order (retries included).
    pub phases: Vec<PhaseTiming>,
    /// Whether the job had to (re)link the SMC mesh.
    pub relinked: bool,
    /// Wall time of the whole job, in microseconds.
    pub total_us: u64,
}

/// Time spent in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTiming {
    /// `prepare`, `link`, `session`, or [`FAST_PHASE`] (`prepare+session`:
    /// the fast path's single Session broadcast carrying the Prepare).
    pub phase: &'static str,
    /// Microseconds.
    pub us: u64,
}

/// Why a job failed: which phase, which peer, which status.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{phase} failed at {}: {} ({detail})", peer.map(|p| format!("provider {p}")).unwrap_or_else(|| "the gateway".into()), status_name(*status))]
pub struct JobError {
    /// The job id (0 if it never started).
    pub job_id: u64,
    /// The phase that failed.
    pub phase: &'static str,
    /// The peer that reported (or caused) the failure.
    pub peer: Option<u32>,
    /// Its status.
    #[serde(serialize_with = "ser_status")]
    pub status: Status,
    /// The seed's error class.
    pub class: ErrorClass,
    /// Human-readable detail.
    pub detail: String,
}

fn ser_status<S: serde::Serializer>(s: &Status, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(status_name(*s))
}

impl JobError {
    fn new(
        job_id: u64,
        phase: &'static str,
        peer: Option<u32>,
        status: Status,
        detail: String,
    ) -> Self {
        JobError {
            job_id,
            phase,
            peer,
            status,
            class: class_of(status),
            detail,
        }
    }

    /// True if the job was refused because the gateway is at capacity.
    pub fn is_busy(&self) -> bool {
        self.phase == "admission"
    }
}

/// Name of the fast path's phase in [`JobReport::phases`] and in the
/// `phase_duration` metric: one Session broadcast that carries the Prepare
/// inline. A job that shows only this phase cost one broadcast; one that
/// shows it followed by `prepare` fell back to the full path.
pub const FAST_PHASE: &str = "prepare+session";

/// Statuses that are a peer's decision about the task, not a glitch: never
/// retried, and on the fast path reported at once as the Prepare would.
fn is_decision(s: Status) -> bool {
    matches!(s, Status::Denied | Status::BadRequest | Status::UnknownCmd)
}

fn status_of(r: &PhaseResult) -> Status {
    Status::try_from(r.status).unwrap_or(Status::Unspecified)
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Prepare => "prepare",
        Phase::Link => "link",
        Phase::Session => "session",
        Phase::Abort => "abort",
        Phase::Finish => "finish",
        Phase::Unspecified => "unspecified",
    }
}

type Pending = Arc<Mutex<HashMap<(u64, u32), oneshot::Sender<PhaseResult>>>>;

/// One open command stream to a peer.
struct Stream {
    tx: mpsc::Sender<Command>,
    pending: Pending,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

/// The gateway's connection to one peer (possibly itself).
struct PeerConn {
    id: u32,
    client: ControlClient<Channel>,
    stream: tokio::sync::Mutex<Option<Arc<Stream>>>,
}

impl PeerConn {
    /// The peer's (link epoch, healthy), via a heartbeat; (0, false) if it
    /// does not answer.
    async fn link_state(&self, me: u32, timeout: Duration) -> (u64, bool) {
        let mut client = self.client.clone();
        let req = sharecall_proto::control::HeartbeatRequest {
            from: me,
            incarnation: 0,
        };
        match tokio::time::timeout(timeout, client.heartbeat(req)).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                (r.link_epoch, r.link_healthy)
            }
            _ => (0, false),
        }
    }

    async fn stream(&self) -> Result<Arc<Stream>, String> {
        let mut slot = self.stream.lock().await;
        if let Some(s) = slot.as_ref() {
            if s.alive.load(Ordering::Acquire) {
                return Ok(s.clone());
            }
        }
        let (tx, rx) = mpsc::channel::<Command>(256);
        let mut client = self.client.clone();
        let response = client
            .commands(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|e| format!("cannot open command stream: {}", e.message()))?;
        let mut results = response.into_inner();
        let pending: Pending = Arc::default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stream = Arc::new(Stream {
            tx,
            pending: pending.clone(),
            alive: alive.clone(),
        });
        let peer = self.id;
        tokio::spawn(async move {
            loop {
                match results.message().await {
                    Ok(Some(r)) => {
                        let waiter = pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&(r.job_id, r.attempt));
                        if let Some(w) = waiter {
                            let _ = w.send(r);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!(peer, "command stream broke: {}", e.message());
                        break;
                    }
                }
            }
            alive.store(false, Ordering::Release);
            // Dropping the senders fails every waiter with STREAM_ERR.
            pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
        });
        *slot = Some(stream.clone());
        Ok(stream)
    }

    /// Sends one command and waits for its result; communication problems
    /// come back as a result with a communication status.
    async fn call(&self, cmd: Command, timeout: Duration) -> PhaseResult {
        let (job_id, phase, attempt) = (cmd.job_id, cmd.phase, cmd.attempt);
        let failed = |status: Status, detail: String| PhaseResult {
            job_id,
            phase,
            attempt,
            peer: self.id,
            status: status as i32,
            detail,
            ..PhaseResult::default()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = match tokio::time::timeout_at(deadline, self.stream()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return failed(Status::StreamErr, e),
            Err(_) => return failed(Status::Timeout, "connecting took too long".into()),
        };
        let (tx, rx) = oneshot::channel();
        let key = (job_id, attempt);
        stream
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, tx);
        let forget = || {
            stream
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        };
        if tokio::time::timeout_at(deadline, stream.tx.send(cmd))
            .await
            .is_err()
        {
            forget();
            return failed(Status::Timeout, "command queue full".into());
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => failed(Status::StreamErr, "command stream closed".into()),
            Err(_) => {
                forget();
                failed(Status::Timeout, format!("no answer within {timeout:?}"))
            }
        }
    }
}

/// This gateway's lanes.
struct Lanes {
    free: Mutex<Vec<u32>>,
    permits: Arc<Semaphore>,
}

struct LaneGuard<'a> {
    lanes: &'a Lanes,
    lane: u32,
    _permit: OwnedSemaphorePermit,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        self.lanes
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.lane);
    }
}

impl Lanes {
    async fn acquire(&self) -> Option<LaneGuard<'_>> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let lane = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
        Some(LaneGuard {
            lanes: self,
            lane,
            _permit: permit,
        })
    }
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
}

/// The link epoch all three peers last reported healthy at, as far as this
/// gateway has seen. Knowing it lets a job skip the Prepare broadcast (the
/// fast path); a stale value only costs the fallback to the full path.
#[derive(Default)]
struct LinkCache(AtomicU64);

impl LinkCache {
    /// The known epoch, if any (0 means unknown: real epochs start at 1).
    fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            e => Some(e),
        }
    }

    /// Forgets the epoch, so the next job takes the full path.
    fn forget(&self) {
        self.0.store(0, Ordering::Release);
    }

    /// Learns from one phase's complete result set: all three succeeded
    /// and are healthy at one epoch → remember it; the peers do not agree
    /// on a healthy link (or one did not answer) → forget. Other failures
    /// (a denial, say) say nothing about the link and change nothing.
    fn observe(&self, results: &[PhaseResult]) {
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
enum Fast<'a> {
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

/// The epoch all three peers are healthily linked at, if they agree.
fn agreed_epoch(states: impl Iterator<Item = (u64, bool)>) -> Option<u64> {
    let mut agreed = None;
    for (epoch, healthy) in states {
        if !healthy || epoch == 0 || agreed.is_some_and(|e| e != epoch) {
            return None;
        }
        agreed = Some(epoch);
    }
    agreed
}

impl Gateway {
    /// A gateway over control channels to providers 0, 1, 2 (index = id).
    pub fn new(
        config: GatewayConfig,
        channels: [Channel; 3],
        key: RequesterKey,
        metrics: Arc<Metrics>,
    ) -> Gateway {
        let mine: Vec<u32> = (0..config.lanes).filter(|l| l % 3 == config.me).collect();
        let admitted = config.max_queued + mine.len();
        let peers = channels
            .into_iter()
            .enumerate()
            .map(|(i, ch)| {
                Arc::new(PeerConn {
                    id: i as u32,
                    client: ControlClient::new(ch)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
                    stream: tokio::sync::Mutex::new(None),
                })
            })
            .collect();
        Gateway {
            lanes: Lanes {
                permits: Arc::new(Semaphore::new(mine.len())),
                free: Mutex::new(mine),
            },
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
        }
    }

    /// Session ids must grow per lane at every peer, across gateway
    /// restarts too: microseconds since the epoch, made strictly increasing.
    fn next_session_id(&self) -> u64 {
        let now = super::task::now_ms().saturating_mul(1000);
        let mut last = self.last_session.lock().unwrap_or_else(|p| p.into_inner());
        *last = (*last + 1).max(now);
        *last
    }

    async fn broadcast(
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
        if self.lanes.permits.available_permits() == 0 && self.admitted == self.config.max_queued {
            // No lane at all for this gateway (fewer than three lanes).
            return Err(JobError::new(
                0,
                "admission",
                None,
                Status::Unspecified,
                "this gateway has no SMC lane; configure jobs.lanes >= 3".into(),
            ));
        }
        let Ok(_admitted) = self.admission.clone().try_acquire_owned() else {
            self.metrics.job_finished(kind.as_str(), "busy");
            return Err(JobError::new(
                0,
                "admission",
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

    fn timed(&self, kind: TaskKind, report: &mut JobReport, phase: &'static str, since: Instant) {
        let d = since.elapsed();
        self.metrics.phase_duration(kind.as_str(), phase, d);
        report.phases.push(PhaseTiming {
            phase,
            us: d.as_micros() as u64,
        });
    }

    /// The output all three peers opened, or an error naming a peer that
    /// disagrees.
    fn agreed_output(job_id: u64, results: &[PhaseResult]) -> Result<Vec<u8>, JobError> {
        let Some(first) = results.first() else {
            return Err(JobError::new(
                job_id,
                "session",
                None,
                Status::Unspecified,
                "no peer answered".into(),
            ));
        };
        if let Some(r) = results.iter().find(|r| r.output != first.output) {
            return Err(JobError::new(
                job_id,
                "session",
                Some(r.peer),
                Status::Aborted,
                "peers disagree about the opened output".into(),
            ));
        }
        Ok(first.output.clone())
    }

    /// The fast path: one Session broadcast at the known link `epoch`,
    /// carrying the Prepare inline (each peer reviews it first, exactly as
    /// a Prepare command).
    async fn fast_path(
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
                "session",
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
        self.timed(kind, report, FAST_PHASE, since);
        if refused {
            // Report the refusal itself (ranked as among Prepare results),
            // not a communication error that happened to arrive with it.
            results.retain(|r| is_decision(status_of(r)));
            return match self.check(job_id, Phase::Prepare, &results) {
                Err(e) => Fast::Ended(e, Some(lane)),
                // Unreachable: a decision always ranks above success.
                Ok(()) => Fast::Failed(JobError::new(
                    job_id,
                    FAST_PHASE,
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
                    "session",
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
            self.timed(kind, report, phase_name(Phase::Session), since);
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

    /// Links unless every peer reports a healthy link at the same epoch;
    /// returns the epoch to run sessions at.
    async fn ensure_linked(
        &self,
        job_id: u64,
        kind: TaskKind,
        states: &[PhaseResult],
        attempt: &mut u32,
        report: &mut JobReport,
    ) -> Result<u64, JobError> {
        if let Some(epoch) = agreed_epoch(states.iter().map(|r| (r.link_epoch, r.link_healthy))) {
            return Ok(epoch);
        }
        // One link procedure per gateway at a time: the jobs that queued
        // behind it find the fresh link instead of starting another.
        let _linking = self.linking.lock().await;
        let fresh = join_all(
            self.peers
                .iter()
                .map(|p| p.link_state(self.config.me, self.config.prepare_timeout)),
        )
        .await;
        if let Some(epoch) = agreed_epoch(fresh.iter().copied()) {
            return Ok(epoch);
        }
        self.link_cache.forget();
        report.relinked = true;
        let epoch = fresh.iter().map(|s| s.0).max().unwrap_or(0);
        let mut target = epoch + 1;
        let mut tries = 0;
        loop {
            *attempt += 1;
            let since = Instant::now();
            let results = self
                .broadcast(
                    job_id,
                    Phase::Link,
                    *attempt,
                    Body::Link(Link { epoch: target }),
                    self.config.link_timeout,
                )
                .await;
            self.timed(kind, report, phase_name(Phase::Link), since);
            self.link_cache.observe(&results);
            match self.check(job_id, Phase::Link, &results) {
                Ok(()) => {
                    if let Some(at) =
                        agreed_epoch(results.iter().map(|r| (r.link_epoch, r.link_healthy)))
                    {
                        return Ok(at);
                    }
                    // Healthy but reported at different epochs: another
                    // gateway linked meanwhile; ask for the newest one (a
                    // peer already there answers at once).
                    let at = results.iter().map(|r| r.link_epoch).max().unwrap_or(target);
                    target = if results.iter().all(|r| r.link_healthy) {
                        at
                    } else {
                        at + 1
                    };
                }
                Err(e) if tries >= self.config.phase_retries => return Err(e),
                Err(e) => {
                    debug!("link failed, retrying: {e}");
                    target = results
                        .iter()
                        .map(|r| r.link_epoch)
                        .max()
                        .unwrap_or(target)
                        .max(target)
                        + 1;
                }
            }
            tries += 1;
            if tries > self.config.phase_retries {
                return Err(JobError::new(
                    job_id,
                    "link",
                    None,
                    Status::LinkFailed,
                    "peers did not settle on one link epoch".into(),
                ));
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
            self.timed(kind, report, phase_name(phase), since);
            self.link_cache.observe(&results);
            match self.check(job_id, phase, &results) {
                Ok(()) => return Ok(results),
                // A denial is a decision, not a glitch: no retry.
                Err(e) if e.status == Status::Denied || e.status == Status::BadRequest => {
                    return Err(e)
                }
                Err(e) if tries >= self.config.phase_retries => return Err(e),
                Err(e) => debug!("{} failed, retrying: {e}", phase_name(phase)),
            }
            tries += 1;
        }
    }

    /// The first non-success result as an error, preferring the peer that
    /// caused a failure over peers that merely saw it (e.g. a denial or a
    /// dead peer over the others' aborts).
    fn check(&self, job_id: u64, phase: Phase, results: &[PhaseResult]) -> Result<(), JobError> {
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
                phase_name(phase),
                Some(r.peer),
                status(r),
                r.detail.clone(),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(peer: u32, status: Status, epoch: u64, healthy: bool) -> PhaseResult {
        PhaseResult {
            peer,
            status: status as i32,
            link_epoch: epoch,
            link_healthy: healthy,
            ..PhaseResult::default()
        }
    }

    fn all(status: Status, epoch: u64) -> Vec<PhaseResult> {
        (0..3).map(|p| result(p, status, epoch, true)).collect()
    }

    #[test]
    fn link_cache_learns_from_successes_at_one_healthy_epoch() {
        let cache = LinkCache::default();
        assert_eq!(cache.get(), None, "unknown at first");
        cache.observe(&all(Status::Success, 4));
        assert_eq!(cache.get(), Some(4));
        // A later link is picked up.
        cache.observe(&all(Status::Success, 5));
        assert_eq!(cache.get(), Some(5));
    }

    #[test]
    fn link_cache_forgets_on_link_trouble() {
        let cache = LinkCache::default();
        cache.observe(&all(Status::Success, 4));
        // One peer unhealthy.
        let mut r = all(Status::Success, 4);
        r[1].link_healthy = false;
        cache.observe(&r);
        assert_eq!(cache.get(), None);

        cache.observe(&all(Status::Success, 4));
        // Peers at different epochs.
        let mut r = all(Status::Success, 4);
        r[2].link_epoch = 5;
        cache.observe(&r);
        assert_eq!(cache.get(), None);

        cache.observe(&all(Status::Success, 4));
        // A peer that did not answer reports no link at all.
        let mut r = all(Status::Success, 4);
        r[0] = result(0, Status::StreamErr, 0, false);
        cache.observe(&r);
        assert_eq!(cache.get(), None);

        cache.observe(&all(Status::Success, 4));
        cache.forget();
        assert_eq!(cache.get(), None);
    }

    #[test]
    fn link_cache_ignores_failures_that_say_nothing_about_the_link() {
        let cache = LinkCache::default();
        // Not learnt from a failed phase, even at one healthy epoch...
        let mut r = all(Status::Success, 4);
        r[2].status = Status::Denied as i32;
        cache.observe(&r);
        assert_eq!(cache.get(), None);
        // ... and not forgotten because of one either.
        cache.observe(&all(Status::Success, 4));
        cache.observe(&r);
        assert_eq!(cache.get(), Some(4));
    }

    #[test]
    fn decisions_are_refusals_not_glitches() {
        for s in [Status::Denied, Status::BadRequest, Status::UnknownCmd] {
            assert!(is_decision(s), "{s:?}");
        }
        for s in [
            Status::Success,
            Status::UnknownJob,
            Status::Aborted,
            Status::StreamErr,
            Status::Timeout,
            Status::LinkFailed,
        ] {
            assert!(!is_decision(s), "{s:?}");
        }
    }

    #[test]
    fn agreed_output_names_the_disagreeing_peer() {
        let mut r = all(Status::Success, 1);
        for x in &mut r {
            x.output = b"42".to_vec();
        }
        assert_eq!(
            Gateway::agreed_output(7, &r).expect("agree"),
            b"42".to_vec()
        );
        r[1].output = b"43".to_vec();
        let e = Gateway::agreed_output(7, &r).expect_err("disagree");
        assert_eq!((e.peer, e.status), (Some(1), Status::Aborted));
    }
}
