//! The client library against three real providers in this process: the
//! whole life of an entry. Failures, retries and lying providers are
//! tested against provider processes in tests/tests/client_contract.rs.

mod real;

use std::time::Duration;

use rand::rngs::OsRng;
use sharecall_client::client::{Client, EnrollStatus};
use sharecall_client::{AccountKey, ResultCode};
use sharecall_proto::encoding::{Endpoint, Pseudonym};

fn client(urls: &[String; 3], key: &AccountKey) -> Client {
    Client::new(urls, key.clone())
        .expect("client")
        .with_timeout(Duration::from_secs(20))
}

async fn enrolled(urls: &[String; 3]) -> Client {
    let cl = client(urls, &AccountKey::generate(&mut OsRng));
    cl.enroll(None).await.expect("enroll");
    cl
}

fn alice() -> (Pseudonym, Endpoint) {
    (
        Pseudonym::parse("+49 30 1234567").expect("pseudonym"),
        Endpoint::parse("sip:alice@192.0.2.10:5060").expect("endpoint"),
    )
}

const HOUR: Duration = Duration::from_secs(3600);

async fn register_alice(cl: &Client) {
    let (ps, ep) = alice();
    let out = cl
        .register(&ps, &ep, HOUR, Some(b"desk phone"))
        .await
        .expect("register");
    assert_eq!(out.code, ResultCode::Ok);
    assert_eq!(out.degraded, None);
}

#[test]
fn enroll_register_resolve_update_delete() {
    let data = tempfile::tempdir().expect("tempdir");
    let (rt, cluster) = real::real_cluster(data.path(), &[]);
    rt.block_on(cycle(&cluster.urls()));
    rt.block_on(cluster.stop()).expect("stop providers");
}

async fn cycle(urls: &[String; 3]) {
    let key = AccountKey::generate(&mut OsRng);
    let cl = client(urls, &key);
    assert_eq!(
        cl.enroll(None).await.expect("enroll"),
        [EnrollStatus::Enrolled; 3]
    );
    assert_eq!(
        cl.enroll(None).await.expect("enroll again"),
        [EnrollStatus::AlreadyEnrolled; 3]
    );

    let (ps, ep) = alice();
    let before = sharecall_client::client::now_ms();
    register_alice(&cl).await;
    let again = cl.register(&ps, &ep, HOUR, None).await.expect("register");
    assert_eq!(again.code, ResultCode::Exists);

    // The same number written another way resolves to the endpoint.
    let other_writing = Pseudonym::parse("0049 (30) 123-4567").expect("pseudonym");
    let r = cl.resolve(&other_writing).await.expect("resolve");
    assert_eq!(r.code, ResultCode::Ok);
    assert_eq!(r.endpoint, Some(ep.clone()));
    assert_eq!(r.extra.as_deref(), Some(&b"desk phone"[..]));
    let expires = r.expires_at_ms.expect("expiry");
    assert!(expires >= before + 3_600_000 && expires <= before + 3_700_000);
    assert_eq!(r.degraded, None);

    // Another account may neither update nor delete it.
    let mallory = enrolled(urls).await;
    let evil = Endpoint::parse("sip:mallory@203.0.113.66").expect("endpoint");
    let out = mallory
        .update(&ps, &evil, HOUR, None)
        .await
        .expect("update");
    assert_eq!(out.code, ResultCode::Forbidden);
    assert_eq!(
        mallory.delete(&ps).await.expect("delete").code,
        ResultCode::Forbidden
    );

    // The owner may; no extra data now.
    let moved = Endpoint::parse("sip:alice@198.51.100.1:5062;transport=tcp").expect("endpoint");
    let out = cl.update(&ps, &moved, HOUR, None).await.expect("update");
    assert_eq!(out.code, ResultCode::Ok);
    let r = cl.resolve(&ps).await.expect("resolve");
    assert_eq!(r.endpoint, Some(moved));
    assert_eq!(r.extra, None);

    assert_eq!(cl.delete(&ps).await.expect("delete").code, ResultCode::Ok);
    let r = cl.resolve(&ps).await.expect("resolve");
    assert_eq!((r.code, r.endpoint), (ResultCode::NotFound, None));
    assert_eq!(
        cl.delete(&ps).await.expect("delete").code,
        ResultCode::NotFound
    );
    let unknown = Pseudonym::parse("nobody@example.org").expect("pseudonym");
    let out = cl.update(&unknown, &ep, HOUR, None).await.expect("update");
    assert_eq!(out.code, ResultCode::NotFound);
}

/// The library over pinned TLS: a server at P1's address presenting
/// another certificate than P1's pin (an impostor, run with the provider's
/// own TLS serving code) is refused by name, and not one HTTP request
/// reaches it; with the right pins the entry registers and resolves.
#[test]
fn pinned_tls_refuses_an_impostor_before_sending_anything() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use sharecall_provider::http::tls::{serve, ApiCert};
    use sharecall_provider::identity::Identity;

    let data = tempfile::tempdir().expect("tempdir");
    let (rt, cluster) = real::real_cluster(data.path(), &[]);
    let urls = cluster.urls();
    assert!(urls
        .iter()
        .all(|u| u.starts_with("https://") && u.contains("#sha256=")));

    let seen = Arc::new(AtomicU64::new(0));
    let impostor_url = rt.block_on(async {
        let identity = Identity::generate("impostor").expect("identity");
        let tls = ApiCert::load(&Default::default(), &identity)
            .expect("cert")
            .server_config()
            .expect("config");
        let counter = seen.clone();
        let router = axum::Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "impostor" }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(
            listener,
            tls,
            router,
            tokio_util::sync::CancellationToken::new(),
        ));
        // P1's real pin, the impostor's address.
        let pin = urls[1].split_once('#').expect("pinned").1;
        format!("https://{addr}#{pin}")
    });
    let mixed = [urls[0].clone(), impostor_url, urls[2].clone()];
    let key = AccountKey::generate(&mut OsRng);
    let err = rt
        .block_on(client(&mixed, &key).enroll(None))
        .expect_err("impostor")
        .to_string();
    assert!(err.contains("P1 (https://127.0.0.1:"), "{err}");
    assert!(err.contains("is not the pinned"), "{err}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "a request reached the impostor"
    );

    rt.block_on(async {
        let cl = enrolled(&urls).await;
        register_alice(&cl).await;
        let r = cl.resolve(&alice().0).await.expect("resolve");
        assert_eq!(r.endpoint, Some(alice().1));
    });
    rt.block_on(cluster.stop()).expect("stop providers");
}
