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
//! level checks each neighbouring pair once, and a run that is strictly
//! increasing and lies above every stored key is appended without a
//! descent. A run that fails the check is treated row by row, so a
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

/// The run check: one comparison level for every neighbouring pair of
/// every import run, and the last stored key against each run's first
/// row.
async fn check_runs(
    stored: usize,
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
    let mut a = Vec::new();
    let mut b = Vec::new();
    for rows in runs.values() {
        for w in rows.windows(2) {
            a.push(queries[w[0]].key_bits);
            b.push(queries[w[1]].key_bits);
        }
        if let (Some(last), Some(&first)) = (last_key, rows.first()) {
            a.push(last);
            b.push(queries[first].key_bits);
        }
    }
    let reveal = vec![Reveal::Less; a.len()];
    let less = session.compare_bits(&a, &b, &reveal).await?;
    let mut less = less.into_iter().map(|c| c.less == Some(true));
    let mut out = RunCheck {
        sorted: vec![None; queries.len()],
        appended: vec![false; queries.len()],
    };
    let mut appended_one = false;
    for (&r, rows) in &runs {
        let pairs: Vec<bool> = rows
            .windows(2)
            .map(|_| less.next().unwrap_or(false))
            .collect();
        let increasing = pairs.iter().all(|l| *l);
        let above = if last_key.is_some() && !rows.is_empty() {
            less.next().unwrap_or(false)
        } else {
            stored == 0
        };
        // Only one run may skip the descent: two runs above the stored
        // keys would still have to be merged with each other.
        let append = increasing && above && !appended_one;
        appended_one |= append;
        for &q in rows {
            if increasing {
                out.sorted[q] = Some(r);
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
        check_runs(n, last, session, queries).await?
    } else {
        RunCheck {
            sorted: vec![None; q_len],
            appended: vec![false; q_len],
        }
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
        tags: Vec::new(),
        ranges,
        equal,
        below,
        sorted_run: runs.sorted,
    })
}
