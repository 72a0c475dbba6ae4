//! A session: a numbered sequence of vectorised operations on one channel.
//!
//! Every message carries (channel, session, op) so the three engines match
//! up; a frame from another step is an error, never silently mixed in.
//! This module is the state machine every protocol runs on: the op
//! counter and frame matching of one round, failure and abort, the digests
//! of additive openings that `verify` compares, the fault-injection hook
//! for tests, PRG draws, and the guard that marks a channel desynchronised
//! when a session ends half-way through preprocessed material. The
//! protocols themselves are in [`super::protocols`], one file per family.

use std::ops::DerefMut;

use bytes::Bytes;
use sharecall_proto::field::decode_batch;
use sharecall_proto::wire::FrameKind;
use sharecall_proto::{Fp, PartyId, Share, ShareVec};
use tracing::warn;

use super::bit_block::BitBlock;
use super::channel::{Channel, Desync, Pools};
use super::error::{OpRef, SmcError, SmcResult};
use super::prg::Prg;

/// A running session on a channel; see the module docs.
pub struct Session<C> {
    ch: C,
    id: u64,
    op: u64,
    failed: Option<String>,
    /// Running digests of additive openings received from next / prev,
    /// compared across parties by [`Session::verify`].
    from_next: blake3::Hasher,
    from_prev: blake3::Hasher,
    /// Fault injection for tests: send this peer a wrong additive share.
    equivocate_to: Option<PartyId>,
    /// Set while an operation that consumes preprocessed material runs: if
    /// the session ends (fails or is dropped) with this set, the parties
    /// may have taken different amounts from their pools, and the channel
    /// is marked desynchronised.
    material_pending: bool,
    desync: Desync,
}

impl<C> Drop for Session<C> {
    fn drop(&mut self) {
        if self.material_pending {
            self.desync.set(format!(
                "session {} ended during an operation on preprocessed material ({})",
                self.id,
                self.failed.as_deref().unwrap_or("cancelled")
            ));
        }
    }
}

impl<C: DerefMut<Target = Channel>> Session<C> {
    /// Starts session `id` on a channel. Session ids must increase per
    /// channel, so leftovers of an old session are recognised as such.
    /// Refused on a channel that an earlier failure left out of step with
    /// its peers ([`SmcError::Desynchronised`]): the engine must re-link.
    pub fn begin(mut ch: C, id: u64) -> SmcResult<Session<C>> {
        if let Some(reason) = ch.desync.get() {
            return Err(SmcError::Desynchronised {
                channel: ch.id,
                reason,
            });
        }
        if ch.last_session.is_some_and(|last| id <= last) {
            return Err(SmcError::InvalidInput(format!(
                "session id {id} on channel {} is not above the last one ({})",
                ch.id,
                ch.last_session.unwrap_or_default()
            )));
        }
        ch.last_session = Some(id);
        ch.prg = Prg::new(&ch.seeds, ch.id, id);
        let desync = ch.desync.clone();
        Ok(Session {
            ch,
            id,
            op: 0,
            failed: None,
            from_next: blake3::Hasher::new(),
            from_prev: blake3::Hasher::new(),
            equivocate_to: None,
            material_pending: false,
            desync,
        })
    }

    /// The session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// This party.
    pub fn party(&self) -> PartyId {
        self.ch.me
    }

    /// Number of operations (rounds) run so far.
    pub fn ops(&self) -> u64 {
        self.op
    }

    pub(super) fn me(&self) -> PartyId {
        self.ch.me
    }

    /// Runs one round: sends, then receives; on any failure the session is
    /// marked failed and both peers are told (best effort).
    pub(super) async fn round(
        &mut self,
        sends: Vec<(PartyId, FrameKind, Bytes)>,
        expect: &[(PartyId, FrameKind)],
    ) -> SmcResult<Vec<Bytes>> {
        if let Some(why) = &self.failed {
            return Err(SmcError::SessionFailed(why.clone()));
        }
        let at = OpRef {
            channel: self.ch.id,
            session: self.id,
            op: self.op,
        };
        self.op += 1;
        let result = async {
            for (peer, kind, payload) in sends {
                self.ch.send(peer, at, kind, payload).await?;
            }
            self.ch.recv(at, expect).await
        }
        .await;
        if let Err(e) = &result {
            self.fail(at, e).await;
        }
        result
    }

    pub(super) async fn fail(&mut self, at: OpRef, e: &SmcError) {
        warn!(
            channel = at.channel,
            session = at.session,
            op = at.op,
            "SMC session fails: {e}"
        );
        self.failed = Some(e.to_string());
        let reason = Bytes::from(e.to_string().into_bytes());
        for peer in self.me().others() {
            // Best effort and bounded: a dead peer must not stall the abort.
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                self.ch.send(peer, at, FrameKind::Abort, reason.clone()),
            )
            .await;
        }
    }

    pub(super) fn decode(&self, peer: PartyId, bytes: &[u8], n: usize) -> SmcResult<Vec<Fp>> {
        let at = OpRef {
            channel: self.ch.id,
            session: self.id,
            op: self.op.saturating_sub(1),
        };
        let v = decode_batch(bytes).map_err(|e| SmcError::Malformed {
            peer,
            at,
            reason: e.to_string(),
        })?;
        if v.len() != n {
            return Err(SmcError::Malformed {
                peer,
                at,
                reason: format!("{} elements, expected {n}", v.len()),
            });
        }
        Ok(v)
    }

    pub(super) fn last_op(&self) -> OpRef {
        OpRef {
            channel: self.ch.id,
            session: self.id,
            op: self.op.saturating_sub(1),
        }
    }

    /// Makes this party deviate from the protocol: its additive openings
    /// to `victim` carry a wrong value. Only for tests of the checks that
    /// must catch such a party; only with the `fault-injection` feature.
    #[doc(hidden)]
    #[cfg(feature = "fault-injection")]
    pub fn debug_equivocate_to(&mut self, victim: PartyId) {
        self.equivocate_to = Some(victim);
    }

    /// Shares of `n` fresh random values (no traffic).
    pub fn random(&mut self, n: usize) -> ShareVec {
        self.ch.prg.random(n)
    }

    /// Shares of `n` random integers below 3·2^bits (no traffic).
    pub fn random_bounded(&mut self, n: usize, bits: u32) -> ShareVec {
        self.ch.prg.random_bounded(n, bits)
    }

    /// Sends this party's additive share to both peers (a wrong copy, from
    /// `lie`, to the victim of [`Session::debug_equivocate_to`]) and
    /// receives theirs, [from next, from prev]; what arrived goes into the
    /// digests that [`Session::verify`] compares.
    pub(super) async fn exchange_additive(
        &mut self,
        payload: Bytes,
        lie: impl Fn() -> Bytes,
    ) -> SmcResult<Vec<Bytes>> {
        let me = self.me();
        let payload_for = |peer: PartyId| {
            if self.equivocate_to == Some(peer) {
                lie()
            } else {
                payload.clone()
            }
        };
        let sends = vec![
            (me.next(), FrameKind::AdditiveOpen, payload_for(me.next())),
            (me.prev(), FrameKind::AdditiveOpen, payload_for(me.prev())),
        ];
        let got = self
            .round(
                sends,
                &[
                    (me.next(), FrameKind::AdditiveOpen),
                    (me.prev(), FrameKind::AdditiveOpen),
                ],
            )
            .await?;
        self.from_next.update(&got[0]);
        self.from_prev.update(&got[1]);
        Ok(got)
    }

    /// This party's additive shares of `n` fresh zeros (no traffic).
    pub(super) fn zero(&mut self, n: usize) -> Vec<Fp> {
        self.ch.prg.zero(n)
    }

    /// This party's XOR shares of `n` fresh zero words (no traffic).
    pub(super) fn zero_words(&mut self, n: usize) -> Vec<u128> {
        self.ch.prg.zero_words(n)
    }

    /// Digests of the additive openings received so far in this session,
    /// (from next, from prev), as [`Session::verify`] compares them.
    pub(super) fn opening_digests(&self) -> ([u8; 32], [u8; 32]) {
        (
            *self.from_next.finalize().as_bytes(),
            *self.from_prev.finalize().as_bytes(),
        )
    }

    fn pools(&self) -> SmcResult<Pools> {
        self.ch
            .pools
            .clone()
            .ok_or_else(|| SmcError::InvalidInput("this channel has no preprocessing pool".into()))
    }

    /// Takes `n` random squares from the lane's pool. From here until
    /// [`Session::material_done`] the session counts as consuming
    /// preprocessed material: ending it meanwhile marks the channel
    /// desynchronised (the `Drop` impl).
    pub(super) async fn take_squares(&mut self, n: usize) -> SmcResult<Vec<Share>> {
        let pools = self.pools()?;
        self.material_pending = true;
        pools.squares.take(n).await
    }

    /// Takes `n` bit blocks from the lane's pool; as
    /// [`Session::take_squares`].
    pub(super) async fn take_bit_blocks(&mut self, n: usize) -> SmcResult<Vec<BitBlock>> {
        let pools = self.pools()?;
        self.material_pending = true;
        pools.bits.take(n).await
    }

    /// The operation on preprocessed material succeeded on this party, so
    /// all three consumed the same amount.
    pub(super) fn material_done(&mut self) {
        self.material_pending = false;
    }
}
