//! Local (communication-free) operations on replicated shares.
//!
//! Replicated sharing is linear: adding shares, scaling by public values
//! and adding public constants need no messages. A public constant is added
//! to component x0 only, which P0 holds first and P2 holds second.

use sharecall_proto::{Fp, PartyId, Share, ShareVec};

use super::error::{SmcError, SmcResult};

/// Fails unless the two batches have the same length.
pub fn same_len(a: &ShareVec, b: &ShareVec) -> SmcResult<()> {
    if a.len() != b.len() {
        return Err(SmcError::InvalidInput(format!(
            "batches of different lengths ({} and {})",
            a.len(),
            b.len()
        )));
    }
    Ok(())
}

/// a + b, element-wise.
pub fn add(a: &ShareVec, b: &ShareVec) -> SmcResult<ShareVec> {
    same_len(a, b)?;
    Ok(ShareVec {
        first: a.first.iter().zip(&b.first).map(|(x, y)| *x + *y).collect(),
        second: a
            .second
            .iter()
            .zip(&b.second)
            .map(|(x, y)| *x + *y)
            .collect(),
    })
}

/// a − b, element-wise.
pub fn sub(a: &ShareVec, b: &ShareVec) -> SmcResult<ShareVec> {
    same_len(a, b)?;
    Ok(ShareVec {
        first: a.first.iter().zip(&b.first).map(|(x, y)| *x - *y).collect(),
        second: a
            .second
            .iter()
            .zip(&b.second)
            .map(|(x, y)| *x - *y)
            .collect(),
    })
}

/// c · a for a public scalar c.
pub fn scale(a: &ShareVec, c: Fp) -> ShareVec {
    ShareVec {
        first: a.first.iter().map(|x| *x * c).collect(),
        second: a.second.iter().map(|x| *x * c).collect(),
    }
}

/// The share of a public constant `c` held by `me`.
pub fn constant(me: PartyId, c: Fp) -> Share {
    match me.index() {
        0 => Share {
            first: c,
            second: Fp::ZERO,
        },
        2 => Share {
            first: Fp::ZERO,
            second: c,
        },
        _ => Share::default(),
    }
}

/// a + c for a public constant c (the same for every element).
pub fn add_public(me: PartyId, a: &ShareVec, c: Fp) -> ShareVec {
    let k = constant(me, c);
    ShareVec {
        first: a.first.iter().map(|x| *x + k.first).collect(),
        second: a.second.iter().map(|x| *x + k.second).collect(),
    }
}

/// Σ c_i · s_i for public coefficients, plus a public constant, on single
/// shares (used to build linear forms element by element).
pub fn combine(me: PartyId, terms: &[(Fp, Share)], c: Fp) -> Share {
    let mut out = constant(me, c);
    for (coef, s) in terms {
        out.first += *coef * s.first;
        out.second += *coef * s.second;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use sharecall_proto::sharing::{reconstruct_batch, share_batch};

    #[test]
    fn linear_ops_match_plaintext() {
        let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(9);
        let a: Vec<Fp> = (0..10u64).map(Fp::from_u64).collect();
        let b: Vec<Fp> = (0..10u64).map(|v| Fp::from_u64(v * v + 3)).collect();
        let sa = share_batch(&a, &mut rng);
        let sb = share_batch(&b, &mut rng);
        let parties = PartyId::ALL;
        let sum = [0, 1, 2].map(|i| add(&sa[i], &sb[i]).expect("same length"));
        let diff = [0, 1, 2].map(|i| sub(&sa[i], &sb[i]).expect("same length"));
        let aff = [0, 1, 2]
            .map(|i| add_public(parties[i], &scale(&sa[i], Fp::from_u64(7)), Fp::from_u64(5)));
        let sums = reconstruct_batch(&sum).expect("ok");
        let diffs = reconstruct_batch(&diff).expect("ok");
        let affs = reconstruct_batch(&aff).expect("ok");
        for k in 0..10 {
            assert_eq!(sums[k], a[k] + b[k]);
            assert_eq!(diffs[k], a[k] - b[k]);
            assert_eq!(affs[k], a[k] * Fp::from_u64(7) + Fp::from_u64(5));
        }
        assert!(add(&sa[0], &ShareVec::default()).is_err());
    }
}
