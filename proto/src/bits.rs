//! Replicated 2-out-of-3 sharing of 128-bit words over GF(2) (XOR).
//!
//! The same layout as [`crate::sharing`], with XOR in place of field
//! addition: x = x0 ⊕ x1 ⊕ x2, party P_i holds (x_i, x_{i+1}). The tree
//! table compares pseudonym keys in this form: a comparison circuit on
//! XOR shares costs a few machine-word operations per 128-bit key, where
//! the same circuit over the 255-bit field costs hundreds of field
//! multiplications and preprocessed random bits (docs/ARCHITECTURE.md,
//! "Tree comparisons on XOR shares").

use rand::RngCore;

use crate::sharing::{PartyId, ShareError};

/// Bytes of one encoded [`BitShare`]: both components, little-endian.
pub const BIT_SHARE_LEN: usize = 32;

/// One party's share of a 128-bit word: components (x_i, x_{i+1}).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct BitShare {
    /// x_i, also held by P(i−1) as its second component.
    pub first: u128,
    /// x_{i+1}, also held by P(i+1) as its first component.
    pub second: u128,
}

impl BitShare {
    /// The wire form: `first` then `second`, 16 bytes each, little-endian.
    pub fn to_bytes(&self) -> [u8; BIT_SHARE_LEN] {
        let mut out = [0u8; BIT_SHARE_LEN];
        out[..16].copy_from_slice(&self.first.to_le_bytes());
        out[16..].copy_from_slice(&self.second.to_le_bytes());
        out
    }

    /// Parses the wire form; `None` unless exactly [`BIT_SHARE_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<BitShare> {
        if bytes.len() != BIT_SHARE_LEN {
            return None;
        }
        let first = u128::from_le_bytes(bytes[..16].try_into().ok()?);
        let second = u128::from_le_bytes(bytes[16..].try_into().ok()?);
        Some(BitShare { first, second })
    }
}

/// Splits `x` into the three parties' shares, indexed by party.
pub fn share_bits<R: RngCore + ?Sized>(x: u128, rng: &mut R) -> [BitShare; 3] {
    let mut draw = || {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        u128::from_le_bytes(b)
    };
    let x0 = draw();
    let x1 = draw();
    let c = [x0, x1, x ^ x0 ^ x1];
    PartyId::ALL.map(|p| BitShare {
        first: c[p.index()],
        second: c[p.next().index()],
    })
}

/// Reconstructs from all three shares, checking that every component's two
/// copies agree.
pub fn reconstruct_bits(shares: &[BitShare; 3]) -> Result<u128, ShareError> {
    for p in PartyId::ALL {
        if shares[p.index()].second != shares[p.next().index()].first {
            return Err(ShareError::Invalid("XOR share components disagree"));
        }
    }
    Ok(shares[0].first ^ shares[1].first ^ shares[2].first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    proptest! {
        #[test]
        fn share_encode_reconstruct(x in any::<u128>(), seed in any::<u64>()) {
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            let s = share_bits(x, &mut rng);
            let back = s.map(|b| BitShare::from_bytes(&b.to_bytes()).expect("32 bytes"));
            prop_assert_eq!(reconstruct_bits(&back), Ok(x));
        }
    }

    #[test]
    fn a_tampered_component_is_caught() {
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let mut s = share_bits(42, &mut rng);
        s[1].second ^= 1;
        assert!(reconstruct_bits(&s).is_err());
        assert_eq!(BitShare::from_bytes(&[0; 31]), None);
    }
}
