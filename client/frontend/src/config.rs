//! The front end's configuration (`sip.toml`), with documented defaults.
//! `docs/sip.example.toml` shows every key; relative paths are relative to
//! the configuration file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// Why a configuration cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The values are inconsistent.
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Section `[sip]`.
    pub sip: Sip,
    /// Section `[listen]`.
    #[serde(default)]
    pub listen: Listen,
    /// Section `[registrar]`.
    #[serde(default)]
    pub registrar: Registrar,
    /// Section `[auth]`.
    #[serde(default)]
    pub auth: Auth,
    /// Section `[sharecall]`: required when `sip.location = "sharecall"`.
    #[serde(default)]
    pub sharecall: Option<Sharecall>,
    /// Section `[limits]`.
    #[serde(default)]
    pub limits: Limits,
    /// Section `[timers]`.
    #[serde(default)]
    pub timers: Timers,
    /// Section `[metrics]`.
    #[serde(default)]
    pub metrics: Metrics,
    /// The folder of the configuration file (relative paths start here).
    #[serde(skip)]
    pub base: PathBuf,
}

/// How requests for other users are answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Stateful proxy (RFC 3261 §16). Default.
    #[default]
    Proxy,
    /// Redirect server: 302 with the resolved Contact.
    Redirect,
}

/// Which location service holds the bindings' endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LocationKind {
    /// The three sharecall providers (section `[sharecall]`). Default.
    #[default]
    Sharecall,
    /// An in-memory table in this process, for comparison benchmarks: no
    /// privacy, no sharing between front ends.
    Plaintext,
}

/// Section `[sip]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sip {
    /// The domains this front end is registrar for (at least one). Users of
    /// other domains are not authenticated here and may only call into it.
    pub domains: Vec<String>,
    /// `proxy` (default) or `redirect`.
    #[serde(default)]
    pub mode: Mode,
    /// `sharecall` (default) or `plaintext`.
    #[serde(default)]
    pub location: LocationKind,
    /// The users file (see [`crate::users`]). Required.
    pub users: PathBuf,
    /// Where the front end keeps its secrets (routing-token key, nonce
    /// key); created with mode 0700. Default `state` beside the config.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Add Record-Route so in-dialog requests come back through this
    /// front end. Default true.
    #[serde(default = "yes")]
    pub record_route: bool,
    /// At most this many transactions at once; beyond, new requests get
    /// 503 with Retry-After. Default 100 000.
    #[serde(default = "default_max_transactions")]
    pub max_transactions: usize,
}

/// Section `[listen]`: which transports to open. At least one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// UDP socket. Default `127.0.0.1:5060`; `"off"` opens none.
    #[serde(default = "default_udp", deserialize_with = "addr_or_off")]
    pub udp: Option<SocketAddr>,
    /// TCP listener. Default `127.0.0.1:5060`; `"off"` opens none.
    #[serde(default = "default_tcp", deserialize_with = "addr_or_off")]
    pub tcp: Option<SocketAddr>,
    /// TLS listener. Default none (`"off"`).
    #[serde(default, deserialize_with = "addr_or_off")]
    pub tls: Option<SocketAddr>,
    /// TLS certificate chain (PEM). Without it (and `tls_key`) a
    /// self-signed certificate for `advertise` is made at start.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The host this front end names itself by in Via, Record-Route and
    /// published endpoints. Default: the IP of the first listener.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Trusted roots (PEM certificates) for outbound TLS to other front
    /// ends. Without it outbound TLS is refused (never unverified).
    /// Default none.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            udp: default_udp(),
            tcp: default_tcp(),
            tls: None,
            tls_cert: None,
            tls_key: None,
            advertise: None,
            tls_ca: None,
        }
    }
}

/// What a registration publishes as the endpoint of an address of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Publish {
    /// This front end's URI with the AOR's routing token (default): calls
    /// come through the front end, which knows the Contacts; Contacts never
    /// leave it, and refreshes cost no sharecall write.
    #[default]
    FrontEnd,
    /// The UA's own Contact when it has exactly one binding reachable
    /// without this front end (UDP, not behind NAT, no Path); the front
    /// end's URI otherwise. Callers' front ends then reach the UA directly.
    Contact,
}

/// Section `[registrar]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registrar {
    /// Expiry when the REGISTER names none, seconds. Default 3600.
    #[serde(default = "default_expires")]
    pub default_expires: u32,
    /// Shorter requested expiries get 423 with Min-Expires. Default 60.
    #[serde(default = "default_min_expires")]
    pub min_expires: u32,
    /// Longer requested expiries are cut to this. Default 86 400.
    #[serde(default = "default_max_expires")]
    pub max_expires: u32,
    /// Bindings per address of record. Default 10.
    #[serde(default = "default_max_bindings")]
    pub max_bindings: usize,
    /// `front-end` (default) or `contact`.
    #[serde(default)]
    pub publish: Publish,
    /// Time to live of a published entry in sharecall, seconds; it is
    /// refreshed when less than half is left. Default 86 400.
    #[serde(default = "default_publish_ttl")]
    pub publish_ttl: u32,
}

impl Default for Registrar {
    fn default() -> Self {
        Registrar {
            default_expires: default_expires(),
            min_expires: default_min_expires(),
            max_expires: default_max_expires(),
            max_bindings: default_max_bindings(),
            publish: Publish::default(),
            publish_ttl: default_publish_ttl(),
        }
    }
}

/// Section `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// The digest realm. Default: the first domain.
    #[serde(default)]
    pub realm: Option<String>,
    /// Challenge algorithms, in order: `SHA-256` and/or `MD5`. Default both.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// How long a nonce is accepted, seconds; after, `stale=true`.
    /// Default 300.
    #[serde(default = "default_nonce_lifetime")]
    pub nonce_lifetime: u32,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            realm: None,
            algorithms: default_algorithms(),
            nonce_lifetime: default_nonce_lifetime(),
        }
    }
}

/// Section `[sharecall]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sharecall {
    /// The three providers' public URLs, P0, P1, P2, each
    /// `https://host:port#sha256=FINGERPRINT`.
    pub providers: Vec<String>,
    /// The account key the front end resolves with (one account for all
    /// its callers, so providers cannot tell which user is calling).
    pub account_key: PathBuf,
    /// How long one sharecall operation may take. Default 5 s.
    #[serde(default = "default_sharecall_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Allow `http://` provider URLs (tests only). Default false.
    #[serde(default)]
    pub allow_plain_http: bool,
}

/// Section `[limits]`: what one peer may cost.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest message, bytes. Default 65 535.
    #[serde(default = "default_max_message")]
    pub max_message: usize,
    /// Open TCP/TLS connections at most; beyond, new ones are closed at
    /// once. Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection idle this long is closed. Default 120 s.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A message must be complete this long after its first byte
    /// (slow-loris bound), and a TLS handshake done. Default 10 s.
    #[serde(default = "default_message_timeout", with = "humantime_serde")]
    pub message_timeout: Duration,
    /// An outbound TCP connect (and TLS handshake) must finish within
    /// this, else the send fails. Default 5 s.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: default_max_message(),
            max_connections: default_max_connections(),
            idle_timeout: default_idle(),
            message_timeout: default_message_timeout(),
            connect_timeout: default_connect_timeout(),
        }
    }
}

/// Section `[timers]`: RFC 3261 T1, T2, T4.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timers {
    /// Default 500 ms.
    #[serde(default = "default_t1", with = "humantime_serde")]
    pub t1: Duration,
    /// Default 4 s.
    #[serde(default = "default_t2", with = "humantime_serde")]
    pub t2: Duration,
    /// Default 5 s.
    #[serde(default = "default_t4", with = "humantime_serde")]
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: default_t1(),
            t2: default_t2(),
            t4: default_t4(),
        }
    }
}

/// Section `[metrics]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Serve Prometheus metrics at `http://ADDR/metrics`. Default off.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, &base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            e => e,
        })
    }

    /// Parses and checks configuration text; relative paths are resolved
    /// against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        c.base = base.to_path_buf();
        c.check()?;
        Ok(c)
    }

    /// `p` resolved against the configuration's folder.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// The digest realm (default: the first domain).
    pub fn realm(&self) -> &str {
        self.auth
            .realm
            .as_deref()
            .or(self.sip.domains.first().map(String::as_str))
            .unwrap_or_default()
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.sip.domains.is_empty() {
            return bad("sip.domains must name at least one domain".into());
        }
        if self
            .sip
            .domains
            .iter()
            .any(|d| d.trim().is_empty() || d.contains(['@', ':', ' ']))
        {
            return bad(format!(
                "sip.domains: {:?} has an invalid domain",
                self.sip.domains
            ));
        }
        if self.listen.udp.is_none() && self.listen.tcp.is_none() && self.listen.tls.is_none() {
            return bad("[listen] opens no transport: set udp, tcp or tls".into());
        }
        if self.listen.tls_cert.is_some() != self.listen.tls_key.is_some() {
            return bad("listen.tls_cert and listen.tls_key go together".into());
        }
        let r = &self.registrar;
        if r.min_expires == 0
            || r.min_expires > r.default_expires
            || r.default_expires > r.max_expires
        {
            return bad(format!(
                "registrar: need 0 < min_expires ({}) <= default_expires ({}) <= max_expires ({})",
                r.min_expires, r.default_expires, r.max_expires
            ));
        }
        if r.max_bindings == 0 {
            return bad("registrar.max_bindings must be at least 1".into());
        }
        if r.publish_ttl < r.max_expires {
            return bad(format!(
                "registrar.publish_ttl ({}) must be at least max_expires ({}): a binding must not outlive its published entry",
                r.publish_ttl, r.max_expires
            ));
        }
        if self.auth.algorithms.is_empty()
            || self
                .auth
                .algorithms
                .iter()
                .any(|a| !a.eq_ignore_ascii_case("SHA-256") && !a.eq_ignore_ascii_case("MD5"))
        {
            return bad(format!(
                "auth.algorithms: {:?}; allowed are \"SHA-256\" and \"MD5\"",
                self.auth.algorithms
            ));
        }
        if self.sip.location == LocationKind::Sharecall {
            match &self.sharecall {
                None => {
                    return bad("sip.location = \"sharecall\" needs a [sharecall] section".into())
                }
                Some(s) if s.providers.len() != 3 => {
                    return bad(format!(
                        "sharecall.providers: expected three URLs (P0, P1, P2), got {}",
                        s.providers.len()
                    ))
                }
                Some(_) => {}
            }
        }
        if self.limits.max_message < 1024 || self.limits.max_connections == 0 {
            return bad(
                "limits: max_message must be at least 1024 and max_connections at least 1".into(),
            );
        }
        let l = &self.limits;
        if l.idle_timeout.is_zero() || l.message_timeout.is_zero() || l.connect_timeout.is_zero() {
            return bad(
                "limits: idle_timeout, message_timeout and connect_timeout must be positive".into(),
            );
        }
        if self.timers.t1.is_zero() || self.timers.t2 < self.timers.t1 {
            return bad("timers: need 0 < t1 <= t2".into());
        }
        Ok(())
    }
}

/// A socket address, or `"off"` for a listener the defaults would open.
fn addr_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e} (write HOST:PORT or \"off\")")))
}

fn yes() -> bool {
    true
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}
fn default_max_transactions() -> usize {
    100_000
}
fn default_udp() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 5060)))
}
fn default_tcp() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 5060)))
}
fn default_expires() -> u32 {
    3600
}
fn default_min_expires() -> u32 {
    60
}
fn default_max_expires() -> u32 {
    86_400
}
fn default_max_bindings() -> usize {
    10
}
fn default_publish_ttl() -> u32 {
    86_400
}
fn default_algorithms() -> Vec<String> {
    vec!["SHA-256".into(), "MD5".into()]
}
fn default_nonce_lifetime() -> u32 {
    300
}
fn default_sharecall_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_message() -> usize {
    65_535
}
fn default_max_connections() -> usize {
    1024
}
fn default_idle() -> Duration {
    Duration::from_secs(120)
}
fn default_message_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_t1() -> Duration {
    Duration::from_millis(500)
}
fn default_t2() -> Duration {
    Duration::from_secs(4)
}
fn default_t4() -> Duration {
    Duration::from_secs(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str =
        "[sip]\ndomains = [\"a.example\"]\nusers = \"users.toml\"\nlocation = \"plaintext\"\n";

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let c = Config::parse(MIN, Path::new("/etc/sc")).expect("test value");
        assert_eq!(c.sip.mode, Mode::Proxy);
        assert_eq!(c.listen.udp, default_udp());
        assert_eq!(c.registrar.default_expires, 3600);
        assert_eq!(c.realm(), "a.example");
        assert_eq!(
            c.path(Path::new("users.toml")),
            PathBuf::from("/etc/sc/users.toml")
        );
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let unknown = format!("{MIN}colour = \"red\"\n");
        assert!(matches!(
            Config::parse(&unknown, Path::new(".")),
            Err(ConfigError::Parse { .. })
        ));
        let no_sharecall = MIN.replace("plaintext", "sharecall");
        let e = Config::parse(&no_sharecall, Path::new("."))
            .expect_err("must fail")
            .to_string();
        assert!(e.contains("[sharecall]"), "{e}");
        let expiry = format!("{MIN}[registrar]\nmin_expires = 7200\n");
        assert!(Config::parse(&expiry, Path::new(".")).is_err());
        let alg = format!("{MIN}[auth]\nalgorithms = [\"SHA-1\"]\n");
        assert!(Config::parse(&alg, Path::new(".")).is_err());
    }

    #[test]
    fn the_example_file_parses_and_listeners_can_be_turned_off() {
        let text = include_str!("../../../docs/sip.example.toml");
        let c = Config::parse(text, Path::new("/etc/sc")).expect("docs/sip.example.toml");
        assert_eq!(c.limits.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.listen.tls_ca, None);
        let off = format!("{MIN}[listen]\nudp = \"off\"\ntls = \"127.0.0.1:5061\"\n");
        let c = Config::parse(&off, Path::new(".")).expect("off");
        assert_eq!(c.listen.udp, None);
        assert_eq!(c.listen.tcp, default_tcp());
        assert!(c.listen.tls.is_some());
        let bad = format!("{MIN}[listen]\nudp = \"nowhere\"\n");
        assert!(Config::parse(&bad, Path::new(".")).is_err());
    }
}
