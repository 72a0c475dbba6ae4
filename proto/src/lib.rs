//! The sharecall wire contract.
//!
//! Everything two parties must agree on bit for bit lives here and nowhere
//! else: the prime field and its encoding ([`field`]), replicated secret
//! sharing and checked reconstruction ([`sharing`]), how pseudonyms and
//! endpoints become field elements ([`encoding`]), how shares travel as
//! bytes ([`layout`]), the client API's part JSON ([`part`]) and public fields ([`public`]), result codes
//! ([`answer`]), limits ([`limits`]) and clock ([`clock`]), what a client
//! signs ([`request`]), how answers are sealed to the client ([`seal`]), and the protobuf messages exchanged between
//! providers ([`wire`]). Clients, providers and the LEA tool all depend on
//! this crate.

pub mod answer;
pub mod bits;
pub mod clock;
pub mod encoding;
pub mod field;
pub mod layout;
pub mod limits;
pub mod part;
pub mod public;
pub mod request;
pub mod seal;
pub mod sharing;

/// Protobuf messages (prost) of the provider-to-provider SMC channel.
pub mod wire {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/sharecall.smc.v1.rs"));
}

/// Protobuf messages and the tonic service of the command/control plane
/// between providers (orchestration: commands and heartbeats).
pub mod control {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("sharecall.control.v1");
}

/// The service by which providers tell the raft leader which resolutions
/// they hold (resolutions are ordered by the leader's batches, not logged).
pub mod reads {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("sharecall.reads.v1");
}

/// The service by which the sequencers exchange raft messages.
pub mod raft {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("sharecall.raft.v1");
}

/// The service by which a provider that missed batches fetches their
/// public transcripts from a peer.
pub mod transcripts {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("sharecall.transcripts.v1");
}

/// Protobuf messages of the raft log's payload (the sequencer).
pub mod sequencer {
    #![allow(missing_docs, clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/sharecall.sequencer.v1.rs"));
}

pub use bits::BitShare;
pub use field::{FieldError, Fp, Legendre};
pub use sharing::{PartyId, Share, ShareError, ShareVec};
