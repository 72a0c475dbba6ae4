//! Resolution latency and throughput of the lookup tables: three full
//! providers in this process (real TLS, raft, redb, REST), every
//! provider-to-provider link and every client-to-provider connection
//! through a delaying relay, and the real client library.
//!
//! Run (figures in docs/BENCHMARKS.md):
//! `cargo run --release -p sharecall-benches --bin table-latency -- --table hash --entries 10000 --latency-ms 1`
//!
//! Loads `--entries` registrations (concurrent clients, so they run in
//! large batches), then resolves `--resolves` random registered pseudonyms
//! one after another (latency p50/p99), then as many as possible from
//! `--concurrency` clients for `--seconds` (throughput).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rand::rngs::OsRng;
use rand::Rng;
use sharecall_benches::relay::Relay;
use sharecall_client::{AccountKey, Client, ResultCode};
use sharecall_proto::encoding::{Endpoint, Pseudonym};
use sharecall_provider::devcluster::{DevCluster, DevOptions};

/// Options.
#[derive(Parser)]
struct Args {
    /// Table variant: hash, list, tree or tree/<fanout>.
    #[arg(long, default_value = "hash")]
    table: String,
    /// Entries to load before measuring.
    #[arg(long, default_value_t = 10_000)]
    entries: usize,
    /// One-way latency added to every connection, in milliseconds.
    #[arg(long, default_value_t = 1.0)]
    latency_ms: f64,
    /// Sequential resolutions for the latency figures.
    #[arg(long, default_value_t = 200)]
    resolves: usize,
    /// Concurrent clients for the throughput run (0: skip it).
    #[arg(long, default_value_t = 0)]
    concurrency: usize,
    /// Length of the throughput run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients while loading.
    #[arg(long, default_value_t = 64)]
    loaders: usize,
}

fn pseudonym(k: usize) -> String {
    format!("+49 30 {k:08}")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // A timeline of one request's stages, for finding where time goes:
    // `RUST_LOG=sharecall_provider=debug`.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let dir = tempfile::tempdir()?;
    let mut options = DevOptions::new(dir.path());
    options.tables.variant = args.table.clone();
    options.tables.max_batch = 1024;
    options.accounts.rate_per_second = 1_000_000;
    options.accounts.burst = 1_000_000;
    let delay = Duration::from_secs_f64(args.latency_ms / 1000.0);
    let relays: Arc<Mutex<Vec<Relay>>> = Arc::default();
    let keep = relays.clone();
    let cluster = DevCluster::start(options, move |_, _, addr: SocketAddr| {
        if delay.is_zero() {
            return Ok(addr);
        }
        let r = Relay::spawn(addr, delay)?;
        let a = r.addr();
        keep.lock()
            .map_err(|_| std::io::Error::other("relay list"))?
            .push(r);
        Ok(a)
    })
    .await
    .context("starting the providers")?;
    let urls = cluster.urls();
    let client = |key: AccountKey| -> anyhow::Result<Client> {
        Ok(Client::new(&urls, key)?.with_timeout(Duration::from_secs(120)))
    };
    let main_client = client(AccountKey::generate(&mut OsRng))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = main_client.enroll(None).await {
        anyhow::ensure!(Instant::now() < deadline, "enroll: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Load.
    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut loaders = Vec::new();
    for _ in 0..args.loaders.max(1) {
        let c = client(main_client.account().clone())?;
        let next = next.clone();
        let entries = args.entries as u64;
        loaders.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= entries {
                    return Ok::<_, anyhow::Error>(());
                }
                let p = Pseudonym::parse(&pseudonym(k as usize))?;
                let e = Endpoint::parse(&format!("sip:u{k}@192.0.2.{}:5060", k % 250))?;
                let o = c
                    .register(&p, &e, Duration::from_secs(86_400), None)
                    .await?;
                anyhow::ensure!(o.code == ResultCode::Ok, "register {k}: {:?}", o.code);
            }
        }));
    }
    for l in loaders {
        l.await??;
    }
    let load_s = t.elapsed().as_secs_f64();
    println!(
        "table {} entries {} latency {} ms: loaded in {:.1} s ({:.0} registrations/s)",
        args.table,
        args.entries,
        args.latency_ms,
        load_s,
        args.entries as f64 / load_s
    );

    // Sequential resolutions.
    let mut ms = Vec::with_capacity(args.resolves);
    for _ in 0..args.resolves {
        let k = OsRng.gen_range(0..args.entries.max(1));
        let p = Pseudonym::parse(&pseudonym(k))?;
        let t = Instant::now();
        let r = main_client.resolve(&p).await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(r.code == ResultCode::Ok, "resolve {k}: {:?}", r.code);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "resolve latency over {} sequential requests: p50 {:.1} ms, p99 {:.1} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99)
    );

    // Throughput.
    if args.concurrency > 0 {
        let done = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(args.seconds);
        let mut workers = Vec::new();
        for _ in 0..args.concurrency {
            let c = client(main_client.account().clone())?;
            let done = done.clone();
            let entries = args.entries.max(1);
            workers.push(tokio::spawn(async move {
                while Instant::now() < until {
                    let k = OsRng.gen_range(0..entries);
                    let p = Pseudonym::parse(&pseudonym(k))?;
                    let r = c.resolve(&p).await?;
                    anyhow::ensure!(r.code == ResultCode::Ok, "resolve {k}: {:?}", r.code);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        let t = Instant::now();
        for w in workers {
            w.await??;
        }
        let n = done.load(Ordering::Relaxed);
        println!(
            "throughput with {} concurrent clients: {n} resolutions in {:.1} s = {:.0}/s",
            args.concurrency,
            t.elapsed().as_secs_f64(),
            n as f64 / t.elapsed().as_secs_f64()
        );
    }
    cluster.stop().await.context("stopping")?;
    drop(relays);
    Ok(())
}
