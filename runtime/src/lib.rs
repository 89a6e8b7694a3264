//! statflow's runtime: the command line, sources, worker processes and the
//! HTTP endpoint, around the dataflow that `statflow-dataflow` renders.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod cli;
pub mod deadletter;
pub mod engine;
pub mod query;
pub mod server;
pub mod source;
pub mod store;
pub mod telemetry;
