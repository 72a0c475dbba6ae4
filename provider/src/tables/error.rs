//! Why a table variant's step failed.

use crate::smc::SmcError;

/// A failure of [`Table`](super::Table) or [`Narrowed`](super::Narrowed).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TableError {
    /// The SMC protocol failed.
    #[error(transparent)]
    Smc(#[from] SmcError),
    /// A keyed variant was asked to narrow without its key share.
    #[error("the table has no key share to narrow with")]
    NoKey,
    /// The table has entries but no key share (it was lost, or the
    /// entries were written without one): the lookups cannot be keyed.
    #[error("the table has entries but no PRF key share")]
    LostKey,
    /// The in-memory order names a position without an entry.
    #[error("order position {0} has no entry")]
    NoEntryAt(usize),
    /// A new entry to place was not located by the narrowing.
    #[error("query {0} was not placed in its leaf")]
    NotLocated(usize),
}
