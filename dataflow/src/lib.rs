//! Renders a statflow `Plan` into a timely/differential dataflow that keeps
//! windowed rollups, and answers queries from them.
#![deny(missing_docs)]

pub mod aggregate;
pub mod backfill;
pub mod chunked;
pub mod chunker;
pub mod decode;
pub mod distinct;
pub mod few;
pub mod hourly;
pub mod ingest;
pub mod measure;
pub mod packed;
pub mod query;
pub mod query_cache;
pub mod render;
pub mod rollup;
pub mod scan;
pub mod session;
pub mod snapshot;
pub mod timebucket;
pub mod value;
pub mod watermark;
