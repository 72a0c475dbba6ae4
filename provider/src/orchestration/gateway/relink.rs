//! The link procedure: a job's Link phase, run only when the peers do not
//! already agree on a healthy link epoch, and one at a time per gateway.

use std::time::Instant;

use futures::future::join_all;
use sharecall_proto::control::command::Body;
use sharecall_proto::control::{Link, Phase, PhaseResult, Status};
use tracing::debug;

use super::job::{JobError, JobPhase, JobReport};
use super::Gateway;
use crate::orchestration::task::TaskKind;

/// The epoch all three peers are healthily linked at, if they agree.
pub(super) fn agreed_epoch(states: impl Iterator<Item = (u64, bool)>) -> Option<u64> {
    let mut agreed = None;
    for (epoch, healthy) in states {
        if !healthy || epoch == 0 || agreed.is_some_and(|e| e != epoch) {
            return None;
        }
        agreed = Some(epoch);
    }
    agreed
}

impl Gateway {
    /// Links unless every peer reports a healthy link at the same epoch;
    /// returns the epoch to run sessions at.
    pub(super) async fn ensure_linked(
        &self,
        job_id: u64,
        kind: TaskKind,
        states: &[PhaseResult],
        attempt: &mut u32,
        report: &mut JobReport,
    ) -> Result<u64, JobError> {
        if let Some(epoch) = agreed_epoch(states.iter().map(|r| (r.link_epoch, r.link_healthy))) {
            return Ok(epoch);
        }
        // One link procedure per gateway at a time: the jobs that queued
        // behind it find the fresh link instead of starting another.
        let _linking = self.linking.lock().await;
        let fresh = join_all(
            self.peers
                .iter()
                .map(|p| p.link_state(self.config.me, self.config.prepare_timeout)),
        )
        .await;
        if let Some(epoch) = agreed_epoch(fresh.iter().copied()) {
            return Ok(epoch);
        }
        self.link_cache.forget();
        report.relinked = true;
        let epoch = fresh.iter().map(|s| s.0).max().unwrap_or(0);
        let mut target = epoch + 1;
        let mut tries = 0;
        loop {
            *attempt += 1;
            let since = Instant::now();
            let results = self
                .broadcast(
                    job_id,
                    Phase::Link,
                    *attempt,
                    Body::Link(Link { epoch: target }),
                    self.config.link_timeout,
                )
                .await;
            self.timed(kind, report, JobPhase::Link, since);
            self.link_cache.observe(&results);
            match self.check(job_id, Phase::Link, &results) {
                Ok(()) => {
                    if let Some(at) =
                        agreed_epoch(results.iter().map(|r| (r.link_epoch, r.link_healthy)))
                    {
                        return Ok(at);
                    }
                    // Healthy but reported at different epochs: another
                    // gateway linked meanwhile; ask for the newest one (a
                    // peer already there answers at once).
                    let at = results.iter().map(|r| r.link_epoch).max().unwrap_or(target);
                    target = if results.iter().all(|r| r.link_healthy) {
                        at
                    } else {
                        at + 1
                    };
                }
                Err(e) if tries >= self.config.phase_retries => return Err(e),
                Err(e) => {
                    debug!("link failed, retrying: {e}");
                    target = results
                        .iter()
                        .map(|r| r.link_epoch)
                        .max()
                        .unwrap_or(target)
                        .max(target)
                        + 1;
                }
            }
            tries += 1;
            if tries > self.config.phase_retries {
                return Err(JobError::new(
                    job_id,
                    JobPhase::Link,
                    None,
                    Status::LinkFailed,
                    "peers did not settle on one link epoch".into(),
                ));
            }
        }
    }
}
