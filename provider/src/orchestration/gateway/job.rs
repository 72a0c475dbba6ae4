//! What a job reports: its phases' timings on success, the failing phase,
//! peer and status on failure.

use serde::Serialize;
use sharecall_proto::control::{Phase, Status};

use crate::orchestration::status::{class_of, status_name, ErrorClass};

/// A phase of a job as the gateway reports it (in [`JobError`], in
/// [`PhaseTiming`] and as the `phase` metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobPhase {
    /// The gateway's own admission (capacity), before any peer is asked.
    Admission,
    /// Prepare: every peer reviews the task.
    Prepare,
    /// Link: the SMC mesh.
    Link,
    /// Session: the computation.
    Session,
    /// The fast path: one Session broadcast carrying the Prepare inline.
    FastPath,
    /// Abort.
    Abort,
    /// Finish.
    Finish,
    /// A phase the peer did not name.
    Unspecified,
}

impl JobPhase {
    /// The stable name (`admission`, `prepare`, ..., [`FAST_PHASE`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            JobPhase::Admission => "admission",
            JobPhase::Prepare => "prepare",
            JobPhase::Link => "link",
            JobPhase::Session => "session",
            JobPhase::FastPath => "prepare+session",
            JobPhase::Abort => "abort",
            JobPhase::Finish => "finish",
            JobPhase::Unspecified => "unspecified",
        }
    }
}

impl From<Phase> for JobPhase {
    fn from(p: Phase) -> JobPhase {
        match p {
            Phase::Prepare => JobPhase::Prepare,
            Phase::Link => JobPhase::Link,
            Phase::Session => JobPhase::Session,
            Phase::Abort => JobPhase::Abort,
            Phase::Finish => JobPhase::Finish,
            Phase::Unspecified => JobPhase::Unspecified,
        }
    }
}

impl std::fmt::Display for JobPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JobPhase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A finished job.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// The job id.
    pub job_id: u64,
    /// The task kind.
    pub kind: String,
    /// The public output all three peers agreed on (kind-specific).
    #[serde(skip)]
    pub output: Vec<u8>,
    /// Duration of each phase run, in order (retries included).
    pub phases: Vec<PhaseTiming>,
    /// Whether the job had to (re)link the SMC mesh.
    pub relinked: bool,
    /// Wall time of the whole job, in microseconds.
    pub total_us: u64,
}

/// Time spent in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTiming {
    /// `prepare`, `link`, `session`, or [`FAST_PHASE`] (`prepare+session`:
    /// the fast path's single Session broadcast carrying the Prepare).
    pub phase: JobPhase,
    /// Microseconds.
    pub us: u64,
}

/// Why a job failed: which phase, which peer, which status.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{phase} failed at {}: {} ({detail})", peer.map(|p| format!("provider {p}")).unwrap_or_else(|| "the gateway".into()), status_name(*status))]
pub struct JobError {
    /// The job id (0 if it never started).
    pub job_id: u64,
    /// The phase that failed.
    pub phase: JobPhase,
    /// The peer that reported (or caused) the failure.
    pub peer: Option<u32>,
    /// Its status.
    #[serde(serialize_with = "ser_status")]
    pub status: Status,
    /// The seed's error class.
    pub class: ErrorClass,
    /// Human-readable detail.
    pub detail: String,
}

fn ser_status<S: serde::Serializer>(s: &Status, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(status_name(*s))
}

impl JobError {
    pub(super) fn new(
        job_id: u64,
        phase: JobPhase,
        peer: Option<u32>,
        status: Status,
        detail: String,
    ) -> Self {
        JobError {
            job_id,
            phase,
            peer,
            status,
            class: class_of(status),
            detail,
        }
    }

    /// True if the job was refused because the gateway is at capacity.
    pub fn is_busy(&self) -> bool {
        self.phase == JobPhase::Admission
    }
}

/// Name of the fast path's phase in [`JobReport::phases`] and in the
/// `phase_duration` metric: one Session broadcast that carries the Prepare
/// inline. A job that shows only this phase cost one broadcast; one that
/// shows it followed by `prepare` fell back to the full path.
pub const FAST_PHASE: &str = JobPhase::FastPath.as_str();
