//! Readiness of resolutions: which reads this provider holds, reported to
//! the leader (the `Reads` service in [`super::reads`] receives them).

use std::sync::Arc;
use std::time::Duration;

use sharecall_proto::reads::{ReadyBatch, ReadyRead as WireReady};
use tracing::debug;

use super::reads::{self, ReadyRead};
use super::Executor;

impl Executor {
    /// Tells the coordinator that this provider holds read `id` of the
    /// signed request `signed`: at once if this provider leads (its own
    /// part starts the read), otherwise only if the read is still
    /// unanswered after [`reads::STRAGGLER_DELAY`].
    pub fn announce(&self, id: &str, signed: &str) {
        if self.sequencer.status().role == "leader" {
            self.board.mark(self.config.me, id, signed);
        }
        let _ = self.outbox.send(ReadyRead {
            id: id.to_string(),
            signed: signed.to_string(),
        });
    }

    /// Marks reads that `provider` reports holding (the `Reads.Ready`
    /// RPC); returns whether this provider leads.
    pub fn peer_ready(&self, provider: u8, reads: &[WireReady]) -> bool {
        if self.sequencer.status().role != "leader" {
            debug!(provider, "read report, but not leading");
            return false;
        }
        for r in reads {
            self.board.mark(provider, &r.request_id, &r.signed);
        }
        true
    }

    /// Reports reads this provider holds that are still unanswered after
    /// [`reads::STRAGGLER_DELAY`] to the leader (batched); a new leader
    /// hears of every read still held.
    pub(super) async fn report_ready(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let Some(mut rx) = self
            .outbox_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let mut changes = self.sequencer.changes();
        let mut waiting: std::collections::VecDeque<(tokio::time::Instant, ReadyRead)> =
            std::collections::VecDeque::new();
        let mut queue: Vec<ReadyRead> = Vec::new();
        let mut last_leader = 0;
        loop {
            let due = waiting.front().map(|(t, _)| *t);
            tokio::select! {
                _ = stop.cancelled() => return,
                r = rx.recv() => match r {
                    Some(r) => waiting.push_back(
                        (tokio::time::Instant::now() + reads::STRAGGLER_DELAY, r),
                    ),
                    None => return,
                },
                _ = changes.changed() => {}
                _ = async {
                    match due {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            while let Ok(r) = rx.try_recv() {
                waiting.push_back((tokio::time::Instant::now() + reads::STRAGGLER_DELAY, r));
            }
            let now = tokio::time::Instant::now();
            while waiting.front().is_some_and(|(t, _)| *t <= now) {
                if let Some((_, r)) = waiting.pop_front() {
                    queue.push(r);
                }
            }
            let status = self.sequencer.status();
            if status.leader != last_leader && status.leader != 0 {
                last_leader = status.leader;
                for r in self.reads.unfinished() {
                    if !queue.contains(&r) {
                        queue.push(r);
                    }
                }
            }
            // Answered meanwhile (the usual case): nothing to report.
            queue.retain(|r| self.reads.part(&r.id).is_some());
            if queue.is_empty() {
                continue;
            }
            debug!(
                leader = status.leader,
                reads = queue.len(),
                "reporting held reads"
            );
            match status.leader.checked_sub(1).map(|l| l as u8) {
                Some(l) if l == self.config.me => {
                    for r in queue.drain(..) {
                        self.board.mark(l, &r.id, &r.signed);
                    }
                }
                Some(l) => {
                    let client = self
                        .read_peers
                        .iter()
                        .find(|(id, _)| *id == l)
                        .map(|(_, c)| c.clone());
                    if let Some(mut client) = client {
                        let wire = ReadyBatch {
                            reads: queue
                                .iter()
                                .map(|r| WireReady {
                                    request_id: r.id.clone(),
                                    signed: r.signed.clone(),
                                })
                                .collect(),
                        };
                        if let Ok(ack) = client.ready(wire).await {
                            if ack.into_inner().leader {
                                queue.clear();
                            }
                        }
                    }
                }
                None => {}
            }
            if !queue.is_empty() {
                // No leader, or it did not take the report: again soon.
                waiting.extend(
                    queue
                        .drain(..)
                        .map(|r| (tokio::time::Instant::now() + Duration::from_millis(50), r)),
                );
            }
        }
    }
}
