//! What the signed client messages (request parts, enrollments) share:
//! fixed-size hex fields and the freshness bound on their timestamps.

/// Largest accepted distance between a request's timestamp and our clock.
pub(crate) const MAX_REQUEST_SKEW_MS: u64 = sharecall_proto::limits::REQUEST_SKEW_MAX_MS;

/// `s` as exactly `N` bytes of hex, or `None`.
pub(crate) fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok().map(|_| out)
}

/// The `401 stale_timestamp` answer when a signed message's timestamp is
/// further than [`MAX_REQUEST_SKEW_MS`] from this provider's clock
/// (`what` names the message: "request", "enrollment").
pub(crate) fn stale(what: &str, timestamp_ms: u64) -> Option<axum::response::Response> {
    let skew = sharecall_proto::clock::now_ms().abs_diff(timestamp_ms);
    (skew > MAX_REQUEST_SKEW_MS).then(|| {
        super::error::error(
            axum::http::StatusCode::UNAUTHORIZED,
            "stale_timestamp",
            format!("{what} timestamp is {skew} ms away from this provider's clock"),
        )
    })
}

/// The account key and signature of a signed client message, decoded from
/// hex, or the `400 bad_account` / `400 bad_signature` answer.
#[allow(clippy::result_large_err)] // the error is the HTTP answer itself
pub(crate) fn account_and_signature(
    account: &str,
    signature: &str,
) -> Result<([u8; 32], [u8; 64]), axum::response::Response> {
    use axum::http::StatusCode;
    let Some(account) = decode_hex::<32>(account) else {
        return Err(super::error::error(
            StatusCode::BAD_REQUEST,
            "bad_account",
            "account must be a 64-digit hex ed25519 public key",
        ));
    };
    let Some(signature) = decode_hex::<64>(signature) else {
        return Err(super::error::error(
            StatusCode::BAD_REQUEST,
            "bad_signature",
            "signature must be 128 hex digits",
        ));
    };
    Ok((account, signature))
}
