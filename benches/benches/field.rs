//! Field arithmetic of F_p, p = 2^255 − 19.
//!
//! Run: `cargo bench -p sharecall-benches --bench field`

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use sharecall_proto::field::{decode_batch, encode_batch};
use sharecall_proto::Fp;

fn field(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(1);
    let a = Fp::random(&mut rng);
    let b = Fp::random(&mut rng);
    let mut g = c.benchmark_group("field");
    g.bench_function("add", |bench| bench.iter(|| black_box(a) + black_box(b)));
    g.bench_function("mul", |bench| bench.iter(|| black_box(a) * black_box(b)));
    g.bench_function("square", |bench| bench.iter(|| black_box(a).square()));
    g.bench_function("inverse", |bench| bench.iter(|| black_box(a).inverse()));
    g.bench_function("legendre", |bench| bench.iter(|| black_box(a).legendre()));
    g.bench_function("sqrt", |bench| bench.iter(|| black_box(a).square().sqrt()));
    g.bench_function("random", |bench| bench.iter(|| Fp::random(&mut rng)));
    let batch: Vec<Fp> = (0..1000).map(|i| Fp::from_u64(i) * a).collect();
    let bytes = encode_batch(&batch);
    g.bench_function("encode_1000", |bench| {
        bench.iter(|| encode_batch(black_box(&batch)))
    });
    g.bench_function("decode_1000", |bench| {
        bench.iter(|| decode_batch(black_box(&bytes)))
    });
    g.finish();
}

criterion_group!(benches, field);
criterion_main!(benches);
