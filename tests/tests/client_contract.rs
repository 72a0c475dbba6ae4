//! The client library (`sharecall_client::Client`, over https with pinned
//! fingerprints) against three real provider processes: refusals,
//! unreachable and failing providers, retries, degraded and inconsistent
//! answers.
//!
//! What an honest provider never does (lie about a result code or extra
//! data, alter a share, withhold an answer, fail with 500, stay pending)
//! is made by the provider's fault hooks (`fault-injection` feature,
//! provider/src/execution/fault.rs); what the network does (lost
//! responses, hangs, refused connections) by a meddling TCP proxy in front
//! of one provider (`sharecall_tests::proxy`).

use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use sharecall_client::client::{Client, EnrollStatus, Error, ProviderError, ProviderReply};
use sharecall_client::parts::{entry_parts, query_parts};
use sharecall_client::registration::{share_entry, share_query};
use sharecall_client::{AccountKey, Kind, ResultCode};
use sharecall_proto::encoding::{Endpoint, Pseudonym};
use sharecall_proto::PartyId;
use sharecall_tests::cluster::{Cluster, ClusterOptions};
use sharecall_tests::proxy::{Mode, Proxy};

/// The harness is synchronous (processes, blocking HTTP); the client and
/// the proxy are async. Tests run on a multi-threaded runtime and block
/// one worker for the harness.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn start(options: ClusterOptions) -> Cluster {
    blocking(|| Cluster::start(options))
}

fn p(i: usize) -> PartyId {
    PartyId::ALL[i]
}

fn env(name: &str, value: &str) -> Vec<(String, String)> {
    vec![(name.to_string(), value.to_string())]
}

/// The providers' pinned URLs.
fn urls(c: &Cluster) -> [String; 3] {
    std::array::from_fn(|i| c.api_url(i))
}

/// The providers' pinned URLs with provider `i` reached through `proxy`
/// (its certificate still pinned).
fn via(c: &Cluster, i: usize, proxy: &Proxy) -> [String; 3] {
    let mut u = urls(c);
    u[i] = format!("https://{}#sha256={}", proxy.addr(), c.fingerprints[i]);
    u
}

fn client_at(urls: &[String; 3], key: &AccountKey) -> Client {
    Client::new(urls, key.clone())
        .expect("client")
        .with_timeout(Duration::from_secs(10))
}

async fn enrolled(c: &Cluster) -> Client {
    let cl = client_at(&urls(c), &AccountKey::generate(&mut OsRng));
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

/// Lines of provider `i`'s log that mention request `id` and say `what`.
fn logged(c: &Cluster, i: usize, id: &str, what: &str) -> usize {
    c.log(i)
        .lines()
        .filter(|l| l.contains(id) && l.contains(what))
        .count()
}

/// The resolutions provider `i` has held (one log line each).
fn reads_held(c: &Cluster, i: usize) -> usize {
    c.log(i).lines().filter(|l| l.contains("read held")).count()
}

/// Every provider's applied cursor, once each has reached `at_least`
/// (and a moment later, so a second execution would show).
fn cursors(c: &Cluster, at_least: u64) -> [u64; 3] {
    blocking(|| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let read = |i: usize| {
            c.get(i, "/v1/admin/table").expect("table status")["cursor"]
                .as_u64()
                .unwrap_or(0)
        };
        for i in 0..3 {
            while read(i) < at_least {
                assert!(Instant::now() < deadline, "provider {i} lags");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        std::array::from_fn(read)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_token_and_refusals() {
    let c = start(ClusterOptions {
        enrollment: "token",
        tokens: r#"["s3cret"]"#,
        ..Default::default()
    });
    let cl = client_at(&urls(&c), &AccountKey::generate(&mut OsRng));
    let err = cl.enroll(None).await.expect_err("needs a token");
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::Enroll { enrolled, failures } if enrolled.is_empty() && failures.len() == 3)
    );
    assert!(msg.contains("P0 (https://127.0.0.1:"), "{msg}");
    assert!(msg.contains("HTTP 403 bad_token"), "{msg}");
    let err = cl.enroll(Some("wrong")).await.expect_err("wrong token");
    assert!(err.to_string().contains("bad_token"), "{err}");
    assert_eq!(
        cl.enroll(Some("s3cret")).await.expect("enroll"),
        [EnrollStatus::Enrolled; 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_by_one_provider_is_reported_at_once_and_names_it() {
    let c = start(ClusterOptions::default());
    // Enrolled at P0 and P2 only: P1 cannot be reached while enrolling.
    let proxy = Proxy::start(c.addrs[1].api).await;
    proxy.set_mode(Mode::Refuse);
    let key = AccountKey::generate(&mut OsRng);
    let err = client_at(&via(&c, 1, &proxy), &key)
        .enroll(None)
        .await
        .expect_err("P1 unreachable");
    assert!(matches!(&err, Error::Enroll { enrolled, .. } if enrolled == &[p(0), p(2)]));

    let cl = client_at(&urls(&c), &key);
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
        msg.contains("failed: P1 (https://127.0.0.1:") && msg.contains("HTTP 403 not_enrolled"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_answer_shares_name_the_provider() {
    // `both`: two components of one element; `1`: one component.
    for (who, tamper) in [(1, "both"), (2, "1"), (0, "1")] {
        let mut options = ClusterOptions::default();
        options.providers[who].env = env("SHARECALL_FAULT_TAMPER_ANSWERS", tamper);
        let c = start(options);
        let cl = enrolled(&c).await;
        register_alice(&cl).await;
        let err = cl.resolve(&alice().0).await.expect_err("tampered");
        assert!(matches!(err, Error::Inconsistent { .. }), "{err:?}");
        assert_eq!(err.blamed(), Some(p(who)), "{tamper}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("P{who} returned")), "{msg}");
        assert!(msg.contains("inconsistent endpoint share"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_code_disagreement_names_the_odd_provider() {
    let mut c = start(ClusterOptions::default());
    let cl = enrolled(&c).await;
    register_alice(&cl).await;
    c.set_env(2, env("SHARECALL_FAULT_ANSWER_CODE", "not_found"));
    blocking(|| c.restart(2));
    let err = cl.resolve(&alice().0).await.expect_err("disagree");
    assert_eq!(err.blamed(), Some(p(2)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("P2 answered not_found"), "{msg}");
    assert!(msg.contains("P2 is the odd one out"), "{msg}");

    c.set_env(2, Vec::new());
    c.set_env(0, env("SHARECALL_FAULT_ANSWER_EXTRA", "1"));
    blocking(|| {
        c.restart(2);
        c.restart(0);
    });
    let err = cl.resolve(&alice().0).await.expect_err("extra differs");
    assert_eq!(err.blamed(), Some(p(0)), "{err}");
    assert!(err.to_string().contains("extra data"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_provider_leaves_the_other_two() {
    let mut options = ClusterOptions::default();
    // P0 executes but withholds its answer share.
    options.providers[0].env = env("SHARECALL_FAULT_ANSWER_CODE", "unavailable");
    let c = start(options);
    let cl = enrolled(&c).await;
    register_alice(&cl).await;
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_resolution_is_retried_marked_and_refusable() {
    let mut options = ClusterOptions::default();
    options.providers[0].env = env("SHARECALL_FAULT_ANSWER_CODE", "unavailable");
    let mut c = start(options);
    let cl = enrolled(&c).await;
    register_alice(&cl).await;
    let resolves_before = reads_held(&c, 1);
    let r = cl.resolve(&alice().0).await.expect("two providers suffice");
    assert_eq!(r.endpoint, Some(alice().1));
    let d = r.degraded.clone().expect("marked degraded");
    let first = d.retried_from.clone().expect("retried");
    assert_ne!(first, r.request_id, "the retry is a fresh request");
    // P1 held exactly these two resolutions: one retry.
    assert_eq!(reads_held(&c, 1), resolves_before + 2, "exactly one retry");
    assert_eq!(logged(&c, 1, &first, "read held"), 1);
    assert_eq!(logged(&c, 1, &r.request_id, "read held"), 1);
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
    c.set_env(0, Vec::new());
    blocking(|| c.restart(0));
    let before = reads_held(&c, 1);
    let r = strict.resolve(&alice().0).await.expect("three answers");
    assert_eq!(r.degraded, None);
    assert_eq!(reads_held(&c, 1), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_provider_leaves_the_other_two() {
    let mut options = ClusterOptions::default();
    options.providers[2].env = env("SHARECALL_FAULT_ANSWER_STATUS", "500");
    let c = start(options);
    let cl = enrolled(&c).await;
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

/// P0's first two responses are lost after it received the request, P1
/// rate-limits the first post, P2 answers `202 pending` and is polled: one
/// request id, one signed body (a provider refuses a retry whose signed
/// request differs), executed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_reuse_the_id_and_the_signed_body_and_execute_once() {
    let mut options = ClusterOptions::default();
    options.providers[1].rate = Some((1, 1));
    options.providers[2].answer_wait = Some("0s");
    let c = start(options);
    let proxy = Proxy::start(c.addrs[0].api).await;
    let key = AccountKey::generate(&mut OsRng);
    let cl = client_at(&via(&c, 0, &proxy), &key);
    cl.enroll(None).await.expect("enroll");
    proxy.set_mode(Mode::Drop(2));
    // Uses up P1's budget just before the register, whose first post there
    // is then refused (429): a resolution part sent to P1 alone (it
    // expires unanswered; resolutions are not logged).
    let spent = cl
        .clone()
        .with_window_ms(100)
        .expect("window")
        .prepare(
            Kind::Resolve,
            query_parts(share_query(&alice().0, &mut OsRng)),
        )
        .expect("signed");
    let body: serde_json::Value = serde_json::from_slice(spent.body(p(1))).expect("json");
    let (agent, url) = (
        c.api_agent(1).clone(),
        format!("https://{}/v1/requests", c.addrs[1].api),
    );
    // Its status: 0 for a transport failure.
    let spender = std::thread::spawn(move || match agent.post(&url).send_json(body) {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(_) => 0,
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ps, ep) = alice();
    let request = cl
        .prepare(
            Kind::Register,
            entry_parts(share_entry(&ps, &ep, &mut OsRng), HOUR, None).expect("parts"),
        )
        .expect("signed");
    let started = Instant::now();
    let out = cl.send(&request).await.expect("register");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "P1's Retry-After was honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(out.code, ResultCode::Ok);
    assert_eq!(out.degraded, None);
    assert_eq!(proxy.dropped(), 2, "two responses lost");
    // Every provider stored the part once and ordered it at seq 1.
    let id = request.request_id();
    for i in 0..3 {
        assert_eq!(logged(&c, i, id, "part stored"), 1, "provider {i}");
        assert!(
            matches!(out.replies[i], ProviderReply::Done { seq: Some(1), .. }),
            "provider {i}: {:?}",
            out.replies[i]
        );
    }
    assert_eq!(cursors(&c, 1), [1; 3], "executed once");
    // The spending part was taken at P1 (pending, or aborted once its
    // window passed), not refused.
    let spent = blocking(|| spender.join()).expect("thread");
    assert!(spent == 202 || spent == 409, "{spent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resending_a_signed_request_is_answered_from_the_record() {
    let c = start(ClusterOptions::default());
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
    assert_eq!(cursors(&c, 2), [2; 3], "register and one delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_failures_are_retried_with_the_same_request() {
    let c = start(ClusterOptions::default());
    let key = AccountKey::generate(&mut OsRng);
    client_at(&urls(&c), &key)
        .enroll(None)
        .await
        .expect("enroll");
    // P1 refuses connections at first and lets them through 250 ms later.
    let proxy = Proxy::start(c.addrs[1].api).await;
    proxy.set_mode(Mode::Refuse);
    let cl = client_at(&via(&c, 1, &proxy), &key);
    let task = tokio::spawn(async move {
        let (ps, ep) = alice();
        cl.register(&ps, &ep, HOUR, None).await
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    proxy.set_mode(Mode::Pass);
    let out = task.await.expect("task").expect("register after retries");
    assert_eq!(out.code, ResultCode::Ok);
    assert_eq!(out.degraded, None);
    assert!(proxy.refused() >= 1, "{}", proxy.refused());
    assert_eq!(logged(&c, 1, &out.request_id, "part stored"), 1);
    assert_eq!(cursors(&c, 1), [1; 3], "executed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_provider_is_named() {
    let mut c = start(ClusterOptions::default());
    blocking(|| c.kill(2));
    let key = AccountKey::generate(&mut OsRng);
    let cl = client_at(&urls(&c), &key)
        .with_window_ms(1000)
        .expect("window")
        .with_timeout(Duration::from_secs(6));
    let err = cl.enroll(None).await.expect_err("P2 is down");
    assert!(matches!(&err, Error::Enroll { enrolled, .. } if enrolled.len() == 2));
    assert_eq!(err.blamed(), Some(p(2)));
    let msg = err.to_string();
    assert!(msg.contains("P2 (https://127.0.0.1:"), "{msg}");
    assert!(msg.contains("unreachable after 5 attempts"), "{msg}");
    assert!(msg.contains("enrolled at P0 and P1"), "{msg}");

    let started = Instant::now();
    let err = cl
        .register(&alice().0, &alice().1, HOUR, None)
        .await
        .expect_err("cannot execute");
    assert!(started.elapsed() < Duration::from_secs(6));
    let msg = err.to_string();
    assert!(msg.contains("P2 (https://127.0.0.1:"), "{msg}");
    assert!(msg.contains("unreachable"), "{msg}");
    assert!(msg.contains("HTTP 409 aborted: request c-"), "{msg}");
    assert!(
        msg.contains("the part for provider 2 did not arrive within 1000 ms"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_finishes_is_left_out_at_the_timeout() {
    let mut c = start(ClusterOptions::default());
    let cl = enrolled(&c).await;
    register_alice(&cl).await;
    let cl = cl.with_timeout(Duration::from_millis(3000));
    // P1 executes and then answers `202 pending` for ever.
    c.set_env(1, env("SHARECALL_FAULT_ANSWER_STATUS", "202"));
    blocking(|| c.restart(1));
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

/// The network variant: P1's answer never arrives (the request reached
/// it, the connection hangs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_is_left_out_at_the_timeout() {
    let c = start(ClusterOptions::default());
    let cl = enrolled(&c).await;
    register_alice(&cl).await;
    let proxy = Proxy::start(c.addrs[1].api).await;
    proxy.set_mode(Mode::Hang);
    // 3 s: the two others must finish the SMC within it on a loaded machine.
    let cl = client_at(&via(&c, 1, &proxy), cl.account()).with_timeout(Duration::from_millis(3000));
    let started = Instant::now();
    let r = cl.resolve(&alice().0).await.expect("two answered");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.endpoint, Some(alice().1));
    let d = r.degraded.expect("degraded");
    assert_eq!(d.missing, p(1));
    assert!(
        matches!(&d.reason, ProviderError::Timeout { last, .. } if last.contains("timed out")),
        "{:?}",
        d.reason
    );
    assert!(proxy.connections() >= 2, "both attempts went through it");
}

/// A provider whose every response is lost (after it received the
/// request) is named unreachable and left out; the answer is marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_responses_leave_the_other_two() {
    let c = start(ClusterOptions::default());
    let cl = enrolled(&c).await;
    register_alice(&cl).await;
    let proxy = Proxy::start(c.addrs[2].api).await;
    proxy.set_mode(Mode::Drop(u32::MAX));
    let cl = client_at(&via(&c, 2, &proxy), cl.account());
    let r = cl.resolve(&alice().0).await.expect("two answered");
    assert_eq!(r.endpoint, Some(alice().1));
    let d = r.degraded.expect("degraded");
    assert_eq!(d.missing, p(2));
    assert!(
        matches!(&d.reason, ProviderError::Unreachable { attempts: 5, .. }),
        "{:?}",
        d.reason
    );
    // Each attempt reached P2 and lost its answer; the request executed.
    assert!(proxy.dropped() >= 5, "{}", proxy.dropped());
    let id = d.retried_from.expect("retried");
    assert!(logged(&c, 2, &id, "read held") >= 1);
}

/// Altered bodies are refused by real providers with the codes docs/API.md
/// names (the client's own signed request, altered after signing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_refuse_altered_requests() {
    let c = start(ClusterOptions::default());
    let cl = enrolled(&c).await;
    let request = cl
        .prepare(
            Kind::Resolve,
            query_parts(share_query(&alice().0, &mut OsRng)),
        )
        .expect("signed");
    let post = |body: serde_json::Value| {
        let (status, text) = blocking(|| c.post(0, "/v1/requests", body)).expect_err("refused");
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON error");
        (
            status,
            v["error"]["code"].as_str().unwrap_or_default().to_owned(),
        )
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
    assert_eq!(post(bad_sig), (401, "bad_signature".into()));

    let mut other_part = body.clone();
    other_part["part"] = hex::encode(request.part(p(1))).into();
    assert_eq!(post(other_part), (400, "part_hash_mismatch".into()));

    let mut other_window = body.clone();
    other_window["window_ms"] = 30_001.into();
    assert_eq!(post(other_window), (401, "bad_signature".into()));

    let mut extra_field = body.clone();
    extra_field["colour"] = "red".into();
    assert_eq!(post(extra_field), (400, "bad_json".into()));
}

/// The `sharecall` CLI's report of a forced degraded answer (marked in
/// text and `--json`, refused with `--refuse-degraded`) and of tampered
/// shares (the provider named), against provider processes.
#[test]
fn cli_marks_degraded_answers_and_names_a_tampering_provider() {
    let mut options = ClusterOptions::default();
    options.providers[1].env = env("SHARECALL_FAULT_ANSWER_CODE", "unavailable");
    let mut c = Cluster::start(options);
    let providers = urls(&c).join(",");
    let home = tempfile::tempdir().expect("tempdir");
    let key = home.path().join("alice.key");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(sharecall_tests::bin("sharecall"))
            .args(args)
            .arg("--key")
            .arg(&key)
            .env("HOME", home.path())
            .env("SHARECALL_PROVIDERS", &providers)
            .env_remove("SHARECALL_KEY")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run sharecall");
        let (stdout, stderr) = sharecall_tests::text(&out);
        assert!(!stderr.contains("panicked"), "{stderr}");
        (out.status.code(), stdout, stderr)
    };
    assert_eq!(run(&["keygen"]).0, Some(0));
    assert_eq!(run(&["enroll"]).0, Some(0));
    let (code, _, err) = run(&["register", "+49301234567", "sip:alice@198.51.100.1"]);
    assert_eq!(code, Some(0), "{err}");

    // P1 withholds its answer: the answer comes from two, marked.
    let (code, out, err) = run(&["resolve", "+49301234567"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("sip:alice@198.51.100.1"), "{out}");
    assert!(
        out.contains("DEGRADED: answer from P0 and P2 only"),
        "{out}"
    );
    assert!(
        err.contains("warning: answer from P0 and P2 only; P1 answered `unavailable`"),
        "{err}"
    );
    let (code, out, err) = run(&["resolve", "+49301234567", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["degraded"]["missing"], "P1", "{out}");
    assert_eq!(
        v["degraded"]["unchecked_components"],
        serde_json::json!([1, 2]),
        "{out}"
    );
    assert!(v["degraded"]["retried_from"].is_string(), "{out}");
    let (code, _, err) = run(&["resolve", "+49301234567", "--refuse-degraded"]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("refused a degraded answer"), "{err}");

    // A provider that tampers with its shares is named.
    c.set_env(1, env("SHARECALL_FAULT_TAMPER_ANSWERS", "1"));
    c.restart(1);
    let (code, out, err) = run(&["resolve", "+49301234567", "--json"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("P1 returned an inconsistent endpoint share"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["error"]["provider"], "P1", "{out}");
}
