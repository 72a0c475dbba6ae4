//! Contract tests of the REST client against three stand-in providers
//! (tests/fake) that check every request exactly as docs/API.md specifies.
//! The tests against real providers (`sharecall-provider`) are in the CLI
//! package (client/cli/tests), which may depend on the provider.

mod fake;

use std::time::{Duration, Instant};

use fake::{Behaviour, Cluster, Tamper};
use rand::rngs::OsRng;
use sharecall_client::client::{Client, EnrollStatus, Error, ProviderError};
use sharecall_client::parts::query_parts;
use sharecall_client::registration::share_query;
use sharecall_client::{AccountKey, Kind, ResultCode};
use sharecall_proto::encoding::{Endpoint, Pseudonym};
use sharecall_proto::PartyId;

fn p(i: usize) -> PartyId {
    PartyId::ALL[i]
}

fn client(c: &Cluster, key: &AccountKey) -> Client {
    Client::new(&c.urls, key.clone())
        .expect("client")
        // The stand-ins speak plain HTTP.
        .allow_plain_http()
        .with_timeout(Duration::from_secs(10))
}

async fn enrolled(c: &Cluster) -> Client {
    let cl = client(c, &AccountKey::generate(&mut OsRng));
    cl.enroll(None).await.expect("enroll");
    cl
}

fn alice() -> (Pseudonym, Endpoint) {
    (
        Pseudonym::parse("+49 30 1234567").expect("pseudonym"),
        Endpoint::parse("sip:alice@192.0.2.10:5060").expect("endpoint"),
    )
}

const HOUR: Duration = Duration::from_secs(3600);

async fn register_alice(cl: &Client) {
    let (ps, ep) = alice();
    let out = cl
        .register(&ps, &ep, HOUR, Some(b"desk phone"))
        .await
        .expect("register");
    assert_eq!(out.code, ResultCode::Ok);
    assert_eq!(out.degraded, None);
}

#[tokio::test]
async fn enrollment_token_and_refusals() {
    let c = Cluster::start_with(Default::default(), Some("s3cret"), None).await;
    let cl = client(&c, &AccountKey::generate(&mut OsRng));
    let err = cl.enroll(None).await.expect_err("needs a token");
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::Enroll { enrolled, failures } if enrolled.is_empty() && failures.len() == 3)
    );
    assert!(msg.contains("P0 (http://127.0.0.1:"), "{msg}");
    assert!(
        msg.contains("HTTP 403 bad_token: unknown enrollment token"),
        "{msg}"
    );
    let err = cl.enroll(Some("wrong")).await.expect_err("wrong token");
    assert!(err.to_string().contains("bad_token"), "{err}");
    assert_eq!(
        cl.enroll(Some("s3cret")).await.expect("enroll"),
        [EnrollStatus::Enrolled; 3]
    );
}

#[tokio::test]
async fn refusal_by_one_provider_is_reported_at_once_and_names_it() {
    let c = Cluster::start().await;
    let cl = enrolled(&c).await;
    c.unenroll(1, &cl.account().public_key());
    let (ps, ep) = alice();
    let started = Instant::now();
    let err = cl
        .register(&ps, &ep, HOUR, None)
        .await
        .expect_err("P1 refuses");
    // The other two are not waited for until the 10 s window passes.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.blamed(), Some(p(1)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("failed: P1 (http://127.0.0.1:") && msg.contains("HTTP 403 not_enrolled"),
        "{msg}"
    );
    let Error::Failed { failures, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(failures.len(), 3);
    assert!(failures[1..].iter().all(|f| matches!(
        f.error,
        ProviderError::Cancelled { because, .. } if because == p(1)
    )));
}

#[tokio::test]
async fn tampered_answer_shares_name_the_provider() {
    for (who, tamper) in [
        (1, Tamper::BothComponents),
        (2, Tamper::FirstOfElement0),
        (0, Tamper::FirstOfElement0),
    ] {
        let c = Cluster::start().await;
        let cl = enrolled(&c).await;
        register_alice(&cl).await;
        c.set_behaviour(
            who,
            Behaviour {
                tamper,
                ..Default::default()
            },
        );
        let err = cl.resolve(&alice().0).await.expect_err("tampered");
        assert!(matches!(err, Error::Inconsistent { .. }), "{err:?}");
        assert_eq!(err.blamed(), Some(p(who)), "{tamper:?}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("P{who} returned")), "{msg}");
        assert!(msg.contains("inconsistent endpoint share"), "{msg}");
    }
}

#[tokio::test]
async fn result_code_disagreement_names_the_odd_provider() {
    let c = Cluster::start().await;
    let cl = enrolled(&c).await;
    register_alice(&cl).await;
    c.set_behaviour(
        2,
        Behaviour {
            lie_code: Some("not_found"),
            ..Default::default()
        },
    );
    let err = cl.resolve(&alice().0).await.expect_err("disagree");
    assert_eq!(err.blamed(), Some(p(2)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("P2 answered not_found"), "{msg}");
    assert!(msg.contains("P2 is the odd one out"), "{msg}");

    c.set_behaviour(2, Behaviour::default());
    c.set_behaviour(
        0,
        Behaviour {
            lie_extra: true,
            ..Default::default()
        },
    );
    let err = cl.resolve(&alice().0).await.expect_err("extra differs");
    assert_eq!(err.blamed(), Some(p(0)), "{err}");
    assert!(err.to_string().contains("extra data"), "{err}");
}

#[tokio::test]
async fn unavailable_provider_leaves_the_other_two() {
    let c = Cluster::start().await;
    let cl = enrolled(&c).await;
    register_alice(&cl).await;
    c.set_behaviour(
        0,
        Behaviour {
            unavailable: true,
            ..Default::default()
        },
    );
    let r = cl.resolve(&alice().0).await.expect("two providers suffice");
    assert_eq!(r.endpoint, Some(alice().1));
    assert_eq!(r.extra.as_deref(), Some(&b"desk phone"[..]));
    let d = r.degraded.expect("says so");
    assert_eq!((d.missing, d.from), (p(0), [p(1), p(2)]));
    assert_eq!(d.reason, ProviderError::Unavailable);
    assert!(
        d.to_string()
            .contains("answer from P1 and P2 only; P0 answered `unavailable`"),
        "{d}"
    );
}

/// One provider can force a two-answer resolution (it withholds its
/// answer), and then only one share component is compared: the client
/// retries once with a fresh request, marks what stays degraded, names the
/// unchecked components, and refuses it when told to.
#[tokio::test]
async fn degraded_resolution_is_retried_marked_and_refusable() {
    let c = Cluster::start().await;
    let cl = enrolled(&c).await;
    register_alice(&cl).await;
    c.set_behaviour(
        0,
        Behaviour {
            unavailable: true,
            ..Default::default()
        },
    );
    let resolves_before = resolve_ids(&c).len();
    let r = cl.resolve(&alice().0).await.expect("two providers suffice");
    assert_eq!(r.endpoint, Some(alice().1));
    let d = r.degraded.clone().expect("marked degraded");
    let first = d.retried_from.clone().expect("retried");
    assert_ne!(first, r.request_id, "the retry is a fresh request");
    let ids = resolve_ids(&c);
    assert_eq!(ids.len(), resolves_before + 2, "exactly one retry");
    assert!(ids.contains(&first) && ids.contains(&r.request_id));
    // P1 and P2 both hold component x2 only (holders_of): x0, x1 unchecked.
    assert_eq!(d.unchecked, vec![0, 1]);
    let text = d.to_string();
    assert!(
        text.contains("x0 and x1 NOT checked") && text.contains(&first),
        "{text}"
    );
    let strict = cl.clone().with_refuse_degraded(true);
    let err = strict.resolve(&alice().0).await.expect_err("refused");
    assert!(
        matches!(&err, Error::Degraded { degraded, .. } if degraded.missing == p(0)),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("refused a degraded answer"),
        "{err}"
    );
    // With all three answering nothing is marked, and no retry is made.
    c.set_behaviour(0, Behaviour::default());
    let before = resolve_ids(&c).len();
    let r = strict.resolve(&alice().0).await.expect("three answers");
    assert_eq!(r.degraded, None);
    assert_eq!(resolve_ids(&c).len(), before + 1);
}

/// The ids of the resolve requests the stand-ins saw, at P1.
fn resolve_ids(c: &Cluster) -> Vec<String> {
    let inner = c.shared.lock();
    let mut ids: Vec<String> = inner
        .posts
        .keys()
        .filter(|(p, _)| *p == 1)
        .map(|(_, id)| id.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn failing_provider_leaves_the_other_two() {
    let c = Cluster::start().await;
    let cl = enrolled(&c).await;
    c.set_behaviour(
        2,
        Behaviour {
            error_500_when_done: true,
            ..Default::default()
        },
    );
    let (ps, ep) = alice();
    let out = cl.register(&ps, &ep, HOUR, None).await.expect("register");
    assert_eq!(out.code, ResultCode::Ok);
    assert_eq!(out.degraded.as_ref().map(|d| d.missing), Some(p(2)));
    let r = cl.resolve(&ps).await.expect("resolve");
    assert_eq!(r.endpoint, Some(ep));
    let d = r.degraded.expect("degraded");
    assert_eq!(d.missing, p(2));
    assert!(
        matches!(d.reason, ProviderError::Refused { status: 500, .. }),
        "{:?}",
        d.reason
    );
}

#[tokio::test]
async fn retries_reuse_the_id_and_the_signed_body_and_execute_once() {
    let c = Cluster::start().await;
    let cl = enrolled(&c).await;
    c.set_behaviour(
        0,
        Behaviour {
            fail_after_store: 2,
            ..Default::default()
        },
    );
    c.set_behaviour(
        1,
        Behaviour {
            rate_limit_first: 1,
            ..Default::default()
        },
    );
    c.set_behaviour(
        2,
        Behaviour {
            pending_polls: 3,
            ..Default::default()
        },
    );
    let (ps, ep) = alice();
    let out = cl.register(&ps, &ep, HOUR, None).await.expect("register");
    assert_eq!(out.code, ResultCode::Ok);
    assert_eq!(out.degraded, None);
    {
        let st = c.shared.lock();
        assert_eq!(st.executions, 1);
        assert_eq!(st.posts.get(&(0, out.request_id.clone())), Some(&3));
        assert_eq!(st.posts.get(&(1, out.request_id.clone())), Some(&1));
        assert_eq!(st.posts.get(&(2, out.request_id.clone())), Some(&1));
    }
    assert_eq!(c.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn resending_a_signed_request_is_answered_from_the_record() {
    let c = Cluster::start().await;
    let cl = enrolled(&c).await;
    register_alice(&cl).await;
    let request = cl
        .prepare(
            Kind::Delete,
            query_parts(share_query(&alice().0, &mut OsRng)),
        )
        .expect("signed");
    let first = cl.send(&request).await.expect("delete");
    let second = cl.send(&request).await.expect("same request again");
    assert_eq!(first.code, ResultCode::Ok);
    assert_eq!(
        second.code,
        ResultCode::Ok,
        "the recorded outcome, not a new not_found"
    );
    assert_eq!(second.request_id, request.request_id());
    assert_eq!(c.shared.lock().executions, 2, "register and one delete");
    assert_eq!(c.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn transport_failures_are_retried_with_the_same_request() {
    let mut c = Cluster::start_with(Default::default(), None, Some(1)).await;
    let key = AccountKey::generate(&mut OsRng);
    c.enroll_directly(&key.public_key());
    // P1 refuses connections at first and starts listening 250 ms later.
    let cl = client(&c, &key);
    let task = tokio::spawn(async move {
        let (ps, ep) = alice();
        cl.register(&ps, &ep, HOUR, None).await
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    c.serve_late(1).await;
    let out = task.await.expect("task").expect("register after retries");
    assert_eq!(out.code, ResultCode::Ok);
    assert_eq!(out.degraded, None);
    assert_eq!(c.shared.lock().executions, 1);
    assert_eq!(
        c.shared.lock().posts.get(&(1, out.request_id.clone())),
        Some(&1)
    );
    assert_eq!(c.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn unreachable_provider_is_named() {
    let c = Cluster::start_with(Default::default(), None, Some(2)).await;
    let key = AccountKey::generate(&mut OsRng);
    let cl = client(&c, &key)
        .with_window_ms(1000)
        .expect("window")
        .with_timeout(Duration::from_secs(6));
    let err = cl.enroll(None).await.expect_err("P2 is down");
    assert!(matches!(&err, Error::Enroll { enrolled, .. } if enrolled.len() == 2));
    assert_eq!(err.blamed(), Some(p(2)));
    let msg = err.to_string();
    assert!(msg.contains("P2 (http://127.0.0.1:"), "{msg}");
    assert!(msg.contains("unreachable after 5 attempts"), "{msg}");
    assert!(msg.contains("enrolled at P0 and P1"), "{msg}");

    let started = Instant::now();
    let err = cl
        .register(&alice().0, &alice().1, HOUR, None)
        .await
        .expect_err("cannot execute");
    assert!(started.elapsed() < Duration::from_secs(6));
    let msg = err.to_string();
    assert!(msg.contains("P2 (http://127.0.0.1:"), "{msg}");
    assert!(msg.contains("unreachable"), "{msg}");
    assert!(msg.contains("HTTP 409 aborted: request c-"), "{msg}");
    assert!(
        msg.contains("its window passed before the part of P2 arrived"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_provider_that_never_finishes_is_left_out_at_the_timeout() {
    let c = Cluster::start().await;
    let cl = enrolled(&c).await.with_timeout(Duration::from_millis(1500));
    register_alice(&cl).await;
    c.set_behaviour(
        1,
        Behaviour {
            pending_polls: u32::MAX,
            ..Default::default()
        },
    );
    let r = cl.resolve(&alice().0).await.expect("two answered");
    assert_eq!(r.endpoint, Some(alice().1));
    let d = r.degraded.expect("degraded");
    assert_eq!(d.missing, p(1));
    assert!(
        matches!(&d.reason, ProviderError::Timeout { last, .. } if last.contains("pending")),
        "{:?}",
        d.reason
    );
}

/// The stand-ins really check signatures and hashes: altered bodies are
/// refused with the codes docs/API.md names.
#[tokio::test]
async fn stand_ins_refuse_altered_requests() {
    let c = Cluster::start().await;
    let cl = enrolled(&c).await;
    let request = cl
        .prepare(
            Kind::Resolve,
            query_parts(share_query(&alice().0, &mut OsRng)),
        )
        .expect("signed");
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}/v1/requests", c.urls[0]);
        async move {
            let r = http.post(url).json(&body).send().await.expect("post");
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.expect("json");
            (
                status,
                v["error"]["code"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    let body: serde_json::Value = serde_json::from_slice(request.body(p(0))).expect("json");

    let mut bad_sig = body.clone();
    let sig = bad_sig["signature"].as_str().expect("sig").to_owned();
    bad_sig["signature"] = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    )
    .into();
    assert_eq!(post(bad_sig).await, (401, "bad_signature".into()));

    let mut other_part = body.clone();
    other_part["part"] = hex::encode(request.part(p(1))).into();
    assert_eq!(post(other_part).await, (400, "part_hash_mismatch".into()));

    let mut other_window = body.clone();
    other_window["window_ms"] = 30_001.into();
    assert_eq!(post(other_window).await, (401, "bad_signature".into()));

    let mut extra_field = body.clone();
    extra_field["colour"] = "red".into();
    assert_eq!(post(extra_field).await, (400, "bad_json".into()));
}
