//! Digest authentication (RFC 3261 §22, RFC 8760 SHA-256 and MD5), sans-IO.
//!
//! Policy:
//! - We always offer `qop="auth"` and require it: without qop there is no
//!   nonce count, so a captured request could be replayed for the nonce's
//!   whole lifetime. A response without qop gets a fresh challenge.
//! - Nonces are stateless: hex of (ms since the authenticator started,
//!   8 random bytes, 16-byte keyed blake3 MAC). A nonce with a bad MAC
//!   (forged, or from before a restart) gets a fresh challenge; a genuine
//!   one older than `nonce_lifetime` gets `stale=true`, but only when the
//!   digest itself was right (RFC 7616 §3.3), so the phone retries without
//!   asking its user for the password.
//! - Replay: per nonce the highest accepted nonce count; a count not above
//!   it is challenged. Entries are made only after a fully valid response
//!   (so only password holders can create them), [`Authenticator::sweep`]
//!   drops expired ones, and the table is capped: when full, new nonces are
//!   challenged instead of growing it.
//! - Unknown users and wrong passwords both get a fresh challenge, so the
//!   answers do not tell which users exist. Malformed credentials get 400.
//! - The user is found by digest `username` in the domain of the To URI
//!   (REGISTER) or the From URI (other requests); see
//!   [`Users::by_username`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};
use sharecall_sip::headers::AuthParams;
use sharecall_sip::Message;

use crate::aor::Aor;
use crate::users::{Secret, User, Users};

/// The default cap on tracked nonces (about 10 MB of state).
pub const DEFAULT_MAX_NONCES: usize = 200_000;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256 (RFC 8760).
    Sha256,
    /// MD5 (old phones).
    Md5,
}

impl Algorithm {
    /// The name in `algorithm=` parameters and the config: `SHA-256`, `MD5`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// Parses `SHA-256` / `MD5` (case-insensitive); the `-sess` variants
    /// and others are not supported.
    pub fn from_name(s: &str) -> Option<Algorithm> {
        if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else {
            None
        }
    }

    /// Lowercase hex of H(parts joined with ':').
    fn hash(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex::encode(d.finalize())
        }
        match self {
            Algorithm::Sha256 => run::<Sha256>(parts),
            Algorithm::Md5 => run::<Md5>(parts),
        }
    }
}

/// HA1 = H(username:realm:password), lowercase hex (what `ha1_md5` and
/// `ha1_sha256` in the users file hold).
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash(&[username.as_bytes(), realm.as_bytes(), password.as_bytes()])
}

/// The `response` of a `qop=auth` digest, as a user agent computes it:
/// H(HA1:nonce:nc:cnonce:qop:H(method:uri)).
pub fn qop_auth_response(
    alg: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hash(&[method.as_bytes(), uri.as_bytes()]);
    alg.hash(&[
        ha1.as_bytes(),
        nonce.as_bytes(),
        nc.as_bytes(),
        cnonce.as_bytes(),
        b"auth",
        ha2.as_bytes(),
    ])
}

/// Authentication settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The realm.
    pub realm: String,
    /// Challenge algorithms in order (one challenge header each).
    pub algorithms: Vec<Algorithm>,
    /// How long a nonce is good; after, `stale=true`.
    pub nonce_lifetime: Duration,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid credentials of this local user.
    Authorized {
        /// The user's address of record.
        user: Aor,
    },
    /// Answer with `status` (401 or 407) and these extra header lines
    /// (`WWW-Authenticate: Digest ...` or `Proxy-Authenticate: ...`).
    Challenge {
        /// 401 or 407.
        status: u16,
        /// Full header lines, one per algorithm.
        headers: Vec<String>,
    },
    /// Answer 403. [`Authenticator::check`] never returns this (unknown
    /// users get a challenge, like wrong passwords, so that the answers do
    /// not enumerate users); it is for callers' policy, e.g. an
    /// authenticated user asking for another user's binding.
    Forbidden {
        /// Reason phrase detail for logs.
        reason: String,
    },
    /// Answer 400: malformed credentials.
    Bad {
        /// What is wrong.
        reason: String,
    },
}

/// Nonce: 8 bytes ms since start, 8 random bytes, 16 bytes MAC.
const NONCE_ID: usize = 16;
const NONCE_LEN: usize = 32;

/// The authenticator: nonce key, per-nonce nonce-count state.
pub struct Authenticator {
    cfg: AuthConfig,
    users: Arc<Users>,
    secret: [u8; 32],
    start: Instant,
    /// Nonce id (time and random part) → highest accepted nonce count.
    seen: HashMap<[u8; NONCE_ID], u32>,
    max_nonces: usize,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("cfg", &self.cfg)
            .field("users", &self.users.len())
            .field("nonces", &self.seen.len())
            .finish_non_exhaustive()
    }
}

/// Why a nonce is not usable.
enum NonceState {
    Fresh([u8; NONCE_ID]),
    Stale,
    Invalid,
}

/// Constant-time equality (lengths are not secret).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The host of a SIP URI (`sip:alice@A.example:5060;x` → `A.example`).
fn uri_host(uri: &str) -> &str {
    let rest = uri.trim();
    let rest = rest.split_once(':').map_or(rest, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split([';', '?']).next().unwrap_or_default();
    if hostport.starts_with('[') {
        hostport.find(']').map_or(hostport, |end| &hostport[..=end])
    } else {
        hostport.split(':').next().unwrap_or_default()
    }
}

fn bad(reason: impl Into<String>) -> Verdict {
    Verdict::Bad {
        reason: reason.into(),
    }
}

impl Authenticator {
    /// A new authenticator; `secret` keys the nonces (random per process is
    /// fine: a restart makes old nonces stale).
    pub fn new(
        cfg: AuthConfig,
        users: Arc<Users>,
        secret: [u8; 32],
        now: Instant,
    ) -> Authenticator {
        for u in users.iter() {
            if let Secret::Ha1 { md5, sha256 } = &u.secret {
                for alg in &cfg.algorithms {
                    let missing = match alg {
                        Algorithm::Md5 => md5.is_none(),
                        Algorithm::Sha256 => sha256.is_none(),
                    };
                    if missing {
                        tracing::warn!(
                            user = %u.aor,
                            algorithm = alg.name(),
                            "user has no HA1 for a challenged algorithm; phones choosing it cannot log in"
                        );
                    }
                }
            }
        }
        Authenticator {
            cfg,
            users,
            secret,
            start: now,
            seen: HashMap::new(),
            max_nonces: DEFAULT_MAX_NONCES,
        }
    }

    /// Sets the cap on tracked nonces (default [`DEFAULT_MAX_NONCES`]).
    pub fn with_max_nonces(mut self, max: usize) -> Authenticator {
        self.max_nonces = max;
        self
    }

    /// How many nonces have nonce-count state (for metrics).
    pub fn tracked_nonces(&self) -> usize {
        self.seen.len()
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    fn mac(&self, id: &[u8; NONCE_ID]) -> [u8; NONCE_LEN - NONCE_ID] {
        let h = blake3::keyed_hash(&self.secret, id);
        let mut out = [0; NONCE_LEN - NONCE_ID];
        out.copy_from_slice(&h.as_bytes()[..NONCE_LEN - NONCE_ID]);
        out
    }

    fn ms_since_start(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX)
    }

    /// A fresh nonce for `now`.
    fn nonce(&self, now: Instant) -> String {
        let mut id = [0u8; NONCE_ID];
        id[..8].copy_from_slice(&self.ms_since_start(now).to_be_bytes());
        id[8..].copy_from_slice(&rand::random::<[u8; 8]>());
        let mut raw = [0u8; NONCE_LEN];
        raw[..NONCE_ID].copy_from_slice(&id);
        raw[NONCE_ID..].copy_from_slice(&self.mac(&id));
        hex::encode(raw)
    }

    fn issued_ms(id: &[u8; NONCE_ID]) -> u64 {
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&id[..8]);
        u64::from_be_bytes(ms)
    }

    fn expired(&self, id: &[u8; NONCE_ID], now_ms: u64) -> bool {
        let lifetime = u64::try_from(self.cfg.nonce_lifetime.as_millis()).unwrap_or(u64::MAX);
        now_ms.saturating_sub(Self::issued_ms(id)) > lifetime
    }

    fn nonce_state(&self, nonce: &str, now: Instant) -> NonceState {
        let mut raw = [0u8; NONCE_LEN];
        if hex::decode_to_slice(nonce.trim(), &mut raw).is_err() {
            return NonceState::Invalid;
        }
        let mut id = [0u8; NONCE_ID];
        id.copy_from_slice(&raw[..NONCE_ID]);
        if !ct_eq(&self.mac(&id), &raw[NONCE_ID..]) {
            return NonceState::Invalid;
        }
        if self.expired(&id, self.ms_since_start(now)) {
            NonceState::Stale
        } else {
            NonceState::Fresh(id)
        }
    }

    /// A challenge with a fresh nonce, one header per algorithm.
    pub fn challenge(&self, proxy: bool, stale: bool, now: Instant) -> Verdict {
        let nonce = self.nonce(now);
        let (status, name) = if proxy {
            (407, "Proxy-Authenticate")
        } else {
            (401, "WWW-Authenticate")
        };
        let realm = self.cfg.realm.replace('\\', "\\\\").replace('"', "\\\"");
        let stale = if stale { ", stale=true" } else { "" };
        let headers = self
            .cfg
            .algorithms
            .iter()
            .map(|a| {
                format!(
                    "{name}: Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    a.name()
                )
            })
            .collect();
        Verdict::Challenge { status, headers }
    }

    /// Checks `msg`'s credentials: `proxy` false uses Authorization and
    /// 401/WWW-Authenticate (registrar), true Proxy-Authorization and
    /// 407/Proxy-Authenticate (proxy).
    ///
    /// [`Verdict::Bad`] for a non-request, unparsable credentials for any
    /// realm, or credentials for our realm missing `username`, `nonce`,
    /// `uri`, `response`, `nc` or `cnonce`, with an `nc` that is not 1 to 8
    /// hex digits (or 0), or a `uri` other than the Request-URI. Everything
    /// else that is not a valid, fresh, unreplayed answer is a
    /// [`Verdict::Challenge`].
    pub fn check(&mut self, msg: &Message, proxy: bool, now: Instant) -> Verdict {
        let header = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        let (Some(method), Some(request_uri)) = (msg.method(), msg.request_uri()) else {
            return bad("not a request");
        };
        // Credentials for our realm; others (e.g. for a downstream proxy's
        // realm) are not ours to judge.
        let mut creds = None;
        for h in msg.headers_named(header) {
            let p = match AuthParams::parse(header, &h.value()) {
                Ok(p) => p,
                Err(e) => return bad(format!("{header}: {e}")),
            };
            if p.is_digest() && p.get("realm") == Some(self.cfg.realm.as_str()) {
                creds = Some(p);
                break;
            }
        }
        let Some(creds) = creds else {
            return self.challenge(proxy, false, now);
        };
        let field = |n: &str| creds.get(n).ok_or_else(|| bad(format!("{header}: no {n}")));
        let (username, nonce, uri, response) = match (
            field("username"),
            field("nonce"),
            field("uri"),
            field("response"),
        ) {
            (Ok(u), Ok(n), Ok(r), Ok(s)) => (u, n, r, s),
            (Err(e), ..) | (_, Err(e), ..) | (.., Err(e), _) | (.., Err(e)) => return e,
        };
        let Some(qop) = creds.get("qop") else {
            // No qop, no nonce count: refused to keep replay protection.
            return self.challenge(proxy, false, now);
        };
        if !qop.eq_ignore_ascii_case("auth") {
            return self.challenge(proxy, false, now);
        }
        let (nc, cnonce) = match (field("nc"), field("cnonce")) {
            (Ok(nc), Ok(c)) => (nc, c),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        let nc_value = match nc.len() {
            1..=8 if nc.bytes().all(|c| c.is_ascii_hexdigit()) => {
                u32::from_str_radix(nc, 16).unwrap_or(0)
            }
            _ => return bad(format!("{header}: nc {nc:?} is not 8 hex digits")),
        };
        if nc_value == 0 {
            return bad(format!("{header}: nc must start at 1"));
        }
        let alg = match creds.get("algorithm") {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::from_name(a) {
                Some(a) => a,
                None => return self.challenge(proxy, false, now),
            },
        };
        if !self.cfg.algorithms.contains(&alg) {
            return self.challenge(proxy, false, now);
        }
        if uri.trim() != request_uri.trim() {
            return bad(format!(
                "{header}: uri {uri:?} is not the Request-URI {request_uri:?}"
            ));
        }
        let id = match self.nonce_state(nonce, now) {
            NonceState::Invalid => return self.challenge(proxy, false, now),
            NonceState::Stale => None,
            NonceState::Fresh(id) => Some(id),
        };
        let party = if method.eq_ignore_ascii_case("REGISTER") {
            msg.to()
        } else {
            msg.from()
        };
        let party = match party {
            Ok(p) => p,
            Err(e) => return bad(e.to_string()),
        };
        let Some(user) = self.users.by_username(username, uri_host(&party.uri)) else {
            return self.challenge(proxy, false, now);
        };
        let Some(ha1) = user_ha1(user, alg, username, &self.cfg.realm) else {
            return self.challenge(proxy, false, now);
        };
        let expected = qop_auth_response(alg, &ha1, nonce, nc, cnonce, &method, uri);
        if !ct_eq(
            expected.as_bytes(),
            response.trim().to_ascii_lowercase().as_bytes(),
        ) {
            return self.challenge(proxy, false, now);
        }
        let Some(id) = id else {
            // Right password, old nonce: stale, so the phone retries quietly.
            return self.challenge(proxy, true, now);
        };
        let full = self.seen.len() >= self.max_nonces;
        match self.seen.get_mut(&id) {
            Some(last) if nc_value <= *last => return self.challenge(proxy, false, now),
            Some(last) => *last = nc_value,
            None if full => return self.challenge(proxy, false, now),
            None => {
                self.seen.insert(id, nc_value);
            }
        }
        Verdict::Authorized {
            user: user.aor.clone(),
        }
    }

    /// Forgets the state of expired nonces.
    pub fn sweep(&mut self, now: Instant) {
        let now_ms = self.ms_since_start(now);
        let lifetime = u64::try_from(self.cfg.nonce_lifetime.as_millis()).unwrap_or(u64::MAX);
        self.seen
            .retain(|id, _| now_ms.saturating_sub(Self::issued_ms(id)) <= lifetime);
    }
}

/// The user's HA1 for `alg`: computed over the username as sent when the
/// password is stored; stored HA1 values are for the bare name only.
fn user_ha1(user: &User, alg: Algorithm, username: &str, realm: &str) -> Option<String> {
    match (&user.secret, alg) {
        (Secret::Password(p), _) => Some(ha1(alg, username, realm, p)),
        (Secret::Ha1 { md5, .. }, Algorithm::Md5) => md5.clone(),
        (Secret::Ha1 { sha256, .. }, Algorithm::Sha256) => sha256.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use sharecall_sip::{parse_datagram, Limits};
    use std::path::Path;

    const REALM: &str = "a.example";

    fn users() -> Arc<Users> {
        let md5_only = ha1(Algorithm::Md5, "olga", REALM, "old");
        let both = format!(
            "ha1_md5 = \"{}\"\nha1_sha256 = \"{}\"",
            ha1(Algorithm::Md5, "hans", REALM, "hpw"),
            ha1(Algorithm::Sha256, "hans", REALM, "hpw")
        );
        let text = format!(
            "[[user]]\nname = \"alice\"\npassword = \"secret\"\n\
             [[user]]\nname = \"olga\"\nha1_md5 = \"{md5_only}\"\n\
             [[user]]\nname = \"hans\"\n{both}\n\
             [[user]]\nname = \"bob\"\ndomain = \"b.example\"\npassword = \"bpw\"\n"
        );
        Arc::new(Users::parse(&text, REALM, Path::new("/")).unwrap())
    }

    fn auth(algs: Vec<Algorithm>, now: Instant) -> Authenticator {
        Authenticator::new(
            AuthConfig {
                realm: REALM.into(),
                algorithms: algs,
                nonce_lifetime: Duration::from_secs(300),
            },
            users(),
            [9; 32],
            now,
        )
    }

    fn register(user: &str, domain: &str, auth_lines: &[String]) -> Message {
        let mut s = format!(
            "REGISTER sip:{domain} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.5:5060;branch=z9hG4bK1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{domain}>;tag=1\r\n\
             To: <sip:{user}@{domain}>\r\n\
             Call-ID: c1\r\nCSeq: 1 REGISTER\r\n\
             Contact: <sip:{user}@192.0.2.5>\r\n"
        );
        for l in auth_lines {
            s.push_str(l);
            s.push_str("\r\n");
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        parse_datagram(s.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
    }

    /// The challenge headers parsed: (header name, params).
    fn challenges(v: &Verdict) -> (u16, Vec<(String, AuthParams)>) {
        let Verdict::Challenge { status, headers } = v else {
            panic!("not a challenge: {v:?}");
        };
        let parsed = headers
            .iter()
            .map(|h| {
                let (n, v) = h.split_once(": ").unwrap();
                (n.to_string(), AuthParams::parse(n, v).unwrap())
            })
            .collect();
        (*status, parsed)
    }

    /// What a UA sends for a challenge.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        header: &str,
        ch: &AuthParams,
        username: &str,
        password: &str,
        nc: u32,
        method: &str,
        uri: &str,
        with_alg: bool,
    ) -> String {
        let alg = Algorithm::from_name(ch.get("algorithm").unwrap()).unwrap();
        let realm = ch.get("realm").unwrap();
        let nonce = ch.get("nonce").unwrap();
        let nc = format!("{nc:08x}");
        let h1 = ha1(alg, username, realm, password);
        let r = qop_auth_response(alg, &h1, nonce, &nc, "abc123", method, uri);
        let alg_param = if with_alg {
            format!(",algorithm={}", alg.name())
        } else {
            String::new()
        };
        // sipp's layout.
        format!(
            "{header}: Digest username=\"{username}\",realm=\"{realm}\",cnonce=\"abc123\",nc={nc},qop=auth,uri=\"{uri}\",nonce=\"{nonce}\",response=\"{r}\"{alg_param}"
        )
    }

    fn first_challenge(a: &mut Authenticator, alg: Algorithm, now: Instant) -> AuthParams {
        let (_, ch) = challenges(&a.check(&register("alice", REALM, &[]), false, now));
        ch.into_iter()
            .map(|(_, p)| p)
            .find(|p| p.get("algorithm") == Some(alg.name()))
            .unwrap()
    }

    fn authorized(user: &str, host: &str) -> Verdict {
        Verdict::Authorized {
            user: Aor::new(user, host),
        }
    }

    #[test]
    fn rfc7616_example_vectors() {
        let realm = "http-auth@example.org";
        let nonce = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let cases = [
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
        ];
        for (alg, want) in cases {
            let h1 = ha1(alg, "Mufasa", realm, "Circle of Life");
            let r = qop_auth_response(
                alg,
                &h1,
                nonce,
                "00000001",
                cnonce,
                "GET",
                "/dir/index.html",
            );
            assert_eq!(r, want, "{alg:?}");
        }
    }

    #[test]
    fn challenges_list_algorithms_in_order_with_401_or_407() {
        let now = Instant::now();
        let mut a = auth(vec![Algorithm::Sha256, Algorithm::Md5], now);
        let (status, ch) = challenges(&a.check(&register("alice", REALM, &[]), false, now));
        assert_eq!(status, 401);
        assert_eq!(ch.len(), 2);
        assert!(ch.iter().all(|(n, p)| n == "WWW-Authenticate"
            && p.is_digest()
            && p.get("realm") == Some(REALM)
            && p.get("qop") == Some("auth")
            && p.get("stale").is_none()));
        assert_eq!(ch[0].1.get("algorithm"), Some("SHA-256"));
        assert_eq!(ch[1].1.get("algorithm"), Some("MD5"));
        let Verdict::Challenge { headers, .. } =
            a.check(&register("alice", REALM, &[]), false, now)
        else {
            panic!()
        };
        assert!(headers[0].starts_with(&format!(
            "WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\""
        )));
        assert!(headers[0].ends_with("\", algorithm=SHA-256, qop=\"auth\""));
        let (status, ch) = challenges(&a.check(&register("alice", REALM, &[]), true, now));
        assert_eq!(status, 407);
        assert!(ch.iter().all(|(n, _)| n == "Proxy-Authenticate"));
        // Credentials in Authorization do not count for the proxy.
        let c = first_challenge(&mut a, Algorithm::Md5, now);
        let l = answer(
            "Authorization",
            &c,
            "alice",
            "secret",
            1,
            "REGISTER",
            "sip:a.example",
            true,
        );
        assert_eq!(
            challenges(&a.check(&register("alice", REALM, &[l]), true, now)).0,
            407
        );
    }

    #[test]
    fn round_trip_both_algorithms_and_proxy_authorization() {
        let now = Instant::now();
        let mut a = auth(vec![Algorithm::Sha256, Algorithm::Md5], now);
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let c = first_challenge(&mut a, alg, now);
            let l = answer(
                "Authorization",
                &c,
                "alice",
                "secret",
                1,
                "REGISTER",
                "sip:a.example",
                true,
            );
            assert_eq!(
                a.check(&register("alice", REALM, &[l]), false, now),
                authorized("alice", REALM)
            );
        }
        // MD5 is the default algorithm; Proxy-Authorization for the proxy.
        let c = first_challenge(&mut a, Algorithm::Md5, now);
        let l = answer(
            "Proxy-Authorization",
            &c,
            "alice",
            "secret",
            1,
            "REGISTER",
            "sip:a.example",
            false,
        );
        assert_eq!(
            a.check(&register("alice", REALM, &[l]), true, now),
            authorized("alice", REALM)
        );
        assert_eq!(a.tracked_nonces(), 3);
    }

    #[test]
    fn non_register_uses_the_from_domain_and_username_with_domain() {
        let now = Instant::now();
        let mut a = auth(vec![Algorithm::Md5], now);
        let c = first_challenge(&mut a, Algorithm::Md5, now);
        let l = answer(
            "Proxy-Authorization",
            &c,
            "bob",
            "bpw",
            1,
            "INVITE",
            "sip:carol@c.example",
            true,
        );
        let text = format!(
            "INVITE sip:carol@c.example SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK2\r\n\
             Max-Forwards: 70\r\nFrom: \"Bob\" <sip:bob@B.example>;tag=9\r\n\
             To: <sip:carol@c.example>\r\nCall-ID: c2\r\nCSeq: 1 INVITE\r\n{l}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let m = parse_datagram(text.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(a.check(&m, true, now), authorized("bob", "b.example"));
        // A phone whose To host is an IP, sending user@domain as username.
        let c = first_challenge(&mut a, Algorithm::Md5, now);
        let l = answer(
            "Authorization",
            &c,
            "bob@b.example",
            "bpw",
            1,
            "REGISTER",
            "sip:192.0.2.1",
            true,
        );
        assert_eq!(
            a.check(&register("bob", "192.0.2.1", &[l]), false, now),
            authorized("bob", "b.example")
        );
    }

    #[test]
    fn wrong_password_and_unknown_user_are_challenged_alike() {
        let now = Instant::now();
        let mut a = auth(vec![Algorithm::Md5], now);
        for (user, pw) in [("alice", "wrong"), ("mallory", "x"), ("Alice", "secret")] {
            let c = first_challenge(&mut a, Algorithm::Md5, now);
            let l = answer(
                "Authorization",
                &c,
                user,
                pw,
                1,
                "REGISTER",
                "sip:a.example",
                true,
            );
            let (status, ch) = challenges(&a.check(&register(user, REALM, &[l]), false, now));
            assert_eq!(status, 401);
            assert!(ch[0].1.get("stale").is_none());
            assert_ne!(ch[0].1.get("nonce"), c.get("nonce"));
        }
        // bob exists, but in b.example, not in the To domain.
        let c = first_challenge(&mut a, Algorithm::Md5, now);
        let l = answer(
            "Authorization",
            &c,
            "bob",
            "bpw",
            1,
            "REGISTER",
            "sip:a.example",
            true,
        );
        assert_eq!(
            challenges(&a.check(&register("bob", REALM, &[l]), false, now)).0,
            401
        );
        assert_eq!(a.tracked_nonces(), 0);
    }

    #[test]
    fn nonce_counts_must_increase() {
        let now = Instant::now();
        let mut a = auth(vec![Algorithm::Sha256], now);
        let c = first_challenge(&mut a, Algorithm::Sha256, now);
        let send = |a: &mut Authenticator, nc| {
            let l = answer(
                "Authorization",
                &c,
                "alice",
                "secret",
                nc,
                "REGISTER",
                "sip:a.example",
                true,
            );
            a.check(&register("alice", REALM, &[l]), false, now)
        };
        assert_eq!(send(&mut a, 1), authorized("alice", REALM));
        assert_eq!(challenges(&send(&mut a, 1)).0, 401, "replay");
        assert_eq!(send(&mut a, 2), authorized("alice", REALM));
        assert_eq!(send(&mut a, 5), authorized("alice", REALM));
        assert!(matches!(send(&mut a, 3), Verdict::Challenge { .. }));
        assert!(matches!(send(&mut a, 5), Verdict::Challenge { .. }));
        assert_eq!(send(&mut a, 6), authorized("alice", REALM));
        assert_eq!(a.tracked_nonces(), 1);
    }

    #[test]
    fn old_nonces_are_stale_only_with_a_right_digest_and_swept() {
        let t0 = Instant::now();
        let mut a = auth(vec![Algorithm::Md5], t0);
        let c = first_challenge(&mut a, Algorithm::Md5, t0);
        let l1 = answer(
            "Authorization",
            &c,
            "alice",
            "secret",
            1,
            "REGISTER",
            "sip:a.example",
            true,
        );
        assert_eq!(
            a.check(
                &register("alice", REALM, &[l1]),
                false,
                t0 + Duration::from_secs(299)
            ),
            authorized("alice", REALM)
        );
        let later = t0 + Duration::from_secs(301);
        let l2 = answer(
            "Authorization",
            &c,
            "alice",
            "secret",
            2,
            "REGISTER",
            "sip:a.example",
            true,
        );
        let (_, ch) = challenges(&a.check(&register("alice", REALM, &[l2]), false, later));
        assert_eq!(ch[0].1.get("stale"), Some("true"));
        let bad = answer(
            "Authorization",
            &c,
            "alice",
            "nope",
            2,
            "REGISTER",
            "sip:a.example",
            true,
        );
        let (_, ch) = challenges(&a.check(&register("alice", REALM, &[bad]), false, later));
        assert_eq!(ch[0].1.get("stale"), None);
        // The stale answer's new nonce works.
        let l3 = answer(
            "Authorization",
            &ch[0].1,
            "alice",
            "secret",
            1,
            "REGISTER",
            "sip:a.example",
            true,
        );
        assert_eq!(
            a.check(&register("alice", REALM, &[l3]), false, later),
            authorized("alice", REALM)
        );
        assert_eq!(a.tracked_nonces(), 2);
        a.sweep(later);
        assert_eq!(a.tracked_nonces(), 1);
        a.sweep(later + Duration::from_secs(301));
        assert_eq!(a.tracked_nonces(), 0);
    }

    #[test]
    fn forged_or_foreign_nonces_are_challenged_without_stale() {
        let now = Instant::now();
        let mut a = auth(vec![Algorithm::Md5], now);
        let c = first_challenge(&mut a, Algorithm::Md5, now);
        let nonce = c.get("nonce").unwrap().to_string();
        // Flip one MAC digit; then a nonce of another key; then garbage.
        let mut forged = nonce.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        let other = Authenticator {
            secret: [1; 32],
            ..auth(vec![Algorithm::Md5], now)
        }
        .nonce(now);
        for n in [String::from_utf8(forged).unwrap(), other, "xyz".into()] {
            let mut p = c.clone();
            p.params.iter_mut().find(|(k, _)| k == "nonce").unwrap().1 = n;
            let l = answer(
                "Authorization",
                &p,
                "alice",
                "secret",
                1,
                "REGISTER",
                "sip:a.example",
                true,
            );
            let (_, ch) = challenges(&a.check(&register("alice", REALM, &[l]), false, now));
            assert_eq!(ch[0].1.get("stale"), None);
        }
        assert_eq!(a.tracked_nonces(), 0);
    }

    #[test]
    fn ha1_users_and_algorithm_choice() {
        let now = Instant::now();
        let mut a = auth(vec![Algorithm::Sha256, Algorithm::Md5], now);
        let login = |a: &mut Authenticator, user: &str, pw: &str, alg| {
            let c = first_challenge(a, alg, now);
            let l = answer(
                "Authorization",
                &c,
                user,
                pw,
                1,
                "REGISTER",
                "sip:a.example",
                true,
            );
            a.check(&register(user, REALM, &[l]), false, now)
        };
        assert_eq!(
            login(&mut a, "olga", "old", Algorithm::Md5),
            authorized("olga", REALM)
        );
        assert!(matches!(
            login(&mut a, "olga", "old", Algorithm::Sha256),
            Verdict::Challenge { .. }
        ));
        assert_eq!(
            login(&mut a, "hans", "hpw", Algorithm::Sha256),
            authorized("hans", REALM)
        );
        assert_eq!(
            login(&mut a, "hans", "hpw", Algorithm::Md5),
            authorized("hans", REALM)
        );
        assert!(matches!(
            login(&mut a, "hans", "x", Algorithm::Md5),
            Verdict::Challenge { .. }
        ));
        // MD5 not offered: MD5 answers are refused.
        let mut s = auth(vec![Algorithm::Sha256], now);
        let (_, ch) = challenges(&s.check(&register("alice", REALM, &[]), false, now));
        assert_eq!(ch.len(), 1);
        let mut c = ch[0].1.clone();
        c.params
            .iter_mut()
            .find(|(k, _)| k == "algorithm")
            .unwrap()
            .1 = "MD5".into();
        let l = answer(
            "Authorization",
            &c,
            "alice",
            "secret",
            1,
            "REGISTER",
            "sip:a.example",
            true,
        );
        assert!(matches!(
            s.check(&register("alice", REALM, &[l]), false, now),
            Verdict::Challenge { .. }
        ));
        // An MD5-only authenticator offers one MD5 challenge.
        let mut m = auth(vec![Algorithm::Md5], now);
        let (_, ch) = challenges(&m.check(&register("alice", REALM, &[]), false, now));
        assert_eq!(ch.len(), 1);
        assert_eq!(ch[0].1.get("algorithm"), Some("MD5"));
    }

    #[test]
    fn malformed_or_unusable_credentials() {
        let now = Instant::now();
        let mut a = auth(vec![Algorithm::Md5], now);
        let c = first_challenge(&mut a, Algorithm::Md5, now);
        let good = answer(
            "Authorization",
            &c,
            "alice",
            "secret",
            1,
            "REGISTER",
            "sip:a.example",
            true,
        );
        let check =
            |a: &mut Authenticator, l: String| a.check(&register("alice", REALM, &[l]), false, now);
        let is_bad = |v: &Verdict| matches!(v, Verdict::Bad { .. });
        let is_challenge = |v: &Verdict| matches!(v, Verdict::Challenge { .. });
        assert!(is_bad(&check(
            &mut a,
            good.replace("username=\"alice\",", "")
        )));
        assert!(is_bad(&check(
            &mut a,
            good.replace("cnonce=\"abc123\",", "")
        )));
        assert!(is_bad(&check(
            &mut a,
            good.replace("nc=00000001", "nc=0000000g")
        )));
        assert!(is_bad(&check(
            &mut a,
            good.replace("nc=00000001", "nc=000000001")
        )));
        assert!(is_bad(&check(
            &mut a,
            good.replace("nc=00000001", "nc=00000000")
        )));
        assert!(is_bad(&check(
            &mut a,
            good.replace("uri=\"sip:a.example\"", "uri=\"sip:b.example\"")
        )));
        assert!(is_bad(&check(
            &mut a,
            "Authorization: Digest realm=\"a.example\", username".into()
        )));
        // No qop, other qop, other realm, other algorithm or scheme: challenge.
        assert!(is_challenge(&check(&mut a, good.replace(",qop=auth", ""))));
        assert!(is_challenge(&check(
            &mut a,
            good.replace("qop=auth", "qop=auth-int")
        )));
        assert!(is_challenge(&check(
            &mut a,
            good.replace("realm=\"a.example\"", "realm=\"x\"")
        )));
        assert!(is_challenge(&check(
            &mut a,
            good.replace("algorithm=MD5", "algorithm=MD5-sess")
        )));
        assert!(is_challenge(&check(
            &mut a,
            good.replace("Digest", "Basic")
        )));
        assert_eq!(a.tracked_nonces(), 0);
        // Uppercase response hex is fine; an extra
        // header for another realm is skipped.
        let other = "Authorization: Digest username=\"x\", realm=\"other\", nonce=\"n\", uri=\"u\", response=\"r\"".to_string();
        let r = good
            .split("response=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        let upper = good.replace(&r, &r.to_ascii_uppercase());
        assert_eq!(
            a.check(&register("alice", REALM, &[other, upper]), false, now),
            authorized("alice", REALM)
        );
    }

    #[test]
    fn the_nonce_table_is_capped() {
        let now = Instant::now();
        let mut a = auth(vec![Algorithm::Md5], now).with_max_nonces(2);
        let mut results = Vec::new();
        for _ in 0..3 {
            let c = first_challenge(&mut a, Algorithm::Md5, now);
            let l = answer(
                "Authorization",
                &c,
                "alice",
                "secret",
                1,
                "REGISTER",
                "sip:a.example",
                true,
            );
            results.push(a.check(&register("alice", REALM, &[l]), false, now));
        }
        assert_eq!(results[0], authorized("alice", REALM));
        assert_eq!(results[1], authorized("alice", REALM));
        assert!(matches!(results[2], Verdict::Challenge { .. }));
        assert_eq!(a.tracked_nonces(), 2);
    }

    #[test]
    fn uri_hosts() {
        assert_eq!(
            uri_host("sip:alice@A.example:5060;transport=tcp"),
            "A.example"
        );
        assert_eq!(uri_host("sips:[::1]:5061"), "[::1]");
        assert_eq!(uri_host("sip:a.example"), "a.example");
        assert_eq!(uri_host("sip:u:pw@h?x=y"), "h");
    }
}
