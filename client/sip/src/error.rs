//! Errors of the wire layer, each mapped to the SIP status the caller answers.

use thiserror::Error;

/// Why a message could not be framed, parsed or validated.
///
/// [`ParseError::status`] gives the status a server answers to a *request*
/// that failed this way; responses that fail are dropped (RFC 3261 §18.1.2),
/// see [`ParseError::disposition`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The header section is longer than [`crate::Limits::max_header_bytes`].
    #[error("header section exceeds {limit} bytes")]
    HeadersTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// More header fields than [`crate::Limits::max_headers`].
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// Content-Length larger than [`crate::Limits::max_body_bytes`].
    #[error("body of {len} bytes exceeds the limit of {limit}")]
    BodyTooLarge {
        /// The announced body length.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A stream-framed message without Content-Length (RFC 3261 §18.3).
    #[error("Content-Length is required on stream transports")]
    MissingContentLength,
    /// Content-Length that is not a non-negative decimal number.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Two Content-Length headers (RFC 4475 mcl01).
    #[error("more than one Content-Length")]
    ConflictingContentLength,
    /// A datagram whose body is shorter than its Content-Length.
    #[error("body has {got} bytes, Content-Length says {expected}")]
    BodyTruncated {
        /// Content-Length.
        expected: usize,
        /// Bytes present.
        got: usize,
    },
    /// A datagram without the empty line that ends the header section.
    #[error("no end of the header section")]
    NoEndOfHeaders,
    /// The request or status line is malformed.
    #[error("malformed start line: {0}")]
    BadStartLine(&'static str),
    /// A well-formed SIP-Version other than SIP/2.0.
    #[error("SIP version {0} not supported")]
    VersionNotSupported(String),
    /// A status code outside 100..=699 or not three digits.
    #[error("invalid status code")]
    BadStatusCode,
    /// A header line that is not `name: value`.
    #[error("malformed header line: {0}")]
    BadHeaderLine(&'static str),
    /// A header that must be present is missing.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header that must appear once appears more often.
    #[error("more than one {0} header")]
    DuplicateHeader(&'static str),
    /// A header value that does not follow its grammar.
    #[error("bad {header} value: {reason}")]
    BadHeaderValue {
        /// Canonical header name.
        header: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The Request-URI is malformed (brackets, no scheme, escaped headers).
    #[error("bad Request-URI: {0}")]
    BadRequestUri(&'static str),
    /// CSeq method differs from the request method (RFC 4475 mismatch01).
    #[error("CSeq method does not match the request method")]
    MethodMismatch,
}

/// What the receiver does with a message that failed to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Answer with this status (requests only); on a stream the connection
    /// stays usable.
    Reply(u16),
    /// Answer with this status, then close the stream: its framing is lost.
    ReplyAndClose(u16),
    /// Send nothing (responses, or garbage with no request line to answer).
    Drop,
    /// Close the stream without answering.
    Close,
}

impl ParseError {
    /// The SIP status a server answers to a request that failed this way.
    pub fn status(&self) -> u16 {
        match self {
            Self::VersionNotSupported(_) => 505,
            Self::HeadersTooLarge { .. }
            | Self::TooManyHeaders { .. }
            | Self::BodyTooLarge { .. } => 513,
            _ => 400,
        }
    }

    /// Whether the error breaks stream framing (the rest of the stream
    /// cannot be delimited any more).
    pub fn is_framing(&self) -> bool {
        matches!(
            self,
            Self::HeadersTooLarge { .. }
                | Self::TooManyHeaders { .. }
                | Self::BodyTooLarge { .. }
                | Self::MissingContentLength
                | Self::InvalidContentLength
                | Self::ConflictingContentLength
                | Self::BadStartLine(_)
                | Self::BadHeaderLine(_)
        )
    }

    /// What to do: `response` says whether the bytes were a response (a
    /// status line, see [`crate::framer::looks_like_response`]), `stream`
    /// whether they came over TCP/TLS.
    pub fn disposition(&self, response: bool, stream: bool) -> Disposition {
        let close = stream && self.is_framing();
        match (response, close) {
            (true, true) => Disposition::Close,
            (true, false) => Disposition::Drop,
            (false, true) => Disposition::ReplyAndClose(self.status()),
            (false, false) => Disposition::Reply(self.status()),
        }
    }
}
