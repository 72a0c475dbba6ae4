//! The long-running provider process: command/control server, gateway,
//! SMC link, heartbeats and the admin endpoint, with graceful shutdown.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rand::RngCore;
use sharecall_proto::control::control_client::ControlClient;
use sharecall_proto::control::control_server::ControlServer;
use sharecall_proto::control::HeartbeatRequest;
use sharecall_proto::PartyId;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::{info, warn};

use crate::config::ProviderConfig;
use crate::directory::Directory;
use crate::http::{self, AdminState, PublicState};
use crate::identity::{Identity, IdentityError};
use crate::metrics::Metrics;
use crate::orchestration::{
    AllowedKinds, Gateway, GatewayConfig, LinkManager, LocalInputs, PeerService, PeerTimeouts,
    Policies, RequesterKey, SignaturePolicy, TaskKind,
};
use crate::rpc::{self, RpcError};
use crate::sequencer::storage::RaftStore;
use crate::sequencer::transport::GrpcRaftTransport;
use crate::sequencer::{Sequencer, SequencerConfig};
use crate::smc::{EngineConfig, PeerSpec};

/// Why the provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The identity could not be loaded.
    #[error("provider identity: {0} (run `sharecall-provider init` first)")]
    Identity(#[from] IdentityError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Control-plane setup failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// Something else.
    #[error("{0}")]
    Other(String),
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { what, addr, source })
}

/// Where to dial a listen address (an unspecified IP means loopback).
fn dialable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

/// Runs the provider until `shutdown` completes.
pub async fn run(
    config: ProviderConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let identity = Identity::load(&config.data_dir)?;
    let me = config.id;
    let party = PartyId::new(me as usize)
        .ok_or_else(|| ServerError::Other(format!("provider id {me} is not 0, 1 or 2")))?;
    let incarnation = rand::rngs::OsRng.next_u64();
    let metrics = Arc::new(Metrics::new(me));
    let directory = Arc::new(Directory::from_config(&config, Instant::now()));

    let control_listener = bind("control", config.listen.control).await?;
    let smc_listener = bind("smc", config.listen.smc).await?;
    let admin_listener = bind("admin", config.listen.admin).await?;
    let api_listener = bind("api", config.listen.api).await?;

    // Who is who, by pinned certificate (this provider included: its own
    // gateway talks to its own peer service like to the others).
    let mut providers: HashMap<_, u32> = HashMap::new();
    providers.insert(identity.fingerprint(), u32::from(me));
    for p in &config.peers {
        providers.insert(p.fingerprint, u32::from(p.id));
    }
    let pinned: Vec<_> = providers.keys().copied().collect();

    let engine_config = EngineConfig {
        lanes: config.jobs.lanes,
        op_timeout: config.timeouts.smc_op,
        link_timeout: config.timeouts.link,
        ..EngineConfig::default()
    };
    let smc_peers = config
        .peers
        .iter()
        .filter_map(|p| {
            Some(PeerSpec {
                party: PartyId::new(p.id as usize)?,
                addr: p.smc,
                fingerprint: p.fingerprint,
            })
        })
        .collect();
    let link = Arc::new(LinkManager::new(
        party,
        identity.clone(),
        smc_listener,
        smc_peers,
        engine_config,
    ));

    let policy = Arc::new(Policies(vec![
        Box::new(SignaturePolicy {
            max_skew: config.policy.max_task_skew,
        }),
        Box::new(AllowedKinds(
            config
                .policy
                .allowed_kinds
                .iter()
                .filter_map(|k| k.parse::<TaskKind>().ok())
                .collect::<HashSet<_>>(),
        )),
    ]));

    // Control channels to providers 0, 1, 2 (lazy: a peer that is down now
    // is connected to when it comes up).
    let mut channels: Vec<Channel> = Vec::with_capacity(3);
    for id in 0..3u8 {
        let (addr, fp) = if id == me {
            (dialable(config.listen.control), identity.fingerprint())
        } else {
            let p = config
                .peer(id)
                .ok_or_else(|| ServerError::Other(format!("provider {id} is not configured")))?;
            (p.control, p.fingerprint)
        };
        channels.push(rpc::channel(addr, &identity, fp, config.timeouts.prepare)?);
    }
    let channels: [Channel; 3] = channels
        .try_into()
        .map_err(|_| ServerError::Other("three control channels expected".into()))?;
    let heartbeat_clients: Vec<(u8, ControlClient<Channel>)> = (0..3u8)
        .filter(|id| *id != me)
        .map(|id| (id, ControlClient::new(channels[id as usize].clone())))
        .collect();
    // The sequencer: raft over the control channels, state in redb.
    let store = Arc::new(
        RaftStore::open(&config.data_dir.join("raft.redb"))
            .map_err(|e| ServerError::Other(format!("raft store: {e}")))?,
    );
    let transport = Arc::new(GrpcRaftTransport::new(me, heartbeat_clients.clone()));
    let sequencer_config = SequencerConfig {
        compact_every: config.sequencer.compact_every.max(1),
        ..SequencerConfig::for_provider(me)
    };
    let cancel = CancellationToken::new();
    let sequencer = Sequencer::start(sequencer_config, store, transport, cancel.clone())
        .map_err(|e| ServerError::Other(format!("sequencer: {e}")))?;
    let variant = config
        .tables
        .variant
        .parse::<crate::tables::Variant>()
        .map_err(ServerError::Other)?;
    let executor = crate::execution::Executor::open(
        crate::execution::ExecutorConfig {
            me,
            variant,
            max_batch: config.tables.max_batch,
            sweep_interval: config.tables.sweep_interval,
            metrics: metrics.clone(),
            read_jobs: config.tables.read_jobs,
        },
        sequencer.clone(),
        (0..3u8)
            .filter(|id| *id != me)
            .map(|id| (id, channels[id as usize].clone()))
            .collect(),
    )
    .map_err(|e| ServerError::Other(format!("table: {e}")))?;
    let reads_service =
        crate::execution::reads::ReadsService::new(executor.clone(), providers.clone());
    let peer_service = PeerService::new(
        u32::from(me),
        incarnation,
        providers,
        link.clone(),
        policy,
        LocalInputs {
            secure_sum_value: config.secure_sum.value,
        },
        PeerTimeouts {
            link: config.timeouts.link,
            session: config.timeouts.session,
        },
    )
    .with_sequencer(sequencer.clone())
    .with_executor(executor.clone());
    let key = RequesterKey::load_or_create(&config.data_dir, &format!("admin@provider-{me}"))
        .map_err(|e| ServerError::Other(e.to_string()))?;
    let gateway = Arc::new(Gateway::new(
        GatewayConfig {
            me: u32::from(me),
            lanes: config.jobs.lanes,
            max_queued: config.jobs.max_queued,
            prepare_timeout: config.timeouts.prepare,
            link_timeout: config.timeouts.link,
            session_timeout: config.timeouts.session,
            phase_retries: config.jobs.phase_retries,
            session_retries: config.jobs.session_retries,
        },
        channels,
        key,
        metrics.clone(),
    ));

    let mut tasks = tokio::task::JoinSet::new();

    // Command/control server.
    let incoming = rpc::incoming(control_listener, &identity, &pinned)?;
    {
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(
                    ControlServer::new(peer_service)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
                )
                .add_service(
                    sharecall_proto::reads::reads_server::ReadsServer::new(reads_service)
                        .max_decoding_message_size(16 << 20),
                )
                .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
                .await;
            if let Err(e) = result {
                warn!("control server stopped: {e}");
            }
        });
    }

    // Heartbeats into the directory.
    {
        let cancel = cancel.clone();
        let directory = directory.clone();
        let metrics = metrics.clone();
        let interval = config.timeouts.heartbeat_interval;
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                for (id, client) in &heartbeat_clients {
                    let mut client = client.clone();
                    let req = HeartbeatRequest {
                        from: u32::from(me),
                        incarnation,
                    };
                    let now_ok = tokio::time::timeout(interval, client.heartbeat(req)).await;
                    let t = match now_ok {
                        Ok(Ok(reply)) => directory.heartbeat_ok(
                            *id,
                            reply.into_inner().incarnation,
                            Instant::now(),
                        ),
                        _ => directory.heartbeat_failed(*id, Instant::now()),
                    };
                    if t.restarted {
                        info!(peer = id, "peer restarted; the next job re-links");
                    }
                }
                directory.tick(Instant::now());
                for id in directory.peer_ids() {
                    if let Some(h) = directory.health(id) {
                        metrics.peer_health(id, h);
                    }
                }
            }
        });
    }

    // The coordinator: executes ordered requests while this provider leads.
    {
        let executor = executor.clone();
        let gateway = gateway.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move { executor.coordinate(gateway, cancel).await });
    }

    // HTTP: the public API and the admin endpoint, each with only the
    // state its handlers need.
    {
        let public = Arc::new(PublicState {
            me,
            executor: executor.clone(),
            accounts: Arc::new(crate::accounts::Accounts::new(config.accounts.clone())),
            sequencer: sequencer.clone(),
            answer_wait: config.tables.answer_wait,
        });
        let admin = Arc::new(AdminState {
            executor,
            me,
            incarnation,
            gateway,
            directory,
            link,
            metrics,
            sequencer,
        });
        {
            let cancel = cancel.clone();
            let router = http::public::router(public);
            tasks.spawn(async move {
                let result = axum::serve(api_listener, router)
                    .with_graceful_shutdown(cancel.cancelled_owned())
                    .await;
                if let Err(e) = result {
                    warn!("api server stopped: {e}");
                }
            });
        }
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let result = axum::serve(admin_listener, http::admin::router(admin))
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await;
            if let Err(e) = result {
                warn!("admin server stopped: {e}");
            }
        });
    }

    info!(
        id = me,
        control = %config.listen.control,
        smc = %config.listen.smc,
        admin = %config.listen.admin,
        api = %config.listen.api,
        "provider running"
    );
    shutdown.await;
    info!("shutting down");
    cancel.cancel();
    // In-flight requests get a moment to finish; then we go regardless.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
