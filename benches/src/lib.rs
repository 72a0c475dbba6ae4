//! Benchmark support for sharecall: the delaying relay that stands in for
//! network latency, and a local cluster shared by the criterion suites and
//! the latency harness (`src/bin/smc-latency.rs`).

pub mod cluster;
pub mod load;
pub mod relay;
