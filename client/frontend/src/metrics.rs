//! Prometheus metrics. SKELETON: the server helper fills this in
//! (prometheus-client; counters are shared handles, so the core increments
//! them directly).

use std::time::Duration;

/// The front end's metrics.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    _todo: (),
}

impl Metrics {
    /// Fresh metrics, registered.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// A request arrived (method as written, upper case).
    pub fn request(&self, _method: &str) {}

    /// A response was sent or relayed (for `method`, status → class `2xx`).
    pub fn response(&self, _method: &str, _status: u16) {}

    /// Transactions now alive.
    pub fn set_transactions(&self, _n: usize) {}

    /// A location job finished (`kind` is `resolve` or `publish`).
    pub fn location(&self, _kind: &'static str, _ok: bool, _elapsed: Duration) {}

    /// The text exposition format.
    pub fn encode(&self) -> String {
        String::new()
    }
}
