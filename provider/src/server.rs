//! The long-running provider process: command/control server, gateway,
//! SMC link, heartbeats and the admin endpoint, with graceful shutdown.
//!
//! The control listener carries one gRPC service per layer: the
//! orchestration's `Control` (commands, heartbeats), the sequencer's
//! `Raft`, and the executor's `Reads` and `Transcripts`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rand::RngCore;
use sharecall_proto::control::control_client::ControlClient;
use sharecall_proto::control::control_server::ControlServer;
use sharecall_proto::control::HeartbeatRequest;
use sharecall_proto::raft::raft_server::RaftServer;
use sharecall_proto::reads::reads_server::ReadsServer;
use sharecall_proto::transcripts::transcripts_server::TranscriptsServer;
use sharecall_proto::PartyId;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::{info, warn};

use crate::config::ProviderConfig;
use crate::directory::Directory;
use crate::execution::batch::BatchError;
use crate::execution::reads::ReadsService;
use crate::execution::{Executor, ExecutorConfig, TranscriptsService};
use crate::http::{self, AdminState, PublicState};
use crate::identity::{Identity, IdentityError};
use crate::kinds::{self, Resources};
use crate::metrics::Metrics;
use crate::orchestration::task::TaskError;
use crate::orchestration::{
    AllowedKinds, Gateway, GatewayConfig, LinkManager, PeerService, PeerTimeouts, Policies,
    RequesterKey, SignaturePolicy, TaskKind,
};
use crate::rpc::{self, RpcError};
use crate::sequencer::service::RaftService;
use crate::sequencer::storage::{RaftStore, StoreError};
use crate::sequencer::transport::GrpcRaftTransport;
use crate::sequencer::{Sequencer, SequencerConfig, SequencerError};
use crate::smc::{EngineConfig, PeerSpec};
use crate::tables::Variant;

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
    /// The configured id is not a provider id.
    #[error("provider id {0} is not 0, 1 or 2")]
    BadId(u8),
    /// A provider this one must reach is missing from the configuration.
    #[error("provider {0} is not configured")]
    PeerMissing(u8),
    /// The raft store could not be opened.
    #[error("raft store: {0}")]
    RaftStore(#[source] StoreError),
    /// The sequencer could not start.
    #[error("sequencer: {0}")]
    Sequencer(#[source] SequencerError),
    /// `tables.variant` names no table variant.
    #[error("{0}")]
    BadVariant(String),
    /// The table could not be loaded.
    #[error("table: {0}")]
    Table(#[source] BatchError),
    /// The requester key could not be loaded or created.
    #[error(transparent)]
    RequesterKey(#[from] TaskError),
    /// The public API's certificate or key could not be used.
    #[error(transparent)]
    ApiTls(#[from] http::tls::ApiTlsError),
    /// A local development cluster could not be set up (files, ports).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A local development cluster could not make a provider identity.
    #[error(transparent)]
    NewIdentity(IdentityError),
    /// A provider of a local development cluster ended abnormally.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
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
    let party = PartyId::new(me as usize).ok_or(ServerError::BadId(me))?;
    let incarnation = rand::rngs::OsRng.next_u64();
    let metrics = Arc::new(Metrics::new(me));
    let directory = Arc::new(Directory::from_config(&config, Instant::now()));

    let control_listener = bind("control", config.listen.control).await?;
    let smc_listener = bind("smc", config.listen.smc).await?;
    let admin_listener = bind("admin", config.listen.admin).await?;
    let api_listener = bind("api", config.listen.api).await?;
    // Built before anything runs, so a bad `[api_tls]` stops the start.
    let api_tls = if config.listen.api_plaintext_insecure {
        warn!(
            api = %config.listen.api,
            "INSECURE: listen.api_plaintext_insecure is set; the public API is served as \
             plain HTTP and anyone on the path reads every share and request id"
        );
        None
    } else {
        let cert = http::tls::ApiCert::load(&config.api_tls, &identity)?;
        info!(api = %config.listen.api, fingerprint = %cert.fingerprint, "public API over TLS");
        Some(cert.server_config()?)
    };

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

    let known = kinds::known();
    let allowed: Vec<TaskKind> = config
        .policy
        .allowed_kinds
        .iter()
        .filter_map(|k| TaskKind::parse(k, &known).ok())
        .collect();
    let policy = Arc::new(Policies(vec![
        Box::new(SignaturePolicy {
            max_skew: config.policy.max_task_skew,
        }),
        Box::new(AllowedKinds::new(known, allowed)),
    ]));

    // Control channels to providers 0, 1, 2 (lazy: a peer that is down now
    // is connected to when it comes up).
    let channel = |id: u8| -> Result<Channel, ServerError> {
        let (addr, fp) = if id == me {
            (dialable(config.listen.control), identity.fingerprint())
        } else {
            let p = config.peer(id).ok_or(ServerError::PeerMissing(id))?;
            (p.control, p.fingerprint)
        };
        Ok(rpc::channel(addr, &identity, fp, config.timeouts.prepare)?)
    };
    let channels: [Channel; 3] = [channel(0)?, channel(1)?, channel(2)?];
    // The other two providers' control channels, by provider id.
    let peer_channels: Vec<(u8, Channel)> = (0..3u8)
        .filter(|id| *id != me)
        .map(|id| (id, channels[id as usize].clone()))
        .collect();
    let heartbeat_clients: Vec<(u8, ControlClient<Channel>)> = peer_channels
        .iter()
        .map(|(id, ch)| (*id, ControlClient::new(ch.clone())))
        .collect();
    // The sequencer: raft over the control channels, state in redb.
    let store = Arc::new(
        RaftStore::open(&config.data_dir.join("raft.redb")).map_err(ServerError::RaftStore)?,
    );
    let transport = Arc::new(GrpcRaftTransport::new(me, peer_channels.clone()));
    let sequencer_config = SequencerConfig {
        compact_every: config.sequencer.compact_every.max(1),
        ..SequencerConfig::for_provider(me)
    };
    let cancel = CancellationToken::new();
    let sequencer = Sequencer::start(sequencer_config, store, transport, cancel.clone())
        .map_err(ServerError::Sequencer)?;
    let variant = config
        .tables
        .variant
        .parse::<Variant>()
        .map_err(ServerError::BadVariant)?;
    let executor = Executor::open(
        ExecutorConfig {
            me,
            variant,
            max_batch: config.tables.max_batch,
            sweep_interval: config.tables.sweep_interval,
            metrics: metrics.clone(),
            read_jobs: config.tables.read_jobs,
            max_log_skew: config.tables.max_log_skew,
            log: config.log.share_log(),
        },
        sequencer.clone(),
        peer_channels,
    )
    .map_err(ServerError::Table)?;
    let computations = Arc::new(kinds::registry(&Resources {
        secure_sum_value: config.secure_sum.value,
        executor: &executor,
    }));
    let raft_service = RaftService::new(sequencer.clone(), providers.clone());
    let reads_service = ReadsService::new(executor.clone(), providers.clone());
    let transcripts_service = TranscriptsService::new(executor.clone(), providers.clone());
    let peer_service = PeerService::new(
        u32::from(me),
        incarnation,
        providers,
        link.clone(),
        policy,
        computations.clone(),
        PeerTimeouts {
            link: config.timeouts.link,
            session: config.timeouts.session,
        },
    );
    let key = RequesterKey::load_or_create(&config.data_dir, &format!("admin@provider-{me}"))?;
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
        computations,
    ));

    let mut tasks = tokio::task::JoinSet::new();

    // The control listener: each layer's service between providers.
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
                    RaftServer::new(raft_service)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
                )
                .add_service(ReadsServer::new(reads_service).max_decoding_message_size(16 << 20))
                .add_service(
                    TranscriptsServer::new(transcripts_service)
                        .max_decoding_message_size(64 << 20)
                        .max_encoding_message_size(64 << 20),
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
                match api_tls {
                    Some(tls) => http::tls::serve(api_listener, tls, router, cancel).await,
                    None => {
                        let result = axum::serve(api_listener, router)
                            .with_graceful_shutdown(cancel.cancelled_owned())
                            .await;
                        if let Err(e) = result {
                            warn!("api server stopped: {e}");
                        }
                    }
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
