//! The provider mesh: one persistent, mutually authenticated TLS connection
//! to each of the two other providers, carrying length-prefixed protobuf
//! frames multiplexed over channels.
//!
//! P_i dials every P_j with j > i and accepts from every P_j with j < i, so
//! each pair has exactly one connection. Each connection gets a reader task
//! (dispatching frames to per-channel inboxes) and a writer task (draining
//! an outbox); reading and writing are independent so two parties sending
//! large batches to each other at once cannot deadlock on full socket
//! buffers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message;
use rand::RngCore;
use sharecall_proto::wire::{Frame, Hello};
use sharecall_proto::PartyId;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tracing::{debug, warn};

use super::error::{SmcError, SmcResult};
use super::prg::{derive_pair_seed, PairwiseSeeds};
use crate::identity::{Fingerprint, Identity};
use crate::tls;

/// Version of the SMC frame protocol; both sides must agree.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame accepted (a batch of 8 Mi field elements plus header).
pub const MAX_FRAME_LEN: usize = 256 * 1024 * 1024 + 1024;

/// Frames a peer may have queued per channel before it counts as flooding.
/// Protocol steps bound how far a peer can run ahead (it needs our
/// messages to progress), so an honest peer never comes close.
const INBOX_CAPACITY: usize = 64;

/// Frames queued for sending per peer before senders wait.
const OUTBOX_CAPACITY: usize = 64;

/// Another provider as seen from this one.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// Its party index.
    pub party: PartyId,
    /// Where it listens for SMC connections.
    pub addr: SocketAddr,
    /// The SHA-256 fingerprint of its certificate (pinned).
    pub fingerprint: Fingerprint,
}

/// What linking needs to know.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// This provider's party index.
    pub me: PartyId,
    /// The two other providers.
    pub peers: Vec<PeerSpec>,
    /// Number of multiplexed channels; both sides must agree.
    pub channels: u32,
    /// How long linking may take in total (waiting for peers to come up).
    pub link_timeout: Duration,
    /// Link epoch; both sides must agree.
    pub epoch: u64,
}

struct PeerLink {
    outbox: mpsc::Sender<Bytes>,
    broken: Arc<Mutex<Option<String>>>,
    tasks: [JoinHandle<()>; 2],
}

/// The established connections to the two other providers.
pub struct Mesh {
    me: PartyId,
    channels: u32,
    links: [Option<PeerLink>; 3],
}

/// Per-peer, per-channel receivers of incoming frames, indexed
/// `[peer][channel]`; slots of this party itself are empty.
pub type Inboxes = [Vec<mpsc::Receiver<Frame>>; 3];

impl Mesh {
    /// Connects to both peers (dialing the higher, accepting the lower),
    /// authenticates them by pinned fingerprint, exchanges Hello frames and
    /// derives the pairwise PRG seeds.
    pub async fn link(
        config: &LinkConfig,
        identity: &Identity,
        listener: &TcpListener,
    ) -> SmcResult<(Mesh, Inboxes, PairwiseSeeds)> {
        let me = config.me;
        let deadline = tokio::time::Instant::now() + config.link_timeout;
        let mut streams: [Option<(Framed<TlsStreamAny, LengthDelimitedCodec>, Hello)>; 3] =
            [None, None, None];
        let my_hello = Hello {
            party: me.index() as u32,
            seed_contribution: {
                let mut b = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut b);
                Bytes::from(b)
            },
            lanes: config.channels,
            version: PROTOCOL_VERSION,
            epoch: config.epoch,
        };

        let to_accept: Vec<&PeerSpec> = config.peers.iter().filter(|p| p.party < me).collect();
        let to_dial: Vec<&PeerSpec> = config.peers.iter().filter(|p| p.party > me).collect();
        let dials = futures::future::join_all(
            to_dial
                .iter()
                .map(|peer| dial(peer, identity, &my_hello, deadline, config.channels)),
        );
        let accepts = accept_all(
            &to_accept,
            identity,
            listener,
            &my_hello,
            deadline,
            config.channels,
        );
        let (dialed, accepted) = tokio::join!(dials, accepts);
        for r in dialed {
            let (party, framed, hello) = r?;
            streams[party.index()] = Some((framed, hello));
        }
        for (party, framed, hello) in accepted? {
            streams[party.index()] = Some((framed, hello));
        }

        let mut seeds = PairwiseSeeds {
            with_prev: [0; 32],
            with_next: [0; 32],
        };
        let mut links: [Option<PeerLink>; 3] = [None, None, None];
        let mut inboxes: Inboxes = [Vec::new(), Vec::new(), Vec::new()];
        for (idx, slot) in streams.into_iter().enumerate() {
            let Some((framed, hello)) = slot else {
                continue;
            };
            let Some(peer) = PartyId::new(idx) else {
                continue;
            };
            let (low, high) = if me < peer {
                ((me, &my_hello), (peer, &hello))
            } else {
                ((peer, &hello), (me, &my_hello))
            };
            let seed = derive_pair_seed(
                (low.0.index() as u32, &low.1.seed_contribution),
                (high.0.index() as u32, &high.1.seed_contribution),
            );
            if peer == me.next() {
                seeds.with_next = seed;
            } else {
                seeds.with_prev = seed;
            }
            let (link, boxes) = spawn_link(me, peer, framed, config.channels);
            links[idx] = Some(link);
            inboxes[idx] = boxes;
        }
        for p in me.others() {
            if links[p.index()].is_none() {
                return Err(SmcError::Link {
                    peer: p,
                    reason: "peer is not configured".into(),
                });
            }
        }
        Ok((
            Mesh {
                me,
                channels: config.channels,
                links,
            },
            inboxes,
            seeds,
        ))
    }

    /// This party.
    pub fn me(&self) -> PartyId {
        self.me
    }

    /// Number of channels.
    pub fn channels(&self) -> u32 {
        self.channels
    }

    /// Queues a frame for `peer`; fails if the connection is gone.
    pub async fn send(&self, peer: PartyId, frame: &Frame) -> Result<(), String> {
        let link = self.links[peer.index()]
            .as_ref()
            .ok_or_else(|| format!("{peer} is not linked"))?;
        let bytes = Bytes::from(frame.encode_to_vec());
        if link.outbox.send(bytes).await.is_err() {
            return Err(self.broken_reason(peer));
        }
        Ok(())
    }

    /// Why the connection to `peer` broke, as recorded by its tasks.
    pub fn broken_reason(&self, peer: PartyId) -> String {
        self.links[peer.index()]
            .as_ref()
            .and_then(|l| l.broken.lock().ok().and_then(|g| g.clone()))
            .unwrap_or_else(|| "connection closed".to_string())
    }

    /// Whether both connections are still up.
    pub fn is_healthy(&self) -> bool {
        self.me.others().iter().all(|p| {
            self.links[p.index()]
                .as_ref()
                .is_some_and(|l| l.broken.lock().map(|g| g.is_none()).unwrap_or(false))
        })
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        for link in self.links.iter().flatten() {
            for t in &link.tasks {
                t.abort();
            }
        }
    }
}

type TlsStreamAny = tokio_rustls::TlsStream<TcpStream>;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

/// Dials `peer` until it accepts or the deadline passes: during a re-link
/// the peer may still be finishing an earlier link attempt and drop us.
async fn dial(
    peer: &PeerSpec,
    identity: &Identity,
    hello: &Hello,
    deadline: tokio::time::Instant,
    channels: u32,
) -> SmcResult<(PartyId, Framed<TlsStreamAny, LengthDelimitedCodec>, Hello)> {
    loop {
        match dial_once(peer, identity, hello, deadline, channels).await {
            Ok(linked) => return Ok(linked),
            Err(e) => {
                let retry_at = tokio::time::Instant::now() + Duration::from_millis(100);
                if retry_at >= deadline {
                    return Err(e);
                }
                debug!(peer = %peer.party, "dial failed, retrying: {e}");
                tokio::time::sleep_until(retry_at).await;
            }
        }
    }
}

async fn dial_once(
    peer: &PeerSpec,
    identity: &Identity,
    hello: &Hello,
    deadline: tokio::time::Instant,
    channels: u32,
) -> SmcResult<(PartyId, Framed<TlsStreamAny, LengthDelimitedCodec>, Hello)> {
    let link_err = |reason: String| SmcError::Link {
        peer: peer.party,
        reason,
    };
    let config =
        tls::client_config(identity, peer.fingerprint).map_err(|e| link_err(e.to_string()))?;
    let connector = TlsConnector::from(config);
    // The peer may not be up yet: retry the TCP connect until the deadline,
    // but not a TLS refusal, which will not fix itself.
    let tcp = loop {
        match TcpStream::connect(peer.addr).await {
            Ok(s) => break s,
            Err(e) => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(link_err(format!("cannot connect to {}: {e}", peer.addr)));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout_at(deadline, connector.connect(tls::server_name(), tcp))
        .await
        .map_err(|_| link_err("TLS handshake timed out".into()))?
        .map_err(|e| link_err(format!("TLS handshake failed: {e}")))?;
    let mut framed = Framed::new(TlsStreamAny::Client(tls), codec());
    send_hello(&mut framed, hello).await.map_err(link_err)?;
    let their = tokio::time::timeout_at(deadline, recv_hello(&mut framed))
        .await
        .map_err(|_| link_err("no Hello before the link deadline".into()))?
        .map_err(link_err)?;
    check_hello(&their, peer.party, channels, hello.epoch).map_err(link_err)?;
    debug!(peer = %peer.party, "linked (dialed)");
    Ok((peer.party, framed, their))
}

async fn accept_all(
    expected: &[&PeerSpec],
    identity: &Identity,
    listener: &TcpListener,
    hello: &Hello,
    deadline: tokio::time::Instant,
    channels: u32,
) -> SmcResult<Vec<(PartyId, Framed<TlsStreamAny, LengthDelimitedCodec>, Hello)>> {
    let mut got: Vec<(PartyId, Framed<TlsStreamAny, LengthDelimitedCodec>, Hello)> = Vec::new();
    if expected.is_empty() {
        return Ok(got);
    }
    let pinned: Vec<Fingerprint> = expected.iter().map(|p| p.fingerprint).collect();
    let config = tls::server_config(identity, &pinned).map_err(|e| SmcError::Link {
        peer: expected[0].party,
        reason: e.to_string(),
    })?;
    let acceptor = TlsAcceptor::from(config);
    while got.len() < expected.len() {
        let missing: Vec<String> = expected
            .iter()
            .filter(|p| !got.iter().any(|g| g.0 == p.party))
            .map(|p| p.party.to_string())
            .collect();
        let (tcp, from) = match tokio::time::timeout_at(deadline, listener.accept()).await {
            Err(_) => {
                return Err(SmcError::Link {
                    peer: expected
                        .iter()
                        .find(|p| !got.iter().any(|g| g.0 == p.party))
                        .map(|p| p.party)
                        .unwrap_or(expected[0].party),
                    reason: format!(
                        "{} did not connect before the link deadline",
                        missing.join(", ")
                    ),
                })
            }
            Ok(Err(e)) => {
                warn!("accept failed: {e}");
                continue;
            }
            Ok(Ok(x)) => x,
        };
        let _ = tcp.set_nodelay(true);
        // A stranger (or a peer with the wrong certificate) is refused and
        // logged; it does not abort linking with the genuine peers.
        let tls = match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => {
                warn!(%from, "refused SMC connection: {e}");
                continue;
            }
            Err(_) => continue,
        };
        let fp = tls::peer_fingerprint(tls.get_ref().1);
        let Some(peer) = expected.iter().find(|p| Some(p.fingerprint) == fp) else {
            warn!(%from, "refused SMC connection: unknown certificate");
            continue;
        };
        let mut framed = Framed::new(TlsStreamAny::Server(tls), codec());
        let their = match tokio::time::timeout_at(deadline, recv_hello(&mut framed)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                warn!(peer = %peer.party, "bad Hello: {e}");
                continue;
            }
            Err(_) => continue,
        };
        if their.epoch < hello.epoch {
            // Left over from an earlier link attempt: not an error of the
            // link being made now.
            debug!(peer = %peer.party, epoch = their.epoch, "dropping stale SMC connection");
            continue;
        }
        if let Err(e) = check_hello(&their, peer.party, channels, hello.epoch) {
            return Err(SmcError::Link {
                peer: peer.party,
                reason: e,
            });
        }
        if let Err(e) = send_hello(&mut framed, hello).await {
            warn!(peer = %peer.party, "sending Hello failed: {e}");
            continue;
        }
        debug!(peer = %peer.party, "linked (accepted)");
        // A peer that reconnects replaces its earlier connection.
        got.retain(|g| g.0 != peer.party);
        got.push((peer.party, framed, their));
    }
    Ok(got)
}

async fn send_hello(
    framed: &mut Framed<TlsStreamAny, LengthDelimitedCodec>,
    hello: &Hello,
) -> Result<(), String> {
    framed
        .send(Bytes::from(hello.encode_to_vec()))
        .await
        .map_err(|e| format!("sending Hello: {e}"))
}

async fn recv_hello(
    framed: &mut Framed<TlsStreamAny, LengthDelimitedCodec>,
) -> Result<Hello, String> {
    match framed.next().await {
        Some(Ok(buf)) => Hello::decode(buf.freeze()).map_err(|e| format!("undecodable Hello: {e}")),
        Some(Err(e)) => Err(format!("reading Hello: {e}")),
        None => Err("connection closed before Hello".into()),
    }
}

fn check_hello(h: &Hello, expected: PartyId, channels: u32, epoch: u64) -> Result<(), String> {
    if h.epoch != epoch {
        return Err(format!(
            "peer links at epoch {}, we link at epoch {epoch}",
            h.epoch
        ));
    }
    if h.version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} (we speak {PROTOCOL_VERSION})",
            h.version
        ));
    }
    if h.party as usize != expected.index() {
        return Err(format!(
            "certificate of {expected} but Hello claims party {}",
            h.party
        ));
    }
    if h.lanes != channels {
        return Err(format!(
            "peer runs {} channels, we run {channels}: configure the same lane count",
            h.lanes
        ));
    }
    if h.seed_contribution.len() != 32 {
        return Err("seed contribution must be 32 bytes".into());
    }
    Ok(())
}

fn spawn_link(
    me: PartyId,
    peer: PartyId,
    framed: Framed<TlsStreamAny, LengthDelimitedCodec>,
    channels: u32,
) -> (PeerLink, Vec<mpsc::Receiver<Frame>>) {
    let (mut sink, mut stream) = framed.split();
    let broken: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(OUTBOX_CAPACITY);
    let mut senders = Vec::with_capacity(channels as usize);
    let mut receivers = Vec::with_capacity(channels as usize);
    for _ in 0..channels {
        let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
        senders.push(tx);
        receivers.push(rx);
    }
    let mark = |broken: &Arc<Mutex<Option<String>>>, why: String| {
        if let Ok(mut g) = broken.lock() {
            if g.is_none() {
                *g = Some(why);
            }
        }
    };

    let b = broken.clone();
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if let Err(e) = sink.send(bytes).await {
                mark(&b, format!("write failed: {e}"));
                break;
            }
        }
        let _ = sink.close().await;
    });

    let b = broken.clone();
    let reader = tokio::spawn(async move {
        let why = loop {
            let buf = match stream.next().await {
                None => break "closed by peer".to_string(),
                Some(Err(e)) => break format!("read failed: {e}"),
                Some(Ok(buf)) => buf,
            };
            let frame = match Frame::decode(buf.freeze()) {
                Ok(f) => f,
                Err(e) => break format!("undecodable frame: {e}"),
            };
            let Some(tx) = senders.get(frame.channel as usize) else {
                break format!("frame for unknown channel {}", frame.channel);
            };
            match tx.try_send(frame) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(f)) => {
                    break format!("flooded channel {} (protocol violation)", f.channel)
                }
                // Nobody listens on that channel any more (engine shutting down).
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        };
        debug!(%me, %peer, "link reader ends: {why}");
        mark(&b, why);
        // Dropping the senders wakes every waiting receiver at once.
        drop(senders);
    });

    (
        PeerLink {
            outbox: out_tx,
            broken,
            tasks: [writer, reader],
        },
        receivers,
    )
}
