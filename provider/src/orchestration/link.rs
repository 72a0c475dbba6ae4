//! The Link phase: this provider's side of the SMC mesh, reused while
//! healthy and redone at a new epoch when the gateway asks.

use std::sync::{Arc, RwLock};

use sharecall_proto::PartyId;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::identity::Identity;
use crate::smc::{Engine, EngineConfig, PeerSpec, SmcError};

/// Owns the current SMC engine and re-links it on demand.
pub struct LinkManager {
    me: PartyId,
    identity: Identity,
    listener: TcpListener,
    peers: Vec<PeerSpec>,
    config: EngineConfig,
    current: RwLock<Option<Arc<Engine>>>,
    // One link attempt at a time; concurrent requests for the same epoch
    // wait and then find it done.
    linking: tokio::sync::Mutex<()>,
}

impl LinkManager {
    /// A manager that has not linked yet.
    pub fn new(
        me: PartyId,
        identity: Identity,
        listener: TcpListener,
        peers: Vec<PeerSpec>,
        config: EngineConfig,
    ) -> LinkManager {
        LinkManager {
            me,
            identity,
            listener,
            peers,
            config,
            current: RwLock::new(None),
            linking: tokio::sync::Mutex::new(()),
        }
    }

    /// The engine, if linked.
    pub fn current(&self) -> Option<Arc<Engine>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// (epoch, healthy) of the current link; (0, false) before the first.
    pub fn state(&self) -> (u64, bool) {
        match self.current() {
            Some(e) => (e.epoch(), e.is_healthy()),
            None => (0, false),
        }
    }

    /// Makes sure the engine is linked and healthy at `epoch` or later.
    ///
    /// An older or unhealthy link is dropped and a new one made at `epoch`
    /// (the other two peers get the same request from the gateway). A
    /// request for an epoch at or below an unhealthy current one fails: the
    /// gateway must pick a newer epoch, so all three agree on it.
    pub async fn ensure(&self, epoch: u64) -> Result<(u64, bool), SmcError> {
        let _guard = self.linking.lock().await;
        if let Some(engine) = self.current() {
            if engine.epoch() >= epoch {
                if engine.is_healthy() {
                    return Ok((engine.epoch(), true));
                }
                return Err(SmcError::Link {
                    peer: self.me,
                    reason: format!(
                        "link epoch {} is unhealthy; re-link needs an epoch above it",
                        engine.epoch()
                    ),
                });
            }
        }
        // Drop the old engine first: its connections close and the peers'
        // old engines notice.
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = None;
        let config = EngineConfig {
            epoch,
            ..self.config.clone()
        };
        match Engine::link(
            self.me,
            &self.identity,
            &self.listener,
            self.peers.clone(),
            &config,
        )
        .await
        {
            Ok(engine) => {
                info!(epoch, "SMC mesh linked");
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(engine));
                Ok((epoch, true))
            }
            Err(e) => {
                warn!(epoch, "SMC link failed: {e}");
                Err(e)
            }
        }
    }
}
