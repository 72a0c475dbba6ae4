//! The HTTP layer: two routers on two listeners.
//!
//! - [`public`]: what an internet client can reach on `listen.api`, over
//!   TLS ([`tls`]) unless `listen.api_plaintext_insecure` (submit a
//!   request part, fetch its outcome, enroll an account, read the OpenAPI
//!   document). Its state, [`PublicState`], holds no gateway, link or peer
//!   directory: a client request cannot reach the orchestration core
//!   except through the sequencer and the executor.
//! - [`admin`]: the operator endpoint on `listen.admin` (peers, jobs,
//!   metrics, raft, table, sequence), unauthenticated and loopback by
//!   default, with [`AdminState`].
//!
//! Both routers are built from one table, [`routes`], which the OpenAPI
//! drift test also compares with `docs/openapi.json`: a route exists in a
//! router exactly when it is in the table. Errors are JSON
//! `{"error": {"code", "message"}}` ([`error`]).

pub mod accounts;
pub mod admin;
pub mod error;
pub mod openapi;
pub mod public;
pub mod request_id;
pub mod requests;
pub mod routes;
pub mod signed;
pub mod tls;

pub use admin::AdminState;
pub use public::PublicState;

/// Largest accepted request body, unless a route sets its own limit.
const MAX_BODY: usize = 64 * 1024;

/// A router serving exactly `table`, each route by `handler(op, method)`,
/// with the common fallback (`404 not_found`) and body limit.
fn build<S, Op>(
    table: &[routes::Route<Op>],
    handler: impl Fn(Op, axum::routing::MethodFilter) -> axum::routing::MethodRouter<S>,
) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
    Op: Copy,
{
    table
        .iter()
        .fold(axum::Router::new(), |router, r| {
            // A second method on a known path merges into its method router.
            router.route(r.path, handler(r.op, r.method.filter()))
        })
        .fallback(error::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

#[cfg(test)]
mod tests;
