//! A worker's shard of the rollup, read whole at one epoch: what a
//! checkpoint stores, and what a restart feeds back in.

use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::TraceReader;
use timely::progress::Antichain;

use crate::aggregate::Aggregates;
use crate::rollup::RollupKey;
use crate::scan::RollupTrace;

/// Every row of this worker's shard as it stood at epoch `as_of`: the
/// updates of epochs up to `as_of` merged per key, rows with no events left
/// out. `None` when the shard cannot be read exactly at `as_of` (it has not
/// reached it yet, or was compacted past it).
pub fn rows_at(trace: &mut RollupTrace, as_of: u64) -> Option<Vec<(RollupKey, Aggregates)>> {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    if upper.less_equal(&as_of) || !trace.get_logical_compaction().less_equal(&as_of) {
        return None;
    }
    let batches = trace.batches_through(upper.borrow())?;
    let (mut cursor, storage) = cursor_list(batches);
    let mut rows = Vec::new();
    while let Some(key) = cursor.get_key(&storage) {
        let mut row: Option<Aggregates> = None;
        while cursor.val_valid(&storage) {
            cursor.map_times(&storage, |time, diff| {
                if *time <= as_of {
                    match &mut row {
                        Some(row) => row.merge(diff),
                        None => row = Some(diff.clone()),
                    }
                }
            });
            cursor.step_val(&storage);
        }
        if let Some(row) = row.filter(|r| r.count > 0) {
            rows.push((key.clone(), row));
        }
        cursor.step_key(&storage);
    }
    Some(rows)
}

/// What one metric's rows take on one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Rows with events, late rows included.
    pub rows: u64,
    /// Their size, as `size` measured each row.
    pub bytes: u64,
}

/// Every metric's rows in this worker's shard as it stands (every update
/// merged), by plan index: a metric's late rows count with it. `size`
/// measures one row. Walks the whole shard, so the worker loop calls it
/// seldom.
pub fn footprint(
    trace: &mut RollupTrace,
    metrics: usize,
    size: impl Fn(&RollupKey, &Aggregates) -> u64,
) -> Vec<Footprint> {
    let mut per_metric = vec![Footprint::default(); metrics];
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    let Some(batches) = trace.batches_through(upper.borrow()) else {
        return per_metric;
    };
    let (mut cursor, storage) = cursor_list(batches);
    while let Some(key) = cursor.get_key(&storage) {
        let mut row: Option<Aggregates> = None;
        while cursor.val_valid(&storage) {
            cursor.map_times(&storage, |_, diff| match &mut row {
                Some(row) => row.merge(diff),
                None => row = Some(diff.clone()),
            });
            cursor.step_val(&storage);
        }
        if let Some(row) = row.filter(|r| r.count > 0) {
            let metric = key.metric as usize % metrics.max(1);
            if let Some(f) = per_metric.get_mut(metric) {
                f.rows += 1;
                f.bytes += size(key, &row);
            }
        }
        cursor.step_key(&storage);
    }
    per_metric
}

/// The rows of this worker's shard, as they stood at epoch `as_of`, of
/// metric `metric` (a stored index: late rows included) with a pane start
/// before `before`: each key with its event count. `None` when the shard
/// cannot be read exactly at `as_of`.
pub fn rows_before(
    trace: &mut RollupTrace,
    as_of: u64,
    metric: u32,
    before: i64,
) -> Option<Vec<(RollupKey, i64)>> {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    if upper.less_equal(&as_of) || !trace.get_logical_compaction().less_equal(&as_of) {
        return None;
    }
    let batches = trace.batches_through(upper.borrow())?;
    let (mut cursor, storage) = cursor_list(batches);
    cursor.seek_key(
        &storage,
        &RollupKey {
            metric,
            bucket: i64::MIN,
            dims: Vec::new(),
        },
    );
    let mut rows = Vec::new();
    while let Some(key) = cursor.get_key(&storage) {
        if key.metric != metric || key.bucket >= before {
            break;
        }
        let mut count = 0;
        while cursor.val_valid(&storage) {
            cursor.map_times(&storage, |time, diff| {
                if *time <= as_of {
                    count += diff.count;
                }
            });
            cursor.step_val(&storage);
        }
        if count != 0 {
            rows.push((key.clone(), count));
        }
        cursor.step_key(&storage);
    }
    Some(rows)
}
