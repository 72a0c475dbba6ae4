//! The SMC protocols over loopback TLS, three engines in one process (the
//! three parties share this machine's cores).
//!
//! Run: `cargo bench -p sharecall-benches --bench smc`
//!
//! - `smc`: every protocol at batch sizes 1, 1 000 and 100 000, except
//!   `prf_tag` and `lt_reveal`, which stop at 1 000 here (see `smc_online`).
//!   The pools are warm when a measurement starts, but a protocol that
//!   consumes preprocessed material wakes the producers, which then refill
//!   concurrently with the rest of the measurement.
//! - `smc_online`: `prf_tag` and `lt_reveal` with the preprocessing kept
//!   out of the measurement (see [`online`]).
//! - `smc_preprocessing`: how fast the background pools produce random
//!   squares and bit blocks (elements per second), from empty.
//!
//! The 100 000 cases of `smc_online` and `smc_preprocessing` consume 3.2 M
//! squares or 100 000 bit blocks per iteration and take about half an hour
//! together; they run only with `SHARECALL_BENCH_100K=1`:
//!
//! `SHARECALL_BENCH_100K=1 cargo bench -p sharecall-benches --bench smc --
//! 'smc_online|smc_preprocessing'`

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{
    criterion_group, criterion_main, Bencher, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use rand::SeedableRng;
use sharecall_benches::cluster::BenchCluster;
use sharecall_proto::sharing::share_batch;
use sharecall_proto::{BitShare, Fp, ShareVec};
use sharecall_provider::smc::{EngineConfig, PoolSizing, PoolStats, PrfKey, Reveal, TAG_BITS};
use tokio::runtime::Runtime;

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

/// A replicated XOR sharing from the low 128 bits of each component.
fn words(v: &ShareVec) -> Vec<BitShare> {
    v.iter()
        .map(|s| BitShare {
            first: s.first.low_u128(),
            second: s.second.low_u128(),
        })
        .collect()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn protocols(c: &mut Criterion) {
    let rt = runtime();
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
        // XOR shares made from the field shares' low 128 bits (consistent
        // between the two holders of each component, so a valid sharing).
        bench_op!("compare_bits", usize::MAX, |s, a, b, k| async move {
            let (x, y) = (words(&a), words(&b));
            s.compare_bits(&x, &y, &vec![Reveal::Both; x.len()]).await
        });
    }
    g.finish();
}

/// Whether the 100 000 cases of `smc_online` and `smc_preprocessing` run.
fn large_enabled() -> bool {
    static NOTE: std::sync::Once = std::sync::Once::new();
    let on = std::env::var_os("SHARECALL_BENCH_100K").is_some_and(|v| v == "1");
    if !on {
        NOTE.call_once(|| {
            eprintln!(
                "note: the 100 000 cases of smc_online and smc_preprocessing are skipped; \
                 set SHARECALL_BENCH_100K=1 to run them"
            );
        });
    }
    on
}

/// Criterion settings for a case whose iteration takes seconds to a minute
/// (plus as long again outside the measurement): one warm-up iteration,
/// then ten samples of one iteration each.
fn slow_case<M: criterion::measurement::Measurement>(g: &mut criterion::BenchmarkGroup<'_, M>) {
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
}

/// A protocol that consumes preprocessed material.
#[derive(Clone, Copy, Debug)]
enum Consumer {
    /// `prf_tag`: 32 random squares per value.
    PrfTag,
    /// `lt_reveal`: one 128-bit block of random bits per value.
    LtReveal,
}

/// A pool that is never filled (its kind is not used by the case).
const UNUSED: PoolSizing = PoolSizing {
    target: 0,
    chunk: 1,
};

type Input = ((ShareVec, ShareVec), PrfKey);

impl Consumer {
    fn name(self) -> &'static str {
        match self {
            Consumer::PrfTag => "prf_tag",
            Consumer::LtReveal => "lt_reveal",
        }
    }

    /// Items of this consumer's pool per input value.
    fn per_value(self) -> usize {
        match self {
            Consumer::PrfTag => TAG_BITS,
            Consumer::LtReveal => 1,
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Consumer::PrfTag => "squares",
            Consumer::LtReveal => "bit blocks",
        }
    }

    /// An engine config with `sizing` for this consumer's pool and nothing
    /// for the other.
    fn config(self, sizing: PoolSizing) -> EngineConfig {
        let (squares, bit_blocks) = match self {
            Consumer::PrfTag => (sizing, UNUSED),
            Consumer::LtReveal => (UNUSED, sizing),
        };
        EngineConfig {
            lanes: 1,
            // One round of a 100 000 batch (3.2 M elements for `prf_tag`)
            // takes a party well over the default 10 s on two shared cores.
            op_timeout: Duration::from_secs(600),
            squares,
            bit_blocks,
            ..EngineConfig::default()
        }
    }

    /// Party 0's stats of this consumer's pool (all parties consume alike).
    fn stats(self, cluster: &BenchCluster) -> PoolStats {
        let (squares, bits) = cluster.pool_stats()[0];
        match self {
            Consumer::PrfTag => squares,
            Consumer::LtReveal => bits,
        }
    }

    async fn run(self, cluster: &BenchCluster, ins: [Input; 3]) -> anyhow::Result<()> {
        match self {
            Consumer::PrfTag => {
                cluster
                    .run(ins, |mut s, ((a, _), k)| async move {
                        s.prf_tag(&k, &a).await.map(|_| ())
                    })
                    .await?
            }
            Consumer::LtReveal => {
                cluster
                    .run(ins, |mut s, ((a, b), _)| async move {
                        s.lt_reveal(&a, &b).await.map(|_| ())
                    })
                    .await?
            }
        };
        Ok(())
    }
}

/// A started cluster with its PRF key shares.
struct Fixture {
    cluster: BenchCluster,
    keys: [PrfKey; 3],
}

impl Fixture {
    /// Starts a cluster and waits until its pools are full.
    async fn start(config: &EngineConfig) -> anyhow::Result<(Fixture, Duration)> {
        let started = Instant::now();
        let cluster = BenchCluster::start(config, None).await?;
        cluster.warm().await?;
        let filled = started.elapsed();
        let keys = cluster
            .run([(), (), ()], |mut s, ()| async move { Ok(s.gen_prf_key()) })
            .await?;
        Ok((Fixture { cluster, keys }, filled))
    }

    fn inputs(&self, data: &[(ShareVec, ShareVec); 3]) -> [Input; 3] {
        [0, 1, 2].map(|p| (data[p].clone(), self.keys[p].clone()))
    }
}

/// How a case keeps preprocessing out of its measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refill {
    /// The pool is filled by one producer chunk one batch larger than the
    /// target, so after the measured batch it is still at its target and
    /// the producer stays idle; afterwards a one-value run drains it and
    /// the refill is waited for, unmeasured.
    Idle,
    /// The pool target is the batch (in small chunks); taking the batch
    /// wakes the producer, which refills concurrently with the measured
    /// run. Needed when one chunk of a batch would exceed the transport's
    /// frame limit (256 MiB per message), as 100 000 bit blocks do.
    Concurrent,
}

/// What happened around one measured iteration.
struct Around {
    /// Items the producer finished during the measurement.
    during: u64,
    /// Items made after the measurement (with [`Refill::Idle`], from the
    /// one-value drain that starts the refill on), and how long that took.
    after: u64,
    after_time: Duration,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// `op` on `n` values with a warm pool. With [`Refill::Idle`] (any batch
/// of `prf_tag`, `lt_reveal` below 65 000) no preprocessing runs during the
/// measurement; with [`Refill::Concurrent`] the producer refills the batch
/// concurrently, and how much it finished is printed.
fn online_case(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    op: Consumer,
    n: usize,
    refill: Refill,
) {
    let items = n * op.per_value();
    let sizing = match refill {
        Refill::Idle => PoolSizing {
            target: op.per_value(),
            chunk: items + op.per_value(),
        },
        Refill::Concurrent => PoolSizing {
            target: items,
            chunk: 256,
        },
    };
    let data = inputs(n, n as u64);
    let one = inputs(1, 1);
    let mut fixture: Option<Fixture> = None;
    let mut log: Vec<Around> = Vec::new();
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new(op.name(), n), |b: &mut Bencher| {
        let fx = fixture.get_or_insert_with(|| {
            rt.block_on(Fixture::start(&op.config(sizing)))
                .expect("cluster")
                .0
        });
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let ins = fx.inputs(&data);
                let before = op.stats(&fx.cluster);
                let start = Instant::now();
                rt.block_on(op.run(&fx.cluster, ins)).expect("protocol");
                total += start.elapsed();
                let mid = op.stats(&fx.cluster);
                let t = Instant::now();
                if refill == Refill::Idle {
                    // Still at target: the producer never woke up.
                    assert_eq!(
                        mid.available,
                        op.per_value(),
                        "pool refilled during the run"
                    );
                    // Drain it below target: the refill starts here.
                    rt.block_on(op.run(&fx.cluster, fx.inputs(&one)))
                        .expect("drain");
                }
                rt.block_on(fx.cluster.warm()).expect("warm");
                let after_time = t.elapsed();
                let end = op.stats(&fx.cluster);
                log.push(Around {
                    during: mid.produced - before.produced,
                    after: end.produced - mid.produced,
                    after_time,
                });
            }
            total
        })
    });
    // The fixture's last refill is done; free its pools.
    drop(fixture);
    if log.is_empty() {
        // Filtered out.
        return;
    }
    let mut during: Vec<u64> = log.iter().map(|a| a.during).collect();
    during.sort_unstable();
    let (lo, hi) = (
        during.first().copied().unwrap_or(0),
        during.last().copied().unwrap_or(0),
    );
    let after = median(log.iter().map(|a| a.after_time).collect());
    let mut made: Vec<u64> = log.iter().map(|a| a.after).collect();
    made.sort_unstable();
    let made = made.get(made.len() / 2).copied().unwrap_or(0);
    println!(
        "{}/{n} over {} iterations: the producer finished {lo}..={hi} {} during \
         the measurement; the rest of the refill, {made} {}, took {after:.2?} \
         (medians)",
        op.name(),
        log.len(),
        op.unit(),
        op.unit(),
    );
}

/// `prf_tag` and `lt_reveal` with the preprocessing kept out of the
/// measurement as far as the engine allows: `prf_tag` at 1 000 and 100 000
/// and `lt_reveal` at 1 000 and 30 000 with an idle producer; `lt_reveal`
/// at 100 000 with the refill running concurrently (one chunk of 100 000
/// blocks would exceed the frame limit, and a pool only fills while below
/// its target). The 30 000 case, whose single chunk fits the frame limit
/// and the memory of this machine (about 8 GB for the three parties),
/// shows how the per-value cost grows with the batch without a refill.
fn online(c: &mut Criterion) {
    let large = large_enabled();
    let rt = runtime();
    let mut g = c.benchmark_group("smc_online");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    online_case(&mut g, &rt, Consumer::PrfTag, 1_000, Refill::Idle);
    online_case(&mut g, &rt, Consumer::LtReveal, 1_000, Refill::Idle);
    if large {
        slow_case(&mut g);
        online_case(&mut g, &rt, Consumer::PrfTag, 100_000, Refill::Idle);
        online_case(&mut g, &rt, Consumer::LtReveal, 30_000, Refill::Idle);
        online_case(&mut g, &rt, Consumer::LtReveal, 100_000, Refill::Concurrent);
    }
    g.finish();
}

/// Production rate of each pool from empty: a fresh cluster per iteration,
/// timed from linking (a few ms) until the pool holds `n` items, in the
/// chunk sizes of the `smc` group (8 192 squares, 256 bit blocks).
fn preprocessing(c: &mut Criterion) {
    let large = large_enabled();
    let rt = runtime();
    let mut g = c.benchmark_group("smc_preprocessing");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    let mut cases = vec![(Consumer::PrfTag, 320_000), (Consumer::LtReveal, 1_000)];
    if large {
        cases.extend([(Consumer::PrfTag, 3_200_000), (Consumer::LtReveal, 100_000)]);
    }
    for (op, n) in cases {
        let name = match op {
            Consumer::PrfTag => "squares",
            Consumer::LtReveal => "bit_blocks",
        };
        let chunk = match op {
            Consumer::PrfTag => 8_192,
            Consumer::LtReveal => 256,
        };
        let config = op.config(PoolSizing { target: n, chunk });
        if n >= 100_000 * op.per_value() {
            slow_case(&mut g);
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new(name, n), |b: &mut Bencher| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (fx, filled) = rt.block_on(Fixture::start(&config)).expect("cluster");
                    assert!(op.stats(&fx.cluster).available >= n, "pool not filled");
                    total += filled;
                    drop(fx);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, protocols, online, preprocessing);
criterion_main!(benches);
