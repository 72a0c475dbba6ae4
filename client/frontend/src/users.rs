//! The local users file. SKELETON: the auth helper fills this in.
//!
//! TOML, one `[[user]]` table per user:
//! ```toml
//! [[user]]
//! name = "alice"                 # user part; the AOR is sip:alice@<domain>
//! domain = "a.example"           # optional: default the first sip.domains entry
//! password = "secret"            # or ha1_md5 / ha1_sha256 (hex of H(user:realm:password))
//! account_key = "keys/alice.key" # the sharecall account key her registrations are signed with
//! ```

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::aor::Aor;

/// Why a users file cannot be used.
#[derive(Debug, Error)]
pub enum UsersError {
    /// Unreadable or malformed.
    #[error("{0}")]
    Invalid(String),
}

/// How a user's digest secret is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// The password itself (HA1 is computed for each algorithm).
    Password(String),
    /// Precomputed HA1 values (hex), per algorithm; at least one.
    Ha1 {
        /// HA1 with MD5.
        md5: Option<String>,
        /// HA1 with SHA-256.
        sha256: Option<String>,
    },
}

/// One local user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The address of record.
    pub aor: Aor,
    /// The digest secret.
    pub secret: Secret,
    /// The sharecall account key file (absolute), for sharecall mode.
    pub account_key: Option<PathBuf>,
}

/// All local users.
#[derive(Debug, Clone, Default)]
pub struct Users {
    _todo: (),
}

impl Users {
    /// Reads a users file; relative key paths are resolved against its folder.
    pub fn load(_path: &Path, _default_domain: &str) -> Result<Users, UsersError> {
        todo!("auth helper")
    }

    /// Parses users file text.
    pub fn parse(_text: &str, _default_domain: &str, _base: &Path) -> Result<Users, UsersError> {
        todo!("auth helper")
    }

    /// The user with this address of record.
    pub fn get(&self, _aor: &Aor) -> Option<&User> {
        todo!("auth helper")
    }

    /// The user named `name` in `realm`'s domain set (digest `username`).
    pub fn by_username(&self, _username: &str, _domain: &str) -> Option<&User> {
        todo!("auth helper")
    }

    /// Every user.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        std::iter::empty()
    }
}
