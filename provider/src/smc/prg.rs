//! Correlated randomness from pairwise PRG seeds, with no traffic.
//!
//! Component x_i of a replicated sharing is held by P_i (as its first
//! component) and by P_{i−1} (as its second). If every component is drawn
//! from a PRG keyed with a seed only those two parties know, all three
//! parties obtain a consistent random sharing without sending anything, and
//! no single party knows the value (the component shared by the other two is
//! hidden from it). Zero sharings work the same way: party i takes
//! F(seed_i) − F(seed_{i+1}), and the three terms cancel.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;
use sharecall_proto::{Fp, Share, ShareVec};

/// The two seeds a party shares with its neighbours.
#[derive(Clone)]
pub struct PairwiseSeeds {
    /// Shared with P(i−1); keys this party's first component x_i.
    pub with_prev: [u8; 32],
    /// Shared with P(i+1); keys this party's second component x_{i+1}.
    pub with_next: [u8; 32],
}

impl std::fmt::Debug for PairwiseSeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Seeds are secret: never print them.
        f.write_str("PairwiseSeeds(..)")
    }
}

/// Derives the seed two parties share from both parties' contributions,
/// so neither alone chooses it.
pub fn derive_pair_seed(low: (u32, &[u8]), high: (u32, &[u8])) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("sharecall 2026 pairwise prg seed v1");
    h.update(&low.0.to_le_bytes());
    h.update(low.1);
    h.update(&high.0.to_le_bytes());
    h.update(high.1);
    *h.finalize().as_bytes()
}

fn stream(seed: &[u8; 32], channel: u32, session: u64, purpose: &str) -> ChaCha12Rng {
    let mut h = blake3::Hasher::new_derive_key("sharecall 2026 prg stream v1");
    h.update(seed);
    h.update(&channel.to_le_bytes());
    h.update(&session.to_le_bytes());
    h.update(purpose.as_bytes());
    ChaCha12Rng::from_seed(*h.finalize().as_bytes())
}

fn draw(rng: &mut ChaCha12Rng) -> Fp {
    let mut buf = [0u8; 32];
    loop {
        rng.fill_bytes(&mut buf);
        if let Some(x) = Fp::from_uniform_bytes(buf) {
            return x;
        }
    }
}

fn draw_bounded(rng: &mut ChaCha12Rng, bits: u32) -> Fp {
    let mut buf = [0u8; 16];
    rng.fill_bytes(&mut buf);
    let v = u128::from_le_bytes(buf);
    let v = if bits >= 128 {
        v
    } else {
        v & ((1u128 << bits) - 1)
    };
    Fp::from_u128(v)
}

/// The PRG streams of one session on one channel. Both holders of a seed
/// consume its streams in the same order because they run the same
/// operations in the same order in that session; a fresh stream per session
/// means a session that failed half-way (one party drew more than another)
/// cannot misalign the next one.
pub struct Prg {
    first: ChaCha12Rng,
    second: ChaCha12Rng,
    zero_prev: ChaCha12Rng,
    zero_next: ChaCha12Rng,
}

impl Prg {
    /// The streams of `session` on `channel`, derived from the pairwise
    /// seeds.
    pub fn new(seeds: &PairwiseSeeds, channel: u32, session: u64) -> Prg {
        Prg {
            first: stream(&seeds.with_prev, channel, session, "random"),
            second: stream(&seeds.with_next, channel, session, "random"),
            zero_prev: stream(&seeds.with_prev, channel, session, "zero"),
            zero_next: stream(&seeds.with_next, channel, session, "zero"),
        }
    }

    /// This party's shares of `n` fresh random values nobody knows.
    pub fn random(&mut self, n: usize) -> ShareVec {
        let mut out = ShareVec::with_capacity(n);
        for _ in 0..n {
            out.push(Share {
                first: draw(&mut self.first),
                second: draw(&mut self.second),
            });
        }
        out
    }

    /// Shares of `n` random integers, each the sum of three components
    /// uniform in [0, 2^bits) (so below 3·2^bits). Used as statistical
    /// masks whose size must stay far below p.
    pub fn random_bounded(&mut self, n: usize, bits: u32) -> ShareVec {
        let mut out = ShareVec::with_capacity(n);
        for _ in 0..n {
            out.push(Share {
                first: draw_bounded(&mut self.first, bits),
                second: draw_bounded(&mut self.second, bits),
            });
        }
        out
    }

    /// This party's additive shares of `n` zeros (the three parties' values
    /// sum to zero element-wise).
    pub fn zero(&mut self, n: usize) -> Vec<Fp> {
        (0..n)
            .map(|_| draw(&mut self.zero_prev) - draw(&mut self.zero_next))
            .collect()
    }

    /// This party's XOR shares of `n` zero words (the three parties'
    /// words XOR to zero).
    pub fn zero_words(&mut self, n: usize) -> Vec<u128> {
        let word = |rng: &mut ChaCha12Rng| {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            u128::from_le_bytes(b)
        };
        (0..n)
            .map(|_| word(&mut self.zero_prev) ^ word(&mut self.zero_next))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sharecall_proto::sharing::reconstruct_batch;

    fn seeds() -> [PairwiseSeeds; 3] {
        // s[k] is shared by P(k−1) and P(k).
        let s: [[u8; 32]; 3] = [[1; 32], [2; 32], [3; 32]];
        [0usize, 1, 2].map(|i| PairwiseSeeds {
            with_prev: s[i],
            with_next: s[(i + 1) % 3],
        })
    }

    #[test]
    fn random_sharings_are_consistent() {
        let mut prgs = seeds().map(|s| Prg::new(&s, 4, 1));
        let shares = [0, 1, 2].map(|i| prgs[i].random(50));
        let values = reconstruct_batch(&shares).expect("consistent");
        assert_eq!(values.len(), 50);
        assert_ne!(values[0], values[1]);
        let bounded = [0, 1, 2].map(|i| prgs[i].random_bounded(20, 10));
        for v in reconstruct_batch(&bounded).expect("consistent") {
            assert!(v.low_u128() < 3 << 10 && !v.bit(200));
        }
    }

    #[test]
    fn zero_sharings_sum_to_zero() {
        let mut prgs = seeds().map(|s| Prg::new(&s, 0, 1));
        let z = [0, 1, 2].map(|i| prgs[i].zero(20));
        for ((a, b), c) in z[0].iter().zip(&z[1]).zip(&z[2]) {
            assert_eq!(*a + *b + *c, Fp::ZERO);
            assert_ne!(*a, Fp::ZERO);
        }
        assert_eq!(z[0].len(), 20);
    }

    #[test]
    fn zero_words_xor_to_zero() {
        let mut prgs = seeds().map(|s| Prg::new(&s, 0, 1));
        let z = [0, 1, 2].map(|i| prgs[i].zero_words(20));
        for ((a, b), c) in z[0].iter().zip(&z[1]).zip(&z[2]) {
            assert_eq!(a ^ b ^ c, 0);
            assert_ne!(*a, 0);
        }
    }

    #[test]
    fn channels_are_independent() {
        let s = &seeds()[0];
        assert_ne!(Prg::new(s, 0, 1).random(1), Prg::new(s, 1, 1).random(1));
        assert_ne!(Prg::new(s, 0, 1).random(1), Prg::new(s, 0, 2).random(1));
        assert_ne!(
            derive_pair_seed((0, &[1]), (1, &[2])),
            derive_pair_seed((0, &[2]), (1, &[1]))
        );
    }
}
