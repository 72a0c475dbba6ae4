//! The tree table's lookup: descend the sorted order level by level with
//! [`compare_bits`](crate::smc::Session::compare_bits) on XOR-shared keys,
//! then settle equality in the leaf with the same circuit.
//!
//! A level compares every query still in a range wider than `fanout`
//! with that range's `fanout − 1` pivots (revealing only `query < pivot`),
//! all queries in one 8-round circuit. A query whose range is at most
//! `fanout` wide is compared with every entry of the range, revealing
//! only equality for a read, and equality and order for a write (whose
//! place in the order the batch must know). So a lookup costs
//! ⌈log_fanout(n)⌉ levels of 8 rounds, and no preprocessed material.
//!
//! Import rows come sorted by key ([`Query::run`]): one extra comparison
//! level checks each neighbouring pair once, and runs that are strictly
//! increasing and lie, one after the other, above every stored key (a
//! bulk load in key order) are appended without a descent. A run that
//! fails the check is treated row by row, so a client that lies about the
//! order only slows its own import down.
//!
//! After the batch decided its requests, [`Narrowed::place`] puts the new
//! entries into the order: the leaf told each new key its gap, and keys
//! sharing a gap are ordered by one more comparison level.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::future::BoxFuture;
use sharecall_proto::BitShare;

use super::variant::Registration;
use super::{Index, Insert, KeyShares, Narrowed, Query, Table, TableError, Variant};
use crate::smc::{Compared, LaneSession, PrfKey, Reveal};

/// Fanout of `"tree"`: comparisons on XOR shares are cheap, so wide nodes
/// win; at 1 000 000 entries 1024 needs one pivot level and the leaf
/// (docs/BENCHMARKS.md).
pub const DEFAULT_FANOUT: usize = 1024;

/// Fanouts a configuration may name.
const FANOUTS: std::ops::RangeInclusive<usize> = 2..=4096;

/// The tree variant (configuration name `tree` or `tree/<fanout>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    /// Children per node (≥ 2).
    fanout: usize,
}

impl Tree {
    /// The tree with `fanout` children per node, if that is in 2..=4096.
    pub fn with_fanout(fanout: usize) -> Option<Tree> {
        FANOUTS.contains(&fanout).then_some(Tree { fanout })
    }

    /// Children per node.
    pub fn fanout(&self) -> usize {
        self.fanout
    }
}

impl Default for Tree {
    fn default() -> Tree {
        Tree {
            fanout: DEFAULT_FANOUT,
        }
    }
}

/// Its entry in the registry of variants.
pub const REGISTRATION: Registration = Registration {
    names: "tree or tree/<fanout 2..=4096>",
    parse,
};

/// The variant named `name`, if it is this one.
fn parse(name: &str) -> Option<Variant> {
    let tree = match name.strip_prefix("tree/") {
        None if name == "tree" => Tree::default(),
        None => return None,
        Some(f) => Tree::with_fanout(f.parse().ok()?)?,
    };
    Some(Variant::new(tree))
}

impl Table for Tree {
    fn name(&self) -> String {
        format!("tree/{}", self.fanout)
    }

    /// It compares XOR shares of keys.
    fn needs_key_bits(&self) -> bool {
        true
    }

    fn compares(&self) -> KeyShares {
        KeyShares::Bits
    }

    fn narrow<'a>(
        &'a self,
        index: &'a Index,
        _key: Option<&'a PrfKey>,
        session: &'a mut LaneSession,
        queries: &'a [Query],
    ) -> BoxFuture<'a, Result<Box<dyn Narrowed>, TableError>> {
        Box::pin(async move {
            let found = narrow(index, self.fanout, session, queries).await?;
            Ok(Box::new(found) as Box<dyn Narrowed>)
        })
    }

    fn replay_order(
        &self,
        index: &Index,
        deleted: &HashSet<u64>,
        inserts: &[(Option<u64>, u64)],
    ) -> Option<Vec<u64>> {
        Some(replay_order(&index.order, deleted, inserts))
    }
}

/// What the descent found for a batch.
struct Located {
    /// Per query: the slots of its range.
    candidates: Vec<Vec<u64>>,
    /// Per query: the range of `Index::order` it falls in.
    ranges: Vec<(usize, usize)>,
    /// Per query: whether its key equals each candidate's (settled in the
    /// leaf, so the batch needs no `eq_reveal` for them).
    equal: Vec<Option<Vec<bool>>>,
    /// Per write query: how many entries of its range are below it.
    below: Vec<Option<usize>>,
    /// Per query: its import run when the run was checked strictly
    /// increasing (rows of one such run are distinct and in order).
    sorted_run: Vec<Option<usize>>,
}

impl Located {
    /// Whether `i` is known to come before `j` without comparing (both
    /// rows of one sorted run).
    fn known_order(&self, i: usize, j: usize) -> Option<bool> {
        match (self.sorted_run.get(i), self.sorted_run.get(j)) {
            (Some(Some(x)), Some(Some(y))) if x == y => Some(i < j),
            _ => None,
        }
    }
}

impl Narrowed for Located {
    fn candidates(&self, q: usize) -> &[u64] {
        self.candidates.get(q).map_or(&[], Vec::as_slice)
    }

    fn settled(&self, q: usize) -> Option<&[bool]> {
        self.equal.get(q).and_then(Option::as_deref)
    }

    /// They share a leaf range and not a sorted run.
    fn may_equal(&self, i: usize, j: usize) -> bool {
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

    fn place<'a>(
        &'a self,
        index: &'a Index,
        queries: &'a [Query],
        inserts: &'a [Insert],
        deleted: &'a HashSet<u64>,
        session: &'a mut LaneSession,
    ) -> BoxFuture<'a, Result<Option<Vec<u64>>, TableError>> {
        Box::pin(async move {
            place(index, self, queries, inserts, deleted, session)
                .await
                .map(Some)
        })
    }
}

/// What each row of an import run learned from the run check.
struct RunCheck {
    /// Per query: its run, if the run is strictly increasing.
    sorted: Vec<Option<usize>>,
    /// Per query: whether its run lies above every stored key.
    appended: Vec<bool>,
}

impl RunCheck {
    /// No row of `n` queries is in a checked run.
    fn none(n: usize) -> RunCheck {
        RunCheck {
            sorted: vec![None; n],
            appended: vec![false; n],
        }
    }
}
/// The run check: one comparison level for every neighbouring pair of
/// every import run, the last stored key against the first run's first
/// row, and each run's last row against the next run's first row. Runs
/// that chain above every stored key are appended as one sorted run.
async fn check_runs(
    last_key: Option<BitShare>,
    session: &mut LaneSession,
    queries: &[Query],
) -> Result<RunCheck, TableError> {
    let mut runs: BTreeMap<usize, Vec<usize>> = Default::default();
    for (q, query) in queries.iter().enumerate() {
        if let Some(r) = query.run {
            runs.entry(r).or_default().push(q);
        }
    }
    let runs: Vec<(usize, Vec<usize>)> = runs.into_iter().collect();
    let mut a = Vec::new();
    let mut b = Vec::new();
    for (_, rows) in &runs {
        for w in rows.windows(2) {
            a.push(queries[w[0]].key_bits);
            b.push(queries[w[1]].key_bits);
        }
    }
    // Boundaries: stored → run 0, run k → run k+1.
    let mut boundary_at: Vec<Option<usize>> = Vec::with_capacity(runs.len());
    for (k, (_, rows)) in runs.iter().enumerate() {
        let before = if k == 0 {
            last_key
        } else {
            runs[k - 1].1.last().map(|&q| queries[q].key_bits)
        };
        match (before, rows.first()) {
            (Some(x), Some(&first)) => {
                boundary_at.push(Some(a.len()));
                a.push(x);
                b.push(queries[first].key_bits);
            }
            _ => boundary_at.push(None),
        }
    }
    let less = session.less_bits(&a, &b).await?;
    let mut out = RunCheck::none(queries.len());
    let mut at = 0;
    // Whether everything appended so far ends below the next run.
    let mut chain: Option<usize> = None;
    let mut chain_open = true;
    for (k, (r, rows)) in runs.iter().enumerate() {
        let n_pairs = rows.len().saturating_sub(1);
        let increasing = less[at..at + n_pairs].iter().all(|l| *l);
        at += n_pairs;
        let above = boundary_at[k].map(|i| less[i]).unwrap_or(k == 0);
        let append = chain_open && increasing && above;
        chain_open = append;
        let id = if append { *chain.get_or_insert(*r) } else { *r };
        for &q in rows {
            if increasing {
                out.sorted[q] = Some(id);
            }
            out.appended[q] = append;
        }
    }
    Ok(out)
}

/// Narrows every query to its leaf range and settles equality there.
async fn narrow(
    index: &Index,
    fanout: usize,
    session: &mut LaneSession,
    queries: &[Query],
) -> Result<Located, TableError> {
    let n = index.order.len();
    let key_at = |pos: usize| -> Result<BitShare, TableError> {
        index
            .order
            .get(pos)
            .and_then(|slot| index.meta.get(slot))
            .map(|m| m.key_bits)
            .ok_or(TableError::NoEntryAt(pos))
    };
    let q_len = queries.len();
    let runs = if queries.iter().any(|q| q.run.is_some()) {
        let last = match n {
            0 => None,
            _ => Some(key_at(n - 1)?),
        };
        check_runs(last, session, queries).await?
    } else {
        RunCheck::none(q_len)
    };
    let mut ranges = vec![(0usize, n); q_len];
    let mut equal: Vec<Option<Vec<bool>>> = vec![None; q_len];
    let mut below: Vec<Option<usize>> = vec![None; q_len];
    for q in 0..q_len {
        if runs.appended[q] {
            ranges[q] = (n, n);
            equal[q] = Some(Vec::new());
            below[q] = Some(0);
        }
    }
    loop {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let mut reveal = Vec::new();
        // (query, pivot positions or None for a leaf comparison)
        let mut asked: Vec<(usize, Option<Vec<usize>>)> = Vec::new();
        for (q, query) in queries.iter().enumerate() {
            if equal[q].is_some() {
                continue;
            }
            let (lo, hi) = ranges[q];
            if hi - lo > fanout {
                let ps = pivots(lo, hi, fanout);
                for &p in &ps {
                    a.push(query.key_bits);
                    b.push(key_at(p)?);
                    reveal.push(Reveal::Less);
                }
                asked.push((q, Some(ps)));
            } else {
                let r = if query.writes {
                    Reveal::Both
                } else {
                    Reveal::Equal
                };
                for pos in lo..hi {
                    a.push(query.key_bits);
                    b.push(key_at(pos)?);
                    reveal.push(r);
                }
                asked.push((q, None));
            }
        }
        if asked.is_empty() {
            break;
        }
        let results: Vec<Compared> = session.compare_bits(&a, &b, &reveal).await?;
        let mut at = 0;
        for (q, pivots) in asked {
            let (lo, hi) = ranges[q];
            match pivots {
                Some(ps) => {
                    let answers = &results[at..at + ps.len()];
                    at += ps.len();
                    // The first pivot the query is below bounds its range.
                    let k = answers
                        .iter()
                        .position(|c| c.less == Some(true))
                        .unwrap_or(ps.len());
                    let new_lo = if k == 0 { lo } else { ps[k - 1] };
                    let new_hi = if k == ps.len() { hi } else { ps[k] };
                    ranges[q] = (new_lo, new_hi);
                }
                None => {
                    let answers = &results[at..at + (hi - lo)];
                    at += hi - lo;
                    equal[q] = Some(answers.iter().map(|c| c.equal == Some(true)).collect());
                    if queries[q].writes {
                        below[q] = Some(
                            answers
                                .iter()
                                .filter(|c| c.less == Some(false) && c.equal == Some(false))
                                .count(),
                        );
                    }
                }
            }
        }
    }
    let candidates = ranges
        .iter()
        .map(|&(lo, hi)| index.order[lo..hi].to_vec())
        .collect();
    Ok(Located {
        candidates,
        ranges,
        equal,
        below,
        sorted_run: runs.sorted,
    })
}
/// Where the new entries go. The leaf comparison told each new key
/// how many entries of its range are below it, which fixes its gap in the
/// old order; new keys in the same gap are ordered by their sorted run
/// where they share one, otherwise by comparing them (one level).
async fn place(
    index: &Index,
    narrowed: &Located,
    queries: &[Query],
    inserts: &[Insert],
    deleted: &HashSet<u64>,
    session: &mut LaneSession,
) -> Result<Vec<u64>, TableError> {
    // Ordered: the comparisons below are built by iterating the groups,
    // and all three providers must build them alike.
    let mut groups: BTreeMap<usize, Vec<usize>> = Default::default();
    for (k, (q, _)) in inserts.iter().enumerate() {
        let lo = narrowed.ranges.get(*q).map(|r| r.0);
        let below = narrowed.below.get(*q).copied().flatten();
        let (Some(lo), Some(below)) = (lo, below) else {
            return Err(TableError::NotLocated(*q));
        };
        groups.entry(lo + below).or_default().push(k);
    }
    // Pairs (i < j: groups are filled in insert order) in one gap whose
    // order is not known: is i below j?
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut pair_at: HashMap<(usize, usize), usize> = HashMap::new();
    for g in groups.values() {
        for (x, &i) in g.iter().enumerate() {
            for &j in &g[x + 1..] {
                let (qi, qj) = (inserts[i].0, inserts[j].0);
                if narrowed.known_order(qi, qj).is_none() {
                    pair_at.insert((i, j), a.len());
                    a.push(queries[qi].key_bits);
                    b.push(queries[qj].key_bits);
                }
            }
        }
    }
    let less = session.less_bits(&a, &b).await?;
    // Rank by the number of group members below (a total order even if a
    // deviating provider made the answers inconsistent: the batch's
    // closing check then fails anyway).
    for g in groups.values_mut() {
        let run_of = |k: usize| narrowed.sorted_run.get(inserts[k].0).copied().flatten();
        if let Some(r) = g.first().and_then(|&k| run_of(k)) {
            if g.iter().all(|&k| run_of(k) == Some(r)) {
                // One sorted run (a bulk load): already in order.
                g.sort_unstable_by_key(|&k| inserts[k].0);
                continue;
            }
        }
        let below = |x: usize, y: usize| -> bool {
            let (lo, hi) = (x.min(y), x.max(y));
            let lo_below = narrowed
                .known_order(inserts[lo].0, inserts[hi].0)
                .or_else(|| pair_at.get(&(lo, hi)).and_then(|&p| less.get(p).copied()))
                .unwrap_or(true);
            if x == lo {
                lo_below
            } else {
                !lo_below
            }
        };
        let mut ranked: Vec<(usize, usize)> = g
            .iter()
            .map(|&i| (g.iter().filter(|&&j| j != i && below(j, i)).count(), i))
            .collect();
        ranked.sort_unstable();
        *g = ranked.into_iter().map(|(_, i)| i).collect();
    }
    let mut order = Vec::with_capacity(index.order.len() + inserts.len());
    for pos in 0..=index.order.len() {
        if let Some(g) = groups.get(&pos) {
            order.extend(g.iter().map(|k| inserts[*k].1));
        }
        if let Some(slot) = index.order.get(pos) {
            if !deleted.contains(slot) {
                order.push(*slot);
            }
        }
    }
    Ok(order)
}

/// Rebuilds the tree order from a transcript: deletions removed, then
/// every new entry after its predecessor.
pub fn replay_order(
    old: &[u64],
    deleted: &HashSet<u64>,
    inserts: &[(Option<u64>, u64)],
) -> Vec<u64> {
    let mut after: HashMap<Option<u64>, Vec<u64>> = HashMap::new();
    for (pred, slot) in inserts {
        after.entry(*pred).or_default().push(*slot);
    }
    let mut out = Vec::with_capacity(old.len() + inserts.len());
    fn emit(out: &mut Vec<u64>, after: &HashMap<Option<u64>, Vec<u64>>, pred: Option<u64>) {
        if let Some(next) = after.get(&pred) {
            for s in next {
                out.push(*s);
                emit(out, after, Some(*s));
            }
        }
    }
    emit(&mut out, &after, None);
    for slot in old {
        if !deleted.contains(slot) {
            out.push(*slot);
            emit(&mut out, &after, Some(*slot));
        }
    }
    out
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
    fn pivots_split_evenly_and_stay_inside() {
        assert_eq!(pivots(0, 100, 4), vec![25, 50, 75]);
        for (lo, hi, f) in [(3, 20, 4), (0, 5, 2), (10, 1000, 16)] {
            let ps = pivots(lo, hi, f);
            assert!(ps.iter().all(|&p| p > lo && p < hi));
            assert!(ps.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn replayed_order_matches() {
        let old = vec![1, 2, 3];
        let deleted: HashSet<u64> = [2].into_iter().collect();
        // Final order: 10, 1, 11, 12, 3, 13
        let inserts = vec![(None, 10), (Some(1), 11), (Some(11), 12), (Some(3), 13)];
        assert_eq!(
            replay_order(&old, &deleted, &inserts),
            vec![10, 1, 11, 12, 3, 13]
        );
    }
}
