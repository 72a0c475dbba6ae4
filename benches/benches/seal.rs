//! What sealed answers cost a resolution: the client's per-request key,
//! one provider's seal of an ok resolve's result, and the client's open.
//!
//! Run: `cargo bench -p sharecall-benches --bench seal`

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::rngs::OsRng;
use sharecall_proto::seal::{seal, AnswerSecret};

fn sealing(c: &mut Criterion) {
    // An ok resolve's result object: 640 bytes of shares (1280 hex
    // digits), an expiry and a little extra data.
    let result = format!(
        r#"{{"code":"ok","endpoint":"{}","extra":"6869","expires_at_ms":1790000360000}}"#,
        "ab".repeat(640)
    );
    let secret = AnswerSecret::generate(&mut OsRng);
    let sealed = seal(
        secret.public(),
        "c-0123456789abcdef",
        1,
        result.as_bytes(),
        &mut OsRng,
    )
    .expect("seal");
    let mut g = c.benchmark_group("answer_seal");
    g.bench_function("client_keygen", |b| {
        b.iter(|| AnswerSecret::generate(&mut OsRng))
    });
    g.bench_function("provider_seal", |b| {
        b.iter(|| {
            seal(
                secret.public(),
                "c-0123456789abcdef",
                1,
                black_box(result.as_bytes()),
                &mut OsRng,
            )
        })
    });
    g.bench_function("client_open", |b| {
        b.iter(|| secret.open("c-0123456789abcdef", 1, black_box(&sealed)))
    });
    g.finish();
}

criterion_group!(benches, sealing);
criterion_main!(benches);
