use super::*;
use crate::Fp;
use proptest::prelude::*;
use rand::rngs::OsRng;

use crate::layout::ENDPOINT_SHARE_LEN;

fn shares(n: usize) -> Vec<Share> {
    (0..n)
        .map(|_| Share {
            first: Fp::random(&mut OsRng),
            second: Fp::random(&mut OsRng),
        })
        .collect()
}

#[test]
fn register_part_round_trips() {
    let key = shares(1);
    let endpoint = shares(ENDPOINT_ELEMENTS);
    let json = serde_json::json!({
        "key": hex::encode(encode_share_vector(&key)),
        "endpoint": hex::encode(encode_share_vector(&endpoint)),
        "ttl_s": 60,
        "extra": hex::encode(b"hi"),
    });
    let p = Part::parse(Kind::Register, json.to_string().as_bytes()).expect("parse");
    assert_eq!(p.key, key[0]);
    assert_eq!(p.endpoint, endpoint);
    assert_eq!(p.ttl_s, 60);
    assert_eq!(p.extra, b"hi");
}

#[test]
fn bad_parts_are_refused_with_the_field() {
    let key = hex::encode(encode_share_vector(&shares(1)));
    let cases: Vec<(Kind, serde_json::Value, &str)> = vec![
        (Kind::Resolve, serde_json::json!({"key": "00"}), "key"),
        (
            Kind::Resolve,
            serde_json::json!({"key": key, "ttl_s": 5}),
            "endpoint",
        ),
        (
            Kind::Register,
            serde_json::json!({"key": key, "ttl_s": 5}),
            "endpoint",
        ),
        (
            Kind::Register,
            serde_json::json!({"key": key, "endpoint": hex::encode(encode_share_vector(&shares(ENDPOINT_ELEMENTS))), "ttl_s": 0}),
            "ttl_s",
        ),
        (
            Kind::Update,
            serde_json::json!({"key": key, "endpoint": hex::encode(encode_share_vector(&shares(ENDPOINT_ELEMENTS))), "ttl_s": 5, "extra": hex::encode(vec![0u8; EXTRA_MAX_LEN + 1])}),
            "extra",
        ),
    ];
    for (kind, json, f) in cases {
        let err = Part::parse(kind, json.to_string().as_bytes()).expect_err("refused");
        assert!(err.to_string().contains(f), "{err} should name {f}");
    }
    assert!(matches!(
        Part::parse(Kind::Resolve, b"{\"key\": 1, \"x\": 2}"),
        Err(PartError::Json(_))
    ));
    // A non-canonical element (p itself, all ones) is refused.
    let bad = hex::encode([0xffu8; 64]);
    assert!(Part::parse(Kind::Delete, format!("{{\"key\":\"{bad}\"}}").as_bytes()).is_err());
}

#[test]
fn bad_parts_are_refused() {
    let k = hex::encode([0u8; 64]);
    let with = |extra: &str| format!(r#"{{"key":"{k}"{extra}}}"#).into_bytes();
    assert!(matches!(
        Part::parse(Kind::Resolve, &with(r#","colour":"red""#)),
        Err(PartError::Json(_))
    ));
    assert!(matches!(
        Part::parse(Kind::Resolve, br#"{"key":"zz"}"#),
        Err(PartError::Field { field: "key", .. })
    ));
    assert!(matches!(
        Part::parse(Kind::Resolve, br#"{"key":"00"}"#),
        Err(PartError::Field { field: "key", .. })
    ));
    let ep = hex::encode([0u8; ENDPOINT_SHARE_LEN]);
    assert!(matches!(
        Part::parse(
            Kind::Register,
            &with(&format!(r#","endpoint":"{ep}","ttl_s":0"#))
        ),
        Err(PartError::BadTtl(_))
    ));
    assert!(matches!(
        Part::parse(Kind::Register, &with(&format!(r#","endpoint":"{ep}""#))),
        Err(PartError::MissingField { field: "ttl_s", .. })
    ));
    let long = hex::encode([1u8; EXTRA_MAX_LEN + 1]);
    assert_eq!(
        Part::parse(
            Kind::Register,
            &with(&format!(r#","endpoint":"{ep}","ttl_s":5,"extra":"{long}""#))
        ),
        Err(PartError::ExtraTooLong(EXTRA_MAX_LEN + 1))
    );
}

#[test]
fn ttl_and_extra_limits() {
    assert_eq!(ttl_seconds(Duration::from_secs(1)), Ok(1));
    assert_eq!(ttl_seconds(Duration::from_secs(TTL_MAX_S)), Ok(TTL_MAX_S));
    assert!(ttl_seconds(Duration::ZERO).is_err());
    assert!(ttl_seconds(Duration::from_secs(TTL_MAX_S + 1)).is_err());
    assert!(ttl_seconds(Duration::from_millis(1500)).is_err());
    assert!(check_extra(&[0; EXTRA_MAX_LEN]).is_ok());
    assert!(check_extra(&[0; EXTRA_MAX_LEN + 1]).is_err());
}

#[test]
fn import_rows_round_trip_and_are_limited() {
    let row = |owner: u8| {
        (
            Part {
                key: shares(1)[0],
                key_bits: Some(BitShare {
                    first: 1,
                    second: 2,
                }),
                endpoint: shares(ENDPOINT_ELEMENTS),
                ttl_s: 60,
                extra: vec![owner],
            },
            [owner; 32],
        )
    };
    let rows = vec![row(1), row(2)];
    let bytes = import_to_bytes(&rows).expect("bytes");
    assert_eq!(parse_import(&bytes), Ok(rows));
    assert!(matches!(
        import_to_bytes(&[]),
        Err(PartError::ImportSize(_))
    ));
    assert!(matches!(
        parse_import(br#"{"rows":[]}"#),
        Err(PartError::ImportSize(_))
    ));
    let no_owner = br#"{"rows":[{"key":"00"}]}"#;
    let err = parse_import(no_owner).expect_err("no owner");
    assert!(err.to_string().contains("owner"), "{err}");
}

proptest! {
    #[test]
    fn any_part_round_trips(
        key in any::<[u64; 2]>(),
        bits in prop::option::of(any::<(u128, u128)>()),
        ep in prop::collection::vec(any::<(u64, u64)>(), ENDPOINT_ELEMENTS),
        ttl in 1..=TTL_MAX_S,
        extra in prop::collection::vec(any::<u8>(), 0..=EXTRA_MAX_LEN),
    ) {
        let part = Part {
            key: Share { first: Fp::from_u64(key[0]), second: Fp::from_u64(key[1]) },
            key_bits: bits.map(|(first, second)| BitShare { first, second }),
            endpoint: ep.iter().map(|&(a, b)| Share { first: Fp::from_u64(a), second: Fp::from_u64(b) }).collect(),
            ttl_s: ttl,
            extra,
        };
        prop_assert_eq!(Part::parse(Kind::Update, &part.to_bytes()), Ok(part));
    }

    #[test]
    fn parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Part::parse(Kind::Register, &bytes);
        let _ = parse_import(&bytes);
    }
}
