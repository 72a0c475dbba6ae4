//! The executor's integrity against one lying provider (issue 13, items
//! 3–5), with real provider processes: write batches commit only when all
//! three computed the same outcome, log times are judged by every
//! provider, and a catch-up is cross-checked against the second peer.
//! The faults come from the provider's `fault-injection` hooks.

use std::time::{Duration, Instant};

use serde_json::Value;
use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::table::{entry_parts, Resolved, TestClient};

/// 100 years in milliseconds.
const FAR: i64 = 100 * 365 * 24 * 3600 * 1000;

fn table(cluster: &Cluster, i: usize) -> Value {
    cluster.get(i, "/v1/admin/table").expect("table status")
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether one line of provider `i`'s log holds every one of `parts`.
fn log_has(cluster: &Cluster, i: usize, parts: &[&str]) -> bool {
    cluster
        .log(i)
        .lines()
        .any(|l| parts.iter().all(|p| l.contains(p)))
}

fn set_all(cluster: &mut Cluster, env: Vec<(String, String)>) {
    for i in 0..3 {
        cluster.set_env(i, env.clone());
    }
    cluster.restart_all();
}

/// Sends a register's three parts without waiting for an outcome (the
/// provider answers 202 after its answer wait); returns the request id.
fn post_register(alice: &TestClient, cluster: &Cluster, pseudonym: &str) -> String {
    let id = alice.id();
    let bodies = alice.bodies(
        &id,
        "register",
        &entry_parts(pseudonym, "sip:x@192.0.2.9", 3600),
        10_000,
    );
    std::thread::scope(|s| {
        for (i, b) in bodies.into_iter().enumerate() {
            s.spawn(move || {
                let _ = cluster.post(i, "/v1/requests", b);
            });
        }
    });
    id
}

#[test]
fn log_times_far_in_the_future_are_refused_everywhere_and_a_sweep_deletes_nothing() {
    let mut cluster = Cluster::start(ClusterOptions {
        sweep_interval: "300ms",
        ..ClusterOptions::default()
    });
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    assert_eq!(alice.register("alice", "sip:alice@192.0.2.1", 3600), "ok");
    let before = cluster.settled();
    assert!(
        before.iter().all(|t| t.1 == 1 && t.2 == before[0].2),
        "{before:?}"
    );

    // Every provider now proposes records 100 years ahead: the leader's
    // sweeps, and the readiness records whose median is a request's time.
    set_all(
        &mut cluster,
        vec![("SHARECALL_FAULT_LOG_TIME_OFFSET_MS".into(), FAR.to_string())],
    );
    let alice = TestClient::new(&cluster, 1);
    // A register logged in the far future is refused by all three.
    assert_eq!(alice.register("bob", "sip:bob@192.0.2.2", 3600), "refused");
    // Every provider judged the log times itself.
    wait_for("every provider to refuse", Duration::from_secs(20), || {
        (0..3).all(|i| cluster.log(i).contains("ahead of this provider's clock"))
    });
    // A sweep far in the future was logged, refused, and deleted nothing.
    wait_for("a refused sweep", Duration::from_secs(20), || {
        (0..3).all(|i| log_has(&cluster, i, &["sweep ", "ahead of this provider's clock"]))
    });
    let during = cluster.settled();
    assert!(
        during.iter().all(|t| t.1 == 1 && t.2 == during[0].2),
        "{during:?}"
    );
    assert_eq!(
        alice.resolve("alice"),
        Resolved::Found("sip:alice@192.0.2.1".into())
    );

    // Without the fault the cluster writes again, and the log time did
    // not move: the entry is live.
    set_all(&mut cluster, Vec::new());
    let alice = TestClient::new(&cluster, 1);
    assert_eq!(alice.register("carol", "sip:carol@192.0.2.3", 3600), "ok");
    assert_eq!(
        alice.resolve("alice"),
        Resolved::Found("sip:alice@192.0.2.1".into())
    );
    let after = cluster.settled();
    assert!(
        after.iter().all(|t| t.1 == 2 && t.2 == after[0].2),
        "{after:?}"
    );
}

#[test]
fn log_times_far_in_the_past_are_refused_everywhere() {
    let mut cluster = Cluster::start(ClusterOptions {
        sweep_interval: "300ms",
        ..ClusterOptions::default()
    });
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    assert_eq!(alice.register("alice", "sip:alice@192.0.2.1", 3600), "ok");
    let before = cluster.settled();

    // The leader's sweeps are logged a year before the log's time (a
    // request's readiness that old is aborted by its window already).
    set_all(
        &mut cluster,
        vec![(
            "SHARECALL_FAULT_LOG_TIME_OFFSET_MS".into(),
            (-FAR / 100).to_string(),
        )],
    );
    wait_for("every provider to refuse", Duration::from_secs(30), || {
        (0..3).all(|i| log_has(&cluster, i, &["sweep ", "before the log's time"]))
    });
    let during = cluster.settled();
    for (i, t) in during.iter().enumerate() {
        assert_eq!(t.1, 1, "provider {i}: {during:?}");
        assert_eq!(t.2, during[0].2, "{during:?}");
    }
    assert!(
        during[0].0 > before[0].0,
        "the refused sweeps took their numbers"
    );

    set_all(&mut cluster, Vec::new());
    let alice = TestClient::new(&cluster, 1);
    assert_eq!(alice.register("bob", "sip:bob@192.0.2.2", 3600), "ok");
    assert_eq!(
        alice.resolve("bob"),
        Resolved::Found("sip:bob@192.0.2.2".into())
    );
    assert_eq!(
        alice.resolve("alice"),
        Resolved::Found("sip:alice@192.0.2.1".into())
    );
}

#[test]
fn catch_up_from_a_tampered_transcript_is_refused_and_an_honest_one_works() {
    let mut options = ClusterOptions::default();
    // Provider 2 dies just before committing request 3; provider 0 lies
    // about the transcripts it serves.
    options.providers[2].env = vec![("SHARECALL_FAULT_EXIT_BEFORE_COMMIT".into(), "3".into())];
    options.providers[0].env = vec![("SHARECALL_FAULT_TAMPER_TRANSCRIPTS".into(), "1".into())];
    let mut cluster = Cluster::start(options);
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    assert_eq!(alice.register("alice", "sip:alice@192.0.2.1", 3600), "ok");
    assert_eq!(alice.register("bob", "sip:bob@192.0.2.2", 3600), "ok");
    let at_two = table(&cluster, 2);
    post_register(&alice, &cluster, "carol");
    assert!(cluster.log(2).contains("exiting before commit"));

    cluster.set_env(2, Vec::new());
    cluster.restart(2);
    let alice = TestClient::new(&cluster, 1);
    // The next batch makes provider 2 catch up; provider 0's transcript
    // differs from provider 1's, so it refuses and stays behind.
    post_register(&alice, &cluster, "dave");
    wait_for("a refused catch-up", Duration::from_secs(30), || {
        table(&cluster, 2)["catch_up_refused"]
            .as_str()
            .is_some_and(|s| s.contains("serve different transcripts") && s.contains('0'))
    });
    let t = table(&cluster, 2);
    assert_eq!(t["cursor"], at_two["cursor"], "{t}");
    assert_eq!(t["digest"], at_two["digest"], "{t}");

    // With provider 0 honest again, the catch-up works and the waiting
    // write executes.
    cluster.set_env(0, Vec::new());
    cluster.restart(0);
    wait_for("all four entries", Duration::from_secs(60), || {
        (0..3).all(|i| table(&cluster, i)["entries"] == 4)
    });
    let after = cluster.settled();
    assert!(after.iter().all(|t| t.2 == after[0].2), "{after:?}");
    assert!(table(&cluster, 2)["catch_up_refused"].is_null());
    let alice = TestClient::new(&cluster, 1);
    assert_eq!(
        alice.resolve("carol"),
        Resolved::Found("sip:x@192.0.2.9".into())
    );
}

#[test]
fn a_batch_whose_outcome_differs_at_one_provider_commits_nowhere() {
    let mut options = ClusterOptions::default();
    options.providers[1].env = vec![("SHARECALL_FAULT_ALTER_OUTCOME".into(), "1".into())];
    let mut cluster = Cluster::start(options);
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    let before = cluster.settled();
    post_register(&alice, &cluster, "alice");
    wait_for(
        "the disagreement at every provider",
        Duration::from_secs(30),
        || (0..3).all(|i| cluster.log(i).contains("batch outcomes differ")),
    );
    let during = cluster.settled();
    assert_eq!(during, before, "nothing is committed anywhere");
    // Providers 0 and 2 name provider 1 (the log has colour codes
    // between a field's name and value).
    for i in [0, 2] {
        assert!(
            log_has(&cluster, i, &["batch outcomes differ", "peers", "[1]"]),
            "provider {i}: {}",
            cluster.log(i)
        );
    }

    // Provider 1 honest again: the same batch commits everywhere.
    cluster.set_env(1, Vec::new());
    cluster.restart(1);
    wait_for("the entry everywhere", Duration::from_secs(60), || {
        (0..3).all(|i| table(&cluster, i)["entries"] == 1)
    });
    let after = cluster.settled();
    assert!(after.iter().all(|t| t.2 == after[0].2), "{after:?}");
}
