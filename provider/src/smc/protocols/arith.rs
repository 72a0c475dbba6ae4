//! Arithmetic protocols on replicated shares over F_p: opening,
//! multiplication, fused multiply-and-open, equality, and the `verify`
//! round that catches a party which sent its two peers different additive
//! openings.

use std::ops::DerefMut;

use bytes::Bytes;
use sharecall_proto::field::encode_batch;
use sharecall_proto::wire::FrameKind;
use sharecall_proto::{Fp, ShareVec};

use crate::smc::channel::Channel;
use crate::smc::error::{SmcError, SmcResult};
use crate::smc::linear;
use crate::smc::session::Session;

impl<C: DerefMut<Target = Channel>> Session<C> {
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
        let zero = self.zero(a.len());
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

    /// Checks (1 round) that both peers received the same additive
    /// openings from the third party in this session, so a party that sent
    /// different values to its two neighbours is caught before anyone acts
    /// on the result.
    pub async fn verify(&mut self) -> SmcResult<()> {
        let me = self.me();
        let (d_next, d_prev) = self.opening_digests();
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
        let (d_next, d_prev) = self.opening_digests();
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
}
