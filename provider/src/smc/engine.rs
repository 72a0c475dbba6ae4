//! The engine: a linked mesh, its online lanes and their preprocessing.
//!
//! Callers open a [`Session`] on a lane; sessions on one lane run one after
//! another, sessions on different lanes run concurrently. All three
//! providers must open the same sessions on the same lanes in the same
//! order (the sequencer guarantees that); if they do not, the mismatch is
//! reported as an out-of-step error, never mixed into a result.

use std::sync::Arc;
use std::time::Duration;

use sharecall_proto::{PartyId, Share};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::task::JoinHandle;

use super::bit_block::BitBlock;
use super::channel::{Channel, Desync, Pools};
use super::error::{SmcError, SmcResult};
use super::pool::{Pool, PoolSizing, PoolStats};
use super::producer;
use super::session::Session;
use super::transport::{LinkConfig, Mesh, PeerSpec};
use crate::identity::Identity;

/// Channels per lane: online, squares producer, bit-block producer.
const CHANNELS_PER_LANE: u32 = 3;

/// Engine settings (all have defaults, see [`EngineConfig::default`]).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Online lanes (concurrent sessions). Default 4.
    pub lanes: u32,
    /// How long one operation waits for a peer. Default 10 s.
    pub op_timeout: Duration,
    /// How long linking waits for the peers to come up. Default 30 s.
    pub link_timeout: Duration,
    /// Random squares kept ready per lane (32 per `prf_tag` value).
    /// Default target 4096 in chunks of 1024.
    pub squares: PoolSizing,
    /// Bit blocks kept ready per lane (one per `lt_reveal` comparison).
    /// Default target 256 in chunks of 64.
    pub bit_blocks: PoolSizing,
    /// Link epoch: all three engines of one link must use the same value,
    /// so a connection from an earlier link attempt is refused. Default 0.
    pub epoch: u64,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            lanes: 4,
            op_timeout: Duration::from_secs(10),
            link_timeout: Duration::from_secs(30),
            squares: PoolSizing {
                target: 4096,
                chunk: 1024,
            },
            bit_blocks: PoolSizing {
                target: 256,
                chunk: 64,
            },
            epoch: 0,
        }
    }
}

/// A session on an online lane.
pub type LaneSession = Session<OwnedMutexGuard<Channel>>;

struct LaneHandle {
    channel: Arc<Mutex<Channel>>,
    pools: Pools,
    desync: Desync,
}

/// A linked three-party SMC engine; see the module docs.
pub struct Engine {
    me: PartyId,
    mesh: Arc<Mesh>,
    lanes: Vec<LaneHandle>,
    producers: Vec<JoinHandle<()>>,
    epoch: u64,
}

impl Engine {
    /// Links with the two peers over mutually authenticated TLS (accepting
    /// on `listener`), agrees PRG seeds and starts the preprocessing.
    pub async fn link(
        me: PartyId,
        identity: &Identity,
        listener: &TcpListener,
        peers: Vec<PeerSpec>,
        config: &EngineConfig,
    ) -> SmcResult<Engine> {
        if config.lanes == 0 {
            return Err(SmcError::InvalidInput("at least one lane is needed".into()));
        }
        let link = LinkConfig {
            me,
            peers,
            channels: config.lanes * CHANNELS_PER_LANE,
            link_timeout: config.link_timeout,
            epoch: config.epoch,
        };
        let (mesh, inboxes, seeds) = Mesh::link(&link, identity, listener).await?;
        let mesh = Arc::new(mesh);
        let mut inboxes = inboxes.map(|v| v.into_iter().map(Some).collect::<Vec<_>>());
        let mut receivers =
            |ch: u32| [0, 1, 2].map(|p| inboxes[p].get_mut(ch as usize).and_then(Option::take));
        let mut lanes = Vec::new();
        let mut producers = Vec::new();
        for lane in 0..config.lanes {
            let base = lane * CHANNELS_PER_LANE;
            let pools = Pools {
                squares: Arc::new(Pool::<Share>::new(config.squares)),
                bits: Arc::new(Pool::<BitBlock>::new(config.bit_blocks)),
            };
            let online = Channel::new(
                base,
                mesh.clone(),
                &seeds,
                receivers(base),
                config.op_timeout,
                Some(pools.clone()),
            );
            let sq = Channel::new(
                base + 1,
                mesh.clone(),
                &seeds,
                receivers(base + 1),
                config.op_timeout,
                None,
            );
            let bits = Channel::new(
                base + 2,
                mesh.clone(),
                &seeds,
                receivers(base + 2),
                config.op_timeout,
                None,
            );
            let squares_pool = pools.squares.clone();
            producers.push(tokio::spawn(async move {
                producer::run(&squares_pool, sq).await
            }));
            let bits_pool = pools.bits.clone();
            producers.push(tokio::spawn(async move {
                producer::run(&bits_pool, bits).await
            }));
            lanes.push(LaneHandle {
                desync: online.desync.clone(),
                channel: Arc::new(Mutex::new(online)),
                pools,
            });
        }
        Ok(Engine {
            me,
            mesh,
            lanes,
            producers,
            epoch: config.epoch,
        })
    }

    /// This provider's party index.
    pub fn party(&self) -> PartyId {
        self.me
    }

    /// The link epoch this engine was linked at.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Number of online lanes.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Whether the engine can still serve sessions: both peer connections
    /// are up, every preprocessing producer runs, and no failed session left
    /// a lane out of step. An unhealthy engine must be re-linked.
    pub fn is_healthy(&self) -> bool {
        self.mesh.is_healthy()
            && self.lanes.iter().all(|l| {
                l.desync.get().is_none() && !l.pools.squares.failed() && !l.pools.bits.failed()
            })
    }

    /// Opens session `id` on `lane`, waiting while an earlier session holds
    /// the lane. Ids must increase per lane.
    pub async fn session(&self, lane: usize, id: u64) -> SmcResult<LaneSession> {
        let handle = self.lanes.get(lane).ok_or_else(|| {
            SmcError::InvalidInput(format!(
                "lane {lane} does not exist ({} lanes)",
                self.lanes.len()
            ))
        })?;
        let guard = handle.channel.clone().lock_owned().await;
        Session::begin(guard, id)
    }

    /// Waits until every lane's pools are at their target.
    pub async fn warm(&self) -> SmcResult<()> {
        for lane in &self.lanes {
            lane.pools.squares.warm().await?;
            lane.pools.bits.warm().await?;
        }
        Ok(())
    }

    /// Fill levels per lane: (squares, bit blocks).
    pub fn pool_stats(&self) -> Vec<(PoolStats, PoolStats)> {
        self.lanes
            .iter()
            .map(|l| (l.pools.squares.stats(), l.pools.bits.stats()))
            .collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for p in &self.producers {
            p.abort();
        }
    }
}
