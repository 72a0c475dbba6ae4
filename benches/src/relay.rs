//! A delaying TCP relay: the stand-in for network latency on loopback.
//!
//! Every chunk read from one side is written to the other side `delay`
//! after it was read, in order, in both directions. Bandwidth is not
//! limited; only latency is added. Put one relay in front of each
//! provider's SMC listener and every provider-to-provider link crosses
//! exactly one relay, so each message takes `delay` one way.
//!
//! Delays are kept by one "delay line" thread with `std::thread::sleep`
//! rather than tokio timers: tokio's timer wheel rounds every sleep up to
//! the next millisecond tick, which turned a 1 ms delay into 1–2 ms per
//! crossing and overstated every figure by up to half.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A running relay; stops when dropped.
pub struct Relay {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts a relay on 127.0.0.1 forwarding to `target` with `delay`
    /// added one way. Must be called inside a tokio runtime.
    pub fn spawn(target: SocketAddr, delay: Duration) -> std::io::Result<Relay> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::join!(pump(ir, ow, delay), pump(or, iw, delay));
                });
            }
        });
        Ok(Relay { addr, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A chunk waiting in the delay line: when it is due, its bytes and the
/// writer it goes to. Ordered by (due, arrival) so equal delays keep order.
struct Pending {
    due: Instant,
    seq: u64,
    chunk: Vec<u8>,
    to: mpsc::UnboundedSender<Vec<u8>>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// The process-wide delay line: a thread that hands each chunk to its
/// writer when it is due.
struct DelayLine {
    queue: Mutex<(u64, BinaryHeap<Reverse<Pending>>)>,
    wake: Condvar,
}

impl DelayLine {
    fn get() -> &'static DelayLine {
        static LINE: OnceLock<&'static DelayLine> = OnceLock::new();
        LINE.get_or_init(|| {
            let line: &'static DelayLine = Box::leak(Box::new(DelayLine {
                queue: Mutex::new((0, BinaryHeap::new())),
                wake: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("relay-delay-line".into())
                .spawn(move || line.run())
                .map(|_| ())
                .unwrap_or_else(|e| panic!("cannot start the relay thread: {e}"));
            line
        })
    }

    fn push(&self, due: Instant, chunk: Vec<u8>, to: mpsc::UnboundedSender<Vec<u8>>) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.0 += 1;
        let seq = q.0;
        q.1.push(Reverse(Pending {
            due,
            seq,
            chunk,
            to,
        }));
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = Instant::now();
            match q.1.peek() {
                None => {
                    q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                Some(Reverse(p)) if p.due <= now => {
                    if let Some(Reverse(p)) = q.1.pop() {
                        let _ = p.to.send(p.chunk);
                    }
                }
                Some(Reverse(p)) => {
                    let wait = p.due - now;
                    q = self
                        .wake
                        .wait_timeout(q, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            }
        }
    }
}

async fn pump<R, W>(mut from: R, mut to: W, delay: Duration)
where
    R: AsyncReadExt + Unpin + Send + 'static,
    W: AsyncWriteExt + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let line = DelayLine::get();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => line.push(Instant::now() + delay, buf[..n].to_vec(), tx.clone()),
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Starts a dev cluster whose every provider link and client-facing port
/// goes through a relay adding `delay` one way (none when zero). The relays
/// live as long as the returned list.
pub async fn delayed_cluster(
    options: sharecall_provider::devcluster::DevOptions,
    delay: Duration,
) -> anyhow::Result<(
    sharecall_provider::devcluster::DevCluster,
    std::sync::Arc<std::sync::Mutex<Vec<Relay>>>,
)> {
    let relays: std::sync::Arc<std::sync::Mutex<Vec<Relay>>> = Default::default();
    let keep = relays.clone();
    let cluster = sharecall_provider::devcluster::DevCluster::start(
        options,
        move |_, _, addr: SocketAddr| {
            if delay.is_zero() {
                return Ok(addr);
            }
            let r = Relay::spawn(addr, delay)?;
            let a = r.addr();
            keep.lock()
                .map_err(|_| std::io::Error::other("relay list"))?
                .push(r);
            Ok(a)
        },
    )
    .await?;
    Ok((cluster, relays))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relay_adds_latency_and_keeps_order() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = echo.accept().await {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let relay = Relay::spawn(target, Duration::from_millis(30)).expect("relay");
        let mut c = TcpStream::connect(relay.addr()).await.expect("connect");
        let start = std::time::Instant::now();
        c.write_all(b"hello").await.expect("write");
        let mut got = [0u8; 5];
        c.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
        // Two crossings of the relay (there and back).
        assert!(start.elapsed() >= Duration::from_millis(60));
    }
}
