//! The provider's configuration file (TOML).
//!
//! `sharecall-provider run --config provider.toml` reads one
//! [`ProviderConfig`]. Only `id`, `data_dir` and `peers` are required; every
//! other section may be left out and takes the defaults documented on its
//! fields. `docs/provider.example.toml` is a complete, commented example.
//!
//! Unknown keys are refused everywhere: a misspelt setting that silently
//! falls back to its default is worse than a refusal to start.

use std::fmt;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::Fingerprint;
use crate::orchestration::task::TaskKind;

/// Provider ids: there are exactly three providers, 0, 1 and 2.
const PROVIDER_IDS: [u8; 3] = [0, 1, 2];

/// Why a configuration could not be loaded, is invalid, or could not be
/// written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `[api_tls]` names a certificate without a key or a key without a
    /// certificate.
    #[error("[api_tls]: set both `cert` and `key`, or neither (then the provider's own certificate is used)")]
    ApiTlsHalf,
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An error in a particular file; `source` says what is wrong.
    /// [`ProviderConfig::load`] wraps parse and validation errors in this.
    #[error("config file {}: {source}", path.display())]
    InFile {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        source: Box<ConfigError>,
    },
    /// Not valid TOML, or not the expected shape (unknown key, missing
    /// required key, wrong type, bad address or fingerprint). toml's message
    /// gives the line and column.
    #[error("{0}")]
    Parse(#[source] toml::de::Error),
    /// `id` is not 0, 1 or 2.
    #[error("id = {0} is out of range: provider ids are 0, 1 and 2")]
    BadId(u8),
    /// A peer's id is not 0, 1 or 2.
    #[error("peer id {0} is out of range: provider ids are 0, 1 and 2")]
    BadPeerId(u8),
    /// `peers` lists this provider itself.
    #[error("peers lists this provider's own id {0}; list only the two other providers")]
    PeerIsSelf(u8),
    /// `peers` lists one id twice.
    #[error("peer {0} is listed twice in peers")]
    DuplicatePeer(u8),
    /// `peers` lacks one of the two other providers.
    #[error("peer {0} is missing: peers must list exactly the two other providers")]
    MissingPeer(u8),
    /// Two peers are pinned to the same certificate, so a connection could
    /// not be attributed to one of them.
    #[error("peers {0} and {1} have the same fingerprint; each provider has its own certificate")]
    DuplicateFingerprint(u8, u8),
    /// Two of this provider's listeners would bind the same address.
    #[error(
        "listen.{first} and listen.{second} both use {addr}; each listener needs its own address"
    )]
    ListenClash {
        /// Name of the first listener (`control`, `smc` or `admin`).
        first: &'static str,
        /// Name of the second listener.
        second: &'static str,
        /// The address they share (the second one's, as written).
        addr: SocketAddr,
    },
    /// A timeout or interval is zero.
    #[error("timeouts.{0} must be greater than zero")]
    ZeroTimeout(&'static str),
    /// `suspect_after` is not shorter than `down_after`.
    #[error(
        "timeouts.suspect_after ({}) must be shorter than timeouts.down_after ({})",
        humantime_serde::re::humantime::format_duration(*suspect_after),
        humantime_serde::re::humantime::format_duration(*down_after)
    )]
    SuspectNotBeforeDown {
        /// The configured `suspect_after`.
        suspect_after: Duration,
        /// The configured `down_after`.
        down_after: Duration,
    },
    /// Heartbeats are not sent often enough for a healthy peer to stay
    /// available.
    #[error(
        "timeouts.heartbeat_interval ({}) must be shorter than timeouts.suspect_after ({}), \
         or healthy peers would be suspected between heartbeats",
        humantime_serde::re::humantime::format_duration(*heartbeat_interval),
        humantime_serde::re::humantime::format_duration(*suspect_after)
    )]
    HeartbeatTooSlow {
        /// The configured `heartbeat_interval`.
        heartbeat_interval: Duration,
        /// The configured `suspect_after`.
        suspect_after: Duration,
    },
    /// `policy.max_task_skew` is zero, which would refuse every task.
    #[error("policy.max_task_skew must be greater than zero")]
    ZeroTaskSkew,
    /// `policy.allowed_kinds` names a task kind the provider does not know.
    #[error("policy.allowed_kinds: {0}")]
    UnknownTaskKind(#[source] crate::orchestration::task::UnknownKind),
    /// `tables.variant` is not a table variant.
    #[error("tables.variant: {0}")]
    BadVariant(String),
    /// `log.retention` or `log.seal_interval` is out of range.
    #[error("log.{0} is out of range: {1:?} (retention at least 1s, seal_interval 10ms..=1min)")]
    BadShareLog(&'static str, Duration),
    /// `tables.max_log_skew` is out of range.
    #[error("tables.max_log_skew must be between 1s and 1h, not {0:?}")]
    BadLogSkew(Duration),
    /// `accounts` is not valid.
    #[error("accounts: {0}")]
    BadAccounts(String),
    /// `jobs.lanes` is zero.
    #[error("jobs.lanes must be at least 1 (it is the number of concurrent SMC sessions)")]
    NoLanes,
    /// `log.filter` is not valid `tracing` EnvFilter syntax.
    #[error("log.filter {filter:?} is not a valid tracing filter: {message}")]
    BadLogFilter {
        /// The filter as written.
        filter: String,
        /// Why it was refused.
        message: String,
    },
    /// The configuration could not be written as TOML (e.g. a data directory
    /// path that is not UTF-8).
    #[error("cannot write the configuration as TOML: {0}")]
    Serialize(#[source] toml::ser::Error),
}

impl ConfigError {
    /// The error itself, without the file it was found in: for matching on
    /// what is wrong regardless of whether it came from
    /// [`ProviderConfig::load`] or [`ProviderConfig::from_toml_str`].
    pub fn cause(&self) -> &ConfigError {
        match self {
            ConfigError::InFile { source, .. } => source.cause(),
            other => other,
        }
    }
}

/// One provider's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// This provider's id: 0, 1 or 2. Required.
    pub id: u8,
    /// Directory holding this provider's identity (`provider.cert.pem` and
    /// `provider.key.pem`, see [`crate::identity`]), as made by
    /// `sharecall-provider init`. Required. A relative path is relative to
    /// the process's working directory.
    pub data_dir: PathBuf,
    /// Where this provider listens. Optional; see [`ListenConfig`].
    #[serde(default)]
    pub listen: ListenConfig,
    /// The two other providers: where to reach them and which certificate
    /// to expect. Required, exactly two entries.
    pub peers: Vec<PeerConfig>,
    /// Phase timeouts and heartbeat timing. Optional; see [`Timeouts`].
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Concurrency and retries. Optional; see [`JobsConfig`].
    #[serde(default)]
    pub jobs: JobsConfig,
    /// Which tasks this provider takes part in. Optional; see
    /// [`PolicyConfig`].
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The secure-sum demo task. Optional; see [`SecureSumConfig`].
    #[serde(default)]
    pub secure_sum: SecureSumConfig,
    /// Request ordering (raft). Optional; see [`SequencerSettings`].
    #[serde(default)]
    pub sequencer: SequencerSettings,
    /// The lookup table. Optional; see [`TablesConfig`].
    #[serde(default)]
    pub tables: TablesConfig,
    /// Accounts: enrollment and rate limits. Optional; see
    /// [`AccountsConfig`].
    #[serde(default)]
    pub accounts: AccountsConfig,
    /// Logging. Optional; see [`LogConfig`].
    #[serde(default)]
    pub log: LogConfig,
    /// The certificate of the public API. Optional; see [`ApiTlsConfig`].
    #[serde(default)]
    pub api_tls: ApiTlsConfig,
}

/// The public API's certificate (section `[api_tls]`). By default the
/// provider presents its own certificate (`provider.cert.pem`, made by
/// `sharecall-provider init`), which clients pin by the fingerprint
/// `sharecall-provider fingerprint` prints. An operator may instead give a
/// CA-issued chain and its key, which clients without a pin verify against
/// the system's roots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiTlsConfig {
    /// PEM file with the certificate chain, leaf first. Set together with
    /// `key`.
    pub cert: Option<PathBuf>,
    /// PEM file with the chain's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// The lookup table (section `[tables]`). All three providers must use the
/// same variant; a batch coordinated by a provider with another variant is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// `"hash"` (PRF tag picks the bucket), `"list"` (compare with every
    /// entry) or `"tree"` / `"tree/<fanout>"` (sorted, fanout 2..=4096,
    /// default 1024). Default `"hash"`.
    pub variant: String,
    /// Most ordered requests executed in one SMC job. Default `256`.
    pub max_batch: usize,
    /// Read batches (resolutions only) the coordinator runs at once, each
    /// on its own SMC lane; more overlap network rounds under load.
    /// Default `2`.
    pub read_jobs: usize,
    /// How often the leader logs a sweep that removes expired entries.
    /// Default `"60s"`.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// How long `POST /v1/requests` waits for execution before answering
    /// 202 (the client then polls). Default `"5s"`.
    #[serde(with = "humantime_serde")]
    pub answer_wait: Duration,
    /// How far a write batch's log times (requests' and sweeps') may lie
    /// ahead of this provider's clock, or below the log's time, before
    /// this provider refuses them. Between 1 s and 1 h; default `"30s"`.
    #[serde(with = "humantime_serde")]
    pub max_log_skew: Duration,
}

impl Default for TablesConfig {
    fn default() -> Self {
        TablesConfig {
            variant: "hash".into(),
            max_batch: 256,
            read_jobs: 2,
            sweep_interval: Duration::from_secs(60),
            answer_wait: Duration::from_secs(5),
            max_log_skew: Duration::from_secs(30),
        }
    }
}

/// Accounts (section `[accounts]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// `"open"`: any key may enroll itself; `"token"`: enrollment needs one
    /// of `tokens`; `"closed"`: no new enrollments. Default `"token"`.
    pub enrollment: String,
    /// Enrollment tokens accepted when `enrollment = "token"`, each either
    /// `{ token = "...", uses = N }` or a plain string (one use). Uses are
    /// counted durably. Default none.
    pub tokens: Vec<TokenConfig>,
    /// Requests per second one account may send to this provider
    /// (sustained). Default `50`.
    pub rate_per_second: u32,
    /// Burst above the sustained rate. Default `100`.
    pub burst: u32,
    /// Operator accounts (hex ed25519 public keys) allowed to bulk-import
    /// entries on behalf of other owners (`sharecall import`). Default
    /// none.
    pub importers: Vec<String>,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            enrollment: "token".into(),
            tokens: Vec::new(),
            rate_per_second: 50,
            burst: 100,
            importers: Vec::new(),
        }
    }
}

/// One enrollment token: a plain string (single use) or a table with a
/// number of uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenConfig {
    /// A token that enrolls one account.
    Single(String),
    /// A token that enrolls up to `uses` accounts.
    Counted {
        /// The secret the client presents.
        token: String,
        /// How many accounts it may enroll (at least 1). Default `1`.
        #[serde(default = "one_use")]
        uses: u64,
    },
}

fn one_use() -> u64 {
    1
}

impl TokenConfig {
    /// The secret.
    pub fn token(&self) -> &str {
        match self {
            TokenConfig::Single(t) | TokenConfig::Counted { token: t, .. } => t,
        }
    }

    /// How many accounts it may enroll.
    pub fn uses(&self) -> u64 {
        match self {
            TokenConfig::Single(_) => 1,
            TokenConfig::Counted { uses, .. } => *uses,
        }
    }
}

/// The addresses this provider listens on (section `[listen]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// gRPC command/control streams (gateway ↔ peer). Default
    /// `127.0.0.1:7400`.
    pub control: SocketAddr,
    /// SMC mesh (mutually authenticated TLS between providers). Default
    /// `127.0.0.1:7401`.
    pub smc: SocketAddr,
    /// HTTP admin API and Prometheus `/metrics`. Default `127.0.0.1:7402`.
    /// Keep it on a private interface: it is not authenticated.
    pub admin: SocketAddr,
    /// The public REST API clients use (`/v1/requests`, `/v1/accounts`,
    /// `/v1/openapi.json`), served over TLS 1.3 with the certificate of
    /// [`ProviderConfig::api_tls`]. Default `127.0.0.1:7403`; put it on the
    /// interface clients reach.
    pub api: SocketAddr,
    /// Serve `api` as plain HTTP instead of TLS. Default `false`. Anyone
    /// who sees a client's three connections then reads every share and
    /// request id: only for a TLS-terminating proxy on the same host or a
    /// test. The provider logs a warning at start when it is set.
    pub api_plaintext_insecure: bool,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            control: SocketAddr::from(([127, 0, 0, 1], 7400)),
            smc: SocketAddr::from(([127, 0, 0, 1], 7401)),
            admin: SocketAddr::from(([127, 0, 0, 1], 7402)),
            api: SocketAddr::from(([127, 0, 0, 1], 7403)),
            api_plaintext_insecure: false,
        }
    }
}

/// One of the two other providers (an entry of `[[peers]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's provider id (0, 1 or 2, not this provider's). Required.
    pub id: u8,
    /// The peer's gRPC command/control address (its `listen.control`).
    /// Required.
    pub control: SocketAddr,
    /// The peer's SMC mesh address (its `listen.smc`). Required.
    pub smc: SocketAddr,
    /// SHA-256 fingerprint of the peer's certificate, as printed by its
    /// `sharecall-provider init`: 64 hex digits, optionally colon-separated
    /// or prefixed `sha256:`. Required. Connections presenting any other
    /// certificate are refused.
    pub fingerprint: Fingerprint,
}

/// Timeouts and heartbeat timing (section `[timeouts]`), written as
/// humantime strings such as `"2s"`, `"500ms"` or `"1m 30s"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// How long a peer has to answer Prepare (review the task). Default `2s`.
    #[serde(with = "humantime_serde")]
    pub prepare: Duration,
    /// How long a peer has to answer Link (SMC mesh and PRG seeds). Default
    /// `10s`: a fresh link is a TLS handshake and seed exchange per pair.
    #[serde(with = "humantime_serde")]
    pub link: Duration,
    /// How long a peer has to answer one Session (one computation). Default
    /// `15s`.
    #[serde(with = "humantime_serde")]
    pub session: Duration,
    /// Deadline of each receive inside the SMC engine. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub smc_op: Duration,
    /// How often each peer is sent a heartbeat. Default `500ms`. Must be
    /// shorter than `suspect_after`.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A peer with no successful heartbeat for this long is suspect.
    /// Default `1500ms` (three missed heartbeats). Must be shorter than
    /// `down_after`.
    #[serde(with = "humantime_serde")]
    pub suspect_after: Duration,
    /// A peer with no successful heartbeat for this long is down. Default
    /// `5s`.
    #[serde(with = "humantime_serde")]
    pub down_after: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            prepare: Duration::from_secs(2),
            link: Duration::from_secs(10),
            session: Duration::from_secs(15),
            smc_op: Duration::from_secs(5),
            heartbeat_interval: Duration::from_millis(500),
            suspect_after: Duration::from_millis(1500),
            down_after: Duration::from_secs(5),
        }
    }
}

impl Timeouts {
    /// Every setting with its key, for checks that apply to all of them.
    fn named(&self) -> [(&'static str, Duration); 7] {
        [
            ("prepare", self.prepare),
            ("link", self.link),
            ("session", self.session),
            ("smc_op", self.smc_op),
            ("heartbeat_interval", self.heartbeat_interval),
            ("suspect_after", self.suspect_after),
            ("down_after", self.down_after),
        ]
    }
}

/// Concurrency and retries (section `[jobs]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// SMC lanes, i.e. the maximum number of sessions running at once.
    /// Default `8`. At least 1. All three providers should use the same
    /// value.
    pub lanes: u32,
    /// Jobs that may wait for a free lane; beyond this, new jobs are refused
    /// at once (back-pressure) instead of queueing without bound. Default
    /// `1024`. `0` means a job is refused unless a lane is free.
    pub max_queued: usize,
    /// How often a failed Session is retried before the job is aborted on
    /// all peers. Default `1`.
    pub session_retries: u32,
    /// How often a Prepare or Link that failed recoverably or timed out is
    /// retried. Default `2`.
    pub phase_retries: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            lanes: 8,
            max_queued: 1024,
            session_retries: 1,
            phase_retries: 2,
        }
    }
}

/// This provider's own review of the tasks it is asked to run (section
/// `[policy]`): each provider decides for itself, so no task runs unless
/// all three agree to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// A task whose signed issue time is further than this from this
    /// provider's clock is refused, which bounds how long a captured task
    /// could be replayed. Default `60s`; must be greater than zero.
    #[serde(with = "humantime_serde")]
    pub max_task_skew: Duration,
    /// Task kinds this provider takes part in (wire names, e.g.
    /// `"secure-sum"`, `"noop"`); tasks of other kinds are refused with
    /// DENIED. Default: every kind the provider knows. An empty list
    /// refuses every task.
    pub allowed_kinds: Vec<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            max_task_skew: Duration::from_secs(60),
            allowed_kinds: crate::kinds::known()
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
        }
    }
}

/// The secure-sum demo task (section `[secure_sum]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecureSumConfig {
    /// This provider's private contribution to a secure sum. Default `0`.
    /// The other providers never see it, only the sum and average of all
    /// three.
    pub value: u64,
}

/// Request ordering with raft (section `[sequencer]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequencerSettings {
    /// Compact the raft log into a snapshot of the applied state after this
    /// many applied entries. Default `10000`; at least 1.
    pub compact_every: u64,
}

impl Default for SequencerSettings {
    fn default() -> Self {
        SequencerSettings {
            compact_every: 10_000,
        }
    }
}

/// Logging (section `[log]`): the process's diagnostic log (`filter`) and
/// the share log of pseudonym requests (`enabled`, `retention`,
/// `seal_interval`; docs/ARCHITECTURE.md, "Share log").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` EnvFilter directives, e.g. `"info"` or
    /// `"info,sharecall_provider::smc=debug"`. Default `"info"`.
    pub filter: String,
    /// Whether the share log records requests. All three providers must
    /// agree (their chains are compared). Default `true`.
    pub enabled: bool,
    /// How long share-log records are kept, by log time; older ones are
    /// purged at the next sweep (a logged, deterministic purge). At least
    /// 1 s. Default `"180days"`.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// How long a finished read batch may wait to be sealed into the
    /// share log (with no writes coming, the leader then logs a sweep).
    /// 10 ms..=1 min. Default `"1s"`.
    #[serde(with = "humantime_serde")]
    pub seal_interval: Duration,
}

impl Default for LogConfig {
    fn default() -> Self {
        let s = crate::sharelog::Settings::default();
        LogConfig {
            filter: "info".to_string(),
            enabled: s.enabled,
            retention: s.retention,
            seal_interval: s.seal_interval,
        }
    }
}

impl LogConfig {
    /// The share log's settings.
    pub fn share_log(&self) -> crate::sharelog::Settings {
        crate::sharelog::Settings {
            enabled: self.enabled,
            retention: self.retention,
            seal_interval: self.seal_interval,
        }
    }
}

impl ProviderConfig {
    /// Reads, parses and validates the configuration file at `path`.
    /// Parse and validation errors come wrapped in
    /// [`ConfigError::InFile`] naming the file.
    pub fn load(path: &Path) -> Result<ProviderConfig, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ProviderConfig::from_toml_str(&text).map_err(|e| ConfigError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses and validates a configuration held in a string.
    pub fn from_toml_str(text: &str) -> Result<ProviderConfig, ConfigError> {
        let config: ProviderConfig = toml::from_str(text).map_err(ConfigError::Parse)?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the configuration as TOML that [`ProviderConfig::from_toml_str`]
    /// reads back unchanged (for test harnesses and tooling).
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(ConfigError::Serialize)
    }

    /// The peer with provider id `id`, if configured.
    pub fn peer(&self, id: u8) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.id == id)
    }

    /// Checks what the types cannot: ids, the peer list, distinct
    /// listeners, sensible timeouts, at least one lane, known task kinds
    /// and a valid log filter. Returns the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !PROVIDER_IDS.contains(&self.id) {
            return Err(ConfigError::BadId(self.id));
        }
        self.validate_peers()?;
        self.validate_listen()?;
        self.validate_timeouts()?;
        if self.api_tls.cert.is_some() != self.api_tls.key.is_some() {
            return Err(ConfigError::ApiTlsHalf);
        }
        if self.jobs.lanes == 0 {
            return Err(ConfigError::NoLanes);
        }
        if self.policy.max_task_skew.is_zero() {
            return Err(ConfigError::ZeroTaskSkew);
        }
        // A misspelt kind would otherwise silently refuse that kind's tasks.
        self.tables
            .variant
            .parse::<crate::tables::Variant>()
            .map_err(ConfigError::BadVariant)?;
        if self.tables.max_batch == 0 {
            return Err(ConfigError::BadVariant(
                "tables.max_batch must be at least 1".into(),
            ));
        }
        if self.log.retention < Duration::from_secs(1) {
            return Err(ConfigError::BadShareLog("retention", self.log.retention));
        }
        if self.log.seal_interval < Duration::from_millis(10)
            || self.log.seal_interval > Duration::from_secs(60)
        {
            return Err(ConfigError::BadShareLog(
                "seal_interval",
                self.log.seal_interval,
            ));
        }
        if self.tables.max_log_skew < Duration::from_secs(1)
            || self.tables.max_log_skew > Duration::from_secs(3600)
        {
            return Err(ConfigError::BadLogSkew(self.tables.max_log_skew));
        }
        if !["open", "token", "closed"].contains(&self.accounts.enrollment.as_str()) {
            return Err(ConfigError::BadAccounts(format!(
                "enrollment must be \"open\", \"token\" or \"closed\", not {:?}",
                self.accounts.enrollment
            )));
        }
        if let Some(t) = self
            .accounts
            .tokens
            .iter()
            .find(|t| t.token().is_empty() || t.uses() == 0)
        {
            return Err(ConfigError::BadAccounts(format!(
                "every enrollment token must be non-empty with at least 1 use (one has {} uses)",
                t.uses()
            )));
        }
        if self.accounts.rate_per_second == 0 || self.accounts.burst == 0 {
            return Err(ConfigError::BadAccounts(
                "rate_per_second and burst must be at least 1".into(),
            ));
        }
        let known = crate::kinds::known();
        for kind in &self.policy.allowed_kinds {
            TaskKind::parse(kind, &known).map_err(ConfigError::UnknownTaskKind)?;
        }
        // Checked here so that a typo stops the provider at start-up with the
        // file's name, rather than when logging is set up.
        tracing_subscriber::EnvFilter::try_new(&self.log.filter).map_err(|e| {
            ConfigError::BadLogFilter {
                filter: self.log.filter.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(())
    }

    fn validate_peers(&self) -> Result<(), ConfigError> {
        for (i, peer) in self.peers.iter().enumerate() {
            if !PROVIDER_IDS.contains(&peer.id) {
                return Err(ConfigError::BadPeerId(peer.id));
            }
            if peer.id == self.id {
                return Err(ConfigError::PeerIsSelf(peer.id));
            }
            for earlier in &self.peers[..i] {
                if earlier.id == peer.id {
                    return Err(ConfigError::DuplicatePeer(peer.id));
                }
                if earlier.fingerprint == peer.fingerprint {
                    return Err(ConfigError::DuplicateFingerprint(earlier.id, peer.id));
                }
            }
        }
        // Ids are now in range, distinct and not ours, so the only possible
        // remaining fault is a missing one.
        for id in PROVIDER_IDS {
            if id != self.id && self.peer(id).is_none() {
                return Err(ConfigError::MissingPeer(id));
            }
        }
        Ok(())
    }

    fn validate_listen(&self) -> Result<(), ConfigError> {
        let l = &self.listen;
        let named = [
            ("control", l.control),
            ("smc", l.smc),
            ("admin", l.admin),
            ("api", l.api),
        ];
        for (i, &(first, a)) in named.iter().enumerate() {
            for &(second, b) in &named[i + 1..] {
                if clash(a, b) {
                    return Err(ConfigError::ListenClash {
                        first,
                        second,
                        addr: b,
                    });
                }
            }
        }
        Ok(())
    }

    fn validate_timeouts(&self) -> Result<(), ConfigError> {
        let t = &self.timeouts;
        if let Some((name, _)) = t.named().into_iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::ZeroTimeout(name));
        }
        if t.suspect_after >= t.down_after {
            return Err(ConfigError::SuspectNotBeforeDown {
                suspect_after: t.suspect_after,
                down_after: t.down_after,
            });
        }
        if t.heartbeat_interval >= t.suspect_after {
            return Err(ConfigError::HeartbeatTooSlow {
                heartbeat_interval: t.heartbeat_interval,
                suspect_after: t.suspect_after,
            });
        }
        Ok(())
    }
}

/// Whether two listeners would fail to bind both: same port, and the same
/// IP or one of them the wildcard (which takes the port on every
/// interface). Port 0 asks the OS for a fresh port each time, so it never
/// clashes.
fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

impl fmt::Display for ProviderConfig {
    /// A one-line summary for the start-up log (no secrets are in the
    /// configuration, but the full dump is noisy).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "provider {} (control {}, smc {}, admin {}, api {}, {} lanes, data {})",
            self.id,
            self.listen.control,
            self.listen.smc,
            self.listen.admin,
            self.listen.api,
            self.jobs.lanes,
            self.data_dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../docs/provider.example.toml");

    fn fp(byte: u8) -> String {
        hex::encode([byte; 32])
    }

    /// The smallest valid configuration for provider 0, plus `top` (extra
    /// top-level keys, placed before any table) and `tables` (extra
    /// sections, placed after the peers).
    fn minimal_with(top: &str, tables: &str) -> String {
        format!(
            r#"
id = 0
data_dir = "/var/lib/sharecall/p0"
{top}

[[peers]]
id = 1
control = "127.0.0.1:7410"
smc = "127.0.0.1:7411"
fingerprint = "{f1}"

[[peers]]
id = 2
control = "127.0.0.1:7420"
smc = "127.0.0.1:7421"
fingerprint = "{f2}"

{tables}
"#,
            f1 = fp(0x11),
            f2 = fp(0x22),
        )
    }

    fn minimal() -> ProviderConfig {
        ProviderConfig::from_toml_str(&minimal_with("", "")).expect("minimal config is valid")
    }

    fn invalid(config: &ProviderConfig) -> ConfigError {
        config.validate().expect_err("config must be refused")
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = minimal();
        assert_eq!(c.id, 0);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/sharecall/p0"));
        assert_eq!(c.listen, ListenConfig::default());
        assert_eq!(c.listen.control.to_string(), "127.0.0.1:7400");
        assert_eq!(c.listen.smc.to_string(), "127.0.0.1:7401");
        assert_eq!(c.listen.admin.to_string(), "127.0.0.1:7402");
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(c.timeouts.prepare, Duration::from_secs(2));
        assert_eq!(c.timeouts.link, Duration::from_secs(10));
        assert!(c.log.enabled);
        assert_eq!(c.log.retention, Duration::from_secs(180 * 24 * 3600));
        assert_eq!(c.timeouts.session, Duration::from_secs(15));
        assert_eq!(c.timeouts.smc_op, Duration::from_secs(5));
        assert_eq!(c.timeouts.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(c.timeouts.suspect_after, Duration::from_millis(1500));
        assert_eq!(c.timeouts.down_after, Duration::from_secs(5));
        assert_eq!(c.jobs.lanes, 8);
        assert_eq!(c.jobs.max_queued, 1024);
        assert_eq!(c.jobs.session_retries, 1);
        assert_eq!(c.jobs.phase_retries, 2);
        assert_eq!(c.secure_sum.value, 0);
        assert_eq!(c.policy.max_task_skew, Duration::from_secs(60));
        assert_eq!(
            c.policy.allowed_kinds,
            vec!["secure-sum", "noop", "execute", "log-check"]
        );
        assert_eq!(c.tables, TablesConfig::default());
        assert_eq!(c.tables.variant, "hash");
        assert_eq!(c.accounts, AccountsConfig::default());
        assert_eq!(c.accounts.enrollment, "token");
        assert_eq!(c.log.filter, "info");
        assert_eq!(c.peers.len(), 2);
        let p2 = c.peer(2).expect("peer 2");
        assert_eq!(p2.control.to_string(), "127.0.0.1:7420");
        assert_eq!(p2.smc.to_string(), "127.0.0.1:7421");
        assert_eq!(p2.fingerprint, Fingerprint([0x22; 32]));
        assert!(c.peer(0).is_none());
        assert!(c.peer(7).is_none());
    }

    #[test]
    fn partial_section_keeps_other_defaults() {
        let c = ProviderConfig::from_toml_str(&minimal_with(
            "",
            "[timeouts]\nprepare = \"250ms\"\n[jobs]\nlanes = 2\n",
        ))
        .expect("valid");
        assert_eq!(c.timeouts.prepare, Duration::from_millis(250));
        assert_eq!(c.timeouts.link, Duration::from_secs(10));
        assert_eq!(c.jobs.lanes, 2);
        assert_eq!(c.jobs.max_queued, 1024);
    }

    #[test]
    fn example_file_parses_and_is_complete() {
        let c = ProviderConfig::from_toml_str(EXAMPLE).expect("example config is valid");
        assert_eq!(c.id, 0);
        assert!(c.peer(1).is_some() && c.peer(2).is_some());
        // The example sets every key to its default, so it documents the
        // defaults truthfully.
        assert_eq!(c.listen, ListenConfig::default());
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(c.jobs, JobsConfig::default());
        assert_eq!(c.policy, PolicyConfig::default());
        assert_eq!(c.secure_sum, SecureSumConfig::default());
        assert_eq!(c.log, LogConfig::default());
        assert_eq!(c.log.share_log(), crate::sharelog::Settings::default());
        // And it mentions every key, so none goes undocumented.
        let table: toml::Table = toml::from_str(EXAMPLE).expect("toml");
        let written =
            toml::from_str::<toml::Table>(&c.to_toml_string().expect("ser")).expect("toml");
        for (section, value) in &written {
            let example = table.get(section).expect(section);
            if let (Some(w), Some(e)) = (value.as_table(), example.as_table()) {
                for key in w.keys() {
                    assert!(e.contains_key(key), "example lacks {section}.{key}");
                }
            }
        }
    }

    #[test]
    fn round_trips_through_toml() {
        let mut c = minimal();
        c.timeouts.smc_op = Duration::from_millis(1234);
        c.secure_sum.value = 42;
        c.log.filter = "debug,h2=info".into();
        let text = c.to_toml_string().expect("serialise");
        let back = ProviderConfig::from_toml_str(&text).expect("parse back");
        assert_eq!(back, c);
    }

    #[test]
    fn load_reads_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("provider.toml");
        fs::write(&path, minimal_with("", "")).expect("write");
        assert_eq!(ProviderConfig::load(&path).expect("load"), minimal());

        // Parse error: names the file and carries toml's line information.
        fs::write(&path, minimal_with("", "[jobs]\nlanes = \"many\"\n")).expect("write");
        let err = ProviderConfig::load(&path).expect_err("bad type");
        let msg = err.to_string();
        assert!(msg.contains("provider.toml"), "{msg}");
        assert!(msg.contains("line"), "{msg}");
        assert!(matches!(err.cause(), ConfigError::Parse(_)));

        // Validation error: names the file too.
        fs::write(&path, minimal_with("", "[jobs]\nlanes = 0\n")).expect("write");
        let err = ProviderConfig::load(&path).expect_err("no lanes");
        assert!(err.to_string().contains("provider.toml"), "{err}");
        assert!(matches!(err.cause(), ConfigError::NoLanes));

        let missing = dir.path().join("absent.toml");
        let err = ProviderConfig::load(&missing).expect_err("missing file");
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err.to_string().contains("absent.toml"), "{err}");
    }

    #[test]
    fn unknown_fields_refused() {
        for (top, tables) in [
            ("colour = \"blue\"", ""),
            ("", "[listen]\ncontrl = \"127.0.0.1:1\"\n"),
            ("", "[timeouts]\nprepare_timeout = \"1s\"\n"),
            ("", "[jobs]\nworkers = 3\n"),
            ("", "[secure_sum]\nvalues = 3\n"),
            ("", "[policy]\nmax_skew = \"1s\"\n"),
            ("", "[log]\nlevel = \"info\"\n"),
            ("", "[metrics]\nenabled = true\n"),
        ] {
            let err = ProviderConfig::from_toml_str(&minimal_with(top, tables))
                .expect_err("unknown key must be refused");
            assert!(matches!(err, ConfigError::Parse(_)), "{err}");
            assert!(err.to_string().contains("unknown field"), "{err}");
        }
        // Inside a peer entry too.
        let text = minimal_with("", "").replacen("id = 1\n", "id = 1\nname = \"bob\"\n", 1);
        let err = ProviderConfig::from_toml_str(&text).expect_err("unknown peer key");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn required_fields_and_bad_values_refused() {
        let err = ProviderConfig::from_toml_str("data_dir = \"/x\"\npeers = []\n")
            .expect_err("id is required");
        assert!(err.to_string().contains("missing field `id`"), "{err}");
        let err = ProviderConfig::from_toml_str("id = 0\npeers = []\n").expect_err("data_dir");
        assert!(err.to_string().contains("data_dir"), "{err}");
        let err = ProviderConfig::from_toml_str("id = 0\ndata_dir = \"/x\"\n").expect_err("peers");
        assert!(err.to_string().contains("peers"), "{err}");

        let text = minimal_with("", "").replacen(&fp(0x11), "abcd", 1);
        let err = ProviderConfig::from_toml_str(&text).expect_err("short fingerprint");
        assert!(err.to_string().contains("64 hex digits"), "{err}");

        let text = minimal_with("", "").replacen("127.0.0.1:7410", "localhost", 1);
        assert!(matches!(
            ProviderConfig::from_toml_str(&text),
            Err(ConfigError::Parse(_))
        ));

        let err =
            ProviderConfig::from_toml_str(&minimal_with("", "[timeouts]\nprepare = \"soon\"\n"))
                .expect_err("bad duration");
        assert!(matches!(err, ConfigError::Parse(_)), "{err}");
    }

    #[test]
    fn fingerprint_forms_accepted() {
        let colon = [0xabu8; 32]
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let text = minimal_with("", "").replacen(&fp(0x11), &format!("sha256:{}", fp(0xab)), 1);
        let text = text.replacen(&fp(0x22), &colon, 1);
        let err = ProviderConfig::from_toml_str(&text).expect_err("same fingerprint twice");
        assert!(
            matches!(err, ConfigError::DuplicateFingerprint(1, 2)),
            "{err}"
        );
    }

    #[test]
    fn bad_id_refused() {
        let mut c = minimal();
        c.id = 3;
        assert!(matches!(invalid(&c), ConfigError::BadId(3)));
    }

    #[test]
    fn peer_list_checked() {
        let mut c = minimal();
        c.peers[0].id = 5;
        assert!(matches!(invalid(&c), ConfigError::BadPeerId(5)));

        let mut c = minimal();
        c.peers[0].id = 0;
        assert!(matches!(invalid(&c), ConfigError::PeerIsSelf(0)));

        let mut c = minimal();
        c.peers[1].id = 1;
        assert!(matches!(invalid(&c), ConfigError::DuplicatePeer(1)));

        let mut c = minimal();
        c.peers.remove(0);
        assert!(matches!(invalid(&c), ConfigError::MissingPeer(1)));

        let mut c = minimal();
        c.peers.clear();
        assert!(matches!(invalid(&c), ConfigError::MissingPeer(1)));

        let mut c = minimal();
        let extra = c.peers[1].clone();
        c.peers.push(extra);
        assert!(matches!(invalid(&c), ConfigError::DuplicatePeer(2)));

        let mut c = minimal();
        c.peers[1].fingerprint = c.peers[0].fingerprint;
        assert!(matches!(
            invalid(&c),
            ConfigError::DuplicateFingerprint(1, 2)
        ));

        // Another provider's view: provider 2 with peers 0 and 1.
        let mut c = minimal();
        c.id = 2;
        c.peers[1].id = 0;
        c.validate().expect("provider 2 with peers 1 and 0");
    }

    #[test]
    fn listeners_must_differ() {
        let mut c = minimal();
        c.listen.admin = c.listen.control;
        let err = invalid(&c);
        assert!(
            matches!(
                err,
                ConfigError::ListenClash {
                    first: "control",
                    second: "admin",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("127.0.0.1:7400"), "{err}");

        // The wildcard address takes the port on every interface.
        let mut c = minimal();
        c.listen.smc = "0.0.0.0:7400".parse().expect("addr");
        assert!(matches!(
            invalid(&c),
            ConfigError::ListenClash {
                first: "control",
                second: "smc",
                ..
            }
        ));

        // Same port on different interfaces is fine, and so is port 0.
        let mut c = minimal();
        c.listen.smc = "10.0.0.1:7400".parse().expect("addr");
        c.validate().expect("different interfaces");
        let mut c = minimal();
        for a in [
            &mut c.listen.control,
            &mut c.listen.smc,
            &mut c.listen.admin,
            &mut c.listen.api,
        ] {
            *a = "127.0.0.1:0".parse().expect("addr");
        }
        c.validate().expect("ephemeral ports");
    }

    #[test]
    fn timeouts_checked() {
        for name in Timeouts::default().named().map(|(n, _)| n) {
            let mut c = minimal();
            let t = &mut c.timeouts;
            let field = match name {
                "prepare" => &mut t.prepare,
                "link" => &mut t.link,
                "session" => &mut t.session,
                "smc_op" => &mut t.smc_op,
                "heartbeat_interval" => &mut t.heartbeat_interval,
                "suspect_after" => &mut t.suspect_after,
                "down_after" => &mut t.down_after,
                other => panic!("untested timeout {other}"),
            };
            *field = Duration::ZERO;
            match invalid(&c) {
                ConfigError::ZeroTimeout(n) => assert_eq!(n, name),
                other => panic!("{name}: {other}"),
            }
        }

        let mut c = minimal();
        c.timeouts.suspect_after = Duration::from_secs(5);
        let err = invalid(&c);
        assert!(
            matches!(err, ConfigError::SuspectNotBeforeDown { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("5s"), "{err}");

        let mut c = minimal();
        c.timeouts.heartbeat_interval = Duration::from_secs(2);
        assert!(matches!(invalid(&c), ConfigError::HeartbeatTooSlow { .. }));
    }

    #[test]
    fn lanes_and_log_filter_checked() {
        let mut c = minimal();
        c.jobs.lanes = 0;
        assert!(matches!(invalid(&c), ConfigError::NoLanes));

        let mut c = minimal();
        c.jobs.max_queued = 0;
        c.validate().expect("no queue is allowed");

        let mut c = minimal();
        c.log.filter = "info,[[[".into();
        assert!(matches!(invalid(&c), ConfigError::BadLogFilter { .. }));
    }

    #[test]
    fn policy_checked() {
        let c = ProviderConfig::from_toml_str(&minimal_with(
            "",
            "[policy]\nallowed_kinds = [\"noop\"]\nmax_task_skew = \"5s\"\n",
        ))
        .expect("valid");
        assert_eq!(c.policy.allowed_kinds, vec!["noop"]);
        assert_eq!(c.policy.max_task_skew, Duration::from_secs(5));

        let mut c = minimal();
        c.policy.allowed_kinds.clear();
        c.validate().expect("refusing every task is allowed");

        let mut c = minimal();
        c.policy.allowed_kinds = vec!["secure_sum".into()];
        let err = invalid(&c);
        assert!(matches!(err, ConfigError::UnknownTaskKind(_)), "{err}");
        assert!(err.to_string().contains("secure_sum"), "{err}");

        let mut c = minimal();
        c.policy.max_task_skew = Duration::ZERO;
        assert!(matches!(invalid(&c), ConfigError::ZeroTaskSkew));
    }

    #[test]
    fn display_summarises() {
        let s = minimal().to_string();
        assert!(s.contains("provider 0"), "{s}");
        assert!(s.contains("127.0.0.1:7400"), "{s}");
    }
}
