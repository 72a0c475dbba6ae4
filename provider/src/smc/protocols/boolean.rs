//! Boolean protocols on XOR-shared 128-bit words ([`BitShare`]): the
//! bit-sliced gates `and_words` and `and_open_words` (one round each), and
//! on them the comparison of 128-bit keys for the tree table, `a < b` and
//! `a = b` in 8 rounds with no preprocessed material (`compare_bits`,
//! `less_bits`).
//!
//! The comparison circuit is the usual prefix combination, bit-sliced: one 128-bit
//! word holds one key, so every gate of a level is a handful of word
//! operations. Per bit, G = \[a_i < b_i\] = ¬a_i ∧ b_i (one AND round) and
//! E = [a_i = b_i] = ¬(a_i ⊕ b_i) (free). Adjacent groups combine as
//! G = G_hi ⊕ (E_hi ∧ G_lo), E = E_hi ∧ E_lo (XOR suffices because
//! G_hi and E_hi are never both 1): seven levels from 128 groups to one,
//! the last fused with the opening. Shifts and masks are linear, so each
//! party applies them to its components.
//!
//! Only the asked results are opened, and each opened word holds one bit:
//! everything else is masked away before the opening.

use std::ops::DerefMut;

use bytes::Bytes;
use sharecall_proto::wire::FrameKind;
use sharecall_proto::{BitShare, PartyId};

use crate::smc::channel::Channel;
use crate::smc::error::{SmcError, SmcResult};
use crate::smc::session::Session;

/// Which results of one comparison are revealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// Only whether a < b.
    Less,
    /// Only whether a = b.
    Equal,
    /// Both.
    Both,
}

impl Reveal {
    fn less(self) -> bool {
        matches!(self, Reveal::Less | Reveal::Both)
    }

    fn equal(self) -> bool {
        matches!(self, Reveal::Equal | Reveal::Both)
    }
}

/// The revealed results of one comparison (`None` where not asked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compared {
    /// Whether a < b.
    pub less: Option<bool>,
    /// Whether a = b.
    pub equal: Option<bool>,
}

/// Rounds of [`Session::compare_bits`].
pub const COMPARE_ROUNDS: usize = 8;

/// ¬x: component 0 is flipped by its two holders (P0 as first, P2 as
/// second), so the XOR of the components is complemented exactly once.
fn not(me: PartyId, x: BitShare) -> BitShare {
    BitShare {
        first: if me.index() == 0 { !x.first } else { x.first },
        second: if me.index() == 2 { !x.second } else { x.second },
    }
}

fn xor(x: BitShare, y: BitShare) -> BitShare {
    BitShare {
        first: x.first ^ y.first,
        second: x.second ^ y.second,
    }
}

fn map(x: BitShare, f: impl Fn(u128) -> u128) -> BitShare {
    BitShare {
        first: f(x.first),
        second: f(x.second),
    }
}

/// Bits at positions ≡ 0 mod `step` (a power of two).
fn mask(step: u32) -> u128 {
    let mut m = 0u128;
    let mut i = 0;
    while i < 128 {
        m |= 1 << i;
        i += step;
    }
    m
}

impl<C: DerefMut<Target = Channel>> Session<C> {
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
        let zero = self.zero_words(a.len());
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

    /// Compares a_k with b_k for every k (8 rounds, no preprocessing),
    /// revealing what `reveal[k]` asks.
    pub async fn compare_bits(
        &mut self,
        a: &[BitShare],
        b: &[BitShare],
        reveal: &[Reveal],
    ) -> SmcResult<Vec<Compared>> {
        let n = a.len();
        if b.len() != n || reveal.len() != n {
            return Err(SmcError::InvalidInput(format!(
                "comparison of {n} keys with {} keys and {} reveals",
                b.len(),
                reveal.len()
            )));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let me = self.party();
        let not_a: Vec<BitShare> = a.iter().map(|x| not(me, *x)).collect();
        let mut g = self.and_words(&not_a, b).await?;
        let mut e: Vec<BitShare> = a.iter().zip(b).map(|(x, y)| not(me, xor(*x, *y))).collect();

        // Levels combining groups of width d into groups of width 2d; the
        // group starting at bit p is held at bit p.
        let mut d = 1u32;
        while d < 64 {
            let m = mask(2 * d);
            let mut left = Vec::with_capacity(2 * n);
            let mut right = Vec::with_capacity(2 * n);
            for k in 0..n {
                let e_hi = map(e[k], |w| (w >> d) & m);
                left.push(e_hi);
                right.push(map(g[k], |w| w & m));
                left.push(e_hi);
                right.push(map(e[k], |w| w & m));
            }
            let prod = self.and_words(&left, &right).await?;
            for k in 0..n {
                let g_hi = map(g[k], |w| (w >> d) & m);
                g[k] = xor(g_hi, prod[2 * k]);
                e[k] = prod[2 * k + 1];
            }
            d *= 2;
        }

        // Last level (d = 64), fused with the opening of bit 0.
        let mut left = Vec::new();
        let mut right = Vec::new();
        let mut plus = Vec::new();
        for k in 0..n {
            let e_hi = map(e[k], |w| (w >> 64) & 1);
            if reveal[k].less() {
                left.push(e_hi);
                right.push(map(g[k], |w| w & 1));
                plus.push(map(g[k], |w| (w >> 64) & 1));
            }
            if reveal[k].equal() {
                left.push(e_hi);
                right.push(map(e[k], |w| w & 1));
                plus.push(BitShare::default());
            }
        }
        let opened = self.and_open_words(&left, &right, &plus).await?;
        let mut bits = opened.into_iter();
        let mut bit = |k: usize| -> SmcResult<bool> {
            match bits.next() {
                Some(0) => Ok(false),
                Some(1) => Ok(true),
                Some(_) => Err(SmcError::InvalidInput(format!(
                    "comparison {k} opened a word that is not a bit: a provider deviated"
                ))),
                None => Err(SmcError::InvalidInput("comparison results missing".into())),
            }
        };
        let mut out = Vec::with_capacity(n);
        for (k, r) in reveal.iter().enumerate() {
            let less = if r.less() { Some(bit(k)?) } else { None };
            let equal = if r.equal() { Some(bit(k)?) } else { None };
            out.push(Compared { less, equal });
        }
        Ok(out)
    }

    /// Whether a_k < b_k for every k, revealing nothing else (8 rounds).
    pub async fn less_bits(&mut self, a: &[BitShare], b: &[BitShare]) -> SmcResult<Vec<bool>> {
        let reveal = vec![Reveal::Less; a.len()];
        Ok(self
            .compare_bits(a, b, &reveal)
            .await?
            .into_iter()
            .map(|c| c.less == Some(true))
            .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_pick_group_starts() {
        assert_eq!(mask(1), u128::MAX);
        assert_eq!(mask(128), 1);
        assert_eq!(mask(64), 1 | (1 << 64));
        assert_eq!(mask(2).count_ones(), 64);
    }

    #[test]
    fn not_complements_the_shared_value() {
        let x = 0x1234_u128;
        let c = [7u128, 99, x ^ 7 ^ 99];
        let shares = PartyId::ALL.map(|p| BitShare {
            first: c[p.index()],
            second: c[p.next().index()],
        });
        let n = PartyId::ALL.map(|p| not(p, shares[p.index()]));
        for p in PartyId::ALL {
            assert_eq!(n[p.index()].second, n[p.next().index()].first);
        }
        assert_eq!(n[0].first ^ n[1].first ^ n[2].first, !x);
    }
}
