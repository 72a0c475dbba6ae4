//! Answers only the requester can use (docs/SECURITY.md §7b), through
//! real provider processes: every provider receives every request id, so
//! an answer served in the clear to whoever asks would let one provider
//! collect the other two providers' shares and reconstruct the endpoint.
//! Polling needs the request's signature (stops third parties) and every
//! answer is sealed under the client's per-request key for that provider,
//! which only that provider received and whose hash the client signed
//! (stops the other providers, which know the signature).

use serde_json::Value;
use sharecall_proto::encoding::{Endpoint, ENDPOINT_ELEMENTS};
use sharecall_proto::layout::decode_share_vector;
use sharecall_proto::sharing::reconstruct_all;
use sharecall_proto::Share;
use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::table::{
    decode_shares, entry_parts, key_parts, open_with_key, AnswerKeys, TestClient,
};

const NAME: &str = "+49 30 2223334";
const ENDPOINT: &str = "sip:hidden-ivy@198.51.100.42:5061";

/// The endpoint that three share vectors reconstruct to, if they do.
fn reconstruct(shares: &[Vec<Share>; 3]) -> Option<String> {
    let elements = (0..ENDPOINT_ELEMENTS)
        .map(|e| {
            reconstruct_all(&[*shares[0].get(e)?, *shares[1].get(e)?, *shares[2].get(e)?]).ok()
        })
        .collect::<Option<Vec<_>>>()?;
    Endpoint::unpack(&elements)
        .ok()
        .map(|e| e.as_str().to_string())
}

/// Every key of a JSON value, at any depth.
fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

#[test]
fn answers_are_sealed_to_the_requester_and_polling_needs_the_signature() {
    let cluster = Cluster::start(ClusterOptions::default());
    let alice = TestClient::new(&cluster, 1);
    alice.enroll();
    assert_eq!(alice.register(NAME, ENDPOINT, 3600), "ok");

    let id = alice.id();
    let raw = alice.send_raw(alice.bodies(&id, "resolve", &key_parts(NAME), 10_000));
    let path = format!("/v1/requests/{id}");
    for (i, r) in raw.iter().enumerate() {
        let v = r.as_ref().unwrap_or_else(|e| panic!("provider {i}: {e:?}"));
        assert_eq!(v["status"], "done", "{v}");
        let mut k = Vec::new();
        keys(v, &mut k);
        assert!(
            !k.iter().any(|k| k == "result" || k == "endpoint"),
            "provider {i} answered in the clear: {v}"
        );
        assert!(v["sealed_result"]["ciphertext"].is_string(), "{v}");
    }

    // The attack: three plain GETs, as one provider (or anyone) would send
    // them knowing the request id. None yields a share.
    for i in 0..3 {
        let (code, body) = cluster.get(i, &path).expect_err("refused");
        assert_eq!(code, 401, "provider {i}: {body}");
        assert!(body.contains("unauthenticated"), "{body}");
        assert!(
            !body.contains("endpoint") && !body.contains("sealed"),
            "{body}"
        );
    }
    // A signature that is not the request's: 403.
    let other = alice.bodies(&alice.id(), "resolve", &key_parts(NAME), 10_000);
    let wrong = other[0]["signature"]
        .as_str()
        .expect("signature")
        .to_string();
    for i in 0..3 {
        let (code, body) = cluster.get_signed(i, &path, &wrong).expect_err("refused");
        assert_eq!(code, 403, "provider {i}: {body}");
        assert!(body.contains("forbidden"), "{body}");
    }

    // With the right signature (which the other providers know too),
    // each provider returns only ciphertext.
    let sig = alice.signature(&id).expect("signed");
    let polled: Vec<Value> = (0..3)
        .map(|i| cluster.get_signed(i, &path, &sig).expect("answer"))
        .collect();
    let mut as_shares: [Vec<Share>; 3] = Default::default();
    for (i, v) in polled.iter().enumerate() {
        let mut k = Vec::new();
        keys(v, &mut k);
        assert!(
            !k.iter().any(|k| k == "result" || k == "endpoint"),
            "provider {i}: {v}"
        );
        let ct = hex::decode(
            v["sealed_result"]["ciphertext"]
                .as_str()
                .expect("ciphertext"),
        )
        .expect("hex");
        assert!(ct.len() > 16 * 64, "provider {i}: {} bytes", ct.len());
        // Read as share vectors (what a thief would try), the ciphertexts
        // do not reconstruct the endpoint.
        as_shares[i] = decode_share_vector(&ct[..ENDPOINT_ELEMENTS * 64], ENDPOINT_ELEMENTS)
            .unwrap_or_default();
    }
    assert_ne!(reconstruct(&as_shares), Some(ENDPOINT.to_string()));
    // Without the client's key nothing opens; a provider's ciphertext does
    // not open as another provider's answer either.
    let stranger = AnswerKeys::generate(&mut rand::rngs::OsRng);
    for (i, v) in polled.iter().enumerate() {
        assert!(sharecall_tests::table::open_with(&stranger, i, &id, &v["sealed_result"]).is_err());
        let moved = (i + 1) % 3;
        assert!(alice.open_sealed(moved, &id, &v["sealed_result"]).is_err());
    }
    // The client opens all three and reconstructs, every component checked.
    let opened: [Vec<Share>; 3] = std::array::from_fn(|i| {
        let r = alice
            .open_sealed(i, &id, &polled[i]["sealed_result"])
            .expect("opens");
        assert_eq!(r["code"], "ok", "{r}");
        decode_shares(r["endpoint"].as_str().expect("endpoint share"))
    });
    assert_eq!(reconstruct(&opened), Some(ENDPOINT.to_string()));
}

#[test]
fn write_answers_are_sealed_and_polled_with_the_signature_too() {
    let cluster = Cluster::start(ClusterOptions::default());
    let alice = TestClient::new(&cluster, 2);
    alice.enroll();
    let id = alice.id();
    let parts = entry_parts(NAME, ENDPOINT, 600);
    let raw = alice.send_raw(alice.bodies(&id, "register", &parts, 10_000));
    let path = format!("/v1/requests/{id}");
    let sig = alice.signature(&id).expect("signed");
    for (i, r) in raw.iter().enumerate() {
        let v = r.as_ref().unwrap_or_else(|e| panic!("provider {i}: {e:?}"));
        assert!(v.get("result").is_none(), "{v}");
        let (code, _) = cluster.get(i, &path).expect_err("refused");
        assert_eq!(code, 401);
        let polled = cluster.get_signed(i, &path, &sig).expect("answer");
        assert!(polled.get("result").is_none(), "{polled}");
        let r = alice
            .open_sealed(i, &id, &polled["sealed_result"])
            .expect("opens");
        assert_eq!(r["code"], "ok", "{r}");
    }
}

#[test]
fn a_sealed_answer_opens_only_with_its_providers_key_for_its_request() {
    let cluster = Cluster::start(ClusterOptions::default());
    let alice = TestClient::new(&cluster, 3);
    alice.enroll();
    assert_eq!(alice.register(NAME, ENDPOINT, 3600), "ok");
    let (a, b) = (alice.id(), alice.id());
    let raw_a = alice.send_raw(alice.bodies(&a, "resolve", &key_parts(NAME), 10_000));
    let raw_b = alice.send_raw(alice.bodies(&b, "resolve", &key_parts(NAME), 10_000));
    let keys_a = alice.secret(&a).expect("keys of a");
    let keys_b = alice.secret(&b).expect("keys of b");
    for i in 0..3 {
        let sealed = &raw_a[i].as_ref().expect("answer")["sealed_result"];
        let r = open_with_key(keys_a.key(i as u8), i, &a, sealed).expect("opens");
        assert_eq!(r["code"], "ok", "{r}");
        // Another provider's key of the same request does not open it
        // (a peer that got its own key cannot read this share).
        for j in (0..3).filter(|j| *j != i) {
            assert!(
                open_with_key(keys_a.key(j as u8), i, &a, sealed).is_err(),
                "P{i}'s answer opened with P{j}'s key"
            );
        }
        // Moved to request b: neither b's key nor a's key under b's id
        // opens it.
        assert!(open_with_key(keys_b.key(i as u8), i, &b, sealed).is_err());
        assert!(open_with_key(keys_a.key(i as u8), i, &b, sealed).is_err());
        // And b's own answer opens as b's only.
        let sealed_b = &raw_b[i].as_ref().expect("answer")["sealed_result"];
        assert!(open_with_key(keys_b.key(i as u8), i, &b, sealed_b).is_ok());
        assert!(open_with_key(keys_b.key(i as u8), i, &a, sealed_b).is_err());
    }
}

/// The refusal of a body whose `answer_key` is not the signed one.
fn assert_key_mismatch(reply: Result<Value, (u16, String)>, i: usize) {
    let (code, body) = reply.expect_err("refused");
    assert_eq!(code, 400, "provider {i}: {body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error body");
    assert_eq!(v["error"]["code"], "answer_key_mismatch", "{v}");
}

#[test]
fn a_key_that_is_not_the_signed_one_is_refused_and_leaves_nothing() {
    let cluster = Cluster::start(ClusterOptions::default());
    let alice = TestClient::new(&cluster, 4);
    alice.enroll();
    // A register whose P0 body carries P1's key (as a provider relaying
    // the part would substitute a key it knows), then a random key: both
    // refused, by every provider.
    let id = alice.id();
    let bodies = alice.bodies(&id, "register", &entry_parts(NAME, ENDPOINT, 600), 10_000);
    for i in 0..3 {
        let mut moved = bodies[i].clone();
        moved["answer_key"] = bodies[(i + 1) % 3]["answer_key"].clone();
        assert_key_mismatch(cluster.post(i, "/v1/requests", moved), i);
        let mut random = bodies[i].clone();
        random["answer_key"] = Value::from(hex::encode(rand::random::<[u8; 32]>()));
        assert_key_mismatch(cluster.post(i, "/v1/requests", random), i);
    }
    // Nothing was kept: the honest bodies under the same id run.
    let codes = alice
        .send(bodies)
        .map(|r| r.expect("answer")["result"]["code"].clone());
    assert!(codes.iter().all(|c| c == "ok"), "{codes:?}");
    // The same for a resolution (held in memory, not logged).
    let id = alice.id();
    let bodies = alice.bodies(&id, "resolve", &key_parts(NAME), 10_000);
    let mut moved = bodies[2].clone();
    moved["answer_key"] = bodies[0]["answer_key"].clone();
    assert_key_mismatch(cluster.post(2, "/v1/requests", moved), 2);
    let replies = alice.send(bodies);
    let opened: [Vec<Share>; 3] = std::array::from_fn(|i| {
        let r = &replies[i].as_ref().expect("answer")["result"];
        assert_eq!(r["code"], "ok", "{r}");
        decode_shares(r["endpoint"].as_str().expect("endpoint share"))
    });
    assert_eq!(reconstruct(&opened), Some(ENDPOINT.to_string()));
}
