//! Where a message came from, and where one goes.

use std::fmt;
use std::net::SocketAddr;

/// A SIP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// UDP (unreliable: transactions retransmit).
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP (`sips`).
    Tls,
}

impl Protocol {
    /// The Via transport token (`UDP`, `TCP`, `TLS`).
    pub fn via_token(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
        }
    }

    /// The `transport=` URI parameter value (`udp`, `tcp`, `tls`).
    pub fn uri_param(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
        }
    }

    /// Parses a Via token or `transport=` value, case-insensitively.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Protocol::Udp),
            "tcp" => Some(Protocol::Tcp),
            "tls" => Some(Protocol::Tls),
            _ => None,
        }
    }

    /// Whether the transport is reliable (no retransmissions).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Protocol::Udp)
    }

    /// The default port (5060, or 5061 for TLS).
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Tls => 5061,
            _ => 5060,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// One TCP or TLS connection, numbered by the transport layer. A request
/// that arrived on a flow is answered on it, and a binding registered over
/// a flow is reached through it (RFC 5626's idea, without its outbound
/// extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// The far end of a message: protocol, socket address and, on streams, the
/// connection it came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport.
    pub protocol: Protocol,
    /// The remote socket address (the source of a received message).
    pub addr: SocketAddr,
    /// The connection, for TCP and TLS.
    pub flow: Option<FlowId>,
}

/// Where the core wants bytes sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A known peer: on a stream, its flow if still open, else a new
    /// connection to `addr`.
    Peer(Peer),
    /// A host name to look up first (the transport resolves it, A/AAAA
    /// only: no NAPTR/SRV).
    Name {
        /// The transport.
        protocol: Protocol,
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

/// One of the front end's own listening transports, as it names itself in
/// Via, Record-Route and published endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// The transport.
    pub protocol: Protocol,
    /// The advertised host (an IP literal or a name).
    pub host: String,
    /// The advertised port.
    pub port: u16,
}

impl Local {
    /// `host:port`, the Via sent-by.
    pub fn sent_by(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// This transport as a SIP URI with `;lr` and `transport=` (for
    /// Record-Route): `sip:host:port;transport=tcp;lr` (`sips:` for TLS).
    pub fn route_uri(&self) -> String {
        let scheme = if self.protocol == Protocol::Tls {
            "sips"
        } else {
            "sip"
        };
        format!(
            "{scheme}:{}:{};transport={};lr",
            self.host,
            self.port,
            self.protocol.uri_param()
        )
    }
}
