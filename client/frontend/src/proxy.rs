//! The stateful proxy (RFC 3261 §16), sans-IO: the transaction layer and
//! the forwarding machinery, without any routing policy.
//!
//! [`Proxy`] owns every server and client transaction, their timers and
//! the links between them. A received message goes through
//! [`Proxy::receive`]: responses, retransmissions, ACKs to non-2xx and
//! CANCELs are settled here; a new request comes back as an [`Incoming`]
//! for the caller (the [`crate::core::Core`]) to decide on. The caller then
//! answers it ([`Proxy::reply`]), parks it while a location job runs
//! ([`Proxy::park`]) or forwards it to a resolved [`Forward`] target
//! ([`Proxy::forward`]). Keeping the policy out makes this testable without
//! the registrar or the authenticator.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sharecall_sip::headers::{NameAddr, Via};
use sharecall_sip::message::build_response;
use sharecall_sip::transaction::{
    Action, Kind, Reliability, State, TimerConfig, Transaction, TransactionKey,
};
use sharecall_sip::{parse_datagram, Limits, Message};

use crate::core::{Output, TxId};
use crate::metrics::Metrics;
use crate::peer::{Dest, Local, Peer, Protocol};

/// Timer C (RFC 3261 §16.6 step 11): how long a proxied INVITE may ring.
const TIMER_C: Duration = Duration::from_secs(180);

/// What the proxy needs to know about itself.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Our transports as we name ourselves (Via, Record-Route).
    pub locals: Vec<Local>,
    /// Our domains (a Route or Request-URI naming one names us).
    pub domains: Vec<String>,
    /// Add Record-Route to requests that may create a dialog.
    pub record_route: bool,
    /// Transaction timers.
    pub timers: TimerConfig,
    /// Transactions at most; beyond, new requests get 503.
    pub max_transactions: usize,
    /// Keys the flow tokens in our Record-Route (see
    /// [`Proxy::route_flow`]).
    pub flow_key: [u8; 32],
}

/// A new request the caller must decide on.
#[derive(Debug)]
pub struct Incoming {
    /// Its server transaction; `None` for an ACK (never a transaction of
    /// its own: the caller forwards it statelessly or drops it).
    pub server: Option<TxId>,
    /// The request.
    pub msg: Message,
    /// Where it came from.
    pub from: Peer,
}

/// Where to forward a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The new Request-URI; `None` keeps it (routing by Route).
    pub uri: Option<String>,
    /// Route values to add on top, top first (a binding's Path).
    pub routes: Vec<String>,
    /// Where to send.
    pub dest: Dest,
}

/// A parsed `sip:`/`sips:` URI, as far as routing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:`.
    pub secure: bool,
    /// The user part, if any.
    pub user: Option<String>,
    /// The host, lowercased (IPv6 with brackets).
    pub host: String,
    /// The port, if written.
    pub port: Option<u16>,
    /// The `transport=` parameter, if written and known.
    pub transport: Option<Protocol>,
}

impl SipUri {
    /// Parses a bare URI (no `<>`); `None` for other schemes or bad shapes.
    pub fn parse(uri: &str) -> Option<SipUri> {
        let uri = uri.trim();
        let colon = uri.find(':')?;
        let scheme = &uri[..colon];
        let secure = if scheme.eq_ignore_ascii_case("sips") {
            true
        } else if scheme.eq_ignore_ascii_case("sip") {
            false
        } else {
            return None;
        };
        let rest = &uri[colon + 1..];
        let (user, rest) = match rest.rfind('@') {
            Some(at) => {
                let user = rest[..at].split(':').next().unwrap_or_default();
                (Some(user.to_owned()), &rest[at + 1..])
            }
            None => (None, rest),
        };
        let (hostport, params) = match rest.find([';', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let end = v6.find(']')?;
            let port = v6[end + 1..].strip_prefix(':');
            (format!("[{}]", &v6[..end]), port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return None;
        }
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok()?),
            None => None,
        };
        let mut transport = None;
        for p in params.split('?').next().unwrap_or_default().split(';') {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("transport") {
                    transport = Protocol::parse(v.trim());
                }
            }
        }
        Some(SipUri {
            secure,
            user,
            host: host.to_ascii_lowercase(),
            port,
            transport,
        })
    }

    /// The protocol to reach this URI with: `transport=`, else TLS for
    /// `sips:`, else UDP (no NAPTR/SRV).
    pub fn protocol(&self) -> Protocol {
        match (self.transport, self.secure) {
            (Some(p), _) => p,
            (None, true) => Protocol::Tls,
            (None, false) => Protocol::Udp,
        }
    }

    /// Where a request to this URI goes: an IP literal is a peer, a name is
    /// looked up by the transport.
    pub fn dest(&self) -> Dest {
        let protocol = self.protocol();
        let port = self.port.unwrap_or(protocol.default_port());
        host_dest(protocol, &self.host, port)
    }
}

/// `Dest::Peer` for an IP literal (brackets allowed), `Dest::Name` else.
fn host_dest(protocol: Protocol, host: &str, port: u16) -> Dest {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => Dest::Peer(Peer {
            protocol,
            addr: SocketAddr::new(ip, port),
            flow: None,
        }),
        Err(_) => Dest::Name {
            protocol,
            host: host.to_owned(),
            port,
        },
    }
}

/// Where a response goes by a Via (RFC 3261 §18.2.2, RFC 3581): the
/// `received` address and `rport` port when present.
pub fn via_dest(via: &Via) -> Dest {
    let protocol = Protocol::parse(&via.transport).unwrap_or(Protocol::Udp);
    let host = via.received().unwrap_or(&via.host);
    let port = match via.rport() {
        Some(Some(p)) => p,
        _ => via.port.unwrap_or(protocol.default_port()),
    };
    host_dest(protocol, host, port)
}

/// The protocol a destination is reached with.
pub fn dest_protocol(d: &Dest) -> Protocol {
    match d {
        Dest::Peer(p) => p.protocol,
        Dest::Name { protocol, .. } => *protocol,
    }
}

fn reliability(p: Protocol) -> Reliability {
    if p.is_reliable() {
        Reliability::Reliable
    } else {
        Reliability::Unreliable
    }
}

/// The standard reason phrase of the statuses the front end generates.
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        200 => "OK",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        487 => "Request Terminated",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Unknown",
    }
}

/// Ten hex digits of a keyed-free blake3 over `parts` (NUL-separated).
fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p);
        h.update(&[0]);
    }
    hex::encode(&h.finalize().as_bytes()[..5])
}

/// A stable To tag for the responses we generate to `msg` (the same for
/// every retransmission of the request).
fn to_tag(msg: &Message) -> String {
    let via = msg
        .headers_named("Via")
        .next()
        .map(|h| h.raw_value)
        .unwrap_or_default();
    let call_id = msg
        .headers_named("Call-ID")
        .next()
        .map(|h| h.raw_value)
        .unwrap_or_default();
    short_hash(&[via, call_id])
}

/// How far our CANCEL of a client INVITE got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    None,
    /// Upstream cancelled before any provisional: send on the first one.
    Wanted,
    Sent,
}

/// A branch's final non-2xx outcome, for response selection (§16.7).
#[derive(Debug)]
enum BranchFinal {
    /// Generated here (timeout 408/487, transport failure 503, 482, ...).
    Local(u16),
    /// Received, our Via already removed.
    Remote(Message),
}

impl BranchFinal {
    fn code(&self) -> u16 {
        match self {
            BranchFinal::Local(c) => *c,
            BranchFinal::Remote(m) => m.status().unwrap_or(500),
        }
    }
}

/// §16.7 step 6: a 6xx wins, else the lowest class (the first of a class).
fn rank(code: u16) -> u16 {
    if code >= 600 {
        0
    } else {
        code / 100
    }
}

#[derive(Debug)]
struct ServerTx {
    tx: Transaction,
    key: TransactionKey,
    peer: Peer,
    method: String,
    /// The branches forwarded (ids stay after the branch ends).
    clients: Vec<u64>,
    /// Branches without a final response yet.
    open: usize,
    /// The best non-2xx final response so far.
    best: Option<BranchFinal>,
    canceled: bool,
    final_sent: bool,
    /// Deadline for a request parked on a location job.
    guard: Option<Instant>,
    scheduled: Option<Instant>,
}

#[derive(Debug)]
struct ClientTx {
    tx: Transaction,
    key: TransactionKey,
    dest: Dest,
    /// The server transaction answered through this one (`None` for our
    /// own CANCELs, whose responses are absorbed).
    server: Option<u64>,
    cancel: Cancel,
    /// A final response (or its stand-in) was counted for the server.
    done: bool,
    /// Timer C, while a client INVITE is in Proceeding.
    timer_c: Option<Instant>,
    scheduled: Option<Instant>,
}

/// A server transaction that only waits out its last timer, shrunk to
/// what that wait still needs: a non-INVITE one in Completed (timer J)
/// keeps the response that answers a retransmission; an INVITE one in
/// Accepted (timer L, RFC 6026) absorbs retransmissions, passes ACKs on and
/// relays further 2xx to its peer. At 10 000 REGISTER/s or 2 000 calls/s
/// over UDP, 32 s of full transactions would keep some 300 000 requests
/// and responses in memory.
#[derive(Debug)]
struct AnsweredTx {
    key: TransactionKey,
    peer: Peer,
    method: String,
    /// The response to repeat; empty for an Accepted INVITE (absorbs).
    response: Vec<u8>,
    until: Instant,
    scheduled: Option<Instant>,
}

/// A client INVITE in Accepted (timer M, RFC 6026), shrunk to what it still
/// does: relay 2xx retransmissions to its server transaction.
#[derive(Debug)]
struct RelayTx {
    key: TransactionKey,
    server: Option<u64>,
    until: Instant,
    scheduled: Option<Instant>,
}

#[derive(Debug)]
enum Entry {
    Server(ServerTx),
    Client(ClientTx),
    Answered(AnsweredTx),
    Relay(RelayTx),
}

impl Entry {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Entry::Server(s) => match (s.tx.next_deadline(), s.guard) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            // A ringing INVITE waits for timer C, not timer B (§17.1.1.2:
            // B only runs in Calling).
            Entry::Client(c) if ringing(&c.tx) => c.timer_c,
            Entry::Client(c) => c.tx.next_deadline(),
            Entry::Answered(a) => Some(a.until),
            Entry::Relay(r) => Some(r.until),
        }
    }

    fn scheduled(&mut self) -> &mut Option<Instant> {
        match self {
            Entry::Server(s) => &mut s.scheduled,
            Entry::Client(c) => &mut c.scheduled,
            Entry::Answered(a) => &mut a.scheduled,
            Entry::Relay(r) => &mut r.scheduled,
        }
    }
}

fn ringing(tx: &Transaction) -> bool {
    tx.kind() == Kind::ClientInvite && tx.state() == State::Proceeding
}

/// A forwarded request ready to go.
struct Prepared {
    msg: Message,
    dest: Dest,
    key: TransactionKey,
}

/// The transactions and the forwarding machinery.
#[derive(Debug)]
pub struct Proxy {
    cfg: ProxyConfig,
    metrics: Metrics,
    entries: HashMap<u64, Entry>,
    server_keys: HashMap<TransactionKey, u64>,
    client_keys: HashMap<TransactionKey, u64>,
    /// (deadline, entry) with lazy deletion: an item counts only while it
    /// equals the entry's `scheduled`.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
    limits: Limits,
    /// Server transactions without a final response yet: the work in
    /// progress that `max_transactions` bounds.
    pending: usize,
}

impl Proxy {
    /// A proxy with no transactions.
    pub fn new(cfg: ProxyConfig, metrics: Metrics) -> Proxy {
        Proxy {
            cfg,
            metrics,
            entries: HashMap::new(),
            server_keys: HashMap::new(),
            client_keys: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 1,
            limits: Limits::default(),
            pending: 0,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.cfg
    }

    /// Transactions alive (server and client, including those only
    /// waiting out their timers D, I, J, K, L or M).
    pub fn transactions(&self) -> usize {
        self.entries.len()
    }

    /// Server transactions still waiting for a final response: the bound
    /// `max_transactions` applies to (a transaction that has answered only
    /// absorbs retransmissions until its timer ends, which at 2 000 calls/s
    /// is some 200 000 of them).
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// When [`Proxy::on_timer`] wants to be called (possibly early: stale
    /// heap items are only dropped when they come due).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Whether `server` still waits for its final response (a location
    /// job's result is dropped otherwise).
    pub fn is_pending(&self, server: TxId) -> bool {
        matches!(self.entries.get(&server.0), Some(Entry::Server(s)) if !s.final_sent)
    }

    /// The peer a server transaction answers to.
    pub fn peer(&self, server: TxId) -> Option<Peer> {
        match self.entries.get(&server.0) {
            Some(Entry::Server(s)) => Some(s.peer),
            _ => None,
        }
    }

    // ---- who we are ----

    fn is_local_hostport(&self, host: &str, port: Option<u16>, proto: Option<Protocol>) -> bool {
        self.cfg.locals.iter().any(|l| {
            l.host.eq_ignore_ascii_case(host)
                && port.unwrap_or(proto.unwrap_or(l.protocol).default_port()) == l.port
        })
    }

    /// Whether a host names us: one of our domains or local hosts.
    pub fn is_our_host(&self, host: &str) -> bool {
        self.cfg
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host))
            || self
                .cfg
                .locals
                .iter()
                .any(|l| l.host.eq_ignore_ascii_case(host))
    }

    /// Whether a host is one of our domains.
    pub fn is_our_domain(&self, host: &str) -> bool {
        self.cfg
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host))
    }

    /// Whether a URI names us: one of our domains (any port), or the
    /// host:port of one of our transports.
    pub fn uri_is_us(&self, u: &SipUri) -> bool {
        self.is_our_domain(&u.host) || self.is_local_hostport(&u.host, u.port, u.transport)
    }

    /// Whether a Route value (`<uri>;params`) points to us.
    pub fn route_is_us(&self, route: &str) -> bool {
        NameAddr::parse("Route", route)
            .ok()
            .and_then(|n| SipUri::parse(&n.uri))
            .is_some_and(|u| self.uri_is_us(&u))
    }

    /// Where a Route value sends a request.
    pub fn route_dest(route: &str) -> Option<Dest> {
        let n = NameAddr::parse("Route", route).ok()?;
        Some(SipUri::parse(&n.uri)?.dest())
    }

    fn via_is_ours(&self, via: &Via) -> bool {
        self.is_local_hostport(&via.host, via.port, Protocol::parse(&via.transport))
    }

    fn local_for(&self, p: Protocol) -> Option<&Local> {
        self.cfg.locals.iter().find(|l| l.protocol == p)
    }

    // ---- bookkeeping ----

    fn alloc(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn schedule(&mut self, id: u64) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        let d = e.deadline();
        let slot = e.scheduled();
        if d != *slot {
            *slot = d;
            if let Some(at) = d {
                self.heap.push(Reverse((at, id)));
            }
        }
    }

    fn remove(&mut self, id: u64) {
        match self.entries.remove(&id) {
            Some(Entry::Server(s)) => {
                self.server_keys.remove(&s.key);
                if !s.final_sent {
                    self.pending = self.pending.saturating_sub(1);
                }
            }
            Some(Entry::Answered(a)) => {
                self.server_keys.remove(&a.key);
            }
            Some(Entry::Relay(r)) => {
                self.client_keys.remove(&r.key);
            }
            Some(Entry::Client(c)) => {
                self.client_keys.remove(&c.key);
            }
            None => {}
        }
    }

    fn send_stateless(
        &self,
        req: &Message,
        code: u16,
        extra: &[String],
        to: Peer,
        out: &mut Vec<Output>,
    ) {
        let tag = to_tag(req);
        let bytes = build_response(req, code, reason(code), Some(&tag), extra);
        if let Some(m) = req.method() {
            self.metrics.response(&m, code);
        }
        out.push(Output::Send {
            to: Dest::Peer(to),
            bytes,
            tx: None,
        });
    }

    // ---- receiving ----

    /// Takes a received message. Returns a new request for the caller to
    /// decide on; everything else is settled here.
    pub fn receive(
        &mut self,
        msg: Message,
        from: Peer,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Option<Incoming> {
        if msg.is_request() {
            self.receive_request(msg, from, now, out)
        } else {
            self.receive_response(msg, now, out);
            None
        }
    }

    fn receive_request(
        &mut self,
        mut msg: Message,
        from: Peer,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> Option<Incoming> {
        let method = msg.method().unwrap_or_default();
        self.metrics.request(&method);
        let ack = method == "ACK";
        if let Err(e) = msg.validate() {
            tracing::debug!(error = %e, "invalid request");
            if !ack {
                self.send_stateless(&msg, e.status(), &[], from, out);
            }
            return None;
        }
        stamp_source(&mut msg, from);
        // RFC 2543 peers (no magic cookie) are matched by §17.2.3's rule.
        let Some(key) = TransactionKey::of(&msg).or_else(|| TransactionKey::rfc2543(&msg)) else {
            if !ack {
                self.send_stateless(&msg, 400, &[], from, out);
            }
            return None;
        };
        if let Some(&id) = self.server_keys.get(&key) {
            // A retransmission, or the ACK of an INVITE server transaction.
            let s = match self.entries.get_mut(&id) {
                Some(Entry::Server(s)) => s,
                Some(Entry::Answered(a)) => {
                    if ack && a.response.is_empty() {
                        // RFC 6026 §8.7: the ACK of the relayed 2xx.
                        return Some(Incoming {
                            server: None,
                            msg,
                            from,
                        });
                    }
                    if !ack && !a.response.is_empty() {
                        out.push(Output::Send {
                            to: Dest::Peer(a.peer),
                            bytes: a.response.clone(),
                            tx: Some(TxId(id)),
                        });
                        if let Some(code) = status_of(&a.response) {
                            self.metrics.response(&a.method, code);
                        }
                    }
                    return None;
                }
                _ => return None,
            };
            let acts = s.tx.on_request(msg, now);
            let passed = self.server_actions(id, acts, out);
            self.schedule(id);
            // RFC 6026: a 2xx ACK matching the Accepted INVITE is forwarded.
            return passed.map(|msg| Incoming {
                server: None,
                msg,
                from,
            });
        }
        if ack {
            return Some(Incoming {
                server: None,
                msg,
                from,
            });
        }
        if method == "CANCEL" {
            self.receive_cancel(msg, key, from, now, out);
            return None;
        }
        if self.pending >= self.cfg.max_transactions {
            tracing::debug!("transaction limit reached");
            self.send_stateless(&msg, 503, &["Retry-After: 5".to_owned()], from, out);
            return None;
        }
        let (id, passed) = self.new_server(msg, key, from, out);
        let msg = passed?;
        Some(Incoming {
            server: Some(TxId(id)),
            msg,
            from,
        })
    }

    fn new_server(
        &mut self,
        msg: Message,
        key: TransactionKey,
        from: Peer,
        out: &mut Vec<Output>,
    ) -> (u64, Option<Message>) {
        let method = msg.method().unwrap_or_default();
        let (tx, acts) = Transaction::server(msg, reliability(from.protocol), self.cfg.timers);
        let id = self.alloc();
        self.entries.insert(
            id,
            Entry::Server(ServerTx {
                tx,
                key: key.clone(),
                peer: from,
                method,
                clients: Vec::new(),
                open: 0,
                best: None,
                canceled: false,
                final_sent: false,
                guard: None,
                scheduled: None,
            }),
        );
        self.server_keys.insert(key, id);
        self.pending += 1;
        let passed = self.server_actions(id, acts, out);
        (id, passed)
    }

    /// Carries out a server transaction's actions; returns a message passed
    /// to the TU, if any.
    fn server_actions(
        &mut self,
        id: u64,
        acts: Vec<Action>,
        out: &mut Vec<Output>,
    ) -> Option<Message> {
        let mut passed = None;
        let mut terminated = false;
        let Some(Entry::Server(s)) = self.entries.get(&id) else {
            return None;
        };
        for a in acts {
            match a {
                Action::Send(bytes) => {
                    if let Some(code) = status_of(&bytes) {
                        self.metrics.response(&s.method, code);
                    }
                    out.push(Output::Send {
                        to: Dest::Peer(s.peer),
                        bytes,
                        tx: Some(TxId(id)),
                    });
                }
                Action::PassToTu(m) => passed = Some(m),
                // H fired: no ACK came; nothing to tell anyone.
                Action::Timeout | Action::TransportError => {}
                Action::Terminated => terminated = true,
            }
        }
        if terminated {
            self.remove(id);
        }
        passed
    }

    fn receive_cancel(
        &mut self,
        msg: Message,
        key: TransactionKey,
        from: Peer,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let invite_key = TransactionKey {
            method: "INVITE".to_owned(),
            ..key.clone()
        };
        let Some(&inv) = self.server_keys.get(&invite_key) else {
            self.send_stateless(&msg, 481, &[], from, out);
            return;
        };
        let (id, _) = self.new_server(msg, key, from, out);
        self.reply(TxId(id), 200, &[], now, out);
        self.cancel_server(inv, now, out);
    }

    /// Upstream cancelled an INVITE: CANCEL the branch, or answer 487 at
    /// once when nothing was forwarded yet.
    fn cancel_server(&mut self, id: u64, now: Instant, out: &mut Vec<Output>) {
        let Some(Entry::Server(s)) = self.entries.get_mut(&id) else {
            return;
        };
        if s.final_sent {
            return;
        }
        s.canceled = true;
        if s.clients.is_empty() {
            self.reply(TxId(id), 487, &[], now, out);
        } else {
            self.cancel_branches(id, now, out);
        }
    }

    /// CANCELs every branch of `server` still without a final response.
    fn cancel_branches(&mut self, server: u64, now: Instant, out: &mut Vec<Output>) {
        let Some(Entry::Server(s)) = self.entries.get(&server) else {
            return;
        };
        for c in s.clients.clone() {
            if let Some(Entry::Client(ct)) = self.entries.get_mut(&c) {
                if ct.done || ct.tx.kind() != Kind::ClientInvite {
                    continue;
                }
                if ct.cancel == Cancel::None {
                    ct.cancel = Cancel::Wanted;
                }
                // §9.1: no CANCEL before a provisional response.
                if ct.tx.state() == State::Proceeding {
                    self.send_cancel(c, now, out);
                }
            }
        }
    }

    /// Marks branch `cid` as finished; the server it belongs to, the first
    /// time only.
    fn mark_done(&mut self, cid: u64) -> Option<u64> {
        let Some(Entry::Client(c)) = self.entries.get_mut(&cid) else {
            return None;
        };
        if c.done {
            return None;
        }
        c.done = true;
        let server = c.server?;
        if let Some(Entry::Server(s)) = self.entries.get_mut(&server) {
            s.open = s.open.saturating_sub(1);
        }
        Some(server)
    }

    /// A branch ended without a 2xx: keep the best outcome, and answer
    /// upstream once every branch has ended (§16.7 steps 5–6).
    fn branch_final(&mut self, cid: u64, result: BranchFinal, now: Instant, out: &mut Vec<Output>) {
        let Some(server) = self.mark_done(cid) else {
            return;
        };
        let Some(Entry::Server(s)) = self.entries.get_mut(&server) else {
            return;
        };
        let code = result.code();
        if s.best.as_ref().is_none_or(|b| rank(code) < rank(b.code())) {
            s.best = Some(result);
        }
        let finished = s.open == 0;
        if code >= 600 {
            self.cancel_branches(server, now, out);
        }
        if finished {
            self.answer_best(server, now, out);
        }
    }

    fn answer_best(&mut self, server: u64, now: Instant, out: &mut Vec<Output>) {
        let Some(Entry::Server(s)) = self.entries.get_mut(&server) else {
            return;
        };
        if s.final_sent {
            return;
        }
        match s.best.take() {
            // A downstream 503 must not look like ours (§16.7 step 6).
            Some(BranchFinal::Remote(m)) if m.status() == Some(503) => {
                self.reply(TxId(server), 500, &[], now, out)
            }
            Some(BranchFinal::Remote(m)) => self.send_response(server, m, now, out),
            Some(BranchFinal::Local(code)) => self.reply(TxId(server), code, &[], now, out),
            None => self.reply(TxId(server), 500, &[], now, out),
        }
    }

    /// The stand-in for a branch that never answered.
    fn timeout_code(&self, server: Option<u64>) -> u16 {
        let canceled = server
            .is_some_and(|s| matches!(self.entries.get(&s), Some(Entry::Server(s)) if s.canceled));
        if canceled {
            487
        } else {
            408
        }
    }

    fn send_cancel(&mut self, cid: u64, now: Instant, out: &mut Vec<Output>) {
        let Some(Entry::Client(c)) = self.entries.get_mut(&cid) else {
            return;
        };
        if c.cancel == Cancel::Sent {
            return;
        }
        c.cancel = Cancel::Sent;
        let bytes = build_cancel(c.tx.request());
        let dest = c.dest.clone();
        let key = TransactionKey {
            method: "CANCEL".to_owned(),
            ..c.key.clone()
        };
        let Ok(Some(cancel)) = parse_datagram(&bytes, &self.limits) else {
            tracing::warn!("built an unparsable CANCEL");
            return;
        };
        self.start_client(cancel, key, dest, None, now, out);
    }

    fn start_client(
        &mut self,
        msg: Message,
        key: TransactionKey,
        dest: Dest,
        server: Option<u64>,
        now: Instant,
        out: &mut Vec<Output>,
    ) -> u64 {
        let (tx, acts) =
            Transaction::client(msg, reliability(dest_protocol(&dest)), self.cfg.timers, now);
        let id = self.alloc();
        for a in acts {
            if let Action::Send(bytes) = a {
                out.push(Output::Send {
                    to: dest.clone(),
                    bytes,
                    tx: Some(TxId(id)),
                });
            }
        }
        self.entries.insert(
            id,
            Entry::Client(ClientTx {
                tx,
                key: key.clone(),
                dest,
                server,
                cancel: Cancel::None,
                done: false,
                timer_c: None,
                scheduled: None,
            }),
        );
        self.client_keys.insert(key, id);
        self.schedule(id);
        id
    }

    fn receive_response(&mut self, resp: Message, now: Instant, out: &mut Vec<Output>) {
        let Some(key) = TransactionKey::of(&resp) else {
            return;
        };
        let Some(&cid) = self.client_keys.get(&key) else {
            self.forward_response_stateless(resp, out);
            return;
        };
        let c = match self.entries.get_mut(&cid) {
            Some(Entry::Client(c)) => c,
            Some(Entry::Relay(r)) => {
                if resp.status().is_some_and(|c| (200..300).contains(&c)) {
                    let server = r.server;
                    self.relay_up(server, resp, now, out);
                }
                return;
            }
            _ => return,
        };
        let acts = c.tx.on_response(resp, now);
        let dest = c.dest.clone();
        let mut terminated = false;
        for a in acts {
            match a {
                Action::Send(bytes) => out.push(Output::Send {
                    to: dest.clone(),
                    bytes,
                    tx: Some(TxId(cid)),
                }),
                Action::PassToTu(r) => self.client_response(cid, r, now, out),
                Action::Terminated => terminated = true,
                Action::Timeout | Action::TransportError => {}
            }
        }
        if terminated {
            self.remove(cid);
            return;
        }
        // An Accepted client INVITE only relays 2xx retransmissions now.
        if let Some(Entry::Client(c)) = self.entries.get(&cid) {
            if c.tx.kind() == Kind::ClientInvite && c.tx.state() == State::Accepted {
                if let (Some(until), Some(Entry::Client(c))) =
                    (c.tx.next_deadline(), self.entries.remove(&cid))
                {
                    self.entries.insert(
                        cid,
                        Entry::Relay(RelayTx {
                            key: c.key,
                            server: c.server,
                            until,
                            scheduled: c.scheduled,
                        }),
                    );
                }
            }
        }
        self.schedule(cid);
    }

    /// A response from downstream for client transaction `cid`.
    fn client_response(&mut self, cid: u64, r: Message, now: Instant, out: &mut Vec<Output>) {
        let Some(code) = r.status() else { return };
        let Some(Entry::Client(c)) = self.entries.get_mut(&cid) else {
            return;
        };
        let Some(server) = c.server else {
            // The answer to our own CANCEL: absorbed.
            return;
        };
        if code < 200 {
            c.timer_c = Some(now + TIMER_C);
            if c.cancel == Cancel::Wanted {
                self.send_cancel(cid, now, out);
            }
            if code > 100 {
                self.relay_up(Some(server), r, now, out);
            }
        } else if code < 300 {
            // Every 2xx goes up at once; the other branches are cancelled.
            // (Cancelled first: relaying the 2xx shrinks the server entry.)
            self.mark_done(cid);
            self.cancel_branches(server, now, out);
            self.relay_up(Some(server), r, now, out);
        } else {
            let mut r = r;
            r.remove_top_via();
            self.branch_final(cid, BranchFinal::Remote(r), now, out);
        }
    }

    /// Relays a downstream response (our Via still on top) to `server`.
    fn relay_up(
        &mut self,
        server: Option<u64>,
        mut r: Message,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(code) = r.status() else { return };
        r.remove_top_via();
        let Some(server) = server else { return };
        match self.entries.get(&server) {
            Some(Entry::Server(_)) => {}
            Some(Entry::Answered(a)) => {
                // An Accepted INVITE: further 2xx go to its peer.
                if a.response.is_empty() && (200..300).contains(&code) {
                    self.metrics.response(&a.method, code);
                    out.push(Output::Send {
                        to: Dest::Peer(a.peer),
                        bytes: r.to_bytes(),
                        tx: Some(TxId(server)),
                    });
                }
                return;
            }
            _ => {
                // The server transaction is over (a 2xx retransmission
                // after timer L): relay by the Via.
                self.forward_response_stateless_by_top(r, out);
                return;
            }
        }
        if code == 503 {
            // §16.7 step 6: a downstream 503 must not look like ours.
            self.reply(TxId(server), 500, &[], now, out);
            return;
        }
        self.send_response(server, r, now, out);
    }

    /// Relays a response matching no transaction: if the top Via is ours
    /// and there is another, by that one; else dropped.
    fn forward_response_stateless(&mut self, mut resp: Message, out: &mut Vec<Output>) {
        let Ok(vias) = resp.vias() else { return };
        if vias.len() < 2 || !self.via_is_ours(&vias[0]) {
            tracing::debug!("response matching nothing dropped");
            return;
        }
        resp.remove_top_via();
        self.send_by_via(resp, &vias[1], out);
    }

    fn forward_response_stateless_by_top(&mut self, resp: Message, out: &mut Vec<Output>) {
        let Ok(vias) = resp.vias() else { return };
        if let Some(v) = vias.first() {
            self.send_by_via(resp, v, out);
        }
    }

    fn send_by_via(&self, resp: Message, via: &Via, out: &mut Vec<Output>) {
        if let (Some(m), Some(code)) = (resp.method(), resp.status()) {
            self.metrics.response(&m, code);
        }
        out.push(Output::Send {
            to: via_dest(via),
            bytes: resp.to_bytes(),
            tx: None,
        });
    }

    // ---- answering ----

    /// Answers `server` with `code` (reason phrase standard) and extra
    /// header lines. Ignored when a final response was already sent.
    pub fn reply(
        &mut self,
        server: TxId,
        code: u16,
        extra: &[String],
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(Entry::Server(s)) = self.entries.get(&server.0) else {
            return;
        };
        if s.final_sent {
            return;
        }
        let req = s.tx.request();
        let tag = to_tag(req);
        let bytes = build_response(req, code, reason(code), Some(&tag), extra);
        self.reply_bytes(server, &bytes, now, out);
    }

    /// Answers `server` with a response built elsewhere (the registrar's).
    pub fn reply_bytes(&mut self, server: TxId, bytes: &[u8], now: Instant, out: &mut Vec<Output>) {
        match parse_datagram(bytes, &self.limits) {
            Ok(Some(resp)) if resp.status().is_some() => {
                self.send_response(server.0, resp, now, out)
            }
            _ => {
                tracing::warn!("unparsable response not sent");
                self.reply(server, 500, &[], now, out);
            }
        }
    }

    fn send_response(&mut self, id: u64, resp: Message, now: Instant, out: &mut Vec<Output>) {
        let Some(Entry::Server(s)) = self.entries.get_mut(&id) else {
            return;
        };
        let code = resp.status().unwrap_or(500);
        let acts = s.tx.send_response(resp, now);
        if code >= 200 && !s.final_sent {
            s.final_sent = true;
            s.guard = None;
            self.pending = self.pending.saturating_sub(1);
        }
        let last = acts.iter().rev().find_map(|a| match a {
            Action::Send(b) => Some(b.clone()),
            _ => None,
        });
        self.server_actions(id, acts, out);
        self.shrink(id, last);
        self.schedule(id);
    }

    /// Replaces a Completed non-INVITE server transaction by its response.
    fn shrink(&mut self, id: u64, last: Option<Vec<u8>>) {
        let Some(Entry::Server(s)) = self.entries.get(&id) else {
            return;
        };
        let response = match (s.tx.kind(), s.tx.state(), last) {
            (Kind::ServerNonInvite, State::Completed, Some(r)) => r,
            (Kind::ServerInvite, State::Accepted, _) => Vec::new(),
            _ => return,
        };
        let Some(until) = s.tx.next_deadline() else {
            return;
        };
        if let Some(Entry::Server(s)) = self.entries.remove(&id) {
            self.entries.insert(
                id,
                Entry::Answered(AnsweredTx {
                    key: s.key,
                    peer: s.peer,
                    method: s.method,
                    response,
                    until,
                    scheduled: s.scheduled,
                }),
            );
        }
    }

    /// Parks `server` while a location job runs: if no answer comes within
    /// 64·T1, it is answered 503.
    pub fn park(&mut self, server: TxId, now: Instant) {
        if let Some(Entry::Server(s)) = self.entries.get_mut(&server.0) {
            s.guard = Some(now + self.cfg.timers.t1 * 64);
        }
        self.schedule(server.0);
    }

    // ---- forwarding ----

    /// Forwards the request of `server` (the caller may have edited it, e.g.
    /// popped our Route) to `target`, statefully (§16.6). `record_route`
    /// says whether the request may create a dialog. Answers the request
    /// itself when it cannot be forwarded (483, 482, ...).
    pub fn forward(
        &mut self,
        server: TxId,
        msg: Message,
        target: Forward,
        record_route: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        self.fork(server, msg, vec![target], record_route, now, out);
    }

    /// Forwards to every target at once (parallel forking, §16.6–16.7):
    /// provisionals and every 2xx go up as they come (a 2xx cancels the
    /// other branches); when all branches have ended without a 2xx, the
    /// best final response does.
    pub fn fork(
        &mut self,
        server: TxId,
        msg: Message,
        targets: Vec<Forward>,
        record_route: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(Entry::Server(s)) = self.entries.get(&server.0) else {
            return;
        };
        if s.final_sent || !s.clients.is_empty() {
            return;
        }
        if self.pending > self.cfg.max_transactions {
            self.reply(server, 503, &["Retry-After: 5".to_owned()], now, out);
            return;
        }
        let in_proto = s.peer.protocol;
        let in_flow = s.peer.flow.map(|_| s.peer);
        let n = targets.len();
        let mut msg = Some(msg);
        let mut clients = Vec::with_capacity(n);
        let mut failed: Option<u16> = None;
        for (i, target) in targets.into_iter().enumerate() {
            let copy = if i + 1 == n { msg.take() } else { msg.clone() };
            let Some(copy) = copy else { break };
            match self.prepare(copy, target, in_proto, in_flow, record_route) {
                Err(code) => {
                    if failed.is_none_or(|f| rank(code) < rank(f)) {
                        failed = Some(code);
                    }
                }
                Ok(p) => {
                    tracing::debug!(dest = ?p.dest, "forwarding");
                    clients.push(self.start_client(p.msg, p.key, p.dest, Some(server.0), now, out));
                }
            }
        }
        if clients.is_empty() {
            self.reply(server, failed.unwrap_or(480), &[], now, out);
            return;
        }
        if let Some(Entry::Server(s)) = self.entries.get_mut(&server.0) {
            s.open = clients.len();
            s.clients = clients;
            s.best = failed.map(BranchFinal::Local);
            s.guard = None;
        }
        self.schedule(server.0);
    }

    /// Forwards a request statelessly (an ACK for a 2xx): no transaction;
    /// a request that cannot be forwarded is dropped.
    pub fn forward_stateless(
        &mut self,
        msg: Message,
        target: Forward,
        in_proto: Protocol,
        out: &mut Vec<Output>,
    ) {
        match self.prepare(msg, target, in_proto, None, false) {
            Ok(p) => out.push(Output::Send {
                to: p.dest,
                bytes: p.msg.to_bytes(),
                tx: None,
            }),
            Err(code) => tracing::debug!(code, "stateless forward refused"),
        }
    }

    /// §16.6 steps 1–8 on the request: Max-Forwards, loop check, Request-URI,
    /// Route, Record-Route, our Via. Err is the status to answer.
    fn prepare(
        &self,
        mut msg: Message,
        target: Forward,
        in_proto: Protocol,
        in_flow: Option<Peer>,
        record_route: bool,
    ) -> Result<Prepared, u16> {
        match msg.max_forwards() {
            Ok(Some(0)) => return Err(483),
            Ok(Some(n)) => msg.set_max_forwards(n - 1),
            Ok(None) => msg.set_max_forwards(70),
            Err(_) => return Err(400),
        }
        let vias = msg.vias().map_err(|_| 400u16)?;
        let top = vias.first().ok_or(400u16)?;
        let lp = loop_part(&msg);
        let looped = vias.iter().any(|v| {
            self.via_is_ours(v)
                && v.branch()
                    .and_then(|b| b.rsplit_once('-'))
                    .is_some_and(|(_, l)| l == lp)
        });
        if looped {
            return Err(482);
        }
        let method = msg.method().unwrap_or_default();
        let dest_text = format!("{:?}", target.dest);
        let uniq = short_hash(&[
            top.branch().unwrap_or_default().as_bytes(),
            top.host.as_bytes(),
            &top.port.unwrap_or(0).to_be_bytes(),
            target.uri.as_deref().unwrap_or_default().as_bytes(),
            dest_text.as_bytes(),
        ]);
        if let Some(uri) = &target.uri {
            msg.set_request_uri(uri).map_err(|_| 500u16)?;
        }
        if !target.routes.is_empty() {
            msg = with_routes(&msg, &target.routes, &self.limits).ok_or(500u16)?;
        }
        let out_proto = dest_protocol(&target.dest);
        let local_out = self.local_for(out_proto).ok_or(503u16)?;
        if record_route && self.cfg.record_route {
            // RFC 5658: one Record-Route per side when the transports
            // differ, the one facing downstream on top. A side reached over
            // a connection (TCP/TLS flow) gets its own entry with a flow
            // token, so in-dialog requests towards it take that flow rather
            // than the Contact's (often unreachable) address.
            let out_flow = match &target.dest {
                Dest::Peer(p) if p.flow.is_some() => Some(*p),
                _ => None,
            };
            if let Some(local_in) = self.local_for(in_proto) {
                if local_in != local_out || in_flow.is_some() || out_flow.is_some() {
                    msg.add_record_route(&self.record_route(local_in, in_flow));
                }
            }
            msg.add_record_route(&self.record_route(local_out, out_flow));
        }
        let branch = format!("z9hG4bK{uniq}-{lp}");
        let sent_by = local_out.sent_by();
        msg.prepend_via(&format!(
            "SIP/2.0/{} {sent_by};branch={branch};rport",
            local_out.protocol.via_token()
        ));
        Ok(Prepared {
            msg,
            dest: target.dest,
            key: TransactionKey {
                branch,
                sent_by,
                method: if method == "ACK" {
                    "INVITE".to_owned()
                } else {
                    method
                },
            },
        })
    }

    /// Our Record-Route value for `local`, with a flow token for `flow`.
    fn record_route(&self, local: &Local, flow: Option<Peer>) -> String {
        match flow {
            Some(p) => format!("<{};ft={}>", local.route_uri(), self.flow_token(&p)),
            None => format!("<{}>", local.route_uri()),
        }
    }

    /// `hex(protocol, flow, ip, port, keyed MAC)`: only we can make one, so
    /// a crafted Route cannot steer requests into someone's connection.
    fn flow_token(&self, p: &Peer) -> String {
        let mut b = Vec::with_capacity(35);
        b.push(match p.protocol {
            Protocol::Udp => 0u8,
            Protocol::Tcp => 1,
            Protocol::Tls => 2,
        });
        b.extend_from_slice(&p.flow.map_or(0, |f| f.0).to_be_bytes());
        match p.addr.ip() {
            IpAddr::V4(ip) => b.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => b.extend_from_slice(&ip.octets()),
        }
        b.extend_from_slice(&p.addr.port().to_be_bytes());
        let mac = blake3::keyed_hash(&self.cfg.flow_key, &b);
        b.extend_from_slice(&mac.as_bytes()[..8]);
        hex::encode(b)
    }

    /// The flow named by one of our Route values (the last of ours popped
    /// from an in-dialog request), if it carries a valid flow token.
    pub fn route_flow(&self, route: &str) -> Option<Peer> {
        let n = NameAddr::parse("Route", route).ok()?;
        let token = n.uri.split(';').find_map(|p| p.strip_prefix("ft="))?;
        let b = hex::decode(token).ok()?;
        let (body, mac) = b.split_at_checked(b.len().checked_sub(8)?)?;
        let want = blake3::keyed_hash(&self.cfg.flow_key, body);
        if &want.as_bytes()[..8] != mac {
            return None;
        }
        let protocol = match body.first()? {
            0 => Protocol::Udp,
            1 => Protocol::Tcp,
            2 => Protocol::Tls,
            _ => return None,
        };
        let flow = u64::from_be_bytes(body.get(1..9)?.try_into().ok()?);
        let ip: IpAddr = match body.len() {
            15 => <[u8; 4]>::try_from(body.get(9..13)?).ok()?.into(),
            27 => <[u8; 16]>::try_from(body.get(9..25)?).ok()?.into(),
            _ => return None,
        };
        let port = u16::from_be_bytes(body.get(body.len() - 2..)?.try_into().ok()?);
        Some(Peer {
            protocol,
            addr: SocketAddr::new(ip, port),
            flow: Some(crate::peer::FlowId(flow)),
        })
    }

    // ---- failures and timers ----

    /// The transport could not send for `tx`.
    pub fn on_send_failed(&mut self, tx: TxId, now: Instant, out: &mut Vec<Output>) {
        match self.entries.get_mut(&tx.0) {
            Some(Entry::Client(c)) => {
                let _ = c.tx.on_transport_error();
                self.branch_final(tx.0, BranchFinal::Local(503), now, out);
                self.remove(tx.0);
            }
            Some(Entry::Server(s)) => {
                let _ = s.tx.on_transport_error();
                self.remove(tx.0);
            }
            Some(Entry::Answered(_) | Entry::Relay(_)) => self.remove(tx.0),
            None => {}
        }
    }

    /// Fires every due timer.
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Output>) {
        while let Some(&Reverse((at, id))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(e) = self.entries.get_mut(&id) else {
                continue;
            };
            if *e.scheduled() != Some(at) {
                continue;
            }
            *e.scheduled() = None;
            match e {
                Entry::Server(_) => self.fire_server(id, now, out),
                Entry::Client(_) => self.fire_client(id, now, out),
                // Timer J, L or M is over.
                Entry::Answered(_) | Entry::Relay(_) => self.remove(id),
            }
            self.schedule(id);
        }
    }

    fn fire_server(&mut self, id: u64, now: Instant, out: &mut Vec<Output>) {
        let Some(Entry::Server(s)) = self.entries.get_mut(&id) else {
            return;
        };
        if s.guard.is_some_and(|g| g <= now) {
            s.guard = None;
            tracing::debug!("location job timed out");
            self.reply(TxId(id), 503, &["Retry-After: 5".to_owned()], now, out);
        }
        let Some(Entry::Server(s)) = self.entries.get_mut(&id) else {
            return;
        };
        if s.tx.next_deadline().is_some_and(|d| d <= now) {
            let acts = s.tx.on_timer(now);
            self.server_actions(id, acts, out);
        }
    }

    fn fire_client(&mut self, id: u64, now: Instant, out: &mut Vec<Output>) {
        let Some(Entry::Client(c)) = self.entries.get_mut(&id) else {
            return;
        };
        if ringing(&c.tx) {
            // Timer C: CANCEL first; if even that brings no final response
            // within 64·T1, give up on the branch.
            if c.cancel != Cancel::Sent {
                c.timer_c = Some(now + self.cfg.timers.t1 * 64);
                self.send_cancel(id, now, out);
            } else {
                let server = c.server;
                let code = self.timeout_code(server);
                self.branch_final(id, BranchFinal::Local(code), now, out);
                self.remove(id);
            }
            return;
        }
        let acts = c.tx.on_timer(now);
        let dest = c.dest.clone();
        let server = c.server;
        let mut terminated = false;
        for a in acts {
            match a {
                Action::Send(bytes) => out.push(Output::Send {
                    to: dest.clone(),
                    bytes,
                    tx: Some(TxId(id)),
                }),
                Action::Timeout => {
                    let code = self.timeout_code(server);
                    self.branch_final(id, BranchFinal::Local(code), now, out);
                }
                Action::Terminated => terminated = true,
                Action::PassToTu(_) | Action::TransportError => {}
            }
        }
        if terminated {
            self.remove(id);
        }
    }
}

/// RFC 3261 §18.2.1 and RFC 3581 §4: the top Via learns where the request
/// really came from (`received`, and `rport` when asked for), so responses
/// relayed by Via alone still find a peer behind NAT.
fn stamp_source(msg: &mut Message, from: Peer) {
    let Some(top) = msg.headers_named("Via").next().map(|h| h.value()) else {
        return;
    };
    let first = sharecall_sip::headers::split_list(&top)
        .first()
        .map(|v| (*v).to_owned())
        .unwrap_or_default();
    let Ok(via) = Via::parse(&first) else { return };
    let ip = from.addr.ip();
    let host = via.host.trim_start_matches('[').trim_end_matches(']');
    let same_host = host.parse::<IpAddr>().is_ok_and(|h| h == ip);
    let wants_rport = matches!(via.rport(), Some(None));
    if same_host && !wants_rport {
        return;
    }
    let mut v = format!("SIP/2.0/{} {}", via.transport, via.host);
    if let Some(p) = via.port {
        v.push_str(&format!(":{p}"));
    }
    for (name, value) in &via.params.0 {
        if name.eq_ignore_ascii_case("received") {
            continue;
        }
        if name.eq_ignore_ascii_case("rport") {
            v.push_str(&format!(";rport={}", from.addr.port()));
            continue;
        }
        v.push(';');
        v.push_str(name);
        if let Some(val) = value {
            v.push('=');
            v.push_str(val);
        }
    }
    if !same_host || wants_rport {
        v.push_str(&format!(";received={ip}"));
    }
    msg.remove_top_via();
    msg.prepend_via(&v);
}

fn status_of(bytes: &[u8]) -> Option<u16> {
    let code = bytes.get(8..11)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// The loop-detection half of our branch (§16.6 step 8): what makes a
/// request the same request again, without the Via chain, so a true loop
/// computes the same value and a spiral (new Request-URI) does not.
fn loop_part(msg: &Message) -> String {
    let uri = msg.request_uri().unwrap_or_default();
    let tag = |h: &str| -> String {
        let v = msg
            .headers_named(h)
            .next()
            .map(|f| f.value())
            .unwrap_or_default();
        NameAddr::parse(h, &v)
            .ok()
            .and_then(|n| n.tag().map(str::to_owned))
            .unwrap_or_default()
    };
    let call_id = msg.call_id().unwrap_or_default();
    let seq = msg.cseq().map(|c| c.seq).unwrap_or(0);
    let pr = msg.values("Proxy-Require").join(",");
    let pa = msg.values("Proxy-Authorization").join(",");
    short_hash(&[
        uri.as_bytes(),
        tag("From").as_bytes(),
        tag("To").as_bytes(),
        call_id.as_bytes(),
        &seq.to_be_bytes(),
        pr.as_bytes(),
        pa.as_bytes(),
    ])
}

/// `msg` with `routes` added as Route lines above its own (the Message API
/// has no Route insertion, so the bytes are rebuilt; only for bindings with
/// a Path).
fn with_routes(msg: &Message, routes: &[String], limits: &Limits) -> Option<Message> {
    let bytes = msg.to_bytes();
    let eol = bytes.windows(2).position(|w| w == b"\r\n")?;
    let mut out = Vec::with_capacity(bytes.len() + 64 * routes.len());
    out.extend_from_slice(&bytes[..eol + 2]);
    for r in routes {
        out.extend_from_slice(b"Route: ");
        out.extend_from_slice(r.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(&bytes[eol + 2..]);
    let limits = Limits {
        max_headers: limits.max_headers + routes.len(),
        max_header_bytes: limits.max_header_bytes + out.len(),
        ..*limits
    };
    parse_datagram(&out, &limits).ok().flatten()
}

/// The CANCEL for a forwarded INVITE (§9.1): its Request-URI, top Via,
/// Route, Call-ID, From, To and CSeq number.
fn build_cancel(inv: &Message) -> Vec<u8> {
    let uri = inv.request_uri().unwrap_or("sip:invalid");
    let mut out = format!("CANCEL {uri} SIP/2.0\r\n").into_bytes();
    let mut line = |name: &str, value: &str| {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    };
    if let Some(v) = inv.values("Via").first() {
        line("Via", v);
    }
    for r in inv.values("Route") {
        line("Route", &r);
    }
    line("Max-Forwards", "70");
    for h in ["From", "To", "Call-ID"] {
        if let Some(f) = inv.headers_named(h).next() {
            line(h, &f.value());
        }
    }
    let seq = inv.cseq().map(|c| c.seq).unwrap_or(0);
    line("CSeq", &format!("{seq} CANCEL"));
    line("Content-Length", "0");
    out.extend_from_slice(b"\r\n");
    out
}
