//! The Session phase's computations: what a task kind runs on its SMC
//! session, behind one trait so that the core knows no kind by itself.
//!
//! A kind is one type implementing [`Computation`] plus one line that
//! registers it in the provider's [`super::Registry`].

use futures::future::BoxFuture;
use sharecall_proto::control::Status;

use crate::smc::{LaneSession, SmcError};

/// One task kind's part at a peer.
pub trait Computation: Send + Sync {
    /// Reviews a task's parameters at Prepare (and at the inline Prepare
    /// of the fast path), before any peer computes. The default accepts
    /// all.
    fn review(&self, params: &[u8]) -> Result<(), Refusal> {
        let _ = params;
        Ok(())
    }

    /// Runs the computation on `session` for the job of gateway `gateway`;
    /// returns the encoded public output, which all three peers must
    /// agree on.
    fn run<'a>(
        &'a self,
        gateway: u32,
        params: &'a [u8],
        session: &'a mut LaneSession,
    ) -> BoxFuture<'a, Result<Vec<u8>, ComputationError>>;

    /// Whether the gateway's Abort may cut a running session short (it
    /// always stops sessions that have not started). The default is yes;
    /// a kind that must finish what it began (say, commit a batch the
    /// others committed) says no and ends at the SMC op timeout at worst.
    fn abortable(&self) -> bool {
        true
    }
}

/// Why a computation's review refused a task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The parameters are not valid for the kind (`BAD_REQUEST`).
    #[error("bad parameters: {0}")]
    BadParams(String),
    /// Valid, but this provider will not compute it (`DENIED`).
    #[error("{0}")]
    Denied(String),
}

impl Refusal {
    /// The status a peer answers the refused command with.
    pub fn status(&self) -> Status {
        match self {
            Refusal::BadParams(_) => Status::BadRequest,
            Refusal::Denied(_) => Status::Denied,
        }
    }
}

/// Why a computation failed in its session.
#[derive(Debug, thiserror::Error)]
pub enum ComputationError {
    /// The SMC protocol failed.
    #[error(transparent)]
    Smc(#[from] SmcError),
    /// The parameters turned out invalid when the session ran.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The kind's own failure, in its own error type.
    #[error(transparent)]
    Kind(Box<dyn std::error::Error + Send + Sync>),
}

impl ComputationError {
    /// Wraps a kind's own error.
    pub fn kind(e: impl std::error::Error + Send + Sync + 'static) -> ComputationError {
        ComputationError::Kind(Box::new(e))
    }
}
