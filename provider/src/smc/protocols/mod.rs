//! The protocols, as `impl Session` blocks, one file per family
//! (party P_i holds (x_i, x_{i+1}); "next" is P_{i+1}):
//!
//! | family | op | rounds | messages per party |
//! |---|---|---|---|
//! | [`arith`] | `open` | 1 | values to next, a 32-byte digest to prev |
//! | [`arith`] | `mul` | 1 | products to prev |
//! | [`arith`] | `mul_open` | 1 | products to both |
//! | [`arith`] | `eq_reveal` | 1 | as `mul_open` |
//! | [`arith`] | `verify` | 1 | 32-byte digests to both |
//! | [`arith`] | `mul_verify` | 1 | `mul` and `verify` together |
//! | [`agree`] | `exchange_digest` | 1 | a 32-byte digest to both |
//! | [`prf`] | `prf_tag` | 1 | as `mul_open`, [`TAG_BITS`](prf::TAG_BITS) (24) elements per value |
//! | [`prf`] | `prf_tag_prefix` | 1 | as `mul_open`, one element per tag bit asked for |
//! | [`compare`] | `lt_reveal` | 7 | 1 open, 5 `mul` levels, 1 `mul_open` |
//! | [`boolean`] | `and_words` | 1 | as `mul`, on XOR-shared 128-bit words |
//! | [`boolean`] | `and_open_words` | 1 | as `mul_open`, on words |
//! | [`boolean`] | `compare_bits` | 8 | 7 `and_words` levels, 1 `and_open_words` |
//! | [`preprocessing`] | squares, bit blocks | 1, 3 | as `mul` |
//!
//! Each protocol is built from the rounds of [`Session`](super::Session)
//! and from other protocols of the families above it in this table; no
//! family calls one below it.

pub mod agree;
pub mod arith;
pub mod boolean;
pub mod compare;
pub mod preprocessing;
pub mod prf;
