//! The preprocessing pool: random squares (for `prf_tag`) and blocks of
//! random bits (for `lt_reveal`), made in the background so online
//! operations never wait for them once the pool is warm.
//!
//! Each lane has one pool per kind, each fed by a producer task on a
//! channel of its own. Which chunk a producer makes next depends only on
//! how much the lane has consumed (it keeps `produced − consumed ≥ target`),
//! and all three parties consume identically, so their producers make the
//! same chunks in the same order without talking about it.

use std::collections::VecDeque;
use std::sync::Mutex;

use futures::future::BoxFuture;

use sharecall_proto::{Fp, PartyId, Share, ShareVec};
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::channel::Channel;
use super::error::{SmcError, SmcResult};
use super::linear;
use super::session::Session;

/// Bits per comparison (pseudonym keys are 128-bit).
pub const COMPARE_BITS: usize = 128;

/// Preprocessed material for one comparison: 128 shared random bits and
/// the products of each adjacent pair.
#[derive(Clone, Debug)]
pub struct BitBlock {
    /// r_0 … r_127 (r_i ∈ {0, 1}).
    pub bits: Vec<Share>,
    /// q_m = r_{2m+1} · r_{2m}, for m in 0..64.
    pub pairs: Vec<Share>,
}

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

    fn push(&self, items: Vec<T>) {
        let mut s = self.lock();
        s.produced += items.len() as u64;
        s.items.extend(items);
        drop(s);
        self.more.notify_waiters();
    }

    fn set_error(&self, e: SmcError) {
        self.lock().error = Some(e);
        self.more.notify_waiters();
    }

    /// Runs a producer on `channel` until the channel fails; chunk number
    /// k is made as session k.
    pub(crate) async fn produce(&self, mut channel: Channel)
    where
        T: Material,
    {
        let mut chunk_no = 0u64;
        loop {
            let taken = self.taken.notified();
            if !self.wants_more() {
                taken.await;
                continue;
            }
            let result = match Session::begin(&mut channel, chunk_no) {
                Ok(session) => T::make(session, self.sizing.chunk).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(items) => {
                    debug!(
                        channel = channel.id(),
                        chunk_no,
                        items = items.len(),
                        "preprocessed chunk"
                    );
                    self.push(items);
                }
                Err(e) => {
                    warn!(channel = channel.id(), "preprocessing stops: {e}");
                    self.set_error(e);
                    return;
                }
            }
            chunk_no += 1;
        }
    }
}

/// A kind of preprocessed material and the protocol that makes it.
pub(crate) trait Material: Sized + Send + 'static {
    /// Makes `n` items in `session`.
    fn make(session: Session<&mut Channel>, n: usize) -> BoxFuture<'_, SmcResult<Vec<Self>>>;
}

impl Material for Share {
    fn make(session: Session<&mut Channel>, n: usize) -> BoxFuture<'_, SmcResult<Vec<Self>>> {
        Box::pin(make_squares(session, n))
    }
}

impl Material for BitBlock {
    fn make(session: Session<&mut Channel>, n: usize) -> BoxFuture<'_, SmcResult<Vec<Self>>> {
        Box::pin(make_bit_blocks(session, n))
    }
}

/// Makes `n` random squares s = t² (1 round).
pub(crate) async fn make_squares(
    mut session: Session<&mut Channel>,
    n: usize,
) -> SmcResult<Vec<Share>> {
    let t = session.random(n);
    let s = session.mul(&t, &t).await?;
    Ok(s.iter().collect())
}

/// Shares of the bits drawn from one PRG component: component k is known
/// to its two holders, so [b_k] needs no traffic (the third party holds 0).
fn component_bits(me: PartyId, first: &ShareVec, second: &ShareVec, k: usize) -> ShareVec {
    let bit = |v: Fp| if v.bit(0) { Fp::ONE } else { Fp::ZERO };
    let holds_first = me.index() == k;
    let holds_second = me.next().index() == k;
    (0..first.len())
        .map(|i| Share {
            first: if holds_first {
                bit(first.first[i])
            } else {
                Fp::ZERO
            },
            second: if holds_second {
                bit(second.second[i])
            } else {
                Fp::ZERO
            },
        })
        .collect()
}

/// Makes `n` bit blocks (3 rounds): b = b0 ⊕ b1 ⊕ b2 with b_k drawn from
/// the pairwise PRG component k, converted to arithmetic shares by two
/// multiplications (x ⊕ y = x + y − 2xy); then one multiplication for the
/// pair products. No party knows b: each misses one component.
pub(crate) async fn make_bit_blocks(
    mut session: Session<&mut Channel>,
    n: usize,
) -> SmcResult<Vec<BitBlock>> {
    let me = session.party();
    let total = n * COMPARE_BITS;
    let r = session.random(total);
    let b = [0, 1, 2].map(|k| component_bits(me, &r, &r, k));
    let two = Fp::from_u64(2);
    let xor = |x: &ShareVec, y: &ShareVec, xy: &ShareVec| -> SmcResult<ShareVec> {
        linear::sub(&linear::add(x, y)?, &linear::scale(xy, two))
    };
    let p01 = session.mul(&b[0], &b[1]).await?;
    let b01 = xor(&b[0], &b[1], &p01)?;
    let p012 = session.mul(&b01, &b[2]).await?;
    let bits = xor(&b01, &b[2], &p012)?;

    let mut hi = ShareVec::with_capacity(total / 2);
    let mut lo = ShareVec::with_capacity(total / 2);
    for i in (0..total).step_by(2) {
        lo.push(bits.get(i).unwrap_or_default());
        hi.push(bits.get(i + 1).unwrap_or_default());
    }
    let q = session.mul(&hi, &lo).await?;
    let half = COMPARE_BITS / 2;
    Ok((0..n)
        .map(|k| BitBlock {
            bits: bits.first[k * COMPARE_BITS..(k + 1) * COMPARE_BITS]
                .iter()
                .zip(&bits.second[k * COMPARE_BITS..(k + 1) * COMPARE_BITS])
                .map(|(&first, &second)| Share { first, second })
                .collect(),
            pairs: q.first[k * half..(k + 1) * half]
                .iter()
                .zip(&q.second[k * half..(k + 1) * half])
                .map(|(&first, &second)| Share { first, second })
                .collect(),
        })
        .collect())
}
