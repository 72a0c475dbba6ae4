//! Parsers for the header values the front end acts on.
//!
//! All of these are our own small parsers over the unfolded value text;
//! rsip 0.4's typed headers fail at least one case for each header we need,
//! pinned in `tests/rsip_values.rs` (rsip stays a test-only oracle):
//! - Via: rsip rejects LWS around `/` (RFC 4475 wsinv) and accepts empty
//!   parameters (badinv01);
//! - To/From: rsip accepts an unquoted display name with a comma (baddn)
//!   and an unterminated quote (quotbal);
//! - Contact: rsip has no `*` (reads it as a host);
//! - CSeq: rsip gets the number right but refuses extension methods
//!   (esc02, mismatch02), which are tokens;
//! - Max-Forwards: rsip accepts values above 255;
//! - Authorization: rsip refuses `algorithm=SHA-256` (RFC 8760).
//!
//! Call-ID and Expires are trivial grammars, parsed here too.

use crate::error::ParseError;
use crate::message::is_token_char;

fn bad(header: &str, reason: &'static str) -> ParseError {
    ParseError::BadHeaderValue {
        header: header.to_owned(),
        reason,
    }
}

/// Byte offset of the first comma outside quotes and `<>` in a raw value.
pub fn first_comma(v: &[u8]) -> Option<usize> {
    let (mut quoted, mut angle, mut i) = (false, false, 0);
    while i < v.len() {
        match v[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && !angle => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Split a list value on commas outside quotes and `<>`; parts trimmed.
pub fn split_list(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = v;
    while let Some(c) = first_comma(rest.as_bytes()) {
        out.push(rest[..c].trim());
        rest = &rest[c + 1..];
    }
    out.push(rest.trim());
    out
}

/// The scheme of a URI (`sip` of `sip:a@b`), when it has a valid one.
pub fn uri_scheme(uri: &str) -> Option<&str> {
    let colon = uri.find(':')?;
    let s = &uri[..colon];
    let mut chars = s.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .then_some(s)
}

/// `;name[=value]` parameters, names compared case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// The value of a parameter: `Some(None)` when present without value.
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Parse `;a=b;c` (input starts at the first `;` or is empty).
    fn parse(header: &str, s: &str) -> Result<Params, ParseError> {
        let s = s.trim();
        let mut out = Vec::new();
        if s.is_empty() {
            return Ok(Params(out));
        }
        let Some(mut rest) = s.strip_prefix(';') else {
            return Err(bad(header, "expected ';' before a parameter"));
        };
        loop {
            rest = rest.trim_start();
            let name_end = rest
                .find(|c: char| !c.is_ascii() || !is_token_char(c as u8))
                .unwrap_or(rest.len());
            if name_end == 0 {
                return Err(bad(header, "empty parameter name"));
            }
            let name = rest[..name_end].to_owned();
            rest = rest[name_end..].trim_start();
            let mut value = None;
            if let Some(r) = rest.strip_prefix('=') {
                let r = r.trim_start();
                if let Some(q) = r.strip_prefix('"') {
                    let end = quoted_end(q).ok_or(bad(header, "unterminated quoted string"))?;
                    value = Some(format!("\"{}", &q[..=end]));
                    rest = &q[end + 1..];
                } else {
                    let end = r
                        .find(|c: char| {
                            !(c.is_ascii() && (is_token_char(c as u8) || "[]:".contains(c)))
                        })
                        .unwrap_or(r.len());
                    if end == 0 {
                        return Err(bad(header, "empty parameter value"));
                    }
                    value = Some(r[..end].to_owned());
                    rest = &r[end..];
                }
            }
            out.push((name, value));
            rest = rest.trim_start();
            if rest.is_empty() {
                return Ok(Params(out));
            }
            rest = rest
                .strip_prefix(';')
                .ok_or(bad(header, "junk after a parameter"))?;
        }
    }
}

/// Index of the closing quote in `s` (which starts after the opening one).
fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            b'\r' | b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

/// One Via value (RFC 3261 §20.42, RFC 3581).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Transport as written, e.g. `UDP`, `TCP`, `TLS`, or an unknown one.
    pub transport: String,
    /// Host of sent-by (IPv6 with brackets).
    pub host: String,
    /// Port of sent-by.
    pub port: Option<u16>,
    /// Parameters (branch, received, rport, ...).
    pub params: Params,
}

/// The RFC 3261 branch prefix.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    /// Parse one Via value: `SIP / 2.0 / transport sent-by *params`, LWS
    /// allowed around the slashes.
    pub fn parse(v: &str) -> Result<Via, ParseError> {
        let h = "Via";
        let mut parts = v.splitn(3, '/');
        let (Some(name), Some(ver), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(h, "no sent-protocol"));
        };
        if !name.trim().eq_ignore_ascii_case("SIP") || ver.trim() != "2.0" {
            return Err(bad(h, "protocol is not SIP/2.0"));
        }
        let rest = rest.trim_start();
        let t_end = rest
            .find(|c: char| !c.is_ascii() || !is_token_char(c as u8))
            .unwrap_or(rest.len());
        if t_end == 0 {
            return Err(bad(h, "no transport"));
        }
        let transport = rest[..t_end].to_owned();
        let rest = &rest[t_end..];
        if !rest.starts_with([' ', '\t']) {
            return Err(bad(h, "no space before sent-by"));
        }
        let rest = rest.trim_start();
        let sb_end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
        let (host, port) = parse_hostport(h, &rest[..sb_end])?;
        let params = Params::parse(h, &rest[sb_end..])?;
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// The branch when it is an RFC 3261 one (magic cookie plus at least one
    /// character; RFC 4475 badbranch's bare cookie is not).
    pub fn rfc3261_branch(&self) -> Option<&str> {
        self.branch()
            .filter(|b| b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE))
    }

    /// The received parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten()
    }

    /// The rport parameter (RFC 3581): `Some(None)` when present without a
    /// value (the client asks for it), `Some(Some(p))` once filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }
}

fn parse_hostport(h: &str, s: &str) -> Result<(String, Option<u16>), ParseError> {
    let (host, port) = if let Some(r) = s.strip_prefix('[') {
        let end = r.find(']').ok_or(bad(h, "unterminated IPv6 reference"))?;
        let after = &r[end + 1..];
        (format!("[{}]", &r[..end]), after.strip_prefix(':'))
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (s.to_owned(), None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.[]:".contains(c))
    {
        return Err(bad(h, "bad host"));
    }
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| bad(h, "bad port")))
        .transpose()?;
    Ok((host, port))
}

/// A name-addr or addr-spec with header parameters (To, From, Contact,
/// Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name, unquoted (escapes kept), when present.
    pub display: Option<String>,
    /// The URI as written, without `<>`.
    pub uri: String,
    /// Whether the URI was in `<>`; without them, `;params` belong to the
    /// header, not the URI (RFC 4475 cparam01).
    pub bracketed: bool,
    /// Header parameters (tag, expires, q, ...).
    pub params: Params,
}

impl NameAddr {
    /// Parse for header `header` (used in error messages).
    pub fn parse(header: &str, v: &str) -> Result<NameAddr, ParseError> {
        let v = v.trim();
        let (display, after_display) = if let Some(q) = v.strip_prefix('"') {
            let end = quoted_end(q).ok_or(bad(header, "unterminated quoted display name"))?;
            (Some(q[..end].to_owned()), q[end + 1..].trim_start())
        } else if let Some(lt) = v.find('<') {
            let d = v[..lt].trim();
            // Unquoted display name: tokens separated by LWS (RFC 4475
            // lwsdisp allows no LWS before '<'; baddn's comma is refused).
            if !d.split_whitespace().all(|t| t.bytes().all(is_token_char)) {
                return Err(bad(header, "display name is neither tokens nor quoted"));
            }
            ((!d.is_empty()).then(|| d.to_owned()), &v[lt..])
        } else {
            (None, v)
        };
        if let Some(inner) = after_display.strip_prefix('<') {
            let end = inner.find('>').ok_or(bad(header, "no closing '>'"))?;
            let uri = &inner[..end];
            if uri.is_empty() || uri.starts_with([' ', '\t']) || uri.ends_with([' ', '\t']) {
                return Err(bad(header, "whitespace inside <>"));
            }
            check_uri(header, uri)?;
            let params = Params::parse(header, &inner[end + 1..])?;
            return Ok(NameAddr {
                display,
                uri: uri.to_owned(),
                bracketed: true,
                params,
            });
        }
        if display.is_some() {
            return Err(bad(header, "display name without <uri>"));
        }
        let end = after_display.find(';').unwrap_or(after_display.len());
        let uri = after_display[..end].trim();
        check_uri(header, uri)?;
        if uri.contains('?') {
            // RFC 4475 regbadct: headers in an addr-spec need <>.
            return Err(bad(header, "URI with headers outside <>"));
        }
        let params = Params::parse(header, &after_display[end..])?;
        Ok(NameAddr {
            display,
            uri: uri.to_owned(),
            bracketed: false,
            params,
        })
    }

    /// The tag parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }

    /// The expires parameter of a Contact, saturated to `u32::MAX`.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.params
            .get("expires")
            .map(|v| parse_delta("Contact", v.unwrap_or("")))
            .transpose()
    }
}

fn check_uri(header: &str, uri: &str) -> Result<(), ParseError> {
    if uri_scheme(uri).is_none() {
        return Err(bad(header, "URI without scheme"));
    }
    if uri
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
    {
        return Err(bad(header, "bad character in URI"));
    }
    Ok(())
}

/// The Contact header: `*` or a list of addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *` (remove all bindings, only with Expires: 0).
    Star,
    /// The addresses in order.
    Addrs(Vec<NameAddr>),
}

impl Contact {
    /// Parse the (joined) Contact values.
    pub fn parse(v: &str) -> Result<Contact, ParseError> {
        if v.trim() == "*" {
            return Ok(Contact::Star);
        }
        split_list(v)
            .into_iter()
            .map(|p| NameAddr::parse("Contact", p))
            .collect::<Result<_, _>>()
            .map(Contact::Addrs)
    }
}

/// CSeq: sequence number (≤ 2^32−1) and method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number.
    pub seq: u32,
    /// Method token.
    pub method: String,
}

impl CSeq {
    /// Parse `1*DIGIT LWS Method`; leading zeros allowed.
    pub fn parse(v: &str) -> Result<CSeq, ParseError> {
        let mut it = v.split_whitespace();
        let (Some(n), Some(m), None) = (it.next(), it.next(), it.next()) else {
            return Err(bad("CSeq", "not number and method"));
        };
        if !n.bytes().all(|c| c.is_ascii_digit()) || !m.bytes().all(is_token_char) {
            return Err(bad("CSeq", "not number and method"));
        }
        let seq = n
            .parse::<u32>()
            .map_err(|_| bad("CSeq", "sequence number above 2^32-1"))?;
        Ok(CSeq {
            seq,
            method: m.to_owned(),
        })
    }
}

/// Call-ID: `word ["@" word]`, no whitespace.
pub fn parse_call_id(v: &str) -> Result<String, ParseError> {
    let v = v.trim();
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("Call-ID", "empty or with whitespace"));
    }
    Ok(v.to_owned())
}

/// Max-Forwards: 0..=255, leading zeros allowed.
pub fn parse_max_forwards(v: &str) -> Result<u8, ParseError> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad("Max-Forwards", "not a number"));
    }
    let t = v.trim_start_matches('0');
    if t.is_empty() {
        return Ok(0);
    }
    t.parse::<u8>()
        .map_err(|_| bad("Max-Forwards", "above 255"))
}

fn parse_delta(header: &str, v: &str) -> Result<u32, ParseError> {
    let v = v.trim();
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad(header, "not delta-seconds"));
    }
    // RFC 3261 §20.19/§10.2.1: too large a value means 2^32-1.
    Ok(v.parse::<u32>().unwrap_or(u32::MAX))
}

/// Expires: delta-seconds, saturated to `u32::MAX`.
pub fn parse_expires(v: &str) -> Result<u32, ParseError> {
    parse_delta("Expires", v)
}

/// Authorization / Proxy-Authorization / WWW-Authenticate /
/// Proxy-Authenticate: a scheme and its `name=value` parameters (values
/// unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParams {
    /// `Digest`, or another scheme as written (RFC 4475 regaut01).
    pub scheme: String,
    /// Parameters in order, quotes removed, escapes resolved.
    pub params: Vec<(String, String)>,
}

impl AuthParams {
    /// Parse `scheme name=value, name="value", ...`.
    pub fn parse(header: &str, v: &str) -> Result<AuthParams, ParseError> {
        let v = v.trim();
        let s_end = v.find([' ', '\t']).unwrap_or(v.len());
        let scheme = &v[..s_end];
        if scheme.is_empty() || !scheme.bytes().all(is_token_char) {
            return Err(bad(header, "bad auth scheme"));
        }
        let mut params = Vec::new();
        let rest = v[s_end..].trim();
        if !rest.is_empty() {
            for p in split_list(rest) {
                let (n, val) = p
                    .split_once('=')
                    .ok_or(bad(header, "auth-param without '='"))?;
                let n = n.trim();
                if n.is_empty() || !n.bytes().all(is_token_char) {
                    return Err(bad(header, "bad auth-param name"));
                }
                let val = val.trim();
                let val = if let Some(q) = val.strip_prefix('"') {
                    let end = quoted_end(q).ok_or(bad(header, "unterminated quoted string"))?;
                    if !q[end + 1..].trim().is_empty() {
                        return Err(bad(header, "junk after a quoted string"));
                    }
                    unescape(&q[..end])
                } else {
                    val.to_owned()
                };
                params.push((n.to_owned(), val));
            }
        }
        Ok(AuthParams {
            scheme: scheme.to_owned(),
            params,
        })
    }

    /// Whether the scheme is Digest.
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    /// A parameter's value (names case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_lws_and_rport() {
        let v = Via::parse(
            "SIP  /   2.0 /UDP     192.0.2.2:5070 ; branch = z9hG4bKa ;rport;received=10.0.0.1",
        )
        .expect("parses");
        assert_eq!(
            (v.transport.as_str(), v.host.as_str(), v.port),
            ("UDP", "192.0.2.2", Some(5070))
        );
        assert_eq!(v.rfc3261_branch(), Some("z9hG4bKa"));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some("10.0.0.1"));
        assert_eq!(
            Via::parse("SIP/2.0/UDP h;branch=z9hG4bK")
                .expect("parses")
                .rfc3261_branch(),
            None
        );
        assert!(Via::parse("SIP/2.0/UDP 192.0.2.15;;").is_err());
        assert!(Via::parse("SIP/3.0/UDP h").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("To", "\"A \\\"B\" <sip:a@b;lr>;tag=1").expect("parses");
        assert_eq!(
            (n.uri.as_str(), n.tag(), n.bracketed),
            ("sip:a@b;lr", Some("1"), true)
        );
        let n = NameAddr::parse("Contact", "sip:+1@gw;unknownparam").expect("parses");
        assert_eq!(n.uri, "sip:+1@gw");
        assert_eq!(n.params.get("unknownparam"), Some(None));
        assert!(NameAddr::parse("To", "\"open <sip:a@b>").is_err());
        assert!(NameAddr::parse("To", "Watson, Thomas <sip:a@b>").is_err());
        assert!(NameAddr::parse("To", "< sip:a@b >").is_err());
        assert!(NameAddr::parse("Contact", "sip:u@h?Route=x").is_err());
        assert_eq!(
            NameAddr::parse("From", "caller<sip:c@e>;tag=3")
                .expect("parses")
                .display
                .as_deref(),
            Some("caller")
        );
        let c = NameAddr::parse("Contact", "<sip:a@b>;expires=99999999999").expect("parses");
        assert_eq!(c.expires().expect("parses"), Some(u32::MAX));
    }

    #[test]
    fn contact_star_and_list() {
        assert_eq!(Contact::parse(" * ").expect("parses"), Contact::Star);
        let Contact::Addrs(a) =
            Contact::parse("<sip:a@b>;q=0.5, \"x, y\" <sip:c@d>").expect("parses")
        else {
            panic!()
        };
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn scalars() {
        assert_eq!(
            CSeq::parse("0009  INVITE").expect("parses"),
            CSeq {
                seq: 9,
                method: "INVITE".into()
            }
        );
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert_eq!(parse_max_forwards("0068").expect("parses"), 68);
        assert!(parse_max_forwards("300").is_err());
        assert_eq!(
            parse_expires("100000000000000000000").expect("parses"),
            u32::MAX
        );
    }

    #[test]
    fn digest_params() {
        let a = AuthParams::parse(
            "Authorization",
            "Digest username=\"bob\", realm=\"x.org\", nonce=\"n\", uri=\"sip:x.org\", response=\"abc\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c\"",
        )
        .expect("parses");
        assert!(a.is_digest());
        assert_eq!(a.get("USERNAME"), Some("bob"));
        assert_eq!(a.get("nc"), Some("00000001"));
        assert_eq!(a.get("algorithm"), Some("SHA-256"));
        let w = AuthParams::parse(
            "WWW-Authenticate",
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth\", stale=true",
        )
        .expect("parses");
        assert_eq!(w.get("stale"), Some("true"));
        assert!(
            !AuthParams::parse("Authorization", "NoOneKnowsThisScheme opaque-data=here")
                .expect("parses")
                .is_digest()
        );
    }
}
