//! The computations a provider runs, keyed by task kind: what the peer
//! service and the job submission consult.

use std::sync::Arc;

use super::computation::{Computation, Refusal};
use super::task::{TaskKind, UnknownKind};

/// The registered computations, in registration order.
#[derive(Default, Clone)]
pub struct Registry {
    entries: Vec<(TaskKind, Arc<dyn Computation>)>,
}

impl Registry {
    /// An empty registry: every task is an unknown kind.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers `computation` under `kind`, replacing an earlier one of
    /// the same kind (its place in [`Registry::kinds`] stays).
    pub fn register(&mut self, kind: TaskKind, computation: Arc<dyn Computation>) {
        match self.entries.iter_mut().find(|(k, _)| *k == kind) {
            Some(entry) => entry.1 = computation,
            None => self.entries.push((kind, computation)),
        }
    }

    /// The registered kinds, in registration order.
    pub fn kinds(&self) -> Vec<TaskKind> {
        self.entries.iter().map(|(k, _)| *k).collect()
    }

    /// The registered kind named `name`.
    pub fn kind(&self, name: &str) -> Result<TaskKind, UnknownKind> {
        TaskKind::parse(name, &self.kinds())
    }

    /// The computation of the kind named `name`.
    pub fn get(&self, name: &str) -> Result<(TaskKind, Arc<dyn Computation>), UnknownKind> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == name)
            .map(|(k, c)| (*k, c.clone()))
            .ok_or_else(|| UnknownKind {
                name: name.to_string(),
                known: self.kinds(),
            })
    }

    /// Reviews parameters for `kind` as a peer would at Prepare (a kind
    /// not registered here has nothing to review).
    pub fn review(&self, kind: TaskKind, params: &[u8]) -> Result<(), Refusal> {
        match self.entries.iter().find(|(k, _)| *k == kind) {
            Some((_, c)) => c.review(params),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestration::computations::{noop, secure_sum};

    #[test]
    fn kinds_are_found_by_name_in_registration_order() {
        let mut r = Registry::new();
        r.register(secure_sum::KIND, Arc::new(secure_sum::SecureSum::new(1)));
        r.register(noop::KIND, Arc::new(noop::Noop));
        assert_eq!(r.kinds(), vec![secure_sum::KIND, noop::KIND]);
        assert_eq!(r.kind("noop"), Ok(noop::KIND));
        let e = r.kind("frob").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "unknown task kind \"frob\" (known: secure-sum, noop)"
        );
        assert!(r.get("frob").is_err());
        assert!(r.review(secure_sum::KIND, br#"{"repeat": 0}"#).is_err());
        assert!(r.review(noop::KIND, b"anything").is_ok());
        // Registering a kind again replaces it in place.
        r.register(secure_sum::KIND, Arc::new(noop::Noop));
        assert_eq!(r.kinds(), vec![secure_sum::KIND, noop::KIND]);
        assert!(r.review(secure_sum::KIND, br#"{"repeat": 0}"#).is_ok());
    }
}
