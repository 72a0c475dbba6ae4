//! The account key: an ed25519 key pair that signs every request.
//!
//! An account is its public key, enrolled with each provider
//! (`POST /v1/accounts`). The private key never leaves the client; it is
//! kept in a file holding the 32-byte secret seed as 64 lowercase hex
//! digits and a newline, created with mode 0600.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::{CryptoRng, RngCore};

/// Why an account key could not be loaded or saved.
///
/// Messages name the file but never echo its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// There is no key file at the path.
    #[error("no account key at {}; create one with `sharecall keygen`", path.display())]
    Missing {
        /// Where the key was looked for.
        path: PathBuf,
    },
    /// The key file exists but cannot be read.
    #[error("cannot read the account key {}: {source}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file does not hold a key in the expected format.
    #[error("{} is not an account key: {reason}", path.display())]
    Invalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Saving would overwrite an existing key.
    #[error(
        "{} already exists; refusing to overwrite an account key (move it away first)",
        path.display()
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The key file (or its directory) cannot be written.
    #[error("cannot write the account key {}: {source}", path.display())]
    Write {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// An account's ed25519 signing key.
///
/// `Debug` shows only the public key.
#[derive(Clone)]
pub struct AccountKey {
    signing: SigningKey,
}

impl AccountKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> AccountKey {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        AccountKey::from_seed(&seed)
    }

    /// The key with the given 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> AccountKey {
        AccountKey {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The public key: the account's identity at the providers.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key as a verifier.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key as 64 lowercase hex digits (the `account` field).
    pub fn account_hex(&self) -> String {
        hex::encode(self.public_key())
    }

    /// Signs `message` (ed25519, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Writes the secret seed as hex to `path`, creating missing parent
    /// directories (mode 0700) and the file with mode 0600. An existing file
    /// is only replaced when `overwrite` is set.
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<(), KeyError> {
        let write_err = |source| KeyError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(write_err)?;
        }
        if overwrite {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(write_err(e)),
            }
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = match options.open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(KeyError::Exists {
                    path: path.to_owned(),
                })
            }
            Err(e) => return Err(write_err(e)),
        };
        let mut text = hex::encode(self.signing.to_bytes());
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(write_err)?;
        file.sync_all().map_err(write_err)
    }

    /// Reads a key written by [`AccountKey::save`] (64 hex digits;
    /// surrounding whitespace is ignored).
    pub fn load(path: &Path) -> Result<AccountKey, KeyError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(KeyError::Missing {
                    path: path.to_owned(),
                })
            }
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let invalid = |reason| KeyError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid("not text"))?;
        let text = text.trim();
        if text.len() != 64 {
            return Err(invalid("expected 64 hex digits"));
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text, &mut seed).map_err(|_| invalid("expected 64 hex digits"))?;
        Ok(AccountKey::from_seed(&seed))
    }

    /// A warning if the key file can be read by group or others (unix), so
    /// a front end can tell the user; `None` when the mode is private or
    /// cannot be checked.
    pub fn permissions_warning(path: &Path) -> Option<String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path).ok()?.permissions().mode();
            if mode & 0o077 != 0 {
                return Some(format!(
                    "account key {} is accessible by other users (mode {:o}); run chmod 600 on it",
                    path.display(),
                    mode & 0o777
                ));
            }
        }
        #[cfg(not(unix))]
        let _ = path;
        None
    }
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKey")
            .field("account", &self.account_hex())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};
    use rand::rngs::OsRng;

    #[test]
    fn save_load_round_trip_with_private_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("account.key");
        let key = AccountKey::generate(&mut OsRng);
        key.save(&path, false).expect("save");
        let loaded = AccountKey::load(&path).expect("load");
        assert_eq!(loaded.public_key(), key.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            assert!(AccountKey::permissions_warning(&path).is_none());
        }
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(text.trim().len(), 64);
        assert!(
            !text.contains(&key.account_hex()),
            "stores the secret, not the public key"
        );
    }

    #[test]
    fn save_refuses_to_overwrite_unless_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("account.key");
        let a = AccountKey::generate(&mut OsRng);
        let b = AccountKey::generate(&mut OsRng);
        a.save(&path, false).expect("save");
        assert!(matches!(b.save(&path, false), Err(KeyError::Exists { .. })));
        assert_eq!(
            AccountKey::load(&path).expect("load").public_key(),
            a.public_key()
        );
        b.save(&path, true).expect("overwrite");
        assert_eq!(
            AccountKey::load(&path).expect("load").public_key(),
            b.public_key()
        );
    }

    #[test]
    fn load_errors_are_clear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.key");
        let err = AccountKey::load(&missing).expect_err("missing");
        assert!(matches!(err, KeyError::Missing { .. }));
        assert!(err.to_string().contains("sharecall keygen"), "{err}");

        let bad = dir.path().join("bad.key");
        fs::write(
            &bad,
            "secret-but-not-hex-secret-but-not-hex-secret-but-not-hex-12345678",
        )
        .expect("write");
        let err = AccountKey::load(&bad).expect_err("bad");
        assert!(matches!(err, KeyError::Invalid { .. }), "{err}");
        assert!(
            !err.to_string().contains("secret"),
            "never echoes the file: {err}"
        );
        fs::write(&bad, "abcd").expect("write");
        assert!(matches!(
            AccountKey::load(&bad),
            Err(KeyError::Invalid { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn readable_key_gets_a_warning() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("account.key");
        AccountKey::generate(&mut OsRng)
            .save(&path, false)
            .expect("save");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let w = AccountKey::permissions_warning(&path).expect("warning");
        assert!(w.contains("644"), "{w}");
    }

    #[test]
    fn signatures_verify() {
        let key = AccountKey::generate(&mut OsRng);
        let sig = key.sign(b"hello");
        let vk = VerifyingKey::from_bytes(&key.public_key()).expect("public key");
        vk.verify(b"hello", &Signature::from_bytes(&sig))
            .expect("verifies");
        assert!(vk.verify(b"hellO", &Signature::from_bytes(&sig)).is_err());
        assert!(!format!("{key:?}").contains(&hex::encode(key.signing.to_bytes())));
    }
}
