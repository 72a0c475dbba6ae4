//! Secret-shared lookup tables: pseudonym key → endpoint, in three
//! variants behind one trait ([`Lookup`]).
//!
//! Every variant answers the same question for a batch of query keys:
//! which stored entries could hold each key. The batch executor
//! (`crate::execution`) then settles equality with one batched
//! `eq_reveal` and decides every request from opened values only.
//!
//! - `Variant::List`: every entry is a candidate (no SMC to narrow;
//!   O(n) comparisons in the one `eq_reveal` round);
//! - `Variant::Tree`: entries sorted by key; each level compares the
//!   query against a node's pivots in one batched comparison of XOR-shared
//!   keys (`compare_bits`), so a lookup costs O(log_b n) comparison steps
//!   and reveals only the order of keys;
//! - `Variant::Hash`: `prf_tag` (a keyed PRF with a secret-shared key)
//!   picks the bucket; collisions are settled by `eq_reveal`.

pub mod index;
pub mod part;
mod tree;

use std::str::FromStr;

use sharecall_proto::{BitShare, Share, ShareVec};

use crate::smc::{LaneSession, PrfKey, SmcError, TAG_BITS};
pub use index::{Change, Changes, Data, Index, Meta};

/// Fanout of `"tree"`: comparisons on XOR shares are cheap, so wide nodes
/// win; at 1 000 000 entries 1024 needs one pivot level and the leaf
/// (docs/BENCHMARKS.md).
pub const DEFAULT_FANOUT: usize = 1024;

/// Which table a deployment uses (all three providers must agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// One batched comparison against every entry.
    List,
    /// Sorted, `fanout` pivots per node.
    Tree {
        /// Children per node (≥ 2).
        fanout: usize,
    },
    /// PRF tag selects the bucket.
    Hash,
}

impl Variant {
    /// The name used in configuration and job parameters.
    pub fn name(self) -> String {
        match self {
            Variant::List => "list".into(),
            Variant::Tree { fanout } => format!("tree/{fanout}"),
            Variant::Hash => "hash".into(),
        }
    }
}

impl FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "list" => Ok(Variant::List),
            "hash" => Ok(Variant::Hash),
            "tree" => Ok(Variant::Tree {
                fanout: DEFAULT_FANOUT,
            }),
            other => match other.strip_prefix("tree/").map(str::parse::<usize>) {
                Some(Ok(f)) if (2..=4096).contains(&f) => Ok(Variant::Tree { fanout: f }),
                _ => Err(format!(
                    "unknown table variant {other:?} (list, hash, tree or tree/<fanout 2..=4096>)"
                )),
            },
        }
    }
}

/// One query of a batch: a key to find.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    /// This provider's share of the key.
    pub key: Share,
    /// Its XOR share of the key (tree).
    pub key_bits: BitShare,
    /// Whether the request writes (the tree then also reveals where the
    /// key goes among its leaf's entries).
    pub writes: bool,
    /// Import rows: the request they belong to (rows come sorted by key).
    pub run: Option<usize>,
}

/// Where each query of a batch may be found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowed {
    /// Per query: stored slots that could hold its key.
    pub candidates: Vec<Vec<u64>>,
    /// Hash: per query, the low `tag_widths` bits of its PRF tag, the
    /// others 0 (empty for other variants).
    pub tags: Vec<u32>,
    /// Hash: per query, how many low bits of its tag were computed (all
    /// [`TAG_BITS`] for writes, whose tags are stored).
    pub tag_widths: Vec<usize>,
    /// Tree: per query, the range of `Index::order` it falls in.
    pub ranges: Vec<(usize, usize)>,
    /// Tree: per query, whether its key equals each candidate's (settled
    /// in the leaf, so the batch needs no `eq_reveal` for them).
    pub equal: Vec<Option<Vec<bool>>>,
    /// Tree: per write query, how many entries of its range are below it.
    pub below: Vec<Option<usize>>,
    /// Tree: per query, its import run when the run was checked strictly
    /// increasing (rows of one such run are distinct and in order).
    pub sorted_run: Vec<Option<usize>>,
}

impl Narrowed {
    /// Whether queries `i` and `j` can have equal keys (only then are they
    /// compared with each other): for the hash table, their tags match;
    /// for the tree, they share a leaf range and not a sorted run.
    pub fn may_equal(&self, i: usize, j: usize) -> bool {
        if let (Some(a), Some(b)) = (self.tags.get(i), self.tags.get(j)) {
            let width = self.tag_widths.get(i).min(self.tag_widths.get(j));
            let mask = width.map_or(u32::MAX, |&w| index::low_mask(w));
            return (a ^ b) & mask == 0;
        }
        if let (Some(a), Some(b)) = (self.ranges.get(i), self.ranges.get(j)) {
            let same_run = matches!(
                (self.sorted_run.get(i), self.sorted_run.get(j)),
                (Some(Some(x)), Some(Some(y))) if x == y
            );
            // An appended run's rows hold the empty range at the end
            // instead of the last leaf, where their keys would descend.
            let appended_meets = |x: &(usize, usize), y: &(usize, usize)| x.0 == x.1 && y.1 == x.1;
            return (a == b || appended_meets(a, b) || appended_meets(b, a)) && !same_run;
        }
        true
    }

    /// Tree: whether `i` is known to come before `j` without comparing
    /// (both rows of one sorted run).
    pub fn known_order(&self, i: usize, j: usize) -> Option<bool> {
        match (self.sorted_run.get(i), self.sorted_run.get(j)) {
            (Some(Some(x)), Some(Some(y))) if x == y => Some(i < j),
            _ => None,
        }
    }
}

/// One table variant's lookup step.
pub trait Lookup {
    /// Narrows every query key to the stored slots that could hold it.
    fn narrow(
        &self,
        index: &Index,
        prf_key: Option<&PrfKey>,
        session: &mut LaneSession,
        queries: &[Query],
    ) -> impl std::future::Future<Output = Result<Narrowed, SmcError>> + Send;
}

impl Lookup for Variant {
    async fn narrow(
        &self,
        index: &Index,
        prf_key: Option<&PrfKey>,
        session: &mut LaneSession,
        queries: &[Query],
    ) -> Result<Narrowed, SmcError> {
        match *self {
            Variant::List => Ok(list_narrow(index, queries.len())),
            Variant::Hash if queries.is_empty() => Ok(Narrowed::default()),
            Variant::Hash => {
                let key = prf_key.ok_or_else(|| {
                    SmcError::InvalidInput("the hash table has no PRF key".into())
                })?;
                hash_narrow(index, key, session, queries).await
            }
            Variant::Tree { fanout } => tree::narrow(index, fanout, session, queries).await,
        }
    }
}

/// List: every entry, in slot order.
fn list_narrow(index: &Index, n: usize) -> Narrowed {
    let all: Vec<u64> = index.meta.keys().copied().collect();
    Narrowed {
        candidates: vec![all; n],
        ..Narrowed::default()
    }
}

/// Hash: one `prf_tag` round; the bucket of each tag.
///
/// Writes compute all [`TAG_BITS`] (their tags are stored); reads only
/// [`read_tag_width`] of them, enough to keep their buckets small at the
/// table's size.
async fn hash_narrow(
    index: &Index,
    key: &PrfKey,
    session: &mut LaneSession,
    queries: &[Query],
) -> Result<Narrowed, SmcError> {
    let writes = queries.iter().filter(|q| q.writes).count();
    let read_width = read_tag_width(index.meta.len() + writes);
    let widths: Vec<usize> = queries
        .iter()
        .map(|q| if q.writes { TAG_BITS } else { read_width })
        .collect();
    let keys: ShareVec = queries.iter().map(|q| q.key).collect();
    let tags = session.prf_tag_prefix(key, &keys, &widths).await?;
    let candidates = tags
        .iter()
        .zip(&widths)
        .map(|(&t, &w)| index.buckets.matching(t, w))
        .collect();
    Ok(Narrowed {
        candidates,
        tags,
        tag_widths: widths,
        ..Narrowed::default()
    })
}

/// Tag bits a read computes beyond the table size's bit length: one, so
/// the expected number of other keys sharing its tag stays under 1/2.
/// Each bit costs every provider a Legendre symbol (about 2 µs), each
/// extra candidate one element in the `eq_reveal` round (far less), so
/// fewer bits win; fewer bits also tell the providers less.
pub const READ_TAG_MARGIN: usize = 1;

/// Tag bits a read computes when it may meet `n` keys: with n < 2^L,
/// L + [`READ_TAG_MARGIN`], at most [`TAG_BITS`]. Every provider derives
/// it from the same replicated state, so all open the same number of
/// elements.
pub fn read_tag_width(n: usize) -> usize {
    let significant = (usize::BITS - n.leading_zeros()) as usize;
    (significant + READ_TAG_MARGIN).min(TAG_BITS)
}

/// The pivot positions of range `lo..hi` for `fanout` children.
pub fn pivots(lo: usize, hi: usize, fanout: usize) -> Vec<usize> {
    let m = hi - lo;
    (1..fanout).map(|k| lo + k * m / fanout).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse() {
        assert_eq!("hash".parse::<Variant>(), Ok(Variant::Hash));
        assert_eq!("list".parse::<Variant>(), Ok(Variant::List));
        assert_eq!("tree/8".parse::<Variant>(), Ok(Variant::Tree { fanout: 8 }));
        assert!("tree/1".parse::<Variant>().is_err());
        assert!("btree".parse::<Variant>().is_err());
    }

    #[test]
    fn read_tags_narrow_with_the_table() {
        assert_eq!(read_tag_width(0), 1);
        assert_eq!(read_tag_width(2000), 12);
        assert_eq!(read_tag_width(100_000), 18);
        assert_eq!(read_tag_width(1_000_000), 21);
        assert_eq!(read_tag_width(1 << 24), TAG_BITS);
        assert_eq!(read_tag_width(usize::MAX), TAG_BITS);
    }

    #[test]
    fn prefix_tags_meet_only_on_their_common_bits() {
        let n = Narrowed {
            tags: vec![0b1011, 0b0011, 0b1011],
            tag_widths: vec![TAG_BITS, 2, TAG_BITS],
            ..Narrowed::default()
        };
        assert!(n.may_equal(0, 1), "agree on the 2 bits the read has");
        assert!(n.may_equal(0, 2));
        let m = Narrowed {
            tags: vec![0b1011, 0b0001],
            tag_widths: vec![TAG_BITS, 2],
            ..Narrowed::default()
        };
        assert!(!m.may_equal(0, 1));
        assert!(!m.may_equal(1, 0));
    }

    #[test]
    fn buckets_find_every_slot_under_a_tag_prefix() {
        let mut b = index::Buckets::default();
        b.insert(0b1_0110, 5);
        b.insert(0b0_0110, 3);
        b.insert(0b0_0111, 9);
        b.insert(0xff_ffff, 1);
        assert_eq!(b.matching(0b0110, 4), vec![3, 5]);
        assert_eq!(b.matching(0b1_0110, 5), vec![5]);
        assert_eq!(b.matching(0b1_0110, TAG_BITS), vec![5]);
        assert_eq!(b.matching(0, 0), vec![1, 3, 5, 9]);
        assert_eq!(b.matching(0b11, 2), vec![1, 9]);
        b.remove(0b0_0110, 3);
        assert_eq!(b.matching(0b0110, 4), vec![5]);
        assert_eq!(b.matching(0xff_ffff, 32), vec![1]);
    }

    #[test]
    fn pivots_split_evenly_and_stay_inside() {
        assert_eq!(pivots(0, 100, 4), vec![25, 50, 75]);
        for (lo, hi, f) in [(3, 20, 4), (0, 5, 2), (10, 1000, 16)] {
            let ps = pivots(lo, hi, f);
            assert!(ps.iter().all(|&p| p > lo && p < hi));
            assert!(ps.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}
