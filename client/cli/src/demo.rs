//! `sharecall demo`: the whole product in one command.
//!
//! Starts three real providers in this process (each with its own TLS
//! identity, pinning the other two; raft ordering; redb storage in a
//! temporary directory; REST on 127.0.0.1), enrolls an account, and then
//! registers, resolves, updates and deletes pseudonyms through the client
//! library exactly as a remote client would. At the end it stops the
//! providers and prints what each one stored: shares only.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::OsRng;
use sharecall_client::{AccountKey, Client, ResultCode};
use sharecall_proto::encoding::{Endpoint, Pseudonym};
use sharecall_provider::devcluster::{DevCluster, DevOptions};
use sharecall_provider::tables::{Index, Variant};

/// Options of `sharecall demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// A registration to store, as PSEUDONYM=ENDPOINT (repeatable; default:
    /// three sample registrations).
    #[arg(long = "register", value_name = "PSEUDONYM=ENDPOINT")]
    register: Vec<String>,
    /// A pseudonym to resolve (repeatable; default: a registered number
    /// written another way, and an unregistered one).
    #[arg(long = "resolve", value_name = "PSEUDONYM")]
    resolve: Vec<String>,
    /// Table variant: hash, list or tree[/fanout].
    #[arg(long, default_value = "hash")]
    table: String,
    /// Skip the SIP part (two front ends, two phones, one call).
    #[arg(long)]
    no_call: bool,
}

const SAMPLE_REGISTRATIONS: &[&str] = &[
    "+49 30 1234567=sip:alice@192.0.2.10:5060",
    "bob@example.org=sip:bob@198.51.100.7:5062;transport=tcp",
    "0044 20 7946 0000=sip:carol@[2001:db8::1]:5060",
];
const SAMPLE_QUERIES: &[&str] = &["0049 (30) 123-4567", "sip:Bob@Example.org", "+1 555 0100"];

fn parse_registration(arg: &str) -> anyhow::Result<(Pseudonym, Endpoint)> {
    let Some((p, e)) = arg.split_once('=') else {
        bail!("--register {arg:?}: expected PSEUDONYM=ENDPOINT");
    };
    let pseudonym = Pseudonym::parse(p).with_context(|| format!("--register: pseudonym {p:?}"))?;
    let endpoint = Endpoint::parse(e).with_context(|| format!("--register: endpoint {e:?}"))?;
    Ok((pseudonym, endpoint))
}

fn short(bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    format!("{}…", &h[..16.min(h.len())])
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let variant: Variant = args
        .table
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--table: {e}"))?;
    let registrations: Vec<(Pseudonym, Endpoint)> = if args.register.is_empty() {
        SAMPLE_REGISTRATIONS
            .iter()
            .map(|r| parse_registration(r))
            .collect::<Result<_, _>>()?
    } else {
        args.register
            .iter()
            .map(|r| parse_registration(r))
            .collect::<Result<_, _>>()?
    };
    let queries: Vec<Pseudonym> = if args.resolve.is_empty() {
        SAMPLE_QUERIES
            .iter()
            .map(|q| Pseudonym::parse(q))
            .collect::<Result<_, _>>()?
    } else {
        args.resolve
            .iter()
            .map(|q| Pseudonym::parse(q).with_context(|| format!("--resolve {q:?}")))
            .collect::<Result<_, _>>()?
    };

    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut options = DevOptions::new(dir.path());
    options.tables.variant = variant.name();
    let started = Instant::now();
    let cluster = DevCluster::start(options, |_, _, addr| Ok(addr))
        .await
        .context("starting the providers")?;
    println!(
        "== three providers on 127.0.0.1 (table: {})",
        variant.name()
    );
    for (i, c) in cluster.configs.iter().enumerate() {
        println!(
            "   P{i}: REST {}  control {}  smc {}",
            cluster.api[i], c.listen.control, c.listen.smc
        );
    }
    let mut result = session(&cluster, &registrations, &queries).await;
    let urls = cluster.urls();
    if result.is_ok() && !args.no_call {
        result = crate::demo_call::run(&urls, dir.path()).await;
    }
    cluster.stop().await.context("stopping the providers")?;
    result?;

    println!("\n== what each provider stored (shares only; the data directories are deleted now)");
    for (i, url) in urls.iter().enumerate() {
        let db = redb::Database::open(dir.path().join(format!("p{i}/raft.redb")))
            .with_context(|| format!("opening P{i}'s database"))?;
        let index = Index::load(&db).with_context(|| format!("reading P{i}'s table"))?;
        println!("   P{i} ({url}): {} entries", index.len());
        for (slot, m) in &index.meta {
            let data =
                Index::data(&db, *slot)?.unwrap_or_else(|| sharecall_provider::tables::Data {
                    endpoint: Vec::new(),
                    extra: Vec::new(),
                });
            let endpoint = data
                .endpoint
                .first()
                .map(|s| short(&s.first.to_bytes()))
                .unwrap_or_default();
            println!(
                "      slot {slot:>10}  tag {:08x}  key share {}  endpoint share {}  owner {}",
                m.tag,
                short(&m.key.first.to_bytes()),
                endpoint,
                short(&m.owner)
            );
        }
    }
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn session(
    cluster: &DevCluster,
    registrations: &[(Pseudonym, Endpoint)],
    queries: &[Pseudonym],
) -> anyhow::Result<()> {
    let key = AccountKey::generate(&mut OsRng);
    let client = Client::new(&cluster.urls(), key)?.with_timeout(Duration::from_secs(20));
    // The providers elect a raft leader first; enrollment waits for them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.enroll(None).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("enroll: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("enrolling the demo account"),
        }
    }
    println!(
        "\n== account {} enrolled at all three providers",
        short(&client.account().public_key())
    );

    println!("\n== register (each provider gets only its own share of key and endpoint)");
    for (p, e) in registrations {
        let t = Instant::now();
        let o = client
            .register(p, e, Duration::from_secs(3600), None)
            .await?;
        println!(
            "   {:<22} -> {:<45} {} ({:.0} ms)",
            p.as_str(),
            e.as_str(),
            o.code.as_str(),
            t.elapsed().as_secs_f64() * 1e3
        );
    }

    println!("\n== resolve (SMC over the shares; the client reconstructs and cross-checks)");
    for q in queries {
        resolve(&client, q).await?;
    }

    if let Some((p, _)) = registrations.first() {
        let moved = Endpoint::parse("sip:alice@203.0.113.44:5070")?;
        println!("\n== update {} -> {}", p.as_str(), moved.as_str());
        let o = client
            .update(p, &moved, Duration::from_secs(600), None)
            .await?;
        println!("   update: {}", o.code.as_str());
        resolve(&client, p).await?;
        println!("\n== delete {}", p.as_str());
        let o = client.delete(p).await?;
        println!("   delete: {}", o.code.as_str());
        resolve(&client, p).await?;
    }
    Ok(())
}

async fn resolve(client: &Client, q: &Pseudonym) -> anyhow::Result<()> {
    let t = Instant::now();
    let r = client.resolve(q).await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    match (r.code, &r.endpoint) {
        (ResultCode::Ok, Some(e)) => println!(
            "   resolved {} -> {}   ({} providers agree, {ms:.0} ms)",
            q.as_str(),
            e.as_str(),
            if r.degraded.is_some() { 2 } else { 3 }
        ),
        (ResultCode::NotFound, _) => {
            println!("   not registered ({})   ({ms:.0} ms)", q.as_str())
        }
        (code, _) => println!("   {} => {}   ({ms:.0} ms)", q.as_str(), code.as_str()),
    }
    Ok(())
}
