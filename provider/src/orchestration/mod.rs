//! The orchestration core (FlexSMC's gateway/peer model).
//!
//! A front end submits a *task* (what it wants, signed by the requester) to
//! the [`gateway::Gateway`] of the provider it talks to. The gateway turns it
//! into a *job* and drives the three peers (the providers, itself included)
//! through its phases over command/control streams:
//!
//! 1. **Prepare**: every peer reviews the signed task with its
//!    [`policy`] and may refuse (`DENIED`);
//! 2. **Link**: the SMC mesh and PRG seeds; reused while healthy, redone
//!    (at a new epoch) after a peer restart or a failure;
//! 3. **Session**: the computation itself, on one SMC lane, with the same
//!    session id at all three peers: whatever the task kind registered in
//!    the provider's [`Registry`] runs (a [`Computation`]);
//! 4. **Finish** or **Abort** on every peer.
//!
//! Every peer answers every phase with a status carrying the seed's error
//! classes ([`status`]). The peer side lives in [`peer`], the SMC link
//! state in [`link`], task descriptions and signatures in [`task`], the
//! core's own kinds (`secure-sum`, `noop`) in [`computations`].
//!
//! The core knows no task kind by itself and imports nothing from the
//! layers above it (execution, tables, sequencer): those register their
//! computations, and host their own gRPC services beside [`PeerService`].

pub mod computation;
pub mod computations;
pub mod gateway;
pub mod link;
pub mod peer;
pub mod policy;
pub mod registry;
pub mod status;
pub mod task;

pub use computation::{Computation, ComputationError, Refusal};
pub use gateway::{Gateway, GatewayConfig, JobError, JobPhase, JobReport};
pub use link::LinkManager;
pub use peer::{PeerService, PeerTimeouts};
pub use policy::{AllowedKinds, PeerPolicy, Policies, SignaturePolicy};
pub use registry::Registry;
pub use status::ErrorClass;
pub use task::{RequesterKey, TaskKind};
