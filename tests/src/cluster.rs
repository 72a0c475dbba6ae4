//! Three real `sharecall-provider` processes on loopback, for end-to-end
//! tests: identities made with `init`, configurations written as an
//! operator would, processes started, killed and restarted.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bin, run, text};

/// Per-provider knobs a test may change.
#[derive(Clone, Debug)]
pub struct ProviderOptions {
    /// The provider's secure-sum contribution.
    pub value: u64,
    /// Task kinds this provider accepts.
    pub allowed_kinds: Vec<String>,
    /// Extra environment (e.g. fault injection) for its process.
    pub env: Vec<(String, String)>,
    /// This provider's per-account rate and burst, if not the cluster's.
    pub rate: Option<(u32, u32)>,
    /// `tables.answer_wait` (how long a request waits to execute before
    /// `202 pending`), if not the default.
    pub answer_wait: Option<&'static str>,
}

impl Default for ProviderOptions {
    fn default() -> Self {
        ProviderOptions {
            value: 0,
            allowed_kinds: vec![
                "secure-sum".into(),
                "noop".into(),
                "execute".into(),
                "log-check".into(),
            ],
            env: Vec::new(),
            rate: None,
            answer_wait: None,
        }
    }
}

/// Cluster-wide knobs.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Per provider.
    pub providers: [ProviderOptions; 3],
    /// SMC lanes.
    pub lanes: u32,
    /// Jobs admitted per gateway.
    pub max_queued: usize,
    /// Session timeout.
    pub session_timeout: &'static str,
    /// Raft log compaction interval.
    pub compact_every: u64,
    /// Table variant (`hash`, `list`, `tree/<fanout>`).
    pub variant: &'static str,
    /// Expiry sweep interval.
    pub sweep_interval: &'static str,
    /// Account enrollment mode.
    pub enrollment: &'static str,
    /// `accounts.tokens` as a TOML value.
    pub tokens: &'static str,
    /// Per-account sustained request rate and burst.
    pub rate: (u32, u32),
    /// Accounts (hex public keys) allowed to bulk-import.
    pub importers: Vec<String>,
    /// Serve the public APIs as plain HTTP
    /// (`listen.api_plaintext_insecure`); default TLS.
    pub api_plaintext_insecure: bool,
    /// `log.retention` (share log).
    pub log_retention: &'static str,
    /// `log.seal_interval` (share log).
    pub seal_interval: &'static str,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            providers: Default::default(),
            lanes: 6,
            max_queued: 1024,
            session_timeout: "10s",
            compact_every: 10_000,
            variant: "hash",
            sweep_interval: "60s",
            enrollment: "open",
            tokens: "[]",
            rate: (10_000, 10_000),
            importers: Vec::new(),
            api_plaintext_insecure: false,
            log_retention: "180days",
            seal_interval: "1s",
        }
    }
}

/// Addresses of one provider.
#[derive(Clone, Copy, Debug)]
pub struct Addrs {
    /// gRPC command/control.
    pub control: SocketAddr,
    /// SMC mesh.
    pub smc: SocketAddr,
    /// HTTP admin.
    pub admin: SocketAddr,
    /// Public REST API.
    pub api: SocketAddr,
}

/// A running three-provider cluster; processes are killed on drop.
pub struct Cluster {
    /// Temporary directory holding data dirs, configs and logs.
    pub dir: tempfile::TempDir,
    /// Addresses per provider.
    pub addrs: [Addrs; 3],
    /// Fingerprints per provider.
    pub fingerprints: [String; 3],
    children: [Option<Child>; 3],
    options: ClusterOptions,
    /// One HTTP agent per provider's public API, pinned to its certificate.
    api_agents: [ureq::Agent; 3],
}

/// An HTTP agent that accepts only the certificate with fingerprint `fp`
/// (connections are kept alive and reused).
pub fn pinned_agent(fp: &str) -> ureq::Agent {
    let pin: sharecall_client::client::tls::CertPin = fp.parse().expect("fingerprint");
    let tls = sharecall_client::client::tls::pinned_config(&[pin]).expect("TLS config");
    ureq::AgentBuilder::new().tls_config(tls).build()
}

fn fingerprint_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .expect("init prints the fingerprint")
        .trim()
        .to_string()
}

/// A listener on a port below the kernel's ephemeral range (32768 and up
/// here): ports bound to 0 come from that range, which outgoing
/// connections of parallel tests also draw from, so a provider restarted
/// on its old port could find it taken by someone's client socket. The
/// walk starts at a per-process offset and never reuses a port in this
/// process.
fn listen_below_ephemeral() -> TcpListener {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() * 397) % SPAN;
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start + k) % SPAN;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port as u16)) {
            return l;
        }
    }
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port")
}

impl Cluster {
    /// Initialises three providers and starts them; waits until each
    /// admin endpoint answers.
    pub fn start(options: ClusterOptions) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        // Hold every probe listener until all twelve ports are chosen, so
        // none is chosen twice.
        let probes: Vec<TcpListener> = (0..12).map(|_| listen_below_ephemeral()).collect();
        let port = |k: usize| probes[k].local_addr().expect("local addr");
        let addrs: [Addrs; 3] = std::array::from_fn(|i| Addrs {
            control: port(4 * i),
            smc: port(4 * i + 1),
            admin: port(4 * i + 2),
            api: port(4 * i + 3),
        });
        drop(probes);
        let fingerprints: [String; 3] = std::array::from_fn(|i| {
            let data = dir.path().join(format!("p{i}"));
            let out = run(
                "sharecall-provider",
                &["init", "--data-dir", data.to_str().expect("utf-8 path")],
            );
            let (stdout, stderr) = text(&out);
            assert!(out.status.success(), "init failed: {stderr}");
            fingerprint_of(&stdout)
        });
        let api_agents = std::array::from_fn(|i| pinned_agent(&fingerprints[i]));
        let mut cluster = Cluster {
            dir,
            addrs,
            fingerprints,
            children: [None, None, None],
            options,
            api_agents,
        };
        for i in 0..3 {
            cluster.write_config(i);
        }
        cluster.restart_all();
        cluster
    }

    /// Path of provider `i`'s configuration.
    pub fn config_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("p{i}.toml"))
    }

    /// Path of provider `i`'s log (stderr).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("p{i}.log"))
    }

    /// Provider `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    fn write_config(&self, i: usize) {
        let o = &self.options;
        let p = &o.providers[i];
        let a = self.addrs[i];
        let data = self.dir.path().join(format!("p{i}"));
        let mut s = format!(
            "id = {i}\ndata_dir = {:?}\n\n[listen]\ncontrol = \"{}\"\nsmc = \"{}\"\nadmin = \"{}\"\napi = \"{}\"\napi_plaintext_insecure = {}\n\n",
            data.to_str().expect("utf-8 path"),
            a.control,
            a.smc,
            a.admin,
            a.api,
            o.api_plaintext_insecure
        );
        for j in (0..3).filter(|j| *j != i) {
            s += &format!(
                "[[peers]]\nid = {j}\ncontrol = \"{}\"\nsmc = \"{}\"\nfingerprint = \"{}\"\n\n",
                self.addrs[j].control, self.addrs[j].smc, self.fingerprints[j]
            );
        }
        s += &format!(
            "[timeouts]\nprepare = \"2s\"\nlink = \"5s\"\nsession = \"{}\"\nsmc_op = \"2s\"\nheartbeat_interval = \"200ms\"\nsuspect_after = \"600ms\"\ndown_after = \"1500ms\"\n\n",
            o.session_timeout
        );
        s += &format!(
            "[jobs]\nlanes = {}\nmax_queued = {}\n\n[secure_sum]\nvalue = {}\n\n[policy]\nallowed_kinds = {:?}\n\n[sequencer]\ncompact_every = {}\n\n[log]\nfilter = \"info\"\nretention = {:?}\nseal_interval = {:?}\n\n",
            o.lanes, o.max_queued, p.value, p.allowed_kinds, o.compact_every, o.log_retention, o.seal_interval
        );
        let rate = p.rate.unwrap_or(o.rate);
        s += &format!(
            "[tables]\nvariant = {:?}\nsweep_interval = {:?}\n",
            o.variant, o.sweep_interval
        );
        if let Some(w) = p.answer_wait {
            s += &format!("answer_wait = {w:?}\n");
        }
        s += &format!(
            "\n[accounts]\nenrollment = {:?}\ntokens = {}\nrate_per_second = {}\nburst = {}\nimporters = {:?}\n",
            o.enrollment, o.tokens, rate.0, rate.1, o.importers
        );
        std::fs::write(self.config_path(i), s).expect("write config");
    }

    /// Starts provider `i` (its log is appended to).
    pub fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log file");
        let child = Command::new(bin("sharecall-provider"))
            .args(["run", "--config"])
            .arg(self.config_path(i))
            .envs(self.options.providers[i].env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start provider");
        self.children[i] = Some(child);
    }

    /// Waits until provider `i`'s admin endpoint answers (at most 20 s).
    pub fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.get(i, "/v1/admin/peers").is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "provider {i} did not come up:\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills provider `i` (SIGKILL) and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts provider `i` and waits until it is ready.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Sets the extra environment of provider `i` (from its next start).
    pub fn set_env(&mut self, i: usize, env: Vec<(String, String)>) {
        self.options.providers[i].env = env;
    }

    /// Provider `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("p{i}"))
    }

    /// Child process of provider `i`, if running.
    pub fn child(&mut self, i: usize) -> Option<&mut Child> {
        self.children[i].as_mut()
    }

    /// The URL of `path` at provider `i` and the agent to use: the public
    /// API (TLS, pinned; plain HTTP with `api_plaintext_insecure`) for
    /// client paths, the admin endpoint (plain HTTP, loopback) for
    /// everything else.
    fn url(&self, i: usize, path: &str) -> (ureq::Agent, String) {
        let public = ["/v1/requests", "/v1/accounts", "/v1/openapi.json"]
            .iter()
            .any(|p| path.starts_with(p));
        if public && !self.options.api_plaintext_insecure {
            (
                self.api_agents[i].clone(),
                format!("https://{}{path}", self.addrs[i].api),
            )
        } else {
            let addr = if public {
                self.addrs[i].api
            } else {
                self.addrs[i].admin
            };
            (ureq::agent(), format!("http://{addr}{path}"))
        }
    }

    /// The agent for provider `i`'s public API (pinned to its certificate).
    pub fn api_agent(&self, i: usize) -> &ureq::Agent {
        &self.api_agents[i]
    }

    /// Provider `i`'s public API as clients name it:
    /// `https://ADDR#sha256=FINGERPRINT`, or `http://ADDR` when plain.
    pub fn api_url(&self, i: usize) -> String {
        if self.options.api_plaintext_insecure {
            format!("http://{}", self.addrs[i].api)
        } else {
            format!(
                "https://{}#sha256={}",
                self.addrs[i].api, self.fingerprints[i]
            )
        }
    }

    /// The three providers' table (cursor, entries, digest), once all
    /// three stand at the same cursor (panics after 20 s).
    pub fn settled(&self) -> [(u64, u64, String); 3] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t: [(u64, u64, String); 3] = std::array::from_fn(|i| {
                let v = self.get(i, "/v1/admin/table").expect("table status");
                (
                    v["cursor"].as_u64().unwrap_or(0),
                    v["entries"].as_u64().unwrap_or(0),
                    v["digest"].as_str().unwrap_or_default().to_string(),
                )
            });
            if t.iter().all(|x| x.0 == t[0].0) {
                return t;
            }
            assert!(Instant::now() < deadline, "cursors stay apart: {t:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET on provider `i`'s admin API: Ok(json) on 2xx, Err((status, body)).
    pub fn get(&self, i: usize, path: &str) -> Result<Value, (u16, String)> {
        let (agent, url) = self.url(i, path);
        response(agent.get(&url).timeout(Duration::from_secs(5)).call())
    }

    /// GET on provider `i` with a request's signature (hex) in the
    /// `Sharecall-Signature` header: how a client polls an answer.
    pub fn get_signed(
        &self,
        i: usize,
        path: &str,
        signature: &str,
    ) -> Result<Value, (u16, String)> {
        let (agent, url) = self.url(i, path);
        response(
            agent
                .get(&url)
                .set("Sharecall-Signature", signature)
                .timeout(Duration::from_secs(5))
                .call(),
        )
    }

    /// GET returning the raw text (for /metrics).
    pub fn get_text(&self, i: usize, path: &str) -> String {
        let (agent, url) = self.url(i, path);
        agent
            .get(&url)
            .timeout(Duration::from_secs(5))
            .call()
            .expect("GET")
            .into_string()
            .expect("text body")
    }

    /// POSTs JSON to provider `i`'s admin API.
    pub fn post(&self, i: usize, path: &str, body: Value) -> Result<Value, (u16, String)> {
        let (agent, url) = self.url(i, path);
        response(
            agent
                .post(&url)
                .timeout(Duration::from_secs(60))
                .send_json(body),
        )
    }

    /// (Re)starts all three providers at once (from their data on disk)
    /// and waits until all are ready.
    pub fn restart_all(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
        for i in 0..3 {
            self.spawn(i);
        }
        for i in 0..3 {
            self.wait_ready(i);
        }
    }

    /// Submits a job through provider `i`.
    pub fn job(&self, i: usize, kind: &str, params: Value) -> Result<Value, (u16, String)> {
        let (agent, url) = self.url(i, "/v1/admin/jobs");
        response(
            agent
                .post(&url)
                .timeout(Duration::from_secs(60))
                .send_json(serde_json::json!({"kind": kind, "params": params, "purpose": "test"})),
        )
    }
}

fn response(r: Result<ureq::Response, ureq::Error>) -> Result<Value, (u16, String)> {
    match r {
        Ok(r) => Ok(r.into_json().expect("JSON body")),
        Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap_or_default())),
        Err(e) => Err((0, e.to_string())),
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
        // A failed test's provider logs, for the person debugging it.
        if std::thread::panicking() {
            for i in 0..3 {
                let log = self.log(i);
                let tail: Vec<&str> = log.lines().rev().take(120).collect();
                eprintln!("--- provider {i} log (last 120 lines) ---");
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
