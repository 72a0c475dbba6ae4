//! Lossless message model.
//!
//! A [`Message`] keeps the bytes it was framed from. The start line and each
//! header field are byte ranges of those bytes, tagged with the header's
//! canonical name (compact forms expanded, case normalised for the names we
//! know). Edits replace or insert whole header lines; serialising copies
//! every untouched line byte for byte, so unknown headers, odd whitespace
//! and folding pass a proxy unchanged (RFC 4475 wsinv). Nothing is ever
//! re-serialised through a parser.

use std::ops::Range;

use crate::error::ParseError;
use crate::headers;

/// Where a line's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A range of the original bytes.
    Orig(Range<usize>),
    /// A line written by an edit (no CRLF).
    New(Vec<u8>),
}

/// One header field: canonical name, its line(s) and where the value starts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    name: String,
    line: Line,
    /// Value range relative to the start of the line (folding included).
    value: Range<usize>,
}

/// The parsed start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP/2.0`.
    Request {
        /// The method token, case-sensitive (RFC 3261 §7.1).
        method: String,
        /// The Request-URI as written.
        uri: String,
    },
    /// `SIP/2.0 SP Status-Code SP Reason-Phrase`.
    Response {
        /// 100..=699.
        code: u16,
        /// Reason phrase bytes (UTF-8 allowed, may be empty).
        reason: Vec<u8>,
    },
}

/// A view of one header field.
#[derive(Debug, Clone, Copy)]
pub struct HeaderRef<'a> {
    /// Canonical name (e.g. `Call-ID` for `i`, `call-id`, `CALL-ID`).
    pub name: &'a str,
    /// The whole field as on the wire, continuation lines included, no
    /// final CRLF.
    pub line: &'a [u8],
    /// The value bytes as on the wire (folding included, outer whitespace
    /// trimmed).
    pub raw_value: &'a [u8],
}

impl HeaderRef<'_> {
    /// The value with folding (CRLF + whitespace) turned into spaces.
    pub fn value(&self) -> String {
        unfold(self.raw_value)
    }
}

/// Turn folded value bytes into one line of text (invalid UTF-8 is
/// replaced; the wire bytes stay untouched in the message).
pub fn unfold(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            out.push(b' ');
            i += 2;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compact header names (RFC 3261 §7.3.3 and the IANA registry).
const COMPACT: &[(u8, &str)] = &[
    (b'i', "Call-ID"),
    (b'm', "Contact"),
    (b'e', "Content-Encoding"),
    (b'l', "Content-Length"),
    (b'f', "From"),
    (b't', "To"),
    (b'v', "Via"),
    (b'k', "Supported"),
    (b's', "Subject"),
    (b'c', "Content-Type"),
    (b'o', "Event"),
    (b'u', "Allow-Events"),
    (b'r', "Refer-To"),
    (b'b', "Referred-By"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Long names whose spelling we normalise (matching is case-insensitive).
const KNOWN: &[&str] = &[
    "Accept",
    "Allow",
    "Allow-Events",
    "Authorization",
    "Call-ID",
    "Contact",
    "Content-Encoding",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Max-Forwards",
    "Min-Expires",
    "Path",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Require",
    "Retry-After",
    "Route",
    "Session-Expires",
    "Subject",
    "Supported",
    "To",
    "Unsupported",
    "Via",
    "WWW-Authenticate",
];

/// The canonical name for a header name as written: compact forms
/// expanded, known names in their RFC spelling, unknown names unchanged.
pub fn canonical_name(raw: &[u8]) -> String {
    if raw.len() == 1 {
        let c = raw[0].to_ascii_lowercase();
        if let Some((_, long)) = COMPACT.iter().find(|(k, _)| *k == c) {
            return (*long).to_owned();
        }
    }
    for known in KNOWN {
        if known.as_bytes().eq_ignore_ascii_case(raw) {
            return (*known).to_owned();
        }
    }
    String::from_utf8_lossy(raw).into_owned()
}

/// RFC 3261 `token` characters.
pub(crate) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

fn is_wsp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// A SIP message framed from bytes, editable in place, serialised
/// losslessly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    raw: Vec<u8>,
    start: StartLine,
    start_line: Line,
    fields: Vec<Field>,
    body: Range<usize>,
}

/// A parsed field before it joins a message: canonical name, its whole
/// line range (continuations included), value range relative to the line.
pub(crate) type RawField = (String, Range<usize>, Range<usize>);

/// A parsed header section: start line, its range, the fields.
pub(crate) type Head = (StartLine, Range<usize>, Vec<RawField>);

/// Parse the start line and header fields of `head` (no final CRLFCRLF).
pub(crate) fn parse_head(head: &[u8], max_headers: usize) -> Result<Head, ParseError> {
    let mut lines = Vec::new();
    let mut pos = 0;
    while pos <= head.len() {
        let end = find(&head[pos..], b"\r\n").map_or(head.len(), |i| pos + i);
        lines.push(pos..end);
        pos = end + 2;
    }
    let first = lines.first().cloned().unwrap_or(0..0);
    let start = parse_start_line(&head[first.clone()])?;
    // (name, whole line range, value range relative to line start)
    let mut fields: Vec<RawField> = Vec::new();
    for l in lines.into_iter().skip(1) {
        let bytes = &head[l.clone()];
        match bytes.first() {
            None => return Err(ParseError::BadHeaderLine("empty line")),
            Some(c) if is_wsp(*c) => {
                // Folding: extends the previous field.
                let Some(last) = fields.last_mut() else {
                    return Err(ParseError::BadHeaderLine("continuation before any header"));
                };
                last.1.end = l.end;
            }
            Some(_) => {
                if fields.len() >= max_headers {
                    return Err(ParseError::TooManyHeaders { limit: max_headers });
                }
                let name_end = bytes
                    .iter()
                    .position(|c| !is_token_char(*c))
                    .unwrap_or(bytes.len());
                if name_end == 0 {
                    return Err(ParseError::BadHeaderLine("header name is not a token"));
                }
                let mut i = name_end;
                while i < bytes.len() && is_wsp(bytes[i]) {
                    i += 1;
                }
                if bytes.get(i) != Some(&b':') {
                    return Err(ParseError::BadHeaderLine("no colon after the header name"));
                }
                fields.push((canonical_name(&bytes[..name_end]), l.clone(), i + 1..0));
            }
        }
    }
    // Value ranges, now that continuation lines are known.
    for f in &mut fields {
        let line = &head[f.1.clone()];
        let mut s = f.2.start;
        while s < line.len() && (is_wsp(line[s]) || line[s] == b'\r' || line[s] == b'\n') {
            s += 1;
        }
        let mut e = line.len();
        while e > s && (is_wsp(line[e - 1]) || line[e - 1] == b'\r' || line[e - 1] == b'\n') {
            e -= 1;
        }
        f.2 = s..e;
    }
    Ok((start, first, fields))
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_version(v: &[u8]) -> Result<(), ParseError> {
    if v == b"SIP/2.0" {
        return Ok(());
    }
    // A well-formed other version gets 505; anything else is a bad line.
    let ok = v.len() > 4
        && v[..4].eq_ignore_ascii_case(b"SIP/")
        && v[4..].split(|c| *c == b'.').count() == 2
        && v[4..].iter().all(|c| c.is_ascii_digit() || *c == b'.');
    if v.eq_ignore_ascii_case(b"SIP/2.0") {
        Ok(())
    } else if ok {
        Err(ParseError::VersionNotSupported(
            String::from_utf8_lossy(v).into_owned(),
        ))
    } else {
        Err(ParseError::BadStartLine("bad SIP-Version"))
    }
}

fn parse_start_line(line: &[u8]) -> Result<StartLine, ParseError> {
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let sp = line
            .iter()
            .position(|c| *c == b' ')
            .ok_or(ParseError::BadStartLine("no status code"))?;
        parse_version(&line[..sp])?;
        let rest = &line[sp + 1..];
        let code_end = rest.iter().position(|c| *c == b' ').unwrap_or(rest.len());
        let code = &rest[..code_end];
        if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadStatusCode);
        }
        let code: u16 = std::str::from_utf8(code)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(ParseError::BadStatusCode)?;
        if !(100..=699).contains(&code) {
            return Err(ParseError::BadStatusCode);
        }
        if code_end == rest.len() {
            return Err(ParseError::BadStartLine("no space after the status code"));
        }
        return Ok(StartLine::Response {
            code,
            reason: rest[code_end + 1..].to_vec(),
        });
    }
    // Strict: exactly one SP between the three parts (RFC 4475 lwsstart,
    // trws and lwsruri are rejected, which the RFC allows).
    let parts: Vec<&[u8]> = line.split(|c| *c == b' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        if parts.len() >= 3 && parse_version(parts[parts.len() - 1]).is_ok() {
            return Err(ParseError::BadRequestUri("whitespace in the request line"));
        }
        return Err(ParseError::BadStartLine(
            "not Method SP Request-URI SP SIP-Version",
        ));
    }
    parse_version(parts[2])?;
    if !parts[0].iter().all(|c| is_token_char(*c)) {
        return Err(ParseError::BadStartLine("method is not a token"));
    }
    let method = String::from_utf8_lossy(parts[0]).into_owned();
    let uri = std::str::from_utf8(parts[1]).map_err(|_| ParseError::BadRequestUri("not ASCII"))?;
    check_request_uri(uri)?;
    Ok(StartLine::Request {
        method,
        uri: uri.to_owned(),
    })
}

/// Request-URI checks that need no application knowledge: a scheme, no
/// brackets or control bytes, and no escaped headers in a SIP URI (RFC 4475
/// escruri: a proxy must not forward them).
fn check_request_uri(uri: &str) -> Result<(), ParseError> {
    if uri.starts_with('<') {
        return Err(ParseError::BadRequestUri("enclosed in <>"));
    }
    if uri.bytes().any(|c| c <= b' ' || c == 0x7f) {
        return Err(ParseError::BadRequestUri("control character"));
    }
    let scheme = headers::uri_scheme(uri).ok_or(ParseError::BadRequestUri("no scheme"))?;
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let rest = &uri[scheme.len() + 1..];
        let host_part = rest.rfind('@').map_or(rest, |at| &rest[at + 1..]);
        if host_part.contains('?') {
            return Err(ParseError::BadRequestUri(
                "escaped headers in the Request-URI",
            ));
        }
    }
    Ok(())
}

impl Message {
    /// Build a message from bytes already delimited by the framer: `raw`
    /// holds exactly the header section, CRLFCRLF and `body_len` body bytes.
    pub(crate) fn from_parts(
        raw: Vec<u8>,
        start: StartLine,
        start_range: Range<usize>,
        fields: Vec<RawField>,
        body: Range<usize>,
    ) -> Self {
        Message {
            raw,
            start,
            start_line: Line::Orig(start_range),
            fields: fields
                .into_iter()
                .map(|(name, line, value)| Field {
                    name,
                    line: Line::Orig(line),
                    value,
                })
                .collect(),
            body,
        }
    }

    /// The parsed start line.
    pub fn start(&self) -> &StartLine {
        &self.start
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request, or the CSeq method of a response.
    pub fn method(&self) -> Option<String> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method.clone()),
            StartLine::Response { .. } => self.cseq().ok().map(|c| c.method),
        }
    }

    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The body bytes, exactly Content-Length of them.
    pub fn body(&self) -> &[u8] {
        &self.raw[self.body.clone()]
    }

    fn line_bytes<'a>(&'a self, line: &'a Line) -> &'a [u8] {
        match line {
            Line::Orig(r) => &self.raw[r.clone()],
            Line::New(v) => v,
        }
    }

    fn view<'a>(&'a self, f: &'a Field) -> HeaderRef<'a> {
        let line = self.line_bytes(&f.line);
        HeaderRef {
            name: &f.name,
            line,
            raw_value: &line[f.value.clone()],
        }
    }

    /// All header fields in wire order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderRef<'_>> {
        self.fields.iter().map(|f| self.view(f))
    }

    /// The fields with this (canonical or compact, any case) name.
    pub fn headers_named<'a>(&'a self, name: &str) -> impl Iterator<Item = HeaderRef<'a>> {
        let canon = canonical_name(name.as_bytes());
        self.fields
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(&canon))
            .map(|f| self.view(f))
    }

    /// Every value of a list header (several fields and comma-separated
    /// values alike), unfolded, in order.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers_named(name)
            .flat_map(|h| {
                headers::split_list(&h.value())
                    .into_iter()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The value of a header that must appear at most once.
    pub fn single(&self, name: &'static str) -> Result<Option<String>, ParseError> {
        let mut it = self.headers_named(name);
        let first = it.next().map(|h| h.value());
        if it.next().is_some() {
            return Err(ParseError::DuplicateHeader(name));
        }
        Ok(first)
    }

    fn required(&self, name: &'static str) -> Result<String, ParseError> {
        self.single(name)?.ok_or(ParseError::MissingHeader(name))
    }

    /// The CSeq header, parsed.
    pub fn cseq(&self) -> Result<headers::CSeq, ParseError> {
        headers::CSeq::parse(&self.required("CSeq")?)
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<String, ParseError> {
        headers::parse_call_id(&self.required("Call-ID")?)
    }

    /// The Max-Forwards value, `None` when absent.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.single("Max-Forwards")?
            .map(|v| headers::parse_max_forwards(&v))
            .transpose()
    }

    /// The Via values, top first.
    pub fn vias(&self) -> Result<Vec<headers::Via>, ParseError> {
        self.values("Via")
            .iter()
            .map(|v| headers::Via::parse(v))
            .collect()
    }

    /// The To header.
    pub fn to(&self) -> Result<headers::NameAddr, ParseError> {
        headers::NameAddr::parse("To", &self.required("To")?)
    }

    /// The From header.
    pub fn from(&self) -> Result<headers::NameAddr, ParseError> {
        headers::NameAddr::parse("From", &self.required("From")?)
    }

    /// The Contact header(s): `None` when absent.
    pub fn contact(&self) -> Result<Option<headers::Contact>, ParseError> {
        let all: Vec<String> = self.headers_named("Contact").map(|h| h.value()).collect();
        if all.is_empty() {
            return Ok(None);
        }
        headers::Contact::parse(&all.join(",")).map(Some)
    }

    /// Check what every element needs before acting on the message: To,
    /// From, Call-ID and CSeq exactly once, at least one Via, the values of
    /// Via, To, From, Contact, CSeq, Max-Forwards and Expires well formed,
    /// and the CSeq method equal to the request method. Application-level
    /// decisions (416 for a URI scheme, 420 for Require) are left to the
    /// caller.
    pub fn validate(&self) -> Result<(), ParseError> {
        self.to()?;
        self.from()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if self.headers_named("Via").next().is_none() {
            return Err(ParseError::MissingHeader("Via"));
        }
        self.vias()?;
        self.max_forwards()?;
        self.contact()?;
        if let Some(e) = self.single("Expires")? {
            headers::parse_expires(&e)?;
        }
        if let StartLine::Request { method, .. } = &self.start {
            if *method != cseq.method {
                return Err(ParseError::MethodMismatch);
            }
        }
        Ok(())
    }

    /// Serialise: the start line, every field (untouched ones byte for
    /// byte), the empty line and the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + 128);
        self.write_to(&mut out);
        out
    }

    /// Append the serialised message to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.line_bytes(&self.start_line));
        out.extend_from_slice(b"\r\n");
        for f in &self.fields {
            out.extend_from_slice(self.line_bytes(&f.line));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(self.body());
    }

    fn new_field(name: &str, value: &str) -> Field {
        let line = format!("{name}: {value}").into_bytes();
        let len = line.len();
        Field {
            name: name.to_owned(),
            line: Line::New(line),
            value: name.len() + 2..len,
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// Insert `Name: value` as its own line before the first field of that
    /// name, or first of all when there is none.
    fn prepend_field(&mut self, name: &str, value: &str) {
        let at = self.position(name).unwrap_or(0);
        self.fields.insert(at, Self::new_field(name, value));
    }

    /// Remove the first value of the first field called `name`, keeping
    /// that field's other values byte for byte. Returns the removed value.
    fn pop_first_value(&mut self, name: &str) -> Option<String> {
        let idx = self.position(name)?;
        let f = &self.fields[idx];
        let line = self.line_bytes(&f.line).to_vec();
        let value = &line[f.value.clone()];
        let cut = headers::first_comma(value);
        match cut {
            None => {
                let removed = unfold(value).trim().to_owned();
                self.fields.remove(idx);
                Some(removed)
            }
            Some(c) => {
                let removed = unfold(&value[..c]).trim().to_owned();
                let mut rest = c + 1;
                while rest < value.len() && matches!(value[rest], b' ' | b'\t' | b'\r' | b'\n') {
                    rest += 1;
                }
                let prefix = &line[..f.value.start];
                let mut new = prefix.to_vec();
                new.extend_from_slice(&value[rest..]);
                let len = new.len();
                let vstart = prefix.len();
                let name = f.name.clone();
                self.fields[idx] = Field {
                    name,
                    line: Line::New(new),
                    value: vstart..len,
                };
                Some(removed)
            }
        }
    }

    /// Add a Via on top (RFC 3261 §16.6 step 8), as its own line.
    pub fn prepend_via(&mut self, value: &str) {
        self.prepend_field("Via", value);
    }

    /// Remove the top Via value (a proxy relaying a response, §16.7 step
    /// 3). Returns it, `None` when there is no Via.
    pub fn remove_top_via(&mut self) -> Option<String> {
        self.pop_first_value("Via")
    }

    /// Add a Record-Route value above the existing ones (§16.6 step 4).
    pub fn add_record_route(&mut self, value: &str) {
        self.prepend_field("Record-Route", value);
    }

    /// Remove the top Route value (a loose-routing proxy that finds itself
    /// there, §16.4). Returns it.
    pub fn pop_top_route(&mut self) -> Option<String> {
        self.pop_first_value("Route")
    }

    /// The top Route value, if any.
    pub fn top_route(&self) -> Option<String> {
        self.values("Route").into_iter().next()
    }

    /// Set Max-Forwards, rewriting only that field (keeping its name as
    /// written), or adding one after the start line when absent.
    pub fn set_max_forwards(&mut self, n: u8) {
        match self.position("Max-Forwards") {
            Some(idx) => {
                let f = &self.fields[idx];
                let line = self.line_bytes(&f.line);
                let mut new = line[..f.value.start].to_vec();
                let vstart = new.len();
                new.extend_from_slice(n.to_string().as_bytes());
                let len = new.len();
                let name = f.name.clone();
                self.fields[idx] = Field {
                    name,
                    line: Line::New(new),
                    value: vstart..len,
                };
            }
            None => self
                .fields
                .insert(0, Self::new_field("Max-Forwards", &n.to_string())),
        }
    }

    /// Decrement Max-Forwards for forwarding (§16.6 step 3; 70 is assumed
    /// when absent, §16.6). Fails with the value 0 when the request must be
    /// answered 483 instead, and with a parse error when the value is bad.
    pub fn decrement_max_forwards(&mut self) -> Result<u8, MaxForwardsError> {
        let cur = self
            .max_forwards()
            .map_err(MaxForwardsError::Invalid)?
            .unwrap_or(70);
        if cur == 0 {
            return Err(MaxForwardsError::TooManyHops);
        }
        self.set_max_forwards(cur - 1);
        Ok(cur - 1)
    }

    /// Rewrite the Request-URI (the start line is the only bytes written).
    pub fn set_request_uri(&mut self, uri: &str) -> Result<(), ParseError> {
        check_request_uri(uri)?;
        let StartLine::Request { method, .. } = &self.start else {
            return Err(ParseError::BadStartLine("not a request"));
        };
        let method = method.clone();
        self.start_line = Line::New(format!("{method} {uri} SIP/2.0").into_bytes());
        self.start = StartLine::Request {
            method,
            uri: uri.to_owned(),
        };
        Ok(())
    }
}

/// Why a request cannot be forwarded after a Max-Forwards decrement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaxForwardsError {
    /// Max-Forwards was 0: answer 483 Too Many Hops.
    #[error("Max-Forwards is 0")]
    TooManyHops,
    /// Max-Forwards was malformed: answer 400.
    #[error(transparent)]
    Invalid(ParseError),
}

impl MaxForwardsError {
    /// The status to answer.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooManyHops => 483,
            Self::Invalid(e) => e.status(),
        }
    }
}

/// Build a response to `req` (RFC 3261 §8.2.6): Via, From, To, Call-ID and
/// CSeq copied as written, a To tag added when `to_tag` is given and To has
/// none, `Content-Length: 0`. Extra header lines (`Name: value`) go before
/// Content-Length.
pub fn build_response(
    req: &Message,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[String],
) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n").into_bytes();
    for h in req.headers() {
        match h.name {
            "Via" | "From" | "Call-ID" | "CSeq" => {
                out.extend_from_slice(h.line);
                out.extend_from_slice(b"\r\n");
            }
            "To" => {
                out.extend_from_slice(h.line);
                let has_tag = headers::NameAddr::parse("To", &h.value())
                    .map(|n| n.tag().is_some())
                    .unwrap_or(true);
                if let (Some(tag), false) = (to_tag, has_tag) {
                    out.extend_from_slice(format!(";tag={tag}").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
            _ => {}
        }
    }
    for e in extra {
        out.extend_from_slice(e.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}
