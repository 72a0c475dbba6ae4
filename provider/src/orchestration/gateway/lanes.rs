//! The SMC lanes of one gateway: a job holds one for its session.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// This gateway's lanes.
pub(super) struct Lanes {
    free: Mutex<Vec<u32>>,
    permits: Arc<Semaphore>,
}

/// A lane held by a job; given back when dropped.
pub(super) struct LaneGuard<'a> {
    lanes: &'a Lanes,
    /// The lane.
    pub(super) lane: u32,
    _permit: OwnedSemaphorePermit,
}

impl Drop for LaneGuard<'_> {
    fn drop(&mut self) {
        self.lanes
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.lane);
    }
}

impl Lanes {
    /// The lanes `mine`, all free.
    pub(super) fn new(mine: Vec<u32>) -> Lanes {
        Lanes {
            permits: Arc::new(Semaphore::new(mine.len())),
            free: Mutex::new(mine),
        }
    }

    /// Lanes free now.
    pub(super) fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Waits for a free lane.
    pub(super) async fn acquire(&self) -> Option<LaneGuard<'_>> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let lane = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
        Some(LaneGuard {
            lanes: self,
            lane,
            _permit: permit,
        })
    }
}
