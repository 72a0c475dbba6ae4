//! The public router (`listen.api`): what an internet client can reach.
//!
//! Exactly the routes of [`routes::PUBLIC`](super::routes::PUBLIC):
//! `POST /v1/requests` (a signed request part), `GET /v1/requests/{id}`
//! (its outcome), `POST /v1/accounts` (enrollment) and
//! `GET /v1/openapi.json`. Nothing else answers but `404 not_found`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use super::routes::{PublicOp, PUBLIC};
use super::{accounts, openapi, requests};
use crate::accounts::Accounts;
use crate::execution::Executor;
use crate::sequencer::Sequencer;

/// What the public handlers share: no gateway, link or peer directory.
pub struct PublicState {
    /// This provider's id.
    pub me: u8,
    /// The table's executor: answers and read batches.
    pub executor: Arc<Executor>,
    /// Enrollment, signatures and rate limits.
    pub accounts: Arc<Accounts>,
    /// The raft sequencer: durable parts and their order.
    pub sequencer: Sequencer,
    /// How long a request waits for execution before a 202.
    pub answer_wait: Duration,
}

/// The public routes, served with `state`.
pub fn router(state: Arc<PublicState>) -> Router {
    routes().with_state(state)
}

/// The routes of the table, before their state.
pub(super) fn routes() -> Router<Arc<PublicState>> {
    super::build(PUBLIC, handler)
}

/// The handler of `op` for `method`.
fn handler(op: PublicOp, method: MethodFilter) -> MethodRouter<Arc<PublicState>> {
    match op {
        // Import parts are large: this route has its own body limit.
        PublicOp::SubmitPart => on(method, requests::submit_part)
            .layer(DefaultBodyLimit::max(requests::MAX_REQUEST_BODY)),
        PublicOp::RequestOutcome => on(method, requests::request_outcome),
        PublicOp::EnrollAccount => on(method, accounts::enroll),
        PublicOp::OpenApi => on(method, openapi::openapi),
    }
}
