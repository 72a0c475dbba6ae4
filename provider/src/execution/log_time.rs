//! Log time: when the log says a request happened, judged by every
//! provider before a write batch runs.
//!
//! A table request's raw time is the median of the three providers'
//! readiness records ([`crate::sequencer::lifecycle`]), so one provider's
//! clock cannot move it outside the other two; a sweep's raw time is the
//! leader's. Before a live write batch, every provider checks each raw
//! time against its own clock and against the log: a time later than
//! `now + max_log_skew` or earlier than `previous log time − max_log_skew`
//! is *out of bounds*. The coordinator names the out-of-bounds records it
//! sees in the job ([`super::ExecuteParams::skip`]); a provider runs the
//! batch only if its own verdict is exactly that list, and then the
//! listed records change nothing (a skipped request is answered
//! `refused`). Any other verdict refuses the whole batch, so nothing is
//! committed anywhere and the coordinator retries with a growing pause
//! (a future time comes within bounds as clocks advance; a time that
//! never does is skipped by the next honest coordinator).
//!
//! The *effective* time of an in-bounds record is `max(previous, raw)`:
//! log time never goes backwards, and since it is a function of the log
//! and the skip list alone, a provider replaying the batch from a
//! transcript computes the same times.

use std::collections::BTreeMap;

use crate::sequencer::applied::AppliedMeta;
use crate::tables::part::Kind;

/// Whether a record of this kind carries a log time the table uses
/// (table requests, imports and sweeps; not ordering probes).
pub fn timed(kind: &str) -> bool {
    kind == "sweep" || Kind::parse(kind).is_some()
}

/// A batch's records as judged by one provider's clock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Sequence numbers of out-of-bounds records, ascending.
    pub out_of_bounds: Vec<u64>,
    /// One line per out-of-bounds record, for errors and logs.
    pub why: Vec<String>,
}

/// Judges the timed records of a batch (`(seq, meta)` in log order)
/// against `now_ms ± skew_ms`, starting from log time `previous`.
pub fn judge(records: &[(u64, AppliedMeta)], previous: u64, now_ms: u64, skew_ms: u64) -> Verdict {
    let mut v = Verdict::default();
    let mut t = previous;
    for (seq, m) in records {
        if !timed(&m.kind) {
            continue;
        }
        let late = now_ms.saturating_add(skew_ms);
        let early = t.saturating_sub(skew_ms);
        if m.at_ms > late {
            v.out_of_bounds.push(*seq);
            v.why.push(format!(
                "{} {seq} is logged at {} ms, {} ms ahead of this provider's clock",
                m.kind,
                m.at_ms,
                m.at_ms - now_ms
            ));
        } else if m.at_ms < early {
            v.out_of_bounds.push(*seq);
            v.why.push(format!(
                "{} {seq} is logged at {} ms, {} ms before the log's time {t} ms",
                m.kind,
                m.at_ms,
                t - m.at_ms
            ));
        } else {
            t = t.max(m.at_ms);
        }
    }
    v
}

/// Effective log times of a batch's timed records (skipped ones left
/// out) and the log time after it. Deterministic: a function of the log,
/// the previous time and the skip list.
pub fn effective(
    records: &[(u64, AppliedMeta)],
    previous: u64,
    skip: &[u64],
) -> (BTreeMap<u64, u64>, u64) {
    let mut t = previous;
    let mut out = BTreeMap::new();
    for (seq, m) in records {
        if !timed(&m.kind) || skip.contains(seq) {
            continue;
        }
        t = t.max(m.at_ms);
        out.insert(*seq, t);
    }
    (out, t)
}

/// The median of a request's readiness times (one per provider); with
/// fewer than three (records logged before this rule), the latest.
pub fn median(times: &mut [u64]) -> Option<u64> {
    times.sort_unstable();
    match times.len() {
        0 => None,
        3 => Some(times[1]),
        n => Some(times[n - 1]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, kind: &str, at: u64) -> (u64, AppliedMeta) {
        (
            seq,
            AppliedMeta {
                kind: kind.into(),
                at_ms: at,
            },
        )
    }

    #[test]
    fn future_and_past_times_are_out_of_bounds_and_probes_are_not_judged() {
        let now = 1_000_000;
        let batch = [
            rec(1, "register", now - 10),
            rec(2, "sweep", u64::MAX),
            rec(3, "register", 5),
            rec(4, "probe", 0),
            rec(5, "delete", now + 20_000),
        ];
        let v = judge(&batch, now - 100, now, 30_000);
        assert_eq!(v.out_of_bounds, vec![2, 3]);
        assert!(v.why[0].contains("ahead"), "{:?}", v.why);
        assert!(v.why[1].contains("before the log's time"), "{:?}", v.why);
    }

    #[test]
    fn effective_time_never_goes_backwards_and_skips_change_nothing() {
        let batch = [
            rec(1, "register", 500),
            rec(2, "sweep", 9_999_999),
            rec(3, "update", 400),
            rec(4, "register", 700),
        ];
        let (times, last) = effective(&batch, 450, &[2]);
        assert_eq!(times.get(&1), Some(&500));
        assert_eq!(times.get(&2), None);
        assert_eq!(times.get(&3), Some(&500));
        assert_eq!(times.get(&4), Some(&700));
        assert_eq!(last, 700);
    }

    #[test]
    fn one_provider_cannot_move_the_median() {
        assert_eq!(median(&mut [100, u64::MAX, 101]), Some(101));
        assert_eq!(median(&mut [0, 100, 101]), Some(100));
        assert_eq!(median(&mut [7]), Some(7));
        assert_eq!(median(&mut []), None);
    }
}
