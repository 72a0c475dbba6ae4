//! The list table: every stored entry is a candidate for every query, so
//! narrowing needs no SMC and the batch's one `eq_reveal` round compares
//! each query with all n entries.

use futures::future::BoxFuture;

use super::variant::Registration;
use super::{Index, Narrowed, Query, Table, TableError, Variant};
use crate::smc::{LaneSession, PrfKey};

/// The list variant (configuration name `list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct List;

/// Its entry in the registry of variants.
pub const REGISTRATION: Registration = Registration {
    names: "list",
    parse,
};

/// The variant named `name`, if it is this one.
fn parse(name: &str) -> Option<Variant> {
    (name == "list").then(|| Variant::new(List))
}

impl Table for List {
    fn name(&self) -> String {
        "list".into()
    }

    fn narrow<'a>(
        &'a self,
        index: &'a Index,
        _key: Option<&'a PrfKey>,
        _session: &'a mut LaneSession,
        _queries: &'a [Query],
    ) -> BoxFuture<'a, Result<Box<dyn Narrowed>, TableError>> {
        let all: Vec<u64> = index.meta.keys().copied().collect();
        Box::pin(async move { Ok(Box::new(Everything(all)) as Box<dyn Narrowed>) })
    }
}

/// What the list narrowing found: every entry, in slot order, for every
/// query.
struct Everything(Vec<u64>);

impl Narrowed for Everything {
    fn candidates(&self, _q: usize) -> &[u64] {
        &self.0
    }
}
