//! A meddling TCP proxy on loopback, put in front of one real provider's
//! public (TLS) port to make the network fail the ways the client library
//! must survive: responses lost after the request reached the provider,
//! answers that never come, refused connections.
//!
//! It needs no TLS: it meddles at the TCP level, and the client's pinned
//! certificate still verifies through it. Its notion of "the request" is
//! the TLS 1.3 flow (the providers speak nothing older): the client's
//! first flight is its hello, the server answers with its whole handshake,
//! and whatever the client sends after that is its `Finished` and the
//! HTTP request. From then on a meddling connection forwards the client's
//! bytes but not the server's.
//!
//! Runs on the test's tokio runtime and stops with it (or when dropped).
//! Changing the mode closes every open connection, so the client's pooled
//! connections cannot slip past the new mode.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the proxy does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways.
    Pass,
    /// For the next `n` connections: forwards the request, then drops the
    /// connection instead of the response (the provider did receive the
    /// request). Later connections pass. `Drop(u32::MAX)`: always.
    Drop(u32),
    /// Forwards the request and never the response, holding the
    /// connection open.
    Hang,
    /// Closes every connection as soon as it is accepted.
    Refuse,
}

/// A response that arrives this long after the client's last bytes is
/// the answer, not the session tickets the server sends right after the
/// handshake.
const ANSWER_AFTER: Duration = Duration::from_millis(5);
/// A dropping connection closes this long after the client's last bytes
/// if something came back meanwhile (a fast answer).
const DROP_AFTER: Duration = Duration::from_millis(200);

struct Shared {
    mode: Mutex<Mode>,
    /// Bumped on every mode change: open connections close.
    generation: watch::Sender<u64>,
    connections: AtomicU32,
    dropped: AtomicU32,
    refused: AtomicU32,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a connection in `Drop` mode drops (and uses up one drop).
    fn take_drop(&self) -> bool {
        let mut m = self.mode.lock().unwrap_or_else(PoisonError::into_inner);
        match *m {
            Mode::Drop(u32::MAX) => true,
            Mode::Drop(0) => false,
            Mode::Drop(n) => {
                *m = Mode::Drop(n - 1);
                true
            }
            _ => false,
        }
    }
}

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 (a free port) in front of `upstream`,
    /// in [`Mode::Pass`]. Call inside a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            generation: watch::channel(0).0,
            connections: AtomicU32::new(0),
            dropped: AtomicU32::new(0),
            refused: AtomicU32::new(0),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                s.connections.fetch_add(1, Ordering::SeqCst);
                let mode = s.mode();
                if mode == Mode::Refuse {
                    s.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                tokio::spawn(relay(client, upstream, mode, s.clone()));
            }
        });
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    /// The proxy's address (clients connect here instead).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches the mode for new connections and closes the open ones.
    pub fn set_mode(&self, mode: Mode) {
        *self
            .shared
            .mode
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = mode;
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u32 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections dropped after forwarding their request.
    pub fn dropped(&self) -> u32 {
        self.shared.dropped.load(Ordering::SeqCst)
    }

    /// Connections refused.
    pub fn refused(&self) -> u32 {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.shared.generation.send_modify(|g| *g += 1);
    }
}

/// One connection: client ⇄ upstream, meddled with as `mode` says.
async fn relay(client: TcpStream, upstream: SocketAddr, mode: Mode, shared: Arc<Shared>) {
    let mut generation = shared.generation.subscribe();
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (mut cbuf, mut sbuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let mut server_spoke = false;
    let mut requested = false;
    let mut meddling = false;
    let mut server_open = true;
    let mut last_client = Instant::now();
    // Set once a meddling connection swallowed a byte after the request.
    let mut swallowed = false;
    loop {
        let drop_at = last_client + DROP_AFTER;
        tokio::select! {
            _ = generation.changed() => return,
            _ = tokio::time::sleep_until(drop_at), if meddling && swallowed && matches!(mode, Mode::Drop(_)) => {
                shared.dropped.fetch_add(1, Ordering::SeqCst);
                return;
            }
            r = cr.read(&mut cbuf) => {
                let n = match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if server_spoke && !requested {
                    requested = true;
                    meddling = match mode {
                        Mode::Hang => true,
                        Mode::Drop(_) => shared.take_drop(),
                        Mode::Pass | Mode::Refuse => false,
                    };
                }
                last_client = Instant::now();
                if server_open && sw.write_all(&cbuf[..n]).await.is_err() {
                    return;
                }
            }
            r = sr.read(&mut sbuf), if server_open => {
                let n = match r {
                    Ok(0) | Err(_) if meddling && mode == Mode::Hang => {
                        // Keep the client waiting.
                        server_open = false;
                        continue;
                    }
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if !meddling {
                    server_spoke = true;
                    if cw.write_all(&sbuf[..n]).await.is_err() {
                        return;
                    }
                    continue;
                }
                swallowed = true;
                if matches!(mode, Mode::Drop(_)) && last_client.elapsed() >= ANSWER_AFTER {
                    shared.dropped.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}
