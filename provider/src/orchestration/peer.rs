//! The peer side of the orchestration: answers a gateway's commands.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use sharecall_proto::control::command::Body;
use sharecall_proto::control::control_server::Control;
use sharecall_proto::control::{
    Command, HeartbeatReply, HeartbeatRequest, Phase, PhaseResult, Status,
};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Streaming};
use tracing::{info, info_span, warn, Instrument};

use super::computation::Computation;
use super::link::LinkManager;
use super::policy::{Policies, Review};
use super::registry::Registry;
use super::task;
use crate::identity::Fingerprint;

/// How long a prepared job is kept without a Finish or Abort.
const PREPARED_TTL: Duration = Duration::from_secs(600);

/// How long an aborted job id is remembered (see [`Jobs::aborted`]); only
/// commands already on their way when the Abort was sent need it.
const ABORTED_TTL: Duration = Duration::from_secs(60);

/// Per-phase limits on the peer side.
#[derive(Debug, Clone)]
pub struct PeerTimeouts {
    /// Linking the SMC mesh.
    pub link: Duration,
    /// One Session (including waiting for the lane).
    pub session: Duration,
}

struct PreparedJob {
    computation: Arc<dyn Computation>,
    params: Vec<u8>,
    at: Instant,
    /// Cancelled by the gateway's Abort, so that a session still waiting
    /// for a peer that refused the job (an inline Prepare denied there)
    /// gives its lane back at once instead of after the SMC op timeout.
    cancel: CancellationToken,
}

/// The jobs this peer knows of, by (gateway, job id).
#[derive(Default)]
struct Jobs {
    prepared: HashMap<(u32, u64), PreparedJob>,
    /// Jobs their gateway aborted. An Abort is final, but the commands of
    /// one stream run concurrently: a Session with an inline Prepare sent
    /// before the Abort may still be reviewed after it, and must not start
    /// a session that the others have already left.
    aborted: HashMap<(u32, u64), Instant>,
}

/// What a Session needs of a prepared job.
struct Admitted {
    computation: Arc<dyn Computation>,
    params: Vec<u8>,
    cancel: CancellationToken,
}

/// A refusal: the status to answer with and why.
type Refusal = (Status, String);

/// The command/control service of one provider.
pub struct PeerService {
    incarnation: u64,
    providers: HashMap<Fingerprint, u32>,
    /// Cloned into the task of every command stream.
    handler: Handler,
}

impl PeerService {
    /// A peer service running the kinds of `computations`. `providers`
    /// maps each pinned certificate (this provider's own included) to its
    /// provider id.
    pub fn new(
        me: u32,
        incarnation: u64,
        providers: HashMap<Fingerprint, u32>,
        link: Arc<LinkManager>,
        policy: Arc<Policies>,
        computations: Arc<Registry>,
        timeouts: PeerTimeouts,
    ) -> PeerService {
        PeerService {
            incarnation,
            providers,
            handler: Handler {
                me,
                link,
                policy,
                computations,
                timeouts,
                jobs: Arc::default(),
            },
        }
    }

    #[allow(clippy::result_large_err)] // tonic::Status is what tonic handlers return
    fn caller<T>(&self, req: &Request<T>) -> Result<u32, tonic::Status> {
        crate::rpc::caller(req, &self.providers)
    }
}

/// Everything a command handler needs, cheap to clone into a task.
#[derive(Clone)]
struct Handler {
    me: u32,
    link: Arc<LinkManager>,
    policy: Arc<Policies>,
    computations: Arc<Registry>,
    timeouts: PeerTimeouts,
    jobs: Arc<Mutex<Jobs>>,
}

impl Handler {
    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn handle(&self, gateway: u32, cmd: Command) -> PhaseResult {
        let started = Instant::now();
        let phase = Phase::try_from(cmd.phase).unwrap_or(Phase::Unspecified);
        let (status, detail, output) = match cmd.body {
            Some(Body::Prepare(p)) => self.prepare(gateway, cmd.job_id, p),
            Some(Body::Link(l)) => self.link(l.epoch).await,
            Some(Body::Session(s)) => self.session(gateway, cmd.job_id, s).await,
            Some(Body::Abort(a)) => {
                let key = (gateway, cmd.job_id);
                let mut jobs = self.jobs();
                jobs.aborted.retain(|_, at| at.elapsed() < ABORTED_TTL);
                jobs.aborted.insert(key, Instant::now());
                if let Some(job) = jobs.prepared.remove(&key) {
                    // A session of the job may still be waiting for a peer
                    // that never joined it (fast path, refused there).
                    job.cancel.cancel();
                    info!(reason = %a.reason, "job aborted by its gateway");
                }
                (Status::Success, String::new(), Vec::new())
            }
            Some(Body::Finish(_)) => {
                self.jobs().prepared.remove(&(gateway, cmd.job_id));
                (Status::Success, String::new(), Vec::new())
            }
            None => (
                Status::UnknownCmd,
                "command without a body".to_string(),
                Vec::new(),
            ),
        };
        let (link_epoch, link_healthy) = self.link.state();
        PhaseResult {
            job_id: cmd.job_id,
            phase: phase as i32,
            attempt: cmd.attempt,
            peer: self.me,
            status: status as i32,
            detail,
            link_epoch,
            link_healthy,
            output,
            elapsed_us: started.elapsed().as_micros() as u64,
        }
    }

    fn prepare(
        &self,
        gateway: u32,
        job_id: u64,
        p: sharecall_proto::control::Prepare,
    ) -> (Status, String, Vec<u8>) {
        match self.admit(gateway, job_id, p) {
            Ok(_) => (Status::Success, String::new(), Vec::new()),
            Err((status, why)) => (status, why, Vec::new()),
        }
    }

    /// Reviews a task (a Prepare command, or the Prepare inline in a
    /// Session) and registers the job. Both paths go through here so a
    /// task is judged the same however it arrives.
    ///
    /// Preparing a job again (the gateway's fallback after a failed fast
    /// path re-sends the same task under the same job id) reviews it again
    /// and keeps the job's cancellation token, so one Abort still reaches
    /// every session of the job.
    fn admit(
        &self,
        gateway: u32,
        job_id: u64,
        p: sharecall_proto::control::Prepare,
    ) -> Result<Admitted, Refusal> {
        let Some(signed) = p.task else {
            return Err((Status::BadRequest, "Prepare without a task".into()));
        };
        let task = task::decode(&signed).map_err(|e| (Status::BadRequest, e.to_string()))?;
        let mut participants = p.participants;
        participants.sort_unstable();
        if participants != [0, 1, 2] {
            return Err((Status::Denied, "all three providers must take part".into()));
        }
        let review = Review {
            signed: &signed,
            task: &task,
            gateway,
        };
        if let Err(why) = self.policy.review(&review) {
            warn!(kind = %task.kind, requester = %task.requester, "task denied: {why}");
            return Err((Status::Denied, why));
        }
        let (kind, computation) = self
            .computations
            .get(&task.kind)
            .map_err(|e| (Status::UnknownCmd, e.to_string()))?;
        computation
            .review(&task.params)
            .map_err(|e| (e.status(), e.to_string()))?;
        info!(%kind, requester = %task.requester, purpose = %task.purpose, "task accepted");
        let params = task.params.to_vec();
        let mut jobs = self.jobs();
        if jobs.aborted.contains_key(&(gateway, job_id)) {
            return Err((
                Status::UnknownJob,
                "the job was aborted by its gateway".into(),
            ));
        }
        jobs.prepared.retain(|_, j| j.at.elapsed() < PREPARED_TTL);
        let cancel = jobs
            .prepared
            .get(&(gateway, job_id))
            .map(|j| j.cancel.clone())
            .unwrap_or_default();
        jobs.prepared.insert(
            (gateway, job_id),
            PreparedJob {
                computation: computation.clone(),
                params: params.clone(),
                at: Instant::now(),
                cancel: cancel.clone(),
            },
        );
        Ok(Admitted {
            computation,
            params,
            cancel,
        })
    }

    async fn link(&self, epoch: u64) -> (Status, String, Vec<u8>) {
        match tokio::time::timeout(self.timeouts.link, self.link.ensure(epoch)).await {
            Ok(Ok(_)) => (Status::Success, String::new(), Vec::new()),
            Ok(Err(e)) => (Status::LinkFailed, e.to_string(), Vec::new()),
            Err(_) => (
                Status::LinkFailed,
                format!("linking took longer than {:?}", self.timeouts.link),
                Vec::new(),
            ),
        }
    }

    async fn session(
        &self,
        gateway: u32,
        job_id: u64,
        s: sharecall_proto::control::SessionCommand,
    ) -> (Status, String, Vec<u8>) {
        let job = self
            .jobs()
            .prepared
            .get(&(gateway, job_id))
            .map(|j| Admitted {
                computation: j.computation.clone(),
                params: j.params.clone(),
                cancel: j.cancel.clone(),
            });
        let job = match (job, s.prepare) {
            (Some(job), _) => job,
            // The gateway's fast path: review exactly as a Prepare would,
            // and run nothing if that refuses.
            (None, Some(p)) => match self.admit(gateway, job_id, p) {
                Ok(job) => job,
                Err((status, why)) => return (status, why, Vec::new()),
            },
            (None, None) => {
                return (
                    Status::UnknownJob,
                    "job is not prepared here".into(),
                    Vec::new(),
                )
            }
        };
        let Admitted {
            computation,
            params,
            cancel,
        } = job;
        let Some(engine) = self.link.current() else {
            return (Status::LinkFailed, "not linked".into(), Vec::new());
        };
        if engine.epoch() != s.epoch {
            return (
                Status::LinkFailed,
                format!("linked at epoch {}, not {}", engine.epoch(), s.epoch),
                Vec::new(),
            );
        }
        // Not cut short by an Abort if the kind says so (`execute`: a peer
        // whose batch computed must still commit it; a stuck one ends at
        // the SMC operation timeout).
        let abortable = computation.abortable();
        let run = async move {
            let mut session = engine.session(s.lane as usize, s.session_id).await?;
            computation.run(gateway, &params, &mut session).await
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(self.timeouts.session, run) => r,
            () = cancel.cancelled(), if abortable => {
                return (
                    Status::Aborted,
                    "the gateway aborted the job".into(),
                    Vec::new(),
                )
            }
        };
        match outcome {
            Ok(Ok(output)) => (Status::Success, String::new(), output),
            Ok(Err(e)) => (Status::Aborted, e.to_string(), Vec::new()),
            Err(_) => (
                Status::Aborted,
                format!("session took longer than {:?}", self.timeouts.session),
                Vec::new(),
            ),
        }
    }
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<PhaseResult, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Control for PeerService {
    type CommandsStream = ResultStream;

    async fn commands(
        &self,
        request: Request<Streaming<Command>>,
    ) -> Result<Response<ResultStream>, tonic::Status> {
        let caller = self.caller(&request)?;
        let mut commands = request.into_inner();
        // Results go out as they finish; the bound gives back-pressure to a
        // gateway that does not read them.
        let (tx, rx) = mpsc::channel::<Result<PhaseResult, tonic::Status>>(256);
        let handler = self.handler.clone();
        tokio::spawn(async move {
            while let Some(next) = commands.next().await {
                let cmd = match next {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(gateway = caller, "command stream broke: {e}");
                        break;
                    }
                };
                if cmd.gateway != caller {
                    let _ = tx
                        .send(Err(tonic::Status::permission_denied(format!(
                            "provider {caller} cannot send commands as gateway {}",
                            cmd.gateway
                        ))))
                        .await;
                    break;
                }
                let handler = handler.clone();
                let tx = tx.clone();
                let span = info_span!("job", gateway = caller, job = cmd.job_id, phase = cmd.phase);
                tokio::spawn(
                    async move {
                        let result = handler.handle(caller, cmd).await;
                        let _ = tx.send(Ok(result)).await;
                    }
                    .instrument(span),
                );
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, tonic::Status> {
        self.caller(&request)?;
        let (link_epoch, link_healthy) = self.handler.link.state();
        Ok(Response::new(HeartbeatReply {
            peer: self.handler.me,
            incarnation: self.incarnation,
            link_epoch,
            link_healthy,
        }))
    }
}
