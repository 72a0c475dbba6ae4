//! Agreement on a public digest before anyone acts on a session's result:
//! each party sends a 32-byte digest to both peers and receives theirs
//! (1 round). The caller decides what a mismatch means (the executor
//! commits a batch only if all three digests are equal). Also the way a
//! party refuses a session outright, so its peers fail at once instead of
//! waiting for the operation timeout.

use std::ops::DerefMut;

use bytes::Bytes;
use sharecall_proto::wire::FrameKind;
use sharecall_proto::PartyId;

use crate::smc::channel::Channel;
use crate::smc::error::{SmcError, SmcResult};
use crate::smc::session::Session;

impl<C: DerefMut<Target = Channel>> Session<C> {
    /// Sends `digest` to both peers and returns what each sent us, as
    /// `[(next, its digest), (prev, its digest)]` (1 round). A frame that
    /// is not 32 bytes is [`SmcError::Malformed`].
    pub async fn exchange_digest(
        &mut self,
        digest: &[u8; 32],
    ) -> SmcResult<[(PartyId, [u8; 32]); 2]> {
        let me = self.me();
        let d = Bytes::copy_from_slice(digest);
        let got = self
            .round(
                vec![
                    (me.next(), FrameKind::Verify, d.clone()),
                    (me.prev(), FrameKind::Verify, d),
                ],
                &[
                    (me.next(), FrameKind::Verify),
                    (me.prev(), FrameKind::Verify),
                ],
            )
            .await?;
        let mut out = [(me.next(), [0u8; 32]), (me.prev(), [0u8; 32])];
        for (slot, bytes) in out.iter_mut().zip(&got) {
            let Ok(d) = <[u8; 32]>::try_from(bytes.as_ref()) else {
                let e = SmcError::Malformed {
                    peer: slot.0,
                    at: self.last_op(),
                    reason: format!("a digest of {} bytes", bytes.len()),
                };
                self.fail(self.last_op(), &e).await;
                return Err(e);
            };
            slot.1 = d;
        }
        Ok(out)
    }

    /// Ends the session here, telling both peers `reason` (their next
    /// receive fails with [`SmcError::PeerAborted`]). For a party that
    /// refuses to run a job it has already begun a session for.
    pub async fn refuse(&mut self, reason: &str) {
        let e = SmcError::InvalidInput(reason.to_string());
        self.fail(self.last_op(), &e).await;
    }
}
