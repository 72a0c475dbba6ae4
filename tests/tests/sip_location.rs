//! The SIP front end's sharecall location service
//! (`sharecall_frontend::location::sharecall::SharecallLocation`) against
//! three real provider processes: publish (register, then the update
//! path), resolve through the shared resolver account, unknown AORs, users
//! without a key, and providers gone.

use std::time::Duration;

use rand::rngs::OsRng;
use sharecall_client::{AccountKey, Client};
use sharecall_frontend::aor::Aor;
use sharecall_frontend::location::sharecall::SharecallLocation;
use sharecall_frontend::location::{Location, LocationError, Publication};
use sharecall_tests::cluster::{Cluster, ClusterOptions};

/// The harness is synchronous (processes, blocking HTTP); the client is
/// async. Tests run on a multi-threaded runtime and block one worker for
/// the harness.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn urls(c: &Cluster) -> Vec<String> {
    (0..3).map(|i| c.api_url(i)).collect()
}

/// A fresh account, enrolled at the three providers.
async fn enrolled(c: &Cluster) -> AccountKey {
    let key = AccountKey::generate(&mut OsRng);
    Client::new(&urls(c), key.clone())
        .expect("client")
        .with_timeout(Duration::from_secs(10))
        .enroll(None)
        .await
        .expect("enroll");
    key
}

fn publication(aor: &Aor, endpoint: &str) -> Publication {
    Publication {
        aor: aor.clone(),
        endpoint: endpoint.to_string(),
        // Not whole seconds: the providers get the ceiling.
        ttl: Duration::from_millis(3_599_500),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_updates_and_resolves_through_the_providers() {
    let mut c = blocking(|| Cluster::start(ClusterOptions::default()));
    let alice = Aor::new("alice", "a.example");
    let carol = Aor::new("carol", "a.example");
    let resolver = enrolled(&c).await;
    let alice_key = enrolled(&c).await;
    let loc = SharecallLocation::new(
        &urls(&c),
        resolver,
        vec![(alice.clone(), alice_key.clone())],
        Duration::from_secs(10),
        false,
    )
    .expect("location");

    // First publication registers the pseudonym.
    let before_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    loc.publish(&publication(
        &alice,
        "sip:fe-1@192.0.2.1:5060;transport=udp",
    ))
    .await
    .expect("register");
    let r = loc.resolve(&alice).await.expect("resolve").expect("found");
    assert_eq!(r.endpoint, "sip:fe-1@192.0.2.1:5060;transport=udp");
    let expires = r.expires_at_ms.expect("expiry known");
    assert!(
        expires >= before_ms + 3_600_000 && expires <= before_ms + 3_700_000,
        "{expires} vs {before_ms}"
    );

    // Second one takes the update path (register would answer `exists`).
    loc.publish(&publication(&alice, "sip:alice@192.0.2.7:5062"))
        .await
        .expect("update");
    let r = loc.resolve(&alice).await.expect("resolve").expect("found");
    assert_eq!(r.endpoint, "sip:alice@192.0.2.7:5062");

    // A fresh location service (a restarted front end) does not know the
    // entry exists: register answers `exists` and it falls back to update.
    let again = SharecallLocation::new(
        &urls(&c),
        enrolled(&c).await,
        vec![(alice.clone(), alice_key)],
        Duration::from_secs(10),
        false,
    )
    .expect("location");
    again
        .publish(&publication(&alice, "sip:alice@192.0.2.8:5060"))
        .await
        .expect("register, exists, update");
    let r = loc.resolve(&alice).await.expect("resolve").expect("found");
    assert_eq!(r.endpoint, "sip:alice@192.0.2.8:5060");

    // Unknown AOR: nothing stored.
    assert_eq!(
        loc.resolve(&Aor::new("nobody", "a.example"))
            .await
            .expect("resolve"),
        None
    );
    // No key for carol: refused without asking anyone.
    let err = loc
        .publish(&publication(&carol, "sip:carol@192.0.2.9"))
        .await
        .expect_err("no key");
    assert!(matches!(err, LocationError::Refused(_)), "{err:?}");

    // Another account cannot take alice's pseudonym over.
    let mallory = SharecallLocation::new(
        &urls(&c),
        enrolled(&c).await,
        vec![(alice.clone(), enrolled(&c).await)],
        Duration::from_secs(10),
        false,
    )
    .expect("location");
    let err = mallory
        .publish(&publication(&alice, "sip:evil@192.0.2.66"))
        .await
        .expect_err("not the owner");
    assert!(matches!(err, LocationError::Refused(_)), "{err:?}");

    // Providers gone: unavailable, not "not found". (With one provider
    // down, answers wait for the others' heartbeat-driven health, which
    // is client_contract's business and too slow here.)
    let short = SharecallLocation::new(
        &urls(&c),
        enrolled(&c).await,
        Vec::new(),
        Duration::from_secs(3),
        false,
    )
    .expect("location");
    blocking(|| (0..3).for_each(|i| c.kill(i)));
    let err = short.resolve(&alice).await.expect_err("no provider left");
    assert!(matches!(err, LocationError::Unavailable(_)), "{err:?}");
}

/// The providers cannot tell a front end's callers apart: every
/// resolution is signed by the front end's one resolver account, while a
/// publication is signed by its user's own account (docs/SECURITY.md §7d).
/// Read back from the share log, which records each request's origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolutions_are_signed_by_the_resolver_and_publications_by_the_user() {
    let c = blocking(|| Cluster::start(ClusterOptions::default()));
    let alice = Aor::new("alice", "a.example");
    let bob = Aor::new("bob", "a.example");
    let resolver = enrolled(&c).await;
    let (alice_key, bob_key) = (enrolled(&c).await, enrolled(&c).await);
    let loc = SharecallLocation::new(
        &urls(&c),
        resolver.clone(),
        vec![
            (alice.clone(), alice_key.clone()),
            (bob.clone(), bob_key.clone()),
        ],
        Duration::from_secs(10),
        false,
    )
    .expect("location");
    loc.publish(&publication(&alice, "sip:fe-1@192.0.2.1:5060"))
        .await
        .expect("publish");
    for aor in [&alice, &bob, &alice] {
        loc.resolve(aor).await.expect("resolve");
    }
    let hex = |k: &AccountKey| k.account_hex();
    // Resolutions reach the log once a later write (or the sweep) seals
    // their read batches.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let records = loop {
        let log = c.get(0, "/v1/admin/log?from=1&limit=1000").expect("log");
        let records = log["records"].as_array().cloned().unwrap_or_default();
        let resolves = records.iter().filter(|r| r["kind"] == "resolve").count();
        if resolves >= 3 {
            break records;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "resolutions never logged: {log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for r in &records {
        let origin = r["origin"].as_str().unwrap_or_default();
        match r["kind"].as_str() {
            Some("resolve") => assert_eq!(origin, hex(&resolver), "{r}"),
            Some("register") => assert_eq!(origin, hex(&alice_key), "{r}"),
            _ => {}
        }
        assert_ne!(origin, hex(&bob_key), "bob never signed anything: {r}");
    }
}
