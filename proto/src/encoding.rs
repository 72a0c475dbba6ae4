//! How pseudonyms and endpoints become field elements.
//!
//! Every party must derive the same field elements from the same user input,
//! so this module fixes two things bit for bit:
//!
//! * **Pseudonyms** are normalised first ([`Pseudonym::parse`]: E.164 for
//!   phone numbers, lowercase ASCII for SIP names), so that the same number
//!   written two ways is the same pseudonym, and then hashed to a 128-bit
//!   [`PseudonymKey`], which is what gets secret-shared and compared.
//! * **Endpoints** (a Contact URI or `host:port`) are packed into a fixed
//!   number of field elements ([`Endpoint::pack`]) so that every stored value
//!   has the same shape and its length does not leak through the share count.
//!
//! Error messages never echo the whole input: pseudonyms are private, and
//! these messages end up in CLI output, HTTP responses and logs.

use std::fmt;
use std::str::FromStr;

use crate::field::Fp;

/// blake3 key-derivation context for pseudonym keys. Changing it changes
/// every key, i.e. it is part of the wire contract.
const PSEUDONYM_KEY_CONTEXT: &str = "sharecall 2026 pseudonym key v1";

/// Longest accepted name pseudonym, in bytes.
pub const NAME_MAX_LEN: usize = 128;

/// Most digits an E.164 number may have after the `+` (ITU-T E.164 §6).
pub const E164_MAX_DIGITS: usize = 15;

/// Number of field elements a packed endpoint occupies (fixed, so the
/// length of an endpoint is hidden from the providers).
pub const ENDPOINT_ELEMENTS: usize = 10;

/// Bytes carried per field element: 31 bytes keep every element below
/// 2^248 < p, so packing never needs a reduction and is injective.
pub const ENDPOINT_BYTES_PER_ELEMENT: usize = 31;

/// Longest endpoint in bytes: the packed stream minus its 2-byte length
/// prefix (308 bytes, above the 256 the product requires).
pub const ENDPOINT_MAX_LEN: usize = ENDPOINT_ELEMENTS * ENDPOINT_BYTES_PER_ELEMENT - 2;

/// Length of the packed byte stream (length prefix, content, zero padding).
const STREAM_LEN: usize = ENDPOINT_ELEMENTS * ENDPOINT_BYTES_PER_ELEMENT;

/// Separators that may appear in a written phone number and are dropped.
const PHONE_SEPARATORS: &[char] = &[' ', '-', '.', '/', '(', ')'];

/// Punctuation allowed in name pseudonyms besides ASCII letters and digits
/// (the SIP `user` / `unreserved` characters plus `@` and `%`).
const NAME_PUNCTUATION: &str = "-_.!~*'()&=+$,;?/@%";

/// Why a pseudonym or endpoint was refused.
///
/// The messages are meant for end users (they reach the CLI and HTTP
/// responses); they name the offending character or count, not the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// Nothing but whitespace (or only a `sip:`/`tel:` prefix) was given.
    #[error("pseudonym is empty")]
    EmptyPseudonym,
    /// A phone number without an international prefix: its meaning depends
    /// on the caller's country, so it cannot be normalised.
    #[error(
        "phone number has no country code; write it in international form, \
         e.g. +49 30 1234567 or 0049 30 1234567"
    )]
    PhoneNeedsCountryCode,
    /// A character that is neither a digit nor an allowed separator.
    #[error(
        "phone number contains {0:?}; only digits, a leading '+' and the \
         separators space - . / ( ) are allowed"
    )]
    PhoneInvalidChar(char),
    /// A `+` somewhere other than at the very start.
    #[error("'+' may only appear at the start of a phone number")]
    PhoneMisplacedPlus,
    /// Parentheses that do not pair up, or are nested.
    #[error("phone number has unbalanced or nested parentheses")]
    PhoneParentheses,
    /// A `(0)` trunk prefix: dropping it or keeping it both give a valid
    /// number (Italy keeps the 0), so guessing could silently register the
    /// wrong number.
    #[error(
        "phone number contains a \"(0)\" trunk prefix, which is ambiguous; \
         write the number without it (e.g. +44 20 7946 0958, not +44 (0)20 7946 0958)"
    )]
    PhoneTrunkPrefix,
    /// The country code would start with 0 (no country code does).
    #[error("the country code of a phone number cannot start with 0")]
    PhoneLeadingZero,
    /// Too few or too many digits after the international prefix.
    #[error("phone number has {0} digits after the country prefix; E.164 allows 1 to 15")]
    PhoneDigitCount(usize),
    /// A name pseudonym longer than [`NAME_MAX_LEN`] bytes.
    #[error("pseudonym is {0} bytes long; at most 128 are allowed")]
    NameTooLong(usize),
    /// A name pseudonym with a non-ASCII character (refused rather than
    /// normalised, since Unicode look-alikes would make distinct names look
    /// identical).
    #[error("pseudonym contains the non-ASCII character {0:?}; only ASCII is allowed")]
    NameNonAscii(char),
    /// A name pseudonym with whitespace, a control character or
    /// punctuation outside the allowed set.
    #[error("pseudonym contains {0:?}; allowed are letters, digits and -_.!~*'()&=+$,;?/@%")]
    NameInvalidChar(char),
    /// An empty endpoint.
    #[error("endpoint is empty")]
    EmptyEndpoint,
    /// An endpoint longer than [`ENDPOINT_MAX_LEN`] bytes.
    #[error("endpoint is {0} bytes long; at most 308 bytes are allowed")]
    EndpointTooLong(usize),
    /// A control character (CR/LF would allow SIP header injection).
    #[error(
        "endpoint contains the control character {0:?}; control characters \
         (including CR and LF) are refused"
    )]
    EndpointControlChar(char),
    /// Whitespace at either end of an endpoint (ambiguous in SIP headers).
    #[error("endpoint has leading or trailing whitespace")]
    EndpointWhitespace,
    /// A packed endpoint with the wrong number of field elements.
    #[error("packed endpoint has {0} field elements; expected 10")]
    PackedWrongElementCount(usize),
    /// A packed element ≥ 2^248, which [`Endpoint::pack`] never produces.
    #[error("packed endpoint element {0} is out of range (>= 2^248)")]
    PackedElementOutOfRange(usize),
    /// A length prefix above [`ENDPOINT_MAX_LEN`].
    #[error("packed endpoint declares a length of {0} bytes; at most 308 are allowed")]
    PackedLengthTooLarge(usize),
    /// Non-zero bytes after the content (every endpoint has exactly one
    /// packing; anything else is corruption or tampering).
    #[error("packed endpoint has non-zero padding")]
    PackedNonZeroPadding,
    /// Packed content that is not UTF-8.
    #[error("packed endpoint is not valid UTF-8")]
    PackedInvalidUtf8,
}

/// Which normalisation a pseudonym went through; part of the key derivation
/// so a name can never collide with a number by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PseudonymKind {
    /// A phone number in E.164 form, `+` followed by 1 to 15 digits.
    E164,
    /// A SIP user name or address, lowercase ASCII.
    Name,
}

impl PseudonymKind {
    /// Domain-separation tag hashed in front of the normalised text.
    fn tag(self) -> &'static str {
        match self {
            PseudonymKind::E164 => "e164:",
            PseudonymKind::Name => "name:",
        }
    }
}

/// A normalised pseudonym (phone number or SIP name).
///
/// Only [`Pseudonym::parse`] constructs one, so the text is always in
/// normal form and equal pseudonyms compare equal as values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym {
    kind: PseudonymKind,
    text: String,
}

impl Pseudonym {
    /// Parses and normalises user input.
    ///
    /// * `tel:` prefix: must be a phone number.
    /// * Starts with `+`, or consists only of digits and the separators
    ///   `space - . / ( )`: a phone number. `+<digits>` and `00<digits>`
    ///   become E.164 (`+49 (30) 1234-567` → `+49301234567`); a national
    ///   number is refused, since its meaning depends on the caller's country.
    /// * Otherwise (after an optional `sip:` prefix): a name, lowercased
    ///   ASCII of 1..=128 bytes from letters, digits and `-_.!~*'()&=+$,;?/@%`.
    ///
    /// Prefixes are matched case-insensitively (URI schemes are).
    pub fn parse(input: &str) -> Result<Pseudonym, EncodingError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EncodingError::EmptyPseudonym);
        }
        if let Some(rest) = strip_prefix_ignore_case(s, "tel:") {
            return parse_phone(rest);
        }
        let rest = strip_prefix_ignore_case(s, "sip:").unwrap_or(s);
        if looks_like_phone(rest) {
            parse_phone(rest)
        } else {
            parse_name(rest)
        }
    }

    /// The normalised text (`+49301234567`, `alice@example.org`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a phone number or a name.
    pub fn kind(&self) -> PseudonymKind {
        self.kind
    }

    /// The 128-bit key that is secret-shared and compared in place of the
    /// pseudonym: the first 16 bytes (little-endian) of
    /// `blake3::derive_key("sharecall 2026 pseudonym key v1", tag ‖ text)`
    /// with tag `e164:` or `name:`. 128 bits make collisions negligible.
    pub fn key(&self) -> PseudonymKey {
        let mut material = String::with_capacity(5 + self.text.len());
        material.push_str(self.kind.tag());
        material.push_str(&self.text);
        let digest = blake3::derive_key(PSEUDONYM_KEY_CONTEXT, material.as_bytes());
        let mut low = [0u8; 16];
        low.copy_from_slice(&digest[..16]);
        PseudonymKey(u128::from_le_bytes(low))
    }
}

impl fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Pseudonym {
    type Err = EncodingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pseudonym::parse(s)
    }
}

/// The 128-bit key of a pseudonym (see [`Pseudonym::key`]).
///
/// Any `u128` is a valid key. Keys are always < 2^128, far below p; the
/// comparison protocol relies on this bound for its masking room, so keys
/// must only enter the field through [`PseudonymKey::to_field`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PseudonymKey(pub u128);

impl PseudonymKey {
    /// The key as a field element (exact: the value is < 2^128 < p, which
    /// the comparison protocol relies on).
    pub fn to_field(&self) -> Fp {
        Fp::from_u128(self.0)
    }

    /// The key as an integer.
    pub fn as_u128(&self) -> u128 {
        self.0
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// A `+` start, or only digits and separators with at least one digit.
fn looks_like_phone(s: &str) -> bool {
    s.starts_with('+')
        || (s.chars().any(|c| c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_digit() || PHONE_SEPARATORS.contains(&c)))
}

fn parse_phone(input: &str) -> Result<Pseudonym, EncodingError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(EncodingError::EmptyPseudonym);
    }
    let (plus, body) = match s.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let mut digits = String::with_capacity(body.len());
    // Digits inside the currently open parenthesis, to spot "(0)".
    let mut group: Option<String> = None;
    for c in body.chars() {
        match c {
            '0'..='9' => {
                digits.push(c);
                if let Some(g) = group.as_mut() {
                    g.push(c);
                }
            }
            '(' => {
                if group.is_some() {
                    return Err(EncodingError::PhoneParentheses);
                }
                group = Some(String::new());
            }
            ')' => match group.take() {
                None => return Err(EncodingError::PhoneParentheses),
                Some(g) if !g.is_empty() && g.chars().all(|d| d == '0') => {
                    return Err(EncodingError::PhoneTrunkPrefix);
                }
                Some(_) => {}
            },
            '+' => return Err(EncodingError::PhoneMisplacedPlus),
            c if PHONE_SEPARATORS.contains(&c) => {}
            c => return Err(EncodingError::PhoneInvalidChar(c)),
        }
    }
    if group.is_some() {
        return Err(EncodingError::PhoneParentheses);
    }
    let national = if plus {
        digits.as_str()
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest
    } else {
        return Err(EncodingError::PhoneNeedsCountryCode);
    };
    if national.is_empty() || national.len() > E164_MAX_DIGITS {
        return Err(EncodingError::PhoneDigitCount(national.len()));
    }
    if national.starts_with('0') {
        return Err(EncodingError::PhoneLeadingZero);
    }
    Ok(Pseudonym {
        kind: PseudonymKind::E164,
        text: format!("+{national}"),
    })
}

fn parse_name(s: &str) -> Result<Pseudonym, EncodingError> {
    if s.is_empty() {
        return Err(EncodingError::EmptyPseudonym);
    }
    for c in s.chars() {
        if !c.is_ascii() {
            return Err(EncodingError::NameNonAscii(c));
        }
        if !(c.is_ascii_alphanumeric() || NAME_PUNCTUATION.contains(c)) {
            return Err(EncodingError::NameInvalidChar(c));
        }
    }
    // All ASCII from here on, so bytes == characters.
    if s.len() > NAME_MAX_LEN {
        return Err(EncodingError::NameTooLong(s.len()));
    }
    Ok(Pseudonym {
        kind: PseudonymKind::Name,
        text: s.to_ascii_lowercase(),
    })
}

/// Where a user can be reached: a Contact URI or `host:port`.
///
/// Only [`Endpoint::parse`] and [`Endpoint::unpack`] construct one, so the
/// text is always non-empty, at most [`ENDPOINT_MAX_LEN`] bytes, free of
/// control characters and of surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint(String);

impl Endpoint {
    /// Validates an endpoint. UTF-8 is allowed (internationalised host
    /// names); control characters are not — CR/LF would let a stored value
    /// inject SIP headers when the front end writes it into a Contact
    /// header. This covers C0, DEL and the C1 controls.
    pub fn parse(s: &str) -> Result<Endpoint, EncodingError> {
        if s.is_empty() {
            return Err(EncodingError::EmptyEndpoint);
        }
        if s.len() > ENDPOINT_MAX_LEN {
            return Err(EncodingError::EndpointTooLong(s.len()));
        }
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(EncodingError::EndpointControlChar(c));
        }
        if s.trim() != s {
            return Err(EncodingError::EndpointWhitespace);
        }
        Ok(Endpoint(s.to_owned()))
    }

    /// The endpoint text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Packs into [`ENDPOINT_ELEMENTS`] field elements.
    ///
    /// The byte stream is the 2-byte big-endian length, the UTF-8 bytes and
    /// zero padding up to 310 bytes; element `i` holds stream bytes
    /// `31·i .. 31·i+31` as the low 31 bytes of its little-endian encoding
    /// (so it is < 2^248). The packing is canonical: [`Endpoint::unpack`]
    /// accepts exactly the outputs of this function.
    pub fn pack(&self) -> [Fp; ENDPOINT_ELEMENTS] {
        let mut stream = [0u8; STREAM_LEN];
        let bytes = self.0.as_bytes();
        // parse() bounds the length by ENDPOINT_MAX_LEN = 308 < 2^16, and
        // the copy length is clamped so no invariant breach can panic.
        let len = bytes.len().min(ENDPOINT_MAX_LEN);
        let len16 = u16::try_from(len).unwrap_or(u16::MAX);
        stream[..2].copy_from_slice(&len16.to_be_bytes());
        stream[2..2 + len].copy_from_slice(&bytes[..len]);

        // Build each element as lo + hi·2^128 so no fallible decoding is
        // needed: hi has at most 15 bytes, so the value is < 2^248 < p.
        let two_128 = Fp::pow2(128);
        let mut out = [Fp::ZERO; ENDPOINT_ELEMENTS];
        for (elem, chunk) in out
            .iter_mut()
            .zip(stream.chunks_exact(ENDPOINT_BYTES_PER_ELEMENT))
        {
            let mut lo = [0u8; 16];
            let mut hi = [0u8; 16];
            lo.copy_from_slice(&chunk[..16]);
            hi[..15].copy_from_slice(&chunk[16..]);
            *elem = Fp::from_u128(u128::from_le_bytes(lo))
                + Fp::from_u128(u128::from_le_bytes(hi)) * two_128;
        }
        out
    }

    /// Inverse of [`Endpoint::pack`]. Refuses anything `pack` cannot have
    /// produced (wrong element count, element ≥ 2^248, length above
    /// [`ENDPOINT_MAX_LEN`], non-zero padding, invalid UTF-8, or text that
    /// [`Endpoint::parse`] refuses): a reconstructed value that fails here
    /// means corrupted or tampered shares, never something to repair.
    pub fn unpack(elements: &[Fp]) -> Result<Endpoint, EncodingError> {
        if elements.len() != ENDPOINT_ELEMENTS {
            return Err(EncodingError::PackedWrongElementCount(elements.len()));
        }
        let mut stream = [0u8; STREAM_LEN];
        for (i, (elem, chunk)) in elements
            .iter()
            .zip(stream.chunks_exact_mut(ENDPOINT_BYTES_PER_ELEMENT))
            .enumerate()
        {
            let bytes = elem.to_bytes();
            if bytes[ENDPOINT_BYTES_PER_ELEMENT..].iter().any(|&b| b != 0) {
                return Err(EncodingError::PackedElementOutOfRange(i));
            }
            chunk.copy_from_slice(&bytes[..ENDPOINT_BYTES_PER_ELEMENT]);
        }
        let len = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
        if len > ENDPOINT_MAX_LEN {
            return Err(EncodingError::PackedLengthTooLarge(len));
        }
        let (content, padding) = stream[2..].split_at(len);
        if padding.iter().any(|&b| b != 0) {
            return Err(EncodingError::PackedNonZeroPadding);
        }
        let text = std::str::from_utf8(content).map_err(|_| EncodingError::PackedInvalidUtf8)?;
        Endpoint::parse(text)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Endpoint {
    type Err = EncodingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e164(s: &str) -> String {
        let p = Pseudonym::parse(s).expect("valid phone number");
        assert_eq!(p.kind(), PseudonymKind::E164);
        p.as_str().to_owned()
    }

    fn name(s: &str) -> String {
        let p = Pseudonym::parse(s).expect("valid name");
        assert_eq!(p.kind(), PseudonymKind::Name);
        p.as_str().to_owned()
    }

    fn err(s: &str) -> EncodingError {
        Pseudonym::parse(s).expect_err("should be refused")
    }

    #[test]
    fn e164_normalisation() {
        assert_eq!(e164("+49 (30) 1234-567"), "+49301234567");
        assert_eq!(e164("0049 30 1234567"), "+49301234567");
        assert_eq!(e164("+49301234567"), "+49301234567");
        assert_eq!(e164("tel:+49-30-1234567"), "+49301234567");
        assert_eq!(e164("TEL:0049.30.1234567"), "+49301234567");
        assert_eq!(e164("  +1 (415) 555/0100  "), "+14155550100");
        assert_eq!(e164("sip:+49301234567"), "+49301234567");
        assert_eq!(e164("+1"), "+1");
        assert_eq!(e164("+123456789012345"), "+123456789012345");
        // Italian numbers keep their leading 0 after the country code.
        assert_eq!(e164("+39 06 1234 5678"), "+390612345678");
        let p = Pseudonym::parse("+49 30 1234567").expect("valid");
        assert_eq!(p.to_string(), "+49301234567");
    }

    #[test]
    fn e164_errors() {
        assert_eq!(err("030 1234567"), EncodingError::PhoneNeedsCountryCode);
        assert_eq!(err("1001"), EncodingError::PhoneNeedsCountryCode);
        assert_eq!(err("tel:030-1234567"), EncodingError::PhoneNeedsCountryCode);
        assert!(err("030 1234567").to_string().contains("country code"));
        assert_eq!(err("+"), EncodingError::PhoneDigitCount(0));
        assert_eq!(err("00"), EncodingError::PhoneDigitCount(0));
        assert_eq!(err("+1234567890123456"), EncodingError::PhoneDigitCount(16));
        assert_eq!(err("+049301234567"), EncodingError::PhoneLeadingZero);
        assert_eq!(err("000 49 30"), EncodingError::PhoneLeadingZero);
        assert_eq!(err("+0049301234567"), EncodingError::PhoneLeadingZero);
        assert_eq!(err("+49 30 12a4"), EncodingError::PhoneInvalidChar('a'));
        assert_eq!(err("+49\t30"), EncodingError::PhoneInvalidChar('\t'));
        assert_eq!(err("tel:alice"), EncodingError::PhoneInvalidChar('a'));
        assert_eq!(err("+49+30"), EncodingError::PhoneMisplacedPlus);
        assert_eq!(err("++49"), EncodingError::PhoneMisplacedPlus);
        assert_eq!(err("+49 (30 123"), EncodingError::PhoneParentheses);
        assert_eq!(err("+49 30) 123"), EncodingError::PhoneParentheses);
        assert_eq!(err("+49 ((30)) 123"), EncodingError::PhoneParentheses);
        assert_eq!(err("+44 (0)20 7946 0958"), EncodingError::PhoneTrunkPrefix);
        assert_eq!(err("tel:"), EncodingError::EmptyPseudonym);
    }

    #[test]
    fn name_normalisation() {
        assert_eq!(name("alice"), "alice");
        assert_eq!(name("  Alice@Example.ORG \n"), "alice@example.org");
        assert_eq!(name("sip:alice@example.org"), "alice@example.org");
        assert_eq!(name("SIP:Bob"), "bob");
        assert_eq!(name("a-_.!~*'()&=+$,;?/@%z"), "a-_.!~*'()&=+$,;?/@%z");
        assert_eq!(name("1001@pbx.example"), "1001@pbx.example");
        assert_eq!(name(&"x".repeat(128)), "x".repeat(128));
        // A name may contain a '+' after the first character.
        assert_eq!(name("alice+work"), "alice+work");
    }

    #[test]
    fn name_errors() {
        assert_eq!(err(""), EncodingError::EmptyPseudonym);
        assert_eq!(err("   "), EncodingError::EmptyPseudonym);
        assert_eq!(err("sip:"), EncodingError::EmptyPseudonym);
        assert_eq!(err(&"x".repeat(129)), EncodingError::NameTooLong(129));
        assert_eq!(err("alice smith"), EncodingError::NameInvalidChar(' '));
        assert_eq!(err("alice\r\nvia"), EncodingError::NameInvalidChar('\r'));
        assert_eq!(err("al\u{7f}ice"), EncodingError::NameInvalidChar('\u{7f}'));
        assert_eq!(err("alice<x>"), EncodingError::NameInvalidChar('<'));
        assert_eq!(err("alice\"x"), EncodingError::NameInvalidChar('"'));
        assert_eq!(err("jürgen"), EncodingError::NameNonAscii('ü'));
        assert_eq!(err("sip: alice"), EncodingError::NameInvalidChar(' '));
        // Messages show control characters escaped, never raw.
        let msg = err("a\nb").to_string();
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn keys() {
        let k = |s: &str| Pseudonym::parse(s).expect("valid").key();
        assert_eq!(k("alice"), k("alice"));
        assert_eq!(k("alice"), k(" ALICE "));
        assert_eq!(k("alice"), k("sip:alice"));
        assert_ne!(k("alice"), k("bob"));
        assert_ne!(k("alice"), k("alice@example.org"));
        assert_eq!(k("+49 (30) 1234-567"), k("0049 30 1234567"));
        assert_eq!(k("+49 (30) 1234-567"), k("tel:+49301234567"));
        assert_ne!(k("+49301234567"), k("+49301234568"));

        // Pin the derivation so an accidental change of the contract fails.
        let digest = blake3::derive_key(PSEUDONYM_KEY_CONTEXT, b"e164:+49301234567");
        let mut low = [0u8; 16];
        low.copy_from_slice(&digest[..16]);
        let key = k("+49301234567");
        assert_eq!(key.as_u128(), u128::from_le_bytes(low));
        assert_eq!(key.to_field(), Fp::from_u128(key.as_u128()));
        assert_eq!(key.to_field().low_u128(), key.as_u128());
        let digest = blake3::derive_key(PSEUDONYM_KEY_CONTEXT, b"name:alice");
        low.copy_from_slice(&digest[..16]);
        assert_eq!(k("alice").as_u128(), u128::from_le_bytes(low));
    }

    #[test]
    fn endpoint_parse() {
        let ok = |s: &str| Endpoint::parse(s).expect("valid endpoint");
        assert_eq!(
            ok("sip:alice@192.0.2.1:5060").as_str(),
            "sip:alice@192.0.2.1:5060"
        );
        assert_eq!(ok("bücher.example:5060").to_string(), "bücher.example:5060");
        assert_eq!(ok(&"a".repeat(ENDPOINT_MAX_LEN)).as_str().len(), 308);
        let e = |s: &str| Endpoint::parse(s).expect_err("should be refused");
        assert_eq!(e(""), EncodingError::EmptyEndpoint);
        assert_eq!(e(&"a".repeat(309)), EncodingError::EndpointTooLong(309));
        assert_eq!(
            e("sip:a@h\r\nVia: x"),
            EncodingError::EndpointControlChar('\r')
        );
        assert_eq!(e("sip:a@h\0"), EncodingError::EndpointControlChar('\0'));
        assert_eq!(
            e("sip:a@h\u{85}"),
            EncodingError::EndpointControlChar('\u{85}')
        );
        assert_eq!(e(" sip:a@h"), EncodingError::EndpointWhitespace);
        assert_eq!(e("sip:a@h "), EncodingError::EndpointWhitespace);
        assert_eq!(e("sip:a@h\u{a0}"), EncodingError::EndpointWhitespace);
    }

    #[test]
    fn pack_layout() {
        let ep = Endpoint::parse("ab").expect("valid");
        let packed = ep.pack();
        let first = packed[0].to_bytes();
        assert_eq!(&first[..4], &[0, 2, b'a', b'b']);
        assert!(first[4..].iter().all(|&b| b == 0));
        assert!(packed[1..].iter().all(|x| *x == Fp::ZERO));

        // Full-length endpoint fills the last byte of the last element.
        let long = Endpoint::parse(&"z".repeat(ENDPOINT_MAX_LEN)).expect("valid");
        let packed = long.pack();
        let last = packed[ENDPOINT_ELEMENTS - 1].to_bytes();
        assert_eq!(last[30], b'z');
        assert_eq!(last[31], 0);
        assert_eq!(Endpoint::unpack(&packed), Ok(long));
    }

    #[test]
    fn unpack_errors() {
        let packed = Endpoint::parse("sip:a@h").expect("valid").pack();
        assert_eq!(
            Endpoint::unpack(&packed[..9]),
            Err(EncodingError::PackedWrongElementCount(9))
        );
        assert_eq!(
            Endpoint::unpack(&[]),
            Err(EncodingError::PackedWrongElementCount(0))
        );

        let mut bad = packed;
        bad[3] = Fp::pow2(248);
        assert_eq!(
            Endpoint::unpack(&bad),
            Err(EncodingError::PackedElementOutOfRange(3))
        );
        bad[3] = -Fp::ONE;
        assert_eq!(
            Endpoint::unpack(&bad),
            Err(EncodingError::PackedElementOutOfRange(3))
        );

        // Length 309 with otherwise valid bytes.
        let mut bad = packed;
        bad[0] = Fp::from_u64(u64::from(u16::from_le_bytes([1, 53])));
        assert_eq!(
            Endpoint::unpack(&bad),
            Err(EncodingError::PackedLengthTooLarge(309))
        );

        // Length 0: empty content is what parse refuses.
        assert_eq!(
            Endpoint::unpack(&[Fp::ZERO; ENDPOINT_ELEMENTS]),
            Err(EncodingError::EmptyEndpoint)
        );

        // Invalid UTF-8: length 1, byte 0xff.
        let mut bad = [Fp::ZERO; ENDPOINT_ELEMENTS];
        bad[0] = Fp::from_u64(0xff_01_00);
        assert_eq!(
            Endpoint::unpack(&bad),
            Err(EncodingError::PackedInvalidUtf8)
        );

        // Valid UTF-8 that parse refuses: "\r".
        bad[0] = Fp::from_u64(0x0d_01_00);
        assert_eq!(
            Endpoint::unpack(&bad),
            Err(EncodingError::EndpointControlChar('\r'))
        );
    }

    /// Writes a 310-byte stream into elements the way `pack` does, via the
    /// canonical encoding (independent of `pack`'s arithmetic).
    fn stream_to_elements(stream: &[u8; STREAM_LEN]) -> [Fp; ENDPOINT_ELEMENTS] {
        let mut out = [Fp::ZERO; ENDPOINT_ELEMENTS];
        for (elem, chunk) in out.iter_mut().zip(stream.chunks_exact(31)) {
            let mut b = [0u8; 32];
            b[..31].copy_from_slice(chunk);
            *elem = Fp::from_bytes(&b).expect("below 2^248");
        }
        out
    }

    fn endpoint_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => proptest::char::range(' ', '~'),
            1 => proptest::char::range('\u{a0}', '\u{7ff}'),
            1 => proptest::char::range('\u{800}', '\u{ffff}'),
            1 => proptest::char::range('\u{10000}', '\u{10ffff}'),
        ]
    }

    /// Valid endpoints of 1..=308 bytes, often multi-byte UTF-8.
    fn valid_endpoint() -> impl Strategy<Value = String> {
        prop::collection::vec(endpoint_char(), 1..=ENDPOINT_MAX_LEN).prop_map(|chars| {
            let mut s = String::new();
            for c in chars {
                let c = if c.is_control() || c.is_whitespace() && s.is_empty() {
                    'x'
                } else {
                    c
                };
                if s.len() + c.len_utf8() > ENDPOINT_MAX_LEN {
                    break;
                }
                s.push(c);
            }
            while s.ends_with(char::is_whitespace) {
                s.pop();
                s.push('y');
            }
            s
        })
    }

    proptest! {
        #[test]
        fn pack_roundtrip(s in valid_endpoint()) {
            prop_assert!(!s.is_empty() && s.len() <= ENDPOINT_MAX_LEN);
            let ep = Endpoint::parse(&s).expect("generator yields valid endpoints");
            let packed = ep.pack();
            // pack agrees with the canonical-encoding layout.
            let mut stream = [0u8; STREAM_LEN];
            stream[..2].copy_from_slice(&u16::try_from(s.len()).expect("small").to_be_bytes());
            stream[2..2 + s.len()].copy_from_slice(s.as_bytes());
            prop_assert_eq!(packed, stream_to_elements(&stream));
            prop_assert_eq!(Endpoint::unpack(&packed), Ok(ep));
        }

        #[test]
        fn unpack_never_panics_on_elements(
            raw in prop::collection::vec((any::<[u8; 32]>(), any::<bool>()), 0..=12)
        ) {
            // Mix arbitrary elements with in-range ones so later checks run.
            let elems: Vec<Fp> = raw
                .into_iter()
                .map(|(mut b, in_range)| {
                    if in_range {
                        b[31] = 0;
                    }
                    Fp::from_uniform_bytes(b).unwrap_or(Fp::ZERO)
                })
                .collect();
            let _ = Endpoint::unpack(&elems);
        }

        #[test]
        fn unpack_accepts_exactly_packings(
            len in 0u16..=320,
            content in prop::collection::vec(any::<u8>(), STREAM_LEN - 2),
            ascii in any::<bool>(),
        ) {
            let mut stream = [0u8; STREAM_LEN];
            stream[..2].copy_from_slice(&len.to_be_bytes());
            for (dst, src) in stream[2..].iter_mut().zip(content) {
                *dst = if ascii { b' ' + src % 95 } else { src };
            }
            let elems = stream_to_elements(&stream);
            if let Ok(ep) = Endpoint::unpack(&elems) {
                prop_assert_eq!(ep.pack(), elems);
            }
        }

        #[test]
        fn too_long_rejected(extra in 1usize..=64, c in endpoint_char()) {
            let mut s = "a".repeat(ENDPOINT_MAX_LEN);
            while s.len() < ENDPOINT_MAX_LEN + extra {
                s.push(if c.is_control() || c.is_whitespace() { 'b' } else { c });
            }
            prop_assert_eq!(Endpoint::parse(&s), Err(EncodingError::EndpointTooLong(s.len())));
        }

        #[test]
        fn tampered_padding_rejected(
            s in valid_endpoint(),
            pos in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            prop_assume!(s.len() < ENDPOINT_MAX_LEN);
            let ep = Endpoint::parse(&s).expect("valid");
            let mut stream = [0u8; STREAM_LEN];
            stream[..2].copy_from_slice(&u16::try_from(s.len()).expect("small").to_be_bytes());
            stream[2..2 + s.len()].copy_from_slice(s.as_bytes());
            let padding_start = 2 + s.len();
            let at = padding_start + pos.index(STREAM_LEN - padding_start);
            stream[at] ^= flip;
            let tampered = stream_to_elements(&stream);
            prop_assert_ne!(tampered, ep.pack());
            prop_assert_eq!(Endpoint::unpack(&tampered), Err(EncodingError::PackedNonZeroPadding));
        }

        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            if let Ok(p) = Pseudonym::parse(&s) {
                // Normal form is a fixed point.
                prop_assert_eq!(Pseudonym::parse(p.as_str()), Ok(p.clone()));
                prop_assert_eq!(Pseudonym::parse(p.as_str()).map(|q| q.key()), Ok(p.key()));
            }
            let _ = Endpoint::parse(&s);
        }
    }
}
