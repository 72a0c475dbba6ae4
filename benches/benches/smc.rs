//! The SMC protocols over loopback TLS, three engines in one process (the
//! three parties share this machine's cores).
//!
//! Run: `cargo bench -p sharecall-benches --bench smc`
//! Batch sizes 1, 1 000 and 100 000; `prf_tag` and `lt_reveal` stop at
//! 1 000 per iteration here (their preprocessing, 32 squares or one
//! 128-bit block per value, is what a bigger batch would measure).

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use sharecall_benches::cluster::BenchCluster;
use sharecall_proto::sharing::share_batch;
use sharecall_proto::{Fp, ShareVec};
use sharecall_provider::smc::{EngineConfig, PoolSizing, PrfKey};

fn config() -> EngineConfig {
    EngineConfig {
        lanes: 1,
        squares: PoolSizing {
            target: 40_000,
            chunk: 8_192,
        },
        bit_blocks: PoolSizing {
            target: 1_200,
            chunk: 256,
        },
        ..EngineConfig::default()
    }
}

fn inputs(n: usize, seed: u64) -> [(ShareVec, ShareVec); 3] {
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(seed);
    let a: Vec<Fp> = (0..n)
        .map(|i| Fp::from_u128(i as u128 * 0x9e37_79b9_7f4a_7c15))
        .collect();
    let b: Vec<Fp> = (0..n)
        .map(|i| Fp::from_u128((i as u128 + 7) * 0xc2b2_ae3d_27d4_eb4f))
        .collect();
    let sa = share_batch(&a, &mut rng);
    let sb = share_batch(&b, &mut rng);
    let [a0, a1, a2] = sa;
    let [b0, b1, b2] = sb;
    [(a0, b0), (a1, b1), (a2, b2)]
}

fn protocols(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = rt
        .block_on(BenchCluster::start(&config(), None))
        .expect("cluster");
    rt.block_on(cluster.warm()).expect("warm");
    let keys: [PrfKey; 3] = rt
        .block_on(cluster.run([(), (), ()], |mut s, ()| async move { Ok(s.gen_prf_key()) }))
        .expect("key");

    let mut g = c.benchmark_group("smc");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for &n in &[1usize, 1_000, 100_000] {
        let data = inputs(n, n as u64);
        g.throughput(Throughput::Elements(n as u64));
        macro_rules! bench_op {
            ($name:expr, $max:expr, |$s:ident, $a:ident, $b:ident, $k:ident| $body:expr) => {
                if n <= $max {
                    g.bench_with_input(BenchmarkId::new($name, n), &n, |bench, _| {
                        bench.iter_custom(|iters| {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                let ins = [0, 1, 2].map(|p| (data[p].clone(), keys[p].clone()));
                                let start = Instant::now();
                                rt.block_on(cluster.run(
                                    ins,
                                    |mut $s, (($a, $b), $k)| async move {
                                        let _ = (&$b, &$k);
                                        $body.await.map(|_| ())
                                    },
                                ))
                                .expect("protocol");
                                total += start.elapsed();
                                // Let the pool refill outside the measurement.
                                rt.block_on(cluster.warm()).expect("warm");
                            }
                            total
                        })
                    });
                }
            };
        }
        bench_op!("open", usize::MAX, |s, a, b, k| s.open(&a));
        bench_op!("mul", usize::MAX, |s, a, b, k| s.mul(&a, &b));
        bench_op!("mul_open", usize::MAX, |s, a, b, k| s.mul_open(&a, &b));
        bench_op!("eq_reveal", usize::MAX, |s, a, b, k| s.eq_reveal(&a, &b));
        bench_op!("prf_tag", 1_000, |s, a, b, k| s.prf_tag(&k, &a));
        bench_op!("lt_reveal", 1_000, |s, a, b, k| s.lt_reveal(&a, &b));
    }
    g.finish();
}

criterion_group!(benches, protocols);
criterion_main!(benches);
