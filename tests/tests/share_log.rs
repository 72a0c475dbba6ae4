//! The share log through real provider processes: a known workload leaves
//! exactly the expected records at all three providers with one chain
//! head; concurrent resolutions in several read batches keep the heads
//! equal; a record altered on disk is caught by the chain check; a short
//! retention purges the same records everywhere and logs the purge; and no
//! plaintext pseudonym or endpoint reaches any provider's files.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sharecall_provider::sharelog::store;
use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::table::{Resolved, TestClient};

/// The three providers' share-log heads, once they are equal and no read
/// batch waits for a seal (panics after 20 s).
fn settled_heads(cluster: &Cluster, at_least: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let heads: Vec<Value> = (0..3)
            .map(|i| cluster.get(i, "/v1/admin/log/head").expect("log head"))
            .collect();
        let same = heads
            .iter()
            .all(|h| h["head"] == heads[0]["head"] && h["count"] == heads[0]["count"]);
        let sealed = heads.iter().all(|h| h["unsealed_read_batches"] == 0);
        if same && sealed && heads[0]["count"].as_u64().unwrap_or(0) >= at_least {
            return heads[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "share-log heads stay apart: {heads:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every stored record of provider `i` (agreed fields and share counts).
fn records(cluster: &Cluster, i: usize) -> Vec<Value> {
    let v = cluster
        .get(i, "/v1/admin/log?from=1&limit=10000")
        .expect("log records");
    v["records"].as_array().cloned().unwrap_or_default()
}

/// The fields all three providers must agree on.
fn agreed(r: &Value) -> Value {
    let mut r = r.clone();
    if let Some(o) = r.as_object_mut() {
        for k in ["key_share", "key_bits_share", "endpoint_shares"] {
            o.remove(k);
        }
    }
    r
}

fn log_check(cluster: &Cluster, via: usize) -> Result<Value, (u16, String)> {
    cluster.get(via, "/v1/admin/log/check")
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const ALICE_NAME: &str = "+49 30 9990017";
const ALICE_ENDPOINT: &str = "sip:secret-alice@198.51.100.77:5060";
const ALICE_NEW_ENDPOINT: &str = "sip:moved-alice@198.51.100.78:5070";
const ABSENT_NAME: &str = "+49 30 9990099";

#[test]
fn a_known_workload_is_logged_alike_everywhere_without_plaintext_and_tampering_is_caught() {
    let operator_key = TestClient::account_of(7);
    let mut cluster = Cluster::start(ClusterOptions {
        importers: vec![hex::encode(operator_key)],
        seal_interval: "100ms",
        ..ClusterOptions::default()
    });
    let alice = TestClient::new(&cluster, 1);
    let bob = TestClient::new(&cluster, 2);
    let operator = TestClient::new(&cluster, 7);
    for c in [&alice, &bob, &operator] {
        c.enroll();
    }
    let rows: Vec<(String, String)> = (0..3)
        .map(|k| {
            (
                format!("+49 30 99901{k:02}"),
                format!("sip:imported-{k}@203.0.113.{k}:5060"),
            )
        })
        .collect();

    // The workload, one request at a time, and the records it must leave
    // (kind, code, origin seed, endpoint shares held).
    assert_eq!(alice.register(ALICE_NAME, ALICE_ENDPOINT, 3600), "ok");
    assert_eq!(
        bob.register(ALICE_NAME, "sip:thief@192.0.2.66", 3600),
        "exists"
    );
    assert_eq!(
        alice.resolve(ALICE_NAME),
        Resolved::Found(ALICE_ENDPOINT.into())
    );
    assert_eq!(bob.resolve(ABSENT_NAME), Resolved::NotFound);
    // A refused request: bob may not update alice's entry.
    assert_eq!(
        bob.update(ALICE_NAME, "sip:thief@192.0.2.66", 60),
        "forbidden"
    );
    assert_eq!(alice.update(ALICE_NAME, ALICE_NEW_ENDPOINT, 3600), "ok");
    let parts = sharecall_tests::table::import_parts(&rows, 3600, &alice.account());
    let (codes, _) = operator.call("import", parts);
    assert_eq!(sharecall_tests::table::agreed(codes), "ok");
    assert_eq!(alice.delete(ALICE_NAME), "ok");
    let expected: Vec<(&str, &str, u8, u64)> = vec![
        ("register", "ok", 1, 10),
        ("register", "exists", 2, 10),
        ("resolve", "ok", 1, 10),
        ("resolve", "not_found", 2, 0),
        ("update", "forbidden", 2, 10),
        ("update", "ok", 1, 10),
        ("import_row", "ok", 7, 10),
        ("import_row", "ok", 7, 10),
        ("import_row", "ok", 7, 10),
        ("delete", "ok", 1, 0),
    ];

    let head = settled_heads(&cluster, expected.len() as u64);
    assert_eq!(head["count"], expected.len() as u64, "{head}");
    let all: Vec<Vec<Value>> = (0..3).map(|i| records(&cluster, i)).collect();
    for (i, rs) in all.iter().enumerate() {
        let got: Vec<(String, String, String, u64)> = rs
            .iter()
            .map(|r| {
                (
                    r["kind"].as_str().unwrap_or("").to_string(),
                    r["code"].as_str().unwrap_or("").to_string(),
                    r["origin"].as_str().unwrap_or("").to_string(),
                    r["endpoint_shares"].as_u64().unwrap_or(99),
                )
            })
            .collect();
        let want: Vec<(String, String, String, u64)> = expected
            .iter()
            .map(|(k, c, seed, e)| {
                (
                    k.to_string(),
                    c.to_string(),
                    hex::encode(TestClient::account_of(*seed)),
                    *e,
                )
            })
            .collect();
        assert_eq!(got, want, "provider {i}'s records");
        for r in rs {
            assert_eq!(r["key_share"], true, "every request's key share: {r}");
            // Hash table: writes computed all 24 tag bits, reads fewer.
            let bits = r["tag_bits"].as_u64().unwrap_or(0);
            if r["kind"] == "resolve" {
                assert!((1..24).contains(&bits), "{r}");
                assert!(r["batch"].as_u64().unwrap_or(0) > 0, "{r}");
            } else {
                assert_eq!(bits, 24, "{r}");
            }
        }
        let seqs: Vec<u64> = rs.iter().filter_map(|r| r["seq"].as_u64()).collect();
        assert_eq!(seqs, (1..=expected.len() as u64).collect::<Vec<_>>());
    }
    // Agreed fields (and so every link) are equal at all three; only the
    // shares are each provider's own.
    for i in 1..3 {
        let a: Vec<Value> = all[0].iter().map(agreed).collect();
        let b: Vec<Value> = all[i].iter().map(agreed).collect();
        assert_eq!(a, b, "providers 0 and {i} log different records");
    }
    // The registration and the import rows share the tag of their key.
    assert_eq!(all[0][0]["tag"], all[0][1]["tag"]);
    let check = log_check(&cluster, 2).expect("chains agree");
    assert_eq!(check["link"], head["head"], "{check}");

    // No provider's files hold a pseudonym or an endpoint in the clear.
    for i in 0..3 {
        cluster.kill(i);
    }
    let mut secrets: Vec<String> = vec![
        ALICE_NAME.into(),
        ALICE_NAME.replace(' ', ""),
        ALICE_ENDPOINT.into(),
        ALICE_NEW_ENDPOINT.into(),
        "secret-alice".into(),
        "198.51.100.77".into(),
        ABSENT_NAME.replace(' ', ""),
    ];
    for (p, e) in &rows {
        secrets.push(p.replace(' ', ""));
        secrets.push(e.clone());
    }
    let mut scanned = 0;
    for i in 0..3 {
        let mut paths = files(&cluster.data_dir(i));
        paths.push(cluster.log_path(i));
        for path in paths {
            let bytes = std::fs::read(&path).expect("read file");
            scanned += bytes.len();
            for s in &secrets {
                assert!(
                    !contains(&bytes, s.as_bytes()),
                    "{} holds {s:?} in the clear",
                    path.display()
                );
            }
        }
    }
    assert!(
        scanned > 100_000,
        "the scan read the stores ({scanned} bytes)"
    );

    // Alter one stored record of provider 1 through the storage API while
    // it is stopped: the chain check names provider 1.
    {
        let db = redb::Database::open(cluster.data_dir(1).join("raft.redb")).expect("open db");
        let mut r = store::record(&db, 5).expect("read").expect("record 5");
        assert_eq!(r.code.as_str(), "forbidden");
        r.code = sharecall_proto::answer::Code::Ok;
        store::overwrite(&db, &r).expect("overwrite");
        assert!(store::verify(&db, u64::MAX).is_err(), "verify sees it");
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    for i in 0..3 {
        cluster.wait_ready(i);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        match log_check(&cluster, 0) {
            Err((status, body)) if body.contains("does not verify") => break (status, body),
            other => {
                assert!(Instant::now() < deadline, "check not refused: {other:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert_eq!(status, 502, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json error");
    assert_eq!(v["error"]["peer"], 1, "{body}");
    assert!(body.contains("record 5"), "{body}");
}

#[test]
fn concurrent_resolutions_in_several_read_batches_keep_the_heads_equal() {
    let cluster = Cluster::start(ClusterOptions {
        seal_interval: "50ms",
        ..ClusterOptions::default()
    });
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    let names: Vec<String> = (0..8).map(|k| format!("+1 202 555 01{k:02}")).collect();
    for (k, n) in names.iter().enumerate() {
        assert_eq!(
            alice.register(n, &format!("sip:u{k}@192.0.2.{k}"), 3600),
            "ok"
        );
    }
    let clients: Vec<TestClient<'_>> = (10..16).map(|s| TestClient::new(&cluster, s)).collect();
    for c in &clients {
        c.enroll();
    }
    let per_client = 12;
    std::thread::scope(|scope| {
        for (ci, c) in clients.iter().enumerate() {
            let names = &names;
            scope.spawn(move || {
                for k in 0..per_client {
                    // Every third one misses.
                    let n = if k % 3 == 0 {
                        format!("+1 202 555 09{ci}{k}")
                    } else {
                        names[(ci + k) % names.len()].clone()
                    };
                    let got = c.resolve(&n);
                    assert_eq!(matches!(got, Resolved::Found(_)), k % 3 != 0, "{n}");
                }
            });
        }
    });
    let total = names.len() as u64 + (clients.len() * per_client) as u64;
    let head = settled_heads(&cluster, total);
    assert_eq!(head["count"], total, "{head}");
    let all: Vec<Vec<Value>> = (0..3).map(|i| records(&cluster, i)).collect();
    for i in 1..3 {
        let a: Vec<Value> = all[0].iter().map(agreed).collect();
        let b: Vec<Value> = all[i].iter().map(agreed).collect();
        assert_eq!(a, b, "providers 0 and {i} ordered the reads differently");
    }
    let reads: Vec<&Value> = all[0].iter().filter(|r| r["kind"] == "resolve").collect();
    assert_eq!(reads.len(), clients.len() * per_client);
    let mut batches: Vec<u64> = reads.iter().filter_map(|r| r["batch"].as_u64()).collect();
    batches.dedup();
    assert!(batches.len() > 1, "one read batch only: {batches:?}");
    let misses = reads.iter().filter(|r| r["code"] == "not_found").count();
    assert_eq!(misses, clients.len() * per_client.div_ceil(3));
    log_check(&cluster, 1).expect("chains agree");
}

#[test]
fn a_short_retention_purges_the_same_records_everywhere_and_logs_it() {
    let cluster = Cluster::start(ClusterOptions {
        log_retention: "3s",
        sweep_interval: "500ms",
        seal_interval: "50ms",
        ..ClusterOptions::default()
    });
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    for k in 0..3 {
        assert_eq!(
            alice.register(&format!("+33 1 555 000{k}"), "sip:old@192.0.2.1", 3600),
            "ok"
        );
    }
    assert_eq!(
        alice.resolve("+33 1 555 0001"),
        Resolved::Found("sip:old@192.0.2.1".into())
    );
    settled_heads(&cluster, 4);
    // Past the retention, a sweep purges the old records (and each purge
    // record is purged in turn three seconds later: the snapshot must
    // catch the first purge).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = settled_heads(&cluster, 5);
        let all: Vec<Vec<Value>> = (0..3).map(|i| records(&cluster, i)).collect();
        let heads: Vec<Value> = (0..3)
            .map(|i| cluster.get(i, "/v1/admin/log/head").expect("head"))
            .collect();
        let unchanged = heads.iter().all(|h| h["head"] == before["head"]);
        // The first purge ever removed records 1..=aux (so `cursor`, the
        // number removed, equals `aux`) and is itself record 5 or later.
        let first_purge = all[0]
            .iter()
            .find(|r| r["kind"] == "purge" && r["cursor"] == r["aux"])
            .cloned();
        if let (true, Some(purge)) = (unchanged, first_purge) {
            // (How many depends on how fast the workload ran against the
            // two-second retention; what matters is that all three agree.)
            let through = purge["aux"].as_u64().unwrap_or(0);
            assert!(through >= 1, "{purge}");
            assert!(purge["seq"].as_u64().unwrap_or(0) > through, "{purge}");
            for (i, rs) in all.iter().enumerate() {
                let first = rs.first().and_then(|r| r["seq"].as_u64());
                assert_eq!(first, Some(through + 1), "provider {i}");
                assert_eq!(heads[i]["first_seq"], through + 1, "provider {i}");
                let a: Vec<Value> = all[0].iter().map(agreed).collect();
                let b: Vec<Value> = rs.iter().map(agreed).collect();
                assert_eq!(a, b, "providers 0 and {i} purged differently");
            }
            break;
        }
        assert!(Instant::now() < deadline, "no purge seen: {:?}", all[0]);
        std::thread::sleep(Duration::from_millis(100));
    }
    log_check(&cluster, 0).expect("chains agree after the purge");
}

#[test]
fn a_request_refused_for_its_log_time_is_logged_marked_refused() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    assert_eq!(
        alice.register("+44 20 7946 0001", "sip:a@192.0.2.1", 3600),
        "ok"
    );
    // Every provider proposes times 100 years ahead: every provider
    // refuses the next register's log time (fault-injection hook).
    let far = (100i64 * 365 * 24 * 3600 * 1000).to_string();
    for i in 0..3 {
        cluster.set_env(
            i,
            vec![("SHARECALL_FAULT_LOG_TIME_OFFSET_MS".into(), far.clone())],
        );
    }
    cluster.restart_all();
    let alice = TestClient::new(&cluster, 1);
    assert_eq!(
        alice.register("+44 20 7946 0002", "sip:b@192.0.2.2", 3600),
        "refused"
    );
    for i in 0..3 {
        cluster.set_env(i, Vec::new());
    }
    cluster.restart_all();
    let head = settled_heads(&cluster, 2);
    assert_eq!(head["count"], 2, "{head}");
    let all: Vec<Vec<Value>> = (0..3).map(|i| records(&cluster, i)).collect();
    for rs in &all {
        let kinds: Vec<(&str, &str)> = rs
            .iter()
            .map(|r| {
                (
                    r["kind"].as_str().unwrap_or(""),
                    r["code"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(kinds, [("register", "ok"), ("register", "refused")]);
        // The refused request's origin and shares are logged too.
        assert_eq!(rs[1]["origin"], hex::encode(TestClient::account_of(1)));
        assert_eq!(rs[1]["key_share"], true, "{}", rs[1]);
        assert_eq!(rs[1]["endpoint_shares"], 10, "{}", rs[1]);
        assert_eq!(rs[1]["tag_bits"], 0, "no tag was computed: {}", rs[1]);
    }
    for i in 1..3 {
        let a: Vec<Value> = all[0].iter().map(agreed).collect();
        let b: Vec<Value> = all[i].iter().map(agreed).collect();
        assert_eq!(a, b);
    }
    log_check(&cluster, 0).expect("chains agree");
}

#[test]
fn reads_a_crashed_leader_did_not_seal_are_logged_lost_at_all_three() {
    // A long seal interval keeps the reads unsealed until the crash.
    let mut cluster = Cluster::start(ClusterOptions {
        seal_interval: "1min",
        ..ClusterOptions::default()
    });
    let leader = {
        let alice = TestClient::new(&cluster, 1);
        alice.enroll();
        assert_eq!(
            alice.register("+61 2 5550 0001", "sip:a@192.0.2.1", 3600),
            "ok"
        );
        assert_eq!(
            alice.resolve("+61 2 5550 0001"),
            Resolved::Found("sip:a@192.0.2.1".into())
        );
        assert_eq!(alice.resolve("+61 2 5550 0002"), Resolved::NotFound);
        let heads: Vec<Value> = (0..3)
            .map(|i| cluster.get(i, "/v1/admin/log/head").expect("head"))
            .collect();
        assert!(
            heads
                .iter()
                .all(|h| h["count"] == 1 && h["unsealed_read_batches"] != 0),
            "the reads wait for a seal: {heads:?}"
        );
        cluster.get(0, "/v1/admin/raft").expect("raft")["leader"]
            .as_u64()
            .expect("a leader") as usize
            - 1
    };
    // The leader dies with its held records; another takes over, and the
    // old leader comes back without them.
    cluster.kill(leader);
    let other = (leader + 1) % 3;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = cluster.get(other, "/v1/admin/raft").expect("raft");
        let l = r["leader"].as_u64().unwrap_or(0);
        if l != 0 && l as usize - 1 != leader {
            break;
        }
        assert!(Instant::now() < deadline, "no new leader: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.spawn(leader);
    cluster.wait_ready(leader);
    // The next write seals: the restarted provider lacks the read batches,
    // so all three log them lost, then the write.
    let alice = TestClient::new(&cluster, 1);
    assert_eq!(
        alice.register("+61 2 5550 0003", "sip:c@192.0.2.3", 3600),
        "ok"
    );
    let head = settled_heads(&cluster, 3);
    let all: Vec<Vec<Value>> = (0..3).map(|i| records(&cluster, i)).collect();
    for i in 1..3 {
        let a: Vec<Value> = all[0].iter().map(agreed).collect();
        let b: Vec<Value> = all[i].iter().map(agreed).collect();
        assert_eq!(a, b, "providers 0 and {i} differ");
    }
    let kinds: Vec<&str> = all[0].iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"register"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"register"), "{kinds:?}");
    let lost = kinds.iter().filter(|k| **k == "reads_lost").count();
    assert!(lost >= 1, "the unsealed reads are marked lost: {kinds:?}");
    assert_eq!(kinds.len(), 2 + lost, "{kinds:?}");
    assert_eq!(head["count"], kinds.len() as u64);
    log_check(&cluster, other).expect("chains agree");
}

#[test]
fn a_provider_that_catches_up_from_transcripts_logs_the_same_records() {
    let mut options = ClusterOptions::default();
    // Provider 2 dies after agreeing on request 3's batch, before
    // committing it (fault-injection hook).
    options.providers[2].env = vec![("SHARECALL_FAULT_EXIT_BEFORE_COMMIT".into(), "3".into())];
    let mut cluster = Cluster::start(options);
    {
        let alice = TestClient::new(&cluster, 1);
        alice.enroll();
        assert_eq!(
            alice.register("+81 3 5550 0001", "sip:a@192.0.2.1", 3600),
            "ok"
        );
        assert_eq!(
            alice.register("+81 3 5550 0002", "sip:b@192.0.2.2", 3600),
            "ok"
        );
        let parts = sharecall_tests::table::entry_parts("+81 3 5550 0003", "sip:c@192.0.2.3", 3600);
        let _ = alice.send(alice.bodies(&alice.id(), "register", &parts, 10_000));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.log(2).contains("exiting before commit") {
        assert!(Instant::now() < deadline, "provider 2 did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.set_env(2, Vec::new());
    cluster.restart(2);
    // The next batch makes provider 2 replay request 3's transcript, and
    // its share log takes the same record from its own part.
    let alice = TestClient::new(&cluster, 1);
    assert_eq!(
        alice.register("+81 3 5550 0004", "sip:d@192.0.2.4", 3600),
        "ok"
    );
    let head = settled_heads(&cluster, 4);
    assert_eq!(head["count"], 4, "{head}");
    let all: Vec<Vec<Value>> = (0..3).map(|i| records(&cluster, i)).collect();
    for (i, rs) in all.iter().enumerate() {
        let a: Vec<Value> = all[0].iter().map(agreed).collect();
        let b: Vec<Value> = rs.iter().map(agreed).collect();
        assert_eq!(a, b, "providers 0 and {i} differ");
        assert!(
            rs.iter()
                .all(|r| r["key_share"] == true && r["endpoint_shares"] == 10),
            "provider {i} logged its own shares: {rs:?}"
        );
    }
    log_check(&cluster, 2).expect("chains agree");
}
