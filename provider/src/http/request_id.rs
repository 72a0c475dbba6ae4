//! Request ids: the syntax both the public requests and the admin
//! sequence endpoint accept (ids appear in URLs and logs).

use axum::http::StatusCode;
use axum::response::Response;

use super::error::error;

/// Longest accepted request id.
const MAX_REQUEST_ID: usize = sharecall_proto::limits::REQUEST_ID_MAX_LEN;

/// The 400 answer for an invalid request id, if it is invalid: 1..=128
/// bytes of `[A-Za-z0-9._:-]`.
pub(crate) fn bad_request_id(id: &str) -> Option<Response> {
    let ok = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    (!ok).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_request_id",
            format!("request_id must be 1..={MAX_REQUEST_ID} of [A-Za-z0-9._:-]"),
        )
    })
}
