//! The SIP front end end to end: real `sharecall sip` processes, a real
//! three-provider cluster, and standard SIP user agents played by sipp
//! with the scenarios in tests/sipp/ (validated against Kamailio by
//! benches/sip/validate.sh). Every call is checked by sipp's own verdict
//! (exit code 0 and the number of successful calls) on both the caller's
//! and the callee's side, and where it shows the path taken, by the front
//! ends' metrics.
//!
//! A callee registers with register.xml from the port its uas.xml then
//! listens on, so the front end reaches it at the registered Contact.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::sip::{free_port, FrontEnd, FrontEndOptions, Location, SipUser, UdpAgent};
use sharecall_tests::sipp::{self, inject, user_line, Sipp, SippRun, Transport};

/// sipp's own timeout for one run; generous for a loaded 2-core machine
/// (a sharecall resolution is an SMC round over three providers).
const RUN: Duration = Duration::from_secs(60);

fn alice() -> SipUser {
    SipUser::new("alice", "a.example")
}

fn bob() -> SipUser {
    SipUser::new("bob", "a.example")
}

fn assert_ok(what: &str, run: &SippRun, fe: &[&FrontEnd]) {
    if !run.all_ok(1) {
        let logs: Vec<String> = fe.iter().map(|f| f.log()).collect();
        panic!(
            "{what}: {}\ntraces in {}\n{}",
            run.explain(),
            run.dir.display(),
            logs.join("\n")
        );
    }
}

/// Waits until something (sipp) holds `port` for `t` on 127.0.0.1.
fn wait_bound(port: u16, t: Transport) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let free = match t {
            Transport::Udp => UdpSocket::bind(("127.0.0.1", port)).is_ok(),
            Transport::Tcp => TcpListener::bind(("127.0.0.1", port)).is_ok(),
        };
        if !free {
            return;
        }
        assert!(Instant::now() < deadline, "sipp did not bind port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Registers `user` at `fe` from local `port` (register.xml).
fn register(fe: &FrontEnd, user: &SipUser, port: u16, t: Transport, dir: &Path) -> SippRun {
    let inf = inject(
        dir,
        &format!("{}.csv", user.aor()),
        &[user_line(&user.name, &user.domain, &user.password)],
    );
    Sipp::run(
        "register.xml",
        &sipp::args(target(fe, t), port, t, &inf, &user.domain, 1),
        RUN,
    )
}

fn target(fe: &FrontEnd, t: Transport) -> SocketAddr {
    match t {
        Transport::Udp => fe.udp,
        Transport::Tcp => fe.tcp,
    }
}

/// A callee's UAS (`scenario`, one call) on `port`, once it is bound.
fn callee(scenario: &str, port: u16, t: Transport) -> Sipp {
    let s = Sipp::spawn(
        scenario,
        &[
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-t".into(),
            t.flag().into(),
            "-m".into(),
            "1".into(),
        ],
        RUN,
    );
    wait_bound(port, t);
    s
}

/// `caller` runs `scenario` against `fe`, calling `callee`.
fn call(
    fe: &FrontEnd,
    scenario: &str,
    caller: &SipUser,
    callee: &SipUser,
    t: Transport,
    dir: &Path,
) -> SippRun {
    // user;domain;[authentication ...];callee;callee-domain
    let line = format!(
        "{};{};{}",
        user_line(&caller.name, &caller.domain, &caller.password),
        callee.name,
        callee.domain
    );
    let inf = inject(dir, &format!("call-{}.csv", callee.aor()), &[line]);
    Sipp::run(
        scenario,
        &sipp::args(target(fe, t), free_port(), t, &inf, &callee.aor(), 1),
        RUN,
    )
}

/// A front end in sharecall mode on `cluster`.
fn sharecall_fe(
    cluster: &Cluster,
    domain: &str,
    mode: &'static str,
    users: Vec<SipUser>,
) -> FrontEnd {
    FrontEnd::start(FrontEndOptions {
        domains: vec![domain.into()],
        mode,
        location: Location::of(cluster),
        users,
        ..Default::default()
    })
}

/// Registers `to` at `fe`, answers with uas.xml, and has `from` call it
/// through `via`; asserts both sides' verdicts.
fn register_and_call(via: &FrontEnd, home: &FrontEnd, from: &SipUser, to: &SipUser, t: Transport) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    assert_ok(
        "register callee",
        &register(home, to, port, t, dir.path()),
        &[home],
    );
    let uas = callee("uas.xml", port, t);
    let uac = call(via, "uac_call.xml", from, to, t, dir.path());
    assert_ok("caller (uac_call.xml)", &uac, &[via, home]);
    assert_ok("callee (uas.xml)", &uas.wait(), &[via, home]);
}

fn resolutions(fe: &FrontEnd) -> f64 {
    fe.metric("sip_location_seconds_count{kind=\"resolve\",outcome=\"ok\"")
}

#[test]
fn two_user_agents_call_through_one_front_end_over_udp() {
    let cluster = Cluster::start(ClusterOptions::default());
    let fe = sharecall_fe(&cluster, "a.example", "proxy", vec![alice(), bob()]);
    register_and_call(&fe, &fe, &alice(), &bob(), Transport::Udp);
    // The callee was found through sharecall, and the BYE came back
    // through the front end (Record-Route).
    assert!(resolutions(&fe) >= 1.0, "{}", fe.metrics_text());
    assert!(
        fe.metric("sip_requests_total{method=\"BYE\"") >= 1.0,
        "{}",
        fe.metrics_text()
    );
}

#[test]
fn two_user_agents_call_through_one_front_end_over_tcp() {
    let cluster = Cluster::start(ClusterOptions::default());
    let fe = sharecall_fe(&cluster, "a.example", "proxy", vec![alice(), bob()]);
    register_and_call(&fe, &fe, &alice(), &bob(), Transport::Tcp);
    assert!(resolutions(&fe) >= 1.0, "{}", fe.metrics_text());
}

#[test]
fn a_call_crosses_two_front_ends_of_two_domains() {
    let cluster = Cluster::start(ClusterOptions::default());
    let bob_b = SipUser::new("bob", "b.example");
    let fe_a = sharecall_fe(&cluster, "a.example", "proxy", vec![alice()]);
    let fe_b = sharecall_fe(&cluster, "b.example", "proxy", vec![bob_b.clone()]);
    // bob registers at B; alice calls sip:bob@b.example through A, which
    // resolves bob's pseudonym to B's published URI.
    register_and_call(&fe_a, &fe_b, &alice(), &bob_b, Transport::Udp);
    assert!(resolutions(&fe_a) >= 1.0, "{}", fe_a.metrics_text());
    assert!(
        fe_b.metric("sip_requests_total{method=\"INVITE\"") >= 1.0,
        "{}",
        fe_b.metrics_text()
    );
}

#[test]
fn redirect_mode_answers_302_with_a_contact() {
    let cluster = Cluster::start(ClusterOptions::default());
    let fe = sharecall_fe(&cluster, "a.example", "redirect", vec![alice(), bob()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    assert_ok(
        "register bob",
        &register(&fe, &bob(), port, Transport::Udp, dir.path()),
        &[&fe],
    );
    let run = call(
        &fe,
        "uac_redirect.xml",
        &alice(),
        &bob(),
        Transport::Udp,
        dir.path(),
    );
    assert_ok("uac_redirect.xml", &run, &[&fe]);
    assert!(
        fe.metric("sip_responses_total{method=\"INVITE\",class=\"3xx\"") >= 1.0,
        "{}",
        fe.metrics_text()
    );
}

#[test]
fn an_unknown_pseudonym_gets_404() {
    let cluster = Cluster::start(ClusterOptions::default());
    let fe = sharecall_fe(&cluster, "a.example", "proxy", vec![alice()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let nobody = SipUser::new("nobody", "a.example");
    let run = call(
        &fe,
        "uac_404.xml",
        &alice(),
        &nobody,
        Transport::Udp,
        dir.path(),
    );
    assert_ok("uac_404.xml", &run, &[&fe]);
}

#[test]
fn digest_challenge_then_success_with_md5_and_sha256() {
    let cluster = Cluster::start(ClusterOptions::default());
    let carol = SipUser::new("carol", "a.example");
    let fe = sharecall_fe(&cluster, "a.example", "proxy", vec![bob(), carol.clone()]);
    let dir = tempfile::tempdir().expect("tempdir");
    // MD5 (sipp computes it): 401, then 200 listing the Contact.
    assert_ok(
        "register.xml",
        &register(&fe, &bob(), free_port(), Transport::Udp, dir.path()),
        &[&fe],
    );
    // SHA-256 (RFC 8760) with the harness's own client.
    let agent = UdpAgent::new(fe.udp);
    let (challenge, done) = agent.register_sha256(&carol, &carol.password);
    let offered = challenge.headers("WWW-Authenticate").join("\n");
    assert!(
        offered.contains("SHA-256") && offered.contains("MD5"),
        "{offered}"
    );
    assert!(offered.contains("qop"), "{offered}");
    assert_eq!(done.status, 200, "{}\n{}", done.text, fe.log());
    let contacts = done.headers("Contact").join(",");
    assert!(
        contacts.contains(&agent.addr().to_string()),
        "{}",
        done.text
    );
}

#[test]
fn a_wrong_password_registers_nothing() {
    let cluster = Cluster::start(ClusterOptions::default());
    let fe = sharecall_fe(&cluster, "a.example", "proxy", vec![alice(), bob()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let wrong = inject(
        dir.path(),
        "wrong.csv",
        &[user_line("bob", "a.example", "not-his-password")],
    );
    let run = Sipp::run(
        "register_refused.xml",
        &sipp::args(fe.udp, free_port(), Transport::Udp, &wrong, "a.example", 1),
        RUN,
    );
    assert_ok("register_refused.xml", &run, &[&fe]);
    let agent = UdpAgent::new(fe.udp);
    let (_, refused) = agent.register_sha256(&bob(), "not-his-password");
    assert!(matches!(refused.status, 401 | 403), "{}", refused.text);
    // Nothing was bound: a call to bob finds no one.
    let run = call(
        &fe,
        "uac_404.xml",
        &alice(),
        &bob(),
        Transport::Udp,
        dir.path(),
    );
    assert_ok("uac_404.xml after the refused registrations", &run, &[&fe]);
}

#[test]
fn cancel_before_answer_ends_with_487() {
    let cluster = Cluster::start(ClusterOptions::default());
    let fe = sharecall_fe(&cluster, "a.example", "proxy", vec![alice(), bob()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    assert_ok(
        "register bob",
        &register(&fe, &bob(), port, Transport::Udp, dir.path()),
        &[&fe],
    );
    let uas = callee("uas_cancel.xml", port, Transport::Udp);
    let uac = call(
        &fe,
        "uac_cancel.xml",
        &alice(),
        &bob(),
        Transport::Udp,
        dir.path(),
    );
    assert_ok("caller (uac_cancel.xml)", &uac, &[&fe]);
    assert_ok("callee (uas_cancel.xml)", &uas.wait(), &[&fe]);
}

#[test]
fn plaintext_mode_registers_and_calls() {
    let fe = FrontEnd::start(FrontEndOptions {
        users: vec![alice(), bob()],
        ..Default::default()
    });
    // The front end answers OPTIONS addressed to itself.
    let ping = UdpAgent::new(fe.udp).options();
    assert_eq!(ping.status, 200, "{}", ping.text);
    register_and_call(&fe, &fe, &alice(), &bob(), Transport::Udp);
    assert!(
        fe.metric("sip_requests_total{method=\"REGISTER\"") >= 2.0,
        "{}",
        fe.metrics_text()
    );
}

/// The fixture writes configurations the front end's own parser accepts
/// (unknown keys are errors there), with the settings the tests rely on.
#[test]
fn the_fixture_writes_valid_configurations() {
    use sharecall_frontend::config::{Config, LocationKind, Mode};
    let providers: [String; 3] = std::array::from_fn(|i| {
        format!(
            "https://127.0.0.1:{}#sha256={}",
            20_000 + i,
            "ab".repeat(32)
        )
    });
    let key = Path::new("/tmp/keys/front-end.key");
    let sharecall = FrontEndOptions {
        domains: vec!["b.example".into()],
        mode: "redirect",
        location: Location::Sharecall(providers.clone()),
        ..Default::default()
    };
    let c = Config::parse(
        &sharecall_tests::sip::config_text(&sharecall, 15_060, 15_061, key),
        Path::new("/tmp"),
    )
    .expect("sharecall-mode sip.toml");
    assert_eq!(c.sip.mode, Mode::Redirect);
    assert_eq!(c.sip.location, LocationKind::Sharecall);
    assert_eq!(c.realm(), "b.example");
    assert_eq!(
        c.listen.udp,
        Some("127.0.0.1:15060".parse().expect("address"))
    );
    assert_eq!(c.listen.tcp, c.listen.udp);
    assert_eq!(
        c.metrics.listen,
        Some("127.0.0.1:15061".parse().expect("address"))
    );
    assert_eq!(c.auth.algorithms, ["MD5", "SHA-256"]);
    let s = c.sharecall.expect("[sharecall]");
    assert_eq!(s.providers, providers);
    assert_eq!(s.account_key, key);

    let plaintext = FrontEndOptions {
        extra: "[registrar]\nmin_expires = 30\n".into(),
        ..Default::default()
    };
    let c = Config::parse(
        &sharecall_tests::sip::config_text(&plaintext, 15_062, 15_063, key),
        Path::new("/tmp"),
    )
    .expect("plaintext-mode sip.toml");
    assert_eq!(c.sip.location, LocationKind::Plaintext);
    assert_eq!(c.sip.mode, Mode::Proxy);
    assert!(c.sharecall.is_none());
    assert_eq!(c.registrar.min_expires, 30);
}
