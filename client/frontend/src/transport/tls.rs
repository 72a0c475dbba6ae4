//! TLS settings: the server identity (PEM files or a self-signed
//! certificate made at start) and the roots outbound connections trust.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::TransportError;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &str) -> impl Fn(rustls::Error) -> TransportError + '_ {
    move |e| TransportError::Tls(format!("{what}: {e}"))
}

/// A server certificate chain and its key.
pub struct TlsIdentity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsIdentity({} certificates, key ..)", self.chain.len())
    }
}

impl TlsIdentity {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsIdentity, TransportError> {
        let chain = read_certs(cert)?;
        if chain.is_empty() {
            return Err(TransportError::Tls(format!(
                "{}: no certificate in the file",
                cert.display()
            )));
        }
        let file = std::fs::File::open(key)
            .map_err(|e| TransportError::Tls(format!("cannot read {}: {e}", key.display())))?;
        let key_der = rustls_pemfile::private_key(&mut BufReader::new(file))
            .map_err(|e| TransportError::Tls(format!("{}: {e}", key.display())))?
            .ok_or_else(|| {
                TransportError::Tls(format!("{}: no private key in the file", key.display()))
            })?;
        Ok(TlsIdentity {
            chain,
            key: key_der,
        })
    }

    /// A fresh self-signed certificate for `host` (a name or an IP
    /// literal; `[v6]` brackets are removed). Peers must pin or trust it
    /// explicitly: [`TlsIdentity::chain`] holds the DER to hand them.
    pub fn self_signed(host: &str) -> Result<TlsIdentity, TransportError> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let gen = |e: rcgen::Error| TransportError::Tls(format!("self-signed certificate: {e}"));
        let certified = rcgen::generate_simple_self_signed(vec![host]).map_err(gen)?;
        Ok(TlsIdentity {
            chain: vec![certified.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der())),
        })
    }

    /// The rustls server configuration (no client certificates: SIP
    /// clients authenticate with digest).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TransportError> {
        let cfg = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err("TLS versions"))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(tls_err("server certificate"))?;
        Ok(Arc::new(cfg))
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let file = std::fs::File::open(path)
        .map_err(|e| TransportError::Tls(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::Tls(format!("{}: {e}", path.display())))
}

/// A client configuration trusting exactly `roots` (with full webpki
/// verification of names and validity).
pub fn client_config(
    roots: &[CertificateDer<'static>],
) -> Result<Arc<ClientConfig>, TransportError> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store
            .add(r.clone())
            .map_err(tls_err("trusted certificate"))?;
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("TLS versions"))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// [`client_config`] with the roots of a PEM file (`listen.tls_ca`).
pub fn client_config_from_file(path: &Path) -> Result<Arc<ClientConfig>, TransportError> {
    let roots = read_certs(path)?;
    if roots.is_empty() {
        return Err(TransportError::Tls(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    client_config(&roots)
}
