//! TCP and TLS connections: accepting (bounded), connecting, and the
//! per-connection reader (framing, slow-loris and idle bounds, keep-alive
//! pongs) and writer.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sharecall_sip::framer::{looks_like_response, PONG};
use sharecall_sip::{Disposition, StreamEvent, StreamFramer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{
    check, salvage_response, server_name, tcp_connect, tls_connector, Checked, FlowEntry, Shared,
};
use crate::core::Input;
use crate::peer::{FlowId, Peer, Protocol};

/// Messages queued for one connection's writer at most.
const WRITE_QUEUE: usize = 256;

/// Counts an inbound connection against `limits.max_connections` while
/// it lives (from accept, through the TLS handshake, to close).
struct InboundSlot(Arc<Shared>);

impl Drop for InboundSlot {
    fn drop(&mut self) {
        self.0.inbound.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) {
    let protocol = if tls.is_some() {
        Protocol::Tls
    } else {
        Protocol::Tcp
    };
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shared.stop_accept.cancelled() => return,
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off a little
                // instead of spinning on the error.
                tracing::warn!(%protocol, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.inbound.fetch_add(1, Ordering::Relaxed) >= shared.cfg.max_connections {
            shared.inbound.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(%protocol, %addr, limit = shared.cfg.max_connections, "connection refused: limits.max_connections reached");
            drop(tcp);
            continue;
        }
        let slot = InboundSlot(shared.clone());
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        match tls.clone() {
            None => {
                tokio::spawn(async move {
                    let flow = shared.new_flow();
                    let _slot = slot;
                    serve(shared, tcp, Protocol::Tcp, addr, flow).await;
                });
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    let _slot = slot;
                    let hs = tokio::time::timeout(shared.cfg.message_timeout, acceptor.accept(tcp))
                        .await;
                    let stream = match hs {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            return tracing::info!(%addr, error = %e, "TLS handshake failed")
                        }
                        Err(_) => return tracing::info!(%addr, "TLS handshake timed out"),
                    };
                    let flow = shared.new_flow();
                    serve(shared, stream, Protocol::Tls, addr, flow).await;
                });
            }
        }
    }
}

/// Opens a connection to `addr` (TLS: verified against `listen.tls_ca`,
/// for `name` or else the IP), registers its flow and returns its send
/// queue.
pub(super) async fn connect(
    shared: &Arc<Shared>,
    protocol: Protocol,
    addr: SocketAddr,
    name: Option<String>,
) -> Result<mpsc::Sender<Vec<u8>>, String> {
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let flow = shared.new_flow();
    match protocol {
        Protocol::Udp => return Err("UDP has no connections".into()),
        Protocol::Tcp => {
            let tcp = tcp_connect(shared, addr).await?;
            let _ = tcp.set_nodelay(true);
            register(shared, flow, protocol, addr, &tx);
            tokio::spawn(serve_with(
                shared.clone(),
                tcp,
                protocol,
                addr,
                flow,
                tx.clone(),
                rx,
            ));
        }
        Protocol::Tls => {
            let connector = tls_connector(shared)?;
            let sni = server_name(name, addr)?;
            let tcp = tcp_connect(shared, addr).await?;
            let _ = tcp.set_nodelay(true);
            let tls =
                match tokio::time::timeout(shared.cfg.connect_timeout, connector.connect(sni, tcp))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => return Err(format!("TLS handshake: {e}")),
                    Err(_) => return Err("TLS handshake timed out".into()),
                };
            register(shared, flow, protocol, addr, &tx);
            tokio::spawn(serve_with(
                shared.clone(),
                tls,
                protocol,
                addr,
                flow,
                tx.clone(),
                rx,
            ));
        }
    }
    Ok(tx)
}

/// Puts a connection in the flow table before its task runs, so sends
/// issued meanwhile reuse it instead of connecting again.
fn register(
    shared: &Shared,
    flow: FlowId,
    protocol: Protocol,
    addr: SocketAddr,
    tx: &mpsc::Sender<Vec<u8>>,
) {
    shared.flows().insert(
        flow,
        FlowEntry {
            protocol,
            addr,
            tx: tx.clone(),
        },
    );
}

async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    protocol: Protocol,
    addr: SocketAddr,
    flow: FlowId,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    serve_with(shared, stream, protocol, addr, flow, tx, rx).await
}

/// Runs one connection until it closes: the reader here, the writer in its
/// own task; the flow is in the table meanwhile.
async fn serve_with<S>(
    shared: Arc<Shared>,
    stream: S,
    protocol: Protocol,
    addr: SocketAddr,
    flow: FlowId,
    tx: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<Vec<u8>>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (reader, writer) = tokio::io::split(stream);
    let broken = CancellationToken::new();
    let writer_task = tokio::spawn(write_loop(
        writer,
        rx,
        broken.clone(),
        shared.cfg.message_timeout,
        addr,
    ));
    register(&shared, flow, protocol, addr, &tx);
    tracing::debug!(%protocol, %addr, flow = flow.0, "connection open");
    let peer = Peer {
        protocol,
        addr,
        flow: Some(flow),
    };
    read_loop(&shared, reader, &tx, peer, &broken).await;
    shared.flows().remove(flow);
    drop(tx);
    // The writer ends once every queued message is written (all senders
    // are gone now, but for sends in flight); bound the wait.
    let mut writer_task = writer_task;
    if tokio::time::timeout(shared.cfg.message_timeout, &mut writer_task)
        .await
        .is_err()
    {
        writer_task.abort();
    }
    tracing::debug!(%protocol, %addr, flow = flow.0, "connection closed");
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Vec<u8>>,
    broken: CancellationToken,
    timeout: Duration,
    addr: SocketAddr,
) {
    while let Some(bytes) = rx.recv().await {
        // A peer that stops reading must not hold a writer forever.
        let r = tokio::time::timeout(timeout, async {
            w.write_all(&bytes).await?;
            w.flush().await
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(%addr, error = %e, "write failed; closing the connection");
                broken.cancel();
                return;
            }
            Err(_) => {
                tracing::info!(%addr, "write timed out; closing the connection");
                broken.cancel();
                return;
            }
        }
    }
    let _ = tokio::time::timeout(timeout, w.shutdown()).await;
}

/// A copy of the first bytes of the message being framed (at most `cap`),
/// so a framing error can still be answered with the request's own
/// headers: the framer keeps its buffer to itself.
#[derive(Debug)]
pub(super) struct HeadCopy {
    bytes: Vec<u8>,
    /// Bytes fed but not yet yielded by the framer.
    unconsumed: usize,
    cap: usize,
    /// False when the start of the pending message was beyond the copy.
    valid: bool,
}

impl HeadCopy {
    pub(super) fn new(cap: usize) -> HeadCopy {
        HeadCopy {
            bytes: Vec::new(),
            unconsumed: 0,
            cap,
            valid: true,
        }
    }

    /// `chunk` was fed and the framer now holds `remaining` bytes.
    pub(super) fn update(&mut self, chunk: &[u8], remaining: usize) {
        let before = self.unconsumed;
        let consumed = (before + chunk.len()).saturating_sub(remaining);
        if consumed == 0 {
            if self.valid {
                let room = self.cap.saturating_sub(self.bytes.len());
                self.bytes
                    .extend_from_slice(&chunk[..room.min(chunk.len())]);
            }
        } else if consumed >= before {
            let start = consumed - before;
            let rest = &chunk[start.min(chunk.len())..];
            self.bytes.clear();
            self.bytes
                .extend_from_slice(&rest[..rest.len().min(self.cap)]);
            self.valid = true;
        } else if self.valid && before <= self.bytes.len() {
            // Everything old was copied: drop what was consumed.
            self.bytes.drain(..consumed);
            let room = self.cap.saturating_sub(self.bytes.len());
            self.bytes
                .extend_from_slice(&chunk[..room.min(chunk.len())]);
        } else {
            self.bytes.clear();
            self.valid = false;
        }
        self.unconsumed = remaining;
    }

    /// The start of the pending message, if known.
    pub(super) fn head(&self) -> Option<&[u8]> {
        self.valid.then_some(&self.bytes[..])
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    mut reader: R,
    tx: &mpsc::Sender<Vec<u8>>,
    peer: Peer,
    broken: &CancellationToken,
) {
    let cfg = shared.cfg;
    let addr = peer.addr;
    let mut framer = StreamFramer::new(cfg.limits);
    let mut copy = HeadCopy::new(cfg.limits.max_header_bytes + 4);
    let mut buf = vec![0u8; 16 * 1024];
    let mut last_read = Instant::now();
    // When the first byte of the message now pending arrived.
    let mut pending_since: Option<Instant> = None;
    loop {
        let deadline = match pending_since {
            Some(t) => t + cfg.message_timeout,
            None => last_read + cfg.idle_timeout,
        };
        let n = tokio::select! {
            r = reader.read(&mut buf) => match r {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => return tracing::info!(%addr, error = %e, "read failed"),
            },
            _ = tokio::time::sleep_until(deadline) => {
                return match pending_since {
                    Some(_) => tracing::info!(%addr, "message not complete within limits.message_timeout; closing"),
                    None => tracing::debug!(%addr, "idle connection closed"),
                };
            }
            _ = broken.cancelled() => return,
            _ = shared.stop.cancelled() => return,
        };
        last_read = Instant::now();
        let chunk = &buf[..n];
        framer.feed(chunk);
        let mut yielded = false;
        loop {
            match framer.next_event() {
                Ok(None) => break,
                Ok(Some(StreamEvent::Ping)) => {
                    yielded = true;
                    if tx.send(PONG.to_vec()).await.is_err() {
                        return;
                    }
                }
                Ok(Some(StreamEvent::Message(msg))) => {
                    yielded = true;
                    // The framer bounds header and body apart; the total
                    // is bounded here.
                    if msg.body().len() + cfg.limits.max_header_bytes > cfg.max_message
                        && msg.to_bytes().len() > cfg.max_message
                    {
                        tracing::info!(%addr, "message over limits.max_message; closing");
                        if let Some(r) = super::stateless_response(&msg, 513, &[]) {
                            let _ = tx.send(r).await;
                        }
                        return;
                    }
                    match check(msg) {
                        Checked::Deliver(msg) => {
                            let input = Input::Received { msg, from: peer };
                            if shared.inputs.send(input).await.is_err() {
                                return;
                            }
                        }
                        Checked::Reject(reply, e, call_id) => {
                            tracing::info!(%addr, ?call_id, error = %e, "invalid SIP message");
                            if let Some(r) = reply {
                                if tx.send(r).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    copy.update(chunk, framer.buffered());
                    let head = copy.head().unwrap_or_default();
                    tracing::info!(%addr, error = %e, "stream framing failed; closing");
                    match e.disposition(looks_like_response(head), true) {
                        Disposition::Reply(s) | Disposition::ReplyAndClose(s) => {
                            if let Some(r) = salvage_response(head, s) {
                                let _ = tx.send(r).await;
                            }
                        }
                        Disposition::Drop | Disposition::Close => {}
                    }
                    // The framer repeats its error from now on: close.
                    return;
                }
            }
        }
        copy.update(chunk, framer.buffered());
        pending_since = match (framer.buffered(), pending_since) {
            (0, _) => None,
            // Still the same message: its clock keeps running.
            (_, Some(t)) if !yielded => Some(t),
            _ => Some(last_read),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_copy_follows_the_pending_message() {
        let mut c = HeadCopy::new(8);
        c.update(b"abc", 3);
        assert_eq!(c.head(), Some(&b"abc"[..]));
        c.update(b"defghij", 10);
        assert_eq!(c.head(), Some(&b"abcdefgh"[..]));
        // A message of 12 bytes ended; 2 of this chunk remain.
        c.update(b"klmn", 2);
        assert_eq!(c.head(), Some(&b"mn"[..]));
        // A message ended inside the copied part.
        let mut c = HeadCopy::new(8);
        c.update(b"abcd", 4);
        c.update(b"ef", 3);
        assert_eq!(c.head(), Some(&b"def"[..]));
        // The pending message starts beyond the copy: unknown.
        let mut c = HeadCopy::new(2);
        c.update(b"abcd", 4);
        c.update(b"e", 2);
        assert_eq!(c.head(), None);
        c.update(b"fgh", 1);
        assert_eq!(c.head(), Some(&b"h"[..]));
    }
}
