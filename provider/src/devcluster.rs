//! A local three-provider cluster in one process: fresh identities, ports
//! on 127.0.0.1, real TLS and raft between the providers, each a full
//! [`crate::server::run`]. For `sharecall demo` and the benchmark harness
//! (which routes provider traffic through delaying relays).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{
    AccountsConfig, ApiTlsConfig, JobsConfig, ListenConfig, LogConfig, PeerConfig, PolicyConfig,
    ProviderConfig, SecureSumConfig, SequencerSettings, TablesConfig, Timeouts,
};
use crate::identity::{Fingerprint, Identity};
use crate::server::ServerError;

/// What the cluster is made of.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Where the three data directories go (`p0`, `p1`, `p2`).
    pub root: PathBuf,
    /// Table settings (the same at all three).
    pub tables: TablesConfig,
    /// Account settings (the same at all three).
    pub accounts: AccountsConfig,
    /// Logging and the share log (the same at all three).
    pub log: LogConfig,
    /// SMC lanes per provider.
    pub lanes: u32,
    /// Serve the public APIs as plain HTTP (`listen.api_plaintext_insecure`).
    /// Default `false`: TLS with each provider's own certificate.
    pub api_plaintext_insecure: bool,
}

impl DevOptions {
    /// Defaults for a cluster under `root`: hash table, open enrollment.
    pub fn new(root: &Path) -> DevOptions {
        DevOptions {
            root: root.to_path_buf(),
            tables: TablesConfig::default(),
            accounts: AccountsConfig {
                enrollment: "open".into(),
                ..AccountsConfig::default()
            },
            log: LogConfig::default(),
            lanes: 6,
            api_plaintext_insecure: false,
        }
    }
}

/// Which listener an address belongs to, for [`DevCluster::start`]'s
/// routing hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Provider-to-provider control (gRPC).
    Control,
    /// Provider-to-provider SMC.
    Smc,
    /// The REST API clients use.
    Api,
}

/// A running local cluster; stop it with [`DevCluster::stop`].
pub struct DevCluster {
    /// Where clients reach each provider's REST API (after routing).
    pub api: [SocketAddr; 3],
    /// Each provider's configuration.
    pub configs: [ProviderConfig; 3],
    /// The certificate fingerprint each public API presents (clients pin
    /// it), or `None` for plain HTTP.
    pub api_fingerprints: Option<[Fingerprint; 3]>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<Result<(), ServerError>>>,
}

/// A listener on a loopback port below the kernel's ephemeral range
/// (32768 and up): ports bound to 0 come from that range, which outgoing
/// connections also draw from, so a port chosen by probing and bound again
/// later could meanwhile be some client socket's (two demos at once, or
/// the demo's own front ends talking to the providers). The walk starts at
/// a per-process offset and never reuses a port in this process.
pub fn listen_below_ephemeral() -> std::io::Result<TcpListener> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() * 397) % SPAN;
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start + k) % SPAN;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            return Ok(l);
        }
    }
    TcpListener::bind("127.0.0.1:0")
}

fn free_ports(n: usize) -> std::io::Result<Vec<SocketAddr>> {
    // Hold all listeners until every port is chosen, so none repeats.
    let probes: Vec<TcpListener> = (0..n)
        .map(|_| listen_below_ephemeral())
        .collect::<Result<_, _>>()?;
    probes.iter().map(|l| l.local_addr()).collect()
}

impl DevCluster {
    /// Makes identities and configurations and starts the three providers.
    /// `route(provider, listener, addr)` returns the address others should
    /// use to reach `addr` (identity, or a relay's address).
    pub async fn start(
        options: DevOptions,
        mut route: impl FnMut(usize, Listener, SocketAddr) -> std::io::Result<SocketAddr>,
    ) -> Result<DevCluster, ServerError> {
        let ports = free_ports(12)?;
        let mut fingerprints: Vec<Fingerprint> = Vec::with_capacity(3);
        for i in 0..3 {
            let dir = options.root.join(format!("p{i}"));
            let identity = match Identity::load(&dir) {
                Ok(id) => id,
                Err(_) => {
                    let id = Identity::generate(&format!("provider-{i}"))
                        .map_err(ServerError::NewIdentity)?;
                    id.save(&dir, false).map_err(ServerError::NewIdentity)?;
                    id
                }
            };
            fingerprints.push(identity.fingerprint());
        }
        let listen: Vec<ListenConfig> = (0..3)
            .map(|i| ListenConfig {
                control: ports[4 * i],
                smc: ports[4 * i + 1],
                admin: ports[4 * i + 2],
                api: ports[4 * i + 3],
                api_plaintext_insecure: options.api_plaintext_insecure,
            })
            .collect();
        let mut routed: Vec<(SocketAddr, SocketAddr, SocketAddr)> = Vec::with_capacity(3);
        for (i, l) in listen.iter().enumerate() {
            routed.push((
                route(i, Listener::Control, l.control)?,
                route(i, Listener::Smc, l.smc)?,
                route(i, Listener::Api, l.api)?,
            ));
        }
        let configs: [ProviderConfig; 3] = std::array::from_fn(|i| ProviderConfig {
            id: i as u8,
            data_dir: options.root.join(format!("p{i}")),
            listen: listen[i].clone(),
            peers: (0..3)
                .filter(|j| *j != i)
                .map(|j| PeerConfig {
                    id: j as u8,
                    control: routed[j].0,
                    smc: routed[j].1,
                    fingerprint: fingerprints[j],
                })
                .collect(),
            timeouts: Timeouts {
                heartbeat_interval: Duration::from_millis(200),
                ..Timeouts::default()
            },
            jobs: JobsConfig {
                lanes: options.lanes,
                ..JobsConfig::default()
            },
            policy: PolicyConfig::default(),
            secure_sum: SecureSumConfig::default(),
            sequencer: SequencerSettings::default(),
            tables: options.tables.clone(),
            accounts: options.accounts.clone(),
            log: options.log.clone(),
            api_tls: ApiTlsConfig::default(),
        });
        let stop = CancellationToken::new();
        let mut tasks = Vec::with_capacity(3);
        for c in &configs {
            let c = c.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                crate::server::run(c, stop.cancelled_owned()).await
            }));
        }
        Ok(DevCluster {
            api: [routed[0].2, routed[1].2, routed[2].2],
            configs,
            api_fingerprints: (!options.api_plaintext_insecure)
                .then(|| [fingerprints[0], fingerprints[1], fingerprints[2]]),
            stop,
            tasks,
        })
    }

    /// Base URLs of the three REST APIs: `https://ADDR#sha256=FINGERPRINT`
    /// (the pinned form clients take), or `http://ADDR` for plain HTTP.
    pub fn urls(&self) -> [String; 3] {
        std::array::from_fn(|i| match &self.api_fingerprints {
            Some(fps) => format!("https://{}#sha256={}", self.api[i], fps[i]),
            None => format!("http://{}", self.api[i]),
        })
    }

    /// Stops the providers and waits for them.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.stop.cancel();
        for t in self.tasks {
            match t.await {
                Ok(r) => r?,
                Err(e) => return Err(ServerError::Join(e)),
            }
        }
        Ok(())
    }
}
