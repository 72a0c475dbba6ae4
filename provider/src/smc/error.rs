//! Errors of the SMC engine.
//!
//! Every error names the peer and, where there is one, the session and
//! operation it happened in, so an operator can tell which provider and
//! which step failed without reading the other providers' logs.

use std::time::Duration;

use sharecall_proto::PartyId;

/// Where in a computation an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRef {
    /// The channel (lane or preprocessing stream).
    pub channel: u32,
    /// The session id.
    pub session: u64,
    /// The operation counter within the session.
    pub op: u64,
}

impl std::fmt::Display for OpRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "channel {} session {} op {}",
            self.channel, self.session, self.op
        )
    }
}

/// An SMC failure. Cloneable, so one failure can be handed to every waiter.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SmcError {
    /// Setting up the TLS mesh or the PRG seeds failed.
    #[error("link with {peer} failed: {reason}")]
    Link {
        /// The peer the link failed with.
        peer: PartyId,
        /// What went wrong.
        reason: String,
    },
    /// The connection to a peer is gone (closed, reset or broken by a
    /// protocol violation).
    #[error("connection to {peer} lost ({reason}) at {at}")]
    ConnectionLost {
        /// The peer.
        peer: PartyId,
        /// Why, as far as this side knows.
        reason: String,
        /// The operation that noticed.
        at: OpRef,
    },
    /// A peer did not answer within the operation timeout.
    #[error("timed out after {after:?} waiting for {peer} at {at}")]
    Timeout {
        /// The silent peer.
        peer: PartyId,
        /// The operation that waited.
        at: OpRef,
        /// How long it waited.
        after: Duration,
    },
    /// A peer sent a frame for another session, operation or kind than the
    /// one running: the parties are out of step.
    #[error("{peer} is out of step: expected {expected} at {at}, got {got}")]
    OutOfStep {
        /// The peer.
        peer: PartyId,
        /// Where this party is.
        at: OpRef,
        /// What this party expected (frame kind).
        expected: String,
        /// What arrived (session, op and kind).
        got: String,
    },
    /// A peer sent a frame that cannot be decoded or has the wrong size.
    #[error("{peer} sent a malformed frame at {at}: {reason}")]
    Malformed {
        /// The peer.
        peer: PartyId,
        /// The operation.
        at: OpRef,
        /// What is wrong with it.
        reason: String,
    },
    /// Two copies of an opened value disagree: one of the two named parties
    /// deviated from the protocol. The computation is aborted.
    #[error("inconsistent opening at {at}: {value_from}'s value disagrees with {check_from}'s copy{}", index.map(|i| format!(" (element {i})")).unwrap_or_default())]
    Inconsistent {
        /// The operation.
        at: OpRef,
        /// The party whose value was used.
        value_from: PartyId,
        /// The party whose copy (or digest) it was checked against.
        check_from: PartyId,
        /// The first disagreeing element, where known.
        index: Option<usize>,
    },
    /// A peer aborted the session.
    #[error("{peer} aborted at {at}: {reason}")]
    PeerAborted {
        /// The peer.
        peer: PartyId,
        /// The operation.
        at: OpRef,
        /// The peer's stated reason.
        reason: String,
    },
    /// The preprocessing pool could not deliver material.
    #[error("preprocessing failed: {0}")]
    Preprocessing(String),
    /// The caller passed inconsistent arguments (e.g. batches of different
    /// lengths, an unknown lane, a session id that is not increasing).
    #[error("invalid SMC call: {0}")]
    InvalidInput(String),
    /// A failed session may have left this channel's preprocessed material
    /// out of step with the peers'; the engine must be re-linked.
    #[error("channel {channel} is out of step with its peers ({reason}); re-link the engine")]
    Desynchronised {
        /// The channel concerned.
        channel: u32,
        /// What left it out of step.
        reason: String,
    },
    /// An earlier operation of this session failed; the session is dead.
    #[error("session already failed: {0}")]
    SessionFailed(String),
}

/// Result alias of the engine.
pub type SmcResult<T> = Result<T, SmcError>;
