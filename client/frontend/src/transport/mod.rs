//! UDP, TCP and TLS transports. SKELETON: the server helper fills this in.
