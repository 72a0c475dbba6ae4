//! Bit blocks: the preprocessed material of one `lt_reveal` comparison,
//! and the linear terms the comparison derives from a block without
//! communication.

use sharecall_proto::{Fp, PartyId, Share, ShareVec};

use super::linear;

/// Bits per comparison (pseudonym keys are 128-bit).
pub const COMPARE_BITS: usize = 128;

/// Preprocessed material for one comparison: 128 shared random bits and
/// the products of each adjacent pair.
#[derive(Clone, Debug)]
pub struct BitBlock {
    /// r_0 … r_127 (r_i ∈ {0, 1}).
    pub bits: Vec<Share>,
    /// q_m = r_{2m+1} · r_{2m}, for m in 0..64.
    pub pairs: Vec<Share>,
}

impl BitBlock {
    /// The masked value r' = Σ 2^i r_i.
    pub(super) fn value(&self) -> Share {
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
    pub(super) fn pair_terms(&self, me: PartyId, c: u128) -> (ShareVec, ShareVec) {
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
