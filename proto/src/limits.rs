//! The size and time limits of the client API (docs/API.md), which clients
//! check before sending and providers enforce on receipt.

/// Longest lifetime of a registration, in seconds (365 days).
pub const TTL_MAX_S: u64 = 365 * 24 * 3600;

/// Longest plain `extra` data, in bytes.
pub const EXTRA_MAX_LEN: usize = 1024;

/// Most rows in one import part.
pub const IMPORT_MAX_ROWS: usize = 2048;

/// Largest part of a request other than an import (its bytes, before hex).
pub const PART_MAX_LEN: usize = 16 * 1024;

/// Largest import part (its bytes, before hex encoding).
pub const IMPORT_PART_MAX_LEN: usize = 4 << 20;

/// Longest request id.
pub const REQUEST_ID_MAX_LEN: usize = 128;

/// Largest difference between a signed timestamp and the provider's clock.
pub const REQUEST_SKEW_MAX_MS: u64 = 5 * 60 * 1000;
