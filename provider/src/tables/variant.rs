//! Which table a deployment uses, and the registry of variants.
//!
//! A variant is one file implementing [`Table`] and exporting its
//! [`Registration`] (the configuration names it parses); `VARIANTS`
//! lists them, one line each.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;
use std::sync::Arc;

use super::{hash, list, tree, Table};

/// How a variant is found by its configuration name.
pub struct Registration {
    /// The names it accepts, as error messages list them.
    pub names: &'static str,
    /// Its variant for `name`, or `None` when `name` is not one of its own.
    pub parse: fn(name: &str) -> Option<Variant>,
}

/// Every table variant, in the order their names are listed to users.
const VARIANTS: &[Registration] = &[list::REGISTRATION, hash::REGISTRATION, tree::REGISTRATION];

/// The table a deployment uses (all three providers must agree): a
/// shared handle on its [`Table`], made by parsing its configuration
/// name. Two variants are equal when their names are.
#[derive(Clone)]
pub struct Variant(Arc<dyn Table>);

impl Variant {
    /// The variant running `table`.
    pub fn new(table: impl Table) -> Variant {
        Variant(Arc::new(table))
    }

    /// The table.
    pub fn table(&self) -> &dyn Table {
        &*self.0
    }
}

impl Deref for Variant {
    type Target = dyn Table;

    fn deref(&self) -> &dyn Table {
        self.table()
    }
}

impl fmt::Debug for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Variant").field(&self.0.name()).finish()
    }
}

impl PartialEq for Variant {
    fn eq(&self, other: &Variant) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for Variant {}

impl FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(v) = VARIANTS.iter().find_map(|r| (r.parse)(s)) {
            return Ok(v);
        }
        let names: Vec<&str> = VARIANTS.iter().map(|r| r.names).collect();
        Err(format!(
            "unknown table variant {s:?} ({})",
            names.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::hash::Hash;
    use crate::tables::list::List;
    use crate::tables::tree::Tree;

    #[test]
    fn variants_parse() {
        assert_eq!("hash".parse::<Variant>(), Ok(Variant::new(Hash)));
        assert_eq!("list".parse::<Variant>(), Ok(Variant::new(List)));
        let tree8 = Tree::with_fanout(8).map(Variant::new);
        assert_eq!("tree/8".parse::<Variant>().ok(), tree8);
        assert!("tree/1".parse::<Variant>().is_err());
        assert!("btree".parse::<Variant>().is_err());
    }

    #[test]
    fn names_round_trip_and_errors_list_every_variant() {
        for name in ["list", "hash", "tree/8", "tree/1024"] {
            let v: Variant = name.parse().expect("registered");
            assert_eq!(v.name(), name);
        }
        assert_eq!(
            "tree".parse::<Variant>().map(|v| v.name()),
            Ok("tree/1024".to_string())
        );
        assert_eq!(
            "btree".parse::<Variant>(),
            Err(
                "unknown table variant \"btree\" (list, hash, tree or tree/<fanout 2..=4096>)"
                    .to_string()
            )
        );
    }
}
