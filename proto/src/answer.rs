//! What a provider answers about an executed request: its result code
//! (`result.code` in docs/API.md, "Answers").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a table request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Executed.
    Ok,
    /// Resolve, update or delete of an absent or expired pseudonym.
    NotFound,
    /// Register of a pseudonym that is registered and not expired.
    Exists,
    /// Update or delete by an account that does not own the entry.
    Forbidden,
    /// This provider applied the batch from a peer's transcript and has no
    /// answer share; the other two providers have.
    Unavailable,
    /// Not executed: its log time was out of bounds at every provider;
    /// nothing changed.
    Refused,
}

impl Code {
    /// Every code.
    pub const ALL: [Code; 6] = [
        Code::Ok,
        Code::NotFound,
        Code::Exists,
        Code::Forbidden,
        Code::Unavailable,
        Code::Refused,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::NotFound => "not_found",
            Code::Exists => "exists",
            Code::Forbidden => "forbidden",
            Code::Unavailable => "unavailable",
            Code::Refused => "refused",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is no result code's wire name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown result code; expected ok, not_found, exists, forbidden, unavailable or refused")]
pub struct UnknownCode;

impl FromStr for Code {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Code, UnknownCode> {
        Code::parse(s).ok_or(UnknownCode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for c in Code::ALL {
            assert_eq!(c.as_str().parse::<Code>(), Ok(c));
            assert_eq!(
                serde_json::to_string(&c).expect("serialises"),
                format!("\"{c}\"")
            );
        }
        assert_eq!(Code::parse("maybe"), None);
    }
}
