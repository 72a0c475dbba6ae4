//! The stateful proxy and redirect server (RFC 3261 §16), sans-IO.
//! SKELETON: the proxy helper fills this in.
