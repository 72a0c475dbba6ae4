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
