//! The lookup tables through real provider processes: every operation on
//! every variant against a plaintext model, batches of concurrent
//! requests, expiry, ownership, and refusals that change nothing.

use std::collections::HashMap;

use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::table::{Resolved, TestClient};

/// What the table should hold: pseudonym → (endpoint, owner seed).
type Model = HashMap<String, (String, u8)>;

fn check_model(client: &TestClient<'_>, model: &Model, names: &[String]) {
    for name in names {
        let want = match model.get(name) {
            Some((e, _)) => Resolved::Found(e.clone()),
            None => Resolved::NotFound,
        };
        assert_eq!(client.resolve(name), want, "resolve {name}");
    }
}

fn every_operation(variant: &'static str) {
    let cluster = Cluster::start(ClusterOptions {
        variant,
        ..ClusterOptions::default()
    });
    let alice = TestClient::new(&cluster, 1);
    let bob = TestClient::new(&cluster, 2);
    alice.enroll();
    bob.enroll();
    let names: Vec<String> = (0..12).map(|k| format!("+49 30 555{k:04}")).collect();
    let mut model = Model::new();
    if variant.starts_with("tree") {
        // The tree compares XOR shares of keys: a part without them is
        // refused, naming the field, and nothing is registered.
        let mut parts = sharecall_tests::table::entry_parts(&names[0], "sip:x@192.0.2.9", 60);
        for p in &mut parts {
            p.as_object_mut().expect("object").remove("key_bits");
        }
        let body = alice.bodies(&alice.id(), "register", &parts, 5000)[0].clone();
        let (status, body) = cluster.post(0, "/v1/requests", body).expect_err("refused");
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("bad_part") && body.contains("key_bits"),
            "{body}"
        );
    }

    // Register, then a duplicate register fails.
    for (k, name) in names.iter().enumerate().take(8) {
        let endpoint = format!("sip:user{k}@192.0.2.{k}:5060");
        let owner = if k % 2 == 0 { &alice } else { &bob };
        assert_eq!(owner.register(name, &endpoint, 3600), "ok", "{name}");
        model.insert(name.clone(), (endpoint, if k % 2 == 0 { 1 } else { 2 }));
    }
    assert_eq!(
        bob.register(&names[0], "sip:thief@198.51.100.1", 3600),
        "exists"
    );
    check_model(&alice, &model, &names);

    // Update: owner only; not found for an absent pseudonym.
    assert_eq!(
        bob.update(&names[0], "sip:thief@198.51.100.1", 60),
        "forbidden"
    );
    assert_eq!(
        alice.update(&names[0], "sip:alice@203.0.113.5:5070", 60),
        "ok"
    );
    model.insert(names[0].clone(), ("sip:alice@203.0.113.5:5070".into(), 1));
    assert_eq!(alice.update(&names[10], "sip:x@192.0.2.1", 60), "not_found");

    // Delete: owner only.
    assert_eq!(alice.delete(&names[1]), "forbidden");
    assert_eq!(bob.delete(&names[1]), "ok");
    model.remove(&names[1]);
    assert_eq!(bob.delete(&names[1]), "not_found");
    check_model(&bob, &model, &names);

    // A deleted pseudonym can be registered again, by anyone.
    assert_eq!(alice.register(&names[1], "sip:new@192.0.2.99", 3600), "ok");
    model.insert(names[1].clone(), ("sip:new@192.0.2.99".into(), 1));

    // Concurrent requests run in batches; all agree with the model.
    std::thread::scope(|s| {
        for (k, name) in names.iter().enumerate().skip(8) {
            let alice = &alice;
            s.spawn(move || {
                assert_eq!(
                    alice.register(name, &format!("sip:c{k}@192.0.2.{k}"), 3600),
                    "ok"
                );
            });
        }
    });
    for (k, name) in names.iter().enumerate().skip(8) {
        model.insert(name.clone(), (format!("sip:c{k}@192.0.2.{k}"), 1));
    }
    check_model(&alice, &model, &names);

    // Expiry: a 1 s registration resolves as not found once expired, and
    // its pseudonym can be registered again.
    let short = "+1 202 555 0100";
    assert_eq!(alice.register(short, "sip:brief@192.0.2.7", 1), "ok");
    assert_eq!(
        alice.resolve(short),
        Resolved::Found("sip:brief@192.0.2.7".into())
    );
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(alice.resolve(short), Resolved::NotFound);
    assert_eq!(bob.update(short, "sip:b@192.0.2.8", 60), "not_found");
    assert_eq!(bob.register(short, "sip:b@192.0.2.8", 60), "ok");
    assert_eq!(
        bob.resolve(short),
        Resolved::Found("sip:b@192.0.2.8".into())
    );

    // Everything survives a restart of all three providers.
    let mut cluster = cluster;
    cluster.restart_all();
    let alice = TestClient::new(&cluster, 1);
    check_model(&alice, &model, &names);
    assert_eq!(
        alice.resolve(short),
        Resolved::Found("sip:b@192.0.2.8".into())
    );
}

#[test]
fn hash_table_every_operation() {
    every_operation("hash");
}

#[test]
fn list_table_every_operation() {
    every_operation("list");
}

#[test]
fn tree_table_every_operation() {
    every_operation("tree/4");
}

/// The provider that leads the raft group now.
fn leader(cluster: &Cluster) -> usize {
    (0..3)
        .find(|&i| {
            cluster
                .get(i, "/v1/admin/raft")
                .is_ok_and(|r| r["role"] == "leader")
        })
        .expect("a leader")
}

/// The three providers' table digests, once they have all executed `seq`.
fn digests_at(cluster: &Cluster, seq: u64) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    (0..3)
        .map(|i| loop {
            let t = cluster.get(i, "/v1/admin/table").expect("table status");
            if t["cursor"].as_u64().unwrap_or(0) >= seq {
                return t["digest"].as_str().expect("digest").to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "provider {i} stays at {t}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        })
        .collect()
}

#[test]
fn provider_that_crashed_before_commit_catches_up_from_transcripts() {
    let mut options = ClusterOptions::default();
    // Provider 2 dies just before committing the batch holding request 3.
    options.providers[2].env = vec![("SHARECALL_FAULT_EXIT_BEFORE_COMMIT".into(), "3".into())];
    let mut cluster = Cluster::start(options);
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    assert_eq!(alice.register("alice", "sip:alice@192.0.2.1", 3600), "ok");
    assert_eq!(alice.register("bob", "sip:bob@192.0.2.2", 3600), "ok");
    // Request 3: providers 0 and 1 commit it; provider 2 crashes.
    let id = alice.id();
    let parts = sharecall_tests::table::entry_parts("carol", "sip:carol@192.0.2.3", 3600);
    let replies = alice.send(alice.bodies(&id, "register", &parts, 10_000));
    for (i, r) in replies.iter().enumerate().take(2) {
        let v = r.as_ref().unwrap_or_else(|e| panic!("provider {i}: {e:?}"));
        assert_eq!(v["result"]["code"], "ok", "provider {i}: {v}");
    }
    assert!(replies[2].is_err(), "provider 2 should have crashed");
    let (sig, secret) = (
        alice.signature(&id).expect("signed"),
        alice.secret(&id).expect("secret"),
    );
    let crash_log = cluster.log(2);
    assert!(crash_log.contains("exiting before commit"), "{crash_log}");

    // Restarted without the fault, it catches up from a peer's transcript
    // at the next batch, with no SMC re-run.
    cluster.set_env(2, Vec::new());
    cluster.restart(2);
    let alice = TestClient::new(&cluster, 1);
    assert_eq!(
        alice.resolve("carol"),
        Resolved::Found("sip:carol@192.0.2.3".into())
    );
    assert!(
        cluster.log(2).contains("caught up from a transcript"),
        "{}",
        cluster.log(2)
    );
    // Its recorded answer for request 3 is the same.
    let v = cluster
        .get_signed(2, &format!("/v1/requests/{id}"), &sig)
        .expect("answer after catch-up");
    let result =
        sharecall_tests::table::open_with(&secret, 2, &id, &v["sealed_result"]).expect("opens");
    assert_eq!(result["code"], "ok", "{v}");
    // All three agree on the public state.
    // (Resolutions are not logged: the cursor stays at request 3.)
    let d = digests_at(&cluster, 3);
    assert!(d.iter().all(|x| *x == d[0]), "{d:?}");
    assert_eq!(
        alice.resolve("alice"),
        Resolved::Found("sip:alice@192.0.2.1".into())
    );
}

#[test]
fn tampered_answer_share_is_detected_and_the_provider_named() {
    let mut options = ClusterOptions::default();
    options.providers[1].env = vec![("SHARECALL_FAULT_TAMPER_ANSWERS".into(), "1".into())];
    let cluster = Cluster::start(options);
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    assert_eq!(alice.register("dave", "sip:dave@192.0.2.4", 3600), "ok");
    let (codes, values) = alice.call("resolve", sharecall_tests::table::key_parts("dave"));
    assert_eq!(sharecall_tests::table::agreed(codes), "ok");
    let shares: [Vec<sharecall_proto::Share>; 3] = std::array::from_fn(|i| {
        sharecall_tests::table::decode_shares(
            values[i]["result"]["endpoint"].as_str().expect("endpoint"),
        )
    });
    let err =
        sharecall_proto::sharing::reconstruct_all(&[shares[0][0], shares[1][0], shares[2][0]])
            .expect_err("tampering is detected");
    assert!(err.to_string().contains("P1"), "{err}");
}

#[test]
fn no_plaintext_reaches_any_provider_disk_or_log() {
    let cluster = Cluster::start(ClusterOptions::default());
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    let secrets = [
        ("+49 30 98765432", "sip:secret-erin@198.51.100.77:5061"),
        ("frank.secret", "sip:frank-hidden@203.0.113.99"),
    ];
    for (p, e) in secrets {
        assert_eq!(alice.register(p, e, 3600), "ok");
        assert_eq!(alice.resolve(p), Resolved::Found(e.into()));
        assert_eq!(alice.update(p, e, 60), "ok");
    }
    // Needles: every plaintext form and its distinctive pieces.
    let needles: Vec<&[u8]> = vec![
        b"+493098765432",
        b"493098765432",
        b"98765432",
        b"frank.secret",
        b"secret-erin",
        b"198.51.100.77",
        b"frank-hidden",
        b"203.0.113.99",
    ];
    let mut scanned = 0;
    for i in 0..3 {
        let mut files = vec![cluster.log_path(i)];
        for entry in std::fs::read_dir(cluster.data_dir(i)).expect("data dir") {
            files.push(entry.expect("entry").path());
        }
        for f in files {
            let bytes = std::fs::read(&f).unwrap_or_default();
            scanned += bytes.len();
            for n in &needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == *n),
                    "{} contains {:?}",
                    f.display(),
                    String::from_utf8_lossy(n)
                );
            }
        }
    }
    assert!(scanned > 10_000, "nothing was scanned");
}

#[test]
fn concurrent_requests_run_in_batches_and_match_the_model() {
    let cluster = Cluster::start(ClusterOptions::default());
    let clients: Vec<TestClient<'_>> = (1..=4).map(|s| TestClient::new(&cluster, s)).collect();
    for c in &clients {
        c.enroll();
    }
    // Four clients, 25 registrations each, all at once.
    std::thread::scope(|s| {
        for (k, c) in clients.iter().enumerate() {
            s.spawn(move || {
                for j in 0..25 {
                    let name = format!("user-{k}-{j}");
                    assert_eq!(
                        c.register(&name, &format!("sip:{name}@192.0.2.{j}"), 3600),
                        "ok"
                    );
                }
            });
        }
    });
    // Resolve them all concurrently as well.
    std::thread::scope(|s| {
        for (k, c) in clients.iter().enumerate() {
            s.spawn(move || {
                for j in 0..25 {
                    let name = format!("user-{k}-{j}");
                    assert_eq!(
                        c.resolve(&name),
                        Resolved::Found(format!("sip:{name}@192.0.2.{j}"))
                    );
                }
            });
        }
    });
    // Throughput grows with load: jobs carried more than one request.
    // The coordinator runs the batches, so its metrics hold them all.
    let leader = leader(&cluster);
    let metrics = cluster.get_text(leader, "/metrics");
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
    };
    let writes = value("sharecall_batch_requests_sum");
    let write_batches = value("sharecall_batch_requests_count");
    assert!(writes >= 100.0, "{writes} ordered requests executed");
    assert!(
        write_batches < writes,
        "every batch held one request ({write_batches} batches for {writes} requests)"
    );
    // Resolutions run in read batches, which also grow under load.
    let reads = value("sharecall_read_batch_requests_sum");
    let read_batches = value("sharecall_read_batch_requests_count");
    assert!(reads >= 100.0, "{reads} resolutions executed");
    assert!(
        read_batches < reads,
        "every read batch held one resolution ({read_batches} for {reads})"
    );
    let d = digests_at(&cluster, writes as u64);
    assert!(d.iter().all(|x| *x == d[0]), "{d:?}");
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let cluster = Cluster::start(ClusterOptions {
        rate: (1, 3),
        ..ClusterOptions::default()
    });
    let alice = TestClient::new(&cluster, 1);
    let stranger = TestClient::new(&cluster, 9);
    alice.enroll();
    assert_eq!(alice.register("grace", "sip:grace@192.0.2.5", 3600), "ok");
    let before = digests_at(&cluster, 1);
    let expect = |r: Result<serde_json::Value, (u16, String)>, status: u16, code: &str| {
        let (s, body) = r.expect_err("refused");
        assert_eq!(s, status, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
        assert_eq!(v["error"]["code"], code, "{body}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    };
    let raw = |body: &str| -> Result<serde_json::Value, (u16, String)> {
        let r = cluster
            .api_agent(0)
            .post(&format!("https://{}/v1/requests", cluster.addrs[0].api))
            .set("content-type", "application/json")
            .send_string(body);
        match r {
            Ok(r) => Ok(r.into_json().expect("json")),
            Err(ureq::Error::Status(c, r)) => Err((c, r.into_string().unwrap_or_default())),
            Err(e) => Err((0, e.to_string())),
        }
    };
    expect(raw("{not json"), 400, "bad_json");
    expect(raw("[]"), 400, "bad_json");
    let parts = sharecall_tests::table::entry_parts("heidi", "sip:heidi@192.0.2.6", 60);
    let body = |kind: &str, parts: &[serde_json::Value; 3]| {
        alice.bodies(&alice.id(), kind, parts, 5000)[0].clone()
    };
    expect(
        cluster.post(0, "/v1/requests", body("launch", &parts)),
        400,
        "bad_kind",
    );
    let mut b = body("register", &parts);
    b["request_id"] = serde_json::json!("has spaces/and slashes");
    expect(cluster.post(0, "/v1/requests", b), 400, "bad_request_id");
    let mut b = body("register", &parts);
    b["window_ms"] = serde_json::json!(5);
    expect(cluster.post(0, "/v1/requests", b), 400, "bad_window");
    // A resolve part must carry only a key; a register part needs a ttl.
    expect(
        cluster.post(0, "/v1/requests", body("resolve", &parts)),
        400,
        "bad_part",
    );
    // (The ttl and extra data are public fields, in the body's `public`
    // object: a missing or bad one there is `bad_public`.)
    let mut no_ttl = parts.clone();
    for p in &mut no_ttl {
        p.as_object_mut().expect("object").remove("ttl_s");
    }
    expect(
        cluster.post(0, "/v1/requests", body("register", &no_ttl)),
        400,
        "bad_public",
    );
    // Oversized extra data.
    let mut big = parts.clone();
    for p in &mut big {
        p["extra"] = serde_json::json!(hex::encode(vec![7u8; 2000]));
    }
    expect(
        cluster.post(0, "/v1/requests", body("register", &big)),
        400,
        "bad_public",
    );
    // Oversized body.
    let mut huge = body("register", &parts);
    huge["part"] = serde_json::json!(hex::encode(vec![0u8; 40_000]));
    let (s, _) = cluster
        .post(0, "/v1/requests", huge)
        .expect_err("too large");
    assert!(s == 413 || s == 400, "{s}");
    // An account that never enrolled.
    let b = stranger.bodies(&stranger.id(), "register", &parts, 5000)[0].clone();
    expect(cluster.post(0, "/v1/requests", b), 403, "not_enrolled");
    // Bad enrollment.
    expect(
        cluster.post(
            0,
            "/v1/accounts",
            serde_json::json!({"account": "zz", "provider": 0, "timestamp_ms": 1, "nonce": hex::encode([1u8; 16]), "signature": "00"}),
        ),
        400,
        "bad_account",
    );
    expect(
        cluster.post(
            0,
            "/v1/accounts",
            serde_json::json!({"account": hex::encode(stranger.account()), "provider": 0, "timestamp_ms": 1, "nonce": hex::encode([1u8; 16]), "signature": hex::encode([0u8; 64])}),
        ),
        401,
        "bad_signature",
    );
    expect(
        cluster.get_signed(0, "/v1/requests/never-sent", &"00".repeat(64)),
        404,
        "unknown_request",
    );
    // Nothing changed.
    assert_eq!(digests_at(&cluster, 1), before);

    // Rate limit: a burst of 3, then 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let b = alice.bodies(
            &alice.id(),
            "resolve",
            &sharecall_tests::table::key_parts("grace"),
            100,
        )[0]
        .clone();
        let r = cluster
            .api_agent(0)
            .post(&format!("https://{}/v1/requests", cluster.addrs[0].api))
            .send_json(b);
        if let Err(ureq::Error::Status(429, r)) = r {
            limited = Some(r.header("retry-after").map(str::to_string));
            break;
        }
    }
    let retry_after = limited.expect("rate limited within ten requests");
    assert!(retry_after.is_some_and(|v| v.parse::<u64>().is_ok()));
}

#[test]
fn operator_imports_rows_in_bulk_for_their_owners() {
    let operator_key = TestClient::account_of(7);
    let cluster = Cluster::start(ClusterOptions {
        importers: vec![hex::encode(operator_key)],
        ..ClusterOptions::default()
    });
    let operator = TestClient::new(&cluster, 7);
    let alice = TestClient::new(&cluster, 1);
    operator.enroll();
    alice.enroll();
    assert_eq!(
        alice.register("+1 555 0000", "sip:existing@192.0.2.1", 3600),
        "ok"
    );
    // 300 rows owned by alice, one of them already registered.
    let rows: Vec<(String, String)> = (0..300)
        .map(|k| {
            (
                format!("+1 555 {k:04}"),
                format!("sip:bulk{k}@192.0.2.{}", k % 250),
            )
        })
        .collect();
    let parts = sharecall_tests::table::import_parts(&rows, 3600, &alice.account());
    let (codes, values) = operator.call("import", parts);
    assert_eq!(sharecall_tests::table::agreed(codes), "ok");
    for v in &values {
        assert_eq!(v["result"]["imported"], 299, "{v}");
        assert_eq!(v["result"]["skipped"], 1, "{v}");
    }
    // The rows resolve, the existing entry is unchanged, and the owner
    // (not the operator) may update them.
    assert_eq!(
        alice.resolve("+1 555 0000"),
        Resolved::Found("sip:existing@192.0.2.1".into())
    );
    assert_eq!(
        alice.resolve("+1 555 0123"),
        Resolved::Found("sip:bulk123@192.0.2.123".into())
    );
    assert_eq!(
        operator.update("+1 555 0007", "sip:x@192.0.2.9", 60),
        "forbidden"
    );
    assert_eq!(alice.update("+1 555 0007", "sip:x@192.0.2.9", 60), "ok");
    // An account that is not an importer is refused.
    let parts = sharecall_tests::table::import_parts(&rows[..2], 3600, &alice.account());
    let id = alice.id();
    let (code, body) = cluster
        .post(
            0,
            "/v1/requests",
            alice.bodies(&id, "import", &parts, 5000)[0].clone(),
        )
        .expect_err("not an importer");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not_importer"), "{body}");
}

/// A resolution whose part reaches one provider late still runs (the
/// leader started it on its own part, the late peer named it, and it ran
/// once all three reported holding it); one whose part never reaches a
/// provider ends with a clear `409 aborted` at the others, not a hang.
#[test]
fn late_and_missing_resolution_parts() {
    let cluster = Cluster::start(ClusterOptions::default());
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    assert_eq!(alice.register("dave", "sip:dave@192.0.2.4", 3600), "ok");
    let leader = leader(&cluster);
    let late = (leader + 1) % 3;

    // The late provider gets its part 300 ms after the others.
    let id = alice.id();
    let bodies = alice.bodies(
        &id,
        "resolve",
        &sharecall_tests::table::key_parts("dave"),
        10_000,
    );
    let replies: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let cluster = &cluster;
                s.spawn(move || {
                    if i == late {
                        std::thread::sleep(std::time::Duration::from_millis(300));
                    }
                    cluster.post(i, "/v1/requests", body.clone())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (i, r) in replies.into_iter().enumerate() {
        let v = alice
            .open(i, r)
            .unwrap_or_else(|e| panic!("provider {i}: {e:?}"));
        assert_eq!(v["status"], "done", "provider {i}: {v}");
        assert_eq!(v["result"]["code"], "ok", "provider {i}: {v}");
        assert!(v["seq"].is_null(), "resolutions are not logged: {v}");
    }

    // A part that never arrives: the other two answer 409 after the window.
    let id = alice.id();
    let bodies = alice.bodies(
        &id,
        "resolve",
        &sharecall_tests::table::key_parts("dave"),
        500,
    );
    let started = std::time::Instant::now();
    let replies: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != late)
            .map(|(i, body)| {
                let cluster = &cluster;
                s.spawn(move || (i, cluster.post(i, "/v1/requests", body.clone())))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (i, r) in replies {
        match r {
            Err((409, body)) => assert!(body.contains("aborted"), "provider {i}: {body}"),
            other => panic!("provider {i}: expected 409 aborted, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the abort took {:?}",
        started.elapsed()
    );
}
