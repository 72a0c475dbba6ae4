//! TLS on the public API (`listen.api`).
//!
//! The provider presents its own certificate (made by `sharecall-provider
//! init`, pinned by clients through its SHA-256 fingerprint) or an
//! operator's CA-issued chain from `[api_tls]`. TLS 1.3 only, no client
//! certificate (clients authenticate by their signed requests).
//!
//! The accept loop never waits on a handshake: each runs in its own task
//! under [`HANDSHAKE_TIMEOUT`], and at most [`MAX_HANDSHAKES`] run at once
//! (a connection beyond that is closed at once), so a slow or silent client
//! holds one slot for a bounded time and stalls nobody else. Connections are
//! kept alive (HTTP/1.1 keep-alive or HTTP/2), so a client pays for one
//! handshake per provider, not per request.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::ApiTlsConfig;
use crate::identity::{Fingerprint, Identity};

/// Longest time a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS handshakes under way at once.
pub const MAX_HANDSHAKES: usize = 256;

/// Why the public API's TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ApiTlsError {
    /// A configured file could not be read.
    #[error("[api_tls]: cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A configured file holds no usable PEM.
    #[error("[api_tls]: {}: {what}", path.display())]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("api TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate chain and key the API presents, and the leaf's
/// fingerprint (what clients pin).
pub struct ApiCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate.
    pub fingerprint: Fingerprint,
}

impl ApiCert {
    /// The configured chain from `[api_tls]`, or else the provider's own
    /// certificate.
    pub fn load(config: &ApiTlsConfig, identity: &Identity) -> Result<ApiCert, ApiTlsError> {
        match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => ApiCert::from_files(cert, key),
            _ => Ok(ApiCert {
                chain: vec![identity.cert().clone()],
                key: identity.key(),
                fingerprint: identity.fingerprint(),
            }),
        }
    }

    fn from_files(cert: &Path, key: &Path) -> Result<ApiCert, ApiTlsError> {
        let read = |path: &Path| {
            fs::read(path).map_err(|source| ApiTlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let pem = |path: &Path, what: String| ApiTlsError::Pem {
            path: path.to_path_buf(),
            what,
        };
        let cert_pem = read(cert)?;
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| pem(cert, format!("bad certificate PEM: {e}")))?;
        let Some(leaf) = chain.first() else {
            return Err(pem(cert, "no CERTIFICATE block".into()));
        };
        let fingerprint = Fingerprint::of_der(leaf.as_ref());
        let key_pem = read(key)?;
        let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .map_err(|e| pem(key, format!("bad key PEM: {e}")))?
            .ok_or_else(|| pem(key, "no PRIVATE KEY block".into()))?;
        Ok(ApiCert {
            chain,
            key: key_der,
            fingerprint,
        })
    }

    /// The rustls server configuration: TLS 1.3, no client certificate,
    /// HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, ApiTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Serves `router` over TLS on `listener` until `cancel`; open connections
/// then finish their requests in flight.
pub async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    router: axum::Router,
    cancel: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // E.g. out of file descriptors: back off briefly rather
                    // than spin.
                    warn!("api accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            debug!(%peer, "api: too many TLS handshakes under way; connection closed");
            continue;
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%peer, "api TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "api TLS handshake timed out");
                    return;
                }
            };
            drop(permit);
            let service = TowerToHyperService::new(router);
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, "api connection: {e}");
                    }
                }
                _ = cancel.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_certificate_by_default_and_half_config_is_an_error_elsewhere() {
        let id = Identity::generate("t").expect("identity");
        let cert = ApiCert::load(&ApiTlsConfig::default(), &id).expect("load");
        assert_eq!(cert.fingerprint, id.fingerprint());
        cert.server_config().expect("config");
    }

    #[test]
    fn configured_chain_is_used_and_bad_files_are_named() {
        let dir = tempfile::tempdir().expect("dir");
        let other = Identity::generate("ca-issued").expect("identity");
        other.save(dir.path(), false).expect("save");
        let config = ApiTlsConfig {
            cert: Some(dir.path().join(crate::identity::CERT_FILE)),
            key: Some(dir.path().join(crate::identity::KEY_FILE)),
        };
        let own = Identity::generate("own").expect("identity");
        let cert = ApiCert::load(&config, &own).expect("load");
        assert_eq!(cert.fingerprint, other.fingerprint());
        cert.server_config().expect("config");

        let missing = ApiTlsConfig {
            cert: Some(dir.path().join("nope.pem")),
            key: config.key.clone(),
        };
        let err = ApiCert::load(&missing, &own).err().expect("missing file");
        assert!(err.to_string().contains("nope.pem"), "{err}");
        let swapped = ApiTlsConfig {
            cert: config.key.clone(),
            key: config.cert.clone(),
        };
        let err = ApiCert::load(&swapped, &own).err().expect("swapped files");
        assert!(err.to_string().contains("CERTIFICATE"), "{err}");
    }
}
