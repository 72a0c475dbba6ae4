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
//! bulk load in key order) are appended without a descent. A run that fails the check is treated row by row, so a
//! client that lies about the order only slows its own import down.

use sharecall_proto::BitShare;

use super::{Index, Narrowed, Query};
use crate::smc::{Compared, LaneSession, Reveal, SmcError};

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
) -> Result<RunCheck, SmcError> {
    let mut runs: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
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
pub(super) async fn narrow(
    index: &Index,
    fanout: usize,
    session: &mut LaneSession,
    queries: &[Query],
) -> Result<Narrowed, SmcError> {
    let n = index.order.len();
    let key_at = |pos: usize| -> Result<BitShare, SmcError> {
        index
            .order
            .get(pos)
            .and_then(|slot| index.meta.get(slot))
            .map(|m| m.key_bits)
            .ok_or_else(|| SmcError::InvalidInput(format!("tree position {pos} has no entry")))
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
                let ps = super::pivots(lo, hi, fanout);
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
    Ok(Narrowed {
        candidates,
        ranges,
        equal,
        below,
        sorted_run: runs.sorted,
        ..Narrowed::default()
    })
}
