//! TLS on the public API against three real provider processes: the CLI
//! connects with pinned fingerprints; a wrong pin, a plain `http://` URL
//! and plain HTTP to the TLS port are refused; a provider with
//! `listen.api_plaintext_insecure` serves plain HTTP and says so loudly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::sharecall;
use sharecall_tests::table::TestClient;

fn entries(cluster: &Cluster) -> [u64; 3] {
    std::array::from_fn(|i| {
        cluster.get(i, "/v1/admin/table").expect("table")["entries"]
            .as_u64()
            .expect("entries")
    })
}

#[test]
fn cli_over_pinned_tls_and_every_insecure_path_refused() {
    let cluster = Cluster::start(ClusterOptions::default());
    let home = tempfile::tempdir().expect("home");
    let urls: Vec<String> = (0..3).map(|i| cluster.api_url(i)).collect();
    assert!(urls.iter().all(|u| u.starts_with("https://")), "{urls:?}");
    let pinned = urls.join(",");

    assert_eq!(sharecall(home.path(), &pinned, &["keygen"]).0, 0);
    let (code, _, err) = sharecall(home.path(), &pinned, &["enroll"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = sharecall(
        home.path(),
        &pinned,
        &["register", "+49301234567", "sip:alice@192.0.2.10"],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = sharecall(home.path(), &pinned, &["resolve", "+49301234567", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("sip:alice@192.0.2.10"), "{out}");
    let before = entries(&cluster);
    assert_eq!(before, [1, 1, 1]);

    // P1's URL pinned to P0's certificate: P1 is refused by name, before
    // any request is sent to it, and the request changes nothing.
    let wrong = format!(
        "{},https://{}#sha256={},{}",
        urls[0], cluster.addrs[1].api, cluster.fingerprints[0], urls[2]
    );
    let (code, _, err) = sharecall(
        home.path(),
        &wrong,
        &[
            "register",
            "+49301234568",
            "sip:bob@192.0.2.11",
            "--timeout",
            "10s",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("P1 (https://"), "{err}");
    assert!(err.contains("is not the pinned"), "{err}");
    assert!(err.contains(&cluster.fingerprints[0]), "{err}");
    assert_eq!(entries(&cluster), before);

    // A plain http:// URL without the insecure flag is refused before
    // anything is sent.
    let plain = (0..3)
        .map(|i| format!("http://{}", cluster.addrs[i].api))
        .collect::<Vec<_>>()
        .join(",");
    let (code, _, err) = sharecall(home.path(), &plain, &["resolve", "+49301234567"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("provider URL 0"), "{err}");
    assert!(err.contains("plain HTTP"), "{err}");
    assert!(err.contains("--insecure-plain-http"), "{err}");
    // With the flag the client tries, but the TLS port does not speak HTTP.
    let (code, _, err) = sharecall(
        home.path(),
        &plain,
        &[
            "resolve",
            "+49301234567",
            "--insecure-plain-http",
            "--timeout",
            "5s",
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("sip:alice"), "{err}");

    // Plain HTTP straight to the TLS port gets no HTTP answer.
    let mut tcp = TcpStream::connect(cluster.addrs[0].api).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    tcp.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: p0\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    let _ = tcp.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(!String::from_utf8_lossy(&got).contains("openapi"));
}

#[test]
fn insecure_setting_serves_plain_http_and_warns() {
    let cluster = Cluster::start(ClusterOptions {
        api_plaintext_insecure: true,
        ..Default::default()
    });
    for i in 0..3 {
        let log = cluster.log(i);
        assert!(
            log.contains("INSECURE") && log.contains("api_plaintext_insecure"),
            "{log}"
        );
    }
    // The harness speaks plain HTTP to it.
    let client = TestClient::new(&cluster, 7);
    client.enroll();
    assert_eq!(client.register("carol", "sip:carol@192.0.2.12", 60), "ok");
    assert!(cluster.api_url(0).starts_with("http://"));
    // And the CLI only with its loud flag.
    let home = tempfile::tempdir().expect("home");
    let plain = (0..3)
        .map(|i| cluster.api_url(i))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(sharecall(home.path(), &plain, &["keygen"]).0, 0);
    let (code, _, err) = sharecall(home.path(), &plain, &["enroll"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("plain HTTP"), "{err}");
    let (code, _, err) = sharecall(home.path(), &plain, &["enroll", "--insecure-plain-http"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: --insecure-plain-http"), "{err}");
}
