//! # sharecall-frontend: the SIP front end
//!
//! A registrar, stateful proxy and redirect server for standard SIP user
//! agents, run on the users' side (a PBX, a router, a laptop). It stores its
//! users' reachability in sharecall (only secret shares reach the
//! providers) and routes calls by resolving the callee's pseudonym through
//! the three providers; in plaintext mode an in-memory table stands in for
//! sharecall so the cost of privacy can be measured with all else equal.
//!
//! Layers, inside out (the wire layer is the `sharecall-sip` crate):
//! - [`peer`], [`aor`]: where a message came from or goes, and addresses of
//!   record (with their pseudonyms and the front end's routing tokens);
//! - [`users`], [`auth`]: the local users file and digest authentication
//!   (RFC 3261 §22, RFC 8760), sans-IO;
//! - [`registrar`]: RFC 3261 §10.3 bindings, sans-IO;
//! - [`location`]: the location service trait, with [`location::plaintext`]
//!   and [`location::sharecall`] behind it;
//! - [`proxy`]: RFC 3261 §16 stateful proxy and redirect server, sans-IO;
//! - [`core`]: the sans-IO front end: messages and results in, sends and
//!   location jobs out, time passed in;
//! - [`config`], [`metrics`], [`transport`], [`server`]: the IO shell that
//!   runs a [`core::Core`] on UDP, TCP and TLS sockets;
//! - [`ua`]: a minimal user agent for the demo, benchmarks and tests.

pub mod aor;
pub mod auth;
pub mod config;
pub mod core;
pub mod location;
pub mod metrics;
pub mod peer;
pub mod proxy;
pub mod registrar;
pub mod server;
pub mod transport;
pub mod ua;
pub mod users;
