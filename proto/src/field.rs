//! The prime field F_p with p = 2^255 − 19, used for every shared value.
//!
//! Arithmetic is fixed-width Montgomery arithmetic from `ark-ff` (four 64-bit
//! limbs); this module wraps it in a small type of our own so the rest of the
//! system depends on one stable API and one canonical encoding: 32 bytes,
//! little-endian, value < p. Property tests in this module check every
//! operation against `num-bigint`.

use std::fmt;
use std::ops::{Add, AddAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use ark_ff::{BigInt, BigInteger, Field, LegendreSymbol, MontBackend, MontConfig, PrimeField};
use rand::RngCore;

/// Parameters of p = 2^255 − 19 for ark-ff (2 generates F_p^*).
#[derive(MontConfig)]
#[modulus = "57896044618658097711785492504343953926634992332820282019728792003956564819949"]
#[generator = "2"]
pub struct P25519Config;

type Inner = ark_ff::Fp256<MontBackend<P25519Config, 4>>;

/// Length of the canonical encoding of a field element.
pub const ENCODED_LEN: usize = 32;

/// The modulus p = 2^255 − 19 as little-endian bytes.
pub const MODULUS_LE: [u8; 32] = {
    let mut b = [0xffu8; 32];
    b[0] = 0xed;
    b[31] = 0x7f;
    b
};

/// An element of F_p, p = 2^255 − 19.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fp(Inner);

/// Errors of decoding field elements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The 32 bytes encode an integer ≥ p (every element has exactly one
    /// encoding; anything else is refused rather than reduced).
    #[error("non-canonical field element encoding (value >= 2^255 - 19)")]
    NonCanonical,
    /// A byte string that should hold whole elements has a ragged length.
    #[error("field element batch of {0} bytes is not a multiple of 32")]
    BadLength(usize),
}

/// Quadratic character of a field element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legendre {
    /// The element is zero.
    Zero,
    /// A non-zero square.
    Residue,
    /// A non-square.
    NonResidue,
}

impl Fp {
    /// The additive identity.
    pub const ZERO: Fp = Fp(ark_ff::MontFp!("0"));
    /// The multiplicative identity.
    pub const ONE: Fp = Fp(ark_ff::MontFp!("1"));

    /// The element `v mod p`.
    pub fn from_u64(v: u64) -> Fp {
        Fp(Inner::from(v))
    }

    /// The element `v` (always < p).
    pub fn from_u128(v: u128) -> Fp {
        Fp(Inner::from(v))
    }

    /// 2^k as a field element.
    pub fn pow2(k: u32) -> Fp {
        Fp(Inner::from(2u64)).pow_u64(u64::from(k))
    }

    /// `self^e` for a small public exponent.
    pub fn pow_u64(&self, e: u64) -> Fp {
        Fp(self.0.pow([e]))
    }

    /// `self^2`.
    pub fn square(&self) -> Fp {
        Fp(self.0.square())
    }

    /// The multiplicative inverse, `None` for zero.
    pub fn inverse(&self) -> Option<Fp> {
        self.0.inverse().map(Fp)
    }

    /// Whether this is zero.
    pub fn is_zero(&self) -> bool {
        *self == Fp::ZERO
    }

    /// The quadratic character (Legendre symbol) of `self`.
    pub fn legendre(&self) -> Legendre {
        match self.0.legendre() {
            LegendreSymbol::Zero => Legendre::Zero,
            LegendreSymbol::QuadraticResidue => Legendre::Residue,
            LegendreSymbol::QuadraticNonResidue => Legendre::NonResidue,
        }
    }

    /// A square root, `None` if `self` is not a square.
    ///
    /// The root returned is canonical: of the two roots ±r it is the one
    /// whose canonical integer is even, so every party computing the root of
    /// the same public value gets the same answer.
    pub fn sqrt(&self) -> Option<Fp> {
        let r = Fp(self.0.sqrt()?);
        if r.to_bytes()[0] & 1 == 1 {
            Some(-r)
        } else {
            Some(r)
        }
    }

    /// A uniformly random element.
    pub fn random<R: RngCore + ?Sized>(rng: &mut R) -> Fp {
        let mut buf = [0u8; 32];
        loop {
            rng.fill_bytes(&mut buf);
            if let Some(x) = Fp::from_uniform_bytes(buf) {
                return x;
            }
        }
    }

    /// Maps 32 uniformly random bytes to a uniformly random element, or
    /// `None` (probability ≈ 2^-251) when the caller must draw again.
    ///
    /// The bytes are taken as the element's internal (Montgomery) form: a
    /// bijection on [0, p), so uniform in means uniform out, and it saves a
    /// multiplication per sample on the PRG hot path.
    pub fn from_uniform_bytes(mut buf: [u8; 32]) -> Option<Fp> {
        buf[31] &= 0x7f;
        let limbs = le_bytes_to_limbs(&buf);
        if !less_than_modulus(&limbs) {
            return None;
        }
        Some(Fp(Inner::new_unchecked(BigInt::new(limbs))))
    }

    /// Canonical encoding: the integer value in [0, p), 32 bytes little-endian.
    pub fn to_bytes(&self) -> [u8; 32] {
        let limbs = self.0.into_bigint().0;
        let mut out = [0u8; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(limbs.iter()) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    /// Decodes a canonical encoding; refuses integers ≥ p.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Fp, FieldError> {
        let limbs = le_bytes_to_limbs(bytes);
        if !less_than_modulus(&limbs) {
            return Err(FieldError::NonCanonical);
        }
        Inner::from_bigint(BigInt::new(limbs))
            .map(Fp)
            .ok_or(FieldError::NonCanonical)
    }

    /// The low 128 bits of the canonical integer (used by comparisons,
    /// whose public masked values are below 2^255).
    pub fn low_u128(&self) -> u128 {
        let limbs = self.0.into_bigint().0;
        u128::from(limbs[0]) | (u128::from(limbs[1]) << 64)
    }

    /// Bit `i` (0 = least significant) of the canonical integer.
    pub fn bit(&self, i: usize) -> bool {
        self.0.into_bigint().get_bit(i)
    }
}

fn le_bytes_to_limbs(bytes: &[u8; 32]) -> [u64; 4] {
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(b);
    }
    limbs
}

fn less_than_modulus(limbs: &[u64; 4]) -> bool {
    let m = <P25519Config as MontConfig<4>>::MODULUS.0;
    for i in (0..4).rev() {
        if limbs[i] != m[i] {
            return limbs[i] < m[i];
        }
    }
    false
}

/// Encodes a batch of elements, 32 bytes each.
pub fn encode_batch(values: &[Fp]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * ENCODED_LEN);
    for v in values {
        out.extend_from_slice(&v.to_bytes());
    }
    out
}

/// Decodes a batch written by [`encode_batch`], refusing ragged lengths and
/// non-canonical elements.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Fp>, FieldError> {
    if bytes.len() % ENCODED_LEN != 0 {
        return Err(FieldError::BadLength(bytes.len()));
    }
    bytes
        .chunks_exact(ENCODED_LEN)
        .map(|c| {
            let mut b = [0u8; 32];
            b.copy_from_slice(c);
            Fp::from_bytes(&b)
        })
        .collect()
}

impl fmt::Debug for Fp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fp({})", self.0)
    }
}

impl fmt::Display for Fp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Add for Fp {
    type Output = Fp;
    fn add(self, rhs: Fp) -> Fp {
        Fp(self.0 + rhs.0)
    }
}

impl Sub for Fp {
    type Output = Fp;
    fn sub(self, rhs: Fp) -> Fp {
        Fp(self.0 - rhs.0)
    }
}

impl Mul for Fp {
    type Output = Fp;
    fn mul(self, rhs: Fp) -> Fp {
        Fp(self.0 * rhs.0)
    }
}

impl Neg for Fp {
    type Output = Fp;
    fn neg(self) -> Fp {
        Fp(-self.0)
    }
}

impl AddAssign for Fp {
    fn add_assign(&mut self, rhs: Fp) {
        self.0 += rhs.0;
    }
}

impl SubAssign for Fp {
    fn sub_assign(&mut self, rhs: Fp) {
        self.0 -= rhs.0;
    }
}

impl MulAssign for Fp {
    fn mul_assign(&mut self, rhs: Fp) {
        self.0 *= rhs.0;
    }
}

impl std::iter::Sum for Fp {
    fn sum<I: Iterator<Item = Fp>>(iter: I) -> Fp {
        iter.fold(Fp::ZERO, |a, b| a + b)
    }
}

impl From<u64> for Fp {
    fn from(v: u64) -> Fp {
        Fp::from_u64(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigUint;
    use num_traits::{One, Zero};
    use proptest::prelude::*;

    fn modulus() -> BigUint {
        (BigUint::one() << 255u32) - BigUint::from(19u32)
    }

    fn to_big(x: &Fp) -> BigUint {
        BigUint::from_bytes_le(&x.to_bytes())
    }

    fn from_big(x: &BigUint) -> Fp {
        let mut b = [0u8; 32];
        let bytes = (x % modulus()).to_bytes_le();
        b[..bytes.len()].copy_from_slice(&bytes);
        Fp::from_bytes(&b).expect("reduced value is canonical")
    }

    fn arb_big() -> impl Strategy<Value = BigUint> {
        prop_oneof![
            any::<[u8; 32]>().prop_map(|b| BigUint::from_bytes_le(&b) % modulus()),
            (0u64..1000).prop_map(BigUint::from),
            (0u64..1000).prop_map(|k| modulus() - BigUint::one() - BigUint::from(k)),
        ]
    }

    #[test]
    fn modulus_bytes_match() {
        assert_eq!(BigUint::from_bytes_le(&MODULUS_LE), modulus());
        assert_eq!(Fp::from_bytes(&MODULUS_LE), Err(FieldError::NonCanonical));
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        let mut above = MODULUS_LE;
        above[0] += 1;
        assert_eq!(Fp::from_bytes(&above), Err(FieldError::NonCanonical));
        assert_eq!(Fp::from_bytes(&[0xff; 32]), Err(FieldError::NonCanonical));
        assert_eq!(decode_batch(&[0u8; 33]), Err(FieldError::BadLength(33)));
    }

    #[test]
    fn constants() {
        assert!(Fp::ZERO.is_zero());
        assert_eq!(to_big(&Fp::ONE), BigUint::one());
        assert_eq!(to_big(&Fp::pow2(200)), BigUint::one() << 200u32);
        assert_eq!(Fp::ZERO.inverse(), None);
        assert_eq!(Fp::ZERO.legendre(), Legendre::Zero);
    }

    proptest! {
        #[test]
        fn encoding_round_trips(a in arb_big()) {
            let x = from_big(&a);
            prop_assert_eq!(to_big(&x), a.clone());
            prop_assert_eq!(Fp::from_bytes(&x.to_bytes()), Ok(x));
            prop_assert_eq!(decode_batch(&encode_batch(&[x, x])), Ok(vec![x, x]));
        }

        #[test]
        fn arithmetic_matches_bigint(a in arb_big(), b in arb_big()) {
            let (x, y) = (from_big(&a), from_big(&b));
            let p = modulus();
            prop_assert_eq!(to_big(&(x + y)), (&a + &b) % &p);
            prop_assert_eq!(to_big(&(x - y)), (&a + &p - &b) % &p);
            prop_assert_eq!(to_big(&(x * y)), (&a * &b) % &p);
            prop_assert_eq!(to_big(&(-x)), (&p - &a) % &p);
            prop_assert_eq!(to_big(&x.square()), (&a * &a) % &p);
        }

        #[test]
        fn inverse_matches_bigint(a in arb_big()) {
            let x = from_big(&a);
            let p = modulus();
            match x.inverse() {
                None => prop_assert!(a.is_zero()),
                Some(inv) => {
                    let expected = a.modpow(&(&p - BigUint::from(2u32)), &p);
                    prop_assert_eq!(to_big(&inv), expected);
                }
            }
        }

        #[test]
        fn legendre_and_sqrt_match_euler(a in arb_big()) {
            let x = from_big(&a);
            let p = modulus();
            let euler = a.modpow(&((&p - BigUint::one()) >> 1u32), &p);
            let expected = if a.is_zero() {
                Legendre::Zero
            } else if euler.is_one() {
                Legendre::Residue
            } else {
                Legendre::NonResidue
            };
            prop_assert_eq!(x.legendre(), expected);
            match x.sqrt() {
                Some(r) => {
                    prop_assert_ne!(expected, Legendre::NonResidue);
                    prop_assert_eq!((to_big(&r) * to_big(&r)) % &p, a.clone());
                    prop_assert_eq!(to_big(&r).bit(0), false);
                }
                None => prop_assert_eq!(expected, Legendre::NonResidue),
            }
            // Squares always have a root.
            prop_assert!(x.square().sqrt().is_some());
        }

        #[test]
        fn bits_match_bigint(a in arb_big(), i in 0usize..256) {
            let x = from_big(&a);
            prop_assert_eq!(x.bit(i), a.bit(i as u64));
            let low: u128 = (&a % (BigUint::one() << 128u32)).try_into().expect("fits");
            prop_assert_eq!(x.low_u128(), low);
        }

        #[test]
        fn uniform_bytes_stay_in_range(b in any::<[u8; 32]>()) {
            if let Some(x) = Fp::from_uniform_bytes(b) {
                prop_assert!(to_big(&x) < modulus());
            }
        }

        #[test]
        fn small_constructors(v in any::<u64>(), w in any::<u128>()) {
            prop_assert_eq!(to_big(&Fp::from_u64(v)), BigUint::from(v));
            prop_assert_eq!(to_big(&Fp::from_u128(w)), BigUint::from(w));
        }
    }

    #[test]
    fn random_elements_differ() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(7);
        let a = Fp::random(&mut rng);
        let b = Fp::random(&mut rng);
        assert_ne!(a, b);
        assert!(to_big(&a) < modulus());
    }
}
