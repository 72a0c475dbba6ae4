//! One batch of ordered requests against the table: narrow (the
//! variant's SMC step, `Table::narrow`), compare (one `eq_reveal` for
//! every query against its candidates and against earlier writes of the
//! batch), decide (plaintext, from opened values only, in log order),
//! place the new entries (`Narrowed::place`: the tree's
//! `compare_bits`), re-randomise the answers (one resharing round),
//! verify. The batch knows the variant only through its
//! [`Table`](crate::tables::Table) trait.
//!
//! The decisions are recorded as a [`Transcript`]: public values only, so a
//! provider that missed the batch can apply it from its own parts without
//! running SMC ([`replay`]).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sharecall_proto::{Fp, Share, ShareVec};

use crate::smc::{linear, LaneSession, PrfKey, Reveal, SmcError};
use crate::tables::part::{Kind, Part};
use crate::tables::{
    Change, Changes, Data, Index, Insert, KeyShares, Meta, Query, TableError, Variant,
};

/// What a request asks of the table.
#[derive(Debug, Clone)]
pub enum Op {
    /// A table request with this provider's part.
    Table(Kind, Part),
    /// Many registrations at once, each with its owner (bulk import by
    /// an operator account).
    Import(Vec<(Part, [u8; 32])>),
    /// Remove every entry expired at the request's log time.
    Sweep,
    /// A record whose log time every provider found out of bounds
    /// ([`super::log_time`]): it changes nothing and a table request is
    /// answered [`Code::Refused`].
    Refused(String),
    /// Not a table request (e.g. an ordering probe): nothing to do.
    Skip,
}

/// One ordered request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Sequence number.
    pub seq: u64,
    /// Client request id.
    pub id: String,
    /// What it asks.
    pub op: Op,
    /// Effective log time ([`super::log_time::effective`]).
    pub at_ms: u64,
    /// The signing account.
    pub account: [u8; 32],
}

pub use sharecall_proto::answer::Code;

/// This provider's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Result code.
    pub code: Code,
    /// Resolve: the endpoint shares, re-randomised.
    pub endpoint: Option<Vec<Share>>,
    /// Resolve: the extra data.
    pub extra: Option<Vec<u8>>,
    /// Resolve: when the entry expires.
    pub expires_at_ms: Option<u64>,
    /// Import: entries registered and entries skipped (already present).
    pub imported: Option<(u64, u64)>,
}

impl Answer {
    pub(crate) fn code(code: Code) -> Answer {
        Answer {
            code,
            endpoint: None,
            extra: None,
            expires_at_ms: None,
            imported: None,
        }
    }
}

/// A change without shares: enough to redo it from one's own parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum ChangeRecord {
    /// Entry `slot` from the register request `request_id`.
    Put {
        /// Slot.
        slot: u64,
        /// The request whose part holds the shares.
        request_id: String,
        /// Expiry.
        expires_at_ms: u64,
        /// Owner (hex).
        owner: String,
        /// PRF tag.
        tag: u32,
        /// Import: which entry of the request's part.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub: Option<u32>,
    },
    /// Entry `slot` takes the endpoint of update request `request_id`.
    Update {
        /// Slot.
        slot: u64,
        /// The update request.
        request_id: String,
        /// New expiry.
        expires_at_ms: u64,
    },
    /// Entry `slot` is removed.
    Delete {
        /// Slot.
        slot: u64,
    },
}

/// The public record of one executed batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    /// First sequence number.
    pub from: u64,
    /// Last sequence number.
    pub to: u64,
    /// Table changes in order.
    pub changes: Vec<ChangeRecord>,
    /// (request id, kind, result code) per table operation (an import
    /// has one per entry).
    pub results: Vec<(String, String, Code)>,
    /// Tree: (predecessor, slot) of every new entry, in final order.
    pub inserts: Vec<(Option<u64>, u64)>,
    /// Whether the batch created the hash table's PRF key.
    pub created_prf_key: bool,
    /// The log time after the batch (never below the previous batch's).
    #[serde(default)]
    pub log_time_ms: u64,
    /// Records skipped because their log time was out of bounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<u64>,
    /// Per entry of `results`: the PRF tag's computed bits and how many
    /// there are (0 without a tag), for the share log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(u32, u8)>,
    /// The read batches this batch seals into the share log, in order
    /// (`sharelog::order`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sealed: Vec<crate::sharelog::order::SealRef>,
    /// Read batches named lost (a provider did not hold them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<u64>,
}

/// Everything a batch produced, to be committed in one transaction.
pub struct Outcome {
    /// Table changes.
    pub changes: Changes,
    /// Answers by request id.
    pub answers: Vec<(String, Answer)>,
    /// The public record.
    pub transcript: Transcript,
}

/// Why a batch could not run.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The SMC protocol failed.
    #[error(transparent)]
    Smc(#[from] SmcError),
    /// The table variant's step failed for another reason.
    #[error(transparent)]
    Table(TableError),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
    /// The transcript does not fit this provider's state.
    #[error("cannot replay: {0}")]
    Replay(String),
    /// The batch's log times are not what this provider sees: nothing was
    /// run or committed (see [`super::log_time`]).
    #[error("log time refused: {0}")]
    LogTime(String),
    /// The three providers' outcomes of the batch differ: nobody commits.
    #[error("the batch's outcome differs at provider {peers:?}: nothing committed")]
    Disagreement {
        /// The peers whose transcript digest differs from this provider's.
        peers: Vec<u8>,
    },
    /// Two peers serve different transcripts of one batch.
    #[error("catch-up refused: {0}")]
    CrossCheck(String),
}

impl From<TableError> for BatchError {
    fn from(e: TableError) -> BatchError {
        match e {
            // One variant for every SMC failure, wherever it happened.
            TableError::Smc(e) => BatchError::Smc(e),
            e => BatchError::Table(e),
        }
    }
}

/// Where a live entry's endpoint shares are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Stored(u64),
    Request(usize),
}

#[derive(Debug, Clone)]
struct Live {
    slot: u64,
    owner: [u8; 32],
    expires_at_ms: u64,
    source: Source,
}

/// The state of a key after a successful write in the batch.
#[derive(Debug, Clone)]
enum After {
    Live(Live),
    Gone,
}

/// What a request found for its key.
enum Found {
    Live(Live),
    Expired(u64),
    Absent,
}

/// Runs a batch on `session` against `variant`'s table; nothing is
/// committed here.
pub async fn run(
    variant: &Variant,
    index: &Index,
    db: &redb::Database,
    session: &mut LaneSession,
    requests: &[Request],
) -> Result<Outcome, BatchError> {
    let me = session.party();
    let from = requests.first().map(|r| r.seq).unwrap_or(index.cursor + 1);
    let to = requests.last().map(|r| r.seq).unwrap_or(index.cursor);
    let items = items(requests);
    let queries: Vec<Query> = items
        .iter()
        .map(|it| Query {
            key: it.part.key,
            key_bits: it.part.key_bits.unwrap_or_default(),
            writes: it.kind.writes(),
            run: it.sub.map(|_| it.pos),
        })
        .collect();

    let table = variant.table();
    // A keyed variant's key is made (with no traffic) by the first batch.
    let created_key: Option<PrfKey> = table.create_key(index, session, &queries)?;
    let prf_key = created_key.as_ref().or(index.prf_key.as_ref());
    let started = std::time::Instant::now();
    let narrowed = table.narrow(index, prf_key, session, &queries).await?;
    let narrowed_us = started.elapsed().as_micros() as u64;

    // Equality: each query against its stored candidates and the batch's
    // earlier writes that may share its key. One eq_reveal on field
    // shares; a variant that settled its candidates while narrowing (the
    // tree, in the leaf) compares XOR shares instead.
    let compares = table.compares();
    let mut a = ShareVec::default();
    let mut b = ShareVec::default();
    let mut a_bits = Vec::new();
    let mut b_bits = Vec::new();
    let mut pairs: Vec<(usize, Target)> = Vec::new();
    let mut settled: Vec<((usize, Target), bool)> = Vec::new();
    for (q, it) in items.iter().enumerate() {
        let p = it.part;
        let leaf = narrowed.settled(q);
        for (c, &slot) in narrowed.candidates(q).iter().enumerate() {
            if let Some(eq) = leaf {
                settled.push((
                    (q, Target::Stored(slot)),
                    eq.get(c).copied().unwrap_or(false),
                ));
                continue;
            }
            let m = index
                .meta
                .get(&slot)
                .ok_or_else(|| BatchError::Store(format!("slot {slot} missing from the index")))?;
            a.push(p.key);
            b.push(m.key);
            pairs.push((q, Target::Stored(slot)));
        }
        for (e, earlier) in items.iter().enumerate().take(q) {
            if earlier.kind.writes() && narrowed.may_equal(e, q) {
                match compares {
                    KeyShares::Bits => {
                        a_bits.push(queries[q].key_bits);
                        b_bits.push(queries[e].key_bits);
                    }
                    KeyShares::Field => {
                        a.push(p.key);
                        b.push(earlier.part.key);
                    }
                }
                pairs.push((q, Target::Earlier(e)));
            }
        }
    }
    let mut equal = if a.is_empty() {
        Vec::new()
    } else {
        session.eq_reveal(&a, &b).await?
    };
    let reveal = vec![Reveal::Equal; a_bits.len()];
    for c in session.compare_bits(&a_bits, &b_bits, &reveal).await? {
        equal.push(c.equal == Some(true));
    }
    let mut stored_match: HashMap<usize, u64> = HashMap::new();
    let mut earlier_match: HashMap<usize, Vec<usize>> = HashMap::new();
    // `equal` is in `pairs` order: a variant comparing XOR shares has
    // only XOR pairs (its stored candidates are all settled), any other
    // only field pairs.
    let compared = pairs.iter().zip(equal.iter().copied());
    for ((q, t), eq) in settled.iter().map(|(p, e)| (p, *e)).chain(compared) {
        if eq {
            match t {
                Target::Stored(slot) => {
                    stored_match.insert(*q, *slot);
                }
                Target::Earlier(e) => earlier_match.entry(*q).or_default().push(*e),
            }
        }
    }

    // Decide in log order.
    let mut after: Vec<Option<After>> = vec![None; items.len()];
    let mut codes: Vec<Code> = Vec::with_capacity(items.len());
    let mut resolved: Vec<(usize, Live)> = Vec::new();
    let mut ops: Vec<Change> = Vec::new();
    let mut records: Vec<ChangeRecord> = Vec::new();
    let mut inserted: Vec<Insert> = Vec::new();
    let mut deleted: HashSet<u64> = HashSet::new();
    for (q, it) in items.iter().enumerate() {
        let r = &requests[it.pos];
        let (kind, part) = (&it.kind, it.part);
        let latest = earlier_match
            .get(&q)
            .and_then(|es| es.iter().rev().find_map(|e| after[*e].clone()));
        let found = match latest {
            Some(After::Live(l)) if l.expires_at_ms > r.at_ms => Found::Live(l),
            Some(After::Live(l)) => Found::Expired(l.slot),
            Some(After::Gone) => Found::Absent,
            None => match stored_match
                .get(&q)
                .and_then(|s| index.meta.get(s).map(|m| (*s, m)))
            {
                Some((slot, m)) if m.expires_at_ms > r.at_ms => Found::Live(Live {
                    slot,
                    owner: m.owner,
                    expires_at_ms: m.expires_at_ms,
                    source: Source::Stored(slot),
                }),
                Some((slot, _)) => Found::Expired(slot),
                None => Found::Absent,
            },
        };
        let expires = r.at_ms.saturating_add(part.ttl_s.saturating_mul(1000));
        let code = match (kind, found) {
            (Kind::Register | Kind::Import, Found::Live(_)) => Code::Exists,
            (Kind::Register | Kind::Import, found) => {
                if let Found::Expired(old) = found {
                    ops.push(Change::Delete(old));
                    records.push(ChangeRecord::Delete { slot: old });
                    deleted.insert(old);
                }
                let tag = narrowed.tag(q);
                ops.push(Change::Put(
                    it.slot,
                    Meta {
                        key: part.key,
                        expires_at_ms: expires,
                        owner: it.account,
                        tag,
                        key_bits: part.key_bits.unwrap_or_default(),
                    },
                    Data {
                        endpoint: part.endpoint.clone(),
                        extra: part.extra.clone(),
                    },
                ));
                records.push(ChangeRecord::Put {
                    slot: it.slot,
                    request_id: r.id.clone(),
                    expires_at_ms: expires,
                    owner: hex::encode(it.account),
                    tag,
                    sub: it.sub,
                });
                inserted.push((q, it.slot));
                after[q] = Some(After::Live(Live {
                    slot: it.slot,
                    owner: it.account,
                    expires_at_ms: expires,
                    source: Source::Request(q),
                }));
                Code::Ok
            }
            (Kind::Resolve, Found::Live(l)) => {
                resolved.push((q, l));
                Code::Ok
            }
            (Kind::Update | Kind::Delete, Found::Live(l)) if l.owner != it.account => {
                Code::Forbidden
            }
            (Kind::Update, Found::Live(l)) => {
                ops.push(Change::Update(
                    l.slot,
                    expires,
                    Data {
                        endpoint: part.endpoint.clone(),
                        extra: part.extra.clone(),
                    },
                ));
                records.push(ChangeRecord::Update {
                    slot: l.slot,
                    request_id: r.id.clone(),
                    expires_at_ms: expires,
                });
                after[q] = Some(After::Live(Live {
                    expires_at_ms: expires,
                    source: Source::Request(q),
                    ..l
                }));
                Code::Ok
            }
            (Kind::Delete, Found::Live(l)) => {
                ops.push(Change::Delete(l.slot));
                records.push(ChangeRecord::Delete { slot: l.slot });
                deleted.insert(l.slot);
                after[q] = Some(After::Gone);
                Code::Ok
            }
            (_, Found::Expired(_) | Found::Absent) => Code::NotFound,
        };
        codes.push(code);
    }

    // Sweeps remove what is expired at their log time (after the batch's
    // own changes; an expired entry is invisible to requests anyway).
    for r in requests.iter().filter(|r| matches!(r.op, Op::Sweep)) {
        for slot in expired_after(index, &ops, r.at_ms) {
            if deleted.insert(slot) {
                ops.push(Change::Delete(slot));
                records.push(ChangeRecord::Delete { slot });
            }
        }
    }

    // Place the surviving new entries (the ordered variant's comparison
    // level), then record each one's predecessor in the new order.
    let live_inserts: Vec<Insert> = inserted
        .iter()
        .copied()
        .filter(|(_, slot)| !deleted.contains(slot))
        .collect();
    let new_order = narrowed
        .place(index, &queries, &live_inserts, &deleted, session)
        .await?;
    let mut inserts: Vec<(Option<u64>, u64)> = Vec::new();
    if let Some(order) = &new_order {
        let new: HashSet<u64> = live_inserts.iter().map(|(_, s)| *s).collect();
        for (i, slot) in order.iter().enumerate() {
            if new.contains(slot) {
                inserts.push((i.checked_sub(1).map(|p| order[p]), *slot));
            }
        }
    }

    // Answers: the resolved endpoints, resharing with fresh randomness.
    let mut sources = ShareVec::default();
    let mut extras: Vec<Vec<u8>> = Vec::with_capacity(resolved.len());
    let n_el = sharecall_proto::encoding::ENDPOINT_ELEMENTS;
    for (_, l) in &resolved {
        let data = match l.source {
            Source::Request(e) => Data {
                endpoint: items[e].part.endpoint.clone(),
                extra: items[e].part.extra.clone(),
            },
            Source::Stored(slot) => Index::data(db, slot)
                .map_err(|e| BatchError::Store(e.to_string()))?
                .ok_or_else(|| BatchError::Store(format!("slot {slot} has no data")))?,
        };
        if data.endpoint.len() != n_el {
            return Err(BatchError::Store(format!("slot {} data is short", l.slot)));
        }
        for s in data.endpoint {
            sources.push(s);
        }
        extras.push(data.extra);
    }
    let ones = {
        let one = linear::constant(me, Fp::ONE);
        let mut v = ShareVec::with_capacity(sources.len());
        for _ in 0..sources.len() {
            v.push(one);
        }
        v
    };
    // Nobody acts on an opening before all three agree on it: the
    // re-randomising multiplication carries the check.
    let fresh = if sources.is_empty() {
        session.verify().await?;
        ShareVec::default()
    } else {
        session.mul_verify(&sources, &ones).await?
    };
    tracing::debug!(
        requests = requests.len(),
        narrow_us = narrowed_us,
        total_us = started.elapsed().as_micros() as u64,
        rounds = session.ops(),
        "batch computed"
    );

    let mut per_item: Vec<Answer> = Vec::with_capacity(items.len());
    let mut resolved_at = resolved.iter().enumerate().map(|(k, (q, l))| (*q, (k, l)));
    let mut next_resolved = resolved_at.next();
    for (q, code) in codes.iter().enumerate() {
        let mut answer = Answer::code(*code);
        if let Some((rq, (k, l))) = &next_resolved {
            if *rq == q {
                let endpoint: Vec<Share> =
                    (0..n_el).filter_map(|e| fresh.get(k * n_el + e)).collect();
                answer.endpoint = Some(endpoint);
                answer.extra = Some(extras[*k].clone());
                answer.expires_at_ms = Some(l.expires_at_ms);
                next_resolved = resolved_at.next();
            }
        }
        per_item.push(answer);
    }
    let mut results: Vec<(String, String, Code)> = items
        .iter()
        .zip(&codes)
        .map(|(it, code)| {
            let kind = if it.sub.is_some() {
                "import"
            } else {
                it.kind.as_str()
            };
            (requests[it.pos].id.clone(), kind.to_string(), *code)
        })
        .collect();
    let mut tags: Vec<(u32, u8)> = (0..items.len())
        .map(|q| (narrowed.tag(q), narrowed.tag_bits(q)))
        .collect();
    for r in requests {
        if let Op::Refused(kind) = &r.op {
            if Kind::parse(kind).is_some() {
                results.push((r.id.clone(), REFUSED.into(), Code::Refused));
                per_item.push(Answer::code(Code::Refused));
                tags.push((0, 0));
            }
        }
    }
    if tags.iter().all(|(_, bits)| *bits == 0) {
        tags.clear();
    }
    let answers = aggregate(&results, per_item);
    Ok(Outcome {
        changes: Changes {
            ops,
            new_order,
            prf_key: created_key.clone(),
            cursor: to,
        },
        answers,
        transcript: Transcript {
            from,
            to,
            changes: records,
            results,
            inserts,
            created_prf_key: created_key.is_some(),
            log_time_ms: 0,
            skipped: Vec::new(),
            tags,
            sealed: Vec::new(),
            lost: Vec::new(),
        },
    })
}

/// The kind recorded in a transcript's results for a refused request.
const REFUSED: &str = "refused";

/// One table operation of a batch (an import request holds many).
struct Item<'a> {
    /// Position of its request in the batch.
    pos: usize,
    kind: Kind,
    part: &'a Part,
    /// The entry's owner: the signing account, or an import row's owner.
    account: [u8; 32],
    /// The slot a registration would take: sequence number × 2^16 plus
    /// the import row, so every entry has a name all providers agree on.
    slot: u64,
    /// Import: the row within the request's part.
    sub: Option<u32>,
}

/// Largest number of rows in one import request.
pub const MAX_IMPORT_ROWS: usize = 1 << 16;

/// The slot of row `sub` of request `seq`.
pub fn slot_of(seq: u64, sub: u32) -> u64 {
    seq.saturating_mul(MAX_IMPORT_ROWS as u64) + u64::from(sub)
}

fn items(requests: &[Request]) -> Vec<Item<'_>> {
    let mut out = Vec::new();
    for (pos, r) in requests.iter().enumerate() {
        match &r.op {
            Op::Table(kind, part) => out.push(Item {
                pos,
                kind: *kind,
                part,
                account: r.account,
                slot: slot_of(r.seq, 0),
                sub: None,
            }),
            Op::Import(rows) => {
                for (sub, (part, owner)) in rows.iter().enumerate().take(MAX_IMPORT_ROWS) {
                    out.push(Item {
                        pos,
                        kind: Kind::Register,
                        part,
                        account: *owner,
                        slot: slot_of(r.seq, sub as u32),
                        sub: Some(sub as u32),
                    });
                }
            }
            Op::Sweep | Op::Skip | Op::Refused(_) => {}
        }
    }
    out
}

/// One answer per request: an import's rows are counted (registered,
/// skipped because present); other requests have one operation each.
fn aggregate(results: &[(String, String, Code)], per_item: Vec<Answer>) -> Vec<(String, Answer)> {
    let mut out: Vec<(String, Answer)> = Vec::new();
    for ((id, kind, code), answer) in results.iter().zip(per_item) {
        if kind == "import" {
            let (ok, skipped) = (u64::from(*code == Code::Ok), u64::from(*code != Code::Ok));
            match out.last_mut() {
                Some((last, a)) if last == id => {
                    if let Some((o, s)) = a.imported.as_mut() {
                        *o += ok;
                        *s += skipped;
                    }
                }
                _ => {
                    let mut a = Answer::code(Code::Ok);
                    a.imported = Some((ok, skipped));
                    out.push((id.clone(), a));
                }
            }
        } else {
            out.push((id.clone(), answer));
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Stored(u64),
    Earlier(usize),
}

/// Slots that are live after `ops` but expired at `at_ms`.
fn expired_after(index: &Index, ops: &[Change], at_ms: u64) -> Vec<u64> {
    let mut expiry: std::collections::BTreeMap<u64, u64> = index
        .meta
        .iter()
        .map(|(s, m)| (*s, m.expires_at_ms))
        .collect();
    for op in ops {
        match op {
            Change::Put(slot, m, _) => {
                expiry.insert(*slot, m.expires_at_ms);
            }
            Change::Update(slot, e, _) => {
                if let Some(x) = expiry.get_mut(slot) {
                    *x = *e;
                }
            }
            Change::Delete(slot) => {
                expiry.remove(slot);
            }
        }
    }
    expiry
        .into_iter()
        .filter(|(_, e)| *e <= at_ms)
        .map(|(s, _)| s)
        .collect()
}

/// What this provider itself holds of a request a transcript names.
#[derive(Debug, Clone)]
pub struct Held {
    /// Its part (row `sub` of an import).
    pub part: Part,
    /// The request's kind as this provider stored it.
    pub kind: String,
    /// The entry's owner: the signing account this provider verified, or
    /// the import row's owner.
    pub owner: [u8; 32],
    /// Its sequence number in this provider's log.
    pub seq: u64,
}

/// Applies a peer's transcript with this provider's own parts: the same
/// changes, no SMC. `held` gives what this provider holds of a request;
/// `times` the effective log time of each of the batch's records, from
/// this provider's log. Every record is compared with both: a Put's
/// slot, owner and expiry, an Update's expiry, and the request's kind and
/// place in the batch must be what this provider's own log and parts
/// give, or the transcript is refused.
pub fn replay(
    variant: &Variant,
    index: &Index,
    t: &Transcript,
    times: &std::collections::BTreeMap<u64, u64>,
    mut held: impl FnMut(&str, Kind, Option<u32>) -> Result<Held, BatchError>,
) -> Result<Outcome, BatchError> {
    if t.from != index.cursor + 1 {
        return Err(BatchError::Replay(format!(
            "transcript starts at {}, this provider is at {}",
            t.from, index.cursor
        )));
    }
    if t.created_prf_key && index.prf_key.is_none() {
        return Err(BatchError::Replay(
            "the batch created the PRF key, whose share cannot be replayed".into(),
        ));
    }
    let mut ops = Vec::with_capacity(t.changes.len());
    let mut deleted = HashSet::new();
    for c in &t.changes {
        ops.push(match c {
            ChangeRecord::Put {
                slot,
                request_id,
                expires_at_ms,
                owner,
                tag,
                sub,
            } => {
                let h = held(request_id, Kind::Register, *sub)?;
                let mut o = [0u8; 32];
                hex::decode_to_slice(owner, &mut o)
                    .map_err(|_| BatchError::Replay("owner is not hex".into()))?;
                let expected_kind = if sub.is_some() { "import" } else { "register" };
                let at = in_batch(t, times, request_id, &h, &[expected_kind])?;
                if *slot != slot_of(h.seq, sub.unwrap_or(0)) {
                    return Err(mismatch(
                        request_id,
                        "slot",
                        slot,
                        slot_of(h.seq, sub.unwrap_or(0)),
                    ));
                }
                if o != h.owner {
                    return Err(mismatch(request_id, "owner", owner, hex::encode(h.owner)));
                }
                let expires = at.saturating_add(h.part.ttl_s.saturating_mul(1000));
                if *expires_at_ms != expires {
                    return Err(mismatch(request_id, "expiry", expires_at_ms, expires));
                }
                let part = h.part;
                Change::Put(
                    *slot,
                    Meta {
                        key: part.key,
                        expires_at_ms: *expires_at_ms,
                        owner: o,
                        tag: *tag,
                        key_bits: part.key_bits.unwrap_or_default(),
                    },
                    Data {
                        endpoint: part.endpoint,
                        extra: part.extra,
                    },
                )
            }
            ChangeRecord::Update {
                slot,
                request_id,
                expires_at_ms,
            } => {
                let h = held(request_id, Kind::Update, None)?;
                let at = in_batch(t, times, request_id, &h, &["update"])?;
                let expires = at.saturating_add(h.part.ttl_s.saturating_mul(1000));
                if *expires_at_ms != expires {
                    return Err(mismatch(request_id, "expiry", expires_at_ms, expires));
                }
                let part = h.part;
                Change::Update(
                    *slot,
                    *expires_at_ms,
                    Data {
                        endpoint: part.endpoint,
                        extra: part.extra,
                    },
                )
            }
            ChangeRecord::Delete { slot } => {
                deleted.insert(*slot);
                Change::Delete(*slot)
            }
        });
    }
    for r in &t.skipped {
        if *r < t.from || *r > t.to {
            return Err(BatchError::Replay(format!(
                "skipped record {r} is outside the batch {}..={}",
                t.from, t.to
            )));
        }
    }
    let new_order = variant.replay_order(index, &deleted, &t.inserts);
    let per_item = t
        .results
        .iter()
        .map(|(_, kind, code)| {
            // A resolve's answer share needed SMC; the writes did not.
            let code = if *code == Code::Ok && kind == Kind::Resolve.as_str() {
                Code::Unavailable
            } else {
                *code
            };
            Answer::code(code)
        })
        .collect();
    let answers = aggregate(&t.results, per_item);
    Ok(Outcome {
        changes: Changes {
            ops,
            new_order,
            prf_key: None,
            cursor: t.to,
        },
        answers,
        transcript: t.clone(),
    })
}

/// The effective log time of request `id` (held as `h`), checking that it
/// is one of the batch's in-bounds records of one of `kinds`.
fn in_batch(
    t: &Transcript,
    times: &std::collections::BTreeMap<u64, u64>,
    id: &str,
    h: &Held,
    kinds: &[&str],
) -> Result<u64, BatchError> {
    if !(t.from..=t.to).contains(&h.seq) {
        return Err(BatchError::Replay(format!(
            "request {id} is number {} here, outside the batch {}..={}",
            h.seq, t.from, t.to
        )));
    }
    if !kinds.contains(&h.kind.as_str()) {
        return Err(BatchError::Replay(format!(
            "request {id} is a {} here, the transcript uses it as {}",
            h.kind,
            kinds.join(" or ")
        )));
    }
    times.get(&h.seq).copied().ok_or_else(|| {
        BatchError::Replay(format!(
            "request {id} (number {}) is skipped or untimed here",
            h.seq
        ))
    })
}

fn mismatch(
    id: &str,
    what: &str,
    got: impl std::fmt::Display,
    mine: impl std::fmt::Display,
) -> BatchError {
    BatchError::Replay(format!(
        "request {id}: the transcript's {what} is {got}, this provider's own records give {mine}"
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sharecall_proto::encoding::ENDPOINT_ELEMENTS;

    use super::*;

    fn part(ttl_s: u64) -> Part {
        Part {
            key: Share::default(),
            key_bits: None,
            endpoint: vec![Share::default(); ENDPOINT_ELEMENTS],
            ttl_s,
            extra: Vec::new(),
        }
    }

    fn transcript(owner: [u8; 32], expires_at_ms: u64) -> Transcript {
        Transcript {
            from: 1,
            to: 1,
            changes: vec![ChangeRecord::Put {
                slot: slot_of(1, 0),
                request_id: "r".into(),
                expires_at_ms,
                owner: hex::encode(owner),
                tag: 7,
                sub: None,
            }],
            results: vec![("r".into(), "register".into(), Code::Ok)],
            inserts: Vec::new(),
            created_prf_key: false,
            log_time_ms: 1_000,
            skipped: Vec::new(),
            tags: Vec::new(),
            sealed: Vec::new(),
            lost: Vec::new(),
        }
    }

    fn replayed(t: &Transcript) -> Result<(), BatchError> {
        let variant: Variant = "list".parse().expect("variant");
        let index = Index::default();
        let times: BTreeMap<u64, u64> = [(1, 1_000)].into();
        replay(&variant, &index, t, &times, |_, _, _| {
            Ok(Held {
                part: part(60),
                kind: "register".into(),
                owner: [1; 32],
                seq: 1,
            })
        })
        .map(|_| ())
    }

    #[test]
    fn replay_compares_every_record_with_this_providers_own() {
        // What this provider holds: owner [1; 32], log time 1 000, ttl 60 s.
        assert!(replayed(&transcript([1; 32], 61_000)).is_ok());
        let e = replayed(&transcript([2; 32], 61_000)).expect_err("another owner");
        assert!(e.to_string().contains("owner"), "{e}");
        let e = replayed(&transcript([1; 32], 61_001)).expect_err("another expiry");
        assert!(e.to_string().contains("expiry"), "{e}");
        let mut t = transcript([1; 32], 61_000);
        if let Some(ChangeRecord::Put { slot, .. }) = t.changes.first_mut() {
            *slot += 1;
        }
        let e = replayed(&t).expect_err("another slot");
        assert!(e.to_string().contains("slot"), "{e}");
    }
}
