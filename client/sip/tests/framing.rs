//! Framer and model: limits, keep-alives, compact names, edits, and a
//! property test that a proxy's edits change exactly the intended lines.

use proptest::prelude::*;
use sharecall_sip::framer::PONG;
use sharecall_sip::message::build_response;
use sharecall_sip::{
    parse_datagram, Disposition, Limits, Message, ParseError, StreamEvent, StreamFramer,
};

const REQ: &str = "OPTIONS sip:b@example.com SIP/2.0\r\nv: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\nf: <sip:a@example.com>;tag=1\r\nt: <sip:b@example.com>\r\ni: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nl: 4\r\n\r\nbody";

fn drain(f: &mut StreamFramer) -> Result<Vec<StreamEvent>, ParseError> {
    let mut out = Vec::new();
    while let Some(e) = f.next_event()? {
        out.push(e);
    }
    Ok(out)
}

#[test]
fn compact_names_are_canonical() {
    let m = parse_datagram(REQ.as_bytes(), &Limits::default())
        .expect("ok")
        .expect("msg");
    let names: Vec<&str> = m.headers().map(|h| h.name).collect();
    assert_eq!(
        names,
        [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Max-Forwards",
            "Content-Length"
        ]
    );
    assert_eq!(m.body(), b"body");
    m.validate().expect("valid");
    assert_eq!(m.headers_named("call-id").count(), 1);
    assert_eq!(m.headers_named("I").count(), 1);
}

#[test]
fn stream_keepalives_and_back_to_back_messages() {
    let mut f = StreamFramer::new(Limits::default());
    // Ping, then a stray CRLF, then two messages in one read.
    f.feed(b"\r\n\r\n");
    assert_eq!(drain(&mut f).expect("ok"), vec![StreamEvent::Ping]);
    assert_eq!(PONG, b"\r\n");
    f.feed(b"\r\n");
    assert!(drain(&mut f).expect("ok").is_empty(), "half a ping waits");
    f.feed(format!("{REQ}{REQ}").as_bytes());
    let ev = drain(&mut f).expect("ok");
    assert_eq!(ev.len(), 2);
    for e in ev {
        let StreamEvent::Message(m) = e else {
            panic!("{e:?}")
        };
        assert_eq!(m.to_bytes(), REQ.as_bytes());
    }
    assert_eq!(f.buffered(), 0);
}

#[test]
fn stream_requires_content_length_and_stays_failed() {
    let mut f = StreamFramer::new(Limits::default());
    f.feed(REQ.replace("l: 4\r\n", "").as_bytes());
    let e = drain(&mut f).expect_err("missing CL");
    assert_eq!(e, ParseError::MissingContentLength);
    assert_eq!(e.disposition(false, true), Disposition::ReplyAndClose(400));
    f.feed(REQ.as_bytes());
    assert_eq!(
        f.next_event(),
        Err(ParseError::MissingContentLength),
        "a failed stream stays failed"
    );
}

#[test]
fn limits_are_enforced_with_typed_errors() {
    let small = Limits {
        max_header_bytes: 64,
        max_body_bytes: 3,
        max_headers: 4,
    };
    assert_eq!(
        parse_datagram(
            REQ.as_bytes(),
            &Limits {
                max_header_bytes: 64,
                ..Limits::default()
            }
        ),
        Err(ParseError::HeadersTooLarge { limit: 64 })
    );
    assert_eq!(
        parse_datagram(
            REQ.as_bytes(),
            &Limits {
                max_headers: 4,
                ..Limits::default()
            }
        ),
        Err(ParseError::TooManyHeaders { limit: 4 })
    );
    assert_eq!(
        parse_datagram(
            REQ.as_bytes(),
            &Limits {
                max_body_bytes: 3,
                ..Limits::default()
            }
        ),
        Err(ParseError::BodyTooLarge { len: 4, limit: 3 })
    );
    // On a stream an endless header section is refused once it passes the
    // limit, without waiting for its end (slow-loris bound).
    let mut f = StreamFramer::new(small);
    f.feed(b"OPTIONS sip:x SIP/2.0\r\n");
    assert_eq!(f.next_event(), Ok(None));
    f.feed(&[b'a'; 100]);
    let e = f.next_event().expect_err("too large");
    assert_eq!(e.status(), 513);
    // A body announced beyond the limit is refused before it arrives.
    let mut f = StreamFramer::new(Limits {
        max_body_bytes: 10,
        ..Limits::default()
    });
    f.feed(REQ.replace("l: 4", "l: 11").as_bytes());
    assert_eq!(
        f.next_event(),
        Err(ParseError::BodyTooLarge { len: 11, limit: 10 })
    );
}

#[test]
fn datagram_body_rules() {
    let l = Limits::default();
    assert_eq!(parse_datagram(b"\r\n\r\n", &l), Ok(None), "keep-alive");
    let short = REQ.replace("l: 4", "l: 5");
    assert_eq!(
        parse_datagram(short.as_bytes(), &l),
        Err(ParseError::BodyTruncated {
            expected: 5,
            got: 4
        })
    );
    let extra = format!("{REQ}trailing");
    let m = parse_datagram(extra.as_bytes(), &l)
        .expect("ok")
        .expect("msg");
    assert_eq!(m.to_bytes(), REQ.as_bytes(), "extra bytes dropped");
    assert_eq!(
        parse_datagram(b"OPTIONS sip:x SIP/2.0\r\nVia: x", &l),
        Err(ParseError::NoEndOfHeaders)
    );
}

#[test]
fn route_record_route_and_uri_edits() {
    let text = "INVITE sip:svc@p.example SIP/2.0\r\nRoute: <sip:p.example;lr>,\r\n <sip:q.example;lr>\r\nRecord-Route: <sip:x.example;lr>\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\nl: 0\r\n\r\n";
    let mut m = parse_datagram(text.as_bytes(), &Limits::default())
        .expect("ok")
        .expect("msg");
    assert_eq!(m.pop_top_route().as_deref(), Some("<sip:p.example;lr>"));
    assert_eq!(m.values("Route"), ["<sip:q.example;lr>"]);
    m.add_record_route("<sip:me.example;lr>");
    assert_eq!(
        m.values("Record-Route"),
        ["<sip:me.example;lr>", "<sip:x.example;lr>"]
    );
    assert_eq!(
        m.remove_top_via().as_deref(),
        Some("SIP/2.0/UDP a;branch=z9hG4bK1")
    );
    assert_eq!(m.vias().expect("via").len(), 1);
    m.set_request_uri("sip:bob@10.0.0.2:5060").expect("uri");
    assert_eq!(m.request_uri(), Some("sip:bob@10.0.0.2:5060"));
    m.set_max_forwards(69);
    assert_eq!(
        String::from_utf8(m.to_bytes()).expect("utf8"),
        "INVITE sip:bob@10.0.0.2:5060 SIP/2.0\r\nMax-Forwards: 69\r\nRoute: <sip:q.example;lr>\r\nRecord-Route: <sip:me.example;lr>\r\nRecord-Route: <sip:x.example;lr>\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nl: 0\r\n\r\n"
    );
    assert!(m.set_request_uri("<sip:x>").is_err());
    assert_eq!(m.pop_top_route().as_deref(), Some("<sip:q.example;lr>"));
    assert_eq!(m.pop_top_route(), None);
}

#[test]
fn build_response_copies_and_tags() {
    let m = parse_datagram(REQ.as_bytes(), &Limits::default())
        .expect("ok")
        .expect("msg");
    let r = build_response(
        &m,
        404,
        "Not Found",
        Some("xyz"),
        &["Retry-After: 5".into()],
    );
    let r = parse_datagram(&r, &Limits::default())
        .expect("ok")
        .expect("msg");
    r.validate().expect("valid response");
    assert_eq!(r.status(), Some(404));
    assert_eq!(r.to().expect("to").tag(), Some("xyz"));
    assert_eq!(r.values("Retry-After"), ["5"]);
    assert_eq!(r.call_id().expect("cid"), "c1");
}

#[test]
fn garbage_and_truncations_never_panic() {
    let base = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rfc4475/wsinv.dat"
    ))
    .expect("file");
    for cut in 0..base.len() {
        let b = &base[..cut];
        if let Ok(Some(m)) = parse_datagram(b, &Limits::default()) {
            let _ = m.validate();
            let _ = m.to_bytes();
        }
        let mut f = StreamFramer::new(Limits::default());
        f.feed(b);
        let _ = drain(&mut f);
    }
    // Pseudo-random bytes and byte flips (deterministic xorshift).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..(next() % 8) {
            let i = (next() as usize) % b.len();
            b[i] = next() as u8;
        }
        let len = (next() as usize) % (b.len() + 1);
        b.truncate(len);
        if let Ok(Some(mut m)) = parse_datagram(&b, &Limits::default()) {
            let _ = m.validate();
            let _ = m.vias();
            let _ = m.contact();
            let _ = m.decrement_max_forwards();
            let _ = m.remove_top_via();
            let _ = m.pop_top_route();
            let _ = m.to_bytes();
        }
        let mut f = StreamFramer::new(Limits::default());
        for c in b.chunks(1 + (next() as usize) % 64) {
            f.feed(c);
            let _ = drain(&mut f);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any well-formed message: random extra headers (compact or long,
    /// odd case, whitespace before and after the colon, folded values), a
    /// random body; after Max-Forwards decrement and a Via prepend, the
    /// output equals the input with exactly those two line edits.
    #[test]
    fn proxy_edits_change_only_their_lines(
        extra in proptest::collection::vec(
            (prop_oneof![Just("s".to_owned()), Just("k".to_owned()), Just("Subject".to_owned()), Just("X-Odd".to_owned()), "[A-Za-z][A-Za-z0-9-]{0,12}"],
             "[ \t]{0,2}", "[ \t]{0,3}", "[!-~]([ -~]{0,30}[!-~])?", proptest::option::of("[!-~]{1,10}")),
            0..12),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        mf in 1u8..=255,
        mf_name in prop_oneof![Just("Max-Forwards"), Just("max-forwards"), Just("MAX-FORWARDS")],
        via_name in prop_oneof![Just("Via"), Just("v"), Just("VIA")],
        stream in any::<bool>(),
    ) {
        let mut head = String::from("INVITE sip:bob@b.example SIP/2.0\r\n");
        head += &format!("{via_name}: SIP/2.0/UDP a.example;branch=z9hG4bKx\r\n");
        for (name, pre, post, value, fold) in &extra {
            // Names must not collide with the ones the edits touch.
            if ["via", "v", "max-forwards", "content-length", "l"].contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            head += &format!("{name}{pre}:{post}{value}");
            if let Some(f) = fold {
                head += &format!("\r\n {f}");
            }
            head += "\r\n";
        }
        let mf_line = format!("{mf_name}: {mf}");
        head += &format!("{mf_line}\r\nContent-Length: {}\r\n\r\n", body.len());
        let mut input = head.clone().into_bytes();
        input.extend_from_slice(&body);

        let m = if stream {
            let mut f = StreamFramer::new(Limits::default());
            for c in input.chunks(7) { f.feed(c); }
            match f.next_event() {
                Ok(Some(StreamEvent::Message(m))) => m,
                other => panic!("{other:?}"),
            }
        } else {
            parse_datagram(&input, &Limits::default()).expect("frames").expect("message")
        };
        let mut m: Message = m;
        prop_assert_eq!(m.to_bytes(), input.clone());
        prop_assert_eq!(m.decrement_max_forwards().expect("forwardable"), mf - 1);
        m.prepend_via("SIP/2.0/TCP proxy.example;branch=z9hG4bKp");
        let expected = head
            .replacen(&format!("{via_name}: "), &format!("Via: SIP/2.0/TCP proxy.example;branch=z9hG4bKp\r\n{via_name}: "), 1)
            .replacen(&mf_line, &format!("{mf_name}: {}", mf - 1), 1);
        let mut expected = expected.into_bytes();
        expected.extend_from_slice(&body);
        prop_assert_eq!(m.to_bytes(), expected);
        prop_assert_eq!(m.body(), body.as_slice());
    }
}

#[test]
fn every_compact_name_expands() {
    use sharecall_sip::message::canonical_name;
    let table = [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("f", "From"),
        ("t", "To"),
        ("v", "Via"),
        ("k", "Supported"),
        ("s", "Subject"),
        ("c", "Content-Type"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("x", "Session-Expires"),
        ("y", "Identity"),
    ];
    for (short, long) in table {
        assert_eq!(canonical_name(short.as_bytes()), long);
        assert_eq!(canonical_name(short.to_ascii_uppercase().as_bytes()), long);
        assert_eq!(canonical_name(long.to_ascii_lowercase().as_bytes()), long);
    }
    assert_eq!(canonical_name(b"MaX-fOrWaRdS"), "Max-Forwards");
    assert_eq!(
        canonical_name(b"X-Odd-Thing"),
        "X-Odd-Thing",
        "unknown names kept as written"
    );
    assert_eq!(canonical_name(b"q"), "q", "not a compact form");
}
