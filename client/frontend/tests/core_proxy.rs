//! The proxy's transaction and forwarding machinery (RFC 3261 §16, §17),
//! driven with parsed messages and fake time: no registrar, no
//! authenticator, targets given by the test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sharecall_frontend::core::{Output, TxId};
use sharecall_frontend::metrics::Metrics;
use sharecall_frontend::peer::{Dest, FlowId, Local, Peer, Protocol};
use sharecall_frontend::proxy::{Forward, Incoming, Proxy, ProxyConfig, SipUri};
use sharecall_sip::transaction::TimerConfig;
use sharecall_sip::{parse_datagram, Limits, Message};

const CALLER: &str = "192.0.2.10:5062";
const CALLEE: &str = "192.0.2.20:5070";

fn msg(text: &str) -> Message {
    parse_datagram(text.as_bytes(), &Limits::default())
        .expect("valid")
        .expect("not a keep-alive")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn udp(s: &str) -> Peer {
    Peer {
        protocol: Protocol::Udp,
        addr: addr(s),
        flow: None,
    }
}

fn local(protocol: Protocol) -> Local {
    Local {
        protocol,
        host: "127.0.0.1".to_owned(),
        port: if protocol == Protocol::Tls {
            5061
        } else {
            5060
        },
    }
}

fn config(max: usize) -> ProxyConfig {
    ProxyConfig {
        locals: vec![local(Protocol::Udp), local(Protocol::Tcp)],
        domains: vec!["a.example".to_owned()],
        record_route: true,
        timers: TimerConfig::default(),
        max_transactions: max,
        flow_key: [5; 32],
    }
}

fn proxy() -> Proxy {
    Proxy::new(config(1000), Metrics::new())
}

fn invite(branch: &str, uri: &str, extra: &str) -> String {
    format!(
        "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carol@c.example>;tag=f1\r\nTo: <sip:bob@a.example>\r\n\
         Call-ID: call-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@192.0.2.10:5062>\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

/// The Send outputs as (destination, text).
fn sends(out: &[Output]) -> Vec<(Dest, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, bytes, .. } => {
                Some((to.clone(), String::from_utf8_lossy(bytes).into_owned()))
            }
            _ => None,
        })
        .collect()
}

fn status(text: &str) -> u16 {
    text.get(8..11)
        .and_then(|c| c.parse().ok())
        .unwrap_or_default()
}

fn callee() -> Forward {
    Forward {
        uri: Some(format!("sip:bob@{CALLEE}")),
        routes: Vec::new(),
        dest: Dest::Peer(udp(CALLEE)),
    }
}

/// A response to the forwarded request `fwd` (Vias as forwarded, To tag).
fn response_to(fwd: &str, code: u16, reason: &str) -> Message {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in fwd.split("\r\n").skip(1) {
        let name = line.split(':').next().unwrap_or_default();
        match name {
            "Via" | "v" | "From" | "Call-ID" | "CSeq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "To" => {
                out.push_str(line);
                if code > 100 {
                    out.push_str(";tag=t2");
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    msg(&out)
}

/// Receives an INVITE and forwards it to the callee: (proxy, server id,
/// forwarded text).
fn forwarded_invite(branch: &str, now: Instant) -> (Proxy, TxId, String) {
    let mut p = proxy();
    let mut out = Vec::new();
    let inc = p
        .receive(
            msg(&invite(branch, "sip:bob@a.example", "")),
            udp(CALLER),
            now,
            &mut out,
        )
        .expect("a new request");
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, Dest::Peer(udp(CALLER)));
    assert_eq!(status(&s[0].1), 100);
    let server = inc.server.expect("a server transaction");
    out.clear();
    p.forward(server, inc.msg, callee(), true, now, &mut out);
    let s = sends(&out);
    assert_eq!(s.len(), 1, "{out:?}");
    assert_eq!(s[0].0, Dest::Peer(udp(CALLEE)));
    (p, server, s[0].1.clone())
}

#[test]
fn invite_is_forwarded_with_via_record_route_and_max_forwards() {
    let now = Instant::now();
    let (_, _, fwd) = forwarded_invite("z9hG4bKa1", now);
    assert!(fwd.starts_with(&format!("INVITE sip:bob@{CALLEE} SIP/2.0\r\n")));
    let lines: Vec<&str> = fwd.split("\r\n").collect();
    let via = lines
        .iter()
        .position(|l| l.starts_with("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"))
        .expect("our Via");
    assert!(lines[via].ends_with(";rport"));
    // RFC 3581: the caller's Via learns its source.
    assert!(
        lines[via + 1].ends_with("192.0.2.10:5062;branch=z9hG4bKa1;rport=5062;received=192.0.2.10")
    );
    assert!(fwd.contains("Record-Route: <sip:127.0.0.1:5060;transport=udp;lr>\r\n"));
    assert_eq!(fwd.matches("Record-Route").count(), 1);
    assert!(fwd.contains("Max-Forwards: 69\r\n"));
}

#[test]
fn missing_max_forwards_gets_70_and_zero_gets_483() {
    let now = Instant::now();
    let mut p = proxy();
    let mut out = Vec::new();
    let text = invite("z9hG4bKm1", "sip:bob@a.example", "").replace("Max-Forwards: 70\r\n", "");
    let inc = p
        .receive(msg(&text), udp(CALLER), now, &mut out)
        .expect("new");
    out.clear();
    p.forward(
        inc.server.expect("tx"),
        inc.msg,
        callee(),
        true,
        now,
        &mut out,
    );
    assert!(sends(&out)[0].1.contains("Max-Forwards: 70\r\n"));

    let text =
        invite("z9hG4bKm2", "sip:bob@a.example", "").replace("Max-Forwards: 70", "Max-Forwards: 0");
    out.clear();
    let inc = p
        .receive(msg(&text), udp(CALLER), now, &mut out)
        .expect("new");
    out.clear();
    p.forward(
        inc.server.expect("tx"),
        inc.msg,
        callee(),
        true,
        now,
        &mut out,
    );
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, Dest::Peer(udp(CALLER)));
    assert_eq!(status(&s[0].1), 483);
}

#[test]
fn provisional_and_final_responses_are_relayed_without_our_via() {
    let now = Instant::now();
    let (mut p, _, fwd) = forwarded_invite("z9hG4bKr1", now);
    let mut out = Vec::new();
    // 100 is not relayed.
    p.receive(response_to(&fwd, 100, "Trying"), udp(CALLEE), now, &mut out);
    assert!(sends(&out).is_empty());
    p.receive(
        response_to(&fwd, 180, "Ringing"),
        udp(CALLEE),
        now,
        &mut out,
    );
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, Dest::Peer(udp(CALLER)));
    assert_eq!(status(&s[0].1), 180);
    assert!(!s[0].1.contains("127.0.0.1:5060;branch"));
    assert!(s[0].1.contains("branch=z9hG4bKr1"));
    out.clear();
    p.receive(response_to(&fwd, 200, "OK"), udp(CALLEE), now, &mut out);
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(status(&s[0].1), 200);
    // RFC 6026: every 2xx retransmission is relayed too.
    out.clear();
    p.receive(response_to(&fwd, 200, "OK"), udp(CALLEE), now, &mut out);
    assert_eq!(sends(&out).len(), 1);
    assert_eq!(sends(&out)[0].0, Dest::Peer(udp(CALLER)));
    assert_eq!(status(&sends(&out)[0].1), 200);
    // In Accepted an INVITE retransmission is absorbed.
    out.clear();
    let again = p.receive(
        msg(&invite("z9hG4bKr1", "sip:bob@a.example", "")),
        udp(CALLER),
        now,
        &mut out,
    );
    assert!(again.is_none());
    assert!(out.is_empty());
    assert_eq!(p.transactions(), 2);
    // Timers L and M end both sides.
    p.on_timer(now + Duration::from_secs(32), &mut out);
    assert!(out.is_empty());
    assert_eq!(p.transactions(), 0);
}

#[test]
fn the_2xx_ack_and_bye_come_back_as_requests_without_transaction() {
    let now = Instant::now();
    let (mut p, _, _) = forwarded_invite("z9hG4bKd1", now);
    let mut out = Vec::new();
    let ack = "ACK sip:bob@192.0.2.20:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKd2\r\n\
               Route: <sip:127.0.0.1:5060;transport=udp;lr>\r\nMax-Forwards: 70\r\n\
               From: <sip:carol@c.example>;tag=f1\r\nTo: <sip:bob@a.example>;tag=t2\r\n\
               Call-ID: call-z9hG4bKd1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    let inc = p
        .receive(msg(ack), udp(CALLER), now, &mut out)
        .expect("the ACK for the caller to route");
    assert!(inc.server.is_none());
    assert!(out.is_empty());
    let mut m = inc.msg;
    let route = m.top_route().expect("route");
    assert!(p.route_is_us(&route));
    m.pop_top_route();
    let target = Forward {
        uri: None,
        routes: Vec::new(),
        dest: SipUri::parse("sip:bob@192.0.2.20:5070")
            .expect("uri")
            .dest(),
    };
    p.forward_stateless(m, target, Protocol::Udp, &mut out);
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, Dest::Peer(udp(CALLEE)));
    assert!(s[0].1.starts_with(
        "ACK sip:bob@192.0.2.20:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"
    ));
    assert!(!s[0].1.contains("Route:"));
    assert!(!s[0].1.contains("Record-Route:"));
}

#[test]
fn non_2xx_is_acked_downstream_and_the_upstream_ack_absorbed() {
    let now = Instant::now();
    let (mut p, _, fwd) = forwarded_invite("z9hG4bKn1", now);
    let mut out = Vec::new();
    p.receive(
        response_to(&fwd, 486, "Busy Here"),
        udp(CALLEE),
        now,
        &mut out,
    );
    let s = sends(&out);
    assert_eq!(s.len(), 2, "{s:?}");
    let ack = s
        .iter()
        .find(|(d, _)| *d == Dest::Peer(udp(CALLEE)))
        .expect("ACK downstream");
    assert!(ack.1.starts_with("ACK sip:bob@192.0.2.20:5070 SIP/2.0"));
    let up = s
        .iter()
        .find(|(d, _)| *d == Dest::Peer(udp(CALLER)))
        .expect("486 upstream");
    assert_eq!(status(&up.1), 486);
    out.clear();
    let ack = "ACK sip:bob@a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKn1\r\n\
               Max-Forwards: 70\r\nFrom: <sip:carol@c.example>;tag=f1\r\nTo: <sip:bob@a.example>;tag=t2\r\n\
               Call-ID: call-z9hG4bKn1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    assert!(p.receive(msg(ack), udp(CALLER), now, &mut out).is_none());
    assert!(out.is_empty());
}

#[test]
fn retransmissions_are_absorbed_and_answered_from_the_transaction() {
    let now = Instant::now();
    let (mut p, _, _) = forwarded_invite("z9hG4bKt1", now);
    let mut out = Vec::new();
    let again = p.receive(
        msg(&invite("z9hG4bKt1", "sip:bob@a.example", "")),
        udp(CALLER),
        now,
        &mut out,
    );
    assert!(again.is_none());
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(status(&s[0].1), 100, "the last response is repeated");
}

#[test]
fn udp_requests_are_retransmitted_and_time_out_with_408() {
    let t0 = Instant::now();
    let (mut p, _, fwd) = forwarded_invite("z9hG4bKu1", t0);
    let mut out = Vec::new();
    let first = p.next_deadline().expect("timer A");
    assert_eq!(first, t0 + Duration::from_millis(500));
    p.on_timer(t0 + Duration::from_millis(499), &mut out);
    assert!(out.is_empty());
    p.on_timer(t0 + Duration::from_millis(500), &mut out);
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, Dest::Peer(udp(CALLEE)));
    assert_eq!(s[0].1, fwd);
    out.clear();
    p.on_timer(t0 + Duration::from_millis(1500), &mut out);
    assert_eq!(sends(&out).len(), 1, "A doubled to 1 s");
    out.clear();
    p.on_timer(t0 + Duration::from_secs(32), &mut out);
    let up: Vec<_> = sends(&out)
        .into_iter()
        .filter(|(d, _)| *d == Dest::Peer(udp(CALLER)))
        .collect();
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0].1), 408);
}

#[test]
fn a_ringing_call_is_not_killed_by_timer_b() {
    let t0 = Instant::now();
    let (mut p, _, fwd) = forwarded_invite("z9hG4bKc0", t0);
    let mut out = Vec::new();
    p.receive(response_to(&fwd, 180, "Ringing"), udp(CALLEE), t0, &mut out);
    out.clear();
    p.on_timer(t0 + Duration::from_secs(60), &mut out);
    assert!(out.is_empty(), "{out:?}");
    // Timer C: CANCEL downstream after three minutes.
    p.on_timer(t0 + Duration::from_secs(181), &mut out);
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert!(s[0].1.starts_with("CANCEL "));
}

#[test]
fn cancel_is_answered_and_sent_downstream_and_487_relayed() {
    let now = Instant::now();
    let (mut p, _, fwd) = forwarded_invite("z9hG4bKx1", now);
    let mut out = Vec::new();
    p.receive(
        response_to(&fwd, 180, "Ringing"),
        udp(CALLEE),
        now,
        &mut out,
    );
    out.clear();
    let cancel = "CANCEL sip:bob@a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKx1;rport\r\n\
                  Max-Forwards: 70\r\nFrom: <sip:carol@c.example>;tag=f1\r\nTo: <sip:bob@a.example>\r\n\
                  Call-ID: call-z9hG4bKx1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    assert!(p.receive(msg(cancel), udp(CALLER), now, &mut out).is_none());
    let s = sends(&out);
    assert_eq!(s.len(), 2, "{s:?}");
    let ok = s
        .iter()
        .find(|(d, _)| *d == Dest::Peer(udp(CALLER)))
        .expect("200 upstream");
    assert_eq!(status(&ok.1), 200);
    assert!(ok.1.contains("CSeq: 1 CANCEL"));
    let down = s
        .iter()
        .find(|(d, _)| *d == Dest::Peer(udp(CALLEE)))
        .expect("CANCEL downstream");
    let fwd_branch = fwd
        .split("\r\n")
        .find(|l| l.starts_with("Via: SIP/2.0/UDP 127.0.0.1"))
        .expect("our via");
    assert!(down.1.starts_with(&format!(
        "CANCEL sip:bob@{CALLEE} SIP/2.0\r\n{fwd_branch}\r\n"
    )));
    assert!(down.1.contains("CSeq: 1 CANCEL\r\n"));
    assert!(down.1.contains("Max-Forwards: 70\r\n"));
    // The 200 to our CANCEL is absorbed; the 487 is relayed (and ACKed).
    out.clear();
    p.receive(response_to(&down.1, 200, "OK"), udp(CALLEE), now, &mut out);
    assert!(out.is_empty());
    p.receive(
        response_to(&fwd, 487, "Request Terminated"),
        udp(CALLEE),
        now,
        &mut out,
    );
    let s = sends(&out);
    let up = s
        .iter()
        .find(|(d, _)| *d == Dest::Peer(udp(CALLER)))
        .expect("487");
    assert_eq!(status(&up.1), 487);
    assert!(s
        .iter()
        .any(|(d, t)| *d == Dest::Peer(udp(CALLEE)) && t.starts_with("ACK ")));
}

#[test]
fn cancel_before_any_provisional_waits_and_answers_487_at_timeout() {
    let t0 = Instant::now();
    let (mut p, _, _) = forwarded_invite("z9hG4bKx2", t0);
    let mut out = Vec::new();
    let cancel = "CANCEL sip:bob@a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKx2\r\n\
                  Max-Forwards: 70\r\nFrom: <sip:carol@c.example>;tag=f1\r\nTo: <sip:bob@a.example>\r\n\
                  Call-ID: call-z9hG4bKx2\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    p.receive(msg(cancel), udp(CALLER), t0, &mut out);
    let s = sends(&out);
    assert_eq!(s.len(), 1, "no CANCEL before a provisional (§9.1)");
    assert_eq!(status(&s[0].1), 200);
    out.clear();
    p.on_timer(t0 + Duration::from_secs(33), &mut out);
    let up: Vec<_> = sends(&out)
        .into_iter()
        .filter(|(d, _)| *d == Dest::Peer(udp(CALLER)))
        .collect();
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0].1), 487);
}

#[test]
fn cancel_of_a_parked_request_answers_487_at_once() {
    let now = Instant::now();
    let mut p = proxy();
    let mut out = Vec::new();
    let inc = p
        .receive(
            msg(&invite("z9hG4bKx3", "sip:bob@a.example", "")),
            udp(CALLER),
            now,
            &mut out,
        )
        .expect("new");
    let server = inc.server.expect("tx");
    p.park(server, now);
    out.clear();
    let cancel = "CANCEL sip:bob@a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKx3\r\n\
                  Max-Forwards: 70\r\nFrom: <sip:carol@c.example>;tag=f1\r\nTo: <sip:bob@a.example>\r\n\
                  Call-ID: call-z9hG4bKx3\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    p.receive(msg(cancel), udp(CALLER), now, &mut out);
    let codes: Vec<u16> = sends(&out).iter().map(|(_, t)| status(t)).collect();
    assert_eq!(codes, vec![200, 487]);
    assert!(!p.is_pending(server));
    // A late location result finds nothing to forward.
    out.clear();
    p.forward(server, inc.msg, callee(), true, now, &mut out);
    assert!(out.is_empty());
}

#[test]
fn unknown_cancel_gets_481() {
    let now = Instant::now();
    let mut p = proxy();
    let mut out = Vec::new();
    let cancel = "CANCEL sip:bob@a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKzz\r\n\
                  Max-Forwards: 70\r\nFrom: <sip:carol@c.example>;tag=f1\r\nTo: <sip:bob@a.example>\r\n\
                  Call-ID: nothing\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    p.receive(msg(cancel), udp(CALLER), now, &mut out);
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(status(&s[0].1), 481);
    assert_eq!(p.transactions(), 0);
}

/// Forwards an INVITE to ourselves, feeds the forwarded copy back in and
/// forwards it again to `second`: the status answered, if any.
fn second_pass(first_uri: Option<&str>, second_uri: Option<&str>) -> Option<u16> {
    let now = Instant::now();
    let mut p = proxy();
    let mut out = Vec::new();
    let inc = p
        .receive(
            msg(&invite("z9hG4bKl1", "sip:bob@a.example", "")),
            udp(CALLER),
            now,
            &mut out,
        )
        .expect("new");
    let me = Dest::Peer(udp("127.0.0.1:5060"));
    let target = |uri: Option<&str>| Forward {
        uri: uri.map(str::to_owned),
        routes: Vec::new(),
        dest: me.clone(),
    };
    out.clear();
    p.forward(
        inc.server.expect("tx"),
        inc.msg,
        target(first_uri),
        true,
        now,
        &mut out,
    );
    let fwd = sends(&out).pop().expect("forwarded").1;
    out.clear();
    let inc = p
        .receive(msg(&fwd), udp("127.0.0.1:5060"), now, &mut out)
        .expect("the request again, as new");
    out.clear();
    p.forward(
        inc.server.expect("tx"),
        inc.msg,
        target(second_uri),
        true,
        now,
        &mut out,
    );
    sends(&out)
        .into_iter()
        .find(|(_, t)| t.starts_with("SIP/2.0"))
        .map(|(_, t)| status(&t))
}

#[test]
fn loops_get_482_and_spirals_pass() {
    // Same Request-URI twice: a loop.
    assert_eq!(second_pass(None, None), Some(482));
    // The first pass changed the Request-URI: the second is a spiral.
    assert_eq!(
        second_pass(Some("sip:fe-1@127.0.0.1:5060"), Some("sip:bob@192.0.2.20")),
        None
    );
}

#[test]
fn over_max_transactions_is_503_with_retry_after() {
    let now = Instant::now();
    let mut p = Proxy::new(config(1), Metrics::new());
    let mut out = Vec::new();
    assert!(p
        .receive(
            msg(&invite("z9hG4bKo1", "sip:bob@a.example", "")),
            udp(CALLER),
            now,
            &mut out
        )
        .is_some());
    out.clear();
    assert!(p
        .receive(
            msg(&invite("z9hG4bKo2", "sip:bob@a.example", "")),
            udp(CALLER),
            now,
            &mut out
        )
        .is_none());
    let s = sends(&out);
    assert_eq!(status(&s[0].1), 503);
    assert!(s[0].1.contains("Retry-After: 5\r\n"));
}

#[test]
fn invalid_requests_get_400_statelessly() {
    let now = Instant::now();
    let mut p = proxy();
    let mut out = Vec::new();
    let text =
        invite("z9hG4bKv1", "sip:bob@a.example", "").replace("CSeq: 1 INVITE", "CSeq: 1 BYE");
    assert!(p.receive(msg(&text), udp(CALLER), now, &mut out).is_none());
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, Dest::Peer(udp(CALLER)));
    assert_eq!(status(&s[0].1), 400);
    assert_eq!(p.transactions(), 0);
}

#[test]
fn stray_responses_go_by_the_second_via_or_are_dropped() {
    let now = Instant::now();
    let mut p = proxy();
    let mut out = Vec::new();
    let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKgone-x\r\n\
                Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK1;received=192.0.2.30;rport=6000\r\n\
                From: <sip:carol@c.example>;tag=f1\r\nTo: <sip:bob@a.example>;tag=t\r\n\
                Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    p.receive(msg(resp), udp(CALLEE), now, &mut out);
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, Dest::Peer(udp("192.0.2.30:6000")));
    assert!(s[0]
        .1
        .starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.5:5062"));
    out.clear();
    let foreign = resp.replace("127.0.0.1:5060", "198.51.100.1:5060");
    p.receive(msg(&foreign), udp(CALLEE), now, &mut out);
    assert!(out.is_empty());
}

#[test]
fn send_failure_answers_503_upstream() {
    let now = Instant::now();
    let (mut p, _, _) = forwarded_invite("z9hG4bKf1", now);
    let mut out = Vec::new();
    // The client transaction is the newest one: find its id from a retransmission.
    p.on_timer(now + Duration::from_millis(500), &mut out);
    let tx = out
        .iter()
        .find_map(|o| match o {
            Output::Send { tx, .. } => *tx,
            _ => None,
        })
        .expect("client tx id");
    out.clear();
    p.on_send_failed(tx, now, &mut out);
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, Dest::Peer(udp(CALLER)));
    assert_eq!(status(&s[0].1), 503);
}

#[test]
fn tcp_in_udp_out_gets_two_record_routes_and_answers_on_the_flow() {
    let now = Instant::now();
    let mut p = proxy();
    let mut out = Vec::new();
    let from = Peer {
        protocol: Protocol::Tcp,
        addr: addr(CALLER),
        flow: Some(FlowId(7)),
    };
    let text = invite("z9hG4bKtc", "sip:bob@a.example", "")
        .replace("SIP/2.0/UDP 192.0.2.10", "SIP/2.0/TCP 192.0.2.10");
    let inc: Incoming = p.receive(msg(&text), from, now, &mut out).expect("new");
    assert_eq!(sends(&out)[0].0, Dest::Peer(from));
    out.clear();
    p.forward(
        inc.server.expect("tx"),
        inc.msg,
        callee(),
        true,
        now,
        &mut out,
    );
    let fwd = sends(&out).pop().expect("forwarded").1;
    let rr: Vec<&str> = fwd
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .collect();
    assert_eq!(rr.len(), 2);
    assert_eq!(rr[0], "<sip:127.0.0.1:5060;transport=udp;lr>");
    // The caller's side names its connection, for in-dialog requests back.
    assert!(rr[1].starts_with("<sip:127.0.0.1:5060;transport=tcp;lr;ft="));
    assert!(p.route_is_us(rr[1]));
    assert_eq!(p.route_flow(rr[1]), Some(from));
    assert_eq!(p.route_flow(rr[0]), None);
    let other_key = Proxy::new(
        ProxyConfig {
            flow_key: [6; 32],
            ..config(10)
        },
        Metrics::new(),
    );
    assert_eq!(other_key.route_flow(rr[1]), None, "the token is keyed");
    // No retransmission timers for the reliable server side, only the UDP client side.
    out.clear();
    p.receive(
        response_to(&fwd, 180, "Ringing"),
        udp(CALLEE),
        now,
        &mut out,
    );
    assert_eq!(sends(&out)[0].0, Dest::Peer(from));
}

#[test]
fn uris_resolve_to_destinations() {
    let u = SipUri::parse("sips:bob@B.example;transport=tcp").expect("uri");
    assert_eq!(
        u.dest(),
        Dest::Name {
            protocol: Protocol::Tcp,
            host: "b.example".to_owned(),
            port: 5060
        }
    );
    let u = SipUri::parse("sips:[2001:db8::1]").expect("uri");
    assert_eq!(
        u.dest(),
        Dest::Peer(Peer {
            protocol: Protocol::Tls,
            addr: addr("[2001:db8::1]:5061"),
            flow: None
        })
    );
    assert!(SipUri::parse("tel:+4930").is_none());
    assert!(SipUri::parse("sip:bob@host:99999").is_none());
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), seed in any::<u64>()) {
        let now = Instant::now();
        let mut p = proxy();
        let mut out = Vec::new();
        if let Ok(Some(m)) = parse_datagram(&bytes, &Limits::default()) {
            if let Some(inc) = p.receive(m, udp(CALLER), now, &mut out) {
                if let Some(s) = inc.server {
                    p.forward(s, inc.msg, callee(), seed % 2 == 0, now, &mut out);
                }
            }
        }
        p.on_timer(now + Duration::from_secs(seed % 100), &mut out);
    }

    #[test]
    fn mutated_requests_never_panic(cut in 0usize..400, byte in any::<u8>(), pos in 0usize..400) {
        let now = Instant::now();
        let mut p = proxy();
        let mut out = Vec::new();
        let mut b = invite("z9hG4bKpp", "sip:bob@a.example", "Route: <sip:127.0.0.1;lr>\r\n").into_bytes();
        if pos < b.len() { b[pos] = byte; }
        b.truncate(b.len().saturating_sub(cut % 40));
        if let Ok(Some(m)) = parse_datagram(&b, &Limits::default()) {
            if let Some(inc) = p.receive(m, udp(CALLER), now, &mut out) {
                if let Some(s) = inc.server {
                    p.forward(s, inc.msg, callee(), true, now, &mut out);
                }
            }
        }
        p.on_timer(now + Duration::from_secs(40), &mut out);
    }
}

#[test]
fn answered_non_invite_retransmissions_get_the_same_response_until_timer_j() {
    let t0 = Instant::now();
    let mut p = proxy();
    let mut out = Vec::new();
    let text = "OPTIONS sip:bob@a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKj1\r\n\
                Max-Forwards: 70\r\nFrom: <sip:carol@c.example>;tag=f1\r\nTo: <sip:bob@a.example>\r\n\
                Call-ID: j1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let inc = p
        .receive(msg(text), udp(CALLER), t0, &mut out)
        .expect("new");
    assert!(out.is_empty(), "no 100 for a non-INVITE");
    p.reply(inc.server.expect("tx"), 404, &[], t0, &mut out);
    let first = sends(&out).pop().expect("404").1;
    assert_eq!(status(&first), 404);
    assert_eq!(p.pending(), 0);
    out.clear();
    assert!(p
        .receive(
            msg(text),
            udp(CALLER),
            t0 + Duration::from_secs(4),
            &mut out
        )
        .is_none());
    assert_eq!(sends(&out).pop().expect("again").1, first);
    assert_eq!(p.transactions(), 1);
    out.clear();
    p.on_timer(t0 + Duration::from_secs(32), &mut out);
    assert!(out.is_empty());
    assert_eq!(p.transactions(), 0);
    // After timer J the request is new again.
    assert!(p
        .receive(
            msg(text),
            udp(CALLER),
            t0 + Duration::from_secs(33),
            &mut out
        )
        .is_some());
}

#[test]
fn ten_thousand_transactions_time_out_through_the_timer_heap() {
    let t0 = Instant::now();
    let mut p = Proxy::new(config(20_000), Metrics::new());
    let mut out = Vec::new();
    for i in 0..10_000 {
        let inc = p
            .receive(
                msg(&invite(&format!("z9hG4bKs{i}"), "sip:bob@a.example", "")),
                udp(CALLER),
                t0,
                &mut out,
            )
            .expect("new");
        p.forward(
            inc.server.expect("tx"),
            inc.msg,
            callee(),
            true,
            t0,
            &mut out,
        );
    }
    assert_eq!(p.transactions(), 20_000);
    assert_eq!(p.pending(), 10_000);
    out.clear();
    // Every 500 ms retransmission of every branch, then every timeout.
    let mut t = t0;
    while t < t0 + Duration::from_secs(32) {
        t += Duration::from_millis(250);
        p.on_timer(t, &mut out);
    }
    let timeouts = sends(&out)
        .iter()
        .filter(|(d, txt)| *d == Dest::Peer(udp(CALLER)) && status(txt) == 408)
        .count();
    assert_eq!(timeouts, 10_000);
    assert_eq!(p.pending(), 0);
    // Only the 408s' server transactions remain, waiting for their ACKs.
    out.clear();
    p.on_timer(t0 + Duration::from_secs(70), &mut out);
    assert_eq!(p.transactions(), 0);
}

const OTHER: &str = "192.0.2.21:5070";

/// An INVITE forked to the callee and OTHER: (proxy, forwarded to callee,
/// forwarded to OTHER).
fn forked(branch: &str, now: Instant) -> (Proxy, String, String) {
    let mut p = proxy();
    let mut out = Vec::new();
    let inc = p
        .receive(
            msg(&invite(branch, "sip:bob@a.example", "")),
            udp(CALLER),
            now,
            &mut out,
        )
        .expect("new");
    out.clear();
    let other = Forward {
        uri: Some(format!("sip:bob@{OTHER}")),
        routes: Vec::new(),
        dest: Dest::Peer(udp(OTHER)),
    };
    p.fork(
        inc.server.expect("tx"),
        inc.msg,
        vec![callee(), other],
        true,
        now,
        &mut out,
    );
    let s = sends(&out);
    assert_eq!(s.len(), 2);
    let a = s
        .iter()
        .find(|(d, _)| *d == Dest::Peer(udp(CALLEE)))
        .expect("branch 1")
        .1
        .clone();
    let b = s
        .iter()
        .find(|(d, _)| *d == Dest::Peer(udp(OTHER)))
        .expect("branch 2")
        .1
        .clone();
    assert!(b.starts_with(&format!("INVITE sip:bob@{OTHER} SIP/2.0")));
    let branch_of = |t: &str| {
        t.split("\r\n")
            .find(|l| l.starts_with("Via: SIP/2.0/UDP 127.0.0.1:5060"))
            .expect("our via")
            .to_owned()
    };
    assert_ne!(
        branch_of(&a),
        branch_of(&b),
        "one branch parameter per branch"
    );
    (p, a, b)
}

fn upstream(out: &[Output]) -> Vec<u16> {
    sends(out)
        .iter()
        .filter(|(d, t)| *d == Dest::Peer(udp(CALLER)) && t.starts_with("SIP/2.0"))
        .map(|(_, t)| status(t))
        .collect()
}

#[test]
fn forking_relays_the_2xx_and_cancels_the_other_branch() {
    let now = Instant::now();
    let (mut p, a, b) = forked("z9hG4bKfk1", now);
    let mut out = Vec::new();
    p.receive(response_to(&a, 180, "Ringing"), udp(CALLEE), now, &mut out);
    p.receive(response_to(&b, 180, "Ringing"), udp(OTHER), now, &mut out);
    assert_eq!(upstream(&out), vec![180, 180]);
    out.clear();
    p.receive(response_to(&a, 200, "OK"), udp(CALLEE), now, &mut out);
    assert_eq!(upstream(&out), vec![200]);
    let cancel = sends(&out)
        .into_iter()
        .find(|(d, t)| *d == Dest::Peer(udp(OTHER)) && t.starts_with("CANCEL "))
        .expect("the other branch is cancelled");
    assert!(cancel
        .1
        .starts_with(&format!("CANCEL sip:bob@{OTHER} SIP/2.0")));
    // Its 487 is ACKed and not relayed.
    out.clear();
    p.receive(
        response_to(&b, 487, "Request Terminated"),
        udp(OTHER),
        now,
        &mut out,
    );
    assert!(upstream(&out).is_empty());
    assert!(sends(&out)
        .iter()
        .any(|(d, t)| *d == Dest::Peer(udp(OTHER)) && t.starts_with("ACK ")));
}

#[test]
fn forking_answers_the_best_final_response_once_all_branches_end() {
    let now = Instant::now();
    let (mut p, a, b) = forked("z9hG4bKfk2", now);
    let mut out = Vec::new();
    p.receive(
        response_to(&b, 503, "Service Unavailable"),
        udp(OTHER),
        now,
        &mut out,
    );
    assert!(upstream(&out).is_empty(), "one branch is still open");
    p.receive(
        response_to(&a, 486, "Busy Here"),
        udp(CALLEE),
        now,
        &mut out,
    );
    assert_eq!(upstream(&out), vec![486], "4xx beats 5xx");

    // A 6xx cancels the rest and wins.
    let (mut p, a, b) = forked("z9hG4bKfk3", now);
    out.clear();
    p.receive(response_to(&b, 180, "Ringing"), udp(OTHER), now, &mut out);
    out.clear();
    p.receive(response_to(&a, 603, "Decline"), udp(CALLEE), now, &mut out);
    assert!(upstream(&out).is_empty());
    assert!(sends(&out)
        .iter()
        .any(|(d, t)| *d == Dest::Peer(udp(OTHER)) && t.starts_with("CANCEL ")));
    out.clear();
    p.receive(
        response_to(&b, 487, "Request Terminated"),
        udp(OTHER),
        now,
        &mut out,
    );
    assert_eq!(upstream(&out), vec![603]);

    // Only 5xx: a downstream 503 goes up as 500.
    let (mut p, a, b) = forked("z9hG4bKfk4", now);
    out.clear();
    p.receive(
        response_to(&a, 503, "Service Unavailable"),
        udp(CALLEE),
        now,
        &mut out,
    );
    p.receive(
        response_to(&b, 503, "Service Unavailable"),
        udp(OTHER),
        now,
        &mut out,
    );
    assert_eq!(upstream(&out), vec![500]);
}
