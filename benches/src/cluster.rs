//! A local three-engine cluster for benchmarks, optionally with a delaying
//! relay in front of every provider.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use sharecall_provider::smc::local::LocalCluster;
use sharecall_provider::smc::{EngineConfig, LaneSession, PoolStats, SmcResult};

use crate::relay::Relay;

/// Three engines plus the relays between them.
pub struct BenchCluster {
    cluster: Arc<LocalCluster>,
    next_id: AtomicU64,
    _relays: Vec<Relay>,
}

impl BenchCluster {
    /// Starts the cluster; with `delay`, every link crosses a relay adding
    /// that one-way latency.
    pub async fn start(
        config: &EngineConfig,
        delay: Option<Duration>,
    ) -> anyhow::Result<BenchCluster> {
        let relays: Mutex<HashMap<usize, Relay>> = Mutex::new(HashMap::new());
        let failure: Mutex<Option<std::io::Error>> = Mutex::new(None);
        let route = |q: sharecall_proto::PartyId, addr| {
            let Some(delay) = delay else { return addr };
            let mut map = relays.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = map.get(&q.index()) {
                return r.addr();
            }
            match Relay::spawn(addr, delay) {
                Ok(r) => {
                    let a = r.addr();
                    map.insert(q.index(), r);
                    a
                }
                Err(e) => {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    addr
                }
            }
        };
        let cluster = LocalCluster::start_routed(config, &route)
            .await
            .context("linking the local cluster")?;
        if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(anyhow!("starting a relay: {e}"));
        }
        let relays = relays.into_inner().unwrap_or_else(|p| p.into_inner());
        Ok(BenchCluster {
            cluster: Arc::new(cluster),
            next_id: AtomicU64::new(1),
            _relays: relays.into_values().collect(),
        })
    }

    /// Waits until all preprocessing pools are full.
    pub async fn warm(&self) -> anyhow::Result<()> {
        for e in &self.cluster.engines {
            e.warm().await?;
        }
        Ok(())
    }

    /// Fill levels of lane 0's pools at each party: (squares, bit blocks).
    pub fn pool_stats(&self) -> [(PoolStats, PoolStats); 3] {
        let empty = PoolStats {
            available: 0,
            produced: 0,
            consumed: 0,
        };
        self.cluster
            .engines
            .each_ref()
            .map(|e| e.pool_stats().first().copied().unwrap_or((empty, empty)))
    }

    /// Runs `f` as one session on lane 0 at all three parties at once,
    /// each on its own task, and returns their results.
    pub async fn run<X, T, F, Fut>(&self, inputs: [X; 3], f: F) -> anyhow::Result<[T; 3]>
    where
        X: Send + 'static,
        T: Send + 'static,
        F: Fn(LaneSession, X) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = SmcResult<T>> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut handles = Vec::new();
        for (p, x) in inputs.into_iter().enumerate() {
            let cluster = self.cluster.clone();
            let f = f.clone();
            handles.push(tokio::spawn(async move {
                let session = cluster.engines[p].session(0, id).await?;
                f(session, x).await
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await??);
        }
        out.try_into()
            .map_err(|_| anyhow!("expected three results"))
    }
}
