//! A channel: one ordered stream of SMC operations between the three
//! parties, with its own PRG streams and inboxes.
//!
//! Operations on a channel run strictly one after another, and all three
//! parties run the same operations in the same order; that is what keeps
//! PRG streams and preprocessed material aligned without coordination.
//! Concurrency comes from running several channels (lanes) side by side.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sharecall_proto::wire::{Frame, FrameKind};
use sharecall_proto::{PartyId, Share};
use tokio::sync::mpsc;

use super::bit_block::BitBlock;
use super::error::{OpRef, SmcError, SmcResult};
use super::pool::Pool;
use super::prg::{PairwiseSeeds, Prg};
use super::transport::Mesh;

/// Incoming frames from one peer on one channel.
pub(crate) struct Inbox {
    rx: mpsc::Receiver<Frame>,
    /// A frame of a later session that arrived while an earlier one ran;
    /// kept for the session it belongs to.
    stash: Option<Frame>,
}

/// Set once a failed session may have left a channel's preprocessed
/// material misaligned with its peers' (shared with the engine, which then
/// reports itself unhealthy).
#[derive(Clone, Default)]
pub(crate) struct Desync(Arc<std::sync::Mutex<Option<String>>>);

impl Desync {
    pub(crate) fn set(&self, reason: String) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(reason);
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Preprocessed material a channel draws from (online lanes only).
#[derive(Clone)]
pub(crate) struct Pools {
    pub squares: Arc<Pool<Share>>,
    pub bits: Arc<Pool<BitBlock>>,
}

/// One ordered stream of operations; see the module docs.
pub struct Channel {
    pub(crate) id: u32,
    pub(crate) me: PartyId,
    pub(crate) mesh: Arc<Mesh>,
    pub(crate) prg: Prg,
    pub(crate) seeds: PairwiseSeeds,
    pub(crate) desync: Desync,
    inboxes: [Option<Inbox>; 3],
    pub(crate) last_session: Option<u64>,
    pub(crate) timeout: Duration,
    pub(crate) pools: Option<Pools>,
}

impl Channel {
    /// Builds channel `id` from the mesh's receivers for it.
    pub(crate) fn new(
        id: u32,
        mesh: Arc<Mesh>,
        seeds: &PairwiseSeeds,
        receivers: [Option<mpsc::Receiver<Frame>>; 3],
        timeout: Duration,
        pools: Option<Pools>,
    ) -> Channel {
        Channel {
            id,
            me: mesh.me(),
            // Replaced at every session start; see `Prg`.
            prg: Prg::new(seeds, id, 0),
            seeds: seeds.clone(),
            desync: Desync::default(),
            mesh,
            inboxes: receivers.map(|r| r.map(|rx| Inbox { rx, stash: None })),
            last_session: None,
            timeout,
            pools,
        }
    }

    /// The channel number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends one frame, mapping a dead connection to an error at `at`.
    pub(crate) async fn send(
        &self,
        peer: PartyId,
        at: OpRef,
        kind: FrameKind,
        payload: Bytes,
    ) -> SmcResult<()> {
        let frame = Frame {
            channel: at.channel,
            session: at.session,
            op: at.op,
            kind: kind as i32,
            payload,
        };
        self.mesh
            .send(peer, &frame)
            .await
            .map_err(|reason| SmcError::ConnectionLost { peer, reason, at })
    }

    /// Receives the frames of one round from one or two peers, concurrently.
    pub(crate) async fn recv(
        &mut self,
        at: OpRef,
        expect: &[(PartyId, FrameKind)],
    ) -> SmcResult<Vec<Bytes>> {
        let timeout = self.timeout;
        let mesh = &self.mesh;
        let [a, b, c] = &mut self.inboxes;
        let mut slots: [Option<&mut Inbox>; 3] = [a.as_mut(), b.as_mut(), c.as_mut()];
        match expect {
            [] => Ok(Vec::new()),
            [(p, k)] => {
                let inbox = take_slot(&mut slots, *p, at)?;
                Ok(vec![recv_one(inbox, mesh, *p, *k, at, timeout).await?])
            }
            [(p, k), (q, l)] => {
                if p == q {
                    return Err(SmcError::InvalidInput("two receives from one peer".into()));
                }
                let ip = take_slot(&mut slots, *p, at)?;
                let iq = take_slot(&mut slots, *q, at)?;
                let (x, y) = tokio::try_join!(
                    recv_one(ip, mesh, *p, *k, at, timeout),
                    recv_one(iq, mesh, *q, *l, at, timeout)
                )?;
                Ok(vec![x, y])
            }
            _ => Err(SmcError::InvalidInput(
                "a round receives from at most two peers".into(),
            )),
        }
    }
}

fn take_slot<'a>(
    slots: &mut [Option<&'a mut Inbox>; 3],
    peer: PartyId,
    at: OpRef,
) -> SmcResult<&'a mut Inbox> {
    slots[peer.index()].take().ok_or(SmcError::ConnectionLost {
        peer,
        reason: "not linked".into(),
        at,
    })
}

async fn recv_one(
    inbox: &mut Inbox,
    mesh: &Mesh,
    peer: PartyId,
    kind: FrameKind,
    at: OpRef,
    timeout: Duration,
) -> SmcResult<Bytes> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match inbox.stash.take() {
            Some(f) => f,
            None => match tokio::time::timeout_at(deadline, inbox.rx.recv()).await {
                Err(_) => {
                    return Err(SmcError::Timeout {
                        peer,
                        at,
                        after: timeout,
                    })
                }
                Ok(None) => {
                    return Err(SmcError::ConnectionLost {
                        peer,
                        reason: mesh.broken_reason(peer),
                        at,
                    })
                }
                Ok(Some(f)) => f,
            },
        };
        // Leftovers of an earlier, failed session on this channel.
        if frame.session < at.session {
            continue;
        }
        let got_kind = FrameKind::try_from(frame.kind).unwrap_or(FrameKind::Unspecified);
        let describe = |f: &Frame| {
            format!(
                "session {} op {} {}",
                f.session,
                f.op,
                got_kind.as_str_name()
            )
        };
        if frame.session > at.session {
            let got = describe(&frame);
            inbox.stash = Some(frame);
            return Err(SmcError::OutOfStep {
                peer,
                at,
                expected: kind.as_str_name().to_string(),
                got,
            });
        }
        if got_kind == FrameKind::Abort {
            return Err(SmcError::PeerAborted {
                peer,
                at,
                reason: String::from_utf8_lossy(&frame.payload).into_owned(),
            });
        }
        if frame.op != at.op || got_kind != kind {
            return Err(SmcError::OutOfStep {
                peer,
                at,
                expected: kind.as_str_name().to_string(),
                got: describe(&frame),
            });
        }
        return Ok(frame.payload);
    }
}
