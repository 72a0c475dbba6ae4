//! Every public field is signed once (issue 13, item 3), with real
//! provider processes: a part carrying its own ttl is refused; a client
//! that signs different public fields for different providers (three
//! valid signatures) gets its request aborted at every provider, nothing
//! changes, and the next write goes through (no stall).

use serde_json::{json, Value};
use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::table::{
    entry_parts, import_parts, split_public, Reply, Resolved, TestClient,
};

/// Every reply is a `409 aborted` (the request never executed).
fn all_aborted(replies: &[Reply; 3]) {
    for (i, r) in replies.iter().enumerate() {
        match r {
            Err((409, body)) => assert!(body.contains("aborted"), "provider {i}: {body}"),
            other => panic!("provider {i} should refuse the request: {other:?}"),
        }
    }
}

#[test]
fn a_part_with_its_own_ttl_is_refused_and_split_public_fields_never_execute() {
    let cluster = Cluster::start(ClusterOptions::default());
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    assert_eq!(alice.register("anna", "sip:anna@192.0.2.1", 3600), "ok");

    // (a) A part that still carries ttl_s is refused at that provider,
    // naming the field, even with the public object present and signed.
    let parts = entry_parts("bert", "sip:bert@192.0.2.2", 60);
    let (_, public) = split_public("register", &parts);
    let id = alice.id();
    let bodies = alice.bodies_with_public(&id, "register", &parts, [&public; 3], 5000);
    let (status, body) = cluster
        .post(1, "/v1/requests", bodies[1].clone())
        .expect_err("a part with ttl_s is refused");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("bad_part") && body.contains("ttl_s"),
        "{body}"
    );
    // A body whose public object differs from what was signed does not
    // verify.
    let mut b = alice.bodies(&alice.id(), "register", &parts, 5000)[0].clone();
    b["public"]["ttl_s"] = json!(31_536_000);
    let (status, body) = cluster
        .post(0, "/v1/requests", b)
        .expect_err("public changed after signing");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("bad_signature"), "{body}");
    // A public field the kind does not allow is refused, named.
    let mut b = alice.bodies(&alice.id(), "register", &parts, 5000)[0].clone();
    b["public"]["owner"] = json!(hex::encode([1u8; 32]));
    let (status, body) = cluster
        .post(0, "/v1/requests", b)
        .expect_err("owner in a register's public");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("bad_public") && body.contains("owner"),
        "{body}"
    );

    // (b) ttl 1 s signed for P0, one year for P1 and P2: three valid
    // signatures, so each provider accepts its own body, but they verified
    // different signed messages and the request is aborted everywhere.
    let before = cluster.settled();
    let (parts, _) = split_public("register", &entry_parts("carl", "sip:carl@192.0.2.3", 60));
    let short = json!({"ttl_s": 1});
    let long = json!({"ttl_s": 31_536_000});
    let id = alice.id();
    let bodies = alice.bodies_with_public(&id, "register", &parts, [&short, &long, &long], 5000);
    let replies = alice.send_raw(bodies);
    all_aborted(&replies);
    let after = cluster.settled();
    assert_eq!(before, after, "a refused request changed a table");
    assert!(after.iter().all(|t| t.2 == after[0].2), "{after:?}");
    assert_eq!(alice.resolve("carl"), Resolved::NotFound);
    // Writes go on: no batch is stuck on the split request.
    assert_eq!(alice.register("dora", "sip:dora@192.0.2.4", 3600), "ok");
    assert_eq!(alice.update("anna", "sip:anna@192.0.2.9", 60), "ok");
    assert_eq!(
        alice.resolve("anna"),
        Resolved::Found("sip:anna@192.0.2.9".into())
    );
    let last = cluster.settled();
    assert!(last.iter().all(|t| t.2 == last[0].2), "{last:?}");
    assert_eq!(last[0].1, before[0].1 + 1);
}

#[test]
fn an_import_whose_owner_differs_between_providers_never_executes() {
    let operator_key = TestClient::account_of(7);
    let cluster = Cluster::start(ClusterOptions {
        importers: vec![hex::encode(operator_key)],
        ..ClusterOptions::default()
    });
    let operator = TestClient::new(&cluster, 7);
    let alice = TestClient::new(&cluster, 1);
    let mallory = TestClient::new(&cluster, 3);
    operator.enroll();
    alice.enroll();
    mallory.enroll();
    let rows: Vec<(String, String)> = (0..3)
        .map(|k| {
            (
                format!("+1 555 01{k:02}"),
                format!("sip:row{k}@192.0.2.{k}"),
            )
        })
        .collect();

    // (c) Row 1 owned by alice at P1 and P2, by mallory at P0.
    let before = cluster.settled();
    let (parts, public) = split_public("import", &import_parts(&rows, 3600, &alice.account()));
    let mut other: Value = public.clone();
    other["rows"][1]["owner"] = json!(hex::encode(mallory.account()));
    let id = operator.id();
    let bodies =
        operator.bodies_with_public(&id, "import", &parts, [&other, &public, &public], 5000);
    all_aborted(&operator.send_raw(bodies));
    let after = cluster.settled();
    assert_eq!(before, after, "a refused import changed a table");
    assert_eq!(alice.resolve("+1 555 0101"), Resolved::NotFound);

    // An import part whose row count differs from `public.rows` is refused.
    let mut short = public.clone();
    short["rows"].as_array_mut().expect("rows").pop();
    let bodies = operator.bodies_with_public(&operator.id(), "import", &parts, [&short; 3], 5000);
    let (status, body) = cluster
        .post(2, "/v1/requests", bodies[2].clone())
        .expect_err("row count differs");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_part") && body.contains("rows"), "{body}");

    // (d) The same import, signed once, goes through for alice.
    let (codes, values) = operator.call("import", import_parts(&rows, 3600, &alice.account()));
    assert_eq!(sharecall_tests::table::agreed(codes), "ok");
    for v in &values {
        assert_eq!(v["result"]["imported"], 3, "{v}");
    }
    assert_eq!(
        alice.resolve("+1 555 0101"),
        Resolved::Found("sip:row1@192.0.2.1".into())
    );
    assert_eq!(
        mallory.update("+1 555 0101", "sip:m@192.0.2.9", 60),
        "forbidden"
    );
    assert_eq!(alice.update("+1 555 0101", "sip:a@192.0.2.9", 60), "ok");
    let last = cluster.settled();
    assert!(last.iter().all(|t| t.2 == last[0].2), "{last:?}");
}
