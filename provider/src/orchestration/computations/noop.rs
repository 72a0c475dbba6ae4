//! `noop`: an empty session; measures the orchestration's own overhead.

use futures::future::BoxFuture;

use crate::orchestration::computation::{Computation, ComputationError};
use crate::orchestration::task::TaskKind;
use crate::smc::LaneSession;

/// The kind's wire name.
pub const KIND: TaskKind = TaskKind::new("noop");

/// The `noop` computation: opens the session and returns nothing.
pub struct Noop;

impl Computation for Noop {
    fn run<'a>(
        &'a self,
        _gateway: u32,
        _params: &'a [u8],
        _session: &'a mut LaneSession,
    ) -> BoxFuture<'a, Result<Vec<u8>, ComputationError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
