//! Filling a table before measuring: bulk `import` requests from a few
//! concurrent clients, in key order (as an operator's bulk load would be),
//! so the providers batch them back to back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sharecall_client::{Client, ImportRow};
use sharecall_proto::encoding::{Endpoint, Pseudonym};

/// The benchmark's `k`-th pseudonym (a German number).
pub fn pseudonym(k: usize) -> String {
    format!("+49 30 {k:08}")
}

/// The benchmark's `k`-th endpoint.
pub fn endpoint(k: usize) -> String {
    format!("sip:u{k}@192.0.2.{}:5060", k % 250)
}

/// Imports entries `0..entries` (owned by the importing account) in
/// chunks of `chunk` rows from `loaders` clients made by `client`.
pub async fn import(
    client: impl Fn() -> anyhow::Result<Client>,
    entries: usize,
    chunk: usize,
    loaders: usize,
) -> anyhow::Result<()> {
    let chunk = chunk.clamp(1, 2048) as u64;
    let mut by_key: Vec<(u128, usize)> = (0..entries)
        .map(|k| Ok((Pseudonym::parse(&pseudonym(k))?.key().as_u128(), k)))
        .collect::<anyhow::Result<_>>()?;
    by_key.sort_unstable();
    let by_key: Arc<Vec<usize>> = Arc::new(by_key.into_iter().map(|(_, k)| k).collect());
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..loaders.clamp(1, 4) {
        let c = client()?;
        let owner = c.account().public_key();
        let next = next.clone();
        let by_key = by_key.clone();
        let entries = entries as u64;
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(chunk, Ordering::Relaxed);
                if first >= entries {
                    return Ok::<_, anyhow::Error>(());
                }
                let rows = (first..(first + chunk).min(entries))
                    .map(|i| {
                        let k = by_key[i as usize];
                        Ok(ImportRow {
                            pseudonym: Pseudonym::parse(&pseudonym(k))?,
                            endpoint: Endpoint::parse(&endpoint(k))?,
                            ttl: Duration::from_secs(86_400),
                            owner,
                            extra: None,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let o = c.import(&rows).await?;
                anyhow::ensure!(o.imported == rows.len() as u64, "import at {first}: {o:?}");
                if first % (chunk * 50) == 0 {
                    eprintln!("loaded {first} rows");
                }
            }
        }));
    }
    for t in tasks {
        t.await.context("loader task")??;
    }
    Ok(())
}
