//! Replicated 2-out-of-3 secret sharing over [`Fp`].
//!
//! A value x is split into three random components x = x0 + x1 + x2; party
//! Pi holds the pair (x_i, x_{i+1}) (indices mod 3). Any two parties hold all
//! three components, and each component is held by exactly two parties —
//! which is what makes every opening checkable: the two copies of a
//! component must agree.

use std::fmt;

use rand::RngCore;

use crate::field::Fp;

/// Number of parties (providers).
pub const PARTIES: usize = 3;

/// Index of a party, 0, 1 or 2.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartyId(u8);

impl PartyId {
    /// All three parties in order.
    pub const ALL: [PartyId; 3] = [PartyId(0), PartyId(1), PartyId(2)];

    /// The party with index `i`, if `i < 3`.
    pub fn new(i: usize) -> Option<PartyId> {
        (i < PARTIES).then_some(PartyId(i as u8))
    }

    /// The index 0..3.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// P(i+1).
    pub fn next(self) -> PartyId {
        PartyId((self.0 + 1) % 3)
    }

    /// P(i−1).
    pub fn prev(self) -> PartyId {
        PartyId((self.0 + 2) % 3)
    }

    /// The two other parties, `[next, prev]`.
    pub fn others(self) -> [PartyId; 2] {
        [self.next(), self.prev()]
    }
}

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

impl fmt::Debug for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One party's share of one value: components (x_i, x_{i+1}).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Share {
    /// x_i, also held by P(i−1) as its second component.
    pub first: Fp,
    /// x_{i+1}, also held by P(i+1) as its first component.
    pub second: Fp,
}

/// Splits `x` into the three parties' shares, indexed by party.
pub fn share<R: RngCore + ?Sized>(x: Fp, rng: &mut R) -> [Share; 3] {
    let x0 = Fp::random(rng);
    let x1 = Fp::random(rng);
    let x2 = x - x0 - x1;
    let c = [x0, x1, x2];
    PartyId::ALL.map(|p| Share {
        first: c[p.index()],
        second: c[p.next().index()],
    })
}

/// Reconstruction failed because two copies of a component disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// Component `component` differs between the two parties that hold it.
    /// When a single party is involved in every disagreement it is named as
    /// `suspect`; with one disagreeing component the honest majority cannot
    /// tell which of its two holders deviated.
    #[error("{}", describe_inconsistency(*component, *holders, *suspect))]
    Inconsistent {
        /// Index of the first disagreeing component (x0, x1 or x2).
        component: usize,
        /// The two parties holding that component.
        holders: [PartyId; 2],
        /// The party all disagreements point at, if they point at one.
        suspect: Option<PartyId>,
    },
    /// The same party was given twice, or a batch has mismatched lengths.
    #[error("invalid reconstruction input: {0}")]
    Invalid(&'static str),
}

fn describe_inconsistency(
    component: usize,
    holders: [PartyId; 2],
    suspect: Option<PartyId>,
) -> String {
    match suspect {
        Some(p) => {
            format!("{p} returned inconsistent shares (disagrees with both other providers)")
        }
        None => format!(
            "share component x{component} disagrees between {} and {}; one of them is inconsistent",
            holders[0], holders[1]
        ),
    }
}

/// The two parties holding component `c`: P_c (first) and P_{c−1} (second).
pub fn holders_of(component: usize) -> [PartyId; 2] {
    let owner = PartyId::new(component % 3).unwrap_or(PartyId(0));
    [owner, owner.prev()]
}

/// Reconstructs from any two parties' shares. The component both hold is
/// compared; a disagreement is reported (naming both holders).
pub fn reconstruct_two(a: (PartyId, Share), b: (PartyId, Share)) -> Result<Fp, ShareError> {
    let comps = components_of_two(a, b)?;
    Ok(comps[0] + comps[1] + comps[2])
}

fn components_of_two(a: (PartyId, Share), b: (PartyId, Share)) -> Result<[Fp; 3], ShareError> {
    // Order so that `lo.next() == hi`.
    let (lo, hi) = if a.0.next() == b.0 {
        (a, b)
    } else if b.0.next() == a.0 {
        (b, a)
    } else {
        return Err(ShareError::Invalid("need two different parties"));
    };
    // lo holds (x_l, x_{l+1}); hi holds (x_{l+1}, x_{l+2}).
    let shared = lo.0.next().index();
    if lo.1.second != hi.1.first {
        return Err(ShareError::Inconsistent {
            component: shared,
            holders: holders_of(shared),
            suspect: None,
        });
    }
    let mut c = [Fp::ZERO; 3];
    c[lo.0.index()] = lo.1.first;
    c[shared] = lo.1.second;
    c[hi.0.next().index()] = hi.1.second;
    Ok(c)
}

/// Reconstructs from all three parties' shares (indexed by party), checking
/// every component against its second copy.
pub fn reconstruct_all(shares: &[Share; 3]) -> Result<Fp, ShareError> {
    // Component c is P_c's first and P_{c-1}'s second.
    let mut bad = Vec::new();
    for c in 0..3 {
        let [owner, other] = holders_of(c);
        if shares[owner.index()].first != shares[other.index()].second {
            bad.push(c);
        }
    }
    let Some(&component) = bad.first() else {
        return Ok(shares[0].first + shares[1].first + shares[2].first);
    };
    // Two or more disagreements share exactly one holder: the deviator.
    let suspect = if bad.len() >= 2 {
        PartyId::ALL
            .into_iter()
            .find(|p| bad.iter().all(|&k| holders_of(k).contains(p)))
    } else {
        None
    };
    Err(ShareError::Inconsistent {
        component,
        holders: holders_of(component),
        suspect,
    })
}

/// A batch of one party's shares, stored as two component vectors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareVec {
    /// The x_i components.
    pub first: Vec<Fp>,
    /// The x_{i+1} components.
    pub second: Vec<Fp>,
}

impl ShareVec {
    /// An empty batch with room for `n` shares.
    pub fn with_capacity(n: usize) -> ShareVec {
        ShareVec {
            first: Vec::with_capacity(n),
            second: Vec::with_capacity(n),
        }
    }

    /// Number of shares in the batch.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.first.is_empty()
    }

    /// Appends one share.
    pub fn push(&mut self, s: Share) {
        self.first.push(s.first);
        self.second.push(s.second);
    }

    /// The share at `i`.
    pub fn get(&self, i: usize) -> Option<Share> {
        Some(Share {
            first: *self.first.get(i)?,
            second: *self.second.get(i)?,
        })
    }

    /// Iterates over the shares.
    pub fn iter(&self) -> impl Iterator<Item = Share> + '_ {
        self.first
            .iter()
            .zip(self.second.iter())
            .map(|(&first, &second)| Share { first, second })
    }
}

impl FromIterator<Share> for ShareVec {
    fn from_iter<I: IntoIterator<Item = Share>>(iter: I) -> ShareVec {
        let mut v = ShareVec::default();
        for s in iter {
            v.push(s);
        }
        v
    }
}

/// Shares every value of a batch; the result is indexed by party.
pub fn share_batch<R: RngCore + ?Sized>(values: &[Fp], rng: &mut R) -> [ShareVec; 3] {
    let mut out: [ShareVec; 3] = Default::default();
    for &x in values {
        for (p, s) in share(x, rng).into_iter().enumerate() {
            out[p].push(s);
        }
    }
    out
}

/// Reconstructs a batch from all three parties' share vectors, checking
/// every component; the first inconsistent element is reported with its
/// index.
pub fn reconstruct_batch(shares: &[ShareVec; 3]) -> Result<Vec<Fp>, (usize, ShareError)> {
    let n = shares[0].len();
    if shares.iter().any(|s| s.len() != n || s.second.len() != n) {
        return Err((0, ShareError::Invalid("share vectors of different lengths")));
    }
    (0..n)
        .map(|i| {
            let triple = [0, 1, 2].map(|p| Share {
                first: shares[p].first[i],
                second: shares[p].second[i],
            });
            reconstruct_all(&triple).map_err(|e| (i, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    fn p(i: usize) -> PartyId {
        PartyId::new(i).expect("valid party")
    }

    proptest! {
        #[test]
        fn share_and_reconstruct(v in any::<u128>(), seed in any::<u64>()) {
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            let x = Fp::from_u128(v);
            let s = share(x, &mut rng);
            prop_assert_eq!(reconstruct_all(&s), Ok(x));
            for i in 0..3 {
                for j in 0..3 {
                    if i != j {
                        prop_assert_eq!(reconstruct_two((p(i), s[i]), (p(j), s[j])), Ok(x));
                    }
                }
            }
        }

        #[test]
        fn one_tampered_component_is_detected(v in any::<u64>(), seed in any::<u64>(), who in 0usize..3, which in 0usize..2) {
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            let mut s = share(Fp::from_u64(v), &mut rng);
            let component = if which == 0 {
                s[who].first += Fp::ONE;
                who
            } else {
                s[who].second += Fp::ONE;
                (who + 1) % 3
            };
            match reconstruct_all(&s) {
                Err(ShareError::Inconsistent { component: c, holders, suspect }) => {
                    prop_assert_eq!(c, component);
                    prop_assert!(holders.contains(&p(who)));
                    prop_assert_eq!(suspect, None);
                }
                other => prop_assert!(false, "not detected: {:?}", other),
            }
        }

        #[test]
        fn a_fully_lying_party_is_named(v in any::<u64>(), seed in any::<u64>(), who in 0usize..3) {
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            let mut s = share(Fp::from_u64(v), &mut rng);
            s[who].first += Fp::ONE;
            s[who].second += Fp::from_u64(5);
            match reconstruct_all(&s) {
                Err(ShareError::Inconsistent { suspect, .. }) => prop_assert_eq!(suspect, Some(p(who))),
                other => prop_assert!(false, "not detected: {:?}", other),
            }
        }
    }

    #[test]
    fn two_party_reconstruction_checks_overlap() {
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let mut s = share(Fp::from_u64(42), &mut rng);
        // P0's second component is x1, also P1's first.
        s[0].second += Fp::ONE;
        let err = reconstruct_two((p(0), s[0]), (p(1), s[1])).expect_err("tampered");
        assert_eq!(
            err,
            ShareError::Inconsistent {
                component: 1,
                holders: [p(1), p(0)],
                suspect: None
            }
        );
        assert!(err.to_string().contains("P1 and P0"));
        assert_eq!(
            reconstruct_two((p(0), s[0]), (p(0), s[0])),
            Err(ShareError::Invalid("need two different parties"))
        );
    }

    #[test]
    fn batches_round_trip_and_report_index() {
        let mut rng = ChaCha12Rng::seed_from_u64(3);
        let values: Vec<Fp> = (0..10).map(Fp::from_u64).collect();
        let mut shares = share_batch(&values, &mut rng);
        assert_eq!(reconstruct_batch(&shares), Ok(values));
        shares[2].second[7] += Fp::ONE;
        let (i, _) = reconstruct_batch(&shares).expect_err("tampered");
        assert_eq!(i, 7);
        assert_eq!(reconstruct_batch(&Default::default()), Ok(vec![]));
    }

    #[test]
    fn party_arithmetic() {
        assert_eq!(p(0).next(), p(1));
        assert_eq!(p(0).prev(), p(2));
        assert_eq!(p(2).next(), p(0));
        assert_eq!(PartyId::new(3), None);
        assert_eq!(p(1).to_string(), "P1");
        assert_eq!(holders_of(0), [p(0), p(2)]);
    }
}
