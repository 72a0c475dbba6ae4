//! Client-side sharing of registrations and reconstruction of answers.
//!
//! A registration binds a [`Pseudonym`] to an [`Endpoint`]. The client turns
//! both into field elements (the pseudonym's 128-bit key, the packed
//! endpoint), shares them with replicated 2-out-of-3 sharing and gives each
//! provider only its own part. An answer comes back as three parts of the
//! packed endpoint; [`reconstruct_endpoint`] checks that every component
//! agrees between the two providers holding it, so a provider that alters
//! its share is named instead of silently changing the answer.

use rand::{CryptoRng, RngCore};
use sharecall_proto::bits::share_bits;
use sharecall_proto::encoding::{EncodingError, Endpoint, Pseudonym, ENDPOINT_ELEMENTS};
use sharecall_proto::sharing::{reconstruct_all, share};
use sharecall_proto::{BitShare, PartyId, Share, ShareError};

/// What one provider receives of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryPart {
    /// This provider's share of the pseudonym key.
    pub key: Share,
    /// Its XOR share of the same key (what the tree table compares).
    pub key_bits: BitShare,
    /// This provider's shares of the packed endpoint
    /// ([`ENDPOINT_ELEMENTS`] of them).
    pub endpoint: Vec<Share>,
}

/// Why an answer could not be turned back into an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ReconstructError {
    /// A provider returned the wrong number of shares.
    #[error("provider {provider} returned {got} endpoint shares, expected {ENDPOINT_ELEMENTS}")]
    WrongShape {
        /// The provider at fault.
        provider: PartyId,
        /// How many shares it returned.
        got: usize,
    },
    /// Two providers disagree about a component they both hold.
    #[error("endpoint element {element}: {source}")]
    Inconsistent {
        /// Which packed element.
        element: usize,
        /// Which component and which provider is suspect.
        source: ShareError,
    },
    /// The shares are consistent but do not decode to an endpoint (all
    /// three providers would have to collude, or the entry was stored
    /// corrupt).
    #[error("the reconstructed endpoint is not valid: {0}")]
    Encoding(#[from] EncodingError),
}

/// Shares a registration: part `i` goes to provider `P_i` only.
pub fn share_entry<R: RngCore + CryptoRng + ?Sized>(
    pseudonym: &Pseudonym,
    endpoint: &Endpoint,
    rng: &mut R,
) -> [EntryPart; 3] {
    let mut parts = share_query(pseudonym, rng).map(|q| EntryPart {
        key: q.key,
        key_bits: q.key_bits,
        endpoint: Vec::with_capacity(ENDPOINT_ELEMENTS),
    });
    for element in endpoint.pack() {
        for (part, s) in parts.iter_mut().zip(share(element, rng)) {
            part.endpoint.push(s);
        }
    }
    parts
}

/// One provider's shares of a pseudonym key, in both forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPart {
    /// Replicated share over the field (hash and list tables).
    pub key: Share,
    /// XOR share of the same 128 bits (tree table comparisons).
    pub key_bits: BitShare,
}

/// Shares the key of a pseudonym to look up: share `i` goes to `P_i`.
pub fn share_query<R: RngCore + CryptoRng + ?Sized>(
    pseudonym: &Pseudonym,
    rng: &mut R,
) -> [KeyPart; 3] {
    let key = pseudonym.key();
    let field = share(key.to_field(), rng);
    let bits = share_bits(key.as_u128(), rng);
    [0, 1, 2].map(|i| KeyPart {
        key: field[i],
        key_bits: bits[i],
    })
}

/// Rebuilds an endpoint from the three providers' shares (index = party),
/// checking every component against both of its holders.
pub fn reconstruct_endpoint(parts: &[Vec<Share>; 3]) -> Result<Endpoint, ReconstructError> {
    for (i, p) in parts.iter().enumerate() {
        if p.len() != ENDPOINT_ELEMENTS {
            return Err(ReconstructError::WrongShape {
                provider: PartyId::ALL[i],
                got: p.len(),
            });
        }
    }
    let elements = (0..ENDPOINT_ELEMENTS)
        .map(|element| {
            let shares = parts.each_ref().map(|p| p[element]);
            reconstruct_all(&shares)
                .map_err(|source| ReconstructError::Inconsistent { element, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Endpoint::unpack(&elements)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::OsRng;
    use sharecall_proto::sharing::reconstruct_two;
    use sharecall_proto::Fp;

    fn entry() -> (Pseudonym, Endpoint) {
        (
            Pseudonym::parse("+49 30 1234567").expect("pseudonym"),
            Endpoint::parse("sip:alice@192.0.2.10:5060").expect("endpoint"),
        )
    }

    #[test]
    fn entry_round_trips_and_any_two_parts_give_the_key() {
        let (p, e) = entry();
        let parts = share_entry(&p, &e, &mut OsRng);
        let endpoint =
            reconstruct_endpoint(&parts.clone().map(|x| x.endpoint)).expect("reconstruct");
        assert_eq!(endpoint, e);
        let key = reconstruct_two(
            (PartyId::ALL[0], parts[0].key),
            (PartyId::ALL[2], parts[2].key),
        )
        .expect("two parts");
        assert_eq!(key, p.key().to_field());
    }

    #[test]
    fn a_single_part_reveals_nothing_stable() {
        // Two sharings of the same entry give a provider unrelated shares.
        let (p, e) = entry();
        let a = share_entry(&p, &e, &mut OsRng);
        let b = share_entry(&p, &e, &mut OsRng);
        assert_ne!(a[0], b[0]);
    }

    #[test]
    fn tampering_provider_is_named() {
        let (p, e) = entry();
        let mut parts = share_entry(&p, &e, &mut OsRng).map(|x| x.endpoint);
        // P1 alters the first component of its share of element 3.
        parts[1][3].first += Fp::ONE;
        let err = reconstruct_endpoint(&parts).expect_err("tampering must be caught");
        assert!(
            matches!(err, ReconstructError::Inconsistent { element: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("P1"), "{err}");
    }

    #[test]
    fn wrong_shape_is_an_error() {
        let (p, e) = entry();
        let mut parts = share_entry(&p, &e, &mut OsRng).map(|x| x.endpoint);
        parts[2].pop();
        assert!(matches!(
            reconstruct_endpoint(&parts),
            Err(ReconstructError::WrongShape { got, .. }) if got == ENDPOINT_ELEMENTS - 1
        ));
    }

    proptest! {
        #[test]
        fn any_endpoint_round_trips(s in "[a-z0-9:@.;=\\[\\]]{1,300}") {
            if let Ok(e) = Endpoint::parse(&s) {
                let p = Pseudonym::parse("alice").expect("pseudonym");
                let parts = share_entry(&p, &e, &mut OsRng).map(|x| x.endpoint);
                prop_assert_eq!(reconstruct_endpoint(&parts).expect("reconstruct"), e);
            }
        }
    }
}
