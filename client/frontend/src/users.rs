//! The local users file.
//!
//! TOML, one `[[user]]` table per user:
//! ```toml
//! [[user]]
//! name = "alice"                 # user part; the AOR is sip:alice@<domain>
//! domain = "a.example"           # optional: default the first sip.domains entry
//! password = "secret"            # or ha1_md5 / ha1_sha256 (hex of H(user:realm:password))
//! account_key = "keys/alice.key" # the sharecall account key her registrations are signed with
//! ```
//!
//! Rules, checked at load time so a typo never shows up as a failed login:
//! - `name` is a non-empty RFC 3261 user part (unreserved, escaped
//!   `%HH` and `&=+$,;?/`), without `@` or `:`; it is also the digest
//!   `username`.
//! - Exactly one secret form: `password`, or `ha1_md5` (32 hex digits)
//!   and/or `ha1_sha256` (64 hex digits). HA1 is `H(name:realm:password)`,
//!   and the realm is not in this file: stored HA1 values only work for the
//!   realm configured in `auth.realm` (changing the realm invalidates them),
//!   and only for phones that send the bare `name` as digest username. A
//!   user with only `ha1_md5` can only answer MD5 challenges (and likewise
//!   for SHA-256).
//! - No two users with the same address of record (or the same sharecall
//!   pseudonym, which lowercases the user part).
//! - Unknown keys are errors.
//! - `account_key` relative paths are relative to the users file's folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::aor::Aor;

/// Why a users file cannot be used.
#[derive(Debug, Error)]
pub enum UsersError {
    /// Unreadable or malformed.
    #[error("{0}")]
    Invalid(String),
}

/// How a user's digest secret is stored. Its `Debug` hides the values.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The password itself (HA1 is computed for each algorithm).
    Password(String),
    /// Precomputed HA1 values (lowercase hex), per algorithm; at least one.
    Ha1 {
        /// HA1 with MD5.
        md5: Option<String>,
        /// HA1 with SHA-256.
        sha256: Option<String>,
    },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Users and configs end up in logs; their secrets must not.
        match self {
            Secret::Password(_) => f.write_str("Password(..)"),
            Secret::Ha1 { md5, sha256 } => f
                .debug_struct("Ha1")
                .field("md5", &md5.as_ref().map(|_| ".."))
                .field("sha256", &sha256.as_ref().map(|_| ".."))
                .finish(),
        }
    }
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

/// All local users. Immutable once loaded; share it as `Arc<Users>`.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: Vec<User>,
    by_aor: HashMap<Aor, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    user: Vec<RawUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: toml::Spanned<String>,
    domain: Option<String>,
    password: Option<String>,
    ha1_md5: Option<String>,
    ha1_sha256: Option<String>,
    account_key: Option<PathBuf>,
}

/// RFC 3261 `user`: unreserved / escaped / user-unreserved.
fn valid_user_part(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return false;
            }
            i += 3;
            continue;
        }
        if !(c.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&c)) {
            return false;
        }
        i += 1;
    }
    !b.is_empty()
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-.[]:".contains(&c))
}

fn parse_hex(what: &str, v: &str, len: usize) -> Result<String, String> {
    let v = v.trim();
    if v.len() != len || !v.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{what} must be {len} hex digits"));
    }
    Ok(v.to_ascii_lowercase())
}

/// The 1-based line of `offset`, given the offsets of every newline
/// (counted once per file: a users file of 100 000 users must not cost a
/// scan per user).
fn line_of(newlines: &[usize], offset: usize) -> usize {
    newlines.partition_point(|&i| i < offset) + 1
}

impl Users {
    /// Reads a users file; relative key paths are resolved against its folder.
    pub fn load(path: &Path, default_domain: &str) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsersError::Invalid(format!("users file {}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        // Absolute so the key paths stay valid whatever the working dir.
        let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        Users::parse(&text, default_domain, &base).map_err(|UsersError::Invalid(e)| {
            UsersError::Invalid(format!("{}: {e}", path.display()))
        })
    }

    /// Parses users file text.
    pub fn parse(text: &str, default_domain: &str, base: &Path) -> Result<Users, UsersError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| UsersError::Invalid(e.to_string()))?;
        let mut users = Users::default();
        let mut pseudonyms: HashMap<String, String> = HashMap::new();
        let newlines: Vec<usize> = text.match_indices('\n').map(|(i, _)| i).collect();
        for r in raw.user {
            let line = line_of(&newlines, r.name.span().start);
            let name = r.name.into_inner();
            let err = |m: String| UsersError::Invalid(format!("line {line}, user {name:?}: {m}"));
            if name.is_empty() {
                return Err(UsersError::Invalid(format!("line {line}: empty user name")));
            }
            if !valid_user_part(&name) {
                return Err(err(
                    "not a SIP user part (no '@', ':', spaces or other reserved characters)".into(),
                ));
            }
            let domain = r.domain.as_deref().unwrap_or(default_domain).trim();
            if !valid_domain(domain) {
                return Err(err(format!("bad domain {domain:?}")));
            }
            let secret = match (r.password, r.ha1_md5, r.ha1_sha256) {
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                    return Err(err(
                        "give either password or ha1_md5/ha1_sha256, not both".into()
                    ))
                }
                (Some(p), None, None) => {
                    if p.is_empty() {
                        return Err(err("empty password".into()));
                    }
                    Secret::Password(p)
                }
                (None, None, None) => {
                    return Err(err("no secret: give password, ha1_md5 or ha1_sha256".into()))
                }
                (None, md5, sha256) => Secret::Ha1 {
                    md5: md5
                        .map(|v| parse_hex("ha1_md5", &v, 32))
                        .transpose()
                        .map_err(err)?,
                    sha256: sha256
                        .map(|v| parse_hex("ha1_sha256", &v, 64))
                        .transpose()
                        .map_err(err)?,
                },
            };
            let aor = Aor::new(&name, domain);
            if users.by_aor.contains_key(&aor) {
                return Err(err(format!("duplicate user {aor}")));
            }
            // Two AORs differing only in case share one sharecall pseudonym.
            if let Ok(p) = aor.pseudonym() {
                if let Some(other) = pseudonyms.insert(p.as_str().to_string(), aor.to_string()) {
                    return Err(err(format!(
                        "{aor} and {other} are the same sharecall pseudonym {}",
                        p.as_str()
                    )));
                }
            }
            let account_key = r.account_key.map(|k| base.join(k));
            users.by_aor.insert(aor.clone(), users.users.len());
            users.users.push(User {
                aor,
                secret,
                account_key,
            });
        }
        Ok(users)
    }

    /// The user with this address of record.
    pub fn get(&self, aor: &Aor) -> Option<&User> {
        self.by_aor.get(aor).map(|&i| &self.users[i])
    }

    /// The user named by a digest `username` in `domain`. The username is
    /// `name` (then `domain` is used) or `name@domain` (then its own domain
    /// is used, for phones whose From/To host is an IP address). The name
    /// matches exactly, the domain case-insensitively.
    pub fn by_username(&self, username: &str, domain: &str) -> Option<&User> {
        let (name, domain) = username.rsplit_once('@').unwrap_or((username, domain));
        if name.is_empty() {
            return None;
        }
        self.get(&Aor::new(name, domain))
    }

    /// Every user, in file order.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.iter()
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Users, UsersError> {
        Users::parse(t, "a.example", Path::new("/etc/sc"))
    }

    fn err(t: &str) -> String {
        parse(t).unwrap_err().to_string()
    }

    #[test]
    fn parses_users_with_defaults_and_key_paths() {
        let u = parse(
            "[[user]]\nname = \"alice\"\npassword = \"pw\"\naccount_key = \"keys/alice.key\"\n\
             [[user]]\nname = \"bob\"\ndomain = \"B.Example\"\nha1_md5 = \"0123456789ABCDEF0123456789abcdef\"\n\
             [[user]]\nname = \"carol\"\nha1_sha256 = \"{}\"\naccount_key = \"/abs/c.key\"\n"
                .replace("{}", &"ab".repeat(32))
                .as_str(),
        )
        .unwrap();
        assert_eq!(u.len(), 3);
        let a = u.get(&Aor::new("alice", "a.example")).unwrap();
        assert_eq!(a.secret, Secret::Password("pw".into()));
        assert_eq!(
            a.account_key.as_deref(),
            Some(Path::new("/etc/sc/keys/alice.key"))
        );
        let b = u.by_username("bob", "b.EXAMPLE").unwrap();
        assert_eq!(b.aor.to_string(), "bob@b.example");
        assert_eq!(
            b.secret,
            Secret::Ha1 {
                md5: Some("0123456789abcdef0123456789abcdef".into()),
                sha256: None
            }
        );
        let c = u.by_username("carol@A.example", "192.0.2.1").unwrap();
        assert_eq!(c.account_key.as_deref(), Some(Path::new("/abs/c.key")));
        assert!(u.by_username("Alice", "a.example").is_none());
        assert!(u.by_username("bob", "a.example").is_none());
        assert!(u.by_username("@a.example", "a.example").is_none());
        let names: Vec<_> = u.iter().map(|u| u.aor.user().to_string()).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        assert!(parse("").unwrap().is_empty());
        let dbg = format!("{u:?}");
        assert!(!dbg.contains("pw") && !dbg.contains("0123") && dbg.contains("Password(..)"));
    }

    #[test]
    fn refuses_bad_files_with_the_user_and_line() {
        let e = err("[[user]]\nname = \"alice\"\npassword = \"a\"\n[[user]]\nname = \"alice\"\npassword = \"b\"\n");
        assert!(e.contains("duplicate") && e.contains("line 5"), "{e}");
        let e = err("[[user]]\nname = \"Alice\"\npassword = \"a\"\n[[user]]\nname = \"alice\"\npassword = \"b\"\n");
        assert!(e.contains("pseudonym"), "{e}");
        assert!(err("[[user]]\nname = \"\"\npassword = \"a\"\n").contains("empty user name"));
        assert!(err("[[user]]\nname = \"a@b\"\npassword = \"a\"\n").contains("\"a@b\""));
        assert!(err("[[user]]\nname = \"a:b\"\npassword = \"a\"\n").contains("user part"));
        let e = err("[[user]]\nname = \"x\"\npassword = \"a\"\nha1_md5 = \"0123456789abcdef0123456789abcdef\"\n");
        assert!(e.contains("not both"), "{e}");
        assert!(err("[[user]]\nname = \"x\"\n").contains("no secret"));
        assert!(err("[[user]]\nname = \"x\"\nha1_md5 = \"xyz\"\n").contains("32 hex"));
        assert!(
            err("[[user]]\nname = \"x\"\nha1_sha256 = \"0123456789abcdef0123456789abcdef\"\n")
                .contains("64 hex")
        );
        let e = err("[[user]]\nname = \"x\"\npassword = \"a\"\npasword = \"b\"\n");
        assert!(e.contains("pasword"), "{e}");
        assert!(
            err("[[user]]\nname = \"x\"\npassword = \"a\"\ndomain = \"a b\"\n").contains("domain")
        );
        assert!(err("[[user]]\nname = \"x\"\npassword = \"\"\n").contains("empty password"));
        assert!(err("user = 3").contains("invalid type"));
    }

    #[test]
    fn loads_from_disk_relative_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.toml");
        std::fs::write(
            &p,
            "[[user]]\nname = \"alice\"\npassword = \"pw\"\naccount_key = \"k\"\n",
        )
        .unwrap();
        let u = Users::load(&p, "a.example").unwrap();
        let a = u.iter().next().unwrap();
        assert_eq!(
            a.account_key.as_deref(),
            Some(dir.path().join("k").as_path())
        );
        let e = Users::load(&dir.path().join("missing.toml"), "a.example").unwrap_err();
        assert!(e.to_string().contains("missing.toml"));
    }
}
