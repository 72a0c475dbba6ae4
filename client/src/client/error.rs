//! What can go wrong: at one provider ([`ProviderError`],
//! [`ProviderFailure`]) and for a whole request ([`Error`]).

use super::*;

/// What went wrong with one provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No HTTP answer (connection refused, reset, timed out, TLS failure…),
    /// or only `502/503/504`, on every attempt.
    #[error("unreachable after {attempts} attempts: {detail}")]
    Unreachable {
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        detail: String,
    },
    /// The provider answered with an error status.
    #[error("HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Refused {
        /// HTTP status.
        status: u16,
        /// The provider's error code, if the body was a sharecall error.
        code: Option<String>,
        /// The provider's message (or the start of the body).
        message: String,
    },
    /// `409 aborted`: the window passed before all parts arrived, or the
    /// providers were given different requests under one id.
    #[error("HTTP 409 aborted: {message}")]
    Aborted {
        /// The provider's message (names the missing provider).
        message: String,
    },
    /// A 2xx answer that does not follow the API.
    #[error("answer does not follow the API (HTTP {status}): {detail}")]
    BadAnswer {
        /// HTTP status.
        status: u16,
        /// What is wrong.
        detail: String,
    },
    /// No final answer before the client's timeout.
    #[error("no final answer within {} (last: {last})", humantime::format_duration(*waited))]
    Timeout {
        /// How long the client waited.
        waited: Duration,
        /// The last thing the provider said (or why it could not).
        last: String,
    },
    /// The provider answered `unavailable`: it caught up from its peers'
    /// transcript and holds no answer share.
    #[error("answered `unavailable` (caught up from its peers; it has no answer share)")]
    Unavailable,
    /// The client stopped waiting because another provider refused the
    /// request (so it cannot execute).
    #[error("not waited for after {because} refused the request (last: {last})")]
    Cancelled {
        /// The provider whose refusal ended the request.
        because: PartyId,
        /// The last thing this provider said (or why it could not).
        last: String,
    },
}

impl ProviderError {
    /// Whether this refusal means the request can never execute (the part
    /// was refused, or the request is aborted everywhere).
    pub(super) fn is_final_refusal(&self) -> bool {
        match self {
            ProviderError::Refused { status, .. } => (400..500).contains(status),
            ProviderError::Aborted { .. } => true,
            _ => false,
        }
    }

    /// Ordering for reports: root causes first, knock-on effects last.
    pub(super) fn rank(&self) -> u8 {
        match self {
            ProviderError::Refused { .. } | ProviderError::BadAnswer { .. } => 0,
            ProviderError::Unreachable { .. } => 1,
            ProviderError::Aborted { .. } => 2,
            ProviderError::Unavailable => 3,
            ProviderError::Timeout { .. } => 4,
            ProviderError::Cancelled { .. } => 5,
        }
    }
}

/// A failure at one named provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderFailure {
    /// Which provider.
    pub provider: PartyId,
    /// Its base URL.
    pub url: String,
    /// What went wrong.
    pub error: ProviderError,
}

impl fmt::Display for ProviderFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.provider, self.url, self.error)
    }
}

pub(super) fn list(failures: &[ProviderFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn names(ps: &[PartyId]) -> String {
    match ps {
        [] => "none".into(),
        [a] => a.to_string(),
        [init @ .., last] => format!(
            "{} and {last}",
            init.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Everything that can go wrong talking to the providers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad client configuration (provider URLs, window, request id).
    #[error("{0}")]
    Config(String),
    /// A part or a value going into one is not valid.
    #[error(transparent)]
    Part(#[from] PartError),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
    /// Fewer than two providers gave a usable answer (or one refused the
    /// request, so it cannot execute).
    #[error("{kind} request {request_id} failed: {}", list(failures))]
    Failed {
        /// The request id (retry with the same id to reuse its outcome).
        request_id: String,
        /// The request kind.
        kind: Kind,
        /// Every provider that did not answer usably, root causes first.
        failures: Vec<ProviderFailure>,
    },
    /// The providers' answers disagree.
    #[error("{}", describe_disagreement(request_id, what, *odd, values))]
    Disagreement {
        /// The request id.
        request_id: String,
        /// What they disagree about (`result code`, `extra data`).
        what: &'static str,
        /// The provider that differs from the two others, if one does.
        odd: Option<PartyId>,
        /// Each answering provider's value.
        values: Vec<(PartyId, String)>,
    },
    /// Two providers disagree about a component of the endpoint shares they
    /// both hold.
    #[error("request {request_id}: {detail}")]
    Inconsistent {
        /// The request id.
        request_id: String,
        /// The provider whose share is wrong, when the answers single it
        /// out.
        suspect: Option<PartyId>,
        /// What disagrees, and why the suspect is named.
        detail: String,
    },
    /// The providers' endpoint shares cannot be turned into an endpoint.
    #[error("request {request_id}: cannot reconstruct the endpoint: {source}")]
    Reconstruct {
        /// The request id.
        request_id: String,
        /// Which element and component, and which provider is suspect.
        source: ReconstructError,
    },
    /// The endpoint shares of the two answering providers do not fit
    /// together.
    #[error(
        "request {request_id}: cannot reconstruct the endpoint from {} and {} \
         ({missing} did not answer): {reason}",
        providers[0], providers[1]
    )]
    ReconstructTwo {
        /// The request id.
        request_id: String,
        /// The two providers whose shares were used.
        providers: [PartyId; 2],
        /// The provider left out.
        missing: PartyId,
        /// What did not fit.
        reason: String,
    },
    /// A resolution was degraded twice (two answers only, so not every
    /// share component could be checked) and the client refuses such
    /// answers ([`Client::with_refuse_degraded`](super::Client::with_refuse_degraded)).
    #[error(
        "request {request_id}: refused a degraded answer ({degraded}); \
         not every endpoint share could be checked, so no endpoint is returned"
    )]
    Degraded {
        /// The request id of the last attempt.
        request_id: String,
        /// Why it was degraded.
        degraded: Box<Degraded>,
    },
    /// Enrollment failed at one or more providers (it may have succeeded at
    /// others; enrolling again is harmless).
    #[error("enrollment failed: {}{}", list(failures),
        if enrolled.is_empty() { String::new() } else { format!(" (enrolled at {})", names(enrolled)) })]
    Enroll {
        /// Providers where the account is enrolled.
        enrolled: Vec<PartyId>,
        /// Providers where enrollment failed.
        failures: Vec<ProviderFailure>,
    },
}

pub(super) fn describe_disagreement(
    request_id: &str,
    what: &str,
    odd: Option<PartyId>,
    values: &[(PartyId, String)],
) -> String {
    let said = values
        .iter()
        .map(|(p, v)| format!("{p} answered {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    match odd {
        Some(p) => format!(
            "request {request_id}: providers disagree about the {what} ({said}); \
             {p} is the odd one out"
        ),
        None => format!(
            "request {request_id}: providers disagree about the {what} ({said}); \
             cannot tell which one is wrong"
        ),
    }
}

impl Error {
    /// The provider this error points at, when it points at exactly one:
    /// the odd one in a disagreement, the suspect of an inconsistent share,
    /// or the only provider that failed.
    pub fn blamed(&self) -> Option<PartyId> {
        match self {
            Error::Disagreement { odd, .. } => *odd,
            Error::Inconsistent { suspect, .. } => *suspect,
            Error::Reconstruct { source, .. } => match source {
                ReconstructError::WrongShape { provider, .. } => Some(*provider),
                ReconstructError::Inconsistent {
                    source: ShareError::Inconsistent { suspect, .. },
                    ..
                } => *suspect,
                _ => None,
            },
            Error::Failed { failures, .. } | Error::Enroll { failures, .. } => {
                let mut root = failures
                    .iter()
                    .filter(|f| !matches!(f.error, ProviderError::Cancelled { .. }));
                match (root.next(), root.next()) {
                    (Some(f), None) => Some(f.provider),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}
