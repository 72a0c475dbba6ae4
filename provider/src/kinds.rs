//! The task kinds this provider runs: one line per kind.
//!
//! A kind is a [`Computation`] in its own file (the core's own in
//! `orchestration/computations/`, the table's `execute` in `execution/`)
//! plus its line in [`KINDS`]. The configuration checks
//! `policy.allowed_kinds` against these names, and the server builds the
//! [`Registry`] that the peer service and job submission consult.

use std::sync::Arc;

use crate::execution::{Execute, Executor, EXECUTE};
use crate::orchestration::computations::{noop, secure_sum};
use crate::orchestration::{Computation, Registry, TaskKind};
use crate::sharelog::{LogCheck, LOG_CHECK};

/// What the computations are built from at start-up.
pub struct Resources<'a> {
    /// This provider's contribution to `secure-sum`.
    pub secure_sum_value: u64,
    /// The table's executor.
    pub executor: &'a Arc<Executor>,
}

/// One task kind: its name and how to build its computation.
pub struct Kind {
    /// The wire name.
    pub kind: TaskKind,
    /// Builds the computation.
    pub build: fn(&Resources<'_>) -> Arc<dyn Computation>,
}

/// Every task kind this provider knows, in the order listings show them.
pub const KINDS: &[Kind] = &[
    Kind {
        kind: secure_sum::KIND,
        build: |r| Arc::new(secure_sum::SecureSum::new(r.secure_sum_value)),
    },
    Kind {
        kind: noop::KIND,
        build: |_| Arc::new(noop::Noop),
    },
    Kind {
        kind: EXECUTE,
        build: |r| Arc::new(Execute::new(r.executor.clone())),
    },
    Kind {
        kind: LOG_CHECK,
        build: |r| Arc::new(LogCheck::new(r.executor.clone())),
    },
];

/// The names of every known kind.
pub fn known() -> Vec<TaskKind> {
    KINDS.iter().map(|k| k.kind).collect()
}

/// The registry of every known kind, built from `resources`.
pub fn registry(resources: &Resources<'_>) -> Registry {
    let mut registry = Registry::new();
    for k in KINDS {
        registry.register(k.kind, (k.build)(resources));
    }
    registry
}
