//! Secret-shared lookup tables: pseudonym key → endpoint, in three
//! variants behind one trait ([`Table`]), one file each.
//!
//! Every variant answers the same question for a batch of query keys:
//! which stored entries could hold each key. The batch executor
//! (`crate::execution`) then settles equality with one batched
//! `eq_reveal` and decides every request from opened values only.
//!
//! - [`list`]: every entry is a candidate (no SMC to narrow; O(n)
//!   comparisons in the one `eq_reveal` round);
//! - [`tree`]: entries sorted by key; each level compares the query
//!   against a node's pivots in one batched comparison of XOR-shared keys
//!   (`compare_bits`), so a lookup costs O(log_b n) comparison steps and
//!   reveals only the order of keys; new entries are placed in the order
//!   with one more comparison level;
//! - [`hash`]: `prf_tag` (a keyed PRF with a secret-shared key) picks the
//!   bucket; collisions are settled by `eq_reveal`.
//!
//! A deployment names its variant in configuration; [`Variant`] parses
//! the name through the registry in [`variant`], so a new variant is one
//! new file and one line there.

pub mod error;
pub mod hash;
pub mod index;
pub mod list;
pub mod part;
pub mod tree;
pub mod variant;

use std::collections::HashSet;

use futures::future::BoxFuture;
use sharecall_proto::{BitShare, Share};

use crate::smc::{LaneSession, PrfKey};
pub use error::TableError;
pub use index::{Change, Changes, Data, Index, Meta};
pub use variant::Variant;

/// One query of a batch: a key to find.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    /// This provider's share of the key.
    pub key: Share,
    /// Its XOR share of the key (zero when the part carries none; only
    /// variants that [need it](Table::needs_key_bits) read it).
    pub key_bits: BitShare,
    /// Whether the request writes (an ordered variant then also learns
    /// where the key goes, to place it).
    pub writes: bool,
    /// Import rows: the request they belong to (rows come sorted by key).
    pub run: Option<usize>,
}

/// A new entry of a batch, to be placed by [`Narrowed::place`]: the
/// query that registered it and its slot.
pub type Insert = (usize, u64);

/// Which shares of two keys of one batch the executor compares when a
/// query may meet an earlier write of the same batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyShares {
    /// The field shares (`Query::key`), in the batch's `eq_reveal`.
    Field,
    /// The XOR shares (`Query::key_bits`), with `compare_bits`.
    Bits,
}

/// One table variant, as the batch executor sees it.
///
/// A batch calls, in this order: [`Table::create_key`] (no traffic),
/// [`Table::narrow`] (the variant's SMC step), its own equality round
/// (guided by [`Narrowed::settled`], [`Narrowed::may_equal`] and
/// [`Table::compares`]), and after deciding every request in log order,
/// [`Narrowed::place`] for the new entries. All three providers make the
/// same calls with the same public inputs, so they run the same SMC
/// operations in the same order.
pub trait Table: Send + Sync + 'static {
    /// The name used in configuration and job parameters (all three
    /// providers must agree on it, parameters included).
    fn name(&self) -> String;

    /// Whether parts must carry the XOR share of their key.
    fn needs_key_bits(&self) -> bool {
        false
    }

    /// How the batch compares two of its own queries' keys. A variant
    /// comparing [`KeyShares::Bits`] must settle every stored candidate
    /// while narrowing ([`Narrowed::settled`]): the batch's `eq_reveal`
    /// then holds no pairs, and its results stay in pair order.
    fn compares(&self) -> KeyShares {
        KeyShares::Field
    }

    /// Whether every read at this state is `not_found` without SMC (a
    /// read batch is then answered without a session).
    fn reads_find_nothing(&self, _index: &Index) -> bool {
        false
    }

    /// The secret key share the first batch with queries creates (with no
    /// traffic) when the variant keys its lookups; `None` when it has one
    /// already or needs none.
    fn create_key(
        &self,
        _index: &Index,
        _session: &mut LaneSession,
        _queries: &[Query],
    ) -> Result<Option<PrfKey>, TableError> {
        Ok(None)
    }

    /// Narrows every query key to the stored slots that could hold it.
    /// `key` is the variant's key share (the created one in the batch
    /// that made it).
    fn narrow<'a>(
        &'a self,
        index: &'a Index,
        key: Option<&'a PrfKey>,
        session: &'a mut LaneSession,
        queries: &'a [Query],
    ) -> BoxFuture<'a, Result<Box<dyn Narrowed>, TableError>>;

    /// The order after a replayed batch (no SMC): `deleted` removed, and
    /// each of `inserts` after its predecessor. `None` for a variant that
    /// keeps no order.
    fn replay_order(
        &self,
        _index: &Index,
        _deleted: &HashSet<u64>,
        _inserts: &[(Option<u64>, u64)],
    ) -> Option<Vec<u64>> {
        None
    }
}

/// What a variant's narrowing found for a batch: its own state, read by
/// the batch through these methods only.
pub trait Narrowed: Send + Sync {
    /// Stored slots that could hold query `q`'s key.
    fn candidates(&self, q: usize) -> &[u64];

    /// Whether query `q`'s key equals each of its candidates', when the
    /// narrowing settled that already (then the batch compares only
    /// against earlier writes).
    fn settled(&self, _q: usize) -> Option<&[bool]> {
        None
    }

    /// Whether queries `i` and `j` can have equal keys (only then are
    /// they compared with each other).
    fn may_equal(&self, _i: usize, _j: usize) -> bool {
        true
    }

    /// The PRF tag stored with query `q`'s new entry (0 if unkeyed).
    fn tag(&self, _q: usize) -> u32 {
        0
    }

    /// How many low bits of [`Narrowed::tag`] query `q` computed (0 when
    /// the variant computes no tag); the share log records them.
    fn tag_bits(&self, _q: usize) -> u8 {
        0
    }

    /// Places the batch's surviving new entries in the variant's order
    /// (an SMC step for an ordered variant): the new order, old entries
    /// in `deleted` left out, or `None` for a variant that keeps none.
    fn place<'a>(
        &'a self,
        _index: &'a Index,
        _queries: &'a [Query],
        _inserts: &'a [Insert],
        _deleted: &'a HashSet<u64>,
        _session: &'a mut LaneSession,
    ) -> BoxFuture<'a, Result<Option<Vec<u64>>, TableError>> {
        Box::pin(async { Ok(None) })
    }
}
