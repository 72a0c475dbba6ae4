//! The gateway's connection to one peer: a command stream whose results
//! are matched to their waiting commands by (job id, attempt).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sharecall_proto::control::control_client::ControlClient;
use sharecall_proto::control::{Command, PhaseResult, Status};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tracing::warn;

type Pending = Arc<Mutex<HashMap<(u64, u32), oneshot::Sender<PhaseResult>>>>;

/// One open command stream to a peer.
struct Stream {
    tx: mpsc::Sender<Command>,
    pending: Pending,
    alive: Arc<std::sync::atomic::AtomicBool>,
}

/// The gateway's connection to one peer (possibly itself).
pub(super) struct PeerConn {
    /// The peer's provider id.
    pub(super) id: u32,
    client: ControlClient<Channel>,
    stream: tokio::sync::Mutex<Option<Arc<Stream>>>,
}

impl PeerConn {
    /// A connection over `channel` to provider `id`, opened on first use.
    pub(super) fn new(id: u32, channel: Channel) -> PeerConn {
        PeerConn {
            id,
            client: ControlClient::new(channel)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            stream: tokio::sync::Mutex::new(None),
        }
    }

    /// The peer's (link epoch, healthy), via a heartbeat; (0, false) if it
    /// does not answer.
    pub(super) async fn link_state(&self, me: u32, timeout: Duration) -> (u64, bool) {
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
    pub(super) async fn call(&self, cmd: Command, timeout: Duration) -> PhaseResult {
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
