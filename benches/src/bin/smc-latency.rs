//! Latency harness: runs each SMC protocol through delaying relays and
//! shows that time ≈ rounds × one-way latency.
//!
//! Run: `cargo run --release -p sharecall-benches --bin smc-latency`
//! (options: `--delays-ms 0.1,1,5,25 --iterations 15 --batch 1`).

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rand::SeedableRng;
use sharecall_benches::cluster::BenchCluster;
use sharecall_proto::sharing::share_batch;
use sharecall_proto::{Fp, ShareVec};
use sharecall_provider::smc::{EngineConfig, PoolSizing, PrfKey, SmcResult};

/// mimalloc: the SMC, HTTP and TLS paths allocate many short-lived buffers
/// across threads, where glibc's arenas contend (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "SMC round latency through delaying relays")]
struct Args {
    /// One-way delays to inject, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "0.1,1,5,25")]
    delays_ms: Vec<f64>,
    /// Measured runs per protocol and delay (the median is reported).
    #[arg(long, default_value_t = 15)]
    iterations: usize,
    /// Values per operation.
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

type Input = ((ShareVec, ShareVec), PrfKey);

fn inputs(n: usize, keys: &[PrfKey; 3]) -> [Input; 3] {
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(n as u64);
    let a: Vec<Fp> = (0..n as u64).map(|i| Fp::from_u64(i * 31 + 5)).collect();
    let b: Vec<Fp> = (0..n as u64).map(|i| Fp::from_u64(i * 17 + 9)).collect();
    let sa = share_batch(&a, &mut rng);
    let sb = share_batch(&b, &mut rng);
    [0, 1, 2].map(|p| ((sa[p].clone(), sb[p].clone()), keys[p].clone()))
}

async fn measure<F, Fut>(
    cluster: &BenchCluster,
    keys: &[PrfKey; 3],
    batch: usize,
    iterations: usize,
    op: F,
) -> anyhow::Result<(u64, Duration)>
where
    F: Fn(sharecall_provider::smc::LaneSession, Input) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = SmcResult<u64>> + Send + 'static,
{
    let mut times = Vec::with_capacity(iterations);
    let mut rounds = 0;
    // One unmeasured warm-up run.
    for i in 0..=iterations {
        cluster.warm().await?;
        let start = Instant::now();
        let [r, _, _] = cluster.run(inputs(batch, keys), op.clone()).await?;
        let t = start.elapsed();
        rounds = r;
        if i > 0 {
            times.push(t);
        }
    }
    times.sort();
    Ok((rounds, times[times.len() / 2]))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = EngineConfig {
        lanes: 1,
        squares: PoolSizing {
            target: (args.batch * 32).max(1024),
            chunk: 1024,
        },
        bit_blocks: PoolSizing {
            target: args.batch.max(16),
            chunk: 16,
        },
        ..EngineConfig::default()
    };
    println!(
        "| protocol | rounds | one-way delay (ms) | median (ms) | median / (rounds × delay) |"
    );
    println!("|---|---|---|---|---|");
    for &d in &args.delays_ms {
        let delay = Duration::from_secs_f64(d / 1000.0);
        let cluster = BenchCluster::start(&config, Some(delay))
            .await
            .with_context(|| format!("cluster with {d} ms delay"))?;
        let [keys0, keys1, keys2] = cluster
            .run([(), (), ()], |mut s, ()| async move { Ok(s.gen_prf_key()) })
            .await?;
        let keys = [keys0, keys1, keys2];
        let n = args.batch;
        let it = args.iterations;
        let results = [
            (
                "open",
                measure(&cluster, &keys, n, it, |mut s, ((a, _), _)| async move {
                    s.open(&a).await.map(|_| s.ops())
                })
                .await?,
            ),
            (
                "mul_open",
                measure(&cluster, &keys, n, it, |mut s, ((a, b), _)| async move {
                    s.mul_open(&a, &b).await.map(|_| s.ops())
                })
                .await?,
            ),
            (
                "eq_reveal",
                measure(&cluster, &keys, n, it, |mut s, ((a, b), _)| async move {
                    s.eq_reveal(&a, &b).await.map(|_| s.ops())
                })
                .await?,
            ),
            (
                "prf_tag",
                measure(&cluster, &keys, n, it, |mut s, ((a, _), k)| async move {
                    s.prf_tag(&k, &a).await.map(|_| s.ops())
                })
                .await?,
            ),
            (
                "lt_reveal",
                measure(&cluster, &keys, n, it, |mut s, ((a, b), _)| async move {
                    s.lt_reveal(&a, &b).await.map(|_| s.ops())
                })
                .await?,
            ),
        ];
        for (name, (rounds, median)) in results {
            let ms = median.as_secs_f64() * 1000.0;
            let ratio = ms / (rounds as f64 * d);
            println!("| {name} | {rounds} | {d} | {ms:.2} | {ratio:.2} |");
        }
    }
    Ok(())
}
