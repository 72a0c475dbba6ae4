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
    });
    let public = Public::Entry(EntryPublic {
        ttl_s: 60,
        extra: b"hi".to_vec(),
    });
    let p = Part::merge(Kind::Register, json.to_string().as_bytes(), &public).expect("parse");
    assert_eq!(p.key, key[0]);
    assert_eq!(p.endpoint, endpoint);
    assert_eq!(p.ttl_s, 60);
    assert_eq!(p.extra, b"hi");
}

/// The public fields a well-formed `kind` request has (ttl 5 s).
fn public_of(kind: Kind) -> Public {
    match kind {
        Kind::Register | Kind::Update => Public::Entry(EntryPublic {
            ttl_s: 5,
            extra: Vec::new(),
        }),
        _ => Public::None,
    }
}

fn wire(kind: Kind, bytes: &[u8]) -> Result<Part, PartError> {
    Part::merge(kind, bytes, &public_of(kind))
}

#[test]
fn bad_parts_are_refused_with_the_field() {
    let key = hex::encode(encode_share_vector(&shares(1)));
    let ep = hex::encode(encode_share_vector(&shares(ENDPOINT_ELEMENTS)));
    let cases: Vec<(Kind, serde_json::Value, &str)> = vec![
        (Kind::Resolve, serde_json::json!({"key": "00"}), "key"),
        (
            Kind::Resolve,
            serde_json::json!({"key": key, "endpoint": ep}),
            "endpoint",
        ),
        (Kind::Register, serde_json::json!({"key": key}), "endpoint"),
        // Public fields in a part are refused, named.
        (
            Kind::Register,
            serde_json::json!({"key": key, "endpoint": ep, "ttl_s": 5}),
            "ttl_s",
        ),
        (
            Kind::Update,
            serde_json::json!({"key": key, "endpoint": ep, "extra": "00"}),
            "extra",
        ),
        (
            Kind::Resolve,
            serde_json::json!({"key": key, "ttl_s": 5}),
            "ttl_s",
        ),
        (
            Kind::Register,
            serde_json::json!({"key": key, "endpoint": ep, "owner": hex::encode([1u8; 32])}),
            "owner",
        ),
    ];
    for (kind, json, f) in cases {
        let err = wire(kind, json.to_string().as_bytes()).expect_err("refused");
        assert!(err.to_string().contains(f), "{err} should name {f}");
    }
    let err = wire(
        Kind::Register,
        serde_json::json!({"key": key, "endpoint": ep, "ttl_s": 5})
            .to_string()
            .as_bytes(),
    )
    .expect_err("refused");
    assert_eq!(err, PartError::PublicInPart { field: "ttl_s" });
    assert!(matches!(
        wire(Kind::Resolve, b"{\"key\": 1, \"x\": 2}"),
        Err(PartError::Json(_))
    ));
    // A non-canonical element (p itself, all ones) is refused.
    let bad = hex::encode([0xffu8; 64]);
    assert!(wire(Kind::Delete, format!("{{\"key\":\"{bad}\"}}").as_bytes()).is_err());
    // Public fields of another kind are refused.
    let part = serde_json::json!({"key": key, "endpoint": ep}).to_string();
    assert!(matches!(
        Part::merge(Kind::Register, part.as_bytes(), &Public::None),
        Err(PartError::Public {
            field: "public",
            ..
        })
    ));
}

#[test]
fn bad_parts_are_refused() {
    let k = hex::encode([0u8; 64]);
    let with = |extra: &str| format!(r#"{{"key":"{k}"{extra}}}"#).into_bytes();
    assert!(matches!(
        wire(Kind::Resolve, &with(r#","colour":"red""#)),
        Err(PartError::Json(_))
    ));
    assert!(matches!(
        wire(Kind::Resolve, br#"{"key":"zz"}"#),
        Err(PartError::Field { field: "key", .. })
    ));
    assert!(matches!(
        wire(Kind::Resolve, br#"{"key":"00"}"#),
        Err(PartError::Field { field: "key", .. })
    ));
    let ep = hex::encode([0u8; ENDPOINT_SHARE_LEN]);
    assert!(matches!(
        Part::parse_stored(
            Kind::Register,
            &with(&format!(r#","endpoint":"{ep}","ttl_s":0"#))
        ),
        Err(PartError::MissingField { field: "ttl_s", .. })
    ));
    assert!(matches!(
        Part::parse_stored(Kind::Register, &with(&format!(r#","endpoint":"{ep}""#))),
        Err(PartError::MissingField { field: "ttl_s", .. })
    ));
    let long = hex::encode([1u8; EXTRA_MAX_LEN + 1]);
    assert_eq!(
        Part::parse_stored(
            Kind::Register,
            &with(&format!(r#","endpoint":"{ep}","ttl_s":5,"extra":"{long}""#))
        ),
        Err(PartError::ExtraTooLong(EXTRA_MAX_LEN + 1))
    );
    assert!(matches!(
        Part::parse_stored(
            Kind::Register,
            &with(&format!(r#","endpoint":"{ep}","ttl_s":31536001"#))
        ),
        Err(PartError::BadTtl(_))
    ));
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

fn row(owner: u8) -> (Part, [u8; 32]) {
    (
        Part {
            key: shares(1)[0],
            key_bits: Some(BitShare {
                first: 1,
                second: 2,
            }),
            endpoint: shares(ENDPOINT_ELEMENTS),
            ttl_s: 60 + u64::from(owner),
            extra: vec![owner],
        },
        [owner; 32],
    )
}

fn import_public(rows: &[(Part, [u8; 32])]) -> Public {
    Public::Import(
        rows.iter()
            .map(|(p, owner)| crate::public::RowPublic {
                entry: p.entry_public(),
                owner: *owner,
            })
            .collect(),
    )
}

#[test]
fn import_rows_round_trip_and_are_limited() {
    let rows = vec![row(1), row(2)];
    let parts: Vec<Part> = rows.iter().map(|(p, _)| p.clone()).collect();
    let bytes = import_to_bytes(&parts).expect("bytes");
    // The wire bytes hold no public field.
    let text = String::from_utf8(bytes.clone()).expect("utf-8");
    for f in ["ttl_s", "extra", "owner"] {
        assert!(!text.contains(f), "{text} has {f}");
    }
    let public = import_public(&rows);
    assert_eq!(merge_import(&bytes, &public), Ok(rows.clone()));
    assert_eq!(
        parse_stored_import(&import_to_stored_bytes(&rows)),
        Ok(rows.clone())
    );
    assert!(matches!(
        import_to_bytes(&[]),
        Err(PartError::ImportSize(_))
    ));
    assert!(matches!(
        merge_import(br#"{"rows":[]}"#, &public),
        Err(PartError::ImportSize(_))
    ));
    // Row counts must match `public.rows`.
    let one = import_public(&rows[..1]);
    assert_eq!(
        merge_import(&bytes, &one),
        Err(PartError::RowCount { part: 2, public: 1 })
    );
    // A row carrying its own owner (or ttl) is refused, naming it.
    let with_owner = bytes.clone().into_iter().collect::<Vec<u8>>();
    let mut v: serde_json::Value = serde_json::from_slice(&with_owner).expect("json");
    v["rows"][1]["owner"] = serde_json::json!(hex::encode([9u8; 32]));
    let err = merge_import(v.to_string().as_bytes(), &public).expect_err("owner in row");
    assert!(
        err.to_string().contains("row 1") && err.to_string().contains("`owner`"),
        "{err}"
    );
    let mut v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    v["rows"][0]["ttl_s"] = serde_json::json!(5);
    let err = merge_import(v.to_string().as_bytes(), &public).expect_err("ttl in row");
    assert!(err.to_string().contains("`ttl_s`"), "{err}");
    let no_owner = br#"{"rows":[{"key":"00"}]}"#;
    let err = parse_stored_import(no_owner).expect_err("no owner");
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
        let public = Public::Entry(part.entry_public());
        prop_assert_eq!(Part::merge(Kind::Update, &part.to_bytes(), &public), Ok(part.clone()));
        prop_assert_eq!(Part::parse_stored(Kind::Update, &part.to_stored_bytes()), Ok(part));
    }

    #[test]
    fn parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = wire(Kind::Register, &bytes);
        let _ = Part::parse_stored(Kind::Register, &bytes);
        let _ = merge_import(&bytes, &Public::Import(Vec::new()));
        let _ = parse_stored_import(&bytes);
    }
}
