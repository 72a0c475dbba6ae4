//! The orchestration core with three real provider processes on loopback:
//! jobs, denials, a killed and restarted peer, an unpinned certificate,
//! many concurrent jobs with back-pressure, and the gateway's fast path
//! (one Session broadcast carrying the Prepare once the link is known).

// ureq::Error is large; these are tests.
#![allow(clippy::result_large_err)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sharecall_tests::cluster::{Cluster, ClusterOptions, ProviderOptions};
use sharecall_tests::{run, text};

fn with_values(values: [u64; 3]) -> ClusterOptions {
    let mut o = ClusterOptions::default();
    for (p, v) in o.providers.iter_mut().zip(values) {
        p.value = v;
    }
    o
}

/// The phase names of a job report, in order.
fn phases_of(report: &Value) -> Vec<String> {
    report["phases"]
        .as_array()
        .unwrap_or_else(|| panic!("report has phases: {report}"))
        .iter()
        .map(|p| p["phase"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn error_of(body: &str) -> Value {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("error body is JSON: {body}"));
    v["error"].clone()
}

#[test]
fn secure_sum_is_correct_and_its_phases_are_measured() {
    let cluster = Cluster::start(with_values([5, 7, 30]));
    // Through each provider's gateway.
    for gw in 0..3 {
        let r = cluster
            .job(gw, "secure-sum", Value::Null)
            .expect("job succeeds");
        assert_eq!(r["output"]["sum"], "42", "{r}");
        assert_eq!(r["output"]["average"], 14.0, "{r}");
        assert_eq!(r["output"]["count"], 3, "{r}");
    }
    // Repeated sums in one session and the empty session work too.
    let r = cluster
        .job(1, "secure-sum", json!({"repeat": 50}))
        .expect("repeat");
    assert_eq!(r["output"]["sum"], "42");
    let r = cluster.job(2, "noop", Value::Null).expect("noop");
    assert!(r["output"].is_null());
    // Links are reused: a later job does not re-link.
    let r = cluster.job(0, "secure-sum", Value::Null).expect("job");
    assert_eq!(r["relinked"], false, "{r}");

    let metrics = cluster.get_text(0, "/metrics");
    assert!(
        metrics.contains("sharecall_phase_duration_seconds"),
        "{metrics}"
    );
    for phase in ["prepare", "session"] {
        assert!(
            metrics.contains(&format!("phase=\"{phase}\"")),
            "no {phase} timing in:\n{metrics}"
        );
    }
    assert!(metrics.contains("sharecall_jobs_total"), "{metrics}");

    // The CLI reaches the same API.
    let admin = cluster.addrs[2].admin.to_string();
    let out = run(
        "sharecall-provider",
        &["job", "--admin", &admin, "--kind", "secure-sum"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\"42\""), "{stdout}");

    // Bad input gets a JSON 4xx.
    let err = cluster
        .job(0, "frobnicate", Value::Null)
        .expect_err("unknown kind");
    assert_eq!(err.0, 400);
    assert_eq!(error_of(&err.1)["code"], "unknown_kind");
    let err = cluster
        .job(0, "secure-sum", json!({"repeat": 0}))
        .expect_err("bad params");
    assert_eq!(err.0, 400);

    // The directory sees both peers available.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let peers = cluster.get(0, "/v1/admin/peers").expect("peers");
        let list = peers["peers"].as_array().expect("peer list").clone();
        if list.len() == 2 && list.iter().all(|p| p["health"] == "available") {
            break;
        }
        assert!(Instant::now() < deadline, "peers not available: {peers}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn refusing_peer_makes_the_job_fail_with_denied_naming_it() {
    let mut o = with_values([1, 2, 3]);
    o.providers[2] = ProviderOptions {
        value: 3,
        allowed_kinds: vec!["noop".into()],
        ..Default::default()
    };
    let cluster = Cluster::start(o);
    let (code, body) = cluster
        .job(0, "secure-sum", Value::Null)
        .expect_err("denied");
    assert_eq!(code, 403, "{body}");
    let e = error_of(&body);
    assert_eq!(e["code"], "denied", "{body}");
    assert_eq!(e["peer"], 2, "{body}");
    assert_eq!(e["phase"], "prepare", "{body}");
    // Tasks P2 accepts still run.
    cluster
        .job(0, "noop", Value::Null)
        .expect("noop is allowed");
}

#[test]
fn killed_peer_aborts_the_job_and_is_used_again_after_restart() {
    let mut cluster = Cluster::start(with_values([10, 20, 30]));
    cluster
        .job(0, "secure-sum", Value::Null)
        .expect("warm-up job");

    // A long session (many rounds), and P2 dies in the middle of it.
    let admin = cluster.addrs[0].admin;
    let long = std::thread::spawn(move || {
        let started = Instant::now();
        let r = ureq::post(&format!("http://{admin}/v1/admin/jobs"))
            .timeout(Duration::from_secs(120))
            .send_json(json!({"kind": "secure-sum", "params": {"repeat": 1000000}}));
        (
            r.map(|_| ()).map_err(|e| match e {
                ureq::Error::Status(code, r) => (code, r.into_string().unwrap_or_default()),
                other => (0, other.to_string()),
            }),
            started.elapsed(),
        )
    });
    std::thread::sleep(Duration::from_millis(1500));
    cluster.kill(2);
    let (result, took) = long.join().expect("job thread");
    let (code, body) = result.expect_err("the job must fail once P2 is gone");
    assert!(code >= 500, "{code} {body}");
    let e = error_of(&body);
    assert_eq!(e["peer"], 2, "the failure names the killed peer: {body}");
    assert!(took < Duration::from_secs(60), "aborted after {took:?}");

    // While P2 is down, jobs fail cleanly and quickly.
    let started = Instant::now();
    let err = cluster
        .job(1, "secure-sum", Value::Null)
        .expect_err("P2 is down");
    assert_eq!(error_of(&err.1)["peer"], 2, "{}", err.1);
    assert!(started.elapsed() < Duration::from_secs(40));

    // P2 comes back; the others are not restarted; the next job re-links.
    cluster.restart(2);
    let deadline = Instant::now() + Duration::from_secs(30);
    let r = loop {
        match cluster.job(0, "secure-sum", Value::Null) {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "no recovery: {e:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(r["output"]["sum"], "60", "{r}");
    let r = cluster
        .job(2, "secure-sum", Value::Null)
        .expect("through the restarted gateway");
    assert_eq!(r["output"]["sum"], "60", "{r}");
}

#[test]
fn provider_with_an_unpinned_certificate_cannot_join() {
    let mut cluster = Cluster::start(with_values([1, 1, 1]));
    cluster
        .job(0, "secure-sum", Value::Null)
        .expect("genuine cluster works");
    // P2 gets a new identity that nobody pinned, and comes back with it.
    cluster.kill(2);
    let data = cluster.dir.path().join("p2");
    let out = run(
        "sharecall-provider",
        &[
            "init",
            "--force",
            "--data-dir",
            data.to_str().expect("utf-8"),
        ],
    );
    assert!(out.status.success());
    cluster.spawn(2);
    cluster.wait_ready(2);

    let (code, body) = cluster
        .job(0, "secure-sum", Value::Null)
        .expect_err("must not run");
    assert!(code >= 500, "{code} {body}");
    assert_eq!(error_of(&body)["peer"], 2, "{body}");
    // P0 refuses the stranger's connections and says why.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.log(0).contains("not pinned") {
        assert!(Instant::now() < deadline, "P0 log:\n{}", cluster.log(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    // Health follows heartbeats, not job failures: P2 was available when it
    // was killed, and P0 marks it suspect once heartbeats to the stranger
    // have failed for `suspect_after`. It must get there and stay there.
    let health = |cluster: &Cluster| {
        let peers = cluster.get(0, "/v1/admin/peers").expect("peers");
        let p2 = peers["peers"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["id"] == 2).cloned())
            .expect("P2 listed");
        (p2["health"].clone(), peers)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (h, peers) = health(&cluster);
        if h != "available" {
            break;
        }
        assert!(Instant::now() < deadline, "P2 still available: {peers}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (h, peers) = health(&cluster);
    assert_ne!(
        h, "available",
        "the stranger became available again: {peers}"
    );
}

fn rss_kib(cluster: &mut Cluster, i: usize) -> u64 {
    let pid = cluster.child(i).expect("running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn burst(cluster: &Cluster, n: usize) -> Vec<Result<Value, (u16, String)>> {
    let admins: Vec<_> = cluster.addrs.iter().map(|a| a.admin).collect();
    let handles: Vec<_> = (0..n)
        .map(|k| {
            let admin = admins[k % 3];
            std::thread::spawn(move || {
                match ureq::post(&format!("http://{admin}/v1/admin/jobs"))
                    .timeout(Duration::from_secs(120))
                    .send_json(json!({"kind": "secure-sum"}))
                {
                    Ok(r) => Ok(r.into_json::<Value>().expect("json")),
                    Err(ureq::Error::Status(code, r)) => {
                        let retry = r.header("retry-after").map(str::to_string);
                        Err((
                            code,
                            format!(
                                "{}|retry-after={retry:?}",
                                r.into_string().unwrap_or_default()
                            ),
                        ))
                    }
                    Err(e) => Err((0, e.to_string())),
                }
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect()
}

#[test]
fn two_hundred_concurrent_jobs_complete_without_memory_growth() {
    let mut cluster = Cluster::start(with_values([3, 4, 5]));
    for r in burst(&cluster, 200) {
        let r = r.expect("every job completes");
        assert_eq!(r["output"]["sum"], "12");
    }
    let before: Vec<u64> = (0..3).map(|i| rss_kib(&mut cluster, i)).collect();
    for _ in 0..3 {
        for r in burst(&cluster, 200) {
            r.expect("every job completes");
        }
    }
    let after: Vec<u64> = (0..3).map(|i| rss_kib(&mut cluster, i)).collect();
    for i in 0..3 {
        // 600 more jobs must not leave state behind: allow allocator noise.
        assert!(
            after[i] < before[i] + 64 * 1024,
            "provider {i} grew from {} KiB to {} KiB",
            before[i],
            after[i]
        );
    }
}

#[test]
fn a_full_gateway_pushes_back_instead_of_queueing() {
    let mut o = with_values([1, 2, 3]);
    o.max_queued = 0;
    o.lanes = 3;
    let cluster = Cluster::start(o);
    cluster
        .job(0, "secure-sum", Value::Null)
        .expect("link first");
    // One lane per gateway and no queue: a burst at one gateway is partly
    // refused with 503 + Retry-After, and nothing hangs.
    let admin = cluster.addrs[0].admin;
    let handles: Vec<_> = (0..40)
        .map(|_| {
            std::thread::spawn(move || {
                ureq::post(&format!("http://{admin}/v1/admin/jobs"))
                    .timeout(Duration::from_secs(60))
                    .send_json(json!({"kind": "secure-sum", "params": {"repeat": 200}}))
            })
        })
        .collect();
    let mut ok = 0;
    let mut busy = 0;
    for h in handles {
        match h.join().expect("thread") {
            Ok(_) => ok += 1,
            Err(ureq::Error::Status(503, r)) => {
                assert_eq!(r.header("retry-after"), Some("1"));
                busy += 1;
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(ok >= 1, "some jobs run");
    assert!(busy >= 1, "some jobs are pushed back");
}

#[test]
fn once_linked_a_job_is_one_broadcast() {
    let cluster = Cluster::start(with_values([1, 2, 3]));
    let first = cluster.job(0, "secure-sum", Value::Null).expect("first");
    assert_eq!(first["output"]["sum"], "6", "{first}");
    assert_eq!(
        phases_of(&first),
        ["prepare", "link", "session"],
        "the first job links: {first}"
    );
    // The gateway now knows the epoch: Prepare travels inside the Session.
    for kind in ["secure-sum", "noop", "secure-sum"] {
        let r = cluster.job(0, kind, Value::Null).expect("fast job");
        assert_eq!(phases_of(&r), ["prepare+session"], "{r}");
        assert_eq!(r["relinked"], false, "{r}");
        if kind == "secure-sum" {
            assert_eq!(r["output"]["sum"], "6", "{r}");
        }
    }
    // Each gateway learns the epoch by itself: P1's first job takes the
    // full path (without linking again), its second the fast one.
    let r = cluster.job(1, "secure-sum", Value::Null).expect("P1 first");
    assert_eq!(phases_of(&r), ["prepare", "session"], "{r}");
    let r = cluster.job(1, "secure-sum", Value::Null).expect("P1 fast");
    assert_eq!(phases_of(&r), ["prepare+session"], "{r}");

    let metrics = cluster.get_text(0, "/metrics");
    assert!(
        metrics.contains("phase=\"prepare+session\""),
        "no fast-path timing in:\n{metrics}"
    );
}

#[test]
fn after_a_peer_restart_the_fast_path_falls_back_and_relinks() {
    let mut cluster = Cluster::start(with_values([10, 20, 30]));
    cluster.job(0, "secure-sum", Value::Null).expect("link");
    let r = cluster.job(0, "secure-sum", Value::Null).expect("fast");
    assert_eq!(phases_of(&r), ["prepare+session"], "{r}");

    // P2 loses its link; the gateway still believes the old epoch.
    cluster.restart(2);
    let r = cluster
        .job(0, "secure-sum", Value::Null)
        .expect("the fallback recovers within the same job");
    assert_eq!(r["output"]["sum"], "60", "{r}");
    assert_eq!(r["relinked"], true, "{r}");
    let phases = phases_of(&r);
    assert_eq!(phases.first().map(String::as_str), Some("prepare+session"));
    assert_eq!(phases.get(1).map(String::as_str), Some("prepare"), "{r}");
    assert!(phases.iter().any(|p| p == "link"), "{r}");
    assert_eq!(phases.last().map(String::as_str), Some("session"), "{r}");

    // And the new link is used the fast way from then on.
    let r = cluster
        .job(0, "secure-sum", Value::Null)
        .expect("fast again");
    assert_eq!(phases_of(&r), ["prepare+session"], "{r}");
    assert_eq!(r["output"]["sum"], "60", "{r}");
}

#[test]
fn a_task_refused_inline_is_denied_like_a_prepared_one() {
    let mut o = with_values([1, 2, 3]);
    o.providers[2] = ProviderOptions {
        value: 3,
        allowed_kinds: vec!["noop".into()],
        ..Default::default()
    };
    let cluster = Cluster::start(o);
    // Nothing known yet: the denial comes from the Prepare broadcast.
    let (code, body) = cluster
        .job(0, "secure-sum", Value::Null)
        .expect_err("denied");
    assert_eq!(code, 403, "{body}");
    let full = error_of(&body);

    // Link with a task P2 accepts, so the next job takes the fast path.
    cluster.job(0, "noop", Value::Null).expect("noop links");
    let r = cluster.job(0, "noop", Value::Null).expect("noop fast");
    assert_eq!(phases_of(&r), ["prepare+session"], "{r}");

    // P0 and P1 accept and start the session; P2 refuses the inline
    // Prepare. The job fails at once (not after the 2 s SMC op timeout the
    // others would wait for P2) with the same error as above.
    let started = Instant::now();
    let (code, body) = cluster
        .job(0, "secure-sum", Value::Null)
        .expect_err("denied inline");
    let took = started.elapsed();
    assert_eq!(code, 403, "{body}");
    let inline = error_of(&body);
    for field in ["code", "message", "phase", "peer", "class"] {
        assert_eq!(inline[field], full[field], "{field}: {inline} vs {full}");
    }
    assert_eq!(inline["code"], "denied");
    assert_eq!(inline["peer"], 2);
    assert_eq!(inline["phase"], "prepare");
    assert!(took < Duration::from_secs(2), "denial took {took:?}");

    // The Abort stopped the sessions P0 and P1 had started: the lanes are
    // free and the link is still known, so the next job is fast and quick.
    for _ in 0..3 {
        let started = Instant::now();
        let r = cluster.job(0, "noop", Value::Null).expect("noop after");
        assert_eq!(phases_of(&r), ["prepare+session"], "{r}");
        assert!(started.elapsed() < Duration::from_secs(1), "{r}");
    }
    for p in [0, 1] {
        assert!(
            cluster.log(p).contains("job aborted by its gateway"),
            "P{p} log:\n{}",
            cluster.log(p)
        );
    }
}
