//! The three-party SMC engine.
//!
//! Replicated 2-out-of-3 sharing over F_p (p = 2^255 − 19), vectorised
//! protocols that handle a whole batch per network round, correlated
//! randomness from pairwise PRG seeds, a background preprocessing pool, and
//! a mesh of persistent mutually authenticated TLS connections.
//!
//! - [`transport`]: the TLS mesh and frame multiplexing;
//! - [`prg`]: pairwise seeds, random and zero sharings without traffic;
//! - [`channel`]: one ordered stream of operations with its inboxes;
//! - [`session`]: the protocols (`open`, `mul`, `mul_open`, `eq_reveal`,
//!   `prf_tag`, `lt_reveal`, `verify`);
//! - [`boolean`]: comparisons of XOR-shared keys (the tree table);
//! - [`preprocessing`]: random squares and bit blocks made in the background;
//! - [`linear`]: local operations on shares;
//! - [`engine`]: lanes, pools and their producers behind one handle;
//! - [`local`]: three engines on loopback, for the demo, benches and tests.

pub mod boolean;
pub mod channel;
pub mod engine;
pub mod error;
pub mod linear;
pub mod local;
pub mod preprocessing;
pub mod prg;
pub mod session;
pub mod transport;

pub use boolean::{Compared, Reveal, COMPARE_ROUNDS};
pub use engine::{Engine, EngineConfig, LaneSession};
pub use error::{OpRef, SmcError, SmcResult};
pub use preprocessing::{PoolSizing, PoolStats};
pub use session::{PrfKey, Session, TAG_BITS};
pub use transport::PeerSpec;
