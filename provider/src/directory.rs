//! The directory: the two other providers, where to reach them, which
//! certificate they hold, and how healthy they are.
//!
//! This is a pure state machine. It sends nothing and reads no clock: the
//! caller runs the heartbeats, feeds their outcomes in with
//! [`Directory::heartbeat_ok`] and [`Directory::heartbeat_failed`], calls
//! [`Directory::tick`] periodically, and passes the current [`Instant`] to
//! each call. That keeps every transition testable without sleeping.
//!
//! Health of one peer:
//!
//! ```text
//!            failed heartbeat, or
//!            silent ≥ suspect_after       silent ≥ down_after
//! Available ───────────────────────▶ Suspect ───────────────────▶ Down
//!     ▲                                 │                           │
//!     └───────── successful heartbeat ──┴───────────────────────────┘
//! ```
//!
//! "Silent" is the time since the last successful heartbeat (or since the
//! directory was made, for a peer never heard from). A peer starts
//! [`Health::Suspect`]: it is not known to be up, but it has not had the
//! chance to answer either, and `Down` would claim a failure nobody saw.
//! Without an answer it becomes `Down` after `down_after`, like any other
//! silent peer.
//!
//! Every heartbeat answer carries the peer's *incarnation*, an id chosen
//! anew each time the peer process starts. A changed incarnation means the
//! peer restarted: its SMC links and seeds are gone, so the transition says
//! `restarted` and the caller re-links.
//!
//! Ids that are not in the directory are ignored; the calls then return a
//! [`Transition::unchanged`] `Down → Down` without restart and log a
//! warning. The caller only feeds in ids from its own configuration, so this
//! is a bug path, and "down" is the safe answer to "how is peer 7".

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{PeerConfig, ProviderConfig};
use crate::identity::Fingerprint;

/// How a peer is doing, judged from its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The last heartbeat succeeded, recently enough.
    Available,
    /// A heartbeat failed, or none succeeded for `suspect_after`, or the
    /// peer has not been heard from yet.
    Suspect,
    /// No heartbeat succeeded for `down_after`.
    Down,
}

impl Health {
    /// The lowercase name, as in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Available => "available",
            Health::Suspect => "suspect",
            Health::Down => "down",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one input did to one peer's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Health before.
    pub from: Health,
    /// Health after.
    pub to: Health,
    /// The peer answered with a different incarnation than before: it
    /// restarted, and its links must be redone.
    pub restarted: bool,
}

impl Transition {
    /// A transition that changes nothing.
    pub fn unchanged(health: Health) -> Transition {
        Transition {
            from: health,
            to: health,
            restarted: false,
        }
    }

    /// Whether anything happened that the caller should act on: the health
    /// changed, or the peer restarted.
    pub fn changed(&self) -> bool {
        self.from != self.to || self.restarted
    }
}

/// One peer as reported by [`Directory::snapshot`] (and by
/// `GET /v1/admin/peers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// Provider id.
    pub id: u8,
    /// Its command/control address.
    pub control: SocketAddr,
    /// Its SMC mesh address.
    pub smc: SocketAddr,
    /// Its pinned certificate fingerprint (hex).
    pub fingerprint: Fingerprint,
    /// Its current health.
    pub health: Health,
    /// Milliseconds since its last successful heartbeat; `None` if it never
    /// answered.
    pub last_seen_ms_ago: Option<u64>,
    /// Heartbeats failed since the last successful one.
    pub consecutive_failures: u32,
    /// How often it was seen to restart (incarnation changes).
    pub restarts_seen: u64,
    /// Its current incarnation; `None` if it never answered.
    pub incarnation: Option<u64>,
}

/// One peer's entry.
#[derive(Debug)]
struct PeerState {
    config: PeerConfig,
    health: Health,
    last_ok: Option<Instant>,
    consecutive_failures: u32,
    restarts_seen: u64,
    incarnation: Option<u64>,
}

impl PeerState {
    /// Time since the peer was last heard from, counting from `created` if
    /// it never was.
    fn silence(&self, created: Instant, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_ok.unwrap_or(created))
    }
}

#[derive(Debug)]
struct Inner {
    peers: BTreeMap<u8, PeerState>,
}

/// The peers and their health. Methods take `&self` (a mutex inside), so
/// one directory is shared in an `Arc` by the heartbeat task, the
/// orchestrator and the admin API.
#[derive(Debug)]
pub struct Directory {
    me: u8,
    suspect_after: Duration,
    down_after: Duration,
    created: Instant,
    inner: Mutex<Inner>,
}

impl Directory {
    /// A directory for provider `me` with the given peers, all starting
    /// [`Health::Suspect`] (not yet heard from). An entry for `me` itself,
    /// or a second entry for one id, is ignored (configuration validation
    /// refuses both anyway).
    pub fn new(
        me: u8,
        peers: &[PeerConfig],
        suspect_after: Duration,
        down_after: Duration,
        now: Instant,
    ) -> Directory {
        let mut map = BTreeMap::new();
        for p in peers.iter().filter(|p| p.id != me) {
            map.entry(p.id).or_insert_with(|| PeerState {
                config: p.clone(),
                health: Health::Suspect,
                last_ok: None,
                consecutive_failures: 0,
                restarts_seen: 0,
                incarnation: None,
            });
        }
        Directory {
            me,
            suspect_after,
            down_after,
            created: now,
            inner: Mutex::new(Inner { peers: map }),
        }
    }

    /// A directory for the peers and heartbeat timing of `config`.
    pub fn from_config(config: &ProviderConfig, now: Instant) -> Directory {
        Directory::new(
            config.id,
            &config.peers,
            config.timeouts.suspect_after,
            config.timeouts.down_after,
            now,
        )
    }

    /// This provider's own id.
    pub fn me(&self) -> u8 {
        self.me
    }

    /// The peers' ids, ascending.
    pub fn peer_ids(&self) -> Vec<u8> {
        self.lock().peers.keys().copied().collect()
    }

    /// The configured endpoints and fingerprint of a peer.
    pub fn peer_config(&self, peer: u8) -> Option<PeerConfig> {
        self.lock().peers.get(&peer).map(|p| p.config.clone())
    }

    /// The peer whose certificate has this fingerprint, if any: how an
    /// incoming connection is attributed to a peer.
    pub fn peer_by_fingerprint(&self, fingerprint: &Fingerprint) -> Option<u8> {
        self.lock()
            .peers
            .values()
            .find(|p| p.config.fingerprint == *fingerprint)
            .map(|p| p.config.id)
    }

    /// A heartbeat to `peer` succeeded and the peer reported `incarnation`.
    /// The peer becomes available; if its incarnation differs from the one
    /// seen before, it restarted (`restarted` is set, `restarts_seen`
    /// counts up). The first incarnation ever seen is not a restart.
    pub fn heartbeat_ok(&self, peer: u8, incarnation: u64, now: Instant) -> Transition {
        let mut inner = self.lock();
        let Some(p) = inner.peers.get_mut(&peer) else {
            return self.unknown(peer);
        };
        let from = p.health;
        let restarted = p.incarnation.is_some_and(|old| old != incarnation);
        if restarted {
            p.restarts_seen += 1;
            tracing::info!(
                peer,
                old_incarnation = p.incarnation,
                new_incarnation = incarnation,
                "peer restarted; its links must be redone"
            );
        }
        p.incarnation = Some(incarnation);
        // Heartbeat results may be reported out of order by concurrent
        // tasks; silence counts from the latest success.
        p.last_ok = Some(p.last_ok.map_or(now, |t| t.max(now)));
        p.consecutive_failures = 0;
        p.health = Health::Available;
        let t = Transition {
            from,
            to: Health::Available,
            restarted,
        };
        log_transition(peer, &t, "heartbeat answered");
        t
    }

    /// A heartbeat to `peer` failed (error or no answer in time). An
    /// available peer becomes suspect at once; whether it is down depends
    /// only on how long it has been silent (`down_after`), so one lost
    /// heartbeat never takes a peer down.
    pub fn heartbeat_failed(&self, peer: u8, now: Instant) -> Transition {
        let mut inner = self.lock();
        let Some(p) = inner.peers.get_mut(&peer) else {
            return self.unknown(peer);
        };
        let from = p.health;
        p.consecutive_failures = p.consecutive_failures.saturating_add(1);
        if p.health == Health::Available {
            p.health = Health::Suspect;
        }
        self.apply_silence(p, now);
        let t = Transition {
            from,
            to: p.health,
            restarted: false,
        };
        log_transition(peer, &t, "heartbeat failed");
        t
    }

    /// Applies the passage of time: a peer silent for `suspect_after` is
    /// suspect, for `down_after` down. Returns the peers whose health
    /// changed, ascending by id.
    pub fn tick(&self, now: Instant) -> Vec<(u8, Transition)> {
        let mut inner = self.lock();
        let mut changes = Vec::new();
        for (&id, p) in inner.peers.iter_mut() {
            let from = p.health;
            self.apply_silence(p, now);
            let t = Transition {
                from,
                to: p.health,
                restarted: false,
            };
            if t.changed() {
                log_transition(id, &t, "no heartbeat answer");
                changes.push((id, t));
            }
        }
        changes
    }

    /// A peer's current health; `None` for an unknown id.
    pub fn health(&self, peer: u8) -> Option<Health> {
        self.lock().peers.get(&peer).map(|p| p.health)
    }

    /// A peer's current incarnation; `None` for an unknown id or a peer
    /// never heard from.
    pub fn incarnation(&self, peer: u8) -> Option<u64> {
        self.lock().peers.get(&peer).and_then(|p| p.incarnation)
    }

    /// Whether every peer is available: the precondition for starting a
    /// job, since all three providers hold shares and none can be left out.
    pub fn all_available(&self) -> bool {
        self.lock()
            .peers
            .values()
            .all(|p| p.health == Health::Available)
    }

    /// Every peer's status at `now`, ascending by id.
    pub fn snapshot(&self, now: Instant) -> Vec<PeerStatus> {
        self.lock()
            .peers
            .values()
            .map(|p| PeerStatus {
                id: p.config.id,
                control: p.config.control,
                smc: p.config.smc,
                fingerprint: p.config.fingerprint,
                health: p.health,
                last_seen_ms_ago: p.last_ok.map(|t| {
                    u64::try_from(now.saturating_duration_since(t).as_millis()).unwrap_or(u64::MAX)
                }),
                consecutive_failures: p.consecutive_failures,
                restarts_seen: p.restarts_seen,
                incarnation: p.incarnation,
            })
            .collect()
    }

    /// Moves a peer down the health ladder according to its silence. Never
    /// moves it up: only a successful heartbeat does that.
    fn apply_silence(&self, p: &mut PeerState, now: Instant) {
        let silence = p.silence(self.created, now);
        if silence >= self.down_after {
            p.health = Health::Down;
        } else if silence >= self.suspect_after && p.health == Health::Available {
            p.health = Health::Suspect;
        }
    }

    fn unknown(&self, peer: u8) -> Transition {
        tracing::warn!(
            peer,
            me = self.me,
            "heartbeat result for a peer not in the directory ignored"
        );
        Transition::unchanged(Health::Down)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave an entry half-updated
        // in a way that matters (each field is valid on its own, and the
        // next heartbeat rewrites them), so keep serving rather than
        // propagate the poison to every caller.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Logs a health change: recovery at info, degradation at warn.
fn log_transition(peer: u8, t: &Transition, why: &str) {
    if t.from == t.to {
        return;
    }
    if t.to == Health::Available {
        tracing::info!(peer, from = %t.from, to = %t.to, "peer {}: {why}", t.to);
    } else {
        tracing::warn!(peer, from = %t.from, to = %t.to, "peer {}: {why}", t.to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUSPECT: Duration = Duration::from_millis(1500);
    const DOWN: Duration = Duration::from_secs(5);

    fn peer(id: u8) -> PeerConfig {
        PeerConfig {
            id,
            control: SocketAddr::from(([127, 0, 0, 1], 7400 + 10 * u16::from(id))),
            smc: SocketAddr::from(([127, 0, 0, 1], 7401 + 10 * u16::from(id))),
            fingerprint: Fingerprint([id; 32]),
        }
    }

    fn dir(t0: Instant) -> Directory {
        Directory::new(0, &[peer(1), peer(2)], SUSPECT, DOWN, t0)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn tr(from: Health, to: Health, restarted: bool) -> Transition {
        Transition {
            from,
            to,
            restarted,
        }
    }

    use Health::{Available, Down, Suspect};

    #[test]
    fn peers_start_suspect() {
        let t0 = Instant::now();
        let d = dir(t0);
        assert_eq!(d.peer_ids(), vec![1, 2]);
        assert_eq!(d.health(1), Some(Suspect));
        assert_eq!(d.health(2), Some(Suspect));
        assert!(!d.all_available());
        assert!(d.tick(t0).is_empty());
        assert!(d.tick(t0 + ms(1499)).is_empty());
    }

    #[test]
    fn never_heard_from_goes_down_after_down_after() {
        let t0 = Instant::now();
        let d = dir(t0);
        assert!(d.tick(t0 + DOWN - ms(1)).is_empty());
        assert_eq!(
            d.tick(t0 + DOWN),
            vec![(1, tr(Suspect, Down, false)), (2, tr(Suspect, Down, false))]
        );
        assert!(d.tick(t0 + DOWN + ms(10)).is_empty(), "reported once");
    }

    #[test]
    fn first_heartbeat_makes_available_without_restart() {
        let t0 = Instant::now();
        let d = dir(t0);
        assert_eq!(d.heartbeat_ok(1, 77, t0), tr(Suspect, Available, false));
        assert_eq!(d.health(1), Some(Available));
        assert_eq!(d.incarnation(1), Some(77));
        assert!(!d.all_available());
        assert_eq!(d.heartbeat_ok(2, 88, t0), tr(Suspect, Available, false));
        assert!(d.all_available());
        // Another answer from the same incarnation changes nothing.
        let t = d.heartbeat_ok(1, 77, t0 + ms(500));
        assert_eq!(t, tr(Available, Available, false));
        assert!(!t.changed());
    }

    #[test]
    fn silence_makes_suspect_then_down() {
        let t0 = Instant::now();
        let d = dir(t0);
        d.heartbeat_ok(1, 1, t0);
        d.heartbeat_ok(2, 2, t0 + ms(1000));
        assert!(d.tick(t0 + SUSPECT - ms(1)).is_empty());
        // Peer 1 has been silent for suspect_after, peer 2 not yet.
        assert_eq!(
            d.tick(t0 + SUSPECT),
            vec![(1, tr(Available, Suspect, false))]
        );
        assert_eq!(d.health(2), Some(Available));
        assert_eq!(
            d.tick(t0 + ms(1000) + SUSPECT),
            vec![(2, tr(Available, Suspect, false))]
        );
        assert_eq!(d.tick(t0 + DOWN), vec![(1, tr(Suspect, Down, false))]);
        assert_eq!(d.health(1), Some(Down));
        assert_eq!(d.health(2), Some(Suspect));
    }

    #[test]
    fn long_silence_goes_straight_to_down() {
        let t0 = Instant::now();
        let d = dir(t0);
        d.heartbeat_ok(1, 1, t0);
        d.heartbeat_ok(2, 2, t0);
        // No tick in between (e.g. the process was paused).
        let changes = d.tick(t0 + ms(60_000));
        assert_eq!(
            changes,
            vec![
                (1, tr(Available, Down, false)),
                (2, tr(Available, Down, false))
            ]
        );
    }

    #[test]
    fn failed_heartbeat_makes_suspect_but_not_down() {
        let t0 = Instant::now();
        let d = dir(t0);
        d.heartbeat_ok(1, 1, t0);
        let t = d.heartbeat_failed(1, t0 + ms(500));
        assert_eq!(t, tr(Available, Suspect, false));
        assert!(t.changed());
        // Many failures within down_after: still only suspect.
        for i in 0..5 {
            assert_eq!(
                d.heartbeat_failed(1, t0 + ms(600 + i * 100)),
                tr(Suspect, Suspect, false)
            );
        }
        assert_eq!(d.health(1), Some(Suspect));
        // A failure once down_after has passed takes it down, even with no tick.
        assert_eq!(d.heartbeat_failed(1, t0 + DOWN), tr(Suspect, Down, false));
        assert_eq!(
            d.heartbeat_failed(1, t0 + DOWN + ms(1)),
            tr(Down, Down, false)
        );
        let s = d.snapshot(t0 + DOWN + ms(1));
        assert_eq!(s[0].consecutive_failures, 8);
    }

    #[test]
    fn recovery_from_suspect_and_down() {
        let t0 = Instant::now();
        let d = dir(t0);
        d.heartbeat_ok(1, 1, t0);
        d.heartbeat_failed(1, t0 + ms(100));
        assert_eq!(
            d.heartbeat_ok(1, 1, t0 + ms(200)),
            tr(Suspect, Available, false)
        );
        assert_eq!(d.snapshot(t0 + ms(200))[0].consecutive_failures, 0);

        d.tick(t0 + ms(200) + DOWN);
        assert_eq!(d.health(1), Some(Down));
        let later = t0 + ms(200) + DOWN + ms(1);
        assert_eq!(d.heartbeat_ok(1, 1, later), tr(Down, Available, false));
        // Silence is measured from the new success, not from the old one.
        assert!(d
            .tick(later + SUSPECT - ms(1))
            .iter()
            .all(|(id, _)| *id != 1));
    }

    #[test]
    fn restart_detected_by_incarnation() {
        let t0 = Instant::now();
        let d = dir(t0);
        d.heartbeat_ok(2, 100, t0);
        // Restart noticed while the peer still looked available (fast restart).
        let t = d.heartbeat_ok(2, 101, t0 + ms(400));
        assert_eq!(t, tr(Available, Available, true));
        assert!(
            t.changed(),
            "a restart must be acted on even without a health change"
        );
        // Restart after being down.
        d.tick(t0 + ms(400) + DOWN);
        let t = d.heartbeat_ok(2, 102, t0 + ms(400) + DOWN + ms(1));
        assert_eq!(t, tr(Down, Available, true));
        // The same incarnation again is not a restart.
        assert!(
            !d.heartbeat_ok(2, 102, t0 + ms(400) + DOWN + ms(2))
                .restarted
        );
        let s = d.snapshot(t0 + ms(400) + DOWN + ms(2));
        assert_eq!(s[1].restarts_seen, 2);
        assert_eq!(s[1].incarnation, Some(102));
        // Peer 1 unaffected.
        assert_eq!(s[0].restarts_seen, 0);
    }

    #[test]
    fn unknown_peer_ignored() {
        let t0 = Instant::now();
        let d = dir(t0);
        for id in [0, 3, 255] {
            assert_eq!(d.heartbeat_ok(id, 1, t0), Transition::unchanged(Down));
            assert_eq!(d.heartbeat_failed(id, t0), Transition::unchanged(Down));
            assert_eq!(d.health(id), None);
            assert!(d.peer_config(id).is_none());
        }
        assert_eq!(d.snapshot(t0).len(), 2);
    }

    #[test]
    fn own_and_duplicate_entries_ignored() {
        let t0 = Instant::now();
        let mut dup = peer(2);
        dup.control = SocketAddr::from(([10, 0, 0, 9], 1));
        let d = Directory::new(1, &[peer(0), peer(1), peer(2), dup], SUSPECT, DOWN, t0);
        assert_eq!(d.me(), 1);
        assert_eq!(d.peer_ids(), vec![0, 2]);
        assert_eq!(d.peer_config(2), Some(peer(2)), "the first entry wins");
    }

    #[test]
    fn lookup_by_fingerprint() {
        let d = dir(Instant::now());
        assert_eq!(d.peer_by_fingerprint(&Fingerprint([2; 32])), Some(2));
        assert_eq!(d.peer_by_fingerprint(&Fingerprint([9; 32])), None);
    }

    #[test]
    fn snapshot_contents() {
        let t0 = Instant::now();
        let d = dir(t0);
        d.heartbeat_ok(1, 42, t0 + ms(100));
        d.heartbeat_failed(2, t0 + ms(100));
        d.heartbeat_failed(2, t0 + ms(600));
        let s = d.snapshot(t0 + ms(350));
        assert_eq!(
            s,
            vec![
                PeerStatus {
                    id: 1,
                    control: peer(1).control,
                    smc: peer(1).smc,
                    fingerprint: Fingerprint([1; 32]),
                    health: Available,
                    last_seen_ms_ago: Some(250),
                    consecutive_failures: 0,
                    restarts_seen: 0,
                    incarnation: Some(42),
                },
                PeerStatus {
                    id: 2,
                    control: peer(2).control,
                    smc: peer(2).smc,
                    fingerprint: Fingerprint([2; 32]),
                    health: Suspect,
                    last_seen_ms_ago: None,
                    consecutive_failures: 2,
                    restarts_seen: 0,
                    incarnation: None,
                },
            ]
        );
        // A clock reading earlier than the last success does not underflow.
        assert_eq!(d.snapshot(t0)[0].last_seen_ms_ago, Some(0));
    }

    #[test]
    fn snapshot_json_shape() {
        let t0 = Instant::now();
        let d = dir(t0);
        d.heartbeat_ok(1, 7, t0);
        let json = serde_json::to_value(d.snapshot(t0 + ms(5))).expect("json");
        let p1 = &json[0];
        assert_eq!(p1["id"], 1);
        assert_eq!(p1["health"], "available");
        assert_eq!(p1["control"], "127.0.0.1:7410");
        assert_eq!(p1["smc"], "127.0.0.1:7411");
        assert_eq!(p1["fingerprint"], hex::encode([1u8; 32]));
        assert_eq!(p1["last_seen_ms_ago"], 5);
        assert_eq!(p1["incarnation"], 7);
        assert_eq!(json[1]["health"], "suspect");
        assert!(json[1]["last_seen_ms_ago"].is_null());
        assert_eq!(
            serde_json::from_str::<Health>("\"down\"").expect("parse"),
            Down
        );
    }

    #[test]
    fn shared_across_threads() {
        let t0 = Instant::now();
        let d = std::sync::Arc::new(dir(t0));
        let handles: Vec<_> = (0..4u64)
            .map(|i| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for k in 0..100 {
                        d.heartbeat_ok(1, 9, t0 + ms(i * 100 + k));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert_eq!(d.health(1), Some(Available));
        assert_eq!(d.snapshot(t0)[0].restarts_seen, 0);
    }

    #[test]
    fn from_config_uses_peers_and_timing() {
        let text = include_str!("../../docs/provider.example.toml");
        let config = ProviderConfig::from_toml_str(text).expect("example");
        let t0 = Instant::now();
        let d = Directory::from_config(&config, t0);
        assert_eq!(d.me(), 0);
        assert_eq!(d.peer_ids(), vec![1, 2]);
        d.heartbeat_ok(1, 1, t0);
        assert!(d
            .tick(t0 + config.timeouts.suspect_after - ms(1))
            .is_empty());
        assert_eq!(d.tick(t0 + config.timeouts.suspect_after).len(), 1);
    }
}
