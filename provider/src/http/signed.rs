//! What the signed client messages (request parts, enrollments) share:
//! fixed-size hex fields and the freshness bound on their timestamps.

/// Largest accepted distance between a request's timestamp and our clock.
pub(crate) const MAX_REQUEST_SKEW_MS: u64 = sharecall_proto::limits::REQUEST_SKEW_MAX_MS;

/// `s` as exactly `N` bytes of hex, or `None`.
pub(crate) fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok().map(|_| out)
}
