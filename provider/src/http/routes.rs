//! The route table: every HTTP route the provider serves, as data.
//!
//! [`PUBLIC`] is everything an internet client can reach (`listen.api`);
//! [`ADMIN`] is the operator endpoint (`listen.admin`). Each router is
//! built by walking its table, and the OpenAPI drift test compares both
//! tables with `docs/openapi.json`, so adding a route here without
//! documenting it fails the tests.

use axum::routing::MethodFilter;

/// An HTTP method a route answers (a GET route also answers HEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET` (and `HEAD`).
    Get,
    /// `POST`.
    Post,
}

impl Method {
    /// The axum filter for this method.
    pub fn filter(self) -> MethodFilter {
        match self {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
        }
    }

    /// The operation key in an OpenAPI path item.
    pub fn openapi_key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

/// One route: a method on a path (axum syntax, `:name` for a segment),
/// served by the handler `op` names.
#[derive(Debug, Clone, Copy)]
pub struct Route<Op> {
    /// The method.
    pub method: Method,
    /// The path, `/v1/requests/:id` style.
    pub path: &'static str,
    /// The handler, which also names the OpenAPI operation.
    pub op: Op,
}

/// What an OpenAPI document calls an operation.
pub trait Operation: Copy {
    /// Its `operationId` in `docs/openapi.json`.
    fn operation_id(self) -> &'static str;
}

/// The public handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicOp {
    /// `POST /v1/requests`: one provider's part of a signed request.
    SubmitPart,
    /// `GET /v1/requests/{id}`: a request's outcome here.
    RequestOutcome,
    /// `POST /v1/accounts`: enroll an account key.
    EnrollAccount,
    /// `GET /v1/openapi.json`: the API document.
    OpenApi,
}

impl Operation for PublicOp {
    fn operation_id(self) -> &'static str {
        match self {
            PublicOp::SubmitPart => "submitPart",
            PublicOp::RequestOutcome => "getRequestOutcome",
            PublicOp::EnrollAccount => "enrollAccount",
            PublicOp::OpenApi => "getOpenApi",
        }
    }
}

/// The operator handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOp {
    /// `GET /v1/admin/peers`: link state and peer health.
    Peers,
    /// `POST /v1/admin/jobs`: run a task through the orchestration core.
    SubmitJob,
    /// `GET /metrics`: OpenMetrics text.
    Metrics,
    /// `GET /v1/admin/raft`: the sequencer's raft status.
    Raft,
    /// `GET /v1/admin/table`: the table's public state.
    Table,
    /// `POST /v1/admin/sequence`: order a request id through raft.
    Sequence,
    /// `GET /v1/admin/sequence`: applied request ids in order.
    Applied,
    /// `GET /v1/admin/log/head`: the share log's head.
    LogHead,
    /// `GET /v1/admin/log/check`: the three share-log chains compared.
    LogCheck,
    /// `GET /v1/admin/log`: share-log records (agreed fields only).
    LogRecords,
}

impl Operation for AdminOp {
    fn operation_id(self) -> &'static str {
        match self {
            AdminOp::Peers => "adminPeers",
            AdminOp::SubmitJob => "adminSubmitJob",
            AdminOp::Metrics => "metrics",
            AdminOp::Raft => "adminRaft",
            AdminOp::Table => "adminTable",
            AdminOp::Sequence => "adminSequence",
            AdminOp::Applied => "adminApplied",
            AdminOp::LogHead => "adminLogHead",
            AdminOp::LogCheck => "adminLogCheck",
            AdminOp::LogRecords => "adminLogRecords",
        }
    }
}

const fn route<Op>(method: Method, path: &'static str, op: Op) -> Route<Op> {
    Route { method, path, op }
}

/// Every route of the public API (`listen.api`), the whole of what an
/// internet client can reach.
pub const PUBLIC: &[Route<PublicOp>] = &[
    route(Method::Post, "/v1/requests", PublicOp::SubmitPart),
    route(Method::Get, "/v1/requests/:id", PublicOp::RequestOutcome),
    route(Method::Post, "/v1/accounts", PublicOp::EnrollAccount),
    route(Method::Get, "/v1/openapi.json", PublicOp::OpenApi),
];

/// Every route of the admin endpoint (`listen.admin`). Order matters
/// where a path has several methods: it is the order of the `Allow`
/// header of a 405.
pub const ADMIN: &[Route<AdminOp>] = &[
    route(Method::Get, "/v1/admin/peers", AdminOp::Peers),
    route(Method::Post, "/v1/admin/jobs", AdminOp::SubmitJob),
    route(Method::Get, "/metrics", AdminOp::Metrics),
    route(Method::Get, "/v1/admin/raft", AdminOp::Raft),
    route(Method::Get, "/v1/admin/table", AdminOp::Table),
    route(Method::Post, "/v1/admin/sequence", AdminOp::Sequence),
    route(Method::Get, "/v1/admin/sequence", AdminOp::Applied),
    route(Method::Get, "/v1/admin/log/head", AdminOp::LogHead),
    route(Method::Get, "/v1/admin/log/check", AdminOp::LogCheck),
    route(Method::Get, "/v1/admin/log", AdminOp::LogRecords),
];
