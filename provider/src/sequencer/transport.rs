//! Raft messages between providers, as bytes inside our own tonic
//! messages (the `Raft` service, [`super::service`]), batched per peer.

use std::collections::HashMap;
use std::time::Duration;

use raft::prelude::Message;
use sharecall_proto::raft::raft_client::RaftClient;
use sharecall_proto::raft::RaftBatch;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tracing::debug;

use super::node::RaftTransport;

/// Most messages sent in one batch.
const BATCH: usize = 256;

/// Sends raft messages to the other providers' `Raft` services (over
/// their control channels).
pub struct GrpcRaftTransport {
    queues: HashMap<u64, mpsc::Sender<Message>>,
}

impl GrpcRaftTransport {
    /// A transport from provider `me` to the given peers (provider id,
    /// control channel); raft id = provider id + 1.
    pub fn new(me: u8, peers: Vec<(u8, Channel)>) -> GrpcRaftTransport {
        let mut queues = HashMap::new();
        for (id, channel) in peers {
            let mut client = RaftClient::new(channel);
            // Bounded: when a peer is down its queue fills and further
            // messages are dropped, which raft tolerates (it retransmits).
            let (tx, mut rx) = mpsc::channel::<Message>(4096);
            queues.insert(u64::from(id) + 1, tx);
            tokio::spawn(async move {
                while let Some(first) = rx.recv().await {
                    let mut messages = vec![prost011::Message::encode_to_vec(&first)];
                    while messages.len() < BATCH {
                        match rx.try_recv() {
                            Ok(m) => messages.push(prost011::Message::encode_to_vec(&m)),
                            Err(_) => break,
                        }
                    }
                    let batch = RaftBatch {
                        from: u32::from(me),
                        messages,
                    };
                    match tokio::time::timeout(Duration::from_secs(2), client.raft(batch)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => debug!(peer = id, "raft send failed: {}", e.message()),
                        Err(_) => debug!(peer = id, "raft send timed out"),
                    }
                }
            });
        }
        GrpcRaftTransport { queues }
    }
}

impl RaftTransport for GrpcRaftTransport {
    fn send(&self, messages: Vec<Message>) {
        for m in messages {
            if let Some(q) = self.queues.get(&m.to) {
                let _ = q.try_send(m);
            }
        }
    }
}

/// Decodes a batch received from provider `from`; messages that claim
/// another sender are dropped (a provider speaks only for itself).
pub fn decode_batch(from: u32, batch: &RaftBatch) -> Vec<Message> {
    batch
        .messages
        .iter()
        .filter_map(|b| <Message as prost011::Message>::decode(b.as_slice()).ok())
        .filter(|m| m.from == u64::from(from) + 1)
        .collect()
}
