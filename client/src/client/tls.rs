//! TLS to the providers' public APIs: pinned certificates or system roots.
//!
//! A provider URL is `https://HOST:PORT`, optionally with a pin in its
//! fragment: `https://HOST:PORT#sha256=FINGERPRINT`, FINGERPRINT being the
//! 64 hex digits (colons allowed) that `sharecall-provider fingerprint`
//! prints, i.e. the SHA-256 of the provider's certificate. With a pin the
//! client accepts exactly that certificate (names and dates are not
//! checked: the pin is the trust decision) and still checks that the
//! server proves possession of its key (the TLS 1.3 handshake signature
//! is verified with the certificate's public key). Without a pin, the
//! certificate must chain to a web PKI root and name the host.
//!
//! Each provider gets its own connection pool with its own pin, so a
//! certificate pinned for P1 is never accepted for P0 (a provider holding
//! two parts could reconstruct the request).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The URL fragment key that carries a pin.
pub const PIN_PREFIX: &str = "sha256=";

/// A pinned certificate: SHA-256 of its DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertPin(pub [u8; 32]);

impl CertPin {
    /// The pin of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> CertPin {
        CertPin(Sha256::digest(der).into())
    }
}

impl fmt::Display for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertPin({self})")
    }
}

/// A pin that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a pin is 64 hex digits (colons allowed), as `sharecall-provider fingerprint` prints; got {0} digits")]
pub struct PinParseError(usize);

impl FromStr for CertPin {
    type Err = PinParseError;

    fn from_str(s: &str) -> Result<CertPin, PinParseError> {
        let digits: String = s.trim().chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&digits, &mut out)
            .map(|()| CertPin(out))
            .map_err(|_| PinParseError(digits.len()))
    }
}

/// The presented certificate is not the pinned one.
#[derive(Debug, thiserror::Error)]
#[error("certificate {actual} is not the pinned {expected} (wrong fingerprint in the provider URL, or not that provider)")]
struct PinMismatch {
    actual: CertPin,
    expected: String,
}

fn crypto() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.3 client configuration that accepts exactly the certificates
/// in `pins` (for one provider: one pin) and verifies the handshake
/// signature with the certificate's key. HTTP/1.1 by ALPN.
pub fn pinned_config(pins: &[CertPin]) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = crypto();
    let verifier = Arc::new(PinVerifier {
        pins: pins.to_vec(),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PinVerifier {
    pins: Vec<CertPin>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual = CertPin::of_der(end_entity.as_ref());
        if self.pins.contains(&actual) {
            return Ok(ServerCertVerified::assertion());
        }
        let expected = self
            .pins
            .iter()
            .map(CertPin::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        // `General` prints its text as is (an `Other` certificate error
        // would reach the user in debug form).
        Err(rustls::Error::General(
            PinMismatch { actual, expected }.to_string(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The configuration offers TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
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

/// Splits the pin off a provider URL's fragment: `Ok(None)` without a
/// fragment, an error for a fragment that is not `sha256=HEX`.
pub(super) fn pin_of_fragment(fragment: Option<&str>) -> Result<Option<CertPin>, String> {
    let Some(f) = fragment else {
        return Ok(None);
    };
    let Some(hex) = f.strip_prefix(PIN_PREFIX) else {
        return Err(format!(
            "the only fragment allowed is a certificate pin, #{PIN_PREFIX}<64 hex digits>"
        ));
    };
    hex.parse()
        .map(Some)
        .map_err(|e: PinParseError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_with_or_without_colons() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(hex.parse::<CertPin>(), colons.parse::<CertPin>());
        assert_eq!(hex.parse::<CertPin>().expect("pin").to_string(), hex);
        assert!("abc".parse::<CertPin>().is_err());
        assert_eq!(pin_of_fragment(None), Ok(None));
        assert!(pin_of_fragment(Some(&format!("sha256={hex}")))
            .expect("pin")
            .is_some());
        let err = pin_of_fragment(Some("x")).expect_err("not a pin");
        assert!(err.contains("#sha256="), "{err}");
        let err = pin_of_fragment(Some("sha256=12")).expect_err("short");
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn wrong_certificate_is_refused_with_both_fingerprints() {
        let pin = CertPin([7; 32]);
        let v = PinVerifier {
            pins: vec![pin],
            algorithms: crypto().signature_verification_algorithms,
        };
        let cert = CertificateDer::from(vec![1u8, 2, 3]);
        let name = ServerName::try_from("p0.example").expect("name");
        let err = v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .expect_err("not pinned");
        let text = err.to_string();
        assert!(text.contains(&pin.to_string()), "{text}");
        assert!(
            text.contains(&CertPin::of_der(&[1, 2, 3]).to_string()),
            "{text}"
        );
        let ok = PinVerifier {
            pins: vec![CertPin::of_der(&[1, 2, 3])],
            algorithms: crypto().signature_verification_algorithms,
        };
        assert!(ok
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .is_ok());
    }
}
