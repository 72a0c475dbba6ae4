//! The registrar (RFC 3261 §10.3), sans-IO.
//!
//! Bindings live here, in the front end's memory (it sees its own users'
//! plaintext, like their phones do). What goes to the location service is
//! one endpoint per address of record (see [`crate::config::Publish`]); a
//! refresh that changes nothing publishes nothing.
//!
//! Choices where RFC 3261 leaves room:
//! - a REGISTER whose Call-ID matches a binding's but whose CSeq is not
//!   higher is answered `500 Out of order` (§10.3 step 7 says "the request
//!   fails"; 500 is what the RFC's own example registrars answer, and it
//!   tells the UA to retry later with a fresh CSeq);
//! - more bindings than `max_bindings` are answered `403 Too many
//!   bindings`: retrying does not help, so no 503;
//! - Contact URIs are compared case-insensitively as whole strings (a
//!   simplification of §19.1.4 that only errs towards merging bindings the
//!   RFC would keep apart when a user part differs only in case);
//! - only `sip:` and `sips:` Contacts are accepted (400 otherwise): the
//!   proxy can route nothing else;
//! - when a publication fails the bindings stay as registered (the core
//!   answers 503, the UA retries and the retry publishes again).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sharecall_sip::headers::{self, Contact, NameAddr};
use sharecall_sip::message::build_response;
use sharecall_sip::Message;

use crate::aor::{Aor, TokenKey};
use crate::config::Publish;
use crate::location::Publication;
use crate::peer::{Local, Peer, Protocol};

/// Registrar settings.
#[derive(Debug, Clone)]
pub struct RegistrarConfig {
    /// Expiry when none is asked for, seconds.
    pub default_expires: u32,
    /// Below this: 423 with Min-Expires.
    pub min_expires: u32,
    /// Longer expiries are cut to this.
    pub max_expires: u32,
    /// Bindings per AOR.
    pub max_bindings: usize,
    /// What is published.
    pub publish: Publish,
    /// Time to live of a published entry; refreshed when less than half is
    /// left.
    pub publish_ttl: Duration,
    /// The transport published endpoints name (`sip:fe-TOKEN@host:port;transport=x`).
    pub public: Local,
}

/// Where a call to a local AOR goes: one current binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The Contact URI (the new Request-URI).
    pub uri: String,
    /// Path headers stored with the binding (RFC 3327), top first: they
    /// become Route headers.
    pub path: Vec<String>,
    /// Where to send: the flow the binding was registered over (NAT, TCP),
    /// or `None` to send to the Contact's host.
    pub via: Option<Peer>,
}

/// What to do with a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterResult {
    /// Send this response now (200 listing bindings, 400, 423, 500 for an
    /// out-of-order CSeq, ...).
    Reply(Vec<u8>),
    /// Publish first, then send `ok` (the 200) on success, or answer 503 on
    /// failure (and [`Registrar::publish_failed`]).
    Publish {
        /// What to publish.
        publication: Publication,
        /// The 200 to send once it is done.
        ok: Vec<u8>,
    },
}

/// One binding of an address of record.
#[derive(Debug, Clone)]
struct Binding {
    uri: String,
    call_id: String,
    cseq: u32,
    expires_at: Instant,
    /// q in thousandths (1000 = 1.0), so ordering needs no floats.
    q: u16,
    path: Vec<String>,
    via: Option<Peer>,
    protocol: Protocol,
    /// Order of the last registration or refresh: higher is newer.
    stamp: u64,
}

/// Everything known about one address of record.
#[derive(Debug)]
struct AorState {
    /// Its routing token, computed once.
    token: String,
    bindings: Vec<Binding>,
    /// The endpoint the location service holds and until when.
    published: Option<(String, Instant)>,
    /// The endpoint of a publication under way.
    in_flight: Option<String>,
}

/// One Contact of a REGISTER, checked.
struct Asked {
    uri: String,
    expires: u32,
    q: u16,
}

/// The binding table.
#[derive(Debug)]
pub struct Registrar {
    cfg: RegistrarConfig,
    tokens: TokenKey,
    aors: HashMap<Aor, AorState>,
    by_token: HashMap<String, Aor>,
    stamp: u64,
}

/// A reason phrase safe to put on a status line.
fn reason(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn reply(req: &Message, code: u16, why: &str, tag: &str, extra: &[String]) -> RegisterResult {
    RegisterResult::Reply(build_response(req, code, &reason(why), Some(tag), extra))
}

/// The `host:port` a Contact URI names, as a socket address when the host
/// is an IP literal (`None` for names or unparsable URIs).
fn contact_addr(uri: &str) -> Option<SocketAddr> {
    let lower = uri.get(..5).map(str::to_ascii_lowercase)?;
    let (rest, sips) = if lower.starts_with("sips:") {
        (&uri[5..], true)
    } else if lower.starts_with("sip:") {
        (&uri[4..], false)
    } else {
        return None;
    };
    let rest = rest.split(['?']).next().unwrap_or_default();
    let (hostport_and_params, _) = match rest.rfind('@') {
        Some(at) => (&rest[at + 1..], ()),
        None => (rest, ()),
    };
    let mut parts = hostport_and_params.splitn(2, ';');
    let hostport = parts.next().unwrap_or_default();
    let params = parts.next().unwrap_or_default();
    let tls = sips
        || params.split(';').any(|p| {
            p.split_once('=').is_some_and(|(n, v)| {
                n.eq_ignore_ascii_case("transport") && v.eq_ignore_ascii_case("tls")
            })
        });
    let default_port = if tls { 5061 } else { 5060 };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h, port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (hostport, default_port),
        }
    };
    let ip: IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, port))
}

/// Whether two addresses are the same, an IPv4-mapped IPv6 source equal to
/// its IPv4 form.
fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    let canon = |s: SocketAddr| match s.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(s, |v4| SocketAddr::new(IpAddr::V4(v4), s.port())),
        IpAddr::V4(_) => s,
    };
    canon(a) == canon(b)
}

/// Parses a `q` value (`0`, `0.5`, `1.000`) into thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut f: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        f += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(f),
        "1" if f == 0 => Some(1000),
        _ => None,
    }
}

/// Seconds left until `at`, rounded up (a binding with 0.3 s left is still
/// there, so it is listed with 1).
fn remaining(at: Instant, now: Instant) -> u64 {
    let d = at.saturating_duration_since(now);
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Registrar {
    /// An empty registrar.
    pub fn new(cfg: RegistrarConfig, tokens: TokenKey) -> Registrar {
        Registrar {
            cfg,
            tokens,
            aors: HashMap::new(),
            by_token: HashMap::new(),
            stamp: 0,
        }
    }

    /// Makes `aor`'s routing token known before it registers (a local user
    /// from the users file), so calls to a published entry that outlived a
    /// restart still find the user (and get 480, not 404).
    pub fn know(&mut self, aor: &Aor) {
        self.state(aor);
    }

    /// The routing token of `aor` (the user part of its front-end
    /// endpoint).
    pub fn token(&self, aor: &Aor) -> String {
        match self.aors.get(aor) {
            Some(s) => s.token.clone(),
            None => self.tokens.token(aor),
        }
    }

    /// The front-end endpoint published for `aor`:
    /// `sip:{token}@{host}:{port};transport={udp|tcp|tls}`.
    pub fn front_end_uri(&self, aor: &Aor) -> String {
        self.front_end_uri_for(&self.token(aor))
    }

    fn front_end_uri_for(&self, token: &str) -> String {
        let p = &self.cfg.public;
        format!(
            "sip:{token}@{}:{};transport={}",
            p.host,
            p.port,
            p.protocol.uri_param()
        )
    }

    /// When the next binding expires, if any (for the caller's timer).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.aors
            .values()
            .flat_map(|s| s.bindings.iter().map(|b| b.expires_at))
            .min()
    }

    /// The state of `aor`, created (and its token indexed) on first use.
    fn state(&mut self, aor: &Aor) -> &mut AorState {
        let (tokens, by_token) = (&self.tokens, &mut self.by_token);
        self.aors.entry(aor.clone()).or_insert_with(|| {
            let token = tokens.token(aor);
            by_token.insert(token.clone(), aor.clone());
            AorState {
                token,
                bindings: Vec::new(),
                published: None,
                in_flight: None,
            }
        })
    }

    /// Handles an authenticated REGISTER for `aor` (the To URI, already
    /// checked to be `user`'s) received from `from`.
    pub fn register(
        &mut self,
        req: &Message,
        aor: &Aor,
        from: Peer,
        now: Instant,
    ) -> RegisterResult {
        let tag = match req.to() {
            Ok(to) => match to.tag() {
                Some(t) => t.to_owned(),
                None => format!("{:016x}", rand::random::<u64>()),
            },
            Err(e) => {
                return RegisterResult::Reply(build_response(
                    req,
                    400,
                    &reason(&format!("Bad To: {e}")),
                    None,
                    &[],
                ))
            }
        };
        let (call_id, cseq) = match (req.call_id(), req.cseq()) {
            (Ok(c), Ok(s)) => (c, s.seq),
            (Err(e), _) | (_, Err(e)) => {
                return reply(req, 400, &format!("Bad Request: {e}"), &tag, &[])
            }
        };
        let header_expires = match req.single("Expires") {
            Ok(None) => None,
            Ok(Some(v)) => match headers::parse_expires(&v) {
                Ok(e) => Some(e),
                Err(e) => return reply(req, 400, &format!("Bad Expires: {e}"), &tag, &[]),
            },
            Err(e) => return reply(req, 400, &format!("Bad Expires: {e}"), &tag, &[]),
        };
        let raw_contacts = req.values("Contact");
        if raw_contacts.len() > 1 && raw_contacts.iter().any(|c| c == "*") {
            return reply(req, 400, "Contact: * must be the only Contact", &tag, &[]);
        }
        let contact = match req.contact() {
            Ok(c) => c,
            Err(e) => return reply(req, 400, &format!("Bad Contact: {e}"), &tag, &[]),
        };
        let path = req.values("Path");
        for p in &path {
            if let Err(e) = NameAddr::parse("Path", p) {
                return reply(req, 400, &format!("Bad Path: {e}"), &tag, &[]);
            }
        }

        if let Some(st) = self.aors.get_mut(aor) {
            st.bindings.retain(|b| b.expires_at > now);
        }
        let changed = match contact {
            None => {
                let extra = self.listing(aor, &[], now);
                return reply(req, 200, "OK", &tag, &extra);
            }
            Some(Contact::Star) => {
                if header_expires != Some(0) {
                    return reply(req, 400, "Contact: * needs Expires: 0", &tag, &[]);
                }
                let Some(st) = self.aors.get_mut(aor) else {
                    // Never bound: nothing to remove or publish.
                    return reply(req, 200, "OK", &tag, &[]);
                };
                if st
                    .bindings
                    .iter()
                    .any(|b| b.call_id == call_id && b.cseq >= cseq)
                {
                    return reply(req, 500, "Out of order", &tag, &[]);
                }
                let had = !st.bindings.is_empty();
                st.bindings.clear();
                had
            }
            Some(Contact::Addrs(addrs)) => {
                let asked = match self.check(&addrs, header_expires) {
                    Ok(a) => a,
                    Err(refusal) => {
                        let (code, why, extra) = refusal;
                        return reply(req, code, &why, &tag, &extra);
                    }
                };
                match self.apply(aor, &asked, &call_id, cseq, &path, from, now) {
                    Ok(changed) => changed,
                    Err((code, why)) => return reply(req, code, why, &tag, &[]),
                }
            }
        };
        let extra = self.listing(aor, &path, now);
        let ok = build_response(req, 200, "OK", Some(&tag), &extra);
        match self.decide(aor, changed, now) {
            Some(publication) => RegisterResult::Publish { publication, ok },
            None => RegisterResult::Reply(ok),
        }
    }

    /// Checks every Contact before anything changes (the request is refused
    /// as a whole): URI scheme, q, expiry against the limits.
    #[allow(clippy::type_complexity)]
    fn check(
        &self,
        addrs: &[NameAddr],
        header_expires: Option<u32>,
    ) -> Result<Vec<Asked>, (u16, String, Vec<String>)> {
        let mut out = Vec::with_capacity(addrs.len());
        for a in addrs {
            let scheme = headers::uri_scheme(&a.uri).unwrap_or_default();
            if !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips") {
                return Err((400, "Only sip: and sips: Contacts".into(), Vec::new()));
            }
            let expires = match a.expires() {
                Ok(Some(e)) => e,
                Ok(None) => header_expires.unwrap_or(self.cfg.default_expires),
                Err(e) => return Err((400, format!("Bad Contact expires: {e}"), Vec::new())),
            };
            if expires > 0 && expires < self.cfg.min_expires {
                return Err((
                    423,
                    "Interval Too Brief".into(),
                    vec![format!("Min-Expires: {}", self.cfg.min_expires)],
                ));
            }
            let q = match a.params.get("q") {
                None => 1000,
                Some(v) => match v.and_then(parse_q) {
                    Some(q) => q,
                    None => return Err((400, "Bad Contact q".into(), Vec::new())),
                },
            };
            out.push(Asked {
                uri: a.uri.clone(),
                expires: expires.min(self.cfg.max_expires),
                q,
            });
        }
        Ok(out)
    }

    /// Applies checked Contacts; refuses (and changes nothing) on an
    /// out-of-order CSeq or too many bindings. Returns whether the
    /// published endpoint may change (a binding added, removed, or moved).
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        aor: &Aor,
        asked: &[Asked],
        call_id: &str,
        cseq: u32,
        path: &[String],
        from: Peer,
        now: Instant,
    ) -> Result<bool, (u16, &'static str)> {
        let max = self.cfg.max_bindings;
        self.stamp += 1;
        let stamp = self.stamp;
        let st = self.state(aor);
        // Step 7 ordering, and the count after the request, before any change.
        let mut count = st.bindings.len() as isize;
        for (i, a) in asked.iter().enumerate() {
            // A URI repeated in one request counts once (its last wins).
            if asked[i + 1..]
                .iter()
                .any(|b| b.uri.eq_ignore_ascii_case(&a.uri))
            {
                continue;
            }
            match st
                .bindings
                .iter()
                .find(|b| b.uri.eq_ignore_ascii_case(&a.uri))
            {
                Some(b) if b.call_id == call_id && b.cseq >= cseq => {
                    return Err((500, "Out of order"))
                }
                Some(_) if a.expires == 0 => count -= 1,
                Some(_) => {}
                None if a.expires > 0 => count += 1,
                None => {}
            }
        }
        if count > max as isize {
            return Err((403, "Too many bindings"));
        }
        let mut changed = false;
        for a in asked {
            let pos = st
                .bindings
                .iter()
                .position(|b| b.uri.eq_ignore_ascii_case(&a.uri));
            if a.expires == 0 {
                if let Some(p) = pos {
                    st.bindings.remove(p);
                    changed = true;
                }
                continue;
            }
            let via = if from.flow.is_some()
                || contact_addr(&a.uri).is_none_or(|c| !same_addr(c, from.addr))
            {
                Some(from)
            } else {
                None
            };
            let expires_at = now + Duration::from_secs(u64::from(a.expires));
            match pos {
                Some(p) => {
                    let b = &mut st.bindings[p];
                    if b.via != via
                        || b.protocol != from.protocol
                        || b.path != path
                        || b.uri != a.uri
                    {
                        changed = true;
                    }
                    b.call_id.clear();
                    b.call_id.push_str(call_id);
                    b.cseq = cseq;
                    b.expires_at = expires_at;
                    b.q = a.q;
                    if b.path != path {
                        b.path = path.to_vec();
                    }
                    if b.uri != a.uri {
                        b.uri.clone_from(&a.uri);
                    }
                    b.via = via;
                    b.protocol = from.protocol;
                    b.stamp = stamp;
                }
                None => {
                    st.bindings.push(Binding {
                        uri: a.uri.clone(),
                        call_id: call_id.to_owned(),
                        cseq,
                        expires_at,
                        q: a.q,
                        path: path.to_vec(),
                        via,
                        protocol: from.protocol,
                        stamp,
                    });
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    /// The 200's extra lines: a Contact per current binding, and the Path
    /// of this request echoed (RFC 3327 §5.3).
    fn listing(&self, aor: &Aor, path: &[String], now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(st) = self.aors.get(aor) {
            for b in &st.bindings {
                let mut line = format!(
                    "Contact: <{}>;expires={}",
                    b.uri,
                    remaining(b.expires_at, now)
                );
                if b.q != 1000 {
                    line.push_str(&format!(";q={}.{:03}", b.q / 1000, b.q % 1000));
                }
                out.push(line);
            }
        }
        if !path.is_empty() {
            out.push(format!("Path: {}", path.join(", ")));
        }
        out
    }

    /// The endpoint to publish for `aor` now, if any.
    fn wanted(&self, st: &AorState) -> Option<String> {
        let fe = || self.front_end_uri_for(&st.token);
        match self.cfg.publish {
            Publish::FrontEnd if st.bindings.is_empty() => None,
            Publish::FrontEnd => Some(fe()),
            Publish::Contact => match st.bindings.as_slice() {
                [b] if b.via.is_none() && b.protocol == Protocol::Udp && b.path.is_empty() => {
                    Some(b.uri.clone())
                }
                [] => {
                    // Nothing stale to clear unless a Contact is (or is
                    // being) published.
                    let fe = fe();
                    let stale = st.published.as_ref().is_some_and(|(e, _)| *e != fe)
                        || st.in_flight.as_ref().is_some_and(|e| *e != fe);
                    stale.then_some(fe)
                }
                _ => Some(fe()),
            },
        }
    }

    /// Whether (and what) to publish after a REGISTER; `changed` says
    /// whether the bindings changed in a way that can move the endpoint.
    fn decide(&mut self, aor: &Aor, changed: bool, now: Instant) -> Option<Publication> {
        let half = self.cfg.publish_ttl / 2;
        let st = self.aors.get(aor)?;
        // The cheap path, the common refresh: nothing moved and the entry
        // is fresh, so nothing is built.
        if !changed && st.in_flight.is_none() {
            if let Some((_, until)) = &st.published {
                if until.saturating_duration_since(now) >= half && !st.bindings.is_empty() {
                    return None;
                }
            }
        }
        let endpoint = self.wanted(st)?;
        if st.in_flight.as_deref() == Some(endpoint.as_str()) {
            return None;
        }
        let fresh = match &st.published {
            Some((e, until)) => *e == endpoint && until.saturating_duration_since(now) >= half,
            None => false,
        };
        if fresh && st.in_flight.is_none() {
            return None;
        }
        let ttl = self.cfg.publish_ttl;
        let st = self.aors.get_mut(aor)?;
        st.in_flight = Some(endpoint.clone());
        Some(Publication {
            aor: aor.clone(),
            endpoint,
            ttl,
        })
    }

    /// A publication finished: remember what the location service holds.
    pub fn published(&mut self, p: &Publication, now: Instant) {
        let st = self.state(&p.aor);
        st.published = Some((p.endpoint.clone(), now + p.ttl));
        if st.in_flight.as_deref() == Some(p.endpoint.as_str()) {
            st.in_flight = None;
        }
    }

    /// A publication failed: the next REGISTER publishes again.
    pub fn publish_failed(&mut self, p: &Publication) {
        if let Some(st) = self.aors.get_mut(&p.aor) {
            if st.in_flight.as_deref() == Some(p.endpoint.as_str()) {
                st.in_flight = None;
            }
        }
    }

    /// The AOR a routing token (`fe-...`, the user part of a published
    /// endpoint) stands for, if it is one of ours.
    pub fn token_aor(&self, token: &str) -> Option<&Aor> {
        self.by_token.get(token)
    }

    /// The current bindings of `aor`, best (highest q, then newest) first.
    pub fn targets(&self, aor: &Aor, now: Instant) -> Vec<Target> {
        let Some(st) = self.aors.get(aor) else {
            return Vec::new();
        };
        let mut live: Vec<&Binding> = st.bindings.iter().filter(|b| b.expires_at > now).collect();
        live.sort_by(|a, b| b.q.cmp(&a.q).then(b.stamp.cmp(&a.stamp)));
        live.into_iter()
            .map(|b| Target {
                uri: b.uri.clone(),
                path: b.path.clone(),
                via: b.via,
            })
            .collect()
    }

    /// Drops expired bindings.
    pub fn expire(&mut self, now: Instant) {
        for st in self.aors.values_mut() {
            st.bindings.retain(|b| b.expires_at > now);
        }
    }
}
