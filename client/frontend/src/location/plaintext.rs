//! In-memory location service for comparison (plaintext mode): the same
//! [`Location`] contract as sharecall, with no providers behind it, so a
//! benchmark measures what privacy costs with all else equal.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Location, LocationError, Publication, Resolved};
use crate::aor::Aor;

/// A map from address of record to endpoint and expiry.
#[derive(Debug, Default)]
pub struct PlaintextLocation {
    entries: RwLock<HashMap<Aor, (String, SystemTime)>>,
}

impl PlaintextLocation {
    /// An empty table.
    pub fn new() -> PlaintextLocation {
        PlaintextLocation::default()
    }

    /// Looks up `aor` as of `now` (the clock passed in, for tests).
    pub fn resolve_at(
        &self,
        aor: &Aor,
        now: SystemTime,
    ) -> Result<Option<Resolved>, LocationError> {
        // Same validity rule as sharecall, so both modes refuse the same AORs.
        aor.pseudonym()?;
        let map = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(aor).and_then(|(endpoint, until)| {
            (*until > now).then(|| Resolved {
                endpoint: endpoint.clone(),
                expires_at_ms: until
                    .duration_since(UNIX_EPOCH)
                    .ok()
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
        }))
    }

    /// Stores `p` as of `now`, dropping expired entries now and then so the
    /// map does not grow without bound.
    pub fn publish_at(&self, p: &Publication, now: SystemTime) -> Result<(), LocationError> {
        p.aor.pseudonym()?;
        // sharecall stores whole seconds; so does this table.
        let secs = p.ttl.as_secs() + u64::from(p.ttl.subsec_nanos() > 0);
        let until = now + Duration::from_secs(secs);
        let mut map = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, (_, u)| *u > now);
        }
        map.insert(p.aor.clone(), (p.endpoint.clone(), until));
        Ok(())
    }
}

impl Location for PlaintextLocation {
    async fn resolve(&self, aor: &Aor) -> Result<Option<Resolved>, LocationError> {
        self.resolve_at(aor, SystemTime::now())
    }

    async fn publish(&self, p: &Publication) -> Result<(), LocationError> {
        self.publish_at(p, SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(endpoint: &str, ttl: u64) -> Publication {
        Publication {
            aor: Aor::new("alice", "a.example"),
            endpoint: endpoint.into(),
            ttl: Duration::from_secs(ttl),
        }
    }

    #[test]
    fn stores_replaces_and_expires() {
        let l = PlaintextLocation::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let alice = Aor::new("alice", "a.example");
        assert_eq!(l.resolve_at(&alice, t0).expect("valid in this test"), None);
        l.publish_at(&publication("sip:a@1.2.3.4", 60), t0)
            .expect("valid in this test");
        l.publish_at(&publication("sip:b@1.2.3.4", 60), t0)
            .expect("valid in this test");
        let r = l
            .resolve_at(&alice, t0 + Duration::from_secs(59))
            .expect("valid in this test")
            .expect("valid in this test");
        assert_eq!(r.endpoint, "sip:b@1.2.3.4");
        assert_eq!(r.expires_at_ms, Some(1_000_060_000));
        assert_eq!(
            l.resolve_at(&alice, t0 + Duration::from_secs(60))
                .expect("valid in this test"),
            None
        );
        assert_eq!(
            l.resolve_at(&Aor::new("bob", "a.example"), t0)
                .expect("valid in this test"),
            None
        );
    }

    #[test]
    fn refuses_what_is_no_pseudonym() {
        let l = PlaintextLocation::new();
        let bad = Aor::new("a b", "a.example");
        assert!(matches!(
            l.resolve_at(&bad, SystemTime::now()),
            Err(LocationError::Aor(_))
        ));
    }
}
