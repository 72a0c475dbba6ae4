//! Header values: our parsers against rsip 0.4's typed headers. Where both
//! accept, the fields agree; where they differ, rsip's behaviour is pinned
//! here, which is why `headers` uses its own parsers (see its module doc).

use rsip::prelude::*;
use sharecall_sip::headers::{parse_max_forwards, AuthParams, CSeq, Contact, NameAddr, Via};

fn ok<T, E>(r: &Result<T, E>) -> bool {
    r.is_ok()
}

#[test]
fn via_agrees_where_rsip_parses_and_rsip_fails_lws_and_accepts_empty_params() {
    let v = "SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKa;rport";
    let theirs = rsip::headers::Via::new(v).typed().expect("rsip parses");
    let ours = Via::parse(v).expect("we parse");
    assert_eq!(
        theirs.branch().map(|b| b.to_string()),
        ours.branch().map(str::to_owned)
    );
    assert_eq!(
        theirs.uri.host_with_port.port.map(|p| *p.value()),
        ours.port
    );
    // RFC 4475 wsinv: LWS around '/' is legal.
    let wsinv = "SIP  /   2.0 /UDP     192.0.2.2;branch=390skdjuw";
    assert!(ok(&Via::parse(wsinv)));
    assert!(!ok(&rsip::headers::Via::new(wsinv).typed()));
    // RFC 4475 badinv01: empty parameters are not.
    let bad = "SIP/2.0/UDP 192.0.2.15;;,;,,";
    assert!(!ok(&Via::parse(bad)));
    assert!(ok(&rsip::headers::Via::new(bad).typed()));
}

#[test]
fn to_from_rsip_accepts_baddn_and_quotbal() {
    let v = "sip:user@example.com;tag=3xfe";
    let theirs = rsip::headers::To::new(v).typed().expect("rsip parses");
    let ours = NameAddr::parse("To", v).expect("we parse");
    assert_eq!(
        theirs.tag().map(|t| t.to_string()),
        ours.tag().map(str::to_owned)
    );
    assert_eq!(theirs.uri.to_string(), ours.uri);
    for bad in [
        "Watson, Thomas <sip:t.watson@example.org>",
        "\"Mr. J. User <sip:j.user@example.com>",
    ] {
        assert!(!ok(&NameAddr::parse("To", bad)), "{bad}");
        assert!(ok(&rsip::headers::To::new(bad).typed()), "{bad}");
    }
    // badaspec: both refuse.
    let bad = "\"Watson, Thomas\" < sip:t.watson@example.org >";
    assert!(!ok(&NameAddr::parse("To", bad)));
    assert!(!ok(&rsip::headers::To::new(bad).typed()));
}

#[test]
fn contact_rsip_has_no_star_and_agrees_on_params() {
    let v = "<sip:a@b.example>;expires=60";
    let theirs = rsip::headers::Contact::new(v).typed().expect("rsip parses");
    let Contact::Addrs(ours) = Contact::parse(v).expect("we parse") else {
        panic!("not *")
    };
    assert_eq!(
        theirs.expires().and_then(|e| e.seconds().ok()),
        ours[0].expires().expect("expires")
    );
    assert_eq!(Contact::parse("*").expect("star"), Contact::Star);
    let star = rsip::headers::Contact::new("*")
        .typed()
        .expect("rsip parses *");
    assert_eq!(
        star.uri.host_with_port.to_string(),
        "*",
        "rsip reads * as a host"
    );
}

#[test]
fn cseq_rsip_is_right_on_numbers_but_refuses_extension_methods() {
    for v in ["0009 INVITE", "7 REGISTER"] {
        let theirs = rsip::headers::CSeq::new(v).typed().expect("rsip parses");
        let ours = CSeq::parse(v).expect("we parse");
        assert_eq!(
            (theirs.seq, theirs.method.to_string()),
            (ours.seq, ours.method)
        );
    }
    let big = "36893488147419103232 REGISTER";
    assert!(!ok(&CSeq::parse(big)) && !ok(&rsip::headers::CSeq::new(big).typed()));
    // RFC 4475 esc02/intmeth: extension methods are tokens.
    for v in ["29344 RE%47IST%45R", "8 NEWMETHOD"] {
        assert!(ok(&CSeq::parse(v)));
        assert!(!ok(&rsip::headers::CSeq::new(v).typed()));
    }
}

#[test]
fn max_forwards_rsip_accepts_above_255() {
    assert_eq!(
        rsip::headers::MaxForwards::new("0068").num().ok(),
        parse_max_forwards("0068").ok().map(u32::from)
    );
    assert!(ok(&rsip::headers::MaxForwards::new("300").num()));
    assert!(!ok(&parse_max_forwards("300")));
}

#[test]
fn authorization_rsip_refuses_sha256() {
    let md5 = "Digest username=\"bob\", realm=\"x.org\", nonce=\"n\", uri=\"sip:x.org\", response=\"abc\"";
    let theirs = rsip::headers::Authorization::new(md5)
        .typed()
        .expect("rsip parses");
    let ours = AuthParams::parse("Authorization", md5).expect("we parse");
    assert_eq!(Some(theirs.username.as_str()), ours.get("username"));
    assert_eq!(Some(theirs.nonce.as_str()), ours.get("nonce"));
    assert_eq!(Some(theirs.response.as_str()), ours.get("response"));
    let sha = format!("{md5}, algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c\"");
    assert_eq!(
        AuthParams::parse("Authorization", &sha)
            .expect("we parse")
            .get("algorithm"),
        Some("SHA-256")
    );
    assert!(
        !ok(&rsip::headers::Authorization::new(sha).typed()),
        "RFC 8760 SHA-256 unknown to rsip"
    );
}
