//! Fault injection for the end-to-end tests of this layer's integrity
//! checks. Compiled only with the cargo feature `fault-injection`; in any
//! other build every hook is a no-op that reads no environment.
//!
//! - `SHARECALL_FAULT_LOG_TIME_OFFSET_MS=<signed ms>`: the records this
//!   provider proposes (readiness records, sweeps) carry its clock shifted
//!   by that much.
//! - `SHARECALL_FAULT_TAMPER_TRANSCRIPTS=1`: this provider serves altered
//!   transcripts to a peer catching up.
//! - `SHARECALL_FAULT_ALTER_OUTCOME=1`: this provider's outcome of every
//!   write batch differs from the others' (its transcript's log time is
//!   shifted) just before the pre-commit agreement.
//! - `SHARECALL_FAULT_EXIT_BEFORE_COMMIT=<seq>`: the process exits after
//!   the pre-commit agreement of the live batch holding `seq` and before
//!   committing it, as a crash at the worst moment would.
//!
//! Answers, for the client library's checks (tests/tests/client_contract.rs).
//! Answers are sealed to the client, so a provider's lie must be told by
//! the provider. The first three change a resolution's answer only:
//!
//! - `SHARECALL_FAULT_TAMPER_ANSWERS=1`: the first component of the first
//!   endpoint share this provider returns is altered; `=both`: both
//!   components of element 3 are.
//! - `SHARECALL_FAULT_ANSWER_CODE=<code>`: it reports that result code
//!   (`not_found`, ...; `unavailable` withholds its answer share), with no
//!   endpoint share or extra data.
//! - `SHARECALL_FAULT_ANSWER_EXTRA=1`: it reports other extra data.
//! - `SHARECALL_FAULT_ANSWER_STATUS=500`: where it would answer `done` (any
//!   request) it answers HTTP 500; `=202`: `202 pending`, for ever.

use std::borrow::Cow;

use super::batch::{Answer, Transcript};

/// The clock of a record this provider proposes, `now_ms` shifted by the
/// test's offset.
pub fn proposed_time(now_ms: u64) -> u64 {
    #[cfg(feature = "fault-injection")]
    {
        if let Some(off) = std::env::var("SHARECALL_FAULT_LOG_TIME_OFFSET_MS")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        {
            tracing::warn!(off, "fault injection: shifting a proposed log time");
            return now_ms.saturating_add_signed(off);
        }
    }
    now_ms
}

/// Alters transcripts this provider serves to a peer (a provider lying
/// about a batch's outcome).
pub fn tamper_served(transcripts: &mut [Transcript]) {
    #[cfg(feature = "fault-injection")]
    {
        if std::env::var_os("SHARECALL_FAULT_TAMPER_TRANSCRIPTS").is_none() {
            return;
        }
        tracing::warn!("fault injection: serving tampered transcripts");
        for t in transcripts.iter_mut() {
            tamper(t);
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = transcripts;
}

/// Alters this provider's own outcome of a live write batch.
pub fn alter_outcome(t: &mut Transcript) {
    #[cfg(feature = "fault-injection")]
    {
        if std::env::var_os("SHARECALL_FAULT_ALTER_OUTCOME").is_none() {
            return;
        }
        tracing::warn!(from = t.from, "fault injection: altering a batch outcome");
        t.log_time_ms = t.log_time_ms.wrapping_add(1);
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = t;
}

/// A believable lie: the first new entry gets another owner (and its
/// expiry is pushed out), or the log time moves.
#[cfg(feature = "fault-injection")]
fn tamper(t: &mut Transcript) {
    use super::batch::ChangeRecord;
    for c in t.changes.iter_mut() {
        if let ChangeRecord::Put {
            owner,
            expires_at_ms,
            ..
        } = c
        {
            *owner = hex::encode([0xee; 32]);
            *expires_at_ms = expires_at_ms.saturating_add(1);
            return;
        }
    }
    t.log_time_ms = t.log_time_ms.wrapping_add(1);
}

/// Exits the process (code 86) between the pre-commit agreement and the
/// commit of the live batch holding the configured sequence number.
pub async fn exit_before_commit(t: &Transcript) {
    #[cfg(feature = "fault-injection")]
    {
        let Some(seq) = std::env::var("SHARECALL_FAULT_EXIT_BEFORE_COMMIT")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return;
        };
        if (t.from..=t.to).contains(&seq) {
            tracing::warn!(seq, "fault injection: exiting before commit");
            // The crash modelled is one after our digest reached the
            // peers (they commit without us): the agreement round only
            // queued the frames, so give the mesh writers time to send
            // them before the process goes.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            std::process::exit(86);
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = t;
}

/// The answer this provider reports for resolution answer `a`: `a`
/// itself, or the lie the test configured (`SHARECALL_FAULT_TAMPER_ANSWERS`,
/// `SHARECALL_FAULT_ANSWER_CODE`, `SHARECALL_FAULT_ANSWER_EXTRA`).
pub fn reported(a: &Answer) -> Cow<'_, Answer> {
    #[cfg(feature = "fault-injection")]
    {
        use super::batch::Code;
        let tamper = std::env::var("SHARECALL_FAULT_TAMPER_ANSWERS").ok();
        let code = std::env::var("SHARECALL_FAULT_ANSWER_CODE").ok();
        let extra = std::env::var_os("SHARECALL_FAULT_ANSWER_EXTRA").is_some();
        if tamper.is_none() && code.is_none() && !extra {
            return Cow::Borrowed(a);
        }
        let mut a = a.clone();
        if let Some(shares) = a.endpoint.as_mut() {
            match tamper.as_deref() {
                Some("both") => {
                    if let Some(s) = shares.get_mut(3) {
                        s.first += sharecall_proto::Fp::ONE;
                        s.second += sharecall_proto::Fp::from_u64(7);
                    }
                }
                Some(_) => {
                    if let Some(s) = shares.first_mut() {
                        s.first += sharecall_proto::Fp::ONE;
                    }
                }
                None => {}
            }
        }
        if extra && a.extra.is_some() {
            a.extra = Some(b"forged".to_vec());
        }
        if let Some(c) = code.as_deref().and_then(Code::parse) {
            tracing::warn!(
                code = c.as_str(),
                "fault injection: reporting another result code"
            );
            a = Answer::code(c);
        }
        Cow::Owned(a)
    }
    #[cfg(not(feature = "fault-injection"))]
    Cow::Borrowed(a)
}

/// What this provider answers instead of a `done` answer
/// (`SHARECALL_FAULT_ANSWER_STATUS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// HTTP 500.
    Internal,
    /// `202 pending`, for ever.
    Pending,
}

/// Whether this provider withholds its `done` answers, and how.
pub fn withheld() -> Option<Withheld> {
    #[cfg(feature = "fault-injection")]
    {
        match std::env::var("SHARECALL_FAULT_ANSWER_STATUS")
            .ok()
            .as_deref()
        {
            Some("500") => return Some(Withheld::Internal),
            Some("202") => return Some(Withheld::Pending),
            _ => {}
        }
    }
    None
}
