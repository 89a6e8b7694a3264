//! A worker's shard of the rollup, read whole at one epoch: what a
//! checkpoint stores, and what a restart feeds back in.

use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::TraceReader;
use timely::progress::Antichain;

use crate::aggregate::Aggregates;
use crate::packed::PackedRef;
use crate::rollup::{Dims, RollupKey};
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
                    add_update(&mut row, diff);
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

/// A walk over a worker's whole shard that measures every metric's rows,
/// a bounded number of keys at a time, so that a large shard never holds
/// up the worker loop (and the queries it serves) for long.
#[derive(Debug, Default)]
pub struct FootprintWalk {
    /// Per plan index, what the walk has counted so far.
    counted: Vec<Footprint>,
    /// Where the next step starts; `None` at the beginning of the shard.
    next: Option<RollupKey>,
}

impl FootprintWalk {
    /// Measures at most `keys` more keys of the shard as it stands (every
    /// update merged; a metric's late rows count with it); `size` measures
    /// one row. Returns every metric's footprint once the walk has reached
    /// the end of the shard, and starts over on the next call.
    pub fn step(
        &mut self,
        trace: &mut RollupTrace,
        metrics: usize,
        keys: usize,
        size: impl Fn(&RollupKey, &Aggregates) -> u64,
    ) -> Option<Vec<Footprint>> {
        self.counted.resize(metrics, Footprint::default());
        let mut upper = Antichain::new();
        trace.read_upper(&mut upper);
        let batches = trace.batches_through(upper.borrow())?;
        let (mut cursor, storage) = cursor_list(batches);
        if let Some(next) = &self.next {
            cursor.seek_key(&storage, next);
        }
        for _ in 0..keys {
            let Some(key) = cursor.get_key(&storage) else {
                self.next = None;
                return Some(std::mem::take(&mut self.counted));
            };
            let mut row: Option<Aggregates> = None;
            while cursor.val_valid(&storage) {
                cursor.map_times(&storage, |_, diff| add_update(&mut row, diff));
                cursor.step_val(&storage);
            }
            if let Some(row) = row.filter(|r| r.count > 0) {
                let metric = key.metric as usize % metrics.max(1);
                if let Some(f) = self.counted.get_mut(metric) {
                    f.rows += 1;
                    f.bytes += size(key, &row);
                }
            }
            cursor.step_key(&storage);
        }
        self.next = cursor.get_key(&storage).cloned();
        if self.next.is_none() {
            return Some(std::mem::take(&mut self.counted));
        }
        None
    }
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
            dims: Dims::new(),
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
                    count += diff.count();
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

/// Adds one update of a row, unpacked, to what its earlier updates summed to.
fn add_update(row: &mut Option<Aggregates>, diff: PackedRef<'_>) {
    match row {
        Some(row) => row.merge(&diff.to_owned()),
        None => *row = Some(diff.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use differential_dataflow::AsCollection;
    use timely::dataflow::operators::Probe;
    use timely::dataflow::{InputHandleVec, ProbeHandle};

    use super::*;
    use crate::value::Value;

    fn row(count: i64) -> Aggregates {
        Aggregates::of_count(count)
    }

    #[test]
    fn a_walk_in_small_steps_counts_every_row_once() {
        timely::execute_directly(|worker| {
            let mut input = InputHandleVec::new();
            let probe = ProbeHandle::new();
            let mut trace = worker.dataflow(|scope| {
                let arranged =
                    crate::render::arrange(input.to_stream(scope).as_collection(), "Rollup");
                arranged.stream.probe_with(&probe);
                arranged.trace
            });
            // Metric 0: 20 rows; metric 1: 4 rows and 1 late row (index 1 + 2);
            // one row of metric 0 retracted to nothing.
            let key = |metric: u32, i: i64| RollupKey {
                metric,
                bucket: i * 60_000,
                dims: vec![Value::Str(format!("g{i}").into())].into(),
            };
            for i in 0..20 {
                input.send((key(0, i), 0u64, row(2)));
            }
            for i in 0..4 {
                input.send((key(1, i), 0u64, row(1)));
            }
            input.send((key(3, 0), 0u64, row(1)));
            input.send((key(0, 7), 0u64, row(-2)));
            input.advance_to(1);
            while probe.less_than(&1) {
                worker.step();
            }
            let size = |_: &RollupKey, _: &Aggregates| 10;
            let mut walk = FootprintWalk::default();
            let mut steps = 0;
            let measured = loop {
                steps += 1;
                if let Some(m) = walk.step(&mut trace, 2, 3, size) {
                    break m;
                }
            };
            assert!(steps >= 8, "{steps} steps of 3 keys");
            assert_eq!(
                measured[0],
                Footprint {
                    rows: 19,
                    bytes: 190
                }
            );
            assert_eq!(measured[1], Footprint { rows: 5, bytes: 50 });
            // The next walk starts over, and one long step sees the same.
            assert_eq!(walk.step(&mut trace, 2, 1_000, size), Some(measured));
        });
    }
}
