//! The share log (DESIGN.md layer 6): one record per pseudonym request of
//! every kind, at every provider, append-only, durable and hash-chained.
//!
//! - [`record`]: a record (agreed fields and this provider's shares) and
//!   its byte encoding;
//! - [`chain`]: the blake3 chain over the agreed fields, identical at the
//!   three providers;
//! - [`store`]: the records, their indexes (log time, origin account, PRF
//!   tag) and the chain state in redb; batched reads for SMC scans;
//! - [`order`]: how resolutions, which bypass raft, get one order at all
//!   three (read batches held until a write batch seals them);
//! - [`build`]: the records an executed batch leaves;
//! - [`purge`]: retention, as a deterministic purge that is itself logged;
//! - [`check`]: the `log-check` task kind that compares the three heads.
//!
//! The executor appends a write batch's records (and the read batches it
//! seals) in the batch's one redb transaction (`execution/mod.rs`).

pub mod build;
pub mod chain;
pub mod check;
pub mod order;
pub mod purge;
pub mod record;
pub mod store;

use std::time::Duration;

pub use check::{check_heads, LogCheck, LOG_CHECK};
pub use record::{Record, RecordKind};

/// Share-log settings (from `[log]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Whether records are written at all (all three must agree).
    pub enabled: bool,
    /// How long records are kept (by log time).
    pub retention: Duration,
    /// How long finished read batches may wait for a seal before the
    /// coordinator logs a sweep to seal them.
    pub seal_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            retention: DEFAULT_RETENTION,
            seal_interval: DEFAULT_SEAL_INTERVAL,
        }
    }
}

/// Default retention: 180 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(180 * 24 * 3600);

/// Default seal interval: 1 s.
pub const DEFAULT_SEAL_INTERVAL: Duration = Duration::from_secs(1);
