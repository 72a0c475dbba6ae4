//! TLS between providers: mutual authentication by pinned fingerprint.
//!
//! There is no CA. A connection is accepted only if the peer's end-entity
//! certificate hashes to a pinned [`Fingerprint`] and the peer proves
//! possession of its key (the handshake signature is still verified with
//! the certificate's public key). Names and dates are not checked: the pin
//! is the trust decision, made by the operators when they exchange
//! fingerprints.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};

use crate::identity::{Fingerprint, Identity, CERT_DNS_NAME};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the configuration (e.g. the key does not match).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// A server must pin at least one client.
    #[error("TLS configuration: no peer fingerprint pinned")]
    NothingPinned,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server side: presents `identity` and requires a client certificate
/// whose fingerprint is one of `pinned`.
pub fn server_config(
    identity: &Identity,
    pinned: &[Fingerprint],
) -> Result<Arc<ServerConfig>, TlsError> {
    if pinned.is_empty() {
        return Err(TlsError::NothingPinned);
    }
    let provider = provider();
    let verifier = Arc::new(PinnedVerifier {
        pinned: pinned.to_vec(),
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![identity.cert().clone()], identity.key())?;
    Ok(Arc::new(config))
}

/// Client side: presents `identity` and accepts only a server whose
/// certificate has fingerprint `pinned`.
pub fn client_config(
    identity: &Identity,
    pinned: Fingerprint,
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(PinnedVerifier {
        pinned: vec![pinned],
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(vec![identity.cert().clone()], identity.key())?;
    Ok(Arc::new(config))
}

/// The name clients put in SNI; ignored by the pinned verifier.
pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from(CERT_DNS_NAME)
            .expect("CERT_DNS_NAME is a valid DNS name")
            .to_owned(),
    )
}

/// Fingerprint of the certificate the peer presented, once the handshake
/// is complete.
pub fn peer_fingerprint(conn: &CommonState) -> Option<Fingerprint> {
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| Fingerprint::of_der(cert.as_ref()))
}

/// Accepts exactly the pinned certificates, on either side of a handshake.
#[derive(Debug)]
struct PinnedVerifier {
    pinned: Vec<Fingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let fp = Fingerprint::of_der(end_entity.as_ref());
        if self.pinned.contains(&fp) {
            Ok(())
        } else {
            Err(rustls::Error::General(format!(
                "peer certificate {fp} is not pinned"
            )))
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// Handshakes a client presenting `client` (pinning `server_pin`) with a
    /// server presenting `server` (pinning `client_pin`); returns what each
    /// side saw.
    async fn handshake(
        server: &Identity,
        client_pin: Fingerprint,
        client: &Identity,
        server_pin: Fingerprint,
    ) -> (Result<Option<Fingerprint>, String>, Result<(), String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let acceptor =
            TlsAcceptor::from(server_config(server, &[client_pin]).expect("server config"));
        let server_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let fp = peer_fingerprint(tls.get_ref().1);
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(fp)
        });
        let connector =
            TlsConnector::from(client_config(client, server_pin).expect("client config"));
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let client_result = async {
            let mut tls = connector
                .connect(server_name(), tcp)
                .await
                .map_err(|e| e.to_string())?;
            tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok(())
        }
        .await;
        let server_result = server_task.await.expect("server task");
        (server_result, client_result)
    }

    #[tokio::test]
    async fn pinned_peers_connect_and_see_each_other() {
        let a = Identity::generate("a").expect("a");
        let b = Identity::generate("b").expect("b");
        let (server, client) = handshake(&a, b.fingerprint(), &b, a.fingerprint()).await;
        client.expect("client side");
        assert_eq!(server.expect("server side"), Some(b.fingerprint()));
    }

    #[tokio::test]
    async fn client_refuses_unpinned_server() {
        let a = Identity::generate("a").expect("a");
        let b = Identity::generate("b").expect("b");
        let other = Identity::generate("other").expect("other");
        let (_, client) = handshake(&a, b.fingerprint(), &b, other.fingerprint()).await;
        let err = client.expect_err("must refuse");
        assert!(err.contains("not pinned"), "{err}");
    }

    #[tokio::test]
    async fn server_refuses_unpinned_client() {
        let a = Identity::generate("a").expect("a");
        let b = Identity::generate("b").expect("b");
        let other = Identity::generate("other").expect("other");
        let (server, _) = handshake(&a, other.fingerprint(), &b, a.fingerprint()).await;
        let err = server.expect_err("must refuse");
        assert!(err.contains("not pinned"), "{err}");
    }

    #[test]
    fn server_needs_a_pin() {
        let a = Identity::generate("a").expect("a");
        assert!(matches!(
            server_config(&a, &[]),
            Err(TlsError::NothingPinned)
        ));
    }
}
