//! Comparison of arithmetic shares below 2^128 (`lt_reveal`), on
//! preprocessed bit blocks.

use std::ops::DerefMut;

use sharecall_proto::{Fp, Share, ShareVec};

use crate::smc::bit_block::COMPARE_BITS;
use crate::smc::channel::Channel;
use crate::smc::error::{SmcError, SmcResult};
use crate::smc::linear;
use crate::smc::session::Session;

impl<C: DerefMut<Target = Channel>> Session<C> {
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
            self.material_done();
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
        let blocks = self.take_bit_blocks(n).await?;
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
