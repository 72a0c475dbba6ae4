//! What sealed answers cost a resolution: the client's three per-request
//! keys (and their hashes), one provider's seal of an ok resolve's result,
//! and the client's open.
//!
//! Run: `cargo bench -p sharecall-benches --bench seal`

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::rngs::OsRng;
use sharecall_proto::seal::AnswerKeys;

fn sealing(c: &mut Criterion) {
    // An ok resolve's result object: 640 bytes of shares (1280 hex
    // digits), an expiry and a little extra data.
    let result = format!(
        r#"{{"code":"ok","endpoint":"{}","extra":"6869","expires_at_ms":1790000360000}}"#,
        "ab".repeat(640)
    );
    let keys = AnswerKeys::generate(&mut OsRng);
    let sealed = keys
        .key(1)
        .seal("c-0123456789abcdef", 1, result.as_bytes(), &mut OsRng)
        .expect("seal");
    let mut g = c.benchmark_group("answer_seal");
    g.bench_function("client_keygen", |b| {
        b.iter(|| AnswerKeys::generate(&mut OsRng).hashes())
    });
    g.bench_function("provider_seal", |b| {
        b.iter(|| {
            keys.key(1).seal(
                "c-0123456789abcdef",
                1,
                black_box(result.as_bytes()),
                &mut OsRng,
            )
        })
    });
    g.bench_function("client_open", |b| {
        b.iter(|| keys.open("c-0123456789abcdef", 1, black_box(&sealed)))
    });
    g.finish();
}

criterion_group!(benches, sealing);
criterion_main!(benches);
