//! RFC 3261 §17 / RFC 6026 state machines driven with fake time.

use std::time::{Duration, Instant};

use sharecall_sip::transaction::{
    Action, Reliability, State, Timer, TimerConfig, Transaction, TransactionKey,
};
use sharecall_sip::{parse_datagram, Limits, Message};

fn msg(text: &str) -> Message {
    parse_datagram(text.as_bytes(), &Limits::default())
        .expect("valid")
        .expect("not keep-alive")
}

fn request(method: &str) -> Message {
    msg(&format!(
        "{method} sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bKt1\r\nRoute: <sip:p.example;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>\r\nCall-ID: c1\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn response(code: u16, method: &str) -> Message {
    msg(&format!(
        "SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bKt1\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>;tag=2\r\nCall-ID: c1\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
    ))
}

fn sends(a: &[Action]) -> usize {
    a.iter().filter(|x| matches!(x, Action::Send(_))).count()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn client_invite_retransmits_with_doubling_and_times_out_with_b() {
    let t0 = Instant::now();
    let (mut t, a) = Transaction::client(
        request("INVITE"),
        Reliability::Unreliable,
        TimerConfig::default(),
        t0,
    );
    assert_eq!(sends(&a), 1);
    // Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s: six retransmissions before B at 32 s.
    let mut at = Vec::new();
    let mut now = t0;
    while let Some(d) = t.next_deadline() {
        now = d;
        let acts = t.on_timer(now);
        if sends(&acts) > 0 {
            at.push((now - t0).as_millis());
        }
        if acts.contains(&Action::Terminated) {
            assert!(acts.contains(&Action::Timeout));
            break;
        }
    }
    assert_eq!(at, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(now - t0, ms(32_000));
    assert_eq!(t.state(), State::Terminated);
}

#[test]
fn client_invite_provisional_stops_a_and_non2xx_sends_ack_then_d() {
    let t0 = Instant::now();
    let (mut t, _) = Transaction::client(
        request("INVITE"),
        Reliability::Unreliable,
        TimerConfig::default(),
        t0,
    );
    let a = t.on_response(response(180, "INVITE"), t0 + ms(100));
    assert!(matches!(a.as_slice(), [Action::PassToTu(_)]));
    assert_eq!(t.state(), State::Proceeding);
    assert!(!t.is_armed(Timer::A));
    assert!(t.is_armed(Timer::B));
    let a = t.on_response(response(486, "INVITE"), t0 + ms(200));
    let Some(Action::Send(ack)) = a.first() else {
        panic!("no ACK: {a:?}")
    };
    let ack = msg(std::str::from_utf8(ack).expect("ascii"));
    assert_eq!(ack.method().as_deref(), Some("ACK"));
    assert_eq!(ack.cseq().expect("cseq").seq, 7);
    assert_eq!(ack.to().expect("to").tag(), Some("2"));
    assert_eq!(ack.values("Route"), vec!["<sip:p.example;lr>".to_owned()]);
    assert_eq!(ack.vias().expect("via")[0].branch(), Some("z9hG4bKt1"));
    assert_eq!(t.state(), State::Completed);
    // A retransmitted final response gets the ACK again, is not passed up.
    let a = t.on_response(response(486, "INVITE"), t0 + ms(300));
    assert_eq!(sends(&a), 1);
    assert_eq!(a.len(), 1);
    // Timer D = 32 s on UDP.
    assert_eq!(t.next_deadline(), Some(t0 + ms(200) + ms(32_000)));
    assert_eq!(t.on_timer(t0 + ms(32_199)), vec![]);
    assert_eq!(t.on_timer(t0 + ms(32_200)), vec![Action::Terminated]);
}

#[test]
fn client_invite_reliable_no_retransmit_and_d_zero() {
    let t0 = Instant::now();
    let (mut t, _) = Transaction::client(
        request("INVITE"),
        Reliability::Reliable,
        TimerConfig::default(),
        t0,
    );
    assert!(!t.is_armed(Timer::A));
    assert!(t.is_armed(Timer::B));
    let a = t.on_response(response(404, "INVITE"), t0 + ms(10));
    assert_eq!(sends(&a), 1);
    assert_eq!(a.last(), Some(&Action::Terminated));
}

#[test]
fn client_invite_2xx_enters_accepted_rfc6026() {
    let t0 = Instant::now();
    let (mut t, _) = Transaction::client(
        request("INVITE"),
        Reliability::Unreliable,
        TimerConfig::default(),
        t0,
    );
    let a = t.on_response(response(200, "INVITE"), t0 + ms(50));
    assert!(
        matches!(a.as_slice(), [Action::PassToTu(_)]),
        "2xx is not ACKed by the transaction"
    );
    assert_eq!(t.state(), State::Accepted);
    // A retransmitted 2xx still reaches the TU (it ACKs it again).
    assert!(matches!(
        t.on_response(response(200, "INVITE"), t0 + ms(60))
            .as_slice(),
        [Action::PassToTu(_)]
    ));
    assert_eq!(
        t.on_timer(t0 + ms(50) + ms(32_000)),
        vec![Action::Terminated]
    );
}

#[test]
fn client_non_invite_e_capped_at_t2_f_times_out() {
    let t0 = Instant::now();
    let (mut t, _) = Transaction::client(
        request("OPTIONS"),
        Reliability::Unreliable,
        TimerConfig::default(),
        t0,
    );
    let mut at = Vec::new();
    while let Some(d) = t.next_deadline() {
        let acts = t.on_timer(d);
        if sends(&acts) > 0 {
            at.push((d - t0).as_millis());
        }
        if acts.contains(&Action::Terminated) {
            assert!(acts.contains(&Action::Timeout));
            assert_eq!(d - t0, ms(32_000));
            break;
        }
    }
    // 0.5, 1.5, 3.5, 7.5 (cap 4 s), 11.5, ... 31.5.
    assert_eq!(
        at,
        vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    );
}

#[test]
fn client_non_invite_proceeding_uses_t2_and_k() {
    let t0 = Instant::now();
    let (mut t, _) = Transaction::client(
        request("REGISTER"),
        Reliability::Unreliable,
        TimerConfig::default(),
        t0,
    );
    t.on_response(response(100, "REGISTER"), t0 + ms(100));
    assert_eq!(t.state(), State::Proceeding);
    assert_eq!(sends(&t.on_timer(t0 + ms(500))), 1);
    assert_eq!(
        t.next_deadline(),
        Some(t0 + ms(4500)),
        "in Proceeding E fires every T2"
    );
    let a = t.on_response(response(200, "REGISTER"), t0 + ms(600));
    assert!(matches!(a.as_slice(), [Action::PassToTu(_)]));
    assert_eq!(
        t.next_deadline(),
        Some(t0 + ms(600) + ms(5000)),
        "timer K = T4"
    );
    assert!(t
        .on_response(response(200, "REGISTER"), t0 + ms(700))
        .is_empty());
    assert_eq!(t.on_timer(t0 + ms(5600)), vec![Action::Terminated]);
    // Reliable: K = 0.
    let (mut r, _) = Transaction::client(
        request("REGISTER"),
        Reliability::Reliable,
        TimerConfig::default(),
        t0,
    );
    assert!(!r.is_armed(Timer::E));
    assert_eq!(
        r.on_response(response(200, "REGISTER"), t0).last(),
        Some(&Action::Terminated)
    );
}

#[test]
fn server_invite_trying_non2xx_g_h_and_ack_i() {
    let t0 = Instant::now();
    let (mut t, a) = Transaction::server(
        request("INVITE"),
        Reliability::Unreliable,
        TimerConfig::default(),
    );
    let Some(Action::Send(trying)) = a.first() else {
        panic!("no 100")
    };
    assert!(trying.starts_with(b"SIP/2.0 100 Trying\r\n"));
    assert!(matches!(a.get(1), Some(Action::PassToTu(_))));
    // A retransmitted INVITE gets the 100 again.
    assert_eq!(
        t.on_request(request("INVITE"), t0 + ms(400)),
        vec![Action::Send(trying.clone())]
    );
    let a = t.send_response(response(486, "INVITE"), t0 + ms(1000));
    assert_eq!(sends(&a), 1);
    assert_eq!(t.state(), State::Completed);
    // G: 0.5, 1, 2, 4, 4 ... until H at 32 s.
    let mut at = Vec::new();
    loop {
        let d = t.next_deadline().expect("armed");
        let acts = t.on_timer(d);
        if acts.contains(&Action::Terminated) {
            assert!(acts.contains(&Action::Timeout), "timer H: no ACK");
            assert_eq!(d - t0, ms(33_000));
            break;
        }
        at.push((d - t0).as_millis() - 1000);
    }
    assert_eq!(&at[..6], &[500, 1500, 3500, 7500, 11500, 15500]);

    let (mut t, _) = Transaction::server(
        request("INVITE"),
        Reliability::Unreliable,
        TimerConfig::default(),
    );
    t.send_response(response(486, "INVITE"), t0);
    assert!(t.on_request(request("ACK"), t0 + ms(10)).is_empty());
    assert_eq!(t.state(), State::Confirmed);
    assert!(!t.is_armed(Timer::G) && !t.is_armed(Timer::H));
    assert!(
        t.on_request(request("ACK"), t0 + ms(20)).is_empty(),
        "ACK retransmission absorbed"
    );
    assert_eq!(
        t.on_timer(t0 + ms(5010)),
        vec![Action::Terminated],
        "timer I = T4"
    );
}

#[test]
fn server_invite_reliable_no_g_and_i_zero() {
    let t0 = Instant::now();
    let (mut t, _) = Transaction::server(
        request("INVITE"),
        Reliability::Reliable,
        TimerConfig::default(),
    );
    t.send_response(response(603, "INVITE"), t0);
    assert!(!t.is_armed(Timer::G));
    assert!(t.is_armed(Timer::H));
    assert_eq!(t.on_request(request("ACK"), t0), vec![Action::Terminated]);
}

#[test]
fn server_invite_2xx_accepted_timer_l() {
    let t0 = Instant::now();
    let (mut t, _) = Transaction::server(
        request("INVITE"),
        Reliability::Unreliable,
        TimerConfig::default(),
    );
    assert_eq!(sends(&t.send_response(response(180, "INVITE"), t0)), 1);
    assert_eq!(t.state(), State::Proceeding);
    assert_eq!(
        sends(&t.send_response(response(200, "INVITE"), t0 + ms(5))),
        1
    );
    assert_eq!(t.state(), State::Accepted);
    assert!(
        t.on_request(request("INVITE"), t0 + ms(6)).is_empty(),
        "INVITE retransmission absorbed"
    );
    assert_eq!(
        sends(&t.send_response(response(200, "INVITE"), t0 + ms(505))),
        1,
        "TU's 2xx retransmit passes"
    );
    assert!(matches!(
        t.on_request(request("ACK"), t0 + ms(600)).as_slice(),
        [Action::PassToTu(_)]
    ));
    assert_eq!(
        t.on_timer(t0 + ms(5) + ms(32_000)),
        vec![Action::Terminated]
    );
}

#[test]
fn server_non_invite_j() {
    let t0 = Instant::now();
    let (mut t, a) = Transaction::server(
        request("REGISTER"),
        Reliability::Unreliable,
        TimerConfig::default(),
    );
    assert!(
        matches!(a.as_slice(), [Action::PassToTu(_)]),
        "no 100 for non-INVITE"
    );
    assert!(
        t.on_request(request("REGISTER"), t0).is_empty(),
        "Trying absorbs retransmissions"
    );
    t.send_response(response(200, "REGISTER"), t0 + ms(10));
    assert_eq!(t.state(), State::Completed);
    assert_eq!(
        sends(&t.on_request(request("REGISTER"), t0 + ms(20))),
        1,
        "final resent"
    );
    assert_eq!(t.on_timer(t0 + ms(10) + ms(31_999)), vec![]);
    assert_eq!(
        t.on_timer(t0 + ms(10) + ms(32_000)),
        vec![Action::Terminated]
    );
    let (mut r, _) = Transaction::server(
        request("REGISTER"),
        Reliability::Reliable,
        TimerConfig::default(),
    );
    assert_eq!(
        r.send_response(response(200, "REGISTER"), t0).last(),
        Some(&Action::Terminated)
    );
}

#[test]
fn keys_match_request_response_and_ack() {
    let k = TransactionKey::of(&request("INVITE")).expect("key");
    assert_eq!(
        TransactionKey::of(&response(180, "INVITE")),
        Some(k.clone())
    );
    assert_eq!(TransactionKey::of(&request("ACK")), Some(k.clone()));
    assert_ne!(TransactionKey::of(&request("BYE")), Some(k));
}

#[test]
fn rfc2543_requests_get_the_fallback_key() {
    let old = |method: &str, to_tag: &str| {
        msg(&format!(
            "{method} sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=old1\r\nFrom: <sip:alice@a.example>;tag=1\r\nTo: <sip:bob@b.example>{to_tag}\r\nCall-ID: c1\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
        ))
    };
    assert_eq!(TransactionKey::of(&old("INVITE", "")), None);
    let k = TransactionKey::rfc2543(&old("INVITE", "")).expect("key");
    // The ACK of a non-2xx carries the To tag the server added.
    assert_eq!(
        TransactionKey::rfc2543(&old("ACK", ";tag=9")),
        Some(k.clone())
    );
    let cancel = TransactionKey::rfc2543(&old("CANCEL", "")).expect("key");
    assert_eq!(
        (cancel.branch.as_str(), cancel.method.as_str()),
        (k.branch.as_str(), "CANCEL")
    );
    assert_ne!(TransactionKey::rfc2543(&old("BYE", ";tag=9")), Some(k));
    assert_eq!(TransactionKey::rfc2543(&response(180, "INVITE")), None);
}

#[test]
fn transport_error_ends_the_transaction() {
    let t0 = Instant::now();
    let (mut t, _) = Transaction::client(
        request("INVITE"),
        Reliability::Reliable,
        TimerConfig::default(),
        t0,
    );
    assert_eq!(
        t.on_transport_error(),
        vec![Action::TransportError, Action::Terminated]
    );
    assert_eq!(t.state(), State::Terminated);
    assert_eq!(t.next_deadline(), None);
}
