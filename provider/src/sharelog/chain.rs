//! The hash chain over the share log's agreed fields.
//!
//! Link n is blake3 (derived key `sharecall 2026 share log v1`) over link
//! n − 1 and record n's agreed fields, sequence number included. Only the
//! fields equal at all three providers enter it, so the three chains are
//! byte-identical and one head compares them all; a record changed on disk
//! no longer hashes to its stored link, and a record changed *and*
//! re-chained changes every later link and the head, which then differs
//! from the other two providers' heads.

use super::record::Record;

/// The derived-key context of the chain.
const CONTEXT: &str = "sharecall 2026 share log v1";

/// The link after `record`, given the link before it.
pub fn link(prev: &[u8; 32], record: &Record) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(CONTEXT);
    h.update(prev);
    h.update(&record.agreed_bytes(true));
    *h.finalize().as_bytes()
}

/// Sets `record`'s sequence number and links it after `head`; returns
/// the new head.
pub fn append(head: &[u8; 32], seq: u64, record: &mut Record) -> [u8; 32] {
    record.seq = seq;
    record.prev = *head;
    record.hash = link(head, record);
    record.hash
}

/// Why a stretch of the log does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A record's stored link is not the hash of its contents.
    #[error("record {seq}: its contents do not hash to its stored link (altered)")]
    Altered {
        /// The record.
        seq: u64,
    },
    /// A record does not continue the one before it.
    #[error("record {seq}: it does not follow record {prev_seq} (chain broken)")]
    Broken {
        /// The record.
        seq: u64,
        /// The one before.
        prev_seq: u64,
    },
    /// Sequence numbers are not consecutive.
    #[error("record {got} where record {expected} was expected (missing or reordered)")]
    Gap {
        /// Expected sequence number.
        expected: u64,
        /// Found.
        got: u64,
    },
    /// The stored head is not the last record's link.
    #[error("the stored head is not the last record's link")]
    Head,
}

/// Checks that `records` (consecutive, from `start_seq`) continue the
/// chain from `base` and that every stored link is the hash of its record;
/// returns the last link.
pub struct Verifier {
    expected_seq: u64,
    head: [u8; 32],
}

impl Verifier {
    /// A verifier for records from `start_seq`, whose predecessor's link
    /// is `base`.
    pub fn new(start_seq: u64, base: [u8; 32]) -> Verifier {
        Verifier {
            expected_seq: start_seq,
            head: base,
        }
    }

    /// Checks the next record.
    pub fn push(&mut self, r: &Record) -> Result<(), ChainError> {
        if r.seq != self.expected_seq {
            return Err(ChainError::Gap {
                expected: self.expected_seq,
                got: r.seq,
            });
        }
        if link(&r.prev, r) != r.hash {
            return Err(ChainError::Altered { seq: r.seq });
        }
        if r.prev != self.head {
            return Err(ChainError::Broken {
                seq: r.seq,
                prev_seq: r.seq.saturating_sub(1),
            });
        }
        self.head = r.hash;
        self.expected_seq += 1;
        Ok(())
    }

    /// The link after the last record pushed.
    pub fn head(&self) -> [u8; 32] {
        self.head
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::RecordKind;
    use super::*;
    use sharecall_proto::answer::Code;
    use sharecall_proto::{Fp, Share};

    fn chain_of(n: u64, share: u64) -> (Vec<Record>, [u8; 32]) {
        let mut head = [0; 32];
        let mut out = Vec::new();
        for i in 1..=n {
            let mut r = Record::new(RecordKind::Register, &format!("r{i}"), [1; 32], Code::Ok);
            r.at_ms = 1000 + i;
            // Shares differ per provider; the chain must not see them.
            r.key = Some(Share {
                first: Fp::from(share + i),
                second: Fp::from(share),
            });
            head = append(&head, i, &mut r);
            out.push(r);
        }
        (out, head)
    }

    fn verify(records: &[Record]) -> Result<[u8; 32], ChainError> {
        let mut v = Verifier::new(1, [0; 32]);
        for r in records {
            v.push(r)?;
        }
        Ok(v.head())
    }

    #[test]
    fn three_providers_with_different_shares_have_one_chain() {
        let (a, ha) = chain_of(5, 10);
        let (b, hb) = chain_of(5, 99);
        assert_ne!(a[0].key, b[0].key);
        assert_eq!(ha, hb);
        assert_eq!(verify(&a), Ok(ha));
    }

    #[test]
    fn an_altered_record_is_detected() {
        let (mut rs, _) = chain_of(5, 0);
        rs[2].code = Code::NotFound;
        assert_eq!(verify(&rs), Err(ChainError::Altered { seq: 3 }));
    }

    #[test]
    fn an_altered_and_rehashed_record_breaks_the_next_link_or_the_head() {
        let (mut rs, head) = chain_of(5, 0);
        rs[2].origin = [9; 32];
        rs[2].hash = link(&rs[2].prev, &rs[2]);
        assert_eq!(
            verify(&rs),
            Err(ChainError::Broken {
                seq: 4,
                prev_seq: 3
            })
        );
        // Re-chaining everything after it verifies locally, but the head
        // now differs from the other providers'.
        let mut h = rs[2].hash;
        for (i, r) in rs.iter_mut().enumerate().skip(3) {
            h = append(&h, i as u64 + 1, r);
        }
        let rehead = verify(&rs).expect("locally consistent");
        assert_ne!(rehead, head);
    }

    #[test]
    fn a_removed_or_reordered_record_is_detected() {
        let (mut rs, _) = chain_of(4, 0);
        rs.remove(1);
        assert_eq!(
            verify(&rs),
            Err(ChainError::Gap {
                expected: 2,
                got: 3
            })
        );
        let (mut rs, _) = chain_of(4, 0);
        rs.swap(1, 2);
        assert!(verify(&rs).is_err());
    }
}
