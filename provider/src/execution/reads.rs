//! Resolutions: ordered by the coordinator's batches, not by the raft log.
//!
//! A resolution changes nothing, so nothing about it needs to be in the
//! replicated log for the three tables to stay equal: what must hold is
//! that all three providers answer it against the same table state, and
//! that this state includes every write acknowledged before the
//! resolution arrived. The coordinator (raft leader) guarantees both: it
//! runs a *read batch* at a cursor it names, only while no write batch is
//! in flight, and every peer checks that it stands exactly at that cursor.
//! Skipping the log saves a raft round (with fsyncs) and the three
//! `PartReady` records per resolution, which was most of its latency.
//!
//! Readiness travels directly instead: each provider that holds a
//! verified part tells the leader (`Reads.Ready` RPC, batched), and the
//! leader's [`Board`] starts a read once all three hold the same signed
//! request. Parts and answers stay in memory: a lost read is retried by
//! the client with the same signed request. An answer is kept only sealed
//! to the client's answer key ([`Reads::finish`]): its clear shares never
//! outlive the batch that made them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::batch::Answer;
use crate::tables::part::Part;

/// How long finished reads are remembered (a retry with the same id is
/// answered from memory; a replay after that is stale by its timestamp).
const REMEMBER: Duration = Duration::from_secs(10 * 60);

/// A verified resolution part held at this provider.
#[derive(Debug, Clone)]
pub struct ReadPart {
    /// This provider's part.
    pub part: Part,
    /// The signing account.
    pub account: [u8; 32],
    /// blake3 of the signed message (hex); a retry must match it.
    pub signed: String,
    /// How long the client lets the providers wait for all parts.
    pub window: Duration,
    /// The client's answer key for this provider (secret; the answer is
    /// sealed under it).
    pub answer_key: [u8; 32],
    /// blake3 of the request's signature (a poll must present it).
    pub proof: blake3::Hash,
    /// This provider (the sealed answer names it).
    pub provider: u8,
}

/// What becomes of a read: its sealed `result` object
/// ([`super::store::seal_answer`]) or why it did not run.
pub type ReadResult = Result<serde_json::Value, String>;

struct Held {
    read: ReadPart,
    since: Instant,
    done: watch::Sender<Option<ReadResult>>,
}

/// What [`Reads::submit`] found.
pub enum Submitted {
    /// Wait on this for the answer (a new read or a retry of one).
    Wait(watch::Receiver<Option<ReadResult>>),
    /// The id belongs to another signed request.
    Reused,
    /// This request was answered long ago and its answer is no longer
    /// kept: a replay.
    Replayed,
}

/// How long past its window a read may still wait for its batch.
pub const READ_GRACE: Duration = Duration::from_millis(200);

/// How long a finished read's answer is kept for retries.
const ANSWER_KEEP: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Store {
    held: HashMap<String, Held>,
    /// Ids of reads whose answers were dropped, with their signed hash,
    /// until their timestamps are stale anyway.
    seen: HashMap<String, (String, Instant)>,
    swept: Option<Instant>,
}

impl Store {
    /// Drops old answers (keeping their ids) and old ids; at most every
    /// few seconds, so the cost is not paid per request.
    fn sweep(&mut self) {
        if self
            .swept
            .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.swept = Some(Instant::now());
        let seen = &mut self.seen;
        self.held.retain(|id, h| {
            let keep = h.since.elapsed() < h.read.window + ANSWER_KEEP;
            if !keep {
                seen.insert(id.clone(), (h.read.signed.clone(), h.since));
            }
            keep
        });
        self.seen.retain(|_, (_, t)| t.elapsed() < REMEMBER);
    }
}

/// The reads held at one provider, waiting for their batch.
#[derive(Default)]
pub struct Reads {
    store: Mutex<Store>,
    arrived: Notify,
}

impl Reads {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `read` under `id` (or finds the earlier submission of the
    /// same signed request).
    pub fn submit(&self, id: &str, read: ReadPart) -> Submitted {
        let mut store = self.store();
        store.sweep();
        if let Some(h) = store.held.get(id) {
            if h.read.signed != read.signed {
                return Submitted::Reused;
            }
            return Submitted::Wait(h.done.subscribe());
        }
        if let Some((signed, _)) = store.seen.get(id) {
            return if *signed == read.signed {
                Submitted::Replayed
            } else {
                Submitted::Reused
            };
        }
        let (done, rx) = watch::channel(None);
        store.held.insert(
            id.to_string(),
            Held {
                read,
                since: Instant::now(),
                done,
            },
        );
        drop(store);
        self.arrived.notify_waiters();
        Submitted::Wait(rx)
    }

    /// The read `id`, if held here and not finished.
    pub fn part(&self, id: &str) -> Option<ReadPart> {
        let store = self.store();
        let h = store.held.get(id)?;
        let pending = h.done.borrow().is_none();
        pending.then(|| h.read.clone())
    }

    /// The read `id`, waiting until `deadline` for its part to arrive
    /// (the leader may start a read before this provider's part is here).
    pub async fn wait_part(&self, id: &str, deadline: tokio::time::Instant) -> Option<ReadPart> {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(p) = self.part(id) {
                return Some(p);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.part(id);
            }
        }
    }

    /// Every read held here and not finished, for a new leader.
    pub fn unfinished(&self) -> Vec<ReadyRead> {
        self.store()
            .held
            .iter()
            .filter(|(_, h)| h.done.borrow().is_none())
            .map(|(id, h)| ReadyRead {
                id: id.clone(),
                signed: h.read.signed.clone(),
            })
            .collect()
    }

    /// The result of read `id` if it is known here (finished or pending),
    /// with the proof a poll must present.
    pub fn status(&self, id: &str) -> Option<(watch::Receiver<Option<ReadResult>>, blake3::Hash)> {
        self.store()
            .held
            .get(id)
            .map(|h| (h.done.subscribe(), h.read.proof))
    }

    /// Whether `id` is (or was recently) a read here.
    pub fn knows(&self, id: &str) -> bool {
        let store = self.store();
        store.held.contains_key(id) || store.seen.contains_key(id)
    }

    /// Records the result of read `id`, sealed to its client's answer key
    /// (only the sealed form is kept), and wakes its waiters.
    pub fn finish(&self, id: &str, result: Result<Answer, String>) {
        let Some((key, provider)) = self
            .store()
            .held
            .get(id)
            .map(|h| (h.read.answer_key, h.read.provider))
        else {
            return;
        };
        // Seal outside the lock: one AEAD seal per answer.
        let kept = result.and_then(|a| {
            // Unchanged outside fault-injection builds.
            let a = super::fault::reported(&a);
            super::store::seal_answer(&a, &key, id, provider).map_err(|e| e.to_string())
        });
        if let Some(h) = self.store().held.get(id) {
            h.done.send_replace(Some(kept));
        }
    }

    /// Ends read `id` if its window (plus [`READ_GRACE`]) has passed
    /// without its batch; returns its result if it has one now.
    pub fn expire(&self, id: &str) -> Option<ReadResult> {
        let store = self.store();
        let h = store.held.get(id)?;
        if let Some(r) = h.done.borrow().clone() {
            return Some(r);
        }
        if h.since.elapsed() <= h.read.window + READ_GRACE {
            return None;
        }
        let r: ReadResult = Err("not all three providers held it within its window".into());
        h.done.send_replace(Some(r.clone()));
        Some(r)
    }
}

/// A read the coordinator may run (also how a read batch names it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyRead {
    /// Request id.
    pub id: String,
    /// The signed request's hash (the peers check theirs against it).
    pub signed: String,
}

struct Mark {
    signed: String,
    mask: u8,
    conflict: bool,
    /// Queued (or run) already for this round of readiness.
    queued: bool,
    /// A peer did not hold it when it ran: wait for all three reports.
    strict: bool,
    since: Instant,
    attempts: u8,
}

/// The leader's view of which reads can run.
///
/// The client sends its three parts at the same moment, so when the
/// leader holds its own part the peers almost always hold theirs: the
/// leader starts the read at once (*optimistically*) and each peer waits
/// briefly for its part. A read a peer did not hold in time drops out of
/// its batch and then runs only once all three providers have reported
/// holding it (providers report reads still unanswered after
/// [`STRAGGLER_DELAY`]).
pub struct Board {
    me: u8,
    marks: Mutex<(HashMap<String, Mark>, VecDeque<ReadyRead>, Instant)>,
    /// Woken when a read becomes ready.
    pub notify: Notify,
}

/// How long a provider waits before reporting a read it holds that has
/// not been answered (the leader may have started it without the report).
pub const STRAGGLER_DELAY: Duration = Duration::from_millis(100);

impl Board {
    /// The board of provider `me`.
    pub fn new(me: u8) -> Board {
        Board {
            me,
            marks: Mutex::new((HashMap::new(), VecDeque::new(), Instant::now())),
            notify: Notify::new(),
        }
    }

    /// Notes that `provider` holds read `id` of signed request `signed`.
    /// Returns whether the read just became ready.
    pub fn mark(&self, provider: u8, id: &str, signed: &str) -> bool {
        if provider > 2 {
            return false;
        }
        let mut g = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let (marks, ready, swept) = &mut *g;
        // Forget old marks now and then (not on every call: that would
        // scan the map per request).
        if swept.elapsed() > Duration::from_secs(5) {
            marks.retain(|_, m| m.since.elapsed() < REMEMBER);
            *swept = Instant::now();
        }
        let m = marks.entry(id.to_string()).or_insert_with(|| Mark {
            signed: signed.to_string(),
            mask: 0,
            conflict: false,
            queued: false,
            strict: false,
            since: Instant::now(),
            attempts: 0,
        });
        if m.signed != signed {
            // Two providers verified different requests under one id: the
            // read never runs; the clients' waits time out.
            m.conflict = true;
            return false;
        }
        m.mask |= 1 << provider;
        let go = if m.strict {
            m.mask == 0b111
        } else {
            m.mask & (1 << self.me) != 0
        };
        if !go || m.queued || m.conflict {
            return false;
        }
        m.queued = true;
        ready.push_back(ReadyRead {
            id: id.to_string(),
            signed: m.signed.clone(),
        });
        drop(g);
        self.notify.notify_one();
        true
    }

    /// Takes up to `n` ready reads.
    pub fn take(&self, n: usize) -> Vec<ReadyRead> {
        let mut g = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let ready = &mut g.1;
        let k = n.min(ready.len());
        ready.drain(..k).collect()
    }

    /// Number of reads waiting.
    pub fn ready_len(&self) -> usize {
        self.marks.lock().unwrap_or_else(|p| p.into_inner()).1.len()
    }

    /// Queues reads of a failed batch again, each at most three times in
    /// all (then the clients' waits run out and they retry). Reads in
    /// `not_held` (a peer lacked its part) wait for all three reports.
    pub fn retry(&self, reads: Vec<ReadyRead>, not_held: &[&str]) {
        let mut g = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let (marks, ready, _) = &mut *g;
        let mut any = false;
        for r in reads {
            let Some(m) = marks.get_mut(&r.id) else {
                continue;
            };
            m.attempts += 1;
            if not_held.contains(&r.id.as_str()) {
                m.strict = true;
                m.queued = m.mask == 0b111 && m.attempts < 3;
                if m.queued {
                    ready.push_back(r);
                    any = true;
                }
            } else if m.attempts < 3 {
                ready.push_back(r);
                any = true;
            }
        }
        drop(g);
        if any {
            self.notify.notify_one();
        }
    }

    /// Whether reads are waiting.
    pub fn has_ready(&self) -> bool {
        self.ready_len() > 0
    }

    /// Forgets everything (this provider stopped leading: the new leader
    /// collects readiness afresh).
    pub fn clear(&self) {
        let mut g = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        g.0.clear();
        g.1.clear();
    }
}

/// The `Reads` gRPC service: readiness reports from the other providers.
pub struct ReadsService {
    executor: std::sync::Arc<super::Executor>,
    providers: HashMap<crate::identity::Fingerprint, u32>,
}

impl ReadsService {
    /// The service for `executor`; `providers` maps each pinned certificate
    /// to its provider id.
    pub fn new(
        executor: std::sync::Arc<super::Executor>,
        providers: HashMap<crate::identity::Fingerprint, u32>,
    ) -> ReadsService {
        ReadsService {
            executor,
            providers,
        }
    }
}

#[tonic::async_trait]
impl sharecall_proto::reads::reads_server::Reads for ReadsService {
    async fn ready(
        &self,
        request: tonic::Request<sharecall_proto::reads::ReadyBatch>,
    ) -> Result<tonic::Response<sharecall_proto::reads::ReadyAck>, tonic::Status> {
        let caller = request
            .extensions()
            .get::<crate::rpc::PeerIdentity>()
            .and_then(|p| self.providers.get(&p.fingerprint).copied())
            .ok_or_else(|| tonic::Status::permission_denied("certificate not pinned"))?;
        let leader = self
            .executor
            .peer_ready(caller as u8, &request.get_ref().reads);
        Ok(tonic::Response::new(sharecall_proto::reads::ReadyAck {
            leader,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaders_own_part_starts_a_read_once() {
        let b = Board::new(1);
        assert!(!b.mark(0, "r1", "h"), "a peer's report alone does not");
        assert!(b.mark(1, "r1", "h"));
        assert_eq!(
            b.take(10),
            vec![ReadyRead {
                id: "r1".into(),
                signed: "h".into()
            }]
        );
        // Later reports do not run it twice.
        assert!(!b.mark(2, "r1", "h"));
        assert!(!b.mark(1, "r1", "h"));
        assert!(b.take(10).is_empty());
    }

    #[test]
    fn a_read_a_peer_lacked_waits_for_all_three_reports() {
        let b = Board::new(0);
        assert!(b.mark(0, "r", "h"));
        let taken = b.take(10);
        b.retry(taken, &["r"]);
        assert!(!b.has_ready());
        assert!(!b.mark(1, "r", "h"));
        assert!(b.mark(2, "r", "h"));
        assert_eq!(b.take(10).len(), 1);
    }

    #[test]
    fn conflicting_requests_under_one_id_never_run() {
        let b = Board::new(1);
        b.mark(0, "r", "a");
        b.mark(2, "r", "b");
        assert!(!b.mark(1, "r", "b"));
        assert!(!b.has_ready());
        assert!(!b.mark(7, "x", "a"), "no provider 7");
    }

    #[test]
    fn held_reads_answer_retries_and_refuse_reuse() {
        let r = Reads::default();
        let part = Part {
            key: sharecall_proto::Share::default(),
            key_bits: None,
            endpoint: Vec::new(),
            ttl_s: 0,
            extra: Vec::new(),
        };
        let read = |signed: &str| ReadPart {
            part: part.clone(),
            account: [0; 32],
            signed: signed.into(),
            window: Duration::from_secs(5),
            answer_key: *sharecall_proto::seal::AnswerKey::generate(&mut rand::rngs::OsRng)
                .as_bytes(),
            proof: blake3::hash(b"sig"),
            provider: 0,
        };
        let Submitted::Wait(rx) = r.submit("a", read("s")) else {
            panic!("new read refused");
        };
        assert!(matches!(r.submit("a", read("other")), Submitted::Reused));
        assert!(r.part("a").is_some());
        r.finish("a", Err("x".into()));
        assert_eq!(rx.borrow().clone(), Some(Err("x".into())));
        // A finished answer is kept only sealed.
        let secret = sharecall_proto::seal::AnswerKey::generate(&mut rand::rngs::OsRng);
        let mut sealed = read("t");
        sealed.answer_key = *secret.as_bytes();
        let Submitted::Wait(rx_b) = r.submit("b", sealed) else {
            panic!("new read refused");
        };
        let mut answer = Answer::code(super::super::batch::Code::Ok);
        answer.endpoint = Some(vec![sharecall_proto::Share::default(); 10]);
        r.finish("b", Ok(answer));
        let kept = rx_b.borrow().clone().expect("finished").expect("sealed");
        assert!(
            kept.get("endpoint").is_none() && kept.get("code").is_none(),
            "{kept}"
        );
        let nonce: [u8; 12] = hex::decode(kept["nonce"].as_str().expect("nonce"))
            .expect("hex")
            .try_into()
            .expect("12 bytes");
        let ciphertext = hex::decode(kept["ciphertext"].as_str().expect("ct")).expect("hex");
        let clear = secret
            .open("b", 0, &sharecall_proto::seal::Sealed { nonce, ciphertext })
            .expect("opens");
        let v: serde_json::Value = serde_json::from_slice(&clear).expect("json");
        assert_eq!(v["code"], "ok");
        assert!(r.part("a").is_none(), "finished reads do not run again");
        let Submitted::Wait(again) = r.submit("a", read("s")) else {
            panic!("retry refused");
        };
        assert!(again.borrow().is_some());
    }
}
