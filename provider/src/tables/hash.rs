//! The hash table: a keyed PRF (`prf_tag`, with a secret-shared key the
//! first batch creates) tags every key; a query's candidates are the
//! entries filed under its tag, and the batch's `eq_reveal` settles
//! collisions.
//!
//! Writes compute all [`TAG_BITS`] of their tag (it is stored); reads
//! only [`read_tag_width`] of them, enough to keep their buckets small at
//! the table's size.

use futures::future::BoxFuture;
use sharecall_proto::ShareVec;

use super::index::low_mask;
use super::variant::Registration;
use super::{Index, Narrowed, Query, Table, TableError, Variant};
use crate::smc::{LaneSession, PrfKey, TAG_BITS};

/// The hash variant (configuration name `hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hash;

/// Its entry in the registry of variants.
pub const REGISTRATION: Registration = Registration {
    names: "hash",
    parse,
};

/// The variant named `name`, if it is this one.
fn parse(name: &str) -> Option<Variant> {
    (name == "hash").then(|| Variant::new(Hash))
}

impl Table for Hash {
    fn name(&self) -> String {
        "hash".into()
    }

    /// Nothing is stored before the first write batch, which also makes
    /// the PRF key: until then no read can be keyed, and none can match.
    fn reads_find_nothing(&self, index: &Index) -> bool {
        index.prf_key.is_none()
    }

    /// The PRF key is made (with no traffic) by the first batch.
    fn create_key(
        &self,
        index: &Index,
        session: &mut LaneSession,
        queries: &[Query],
    ) -> Result<Option<PrfKey>, TableError> {
        if index.prf_key.is_some() || queries.is_empty() {
            return Ok(None);
        }
        if !index.is_empty() {
            return Err(TableError::LostKey);
        }
        Ok(Some(session.gen_prf_key()))
    }

    fn narrow<'a>(
        &'a self,
        index: &'a Index,
        key: Option<&'a PrfKey>,
        session: &'a mut LaneSession,
        queries: &'a [Query],
    ) -> BoxFuture<'a, Result<Box<dyn Narrowed>, TableError>> {
        Box::pin(async move {
            if queries.is_empty() {
                return Ok(Box::new(Tagged::default()) as Box<dyn Narrowed>);
            }
            let key = key.ok_or(TableError::NoKey)?;
            Ok(Box::new(narrow(index, key, session, queries).await?) as Box<dyn Narrowed>)
        })
    }
}

/// What the hash narrowing found: per query its bucket and (a prefix of)
/// its tag.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tagged {
    /// Per query: stored slots whose tags agree with its computed bits.
    candidates: Vec<Vec<u64>>,
    /// Per query: the low `widths` bits of its PRF tag, the others 0.
    tags: Vec<u32>,
    /// Per query: how many low bits of its tag were computed (all
    /// [`TAG_BITS`] for writes, whose tags are stored).
    widths: Vec<usize>,
}

impl Narrowed for Tagged {
    fn candidates(&self, q: usize) -> &[u64] {
        self.candidates.get(q).map_or(&[], Vec::as_slice)
    }

    /// Their tags agree on the bits both computed.
    fn may_equal(&self, i: usize, j: usize) -> bool {
        if let (Some(a), Some(b)) = (self.tags.get(i), self.tags.get(j)) {
            let width = self.widths.get(i).min(self.widths.get(j));
            let mask = width.map_or(u32::MAX, |&w| low_mask(w));
            return (a ^ b) & mask == 0;
        }
        true
    }

    fn tag(&self, q: usize) -> u32 {
        self.tags.get(q).copied().unwrap_or(0)
    }

    fn tag_bits(&self, q: usize) -> u8 {
        self.widths.get(q).map_or(0, |w| *w as u8)
    }
}

/// One `prf_tag` round; the bucket of each tag.
async fn narrow(
    index: &Index,
    key: &PrfKey,
    session: &mut LaneSession,
    queries: &[Query],
) -> Result<Tagged, TableError> {
    let writes = queries.iter().filter(|q| q.writes).count();
    let read_width = read_tag_width(index.meta.len() + writes);
    let widths: Vec<usize> = queries
        .iter()
        .map(|q| if q.writes { TAG_BITS } else { read_width })
        .collect();
    let keys: ShareVec = queries.iter().map(|q| q.key).collect();
    let tags = session.prf_tag_prefix(key, &keys, &widths).await?;
    let candidates = tags
        .iter()
        .zip(&widths)
        .map(|(&t, &w)| index.buckets.matching(t, w))
        .collect();
    Ok(Tagged {
        candidates,
        tags,
        widths,
    })
}

/// Tag bits a read computes beyond the table size's bit length: one, so
/// the expected number of other keys sharing its tag stays under 1/2.
/// Each bit costs every provider a Legendre symbol (about 2 µs), each
/// extra candidate one element in the `eq_reveal` round (far less), so
/// fewer bits win; fewer bits also tell the providers less.
pub const READ_TAG_MARGIN: usize = 1;

/// Tag bits a read computes when it may meet `n` keys: with n < 2^L,
/// L + [`READ_TAG_MARGIN`], at most [`TAG_BITS`]. Every provider derives
/// it from the same replicated state, so all open the same number of
/// elements.
pub fn read_tag_width(n: usize) -> usize {
    let significant = (usize::BITS - n.leading_zeros()) as usize;
    (significant + READ_TAG_MARGIN).min(TAG_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_tags_narrow_with_the_table() {
        assert_eq!(read_tag_width(0), 1);
        assert_eq!(read_tag_width(2000), 12);
        assert_eq!(read_tag_width(100_000), 18);
        assert_eq!(read_tag_width(1_000_000), 21);
        assert_eq!(read_tag_width(1 << 24), TAG_BITS);
        assert_eq!(read_tag_width(usize::MAX), TAG_BITS);
    }

    #[test]
    fn prefix_tags_meet_only_on_their_common_bits() {
        let n = Tagged {
            tags: vec![0b1011, 0b0011, 0b1011],
            widths: vec![TAG_BITS, 2, TAG_BITS],
            ..Tagged::default()
        };
        assert!(n.may_equal(0, 1), "agree on the 2 bits the read has");
        assert!(n.may_equal(0, 2));
        let m = Tagged {
            tags: vec![0b1011, 0b0001],
            widths: vec![TAG_BITS, 2],
            ..Tagged::default()
        };
        assert!(!m.may_equal(0, 1));
        assert!(!m.may_equal(1, 0));
    }
}
