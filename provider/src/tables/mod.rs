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
//!   query against a node's pivots in one batched `lt_reveal`, so a lookup
//!   costs O(log_b n) comparison steps and reveals only the order of keys;
//! - `Variant::Hash`: `prf_tag` (a keyed PRF with a secret-shared key)
//!   picks the bucket; collisions are settled by `eq_reveal`.

pub mod index;
pub mod part;

use std::str::FromStr;

use sharecall_proto::{Share, ShareVec};

use crate::smc::{LaneSession, PrfKey, SmcError};
pub use index::{Change, Changes, Data, Index, Meta};

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
            "tree" => Ok(Variant::Tree { fanout: 64 }),
            other => match other.strip_prefix("tree/").map(str::parse::<usize>) {
                Some(Ok(f)) if (2..=4096).contains(&f) => Ok(Variant::Tree { fanout: f }),
                _ => Err(format!(
                    "unknown table variant {other:?} (list, hash, tree or tree/<fanout 2..=4096>)"
                )),
            },
        }
    }
}

/// Where each query of a batch may be found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowed {
    /// Per query: stored slots that could hold its key.
    pub candidates: Vec<Vec<u64>>,
    /// Hash: per query, its PRF tag (empty for other variants).
    pub tags: Vec<u32>,
    /// Tree: per query, the range of `Index::order` it falls in.
    pub ranges: Vec<(usize, usize)>,
}

impl Narrowed {
    /// Whether queries `i` and `j` can have equal keys (only then are they
    /// compared with each other): for the hash table, their tags match.
    pub fn may_equal(&self, i: usize, j: usize) -> bool {
        match (self.tags.get(i), self.tags.get(j)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
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
        keys: &ShareVec,
    ) -> impl std::future::Future<Output = Result<Narrowed, SmcError>> + Send;
}

impl Lookup for Variant {
    async fn narrow(
        &self,
        index: &Index,
        prf_key: Option<&PrfKey>,
        session: &mut LaneSession,
        keys: &ShareVec,
    ) -> Result<Narrowed, SmcError> {
        match *self {
            Variant::List => Ok(list_narrow(index, keys.len())),
            Variant::Hash if keys.is_empty() => Ok(Narrowed::default()),
            Variant::Hash => {
                let key = prf_key.ok_or_else(|| {
                    SmcError::InvalidInput("the hash table has no PRF key".into())
                })?;
                hash_narrow(index, key, session, keys).await
            }
            Variant::Tree { fanout } => tree_narrow(index, fanout, session, keys).await,
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
async fn hash_narrow(
    index: &Index,
    key: &PrfKey,
    session: &mut LaneSession,
    keys: &ShareVec,
) -> Result<Narrowed, SmcError> {
    let tags = if keys.is_empty() {
        Vec::new()
    } else {
        session.prf_tag(key, keys).await?
    };
    let candidates = tags
        .iter()
        .map(|t| index.buckets.get(t).cloned().unwrap_or_default())
        .collect();
    Ok(Narrowed {
        candidates,
        tags,
        ranges: Vec::new(),
    })
}

/// The pivot positions of range `lo..hi` for `fanout` children.
pub fn pivots(lo: usize, hi: usize, fanout: usize) -> Vec<usize> {
    let m = hi - lo;
    (1..fanout).map(|k| lo + k * m / fanout).collect()
}

/// Tree: descend level by level; at each level every query still in a
/// range wider than `fanout` is compared (query < pivot) with that
/// range's pivots, all queries in one `lt_reveal`.
async fn tree_narrow(
    index: &Index,
    fanout: usize,
    session: &mut LaneSession,
    keys: &ShareVec,
) -> Result<Narrowed, SmcError> {
    let n = index.order.len();
    let mut ranges = vec![(0usize, n); keys.len()];
    let key_of = |pos: usize| -> Result<Share, SmcError> {
        index
            .order
            .get(pos)
            .and_then(|slot| index.meta.get(slot))
            .map(|m| m.key)
            .ok_or_else(|| SmcError::InvalidInput(format!("tree position {pos} has no entry")))
    };
    loop {
        let mut a = ShareVec::default();
        let mut b = ShareVec::default();
        let mut asked: Vec<(usize, Vec<usize>)> = Vec::new();
        for (q, &(lo, hi)) in ranges.iter().enumerate() {
            if hi - lo <= fanout {
                continue;
            }
            let ps = pivots(lo, hi, fanout);
            let query = keys
                .get(q)
                .ok_or_else(|| SmcError::InvalidInput("query index".into()))?;
            for &p in &ps {
                a.push(query);
                b.push(key_of(p)?);
            }
            asked.push((q, ps));
        }
        if asked.is_empty() {
            break;
        }
        let less = session.lt_reveal(&a, &b).await?;
        let mut at = 0;
        for (q, ps) in asked {
            let (lo, hi) = ranges[q];
            let answers = &less[at..at + ps.len()];
            at += ps.len();
            // The first pivot the query is below bounds its range.
            let k = answers.iter().position(|&l| l).unwrap_or(ps.len());
            let new_lo = if k == 0 { lo } else { ps[k - 1] };
            let new_hi = if k == ps.len() { hi } else { ps[k] };
            ranges[q] = (new_lo, new_hi);
        }
    }
    let candidates = ranges
        .iter()
        .map(|&(lo, hi)| index.order[lo..hi].to_vec())
        .collect();
    Ok(Narrowed {
        candidates,
        tags: Vec::new(),
        ranges,
    })
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
    fn pivots_split_evenly_and_stay_inside() {
        assert_eq!(pivots(0, 100, 4), vec![25, 50, 75]);
        for (lo, hi, f) in [(3, 20, 4), (0, 5, 2), (10, 1000, 16)] {
            let ps = pivots(lo, hi, f);
            assert!(ps.iter().all(|&p| p > lo && p < hi));
            assert!(ps.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}
