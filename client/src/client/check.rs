//! Answers checked against each other: the three providers' result codes
//! must agree (the odd one is named), endpoint shares are reconstructed
//! with every component compared between its two holders, and a provider
//! that answers `unavailable` or fails is left out ([`Degraded`]).

use super::*;

/// One provider's final reply to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderReply {
    /// Executed (`status: done`), with this provider's result.
    Done {
        /// Position in the providers' common order.
        seq: Option<u64>,
        /// The result.
        result: RequestResult,
    },
    /// No usable answer.
    Failed(ProviderError),
}

/// A provider left out of an answer, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    /// The provider whose answer is missing.
    pub missing: PartyId,
    /// Why it is missing.
    pub reason: ProviderError,
    /// The two providers the answer comes from.
    pub from: [PartyId; 2],
    /// The endpoint share components (0..=2) that could not be compared
    /// between two holders: with two answers only the one component both
    /// hold is checked (set on an `ok` resolution, empty otherwise).
    pub unchecked: Vec<usize>,
    /// The request id of the earlier attempt that was also degraded, when
    /// the client retried ([`Client::resolve`] retries once).
    pub retried_from: Option<String>,
}

impl fmt::Display for Degraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "answer from {} and {} only; {} {}",
            self.from[0], self.from[1], self.missing, self.reason
        )?;
        if !self.unchecked.is_empty() {
            let names: Vec<String> = self.unchecked.iter().map(|c| format!("x{c}")).collect();
            write!(
                f,
                "; endpoint share components {} NOT checked (a provider could have altered them)",
                names.join(" and ")
            )?;
        }
        if let Some(id) = &self.retried_from {
            write!(f, "; also degraded on the first attempt (request {id})")?;
        }
        Ok(())
    }
}

/// The components no two of `from` both hold, i.e. the ones a
/// two-provider reconstruction cannot compare.
pub(super) fn unchecked_components(from: [PartyId; 2]) -> Vec<usize> {
    (0..3)
        .filter(|&c| {
            let h = holders_of(c);
            !(h.contains(&from[0]) && h.contains(&from[1]))
        })
        .collect()
}

/// The checked outcome of a request at all three providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The request id.
    pub request_id: String,
    /// The request kind.
    pub kind: Kind,
    /// The result code the answering providers agree on (never
    /// `unavailable`).
    pub code: ResultCode,
    /// Each provider's reply, indexed by provider.
    pub replies: [ProviderReply; 3],
    /// Set when the outcome rests on two providers only.
    pub degraded: Option<Degraded>,
}

impl Submission {
    /// The providers whose results make up the outcome (two or three).
    pub fn used(&self) -> Vec<PartyId> {
        PartyId::ALL
            .into_iter()
            .filter(|p| self.degraded.as_ref().is_none_or(|d| d.missing != *p))
            .collect()
    }

    pub(super) fn result(&self, p: PartyId) -> Option<&RequestResult> {
        match &self.replies[p.index()] {
            ProviderReply::Done { result, .. } => Some(result),
            ProviderReply::Failed(_) => None,
        }
    }
}

/// The outcome of a `register`, `update` or `delete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The request id.
    pub request_id: String,
    /// The agreed result code (`ok`, `exists`, `not_found`, `forbidden`).
    pub code: ResultCode,
    /// Set when only two providers answered.
    pub degraded: Option<Degraded>,
}

/// The outcome of a `resolve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The request id.
    pub request_id: String,
    /// `ok` or `not_found`.
    pub code: ResultCode,
    /// The reconstructed endpoint (when `ok`).
    pub endpoint: Option<Endpoint>,
    /// The plain extra data stored with the entry (when `ok` and present).
    pub extra: Option<Vec<u8>>,
    /// When the entry expires, ms since the Unix epoch (when `ok`; the
    /// answering providers must agree on it).
    pub expires_at_ms: Option<u64>,
    /// Set when the endpoint was reconstructed from two providers only.
    pub degraded: Option<Degraded>,
}

/// The common value of `values`, or a [`Error::Disagreement`] naming the
/// odd provider when one differs from two others that agree.
pub(super) fn agree<T: PartialEq + Clone>(
    request_id: &str,
    what: &'static str,
    values: &[(PartyId, T)],
    show: impl Fn(&T) -> String,
) -> Result<T, Error> {
    let Some((_, first)) = values.first() else {
        return Err(Error::Config(format!("no {what} to compare")));
    };
    if values.iter().all(|(_, v)| v == first) {
        return Ok(first.clone());
    }
    Err(Error::Disagreement {
        request_id: request_id.to_owned(),
        what,
        odd: odd_one_out(values),
        values: values.iter().map(|(p, v)| (*p, show(v))).collect(),
    })
}

/// Of three values, the party whose value differs from the two others'
/// (which agree); `None` with fewer than three values or no such party.
pub(super) fn odd_one_out<T: PartialEq>(values: &[(PartyId, T)]) -> Option<PartyId> {
    let [(pa, a), (pb, b), (pc, c)] = values else {
        return None;
    };
    if b == c && a != b {
        Some(*pa)
    } else if a == c && b != a {
        Some(*pb)
    } else if a == b && c != a {
        Some(*pc)
    } else {
        None
    }
}

/// Turns a checked `import` submission into its counts, which the
/// answering providers must agree on.
pub fn import_outcome(s: Submission) -> Result<ImportOutcome, Error> {
    let counts: Vec<(PartyId, Option<(u64, u64)>)> = s
        .used()
        .into_iter()
        .filter_map(|p| s.result(p).map(|r| (p, r.imported)))
        .collect();
    let counts = agree(
        &s.request_id,
        "imported/skipped counts",
        &counts,
        |c| match c {
            Some((i, k)) => format!("imported {i}, skipped {k}"),
            None => "no counts".into(),
        },
    )?;
    let (imported, skipped) = match (s.code, counts) {
        (_, Some(c)) => c,
        (ResultCode::Ok, None) => {
            return Err(Error::Config(format!(
                "request {}: an ok import answer has no counts",
                s.request_id
            )))
        }
        (_, None) => (0, 0),
    };
    Ok(ImportOutcome {
        request_id: s.request_id,
        code: s.code,
        imported,
        skipped,
        degraded: s.degraded,
    })
}

pub(super) fn outcome(s: Submission) -> Outcome {
    Outcome {
        request_id: s.request_id,
        code: s.code,
        degraded: s.degraded,
    }
}

/// Checks the three providers' replies against each other: at least two
/// must have answered (not `unavailable`), and their result codes must
/// agree.
pub fn decide(
    request_id: &str,
    kind: Kind,
    urls: &[String; 3],
    replies: [ProviderReply; 3],
) -> Result<Submission, Error> {
    let mut answered: Vec<(PartyId, ResultCode)> = Vec::new();
    let mut missing: Vec<ProviderFailure> = Vec::new();
    for p in PartyId::ALL {
        let error = match &replies[p.index()] {
            ProviderReply::Done { result, .. } if result.code != ResultCode::Unavailable => {
                answered.push((p, result.code));
                continue;
            }
            ProviderReply::Done { .. } => ProviderError::Unavailable,
            ProviderReply::Failed(e) => e.clone(),
        };
        missing.push(ProviderFailure {
            provider: p,
            url: urls[p.index()].clone(),
            error,
        });
    }
    if answered.len() < 2 {
        missing.sort_by_key(|f| f.error.rank());
        return Err(Error::Failed {
            request_id: request_id.to_owned(),
            kind,
            failures: missing,
        });
    }
    let first = answered[0].1;
    if answered.iter().any(|(_, c)| *c != first) {
        let odd = odd_one_out(&answered);
        return Err(Error::Disagreement {
            request_id: request_id.to_owned(),
            what: "result code",
            odd,
            values: answered.iter().map(|(p, c)| (*p, c.to_string())).collect(),
        });
    }
    // The sequence number is the request's place in the common order: the
    // same at every provider.
    let seqs: Vec<(PartyId, Option<u64>)> = answered
        .iter()
        .map(|(p, _)| match &replies[p.index()] {
            ProviderReply::Done { seq, .. } => (*p, *seq),
            ProviderReply::Failed(_) => (*p, None),
        })
        .collect();
    agree(request_id, "sequence number", &seqs, |s| {
        s.map_or_else(|| "none".into(), |s| s.to_string())
    })?;
    let degraded = match (missing.pop(), answered.as_slice()) {
        (Some(f), [(a, _), (b, _)]) => Some(Degraded {
            missing: f.provider,
            reason: f.error,
            from: [*a, *b],
            unchecked: Vec::new(),
            retried_from: None,
        }),
        _ => None,
    };
    Ok(Submission {
        request_id: request_id.to_owned(),
        kind,
        code: first,
        replies,
        degraded,
    })
}

/// Turns a checked `resolve` submission into the endpoint: reconstructed
/// from all three providers' shares (every component checked against both
/// holders), or from the two that answered.
pub fn resolution(s: Submission) -> Result<Resolution, Error> {
    let mut r = Resolution {
        request_id: s.request_id.clone(),
        code: s.code,
        endpoint: None,
        extra: None,
        expires_at_ms: None,
        degraded: s.degraded.clone(),
    };
    if s.code != ResultCode::Ok {
        return Ok(r);
    }
    let used: Vec<(PartyId, &RequestResult)> = s
        .used()
        .into_iter()
        .filter_map(|p| s.result(p).map(|res| (p, res)))
        .collect();
    let shares = |res: &RequestResult| res.endpoint.clone().unwrap_or_default();
    r.endpoint = Some(match used.as_slice() {
        [(_, a), (_, b), (_, c)] => {
            let parts = [shares(a), shares(b), shares(c)];
            match reconstruct_endpoint(&parts) {
                Ok(e) => e,
                Err(ReconstructError::Inconsistent { .. }) => {
                    let (suspect, detail) = blame(&parts);
                    return Err(Error::Inconsistent {
                        request_id: s.request_id.clone(),
                        suspect,
                        detail,
                    });
                }
                Err(source) => {
                    return Err(Error::Reconstruct {
                        request_id: s.request_id.clone(),
                        source,
                    })
                }
            }
        }
        [(pa, a), (pb, b)] => {
            if let Some(d) = r.degraded.as_mut() {
                d.unchecked = unchecked_components([*pa, *pb]);
            }
            let missing = s
                .degraded
                .as_ref()
                .map(|d| d.missing)
                .unwrap_or(PartyId::ALL[0]);
            reconstruct_from_two((*pa, &shares(a)), (*pb, &shares(b))).map_err(|reason| {
                Error::ReconstructTwo {
                    request_id: s.request_id.clone(),
                    providers: [*pa, *pb],
                    missing,
                    reason,
                }
            })?
        }
        _ => {
            return Err(Error::Failed {
                request_id: s.request_id.clone(),
                kind: s.kind,
                failures: Vec::new(),
            })
        }
    });
    // Extra data and expiry are public at every provider (the expiry comes
    // from the common order): the copies must agree.
    let extras: Vec<(PartyId, Option<Vec<u8>>)> = used
        .iter()
        .map(|(p, res)| (*p, res.extra.clone()))
        .collect();
    let extra = agree(&s.request_id, "extra data", &extras, |e| {
        e.as_ref()
            .map_or_else(|| "none".into(), |b| format!("{} bytes", b.len()))
    })?;
    // Providers store no extra data as empty extra data.
    r.extra = extra.filter(|x| !x.is_empty());
    let expiries: Vec<(PartyId, Option<u64>)> = used
        .iter()
        .map(|(p, res)| (*p, res.expires_at_ms))
        .collect();
    r.expires_at_ms = agree(&s.request_id, "expiry (expires_at_ms)", &expiries, |t| {
        t.map_or_else(|| "none".into(), |t| t.to_string())
    })?;
    Ok(r)
}

/// Works out which provider's endpoint shares are wrong, over all elements
/// (`parts` indexed by provider, [`ENDPOINT_ELEMENTS`] shares each).
///
/// Every component is held by two providers. With one provider lying (the
/// honest-majority assumption), every disagreeing component involves it:
///
/// * if components with different holder pairs disagree, the one provider
///   in all those pairs is named;
/// * if only one component disagrees, its two holders' copies are each
///   tried: the honest copy reconstructs the true endpoint, which always
///   decodes, so when exactly one copy gives a valid endpoint the holder of
///   the other copy is named. When both or neither decode, both holders are
///   reported and none is named.
pub fn blame(parts: &[Vec<Share>; 3]) -> (Option<PartyId>, String) {
    let get = |p: PartyId, e: usize| parts[p.index()].get(e).copied().unwrap_or_default();
    let mut bad: Vec<(usize, usize)> = Vec::new(); // (component, element)
    for e in 0..ENDPOINT_ELEMENTS {
        for c in 0..3 {
            let [owner, other] = holders_of(c);
            if get(owner, e).first != get(other, e).second {
                bad.push((c, e));
            }
        }
    }
    let mut components: Vec<usize> = bad.iter().map(|(c, _)| *c).collect();
    components.sort_unstable();
    components.dedup();
    let elements = |c: usize| {
        bad.iter()
            .filter(|(d, _)| *d == c)
            .map(|(_, e)| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match components.as_slice() {
        [] => (None, "the endpoint shares are consistent".into()),
        [c] => {
            let c = *c;
            let [owner, other] = holders_of(c);
            // All other components agree; build the endpoint with either
            // holder's copy of component c.
            let candidate = |use_owner: bool| {
                let elements: Vec<Fp> = (0..ENDPOINT_ELEMENTS)
                    .map(|e| {
                        (0..3)
                            .map(|k| {
                                let [o, p] = holders_of(k);
                                if k == c && !use_owner {
                                    get(p, e).second
                                } else {
                                    get(o, e).first
                                }
                            })
                            .sum()
                    })
                    .collect();
                Endpoint::unpack(&elements).is_ok()
            };
            let what = format!(
                "share component x{c} disagrees between {owner} and {other} (endpoint element {})",
                elements(c)
            );
            match (candidate(true), candidate(false)) {
                (true, false) => (
                    Some(other),
                    format!(
                        "{other} returned an inconsistent endpoint share: {what}, \
                         and only {owner}'s copy gives a valid endpoint"
                    ),
                ),
                (false, true) => (
                    Some(owner),
                    format!(
                        "{owner} returned an inconsistent endpoint share: {what}, \
                         and only {other}'s copy gives a valid endpoint"
                    ),
                ),
                _ => (
                    None,
                    format!("{what}; one of them returned an inconsistent share"),
                ),
            }
        }
        many => {
            let suspect = PartyId::ALL
                .into_iter()
                .find(|p| many.iter().all(|&c| holders_of(c).contains(p)));
            let what = many
                .iter()
                .map(|&c| format!("x{c} (element {})", elements(c)))
                .collect::<Vec<_>>()
                .join(", ");
            match suspect {
                Some(p) => (
                    Some(p),
                    format!(
                        "{p} returned inconsistent endpoint shares: its copies of \
                         share components {what} disagree with both other providers"
                    ),
                ),
                None => (
                    None,
                    format!("endpoint share components {what} disagree between providers"),
                ),
            }
        }
    }
}

/// Rebuilds an endpoint from two providers' share vectors, comparing the
/// component both hold for every element.
pub fn reconstruct_from_two(
    a: (PartyId, &[Share]),
    b: (PartyId, &[Share]),
) -> Result<Endpoint, String> {
    let mut elements = Vec::with_capacity(ENDPOINT_ELEMENTS);
    for i in 0..ENDPOINT_ELEMENTS {
        let (Some(&sa), Some(&sb)) = (a.1.get(i), b.1.get(i)) else {
            return Err(format!(
                "expected {ENDPOINT_ELEMENTS} endpoint shares from each provider"
            ));
        };
        let x = reconstruct_two((a.0, sa), (b.0, sb))
            .map_err(|e| format!("endpoint element {i}: {e}"))?;
        elements.push(x);
    }
    Endpoint::unpack(&elements).map_err(|e| format!("the reconstructed endpoint is not valid: {e}"))
}
