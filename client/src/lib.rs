//! The sharecall client library.
//!
//! Clients never hand a plaintext pseudonym or endpoint to a provider: they
//! secret-share what they store and reconstruct (with a consistency check
//! across all three providers) what they get back. [`registration`] holds
//! that client-side half of the protocol; [`parts`] turns shares into the
//! per-provider parts of docs/API.md (whose JSON is defined once, in
//! [`sharecall_proto::part`]) and parses the providers' answers;
//! [`account`] keeps the ed25519 account key; [`client`] is the async REST
//! client that signs, sends, polls, retries and checks; [`import`] reads
//! bulk-import CSV files and their resume state.
//!
//! The `sharecall` command line tool is the `sharecall-cli` package
//! (client/cli), so this library does not depend on the provider.

pub mod account;
pub mod client;
pub mod import;
pub mod parts;
pub mod registration;

pub use account::{AccountKey, KeyError};
pub use client::{Client, Error, ImportOutcome, ImportRow, Outcome, ProviderError, Resolution};
pub use parts::{Kind, Part, ResultCode};
