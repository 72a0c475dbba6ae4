//! The `Raft` gRPC service: raft messages from the other providers into
//! this provider's sequencer (the sending side is [`super::transport`]).

use std::collections::HashMap;

use sharecall_proto::raft::raft_server::Raft;
use sharecall_proto::raft::{RaftAck, RaftBatch};
use tonic::{Request, Response};

use super::transport::decode_batch;
use super::Sequencer;
use crate::identity::Fingerprint;

/// Hosts this provider's sequencer for the other two.
pub struct RaftService {
    sequencer: Sequencer,
    providers: HashMap<Fingerprint, u32>,
}

impl RaftService {
    /// The service for `sequencer`; `providers` maps each pinned
    /// certificate to its provider id.
    pub fn new(sequencer: Sequencer, providers: HashMap<Fingerprint, u32>) -> RaftService {
        RaftService {
            sequencer,
            providers,
        }
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn raft(&self, request: Request<RaftBatch>) -> Result<Response<RaftAck>, tonic::Status> {
        let caller = crate::rpc::caller(&request, &self.providers)?;
        for m in decode_batch(caller, request.get_ref()) {
            self.sequencer.step(m);
        }
        Ok(Response::new(RaftAck {}))
    }
}
