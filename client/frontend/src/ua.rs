//! A minimal SIP user agent over UDP, for `sharecall demo`, the latency
//! harness and tests: it registers with digest credentials, places one call
//! (INVITE, ACK, BYE) and answers one. It is not a softphone: no media, one
//! dialog at a time, and requests are resent only on a fixed 500 ms beat
//! (enough on loopback, where nothing is lost but a late start).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sharecall_sip::headers::AuthParams;
use sharecall_sip::message::build_response;
use sharecall_sip::{parse_datagram, Limits, Message};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::aor::Aor;
use crate::auth::{ha1, qop_auth_response, Algorithm};

/// Why a user agent operation failed.
#[derive(Debug, Error)]
pub enum UaError {
    /// A socket error.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// No (final) answer in time.
    #[error("no answer to {0} in time")]
    Timeout(&'static str),
    /// A final response other than the one wanted.
    #[error("{what} answered {status} {reason}")]
    Status {
        /// The request.
        what: &'static str,
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// A message that makes no sense here.
    #[error("unexpected message: {0}")]
    Protocol(String),
}

/// A placed call that was answered and hung up.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// From sending the first INVITE to receiving its 200 (challenge round
    /// trip included when there was one).
    pub setup: Duration,
    /// From sending the authorised INVITE to its 200 (the routing cost).
    pub routed: Duration,
    /// The provisional statuses seen, in order (100, 180, ...).
    pub provisional: Vec<u16>,
    /// The callee's Contact from the 200.
    pub callee_contact: String,
}

/// A received call that was answered and hung up by the caller.
#[derive(Debug, Clone)]
pub struct AnswerReport {
    /// The INVITE's From header value.
    pub from: String,
    /// The Request-URI the INVITE arrived with.
    pub request_uri: String,
}

/// A user agent bound to one UDP socket, using one outbound proxy.
#[derive(Debug)]
pub struct UserAgent {
    socket: Arc<UdpSocket>,
    /// Datagrams as they arrived, stamped (a reader task drains the socket
    /// at once, so an emulated delay does not pile up behind earlier ones).
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<(Instant, Vec<u8>, SocketAddr)>>,
    /// Delayed sends, in order (only with a delay).
    outbox: mpsc::UnboundedSender<(Instant, Vec<u8>, SocketAddr)>,
    tasks: [tokio::task::JoinHandle<()>; 2],
    aor: Aor,
    password: String,
    proxy: SocketAddr,
    local: SocketAddr,
    cseq: u32,
    limits: Limits,
    delay: Duration,
}

fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

impl UserAgent {
    /// Binds a socket on `bind` (port 0 for any) for `aor`, whose digest
    /// password is `password`, sending everything to `proxy`.
    pub async fn bind(
        aor: Aor,
        password: &str,
        proxy: SocketAddr,
        bind: SocketAddr,
    ) -> Result<UserAgent, UaError> {
        let socket = Arc::new(UdpSocket::bind(bind).await?);
        let local = socket.local_addr()?;
        let (in_tx, inbox) = mpsc::unbounded_channel();
        let reader = {
            let socket = socket.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_535];
                while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                    if in_tx
                        .send((Instant::now(), buf[..n].to_vec(), from))
                        .is_err()
                    {
                        return;
                    }
                }
            })
        };
        let (outbox, mut out_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>, SocketAddr)>();
        let writer = {
            let socket = socket.clone();
            tokio::spawn(async move {
                while let Some((due, bytes, to)) = out_rx.recv().await {
                    tokio::time::sleep_until(due.into()).await;
                    if let Err(e) = socket.send_to(&bytes, to).await {
                        tracing::debug!(error = %e, "user agent: delayed send failed");
                    }
                }
            })
        };
        Ok(UserAgent {
            socket,
            inbox: tokio::sync::Mutex::new(inbox),
            outbox,
            tasks: [reader, writer],
            aor,
            password: password.to_string(),
            proxy,
            local,
            cseq: 0,
            limits: Limits::default(),
            delay: Duration::ZERO,
        })
    }

    /// Emulates a network with `delay` one-way latency around this agent:
    /// every message it sends leaves `delay` late and every message it
    /// receives is seen `delay` late (the latency benchmark; loopback has
    /// none and `tc netem` is not available here). Sends still delayed
    /// when the agent is dropped are lost, as on a network that went down.
    pub fn with_delay(mut self, delay: Duration) -> UserAgent {
        self.delay = delay;
        self
    }

    async fn send_to(&self, bytes: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        if self.delay.is_zero() {
            return self.socket.send_to(bytes, to).await;
        }
        self.outbox
            .send((Instant::now() + self.delay, bytes.to_vec(), to))
            .map_err(|_| std::io::Error::other("user agent writer stopped"))?;
        Ok(bytes.len())
    }

    /// The Contact URI this agent registers.
    pub fn contact(&self) -> String {
        format!("sip:{}@{}", self.aor.user(), self.local)
    }

    /// The local socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    fn via(&self) -> String {
        format!(
            "Via: SIP/2.0/UDP {};branch=z9hG4bK{};rport",
            self.local,
            random_hex(8)
        )
    }

    /// Registers the Contact for `expires` seconds, answering one digest
    /// challenge. Returns the Contact lines of the 200.
    pub async fn register(&mut self, expires: u32) -> Result<Vec<String>, UaError> {
        let call_id = format!("{}@{}", random_hex(8), self.local.ip());
        let tag = random_hex(4);
        let uri = format!("sip:{}", self.aor.host());
        let mut auth: Option<String> = None;
        for _ in 0..2 {
            self.cseq += 1;
            let mut req = format!(
                "REGISTER {uri} SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\n\
                 From: <{aor}>;tag={tag}\r\nTo: <{aor}>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {} REGISTER\r\nContact: <{}>\r\nExpires: {expires}\r\n",
                self.via(),
                self.cseq,
                self.contact(),
                aor = self.aor.to_uri(),
            );
            if let Some(a) = &auth {
                req.push_str(a);
                req.push_str("\r\n");
            }
            req.push_str("Content-Length: 0\r\n\r\n");
            let resp = self
                .transact(req.as_bytes(), &call_id, "REGISTER", |_| {})
                .await?;
            match resp.status() {
                Some(200) => return Ok(resp.values("Contact")),
                Some(401) if auth.is_none() => {
                    auth = Some(self.credentials(&resp, "REGISTER", &uri, false)?);
                }
                _ => return Err(status_error("REGISTER", &resp)),
            }
        }
        Err(UaError::Protocol("challenged twice".into()))
    }

    /// Calls `target` (a SIP URI), answering one proxy challenge; once
    /// answered, acknowledges and hangs up.
    pub async fn call(&mut self, target: &str) -> Result<CallReport, UaError> {
        let call_id = format!("{}@{}", random_hex(8), self.local.ip());
        let tag = random_hex(4);
        let start = Instant::now();
        let mut auth: Option<String> = None;
        for _ in 0..2 {
            self.cseq += 1;
            let cseq = self.cseq;
            let via = self.via();
            let body = format!(
                "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
                ip = self.local.ip()
            );
            let mut req = format!(
                "INVITE {target} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\n\
                 From: <{aor}>;tag={tag}\r\nTo: <{target}>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} INVITE\r\nContact: <{contact}>\r\nContent-Type: application/sdp\r\n",
                aor = self.aor.to_uri(),
                contact = self.contact(),
            );
            if let Some(a) = &auth {
                req.push_str(a);
                req.push_str("\r\n");
            }
            req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            let sent = Instant::now();
            let mut provisional = Vec::new();
            let resp = self
                .transact(req.as_bytes(), &call_id, "INVITE", |s| provisional.push(s))
                .await?;
            let status = resp.status().unwrap_or(0);
            if status >= 300 {
                // Non-2xx: the ACK is hop by hop, same branch as the INVITE.
                let ack = ack_for_failure(&req, &resp);
                self.send_to(&ack, self.proxy).await?;
            }
            match status {
                200..=299 => {
                    let setup = start.elapsed();
                    let routed = sent.elapsed();
                    let contact = resp
                        .contact()
                        .ok()
                        .flatten()
                        .and_then(|c| match c {
                            sharecall_sip::headers::Contact::Addrs(a) => {
                                a.into_iter().next().map(|n| n.uri)
                            }
                            sharecall_sip::headers::Contact::Star => None,
                        })
                        .ok_or_else(|| UaError::Protocol("200 without Contact".into()))?;
                    let mut routes = resp.values("Record-Route");
                    routes.reverse();
                    let to = resp.single("To").ok().flatten().unwrap_or_default();
                    let from = format!("<{}>;tag={tag}", self.aor.to_uri());
                    let in_dialog = |method: &str, n: u32, via: String| {
                        let mut m =
                            format!("{method} {contact} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\n");
                        for r in &routes {
                            m.push_str(&format!("Route: {r}\r\n"));
                        }
                        m.push_str(&format!(
                            "From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {n} {method}\r\nContent-Length: 0\r\n\r\n"
                        ));
                        m
                    };
                    let ack = in_dialog("ACK", cseq, self.via());
                    self.send_to(ack.as_bytes(), self.proxy).await?;
                    self.cseq += 1;
                    let bye = in_dialog("BYE", self.cseq, self.via());
                    let r = self
                        .transact(bye.as_bytes(), &call_id, "BYE", |_| {})
                        .await?;
                    if r.status() != Some(200) {
                        return Err(status_error("BYE", &r));
                    }
                    return Ok(CallReport {
                        setup,
                        routed,
                        provisional,
                        callee_contact: contact,
                    });
                }
                407 if auth.is_none() => {
                    auth = Some(self.credentials(&resp, "INVITE", target, true)?);
                }
                _ => return Err(status_error("INVITE", &resp)),
            }
        }
        Err(UaError::Protocol("challenged twice".into()))
    }

    /// Waits up to `wait` for one INVITE, rings, answers, and waits for the
    /// caller's BYE.
    pub async fn answer(&mut self, wait: Duration) -> Result<AnswerReport, UaError> {
        let deadline = Instant::now() + wait;
        let (invite, from) = loop {
            let (m, from) = self.recv_until(deadline, "INVITE").await?;
            if m.method().as_deref() == Some("INVITE") {
                break (m, from);
            }
        };
        let tag = random_hex(4);
        let contact = format!("Contact: <{}>", self.contact());
        let ringing = build_response(
            &invite,
            180,
            "Ringing",
            Some(&tag),
            std::slice::from_ref(&contact),
        );
        self.send_to(&ringing, from).await?;
        let mut extra = vec![contact];
        extra.extend(
            invite
                .values("Record-Route")
                .into_iter()
                .map(|r| format!("Record-Route: {r}")),
        );
        let ok = build_response(&invite, 200, "OK", Some(&tag), &extra);
        self.send_to(&ok, from).await?;
        let report = AnswerReport {
            from: invite.single("From").ok().flatten().unwrap_or_default(),
            request_uri: invite.request_uri().unwrap_or_default().to_string(),
        };
        let call_id = invite.call_id().unwrap_or_default();
        let mut resend = Instant::now() + Duration::from_millis(500);
        loop {
            let step = resend.min(deadline);
            match self.recv_until(step, "BYE").await {
                Ok((m, src)) => {
                    if m.call_id().ok().as_deref() != Some(call_id.as_str()) {
                        continue;
                    }
                    match m.method().as_deref() {
                        Some("BYE") => {
                            let r = build_response(&m, 200, "OK", None, &[]);
                            self.send_to(&r, src).await?;
                            return Ok(report);
                        }
                        Some("INVITE") => self.send_to(&ok, src).await.map(|_| ())?,
                        _ => {}
                    }
                }
                Err(UaError::Timeout(_)) if Instant::now() < deadline => {
                    // No ACK/BYE yet: the 200 may be lost; resend it.
                    self.send_to(&ok, from).await?;
                    resend = Instant::now() + Duration::from_millis(500);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Builds the Authorization (or Proxy-Authorization) line answering the
    /// first challenge of `resp` whose algorithm we support.
    fn credentials(
        &self,
        resp: &Message,
        method: &str,
        uri: &str,
        proxy: bool,
    ) -> Result<String, UaError> {
        let (challenge, answer) = if proxy {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        // Whole header values: a challenge's parameters are comma-separated,
        // so the list-splitting `values` would cut them apart.
        let (params, alg) = resp
            .headers_named(challenge)
            .filter_map(|h| AuthParams::parse(challenge, &h.value()).ok())
            .filter(AuthParams::is_digest)
            .find_map(|p| {
                let alg = Algorithm::from_name(p.get("algorithm").unwrap_or("MD5"))?;
                Some((p, alg))
            })
            .ok_or_else(|| UaError::Protocol(format!("no usable {challenge}")))?;
        let realm = params.get("realm").unwrap_or_default();
        let nonce = params.get("nonce").unwrap_or_default();
        let cnonce = random_hex(8);
        let user = self.aor.user();
        let h = ha1(alg, user, realm, &self.password);
        let response = qop_auth_response(alg, &h, nonce, "00000001", &cnonce, method, uri);
        Ok(format!(
            "{answer}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm={}, qop=auth, nc=00000001, \
             cnonce=\"{cnonce}\"",
            alg.name()
        ))
    }

    /// Sends `req` to the proxy and returns its final response, resending
    /// every 500 ms until a provisional one arrives; `on_provisional` sees
    /// each provisional status.
    async fn transact(
        &self,
        req: &[u8],
        call_id: &str,
        what: &'static str,
        mut on_provisional: impl FnMut(u16),
    ) -> Result<Message, UaError> {
        let deadline = Instant::now() + Duration::from_secs(32);
        self.send_to(req, self.proxy).await?;
        let mut provisional = false;
        loop {
            let step = if provisional {
                deadline
            } else {
                (Instant::now() + Duration::from_millis(500)).min(deadline)
            };
            match self.recv_until(step, what).await {
                Ok((m, _)) => {
                    if m.call_id().ok().as_deref() != Some(call_id) {
                        continue;
                    }
                    let cseq_ok = m
                        .cseq()
                        .map(|c| c.method.eq_ignore_ascii_case(what))
                        .unwrap_or(false);
                    match m.status() {
                        Some(s) if s < 200 && cseq_ok => {
                            provisional = true;
                            on_provisional(s);
                        }
                        Some(_) if cseq_ok => return Ok(m),
                        _ => {}
                    }
                }
                Err(UaError::Timeout(_)) if Instant::now() < deadline => {
                    self.send_to(req, self.proxy).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn recv_until(
        &self,
        deadline: Instant,
        what: &'static str,
    ) -> Result<(Message, SocketAddr), UaError> {
        let mut inbox = self.inbox.lock().await;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (arrived, bytes, from) = tokio::time::timeout(left, inbox.recv())
                .await
                .map_err(|_| UaError::Timeout(what))?
                .ok_or_else(|| UaError::Protocol("socket closed".into()))?;
            // Keep-alives and garbage are not ours to answer.
            if let Ok(Some(m)) = parse_datagram(&bytes, &self.limits) {
                tokio::time::sleep_until((arrived + self.delay).into()).await;
                return Ok((m, from));
            }
        }
    }
}

impl Drop for UserAgent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn status_error(what: &'static str, resp: &Message) -> UaError {
    let reason = match resp.start() {
        sharecall_sip::message::StartLine::Response { reason, .. } => {
            String::from_utf8_lossy(reason).into_owned()
        }
        _ => String::new(),
    };
    UaError::Status {
        what,
        status: resp.status().unwrap_or(0),
        reason,
    }
}

/// RFC 3261 §17.1.1.3: the ACK to a non-2xx final response.
fn ack_for_failure(invite: &str, resp: &Message) -> Vec<u8> {
    match parse_datagram(invite.as_bytes(), &Limits::default()) {
        Ok(Some(req)) => sharecall_sip::transaction::build_ack(&req, resp),
        _ => Vec::new(),
    }
}
