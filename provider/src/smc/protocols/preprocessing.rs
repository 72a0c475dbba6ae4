//! The protocols that make preprocessed material: random squares (for
//! `prf_tag`) and bit blocks (for `lt_reveal`). They run on a producer's
//! own channel (see `smc::producer`), never on an online lane.

use sharecall_proto::{Fp, PartyId, Share, ShareVec};

use crate::smc::bit_block::{BitBlock, COMPARE_BITS};
use crate::smc::channel::Channel;
use crate::smc::error::SmcResult;
use crate::smc::linear;
use crate::smc::session::Session;

/// Makes `n` random squares s = t² (1 round).
pub(crate) async fn make_squares(
    mut session: Session<&mut Channel>,
    n: usize,
) -> SmcResult<Vec<Share>> {
    let t = session.random(n);
    let s = session.mul(&t, &t).await?;
    Ok(s.iter().collect())
}

/// Shares of the bits drawn from one PRG component: component k is known
/// to its two holders, so [b_k] needs no traffic (the third party holds 0).
fn component_bits(me: PartyId, first: &ShareVec, second: &ShareVec, k: usize) -> ShareVec {
    let bit = |v: Fp| if v.bit(0) { Fp::ONE } else { Fp::ZERO };
    let holds_first = me.index() == k;
    let holds_second = me.next().index() == k;
    (0..first.len())
        .map(|i| Share {
            first: if holds_first {
                bit(first.first[i])
            } else {
                Fp::ZERO
            },
            second: if holds_second {
                bit(second.second[i])
            } else {
                Fp::ZERO
            },
        })
        .collect()
}

/// Makes `n` bit blocks (3 rounds): b = b0 ⊕ b1 ⊕ b2 with b_k drawn from
/// the pairwise PRG component k, converted to arithmetic shares by two
/// multiplications (x ⊕ y = x + y − 2xy); then one multiplication for the
/// pair products. No party knows b: each misses one component.
pub(crate) async fn make_bit_blocks(
    mut session: Session<&mut Channel>,
    n: usize,
) -> SmcResult<Vec<BitBlock>> {
    let me = session.party();
    let total = n * COMPARE_BITS;
    let r = session.random(total);
    let b = [0, 1, 2].map(|k| component_bits(me, &r, &r, k));
    let two = Fp::from_u64(2);
    let xor = |x: &ShareVec, y: &ShareVec, xy: &ShareVec| -> SmcResult<ShareVec> {
        linear::sub(&linear::add(x, y)?, &linear::scale(xy, two))
    };
    let p01 = session.mul(&b[0], &b[1]).await?;
    let b01 = xor(&b[0], &b[1], &p01)?;
    let p012 = session.mul(&b01, &b[2]).await?;
    let bits = xor(&b01, &b[2], &p012)?;

    let mut hi = ShareVec::with_capacity(total / 2);
    let mut lo = ShareVec::with_capacity(total / 2);
    for i in (0..total).step_by(2) {
        lo.push(bits.get(i).unwrap_or_default());
        hi.push(bits.get(i + 1).unwrap_or_default());
    }
    let q = session.mul(&hi, &lo).await?;
    let half = COMPARE_BITS / 2;
    Ok((0..n)
        .map(|k| BitBlock {
            bits: bits.first[k * COMPARE_BITS..(k + 1) * COMPARE_BITS]
                .iter()
                .zip(&bits.second[k * COMPARE_BITS..(k + 1) * COMPARE_BITS])
                .map(|(&first, &second)| Share { first, second })
                .collect(),
            pairs: q.first[k * half..(k + 1) * half]
                .iter()
                .zip(&q.second[k * half..(k + 1) * half])
                .map(|(&first, &second)| Share { first, second })
                .collect(),
        })
        .collect())
}
