//! A provider's long-term TLS identity and how peers recognise it.
//!
//! Each provider has one key pair and a self-signed certificate, made once
//! with `sharecall-provider init`. There is no certificate authority: the
//! three operators exchange certificate fingerprints out of band and each
//! pins the other two ([`Fingerprint`]).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// File name of the certificate inside a provider's data directory.
pub const CERT_FILE: &str = "provider.cert.pem";
/// File name of the private key inside a provider's data directory.
pub const KEY_FILE: &str = "provider.key.pem";

/// DNS name written into every provider certificate. Peers are recognised
/// by fingerprint, not by name; the name only satisfies TLS's syntax.
pub const CERT_DNS_NAME: &str = "sharecall-provider";

/// Why an identity could not be made, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Key or certificate generation failed.
    #[error("cannot generate the provider key and certificate: {0}")]
    Generate(String),
    /// `init` would overwrite an existing identity.
    #[error("{0} already exists; pass --force to replace the provider identity")]
    Exists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {what}")]
    Pem {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
}

/// SHA-256 of a certificate's DER encoding: how providers pin each other.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A fingerprint string that is not 32 bytes of hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 64 hex digits (optionally colon-separated, optionally prefixed sha256:), got {0} hex digits")]
pub struct FingerprintParseError(usize);

impl FromStr for Fingerprint {
    type Err = FingerprintParseError;

    /// Accepts `ab12…`, `AB:12:…` and `sha256:ab12…`, as printed by
    /// `sharecall-provider init` and `openssl x509 -fingerprint -sha256`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        let digits: String = s.chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        match hex::decode_to_slice(&digits, &mut out) {
            Ok(()) => Ok(Fingerprint(out)),
            Err(_) => Err(FingerprintParseError(digits.len())),
        }
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A provider's certificate and private key.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
    fingerprint: Fingerprint,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            fingerprint: self.fingerprint,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Makes a fresh ECDSA P-256 key and a self-signed certificate whose
    /// common name is `common_name` (for operators' eyes only).
    pub fn generate(common_name: &str) -> Result<Identity, IdentityError> {
        let gen = |e: rcgen::Error| IdentityError::Generate(e.to_string());
        let mut params =
            rcgen::CertificateParams::new(vec![CERT_DNS_NAME.to_string()]).map_err(gen)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        // Long-lived: rotation is an operator decision (re-run init and
        // re-exchange fingerprints), not an expiry surprise.
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let key_pair = rcgen::KeyPair::generate().map_err(gen)?;
        let cert = params.self_signed(&key_pair).map_err(gen)?;
        let cert_pem = cert.pem();
        let key_pem = key_pair.serialize_pem();
        Identity::from_pem(&cert_pem, &key_pem, Path::new("<generated>"))
    }

    fn from_pem(cert_pem: &str, key_pem: &str, path: &Path) -> Result<Identity, IdentityError> {
        let pem_err = |what: String| IdentityError::Pem {
            path: path.to_path_buf(),
            what,
        };
        let cert = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .ok_or_else(|| pem_err("no CERTIFICATE block".into()))?
            .map_err(|e| pem_err(format!("bad certificate PEM: {e}")))?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| pem_err(format!("bad key PEM: {e}")))?
            .ok_or_else(|| pem_err("no PRIVATE KEY block".into()))?;
        let fingerprint = Fingerprint::of_der(cert.as_ref());
        Ok(Identity {
            cert,
            key,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            fingerprint,
        })
    }

    /// Writes the certificate and key into `dir` (created if needed); the
    /// key file is readable by the owner only. Refuses to overwrite an
    /// existing identity unless `force`.
    pub fn save(&self, dir: &Path, force: bool) -> Result<(), IdentityError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IdentityError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if !force {
            for p in [&cert_path, &key_path] {
                if p.exists() {
                    return Err(IdentityError::Exists(p.clone()));
                }
            }
        }
        write_private(&key_path, self.key_pem.as_bytes()).map_err(io_err(&key_path))?;
        fs::write(&cert_path, self.cert_pem.as_bytes()).map_err(io_err(&cert_path))?;
        Ok(())
    }

    /// Reads the identity written by [`Identity::save`] from `dir`.
    pub fn load(dir: &Path) -> Result<Identity, IdentityError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|source| IdentityError::Io { path, source })
        };
        let cert_pem = read(CERT_FILE)?;
        let key_pem = read(KEY_FILE)?;
        Identity::from_pem(&cert_pem, &key_pem, dir)
    }

    /// The fingerprint the other providers pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The certificate (DER).
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// A copy of the private key (DER), for building TLS configurations.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }

    /// The certificate in PEM, e.g. to publish next to the fingerprint.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only on creation; tighten a pre-existing file too.
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_round_trip_keeps_fingerprint() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = Identity::generate("test").expect("generate");
        id.save(dir.path(), false).expect("save");
        let back = Identity::load(dir.path()).expect("load");
        assert_eq!(back.fingerprint(), id.fingerprint());
        assert_eq!(back.cert().as_ref(), id.cert().as_ref());
    }

    #[test]
    fn save_refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Identity::generate("a").expect("generate");
        let b = Identity::generate("b").expect("generate");
        a.save(dir.path(), false).expect("save");
        assert!(matches!(
            b.save(dir.path(), false),
            Err(IdentityError::Exists(_))
        ));
        assert_eq!(
            Identity::load(dir.path()).expect("load").fingerprint(),
            a.fingerprint()
        );
        b.save(dir.path(), true).expect("forced save");
        assert_eq!(
            Identity::load(dir.path()).expect("load").fingerprint(),
            b.fingerprint()
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        Identity::generate("a")
            .expect("generate")
            .save(dir.path(), false)
            .expect("save");
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn load_reports_missing_and_garbage_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Io { .. })
        ));
        fs::write(dir.path().join(CERT_FILE), "not pem").expect("write");
        fs::write(dir.path().join(KEY_FILE), "not pem").expect("write");
        let err = Identity::load(dir.path()).expect_err("garbage must fail");
        assert!(err.to_string().contains("CERTIFICATE"), "{err}");
    }

    #[test]
    fn fingerprint_parses_all_printed_forms() {
        let fp = Identity::generate("a").expect("generate").fingerprint();
        let plain = fp.to_string();
        assert_eq!(plain.len(), 64);
        assert_eq!(plain.parse::<Fingerprint>(), Ok(fp));
        let colons: Vec<String> = fp.0.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(colons.join(":").parse::<Fingerprint>(), Ok(fp));
        assert_eq!(format!("sha256:{plain}").parse::<Fingerprint>(), Ok(fp));
        assert!("abc".parse::<Fingerprint>().is_err());
        assert!(plain.replace('a', "g").parse::<Fingerprint>().is_err() || !plain.contains('a'));
    }
}
