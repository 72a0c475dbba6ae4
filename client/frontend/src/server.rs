//! The IO shell: runs a [`crate::core::Core`] on sockets.
//!
//! [`Server::bind`] opens every listener first (port 0 allowed), then
//! builds what the core needs from the configuration: our [`Local`]s with
//! the actual ports, the users, the routing-token key (kept in the state
//! dir so published endpoints survive restarts) and a fresh nonce secret.
//! [`Server::run`] drives one core task: inputs from the transports and
//! from finished location jobs come in on one channel, outputs are sends
//! (to the transports) and location jobs (spawned, their results fed back).

use std::future::Future;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use sharecall_sip::transaction::TimerConfig;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aor::TokenKey;
use crate::auth::{Algorithm, AuthConfig};
use crate::config::{Config, LocationKind};
use crate::core::{Core, CoreConfig, Input, Output};
use crate::location::plaintext::PlaintextLocation;
use crate::location::sharecall::SharecallLocation;
use crate::location::Location;
use crate::metrics::Metrics;
use crate::peer::{Dest, Local, Protocol};
use crate::registrar::RegistrarConfig;
use crate::transport::{
    self, tls, BindSpec, LocalAddrs, TlsIdentity, Transport, TransportConfig, TransportError,
    TransportHandle,
};
use crate::users::{Users, UsersError};

/// How long a graceful shutdown waits for transactions to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Inputs queued for the core at most (transports wait beyond).
const INPUT_QUEUE: usize = 4096;

/// Why the server cannot start or run.
#[derive(Debug, Error)]
pub enum ServerError {
    /// A listener could not be opened, or TLS is misconfigured.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The users file is unusable.
    /// (The users module names the file in its messages.)
    #[error("{source}")]
    Users {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: UsersError,
    },
    /// The state dir or the routing-token key is unusable.
    #[error("state {path}: {reason}")]
    State {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The metrics listener could not be opened.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// An account key (the front end's or a user's) is unusable.
    #[error("account key: {0}")]
    Key(#[from] sharecall_client::KeyError),
    /// The sharecall clients cannot be set up (bad provider URLs).
    #[error("sharecall: {0}")]
    Sharecall(#[from] crate::location::sharecall::SetupError),
    /// The configuration is inconsistent in a way only the server sees.
    #[error("{0}")]
    Config(String),
}

/// A front end with its sockets open, ready to run.
pub struct Server {
    config: Config,
    transport: Transport,
    addrs: LocalAddrs,
    metrics_listener: Option<tokio::net::TcpListener>,
    metrics_addr: Option<SocketAddr>,
    tls_certificate: Option<CertificateDer<'static>>,
    core_config: CoreConfig,
    metrics: Metrics,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Server({:?}, metrics {:?})",
            self.addrs, self.metrics_addr
        )
    }
}

/// An IP as a SIP host: v6 in brackets.
fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

impl Server {
    /// Opens every listener of `config` and prepares the core's settings.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let listen = &config.listen;
        let first_ip = [listen.udp, listen.tcp, listen.tls]
            .into_iter()
            .flatten()
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| ServerError::Config("[listen] opens no transport".into()))?;
        let host = match &listen.advertise {
            Some(h) => h.clone(),
            None => {
                if first_ip.is_unspecified() {
                    tracing::warn!(
                        "listening on an unspecified address without listen.advertise: peers cannot route back to {first_ip}"
                    );
                }
                ip_host(first_ip)
            }
        };
        let tls = match listen.tls {
            None => None,
            Some(addr) => {
                let identity = match (&listen.tls_cert, &listen.tls_key) {
                    (Some(c), Some(k)) => TlsIdentity::load(&config.path(c), &config.path(k))?,
                    _ => {
                        tracing::info!(host, "no listen.tls_cert: using a self-signed certificate");
                        TlsIdentity::self_signed(&host)?
                    }
                };
                Some((addr, identity))
            }
        };
        let tls_certificate = tls.as_ref().and_then(|(_, id)| id.chain.first().cloned());
        let client_tls = match &listen.tls_ca {
            Some(p) => Some(tls::client_config_from_file(&config.path(p))?),
            None => None,
        };
        let spec = BindSpec {
            udp: listen.udp,
            tcp: listen.tcp,
            tls,
            client_tls,
        };
        let transport = Transport::bind(spec, TransportConfig::from_limits(&config.limits)).await?;
        let addrs = transport.local_addrs();
        let (metrics_listener, metrics_addr) = match config.metrics.listen {
            None => (None, None),
            Some(addr) => {
                let err = |source| ServerError::Metrics { addr, source };
                let l = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
                let a = l.local_addr().map_err(err)?;
                (Some(l), Some(a))
            }
        };

        // The published transport is the first listener: UDP, TCP, TLS.
        let locals: Vec<Local> = [
            (Protocol::Udp, addrs.udp),
            (Protocol::Tcp, addrs.tcp),
            (Protocol::Tls, addrs.tls),
        ]
        .into_iter()
        .filter_map(|(protocol, a)| {
            a.map(|a| Local {
                protocol,
                host: host.clone(),
                port: a.port(),
            })
        })
        .collect();
        let public = locals
            .first()
            .cloned()
            .ok_or_else(|| ServerError::Config("[listen] opens no transport".into()))?;

        let domain = config.sip.domains.first().cloned().unwrap_or_default();
        let users_path = config.path(&config.sip.users);
        let users = Users::load(&users_path, &domain).map_err(|source| ServerError::Users {
            path: users_path.clone(),
            source,
        })?;
        let token_key = load_token_key(&config.path(&config.sip.state_dir))?;
        let algorithms = config
            .auth
            .algorithms
            .iter()
            .map(|a| {
                if a.eq_ignore_ascii_case("SHA-256") {
                    Ok(Algorithm::Sha256)
                } else if a.eq_ignore_ascii_case("MD5") {
                    Ok(Algorithm::Md5)
                } else {
                    Err(ServerError::Config(format!(
                        "auth.algorithms: unknown {a:?}"
                    )))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let r = &config.registrar;
        let core_config = CoreConfig {
            domains: config.sip.domains.clone(),
            locals,
            mode: config.sip.mode,
            record_route: config.sip.record_route,
            registrar: RegistrarConfig {
                default_expires: r.default_expires,
                min_expires: r.min_expires,
                max_expires: r.max_expires,
                max_bindings: r.max_bindings,
                publish: r.publish,
                publish_ttl: Duration::from_secs(u64::from(r.publish_ttl)),
                public,
            },
            auth: AuthConfig {
                realm: config.realm().to_string(),
                algorithms,
                nonce_lifetime: Duration::from_secs(u64::from(config.auth.nonce_lifetime)),
            },
            timers: TimerConfig {
                t1: config.timers.t1,
                t2: config.timers.t2,
                t4: config.timers.t4,
            },
            users: Arc::new(users),
            token_key,
            // Per process: a restart makes old nonces stale, which clients
            // handle by answering the new challenge.
            auth_secret: rand::random(),
            max_transactions: config.sip.max_transactions,
        };
        Ok(Server {
            config,
            transport,
            addrs,
            metrics_listener,
            metrics_addr,
            tls_certificate,
            core_config,
            metrics: Metrics::new(),
        })
    }

    /// The bound SIP addresses (actual ports).
    pub fn local_addrs(&self) -> LocalAddrs {
        self.addrs
    }

    /// The bound metrics address, when configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The TLS listener's leaf certificate (DER), for peers to trust.
    pub fn tls_certificate(&self) -> Option<&CertificateDer<'static>> {
        self.tls_certificate.as_ref()
    }

    /// The metrics the server records into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The core's settings, as built from the configuration.
    pub fn core_config(&self) -> &CoreConfig {
        &self.core_config
    }

    /// The `sharecall sip: listening ...` line printed when ready.
    pub fn ready_line(&self) -> String {
        let mut line = String::from("sharecall sip: listening");
        for (name, a) in [
            ("udp", self.addrs.udp),
            ("tcp", self.addrs.tcp),
            ("tls", self.addrs.tls),
        ] {
            if let Some(a) = a {
                line.push_str(&format!(" {name}={a}"));
            }
        }
        line
    }

    /// Serves with the location service the configuration names.
    pub async fn run_configured(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        match self.config.sip.location {
            LocationKind::Plaintext => self.run(PlaintextLocation::new(), shutdown).await,
            LocationKind::Sharecall => {
                let location = self.sharecall_location()?;
                self.run(location, shutdown).await
            }
        }
    }

    fn sharecall_location(&self) -> Result<SharecallLocation, ServerError> {
        let sc = self.config.sharecall.as_ref().ok_or_else(|| {
            ServerError::Config("sip.location = \"sharecall\" needs a [sharecall] section".into())
        })?;
        let resolver = sharecall_client::AccountKey::load(&self.config.path(&sc.account_key))?;
        let mut user_keys = Vec::new();
        for u in self.core_config.users.iter() {
            if let Some(k) = &u.account_key {
                user_keys.push((u.aor.clone(), sharecall_client::AccountKey::load(k)?));
            }
        }
        Ok(SharecallLocation::new(
            &sc.providers,
            resolver,
            user_keys,
            sc.timeout,
            sc.allow_plain_http,
        )?)
    }

    /// Serves until `shutdown` resolves, then stops accepting connections,
    /// answers new out-of-dialog requests 503, and returns once no
    /// request has its final answer (or after [`DRAIN_TIMEOUT`]).
    pub async fn run<L: Location>(
        self,
        location: L,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        let ready = self.ready_line();
        let core = Core::new(self.core_config, self.metrics.clone(), Instant::now());
        let (in_tx, in_rx) = mpsc::channel(INPUT_QUEUE);
        let handle = self.transport.start(in_tx.clone());
        let stop_metrics = CancellationToken::new();
        // Whether run returns or its future is dropped, the sockets close.
        let _stop = StopOnDrop(handle.clone(), stop_metrics.clone());
        if let Some(listener) = self.metrics_listener {
            if let Some(a) = self.metrics_addr {
                tracing::info!("metrics at http://{a}/metrics");
            }
            tokio::spawn(serve_metrics(
                listener,
                self.metrics.clone(),
                stop_metrics.clone(),
            ));
        }
        {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{ready}");
            let _ = stdout.flush();
        }
        CoreTask {
            core,
            location: Arc::new(location),
            handle: handle.clone(),
            in_tx,
            metrics: self.metrics,
        }
        .run(in_rx, shutdown)
        .await
    }
}

/// Binds and serves `config` with `location` until `shutdown` resolves.
pub async fn run_with<L: Location>(
    config: Config,
    location: L,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    Server::bind(config).await?.run(location, shutdown).await
}

/// Binds and serves `config` (with the location service it names) until
/// `shutdown` resolves; see [`Server::run`] for the graceful shutdown.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    Server::bind(config).await?.run_configured(shutdown).await
}

struct StopOnDrop(TransportHandle, CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
        self.1.cancel();
    }
}

struct CoreTask<L> {
    core: Core,
    location: Arc<L>,
    handle: TransportHandle,
    in_tx: mpsc::Sender<Input>,
    metrics: Metrics,
}

/// Inputs handled in one go before the core's timers and outputs get a
/// turn (bounds latency under a flood).
const BATCH: usize = 256;

impl<L: Location> CoreTask<L> {
    async fn run(
        mut self,
        mut in_rx: mpsc::Receiver<Input>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut drain_until: Option<tokio::time::Instant> = None;
        let mut out = Vec::new();
        loop {
            let deadline = self
                .core
                .next_deadline()
                .map(tokio::time::Instant::from_std);
            let far = tokio::time::Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                _ = &mut shutdown, if drain_until.is_none() => {
                    tracing::info!(pending = self.core.pending(), "shutting down: draining transactions");
                    self.handle.stop_accepting();
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                }
                input = in_rx.recv() => {
                    let Some(input) = input else { break };
                    self.input(input, drain_until.is_some(), &mut out);
                    for _ in 1..BATCH {
                        match in_rx.try_recv() {
                            Ok(input) => self.input(input, drain_until.is_some(), &mut out),
                            Err(_) => break,
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {}
                _ = tokio::time::sleep_until(drain_until.unwrap_or(far)), if drain_until.is_some() => {
                    tracing::warn!(pending = self.core.pending(), "drain timeout: stopping with requests unanswered");
                    break;
                }
            }
            let now = Instant::now();
            if self.core.next_deadline().is_some_and(|d| d <= now) {
                self.core.on_timer(now, &mut out);
            }
            for o in out.drain(..) {
                self.output(o);
            }
            self.metrics.set_transactions(self.core.transactions());
            // Drained once every request has its final answer; finished
            // transactions only absorbing retransmissions do not hold us.
            if drain_until.is_some() && self.core.pending() == 0 && self.core.jobs() == 0 {
                tracing::info!("shutdown: every request answered");
                break;
            }
        }
        Ok(())
    }

    fn input(&mut self, input: Input, draining: bool, out: &mut Vec<Output>) {
        if draining {
            if let Input::Received { msg, from } = &input {
                // A new out-of-dialog request (no To tag; not ACK/CANCEL,
                // which belong to transactions) is turned away while we
                // drain: another front end or a retry will serve it.
                let method = msg.method();
                let out_of_dialog = msg.is_request()
                    && !matches!(method.as_deref(), Some("ACK") | Some("CANCEL"))
                    && msg.to().map(|t| t.tag().is_none()).unwrap_or(true);
                if out_of_dialog {
                    // The core does not see it: count it here.
                    let method = method.unwrap_or_default();
                    self.metrics.request(&method);
                    self.metrics.response(&method, 503);
                    if let Some(r) =
                        transport::stateless_response(msg, 503, &["Retry-After: 5".to_string()])
                    {
                        self.handle.send(Dest::Peer(*from), r, None);
                    }
                    return;
                }
            }
        }
        self.core.handle(input, Instant::now(), out);
    }

    fn output(&self, o: Output) {
        match o {
            Output::Send { to, bytes, tx } => self.handle.send(to, bytes, tx),
            Output::Resolve { job, aor } => {
                let (location, in_tx, metrics) = (
                    self.location.clone(),
                    self.in_tx.clone(),
                    self.metrics.clone(),
                );
                tokio::spawn(async move {
                    let t = Instant::now();
                    let result = location.resolve(&aor).await;
                    metrics.location("resolve", result.is_ok(), t.elapsed());
                    if let Err(e) = &result {
                        tracing::warn!(%aor, error = %e, "resolution failed");
                    }
                    let _ = in_tx.send(Input::Resolved { job, result }).await;
                });
            }
            Output::Publish { job, publication } => {
                let (location, in_tx, metrics) = (
                    self.location.clone(),
                    self.in_tx.clone(),
                    self.metrics.clone(),
                );
                tokio::spawn(async move {
                    let t = Instant::now();
                    let result = location.publish(&publication).await;
                    metrics.location("publish", result.is_ok(), t.elapsed());
                    if let Err(e) = &result {
                        tracing::warn!(aor = %publication.aor, error = %e, "publication failed");
                    }
                    let _ = in_tx.send(Input::Published { job, result }).await;
                });
            }
        }
    }
}

async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    stop: CancellationToken,
) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, Metrics::CONTENT_TYPE)],
                    m.encode(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "metrics server failed");
    }
}

/// The routing-token key in `dir/token.key` (32 bytes, mode 0600), made on
/// first start; `dir` is created with mode 0700.
pub fn load_token_key(dir: &Path) -> Result<TokenKey, ServerError> {
    let state = |path: &Path, reason: String| ServerError::State {
        path: path.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| state(dir, format!("cannot create: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| state(dir, format!("cannot set mode 0700: {e}")))?;
    }
    let path = dir.join("token.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                state(&path, format!("holds {} bytes, expected 32", b.len()))
            })?;
            Ok(TokenKey::new(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; 32] = rand::random();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let write = |e: std::io::Error| state(&path, format!("cannot write: {e}"));
            let mut f = opts.open(&path).map_err(write)?;
            f.write_all(&key).map_err(write)?;
            f.sync_all().map_err(write)?;
            Ok(TokenKey::new(key))
        }
        Err(e) => Err(state(&path, format!("cannot read: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aor::Aor;

    #[test]
    fn the_token_key_is_made_once_kept_private_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let aor = Aor::new("alice", "a.example");
        let first = load_token_key(&state).expect("made").token(&aor);
        let second = load_token_key(&state).expect("read").token(&aor);
        assert_eq!(first, second);
        let key = state.join("token.key");
        assert_eq!(std::fs::read(&key).expect("key").len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&key), 0o600);
            assert_eq!(mode(&state), 0o700);
        }
        std::fs::write(&key, b"short").expect("write");
        let e = load_token_key(&state).expect_err("a truncated key is refused");
        assert!(e.to_string().contains("expected 32"), "{e}");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(ip_host("::1".parse().expect("ip")), "[::1]");
        assert_eq!(ip_host("10.0.0.1".parse().expect("ip")), "10.0.0.1");
    }
}
