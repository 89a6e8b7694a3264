//! Renders a statflow `Plan` into a timely/differential dataflow that keeps
//! windowed rollups, and answers queries from them.
#![deny(missing_docs)]

pub mod query;
pub mod value;
pub mod aggregate;
pub mod decode;
pub mod rollup;
pub mod ingest;
pub mod timebucket;
pub mod scan;
pub mod render;
