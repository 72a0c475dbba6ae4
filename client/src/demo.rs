//! `sharecall demo`: the whole idea in one command.
//!
//! Three real SMC engines (separate TLS identities, pinned fingerprints,
//! loopback sockets) run in this process. The client shares registrations
//! so that each provider stores only its part, and resolves pseudonyms by
//! SMC: a 1-round batched `eq_reveal` against every stored key (a list
//! table), plus the keyed PRF tag that a hash table would use as bucket.
//! The client reconstructs the endpoint from all three providers' shares
//! and checks them against each other.
//!
//! The per-provider entry lists here are the demo's own; durable tables,
//! raft ordering and REST come with the provider process.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use rand::rngs::OsRng;
use sharecall_client::registration::{reconstruct_endpoint, share_entry, share_query, EntryPart};
use sharecall_proto::encoding::{Endpoint, Pseudonym};
use sharecall_proto::{PartyId, Share, ShareVec};
use sharecall_provider::smc::local::LocalCluster;
use sharecall_provider::smc::{EngineConfig, LaneSession, PrfKey, SmcResult};

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

/// Runs `step` as session `id` at all three providers at once and returns
/// their results in party order.
async fn on_all<T, F, Fut>(cluster: &LocalCluster, id: u64, step: F) -> anyhow::Result<[T; 3]>
where
    T: Send + 'static,
    F: Fn(usize, LaneSession) -> Fut,
    Fut: Future<Output = SmcResult<T>> + Send + 'static,
{
    let mut handles = Vec::with_capacity(3);
    for (p, engine) in cluster.engines.iter().enumerate() {
        let session = engine.session(0, id).await?;
        handles.push(tokio::spawn(step(p, session)));
    }
    let mut out = Vec::with_capacity(3);
    for (p, h) in handles.into_iter().enumerate() {
        let r = h
            .await
            .with_context(|| format!("provider P{p} task failed"))?;
        out.push(r.with_context(|| format!("provider P{p}"))?);
    }
    out.try_into()
        .map_err(|_| anyhow::anyhow!("expected three results"))
}

fn short(s: Share) -> String {
    let a = hex::encode(s.first.to_bytes());
    let b = hex::encode(s.second.to_bytes());
    format!("({}…, {}…)", &a[..8], &b[..8])
}

/// Runs the demo, printing to stdout.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let registrations: Vec<&str> = if args.register.is_empty() {
        SAMPLE_REGISTRATIONS.to_vec()
    } else {
        args.register.iter().map(String::as_str).collect()
    };
    let registrations = registrations
        .into_iter()
        .map(parse_registration)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let queries: Vec<&str> = if args.resolve.is_empty() {
        SAMPLE_QUERIES.to_vec()
    } else {
        args.resolve.iter().map(String::as_str).collect()
    };
    let queries = queries
        .into_iter()
        .map(|q| {
            Pseudonym::parse(q)
                .with_context(|| format!("--resolve {q:?}"))
                .map(|p| (q, p))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    println!("sharecall demo: three providers on 127.0.0.1, mutually authenticated TLS");
    let started = Instant::now();
    let config = EngineConfig {
        lanes: 1,
        ..EngineConfig::default()
    };
    let cluster = LocalCluster::start(&config)
        .await
        .context("linking the three providers")?;
    for engine in &cluster.engines {
        engine.warm().await.context("preprocessing")?;
    }
    for (p, addr) in cluster.addrs.iter().enumerate() {
        println!("  P{p} listening on {addr}");
    }
    println!(
        "  linked, PRG seeds agreed, preprocessing warm in {:.0?}",
        started.elapsed()
    );

    // Registration: each provider stores only its part.
    println!();
    let mut stores: [Vec<EntryPart>; 3] = Default::default();
    for (pseudonym, endpoint) in &registrations {
        let parts = share_entry(pseudonym, endpoint, &mut OsRng);
        println!("register {pseudonym} -> {endpoint}");
        println!(
            "  P0 stores key share {}  (P1, P2 hold other random-looking parts)",
            short(parts[0].key)
        );
        for (store, part) in stores.iter_mut().zip(parts) {
            store.push(part);
        }
    }
    let stores = Arc::new(stores);
    let keys: Arc<[ShareVec; 3]> = Arc::new(std::array::from_fn(|p| {
        stores[p].iter().map(|e| e.key).collect()
    }));

    // A jointly generated PRF key (no party ever sees it) and the bucket of
    // every stored key, as a hash table would file them.
    let mut session_id = 1;
    let t = Instant::now();
    let keyed = {
        let keys = keys.clone();
        on_all(&cluster, session_id, move |p, mut s| {
            let keys = keys.clone();
            async move {
                let prf = s.gen_prf_key();
                let tags = s.prf_tag(&prf, &keys[p]).await?;
                Ok((prf, tags))
            }
        })
        .await?
    };
    let tags = keyed[0].1.clone();
    if keyed.iter().any(|(_, t)| *t != tags) {
        bail!("providers disagree about the PRF tags");
    }
    println!();
    println!(
        "PRF buckets of the stored keys (Legendre PRF, secret-shared key, 1 round, {:.1?}): {}",
        t.elapsed(),
        tags.iter()
            .map(|t| format!("{t:08x}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let prf_keys: Arc<[PrfKey; 3]> = Arc::new(keyed.map(|(k, _)| k));

    for (written, pseudonym) in &queries {
        session_id += 1;
        println!();
        println!("resolve {written:?} (normalised {pseudonym})");
        let query = share_query(pseudonym, &mut OsRng);
        println!("  P0 receives query share {}", short(query[0]));
        let t = Instant::now();
        let (keys, prf_keys) = (keys.clone(), prf_keys.clone());
        let answers = on_all(&cluster, session_id, move |p, mut s| {
            let (keys, prf_keys) = (keys.clone(), prf_keys.clone());
            async move {
                let q: ShareVec = std::iter::once(query[p]).collect();
                let tag = s.prf_tag(&prf_keys[p], &q).await?;
                let repeated: ShareVec = std::iter::repeat_n(query[p], keys[p].len()).collect();
                let matches = s.eq_reveal(&repeated, &keys[p]).await?;
                // Nobody acts on the openings before they are known to be
                // the same at every provider.
                s.verify().await?;
                Ok((tag, matches))
            }
        })
        .await?;
        let elapsed = t.elapsed();
        let (tag, matches) = &answers[0];
        if answers.iter().any(|a| &a.0 != tag || &a.1 != matches) {
            bail!("providers disagree about the opened results");
        }
        let bucket = tag.first().copied().unwrap_or_default();
        println!(
            "  PRF bucket {bucket:08x}; eq_reveal against {} entries in one round ({elapsed:.1?} incl. tag and verify)",
            matches.len()
        );
        let hits: Vec<usize> = matches
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.then_some(i))
            .collect();
        if hits.is_empty() {
            println!("  not registered ({pseudonym})");
            continue;
        }
        for i in hits {
            // Each provider hands the client its shares of the matching
            // entry; only the client can put them together.
            let parts: [Vec<Share>; 3] = std::array::from_fn(|p| stores[p][i].endpoint.clone());
            let endpoint = reconstruct_endpoint(&parts)
                .with_context(|| format!("reconstructing entry {i}"))?;
            println!(
                "  resolved {pseudonym} -> {endpoint}  (entry {i}, bucket {}, shares of {} consistent)",
                if tags.get(i) == Some(&bucket) { "matches" } else { "differs" },
                PartyId::ALL.map(|p| p.to_string()).join(", ")
            );
        }
    }
    Ok(())
}
