//! A session: a numbered sequence of vectorised operations on one channel.
//!
//! Every message carries (channel, session, op) so the three engines match
//! up; a frame from another step is an error, never silently mixed in.
//! Protocols (party P_i holds (x_i, x_{i+1}); "next" is P_{i+1}):
//!
//! | op | rounds | messages per party |
//! |---|---|---|
//! | `open` | 1 | values to next, a 32-byte digest to prev |
//! | `mul` | 1 | products to prev |
//! | `mul_open` | 1 | products to both |
//! | `eq_reveal` | 1 | as `mul_open` |
//! | `prf_tag` | 1 | as `mul_open`, [`TAG_BITS`] (24) elements per value |
//! | `prf_tag_prefix` | 1 | as `mul_open`, one element per tag bit asked for |
//! | `lt_reveal` | 7 | 1 open, 5 `mul` levels, 1 `mul_open` |
//! | `and_words` | 1 | as `mul`, on XOR-shared 128-bit words |
//! | `and_open_words` | 1 | as `mul_open`, on words |
//! | `compare_bits` | 8 | 7 `and_words` levels, 1 `and_open_words` |
//! | `verify` | 1 | 32-byte digests to both |
//! | `mul_verify` | 1 | `mul` and `verify` together |

use std::ops::DerefMut;

use bytes::Bytes;
use sharecall_proto::field::{decode_batch, encode_batch};
use sharecall_proto::wire::FrameKind;
use sharecall_proto::{BitShare, Fp, Legendre, PartyId, Share, ShareVec};
use tracing::warn;

use super::channel::{Channel, Desync, Pools};
use super::error::{OpRef, SmcError, SmcResult};
use super::linear;
use super::preprocessing::{BitBlock, COMPARE_BITS};
use super::prg::Prg;

/// Output bits of the PRF tag: 2^24 buckets keep a 1 000 000-entry hash
/// table at about 0.06 extra candidates per lookup, and each bit costs one
/// Legendre symbol per party and one preprocessed square
/// (docs/ARCHITECTURE.md, deviation 13).
pub const TAG_BITS: usize = 24;

/// A jointly generated PRF key: one secret field element per output bit.
/// No party ever knows it; each holds a replicated share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrfKey(pub ShareVec);

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

    fn me(&self) -> PartyId {
        self.ch.me
    }

    /// Runs one round: sends, then receives; on any failure the session is
    /// marked failed and both peers are told (best effort).
    async fn round(
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

    async fn fail(&mut self, at: OpRef, e: &SmcError) {
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

    fn decode(&self, peer: PartyId, bytes: &[u8], n: usize) -> SmcResult<Vec<Fp>> {
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

    fn last_op(&self) -> OpRef {
        OpRef {
            channel: self.ch.id,
            session: self.id,
            op: self.op.saturating_sub(1),
        }
    }

    /// Makes this party deviate from the protocol: its additive openings
    /// to `victim` carry a wrong value. Only for tests of the checks that
    /// must catch such a party.
    #[doc(hidden)]
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

    /// Opens a batch to all three parties (1 round), checking every value
    /// against its second copy: P_i gets its missing component x_{i+2}
    /// from P_{i−1} and a blake3 digest of the same component from P_{i+1}.
    pub async fn open(&mut self, x: &ShareVec) -> SmcResult<Vec<Fp>> {
        let n = x.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let me = self.me();
        let value = Bytes::from(encode_batch(&x.first));
        let digest = Bytes::copy_from_slice(blake3::hash(&encode_batch(&x.second)).as_bytes());
        let got = self
            .round(
                vec![
                    (me.next(), FrameKind::OpenValue, value),
                    (me.prev(), FrameKind::OpenDigest, digest),
                ],
                &[
                    (me.prev(), FrameKind::OpenValue),
                    (me.next(), FrameKind::OpenDigest),
                ],
            )
            .await?;
        if blake3::hash(&got[0]).as_bytes().as_slice() != got[1].as_ref() {
            let e = SmcError::Inconsistent {
                at: self.last_op(),
                value_from: me.prev(),
                check_from: me.next(),
                index: None,
            };
            self.fail(self.last_op(), &e).await;
            return Err(e);
        }
        let missing = self.decode(me.prev(), &got[0], n)?;
        Ok((0..n)
            .map(|k| x.first[k] + x.second[k] + missing[k])
            .collect())
    }

    /// This party's additive share of a ⊙ b, re-randomised with a fresh
    /// zero sharing so it reveals nothing on its own.
    fn local_product(&mut self, a: &ShareVec, b: &ShareVec) -> SmcResult<Vec<Fp>> {
        linear::same_len(a, b)?;
        let zero = self.ch.prg.zero(a.len());
        Ok((0..a.len())
            .map(|k| {
                a.first[k] * b.first[k]
                    + a.first[k] * b.second[k]
                    + a.second[k] * b.first[k]
                    + zero[k]
            })
            .collect())
    }

    /// Multiplies element-wise (1 round): the additive product share is
    /// sent to P_{i−1}, turning it back into a replicated sharing.
    pub async fn mul(&mut self, a: &ShareVec, b: &ShareVec) -> SmcResult<ShareVec> {
        let z = self.local_product(a, b)?;
        if z.is_empty() {
            return Ok(ShareVec::default());
        }
        let me = self.me();
        let got = self
            .round(
                vec![(me.prev(), FrameKind::Reshare, Bytes::from(encode_batch(&z)))],
                &[(me.next(), FrameKind::Reshare)],
            )
            .await?;
        let second = self.decode(me.next(), &got[0], z.len())?;
        Ok(ShareVec { first: z, second })
    }

    /// Opens a ⊙ b (1 round): the re-randomised additive product shares are
    /// sent to both peers and summed.
    pub async fn mul_open(&mut self, a: &ShareVec, b: &ShareVec) -> SmcResult<Vec<Fp>> {
        self.mul_open_plus(a, b, None).await
    }

    /// Opens the element-wise sum over the three parties of each party's
    /// private summands `mine` (1 round): every party sends its summands
    /// masked by a fresh additive zero sharing, so a single peer sees only
    /// uniformly random values, and the masks cancel in the sum.
    pub async fn sum_inputs(&mut self, mine: &[Fp]) -> SmcResult<Vec<Fp>> {
        let n = mine.len();
        let zeros = ShareVec {
            first: vec![Fp::ZERO; n],
            second: vec![Fp::ZERO; n],
        };
        // An additive input rides on the product opening: 0·0 + mine + zero.
        let mine = ShareVec {
            first: mine.to_vec(),
            second: vec![Fp::ZERO; n],
        };
        self.mul_open_plus(&zeros, &zeros, Some(&mine)).await
    }

    /// Opens a ⊙ b + c for a shared c (1 round); linear terms ride along
    /// with the product for free.
    pub async fn mul_open_plus(
        &mut self,
        a: &ShareVec,
        b: &ShareVec,
        c: Option<&ShareVec>,
    ) -> SmcResult<Vec<Fp>> {
        let mut z = self.local_product(a, b)?;
        if let Some(c) = c {
            linear::same_len(a, c)?;
            for (zk, ck) in z.iter_mut().zip(&c.first) {
                *zk += *ck;
            }
        }
        if z.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.me();
        let lie = || {
            let mut lie = z.clone();
            lie[0] += Fp::ONE;
            Bytes::from(encode_batch(&lie))
        };
        let got = self
            .exchange_additive(Bytes::from(encode_batch(&z)), lie)
            .await?;
        let zn = self.decode(me.next(), &got[0], z.len())?;
        let zp = self.decode(me.prev(), &got[1], z.len())?;
        Ok((0..z.len()).map(|k| z[k] + zn[k] + zp[k]).collect())
    }

    /// Sends this party's additive share to both peers (a wrong copy, from
    /// `lie`, to the victim of [`Session::debug_equivocate_to`]) and
    /// receives theirs, [from next, from prev]; what arrived goes into the
    /// digests that [`Session::verify`] compares.
    async fn exchange_additive(
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

    /// Reveals whether a_k = b_k for every k (1 round) by opening
    /// r_k·(a_k − b_k) for a fresh random r_k: zero exactly when equal,
    /// otherwise a uniformly random non-zero value.
    pub async fn eq_reveal(&mut self, a: &ShareVec, b: &ShareVec) -> SmcResult<Vec<bool>> {
        let d = linear::sub(a, b)?;
        let r = self.random(d.len());
        Ok(self
            .mul_open(&r, &d)
            .await?
            .into_iter()
            .map(|v| v.is_zero())
            .collect())
    }

    fn decode_words(&self, peer: PartyId, bytes: &[u8], n: usize) -> SmcResult<Vec<u128>> {
        if bytes.len() != n * 16 {
            return Err(SmcError::Malformed {
                peer,
                at: self.last_op(),
                reason: format!("{} bytes, expected {n} words", bytes.len()),
            });
        }
        Ok(bytes
            .chunks_exact(16)
            .map(|c| {
                let mut w = [0u8; 16];
                w.copy_from_slice(c);
                u128::from_le_bytes(w)
            })
            .collect())
    }

    /// This party's XOR-additive share of a & b (word-wise), re-randomised
    /// with a fresh zero sharing so it reveals nothing on its own.
    fn local_and(&mut self, a: &[BitShare], b: &[BitShare]) -> SmcResult<Vec<u128>> {
        if a.len() != b.len() {
            return Err(SmcError::InvalidInput(format!(
                "AND of {} and {} words",
                a.len(),
                b.len()
            )));
        }
        let zero = self.ch.prg.zero_words(a.len());
        Ok(a.iter()
            .zip(b)
            .zip(zero)
            .map(|((x, y), z)| {
                (x.first & y.first) ^ (x.first & y.second) ^ (x.second & y.first) ^ z
            })
            .collect())
    }

    /// ANDs XOR-shared words bit by bit (1 round): the additive share is
    /// sent to P_{i−1}, turning it back into a replicated sharing.
    pub async fn and_words(&mut self, a: &[BitShare], b: &[BitShare]) -> SmcResult<Vec<BitShare>> {
        let z = self.local_and(a, b)?;
        if z.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.me();
        let got = self
            .round(
                vec![(me.prev(), FrameKind::Reshare, Bytes::from(words_bytes(&z)))],
                &[(me.next(), FrameKind::Reshare)],
            )
            .await?;
        let second = self.decode_words(me.next(), &got[0], z.len())?;
        Ok(z.into_iter()
            .zip(second)
            .map(|(first, second)| BitShare { first, second })
            .collect())
    }

    /// Opens (a & b) ⊕ c word-wise (1 round): every party sends its
    /// re-randomised additive share to both peers, and the digests of what
    /// arrived are checked by the next [`Session::verify`].
    pub async fn and_open_words(
        &mut self,
        a: &[BitShare],
        b: &[BitShare],
        c: &[BitShare],
    ) -> SmcResult<Vec<u128>> {
        let mut z = self.local_and(a, b)?;
        if c.len() != z.len() {
            return Err(SmcError::InvalidInput(
                "AND-open: linear term length".into(),
            ));
        }
        for (zk, ck) in z.iter_mut().zip(c) {
            *zk ^= ck.first;
        }
        if z.is_empty() {
            return Ok(Vec::new());
        }
        let me = self.me();
        let lie = || {
            let mut lie = z.clone();
            lie[0] ^= 1;
            Bytes::from(words_bytes(&lie))
        };
        let got = self
            .exchange_additive(Bytes::from(words_bytes(&z)), lie)
            .await?;
        let zn = self.decode_words(me.next(), &got[0], z.len())?;
        let zp = self.decode_words(me.prev(), &got[1], z.len())?;
        Ok((0..z.len()).map(|k| z[k] ^ zn[k] ^ zp[k]).collect())
    }

    /// Checks (1 round) that both peers received the same additive
    /// openings from the third party in this session, so a party that sent
    /// different values to its two neighbours is caught before anyone acts
    /// on the result.
    pub async fn verify(&mut self) -> SmcResult<()> {
        let me = self.me();
        let d_next = *self.from_next.finalize().as_bytes();
        let d_prev = *self.from_prev.finalize().as_bytes();
        let got = self
            .round(
                vec![
                    (
                        me.next(),
                        FrameKind::Verify,
                        Bytes::copy_from_slice(&d_prev),
                    ),
                    (
                        me.prev(),
                        FrameKind::Verify,
                        Bytes::copy_from_slice(&d_next),
                    ),
                ],
                &[
                    (me.next(), FrameKind::Verify),
                    (me.prev(), FrameKind::Verify),
                ],
            )
            .await?;
        self.compare_digests(&got[0], &got[1], &d_prev, &d_next)
            .await
    }

    /// Compares the digests next and prev sent us with ours: next tells us
    /// what it got from its next (our prev), prev what it got from its prev
    /// (our next). A mismatch names the party that sent two versions.
    async fn compare_digests(
        &mut self,
        from_next: &[u8],
        from_prev: &[u8],
        d_prev: &[u8; 32],
        d_next: &[u8; 32],
    ) -> SmcResult<()> {
        let me = self.me();
        let bad = if from_next != d_prev.as_slice() {
            Some((me.prev(), me.next()))
        } else if from_prev != d_next.as_slice() {
            Some((me.next(), me.prev()))
        } else {
            None
        };
        if let Some((value_from, check_from)) = bad {
            let e = SmcError::Inconsistent {
                at: self.last_op(),
                value_from,
                check_from,
                index: None,
            };
            self.fail(self.last_op(), &e).await;
            return Err(e);
        }
        Ok(())
    }

    /// [`Session::mul`] and [`Session::verify`] in one round: the reshare
    /// of the products rides with the digests, which cover the openings
    /// before this call (a `mul` opens nothing). Used where the last step
    /// of a job is a multiplication (re-randomising answers).
    pub async fn mul_verify(&mut self, a: &ShareVec, b: &ShareVec) -> SmcResult<ShareVec> {
        let z = self.local_product(a, b)?;
        let me = self.me();
        let d_next = *self.from_next.finalize().as_bytes();
        let d_prev = *self.from_prev.finalize().as_bytes();
        // One frame per peer and round: the products for prev carry our
        // digest for prev at their end.
        let mut to_prev = encode_batch(&z);
        to_prev.extend_from_slice(&d_next);
        let got = self
            .round(
                vec![
                    (me.prev(), FrameKind::Reshare, Bytes::from(to_prev)),
                    (
                        me.next(),
                        FrameKind::Verify,
                        Bytes::copy_from_slice(&d_prev),
                    ),
                ],
                &[
                    (me.next(), FrameKind::Reshare),
                    (me.prev(), FrameKind::Verify),
                ],
            )
            .await?;
        let from_next = got[0].as_ref();
        let Some(split) = from_next.len().checked_sub(32) else {
            let e = SmcError::Malformed {
                peer: me.next(),
                at: self.last_op(),
                reason: "reshare frame without its digest".into(),
            };
            self.fail(self.last_op(), &e).await;
            return Err(e);
        };
        let (products, digest_from_next) = from_next.split_at(split);
        self.compare_digests(digest_from_next, &got[1], &d_prev, &d_next)
            .await?;
        let second = self.decode(me.next(), products, z.len())?;
        Ok(ShareVec { first: z, second })
    }

    /// Generates a fresh PRF key (no traffic): a random sharing per output
    /// bit, so no party ever sees the key.
    pub fn gen_prf_key(&mut self) -> PrfKey {
        PrfKey(self.random(TAG_BITS))
    }

    fn pools(&self) -> SmcResult<Pools> {
        self.ch
            .pools
            .clone()
            .ok_or_else(|| SmcError::InvalidInput("this channel has no preprocessing pool".into()))
    }

    /// The 24-bit keyed PRF tag of each value (1 round online): bit j is
    /// the Legendre symbol of k_j + x, revealed by opening (k_j + x)·s with
    /// a preprocessed random square s, which hides everything but the
    /// quadratic character.
    pub async fn prf_tag(&mut self, key: &PrfKey, x: &ShareVec) -> SmcResult<Vec<u32>> {
        let widths = vec![TAG_BITS; x.len()];
        self.prf_tag_prefix(key, x, &widths).await
    }

    /// [`Session::prf_tag`] computing only the low `widths[i]` bits of
    /// value i's tag (1 round online; the other bits are 0). A lookup that
    /// stores nothing needs only as many bits as keep its bucket small, and
    /// each bit not computed saves every party a Legendre symbol and the
    /// pool a square; it also reveals less.
    pub async fn prf_tag_prefix(
        &mut self,
        key: &PrfKey,
        x: &ShareVec,
        widths: &[usize],
    ) -> SmcResult<Vec<u32>> {
        let result = self.prf_tag_with_squares(key, x, widths).await;
        if result.is_ok() {
            self.material_pending = false;
        }
        result
    }

    async fn prf_tag_with_squares(
        &mut self,
        key: &PrfKey,
        x: &ShareVec,
        widths: &[usize],
    ) -> SmcResult<Vec<u32>> {
        if key.0.len() != TAG_BITS {
            return Err(SmcError::InvalidInput(format!(
                "PRF key has {} elements, expected {TAG_BITS}",
                key.0.len()
            )));
        }
        if widths.len() != x.len() || widths.iter().any(|&w| w > TAG_BITS) {
            return Err(SmcError::InvalidInput(format!(
                "{} tag widths for {} values, each at most {TAG_BITS}",
                widths.len(),
                x.len()
            )));
        }
        let total: usize = widths.iter().sum();
        if total == 0 {
            return Ok(vec![0; x.len()]);
        }
        let pools = self.pools()?;
        self.material_pending = true;
        let squares = pools.squares.take(total).await?;
        let mut a = ShareVec::with_capacity(total);
        for (v, &w) in x.iter().zip(widths) {
            for k in key.0.iter().take(w) {
                a.push(Share {
                    first: k.first + v.first,
                    second: k.second + v.second,
                });
            }
        }
        let s: ShareVec = squares.into_iter().collect();
        let opened = self.mul_open(&a, &s).await?;
        let mut bits = opened.iter();
        Ok(widths
            .iter()
            .map(|&w| {
                bits.by_ref().take(w).enumerate().fold(0u32, |acc, (j, v)| {
                    acc | (u32::from(v.legendre() == Legendre::Residue) << j)
                })
            })
            .collect())
    }

    /// Reveals whether a_k < b_k for every k (7 rounds); both inputs must
    /// be below 2^128 (pseudonym keys are).
    ///
    /// d = 2^128 + a − b lies in [1, 2^129) and a < b exactly when its bit
    /// 128 is clear. We open c = d + r for a mask r = r' + 2^128·r'' with r'
    /// from 128 preprocessed random bits; d mod 2^128 = c' − r' + 2^128·u
    /// with c' = c mod 2^128 and u = [c' < r'], computed by a prefix
    /// combination over bit pairs (pair products preprocessed, so the first
    /// level is free): 5 multiplication levels, and the last level is fused
    /// with the opening of bit 128 of d.
    pub async fn lt_reveal(&mut self, a: &ShareVec, b: &ShareVec) -> SmcResult<Vec<bool>> {
        let result = self.lt_reveal_with_bits(a, b).await;
        if result.is_ok() {
            self.material_pending = false;
        }
        result
    }

    async fn lt_reveal_with_bits(&mut self, a: &ShareVec, b: &ShareVec) -> SmcResult<Vec<bool>> {
        let n = a.len();
        linear::same_len(a, b)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let me = self.me();
        let pools = self.pools()?;
        self.material_pending = true;
        let blocks = pools.bits.take(n).await?;
        let two128 = Fp::pow2(COMPARE_BITS as u32);
        let inv128 = two128
            .inverse()
            .ok_or_else(|| SmcError::InvalidInput("2^128 has no inverse".into()))?;

        // d = 2^128 + a − b; r' = Σ 2^i r_i; c = d + r' + 2^128·r''.
        let d = linear::add_public(me, &linear::sub(a, b)?, two128);
        let r_low: ShareVec = blocks.iter().map(|blk| blk.value()).collect();
        let r_high = self.random_bounded(n, 120);
        let masked = linear::add(&linear::add(&d, &r_low)?, &linear::scale(&r_high, two128))?;
        let c = self.open(&masked).await?;
        let c_low: Vec<u128> = c.iter().map(|v| v.low_u128()).collect();

        // Level 0: (G, E) per bit pair, linear thanks to preprocessed r_h·r_l.
        let groups = COMPARE_BITS / 2;
        let mut g: Vec<ShareVec> = Vec::with_capacity(n);
        let mut e: Vec<ShareVec> = Vec::with_capacity(n);
        for (blk, cl) in blocks.iter().zip(&c_low) {
            let (gk, ek) = blk.pair_terms(me, *cl);
            g.push(gk);
            e.push(ek);
        }
        // Combine adjacent groups (hi = 2m+1, lo = 2m): G = G_hi + E_hi·G_lo,
        // E = E_hi·E_lo, one multiplication round per level, until two
        // groups remain.
        let mut width = groups;
        while width > 2 {
            let half = width / 2;
            let mut left = ShareVec::with_capacity(n * width);
            let mut right = ShareVec::with_capacity(n * width);
            for k in 0..n {
                for m in 0..half {
                    let (hi, lo) = (2 * m + 1, 2 * m);
                    let e_hi = e[k].get(hi).unwrap_or_default();
                    left.push(e_hi);
                    right.push(g[k].get(lo).unwrap_or_default());
                    left.push(e_hi);
                    right.push(e[k].get(lo).unwrap_or_default());
                }
            }
            let prod = self.mul(&left, &right).await?;
            for k in 0..n {
                let mut ng = ShareVec::with_capacity(half);
                let mut ne = ShareVec::with_capacity(half);
                for m in 0..half {
                    let idx = (k * half + m) * 2;
                    let g_hi = g[k].get(2 * m + 1).unwrap_or_default();
                    let eg = prod.get(idx).unwrap_or_default();
                    ng.push(Share {
                        first: g_hi.first + eg.first,
                        second: g_hi.second + eg.second,
                    });
                    ne.push(prod.get(idx + 1).unwrap_or_default());
                }
                g[k] = ng;
                e[k] = ne;
            }
            width = half;
        }

        // Final: open t = (d − c' + r' − 2^128·u)/2^128 with
        // u = G_1 + E_1·G_0, i.e. t = L − E_1·G_0 with L linear.
        let mut neg_e = ShareVec::with_capacity(n);
        let mut g0 = ShareVec::with_capacity(n);
        let mut lin = ShareVec::with_capacity(n);
        for k in 0..n {
            let e1 = e[k].get(1).unwrap_or_default();
            neg_e.push(Share {
                first: -e1.first,
                second: -e1.second,
            });
            g0.push(g[k].get(0).unwrap_or_default());
            let dk = d.get(k).unwrap_or_default();
            let rk = r_low.get(k).unwrap_or_default();
            let g1 = g[k].get(1).unwrap_or_default();
            lin.push(linear::combine(
                me,
                &[(inv128, dk), (inv128, rk), (-Fp::ONE, g1)],
                -(Fp::from_u128(c_low[k]) * inv128),
            ));
        }
        let t = self.mul_open_plus(&neg_e, &g0, Some(&lin)).await?;
        t.into_iter()
            .enumerate()
            .map(|(k, v)| {
                if v.is_zero() {
                    Ok(true)
                } else if v == Fp::ONE {
                    Ok(false)
                } else {
                    Err(SmcError::InvalidInput(format!(
                        "comparison {k} opened a non-bit: an input is not below 2^128, or a provider deviated"
                    )))
                }
            })
            .collect()
    }
}

impl BitBlock {
    /// The masked value r' = Σ 2^i r_i.
    fn value(&self) -> Share {
        let mut acc = Share::default();
        let mut pow = Fp::ONE;
        let two = Fp::from_u64(2);
        for b in &self.bits {
            acc.first += pow * b.first;
            acc.second += pow * b.second;
            pow *= two;
        }
        acc
    }

    /// Level-0 (G, E) of each bit pair against the public bits of `c`:
    /// G = [c_pair < r_pair], E = [c_pair == r_pair], both linear in
    /// r_h, r_l and the preprocessed q = r_h·r_l.
    fn pair_terms(&self, me: PartyId, c: u128) -> (ShareVec, ShareVec) {
        let groups = COMPARE_BITS / 2;
        let mut g = ShareVec::with_capacity(groups);
        let mut e = ShareVec::with_capacity(groups);
        let one = Fp::ONE;
        for m in 0..groups {
            let (h, l) = (2 * m + 1, 2 * m);
            let ch = (c >> h) & 1 == 1;
            let cl = (c >> l) & 1 == 1;
            let (rh, rl, q) = (self.bits[h], self.bits[l], self.pairs[m]);
            // e_bit = α + β·r with (α, β) = (1, −1) if c = 0, (0, 1) if c = 1.
            let (ah, bh) = if ch { (Fp::ZERO, one) } else { (one, -one) };
            let (al, bl) = if cl { (Fp::ZERO, one) } else { (one, -one) };
            let nch = if ch { Fp::ZERO } else { one };
            let ncl = if cl { Fp::ZERO } else { one };
            // G = (1−c_h)·r_h + (1−c_l)·(α_h·r_l + β_h·q)
            g.push(linear::combine(
                me,
                &[(nch, rh), (ncl * ah, rl), (ncl * bh, q)],
                Fp::ZERO,
            ));
            // E = α_hα_l + α_hβ_l·r_l + β_hα_l·r_h + β_hβ_l·q
            e.push(linear::combine(
                me,
                &[(ah * bl, rl), (bh * al, rh), (bh * bl, q)],
                ah * al,
            ));
        }
        (g, e)
    }
}

/// Words on the wire: 16 bytes each, little-endian.
fn words_bytes(words: &[u128]) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 16);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}
