//! The sharecall location service: the three providers.
//!
//! Resolutions go out under one resolver account for every caller (the
//! providers learn nothing about who calls); publications are signed by the
//! address of record's own account, which owns its entry.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sharecall_client::{AccountKey, Client, ResultCode};
use sharecall_proto::encoding::Endpoint;
use thiserror::Error;

use super::{Location, LocationError, Publication, Resolved};
use crate::aor::Aor;

/// Why the location service could not be set up.
#[derive(Debug, Error)]
#[error("cannot set up the sharecall client for {who}: {source}")]
pub struct SetupError {
    /// Whose client (`the resolver` or an AOR).
    pub who: String,
    /// The client's error (provider URLs, TLS).
    #[source]
    pub source: sharecall_client::Error,
}

/// Sharecall as a [`Location`].
#[derive(Debug)]
pub struct SharecallLocation {
    resolver: Client,
    users: HashMap<Aor, Client>,
    /// AORs known to be registered by us, so the next publish goes straight
    /// to update.
    exists: Mutex<HashSet<Aor>>,
}

fn unavailable(e: sharecall_client::Error) -> LocationError {
    LocationError::Unavailable(e.to_string())
}

fn unexpected(what: &str, code: ResultCode) -> LocationError {
    match code {
        ResultCode::Forbidden => LocationError::Refused(format!("{what}: forbidden")),
        other => LocationError::Unavailable(format!("{what}: unexpected result {other}")),
    }
}

impl SharecallLocation {
    /// Clients of `providers` (P0, P1, P2 base URLs): one for resolutions
    /// under `resolver`, one per local user under its own key.
    pub fn new(
        providers: &[String],
        resolver: AccountKey,
        user_keys: Vec<(Aor, AccountKey)>,
        timeout: Duration,
        allow_plain_http: bool,
    ) -> Result<SharecallLocation, SetupError> {
        let make = |key: AccountKey, who: String| {
            let c = Client::new(providers, key)
                .map_err(|source| SetupError { who, source })?
                .with_timeout(timeout);
            Ok::<_, SetupError>(if allow_plain_http {
                c.allow_plain_http()
            } else {
                c
            })
        };
        let resolver = make(resolver, "the resolver".into())?;
        let users = user_keys
            .into_iter()
            .map(|(aor, key)| {
                let c = make(key, aor.to_string())?;
                Ok((aor, c))
            })
            .collect::<Result<_, SetupError>>()?;
        Ok(SharecallLocation {
            resolver,
            users,
            exists: Mutex::new(HashSet::new()),
        })
    }

    fn known_to_exist(&self, aor: &Aor) -> bool {
        self.exists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(aor)
    }

    fn set_exists(&self, aor: &Aor, exists: bool) {
        let mut set = self.exists.lock().unwrap_or_else(PoisonError::into_inner);
        if exists {
            set.insert(aor.clone());
        } else {
            set.remove(aor);
        }
    }
}

impl Location for SharecallLocation {
    async fn resolve(&self, aor: &Aor) -> Result<Option<Resolved>, LocationError> {
        let pseudonym = aor.pseudonym()?;
        let r = self
            .resolver
            .resolve(&pseudonym)
            .await
            .map_err(unavailable)?;
        match (r.code, r.endpoint) {
            (ResultCode::Ok, Some(endpoint)) => Ok(Some(Resolved {
                endpoint: endpoint.as_str().to_owned(),
                expires_at_ms: r.expires_at_ms,
            })),
            (ResultCode::Ok, None) => Err(LocationError::Unavailable(
                "resolution ok without an endpoint".into(),
            )),
            (ResultCode::NotFound, _) => Ok(None),
            (code, _) => Err(unexpected("resolve", code)),
        }
    }

    async fn publish(&self, p: &Publication) -> Result<(), LocationError> {
        let pseudonym = p.aor.pseudonym()?;
        let Some(client) = self.users.get(&p.aor) else {
            return Err(LocationError::Refused(format!(
                "{} has no account key",
                p.aor
            )));
        };
        let endpoint = Endpoint::parse(&p.endpoint)
            .map_err(|e| LocationError::Refused(format!("endpoint {:?}: {e}", p.endpoint)))?;
        // The providers store whole seconds; round up so the entry never
        // lives shorter than asked.
        let ttl = Duration::from_secs(p.ttl.as_secs() + u64::from(p.ttl.subsec_nanos() > 0));
        let mut update = self.known_to_exist(&p.aor);
        // At most: update → not_found → register → exists → update.
        for _ in 0..3 {
            let o = if update {
                client.update(&pseudonym, &endpoint, ttl, None).await
            } else {
                client.register(&pseudonym, &endpoint, ttl, None).await
            }
            .map_err(unavailable)?;
            match (update, o.code) {
                (_, ResultCode::Ok) => {
                    self.set_exists(&p.aor, true);
                    return Ok(());
                }
                (false, ResultCode::Exists) => update = true,
                (true, ResultCode::NotFound) => {
                    self.set_exists(&p.aor, false);
                    update = false;
                }
                (true, code) => return Err(unexpected("update", code)),
                (false, code) => return Err(unexpected("register", code)),
            }
        }
        Err(LocationError::Unavailable(
            "the entry kept appearing and disappearing".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    /// Nothing listens on port 9 of localhost in the test environment; the
    /// cases below must be decided before any request is sent.
    fn nowhere() -> Vec<String> {
        (0..3)
            .map(|i| format!("http://127.0.0.{}:9", i + 1))
            .collect()
    }

    #[test]
    fn needs_three_providers() {
        let err = SharecallLocation::new(
            &nowhere()[..2],
            AccountKey::generate(&mut OsRng),
            Vec::new(),
            Duration::from_secs(1),
            true,
        )
        .expect_err("two providers");
        assert_eq!(err.who, "the resolver");
    }

    #[tokio::test]
    async fn refuses_users_without_a_key_and_invalid_pseudonyms_locally() {
        let loc = SharecallLocation::new(
            &nowhere(),
            AccountKey::generate(&mut OsRng),
            vec![(
                Aor::new("alice", "a.example"),
                AccountKey::generate(&mut OsRng),
            )],
            Duration::from_secs(1),
            true,
        )
        .expect("three URLs");
        let p = Publication {
            aor: Aor::new("bob", "a.example"),
            endpoint: "sip:bob@192.0.2.1".into(),
            ttl: Duration::from_secs(60),
        };
        assert!(matches!(
            loc.publish(&p).await,
            Err(LocationError::Refused(_))
        ));
        let bad = Aor::new("a b", "a.example");
        assert!(matches!(
            loc.resolve(&bad).await,
            Err(LocationError::Aor(_))
        ));
        let p = Publication {
            aor: Aor::new("alice", "a.example"),
            endpoint: "sip:alice@192.0.2.1\r\nX: injected".into(),
            ttl: Duration::from_secs(60),
        };
        assert!(matches!(
            loc.publish(&p).await,
            Err(LocationError::Refused(_))
        ));
    }
}
