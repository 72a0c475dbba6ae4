//! What an executed batch leaves in the log: its records, built from the
//! batch's requests (this provider's own parts) and its public outcome.
//! The agreed fields come from values all three providers hold alike (the
//! replicated log, the agreed transcript, the coordinator's named read
//! batch); only the shares are this provider's own.

use std::collections::HashMap;

use sharecall_proto::answer::Code;

use super::record::{Record, RecordKind};
use crate::execution::batch::{Answer, Op, Request, Transcript};
use crate::tables::part::Part;

fn with_part(mut r: Record, part: &Part, endpoint: bool) -> Record {
    r.key = Some(part.key);
    r.key_bits = part.key_bits;
    if endpoint {
        r.endpoint = part.endpoint.clone();
    }
    r
}

/// The records of a write batch: one per table operation of its
/// transcript (an import has one per row), in the transcript's order,
/// refused requests included. `refused_part` gives this provider's part
/// of a refused request (its shares are logged too).
pub fn write_records(
    requests: &[Request],
    t: &Transcript,
    mut refused_part: impl FnMut(&str, &str) -> Option<Part>,
) -> Vec<Record> {
    let by_id: HashMap<&str, &Request> = requests.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut rows: HashMap<&str, u32> = HashMap::new();
    let mut out = Vec::with_capacity(t.results.len());
    for (i, (id, _, code)) in t.results.iter().enumerate() {
        let Some(req) = by_id.get(id.as_str()) else {
            continue;
        };
        let (tag, bits) = t.tags.get(i).copied().unwrap_or((0, 0));
        let base = |k: RecordKind| {
            let mut r = Record::new(k, id, req.account, *code);
            r.at_ms = req.at_ms;
            r.cursor = req.seq;
            r.tag = tag;
            r.tag_bits = bits;
            r
        };
        let record = match &req.op {
            Op::Table(k, part) => {
                let Some(rk) = RecordKind::of_request(k.as_str()) else {
                    continue;
                };
                let endpoint = matches!(rk, RecordKind::Register | RecordKind::Update);
                with_part(base(rk), part, endpoint)
            }
            Op::Import(parts) => {
                let row = rows.entry(id.as_str()).or_insert(0);
                let mut r = base(RecordKind::ImportRow);
                r.row = *row;
                *row += 1;
                match parts.get(r.row as usize) {
                    Some((part, _owner)) => with_part(r, part, true),
                    None => r,
                }
            }
            Op::Refused(stored_kind) => {
                let Some(rk) = RecordKind::of_request(stored_kind) else {
                    continue;
                };
                let r = base(rk);
                match refused_part(id, stored_kind) {
                    Some(part) => {
                        let endpoint = matches!(rk, RecordKind::Register | RecordKind::Update);
                        with_part(r, &part, endpoint)
                    }
                    None => r,
                }
            }
            Op::Sweep | Op::Skip => continue,
        };
        out.push(record);
    }
    out
}

/// The records of read batch `batch` run at cursor `at` and time `at_ms`:
/// one per resolution, in the batch's order, with the answer's endpoint
/// shares when found. `tags` are the transcript's (empty when the batch
/// ran without SMC).
pub fn read_records(
    at: u64,
    batch: u64,
    at_ms: u64,
    requests: &[Request],
    answers: &[(String, Answer)],
    tags: &[(u32, u8)],
) -> Vec<Record> {
    let answers: HashMap<&str, &Answer> = answers.iter().map(|(id, a)| (id.as_str(), a)).collect();
    requests
        .iter()
        .enumerate()
        .filter_map(|(i, req)| {
            let Op::Table(_, part) = &req.op else {
                return None;
            };
            let answer = answers.get(req.id.as_str());
            let code = answer.map_or(Code::Unavailable, |a| a.code);
            let mut r = Record::new(RecordKind::Resolve, &req.id, req.account, code);
            r.at_ms = at_ms;
            r.cursor = at;
            r.batch = batch;
            r.row = i as u32;
            let (tag, bits) = tags.get(i).copied().unwrap_or((0, 0));
            r.tag = tag;
            r.tag_bits = bits;
            let mut r = with_part(r, part, false);
            if let Some(e) = answer.and_then(|a| a.endpoint.as_ref()) {
                r.endpoint = e.clone();
            }
            Some(r)
        })
        .collect()
}

/// The marker of a read batch named in a seal that a provider did not
/// hold: all three log it alike, so the gap is in the chain.
pub fn lost_record(batch: u64, at: u64, at_ms: u64) -> Record {
    let mut r = Record::new(RecordKind::ReadsLost, "", [0; 32], Code::Unavailable);
    r.at_ms = at_ms;
    r.cursor = at;
    r.batch = batch;
    r
}
