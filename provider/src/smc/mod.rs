//! The three-party SMC engine.
//!
//! Replicated 2-out-of-3 sharing over F_p (p = 2^255 − 19), vectorised
//! protocols that handle a whole batch per network round, correlated
//! randomness from pairwise PRG seeds, a background preprocessing pool, and
//! a mesh of persistent mutually authenticated TLS connections.
//!
//! From the bottom up (each module imports only modules above it here):
//!
//! - [`error`]: typed errors naming the step that failed;
//! - [`prg`]: pairwise seeds, random and zero sharings without traffic;
//! - [`linear`]: local operations on shares;
//! - [`pool`]: the FIFO of preprocessed items a lane draws from;
//! - [`bit_block`]: the preprocessed material of one `lt_reveal`;
//! - [`transport`]: the TLS mesh and frame multiplexing;
//! - [`channel`]: one ordered stream of operations with its inboxes;
//! - [`session`]: the state machine every protocol runs on (rounds, frame
//!   matching, failure, opening digests);
//! - [`protocols`]: the protocols, one file per family (arithmetic, PRF,
//!   comparison, boolean, preprocessing);
//! - `producer`: the background tasks that fill the pools;
//! - [`engine`]: lanes, pools and their producers behind one handle;
//! - [`local`]: three engines on loopback, for the demo, benches and tests.

pub mod bit_block;
pub mod channel;
pub mod engine;
pub mod error;
pub mod linear;
pub mod local;
pub mod pool;
pub mod prg;
mod producer;
pub mod protocols;
pub mod session;
pub mod transport;

pub use engine::{Engine, EngineConfig, LaneSession};
pub use error::{OpRef, SmcError, SmcResult};
pub use pool::{PoolSizing, PoolStats};
pub use protocols::boolean::{Compared, Reveal, COMPARE_ROUNDS};
pub use protocols::prf::{PrfKey, TAG_BITS};
pub use session::Session;
pub use transport::PeerSpec;
