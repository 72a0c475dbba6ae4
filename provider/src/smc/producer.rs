//! The producers: one background task per lane and kind of material,
//! running the preprocessing protocols on a channel of its own to keep
//! the lane's [`Pool`] at its target.
//!
//! Chunk k is made as session k of the producer's channel; the pool
//! decides when a chunk is due, identically on all parties, so the three
//! producers run the same sessions in the same order.

use futures::future::BoxFuture;
use sharecall_proto::Share;
use tracing::{debug, warn};

use super::bit_block::BitBlock;
use super::channel::Channel;
use super::error::SmcResult;
use super::pool::Pool;
use super::protocols::preprocessing;
use super::session::Session;

/// Runs the producer of `pool` on `channel` until the channel fails; the
/// failure is recorded in the pool.
pub(crate) async fn run<T: Material>(pool: &Pool<T>, mut channel: Channel) {
    let mut chunk_no = 0u64;
    loop {
        pool.wanted().await;
        let result = match Session::begin(&mut channel, chunk_no) {
            Ok(session) => T::make(session, pool.chunk()).await,
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
                pool.push(items);
            }
            Err(e) => {
                warn!(channel = channel.id(), "preprocessing stops: {e}");
                pool.set_error(e);
                return;
            }
        }
        chunk_no += 1;
    }
}

/// A kind of preprocessed material and the protocol that makes it.
pub(crate) trait Material: Sized + Send + 'static {
    /// Makes `n` items in `session`.
    fn make(session: Session<&mut Channel>, n: usize) -> BoxFuture<'_, SmcResult<Vec<Self>>>;
}

impl Material for Share {
    fn make(session: Session<&mut Channel>, n: usize) -> BoxFuture<'_, SmcResult<Vec<Self>>> {
        Box::pin(preprocessing::make_squares(session, n))
    }
}

impl Material for BitBlock {
    fn make(session: Session<&mut Channel>, n: usize) -> BoxFuture<'_, SmcResult<Vec<Self>>> {
        Box::pin(preprocessing::make_bit_blocks(session, n))
    }
}
