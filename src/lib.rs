//! statflow turns streams of game events into live statistics.
//!
//! This facade re-exports the three crates of the pipeline:
//! [`dsl`] (topology text to a checked `Plan`), [`dataflow`] (the `Plan`
//! rendered as a timely/differential dataflow) and [`runtime`] (processes,
//! sources, the HTTP endpoint and the command line).
#![deny(missing_docs)]

pub use statflow_dataflow as dataflow;
pub use statflow_dsl as dsl;
pub use statflow_runtime as runtime;
