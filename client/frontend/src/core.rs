//! The sans-IO front end.
//!
//! [`Core`] takes received messages and location results with the current
//! time, and pushes [`Output`]s: bytes to send and location jobs to run.
//! It owns the transactions, the registrar, the authenticator and the
//! proxy contexts; the server only moves bytes and runs jobs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sharecall_sip::transaction::TimerConfig;
use sharecall_sip::Message;

use crate::aor::{Aor, TokenKey};
use crate::auth::{AuthConfig, Authenticator, Verdict};
use crate::config::Mode;
use crate::location::{LocationError, Publication, Resolved};
use crate::metrics::Metrics;
use crate::peer::{Dest, Local, Peer, Protocol};
use crate::proxy::{Forward, Incoming, Proxy, ProxyConfig, SipUri};
use crate::registrar::{RegisterResult, Registrar, RegistrarConfig, Target};
use crate::users::Users;

/// Everything the core needs to know.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Local domains (registrar and authentication for these).
    pub domains: Vec<String>,
    /// Our transports as we name ourselves, one per listener.
    pub locals: Vec<Local>,
    /// Proxy or redirect.
    pub mode: Mode,
    /// Add Record-Route.
    pub record_route: bool,
    /// Registrar settings.
    pub registrar: RegistrarConfig,
    /// Digest settings.
    pub auth: AuthConfig,
    /// Transaction timers.
    pub timers: TimerConfig,
    /// Local users.
    pub users: Arc<Users>,
    /// Routing-token key.
    pub token_key: TokenKey,
    /// Nonce key.
    pub auth_secret: [u8; 32],
    /// Transactions at most; beyond, 503.
    pub max_transactions: usize,
}

/// A location job's number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(pub u64);

/// A transaction's number, for transport failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxId(pub u64);

/// What happened.
#[derive(Debug)]
pub enum Input {
    /// A message arrived (already framed and parsed).
    Received {
        /// The message.
        msg: Message,
        /// Its source.
        from: Peer,
    },
    /// A resolution finished.
    Resolved {
        /// The job.
        job: JobId,
        /// Its result.
        result: Result<Option<Resolved>, LocationError>,
    },
    /// A publication finished.
    Published {
        /// The job.
        job: JobId,
        /// Its result.
        result: Result<(), LocationError>,
    },
    /// Sending for this transaction failed (no route, connection refused).
    SendFailed {
        /// The transaction.
        tx: TxId,
    },
}

/// What the server must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send bytes.
    Send {
        /// Where.
        to: Dest,
        /// The message.
        bytes: Vec<u8>,
        /// The transaction to tell if it fails.
        tx: Option<TxId>,
    },
    /// Resolve an AOR through the location service.
    Resolve {
        /// The job.
        job: JobId,
        /// Whom.
        aor: Aor,
    },
    /// Publish an endpoint.
    Publish {
        /// The job.
        job: JobId,
        /// What.
        publication: Publication,
    },
}

/// A location job in flight, with the request it belongs to.
#[derive(Debug)]
enum Job {
    /// Resolving the Request-URI's AOR; `msg` is the request to forward.
    Resolve { server: TxId, msg: Message },
    /// Publishing after a REGISTER; `ok` is the 200 to send.
    Publish {
        server: TxId,
        publication: Publication,
        ok: Vec<u8>,
    },
}

/// The front end's state.
#[derive(Debug)]
pub struct Core {
    cfg: CoreConfig,
    metrics: Metrics,
    proxy: Proxy,
    auth: Authenticator,
    registrar: Registrar,
    jobs: HashMap<JobId, Job>,
    next_job: u64,
    next_sweep: Instant,
}

/// How often bindings and nonces are swept.
const SWEEP: Duration = Duration::from_secs(1);

/// What is `Allow`ed and `Accept`ed (OPTIONS answers).
const ALLOW: &str = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, PRACK";

impl Core {
    /// A core with no transactions and no bindings.
    pub fn new(cfg: CoreConfig, metrics: Metrics, now: Instant) -> Core {
        let proxy = Proxy::new(
            ProxyConfig {
                locals: cfg.locals.clone(),
                domains: cfg.domains.clone(),
                record_route: cfg.record_route,
                timers: cfg.timers,
                max_transactions: cfg.max_transactions,
                flow_key: blake3::derive_key("sharecall-frontend flow token", &cfg.auth_secret),
            },
            metrics.clone(),
        );
        let auth = Authenticator::new(cfg.auth.clone(), cfg.users.clone(), cfg.auth_secret, now);
        let registrar = Registrar::new(cfg.registrar.clone(), cfg.token_key.clone());
        Core {
            cfg,
            metrics,
            proxy,
            auth,
            registrar,
            jobs: HashMap::new(),
            next_job: 1,
            next_sweep: now + SWEEP,
        }
    }

    /// Handles one input.
    pub fn handle(&mut self, input: Input, now: Instant, out: &mut Vec<Output>) {
        match input {
            Input::Received { msg, from } => {
                if let Some(inc) = self.proxy.receive(msg, from, now, out) {
                    self.route(inc, now, out);
                }
            }
            Input::Resolved { job, result } => self.resolved(job, result, now, out),
            Input::Published { job, result } => self.published(job, result, now, out),
            Input::SendFailed { tx } => self.proxy.on_send_failed(tx, now, out),
        }
        self.metrics.set_transactions(self.proxy.transactions());
    }

    /// Fires due timers (retransmissions, timeouts, binding expiry).
    pub fn on_timer(&mut self, now: Instant, out: &mut Vec<Output>) {
        self.proxy.on_timer(now, out);
        if now >= self.next_sweep {
            self.registrar.expire(now);
            self.auth.sweep(now);
            self.next_sweep = now + SWEEP;
        }
        self.metrics.set_transactions(self.proxy.transactions());
    }

    /// When [`Core::on_timer`] wants to be called next.
    pub fn next_deadline(&self) -> Option<Instant> {
        Some(match self.proxy.next_deadline() {
            Some(d) => d.min(self.next_sweep),
            None => self.next_sweep,
        })
    }

    /// Transactions alive (for metrics and graceful shutdown).
    pub fn transactions(&self) -> usize {
        self.proxy.transactions()
    }

    /// Server transactions still waiting for their final response (the
    /// count graceful shutdown drains; finished transactions that only wait
    /// out their retransmission timers are not in it).
    pub fn pending(&self) -> usize {
        self.proxy.pending()
    }

    /// Location jobs in flight.
    pub fn jobs(&self) -> usize {
        self.jobs.len()
    }

    fn job(&mut self, job: Job) -> JobId {
        let id = JobId(self.next_job);
        self.next_job += 1;
        self.jobs.insert(id, job);
        id
    }

    /// The routing decision for a new request (RFC 3261 §16.3–16.5).
    fn route(&mut self, inc: Incoming, now: Instant, out: &mut Vec<Output>) {
        let Incoming {
            server,
            mut msg,
            from,
        } = inc;
        let method = msg.method().unwrap_or_default();
        // Only the logs want the Call-ID: not computed when they are off.
        let call_id = if tracing::enabled!(tracing::Level::DEBUG) {
            msg.call_id().unwrap_or_default()
        } else {
            String::new()
        };
        tracing::debug!(call_id = %call_id, method = %method, "request");
        let uri = msg.request_uri().unwrap_or_default().to_owned();
        let Some(server) = server else {
            self.route_ack(msg, from.protocol, now, out);
            return;
        };
        let Some(ruri) = SipUri::parse(&uri) else {
            // A sip/sips URI we cannot read is malformed; anything else is
            // a scheme we do not serve.
            let scheme = uri.split(':').next().unwrap_or_default();
            let code = if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")
            {
                400
            } else {
                416
            };
            self.proxy.reply(server, code, &[], now, out);
            return;
        };
        let proxy_require = msg.values("Proxy-Require");
        if !proxy_require.is_empty() {
            let extra = [format!("Unsupported: {}", proxy_require.join(", "))];
            self.proxy.reply(server, 420, &extra, now, out);
            return;
        }
        // Loose routing (§16.4): our own Route entries (one per side with
        // double Record-Route) are popped.
        let mut popped = None;
        while msg.top_route().is_some_and(|r| self.proxy.route_is_us(&r)) {
            popped = msg.pop_top_route();
        }
        let in_dialog = msg.to().ok().is_some_and(|t| t.tag().is_some());
        if in_dialog {
            self.route_in_dialog(server, msg, &ruri, popped, now, out);
            return;
        }
        let uri_is_us = self.proxy.uri_is_us(&ruri);
        if method == "REGISTER" {
            self.register(server, msg, &ruri, from, now, out);
            return;
        }
        if method == "OPTIONS" && ruri.user.is_none() && uri_is_us && msg.top_route().is_none() {
            if let Some(bad) = self.unsupported_require(&msg) {
                self.proxy.reply(server, 420, &[bad], now, out);
                return;
            }
            let extra = [ALLOW.to_owned(), "Accept: application/sdp".to_owned()];
            self.proxy.reply(server, 200, &extra, now, out);
            return;
        }
        if msg.max_forwards().ok().flatten() == Some(0) {
            self.proxy.reply(server, 483, &[], now, out);
            return;
        }
        if let (Some(user), true) = (&ruri.user, uri_is_us) {
            if user.starts_with("fe-") && msg.top_route().is_none() {
                // A call for one of our users, through our published
                // endpoint: no authentication (the callee's side).
                let user = user.clone();
                self.local_call(server, msg, &user, now, out);
                return;
            }
        }
        let from_aor = msg.from().ok().and_then(|f| Aor::from_uri(&f.uri).ok());
        let from_local = from_aor
            .as_ref()
            .is_some_and(|a| self.proxy.is_our_domain(a.host()));
        if from_local {
            match self.auth.check(&msg, true, now) {
                Verdict::Authorized { user } => {
                    if Some(&user) != from_aor.as_ref() {
                        tracing::debug!(call_id = %call_id, "authorised user is not the From user");
                        self.proxy.reply(server, 403, &[], now, out);
                        return;
                    }
                }
                Verdict::Challenge { status, headers } => {
                    self.proxy.reply(server, status, &headers, now, out);
                    return;
                }
                Verdict::Bad { reason } => {
                    tracing::debug!(call_id = %call_id, reason = %reason, "bad credentials");
                    self.proxy.reply(server, 400, &[], now, out);
                    return;
                }
                Verdict::Forbidden { reason } => {
                    tracing::debug!(call_id = %call_id, reason = %reason, "forbidden");
                    self.proxy.reply(server, 403, &[], now, out);
                    return;
                }
            }
        } else if !self.proxy.is_our_domain(&ruri.host) || msg.top_route().is_some() {
            // No open relay: strangers may only call into our domains.
            tracing::debug!(call_id = %call_id, "relaying denied");
            self.proxy.reply(server, 403, &[], now, out);
            return;
        }
        if let Some(route) = msg.top_route() {
            // A preloaded route of an authenticated local user.
            self.forward_to_route(server, msg, &route, true, now, out);
            return;
        }
        let Ok(aor) = Aor::from_uri(&uri) else {
            self.proxy.reply(server, 404, &[], now, out);
            return;
        };
        let job = self.job(Job::Resolve { server, msg });
        self.proxy.park(server, now);
        out.push(Output::Resolve { job, aor });
    }

    /// Forwards `msg` to the address of its top Route, Request-URI
    /// unchanged (loose routing); 400 when that Route names no address.
    /// In-dialog requests are not Record-Routed again (`record_route` false).
    fn forward_to_route(
        &mut self,
        server: TxId,
        msg: Message,
        route: &str,
        record_route: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        match Proxy::route_dest(route) {
            Some(dest) => {
                let target = Forward {
                    uri: None,
                    routes: Vec::new(),
                    dest,
                };
                self.proxy
                    .forward(server, msg, target, record_route, now, out);
            }
            None => self.proxy.reply(server, 400, &[], now, out),
        }
    }

    /// An in-dialog request (To tag): follows the Route set, or the
    /// Request-URI once our own Route was popped. No authentication.
    fn route_in_dialog(
        &mut self,
        server: TxId,
        msg: Message,
        ruri: &SipUri,
        popped: Option<String>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if let Some(route) = msg.top_route() {
            self.forward_to_route(server, msg, &route, false, now, out);
            return;
        }
        if let (Some(user), true) = (&ruri.user, self.proxy.uri_is_us(ruri)) {
            if user.starts_with("fe-") {
                let user = user.clone();
                self.local_call(server, msg, &user, now, out);
                return;
            }
        }
        if let Some(last) = popped {
            let target = Forward {
                uri: None,
                routes: Vec::new(),
                dest: self.next_hop(&last, ruri),
            };
            self.proxy.forward(server, msg, target, false, now, out);
        } else {
            // Not routed through us: we are no relay for strangers' dialogs.
            self.proxy.reply(server, 403, &[], now, out);
        }
    }

    /// An ACK matching no transaction (the ACK of a 2xx): forwarded
    /// statelessly along the Route set or to the Request-URI.
    fn route_ack(
        &mut self,
        mut msg: Message,
        in_proto: Protocol,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let mut popped = None;
        while msg.top_route().is_some_and(|r| self.proxy.route_is_us(&r)) {
            popped = msg.pop_top_route();
        }
        let dest = if let Some(route) = msg.top_route() {
            Proxy::route_dest(&route)
        } else {
            let Some(ruri) = msg.request_uri().and_then(SipUri::parse) else {
                return;
            };
            match (&ruri.user, self.proxy.uri_is_us(&ruri)) {
                (Some(user), true) if user.starts_with("fe-") => {
                    if let Some(t) = self.local_targets(user, now).into_iter().next() {
                        self.proxy.forward_stateless(msg, t, in_proto, out);
                    }
                    return;
                }
                _ => popped.map(|last| self.next_hop(&last, &ruri)),
            }
        };
        if let Some(dest) = dest {
            let target = Forward {
                uri: None,
                routes: Vec::new(),
                dest,
            };
            self.proxy.forward_stateless(msg, target, in_proto, out);
        }
    }

    /// Where an in-dialog request goes once our Routes are popped: the flow
    /// token of the last one, else the Request-URI.
    fn next_hop(&self, last_popped: &str, ruri: &SipUri) -> Dest {
        match self.proxy.route_flow(last_popped) {
            Some(flow) => Dest::Peer(flow),
            None => ruri.dest(),
        }
    }

    /// The bindings behind one of our routing tokens as forwarding targets,
    /// best first; empty when the token is unknown or has no bindings.
    fn local_targets(&self, token: &str, now: Instant) -> Vec<Forward> {
        let Some(aor) = self.registrar.token_aor(token) else {
            return Vec::new();
        };
        self.registrar
            .targets(aor, now)
            .into_iter()
            .filter_map(target_forward)
            .collect()
    }

    /// A request for one of our routing tokens: to the user's best binding
    /// (404 for an unknown token, 480 without bindings).
    fn local_call(
        &mut self,
        server: TxId,
        msg: Message,
        token: &str,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if self.registrar.token_aor(token).is_none() {
            self.proxy.reply(server, 404, &[], now, out);
            return;
        }
        let targets = self.local_targets(token, now);
        if targets.is_empty() {
            self.proxy.reply(server, 480, &[], now, out);
            return;
        }
        self.deliver(server, msg, targets, now, out);
    }

    /// Proxy mode forks to every target in parallel; redirect mode answers
    /// 302 listing them all.
    fn deliver(
        &mut self,
        server: TxId,
        msg: Message,
        targets: Vec<Forward>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if self.cfg.mode == Mode::Redirect {
            if let Some(bad) = self.unsupported_require(&msg) {
                self.proxy.reply(server, 420, &[bad], now, out);
                return;
            }
            let contacts: Vec<String> = targets
                .iter()
                .filter_map(|t| t.uri.as_ref().map(|u| format!("Contact: <{u}>")))
                .collect();
            self.proxy.reply(server, 302, &contacts, now, out);
            return;
        }
        if targets.is_empty() {
            self.proxy.reply(server, 480, &[], now, out);
            return;
        }
        let rr = msg.method().as_deref() != Some("REGISTER");
        self.proxy.fork(server, msg, targets, rr, now, out);
    }

    /// `Unsupported: ...` for Require options we do not support as a UAS
    /// (only `path` is).
    fn unsupported_require(&self, msg: &Message) -> Option<String> {
        let bad: Vec<String> = msg
            .values("Require")
            .into_iter()
            .filter(|o| !o.eq_ignore_ascii_case("path") && !o.is_empty())
            .collect();
        (!bad.is_empty()).then(|| format!("Unsupported: {}", bad.join(", ")))
    }

    /// A REGISTER (RFC 3261 §10.3): our domain, a local user, digest
    /// authentication, then the registrar. Nothing is published for a
    /// request that is not authenticated as the To user.
    fn register(
        &mut self,
        server: TxId,
        msg: Message,
        ruri: &SipUri,
        from: Peer,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        // RFC 3261 §10.2 wants no user part; phones that add one are
        // tolerated, as is our own address instead of the domain.
        if !self.proxy.uri_is_us(ruri) {
            tracing::debug!(host = %ruri.host, "REGISTER for a domain not ours");
            self.proxy.reply(server, 403, &[], now, out);
            return;
        }
        if let Some(bad) = self.unsupported_require(&msg) {
            self.proxy.reply(server, 420, &[bad], now, out);
            return;
        }
        let Some(aor) = msg.to().ok().and_then(|t| Aor::from_uri(&t.uri).ok()) else {
            self.proxy.reply(server, 400, &[], now, out);
            return;
        };
        if self.cfg.users.get(&aor).is_none() {
            self.proxy.reply(server, 404, &[], now, out);
            return;
        }
        match self.auth.check(&msg, false, now) {
            Verdict::Authorized { user } if user == aor => {}
            Verdict::Authorized { user } => {
                tracing::debug!(user = %user, aor = %aor, "REGISTER for someone else");
                self.proxy.reply(server, 403, &[], now, out);
                return;
            }
            Verdict::Challenge { status, headers } => {
                self.proxy.reply(server, status, &headers, now, out);
                return;
            }
            Verdict::Bad { reason } => {
                tracing::debug!(reason = %reason, "bad credentials");
                self.proxy.reply(server, 400, &[], now, out);
                return;
            }
            Verdict::Forbidden { reason } => {
                tracing::debug!(reason = %reason, "forbidden");
                self.proxy.reply(server, 403, &[], now, out);
                return;
            }
        }
        match self.registrar.register(&msg, &aor, from, now) {
            RegisterResult::Reply(bytes) => self.proxy.reply_bytes(server, &bytes, now, out),
            RegisterResult::Publish { publication, ok } => {
                let job = self.job(Job::Publish {
                    server,
                    publication: publication.clone(),
                    ok,
                });
                self.proxy.park(server, now);
                out.push(Output::Publish { job, publication });
            }
        }
    }

    fn resolved(
        &mut self,
        job: JobId,
        result: Result<Option<Resolved>, LocationError>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(Job::Resolve { server, msg }) = self.jobs.remove(&job) else {
            return;
        };
        if !self.proxy.is_pending(server) {
            return;
        }
        match result {
            Ok(None) => self.proxy.reply(server, 404, &[], now, out),
            Ok(Some(r)) => {
                let Some(uri) = SipUri::parse(&r.endpoint) else {
                    tracing::debug!(endpoint = %r.endpoint, "resolved to no SIP URI");
                    self.proxy.reply(server, 404, &[], now, out);
                    return;
                };
                match &uri.user {
                    Some(token) if token.starts_with("fe-") && self.proxy.uri_is_us(&uri) => {
                        let token = token.clone();
                        self.local_call(server, msg, &token, now, out);
                    }
                    _ => {
                        let target = Forward {
                            uri: Some(r.endpoint.clone()),
                            routes: Vec::new(),
                            dest: uri.dest(),
                        };
                        self.deliver(server, msg, vec![target], now, out);
                    }
                }
            }
            Err(LocationError::Unavailable(e)) => {
                tracing::debug!(error = %e, "location unavailable");
                self.proxy
                    .reply(server, 503, &["Retry-After: 5".to_owned()], now, out);
            }
            Err(LocationError::Aor(_)) => self.proxy.reply(server, 404, &[], now, out),
            Err(e) => {
                tracing::debug!(error = %e, "location refused");
                self.proxy.reply(server, 500, &[], now, out);
            }
        }
    }

    fn published(
        &mut self,
        job: JobId,
        result: Result<(), LocationError>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(Job::Publish {
            server,
            publication,
            ok,
        }) = self.jobs.remove(&job)
        else {
            return;
        };
        match result {
            Ok(()) => {
                self.registrar.published(&publication, now);
                self.proxy.reply_bytes(server, &ok, now, out);
            }
            Err(e) => {
                tracing::debug!(error = %e, aor = %publication.aor, "publication failed");
                self.registrar.publish_failed(&publication);
                match e {
                    LocationError::Refused(_) => self.proxy.reply(server, 403, &[], now, out),
                    LocationError::Aor(_) => self.proxy.reply(server, 400, &[], now, out),
                    LocationError::Unavailable(_) => {
                        self.proxy
                            .reply(server, 503, &["Retry-After: 5".to_owned()], now, out)
                    }
                }
            }
        }
    }
}

/// A binding as a forwarding target: its Contact as Request-URI, its Path
/// as Route; sent over its flow when it has one, else to the first Path
/// hop (RFC 3327 §5.3), else to the Contact.
fn target_forward(t: Target) -> Option<Forward> {
    let dest = match (t.via, t.path.first()) {
        (Some(p), _) => Dest::Peer(p),
        (None, Some(hop)) => Proxy::route_dest(hop)?,
        (None, None) => SipUri::parse(&t.uri)?.dest(),
    };
    Some(Forward {
        uri: Some(t.uri),
        routes: t.path,
        dest,
    })
}
