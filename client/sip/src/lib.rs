//! # sharecall-sip: the SIP wire layer of the sharecall front end
//!
//! Sans-IO building blocks for a registrar and stateful proxy: nothing here
//! opens a socket or reads a clock. Transports feed bytes in; time is passed
//! in as [`std::time::Instant`]s.
//!
//! Modules:
//! - [`framer`]: decides where a message ends — [`framer::StreamFramer`]
//!   for TCP/TLS (Content-Length required, RFC 5626 double-CRLF pings),
//!   [`framer::parse_datagram`] for UDP (short body → 400, extra bytes
//!   dropped); compact header names, folding, [`framer::Limits`].
//! - [`message`]: the lossless [`message::Message`]: start line and header
//!   fields as ranges of the received bytes; proxy edits (Via, Route,
//!   Record-Route, Max-Forwards, Request-URI) rewrite only their lines;
//!   [`message::Message::validate`] for the checks every element needs.
//! - [`headers`]: value parsers (Via with branch/received/rport, To/From,
//!   Contact with `*` and `expires`, CSeq, Call-ID, Max-Forwards, Expires,
//!   digest Authorization/WWW-Authenticate params). All our own: rsip 0.4
//!   is used only as a differential oracle in the tests (see that module).
//! - [`transaction`]: RFC 3261 §17 client/server INVITE and non-INVITE
//!   transactions with RFC 6026's Accepted state, driven by injected time.
//! - [`error`]: [`error::ParseError`], each mapped to the status to answer
//!   (400, 505, 513) and to what a transport does ([`error::Disposition`]).
//!
//! A proxy's path through the crate, for one UDP datagram:
//!
//! ```
//! use sharecall_sip::{parse_datagram, Limits};
//!
//! let bytes = b"OPTIONS sip:bob@b.example SIP/2.0\r\n\
//! v: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\nMax-Forwards: 7\r\n\
//! f: <sip:a@a.example>;tag=1\r\nt: <sip:bob@b.example>\r\ni: c1\r\n\
//! CSeq: 1 OPTIONS\r\nX-Unknown:  kept   as is\r\nl: 0\r\n\r\n";
//! let mut m = parse_datagram(bytes, &Limits::default()).unwrap().unwrap();
//! m.validate().unwrap();
//! m.decrement_max_forwards().unwrap();
//! m.prepend_via("SIP/2.0/UDP proxy.example;branch=z9hG4bKp");
//! let out = String::from_utf8(m.to_bytes()).unwrap();
//! assert!(out.contains("Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKp\r\nv: SIP/2.0/UDP a.example"));
//! assert!(out.contains("Max-Forwards: 6\r\n"));
//! assert!(out.contains("X-Unknown:  kept   as is\r\n"));
//! ```
//!
//! RFC 4475's torture messages are in `tests/data/rfc4475/` with the
//! expected handling of each in `tests/rfc4475.rs`.

pub mod error;
pub mod framer;
pub mod headers;
pub mod message;
pub mod transaction;

pub use error::{Disposition, ParseError};
pub use framer::{parse_datagram, Limits, StreamEvent, StreamFramer};
pub use message::Message;
