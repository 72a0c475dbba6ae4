use super::*;
use crate::parts::encode_share_vector;
use ed25519_dalek::{Signature, VerifyingKey};

fn p(i: usize) -> PartyId {
    PartyId::ALL[i]
}

fn urls() -> [String; 3] {
    ["http://a", "http://b", "http://c"].map(String::from)
}

fn entry() -> (Pseudonym, Endpoint) {
    (
        Pseudonym::parse("alice@example.org").expect("pseudonym"),
        Endpoint::parse("sip:alice@192.0.2.10:5060").expect("endpoint"),
    )
}

fn register_request(key: &AccountKey) -> SignedRequest {
    let (ps, ep) = entry();
    let parts = entry_parts(
        share_entry(&ps, &ep, &mut OsRng),
        Duration::from_secs(60),
        Some(b"x"),
    )
    .expect("parts");
    SignedRequest::new(
        key,
        "r-0001",
        Kind::Register,
        &parts,
        1_790_000_000_000,
        30_000,
    )
    .expect("signed")
}

#[test]
fn signature_covers_exactly_the_signed_fields() {
    let key = AccountKey::generate(&mut OsRng);
    let req = register_request(&key);
    let vk = VerifyingKey::from_bytes(&key.public_key()).expect("key");
    let sig = Signature::from_bytes(req.signature());
    // The message is SignedFields{..}.message() over the hashes of the
    // exact part bytes.
    let hashes = PartyId::ALL.map(|q| *blake3::hash(req.part(q)).as_bytes());
    let message = SignedFields {
        request_id: "r-0001",
        kind: "register",
        account: &key.public_key(),
        timestamp_ms: 1_790_000_000_000,
        window_ms: 30_000,
        part_hashes: &hashes,
        public_hash: &req.public().hash(),
        answer_key_hashes: &req.answer_keys().hashes(),
    }
    .message();
    assert_eq!(req.signed_message(), message);
    vk.verify_strict(&message, &sig).expect("verifies");
    // Any other part bytes, id or window do not verify.
    let mut other = hashes;
    other[2][0] ^= 1;
    let tampered = SignedFields {
        part_hashes: &other,
        request_id: "r-0001",
        kind: "register",
        account: &key.public_key(),
        timestamp_ms: 1_790_000_000_000,
        window_ms: 30_000,
        public_hash: &req.public().hash(),
        answer_key_hashes: &req.answer_keys().hashes(),
    };
    assert!(vk.verify_strict(&tampered.message(), &sig).is_err());
    // Nor do other public fields (another ttl).
    let other_public = crate::parts::Public::Entry(crate::parts::EntryPublic {
        ttl_s: 3601,
        extra: b"x".to_vec(),
    })
    .hash();
    let other_ttl = SignedFields {
        public_hash: &other_public,
        part_hashes: &hashes,
        ..tampered.clone()
    };
    assert!(vk.verify_strict(&other_ttl.message(), &sig).is_err());
    // Nor do other answer keys: a provider cannot redirect the answers.
    let other_key = SignedFields {
        answer_key_hashes: &[[9; 32]; 3],
        part_hashes: &hashes,
        ..tampered.clone()
    };
    assert!(vk.verify_strict(&other_key.message(), &sig).is_err());
    let other_window = SignedFields {
        window_ms: 30_001,
        part_hashes: &hashes,
        ..tampered
    };
    assert!(vk.verify_strict(&other_window.message(), &sig).is_err());
}

#[test]
fn bodies_follow_the_api() {
    let key = AccountKey::generate(&mut OsRng);
    let req = register_request(&key);
    for q in PartyId::ALL {
        let v: serde_json::Value = serde_json::from_slice(req.body(q)).expect("json");
        let obj = v.as_object().expect("object");
        let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "account",
                "answer_key",
                "answer_key_hashes",
                "kind",
                "part",
                "part_hashes",
                "public",
                "request_id",
                "signature",
                "timestamp_ms",
                "window_ms"
            ]
        );
        assert_eq!(v["request_id"], "r-0001");
        assert_eq!(v["kind"], "register");
        assert_eq!(v["account"], key.account_hex());
        assert_eq!(v["timestamp_ms"], 1_790_000_000_000u64);
        assert_eq!(v["window_ms"], 30_000);
        assert_eq!(v["signature"].as_str().map(str::len), Some(128));
        let part = hex::decode(v["part"].as_str().expect("part")).expect("hex");
        assert_eq!(part, req.part(q));
        // Each provider's body carries its own part and all three hashes.
        let hashes: Vec<String> = v["part_hashes"]
            .as_array()
            .expect("array")
            .iter()
            .map(|h| h.as_str().expect("str").to_owned())
            .collect();
        assert_eq!(hashes.len(), 3);
        assert_eq!(hashes[q.index()], blake3::hash(&part).to_hex().as_str());
        // The public fields, once, the same in every body.
        assert_eq!(v["public"], req.public().to_json());
        let public = crate::parts::Public::parse(Kind::Register, &v["public"]).expect("public");
        // Each body carries only its own provider's answer key, and all
        // three key hashes (signed).
        let key = hex::decode(v["answer_key"].as_str().expect("key")).expect("hex");
        assert_eq!(key, req.answer_keys().key(q.index() as u8).as_bytes());
        let key_hashes: Vec<String> = v["answer_key_hashes"]
            .as_array()
            .expect("array")
            .iter()
            .map(|h| h.as_str().expect("str").to_owned())
            .collect();
        assert_eq!(key_hashes.len(), 3);
        assert_eq!(key_hashes[q.index()], blake3::hash(&key).to_hex().as_str());
        let body = String::from_utf8_lossy(req.body(q)).into_owned();
        for other in PartyId::ALL.into_iter().filter(|o| *o != q) {
            let theirs = hex::encode(req.answer_keys().key(other.index() as u8).as_bytes());
            assert!(
                !body.contains(&theirs),
                "body {q:?} carries {other:?}'s key"
            );
        }
        assert_eq!(
            Part::merge(Kind::Register, &part, &public).map(|x| x.extra),
            Ok(b"x".to_vec())
        );
    }
    assert_ne!(req.body(p(0)), req.body(p(1)));
}

#[test]
fn requests_are_checked_before_signing() {
    let key = AccountKey::generate(&mut OsRng);
    let (ps, _) = entry();
    let parts = query_parts(share_query(&ps, &mut OsRng));
    let sign = |id: &str, kind, window| SignedRequest::new(&key, id, kind, &parts, 1, window);
    assert!(sign("r", Kind::Resolve, 100).is_ok());
    assert!(matches!(
        sign("", Kind::Resolve, 100),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        sign("a/b", Kind::Resolve, 100),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        sign("..", Kind::Resolve, 100),
        Err(Error::Config(_))
    ));
    assert!(sign(&"x".repeat(128), Kind::Resolve, 100).is_ok());
    assert!(matches!(
        sign(&"x".repeat(129), Kind::Resolve, 100),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        sign("r", Kind::Resolve, 99),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        sign("r", Kind::Resolve, 600_001),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        sign("r", Kind::Register, 100),
        Err(Error::Part(PartError::MissingField { .. }))
    ));
    let id = new_request_id();
    assert!(check_request_id(&id).is_ok(), "{id}");
    assert_ne!(id, new_request_id());
}

#[test]
fn provider_lists_are_checked() {
    let ok = parse_provider_list("http://127.0.0.1:1/, https://p1.example:8443 ,http://[::1]:3")
        .expect("valid");
    assert_eq!(ok[0], "http://127.0.0.1:1");
    assert_eq!(ok[1], "https://p1.example:8443");
    for (bad, why) in [
        ("http://a,http://b", "expected three"),
        ("http://a,http://b,http://c,http://d", "expected three"),
        ("http://a,ftp://b,http://c", "provider URL 1"),
        ("http://a,http://b,not a url", "provider URL 2"),
        ("http://a?x=1,http://b,http://c", "query"),
    ] {
        let err = parse_provider_list(bad).expect_err(bad).to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
    let key = AccountKey::generate(&mut OsRng);
    assert!(Client::new(&["http://a", "http://b"], key.clone()).is_err());
    let c = Client::new(&["http://a", "http://b", "http://c"], key).expect("client");
    assert!(c.clone().with_window_ms(50).is_err());
    assert_eq!(c.with_window_ms(500).expect("window").window_ms(), 500);
}

#[test]
fn pins_ride_in_the_url_fragment() {
    let pin = "ab".repeat(32);
    let colons = vec!["AB"; 32].join(":");
    let list = format!(
        "https://127.0.0.1:7403/#sha256={colons},https://p1.example:8443,https://[::1]:3#sha256={pin}"
    );
    let ok = parse_provider_list(&list).expect("valid");
    assert_eq!(ok[0], format!("https://127.0.0.1:7403#sha256={pin}"));
    assert_eq!(ok[1], "https://p1.example:8443");
    let key = AccountKey::generate(&mut OsRng);
    let c = Client::new(&ok, key).expect("client");
    // The base URLs (what errors name and requests go to) carry no pin.
    assert_eq!(c.providers()[0], "https://127.0.0.1:7403");
    assert_eq!(c.providers()[2], "https://[::1]:3");
    for (bad, why) in [
        (
            "https://a#sha256=12,https://b,https://c".to_string(),
            "provider URL 0",
        ),
        ("https://a,https://b#x,https://c".to_string(), "#sha256="),
        (
            format!("https://a,https://b,http://c#sha256={pin}"),
            "needs https://",
        ),
        (
            "https://a#sha256=12,https://b,https://c".to_string(),
            "64 hex digits",
        ),
    ] {
        let err = parse_provider_list(&bad).expect_err(&bad).to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
}

#[tokio::test]
async fn plain_http_is_refused_before_anything_is_sent() {
    // A listener that would see any connection attempt.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let urls = [url.clone(), url.clone(), url];
    let key = AccountKey::generate(&mut OsRng);
    let c = Client::new(&urls, key).expect("client");
    let err = c.enroll(None).await.expect_err("plain HTTP").to_string();
    assert!(
        err.contains("provider URL 0") && err.contains("plain HTTP"),
        "{err}"
    );
    assert!(err.contains("allow_plain_http"), "{err}");
    let (ps, ep) = entry();
    let err = c
        .register(&ps, &ep, Duration::from_secs(60), None)
        .await
        .expect_err("plain HTTP")
        .to_string();
    assert!(err.contains("plain HTTP"), "{err}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the client connected");
}

fn done(code: ResultCode) -> ProviderReply {
    ProviderReply::Done {
        seq: Some(1),
        result: RequestResult {
            code,
            endpoint: None,
            extra: None,
            expires_at_ms: None,
            imported: None,
        },
    }
}

#[test]
fn agreeing_codes_are_the_outcome() {
    let s = decide(
        "r",
        Kind::Delete,
        &urls(),
        [0, 1, 2].map(|_| done(ResultCode::NotFound)),
    )
    .expect("agree");
    assert_eq!(s.code, ResultCode::NotFound);
    assert_eq!(s.degraded, None);
    assert_eq!(s.used(), PartyId::ALL.to_vec());
}

#[test]
fn code_disagreement_names_the_odd_provider() {
    for odd in 0..3 {
        let mut replies = [0, 1, 2].map(|_| done(ResultCode::Ok));
        replies[odd] = done(ResultCode::NotFound);
        let err = decide("r-7", Kind::Resolve, &urls(), replies).expect_err("disagree");
        assert_eq!(err.blamed(), Some(p(odd)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("P{odd} is the odd one out")), "{msg}");
        assert!(msg.contains("r-7") && msg.contains("result code"), "{msg}");
    }
    // Three different codes: nobody can be singled out.
    let err = decide(
        "r",
        Kind::Update,
        &urls(),
        [
            done(ResultCode::Ok),
            done(ResultCode::NotFound),
            done(ResultCode::Forbidden),
        ],
    )
    .expect_err("disagree");
    assert_eq!(err.blamed(), None);
    assert!(err.to_string().contains("cannot tell"), "{err}");
    // Two answers that differ: neither can be named either.
    let err = decide(
        "r",
        Kind::Update,
        &urls(),
        [
            done(ResultCode::Ok),
            done(ResultCode::Unavailable),
            done(ResultCode::Forbidden),
        ],
    )
    .expect_err("disagree");
    assert_eq!(err.blamed(), None);
}

#[test]
fn unavailable_or_failed_provider_leaves_two() {
    let mut replies = [0, 1, 2].map(|_| done(ResultCode::Ok));
    replies[1] = done(ResultCode::Unavailable);
    let s = decide("r", Kind::Register, &urls(), replies).expect("two agree");
    let d = s.degraded.clone().expect("degraded");
    assert_eq!((d.missing, d.from), (p(1), [p(0), p(2)]));
    assert_eq!(d.reason, ProviderError::Unavailable);
    assert_eq!(s.used(), vec![p(0), p(2)]);
    assert!(d.to_string().contains("P0 and P2 only"), "{d}");

    let mut replies = [0, 1, 2].map(|_| done(ResultCode::Exists));
    replies[0] = ProviderReply::Failed(ProviderError::Unreachable {
        attempts: 5,
        detail: "Connection refused".into(),
    });
    let s = decide("r", Kind::Register, &urls(), replies).expect("two agree");
    assert_eq!(s.code, ResultCode::Exists);
    assert_eq!(s.degraded.map(|d| d.missing), Some(p(0)));
}

#[test]
fn fewer_than_two_answers_fail_with_root_cause_first() {
    let replies = [
        ProviderReply::Failed(ProviderError::Cancelled {
            because: p(2),
            last: "pending".into(),
        }),
        done(ResultCode::Ok),
        ProviderReply::Failed(ProviderError::Refused {
            status: 403,
            code: Some("not_enrolled".into()),
            message: "account is not enrolled".into(),
        }),
    ];
    let err = decide("r-9", Kind::Register, &urls(), replies).expect_err("too few");
    assert_eq!(err.blamed(), Some(p(2)));
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "register request r-9 failed: P2 (http://c): HTTP 403 not_enrolled: account is not enrolled; P0"
        ),
        "{msg}"
    );
}

fn resolved(shares: &[Vec<Share>; 3], extra: [Option<&[u8]>; 3]) -> [ProviderReply; 3] {
    [0, 1, 2].map(|i| ProviderReply::Done {
        seq: Some(4),
        result: RequestResult {
            code: ResultCode::Ok,
            endpoint: Some(shares[i].clone()),
            extra: extra[i].map(<[u8]>::to_vec),
            expires_at_ms: Some(1000),
            imported: None,
        },
    })
}

fn endpoint_shares() -> [Vec<Share>; 3] {
    let (ps, ep) = entry();
    share_entry(&ps, &ep, &mut OsRng).map(|e| e.endpoint)
}

#[test]
fn resolve_reconstructs_and_checks_extra() {
    let shares = endpoint_shares();
    let x: &[u8] = b"note";
    let s = decide("r", Kind::Resolve, &urls(), resolved(&shares, [Some(x); 3])).expect("ok");
    let r = resolution(s).expect("reconstructs");
    assert_eq!(r.endpoint, Some(entry().1));
    assert_eq!(r.extra.as_deref(), Some(x));
    assert_eq!(r.expires_at_ms, Some(1000));

    let s = decide(
        "r",
        Kind::Resolve,
        &urls(),
        resolved(&shares, [Some(x), Some(b"other"), Some(x)]),
    )
    .expect("codes agree");
    let err = resolution(s).expect_err("extra differs");
    assert_eq!(err.blamed(), Some(p(1)), "{err}");
    assert!(err.to_string().contains("extra data"), "{err}");
}

#[test]
fn expiry_and_sequence_must_agree() {
    let shares = endpoint_shares();
    let mut replies = resolved(&shares, [None; 3]);
    if let ProviderReply::Done { result, .. } = &mut replies[2] {
        result.expires_at_ms = Some(999_999);
    }
    let s = decide("r", Kind::Resolve, &urls(), replies).expect("codes agree");
    let err = resolution(s).expect_err("expiry differs");
    assert_eq!(err.blamed(), Some(p(2)), "{err}");
    assert!(err.to_string().contains("P2 answered 999999"), "{err}");

    let mut replies = [0, 1, 2].map(|_| done(ResultCode::Ok));
    if let ProviderReply::Done { seq, .. } = &mut replies[0] {
        *seq = Some(2);
    }
    let err = decide("r", Kind::Delete, &urls(), replies).expect_err("seq differs");
    assert_eq!(err.blamed(), Some(p(0)), "{err}");
    assert!(err.to_string().contains("sequence number"), "{err}");
}

#[test]
fn tampered_share_names_the_provider() {
    // A provider that changes both of its components, or only one (as
    // the provider's fault injection does): either way it is named.
    for who in 0..3 {
        for both in [true, false] {
            let mut shares = endpoint_shares();
            let el = if both { 3 } else { 0 };
            shares[who][el].first += Fp::ONE;
            if both {
                shares[who][el].second += Fp::from_u64(7);
            }
            let s = decide("r", Kind::Resolve, &urls(), resolved(&shares, [None; 3]))
                .expect("codes agree");
            let err = resolution(s).expect_err("tampered");
            assert_eq!(err.blamed(), Some(p(who)), "{err}");
            assert!(
                err.to_string().contains(&format!("P{who} returned")),
                "{err}"
            );
        }
    }
}

#[test]
fn undecidable_tampering_names_both_holders() {
    // A change of one component that still decodes: either holder may
    // have lied. Replace P1's copy of x1 so that the endpoint becomes
    // another valid one.
    let (ps, ep) = entry();
    let mut shares = share_entry(&ps, &ep, &mut OsRng).map(|e| e.endpoint);
    let other = Endpoint::parse("sip:alice@192.0.2.10:5061")
        .expect("valid")
        .pack();
    let delta = other[0] - ep.pack()[0];
    shares[1][0].first += delta;
    let (suspect, detail) = blame(&shares);
    assert_eq!(suspect, None);
    assert!(detail.contains("between P1 and P0"), "{detail}");
}

#[test]
fn two_provider_fallback_reconstructs() {
    for missing in 0..3 {
        let shares = endpoint_shares();
        let mut replies = resolved(&shares, [None; 3]);
        replies[missing] = ProviderReply::Failed(ProviderError::Refused {
            status: 500,
            code: Some("store".into()),
            message: "disk full".into(),
        });
        let s = decide("r", Kind::Resolve, &urls(), replies).expect("two answer");
        let r = resolution(s).expect("reconstructs from two");
        assert_eq!(r.endpoint, Some(entry().1));
        let d = r.degraded.expect("degraded");
        assert_eq!(d.missing, p(missing));

        // The two remaining providers' shared component is still checked.
        let mut shares = endpoint_shares();
        let (a, b) = ((missing + 1) % 3, (missing + 2) % 3);
        shares[a][2].second += Fp::ONE;
        shares[b][2].first += Fp::ONE;
        let mut replies = resolved(&shares, [None; 3]);
        replies[missing] = done(ResultCode::Unavailable);
        let s = decide("r", Kind::Resolve, &urls(), replies).expect("two answer");
        let err = resolution(s).expect_err("tampered");
        assert!(matches!(err, Error::ReconstructTwo { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("P{missing} did not answer")),
            "{err}"
        );
    }
}

#[test]
fn wire_layout_of_answers_matches_parts() {
    // What a provider sends back parses to the shares it holds.
    let shares = endpoint_shares();
    let result = serde_json::json!({"code": "ok", "endpoint": hex::encode(encode_share_vector(&shares[2])),
                   "expires_at_ms": 5});
    let keys = sharecall_proto::seal::AnswerKeys::generate(&mut OsRng);
    let sealed = keys
        .key(2)
        .seal("r", 2, result.to_string().as_bytes(), &mut OsRng)
        .expect("seal");
    let body = serde_json::json!({
        "request_id": "r", "status": "done", "seq": 1,
        "sealed_result": {"nonce": hex::encode(sealed.nonce), "ciphertext": hex::encode(&sealed.ciphertext)}
    });
    let opener = crate::parts::Opener {
        keys: &keys,
        request_id: "r",
        provider: 2,
    };
    let a = parse_answer(Kind::Resolve, body.to_string().as_bytes(), opener).expect("parses");
    let Answer::Done { result, .. } = a else {
        panic!("not done");
    };
    assert_eq!(result.endpoint.as_ref(), Some(&shares[2]));
}

/// The pseudonym keys of an import request's rows, in slot order
/// (reconstructed from the three parts, as the three providers together
/// could).
fn import_key_order(request: &SignedRequest) -> Vec<Fp> {
    let parsed = PartyId::ALL.map(|p| {
        crate::parts::merge_import(request.part(p), request.public()).expect("import part parses")
    });
    (0..parsed[0].len())
        .map(|i| {
            let keys = [0, 1, 2].map(|k| parsed[k][i].0.key);
            sharecall_proto::sharing::reconstruct_all(&keys).expect("key")
        })
        .collect()
}

fn import_rows(n: usize) -> Vec<ImportRow> {
    let mut rows: Vec<ImportRow> = (0..n)
        .map(|i| ImportRow {
            pseudonym: Pseudonym::parse(&format!("+4930123{i:04}")).expect("p"),
            endpoint: Endpoint::parse(&format!("sip:u{i}@192.0.2.1")).expect("e"),
            ttl: Duration::from_secs(60),
            owner: [7; 32],
            extra: None,
        })
        .collect();
    // The caller's rows come in ascending key order (a sorted export).
    rows.sort_by_key(|r| r.pseudonym.key());
    rows
}

#[test]
fn hash_and_list_imports_shuffle_rows_whatever_their_key_order() {
    let key = AccountKey::generate(&mut OsRng);
    let client = Client::new(&urls(), key).expect("client");
    let rows = import_rows(24);
    let sorted: Vec<Fp> = rows.iter().map(|r| r.pseudonym.key().to_field()).collect();
    let mut orders = std::collections::HashSet::new();
    for _ in 0..4 {
        let order = import_key_order(&client.prepare_import(&rows).expect("import"));
        // Every row is there once ...
        let mut same = order.clone();
        same.sort_by_key(|f| sorted.iter().position(|s| s == f));
        assert_eq!(same, sorted, "a permutation of the rows");
        // ... but not in key order (24! orders: a sorted one by chance is
        // out of the question).
        assert_ne!(order, sorted, "rows in key order");
        orders.insert(format!("{order:?}"));
    }
    assert_eq!(orders.len(), 4, "a fresh order per request");
    // Reversed input gives no order away either.
    let mut reversed = rows.clone();
    reversed.reverse();
    let order = import_key_order(&client.prepare_import(&reversed).expect("import"));
    let mut desc = sorted.clone();
    desc.reverse();
    assert_ne!(order, desc);
    assert_ne!(order, sorted);
}

#[test]
fn tree_imports_sort_rows_by_key() {
    let key = AccountKey::generate(&mut OsRng);
    let client = Client::new(&urls(), key)
        .expect("client")
        .with_import_order(ImportOrder::SortedForTree);
    let mut rows = import_rows(24);
    let sorted: Vec<Fp> = rows.iter().map(|r| r.pseudonym.key().to_field()).collect();
    rows.reverse();
    let order = import_key_order(&client.prepare_import(&rows).expect("import"));
    assert_eq!(order, sorted);
}
