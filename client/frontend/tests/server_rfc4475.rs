//! RFC 4475's torture messages sent to a running front end over UDP: each
//! request gets the answer the RFC asks for (or is dropped where it asks
//! that), and the front end answers the next request after every one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sharecall_frontend::config::Config;
use sharecall_frontend::location::plaintext::PlaintextLocation;
use sharecall_frontend::server::Server;
use tokio::net::UdpSocket;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// Each torture request and what this front end (domain a.example, no
/// open relay) must answer: the wire layer's verdict for the invalid ones
/// (400, 505, or nothing), and for the valid ones what a registrar and
/// proxy of another domain answers: 403 for requests between foreign
/// domains, 416 for unknown Request-URI schemes, 420 for an unknown
/// Proxy-Require, 483 for Max-Forwards 0, and wsinv, which names a route,
/// forwarded there (503: the name does not resolve here).
const EXPECTED: &[(&str, &str)] = &[
    // 3.1.1 valid
    ("wsinv", "503"),
    ("intmeth", "403"),
    ("esc01", "403"),
    ("escnull", "403"),
    ("esc02", "403"),
    ("lwsdisp", "403"),
    ("longreq", "403"),
    ("dblreq", "403"),
    ("semiuri", "403"),
    ("transports", "403"),
    ("mpart01", "403"),
    // 3.1.2 invalid
    ("badinv01", "400"),
    ("clerr", "400"),
    ("ncl", "400"),
    ("scalar02", "400"),
    ("quotbal", "400"),
    ("ltgtruri", "400"),
    ("lwsruri", "400"),
    ("lwsstart", "400"),
    ("trws", "400"),
    ("escruri", "400"),
    ("baddate", "403"), // Date is not used: ignored
    ("regbadct", "400"),
    ("badaspec", "400"),
    ("baddn", "400"),
    ("badvers", "505"),
    ("mismatch01", "400"),
    ("mismatch02", "400"),
    // 3.2: matched by RFC 2543's rule, then handled
    ("badbranch", "403"),
    // 3.3
    ("insuf", "400"),
    ("unkscm", "416"),
    ("novelsc", "416"),
    ("unksm2", "403"),
    ("bext01", "420"),
    ("invut", "403"),
    ("regaut01", "403"),
    ("multi01", "400"),
    ("mcl01", "400"),
    ("zeromf", "483"),
    ("cparam01", "403"),
    ("cparam02", "403"),
    ("regescrt", "403"),
    ("sdp01", "403"),
    // 3.4: an RFC 2543 request is handled like any other
    ("inv2543", "403"),
    // not an RFC vector: no SIP-Version and a header line without a colon;
    // nothing can be parsed to answer
    ("test", "drop"),
];

/// The torture messages, byte-exact, shared with the wire layer's tests.
fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sip/tests/data/rfc4475")
}

fn config(dir: &Path) -> Config {
    std::fs::write(
        dir.join("users.toml"),
        "[[user]]\nname = \"alice\"\npassword = \"wonderland\"\n",
    )
    .expect("users file");
    let text =
        "[sip]\ndomains = [\"a.example\"]\nusers = \"users.toml\"\nlocation = \"plaintext\"\n\
                [listen]\nudp = \"127.0.0.1:0\"\ntcp = \"off\"\n";
    Config::parse(text, dir).expect("config")
}

/// The next response on `u`.
async fn next_response(u: &UdpSocket, wait: Duration) -> Option<String> {
    let mut buf = vec![0u8; 65_536];
    let (n, _) = timeout(wait, u.recv_from(&mut buf))
        .await
        .ok()?
        .expect("recv");
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn ping(n: usize, us: SocketAddr) -> Vec<u8> {
    format!(
        "OPTIONS sip:{us} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKping{n};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@x.example>;tag=p\r\nTo: <sip:{us}>\r\n\
         Call-ID: ping{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn every_torture_request_is_answered_as_the_rfc_says_and_the_front_end_keeps_serving() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .expect("data dir")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".dat")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    let mut got = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let bytes = std::fs::read(data_dir().join(format!("{name}.dat"))).expect("read");
        if bytes.starts_with(b"SIP/2.0") {
            continue; // responses: nothing to answer
        }
        // A fresh front end per message: the torture messages reuse each
        // other's branches, so one server would (rightly) take a later one
        // for a retransmission of an earlier one.
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::bind(config(dir.path())).await.expect("bind");
        let addr: SocketAddr = server.local_addrs().udp.expect("udp");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(PlaintextLocation::new(), async move {
            let _ = stopped.await;
        }));
        let u = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        u.send_to(&bytes, addr).await.expect("send");
        // Answers may overtake each other (a stateless 400 against a
        // transaction's reply): two pings in turn bound the wait, and the
        // torture message's answer may come at any point before the second.
        let mut outcome = "drop".to_string();
        let mut proceeding = false;
        let note = |r: &str, outcome: &mut String, proceeding: &mut bool| {
            if r.starts_with("SIP/2.0 1") {
                *proceeding = true;
            } else {
                *outcome = r.split_whitespace().nth(1).unwrap_or_default().to_string();
            }
        };
        for k in 0..2 {
            let id = 2 * i + k;
            u.send_to(&ping(id, addr), addr).await.expect("send ping");
            loop {
                let r = next_response(&u, WAIT).await.expect("an answer in time");
                if r.contains(&format!("Call-ID: ping{id}\r\n")) {
                    assert!(r.starts_with("SIP/2.0 200"), "{name}: ping after it: {r}");
                    break;
                }
                note(&r, &mut outcome, &mut proceeding);
            }
        }
        // A request in progress (100 Trying seen) gets its final answer
        // once its forwarding settles (here: a name that does not resolve).
        while proceeding && outcome == "drop" {
            let r = next_response(&u, WAIT)
                .await
                .expect("a final answer in time");
            note(&r, &mut outcome, &mut proceeding);
        }
        let _ = stop.send(());
        task.await.expect("task").expect("clean shutdown");
        got.push(format!("{name} {outcome}"));
    }
    let mut want: Vec<String> = EXPECTED.iter().map(|(n, o)| format!("{n} {o}")).collect();
    want.sort();
    assert_eq!(got, want, "every request, with its answer");
}
