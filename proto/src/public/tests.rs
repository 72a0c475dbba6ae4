use super::*;
use crate::request::SignedFields;
use proptest::prelude::*;

fn entry(ttl_s: u64, extra: &[u8]) -> EntryPublic {
    EntryPublic {
        ttl_s,
        extra: extra.to_vec(),
    }
}

fn kind_of(p: &Public) -> Kind {
    match p {
        Public::None => Kind::Resolve,
        Public::Entry(_) => Kind::Register,
        Public::Import(_) => Kind::Import,
    }
}

fn any_entry() -> impl Strategy<Value = EntryPublic> {
    (
        1..=TTL_MAX_S,
        prop::collection::vec(any::<u8>(), 0..=crate::limits::EXTRA_MAX_LEN),
    )
        .prop_map(|(ttl_s, extra)| EntryPublic { ttl_s, extra })
}

fn any_public() -> impl Strategy<Value = Public> {
    prop_oneof![
        Just(Public::None),
        any_entry().prop_map(Public::Entry),
        prop::collection::vec(
            (any_entry(), any::<[u8; 32]>()).prop_map(|(entry, owner)| RowPublic { entry, owner }),
            1..6
        )
        .prop_map(Public::Import),
    ]
}

/// The signed message of a request whose public fields are `p`.
fn signed(p: &Public) -> Vec<u8> {
    SignedFields {
        request_id: "r1",
        kind: kind_of(p).as_str(),
        account: &[7; 32],
        timestamp_ms: 1,
        window_ms: 1000,
        part_hashes: &[[1; 32], [2; 32], [3; 32]],
        public_hash: &p.hash(),
        answer_key_hashes: &[[5; 32]; 3],
    }
    .message()
}

#[test]
fn public_fields_are_checked_per_kind_and_named() {
    let owner = hex::encode([3u8; 32]);
    let cases: Vec<(Kind, serde_json::Value, &str)> = vec![
        (Kind::Register, json!({}), "ttl_s"),
        (Kind::Register, json!({"ttl_s": 0}), "ttl"),
        (Kind::Register, json!({"ttl_s": TTL_MAX_S + 1}), "ttl"),
        (Kind::Update, json!({"ttl_s": "5"}), "ttl_s"),
        (Kind::Update, json!({"ttl_s": 5, "extra": "zz"}), "extra"),
        (
            Kind::Register,
            json!({"ttl_s": 5, "extra": hex::encode([0u8; 1025])}),
            "1024",
        ),
        (Kind::Register, json!({"ttl_s": 5, "owner": owner}), "owner"),
        (Kind::Register, json!({"ttl_s": 5, "colour": 1}), "colour"),
        (Kind::Resolve, json!({"ttl_s": 5}), "ttl_s"),
        (Kind::Delete, json!({"extra": "00"}), "extra"),
        (Kind::Import, json!({}), "rows"),
        (Kind::Import, json!({"rows": []}), "rows"),
        (Kind::Import, json!({"rows": [{"ttl_s": 5}]}), "owner"),
        (Kind::Import, json!({"rows": [{"owner": owner}]}), "ttl_s"),
        (
            Kind::Import,
            json!({"rows": [{"ttl_s": 5, "owner": owner}], "ttl_s": 5}),
            "ttl_s",
        ),
        (
            Kind::Import,
            json!({"rows": [{"ttl_s": 5, "owner": owner, "key": "00"}]}),
            "key",
        ),
        (Kind::Resolve, json!([]), "object"),
    ];
    for (kind, v, f) in cases {
        let err = Public::parse(kind, &v).expect_err(&format!("{kind} {v} refused"));
        assert!(
            matches!(
                err,
                PartError::Public { .. } | PartError::BadTtl(_) | PartError::ExtraTooLong(_)
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains(f), "{err} should name {f}");
    }
    assert_eq!(Public::parse(Kind::Delete, &json!({})), Ok(Public::None));
    assert_eq!(
        Public::parse(Kind::Update, &json!({"ttl_s": 9, "extra": "6869"})),
        Ok(Public::Entry(entry(9, b"hi")))
    );
}

#[test]
fn parts_that_disagree_give_no_public_fields() {
    let part = |ttl_s: u64, extra: &[u8]| crate::part::Part {
        key: crate::Share {
            first: crate::Fp::ZERO,
            second: crate::Fp::ZERO,
        },
        key_bits: None,
        endpoint: Vec::new(),
        ttl_s,
        extra: extra.to_vec(),
    };
    let same = [part(5, b"x"), part(5, b"x"), part(5, b"x")];
    assert_eq!(
        Public::of_parts(Kind::Register, &same),
        Ok(Public::Entry(entry(5, b"x")))
    );
    let ttl = [part(1, b""), part(5, b""), part(5, b"")];
    assert!(Public::of_parts(Kind::Register, &ttl)
        .expect_err("ttl differs")
        .to_string()
        .contains("ttl_s"));
    let extra = [part(5, b"a"), part(5, b"b"), part(5, b"a")];
    assert!(Public::of_parts(Kind::Update, &extra)
        .expect_err("extra differs")
        .to_string()
        .contains("extra"));
}

proptest! {
    #[test]
    fn json_and_canonical_round_trip(p in any_public()) {
        prop_assert_eq!(Public::parse(kind_of(&p), &p.to_json()), Ok(p.clone()));
        prop_assert_eq!(Public::from_canonical(&p.canonical_bytes()), Some(p.clone()));
        prop_assert!(p.fits(kind_of(&p)));
    }

    #[test]
    fn different_public_fields_sign_differently(a in any_public(), b in any_public()) {
        prop_assume!(a != b);
        prop_assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        prop_assert_ne!(signed(&a), signed(&b));
    }

    #[test]
    fn one_changed_field_changes_the_signed_message(
        e in any_entry(),
        owner in any::<[u8; 32]>(),
        dttl in 1..1000u64,
        flip in any::<u8>(),
    ) {
        let base = Public::Import(vec![RowPublic { entry: e.clone(), owner }]);
        let mut ttl = e.clone();
        ttl.ttl_s = if e.ttl_s > dttl { e.ttl_s - dttl } else { e.ttl_s + dttl };
        let mut extra = e.clone();
        extra.extra.push(flip);
        let mut other = owner;
        other[0] ^= 1;
        for changed in [
            Public::Import(vec![RowPublic { entry: ttl, owner }]),
            Public::Import(vec![RowPublic { entry: extra, owner }]),
            Public::Import(vec![RowPublic { entry: e.clone(), owner: other }]),
        ] {
            prop_assert_ne!(signed(&changed), signed(&base));
        }
    }

    #[test]
    fn parsing_never_panics(s in ".{0,200}") {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) {
            for k in Kind::ALL {
                let _ = Public::parse(k, &v);
            }
        }
        let _ = Public::from_canonical(s.as_bytes());
    }
}
