//! The sharecall provider.
//!
//! One of three independent providers that together hold the location
//! service as secret shares. The layers, inside out (see
//! `docs/ARCHITECTURE.md`):
//!
//! - [`smc`]: the three-party SMC engine (replicated sharing, vectorised
//!   protocols, preprocessing) over persistent mutually authenticated TLS;
//! - [`identity`] and [`tls`]: each provider's key and certificate, and
//!   trust in the other two by pinned fingerprint.

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
        assert!(!super::FAULT_INJECTION);
    }
}
