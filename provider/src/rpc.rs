//! gRPC (tonic) between providers over the same pinned-fingerprint mutual
//! TLS as the SMC mesh.
//!
//! tonic's own TLS support trusts certificate authorities; providers trust
//! pinned fingerprints instead, so we terminate TLS ourselves with
//! [`crate::tls`] and hand tonic the finished streams. The server learns
//! which provider called from the client certificate ([`PeerIdentity`] in
//! the request extensions).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

use crate::identity::{Fingerprint, Identity};
use crate::tls;

/// How long a TLS handshake on the control port may take; a stalled
/// stranger must not hold up the accept loop.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a control connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The gRPC channel could not be built.
    #[error("control channel to {addr}: {source}")]
    Connect {
        /// Where we tried to connect.
        addr: SocketAddr,
        /// Why it failed.
        source: tonic::transport::Error,
    },
}

/// The verified identity of the provider at the other end of a control
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Fingerprint of the certificate the peer presented (it is pinned).
    pub fingerprint: Fingerprint,
    /// The peer's socket address.
    pub remote: SocketAddr,
}

/// A server-side TLS stream that tells tonic who is calling.
pub struct PinnedStream {
    inner: TlsStream<TcpStream>,
    peer: PeerIdentity,
}

impl Connected for PinnedStream {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        self.peer
    }
}

impl AsyncRead for PinnedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PinnedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts control connections on `listener` and yields those whose client
/// certificate is one of `pinned`; handshakes run concurrently, so a slow
/// or hostile client delays nobody else.
pub fn incoming(
    listener: TcpListener,
    identity: &Identity,
    pinned: &[Fingerprint],
) -> Result<impl Stream<Item = io::Result<PinnedStream>>, RpcError> {
    let mut config = (*tls::server_config(identity, pinned)?).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<PinnedStream>>(16);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!("control accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let out = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let Some(fingerprint) = tls::peer_fingerprint(tls.get_ref().1) else {
                            return;
                        };
                        debug!(%remote, %fingerprint, "control connection");
                        let peer = PeerIdentity {
                            fingerprint,
                            remote,
                        };
                        let _ = out.send(Ok(PinnedStream { inner: tls, peer })).await;
                    }
                    Ok(Err(e)) => warn!(%remote, "refused control connection: {e}"),
                    Err(_) => warn!(%remote, "control TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// A lazily connecting gRPC channel to the provider at `addr`, which must
/// present the certificate with fingerprint `pinned`.
pub fn channel(
    addr: SocketAddr,
    identity: &Identity,
    pinned: Fingerprint,
    connect_timeout: Duration,
) -> Result<Channel, RpcError> {
    let mut config = (*tls::client_config(identity, pinned)?).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    // The URI is only a label: the connector below decides where to go.
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|source| RpcError::Connect { addr, source })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20));
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(tls::server_name(), tcp).await?;
                Ok::<_, io::Error>(TokioIo::new(tls))
            }
        })),
    )
}

/// The provider id of the caller of `request`, by its pinned certificate
/// (`providers` maps each pinned fingerprint to its provider id). Every
/// service between providers starts with this.
#[allow(clippy::result_large_err)] // tonic::Status is what tonic handlers return
pub fn caller<T>(
    request: &tonic::Request<T>,
    providers: &HashMap<Fingerprint, u32>,
) -> Result<u32, tonic::Status> {
    let peer = request
        .extensions()
        .get::<PeerIdentity>()
        .ok_or_else(|| tonic::Status::unauthenticated("no client certificate"))?;
    providers
        .get(&peer.fingerprint)
        .copied()
        .ok_or_else(|| tonic::Status::permission_denied("certificate not pinned"))
}
