//! The SIP front end (`sharecall sip --config sip.toml`) as a real process
//! for end-to-end tests: its configuration, users file and account keys
//! written into a folder of its own, free loopback ports, start-up awaited
//! on its `listening` line, killed on drop. Plus a minimal SIP client over
//! UDP for what sipp 3.6 cannot do (SHA-256 digest).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::bin;
use crate::cluster::Cluster;

/// A port free for both UDP and TCP on 127.0.0.1, below the kernel's
/// ephemeral range and apart from the cluster's (20 000 – 32 000), never
/// handed out twice by this process: SIP uses one port for both transports,
/// and sipp binds the one it is given.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 12_000;
    const SPAN: u32 = 8_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() * 211) % SPAN;
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + k) % SPAN) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free loopback port for SIP");
}

/// One local user of a front end.
#[derive(Clone, Debug)]
pub struct SipUser {
    /// The user part (and digest username).
    pub name: String,
    /// The domain (one of the front end's `sip.domains`).
    pub domain: String,
    /// The digest password.
    pub password: String,
}

impl SipUser {
    /// `name@domain` with password `pw-NAME` (what the Kamailio reference
    /// config in benches/sip/ also accepts).
    pub fn new(name: &str, domain: &str) -> SipUser {
        SipUser {
            name: name.into(),
            domain: domain.into(),
            password: format!("pw-{name}"),
        }
    }

    /// The address of record, `name@domain`.
    pub fn aor(&self) -> String {
        format!("{}@{}", self.name, self.domain)
    }
}

/// Where a front end keeps its bindings' endpoints.
#[derive(Clone, Debug)]
pub enum Location {
    /// In memory (`sip.location = "plaintext"`).
    Plaintext,
    /// In sharecall: the providers' pinned URLs (P0, P1, P2).
    Sharecall([String; 3]),
}

impl Location {
    /// The providers of a running cluster.
    pub fn of(cluster: &Cluster) -> Location {
        Location::Sharecall(std::array::from_fn(|i| cluster.api_url(i)))
    }
}

/// What a test may choose about a front end.
#[derive(Clone, Debug)]
pub struct FrontEndOptions {
    /// `sip.domains`; the first is the digest realm.
    pub domains: Vec<String>,
    /// `sip.mode`: `proxy` or `redirect`.
    pub mode: &'static str,
    /// `sip.location`.
    pub location: Location,
    /// The users file's users.
    pub users: Vec<SipUser>,
    /// `auth.algorithms`. Default MD5 first: sipp 3.6 answers only the
    /// first challenge and knows only MD5, while SHA-256 is still offered.
    pub algorithms: Vec<&'static str>,
    /// More TOML appended to sip.toml (e.g. a `[registrar]` section).
    pub extra: String,
    /// `RUST_LOG` for the process.
    pub log_filter: &'static str,
}

impl Default for FrontEndOptions {
    fn default() -> Self {
        FrontEndOptions {
            domains: vec!["a.example".into()],
            mode: "proxy",
            location: Location::Plaintext,
            users: Vec::new(),
            algorithms: vec!["MD5", "SHA-256"],
            extra: String::new(),
            log_filter: "info",
        }
    }
}

/// A running front end; killed on drop (its log is printed if the test
/// is failing).
pub struct FrontEnd {
    /// The folder with sip.toml, users.toml, keys, state and logs.
    pub dir: tempfile::TempDir,
    /// Its UDP address.
    pub udp: SocketAddr,
    /// Its TCP address (the same port).
    pub tcp: SocketAddr,
    /// Its metrics address (`http://ADDR/metrics`).
    pub metrics: SocketAddr,
    child: Option<Child>,
}

/// How long a front end may take to print its `listening` line.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// `sharecall keygen` and `sharecall enroll` for a new key at `path`.
fn enrolled_key(home: &Path, providers: &[String; 3], path: &Path) {
    let list = providers.join(",");
    let p = path.to_str().expect("utf-8 path");
    let (code, _, err) = crate::sharecall(home, &list, &["keygen", "--key", p]);
    assert_eq!(code, 0, "keygen: {err}");
    let (code, out, err) = crate::sharecall(home, &list, &["enroll", "--key", p]);
    assert_eq!(code, 0, "enroll: {out}{err}");
}

impl FrontEnd {
    /// Writes the configuration (account keys made with `sharecall keygen`
    /// and enrolled at the cluster in sharecall mode), starts
    /// `sharecall sip --config sip.toml` and waits for its `listening`
    /// line (at most 60 s).
    pub fn start(opts: FrontEndOptions) -> FrontEnd {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path();
        let port = free_port();
        let metrics_port = free_port();
        let home = base.join("home");
        std::fs::create_dir_all(&home).expect("home dir");

        let mut users = String::new();
        for u in &opts.users {
            users += &format!(
                "[[user]]\nname = {:?}\ndomain = {:?}\npassword = {:?}\n",
                u.name, u.domain, u.password
            );
            if let Location::Sharecall(providers) = &opts.location {
                let key = base.join(format!("keys/{}.key", u.aor()));
                enrolled_key(&home, providers, &key);
                users += &format!("account_key = {:?}\n", key.to_str().expect("utf-8 path"));
            }
            users.push('\n');
        }
        std::fs::write(base.join("users.toml"), users).expect("users.toml");

        let key = base.join("keys/front-end.key");
        if let Location::Sharecall(providers) = &opts.location {
            enrolled_key(&home, providers, &key);
        }
        let mut toml = config_text(&opts, port, metrics_port, &key);
        toml.push('\n');
        let config = base.join("sip.toml");
        std::fs::write(&config, toml).expect("sip.toml");

        let stderr = std::fs::File::create(base.join("stderr.log")).expect("log file");
        // SHARECALL_SIP_BIN runs another build of the CLI (e.g. a release
        // one); keys are still made with this build's `sharecall`.
        let exe = std::env::var_os("SHARECALL_SIP_BIN")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| bin("sharecall"));
        let mut child = Command::new(exe)
            .arg("sip")
            .arg("--config")
            .arg(&config)
            .env("HOME", &home)
            .env("RUST_LOG", opts.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start sharecall sip");

        // Stdout goes to a file through a thread, which reports the
        // `listening` line.
        let stdout = child.stdout.take().expect("piped stdout");
        let out_path = base.join("stdout.log");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = std::fs::File::create(out_path).ok();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if line.starts_with("sharecall sip: listening") {
                    let _ = tx.send(line);
                }
            }
        });
        let mut fe = FrontEnd {
            udp: SocketAddr::from(([127, 0, 0, 1], port)),
            tcp: SocketAddr::from(([127, 0, 0, 1], port)),
            metrics: SocketAddr::from(([127, 0, 0, 1], metrics_port)),
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + READY_WITHIN;
        let line = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => break line,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(Ok(Some(status))) = fe.child.as_mut().map(Child::try_wait) {
                        panic!(
                            "sharecall sip exited ({status}) before listening:\n{}",
                            fe.log()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Stdout closed without the line: the process ended.
                    let status = fe.child.as_mut().map(Child::wait);
                    panic!(
                        "sharecall sip exited ({status:?}) before listening:\n{}\n--- sip.toml ---\n{}",
                        fe.log(),
                        std::fs::read_to_string(&config).unwrap_or_default()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "sharecall sip printed no listening line within {READY_WITHIN:?}:\n{}",
                    fe.log()
                ),
            }
        };
        for (name, addr) in parse_listening(&line) {
            match name.as_str() {
                "udp" => fe.udp = addr,
                "tcp" => fe.tcp = addr,
                _ => {}
            }
        }
        fe
    }

    /// Stdout and stderr so far.
    pub fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            read("stdout.log"),
            read("stderr.log")
        )
    }

    /// The metrics text (Prometheus exposition format).
    pub fn metrics_text(&self) -> String {
        ureq::get(&format!("http://{}/metrics", self.metrics))
            .timeout(Duration::from_secs(5))
            .call()
            .map(|r| r.into_string().unwrap_or_default())
            .unwrap_or_else(|e| panic!("GET /metrics: {e}\n{}", self.log()))
    }

    /// The sum of the samples whose series starts with `series` (a name
    /// with some labels, e.g. `sip_requests_total{method="INVITE"`).
    pub fn metric(&self, series: &str) -> f64 {
        metric_sum(&self.metrics_text(), series)
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }
}

/// The sip.toml a front end with `opts` gets: UDP and TCP on 127.0.0.1:`port`,
/// metrics on `metrics_port`, `key` as the sharecall account key, then
/// `opts.extra`.
pub fn config_text(opts: &FrontEndOptions, port: u16, metrics_port: u16, key: &Path) -> String {
    let location = match opts.location {
        Location::Plaintext => "plaintext",
        Location::Sharecall(_) => "sharecall",
    };
    let mut toml = format!(
        "[sip]\ndomains = {:?}\nmode = {:?}\nlocation = {:?}\nusers = \"users.toml\"\n\n\
         [listen]\nudp = \"127.0.0.1:{port}\"\ntcp = \"127.0.0.1:{port}\"\n\n\
         [auth]\nalgorithms = {:?}\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n",
        opts.domains, opts.mode, location, opts.algorithms
    );
    if let Location::Sharecall(providers) = &opts.location {
        toml += &format!(
            "[sharecall]\nproviders = {providers:?}\naccount_key = {:?}\ntimeout = \"10s\"\n\n",
            key.to_str().expect("utf-8 path")
        );
    }
    toml += &opts.extra;
    toml
}

/// The `name=ADDR` pairs of a `sharecall sip: listening ...` line.
pub fn parse_listening(line: &str) -> Vec<(String, SocketAddr)> {
    line.split_whitespace()
        .filter_map(|w| {
            let (k, v) = w.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The sum of the samples in `text` whose series starts with `series`.
pub fn metric_sum(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Drop for FrontEnd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- front end log (last 150 lines) ---");
            for l in &lines[lines.len().saturating_sub(150)..] {
                eprintln!("{l}");
            }
        }
    }
}

/// A response as a minimal client sees it.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The whole message.
    pub text: String,
}

impl Response {
    /// Values of every header named `name` (case-insensitive), one per line.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.text
            .lines()
            .take_while(|l| !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .collect()
    }
}

/// The value of parameter `name` in a digest challenge.
fn digest_param(challenge: &str, name: &str) -> Option<String> {
    let rest = challenge.trim().strip_prefix("Digest")?;
    for part in split_params(rest) {
        let (k, v) = part.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(name) {
            return Some(v.trim().trim_matches('"').to_string());
        }
    }
    None
}

/// Splits `a="x, y", b=z` at the commas outside quotes.
fn split_params(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                out.last_mut().expect("non-empty").push(c);
            }
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().expect("non-empty").push(c),
        }
    }
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A minimal SIP user agent over UDP on loopback, for REGISTER with a
/// SHA-256 digest (RFC 8760), which sipp 3.6 cannot compute.
pub struct UdpAgent {
    socket: UdpSocket,
    server: SocketAddr,
}

impl UdpAgent {
    /// A socket on a free loopback port, talking to `server`.
    pub fn new(server: SocketAddr) -> UdpAgent {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("read timeout");
        UdpAgent { socket, server }
    }

    /// This agent's address.
    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("local addr")
    }

    /// Sends `request` until a final response arrives (retransmitting
    /// each 500 ms, for at most 20 s); provisional responses are skipped.
    pub fn transact(&self, request: &str) -> Response {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 65_536];
        loop {
            self.socket
                .send_to(request.as_bytes(), self.server)
                .expect("send");
            let resend = Instant::now() + Duration::from_millis(500);
            while Instant::now() < resend {
                let Ok((n, _)) = self.socket.recv_from(&mut buf) else {
                    break;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let status = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or(0);
                if status >= 200 {
                    return Response { status, text };
                }
            }
            assert!(
                Instant::now() < deadline,
                "no final response to:\n{request}"
            );
        }
    }

    /// OPTIONS to the server itself (no user part): its final response.
    pub fn options(&self) -> Response {
        let me = self.addr();
        let server = self.server;
        let tag = me.port();
        self.transact(&format!(
            "OPTIONS sip:{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-options-{tag}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:probe@{me}>;tag=o{tag}\r\n\
             To: <sip:{server}>\r\n\
             Call-ID: options-{tag}@{me}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        ))
    }

    fn register_request(
        &self,
        user: &SipUser,
        cseq: u32,
        call_id: &str,
        auth: Option<&str>,
    ) -> String {
        let me = self.addr();
        let mut r = format!(
            "REGISTER sip:{d} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{n}@{d}>;tag=t-{call_id}\r\n\
             To: <sip:{n}@{d}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{n}@{me}>\r\n\
             Expires: 600\r\n",
            d = user.domain,
            n = user.name,
        );
        if let Some(a) = auth {
            r += &format!("Authorization: {a}\r\n");
        }
        r += "Content-Length: 0\r\n\r\n";
        r
    }

    /// REGISTER → 401 → REGISTER answering the challenge with
    /// `algorithm=SHA-256` (qop=auth) computed from `password` → the final
    /// response to that second REGISTER. Panics if the 401 offers no
    /// SHA-256 challenge.
    pub fn register_sha256(&self, user: &SipUser, password: &str) -> (Response, Response) {
        // A fresh Call-ID each time: a registrar orders REGISTERs of one
        // Call-ID by CSeq.
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let call_id = format!("sha-{}-{}-{k}", std::process::id(), self.addr().port());
        let first = self.transact(&self.register_request(user, 1, &call_id, None));
        assert_eq!(first.status, 401, "{}", first.text);
        let challenge = first
            .headers("WWW-Authenticate")
            .into_iter()
            .find(|c| {
                digest_param(c, "algorithm").is_some_and(|a| a.eq_ignore_ascii_case("SHA-256"))
            })
            .unwrap_or_else(|| panic!("no SHA-256 challenge in:\n{}", first.text));
        let realm = digest_param(&challenge, "realm").expect("realm");
        let nonce = digest_param(&challenge, "nonce").expect("nonce");
        let opaque = digest_param(&challenge, "opaque");
        let uri = format!("sip:{}", user.domain);
        let (nc, cnonce) = ("00000001", "0a4f113b");
        let ha1 = sha256_hex(&format!("{}:{realm}:{password}", user.name));
        let ha2 = sha256_hex(&format!("REGISTER:{uri}"));
        let response = sha256_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        let mut auth = format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=SHA-256, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
            user.name
        );
        if let Some(o) = opaque {
            auth += &format!(", opaque=\"{o}\"");
        }
        let second = self.transact(&self.register_request(user, 2, &call_id, Some(&auth)));
        (first, second)
    }
}

/// Paths under the front end's folder, for tests that add files.
pub fn path_in(fe: &FrontEnd, name: &str) -> PathBuf {
    fe.dir.path().join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_and_metrics_parse() {
        let l = parse_listening("sharecall sip: listening udp=127.0.0.1:5060 tcp=127.0.0.1:5061");
        assert_eq!(l.len(), 2);
        assert_eq!(l[1].0, "tcp");
        assert_eq!(l[1].1.port(), 5061);
        let text = "# HELP x\nsip_requests_total{method=\"INVITE\"} 2\nsip_requests_total{method=\"REGISTER\"} 5\n";
        assert_eq!(
            metric_sum(text, "sip_requests_total{method=\"INVITE\""),
            2.0
        );
        assert_eq!(metric_sum(text, "sip_requests_total"), 7.0);
    }

    #[test]
    fn challenge_parameters_respect_quotes() {
        let c = "Digest realm=\"a, b\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"";
        assert_eq!(digest_param(c, "realm").as_deref(), Some("a, b"));
        assert_eq!(digest_param(c, "algorithm").as_deref(), Some("SHA-256"));
        assert_eq!(digest_param(c, "opaque"), None);
    }

    #[test]
    fn free_ports_differ() {
        let (a, b) = (free_port(), free_port());
        assert_ne!(a, b);
    }
}
