//! The SMC protocols against their plaintext meaning, with three engines
//! talking over real loopback TLS sockets.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use sharecall_proto::bits::share_bits;
use sharecall_proto::sharing::{reconstruct_batch, share_batch};
use sharecall_proto::{BitShare, Fp, Legendre, ShareVec};
use sharecall_provider::smc::local::LocalCluster;
use sharecall_provider::smc::{
    Compared, EngineConfig, LaneSession, PoolSizing, PrfKey, Reveal, SmcResult, TAG_BITS,
};

/// Lanes, one per test function so tests running in parallel never share
/// a lane (sessions on a lane must be opened in the same order everywhere).
const LANES: u32 = 10;

struct Shared {
    rt: tokio::runtime::Runtime,
    cluster: LocalCluster,
    next_id: [AtomicU64; LANES as usize],
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let config = EngineConfig {
            lanes: LANES,
            op_timeout: Duration::from_secs(20),
            squares: PoolSizing {
                target: 2048,
                chunk: 512,
            },
            bit_blocks: PoolSizing {
                target: 64,
                chunk: 32,
            },
            ..EngineConfig::default()
        };
        let cluster = rt
            .block_on(LocalCluster::start(&config))
            .expect("cluster links");
        Shared {
            rt,
            cluster,
            next_id: std::array::from_fn(|_| AtomicU64::new(1)),
        }
    })
}

/// Runs `f` as one session on `lane` at all three parties concurrently.
fn run3<T, F, Fut>(lane: usize, f: F) -> [SmcResult<T>; 3]
where
    T: Send + 'static,
    F: Fn(usize, LaneSession) -> Fut,
    Fut: std::future::Future<Output = SmcResult<T>> + Send + 'static,
{
    let s = shared();
    let id = s.next_id[lane].fetch_add(1, Ordering::SeqCst);
    s.rt.block_on(async {
        let futs: Vec<_> = (0..3)
            .map(|p| {
                let engine = &s.cluster.engines[p];
                let fut = async move {
                    let session = engine.session(lane, id).await?;
                    Ok::<_, sharecall_provider::smc::SmcError>(session)
                };
                (p, fut)
            })
            .collect();
        let mut handles = Vec::new();
        for (p, fut) in futs {
            let session = match fut.await {
                Ok(s) => s,
                Err(e) => {
                    handles.push(tokio::spawn(async move { Err(e) }));
                    continue;
                }
            };
            handles.push(tokio::spawn(f(p, session)));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("task"));
        }
        let [a, b, c]: [SmcResult<T>; 3] = out.try_into().map_err(|_| ()).expect("three");
        [a, b, c]
    })
}

fn ok3<T: std::fmt::Debug + PartialEq>(r: [SmcResult<T>; 3]) -> T {
    let [a, b, c] = r.map(|x| x.expect("party succeeds"));
    assert_eq!(a, b, "P0 and P1 disagree");
    assert_eq!(b, c, "P1 and P2 disagree");
    a
}

fn share3(values: &[Fp], seed: u64) -> [ShareVec; 3] {
    share_batch(values, &mut ChaCha12Rng::seed_from_u64(seed))
}

fn fps(v: &[u128]) -> Vec<Fp> {
    v.iter().map(|x| Fp::from_u128(*x)).collect()
}

fn open_values(lane: usize, values: Vec<Fp>, seed: u64) -> Vec<Fp> {
    let shares = share3(&values, seed);
    ok3(run3(lane, move |p, mut s| {
        let x = shares[p].clone();
        async move { s.open(&x).await }
    }))
}

fn mul_values(lane: usize, a: Vec<Fp>, b: Vec<Fp>, seed: u64) -> (Vec<Fp>, Vec<Fp>) {
    let sa = share3(&a, seed);
    let sb = share3(&b, seed ^ 1);
    ok3(run3(lane, move |p, mut s| {
        let (x, y) = (sa[p].clone(), sb[p].clone());
        async move {
            let prod = s.mul(&x, &y).await?;
            let opened_prod = s.open(&prod).await?;
            let fused = s.mul_open(&x, &y).await?;
            s.verify().await?;
            Ok((opened_prod, fused))
        }
    }))
}

fn eq_values(lane: usize, a: Vec<Fp>, b: Vec<Fp>, seed: u64) -> Vec<bool> {
    let sa = share3(&a, seed);
    let sb = share3(&b, seed ^ 1);
    ok3(run3(lane, move |p, mut s| {
        let (x, y) = (sa[p].clone(), sb[p].clone());
        async move {
            let r = s.eq_reveal(&x, &y).await?;
            s.verify().await?;
            Ok(r)
        }
    }))
}

fn lt_values(lane: usize, a: Vec<Fp>, b: Vec<Fp>, seed: u64) -> Vec<bool> {
    let sa = share3(&a, seed);
    let sb = share3(&b, seed ^ 1);
    ok3(run3(lane, move |p, mut s| {
        let (x, y) = (sa[p].clone(), sb[p].clone());
        async move {
            let r = s.lt_reveal(&x, &y).await?;
            s.verify().await?;
            Ok(r)
        }
    }))
}

/// A PRF key generated jointly in one session, returned as the three
/// parties' shares (the test alone reconstructs it, to check the tags).
fn prf_key(lane: usize) -> [PrfKey; 3] {
    run3(lane, |_, mut s| async move { Ok(s.gen_prf_key()) }).map(|k| k.expect("key"))
}

/// `prf_tag` of `x`, or `prf_tag_prefix` when `widths` are given.
fn prf_values(
    lane: usize,
    keys: &[PrfKey; 3],
    x: Vec<Fp>,
    seed: u64,
    widths: Option<Vec<usize>>,
) -> Vec<u32> {
    let sx = share3(&x, seed);
    let keys = keys.clone();
    ok3(run3(lane, move |p, mut s| {
        let (k, v, w) = (keys[p].clone(), sx[p].clone(), widths.clone());
        async move {
            let t = match w {
                Some(w) => s.prf_tag_prefix(&k, &v, &w).await?,
                None => s.prf_tag(&k, &v).await?,
            };
            s.verify().await?;
            Ok(t)
        }
    }))
}

/// XOR shares of `values`, indexed by party.
fn share_words(values: &[u128], seed: u64) -> [Vec<BitShare>; 3] {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let mut out: [Vec<BitShare>; 3] = Default::default();
    for v in values {
        for (p, s) in share_bits(*v, &mut rng).into_iter().enumerate() {
            out[p].push(s);
        }
    }
    out
}

fn compare_words(pairs: &[(u128, u128)], reveal: Vec<Reveal>, seed: u64) -> Vec<Compared> {
    let a: Vec<u128> = pairs.iter().map(|p| p.0).collect();
    let b: Vec<u128> = pairs.iter().map(|p| p.1).collect();
    let (sa, sb) = (share_words(&a, seed), share_words(&b, seed ^ 1));
    ok3(run3(8, move |p, mut s| {
        let (x, y, r) = (sa[p].clone(), sb[p].clone(), reveal.clone());
        async move {
            let out = s.compare_bits(&x, &y, &r).await?;
            s.verify().await?;
            Ok(out)
        }
    }))
}

fn expected_compare(pairs: &[(u128, u128)], reveal: &[Reveal]) -> Vec<Compared> {
    pairs
        .iter()
        .zip(reveal)
        .map(|((x, y), r)| Compared {
            less: matches!(r, Reveal::Less | Reveal::Both).then_some(x < y),
            equal: matches!(r, Reveal::Equal | Reveal::Both).then_some(x == y),
        })
        .collect()
}

fn plaintext_tag(key: &[Fp], x: Fp) -> u32 {
    key.iter().enumerate().fold(0, |acc, (j, k)| {
        acc | (u32::from((*k + x).legendre() == Legendre::Residue) << j)
    })
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn open_equals_plaintext(v in proptest::collection::vec(any::<u128>(), 0..40), seed in any::<u64>()) {
        let values = fps(&v);
        prop_assert_eq!(open_values(0, values.clone(), seed), values);
    }

    #[test]
    fn mul_and_mul_open_equal_plaintext(
        v in proptest::collection::vec((any::<u128>(), any::<u128>()), 0..40),
        seed in any::<u64>(),
    ) {
        let a = fps(&v.iter().map(|x| x.0).collect::<Vec<_>>());
        let b = fps(&v.iter().map(|x| x.1).collect::<Vec<_>>());
        let expected: Vec<Fp> = a.iter().zip(&b).map(|(x, y)| *x * *y).collect();
        let (prod, fused) = mul_values(1, a, b, seed);
        prop_assert_eq!(&prod, &expected);
        prop_assert_eq!(&fused, &expected);
    }

    #[test]
    fn eq_reveal_equals_plaintext(
        v in proptest::collection::vec((any::<u128>(), any::<u128>(), any::<bool>()), 0..40),
        seed in any::<u64>(),
    ) {
        let a: Vec<u128> = v.iter().map(|x| x.0).collect();
        let b: Vec<u128> = v.iter().map(|x| if x.2 { x.0 } else { x.1 }).collect();
        let expected: Vec<bool> = a.iter().zip(&b).map(|(x, y)| x == y).collect();
        prop_assert_eq!(eq_values(2, fps(&a), fps(&b), seed), expected);
    }

    #[test]
    fn lt_reveal_equals_plaintext(
        v in proptest::collection::vec((any::<u128>(), any::<u128>(), 0u8..4), 0..24),
        seed in any::<u64>(),
    ) {
        // Mix in equal values, neighbours and the extremes.
        let pairs: Vec<(u128, u128)> = v
            .iter()
            .map(|&(x, y, k)| match k {
                0 => (x, y),
                1 => (x, x),
                2 => (x, x.wrapping_add(1)),
                _ => (if y % 2 == 0 { 0 } else { u128::MAX }, x),
            })
            .collect();
        let a: Vec<u128> = pairs.iter().map(|p| p.0).collect();
        let b: Vec<u128> = pairs.iter().map(|p| p.1).collect();
        let expected: Vec<bool> = pairs.iter().map(|(x, y)| x < y).collect();
        prop_assert_eq!(lt_values(3, fps(&a), fps(&b), seed), expected);
    }

    #[test]
    fn compare_bits_equals_plaintext(
        v in proptest::collection::vec((any::<u128>(), any::<u128>(), 0u8..5, 0u8..3), 0..40),
        seed in any::<u64>(),
    ) {
        // Equal values, neighbours, one flipped bit and the extremes.
        let pairs: Vec<(u128, u128)> = v
            .iter()
            .map(|&(x, y, k, _)| match k {
                0 => (x, y),
                1 => (x, x),
                2 => (x, x.wrapping_add(1)),
                3 => (x, x ^ (1 << (y % 128))),
                _ => (if y % 2 == 0 { 0 } else { u128::MAX }, x),
            })
            .collect();
        let reveal: Vec<Reveal> = v
            .iter()
            .map(|t| [Reveal::Less, Reveal::Equal, Reveal::Both][usize::from(t.3)])
            .collect();
        let expected = expected_compare(&pairs, &reveal);
        prop_assert_eq!(compare_words(&pairs, reveal, seed), expected);
    }

    #[test]
    fn prf_tag_equals_plaintext_legendre(v in proptest::collection::vec(any::<u128>(), 0..8), seed in any::<u64>()) {
        let keys = prf_key(4);
        let key: Vec<Fp> = reconstruct_batch(&keys.clone().map(|k| k.0)).expect("consistent key");
        prop_assert_eq!(key.len(), TAG_BITS);
        let x = fps(&v);
        let expected: Vec<u32> = x.iter().map(|xi| plaintext_tag(&key, *xi)).collect();
        prop_assert_eq!(prf_values(4, &keys, x, seed, None), expected);
    }

    #[test]
    fn prf_tag_prefix_is_the_low_bits_of_the_tag(
        v in proptest::collection::vec((any::<u128>(), 0..=TAG_BITS), 0..8),
        seed in any::<u64>(),
    ) {
        let keys = prf_key(9);
        let key: Vec<Fp> = reconstruct_batch(&keys.clone().map(|k| k.0)).expect("consistent key");
        let x = fps(&v.iter().map(|p| p.0).collect::<Vec<_>>());
        let widths: Vec<usize> = v.iter().map(|p| p.1).collect();
        let expected: Vec<u32> = x
            .iter()
            .zip(&widths)
            .map(|(xi, &w)| plaintext_tag(&key, *xi) & (((1u64 << w) - 1) as u32))
            .collect();
        prop_assert_eq!(prf_values(9, &keys, x, seed, Some(widths)), expected);
    }
}

#[test]
fn batch_sizes_zero_one_and_thousand() {
    for n in [0usize, 1, 1000] {
        let a: Vec<u128> = (0..n as u128).map(|i| i * 7919 % 1000).collect();
        let b: Vec<u128> = (0..n as u128).map(|i| i * 104729 % 1000).collect();
        assert_eq!(open_values(5, fps(&a), 11), fps(&a));
        let eq = eq_values(5, fps(&a), fps(&b), 12);
        assert_eq!(
            eq,
            a.iter().zip(&b).map(|(x, y)| x == y).collect::<Vec<_>>()
        );
        let (prod, fused) = mul_values(5, fps(&a), fps(&b), 13);
        let expected: Vec<Fp> = fps(&a).iter().zip(fps(&b)).map(|(x, y)| *x * y).collect();
        assert_eq!(prod, expected);
        assert_eq!(fused, expected);
    }
    for n in [0usize, 1, 100] {
        let a: Vec<u128> = (0..n as u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
            .collect();
        let b: Vec<u128> = (0..n as u128)
            .map(|i| i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f_1656_67b1_9e37_79b9))
            .collect();
        let lt = lt_values(5, fps(&a), fps(&b), 14);
        assert_eq!(lt, a.iter().zip(&b).map(|(x, y)| x < y).collect::<Vec<_>>());
    }
}

#[test]
fn prf_tags_are_stable_and_spread() {
    let keys = prf_key(6);
    let x: Vec<Fp> = (0..64u64).map(Fp::from_u64).collect();
    let first = prf_values(6, &keys, x.clone(), 1, None);
    // Same key, fresh sharing of the same inputs: same tags.
    let again = prf_values(6, &keys, x, 2, None);
    assert_eq!(first, again);
    let mut distinct = first.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() > 60,
        "32-bit tags of 64 inputs should hardly collide"
    );
    // A different key gives different tags.
    let other = prf_key(6);
    assert_ne!(
        prf_values(6, &other, (0..64u64).map(Fp::from_u64).collect(), 3, None),
        first
    );
}

#[test]
fn pool_refills_in_the_background() {
    let s = shared();
    s.rt.block_on(async {
        for e in &s.cluster.engines {
            e.warm().await.expect("pools fill");
        }
    });
    let before = s.cluster.engines[0].pool_stats()[7];
    assert!(
        before.0.available >= 2048 && before.1.available >= 64,
        "{before:?}"
    );
    // Consume squares for 40 tags, then the producer tops the pool up.
    let keys = prf_key(7);
    let x: Vec<Fp> = (0..40u64).map(Fp::from_u64).collect();
    prf_values(7, &keys, x, 5, None);
    s.rt.block_on(async {
        for e in &s.cluster.engines {
            e.warm().await.expect("pools refill");
        }
    });
    let after = s.cluster.engines[0].pool_stats()[7];
    assert_eq!(after.0.consumed, before.0.consumed + 40 * TAG_BITS as u64);
    assert!(after.0.available >= 2048);
    assert!(after.0.produced > before.0.produced);
}

#[test]
fn compare_bits_in_a_batch_of_1000() {
    let mut rng = ChaCha12Rng::seed_from_u64(9);
    let pairs: Vec<(u128, u128)> = (0..1000)
        .map(|k| {
            let mut w = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rng, &mut w);
            let x = u128::from_le_bytes(w[..16].try_into().expect("16"));
            let y = u128::from_le_bytes(w[16..].try_into().expect("16"));
            if k % 3 == 0 {
                (x, x)
            } else {
                (x, y)
            }
        })
        .collect();
    let reveal = vec![Reveal::Both; pairs.len()];
    let expected = expected_compare(&pairs, &reveal);
    assert_eq!(compare_words(&pairs, reveal, 4), expected);
}
