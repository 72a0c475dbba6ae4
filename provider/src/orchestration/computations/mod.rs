//! The core's own task kinds, one file each; they need nothing but the
//! SMC session (the table's `execute` lives with the executor).

pub mod noop;
pub mod secure_sum;
