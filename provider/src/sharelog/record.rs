//! One share-log record and its byte encoding.
//!
//! A record has two halves. The *agreed* fields (sequence number, log
//! time, kind, request id, origin account, result code, PRF tag and where
//! in the execution order the request ran) are equal at all three
//! providers; only they enter the hash chain ([`Record::agreed_bytes`]).
//! The *shares* (key in field and XOR form, endpoint) are this provider's
//! own, different at each provider, and never chained.

use sharecall_proto::answer::Code;
use sharecall_proto::bits::{BitShare, BIT_SHARE_LEN};
use sharecall_proto::layout::{decode_share, encode_share, SHARE_LEN};
use sharecall_proto::Share;

/// The encoding's version byte (the first byte of every stored record).
pub const VERSION: u8 = 1;

/// Most endpoint shares a record holds (an endpoint packs into 10).
pub const MAX_ENDPOINT: usize = 64;

/// What a record stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A registration.
    Register,
    /// A resolution (from a read batch).
    Resolve,
    /// An update.
    Update,
    /// A deletion.
    Delete,
    /// One row of a bulk import (a refused import request: one record,
    /// row 0, without shares).
    ImportRow,
    /// A retention purge: `aux` is the last purged sequence number,
    /// `cursor` how many records it removed.
    Purge,
    /// A read batch the coordinator named but one provider did not hold
    /// (it restarted before the batch was sealed): its resolutions are
    /// not in the log; `batch` names it.
    ReadsLost,
}

impl RecordKind {
    const ALL: [RecordKind; 7] = [
        RecordKind::Register,
        RecordKind::Resolve,
        RecordKind::Update,
        RecordKind::Delete,
        RecordKind::ImportRow,
        RecordKind::Purge,
        RecordKind::ReadsLost,
    ];

    fn byte(self) -> u8 {
        match self {
            RecordKind::Register => 1,
            RecordKind::Resolve => 2,
            RecordKind::Update => 3,
            RecordKind::Delete => 4,
            RecordKind::ImportRow => 5,
            RecordKind::Purge => 6,
            RecordKind::ReadsLost => 7,
        }
    }

    fn from_byte(b: u8) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.byte() == b)
    }

    /// The kind of a request kind's name (`register`, `import`, ...).
    pub fn of_request(kind: &str) -> Option<RecordKind> {
        match kind {
            "register" => Some(RecordKind::Register),
            "resolve" => Some(RecordKind::Resolve),
            "update" => Some(RecordKind::Update),
            "delete" => Some(RecordKind::Delete),
            "import" => Some(RecordKind::ImportRow),
            _ => None,
        }
    }

    /// Its name in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Register => "register",
            RecordKind::Resolve => "resolve",
            RecordKind::Update => "update",
            RecordKind::Delete => "delete",
            RecordKind::ImportRow => "import_row",
            RecordKind::Purge => "purge",
            RecordKind::ReadsLost => "reads_lost",
        }
    }
}

/// One entry of the share log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the log (1-based, the same at all three providers);
    /// assigned when the record is appended.
    pub seq: u64,
    /// Log time in ms: a write's effective log time, a read batch's time
    /// (named by the coordinator, checked by every peer), a purge's sweep
    /// time.
    pub at_ms: u64,
    /// What it records.
    pub kind: RecordKind,
    /// The client's request id (empty for purge and lost markers).
    pub request_id: String,
    /// The account that signed the request (zero for markers).
    pub origin: [u8; 32],
    /// The result code (`refused` for a request refused before it ran).
    pub code: Code,
    /// The PRF tag's computed bits (hash table; 0 otherwise).
    pub tag: u32,
    /// How many low bits of `tag` were computed (24 for a write, fewer for
    /// a read of a small table, 0 when no tag was computed).
    pub tag_bits: u8,
    /// A write: the request's raft sequence number; a read: the table
    /// cursor its batch ran at; a purge: how many records it removed.
    pub cursor: u64,
    /// A read (or lost marker): the read batch's id; 0 otherwise.
    pub batch: u64,
    /// An import row's index, or a read's position in its batch.
    pub row: u32,
    /// A purge: the last purged sequence number; 0 otherwise.
    pub aux: u64,
    /// This provider's share of the pseudonym key (field form).
    pub key: Option<Share>,
    /// This provider's XOR share of the key (when the part carried one).
    pub key_bits: Option<BitShare>,
    /// Endpoint shares: a write's new endpoint, a resolution's answer.
    pub endpoint: Vec<Share>,
    /// The chain hash before this record.
    pub prev: [u8; 32],
    /// The chain hash after this record ([`super::chain::link`]).
    pub hash: [u8; 32],
}

/// A stored record that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Unknown version byte.
    #[error("unknown record version {0}")]
    Version(u8),
    /// The bytes end early.
    #[error("record truncated at byte {0}")]
    Truncated(usize),
    /// Bytes are left over.
    #[error("{0} bytes after the record")]
    Trailing(usize),
    /// A field holds an impossible value.
    #[error("bad {0}")]
    Field(&'static str),
}

impl Record {
    /// A record with only its agreed fields set (no shares, no chain yet).
    pub fn new(kind: RecordKind, request_id: &str, origin: [u8; 32], code: Code) -> Record {
        Record {
            seq: 0,
            at_ms: 0,
            kind,
            request_id: request_id.to_string(),
            origin,
            code,
            tag: 0,
            tag_bits: 0,
            cursor: 0,
            batch: 0,
            row: 0,
            aux: 0,
            key: None,
            key_bits: None,
            endpoint: Vec::new(),
            prev: [0; 32],
            hash: [0; 32],
        }
    }

    /// The fields equal at all three providers, canonically encoded: what
    /// the chain hashes. `with_seq` false leaves the sequence number out
    /// (a read batch is digested before the seal numbers it).
    pub fn agreed_bytes(&self, with_seq: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.request_id.len());
        if with_seq {
            out.extend_from_slice(&self.seq.to_le_bytes());
        }
        out.extend_from_slice(&self.at_ms.to_le_bytes());
        out.push(self.kind.byte());
        put_str(&mut out, &self.request_id);
        out.extend_from_slice(&self.origin);
        put_str(&mut out, self.code.as_str());
        out.extend_from_slice(&self.tag.to_le_bytes());
        out.push(self.tag_bits);
        out.extend_from_slice(&self.cursor.to_le_bytes());
        out.extend_from_slice(&self.batch.to_le_bytes());
        out.extend_from_slice(&self.row.to_le_bytes());
        out.extend_from_slice(&self.aux.to_le_bytes());
        out
    }

    /// The stored form: version, agreed fields, shares, chain hashes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.endpoint.len() * SHARE_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.agreed_bytes(true));
        match &self.key {
            Some(k) => {
                out.push(1);
                out.extend_from_slice(&encode_share(k));
            }
            None => out.push(0),
        }
        match &self.key_bits {
            Some(k) => {
                out.push(1);
                out.extend_from_slice(&k.to_bytes());
            }
            None => out.push(0),
        }
        out.push(self.endpoint.len().min(MAX_ENDPOINT) as u8);
        for s in self.endpoint.iter().take(MAX_ENDPOINT) {
            out.extend_from_slice(&encode_share(s));
        }
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&self.hash);
        out
    }

    /// Decodes [`Record::encode`]'s bytes, refusing anything else.
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let seq = r.u64()?;
        let at_ms = r.u64()?;
        let kind = RecordKind::from_byte(r.u8()?).ok_or(DecodeError::Field("kind"))?;
        let request_id = r.str()?;
        let origin = r.array::<32>()?;
        let code = Code::parse(&r.str()?).ok_or(DecodeError::Field("code"))?;
        let tag = u32::from_le_bytes(r.array::<4>()?);
        let tag_bits = r.u8()?;
        if tag_bits > 32 {
            return Err(DecodeError::Field("tag bits"));
        }
        let cursor = r.u64()?;
        let batch = r.u64()?;
        let row = u32::from_le_bytes(r.array::<4>()?);
        let aux = r.u64()?;
        let key = match r.u8()? {
            0 => None,
            1 => Some(decode_share(r.take(SHARE_LEN)?).map_err(|_| DecodeError::Field("key"))?),
            _ => return Err(DecodeError::Field("key flag")),
        };
        let key_bits = match r.u8()? {
            0 => None,
            1 => Some(
                BitShare::from_bytes(r.take(BIT_SHARE_LEN)?)
                    .ok_or(DecodeError::Field("key bits"))?,
            ),
            _ => return Err(DecodeError::Field("key bits flag")),
        };
        let n = r.u8()? as usize;
        if n > MAX_ENDPOINT {
            return Err(DecodeError::Field("endpoint length"));
        }
        let mut endpoint = Vec::with_capacity(n);
        for _ in 0..n {
            endpoint.push(
                decode_share(r.take(SHARE_LEN)?).map_err(|_| DecodeError::Field("endpoint"))?,
            );
        }
        let prev = r.array::<32>()?;
        let hash = r.array::<32>()?;
        if r.at != bytes.len() {
            return Err(DecodeError::Trailing(bytes.len() - r.at));
        }
        Ok(Record {
            seq,
            at_ms,
            kind,
            request_id,
            origin,
            code,
            tag,
            tag_bits,
            cursor,
            batch,
            row,
            aux,
            key,
            key_bits,
            endpoint,
            prev,
            hash,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Request ids are at most 128 bytes (proto limits); longer is cut at
    // u16::MAX, which no request reaches.
    let b = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(DecodeError::Truncated(self.at))?;
        let s = self
            .bytes
            .get(self.at..end)
            .ok_or(DecodeError::Truncated(self.at))?;
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array::<8>()?))
    }

    fn str(&mut self) -> Result<String, DecodeError> {
        let n = u16::from_le_bytes(self.array::<2>()?) as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Field("utf-8 string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sharecall_proto::Fp;

    pub(crate) fn sample() -> Record {
        let mut r = Record::new(RecordKind::Resolve, "req-1", [7; 32], Code::Ok);
        r.seq = 42;
        r.at_ms = 1_700_000_000_123;
        r.tag = 0x0abc;
        r.tag_bits = 12;
        r.cursor = 9;
        r.batch = 1_234_567;
        r.row = 3;
        r.key = Some(Share {
            first: Fp::from(5u64),
            second: Fp::from(6u64),
        });
        r.key_bits = Some(BitShare {
            first: 1 << 100,
            second: 77,
        });
        r.endpoint = (0..10u64)
            .map(|i| Share {
                first: Fp::from(i),
                second: Fp::from(i + 100),
            })
            .collect();
        r.prev = [1; 32];
        r.hash = [2; 32];
        r
    }

    #[test]
    fn records_round_trip_through_their_encoding() {
        let r = sample();
        assert_eq!(Record::decode(&r.encode()), Ok(r.clone()));
        let mut bare = Record::new(RecordKind::Purge, "", [0; 32], Code::Ok);
        bare.aux = 17;
        assert_eq!(Record::decode(&bare.encode()), Ok(bare));
    }

    #[test]
    fn broken_encodings_are_refused() {
        let bytes = sample().encode();
        for cut in [0, 1, 10, bytes.len() - 1] {
            assert!(Record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(Record::decode(&long), Err(DecodeError::Trailing(1)));
        let mut v = bytes.clone();
        v[0] = 9;
        assert_eq!(Record::decode(&v), Err(DecodeError::Version(9)));
        let mut k = bytes;
        k[17] = 99; // the kind byte, after version, seq and time
        assert_eq!(Record::decode(&k), Err(DecodeError::Field("kind")));
    }

    #[test]
    fn only_agreed_fields_are_in_the_agreed_bytes() {
        let a = sample();
        let mut b = a.clone();
        b.key = None;
        b.key_bits = None;
        b.endpoint.clear();
        b.prev = [9; 32];
        b.hash = [9; 32];
        assert_eq!(a.agreed_bytes(true), b.agreed_bytes(true));
        for change in [
            |r: &mut Record| r.code = Code::NotFound,
            |r: &mut Record| r.origin[0] ^= 1,
            |r: &mut Record| r.at_ms += 1,
            |r: &mut Record| r.tag ^= 1,
            |r: &mut Record| r.request_id.push('x'),
            |r: &mut Record| r.row += 1,
        ] {
            let mut c = a.clone();
            change(&mut c);
            assert_ne!(a.agreed_bytes(true), c.agreed_bytes(true));
        }
        let mut s = a.clone();
        s.seq += 1;
        assert_eq!(a.agreed_bytes(false), s.agreed_bytes(false));
        assert_ne!(a.agreed_bytes(true), s.agreed_bytes(true));
    }
}
