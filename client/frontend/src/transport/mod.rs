//! UDP, TCP and TLS transports.
//!
//! [`Transport::bind`] opens the sockets (port 0 allowed: the actual ports
//! are in [`Transport::local_addrs`]); [`Transport::start`] spawns the
//! receive loops, which frame and parse what arrives and hand each valid
//! message to the core as [`Input::Received`] on a channel. Malformed
//! requests are answered statelessly (400, 505, 513) right here, so the
//! core only sees messages that passed [`sharecall_sip::Message::validate`].
//! [`TransportHandle::send`] is the way out: over UDP from the listening
//! socket, over TCP/TLS on the connection a peer already has with us (its
//! flow) or on a new one; a failed send is reported as
//! [`Input::SendFailed`] when it belonged to a transaction.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::pki_types::ServerName;
use sharecall_sip::framer::looks_like_response;
use sharecall_sip::message::build_response;
use sharecall_sip::{parse_datagram, Limits, Message, ParseError};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

use crate::core::{Input, TxId};
use crate::peer::{Dest, FlowId, Peer, Protocol};

mod stream;
pub mod tls;
mod udp;

pub use tls::TlsIdentity;

/// Why the transports cannot start.
#[derive(Debug, Error)]
pub enum TransportError {
    /// A socket could not be bound (address in use, no permission).
    #[error("cannot listen on {protocol} {addr}: {source}")]
    Bind {
        /// The transport.
        protocol: Protocol,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS certificate, key or trusted roots are unusable.
    #[error("TLS: {0}")]
    Tls(String),
}

/// What one peer may cost, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct TransportConfig {
    /// Parser limits (header section at most 16 KiB or `max_message`).
    pub limits: Limits,
    /// Largest message, bytes.
    pub max_message: usize,
    /// Inbound TCP/TLS connections at most.
    pub max_connections: usize,
    /// A connection without reads this long is closed.
    pub idle_timeout: Duration,
    /// A message must be complete this long after its first byte, and a
    /// TLS handshake done.
    pub message_timeout: Duration,
    /// Outbound connects (with TLS handshake) must finish within this.
    pub connect_timeout: Duration,
}

impl TransportConfig {
    /// The settings of a `[limits]` section.
    pub fn from_limits(l: &crate::config::Limits) -> TransportConfig {
        TransportConfig {
            limits: Limits {
                max_header_bytes: l.max_message.min(Limits::default().max_header_bytes),
                max_body_bytes: l.max_message,
                max_headers: Limits::default().max_headers,
            },
            max_message: l.max_message,
            max_connections: l.max_connections,
            idle_timeout: l.idle_timeout,
            message_timeout: l.message_timeout,
            connect_timeout: l.connect_timeout,
        }
    }
}

/// Which sockets to open.
#[derive(Debug, Default)]
pub struct BindSpec {
    /// UDP socket.
    pub udp: Option<SocketAddr>,
    /// TCP listener.
    pub tcp: Option<SocketAddr>,
    /// TLS listener, with the identity it presents.
    pub tls: Option<(SocketAddr, TlsIdentity)>,
    /// Roots trusted for outbound TLS; `None` refuses outbound TLS.
    pub client_tls: Option<Arc<rustls::ClientConfig>>,
}

/// The addresses actually bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    /// UDP.
    pub udp: Option<SocketAddr>,
    /// TCP.
    pub tcp: Option<SocketAddr>,
    /// TLS.
    pub tls: Option<SocketAddr>,
}

/// Bound sockets, not yet serving.
pub struct Transport {
    cfg: TransportConfig,
    udp: Option<Arc<UdpSocket>>,
    tcp: Option<TcpListener>,
    tls: Option<(TcpListener, TlsAcceptor)>,
    client_tls: Option<Arc<rustls::ClientConfig>>,
    addrs: LocalAddrs,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transport({:?})", self.addrs)
    }
}

impl Transport {
    /// Opens every socket of `spec` (all or nothing).
    pub async fn bind(spec: BindSpec, cfg: TransportConfig) -> Result<Transport, TransportError> {
        let bind_err = |protocol, addr| {
            move |source| TransportError::Bind {
                protocol,
                addr,
                source,
            }
        };
        let mut addrs = LocalAddrs::default();
        let udp = match spec.udp {
            Some(a) => {
                let s = UdpSocket::bind(a)
                    .await
                    .map_err(bind_err(Protocol::Udp, a))?;
                addrs.udp = Some(s.local_addr().map_err(bind_err(Protocol::Udp, a))?);
                Some(Arc::new(s))
            }
            None => None,
        };
        let tcp = match spec.tcp {
            Some(a) => {
                let l = TcpListener::bind(a)
                    .await
                    .map_err(bind_err(Protocol::Tcp, a))?;
                addrs.tcp = Some(l.local_addr().map_err(bind_err(Protocol::Tcp, a))?);
                Some(l)
            }
            None => None,
        };
        let tls = match spec.tls {
            Some((a, identity)) => {
                let acceptor = TlsAcceptor::from(identity.server_config()?);
                let l = TcpListener::bind(a)
                    .await
                    .map_err(bind_err(Protocol::Tls, a))?;
                addrs.tls = Some(l.local_addr().map_err(bind_err(Protocol::Tls, a))?);
                Some((l, acceptor))
            }
            None => None,
        };
        Ok(Transport {
            cfg,
            udp,
            tcp,
            tls,
            client_tls: spec.client_tls,
            addrs,
        })
    }

    /// The bound addresses (with the actual ports).
    pub fn local_addrs(&self) -> LocalAddrs {
        self.addrs
    }

    /// Spawns the receive loops; received messages and send failures go to
    /// `inputs`. Must be called inside a tokio runtime.
    pub fn start(self, inputs: mpsc::Sender<Input>) -> TransportHandle {
        let shared = Arc::new(Shared {
            cfg: self.cfg,
            udp: self.udp.clone(),
            flows: Mutex::new(FlowTable::default()),
            inputs,
            client_tls: self.client_tls,
            next_flow: AtomicU64::new(1),
            inbound: AtomicUsize::new(0),
            stop_accept: CancellationToken::new(),
            stop: CancellationToken::new(),
        });
        if let Some(s) = self.udp {
            tokio::spawn(udp::receive_loop(shared.clone(), s));
        }
        if let Some(l) = self.tcp {
            tokio::spawn(stream::accept_loop(shared.clone(), l, None));
        }
        if let Some((l, acceptor)) = self.tls {
            tokio::spawn(stream::accept_loop(shared.clone(), l, Some(acceptor)));
        }
        TransportHandle {
            shared,
            addrs: self.addrs,
        }
    }
}

/// One open connection, as the send path sees it.
struct FlowEntry {
    protocol: Protocol,
    addr: SocketAddr,
    tx: mpsc::Sender<Vec<u8>>,
}

#[derive(Default)]
struct FlowTable {
    flows: HashMap<FlowId, FlowEntry>,
    by_addr: HashMap<(Protocol, SocketAddr), FlowId>,
}

impl FlowTable {
    fn insert(&mut self, id: FlowId, entry: FlowEntry) {
        // The newest connection to an address wins: it is the one the peer
        // is most likely to keep open.
        self.by_addr.insert((entry.protocol, entry.addr), id);
        self.flows.insert(id, entry);
    }

    fn remove(&mut self, id: FlowId) {
        if let Some(e) = self.flows.remove(&id) {
            if self.by_addr.get(&(e.protocol, e.addr)) == Some(&id) {
                self.by_addr.remove(&(e.protocol, e.addr));
            }
        }
    }

    fn sender(
        &self,
        flow: Option<FlowId>,
        protocol: Protocol,
        addr: SocketAddr,
    ) -> Option<mpsc::Sender<Vec<u8>>> {
        let by_flow = flow
            .and_then(|id| self.flows.get(&id))
            .filter(|e| e.protocol == protocol);
        by_flow
            .or_else(|| {
                self.by_addr
                    .get(&(protocol, addr))
                    .and_then(|id| self.flows.get(id))
            })
            .map(|e| e.tx.clone())
    }
}

/// The outcome of a send on an open connection.
enum FlowSend {
    Sent,
    /// No open connection (or it just closed): the bytes back.
    NoFlow(Vec<u8>),
    /// The connection's queue is full.
    Full(Vec<u8>),
}

struct Shared {
    cfg: TransportConfig,
    udp: Option<Arc<UdpSocket>>,
    flows: Mutex<FlowTable>,
    inputs: mpsc::Sender<Input>,
    client_tls: Option<Arc<rustls::ClientConfig>>,
    next_flow: AtomicU64,
    inbound: AtomicUsize,
    stop_accept: CancellationToken,
    stop: CancellationToken,
}

impl Shared {
    fn flows(&self) -> MutexGuard<'_, FlowTable> {
        // A panic while holding the lock cannot leave the table half
        // updated (every update is one insert or remove), so go on.
        self.flows.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn new_flow(&self) -> FlowId {
        FlowId(self.next_flow.fetch_add(1, Ordering::Relaxed))
    }

    /// Reports a failed send to the core (when it belonged to a
    /// transaction).
    fn failed(&self, tx: Option<TxId>, to: &str, why: &str, bytes: &[u8]) {
        // Parsing again costs only on this (rare) path, and names the
        // dialog in the log.
        let call_id = parse_datagram(bytes, &Limits::default())
            .ok()
            .flatten()
            .and_then(|m| m.call_id().ok());
        tracing::warn!(to, why, ?call_id, "send failed");
        if let Some(tx) = tx {
            let inputs = self.inputs.clone();
            // The core reads this channel: never block its task on it.
            if let Err(mpsc::error::TrySendError::Full(i)) =
                inputs.try_send(Input::SendFailed { tx })
            {
                tokio::spawn(async move {
                    let _ = inputs.send(i).await;
                });
            }
        }
    }

    fn send_udp(self: &Arc<Self>, addr: SocketAddr, bytes: Vec<u8>, tx: Option<TxId>) {
        let Some(sock) = self.udp.clone() else {
            self.failed(tx, &addr.to_string(), "no UDP listener", &bytes);
            return;
        };
        match sock.try_send_to(&bytes, addr) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let shared = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = sock.send_to(&bytes, addr).await {
                        shared.failed(tx, &addr.to_string(), &e.to_string(), &bytes);
                    }
                });
            }
            Err(e) => self.failed(tx, &addr.to_string(), &e.to_string(), &bytes),
        }
    }

    /// Sends on an open connection; gives the bytes back when there is
    /// none (or it just closed).
    fn send_on_flow(
        &self,
        flow: Option<FlowId>,
        protocol: Protocol,
        addr: SocketAddr,
        bytes: Vec<u8>,
    ) -> FlowSend {
        let Some(sender) = self.flows().sender(flow, protocol, addr) else {
            return FlowSend::NoFlow(bytes);
        };
        match sender.try_send(bytes) {
            Ok(()) => FlowSend::Sent,
            Err(mpsc::error::TrySendError::Closed(b)) => FlowSend::NoFlow(b),
            // A peer that does not read what we already queued: dropping
            // is better than queueing without bound.
            Err(mpsc::error::TrySendError::Full(b)) => FlowSend::Full(b),
        }
    }

    /// Connects to the first of `addrs` that accepts (A/AAAA order) and
    /// sends; reuses a connection another send opened meanwhile.
    async fn connect_and_send(
        self: Arc<Self>,
        protocol: Protocol,
        addrs: Vec<SocketAddr>,
        name: Option<String>,
        bytes: Vec<u8>,
        tx: Option<TxId>,
    ) {
        let mut bytes = bytes;
        for addr in &addrs {
            bytes = match self.send_on_flow(None, protocol, *addr, bytes) {
                FlowSend::Sent => return,
                FlowSend::Full(b) => {
                    return self.failed(tx, &addr.to_string(), "connection send queue full", &b)
                }
                FlowSend::NoFlow(b) => b,
            };
        }
        let mut why = String::from("no address");
        for addr in addrs {
            match stream::connect(&self, protocol, addr, name.clone()).await {
                Ok(sender) => {
                    if let Err(e) = sender.send(bytes).await {
                        self.failed(tx, &addr.to_string(), "connection closed at once", &e.0);
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!(%protocol, %addr, error = %e, "connect failed");
                    why = format!("{protocol} {addr}: {e}");
                }
            }
        }
        let to = name.unwrap_or_else(|| "peer".into());
        self.failed(tx, &to, &why, &bytes)
    }
}

/// The running transports: the send path, and shutdown. Cheap to clone.
#[derive(Clone)]
pub struct TransportHandle {
    shared: Arc<Shared>,
    addrs: LocalAddrs,
}

impl std::fmt::Debug for TransportHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TransportHandle({:?})", self.addrs)
    }
}

impl TransportHandle {
    /// The bound addresses.
    pub fn local_addrs(&self) -> LocalAddrs {
        self.addrs
    }

    /// Sends `bytes` to `to` without waiting: connects or resolves in a
    /// task when needed. A failure is logged and, with `tx`, reported as
    /// [`Input::SendFailed`].
    pub fn send(&self, to: Dest, bytes: Vec<u8>, tx: Option<TxId>) {
        match to {
            Dest::Peer(p) => self.send_to_peer(p, bytes, tx),
            Dest::Name {
                protocol,
                host,
                port,
            } => {
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    // Over UDP we send from our one socket: prefer
                    // addresses of its family.
                    let family = shared
                        .udp
                        .as_ref()
                        .and_then(|u| u.local_addr().ok())
                        .filter(|_| protocol == Protocol::Udp)
                        .map(|a| a.is_ipv4());
                    let lookup = tokio::time::timeout(shared.cfg.connect_timeout, async {
                        let bare = host.trim_start_matches('[').trim_end_matches(']');
                        tokio::net::lookup_host((bare, port)).await.map(|a| {
                            let mut all: Vec<SocketAddr> = a.collect();
                            // Stable: the resolver's order otherwise.
                            all.sort_by_key(|a| family.is_some_and(|v4| a.is_ipv4() != v4));
                            all
                        })
                    })
                    .await;
                    let addrs = match lookup {
                        Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
                        Ok(Ok(_)) => {
                            return shared.failed(tx, &host, "lookup found no address", &bytes)
                        }
                        Ok(Err(e)) => {
                            return shared.failed(tx, &host, &format!("lookup: {e}"), &bytes)
                        }
                        Err(_) => return shared.failed(tx, &host, "lookup timed out", &bytes),
                    };
                    if protocol == Protocol::Udp {
                        return shared.send_udp(addrs[0], bytes, tx);
                    }
                    tokio::spawn(shared.connect_and_send(protocol, addrs, Some(host), bytes, tx));
                });
            }
        }
    }

    fn send_to_peer(&self, p: Peer, bytes: Vec<u8>, tx: Option<TxId>) {
        if p.protocol == Protocol::Udp {
            return self.shared.send_udp(p.addr, bytes, tx);
        }
        match self.shared.send_on_flow(p.flow, p.protocol, p.addr, bytes) {
            FlowSend::Sent => {}
            FlowSend::Full(b) => {
                self.shared
                    .failed(tx, &p.addr.to_string(), "connection send queue full", &b)
            }
            FlowSend::NoFlow(bytes) => {
                tokio::spawn(self.shared.clone().connect_and_send(
                    p.protocol,
                    vec![p.addr],
                    None,
                    bytes,
                    tx,
                ));
            }
        }
    }

    /// Open TCP/TLS connections (inbound and outbound).
    pub fn connections(&self) -> usize {
        self.shared.flows().flows.len()
    }

    /// Stops accepting connections (graceful shutdown, first step); open
    /// connections and UDP keep working.
    pub fn stop_accepting(&self) {
        self.shared.stop_accept.cancel();
    }

    /// Stops everything: receive loops end, connections close after
    /// writing what is queued.
    pub fn shutdown(&self) {
        self.shared.stop_accept.cancel();
        self.shared.stop.cancel();
    }
}

/// The reason phrase of the statuses the transport answers itself.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        _ => "Error",
    }
}

/// A stateless response to `req` with a fresh To tag, or `None` for what
/// must not be answered (responses and ACKs).
pub(crate) fn stateless_response(req: &Message, status: u16, extra: &[String]) -> Option<Vec<u8>> {
    if !req.is_request() || req.method().as_deref() == Some("ACK") {
        return None;
    }
    let tag = hex::encode(rand::random::<[u8; 6]>());
    Some(build_response(
        req,
        status,
        reason(status),
        Some(&tag),
        extra,
    ))
}

/// The answer to bytes that failed framing or parsing with `status`: the
/// header section is parsed again without its body and Content-Length (so
/// an oversized or badly delimited request still gets its 513 or 400 with
/// the right Via, From, To, Call-ID and CSeq). `None` when even that fails
/// or the bytes are a response: then nothing can be answered.
pub(crate) fn salvage_response(bytes: &[u8], status: u16) -> Option<Vec<u8>> {
    if looks_like_response(bytes) {
        return None;
    }
    let mut b = bytes;
    while b.starts_with(b"\r\n") {
        b = &b[2..];
    }
    let end = b.windows(4).position(|w| w == b"\r\n\r\n")?;
    let mut head = Vec::with_capacity(end + 24);
    let mut skipping = false;
    for (i, line) in b[..end].split(|&c| c == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if i == 0 && status != 505 {
            // The request line may be what failed (RFC 4475 ltgtruri,
            // lwsstart, trws, escruri): the answer copies none of it, so a
            // neutral one with the same method (an ACK is never answered)
            // lets the header section be parsed.
            let method = line
                .split(|c| c.is_ascii_whitespace())
                .find(|t| !t.is_empty())
                .filter(|t| {
                    t.iter()
                        .all(|&c| c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c))
                })
                .unwrap_or(b"OPTIONS");
            head.extend_from_slice(method);
            head.extend_from_slice(b" sip:invalid.invalid SIP/2.0\r\n");
            continue;
        }
        if i == 0 {
            // A request line of another SIP version is answered (505) in
            // ours: re-parse it as SIP/2.0.
            match line.rsplitn(2, |&c| c == b' ').collect::<Vec<_>>()[..] {
                [version, rest]
                    if version.len() > 4 && version[..4].eq_ignore_ascii_case(b"SIP/") =>
                {
                    head.extend_from_slice(rest);
                    head.extend_from_slice(b" SIP/2.0\r\n");
                }
                _ => {
                    head.extend_from_slice(line);
                    head.extend_from_slice(b"\r\n");
                }
            }
            continue;
        }
        let folded = line.first().is_some_and(|c| *c == b' ' || *c == b'\t');
        if folded {
            if !skipping {
                head.extend_from_slice(line);
                head.extend_from_slice(b"\r\n");
            }
            continue;
        }
        let name = line.split(|&c| c == b':').next().unwrap_or_default();
        let name = name.trim_ascii();
        skipping = name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l");
        if !skipping {
            head.extend_from_slice(line);
            head.extend_from_slice(b"\r\n");
        }
    }
    head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let generous = Limits {
        max_header_bytes: head.len(),
        max_body_bytes: 0,
        max_headers: usize::MAX,
    };
    let msg = parse_datagram(&head, &generous).ok()??;
    // An answer must find its way back and be matched: without a Via,
    // Call-ID and CSeq there is nobody to answer.
    let answerable = !msg.values("Via").is_empty() && msg.call_id().is_ok() && msg.cseq().is_ok();
    if !answerable {
        return None;
    }
    stateless_response(&msg, status, &[])
}

/// What to do with a message that was framed: deliver it, or answer it
/// here (its checks failed).
pub(crate) enum Checked {
    Deliver(Message),
    /// The answer (if any), the error, and the Call-ID for the log.
    Reject(Option<Vec<u8>>, ParseError, Option<String>),
}

pub(crate) fn check(msg: Message) -> Checked {
    match msg.validate() {
        Ok(()) => Checked::Deliver(msg),
        Err(e) => {
            let reply = stateless_response(&msg, e.status(), &[]);
            Checked::Reject(reply, e, msg.call_id().ok())
        }
    }
}

/// The server name a TLS client asks for: the host name when we looked
/// one up, else the IP.
fn server_name(name: Option<String>, addr: SocketAddr) -> Result<ServerName<'static>, String> {
    match name {
        Some(n) => {
            let n = n.trim_start_matches('[').trim_end_matches(']').to_string();
            ServerName::try_from(n).map_err(|e| format!("bad TLS server name: {e}"))
        }
        None => Ok(ServerName::IpAddress(addr.ip().into())),
    }
}

fn tls_connector(shared: &Shared) -> Result<TlsConnector, String> {
    shared
        .client_tls
        .clone()
        .map(TlsConnector::from)
        .ok_or_else(|| {
            "outbound TLS needs trusted roots: set listen.tls_ca (verification is never skipped)"
                .to_string()
        })
}

async fn tcp_connect(shared: &Shared, addr: SocketAddr) -> Result<TcpStream, String> {
    match tokio::time::timeout(shared.cfg.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] =
        b"OPTIONS sip:b@b.example SIP/2.0\r\nVia: SIP/2.0/TCP a.example;branch=z9hG4bK1\r\n\
From: <sip:a@a.example>;tag=1\r\nTo: <sip:b@b.example>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n";

    #[test]
    fn salvage_answers_a_request_without_its_body() {
        let mut big = REQ.to_vec();
        big.extend_from_slice(b"l: 999999\r\n\r\nxx");
        let r = String::from_utf8(salvage_response(&big, 513).expect("test value"))
            .expect("test value");
        assert!(r.starts_with("SIP/2.0 513 Message Too Large\r\n"), "{r}");
        assert!(r.contains("Call-ID: c1\r\n"), "{r}");
        assert!(r.contains("To: <sip:b@b.example>;tag="), "{r}");
        assert!(r.ends_with("Content-Length: 0\r\n\r\n"), "{r}");
        // No end of the header section, a response, garbage: nothing.
        assert!(salvage_response(REQ, 400).is_none());
        let mut v3 = REQ.replace_bytes(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia");
        v3.extend_from_slice(b"\r\n");
        let r =
            String::from_utf8(salvage_response(&v3, 505).expect("test value")).expect("test value");
        assert!(
            r.starts_with("SIP/2.0 505 Version Not Supported\r\n"),
            "{r}"
        );
        assert!(salvage_response(b"SIP/2.0 200 OK\r\n\r\n", 400).is_none());
        assert!(salvage_response(b"\x00\x01garbage\r\n\r\n", 400).is_none());
    }

    #[test]
    fn check_answers_invalid_requests_and_drops_acks() {
        let mut no_cseq = REQ.replace_bytes(b"CSeq: 1 OPTIONS\r\n", b"");
        no_cseq.extend_from_slice(b"\r\n");
        let m = parse_datagram(&no_cseq, &Limits::default())
            .expect("test value")
            .expect("test value");
        assert!(
            matches!(check(m), Checked::Reject(Some(r), _, _) if r.starts_with(b"SIP/2.0 400"))
        );
        let mut ok = REQ.to_vec();
        ok.extend_from_slice(b"\r\n");
        let m = parse_datagram(&ok, &Limits::default())
            .expect("test value")
            .expect("test value");
        assert!(matches!(check(m), Checked::Deliver(_)));
    }

    #[test]
    fn the_flow_table_prefers_the_flow_then_the_newest_connection_to_the_addr() {
        let addr: SocketAddr = "192.0.2.1:5060".parse().expect("addr");
        let entry = |tx: &mpsc::Sender<Vec<u8>>| FlowEntry {
            protocol: Protocol::Tcp,
            addr,
            tx: tx.clone(),
        };
        let (a, mut ra) = mpsc::channel(1);
        let (b, mut rb) = mpsc::channel(1);
        let mut t = FlowTable::default();
        t.insert(FlowId(1), entry(&a));
        t.insert(FlowId(2), entry(&b));
        let send = |t: &FlowTable, flow| {
            t.sender(flow, Protocol::Tcp, addr)
                .expect("a sender")
                .try_send(vec![])
                .expect("room");
        };
        send(&t, Some(FlowId(1)));
        assert!(ra.try_recv().is_ok());
        send(&t, None);
        assert!(rb.try_recv().is_ok(), "the newest connection to the addr");
        // Another protocol or an unknown addr: nothing to reuse.
        assert!(t.sender(Some(FlowId(1)), Protocol::Tls, addr).is_none());
        let other: SocketAddr = "192.0.2.2:5060".parse().expect("addr");
        assert!(t.sender(None, Protocol::Tcp, other).is_none());
        // Removing the older flow keeps the addr mapped to the newer.
        t.remove(FlowId(1));
        send(&t, Some(FlowId(1)));
        assert!(rb.try_recv().is_ok());
        t.remove(FlowId(2));
        assert!(t.sender(None, Protocol::Tcp, addr).is_none());
    }

    #[test]
    fn limits_map_to_parser_limits() {
        let mut l = crate::config::Limits::default();
        let c = TransportConfig::from_limits(&l);
        assert_eq!(c.limits.max_header_bytes, 16 * 1024);
        assert_eq!(c.limits.max_body_bytes, 65_535);
        l.max_message = 4096;
        let c = TransportConfig::from_limits(&l);
        assert_eq!(c.limits.max_header_bytes, 4096);
        assert_eq!(c.max_message, 4096);
    }

    trait Replace {
        fn replace_bytes(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }
    impl Replace for [u8] {
        fn replace_bytes(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
            let i = self
                .windows(from.len())
                .position(|w| w == from)
                .expect("test value");
            [&self[..i], to, &self[i + from.len()..]].concat()
        }
    }
}
