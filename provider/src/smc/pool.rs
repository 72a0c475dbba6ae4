//! The preprocessing pool: a FIFO of preprocessed items (random squares
//! for `prf_tag`, bit blocks for `lt_reveal`) between a lane, which takes
//! them, and the producer task that fills it (`producer`).
//!
//! The pool stores and counts; it knows nothing of sessions or channels.
//! It tells the producer to make another chunk as a function of the
//! consumed count only (`produced − consumed < target`), and all three
//! parties consume identically, so their producers make the same chunks in
//! the same order without talking about it.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::error::{SmcError, SmcResult};

/// Sizing of one kind of material.
#[derive(Debug, Clone, Copy)]
pub struct PoolSizing {
    /// Items kept ready.
    pub target: usize,
    /// Items made per producer session.
    pub chunk: usize,
}

struct PoolState<T> {
    items: VecDeque<T>,
    produced: u64,
    consumed: u64,
    error: Option<SmcError>,
}

/// A FIFO of preprocessed items shared by a lane (consumer) and its
/// producer task.
pub struct Pool<T> {
    state: Mutex<PoolState<T>>,
    sizing: PoolSizing,
    more: Notify,
    taken: Notify,
}

/// A snapshot of a pool's fill level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Items ready.
    pub available: usize,
    /// Items made so far.
    pub produced: u64,
    /// Items consumed so far.
    pub consumed: u64,
}

impl<T> Pool<T> {
    /// An empty pool.
    pub fn new(sizing: PoolSizing) -> Pool<T> {
        Pool {
            state: Mutex::new(PoolState {
                items: VecDeque::new(),
                produced: 0,
                consumed: 0,
                error: None,
            }),
            sizing,
            more: Notify::new(),
            taken: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState<T>> {
        // A poisoned lock only means a panic elsewhere; the data is plain.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fill level.
    pub fn stats(&self) -> PoolStats {
        let s = self.lock();
        PoolStats {
            available: s.items.len(),
            produced: s.produced,
            consumed: s.consumed,
        }
    }

    /// Whether the producer has stopped with an error.
    pub fn failed(&self) -> bool {
        self.lock().error.is_some()
    }

    /// Takes `n` items in FIFO order, waiting for the producer when the
    /// pool runs dry; fails if the producer has failed.
    pub async fn take(&self, n: usize) -> SmcResult<Vec<T>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let notified = self.more.notified();
            {
                let mut s = self.lock();
                let k = (n - out.len()).min(s.items.len());
                out.extend(s.items.drain(..k));
                s.consumed += k as u64;
                if out.len() < n {
                    if let Some(e) = &s.error {
                        return Err(SmcError::Preprocessing(e.to_string()));
                    }
                }
            }
            self.taken.notify_one();
            if out.len() < n {
                notified.await;
            }
        }
        Ok(out)
    }

    /// Waits until the pool holds its target (or the producer failed).
    pub async fn warm(&self) -> SmcResult<()> {
        loop {
            let notified = self.more.notified();
            {
                let s = self.lock();
                if let Some(e) = &s.error {
                    return Err(SmcError::Preprocessing(e.to_string()));
                }
                if s.items.len() >= self.sizing.target {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Whether the producer should make another chunk: a function of the
    /// consumed count only, hence identical on all parties.
    fn wants_more(&self) -> bool {
        let s = self.lock();
        s.produced < s.consumed + self.sizing.target as u64
    }

    /// Waits until the producer should make another chunk, waking up
    /// whenever the lane takes items.
    pub(super) async fn wanted(&self) {
        loop {
            let taken = self.taken.notified();
            if self.wants_more() {
                return;
            }
            taken.await;
        }
    }

    /// Items per producer session.
    pub(super) fn chunk(&self) -> usize {
        self.sizing.chunk
    }

    /// Adds a chunk the producer made.
    pub(super) fn push(&self, items: Vec<T>) {
        let mut s = self.lock();
        s.produced += items.len() as u64;
        s.items.extend(items);
        drop(s);
        self.more.notify_waiters();
    }

    /// Records that the producer stopped; takers waiting for more fail.
    pub(super) fn set_error(&self, e: SmcError) {
        self.lock().error = Some(e);
        self.more.notify_waiters();
    }
}
