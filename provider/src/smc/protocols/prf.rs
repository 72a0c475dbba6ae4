//! The keyed PRF behind the hash table's tags: one Legendre symbol of
//! k_j + x per output bit, revealed through a preprocessed random square.

use std::ops::DerefMut;

use sharecall_proto::{Legendre, Share, ShareVec};

use crate::smc::channel::Channel;
use crate::smc::error::{SmcError, SmcResult};
use crate::smc::session::Session;

/// Output bits of the PRF tag: 2^24 buckets keep a 1 000 000-entry hash
/// table at about 0.06 extra candidates per lookup, and each bit costs one
/// Legendre symbol per party and one preprocessed square
/// (docs/ARCHITECTURE.md, deviation 13).
pub const TAG_BITS: usize = 24;

/// A jointly generated PRF key: one secret field element per output bit.
/// No party ever knows it; each holds a replicated share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrfKey(pub ShareVec);

impl<C: DerefMut<Target = Channel>> Session<C> {
    /// Generates a fresh PRF key (no traffic): a random sharing per output
    /// bit, so no party ever sees the key.
    pub fn gen_prf_key(&mut self) -> PrfKey {
        PrfKey(self.random(TAG_BITS))
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
            self.material_done();
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
        let squares = self.take_squares(total).await?;
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
}
