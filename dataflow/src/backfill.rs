//! Backfill: filling in the history of a metric that joined a running
//! topology. What travels between workers: the order to start, and each
//! worker's progress.

use serde::{Deserialize, Serialize};

/// The order to backfill one metric, sent to every worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillOrder {
    /// The metric, by plan index.
    pub metric: u32,
    /// Only buckets starting at or after this time (milliseconds) are
    /// filled in; `None` fills in from the oldest event.
    pub from_ms: Option<i64>,
    /// Only buckets starting before this time are filled in; `None` has no
    /// upper bound.
    pub to_ms: Option<i64>,
}

impl BackfillOrder {
    /// True when a row of the bucket starting at `bucket_ms` is filled in.
    pub fn covers(&self, bucket_ms: i64) -> bool {
        self.from_ms.is_none_or(|from| bucket_ms >= from)
            && self.to_ms.is_none_or(|to| bucket_ms < to)
    }
}

/// Where a metric's backfill stands on one worker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackfillReport {
    /// The metric, by plan index.
    pub metric: u32,
    /// The order, once given.
    pub order: Option<BackfillOrder>,
    /// Records read by this worker's backfill, good or bad.
    pub records: u64,
    /// Records that could not be counted.
    pub errors: u64,
    /// Every partition this worker fills in: `(source, partition, position
    /// reached, position the live input began at)`. A partition is done
    /// when its position reached its end.
    pub partitions: Vec<BackfillPartition>,
    /// This worker has filled in every partition it owns.
    pub done: bool,
}

/// One partition of a backfill on one worker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BackfillPartition {
    /// The source.
    pub source: String,
    /// The partition's name.
    pub partition: String,
    /// The position the backfill started this partition at.
    pub first: u64,
    /// The position of the first record it has not read.
    pub position: u64,
    /// The position the metric's live input began at: the backfill reads up to it.
    pub end: u64,
}
