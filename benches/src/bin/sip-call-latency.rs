//! Call setup latency through the SIP front end in sharecall mode, with
//! `--latency-ms` one-way latency between all parties: three full
//! providers in this process with every provider link and every
//! front-end-to-provider connection through a delaying relay, a table of
//! `--entries` imported pseudonyms, one front end (in this process, as
//! `sharecall sip` runs it), and two user agents whose every datagram is
//! delayed the same.
//!
//! Measures INVITE → 200 (the authorised INVITE: the 407 round trip before
//! it is not routing) for `--calls` sequential calls from alice to bob,
//! both registered through the front end; each call resolves bob's
//! pseudonym through the providers (no cache).
//!
//! Run (figures in docs/BENCHMARKS.md):
//! `cargo run --release -p sharecall-benches --bin sip-call-latency -- --entries 100000 --latency-ms 1`

use std::net::SocketAddr;
use std::path::Path;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use rand::rngs::OsRng;

use sharecall_client::{AccountKey, Client};
use sharecall_frontend::aor::Aor;
use sharecall_frontend::config::Config;
use sharecall_frontend::server::Server;
use sharecall_frontend::ua::UserAgent;
use sharecall_provider::devcluster::DevOptions;

/// mimalloc, as in the other harnesses (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Options.
#[derive(Parser)]
struct Args {
    /// Pseudonyms in the (hash) table besides the two callers.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// One-way latency between all parties, in milliseconds.
    #[arg(long, default_value_t = 1.0)]
    latency_ms: f64,
    /// Sequential calls to time.
    #[arg(long, default_value_t = 200)]
    calls: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn enrolled(urls: &[String], path: &Path) -> anyhow::Result<AccountKey> {
    let key = AccountKey::generate(&mut OsRng);
    key.save(path, false)?;
    let c = Client::new(urls, key.clone())?.with_timeout(Duration::from_secs(60));
    c.enroll(None).await.context("enroll")?;
    Ok(key)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let dir = tempfile::tempdir()?;
    let mut options = DevOptions::new(dir.path());
    options.tables.variant = "hash".into();
    options.tables.max_batch = 1024;
    options.accounts.rate_per_second = 1_000_000;
    options.accounts.burst = 1_000_000;
    let main_key = AccountKey::generate(&mut OsRng);
    options.accounts.importers = vec![hex::encode(main_key.public_key())];
    let delay = Duration::from_secs_f64(args.latency_ms / 1000.0);
    let (cluster, relays) = sharecall_benches::relay::delayed_cluster(options, delay)
        .await
        .context("starting the providers")?;
    let urls = cluster.urls();
    let main = Client::new(&urls, main_key.clone())?.with_timeout(Duration::from_secs(120));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while let Err(e) = main.enroll(None).await {
        anyhow::ensure!(std::time::Instant::now() < deadline, "enroll: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t = std::time::Instant::now();
    sharecall_benches::load::import(
        || Ok(Client::new(&urls, main_key.clone())?.with_timeout(Duration::from_secs(120))),
        args.entries,
        1024,
        4,
    )
    .await?;
    eprintln!(
        "imported {} entries in {:.1} s",
        args.entries,
        t.elapsed().as_secs_f64()
    );

    // The front end, configured as `sharecall sip` would be.
    let fe = dir.path().join("fe");
    std::fs::create_dir_all(&fe)?;
    enrolled(&urls, &fe.join("resolver.key")).await?;
    enrolled(&urls, &fe.join("alice.key")).await?;
    enrolled(&urls, &fe.join("bob.key")).await?;
    std::fs::write(
        fe.join("users.toml"),
        "[[user]]\nname = \"alice\"\npassword = \"a-pw\"\naccount_key = \"alice.key\"\n\
         [[user]]\nname = \"bob\"\npassword = \"b-pw\"\naccount_key = \"bob.key\"\n",
    )?;
    let providers: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    let text = format!(
        "[sip]\ndomains = [\"a.example\"]\nusers = \"users.toml\"\n\
         [listen]\nudp = \"127.0.0.1:0\"\ntcp = \"off\"\n\
         [sharecall]\nproviders = [{}]\naccount_key = \"resolver.key\"\ntimeout = \"30s\"\n",
        providers.join(", ")
    );
    let server = Server::bind(Config::parse(&text, &fe)?).await?;
    let proxy = server.local_addrs().udp.context("no UDP")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run_configured(async move {
        let _ = stopped.await;
    }));

    let any: SocketAddr = "127.0.0.1:0".parse()?;
    let mut bob = UserAgent::bind(Aor::new("bob", "a.example"), "b-pw", proxy, any)
        .await?
        .with_delay(delay);
    let mut alice = UserAgent::bind(Aor::new("alice", "a.example"), "a-pw", proxy, any)
        .await?
        .with_delay(delay);
    bob.register(3600).await.context("bob registers")?;
    alice.register(3600).await.context("alice registers")?;
    let calls = args.calls;
    let callee = tokio::spawn(async move {
        for _ in 0..calls {
            bob.answer(Duration::from_secs(60)).await?;
        }
        // Kept until alice is done: dropping it drops its delayed sends
        // (the last 200 to BYE).
        Ok::<_, anyhow::Error>(bob)
    });
    let mut ms = Vec::with_capacity(calls);
    let t = std::time::Instant::now();
    for _ in 0..calls {
        let r = alice.call("sip:bob@a.example").await.context("call")?;
        ms.push(r.routed.as_secs_f64() * 1e3);
    }
    let wall = t.elapsed().as_secs_f64();
    let bob = callee.await.context("callee")??;
    drop(bob);
    ms.sort_by(f64::total_cmp);
    println!(
        "sip call setup, {} entries, {} ms one way, {} sequential calls: INVITE->200 p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms ({:.0} calls/s incl. 407, ACK, BYE)",
        args.entries,
        args.latency_ms,
        calls,
        percentile(&ms, 0.5),
        percentile(&ms, 0.9),
        percentile(&ms, 0.99),
        calls as f64 / wall
    );
    let _ = stop.send(());
    task.await.context("front end task")??;
    cluster.stop().await?;
    drop(relays);
    Ok(())
}
