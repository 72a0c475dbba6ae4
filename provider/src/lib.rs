//! The sharecall provider.
//!
//! One of three independent providers that together hold the location
//! service as secret shares. `docs/ARCHITECTURE.md` explains each layer;
//! this list is the map.
//!
//! # Layout
//!
//! Layers, inside out (the wire contract is the `sharecall-proto` crate):
//!
//! - [`smc`]: the three-party SMC engine: replicated sharing over the
//!   pinned TLS mesh, the preprocessing pool and its producers, and the
//!   protocols, one file per family (`smc/protocols/`);
//! - [`orchestration`]: the generic gateway/peer core (Prepare, Link,
//!   Session); task kinds plug in through its `Computation` trait and
//!   `Registry`, and it knows no table, log or front end;
//! - [`kinds`]: the task kinds this provider runs, one line per kind;
//! - [`sequencer`]: raft (raft-rs) ordering of requests, its redb storage,
//!   the request lifecycle and the `Raft` gRPC service;
//! - [`execution`]: the `execute` task kind: write and read batches, the
//!   coordinator, catch-up from transcripts (`Transcripts` service) and
//!   read readiness (`Reads` service);
//! - [`sharelog`]: the share log: one hash-chained record per pseudonym
//!   request at every provider, its redb store and indexes, the order of
//!   resolutions (seals), retention and the `log-check` task kind;
//! - [`tables`]: the lookup-table trait and its variants (`list`, `hash`,
//!   `tree`), one file each, registered in `tables::variant`;
//! - [`http`]: the public router (`listen.api`: what an internet client can
//!   reach) and the admin router (`listen.admin`), both from one route table;
//! - [`accounts`]: enrolled account keys and rate limits.
//!
//! Around them:
//!
//! - [`identity`], [`tls`] and [`rpc`]: each provider's key and
//!   certificate, trust in the other two by pinned fingerprint, and tonic
//!   over that TLS;
//! - [`directory`]: the other providers, their health by heartbeat;
//! - [`config`]: the TOML configuration (`docs/provider.example.toml`);
//! - [`metrics`]: Prometheus metrics;
//! - [`server`]: the provider process: puts the layers together and runs
//!   them until shutdown;
//! - [`devcluster`]: three providers in one process (demo and tests).

pub mod accounts;
pub mod config;
pub mod devcluster;
pub mod directory;
pub mod execution;
pub mod http;
pub mod identity;
pub mod kinds;
pub mod metrics;
pub mod orchestration;
pub mod rpc;
pub mod sequencer;
pub mod server;
pub mod sharelog;
pub mod smc;
pub mod tables;
pub mod tls;

/// Whether this build has the test-only fault hooks (cargo feature
/// `fault-injection`; off in release builds, reported by
/// `sharecall-provider build-info`).
pub const FAULT_INJECTION: bool = cfg!(feature = "fault-injection");

#[cfg(all(test, not(feature = "fault-injection")))]
mod no_fault_hooks {
    /// Without the feature the hooks read nothing from the environment.
    #[test]
    fn fault_hooks_are_compiled_out() {
        const { assert!(!super::FAULT_INJECTION) };
    }
}
