//! The whole sans-IO front end: registrar, digest authentication, location
//! jobs and the proxy, driven by parsed messages and fake time. The test
//! plays the server: it answers the Resolve and Publish jobs the core asks
//! for, as the location service would.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sharecall_frontend::aor::{Aor, TokenKey};
use sharecall_frontend::auth::{ha1, qop_auth_response, Algorithm, AuthConfig};
use sharecall_frontend::config::{Mode, Publish};
use sharecall_frontend::core::{Core, CoreConfig, Input, JobId, Output};
use sharecall_frontend::location::{LocationError, Publication, Resolved};
use sharecall_frontend::metrics::Metrics;
use sharecall_frontend::peer::{Dest, Local, Peer, Protocol};
use sharecall_frontend::registrar::RegistrarConfig;
use sharecall_frontend::users::Users;
use sharecall_sip::headers::AuthParams;
use sharecall_sip::transaction::TimerConfig;
use sharecall_sip::{parse_datagram, Limits, Message};

const ALICE_PHONE: &str = "192.0.2.11:5062";
const BOB_PHONE: &str = "192.0.2.12:5064";
const CAROL_PROXY: &str = "198.51.100.7:5060";

fn msg(text: &str) -> Message {
    parse_datagram(text.as_bytes(), &Limits::default())
        .expect("valid")
        .expect("not a keep-alive")
}

fn udp(s: &str) -> Peer {
    Peer {
        protocol: Protocol::Udp,
        addr: s.parse::<SocketAddr>().expect("address"),
        flow: None,
    }
}

fn local() -> Local {
    Local {
        protocol: Protocol::Udp,
        host: "127.0.0.1".to_owned(),
        port: 5060,
    }
}

fn config(mode: Mode, max: usize) -> CoreConfig {
    let users = Users::parse(
        "[[user]]\nname = \"alice\"\npassword = \"pa\"\n\n[[user]]\nname = \"bob\"\npassword = \"pb\"\n",
        "a.example",
        Path::new("/"),
    )
    .expect("users");
    CoreConfig {
        domains: vec!["a.example".to_owned()],
        locals: vec![local()],
        mode,
        record_route: true,
        registrar: RegistrarConfig {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 86_400,
            max_bindings: 10,
            publish: Publish::FrontEnd,
            publish_ttl: Duration::from_secs(86_400),
            public: local(),
        },
        auth: AuthConfig {
            realm: "a.example".to_owned(),
            algorithms: vec![Algorithm::Sha256],
            nonce_lifetime: Duration::from_secs(300),
        },
        timers: TimerConfig::default(),
        users: Arc::new(users),
        token_key: TokenKey::new([9; 32]),
        auth_secret: [3; 32],
        max_transactions: max,
    }
}

struct Fe {
    core: Core,
    now: Instant,
    out: Vec<Output>,
}

impl Fe {
    fn new(mode: Mode) -> Fe {
        Fe::with(config(mode, 1000))
    }

    fn with(cfg: CoreConfig) -> Fe {
        let now = Instant::now();
        Fe {
            core: Core::new(cfg, Metrics::new(), now),
            now,
            out: Vec::new(),
        }
    }

    /// Feeds a message; returns what the core did.
    fn recv(&mut self, text: &str, from: Peer) -> Vec<Output> {
        self.input(Input::Received {
            msg: msg(text),
            from,
        })
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        self.out.clear();
        self.core.handle(input, self.now, &mut self.out);
        std::mem::take(&mut self.out)
    }

    fn advance(&mut self, d: Duration) -> Vec<Output> {
        self.now += d;
        self.out.clear();
        self.core.on_timer(self.now, &mut self.out);
        std::mem::take(&mut self.out)
    }
}

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

/// The statuses sent to `to`, in order.
fn statuses_to(out: &[Output], to: &str) -> Vec<u16> {
    sends(out)
        .iter()
        .filter(|(d, t)| *d == Dest::Peer(udp(to)) && t.starts_with("SIP/2.0"))
        .map(|(_, t)| status(t))
        .collect()
}

fn resolve_job(out: &[Output]) -> Option<(JobId, Aor)> {
    out.iter().find_map(|o| match o {
        Output::Resolve { job, aor } => Some((*job, aor.clone())),
        _ => None,
    })
}

fn publish_job(out: &[Output]) -> Option<(JobId, Publication)> {
    out.iter().find_map(|o| match o {
        Output::Publish { job, publication } => Some((*job, publication.clone())),
        _ => None,
    })
}

fn register(user: &str, phone: &str, branch: &str, cseq: u32, auth: &str) -> String {
    format!(
        "REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@a.example>;tag=r{cseq}\r\nTo: <sip:{user}@a.example>\r\n\
         Call-ID: reg-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{phone}>\r\nExpires: 600\r\n\
         {auth}Content-Length: 0\r\n\r\n"
    )
}

/// The Authorization line answering the challenge in `resp`.
fn answer(resp: &str, user: &str, password: &str, method: &str, uri: &str, proxy: bool) -> String {
    let (challenge, line) = if proxy {
        ("Proxy-Authenticate", "Proxy-Authorization")
    } else {
        ("WWW-Authenticate", "Authorization")
    };
    let m = msg(resp);
    // The whole field: a challenge's parameters are comma-separated too.
    let v = m
        .headers_named(challenge)
        .next()
        .expect("a challenge")
        .value();
    let p = AuthParams::parse(challenge, &v).expect("params");
    let realm = p.get("realm").expect("realm");
    let nonce = p.get("nonce").expect("nonce");
    let h = ha1(Algorithm::Sha256, user, realm, password);
    let r = qop_auth_response(
        Algorithm::Sha256,
        &h,
        nonce,
        "00000001",
        "c0ffee",
        method,
        uri,
    );
    format!(
        "{line}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{r}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\n"
    )
}

/// Registers `user` from `phone` through challenge, credentials and a
/// successful publication: returns the published endpoint.
fn registered(fe: &mut Fe, user: &str, password: &str, phone: &str) -> String {
    let out = fe.recv(
        &register(user, phone, &format!("z9hG4bK{user}1"), 1, ""),
        udp(phone),
    );
    assert!(publish_job(&out).is_none());
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(status(&s[0].1), 401);
    let auth = answer(&s[0].1, user, password, "REGISTER", "sip:a.example", false);
    let out = fe.recv(
        &register(user, phone, &format!("z9hG4bK{user}2"), 2, &auth),
        udp(phone),
    );
    let (job, publication) = publish_job(&out).expect("a publication");
    assert!(
        sends(&out).is_empty(),
        "no answer before the publication is done"
    );
    assert_eq!(publication.aor, Aor::new(user, "a.example"));
    let out = fe.input(Input::Published {
        job,
        result: Ok(()),
    });
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, Dest::Peer(udp(phone)));
    assert_eq!(status(&s[0].1), 200);
    assert!(s[0].1.contains(&format!("{user}@{phone}")));
    publication.endpoint
}

fn invite(from: &str, to_uri: &str, branch: &str, extra: &str) -> String {
    format!(
        "INVITE {to_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CAROL_PROXY};branch={branch}\r\nMax-Forwards: 70\r\n\
         From: <{from}>;tag=c1\r\nTo: <{to_uri}>\r\nCall-ID: call-{branch}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:carol@{CAROL_PROXY}>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// A response to a forwarded request, as the phone would send it.
fn response_to(fwd: &str, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in fwd.split("\r\n").skip(1) {
        let name = line.split(':').next().unwrap_or_default();
        match name {
            "Via" | "From" | "Call-ID" | "CSeq" | "Record-Route" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "To" => {
                out.push_str(line);
                out.push_str(";tag=b1\r\n");
            }
            _ => {}
        }
    }
    if code == 200 {
        out.push_str(&format!("Contact: <sip:bob@{BOB_PHONE}>\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

#[test]
fn register_is_challenged_then_published_then_answered() {
    let mut fe = Fe::new(Mode::Proxy);
    let endpoint = registered(&mut fe, "alice", "pa", ALICE_PHONE);
    assert!(endpoint.contains("fe-"), "{endpoint}");
    assert!(endpoint.contains("127.0.0.1:5060"), "{endpoint}");
}

#[test]
fn unauthenticated_or_foreign_registers_never_publish() {
    let mut fe = Fe::new(Mode::Proxy);
    // Wrong password.
    let out = fe.recv(
        &register("alice", ALICE_PHONE, "z9hG4bKw1", 1, ""),
        udp(ALICE_PHONE),
    );
    let challenge = sends(&out).pop().expect("401").1;
    let bad = answer(
        &challenge,
        "alice",
        "wrong",
        "REGISTER",
        "sip:a.example",
        false,
    );
    let out = fe.recv(
        &register("alice", ALICE_PHONE, "z9hG4bKw2", 2, &bad),
        udp(ALICE_PHONE),
    );
    assert!(publish_job(&out).is_none());
    assert!(
        matches!(statuses_to(&out, ALICE_PHONE)[..], [401] | [403]),
        "{out:?}"
    );
    // Bob's credentials for Alice's AOR.
    let out = fe.recv(
        &register("bob", BOB_PHONE, "z9hG4bKw3", 1, ""),
        udp(BOB_PHONE),
    );
    let challenge = sends(&out).pop().expect("401").1;
    let bobs = answer(&challenge, "bob", "pb", "REGISTER", "sip:a.example", false);
    let out = fe.recv(
        &register("alice", BOB_PHONE, "z9hG4bKw4", 3, &bobs),
        udp(BOB_PHONE),
    );
    assert!(publish_job(&out).is_none());
    assert_eq!(statuses_to(&out, BOB_PHONE), vec![403]);
    // Unknown user, foreign domain.
    let out = fe.recv(
        &register("mallory", BOB_PHONE, "z9hG4bKw5", 1, ""),
        udp(BOB_PHONE),
    );
    assert_eq!(statuses_to(&out, BOB_PHONE), vec![404]);
    let foreign = register("alice", BOB_PHONE, "z9hG4bKw6", 1, "")
        .replace("REGISTER sip:a.example", "REGISTER sip:b.example");
    let out = fe.recv(&foreign, udp(BOB_PHONE));
    assert_eq!(statuses_to(&out, BOB_PHONE), vec![403]);
}

#[test]
fn failed_publications_answer_503_or_403() {
    for (err, code) in [
        (LocationError::Unavailable("down".to_owned()), 503),
        (LocationError::Refused("not yours".to_owned()), 403),
    ] {
        let mut fe = Fe::new(Mode::Proxy);
        let out = fe.recv(
            &register("alice", ALICE_PHONE, "z9hG4bKp1", 1, ""),
            udp(ALICE_PHONE),
        );
        let challenge = sends(&out).pop().expect("401").1;
        let auth = answer(
            &challenge,
            "alice",
            "pa",
            "REGISTER",
            "sip:a.example",
            false,
        );
        let out = fe.recv(
            &register("alice", ALICE_PHONE, "z9hG4bKp2", 2, &auth),
            udp(ALICE_PHONE),
        );
        let (job, _) = publish_job(&out).expect("publication");
        let out = fe.input(Input::Published {
            job,
            result: Err(err),
        });
        let s = sends(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(status(&s[0].1), code);
        if code == 503 {
            assert!(s[0].1.contains("Retry-After: 5\r\n"));
        }
    }
}

#[test]
fn a_call_from_outside_is_resolved_forwarded_and_relayed() {
    let mut fe = Fe::new(Mode::Proxy);
    let endpoint = registered(&mut fe, "bob", "pb", BOB_PHONE);
    let out = fe.recv(
        &invite("sip:carol@c.example", "sip:bob@a.example", "z9hG4bKi1", ""),
        udp(CAROL_PROXY),
    );
    assert_eq!(statuses_to(&out, CAROL_PROXY), vec![100]);
    let (job, aor) = resolve_job(&out).expect("a resolution");
    assert_eq!(aor, Aor::new("bob", "a.example"));
    let out = fe.input(Input::Resolved {
        job,
        result: Ok(Some(Resolved {
            endpoint,
            expires_at_ms: None,
        })),
    });
    let s = sends(&out);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].0, Dest::Peer(udp(BOB_PHONE)));
    let fwd = s[0].1.clone();
    assert!(fwd.starts_with(&format!("INVITE sip:bob@{BOB_PHONE} SIP/2.0\r\n")));
    let first_via = fwd
        .split("\r\n")
        .find(|l| l.starts_with("Via:"))
        .expect("Via");
    assert!(first_via.starts_with("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"));
    assert!(fwd.contains("Record-Route: <sip:127.0.0.1:5060;transport=udp;lr>\r\n"));
    assert!(fwd.contains("Max-Forwards: 69\r\n"));

    let out = fe.recv(&response_to(&fwd, 180, "Ringing"), udp(BOB_PHONE));
    assert_eq!(statuses_to(&out, CAROL_PROXY), vec![180]);
    let out = fe.recv(&response_to(&fwd, 200, "OK"), udp(BOB_PHONE));
    let up = sends(&out);
    assert_eq!(up.len(), 1);
    assert_eq!(status(&up[0].1), 200);
    assert!(
        !up[0].1.contains("127.0.0.1:5060;branch"),
        "our Via is removed"
    );

    // ACK and BYE come back through the Record-Route and go to the Contact.
    for (method, branch, seq) in [("ACK", "z9hG4bKi2", 1), ("BYE", "z9hG4bKi3", 2)] {
        let req = format!(
            "{method} sip:bob@{BOB_PHONE} SIP/2.0\r\nVia: SIP/2.0/UDP {CAROL_PROXY};branch={branch}\r\n\
             Route: <sip:127.0.0.1:5060;transport=udp;lr>\r\nMax-Forwards: 70\r\n\
             From: <sip:carol@c.example>;tag=c1\r\nTo: <sip:bob@a.example>;tag=b1\r\n\
             Call-ID: call-z9hG4bKi1\r\nCSeq: {seq} {method}\r\nContent-Length: 0\r\n\r\n"
        );
        let out = fe.recv(&req, udp(CAROL_PROXY));
        let s: Vec<_> = sends(&out)
            .into_iter()
            .filter(|(d, _)| *d == Dest::Peer(udp(BOB_PHONE)))
            .collect();
        assert_eq!(s.len(), 1, "{method}: {out:?}");
        assert!(s[0].1.starts_with(&format!(
            "{method} sip:bob@{BOB_PHONE} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060"
        )));
        assert!(!s[0].1.contains("Route:"), "our Route is popped");
        if method == "BYE" {
            let out = fe.recv(&response_to(&s[0].1, 200, "OK"), udp(BOB_PHONE));
            assert_eq!(statuses_to(&out, CAROL_PROXY), vec![200]);
        }
    }
}

#[test]
fn resolution_failures_map_to_404_503_and_480() {
    let mut fe = Fe::new(Mode::Proxy);
    let cases: Vec<(Result<Option<Resolved>, LocationError>, u16)> = vec![
        (Ok(None), 404),
        (Err(LocationError::Unavailable("quorum".to_owned())), 503),
        (Err(LocationError::Refused("no".to_owned())), 500),
    ];
    for (i, (result, code)) in cases.into_iter().enumerate() {
        let out = fe.recv(
            &invite(
                "sip:carol@c.example",
                "sip:bob@a.example",
                &format!("z9hG4bKe{i}"),
                "",
            ),
            udp(CAROL_PROXY),
        );
        let (job, _) = resolve_job(&out).expect("resolution");
        let out = fe.input(Input::Resolved { job, result });
        let s = statuses_to(&out, CAROL_PROXY);
        assert_eq!(s, vec![code]);
        if code == 503 {
            assert!(sends(&out)[0].1.contains("Retry-After: 5\r\n"));
        }
    }
    // Bob registered, then removed his binding: his token is known, but
    // there is nobody to ring.
    let endpoint = registered(&mut fe, "bob", "pb", BOB_PHONE);
    let out = fe.recv(
        &register("bob", BOB_PHONE, "z9hG4bKbobx", 3, ""),
        udp(BOB_PHONE),
    );
    let challenge = sends(&out).pop().expect("401").1;
    let auth = answer(&challenge, "bob", "pb", "REGISTER", "sip:a.example", false);
    let unreg =
        register("bob", BOB_PHONE, "z9hG4bKboby", 4, &auth).replace("Expires: 600", "Expires: 0");
    let out = fe.recv(&unreg, udp(BOB_PHONE));
    if let Some((job, _)) = publish_job(&out) {
        fe.input(Input::Published {
            job,
            result: Ok(()),
        });
    }
    let out = fe.recv(
        &invite("sip:carol@c.example", "sip:bob@a.example", "z9hG4bKe9", ""),
        udp(CAROL_PROXY),
    );
    let (job, _) = resolve_job(&out).expect("resolution");
    let out = fe.input(Input::Resolved {
        job,
        result: Ok(Some(Resolved {
            endpoint,
            expires_at_ms: None,
        })),
    });
    assert_eq!(statuses_to(&out, CAROL_PROXY), vec![480]);
    // A token nobody has: 404.
    let out = fe.recv(
        &invite(
            "sip:carol@c.example",
            "sip:fe-00000000000000000000@127.0.0.1:5060",
            "z9hG4bKe8",
            "",
        ),
        udp(CAROL_PROXY),
    );
    assert_eq!(statuses_to(&out, CAROL_PROXY), vec![100, 404]);
}

#[test]
fn calls_to_a_token_skip_the_location_service() {
    let mut fe = Fe::new(Mode::Proxy);
    let endpoint = registered(&mut fe, "bob", "pb", BOB_PHONE);
    let out = fe.recv(
        &invite("sip:carol@c.example", &endpoint, "z9hG4bKk1", ""),
        udp(CAROL_PROXY),
    );
    assert!(resolve_job(&out).is_none());
    assert!(sends(&out)
        .iter()
        .any(|(d, t)| *d == Dest::Peer(udp(BOB_PHONE))
            && t.starts_with(&format!("INVITE sip:bob@{BOB_PHONE} "))));
}

#[test]
fn local_callers_authenticate_with_407() {
    let mut fe = Fe::new(Mode::Proxy);
    let text = invite("sip:alice@a.example", "sip:bob@a.example", "z9hG4bKa1", "");
    let out = fe.recv(&text, udp(ALICE_PHONE));
    assert!(resolve_job(&out).is_none());
    let s = sends(&out);
    let challenge = s
        .iter()
        .find(|(_, t)| status(t) == 407)
        .expect("407")
        .1
        .clone();
    assert!(challenge.contains("Proxy-Authenticate: Digest"));
    // The ACK of the 407 is absorbed.
    let ack = format!(
        "ACK sip:bob@a.example SIP/2.0\r\nVia: SIP/2.0/UDP {CAROL_PROXY};branch=z9hG4bKa1\r\nMax-Forwards: 70\r\n\
         From: <sip:alice@a.example>;tag=c1\r\nTo: <sip:bob@a.example>;tag=x\r\nCall-ID: call-z9hG4bKa1\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(fe.recv(&ack, udp(ALICE_PHONE)).is_empty());
    let auth = answer(
        &challenge,
        "alice",
        "pa",
        "INVITE",
        "sip:bob@a.example",
        true,
    );
    let text = invite(
        "sip:alice@a.example",
        "sip:bob@a.example",
        "z9hG4bKa2",
        &auth,
    )
    .replace("CSeq: 1", "CSeq: 2");
    let out = fe.recv(&text, udp(ALICE_PHONE));
    let (_, aor) = resolve_job(&out).expect("authorised: resolved");
    assert_eq!(aor, Aor::new("bob", "a.example"));
    // Bob's credentials in Alice's name (on a fresh nonce): 403.
    let out = fe.recv(
        &invite("sip:alice@a.example", "sip:bob@a.example", "z9hG4bKa4", ""),
        udp(ALICE_PHONE),
    );
    let challenge = sends(&out)
        .into_iter()
        .find(|(_, t)| status(t) == 407)
        .expect("407")
        .1;
    let auth = answer(&challenge, "bob", "pb", "INVITE", "sip:bob@a.example", true);
    let text = invite(
        "sip:alice@a.example",
        "sip:bob@a.example",
        "z9hG4bKa3",
        &auth,
    )
    .replace("CSeq: 1", "CSeq: 3");
    let out = fe.recv(&text, udp(ALICE_PHONE));
    assert!(resolve_job(&out).is_none());
    assert_eq!(statuses_to(&out, ALICE_PHONE), vec![100, 403]);
}

#[test]
fn strangers_cannot_relay_through_us() {
    let mut fe = Fe::new(Mode::Proxy);
    let out = fe.recv(
        &invite("sip:carol@c.example", "sip:dave@d.example", "z9hG4bKo1", ""),
        udp(CAROL_PROXY),
    );
    assert!(resolve_job(&out).is_none());
    assert_eq!(statuses_to(&out, CAROL_PROXY), vec![100, 403]);
}

#[test]
fn requests_we_cannot_serve_get_416_420_483() {
    let mut fe = Fe::new(Mode::Proxy);
    let cases = [
        (
            invite("sip:carol@c.example", "tel:+493012345", "z9hG4bKq1", ""),
            416,
        ),
        (
            invite(
                "sip:carol@c.example",
                "sip:bob@a.example",
                "z9hG4bKq2",
                "Proxy-Require: foo\r\n",
            ),
            420,
        ),
        (
            invite("sip:carol@c.example", "sip:bob@a.example", "z9hG4bKq3", "")
                .replace("Max-Forwards: 70", "Max-Forwards: 0"),
            483,
        ),
    ];
    for (text, code) in cases {
        let out = fe.recv(&text, udp(CAROL_PROXY));
        assert!(resolve_job(&out).is_none());
        assert_eq!(statuses_to(&out, CAROL_PROXY), vec![100, code], "{text}");
        if code == 420 {
            assert!(sends(&out)[1].1.contains("Unsupported: foo\r\n"));
        }
    }
    // Require on a REGISTER: only path is supported.
    let text = register(
        "alice",
        ALICE_PHONE,
        "z9hG4bKq4",
        1,
        "Require: path, gruu\r\n",
    );
    let out = fe.recv(&text, udp(ALICE_PHONE));
    let s = sends(&out);
    assert_eq!(status(&s[0].1), 420);
    assert!(s[0].1.contains("Unsupported: gruu\r\n"));
}

#[test]
fn options_to_us_is_answered_200() {
    let mut fe = Fe::new(Mode::Proxy);
    let text = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.99:5999;branch=z9hG4bKping\r\n\
                Max-Forwards: 70\r\nFrom: <sip:ping@192.0.2.99>;tag=p\r\nTo: <sip:127.0.0.1:5060>\r\n\
                Call-ID: ping\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let out = fe.recv(text, udp("192.0.2.99:5999"));
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(status(&s[0].1), 200);
    assert!(s[0].1.contains("Allow: INVITE"));
}

#[test]
fn redirect_mode_answers_302_with_the_contact() {
    let mut fe = Fe::new(Mode::Redirect);
    let endpoint = registered(&mut fe, "bob", "pb", BOB_PHONE);
    let out = fe.recv(
        &invite("sip:carol@c.example", "sip:bob@a.example", "z9hG4bKz1", ""),
        udp(CAROL_PROXY),
    );
    let (job, _) = resolve_job(&out).expect("resolution");
    let out = fe.input(Input::Resolved {
        job,
        result: Ok(Some(Resolved {
            endpoint,
            expires_at_ms: None,
        })),
    });
    let s = sends(&out);
    assert_eq!(s.len(), 1);
    assert_eq!(status(&s[0].1), 302);
    assert!(
        s[0].1.contains(&format!("Contact: <sip:bob@{BOB_PHONE}>")),
        "{}",
        s[0].1
    );
    // A foreign endpoint is given back as it is.
    let out = fe.recv(
        &invite(
            "sip:carol@c.example",
            "sip:alice@a.example",
            "z9hG4bKz2",
            "",
        ),
        udp(CAROL_PROXY),
    );
    let (job, _) = resolve_job(&out).expect("resolution");
    let out = fe.input(Input::Resolved {
        job,
        result: Ok(Some(Resolved {
            endpoint: "sip:alice@203.0.113.5:5080".to_owned(),
            expires_at_ms: None,
        })),
    });
    let s = sends(&out);
    assert!(s[0].1.contains("Contact: <sip:alice@203.0.113.5:5080>"));
    // The ACK of the 302 is absorbed.
    let ack = format!(
        "ACK sip:alice@a.example SIP/2.0\r\nVia: SIP/2.0/UDP {CAROL_PROXY};branch=z9hG4bKz2\r\nMax-Forwards: 70\r\n\
         From: <sip:carol@c.example>;tag=c1\r\nTo: <sip:alice@a.example>;tag=x\r\nCall-ID: call-z9hG4bKz2\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(fe.recv(&ack, udp(CAROL_PROXY)).is_empty());
}

#[test]
fn a_forwarded_call_times_out_with_408_and_timers_retransmit() {
    let mut fe = Fe::new(Mode::Proxy);
    let endpoint = registered(&mut fe, "bob", "pb", BOB_PHONE);
    let out = fe.recv(
        &invite("sip:carol@c.example", &endpoint, "z9hG4bKt1", ""),
        udp(CAROL_PROXY),
    );
    let fwd = sends(&out)
        .into_iter()
        .find(|(d, _)| *d == Dest::Peer(udp(BOB_PHONE)))
        .expect("forwarded")
        .1;
    assert!(fe.core.next_deadline().expect("deadline") <= fe.now + Duration::from_millis(500));
    let out = fe.advance(Duration::from_millis(500));
    assert_eq!(sends(&out), vec![(Dest::Peer(udp(BOB_PHONE)), fwd)]);
    let mut all = Vec::new();
    for _ in 0..64 {
        all.extend(fe.advance(Duration::from_millis(500)));
    }
    assert!(statuses_to(&all, CAROL_PROXY).contains(&408));
}

#[test]
fn over_the_limit_new_requests_get_503() {
    let mut fe = Fe::with(config(Mode::Proxy, 1));
    let out = fe.recv(
        &invite("sip:carol@c.example", "sip:bob@a.example", "z9hG4bKl1", ""),
        udp(CAROL_PROXY),
    );
    assert!(resolve_job(&out).is_some());
    let out = fe.recv(
        &invite("sip:carol@c.example", "sip:bob@a.example", "z9hG4bKl2", ""),
        udp(CAROL_PROXY),
    );
    assert!(resolve_job(&out).is_none());
    let s = sends(&out);
    assert_eq!(status(&s[0].1), 503);
    assert!(s[0].1.contains("Retry-After: 5\r\n"));
}

#[test]
fn a_location_job_that_never_returns_ends_in_503() {
    let mut fe = Fe::new(Mode::Proxy);
    let out = fe.recv(
        &invite("sip:carol@c.example", "sip:bob@a.example", "z9hG4bKg1", ""),
        udp(CAROL_PROXY),
    );
    let (job, _) = resolve_job(&out).expect("resolution");
    let out = fe.advance(Duration::from_secs(33));
    assert_eq!(statuses_to(&out, CAROL_PROXY), vec![503]);
    // The late result changes nothing.
    let out = fe.input(Input::Resolved {
        job,
        result: Ok(None),
    });
    assert!(out.is_empty());
}

proptest! {
    #[test]
    fn garbage_never_panics_the_core(bytes in proptest::collection::vec(any::<u8>(), 0..800), step in 0u64..40) {
        let mut fe = Fe::new(Mode::Proxy);
        if let Ok(Some(m)) = parse_datagram(&bytes, &Limits::default()) {
            let out = fe.input(Input::Received { msg: m, from: udp(CAROL_PROXY) });
            if let Some((job, _)) = resolve_job(&out) {
                fe.input(Input::Resolved { job, result: Ok(Some(Resolved { endpoint: "sip:x@192.0.2.1".to_owned(), expires_at_ms: None })) });
            }
        }
        fe.advance(Duration::from_secs(step));
    }

    #[test]
    fn mutated_requests_never_panic_the_core(pos in 0usize..500, byte in any::<u8>(), which in 0usize..3) {
        let mut fe = Fe::new(Mode::Proxy);
        let base = match which {
            0 => invite("sip:alice@a.example", "sip:bob@a.example", "z9hG4bKm1", "Route: <sip:127.0.0.1;lr>\r\n"),
            1 => register("alice", ALICE_PHONE, "z9hG4bKm2", 1, "Authorization: Digest username=\"alice\", nonce=\"x\"\r\n"),
            _ => invite("sip:carol@c.example", "sip:fe-1@127.0.0.1", "z9hG4bKm3", ""),
        };
        let mut b = base.into_bytes();
        if pos < b.len() { b[pos] = byte; }
        if let Ok(Some(m)) = parse_datagram(&b, &Limits::default()) {
            fe.input(Input::Received { msg: m, from: udp(ALICE_PHONE) });
        }
        fe.advance(Duration::from_secs(40));
    }
}

#[test]
fn a_binding_registered_through_an_edge_proxy_is_reached_by_its_path() {
    const EDGE: &str = "198.51.100.9:5060";
    let mut fe = Fe::new(Mode::Proxy);
    let reg = |branch: &str, cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:a.example SIP/2.0\r\nVia: SIP/2.0/UDP {EDGE};branch={branch}\r\n\
             Via: SIP/2.0/UDP 10.1.1.1:5064;branch=z9hG4bKphone{cseq}\r\nMax-Forwards: 69\r\n\
             From: <sip:bob@a.example>;tag=e{cseq}\r\nTo: <sip:bob@a.example>\r\nCall-ID: edge-reg\r\n\
             CSeq: {cseq} REGISTER\r\nSupported: path\r\nPath: <sip:{EDGE};lr>\r\n\
             Contact: <sip:bob@10.1.1.1:5064>\r\nExpires: 600\r\n{auth}Content-Length: 0\r\n\r\n"
        )
    };
    let out = fe.recv(&reg("z9hG4bKe1", 1, ""), udp(EDGE));
    let challenge = sends(&out).pop().expect("401").1;
    let auth = answer(&challenge, "bob", "pb", "REGISTER", "sip:a.example", false);
    let out = fe.recv(&reg("z9hG4bKe2", 2, &auth), udp(EDGE));
    let (job, publication) = publish_job(&out).expect("publication");
    let out = fe.input(Input::Published {
        job,
        result: Ok(()),
    });
    assert_eq!(statuses_to(&out, EDGE), vec![200]);
    let out = fe.recv(
        &invite(
            "sip:carol@c.example",
            &publication.endpoint,
            "z9hG4bKpa1",
            "",
        ),
        udp(CAROL_PROXY),
    );
    let fwd: Vec<_> = sends(&out)
        .into_iter()
        .filter(|(_, t)| t.starts_with("INVITE "))
        .collect();
    assert_eq!(fwd.len(), 1, "{out:?}");
    assert_eq!(fwd[0].0, Dest::Peer(udp(EDGE)));
    assert!(fwd[0]
        .1
        .starts_with("INVITE sip:bob@10.1.1.1:5064 SIP/2.0\r\n"));
    assert!(
        fwd[0].1.contains(&format!("Route: <sip:{EDGE};lr>\r\n")),
        "{}",
        fwd[0].1
    );
}

#[test]
fn a_user_with_two_phones_is_called_on_both() {
    const BOB_DESK: &str = "192.0.2.13:5066";
    let mut fe = Fe::new(Mode::Proxy);
    let endpoint = registered(&mut fe, "bob", "pb", BOB_PHONE);
    let desk = |branch: &str, cseq: u32, auth: &str| {
        register("bob", BOB_DESK, branch, cseq, auth)
            .replace("Call-ID: reg-bob", "Call-ID: reg-bob-desk")
    };
    let out = fe.recv(&desk("z9hG4bKdesk1", 1, ""), udp(BOB_DESK));
    let challenge = sends(&out).pop().expect("401").1;
    let auth = answer(&challenge, "bob", "pb", "REGISTER", "sip:a.example", false);
    let out = fe.recv(&desk("z9hG4bKdesk2", 2, &auth), udp(BOB_DESK));
    let out = match publish_job(&out) {
        Some((job, _)) => fe.input(Input::Published {
            job,
            result: Ok(()),
        }),
        None => out,
    };
    assert_eq!(statuses_to(&out, BOB_DESK), vec![200]);
    let out = fe.recv(
        &invite("sip:carol@c.example", &endpoint, "z9hG4bKtwo", ""),
        udp(CAROL_PROXY),
    );
    let mut rung: Vec<Dest> = sends(&out)
        .into_iter()
        .filter(|(_, t)| t.starts_with("INVITE "))
        .map(|(d, _)| d)
        .collect();
    rung.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(
        rung,
        vec![Dest::Peer(udp(BOB_PHONE)), Dest::Peer(udp(BOB_DESK))]
    );
}

#[test]
fn in_dialog_requests_reach_a_tcp_phone_over_its_flow() {
    let mut fe = Fe::with(CoreConfig {
        locals: vec![
            local(),
            Local {
                protocol: Protocol::Tcp,
                host: "127.0.0.1".to_owned(),
                port: 5060,
            },
        ],
        ..config(Mode::Proxy, 1000)
    });
    // Bob registers over a TCP connection from behind a NAT: his Contact
    // names an address nobody can reach.
    let flow = Peer {
        protocol: Protocol::Tcp,
        addr: "203.0.113.40:40001".parse().expect("address"),
        flow: Some(sharecall_frontend::peer::FlowId(42)),
    };
    let reg = |branch: &str, cseq: u32, auth: &str| {
        register("bob", "10.0.0.8:5060", branch, cseq, auth)
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .replace(
                "<sip:bob@10.0.0.8:5060>",
                "<sip:bob@10.0.0.8:5060;transport=tcp>",
            )
    };
    let out = fe.recv(&reg("z9hG4bKtcp1", 1, ""), flow);
    let challenge = sends(&out).pop().expect("401").1;
    let auth = answer(&challenge, "bob", "pb", "REGISTER", "sip:a.example", false);
    let out = fe.recv(&reg("z9hG4bKtcp2", 2, &auth), flow);
    let (job, publication) = publish_job(&out).expect("publication");
    let out = fe.input(Input::Published {
        job,
        result: Ok(()),
    });
    assert_eq!(sends(&out)[0].0, Dest::Peer(flow));
    let out = fe.recv(
        &invite(
            "sip:carol@c.example",
            &publication.endpoint,
            "z9hG4bKtcp3",
            "",
        ),
        udp(CAROL_PROXY),
    );
    let (dest, fwd) = sends(&out)
        .into_iter()
        .find(|(_, t)| t.starts_with("INVITE "))
        .expect("forwarded");
    assert_eq!(dest, Dest::Peer(flow));
    let rr: Vec<&str> = fwd
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("Record-Route: "))
        .collect();
    assert_eq!(rr.len(), 2, "{fwd}");
    assert!(rr[0].starts_with("<sip:127.0.0.1:5060;transport=tcp;lr;ft="));
    assert_eq!(rr[1], "<sip:127.0.0.1:5060;transport=udp;lr>");

    let bye = |route: &str, uri: &str, branch: &str| {
        format!(
            "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {CAROL_PROXY};branch={branch}\r\nRoute: {route}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:carol@c.example>;tag=c1\r\nTo: <sip:bob@a.example>;tag=b1\r\n\
             Call-ID: call-z9hG4bKtcp3\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    // The caller's route set is the Record-Route reversed.
    let route = format!("{}, {}", rr[1], rr[0]);
    let out = fe.recv(
        &bye(&route, "sip:bob@10.0.0.8:5060;transport=tcp", "z9hG4bKtcp4"),
        udp(CAROL_PROXY),
    );
    let (dest, sent) = sends(&out)
        .into_iter()
        .find(|(_, t)| t.starts_with("BYE "))
        .expect("BYE forwarded");
    assert_eq!(dest, Dest::Peer(flow), "over Bob's connection");
    assert!(sent.starts_with(
        "BYE sip:bob@10.0.0.8:5060;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5060"
    ));
    // A forged token is worth nothing: the Request-URI is used.
    let forged = route.replace("ft=", "ft=00");
    let out = fe.recv(
        &bye(
            &forged,
            "sip:bob@10.0.0.8:5060;transport=tcp",
            "z9hG4bKtcp5",
        ),
        udp(CAROL_PROXY),
    );
    let (dest, _) = sends(&out)
        .into_iter()
        .find(|(_, t)| t.starts_with("BYE "))
        .expect("BYE forwarded");
    assert_eq!(
        dest,
        Dest::Peer(Peer {
            protocol: Protocol::Tcp,
            addr: "10.0.0.8:5060".parse().expect("address"),
            flow: None
        })
    );
}
