//! The raft sequencer with three real provider processes: one order of
//! requests everywhere, exactly-once application, crash and restart.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::table::{entry_parts, TestClient};

fn submit(admin: std::net::SocketAddr, id: &str) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = ureq::post(&format!("http://{admin}/v1/admin/sequence"))
            .timeout(Duration::from_secs(30))
            .send_json(json!({"request_id": id}));
        match r {
            Ok(r) => {
                let v: Value = r.into_json().map_err(|e| e.to_string())?;
                return v["seq"].as_u64().ok_or_else(|| format!("no seq in {v}"));
            }
            // Not ordered yet (e.g. during an election): same id again.
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn applied_ids(cluster: &Cluster, i: usize) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let v = cluster
            .get(
                i,
                &format!("/v1/admin/sequence?from={}&limit=5000", out.len() + 1),
            )
            .expect("applied list");
        let ids = v["ids"].as_array().expect("ids").clone();
        if ids.is_empty() {
            return out;
        }
        out.extend(ids.iter().map(|x| x.as_str().expect("id").to_string()));
    }
}

fn wait_applied(cluster: &Cluster, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0..3 {
        loop {
            let s = cluster.get(i, "/v1/admin/raft").expect("raft status");
            if s["requests"].as_u64() == Some(n) {
                break;
            }
            assert!(Instant::now() < deadline, "provider {i} applied {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn burst(cluster: &Cluster, prefix: &str, n: usize, threads: usize) -> Vec<(String, u64)> {
    let admins: Vec<_> = cluster.addrs.iter().map(|a| a.admin).collect();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let admin = admins[t % 3];
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                (t..n)
                    .step_by(threads)
                    .map(|k| {
                        let id = format!("{prefix}-{k}");
                        let seq = submit(admin, &id).expect("ordered");
                        (id, seq)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("client thread"))
        .collect()
}

#[test]
fn thousand_concurrent_requests_have_one_order_everywhere_and_survive_restart() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let acked = burst(&cluster, "r", 1000, 30);
    assert_eq!(acked.len(), 1000);
    wait_applied(&cluster, 1000);

    let lists: Vec<Vec<String>> = (0..3).map(|i| applied_ids(&cluster, i)).collect();
    assert_eq!(lists[0].len(), 1000);
    assert_eq!(lists[0], lists[1], "P0 and P1 applied different orders");
    assert_eq!(lists[0], lists[2], "P0 and P2 applied different orders");
    // Every acknowledged sequence number is the request's place in the
    // common order, and nothing was applied twice.
    for (id, seq) in &acked {
        assert_eq!(&lists[0][(*seq - 1) as usize], id);
    }
    let mut unique = lists[0].clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 1000);

    // A retried request id is answered with its first sequence number.
    let (id, seq) = &acked[17];
    assert_eq!(submit(cluster.addrs[2].admin, id).expect("retry"), *seq);
    wait_applied(&cluster, 1000);

    let digests: Vec<Value> = (0..3)
        .map(|i| cluster.get(i, "/v1/admin/raft").expect("status")["digest"].clone())
        .collect();
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[0], digests[2]);

    // All three restart from disk with the same state.
    cluster.restart_all();
    wait_applied(&cluster, 1000);
    for i in 0..3 {
        assert_eq!(
            cluster.get(i, "/v1/admin/raft").expect("status")["digest"],
            digests[0]
        );
        assert_eq!(applied_ids(&cluster, i), lists[0]);
    }
    // And keep ordering new requests.
    let more = burst(&cluster, "after", 30, 3);
    assert!(more.iter().all(|(_, seq)| *seq > 1000));
    wait_applied(&cluster, 1030);
}

#[test]
fn killed_leader_and_follower_lose_no_acknowledged_request() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let before = burst(&cluster, "a", 100, 6);
    wait_applied(&cluster, 100);
    let leader = cluster.get(0, "/v1/admin/raft").expect("status")["leader"]
        .as_u64()
        .expect("a leader") as usize
        - 1;

    // Load runs against the providers that stay up while the leader dies.
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let admins: Vec<_> = survivors.iter().map(|i| cluster.addrs[*i].admin).collect();
    let load = std::thread::spawn(move || {
        (0..150)
            .map(|k| {
                let id = format!("b-{k}");
                let seq = submit(admins[k % admins.len()], &id).expect("ordered despite the crash");
                (id, seq)
            })
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(300));
    cluster.kill(leader);
    let during = load.join().expect("load");
    cluster.restart(leader);

    // Now a follower dies and comes back.
    let follower = survivors[0];
    cluster.kill(follower);
    let after = burst(&cluster, "c", 0, 1);
    assert!(after.is_empty());
    let others: Vec<_> = (0..3)
        .filter(|i| *i != follower)
        .map(|i| cluster.addrs[i].admin)
        .collect();
    let extra: Vec<(String, u64)> = (0..50)
        .map(|k| {
            let id = format!("c-{k}");
            (
                id.clone(),
                submit(others[k % 2], &id).expect("ordered with a follower down"),
            )
        })
        .collect();
    cluster.restart(follower);

    let total = 100 + 150 + 50;
    wait_applied(&cluster, total);
    let lists: Vec<Vec<String>> = (0..3).map(|i| applied_ids(&cluster, i)).collect();
    assert_eq!(lists[0], lists[1]);
    assert_eq!(lists[0], lists[2]);
    for (id, seq) in before.iter().chain(&during).chain(&extra) {
        assert_eq!(
            &lists[0][(*seq - 1) as usize],
            id,
            "acknowledged {id} lost or moved"
        );
    }
    let mut unique = lists[0].clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len() as u64, total, "a request was applied twice");
}

/// Sends provider `i`'s body for every `i` in `to`, concurrently.
fn send_some(
    cluster: &Cluster,
    bodies: &[Value; 3],
    to: &[usize],
) -> Vec<Result<Value, (u16, String)>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = to
            .iter()
            .map(|&i| {
                let body = bodies[i].clone();
                s.spawn(move || cluster.post(i, "/v1/requests", body))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    })
}

#[test]
fn request_executes_when_all_parts_arrive_and_aborts_when_one_is_missing() {
    let cluster = Cluster::start(ClusterOptions::default());
    let client = TestClient::new(&cluster, 42);
    client.enroll();
    let parts = entry_parts("+49 30 1234567", "sip:alice@192.0.2.1", 600);

    // All three parts, sent concurrently: executed, same seq everywhere.
    let full = client.bodies("req-full", "register", &parts, 5000);
    let answers = send_some(&cluster, &full, &[0, 1, 2]);
    let seqs: Vec<u64> = answers
        .iter()
        .map(|a| a.as_ref().expect("executed")["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.iter().all(|s| *s == seqs[0]), "{answers:?}");

    // A retry of the same id is answered from the record.
    let again = cluster
        .post(1, "/v1/requests", full[1].clone())
        .expect("duplicate answered");
    assert_eq!(again["seq"].as_u64(), Some(seqs[0]));
    // The same id for another request is refused.
    let other = client.bodies("req-full", "register", &parts, 6000);
    let (code, body) = cluster
        .post(1, "/v1/requests", other[1].clone())
        .expect_err("id reused");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("id_reused"), "{body}");

    // The third part never arrives: both clients get a clear error after
    // the window, and every provider records the same abort.
    let partial = client.bodies("req-partial", "register", &parts, 1000);
    let started = Instant::now();
    let answers = send_some(&cluster, &partial, &[0, 1]);
    assert!(started.elapsed() < Duration::from_secs(10));
    for a in &answers {
        let (code, body) = a.as_ref().expect_err("aborted");
        assert_eq!(*code, 409, "{body}");
        assert!(body.contains("provider 2"), "{body}");
    }
    // Followers apply the decision when the commit reaches them.
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..3 {
        loop {
            let (code, body) = client
                .poll(i, "req-partial")
                .expect_err("aborted or not yet known");
            if code == 409 {
                assert!(body.contains("provider 2"), "{body}");
                break;
            }
            assert_eq!(code, 404, "{body}");
            assert!(
                Instant::now() < deadline,
                "provider {i} never recorded the abort"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The late part does not resurrect it.
    let (code, _) = cluster
        .post(2, "/v1/requests", partial[2].clone())
        .expect_err("still aborted");
    assert_eq!(code, 409);

    // A part that does not match its hash is refused before anything is logged.
    let mut bad = client.bodies("req-bad", "register", &parts, 1000)[0].clone();
    bad["part"] = json!(hex::encode(b"tampered"));
    let (code, body) = cluster.post(0, "/v1/requests", bad).expect_err("refused");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("part_hash_mismatch"), "{body}");
    let (code, _) = client.poll(0, "req-bad").expect_err("nothing recorded");
    assert_eq!(code, 404);

    // A signature that does not cover what was sent is refused (another
    // kind whose public fields are those of a register, so only the
    // signature can catch it).
    let mut forged = client.bodies("req-forged", "register", &parts, 1000)[1].clone();
    forged["kind"] = json!("update");
    let (code, body) = cluster
        .post(1, "/v1/requests", forged)
        .expect_err("refused");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("bad_signature"), "{body}");
    // So is an old one.
    let mut stale = client.bodies("req-stale", "register", &parts, 1000)[1].clone();
    stale["timestamp_ms"] = json!(1_000_000_000_000u64);
    let (code, _) = cluster.post(1, "/v1/requests", stale).expect_err("refused");
    assert_eq!(code, 401);
}

#[test]
fn provider_down_past_compaction_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start(ClusterOptions {
        compact_every: 40,
        ..ClusterOptions::default()
    });
    let first = burst(&cluster, "s", 30, 3);
    wait_applied(&cluster, 30);
    let down = 2;
    cluster.kill(down);
    // Enough entries for the others to compact the log P2 would need.
    let admins: Vec<_> = (0..2).map(|i| cluster.addrs[i].admin).collect();
    let during: Vec<(String, u64)> = (0..200)
        .map(|k| {
            let id = format!("t-{k}");
            (id.clone(), submit(admins[k % 2], &id).expect("ordered"))
        })
        .collect();
    cluster.restart(down);
    wait_applied(&cluster, 230);
    let lists: Vec<Vec<String>> = (0..3).map(|i| applied_ids(&cluster, i)).collect();
    assert_eq!(lists[0], lists[2], "the restarted provider differs");
    assert_eq!(lists[0], lists[1]);
    for (id, seq) in first.iter().chain(&during) {
        assert_eq!(&lists[0][(*seq - 1) as usize], id);
    }
    let digests: Vec<Value> = (0..3)
        .map(|i| cluster.get(i, "/v1/admin/raft").expect("status")["digest"].clone())
        .collect();
    assert_eq!(digests[0], digests[2]);
    // It really came through a snapshot, not by replaying the log.
    assert!(
        cluster.log(down).contains("installing snapshot"),
        "{}",
        cluster.log(down)
    );
}
