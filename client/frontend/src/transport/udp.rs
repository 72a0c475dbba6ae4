//! The UDP receive loop: one datagram is one message.

use std::net::SocketAddr;
use std::sync::Arc;

use sharecall_sip::framer::looks_like_response;
use sharecall_sip::{parse_datagram, Disposition};
use tokio::net::UdpSocket;

use super::{check, salvage_response, Checked, Shared};
use crate::core::Input;
use crate::peer::{Peer, Protocol};

/// Datagrams read per wakeup before yielding to other tasks: a burst is
/// drained without a poll per datagram, and a flood cannot starve the rest.
const BURST: usize = 32;

pub(super) async fn receive_loop(shared: Arc<Shared>, sock: Arc<UdpSocket>) {
    // Larger than any UDP payload, so an oversized datagram is seen whole
    // (and answered 513), never silently cut.
    let mut buf = vec![0u8; 65_536];
    loop {
        let first = tokio::select! {
            r = sock.recv_from(&mut buf) => r,
            _ = shared.stop.cancelled() => return,
        };
        let mut next = Some(first);
        let mut n_read = 0;
        while let Some(r) = next.take() {
            match r {
                Ok((n, from)) => {
                    if !on_datagram(&shared, &buf[..n], from).await {
                        return;
                    }
                }
                // ICMP errors of earlier sends surface here on some
                // systems: they concern another peer, keep reading.
                Err(e) => tracing::debug!(error = %e, "UDP receive error"),
            }
            n_read += 1;
            if n_read < BURST {
                match sock.try_recv_from(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    r => next = Some(r),
                }
            }
        }
    }
}

/// Handles one datagram; false when the core is gone.
async fn on_datagram(shared: &Arc<Shared>, bytes: &[u8], from: SocketAddr) -> bool {
    let reply = |shared: &Arc<Shared>, r: Option<Vec<u8>>| {
        if let Some(r) = r {
            shared.send_udp(from, r, None);
        }
    };
    if bytes.len() > shared.cfg.max_message {
        tracing::info!(%from, len = bytes.len(), "UDP datagram over limits.max_message");
        reply(shared, salvage_response(bytes, 513));
        return true;
    }
    match parse_datagram(bytes, &shared.cfg.limits) {
        Ok(None) => true, // CRLF keep-alive
        Ok(Some(msg)) => match check(msg) {
            Checked::Deliver(msg) => {
                let from = Peer {
                    protocol: Protocol::Udp,
                    addr: from,
                    flow: None,
                };
                shared
                    .inputs
                    .send(Input::Received { msg, from })
                    .await
                    .is_ok()
            }
            Checked::Reject(r, e, call_id) => {
                tracing::info!(%from, ?call_id, error = %e, "invalid SIP message over UDP");
                reply(shared, r);
                true
            }
        },
        Err(e) => {
            tracing::info!(%from, error = %e, "unparsable SIP datagram");
            match e.disposition(looks_like_response(bytes), false) {
                Disposition::Reply(s) | Disposition::ReplyAndClose(s) => {
                    reply(shared, salvage_response(bytes, s))
                }
                Disposition::Drop | Disposition::Close => {}
            }
            true
        }
    }
}
