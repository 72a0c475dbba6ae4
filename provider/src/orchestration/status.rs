//! Result status of a phase and the seed's error classes.

use sharecall_proto::control::Status;

/// How a failed phase may be handled (the seed's classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The phase succeeded.
    Success,
    /// The peer answered but declined or did not understand; retrying may
    /// help (or, for a denial, a different task).
    Recoverable,
    /// The computation failed or was aborted.
    Fault,
    /// The peer could not be reached in time.
    Communication,
}

/// The class a status belongs to.
pub fn class_of(status: Status) -> ErrorClass {
    match status {
        Status::Success => ErrorClass::Success,
        Status::Denied | Status::UnknownCmd | Status::UnknownJob => ErrorClass::Recoverable,
        Status::Aborted | Status::BadRequest | Status::Unspecified => ErrorClass::Fault,
        Status::StreamErr | Status::Timeout | Status::LinkFailed => ErrorClass::Communication,
    }
}

/// Short stable name of a status, for APIs and metrics (`denied`, ...).
pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Unspecified => "unspecified",
        Status::Success => "success",
        Status::Denied => "denied",
        Status::UnknownCmd => "unknown_cmd",
        Status::UnknownJob => "unknown_job",
        Status::Aborted => "aborted",
        Status::BadRequest => "bad_request",
        Status::StreamErr => "stream_err",
        Status::Timeout => "timeout",
        Status::LinkFailed => "link_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_follow_the_numbering() {
        for s in [
            Status::Success,
            Status::Denied,
            Status::UnknownCmd,
            Status::UnknownJob,
            Status::Aborted,
            Status::BadRequest,
            Status::StreamErr,
            Status::Timeout,
            Status::LinkFailed,
        ] {
            let expected = match s as i32 {
                1 => ErrorClass::Success,
                10..=19 => ErrorClass::Recoverable,
                20..=29 => ErrorClass::Fault,
                _ => ErrorClass::Communication,
            };
            assert_eq!(class_of(s), expected, "{s:?}");
        }
    }
}
