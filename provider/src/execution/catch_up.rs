//! Catching up without SMC: a provider that missed batches fetches their
//! public transcripts from a peer (the `Transcripts` service, hosted here)
//! and applies them with its own parts.

use std::collections::HashMap;
use std::sync::Arc;

use sharecall_proto::transcripts::transcripts_server::Transcripts;
use sharecall_proto::transcripts::{TranscriptsReply, TranscriptsRequest};
use tonic::{Request, Response};
use tracing::{debug, info};

use super::batch::{self, BatchError, Transcript};
use super::{store, store_err, Executor};
use crate::identity::Fingerprint;
use crate::tables::Index;

impl Executor {
    /// Applies peers' transcripts until this provider has executed
    /// `through` (or as far as `peer` has).
    pub(super) async fn catch_up_locked(
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
