//! Catching up without SMC: a provider that missed batches fetches their
//! public transcripts from a peer (the `Transcripts` service, hosted here)
//! and applies them with its own parts.

use std::collections::HashMap;
use std::sync::Arc;

use sharecall_proto::transcripts::transcripts_client::TranscriptsClient;
use sharecall_proto::transcripts::transcripts_server::Transcripts;
use sharecall_proto::transcripts::{TranscriptsReply, TranscriptsRequest};
use tonic::transport::Channel;
use tonic::{Request, Response};
use tracing::{debug, info, warn};

use super::batch::{self, BatchError, Transcript};
use super::{store, store_err, Executor};
use crate::identity::Fingerprint;
use crate::tables::Index;

impl Executor {
    /// Applies peers' transcripts until this provider has executed
    /// `through` (or as far as `peer` has). Every transcript is fetched
    /// from both peers and applied only if they are equal
    /// ([`BatchError::CrossCheck`] names both otherwise), and only if its
    /// records agree with this provider's own log and parts
    /// ([`batch::replay`]): one lying peer cannot make this provider
    /// apply anything the other two did not commit.
    pub(super) async fn catch_up_locked(
        &self,
        index: &mut Index,
        peer: u8,
        through: u64,
    ) -> Result<(), BatchError> {
        let result = self.cross_checked_catch_up(index, peer, through).await;
        if let Err(e @ BatchError::CrossCheck(_)) = &result {
            warn!("catch-up refused: {e}");
            self.set_catch_up_refused(Some(e.to_string()));
        }
        result
    }

    fn set_catch_up_refused(&self, why: Option<String>) {
        *self
            .catch_up_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = why;
    }

    async fn cross_checked_catch_up(
        &self,
        index: &mut Index,
        peer: u8,
        through: u64,
    ) -> Result<(), BatchError> {
        let Some((_, primary)) = self.peers.iter().find(|(id, _)| *id == peer) else {
            return Err(BatchError::Replay(format!("provider {peer} is not a peer")));
        };
        let Some((second_id, second)) = self.peers.iter().find(|(id, _)| *id != peer) else {
            return Err(BatchError::Replay(
                "no second peer to cross-check with".into(),
            ));
        };
        let second_id = *second_id;
        while index.cursor < through {
            let from = index.cursor + 1;
            let got = fetch(primary, peer, from).await?;
            if got.is_empty() {
                return Err(BatchError::Replay(format!(
                    "provider {peer} has no transcript from {from}"
                )));
            }
            let check = fetch(second, second_id, from).await?;
            for (i, t) in got.iter().enumerate() {
                if t.from != index.cursor + 1 {
                    return Err(BatchError::Replay(format!(
                        "provider {peer} sent the batch from {}, expected {}",
                        t.from,
                        index.cursor + 1
                    )));
                }
                let Some(other) = check.get(i) else {
                    return Err(BatchError::CrossCheck(format!(
                        "provider {second_id} has no transcript of batch {}..={} to check provider {peer}'s against",
                        t.from, t.to
                    )));
                };
                if other != t {
                    return Err(BatchError::CrossCheck(format!(
                        "providers {peer} and {second_id} serve different transcripts of batch {}..={}",
                        t.from, t.to
                    )));
                }
                let (times, log_time) = self.effective_times(t.from, t.to, &t.skipped)?;
                if t.log_time_ms != log_time {
                    return Err(BatchError::CrossCheck(format!(
                        "batch {}..={}: the transcript's log time is {} ms, this provider's log gives {log_time} ms",
                        t.from, t.to, t.log_time_ms
                    )));
                }
                let outcome =
                    batch::replay(&self.config.variant, index, t, &times, |id, kind, sub| {
                        self.held(id, kind, sub)
                    })
                    .map_err(|e| match e {
                        // The transcript contradicts this provider's records.
                        BatchError::Replay(why) => BatchError::CrossCheck(format!(
                            "batch {}..={} from providers {peer} and {second_id} contradicts this provider's own records: {why}",
                            t.from, t.to
                        )),
                        e => e,
                    })?;
                // The share log's records come from this provider's own
                // parts, as in a live batch.
                let requests = self.load(t.from, t.to, &t.skipped)?;
                self.commit_replayed(index, outcome, &requests)?;
                self.set_catch_up_refused(None);
                info!(
                    from = t.from,
                    to = t.to,
                    peer,
                    checked_with = second_id,
                    "caught up from a transcript (cross-checked)"
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
        let mut ts = store::transcripts(self.db(), from, limit.clamp(1, 256)).map_err(store_err)?;
        super::fault::tamper_served(&mut ts);
        ts.iter()
            .map(|t| serde_json::to_vec(t).map_err(store_err))
            .collect()
    }

    /// After a failed job: peers that committed batches this coordinator
    /// did not (it crashed before its commit) would refuse every batch
    /// from here as "ahead", and which peer's error the gateway reports
    /// varies; so ask each peer for transcripts past our cursor.
    pub(super) async fn catch_up_after_failure(&self) {
        for (peer, _) in &self.peers {
            if let Err(e) = self.catch_up(*peer, u64::MAX).await {
                debug!("catch-up from provider {peer}: {e}");
            }
        }
    }
}

/// The `Transcripts` gRPC service: this provider's transcripts, for a peer
/// catching up.
pub struct TranscriptsService {
    executor: Arc<Executor>,
    providers: HashMap<Fingerprint, u32>,
}

impl TranscriptsService {
    /// The service for `executor`; `providers` maps each pinned certificate
    /// to its provider id.
    pub fn new(
        executor: Arc<Executor>,
        providers: HashMap<Fingerprint, u32>,
    ) -> TranscriptsService {
        TranscriptsService {
            executor,
            providers,
        }
    }
}

#[tonic::async_trait]
impl Transcripts for TranscriptsService {
    async fn transcripts(
        &self,
        request: Request<TranscriptsRequest>,
    ) -> Result<Response<TranscriptsReply>, tonic::Status> {
        crate::rpc::caller(&request, &self.providers)?;
        let r = request.get_ref();
        let transcripts = self
            .executor
            .transcripts(r.from, r.limit as usize)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(Response::new(TranscriptsReply { transcripts }))
    }
}

/// Up to 64 transcripts from `from` as provider `id` serves them.
async fn fetch(
    client: &TranscriptsClient<Channel>,
    id: u8,
    from: u64,
) -> Result<Vec<Transcript>, BatchError> {
    let reply = client
        .clone()
        .transcripts(TranscriptsRequest { from, limit: 64 })
        .await
        .map_err(|e| BatchError::Replay(format!("provider {id}: {}", e.message())))?
        .into_inner();
    reply
        .transcripts
        .iter()
        .map(|bytes| {
            serde_json::from_slice(bytes)
                .map_err(|e| BatchError::Replay(format!("provider {id}'s transcript: {e}")))
        })
        .collect()
}
