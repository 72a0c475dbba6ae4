//! The transports on 127.0.0.1, independent of the core: a small test
//! driver reads the inputs the transports hand over and answers OPTIONS
//! with 200 through the transports' send path.

use std::net::SocketAddr;
use std::time::Duration;

use sharecall_frontend::config;
use sharecall_frontend::core::{Input, TxId};
use sharecall_frontend::peer::{Dest, Peer, Protocol};
use sharecall_frontend::transport::{
    tls, BindSpec, LocalAddrs, TlsIdentity, Transport, TransportConfig, TransportHandle,
};
use sharecall_sip::message::build_response;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

fn test_config() -> TransportConfig {
    let limits = config::Limits {
        max_message: 4096,
        max_connections: 2,
        idle_timeout: Duration::from_secs(30),
        message_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(2),
    };
    TransportConfig::from_limits(&limits)
}

fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// What the driver saw.
#[derive(Debug)]
enum Seen {
    Request { call_id: String, from: Peer },
    Response { status: u16, from: Peer },
    SendFailed(TxId),
}

/// Starts transports with a driver that answers every request but ACK
/// with 200 on the peer it came from.
async fn start(spec: BindSpec) -> (TransportHandle, LocalAddrs, mpsc::UnboundedReceiver<Seen>) {
    let t = Transport::bind(spec, test_config()).await.expect("bind");
    let addrs = t.local_addrs();
    let (tx, mut rx) = mpsc::channel(64);
    let handle = t.start(tx);
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let h = handle.clone();
    tokio::spawn(async move {
        while let Some(input) = rx.recv().await {
            match input {
                Input::Received { msg, from } => {
                    if msg.is_request() {
                        let call_id = msg.call_id().expect("validated");
                        if msg.method().as_deref() != Some("ACK") {
                            let r = build_response(&msg, 200, "OK", Some("t1"), &[]);
                            h.send(Dest::Peer(from), r, None);
                        }
                        let _ = seen_tx.send(Seen::Request { call_id, from });
                    } else {
                        let status = msg.status().expect("a response");
                        let _ = seen_tx.send(Seen::Response { status, from });
                    }
                }
                Input::SendFailed { tx } => {
                    let _ = seen_tx.send(Seen::SendFailed(tx));
                }
                other => panic!("unexpected input {other:?}"),
            }
        }
    });
    (handle, addrs, seen_rx)
}

fn options(call_id: &str, transport: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:fe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:9;branch=z9hG4bK{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@a.example>;tag=f\r\nTo: <sip:fe@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Reads until `buf` holds a complete header section ending a response
/// (our test responses have no body); returns it.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S, pending: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let r: Vec<u8> = pending.drain(..end + 4).collect();
            return String::from_utf8(r).expect("utf-8");
        }
        let mut buf = [0u8; 4096];
        let n = timeout(WAIT, s.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before a response; got {pending:?}"
        );
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Waits until the server closes the connection (EOF or reset), returning
/// what it sent before.
async fn read_to_close<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(WAIT, s.read(&mut buf))
            .await
            .expect("closed in time")
        {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    call_id: &str,
    transport: &str,
) -> String {
    s.write_all(&options(call_id, transport))
        .await
        .expect("write");
    read_response(s, &mut Vec::new()).await
}

fn tcp_only() -> BindSpec {
    BindSpec {
        tcp: Some(localhost()),
        ..BindSpec::default()
    }
}

#[tokio::test]
async fn tcp_frames_two_messages_in_one_segment_and_one_across_segments() {
    let (_h, addrs, mut seen) = start(tcp_only()).await;
    let mut c = TcpStream::connect(addrs.tcp.expect("tcp"))
        .await
        .expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let mut two = options("c1", "TCP");
    two.extend_from_slice(&options("c2", "TCP"));
    c.write_all(&two).await.expect("write");
    let mut pending = Vec::new();
    let r1 = read_response(&mut c, &mut pending).await;
    let r2 = read_response(&mut c, &mut pending).await;
    assert!(
        r1.starts_with("SIP/2.0 200 OK") && r1.contains("Call-ID: c1"),
        "{r1}"
    );
    assert!(
        r2.starts_with("SIP/2.0 200 OK") && r2.contains("Call-ID: c2"),
        "{r2}"
    );

    let third = options("c3", "TCP");
    let (a, b) = third.split_at(40);
    c.write_all(a).await.expect("write");
    c.flush().await.expect("flush");
    c.write_all(b).await.expect("write");
    let r3 = read_response(&mut c, &mut pending).await;
    assert!(r3.contains("Call-ID: c3"), "{r3}");

    // All three came over one flow, the same the driver answered on.
    let mut flows = Vec::new();
    for _ in 0..3 {
        match timeout(WAIT, seen.recv())
            .await
            .expect("seen")
            .expect("open")
        {
            Seen::Request { from, .. } => {
                assert_eq!(from.protocol, Protocol::Tcp);
                flows.push(from.flow.expect("a flow"));
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(flows.iter().all(|f| *f == flows[0]), "{flows:?}");
}

#[tokio::test]
async fn tcp_double_crlf_ping_gets_a_crlf_pong() {
    let (_h, addrs, _seen) = start(tcp_only()).await;
    let mut c = TcpStream::connect(addrs.tcp.expect("tcp"))
        .await
        .expect("connect");
    c.write_all(b"\r\n\r\n").await.expect("write");
    let mut buf = [0u8; 2];
    timeout(WAIT, c.read_exact(&mut buf))
        .await
        .expect("pong in time")
        .expect("read");
    assert_eq!(&buf, b"\r\n");
    let r = ask(&mut c, "after-ping", "TCP").await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_the_server_keeps_serving() {
    let (h, addrs, _seen) = start(tcp_only()).await;
    let addr = addrs.tcp.expect("tcp");
    let mut a = TcpStream::connect(addr).await.expect("connect");
    let mut b = TcpStream::connect(addr).await.expect("connect");
    assert!(ask(&mut a, "a1", "TCP").await.starts_with("SIP/2.0 200"));
    assert!(ask(&mut b, "b1", "TCP").await.starts_with("SIP/2.0 200"));
    assert_eq!(h.connections(), 2);

    let mut third = TcpStream::connect(addr).await.expect("the kernel accepts");
    let _ = third.write_all(&options("x", "TCP")).await;
    let got = read_to_close(&mut third).await;
    assert!(got.is_empty(), "the third connection got {got:?}");
    assert!(ask(&mut a, "a2", "TCP").await.starts_with("SIP/2.0 200"));

    // Once one closes, a new connection is served (the server notices the
    // close asynchronously: retry until it has).
    drop(b);
    let served = timeout(WAIT, async {
        loop {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            if c.write_all(&options("c", "TCP")).await.is_err() {
                continue;
            }
            let mut buf = [0u8; 12];
            if let Ok(Ok(_)) = timeout(Duration::from_millis(500), c.read_exact(&mut buf)).await {
                return buf;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a slot frees up");
    assert_eq!(&served, b"SIP/2.0 200 ");
}

#[tokio::test]
async fn a_message_not_complete_within_message_timeout_closes_the_connection() {
    let (_h, addrs, _seen) = start(tcp_only()).await;
    let addr = addrs.tcp.expect("tcp");
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"OPTIONS sip:fe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP")
        .await
        .expect("write");
    // The server's message_timeout (300 ms) closes it; we only wait.
    let got = read_to_close(&mut slow).await;
    assert!(got.is_empty(), "{got:?}");
    let mut c = TcpStream::connect(addr).await.expect("connect");
    assert!(ask(&mut c, "after-loris", "TCP")
        .await
        .starts_with("SIP/2.0 200"));
}

#[tokio::test]
async fn oversized_messages_get_513_and_the_stream_is_closed() {
    let (_h, addrs, _seen) = start(BindSpec {
        udp: Some(localhost()),
        tcp: Some(localhost()),
        ..BindSpec::default()
    })
    .await;
    let big = String::from_utf8(options("big", "TCP"))
        .expect("utf-8")
        .replace("Content-Length: 0", "Content-Length: 100000");
    let mut c = TcpStream::connect(addrs.tcp.expect("tcp"))
        .await
        .expect("connect");
    c.write_all(big.as_bytes()).await.expect("write");
    let got = String::from_utf8(read_to_close(&mut c).await).expect("utf-8");
    assert!(
        got.starts_with("SIP/2.0 513 Message Too Large\r\n"),
        "{got}"
    );
    assert!(got.contains("Call-ID: big\r\n"), "{got}");

    // Over UDP: a datagram over max_message (4096).
    let u = UdpSocket::bind(localhost()).await.expect("bind");
    let mut dgram = String::from_utf8(options("bigu", "UDP"))
        .expect("utf-8")
        .replace("Content-Length: 0", "Content-Length: 5000");
    dgram.push_str(&"x".repeat(5000));
    u.send_to(dgram.as_bytes(), addrs.udp.expect("udp"))
        .await
        .expect("send");
    let r = udp_recv(&u).await;
    assert!(
        r.starts_with("SIP/2.0 513") && r.contains("Call-ID: bigu"),
        "{r}"
    );
}

async fn udp_recv(u: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65536];
    let (n, _) = timeout(WAIT, u.recv_from(&mut buf))
        .await
        .expect("in time")
        .expect("recv");
    String::from_utf8(buf[..n].to_vec()).expect("utf-8")
}

#[tokio::test]
async fn udp_garbage_is_dropped_or_answered_400_and_good_requests_still_served() {
    let (_h, addrs, mut seen) = start(BindSpec {
        udp: Some(localhost()),
        ..BindSpec::default()
    })
    .await;
    let server = addrs.udp.expect("udp");
    let u = UdpSocket::bind(localhost()).await.expect("bind");
    u.send_to(b"\x00\xffnot sip at all", server)
        .await
        .expect("send");
    // Parsed, but no CSeq: 400 with the request's headers.
    let no_cseq = String::from_utf8(options("nocseq", "UDP"))
        .expect("utf-8")
        .replace("CSeq: 1 OPTIONS\r\n", "");
    u.send_to(no_cseq.as_bytes(), server).await.expect("send");
    let r = udp_recv(&u).await;
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request") && r.contains("Call-ID: nocseq"),
        "{r}"
    );
    // A keep-alive is ignored; then a good request is answered.
    u.send_to(b"\r\n\r\n", server).await.expect("send");
    u.send_to(&options("good", "UDP"), server)
        .await
        .expect("send");
    let r = udp_recv(&u).await;
    assert!(
        r.starts_with("SIP/2.0 200 OK") && r.contains("Call-ID: good"),
        "{r}"
    );
    match timeout(WAIT, seen.recv())
        .await
        .expect("seen")
        .expect("open")
    {
        Seen::Request { call_id, from } => {
            assert_eq!(call_id, "good");
            assert_eq!(from.protocol, Protocol::Udp);
            assert_eq!(from.flow, None);
            assert_eq!(from.addr, u.local_addr().expect("addr"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn tcp_garbage_and_missing_content_length_close_and_the_server_still_answers() {
    let (_h, addrs, _seen) = start(tcp_only()).await;
    let addr = addrs.tcp.expect("tcp");
    let mut g = TcpStream::connect(addr).await.expect("connect");
    g.write_all(b"\x00\x01garbage\r\n\r\n")
        .await
        .expect("write");
    assert!(read_to_close(&mut g).await.is_empty());

    let no_cl = String::from_utf8(options("nocl", "TCP"))
        .expect("utf-8")
        .replace("Content-Length: 0\r\n", "");
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(no_cl.as_bytes()).await.expect("write");
    let got = String::from_utf8(read_to_close(&mut c).await).expect("utf-8");
    assert!(
        got.starts_with("SIP/2.0 400 Bad Request\r\n") && got.contains("Call-ID: nocl"),
        "{got}"
    );

    let mut c = TcpStream::connect(addr).await.expect("connect");
    assert!(ask(&mut c, "fine", "TCP").await.starts_with("SIP/2.0 200"));
}

fn tls_spec() -> (BindSpec, rustls::pki_types::CertificateDer<'static>) {
    let id = TlsIdentity::self_signed("127.0.0.1").expect("certificate");
    let cert = id.chain[0].clone();
    (
        BindSpec {
            tls: Some((localhost(), id)),
            ..BindSpec::default()
        },
        cert,
    )
}

async fn tls_client(
    addr: SocketAddr,
    cert: &rustls::pki_types::CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let cfg = tls::client_config(std::slice::from_ref(cert)).expect("client config");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake with the pinned self-signed certificate")
}

#[tokio::test]
async fn tls_with_the_self_signed_certificate_and_garbage_inside_tls() {
    let (spec, cert) = tls_spec();
    let (_h, addrs, mut seen) = start(spec).await;
    let addr = addrs.tls.expect("tls");
    let mut c = tls_client(addr, &cert).await;
    let r = ask(&mut c, "tls1", "TLS").await;
    assert!(
        r.starts_with("SIP/2.0 200 OK") && r.contains("Call-ID: tls1"),
        "{r}"
    );
    match timeout(WAIT, seen.recv())
        .await
        .expect("seen")
        .expect("open")
    {
        Seen::Request { from, .. } => {
            assert_eq!(from.protocol, Protocol::Tls);
            assert!(from.flow.is_some());
        }
        other => panic!("{other:?}"),
    }

    let mut g = tls_client(addr, &cert).await;
    g.write_all(b"\x00\x01garbage\r\n\r\n")
        .await
        .expect("write");
    assert!(read_to_close(&mut g).await.is_empty());
    // Not TLS at all on the TLS port: the handshake fails, nothing else.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    let _ = plain.write_all(&options("plain", "TCP")).await;
    let _ = read_to_close(&mut plain).await;

    let mut c = tls_client(addr, &cert).await;
    assert!(ask(&mut c, "tls2", "TLS").await.starts_with("SIP/2.0 200"));
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_fails_the_handshake() {
    let (spec, _cert) = tls_spec();
    let (_h, addrs, _seen) = start(spec).await;
    let other = TlsIdentity::self_signed("127.0.0.1").expect("certificate");
    let cfg = tls::client_config(&other.chain).expect("client config");
    let addr = addrs.tls.expect("tls");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let r = timeout(
        WAIT,
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .expect("in time");
    assert!(r.is_err(), "an untrusted certificate must be refused");
}

#[tokio::test]
async fn outbound_sends_connect_once_and_replies_reuse_the_flow() {
    // B answers; A sends to B over TCP and gets the answer on the same
    // connection.
    let (_hb, b, mut seen_b) = start(tcp_only()).await;
    let (ha, _a, mut seen_a) = start(tcp_only()).await;
    let to = Dest::Peer(Peer {
        protocol: Protocol::Tcp,
        addr: b.tcp.expect("tcp"),
        flow: None,
    });
    ha.send(to.clone(), options("out1", "TCP"), Some(TxId(1)));
    match timeout(WAIT, seen_b.recv())
        .await
        .expect("seen")
        .expect("open")
    {
        Seen::Request { call_id, .. } => assert_eq!(call_id, "out1"),
        other => panic!("{other:?}"),
    }
    let first_flow = match timeout(WAIT, seen_a.recv())
        .await
        .expect("seen")
        .expect("open")
    {
        Seen::Response { status, from } => {
            assert_eq!(status, 200);
            from.flow.expect("a flow")
        }
        other => panic!("{other:?}"),
    };
    ha.send(to, options("out2", "TCP"), Some(TxId(2)));
    match timeout(WAIT, seen_a.recv())
        .await
        .expect("seen")
        .expect("open")
    {
        Seen::Response { from, .. } => assert_eq!(from.flow, Some(first_flow)),
        other => panic!("{other:?}"),
    }
    assert_eq!(ha.connections(), 1);
}

#[tokio::test]
async fn failed_sends_are_reported_for_their_transaction() {
    let (spec, cert) = tls_spec();
    let (_hb, b, _seen_b) = start(spec).await;
    let (ha, _a, mut seen_a) = start(tcp_only()).await;
    let tls_peer = Peer {
        protocol: Protocol::Tls,
        addr: b.tls.expect("tls"),
        flow: None,
    };
    // Outbound TLS without listen.tls_ca: refused, never unverified.
    ha.send(Dest::Peer(tls_peer), options("t", "TLS"), Some(TxId(7)));
    match timeout(WAIT, seen_a.recv())
        .await
        .expect("seen")
        .expect("open")
    {
        Seen::SendFailed(tx) => assert_eq!(tx, TxId(7)),
        other => panic!("{other:?}"),
    }
    // Nobody listens on a closed port.
    let closed = {
        let l = std::net::TcpListener::bind(localhost()).expect("bind");
        l.local_addr().expect("addr")
    };
    let to = Dest::Peer(Peer {
        protocol: Protocol::Tcp,
        addr: closed,
        flow: None,
    });
    ha.send(to, options("r", "TCP"), Some(TxId(8)));
    match timeout(WAIT, seen_a.recv())
        .await
        .expect("seen")
        .expect("open")
    {
        Seen::SendFailed(tx) => assert_eq!(tx, TxId(8)),
        other => panic!("{other:?}"),
    }

    // With the certificate trusted, outbound TLS works, by name too.
    let (hc, _c, mut seen_c) = start(BindSpec {
        tcp: Some(localhost()),
        client_tls: Some(tls::client_config(&[cert]).expect("config")),
        ..BindSpec::default()
    })
    .await;
    hc.send(
        Dest::Peer(tls_peer),
        options("tls-out", "TLS"),
        Some(TxId(9)),
    );
    match timeout(WAIT, seen_c.recv())
        .await
        .expect("seen")
        .expect("open")
    {
        Seen::Response { status, from } => {
            assert_eq!(status, 200);
            assert_eq!(from.protocol, Protocol::Tls);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn names_are_looked_up_before_sending() {
    let (ha, _a, _seen_a) = start(BindSpec {
        udp: Some(localhost()),
        ..BindSpec::default()
    })
    .await;
    let peer = UdpSocket::bind(localhost()).await.expect("bind");
    let port = peer.local_addr().expect("addr").port();
    let to = Dest::Name {
        protocol: Protocol::Udp,
        host: "localhost".into(),
        port,
    };
    ha.send(to, options("named", "UDP"), None);
    let got = udp_recv(&peer).await;
    assert!(
        got.starts_with("OPTIONS ") && got.contains("Call-ID: named"),
        "{got}"
    );

    let (_hb, b, mut seen_b) = start(tcp_only()).await;
    let (hc, _c, _seen_c) = start(tcp_only()).await;
    // "localhost" may put ::1 first, where nobody listens: the next
    // address is tried.
    let to = Dest::Name {
        protocol: Protocol::Tcp,
        host: "localhost".into(),
        port: b.tcp.expect("tcp").port(),
    };
    hc.send(to, options("named-tcp", "TCP"), None);
    match timeout(WAIT, seen_b.recv())
        .await
        .expect("seen")
        .expect("open")
    {
        Seen::Request { call_id, from } => {
            assert_eq!(call_id, "named-tcp");
            assert_eq!(from.protocol, Protocol::Tcp);
        }
        other => panic!("{other:?}"),
    }
}
