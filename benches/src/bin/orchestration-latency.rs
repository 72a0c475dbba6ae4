//! Latency of the orchestration core: three providers (the real server,
//! real TLS and gRPC on loopback, in this one process) and jobs submitted
//! one after another through provider 0's admin API.
//!
//! Run: `cargo run --release -p sharecall-benches --bin orchestration-latency`
//!
//! Prints, per task kind, the median and p99 of the gateway-measured job
//! time (Prepare + Link if any + Session; the HTTP hop is excluded) and of
//! Prepare + Session alone.

use std::net::TcpListener;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use sharecall_provider::config::ProviderConfig;
use sharecall_provider::identity::Identity;

/// mimalloc: the SMC, HTTP and TLS paths allocate many short-lived buffers
/// across threads, where glibc's arenas contend (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Options.
#[derive(Parser)]
struct Args {
    /// Jobs per kind.
    #[arg(long, default_value_t = 500)]
    jobs: usize,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let ids: Vec<Identity> = (0..3)
        .map(|i| Identity::generate(&format!("bench-{i}")))
        .collect::<Result<_, _>>()?;
    // Keep the probes open until all nine ports are chosen (no repeats).
    let probes: Vec<TcpListener> = (0..9)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let port = |k: usize| probes[k].local_addr();
    let addrs: Vec<[std::net::SocketAddr; 3]> = (0..3)
        .map(|i| Ok([port(3 * i)?, port(3 * i + 1)?, port(3 * i + 2)?]))
        .collect::<anyhow::Result<_>>()?;
    drop(probes);
    let mut configs = Vec::new();
    for i in 0..3 {
        let data = dir.path().join(format!("p{i}"));
        ids[i].save(&data, false)?;
        let mut toml = format!(
            "id = {i}\ndata_dir = {:?}\n[listen]\ncontrol = \"{}\"\nsmc = \"{}\"\nadmin = \"{}\"\n",
            data.to_str().context("utf-8 path")?,
            addrs[i][0],
            addrs[i][1],
            addrs[i][2]
        );
        for j in (0..3).filter(|j| *j != i) {
            toml += &format!(
                "[[peers]]\nid = {j}\ncontrol = \"{}\"\nsmc = \"{}\"\nfingerprint = \"{}\"\n",
                addrs[j][0],
                addrs[j][1],
                ids[j].fingerprint()
            );
        }
        toml += &format!(
            "[secure_sum]\nvalue = {}\n[log]\nfilter = \"warn\"\n",
            i + 1
        );
        configs.push(ProviderConfig::from_toml_str(&toml)?);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    for config in configs {
        let mut stopped = stopped.clone();
        rt.spawn(async move {
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            if let Err(e) = sharecall_provider::server::run(config, shutdown).await {
                eprintln!("provider failed: {e}");
            }
        });
    }
    let url = format!("http://{}/v1/admin/jobs", addrs[0][2]);
    let job = |kind: &str| -> anyhow::Result<Value> {
        for _ in 0..100 {
            match ureq::post(&url)
                .timeout(Duration::from_secs(30))
                .send_json(json!({"kind": kind}))
            {
                Ok(r) => return Ok(r.into_json()?),
                Err(ureq::Error::Transport(_)) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => bail!("job failed: {e}"),
            }
        }
        bail!("provider 0 did not come up")
    };
    // Warm up: the first job links the SMC mesh.
    for _ in 0..20 {
        job("secure-sum")?;
    }
    println!("| kind | jobs | job median ms | job p99 ms | prepare+session median ms |");
    println!("|---|---|---|---|---|");
    for kind in ["secure-sum", "noop"] {
        let mut total = Vec::new();
        let mut core = Vec::new();
        for _ in 0..args.jobs {
            let r = job(kind)?;
            total.push(r["total_us"].as_u64().unwrap_or(0));
            let phases = r["phases"].as_array().cloned().unwrap_or_default();
            core.push(
                phases
                    .iter()
                    .filter(|p| {
                        matches!(
                            p["phase"].as_str(),
                            Some("prepare" | "session" | "prepare+session")
                        )
                    })
                    .map(|p| p["us"].as_u64().unwrap_or(0))
                    .sum::<u64>(),
            );
        }
        total.sort_unstable();
        core.sort_unstable();
        println!(
            "| {kind} | {} | {:.3} | {:.3} | {:.3} |",
            args.jobs,
            percentile(&total, 0.5),
            percentile(&total, 0.99),
            percentile(&core, 0.5)
        );
    }
    let _ = stop.send(true);
    Ok(())
}
