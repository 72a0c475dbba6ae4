//! The sharecall client library.
//!
//! Clients never hand a plaintext pseudonym or endpoint to a provider: they
//! secret-share what they store and reconstruct (with a consistency check
//! across all three providers) what they get back. [`registration`] holds
//! that client-side half of the protocol.

pub mod registration;
