//! Framing: the only place that decides where a message ends.
//!
//! Streams (TCP, TLS) feed bytes in any chunks to a [`StreamFramer`], which
//! yields complete messages, keep-alive pings, or an error after which the
//! stream must be closed (its framing is lost). Datagrams (UDP) go to
//! [`parse_datagram`]: one datagram is one message. Both use
//! Content-Length (compact `l` too); on a stream it is required (RFC 3261
//! §18.3), in a datagram the body defaults to the rest of the datagram and
//! bytes beyond Content-Length are dropped (RFC 4475 dblreq).

use crate::error::ParseError;
use crate::message::{find, parse_head, Head, Message, RawField};

/// Size limits; a message over any of them is refused with a typed error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Start line plus header fields, in bytes (default 16 KiB).
    pub max_header_bytes: usize,
    /// Body bytes (default 64 KiB; SIP bodies are SDP, a few hundred bytes).
    pub max_body_bytes: usize,
    /// Header fields (default 128).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            max_headers: 128,
        }
    }
}

/// What a stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A complete message.
    Message(Message),
    /// An RFC 5626 §4.4.1 double-CRLF ping: answer with a single CRLF
    /// ([`PONG`]).
    Ping,
}

/// The keep-alive pong a stream peer answers a ping with.
pub const PONG: &[u8] = b"\r\n";

/// Whether bytes start like a status line (then errors are not answered).
pub fn looks_like_response(bytes: &[u8]) -> bool {
    let b = skip_crlfs(bytes);
    b.len() >= 4 && b[..4].eq_ignore_ascii_case(b"SIP/")
}

fn skip_crlfs(mut b: &[u8]) -> &[u8] {
    while b.starts_with(b"\r\n") {
        b = &b[2..];
    }
    b
}

fn content_length(fields: &[RawField], head: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut found = None;
    for (name, line, value) in fields {
        if name != "Content-Length" {
            continue;
        }
        if found.is_some() {
            return Err(ParseError::ConflictingContentLength);
        }
        let v = &head[line.clone()][value.clone()];
        if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::InvalidContentLength);
        }
        let n = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or(ParseError::InvalidContentLength)?;
        found = Some(n);
    }
    Ok(found)
}

/// Frame one UDP datagram. `Ok(None)` for a datagram of CRLFs only (a
/// keep-alive). The message's body is Content-Length bytes (the rest of the
/// datagram without Content-Length); trailing bytes are dropped.
pub fn parse_datagram(bytes: &[u8], limits: &Limits) -> Result<Option<Message>, ParseError> {
    let b = skip_crlfs(bytes);
    if b.is_empty() {
        return Ok(None);
    }
    let end = match find(&b[..b.len().min(limits.max_header_bytes + 4)], b"\r\n\r\n") {
        Some(e) => e,
        None if b.len() > limits.max_header_bytes => {
            return Err(ParseError::HeadersTooLarge {
                limit: limits.max_header_bytes,
            })
        }
        None => return Err(ParseError::NoEndOfHeaders),
    };
    if end > limits.max_header_bytes {
        return Err(ParseError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
    }
    let head = &b[..end];
    let (start, start_range, fields) = parse_head(head, limits.max_headers)?;
    let avail = b.len() - end - 4;
    let body_len = match content_length(&fields, head)? {
        Some(n) if n > avail => {
            return Err(ParseError::BodyTruncated {
                expected: n,
                got: avail,
            })
        }
        Some(n) => n,
        None => avail,
    };
    if body_len > limits.max_body_bytes {
        return Err(ParseError::BodyTooLarge {
            len: body_len,
            limit: limits.max_body_bytes,
        });
    }
    let total = end + 4 + body_len;
    Ok(Some(Message::from_parts(
        b[..total].to_vec(),
        start,
        start_range,
        fields,
        end + 4..total,
    )))
}

/// Incremental framer for one stream connection.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    limits: Limits,
    failed: bool,
    last_error: Option<ParseError>,
    /// Where the search for the end of the header section resumes, so a
    /// slow sender costs linear, not quadratic, work.
    scanned: usize,
    /// A parsed header section waiting for its body: (end of headers,
    /// head, total length).
    pending: Option<(usize, Head, usize)>,
}

impl StreamFramer {
    /// A framer with these limits.
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            buf: Vec::new(),
            limits,
            failed: false,
            last_error: None,
            scanned: 0,
            pending: None,
        }
    }

    /// Append bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes buffered but not yet part of a yielded event.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next event, `Ok(None)` when more bytes are needed. After an error
    /// the framer yields that error again: the caller answers it if it can
    /// (see [`ParseError::disposition`]) and closes the connection.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        if self.failed {
            return Err(self.fail_again());
        }
        match self.try_next() {
            Ok(e) => Ok(e),
            Err(e) => {
                self.failed = true;
                self.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn fail_again(&self) -> ParseError {
        self.last_error
            .clone()
            .unwrap_or(ParseError::BadStartLine("stream failed"))
    }

    fn try_next(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        // Keep-alives and stray CRLFs between messages (RFC 5626 §4.4.1).
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.buf.drain(..4);
                return Ok(Some(StreamEvent::Ping));
            }
            if self.buf.starts_with(b"\r\n") {
                if b"\r\n\r\n".starts_with(&self.buf) {
                    return Ok(None); // maybe the first half of a ping
                }
                self.buf.drain(..2);
                continue;
            }
            if self.buf == b"\r" {
                return Ok(None);
            }
            break;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        if self.pending.is_none() {
            let window = self.buf.len().min(self.limits.max_header_bytes + 4);
            let from = self.scanned.saturating_sub(3).min(window);
            let Some(end) = find(&self.buf[from..window], b"\r\n\r\n").map(|i| from + i) else {
                if self.buf.len() > self.limits.max_header_bytes {
                    return Err(ParseError::HeadersTooLarge {
                        limit: self.limits.max_header_bytes,
                    });
                }
                self.scanned = window;
                return Ok(None);
            };
            if end > self.limits.max_header_bytes {
                return Err(ParseError::HeadersTooLarge {
                    limit: self.limits.max_header_bytes,
                });
            }
            let head = parse_head(&self.buf[..end], self.limits.max_headers)?;
            let len = content_length(&head.2, &self.buf[..end])?
                .ok_or(ParseError::MissingContentLength)?;
            if len > self.limits.max_body_bytes {
                return Err(ParseError::BodyTooLarge {
                    len,
                    limit: self.limits.max_body_bytes,
                });
            }
            self.pending = Some((end, head, end + 4 + len));
        }
        let Some((_, _, total)) = self.pending else {
            return Ok(None);
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        let Some((end, (start, start_range, fields), total)) = self.pending.take() else {
            return Ok(None);
        };
        self.scanned = 0;
        let rest = self.buf.split_off(total);
        let raw = std::mem::replace(&mut self.buf, rest);
        Ok(Some(StreamEvent::Message(Message::from_parts(
            raw,
            start,
            start_range,
            fields,
            end + 4..total,
        ))))
    }
}
