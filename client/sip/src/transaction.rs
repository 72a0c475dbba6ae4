//! RFC 3261 §17 transaction state machines, sans-IO.
//!
//! A transaction never reads a clock or a socket. The caller feeds it
//! messages and the current [`Instant`]; it answers with [`Action`]s (bytes
//! to send to the peer, a message for the transaction user, a timeout,
//! termination) and tells through [`Transaction::next_deadline`] when it
//! wants [`Transaction::on_timer`] called. Tests drive it with fake time.
//!
//! Timers follow §17 and its table 4: on an unreliable transport A/E/G
//! retransmit (doubling, E and G capped at T2) and D/I/K wait; on a reliable
//! one nothing is retransmitted and D/I/K are zero. 2xx to INVITE follow
//! RFC 6026: the server transaction enters Accepted (timer L) and the client
//! transaction enters Accepted (timer M), both passing further 2xx/ACK to
//! the TU instead of terminating at once.

use std::time::{Duration, Instant};

use crate::message::{build_response, Message};

/// Timer base values (RFC 3261 §17.1.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE
    /// responses, 4 s.
    pub t2: Duration,
    /// Maximum time a message stays in the network, 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Whether the transport delivers reliably (TCP, TLS, WS) or not (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reliability {
    /// TCP, TLS, WebSocket: no retransmissions.
    Reliable,
    /// UDP: retransmissions and absorbing waits.
    Unreliable,
}

/// The named timers of §17 (and L, M of RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE request retransmit.
    A,
    /// INVITE transaction timeout.
    B,
    /// Wait for response retransmits (client INVITE).
    D,
    /// Non-INVITE request retransmit.
    E,
    /// Non-INVITE transaction timeout.
    F,
    /// INVITE final response retransmit.
    G,
    /// Wait for ACK.
    H,
    /// Wait for ACK retransmits.
    I,
    /// Wait for non-INVITE request retransmits.
    J,
    /// Wait for response retransmits (client non-INVITE).
    K,
    /// Wait for INVITE retransmits after a 2xx (RFC 6026).
    L,
    /// Wait for 2xx retransmits (client, RFC 6026).
    M,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the transaction's peer.
    Send(Vec<u8>),
    /// Hand this message to the transaction user.
    PassToTu(Message),
    /// The transaction timed out (B, F, H): tell the TU (408 for a client).
    Timeout,
    /// The transport reported a failure sending for this transaction
    /// (§17.1.4, §17.2.4): tell the TU (503 for a client).
    TransportError,
    /// The transaction is over; drop it.
    Terminated,
}

/// States of all four machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Client INVITE before any response.
    Calling,
    /// Client or server non-INVITE before any response.
    Trying,
    /// A provisional response was seen or sent.
    Proceeding,
    /// A final (non-2xx for INVITE) response was seen or sent.
    Completed,
    /// Server INVITE: ACK received.
    Confirmed,
    /// RFC 6026: a 2xx to INVITE was seen or sent.
    Accepted,
    /// Over.
    Terminated,
}

/// Which of the four machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// §17.1.1.
    ClientInvite,
    /// §17.1.2.
    ClientNonInvite,
    /// §17.2.1.
    ServerInvite,
    /// §17.2.2.
    ServerNonInvite,
}

/// One transaction.
#[derive(Debug, Clone)]
pub struct Transaction {
    kind: Kind,
    state: State,
    reliability: Reliability,
    cfg: TimerConfig,
    /// The request (client: ours, server: the peer's).
    request: Message,
    /// Last bytes we sent that a retransmission repeats (client: request or
    /// ACK; server: last response).
    last_sent: Vec<u8>,
    /// Armed timers with their deadlines and current interval.
    timers: Vec<(Timer, Instant, Duration)>,
}

fn class(code: u16) -> u16 {
    code / 100
}

impl Transaction {
    /// Start a client transaction for `request` (INVITE or not). The first
    /// actions send it.
    pub fn client(
        request: Message,
        reliability: Reliability,
        cfg: TimerConfig,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let invite = request.method().as_deref() == Some("INVITE");
        let bytes = request.to_bytes();
        let mut t = Transaction {
            kind: if invite {
                Kind::ClientInvite
            } else {
                Kind::ClientNonInvite
            },
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            reliability,
            cfg,
            request,
            last_sent: bytes.clone(),
            timers: Vec::new(),
        };
        let (retransmit, timeout) = if invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        if reliability == Reliability::Unreliable {
            t.arm(retransmit, cfg.t1, now);
        }
        t.arm(timeout, cfg.t1 * 64, now);
        (t, vec![Action::Send(bytes)])
    }

    /// Start a server transaction for a received `request`. The request goes
    /// to the TU; an INVITE is answered 100 Trying at once (§17.2.1), so the
    /// previous hop stops retransmitting.
    pub fn server(
        request: Message,
        reliability: Reliability,
        cfg: TimerConfig,
    ) -> (Self, Vec<Action>) {
        let invite = request.method().as_deref() == Some("INVITE");
        let mut actions = Vec::new();
        let mut last_sent = Vec::new();
        if invite {
            last_sent = build_response(&request, 100, "Trying", None, &[]);
            actions.push(Action::Send(last_sent.clone()));
        }
        actions.push(Action::PassToTu(request.clone()));
        let t = Transaction {
            kind: if invite {
                Kind::ServerInvite
            } else {
                Kind::ServerNonInvite
            },
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            reliability,
            cfg,
            request,
            last_sent,
            timers: Vec::new(),
        };
        (t, actions)
    }

    /// Which machine this is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The request the transaction is about.
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// The earliest armed timer, when the caller must call
    /// [`Transaction::on_timer`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.iter().map(|(_, at, _)| *at).min()
    }

    /// Whether `timer` is armed (for tests and diagnostics).
    pub fn is_armed(&self, timer: Timer) -> bool {
        self.timers.iter().any(|(t, _, _)| *t == timer)
    }

    fn arm(&mut self, timer: Timer, after: Duration, now: Instant) {
        self.disarm(timer);
        self.timers.push((timer, now + after, after));
    }

    fn disarm(&mut self, timer: Timer) {
        self.timers.retain(|(t, _, _)| *t != timer);
    }

    fn terminate(&mut self, actions: &mut Vec<Action>) {
        self.state = State::Terminated;
        self.timers.clear();
        actions.push(Action::Terminated);
    }

    /// Enter a waiting state: arm `timer` on an unreliable transport,
    /// terminate at once on a reliable one (the timer is zero).
    fn wait_or_terminate(
        &mut self,
        timer: Timer,
        after: Duration,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        match self.reliability {
            Reliability::Unreliable => self.arm(timer, after, now),
            Reliability::Reliable => self.terminate(actions),
        }
    }

    /// A response for this client transaction arrived.
    pub fn on_response(&mut self, resp: Message, now: Instant) -> Vec<Action> {
        let mut a = Vec::new();
        let Some(code) = resp.status() else { return a };
        match (self.kind, self.state) {
            (Kind::ClientInvite, State::Calling | State::Proceeding) => {
                self.disarm(Timer::A);
                match class(code) {
                    1 => {
                        self.state = State::Proceeding;
                        a.push(Action::PassToTu(resp));
                    }
                    2 => {
                        self.timers.clear();
                        self.state = State::Accepted;
                        self.arm(Timer::M, self.cfg.t1 * 64, now);
                        a.push(Action::PassToTu(resp));
                    }
                    _ => {
                        self.timers.clear();
                        self.last_sent = build_ack(&self.request, &resp);
                        a.push(Action::Send(self.last_sent.clone()));
                        a.push(Action::PassToTu(resp));
                        self.state = State::Completed;
                        self.wait_or_terminate(Timer::D, Duration::from_secs(32), now, &mut a);
                    }
                }
            }
            (Kind::ClientInvite, State::Accepted) if class(code) == 2 => {
                a.push(Action::PassToTu(resp))
            }
            (Kind::ClientInvite, State::Completed) if code >= 300 => {
                a.push(Action::Send(self.last_sent.clone()))
            }
            (Kind::ClientNonInvite, State::Trying | State::Proceeding) => {
                if class(code) == 1 {
                    self.state = State::Proceeding;
                } else {
                    self.timers.clear();
                    self.state = State::Completed;
                }
                a.push(Action::PassToTu(resp));
                if self.state == State::Completed {
                    self.wait_or_terminate(Timer::K, self.cfg.t4, now, &mut a);
                }
            }
            // Retransmissions in Completed are absorbed.
            _ => {}
        }
        a
    }

    /// A request for this server transaction arrived (a retransmission, or
    /// the ACK of an INVITE transaction).
    pub fn on_request(&mut self, req: Message, now: Instant) -> Vec<Action> {
        let mut a = Vec::new();
        let is_ack = req.method().as_deref() == Some("ACK");
        match (self.kind, self.state) {
            (Kind::ServerInvite, State::Completed) if is_ack => {
                self.disarm(Timer::G);
                self.disarm(Timer::H);
                self.state = State::Confirmed;
                self.wait_or_terminate(Timer::I, self.cfg.t4, now, &mut a);
            }
            // RFC 6026 §8.7: an ACK in Accepted goes to the TU.
            (Kind::ServerInvite, State::Accepted) if is_ack => a.push(Action::PassToTu(req)),
            (_, State::Proceeding | State::Completed) if !is_ack && !self.last_sent.is_empty() => {
                a.push(Action::Send(self.last_sent.clone()));
            }
            // Trying (non-INVITE), Confirmed, Accepted: absorbed.
            _ => {}
        }
        a
    }

    /// The TU sends a response through this server transaction.
    pub fn send_response(&mut self, resp: Message, now: Instant) -> Vec<Action> {
        let mut a = Vec::new();
        let Some(code) = resp.status() else { return a };
        let bytes = resp.to_bytes();
        match (self.kind, self.state) {
            (Kind::ServerInvite, State::Proceeding) => {
                a.push(Action::Send(bytes.clone()));
                self.last_sent = bytes;
                match class(code) {
                    1 => {}
                    2 => {
                        self.state = State::Accepted;
                        self.arm(Timer::L, self.cfg.t1 * 64, now);
                    }
                    _ => {
                        self.state = State::Completed;
                        if self.reliability == Reliability::Unreliable {
                            self.arm(Timer::G, self.cfg.t1, now);
                        }
                        self.arm(Timer::H, self.cfg.t1 * 64, now);
                    }
                }
            }
            // RFC 6026: the TU's 2xx retransmissions pass through.
            (Kind::ServerInvite, State::Accepted) if class(code) == 2 => {
                a.push(Action::Send(bytes))
            }
            (Kind::ServerNonInvite, State::Trying | State::Proceeding) => {
                a.push(Action::Send(bytes.clone()));
                self.last_sent = bytes;
                if class(code) == 1 {
                    self.state = State::Proceeding;
                } else {
                    self.state = State::Completed;
                    self.wait_or_terminate(Timer::J, self.cfg.t1 * 64, now, &mut a);
                }
            }
            // Anything else would break the state machine: not sent.
            _ => tracing::debug!(code, state = ?self.state, "response not sent in this state"),
        }
        a
    }

    /// The transport failed to send this transaction's bytes (§17.1.4,
    /// §17.2.4): the TU is told and the transaction ends.
    pub fn on_transport_error(&mut self) -> Vec<Action> {
        let mut a = vec![Action::TransportError];
        self.terminate(&mut a);
        a
    }

    /// Fire every timer due at `now`.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut a = Vec::new();
        loop {
            let due = self
                .timers
                .iter()
                .filter(|(_, at, _)| *at <= now)
                .min_by_key(|(_, at, _)| *at)
                .copied();
            let Some((timer, at, interval)) = due else {
                break;
            };
            self.disarm(timer);
            match timer {
                Timer::A => {
                    a.push(Action::Send(self.last_sent.clone()));
                    self.timers
                        .push((Timer::A, at + interval * 2, interval * 2));
                }
                Timer::E => {
                    a.push(Action::Send(self.last_sent.clone()));
                    let next = if self.state == State::Proceeding {
                        self.cfg.t2
                    } else {
                        (interval * 2).min(self.cfg.t2)
                    };
                    self.timers.push((Timer::E, at + next, next));
                }
                Timer::G => {
                    a.push(Action::Send(self.last_sent.clone()));
                    let next = (interval * 2).min(self.cfg.t2);
                    self.timers.push((Timer::G, at + next, next));
                }
                Timer::B | Timer::F | Timer::H => {
                    a.push(Action::Timeout);
                    self.terminate(&mut a);
                }
                Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => {
                    self.terminate(&mut a)
                }
            }
            if self.state == State::Terminated {
                break;
            }
        }
        a
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3): Request-URI, Call-ID,
/// From, CSeq number and the top Via of the request, To of the response,
/// the request's Route headers.
pub fn build_ack(req: &Message, resp: &Message) -> Vec<u8> {
    let uri = req.request_uri().unwrap_or("sip:invalid");
    let mut out = format!("ACK {uri} SIP/2.0\r\n").into_bytes();
    let mut line = |name: &str, value: &str| {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    };
    if let Some(v) = req.values("Via").first() {
        line("Via", v);
    }
    for r in req.values("Route") {
        line("Route", &r);
    }
    line("Max-Forwards", "70");
    if let Some(f) = req.headers_named("From").next() {
        line("From", &f.value());
    }
    if let Some(t) = resp.headers_named("To").next() {
        line("To", &t.value());
    }
    if let Some(c) = req.headers_named("Call-ID").next() {
        line("Call-ID", &c.value());
    }
    let seq = req.cseq().map(|c| c.seq).unwrap_or(0);
    line("CSeq", &format!("{seq} ACK"));
    line("Content-Length", "0");
    out.extend_from_slice(b"\r\n");
    out
}

/// The key that matches a message to its transaction (§17.1.3, §17.2.3):
/// the top Via's RFC 3261 branch and sent-by, and the method (ACK and
/// CANCEL are matched by the caller to the INVITE they refer to; here ACK
/// maps to INVITE). `None` without an RFC 3261 branch (RFC 2543 peers, RFC
/// 4475 badbranch), where the caller falls back or answers statelessly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    /// Branch parameter.
    pub branch: String,
    /// `host[:port]` of the top Via.
    pub sent_by: String,
    /// Method (INVITE for ACK).
    pub method: String,
}

impl TransactionKey {
    /// The key of a request from an RFC 2543 peer (top Via without an RFC
    /// 3261 branch), by §17.2.3's fallback: Request-URI, From tag, Call-ID,
    /// CSeq number and the whole top Via. The To tag is left out so the
    /// ACK of a non-2xx (which carries ours) matches its INVITE; ACK maps to
    /// INVITE as in [`TransactionKey::of`]. `None` for responses and for
    /// requests lacking those headers.
    pub fn rfc2543(msg: &Message) -> Option<TransactionKey> {
        let uri = msg.request_uri()?;
        let via = msg.values("Via").into_iter().next()?;
        let from = msg.from().ok()?;
        let call_id = msg.call_id().ok()?;
        let cseq = msg.cseq().ok()?;
        let mut method = msg.method()?;
        if method == "ACK" {
            method = "INVITE".to_owned();
        }
        Some(TransactionKey {
            branch: format!(
                "rfc2543|{uri}|{}|{call_id}|{}",
                from.tag().unwrap_or_default(),
                cseq.seq
            ),
            sent_by: via,
            method,
        })
    }

    /// The key of a request or response.
    pub fn of(msg: &Message) -> Option<TransactionKey> {
        let via = msg.vias().ok()?.into_iter().next()?;
        let branch = via.rfc3261_branch()?.to_owned();
        let sent_by = match via.port {
            Some(p) => format!("{}:{p}", via.host),
            None => via.host.clone(),
        };
        let mut method = msg.method()?;
        if method == "ACK" {
            method = "INVITE".to_owned();
        }
        Some(TransactionKey {
            branch,
            sent_by,
            method,
        })
    }
}
