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

    // Register, then a duplicate register fails.
    for (k, name) in names.iter().enumerate().take(8) {
        let endpoint = format!("sip:user{k}@192.0.2.{k}:5060");
        let owner = if k % 2 == 0 { &alice } else { &bob };
        assert_eq!(owner.register(name, &endpoint, 3600), "ok", "{name}");
        model.insert(name.clone(), (endpoint, if k % 2 == 0 { 1 } else { 2 }));
    }
    assert_eq!(bob.register(&names[0], "sip:thief@198.51.100.1", 3600), "exists");
    check_model(&alice, &model, &names);

    // Update: owner only; not found for an absent pseudonym.
    assert_eq!(bob.update(&names[0], "sip:thief@198.51.100.1", 60), "forbidden");
    assert_eq!(alice.update(&names[0], "sip:alice@203.0.113.5:5070", 60), "ok");
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
                assert_eq!(alice.register(name, &format!("sip:c{k}@192.0.2.{k}"), 3600), "ok");
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
    assert_eq!(bob.resolve(short), Resolved::Found("sip:b@192.0.2.8".into()));

    // Everything survives a restart of all three providers.
    let mut cluster = cluster;
    cluster.restart_all();
    let alice = TestClient::new(&cluster, 1);
    check_model(&alice, &model, &names);
    assert_eq!(alice.resolve(short), Resolved::Found("sip:b@192.0.2.8".into()));
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
