//! How shares travel as bytes (docs/API.md, "Part bytes"): a share of one
//! value as 64 bytes `first || second`; a share vector of n values as
//! `first[0..n] || second[0..n]` (n·64 bytes). Fields holding them are
//! lowercase hex.

use crate::encoding::ENDPOINT_ELEMENTS;
use crate::field::FieldError;
use crate::{Fp, Share};

/// Encoded length of one field element.
const ELEMENT_LEN: usize = 32;

/// Encoded length of one share (`first || second`).
pub const SHARE_LEN: usize = 2 * ELEMENT_LEN;

/// Encoded length of an endpoint share vector.
pub const ENDPOINT_SHARE_LEN: usize = ENDPOINT_ELEMENTS * SHARE_LEN;

/// Why bytes are not a share or share vector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Not the length `n` shares take.
    #[error("{got} bytes, expected {expected}")]
    Length {
        /// The length given.
        got: usize,
        /// The length of the expected number of shares.
        expected: usize,
    },
    /// A component is not a canonical field element.
    #[error(transparent)]
    Element(#[from] FieldError),
}

/// `first || second`, 64 bytes.
pub fn encode_share(s: &Share) -> [u8; SHARE_LEN] {
    let mut out = [0u8; SHARE_LEN];
    out[..ELEMENT_LEN].copy_from_slice(&s.first.to_bytes());
    out[ELEMENT_LEN..].copy_from_slice(&s.second.to_bytes());
    out
}

/// `first[0..n] || second[0..n]`, n·64 bytes.
pub fn encode_share_vector(shares: &[Share]) -> Vec<u8> {
    let mut out = Vec::with_capacity(shares.len() * SHARE_LEN);
    for s in shares {
        out.extend_from_slice(&s.first.to_bytes());
    }
    for s in shares {
        out.extend_from_slice(&s.second.to_bytes());
    }
    out
}

fn element(bytes: &[u8]) -> Result<Fp, LayoutError> {
    let mut b = [0u8; ELEMENT_LEN];
    b.copy_from_slice(bytes);
    Ok(Fp::from_bytes(&b)?)
}

/// Decodes a 64-byte share, refusing non-canonical field elements.
pub fn decode_share(bytes: &[u8]) -> Result<Share, LayoutError> {
    if bytes.len() != SHARE_LEN {
        return Err(LayoutError::Length {
            got: bytes.len(),
            expected: SHARE_LEN,
        });
    }
    Ok(Share {
        first: element(&bytes[..ELEMENT_LEN])?,
        second: element(&bytes[ELEMENT_LEN..])?,
    })
}

/// Decodes a share vector of exactly `n` shares, refusing non-canonical
/// field elements.
pub fn decode_share_vector(bytes: &[u8], n: usize) -> Result<Vec<Share>, LayoutError> {
    if bytes.len() != n * SHARE_LEN {
        return Err(LayoutError::Length {
            got: bytes.len(),
            expected: n * SHARE_LEN,
        });
    }
    let (firsts, seconds) = bytes.split_at(n * ELEMENT_LEN);
    firsts
        .chunks_exact(ELEMENT_LEN)
        .zip(seconds.chunks_exact(ELEMENT_LEN))
        .map(|(a, b)| {
            Ok(Share {
                first: element(a)?,
                second: element(b)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_encodings_follow_the_api() {
        let s = Share {
            first: Fp::from_u64(1),
            second: Fp::from_u64(2),
        };
        let b = encode_share(&s);
        assert_eq!(b[0], 1);
        assert_eq!(b[32], 2);
        let v = encode_share_vector(&[
            s,
            Share {
                first: Fp::from_u64(3),
                second: Fp::from_u64(4),
            },
        ]);
        // All first components, then all second components.
        assert_eq!([v[0], v[32], v[64], v[96]], [1, 3, 2, 4]);
        assert_eq!(
            decode_share_vector(&v, 2).expect("decode")[1].second,
            Fp::from_u64(4)
        );
        assert!(decode_share_vector(&v, 3).is_err());
        // Non-canonical elements are refused.
        let mut bad = b;
        bad[..32].copy_from_slice(&[0xff; 32]);
        assert!(decode_share(&bad).is_err());
    }
}
