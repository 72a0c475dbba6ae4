//! The whole front end on 127.0.0.1 (plaintext location): bind errors,
//! OPTIONS over UDP, TCP and TLS, a REGISTER challenge, the metrics
//! endpoint, graceful shutdown, a call between two registered users.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sharecall_frontend::config::Config;
use sharecall_frontend::location::plaintext::PlaintextLocation;
use sharecall_frontend::server::{Server, ServerError};
use sharecall_frontend::transport::tls;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn write_files(dir: &Path, listen: &str) -> Config {
    std::fs::write(
        dir.join("users.toml"),
        "[[user]]\nname = \"alice\"\npassword = \"wonderland\"\n\
         [[user]]\nname = \"bob\"\npassword = \"builder\"\n",
    )
    .expect("users file");
    let text = format!(
        "[sip]\ndomains = [\"a.example\"]\nusers = \"users.toml\"\nlocation = \"plaintext\"\n\
         state_dir = \"state\"\n[listen]\n{listen}\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [limits]\nmessage_timeout = \"2s\"\n"
    );
    let path = dir.join("sip.toml");
    std::fs::write(&path, text).expect("config");
    Config::load(&path).expect("valid config")
}

const ALL: &str = "udp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\ntls = \"127.0.0.1:0\"\n";

fn request(method: &str, uri: &str, call_id: &str, transport: &str, extra: &str) -> Vec<u8> {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:9;branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@a.example>;tag=f1\r\nTo: <sip:alice@a.example>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(WAIT, s.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).expect("utf-8")
}

async fn udp_ask(server: SocketAddr, msg: &[u8]) -> String {
    let u = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    u.send_to(msg, server).await.expect("send");
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = timeout(WAIT, u.recv_from(&mut buf))
            .await
            .expect("answer in time")
            .expect("recv");
        let text = String::from_utf8(buf[..n].to_vec()).expect("utf-8");
        if !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    timeout(WAIT, c.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("read");
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test]
async fn bind_errors_are_reported_not_panicked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = write_files(
        dir.path(),
        &format!("udp = \"127.0.0.1:{port}\"\ntcp = \"off\"\n"),
    );
    let e = Server::bind(config).await.expect_err("the port is taken");
    assert!(matches!(e, ServerError::Transport(_)), "{e}");
    assert!(e.to_string().contains(&port.to_string()), "{e}");

    let config = write_files(dir.path(), ALL);
    std::fs::remove_file(dir.path().join("users.toml")).expect("rm");
    let e = Server::bind(config).await.expect_err("no users file");
    assert!(matches!(e, ServerError::Users { .. }), "{e}");
}

#[tokio::test]
async fn bind_prepares_locals_with_the_actual_ports_and_a_persistent_token_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_files(dir.path(), ALL);
    let s = Server::bind(config.clone()).await.expect("bind");
    let addrs = s.local_addrs();
    let cc = s.core_config();
    let ports: Vec<u16> = cc.locals.iter().map(|l| l.port).collect();
    let want: Vec<u16> = [addrs.udp, addrs.tcp, addrs.tls]
        .iter()
        .map(|a| a.expect("bound").port())
        .collect();
    assert_eq!(ports, want);
    assert!(ports.iter().all(|p| *p != 0));
    assert_eq!(cc.registrar.public, cc.locals[0]);
    assert_eq!(cc.locals[0].host, "127.0.0.1");
    assert!(s.tls_certificate().is_some());
    assert!(s
        .ready_line()
        .starts_with("sharecall sip: listening udp=127.0.0.1:"));
    let aor = sharecall_frontend::aor::Aor::new("alice", "a.example");
    let token = cc.token_key.token(&aor);
    drop(s);
    let again = Server::bind(config).await.expect("bind again");
    assert_eq!(
        again.core_config().token_key.token(&aor),
        token,
        "the key survives restarts"
    );
}

#[tokio::test]
async fn options_over_udp_tcp_tls_register_challenge_metrics_and_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_files(dir.path(), ALL);
    let server = Server::bind(config).await.expect("bind");
    let addrs = server.local_addrs();
    let metrics = server.metrics_addr().expect("metrics");
    let cert = server.tls_certificate().expect("cert").clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(PlaintextLocation::new(), async {
        let _ = stopped.await;
    }));

    let udp = addrs.udp.expect("udp");
    let uri = format!("sip:{udp}");
    let r = udp_ask(udp, &request("OPTIONS", &uri, "o-udp", "UDP", "")).await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");

    let tcp = addrs.tcp.expect("tcp");
    let mut c = TcpStream::connect(tcp).await.expect("connect");
    c.write_all(&request(
        "OPTIONS",
        &format!("sip:{tcp};transport=tcp"),
        "o-tcp",
        "TCP",
        "",
    ))
    .await
    .expect("write");
    let r = read_head(&mut c).await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");

    let tls_addr = addrs.tls.expect("tls");
    let cfg = tls::client_config(&[cert]).expect("client config");
    let tcp_s = TcpStream::connect(tls_addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(tls_addr.ip().into());
    let mut t = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp_s)
        .await
        .expect("handshake");
    t.write_all(&request(
        "OPTIONS",
        &format!("sips:{tls_addr}"),
        "o-tls",
        "TLS",
        "",
    ))
    .await
    .expect("write");
    let r = read_head(&mut t).await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");

    let contact = "Contact: <sip:alice@127.0.0.1:9>\r\nExpires: 600\r\n";
    let r = udp_ask(
        udp,
        &request("REGISTER", "sip:a.example", "reg1", "UDP", contact),
    )
    .await;
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    assert!(r.contains("WWW-Authenticate: Digest"), "{r}");

    let page = http_get(metrics, "/metrics").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("sip_requests_total{method=\"OPTIONS\"} 3"),
        "{page}"
    );
    assert!(
        page.contains("sip_requests_total{method=\"REGISTER\"} 1"),
        "{page}"
    );
    assert!(
        page.contains("sip_responses_total{method=\"OPTIONS\",class=\"2xx\"} 3"),
        "{page}"
    );
    assert!(
        page.contains("sip_responses_total{method=\"REGISTER\",class=\"4xx\"} 1"),
        "{page}"
    );

    stop.send(()).expect("server running");
    let r = timeout(Duration::from_secs(15), running)
        .await
        .expect("graceful shutdown within the drain timeout")
        .expect("no panic");
    assert!(r.is_ok(), "{r:?}");
}

async fn start_udp(
    dir: &Path,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ServerError>>,
) {
    let config = write_files(dir, "udp = \"127.0.0.1:0\"\ntcp = \"off\"\n");
    let server = Server::bind(config).await.expect("bind");
    let udp = server.local_addrs().udp.expect("udp");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(PlaintextLocation::new(), async {
        let _ = stopped.await;
    }));
    (udp, stop, running)
}

#[tokio::test]
async fn a_call_between_two_registered_users_over_udp() {
    use sharecall_frontend::aor::Aor;
    use sharecall_frontend::ua::UserAgent;
    let dir = tempfile::tempdir().expect("tempdir");
    let (udp, stop, running) = start_udp(dir.path()).await;
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut alice = UserAgent::bind(Aor::new("alice", "a.example"), "wonderland", udp, any)
        .await
        .expect("bind");
    let mut bob = UserAgent::bind(Aor::new("bob", "a.example"), "builder", udp, any)
        .await
        .expect("bind");
    alice.register(600).await.expect("alice registers");
    let contacts = bob.register(600).await.expect("bob registers");
    assert!(
        contacts
            .iter()
            .any(|c| c.contains(&bob.local_addr().to_string())),
        "{contacts:?}"
    );
    let bob_contact = bob.contact();
    let answering = tokio::spawn(async move { bob.answer(WAIT).await });
    let call = timeout(WAIT, alice.call("sip:bob@a.example"))
        .await
        .expect("in time")
        .expect("bob answers");
    let answered = answering
        .await
        .expect("no panic")
        .expect("bob saw the call");
    assert_eq!(answered.request_uri, bob_contact);
    assert!(
        answered.from.contains("sip:alice@a.example"),
        "{}",
        answered.from
    );
    assert!(
        call.callee_contact.contains(&bob_contact),
        "{}",
        call.callee_contact
    );
    stop.send(()).expect("running");
    timeout(Duration::from_secs(15), running)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("ok");
}

/// While draining, new out-of-dialog requests get 503;
/// a transaction still alive holds the server until the drain timeout.
#[tokio::test]
async fn shutdown_drains_and_turns_new_requests_away() {
    use sharecall_frontend::aor::Aor;
    use sharecall_frontend::ua::UserAgent;
    let dir = tempfile::tempdir().expect("tempdir");
    let (udp, stop, running) = start_udp(dir.path()).await;
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut bob = UserAgent::bind(Aor::new("bob", "a.example"), "builder", udp, any)
        .await
        .expect("bind");
    bob.register(600).await.expect("bob registers");
    // A caller from another domain (not authenticated here) calls bob, who
    // never answers: the INVITE transaction stays alive.
    let caller = UdpSocket::bind(any).await.expect("bind");
    let invite = format!(
        "INVITE sip:bob@a.example SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKinv1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:carol@c.example>;tag=c1\r\nTo: <sip:bob@a.example>\r\n\
         Call-ID: inv1\r\nCSeq: 1 INVITE\r\nContact: <sip:carol@{}>\r\nContent-Length: 0\r\n\r\n",
        caller.local_addr().expect("addr"),
        caller.local_addr().expect("addr"),
    );
    caller.send_to(invite.as_bytes(), udp).await.expect("send");
    let mut buf = vec![0u8; 65536];
    let (n, _) = timeout(WAIT, caller.recv_from(&mut buf))
        .await
        .expect("100 Trying in time")
        .expect("recv");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 100"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );

    stop.send(()).expect("running");
    // The shutdown is noticed by the core task asynchronously: ask until
    // the answer is the 503.
    let turned_away = timeout(WAIT, async {
        let mut i = 0;
        loop {
            i += 1;
            let uri = format!("sip:{udp}");
            let r = udp_ask(
                udp,
                &request("OPTIONS", &uri, &format!("late{i}"), "UDP", ""),
            )
            .await;
            if r.starts_with("SIP/2.0 503") {
                return r;
            }
        }
    })
    .await
    .expect("503 while draining");
    assert!(turned_away.contains("Retry-After:"), "{turned_away}");
    let r = timeout(Duration::from_secs(20), running)
        .await
        .expect("returns after the drain timeout")
        .expect("no panic");
    assert!(r.is_ok(), "{r:?}");
}
