//! Three engines linked over loopback TLS in one process: for the demo,
//! the benchmarks and tests. The engines are the real thing (real sockets,
//! real certificates, real pinning); only the processes are shared.

use std::net::SocketAddr;

use sharecall_proto::PartyId;
use tokio::net::TcpListener;

use super::engine::{Engine, EngineConfig};
use super::error::{SmcError, SmcResult};
use super::transport::PeerSpec;
use crate::identity::Identity;

/// Three linked engines, indexed by party.
pub struct LocalCluster {
    /// The engines of P0, P1 and P2.
    pub engines: [Engine; 3],
    /// Their SMC listen addresses.
    pub addrs: [SocketAddr; 3],
}

impl LocalCluster {
    /// Starts three engines on 127.0.0.1 with fresh identities, each
    /// pinning the other two.
    pub async fn start(config: &EngineConfig) -> SmcResult<LocalCluster> {
        Self::start_routed(config, &|_, addr| addr).await
    }

    /// Like [`LocalCluster::start`], but every party reaches peer q at
    /// `route(q, addr_of_q)` — e.g. a delaying relay in front of q.
    pub async fn start_routed(
        config: &EngineConfig,
        route: &(dyn Fn(PartyId, SocketAddr) -> SocketAddr + Sync),
    ) -> SmcResult<LocalCluster> {
        let mut identities = Vec::new();
        for p in PartyId::ALL {
            identities.push(
                Identity::generate(&format!("sharecall-provider-{}", p.index())).map_err(|e| {
                    SmcError::Link {
                        peer: p,
                        reason: e.to_string(),
                    }
                })?,
            );
        }
        Self::start_inner(config, &identities, None, route).await
    }

    /// Starts three engines with the given identities. If `pinned` is given,
    /// party p pins `pinned[q]` for peer q instead of q's real certificate
    /// (to test refusal of unknown certificates).
    pub async fn start_with(
        config: &EngineConfig,
        identities: &[Identity],
        pinned: Option<&[Identity]>,
    ) -> SmcResult<LocalCluster> {
        Self::start_inner(config, identities, pinned, &|_, addr| addr).await
    }

    async fn start_inner(
        config: &EngineConfig,
        identities: &[Identity],
        pinned: Option<&[Identity]>,
        route: &(dyn Fn(PartyId, SocketAddr) -> SocketAddr + Sync),
    ) -> SmcResult<LocalCluster> {
        if identities.len() != 3 || pinned.is_some_and(|p| p.len() != 3) {
            return Err(SmcError::InvalidInput(
                "a local cluster needs three identities".into(),
            ));
        }
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for p in PartyId::ALL {
            let l = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| SmcError::Link {
                    peer: p,
                    reason: format!("bind: {e}"),
                })?;
            addrs.push(l.local_addr().map_err(|e| SmcError::Link {
                peer: p,
                reason: e.to_string(),
            })?);
            listeners.push(l);
        }
        let pins = pinned.unwrap_or(identities);
        let spec = |me: PartyId| -> Vec<PeerSpec> {
            me.others()
                .into_iter()
                .map(|q| PeerSpec {
                    party: q,
                    addr: route(q, addrs[q.index()]),
                    fingerprint: pins[q.index()].fingerprint(),
                })
                .collect()
        };
        let [p0, p1, p2] = PartyId::ALL;
        let (e0, e1, e2) = tokio::join!(
            Engine::link(p0, &identities[0], &listeners[0], spec(p0), config),
            Engine::link(p1, &identities[1], &listeners[1], spec(p1), config),
            Engine::link(p2, &identities[2], &listeners[2], spec(p2), config),
        );
        Ok(LocalCluster {
            engines: [e0?, e1?, e2?],
            addrs: [addrs[0], addrs[1], addrs[2]],
        })
    }
}
