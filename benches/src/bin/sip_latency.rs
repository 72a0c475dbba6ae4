//! Call set-up latency through a SIP proxy (the sharecall front end or the
//! Kamailio reference in benches/sip/): a UAS and a UAC on loopback UDP,
//! timed with `Instant` (sipp's own timings round to its 4 ms tick).
//!
//! The UAS registers the callee (REGISTER → 401 → REGISTER with a SHA-256
//! digest → 200) and answers every INVITE with 200 at once. For each call
//! the UAC sends INVITE, gets 407, ACKs it, sends the INVITE again with
//! Proxy-Authorization (SHA-256, qop=auth), and the time from that second
//! INVITE to its 200 is one sample: authentication, location lookup (a
//! sharecall resolution in sharecall mode) and two forwarding hops. ACK
//! and BYE then follow the Record-Route set. Calls run one after another.
//!
//! Run: `cargo run --release -p sharecall-benches --bin sip_latency -- --target 127.0.0.1:5060`
//! (benches/sip/run.sh does, with its users).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use sha2::{Digest, Sha256};

/// Options.
#[derive(Parser)]
struct Args {
    /// The proxy (UDP).
    #[arg(long)]
    target: SocketAddr,
    /// The users' domain (the digest realm is read from the challenges).
    #[arg(long, default_value = "bench.example")]
    domain: String,
    /// The caller's user name (password `pw-NAME` unless --caller-password).
    #[arg(long, default_value = "lat-caller")]
    caller: String,
    /// The caller's password.
    #[arg(long)]
    caller_password: Option<String>,
    /// The callee's user name (password `pw-NAME` unless --callee-password).
    #[arg(long, default_value = "lat-callee")]
    callee: String,
    /// The callee's password.
    #[arg(long)]
    callee_password: Option<String>,
    /// Timed calls.
    #[arg(long, default_value_t = 1000)]
    calls: usize,
    /// Untimed calls first (caches, connections, pools).
    #[arg(long, default_value_t = 50)]
    warmup: usize,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A received message: first line, headers, whole text.
struct Msg {
    text: String,
}

impl Msg {
    fn status(&self) -> Option<u16> {
        let first = self.text.lines().next()?;
        if !first.starts_with("SIP/2.0 ") {
            return None;
        }
        first.split_whitespace().nth(1)?.parse().ok()
    }

    fn method(&self) -> Option<&str> {
        let first = self.text.lines().next()?;
        (!first.starts_with("SIP/")).then(|| first.split(' ').next().unwrap_or_default())
    }

    /// Every value of header `name` (one per header line, in order).
    fn headers(&self, name: &str) -> Vec<&str> {
        self.text
            .split("\r\n")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
            })
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers(name).into_iter().next()
    }

    fn cseq_method(&self) -> Option<&str> {
        self.header("CSeq")?.split_whitespace().nth(1)
    }
}

fn param(challenge: &str, name: &str) -> Option<String> {
    let rest = challenge.trim().strip_prefix("Digest")?;
    let mut quoted = false;
    let mut parts = vec![String::new()];
    for c in rest.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => parts.push(String::new()),
            c => parts.last_mut()?.push(c),
        }
    }
    parts.iter().find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// The `Authorization`/`Proxy-Authorization` value answering the SHA-256
/// challenge among `challenges`.
fn answer(
    challenges: &[&str],
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> anyhow::Result<String> {
    let c = challenges
        .iter()
        .find(|c| param(c, "algorithm").is_some_and(|a| a.eq_ignore_ascii_case("SHA-256")))
        .ok_or_else(|| anyhow!("no SHA-256 challenge in {challenges:?}"))?;
    let realm = param(c, "realm").ok_or_else(|| anyhow!("challenge without realm"))?;
    let nonce = param(c, "nonce").ok_or_else(|| anyhow!("challenge without nonce"))?;
    let cnonce = format!("{:08x}", rand::random::<u32>());
    let nc = "00000001";
    let ha1 = sha256_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = sha256_hex(&format!("{method}:{uri}"));
    let response = sha256_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    let mut a = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=SHA-256, qop=auth, nc={nc}, cnonce=\"{cnonce}\""
    );
    if let Some(o) = param(c, "opaque") {
        a += &format!(", opaque=\"{o}\"");
    }
    Ok(a)
}

/// A UDP endpoint that sends requests and waits for their final answers.
struct Endpoint {
    socket: UdpSocket,
    target: SocketAddr,
    buf: Vec<u8>,
}

impl Endpoint {
    fn new(target: SocketAddr) -> anyhow::Result<Endpoint> {
        let socket = UdpSocket::bind("127.0.0.1:0").context("bind UDP")?;
        Ok(Endpoint {
            socket,
            target,
            buf: vec![0; 65_536],
        })
    }

    fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn send(&self, text: &str) -> anyhow::Result<()> {
        self.socket.send_to(text.as_bytes(), self.target)?;
        Ok(())
    }

    fn recv(&mut self, until: Instant) -> anyhow::Result<Option<Msg>> {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        self.socket.set_read_timeout(Some(left))?;
        match self.socket.recv_from(&mut self.buf) {
            Ok((n, _)) => Ok(Some(Msg {
                text: String::from_utf8_lossy(&self.buf[..n]).into_owned(),
            })),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `request` (retransmitted each 500 ms, 10 s at most) until a
    /// final response for `cseq_method` arrives.
    fn transact(&mut self, request: &str, cseq_method: &str) -> anyhow::Result<Msg> {
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            self.send(request)?;
            let resend = (Instant::now() + Duration::from_millis(500)).min(give_up);
            while let Some(m) = self.recv(resend)? {
                if m.status().is_some_and(|s| s >= 200) && m.cseq_method() == Some(cseq_method) {
                    return Ok(m);
                }
            }
            if Instant::now() >= give_up {
                bail!("no final response to:\n{request}");
            }
        }
    }
}

/// Registers the callee and answers calls until the process ends.
fn run_uas(mut ep: Endpoint, domain: String, user: String, password: String) -> anyhow::Result<()> {
    let me = ep.addr()?;
    let register = |cseq: u32, auth: Option<&str>| {
        format!(
            "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-reg-{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{domain}>;tag=uas\r\nTo: <sip:{user}@{domain}>\r\n\
             Call-ID: lat-uas-reg-{port}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>\r\n\
             Expires: 3600\r\n{}Content-Length: 0\r\n\r\n",
            auth.map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default(),
            port = me.port()
        )
    };
    let first = ep.transact(&register(1, None), "REGISTER")?;
    if first.status() != Some(401) {
        bail!("REGISTER without credentials: {}", first.text);
    }
    let auth = answer(
        &first.headers("WWW-Authenticate"),
        &user,
        &password,
        "REGISTER",
        &format!("sip:{domain}"),
    )?;
    let done = ep.transact(&register(2, Some(&auth)), "REGISTER")?;
    if done.status() != Some(200) {
        bail!("REGISTER with credentials: {}", done.text);
    }
    eprintln!("callee {user}@{domain} registered at {me}");
    loop {
        let Some(m) = ep.recv(Instant::now() + Duration::from_secs(3600))? else {
            continue;
        };
        let Some(method) = m.method() else { continue };
        if method == "ACK" {
            continue;
        }
        // Answer with the request's Via, From, To (plus our tag), Call-ID,
        // CSeq and Record-Route, back to where it came from (the proxy).
        let mut r = String::from("SIP/2.0 200 OK\r\n");
        for v in m.headers("Via") {
            r += &format!("Via: {v}\r\n");
        }
        let to = m.header("To").unwrap_or_default();
        let to = if to.contains("tag=") {
            to.to_string()
        } else {
            format!("{to};tag=uas")
        };
        r += &format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
            m.header("From").unwrap_or_default(),
            m.header("Call-ID").unwrap_or_default(),
            m.header("CSeq").unwrap_or_default()
        );
        if method == "INVITE" {
            for rr in m.headers("Record-Route") {
                r += &format!("Record-Route: {rr}\r\n");
            }
            r += &format!("Contact: <sip:{user}@{me}>\r\n");
        }
        r += "Content-Length: 0\r\n\r\n";
        ep.send(&r)?;
    }
}

/// One call; returns the time from the authenticated INVITE to its 200.
fn call(ep: &mut Endpoint, a: &Args, k: usize, password: &str) -> anyhow::Result<Duration> {
    let me = ep.addr()?;
    let uri = format!("sip:{}@{}", a.callee, a.domain);
    let call_id = format!("lat-{}-{k}", std::process::id());
    let from = format!("<sip:{}@{}>;tag=c{k}", a.caller, a.domain);
    let invite = |cseq: u32, branch: &str, auth: Option<&str>| {
        format!(
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:{}@{me}>\r\n{}Content-Length: 0\r\n\r\n",
            a.caller,
            auth.map(|x| format!("Proxy-Authorization: {x}\r\n"))
                .unwrap_or_default()
        )
    };
    let b1 = format!("z9hG4bK-{call_id}-1");
    let challenge = ep.transact(&invite(1, &b1, None), "INVITE")?;
    if challenge.status() != Some(407) {
        bail!("INVITE without credentials: {}", challenge.text);
    }
    ep.send(&format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={b1}\r\nMax-Forwards: 70\r\nFrom: {from}\r\n\
         To: {}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        challenge.header("To").unwrap_or_default()
    ))?;
    let auth = answer(
        &challenge.headers("Proxy-Authenticate"),
        &a.caller,
        password,
        "INVITE",
        &uri,
    )?;
    let b2 = format!("z9hG4bK-{call_id}-2");
    let started = Instant::now();
    let ok = ep.transact(&invite(2, &b2, Some(&auth)), "INVITE")?;
    let elapsed = started.elapsed();
    if ok.status() != Some(200) {
        bail!("authenticated INVITE: {}", ok.text);
    }
    // ACK and BYE to the callee's Contact along the Record-Route set
    // (reversed for the caller), sent to the proxy (loose routing).
    let target = ok
        .header("Contact")
        .and_then(|c| c.split(['<', '>']).nth(1))
        .unwrap_or(&uri)
        .to_string();
    let mut routes: Vec<String> = ok
        .headers("Record-Route")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|r| r.trim().to_string())
        .collect();
    routes.reverse();
    let route = if routes.is_empty() {
        String::new()
    } else {
        format!("Route: {}\r\n", routes.join(", "))
    };
    let to = ok.header("To").unwrap_or_default().to_string();
    let in_dialog = |method: &str, cseq: u32, branch: &str| {
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch={branch}\r\n{route}Max-Forwards: 70\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    ep.send(&in_dialog("ACK", 2, &format!("z9hG4bK-{call_id}-3")))?;
    let bye = ep.transact(&in_dialog("BYE", 3, &format!("z9hG4bK-{call_id}-4")), "BYE")?;
    if bye.status() != Some(200) {
        bail!("BYE: {}", bye.text);
    }
    Ok(elapsed)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let callee_pw = a
        .callee_password
        .clone()
        .unwrap_or_else(|| format!("pw-{}", a.callee));
    let caller_pw = a
        .caller_password
        .clone()
        .unwrap_or_else(|| format!("pw-{}", a.caller));
    let uas = Endpoint::new(a.target)?;
    let (domain, callee) = (a.domain.clone(), a.callee.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = run_uas(uas, domain, callee, callee_pw);
        let _ = tx.send(r);
    });
    // The UAS reports only if it fails; give its registration a moment.
    if let Ok(r) = rx.recv_timeout(Duration::from_secs(2)) {
        r?;
        bail!("the UAS stopped");
    }
    let mut ep = Endpoint::new(a.target)?;
    for k in 0..a.warmup {
        call(&mut ep, &a, k, &caller_pw).with_context(|| format!("warm-up call {k}"))?;
    }
    let mut samples = Vec::with_capacity(a.calls);
    let started = Instant::now();
    for k in 0..a.calls {
        samples.push(
            call(&mut ep, &a, a.warmup + k, &caller_pw).with_context(|| format!("call {k}"))?,
        );
    }
    let wall = started.elapsed();
    samples.sort();
    let mean = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / samples.len().max(1) as f64;
    println!(
        "sip_latency target={} calls={} INVITE->200 ms: p50={:.3} p90={:.3} p99={:.3} max={:.3} mean={:.3} ({:.1} sequential calls/s)",
        a.target,
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0),
        mean * 1000.0,
        samples.len() as f64 / wall.as_secs_f64().max(1e-9),
    );
    Ok(())
}
