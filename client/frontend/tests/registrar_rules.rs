//! The registrar's rules (RFC 3261 §10.3, RFC 3327) on parsed REGISTERs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sharecall_frontend::aor::{Aor, TokenKey};
use sharecall_frontend::config::Publish;
use sharecall_frontend::peer::{FlowId, Local, Peer, Protocol};
use sharecall_frontend::registrar::{RegisterResult, Registrar, RegistrarConfig};
use sharecall_sip::{parse_datagram, Limits, Message};

const TTL: u64 = 7200;

fn cfg(publish: Publish) -> RegistrarConfig {
    RegistrarConfig {
        default_expires: 3600,
        min_expires: 60,
        max_expires: 7200,
        max_bindings: 3,
        publish,
        publish_ttl: Duration::from_secs(TTL),
        public: Local {
            protocol: Protocol::Udp,
            host: "fe.example".into(),
            port: 5060,
        },
    }
}

fn registrar(publish: Publish) -> Registrar {
    Registrar::new(cfg(publish), TokenKey::new([3; 32]))
}

fn alice() -> Aor {
    Aor::new("alice", "a.example")
}

/// A UDP peer at 192.0.2.1:5060, where the Contacts below point.
fn udp() -> Peer {
    Peer {
        protocol: Protocol::Udp,
        addr: "192.0.2.1:5060".parse().expect("valid in this test"),
        flow: None,
    }
}

/// A REGISTER with the given extra header lines.
fn register(call_id: &str, cseq: u32, lines: &[&str]) -> Message {
    let mut s = format!(
        "REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@a.example>;tag=f1\r\nTo: <sip:alice@a.example>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
    );
    for l in lines {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    parse_datagram(s.as_bytes(), &Limits::default())
        .expect("valid in this test")
        .expect("valid in this test")
}

/// The response bytes, whatever the result.
fn text(r: &RegisterResult) -> String {
    match r {
        RegisterResult::Reply(b) => String::from_utf8(b.clone()).expect("valid in this test"),
        RegisterResult::Publish { ok, .. } => {
            String::from_utf8(ok.clone()).expect("valid in this test")
        }
    }
}

fn status(r: &RegisterResult) -> u16 {
    text(r)[8..11].parse().expect("valid in this test")
}

/// Registers and, when a publication is asked for, completes it.
fn ok(reg: &mut Registrar, m: &Message, from: Peer, now: Instant) -> RegisterResult {
    let r = reg.register(m, &alice(), from, now);
    assert_eq!(status(&r), 200, "{}", text(&r));
    if let RegisterResult::Publish { publication, .. } = &r {
        reg.published(publication, now);
    }
    r
}

fn contacts(r: &RegisterResult) -> Vec<String> {
    text(r)
        .lines()
        .filter_map(|l| l.strip_prefix("Contact: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn binds_and_lists_with_remaining_expiry_and_a_to_tag() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    let r = ok(
        &mut reg,
        &register(
            "c1",
            1,
            &["Contact: <sip:alice@192.0.2.1:5060>", "Expires: 600"],
        ),
        udp(),
        t0,
    );
    assert!(text(&r).contains("To: <sip:alice@a.example>;tag="));
    assert_eq!(contacts(&r), ["<sip:alice@192.0.2.1:5060>;expires=600"]);
    // A query (no Contact) lists, 100 s later, with what is left.
    let q = reg.register(
        &register("q", 1, &[]),
        &alice(),
        udp(),
        t0 + Duration::from_secs(100),
    );
    assert!(matches!(q, RegisterResult::Reply(_)));
    assert_eq!(contacts(&q), ["<sip:alice@192.0.2.1:5060>;expires=500"]);
    assert_eq!(
        reg.targets(&alice(), t0 + Duration::from_secs(599)).len(),
        1
    );
    assert!(reg
        .targets(&alice(), t0 + Duration::from_secs(600))
        .is_empty());
}

#[test]
fn expiry_comes_from_the_param_then_the_header_then_the_default_and_is_capped() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    let r = ok(
        &mut reg,
        &register(
            "c1",
            1,
            &[
                "Contact: <sip:a@192.0.2.1:5060>;expires=120, <sip:b@192.0.2.1:5060>",
                "Contact: <sip:c@192.0.2.1:5060>;expires=99999",
                "Expires: 300",
            ],
        ),
        udp(),
        t0,
    );
    let mut c = contacts(&r);
    c.sort();
    assert_eq!(
        c,
        [
            "<sip:a@192.0.2.1:5060>;expires=120",
            "<sip:b@192.0.2.1:5060>;expires=300",
            "<sip:c@192.0.2.1:5060>;expires=7200"
        ]
    );
    let mut reg = registrar(Publish::FrontEnd);
    let r = ok(
        &mut reg,
        &register("c1", 1, &["Contact: <sip:a@192.0.2.1:5060>"]),
        udp(),
        t0,
    );
    assert_eq!(contacts(&r), ["<sip:a@192.0.2.1:5060>;expires=3600"]);
}

#[test]
fn too_brief_an_interval_refuses_the_whole_request_with_min_expires() {
    let mut reg = registrar(Publish::FrontEnd);
    let r = reg.register(
        &register(
            "c1",
            1,
            &["Contact: <sip:a@192.0.2.1>, <sip:b@192.0.2.1>;expires=30"],
        ),
        &alice(),
        udp(),
        Instant::now(),
    );
    assert_eq!(status(&r), 423);
    assert!(text(&r).contains("\r\nMin-Expires: 60\r\n"));
    assert!(reg.targets(&alice(), Instant::now()).is_empty());
}

#[test]
fn expires_zero_removes_one_binding_and_star_removes_all() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    ok(
        &mut reg,
        &register("c1", 1, &["Contact: <sip:a@192.0.2.1>, <sip:b@192.0.2.1>"]),
        udp(),
        t0,
    );
    let r = ok(
        &mut reg,
        &register("c1", 2, &["Contact: <sip:a@192.0.2.1>;expires=0"]),
        udp(),
        t0,
    );
    assert_eq!(contacts(&r), ["<sip:b@192.0.2.1>;expires=3600"]);
    // FrontEnd mode publishes nothing on removal: the entry keeps pointing
    // at the front end, which answers 480.
    let r = reg.register(
        &register("c1", 3, &["Contact: *", "Expires: 0"]),
        &alice(),
        udp(),
        t0,
    );
    assert!(matches!(r, RegisterResult::Reply(_)));
    assert_eq!(status(&r), 200);
    assert!(contacts(&r).is_empty());
    assert!(reg.targets(&alice(), t0).is_empty());
}

#[test]
fn star_needs_expires_zero_and_to_be_alone() {
    let mut reg = registrar(Publish::FrontEnd);
    let now = Instant::now();
    for lines in [
        &["Contact: *"][..],
        &["Contact: *", "Expires: 5"],
        &["Contact: *", "Contact: <sip:a@192.0.2.1>", "Expires: 0"],
        &["Contact: *, <sip:a@192.0.2.1>", "Expires: 0"],
    ] {
        let r = reg.register(&register("c1", 1, lines), &alice(), udp(), now);
        assert_eq!(status(&r), 400, "{lines:?}");
    }
}

#[test]
fn bad_input_gets_400() {
    let mut reg = registrar(Publish::FrontEnd);
    let now = Instant::now();
    for lines in [
        &["Contact: <sip:a@192.0.2.1>", "Expires: soon"][..],
        &["Contact: <sip:a@192.0.2.1>;expires=x"],
        &["Contact: sip:a@192.0.2.1>"],
        &["Contact: <sip:a@192.0.2.1>;q=1.5"],
        &["Contact: <mailto:a@a.example>"],
        &["Contact: <sip:a@192.0.2.1>", "Path: not a uri"],
    ] {
        let r = reg.register(&register("c1", 1, lines), &alice(), udp(), now);
        assert_eq!(status(&r), 400, "{lines:?}: {}", text(&r));
    }
    assert!(reg.targets(&alice(), now).is_empty());
}

#[test]
fn same_call_id_needs_a_higher_cseq_and_another_call_id_replaces() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    ok(
        &mut reg,
        &register("c1", 5, &["Contact: <sip:a@192.0.2.1>"]),
        udp(),
        t0,
    );
    for seq in [5, 4] {
        let r = reg.register(
            &register("c1", seq, &["Contact: <sip:a@192.0.2.1>;expires=0"]),
            &alice(),
            udp(),
            t0,
        );
        assert_eq!(status(&r), 500);
        assert!(text(&r).starts_with("SIP/2.0 500 Out of order\r\n"));
        let r = reg.register(
            &register("c1", seq, &["Contact: *", "Expires: 0"]),
            &alice(),
            udp(),
            t0,
        );
        assert_eq!(status(&r), 500);
    }
    assert_eq!(reg.targets(&alice(), t0).len(), 1);
    // A different Call-ID (the UA rebooted) replaces the binding, even with
    // a lower CSeq.
    let r = ok(
        &mut reg,
        &register("c2", 1, &["Contact: <sip:a@192.0.2.1>;expires=120"]),
        udp(),
        t0,
    );
    assert_eq!(contacts(&r), ["<sip:a@192.0.2.1>;expires=120"]);
    let r = reg.register(
        &register("c2", 1, &["Contact: <sip:a@192.0.2.1>"]),
        &alice(),
        udp(),
        t0,
    );
    assert_eq!(status(&r), 500);
}

#[test]
fn too_many_bindings_is_403_and_changes_nothing() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    ok(
        &mut reg,
        &register("c1", 1, &["Contact: <sip:a@192.0.2.1>, <sip:b@192.0.2.1>"]),
        udp(),
        t0,
    );
    let r = reg.register(
        &register("c2", 1, &["Contact: <sip:c@192.0.2.1>, <sip:d@192.0.2.1>"]),
        &alice(),
        udp(),
        t0,
    );
    assert_eq!(status(&r), 403);
    assert_eq!(reg.targets(&alice(), t0).len(), 2);
    // Removing one while adding two fits (2 - 1 + 2 = 3).
    ok(
        &mut reg,
        &register(
            "c1",
            2,
            &["Contact: <sip:a@192.0.2.1>;expires=0, <sip:c@192.0.2.1>, <sip:d@192.0.2.1>"],
        ),
        udp(),
        t0,
    );
    assert_eq!(reg.targets(&alice(), t0).len(), 3);
    // Expired bindings do not count.
    let later = t0 + Duration::from_secs(3600);
    ok(
        &mut reg,
        &register("c3", 1, &["Contact: <sip:e@192.0.2.1>"]),
        udp(),
        later,
    );
    assert_eq!(reg.targets(&alice(), later).len(), 1);
}

#[test]
fn path_is_stored_in_order_and_echoed() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    let r = ok(
        &mut reg,
        &register(
            "c1",
            1,
            &[
                "Path: <sip:p1.example;lr>",
                "Path: <sip:p2.example;lr>",
                "Contact: <sip:a@192.0.2.1>",
            ],
        ),
        udp(),
        t0,
    );
    assert!(text(&r).contains("\r\nPath: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n"));
    let t = reg.targets(&alice(), t0);
    assert_eq!(t[0].path, ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
}

#[test]
fn targets_are_ordered_by_q_then_newest() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    ok(
        &mut reg,
        &register("c1", 1, &["Contact: <sip:low@192.0.2.1>;q=0.1"]),
        udp(),
        t0,
    );
    ok(
        &mut reg,
        &register("c2", 1, &["Contact: <sip:old@192.0.2.1>"]),
        udp(),
        t0,
    );
    let r = ok(
        &mut reg,
        &register("c3", 1, &["Contact: <sip:new@192.0.2.1>;q=1.0"]),
        udp(),
        t0,
    );
    assert!(contacts(&r).contains(&"<sip:low@192.0.2.1>;expires=3600;q=0.100".to_string()));
    let order: Vec<String> = reg
        .targets(&alice(), t0)
        .into_iter()
        .map(|t| t.uri)
        .collect();
    assert_eq!(
        order,
        [
            "sip:new@192.0.2.1",
            "sip:old@192.0.2.1",
            "sip:low@192.0.2.1"
        ]
    );
    // A refresh makes a binding the newest.
    ok(
        &mut reg,
        &register("c2", 2, &["Contact: <sip:old@192.0.2.1>"]),
        udp(),
        t0,
    );
    assert_eq!(reg.targets(&alice(), t0)[0].uri, "sip:old@192.0.2.1");
}

#[test]
fn bindings_behind_nat_or_on_a_flow_are_reached_through_their_source() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    // Contact names the source: sent to the Contact.
    ok(
        &mut reg,
        &register("c1", 1, &["Contact: <sip:a@192.0.2.1:5060>"]),
        udp(),
        t0,
    );
    assert_eq!(reg.targets(&alice(), t0)[0].via, None);
    // Default port 5060 equals the source port.
    ok(
        &mut reg,
        &register(
            "c1",
            2,
            &["Contact: <sip:a@192.0.2.1:5060>;expires=0, <sip:a@192.0.2.1>"],
        ),
        udp(),
        t0,
    );
    let t = reg.targets(&alice(), t0);
    assert_eq!(
        (t.len(), t[0].uri.as_str(), t[0].via),
        (1, "sip:a@192.0.2.1", None)
    );
    // Private Contact, public source: behind NAT.
    let nat = Peer {
        protocol: Protocol::Udp,
        addr: "203.0.113.9:40000"
            .parse::<SocketAddr>()
            .expect("valid in this test"),
        flow: None,
    };
    ok(
        &mut reg,
        &register("c2", 1, &["Contact: <sip:b@10.0.0.2:5060>"]),
        nat,
        t0,
    );
    let b = reg
        .targets(&alice(), t0)
        .into_iter()
        .find(|t| t.uri.starts_with("sip:b@"))
        .expect("valid in this test");
    assert_eq!(b.via, Some(nat));
    // Over TCP: through the flow even when the Contact names the source.
    let tcp = Peer {
        protocol: Protocol::Tcp,
        addr: "192.0.2.1:5060".parse().expect("valid in this test"),
        flow: Some(FlowId(7)),
    };
    ok(
        &mut reg,
        &register("c3", 1, &["Contact: <sip:c@192.0.2.1:5060;transport=tcp>"]),
        tcp,
        t0,
    );
    let c = reg
        .targets(&alice(), t0)
        .into_iter()
        .find(|t| t.uri.starts_with("sip:c@"))
        .expect("valid in this test");
    assert_eq!(c.via, Some(tcp));
}

fn front_end(reg: &Registrar) -> String {
    format!("sip:{}@fe.example:5060;transport=udp", reg.token(&alice()))
}

#[test]
fn publishes_the_front_end_once_and_refreshes_cost_nothing() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    let m = register("c1", 1, &["Contact: <sip:a@192.0.2.1>"]);
    let r = reg.register(&m, &alice(), udp(), t0);
    let RegisterResult::Publish { publication, ok } = &r else {
        panic!("first registration must publish: {}", text(&r));
    };
    assert_eq!(publication.aor, alice());
    assert_eq!(publication.endpoint, front_end(&reg));
    assert!(publication.endpoint.starts_with("sip:fe-"));
    assert_eq!(publication.ttl, Duration::from_secs(TTL));
    assert!(String::from_utf8_lossy(ok).starts_with("SIP/2.0 200 OK\r\n"));
    // While it is in flight, the same publication is not asked again.
    let r2 = reg.register(
        &register("c1", 2, &["Contact: <sip:a@192.0.2.1>"]),
        &alice(),
        udp(),
        t0,
    );
    assert!(matches!(r2, RegisterResult::Reply(_)));
    reg.published(publication, t0);
    // The refresh: Reply at once.
    let r3 = reg.register(
        &register("c1", 3, &["Contact: <sip:a@192.0.2.1>"]),
        &alice(),
        udp(),
        t0,
    );
    assert!(matches!(r3, RegisterResult::Reply(_)));
    assert_eq!(status(&r3), 200);
    // A second binding does not move the front-end endpoint.
    let r4 = reg.register(
        &register("c2", 1, &["Contact: <sip:b@192.0.2.1>"]),
        &alice(),
        udp(),
        t0,
    );
    assert!(matches!(r4, RegisterResult::Reply(_)));
    // With less than half the ttl left, the next refresh republishes.
    let late = t0 + Duration::from_secs(TTL / 2 + 1);
    let r5 = reg.register(
        &register("c1", 4, &["Contact: <sip:a@192.0.2.1>"]),
        &alice(),
        udp(),
        late,
    );
    let RegisterResult::Publish {
        publication: p5, ..
    } = r5
    else {
        panic!("half-life must republish");
    };
    assert_eq!(p5.endpoint, front_end(&reg));
    reg.published(&p5, late);
    let r6 = reg.register(
        &register("c1", 5, &["Contact: <sip:a@192.0.2.1>"]),
        &alice(),
        udp(),
        late,
    );
    assert!(matches!(r6, RegisterResult::Reply(_)));
}

#[test]
fn a_failed_publication_is_asked_again() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    let r = reg.register(
        &register("c1", 1, &["Contact: <sip:a@192.0.2.1>"]),
        &alice(),
        udp(),
        t0,
    );
    let RegisterResult::Publish { publication, .. } = r else {
        panic!()
    };
    reg.publish_failed(&publication);
    let r = reg.register(
        &register("c1", 2, &["Contact: <sip:a@192.0.2.1>"]),
        &alice(),
        udp(),
        t0,
    );
    let RegisterResult::Publish {
        publication: again, ..
    } = r
    else {
        panic!("the retry must publish");
    };
    assert_eq!(again, publication);
}

#[test]
fn contact_mode_publishes_a_lone_direct_udp_contact_else_the_front_end() {
    let mut reg = registrar(Publish::Contact);
    let t0 = Instant::now();
    let publish = |reg: &mut Registrar, m: Message, from: Peer| -> Option<String> {
        match reg.register(&m, &alice(), from, t0) {
            RegisterResult::Publish { publication, .. } => {
                reg.published(&publication, t0);
                Some(publication.endpoint)
            }
            RegisterResult::Reply(b) => {
                assert!(
                    b.starts_with(b"SIP/2.0 200"),
                    "{}",
                    String::from_utf8_lossy(&b)
                );
                None
            }
        }
    };
    let one = publish(
        &mut reg,
        register("c1", 1, &["Contact: <sip:a@192.0.2.1>"]),
        udp(),
    );
    assert_eq!(one.as_deref(), Some("sip:a@192.0.2.1"));
    // Refresh: nothing.
    assert_eq!(
        publish(
            &mut reg,
            register("c1", 2, &["Contact: <sip:a@192.0.2.1>"]),
            udp()
        ),
        None
    );
    // A second binding: the front end.
    let two = publish(
        &mut reg,
        register("c2", 1, &["Contact: <sip:b@192.0.2.1>"]),
        udp(),
    );
    assert_eq!(two, Some(front_end(&reg)));
    // Back to one: the Contact again.
    let back = publish(
        &mut reg,
        register("c2", 2, &["Contact: <sip:b@192.0.2.1>;expires=0"]),
        udp(),
    );
    assert_eq!(back.as_deref(), Some("sip:a@192.0.2.1"));
    // All removed: the front end replaces the stale Contact.
    let gone = publish(
        &mut reg,
        register("c1", 3, &["Contact: *", "Expires: 0"]),
        udp(),
    );
    assert_eq!(gone, Some(front_end(&reg)));
    // A lone binding behind NAT, or with a Path, is not published directly.
    let nat = Peer {
        protocol: Protocol::Udp,
        addr: "203.0.113.9:40000".parse().expect("valid in this test"),
        flow: None,
    };
    assert_eq!(
        publish(
            &mut reg,
            register("c3", 1, &["Contact: <sip:n@10.0.0.2>"]),
            nat
        ),
        None
    );
    let mut reg = registrar(Publish::Contact);
    let p = publish(
        &mut reg,
        register(
            "c4",
            1,
            &["Path: <sip:p.example;lr>", "Contact: <sip:a@192.0.2.1>"],
        ),
        udp(),
    );
    assert_eq!(p, Some(front_end(&reg)));
}

#[test]
fn tokens_map_back_to_registered_and_known_aors() {
    let mut reg = registrar(Publish::FrontEnd);
    let bob = Aor::new("bob", "a.example");
    assert_eq!(reg.token_aor(&reg.token(&bob)), None);
    reg.know(&bob);
    assert_eq!(reg.token_aor(&reg.token(&bob)), Some(&bob));
    let t0 = Instant::now();
    ok(
        &mut reg,
        &register("c1", 1, &["Contact: <sip:a@192.0.2.1>"]),
        udp(),
        t0,
    );
    assert_eq!(reg.token_aor(&reg.token(&alice())), Some(&alice()));
    // Still known after the bindings expire.
    reg.expire(t0 + Duration::from_secs(4000));
    assert!(reg.targets(&alice(), t0).is_empty());
    assert_eq!(reg.token_aor(&reg.token(&alice())), Some(&alice()));
    assert_eq!(reg.token_aor("fe-00000000000000000000"), None);
}

#[test]
fn expire_drops_due_bindings_and_next_expiry_says_when() {
    let mut reg = registrar(Publish::FrontEnd);
    let t0 = Instant::now();
    assert_eq!(reg.next_expiry(), None);
    ok(
        &mut reg,
        &register(
            "c1",
            1,
            &["Contact: <sip:a@192.0.2.1>;expires=100, <sip:b@192.0.2.1>;expires=200"],
        ),
        udp(),
        t0,
    );
    assert_eq!(reg.next_expiry(), Some(t0 + Duration::from_secs(100)));
    reg.expire(t0 + Duration::from_secs(100));
    assert_eq!(reg.next_expiry(), Some(t0 + Duration::from_secs(200)));
    let q = reg.register(
        &register("q", 1, &[]),
        &alice(),
        udp(),
        t0 + Duration::from_secs(150),
    );
    assert_eq!(contacts(&q), ["<sip:b@192.0.2.1>;expires=50"]);
}

#[test]
fn star_without_bindings_and_ipv6_sources() {
    let mut reg = registrar(Publish::Contact);
    let t0 = Instant::now();
    let r = reg.register(
        &register("c1", 1, &["Contact: *", "Expires: 0"]),
        &alice(),
        udp(),
        t0,
    );
    assert!(matches!(r, RegisterResult::Reply(_)));
    assert_eq!(status(&r), 200);
    let v6 = Peer {
        protocol: Protocol::Udp,
        addr: "[2001:db8::1]:5070".parse().expect("valid in this test"),
        flow: None,
    };
    let r = reg.register(
        &register("c2", 1, &["Contact: <sip:a@[2001:db8::1]:5070>"]),
        &alice(),
        v6,
        t0,
    );
    let RegisterResult::Publish { publication, .. } = r else {
        panic!("a lone direct Contact is published");
    };
    assert_eq!(publication.endpoint, "sip:a@[2001:db8::1]:5070");
    assert_eq!(reg.targets(&alice(), t0)[0].via, None);
}

proptest::proptest! {
    /// Whatever the Contact, Expires and Path values, the registrar answers
    /// with a status and never panics.
    #[test]
    fn never_panics(contact in "[ -~]{0,40}", expires in "[ -~]{0,6}", path in "[ -~]{0,20}") {
        let mut reg = registrar(Publish::Contact);
        let c = format!("Contact: {contact}");
        let e = format!("Expires: {expires}");
        let p = format!("Path: {path}");
        let s = format!(
            "REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
             From: <sip:alice@a.example>;tag=f\r\nTo: <sip:alice@a.example>\r\nCall-ID: x\r\n\
             CSeq: 1 REGISTER\r\n{c}\r\n{e}\r\n{p}\r\nContent-Length: 0\r\n\r\n"
        );
        if let Ok(Some(m)) = parse_datagram(s.as_bytes(), &Limits::default()) {
            let r = reg.register(&m, &alice(), udp(), Instant::now());
            let code = status(&r);
            proptest::prop_assert!([200, 400, 403, 423, 500].contains(&code), "{}", code);
        }
    }
}
