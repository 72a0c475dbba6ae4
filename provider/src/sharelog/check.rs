//! The cross-check of the three chains: the `log-check` task kind.
//!
//! A job through the orchestration core like every other (the LI jobs of
//! a later issue call [`check_heads`] before they read the log): the
//! gateway names a position (its own count); every peer verifies its own
//! stored chain up to there ([`super::store::verify`]: each record hashes
//! to its link and follows the one before, from the last purge's base) and
//! outputs the link at that position. The gateway accepts only byte-equal
//! outputs from all three, and its error names the provider that differs
//! or whose chain does not verify.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::store;
use crate::execution::Executor;
use crate::orchestration::{Computation, ComputationError, Gateway, JobError, Refusal, TaskKind};
use crate::smc::LaneSession;

/// The kind's wire name.
pub const LOG_CHECK: TaskKind = TaskKind::new("log-check");

/// How long a peer waits for its log to reach the checked position (the
/// batch that made it may commit here a moment after the gateway).
const REACH_WAIT: Duration = Duration::from_secs(2);

/// Parameters of a `log-check` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckParams {
    /// The position whose link the three compare.
    pub through: u64,
}

/// What all three providers output: the agreed link at `through`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    /// The position checked.
    pub through: u64,
    /// The chain's link there (hex), equal at all three.
    pub link: String,
}

/// Why this provider fails a check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Bad parameters.
    #[error("bad log-check parameters: {0}")]
    Params(String),
    /// This provider's log has not reached the position.
    #[error("this provider's share log has {have} records, the check is at {through}")]
    Behind {
        /// Records here.
        have: u64,
        /// Position checked.
        through: u64,
    },
    /// This provider's stored chain does not verify.
    #[error("this provider's share log does not verify: {0}")]
    Chain(#[from] store::VerifyError),
    /// The position was purged here.
    #[error("position {0} was purged here")]
    Purged(u64),
}

/// The `log-check` computation.
pub struct LogCheck(Arc<Executor>);

impl LogCheck {
    /// Checks `executor`'s share log.
    pub fn new(executor: Arc<Executor>) -> LogCheck {
        LogCheck(executor)
    }

    async fn check(&self, params: &[u8]) -> Result<Vec<u8>, CheckError> {
        let p: CheckParams =
            serde_json::from_slice(params).map_err(|e| CheckError::Params(e.to_string()))?;
        let db = self.0.share_log_db();
        let deadline = tokio::time::Instant::now() + REACH_WAIT;
        loop {
            let have = store::state(db).map_err(store::VerifyError::from)?.count;
            if have >= p.through {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CheckError::Behind {
                    have,
                    through: p.through,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The whole stored chain up to the position, not just one link: an
        // altered record fails here even if it is far behind the head.
        let link = if p.through == 0 {
            [0u8; 32]
        } else {
            let s = store::state(db).map_err(store::VerifyError::from)?;
            if p.through + 1 < s.first {
                return Err(CheckError::Purged(p.through));
            }
            if p.through + 1 == s.first {
                s.base
            } else {
                store::verify(db, p.through)?
            }
        };
        let out = Checked {
            through: p.through,
            link: hex::encode(link),
        };
        serde_json::to_vec(&out).map_err(|e| CheckError::Params(e.to_string()))
    }
}

impl Computation for LogCheck {
    fn review(&self, params: &[u8]) -> Result<(), Refusal> {
        serde_json::from_slice::<CheckParams>(params)
            .map(|_| ())
            .map_err(|e| Refusal::BadParams(e.to_string()))
    }

    fn run<'a>(
        &'a self,
        _gateway: u32,
        params: &'a [u8],
        _session: &'a mut LaneSession,
    ) -> BoxFuture<'a, Result<Vec<u8>, ComputationError>> {
        Box::pin(async move { self.check(params).await.map_err(ComputationError::kind) })
    }
}

/// Why [`check_heads`] failed.
#[derive(Debug, thiserror::Error)]
pub enum HeadsError {
    /// The job failed: a provider's chain does not verify, its link
    /// differs (the gateway names it), or it could not be reached.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The agreed output did not decode.
    #[error("log-check output: {0}")]
    Output(String),
}

/// Compares the three providers' chains at `through` (a job through
/// `gateway`): `Ok` with the agreed link, or the job's error naming the
/// provider whose link differs or whose chain does not verify.
pub async fn check_heads(gateway: &Gateway, through: u64) -> Result<Checked, HeadsError> {
    let params = serde_json::to_vec(&CheckParams { through })
        .map_err(|e| HeadsError::Output(e.to_string()))?;
    let report = gateway
        .run(LOG_CHECK, &params, &format!("share log check at {through}"))
        .await?;
    serde_json::from_slice(&report.output).map_err(|e| HeadsError::Output(e.to_string()))
}
