//! A delaying TCP relay: the stand-in for network latency on loopback.
//!
//! Every chunk read from one side is written to the other side `delay`
//! after it was read, in order, in both directions. Bandwidth is not
//! limited; only latency is added. Put one relay in front of each
//! provider's SMC listener and every provider-to-provider link crosses
//! exactly one relay, so each message takes `delay` one way.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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

async fn pump<R, W>(mut from: R, mut to: W, delay: Duration)
where
    R: AsyncReadExt + Unpin + Send + 'static,
    W: AsyncWriteExt + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
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
