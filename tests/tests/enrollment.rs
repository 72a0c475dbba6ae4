//! Enrollment on real providers (issue 13, item 6): a signature names the
//! provider it is for, so one signed for P0 is refused by P1; a token has a
//! counted number of uses, kept across a restart.

use serde_json::json;
use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::table::TestClient;

fn code(r: Result<serde_json::Value, (u16, String)>) -> (u16, String) {
    match r {
        Ok(v) => (200, v.to_string()),
        Err((status, body)) => (status, body),
    }
}

#[test]
fn enrollment_is_bound_to_its_provider_and_tokens_are_counted() {
    let mut cluster = Cluster::start(ClusterOptions {
        enrollment: "token",
        tokens: r#"[{ token = "once", uses = 1 }, "plain"]"#,
        ..ClusterOptions::default()
    });
    {
        let alice = TestClient::new(&cluster, 41);
        // Signed for P0, sent to P1: refused, and not enrolled there.
        let for_p0 = alice.enroll_body(0, Some("once"));
        let (status, body) = code(cluster.post(1, "/v1/accounts", for_p0.clone()));
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("wrong_provider"), "{body}");
        // Relabelled for P1 without a new signature: the signature fails.
        let mut relabelled = for_p0.clone();
        relabelled["provider"] = json!(1);
        let (status, body) = code(cluster.post(1, "/v1/accounts", relabelled));
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("bad_signature"), "{body}");
        // The token swapped under a signature: refused.
        let mut swapped = alice.enroll_body(2, Some("once"));
        swapped["token"] = json!("plain");
        let (status, body) = code(cluster.post(2, "/v1/accounts", swapped));
        assert_eq!(status, 401, "{body}");
        // A single-use token works once at each provider.
        for i in 0..3 {
            let body = alice.enroll_body(i as u8, Some("once"));
            let (status, text) = code(cluster.post(i, "/v1/accounts", body));
            assert_eq!(status, 200, "{text}");
            assert!(text.contains("\"enrolled\":true"), "{text}");
        }
        // Again for the same account: harmless, already enrolled.
        let (status, _) = code(cluster.post(0, "/v1/accounts", for_p0));
        assert_eq!(status, 200);
        let bob = TestClient::new(&cluster, 42);
        let bodies: Vec<_> = (0..3).map(|i| bob.enroll_body(i, Some("once"))).collect();
        for (i, b) in bodies.iter().enumerate() {
            let (status, text) = code(cluster.post(i, "/v1/accounts", b.clone()));
            assert_eq!(status, 403, "{text}");
            assert!(text.contains("token_used_up"), "{text}");
        }
        // A plain-string token is single-use too.
        let carol = TestClient::new(&cluster, 43);
        let (status, text) =
            code(cluster.post(0, "/v1/accounts", carol.enroll_body(0, Some("plain"))));
        assert_eq!(status, 200, "{text}");
        let (status, text) =
            code(cluster.post(0, "/v1/accounts", bob.enroll_body(0, Some("plain"))));
        assert_eq!(status, 403, "{text}");
    }
    // The count survives a restart.
    cluster.restart(0);
    let bob = TestClient::new(&cluster, 42);
    let (status, text) = code(cluster.post(0, "/v1/accounts", bob.enroll_body(0, Some("once"))));
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("token_used_up"), "{text}");
}
