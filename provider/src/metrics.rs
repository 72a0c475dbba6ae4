//! Prometheus metrics, served as OpenMetrics text on `GET /metrics`.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `sharecall_jobs_total` | counter | `kind`, `outcome` | jobs finished |
//! | `sharecall_phase_duration_seconds` | histogram | `kind`, `phase` | time per phase run |
//! | `sharecall_jobs_in_flight` | gauge | — | jobs accepted and not finished |
//! | `sharecall_peer_up` | gauge (float) | `peer` | 1 available, 0.5 suspect, 0 down |
//!
//! Every series also carries `provider="<id>"`, so the three providers can
//! be scraped into one Prometheus and still be told apart.
//!
//! Label values (`kind`, `outcome`, `phase`) should come from small fixed
//! sets (task kinds, status names, phase names) chosen in code: every
//! distinct value is a new series held for the life of the process.
//!
//! `sharecall_peer_up` is one float gauge rather than a one-hot
//! `state` label so that `min(sharecall_peer_up) < 1` ("some peer is not
//! fully available") and `== 0` ("some peer is down") are plain alert rules.

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::directory::Health;

/// Lower edge of the phase-duration histogram: 50 µs, about the core's own
/// overhead for a trivial phase on loopback.
const BUCKET_START_SECONDS: f64 = 50e-6;
/// Each bucket doubles the previous one.
const BUCKET_FACTOR: f64 = 2.0;
/// 20 doublings from 50 µs reach 50 µs · 2^19 ≈ 26 s, just past the longest
/// default phase timeout (15 s for Session); slower runs land in `+Inf`.
const BUCKET_COUNT: u16 = 20;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    kind: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: u8,
}

type PhaseHistograms = Family<PhaseLabels, Histogram, fn() -> Histogram>;

fn phase_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        BUCKET_START_SECONDS,
        BUCKET_FACTOR,
        BUCKET_COUNT,
    ))
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    jobs: Family<JobLabels, Counter>,
    phases: PhaseHistograms,
    in_flight: Gauge,
    peer_up: Family<PeerLabels, Gauge<f64, AtomicU64>>,
    raft_term: Gauge,
    raft_commit: Gauge,
    raft_applied: Gauge,
    raft_leader: Gauge,
    batch_requests: Histogram,
    read_batch: Histogram,
    table_entries: Gauge,
    executed: Gauge,
}

/// The provider's metrics. Cheap to clone; clones record into the same
/// registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Metrics {
    /// Fresh metrics for provider `provider_id`, all series empty.
    pub fn new(provider_id: u8) -> Metrics {
        let mut registry = Registry::with_prefix_and_labels(
            "sharecall",
            [(
                Cow::Borrowed("provider"),
                Cow::Owned(provider_id.to_string()),
            )]
            .into_iter(),
        );
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register(
            "jobs",
            "Jobs finished, by task kind and outcome",
            jobs.clone(),
        );
        let phases: PhaseHistograms = Family::new_with_constructor(phase_histogram);
        registry.register_with_unit(
            "phase_duration",
            "Duration of one run of a job phase (prepare, link, session, ...), by task kind",
            Unit::Seconds,
            phases.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "jobs_in_flight",
            "Jobs accepted and not yet finished (running or waiting for a lane)",
            in_flight.clone(),
        );
        let peer_up = Family::<PeerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "peer_up",
            "Peer health from heartbeats: 1 available, 0.5 suspect, 0 down",
            peer_up.clone(),
        );
        let raft_term = Gauge::default();
        registry.register("raft_term", "Current raft term", raft_term.clone());
        let raft_commit = Gauge::default();
        registry.register(
            "raft_commit_index",
            "Raft commit index",
            raft_commit.clone(),
        );
        let raft_applied = Gauge::default();
        registry.register(
            "raft_applied_index",
            "Raft applied index",
            raft_applied.clone(),
        );
        let raft_leader = Gauge::default();
        registry.register(
            "raft_leader",
            "Raft id of the current leader (0 if none known)",
            raft_leader.clone(),
        );
        let batch_requests = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "batch_requests",
            "Ordered requests executed per SMC job (grows with load)",
            batch_requests.clone(),
        );
        let read_batch = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        registry.register(
            "read_batch_requests",
            "Resolutions answered per read batch (grows with load)",
            read_batch.clone(),
        );
        let table_entries = Gauge::default();
        registry.register(
            "table_entries",
            "Entries in the lookup table (expired ones until swept)",
            table_entries.clone(),
        );
        let executed = Gauge::default();
        registry.register(
            "executed_seq",
            "Sequence number of the last request executed against the table",
            executed.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                batch_requests,
                read_batch,
                table_entries,
                executed,
                registry,
                jobs,
                phases,
                in_flight,
                peer_up,
                raft_term,
                raft_commit,
                raft_applied,
                raft_leader,
            }),
        }
    }

    /// Counts one finished job of task kind `kind` (e.g. `secure_sum`) with
    /// `outcome` (e.g. `success`, `denied`, `aborted`).
    pub fn job_finished(&self, kind: &str, outcome: &str) {
        self.inner
            .jobs
            .get_or_create(&JobLabels {
                kind: kind.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Records that one run of `phase` (e.g. `prepare`, `link`, `session`)
    /// of a `kind` job took `d`. Retries are separate runs.
    pub fn phase_duration(&self, kind: &str, phase: &str, d: Duration) {
        self.inner
            .phases
            .get_or_create(&PhaseLabels {
                kind: kind.to_string(),
                phase: phase.to_string(),
            })
            .observe(d.as_secs_f64());
    }

    /// Sets the number of jobs in flight.
    pub fn jobs_in_flight(&self, n: i64) {
        self.inner.in_flight.set(n);
    }

    /// Sets the raft gauges (term, commit and applied index, leader id).
    pub fn raft(&self, term: u64, commit: u64, applied: u64, leader: u64) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.inner.raft_term.set(g(term));
        self.inner.raft_commit.set(g(commit));
        self.inner.raft_applied.set(g(applied));
        self.inner.raft_leader.set(g(leader));
    }

    /// Records an executed batch of `requests`, leaving `entries` in the
    /// table and the executor at `cursor`.
    pub fn batch_executed(&self, requests: u64, entries: usize, cursor: u64) {
        self.inner.batch_requests.observe(requests as f64);
        self.inner
            .table_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.inner
            .executed
            .set(i64::try_from(cursor).unwrap_or(i64::MAX));
    }

    /// Records a read batch of `reads` resolutions.
    pub fn reads_executed(&self, reads: u64) {
        self.inner.read_batch.observe(reads as f64);
    }

    /// Sets peer `peer`'s health: 1 available, 0.5 suspect, 0 down.
    pub fn peer_health(&self, peer: u8, health: Health) {
        let value = match health {
            Health::Available => 1.0,
            Health::Suspect => 0.5,
            Health::Down => 0.0,
        };
        self.inner
            .peer_up
            .get_or_create(&PeerLabels { peer })
            .set(value);
    }

    /// Everything recorded so far, as OpenMetrics text (content type
    /// [`Metrics::CONTENT_TYPE`]), ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would mean a
        // metric refused to encode, and a partial page is more useful to a
        // scraper than none.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            tracing::error!(error = %e, "encoding metrics failed; serving what was encoded");
        }
        out
    }

    /// The HTTP `Content-Type` of [`Metrics::encode`]'s output.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_registry_encodes_descriptors() {
        let text = Metrics::new(0).encode();
        assert!(text.contains("# TYPE sharecall_jobs counter"), "{text}");
        assert!(
            text.contains("# TYPE sharecall_phase_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT sharecall_phase_duration_seconds seconds"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sharecall_jobs_in_flight gauge"),
            "{text}"
        );
        assert!(text.contains("# TYPE sharecall_peer_up gauge"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// The value of the sample `name{labels}` in OpenMetrics `text`,
    /// whatever order the labels are written in. Enough for these tests:
    /// label values here hold no commas or quotes.
    fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        want.sort();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
                let mut got: Vec<String> = rest
                    .strip_suffix('}')?
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect();
                got.sort();
                (n == name && got == want).then(|| value.parse().ok())?
            })
    }

    #[test]
    fn jobs_counted_by_kind_and_outcome() {
        let m = Metrics::new(1);
        m.job_finished("secure_sum", "success");
        m.job_finished("secure_sum", "success");
        m.job_finished("secure_sum", "denied");
        let text = m.encode();
        let jobs = |outcome| {
            sample(
                &text,
                "sharecall_jobs_total",
                &[
                    ("provider", "1"),
                    ("kind", "secure_sum"),
                    ("outcome", outcome),
                ],
            )
        };
        assert_eq!(jobs("success"), Some(2.0), "{text}");
        assert_eq!(jobs("denied"), Some(1.0), "{text}");
        assert_eq!(jobs("aborted"), None, "{text}");
    }

    #[test]
    fn phase_durations_bucketed() {
        let m = Metrics::new(2);
        m.phase_duration("secure_sum", "prepare", Duration::from_micros(80));
        m.phase_duration("secure_sum", "prepare", Duration::from_millis(3));
        m.phase_duration("secure_sum", "session", Duration::from_secs(40));
        let text = m.encode();
        let get = |suffix: &str, phase, le: Option<&'static str>| {
            let mut labels = vec![("provider", "2"), ("kind", "secure_sum"), ("phase", phase)];
            labels.extend(le.map(|le| ("le", le)));
            sample(
                &text,
                &format!("sharecall_phase_duration_seconds_{suffix}"),
                &labels,
            )
        };
        assert_eq!(get("count", "prepare", None), Some(2.0), "{text}");
        let sum = get("sum", "prepare", None).expect("sum");
        assert!((sum - 0.00308).abs() < 1e-9, "{text}");
        // 80 µs falls in the 100 µs bucket, not the 50 µs one.
        assert_eq!(
            get("bucket", "prepare", Some("0.00005")),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            get("bucket", "prepare", Some("0.0001")),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            get("bucket", "prepare", Some("0.0032")),
            Some(2.0),
            "{text}"
        );
        // Beyond the last finite bucket: only +Inf counts it.
        assert_eq!(
            get("bucket", "session", Some("26.2144")),
            Some(0.0),
            "{text}"
        );
        assert_eq!(get("bucket", "session", Some("+Inf")), Some(1.0), "{text}");
    }

    #[test]
    fn buckets_span_50us_to_about_30s() {
        let b: Vec<f64> =
            exponential_buckets(BUCKET_START_SECONDS, BUCKET_FACTOR, BUCKET_COUNT).collect();
        assert_eq!(b.len(), 20);
        assert!((b[0] - 50e-6).abs() < 1e-12);
        let last = b[b.len() - 1];
        assert!((20.0..=35.0).contains(&last), "{last}");
    }

    #[test]
    fn in_flight_and_peer_health() {
        let m = Metrics::new(0);
        m.jobs_in_flight(7);
        m.jobs_in_flight(3);
        m.peer_health(1, Health::Available);
        m.peer_health(2, Health::Suspect);
        let text = m.encode();
        let up = |text: &str, peer| {
            sample(
                text,
                "sharecall_peer_up",
                &[("provider", "0"), ("peer", peer)],
            )
        };
        assert_eq!(
            sample(&text, "sharecall_jobs_in_flight", &[("provider", "0")]),
            Some(3.0),
            "{text}"
        );
        assert_eq!(up(&text, "1"), Some(1.0), "{text}");
        assert_eq!(up(&text, "2"), Some(0.5), "{text}");
        m.peer_health(2, Health::Down);
        let text = m.encode();
        assert_eq!(up(&text, "2"), Some(0.0), "{text}");
    }

    #[test]
    fn clones_share_the_registry_across_threads() {
        let m = Metrics::new(0);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        m.job_finished("noop", "success");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                "sharecall_jobs_total",
                &[("provider", "0"), ("kind", "noop"), ("outcome", "success")]
            ),
            Some(100.0),
            "{text}"
        );
    }

    #[test]
    fn send_and_sync() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Metrics>();
    }
}
