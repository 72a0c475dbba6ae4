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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use rand::rngs::OsRng;
use rand::Rng;
use sharecall_client::{AccountKey, Client, ResultCode};
use sharecall_proto::encoding::{Endpoint, Pseudonym};
use sharecall_provider::devcluster::DevOptions;

/// mimalloc: the SMC, HTTP and TLS paths allocate many short-lived buffers
/// across threads, where glibc's arenas contend (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Load with bulk `import` requests of this many rows (0: one
    /// registration per entry). Big tables need it.
    #[arg(long, default_value_t = 0)]
    import_rows: usize,
    /// Sample the process during the throughput run (SIGPROF, no perf
    /// events needed) and print the N functions with the most samples,
    /// by own time, including callees, and by our innermost and outermost
    /// function on the stack.
    #[arg(long, default_value_t = 0)]
    profile_top: usize,
    /// Record every request in the share log (`[log] enabled`): `on` or
    /// `off`, to measure what logging costs side by side.
    #[arg(long, default_value = "on")]
    share_log: String,
}

/// Prints where the samples of `report` fall: the `top` functions by own
/// samples, by samples including their callees, and our functions
/// innermost and outermost on the sampled stacks.
fn print_profile(report: &pprof::Report, top: usize) {
    let mut own: HashMap<String, isize> = HashMap::new();
    let mut incl: HashMap<String, isize> = HashMap::new();
    let mut nearest: HashMap<String, isize> = HashMap::new();
    let mut outermost: HashMap<String, isize> = HashMap::new();
    let mut total = 0;
    for (frames, count) in &report.data {
        total += count;
        let names: Vec<String> = frames
            .frames
            .iter()
            .flat_map(|f| f.iter().map(|s| s.name()))
            .collect();
        if let Some(leaf) = names.first() {
            *own.entry(leaf.clone()).or_default() += count;
        }
        // Innermost: what our code spends, library callees included.
        *nearest.entry(first_ours(&names)).or_default() += count;
        // Outermost: which entry point (request handler, peer service,
        // client call, background task) the time belongs to.
        *outermost.entry(first_ours(names.iter().rev())).or_default() += count;
        let mut seen = std::collections::HashSet::new();
        // Callers worth naming: runtime and standard-library frames hold
        // everything and say nothing.
        let generic = [
            "tokio::", "std::", "core::", "futures", "alloc::", "<core::", "<alloc::",
        ];
        for n in names {
            if generic.iter().any(|g| n.starts_with(g))
                || n.contains("{{closure}}") && !n.contains("sharecall")
            {
                continue;
            }
            if seen.insert(n.clone()) {
                *incl.entry(n).or_default() += count;
            }
        }
    }
    for (title, map) in [
        ("own", own),
        ("including callees", incl),
        ("by innermost sharecall function", nearest),
        ("by outermost sharecall function", outermost),
    ] {
        let mut v: Vec<(String, isize)> = map.into_iter().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        println!("profile, {title} ({total} samples):");
        for (name, c) in v.into_iter().take(top) {
            let mut short = name.clone();
            short.truncate(140);
            println!("  {:5.1}%  {short}", 100.0 * c as f64 / total.max(1) as f64);
        }
    }
}

/// The first of our functions met walking a stack, or "(no sharecall
/// frame)" for runtime, HTTP and TLS work not under one of ours.
fn first_ours<'a>(walk: impl IntoIterator<Item = &'a String>) -> String {
    walk.into_iter()
        .find(|n| n.contains("sharecall"))
        .cloned()
        .unwrap_or_else(|| "(no sharecall frame)".into())
}

use sharecall_benches::load::pseudonym;

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
    options.log.enabled = match args.share_log.as_str() {
        "on" => true,
        "off" => false,
        other => anyhow::bail!("--share-log is on or off, not {other:?}"),
    };
    let main_key = AccountKey::generate(&mut OsRng);
    options.accounts.importers = vec![hex::encode(main_key.public_key())];
    let delay = Duration::from_secs_f64(args.latency_ms / 1000.0);
    let (cluster, relays) = sharecall_benches::relay::delayed_cluster(options, delay)
        .await
        .context("starting the providers")?;
    let urls = cluster.urls();
    let client = |key: AccountKey| -> anyhow::Result<Client> {
        Ok(Client::new(&urls, key)?.with_timeout(Duration::from_secs(120)))
    };
    let main_client = client(main_key)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = main_client.enroll(None).await {
        anyhow::ensure!(Instant::now() < deadline, "enroll: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Load.
    let t = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut loaders = Vec::new();
    if args.import_rows > 0 {
        let key = main_client.account().clone();
        sharecall_benches::load::import(
            || client(key.clone()),
            args.entries,
            args.import_rows,
            args.loaders,
        )
        .await?;
    }
    for _ in 0..args.loaders.max(1) {
        if args.import_rows > 0 {
            break;
        }
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
                let e = Endpoint::parse(&sharecall_benches::load::endpoint(k as usize))?;
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
        let profiler = if args.profile_top > 0 {
            Some(pprof::ProfilerGuard::new(499).context("starting the profiler")?)
        } else {
            None
        };
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
        let cpu_before = process_cpu_seconds();
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
        // CPU time per resolution is steadier than the rate on a shared
        // machine: other tenants take wall time, not our CPU seconds.
        if let (Some(a), Some(b)) = (cpu_before, process_cpu_seconds()) {
            let per = (b - a) / n.max(1) as f64;
            let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
            println!(
                "cpu (providers and clients): {:.0} us per resolution = {:.0}/s on {cores} fully used cores",
                per * 1e6,
                cores as f64 / per
            );
        }
        if let Some(p) = profiler {
            print_profile(&p.report().build().context("profile")?, args.profile_top);
        }
    }
    // How large the batches grew (the coordinator's metrics hold them).
    for c in &cluster.configs {
        let url = format!("http://{}/metrics", c.listen.admin);
        let Ok(text) = tokio::task::spawn_blocking(move || {
            ureq::get(&url)
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
        })
        .await
        else {
            continue;
        };
        let value = |name: &str| -> f64 {
            text.as_deref()
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        let (n, k) = (
            value("sharecall_read_batch_requests_sum"),
            value("sharecall_read_batch_requests_count"),
        );
        if k > 0.0 {
            println!(
                "read batches: {k} holding {n} resolutions ({:.1} per batch)",
                n / k
            );
        }
    }
    cluster.stop().await.context("stopping")?;
    drop(relays);
    Ok(())
}

/// User plus system CPU seconds of this process so far (Linux
/// `/proc/self/stat`; `None` elsewhere).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line, in clock ticks (100 per second on
    // Linux for every architecture we run on).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
