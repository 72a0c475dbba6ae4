//! The sequencer: the three providers agree on one order of requests with
//! raft (tikv raft-rs), persisted in redb.
//!
//! - [`storage`]: raft's log, hard state and snapshots on disk;
//! - [`applied`]: the state machine — which request ids were applied, in
//!   which order, and a hash chain over them that the three providers can
//!   compare;
//! - [`node`]: the raft Ready loop, proposals, and the transport hook;
//! - [`transport`] and [`service`]: raft messages to and from the other
//!   providers (this layer's own gRPC service).
//!
//! The log holds request metadata only (`proto/sequencer.proto`), never
//! shares.

pub mod applied;
pub mod lifecycle;
pub mod node;
pub mod service;
pub mod storage;
pub mod transport;

pub use node::{RaftStatus, Sequencer, SequencerConfig, SequencerError};
