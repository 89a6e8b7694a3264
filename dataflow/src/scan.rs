//! The query dataflow: a query is broadcast to every worker, each worker
//! scans its own shard of the rollup arrangement at the query's epoch, and
//! the partial groups are merged on the worker that took the query.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::cursor::{Cursor, CursorList};
use differential_dataflow::trace::{Navigable, TraceReader};
use jiff::tz::TimeZone;
use regex::Regex;
use serde::{Deserialize, Serialize};
use statflow_dsl::{Plan, Window};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Operator;
use timely::dataflow::InputHandleVec;
use timely::progress::Antichain;
use timely::worker::Worker;

use crate::aggregate::{stored_slots, Aggregates, MeasureState};
use crate::chunked::{ChunkedBatcher, ChunkedSpine};
use crate::hourly;
use crate::measure::{self, MeasureRef};
use crate::packed::{StateRef, Takers};
use crate::query::{Answer, AsOf, Cell, Column, Filter, GroupKey, Query, SourceMark};
use crate::query_cache::{Hour, QueryCache, Touches};
use crate::rollup::{Dims, RollupKey};
use crate::session;
use crate::timebucket;
use crate::value::Value;

/// The rollup arrangement: every row's aggregates, keyed by `RollupKey`,
/// at the epoch it was ingested.
pub type RollupTrace = TraceAgent<ChunkedSpine<RollupKey>>;

/// Forms the rollup's batches.
pub type RollupBatcher = ChunkedBatcher<RollupKey>;

/// A request on its way to every worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryMsg {
    /// Unique on the home worker.
    pub id: u64,
    /// The worker that took the request and merges the partials.
    pub home: usize,
    /// Read every update at or before this epoch.
    pub as_of: u64,
    /// What is asked.
    pub request: Request,
}

/// What a request asks every worker for. (A query is large and a status
/// request empty, but requests are few: boxing would buy nothing.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Rows of a validated query.
    Query(Query),
    /// Each worker's report: how this process learns about every other one.
    Status,
    /// Start filling in a metric's history; answered like `Status`.
    Backfill(crate::backfill::BackfillOrder),
}

/// What one worker reports about itself: its sources and its epoch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's index over the whole cluster.
    pub worker: usize,
    /// The process it runs in.
    pub process: usize,
    /// The epoch it is filling.
    pub epoch: u64,
    /// The epoch in which all its sources finished, if they have.
    pub finished_at: Option<u64>,
    /// One report per source of the plan, in plan order.
    pub sources: Vec<SourceReport>,
    /// Metrics whose history this worker fills in, or filled in.
    pub backfills: Vec<crate::backfill::BackfillReport>,
}

/// One source on one worker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceReport {
    /// Records read, good or bad.
    pub records: u64,
    /// Records that could not be counted.
    pub errors: u64,
    /// Every partition it reads: position, end, newest event.
    pub partitions: Vec<crate::ingest::PartitionStatus>,
    /// The reader has finished.
    pub finished: bool,
    /// The newest event time seen.
    pub max_event_ms: Option<i64>,
    /// Late events set aside.
    pub late: u64,
    /// Late events per metric (plan index).
    pub late_by_metric: Vec<u64>,
    /// The reader's connection to its brokers (Kafka sources only).
    pub broker: Option<crate::ingest::BrokerStatus>,
}

/// One worker's part of an answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Partial {
    /// The query's id.
    pub id: u64,
    /// The worker that merges.
    pub home: usize,
    /// The epoch read.
    pub as_of: u64,
    /// True when this worker could not read at `as_of` (its shard was
    /// compacted past it, or had not yet reached it): the home worker asks again.
    pub retry: bool,
    /// The request, so that the home worker can shape the answer.
    pub request: Request,
    /// The worker's report about itself.
    pub report: WorkerReport,
    /// Groups: key values (dimensions, and `__time` as an integer) and the
    /// aggregates of the requested measures.
    pub groups: Vec<(Vec<Value>, Aggregates)>,
}

/// The end of a request on its home worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The answer.
    Answer(Answer),
    /// Every worker's report, by worker index, read at `as_of`.
    Status {
        /// Every epoch up to this one was complete when the request was sent.
        as_of: u64,
        /// The reports.
        reports: Vec<WorkerReport>,
    },
    /// Some worker could not read at the chosen epoch; ask again at a newer one.
    Retry,
}

/// Finished queries, drained by the worker loop.
pub type Finished = Rc<RefCell<Vec<(u64, Outcome)>>>;

/// Builds the query dataflow on this worker. `report` describes the worker
/// (its sources' counters and watermarks); backfill orders are handed to the
/// worker loop through `orders`. `traces` are shared with the worker
/// loop, which advances their compaction frontier. Returns the input to send queries into
/// (never advanced: queries need no progress tracking, since the home worker
/// counts one partial from every worker).
pub fn query_dataflow(
    worker: &mut Worker,
    plan: Arc<Plan>,
    traces: Traces,
    report: Rc<dyn Fn() -> WorkerReport>,
    finished: Finished,
    orders: Rc<RefCell<Vec<crate::backfill::BackfillOrder>>>,
) -> InputHandleVec<u64, QueryMsg> {
    let mut input = InputHandleVec::new();
    let peers = worker.peers();
    worker.dataflow_named("Queries", |scope| {
        let scan_plan = Arc::clone(&plan);
        input
            .to_stream(scope)
            .broadcast()
            .unary(Pipeline, "Scan", move |_cap, _info| {
                move |input, output| {
                    input.for_each(|cap, data| {
                        let mut session = output.session(&cap);
                        for msg in data.drain(..) {
                            let msg: QueryMsg = msg;
                            if let Request::Backfill(order) = &msg.request {
                                orders.borrow_mut().push(order.clone());
                            }
                            session.give(scan(&scan_plan, &traces, &msg, report()));
                        }
                    });
                }
            })
            .unary(Exchange::new(|p: &Partial| p.home as u64), "Merge", move |_cap, _info| {
                let mut pending: HashMap<u64, (usize, Vec<Partial>)> = HashMap::new();
                move |input, _output: &mut timely::dataflow::operators::generic::OutputBuilderSession<'_, u64, timely::container::CapacityContainerBuilder<Vec<()>>>| {
                    input.for_each(|_cap, data| {
                        for partial in data.drain(..) {
                            let id = partial.id;
                            let entry = pending.entry(id).or_insert_with(|| (0, Vec::new()));
                            entry.0 += 1;
                            entry.1.push(partial);
                            if entry.0 == peers {
                                let (_, partials) = pending.remove(&id).unwrap_or_default();
                                finished.borrow_mut().push((id, merge(&plan, partials)));
                            }
                        }
                    });
                }
            });
    });
    input
}

/// Each source of `metric`: its watermark over every worker's report, and
/// the metric's late events from it.
pub fn source_marks(plan: &Plan, metric: usize, reports: &[&WorkerReport]) -> Vec<SourceMark> {
    let now = crate::ingest::wall_ms();
    let Some(metric_plan) = plan.metrics.get(metric) else {
        return Vec::new();
    };
    plan.sources
        .iter()
        .enumerate()
        .filter(|(_, s)| metric_plan.sources.contains(&s.name))
        .map(|(i, s)| {
            let of = || reports.iter().filter_map(move |r| r.sources.get(i));
            SourceMark {
                source: s.name.clone(),
                watermark_ms: crate::watermark::source_watermark(
                    s.late.millis() as i64,
                    of().flat_map(|r| r.partitions.iter()),
                    now,
                ),
                late: of()
                    .map(|r| r.late_by_metric.get(metric).copied().unwrap_or(0))
                    .sum(),
            }
        })
        .collect()
}

/// A worker's shard as queries read it: the rollup and the hourly rollup
/// beside it, shared with the worker loop, which advances their compaction.
#[derive(Clone)]
pub struct Traces {
    /// Every row, keyed by its pane.
    pub rollup: Rc<RefCell<RollupTrace>>,
    /// The same rows merged into hours (see [`crate::hourly`]), unless
    /// the engine keeps none.
    pub hourly: Option<Rc<RefCell<RollupTrace>>>,
    /// The hours the rollups' batches have touched.
    pub touches: Rc<RefCell<Touches>>,
    /// This worker's kept hours (see [`crate::query_cache`]).
    pub cache: Rc<RefCell<QueryCache>>,
}

/// The batches of `trace` holding every update up to `as_of`, or `None`
/// when it cannot be read exactly there: it has not reached `as_of` yet,
/// or was compacted past it (updates before the compaction frontier have
/// been moved up to it, so a read at an older epoch would miss them).
fn readable(trace: &mut RollupTrace, as_of: u64) -> Option<Vec<RollupBatch>> {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    let reached = !upper.less_equal(&as_of);
    let exact = trace.get_logical_compaction().less_equal(&as_of);
    if !reached || !exact {
        return None;
    }
    trace.batches_through(upper.borrow())
}

/// A batch of the rollup.
type RollupBatch = <RollupTrace as TraceReader>::Batch;

/// Reads this worker's shard for one request.
fn scan(plan: &Plan, traces: &Traces, msg: &QueryMsg, report: WorkerReport) -> Partial {
    let mut partial = Partial {
        id: msg.id,
        home: msg.home,
        as_of: msg.as_of,
        retry: false,
        request: msg.request.clone(),
        report,
        groups: Vec::new(),
    };
    let Request::Query(q) = &msg.request else {
        return partial;
    };
    let Some(batches) = readable(&mut traces.rollup.borrow_mut(), msg.as_of) else {
        partial.retry = true;
        return partial;
    };
    let Some(metric) = plan.metrics.get(q.metric) else {
        return partial;
    };
    let shape = Shape::new(q, &metric.window);
    // Whole hours of the range are read from the hourly rollup when each
    // falls in one time bucket of the answer.
    let hours = (!q.late && hourly::keeps_hourly(metric))
        .then(|| shape.whole_hours())
        .flatten()
        .zip(traces.hourly.as_ref());
    let hourly_batches = match hours {
        Some((_, hourly)) => match readable(&mut hourly.borrow_mut(), msg.as_of) {
            Some(batches) => batches,
            None => {
                partial.retry = true;
                return partial;
            }
        },
        None => Vec::new(),
    };
    let shard = Shard {
        rows: batches,
        hourly: hourly_batches,
        hours: hours.map(|(range, _)| range),
    };
    let cached = matches!(metric.window, Window::Tumbling { .. })
        .then(|| whole_hours(shape.from, shape.to))
        .flatten()
        .filter(|_| traces.cache.borrow_mut().enabled())
        .zip(cache_key(q));
    let read = |merged| {
        read_shard(
            plan,
            traces,
            msg,
            q,
            &shape,
            &shard,
            cached.as_ref(),
            merged,
        )
    };
    // Each batch on its own, unless that gives way (see `Groups::read_each`).
    partial.groups = read(false).or_else(|_| read(true)).unwrap_or_default();
    partial
}

/// Reads a query's groups from a worker's shard, `merged` through one
/// cursor over all batches or else batch by batch (which gives up with
/// `Err` on a retraction). `cached` is the whole hours the query cache
/// serves and the query's key there.
#[allow(clippy::too_many_arguments)]
fn read_shard(
    plan: &Plan,
    traces: &Traces,
    msg: &QueryMsg,
    q: &Query,
    shape: &Shape,
    shard: &Shard,
    cached: Option<&((i64, i64), Vec<u8>)>,
    merged: bool,
) -> Result<Vec<(Vec<Value>, Aggregates)>, ReadMerged> {
    let mut reading = shard.reading(merged);
    let mut groups = Groups::new(plan, q, shape, msg.as_of);
    let Some(((first, end), key)) = cached else {
        shard.read(&mut reading, &mut groups, shape.scan_from, shape.scan_to)?;
        return Ok(groups.finish());
    };
    // Whole hours come from the cache when it has them right, else from the
    // rows, and are kept; the ragged ends are read every time. Rows are
    // read in key order, as a cursor only moves forward. The home worker
    // merges groups of one key from several hours.
    shard.read(&mut reading, &mut groups, shape.scan_from, *first)?;
    let stored = groups.stored;
    let mut out = Vec::new();
    for hour in (*first..*end).step_by(hourly::HOUR_MS as usize) {
        let noted = traces.touches.borrow().hour(stored, hour);
        let mut cache = traces.cache.borrow_mut();
        if let Hour::Noted(newest) = noted {
            if let Some(kept) = cache.get(key, hour, newest, msg.as_of) {
                out.extend(kept.iter().cloned());
                continue;
            }
        }
        let mut fresh = Groups::new(plan, q, shape, msg.as_of);
        shard.read(&mut reading, &mut fresh, hour, hour + hourly::HOUR_MS)?;
        let fresh = fresh.finish();
        out.extend(fresh.iter().cloned());
        if noted != Hour::Forgotten {
            cache.put(key, hour, msg.as_of, fresh);
        }
    }
    shard.read(&mut reading, &mut groups, *end, shape.scan_to)?;
    out.extend(groups.finish());
    Ok(out)
}

/// A worker's shard as one query reads it: the rollup's batches, the
/// hourly rollup's, and the whole hours `[first, end)` the query may read
/// from the hourly rollup.
struct Shard {
    rows: RowStorage,
    hourly: RowStorage,
    hours: Option<(i64, i64)>,
}

/// Where a read of a shard has got to, in the rollup and in the hourly
/// rollup: one merging cursor over each, or each batch's position.
enum Reading<'s> {
    Merged(RowCursor, RowCursor),
    Each(Vec<BatchRows<'s>>, Vec<BatchRows<'s>>),
}

impl Shard {
    /// A read from the start of the shard, through merging cursors or batch by batch.
    fn reading(&self, merged: bool) -> Reading<'_> {
        if merged {
            let cursor = |batches: &RowStorage| {
                CursorList::new(batches.iter().map(Navigable::cursor).collect(), batches)
            };
            Reading::Merged(cursor(&self.rows), cursor(&self.hourly))
        } else {
            fn each(batches: &RowStorage) -> Vec<BatchRows<'_>> {
                batches
                    .iter()
                    .map(|batch| BatchRows { batch, next: 0 })
                    .collect()
            }
            Reading::Each(each(&self.rows), each(&self.hourly))
        }
    }

    /// Merges the rows of panes in `[from, to)` into `groups`: the hours
    /// the hourly rollup may serve from there, the rest from the rollup.
    /// Successive calls must move forward.
    fn read<'s>(
        &'s self,
        reading: &mut Reading<'s>,
        groups: &mut Groups<'_>,
        from: i64,
        to: i64,
    ) -> Result<(), ReadMerged> {
        let mut part = |hourly: bool, from: i64, to: i64| match reading {
            Reading::Merged(rows, hours) => {
                let (cursor, storage) = if hourly {
                    (hours, &self.hourly)
                } else {
                    (rows, &self.rows)
                };
                groups.read_merged(cursor, storage, from, to);
                Ok(())
            }
            Reading::Each(rows, hours) => {
                groups.read_each(if hourly { hours } else { rows }, from, to)
            }
        };
        match self.hours {
            Some((first, end)) if first < to && from < end => {
                let (first, end) = (first.max(from), end.min(to));
                part(false, from, first)?;
                part(true, first, end)?;
                part(false, end, to)
            }
            _ => part(false, from, to),
        }
    }
}

/// The most hours of one query the cache keeps (about three years).
const MAX_CACHED_HOURS: i64 = 24 * 366 * 3;

/// The whole hours `[first, end)` within `[from, to)`, if there are any and
/// not more than [`MAX_CACHED_HOURS`].
fn whole_hours(from: i64, to: i64) -> Option<(i64, i64)> {
    let (first, end) = (hourly::ceil_hour(from), hourly::floor_hour(to));
    let hours = end.saturating_sub(first) / hourly::HOUR_MS;
    (first < end && hours <= MAX_CACHED_HOURS).then_some((first, end))
}

/// What the cache knows a query by: everything but its time range, order
/// and limit, which do not change the groups of an hour (the home worker
/// orders and cuts the merged answer).
fn cache_key(q: &Query) -> Option<Vec<u8>> {
    let shape = (
        q.metric,
        q.late,
        &q.filter,
        &q.group_by,
        q.granularity_ms,
        &q.time_zone,
        &q.measures,
    );
    bincode::serialize(&shape).ok()
}

/// The groups of one query on one worker, filled from runs of rows.
///
/// A query reads every row of its time range, often hundreds of thousands,
/// so reading copies nothing per row: a row's group key is written as
/// bytes into one reused buffer, a group is found with one hash lookup,
/// a row's updates are merged straight into its group, and a group's
/// values are copied once, when it is new, as the answer will hold them.
struct Groups<'q> {
    q: &'q Query,
    shape: &'q Shape,
    as_of: u64,
    /// The metric's index as stored: late rows live under its index plus
    /// the number of metrics.
    stored: u32,
    filter: Option<CompiledFilter>,
    /// Which asked measures are session measures, worked out per row: a
    /// session metric's row is one session, keyed by its start, with its
    /// last event time in its span. Late rows are no sessions.
    asked: Vec<Option<MeasureRef<'q>>>,
    sessions: bool,
    /// For each asked measure, its slot in a stored row's states (none for
    /// `count()`, the row's count, and for the session measures), and
    /// for each of a row's states, the asked measure that takes it.
    takers: Takers,
    /// Each group's position, by its key's bytes ([`GroupPart::encode`]):
    /// one hash of a few bytes and one comparison of them per row, rather
    /// than a hash and a comparison per part and value.
    index: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    /// Each group's key, at its position (as its accumulator is in
    /// `accumulators`), as the values of the answer.
    keys: Vec<Vec<Value>>,
    accumulators: Vec<Aggregates>,
    /// The key of the group a row goes to, as bytes, rebuilt for each.
    encoded: Vec<u8>,
    times: Vec<i64>,
    /// Rows come in pane order, so the time buckets of a pane are worked out once.
    pane: Option<i64>,
}

impl<'q> Groups<'q> {
    fn new(plan: &'q Plan, q: &'q Query, shape: &'q Shape, as_of: u64) -> Self {
        let metric = &plan.metrics[q.metric];
        Groups {
            q,
            shape,
            as_of,
            stored: q.metric as u32 + if q.late { plan.metrics.len() as u32 } else { 0 },
            filter: q.filter.as_ref().map(CompiledFilter::new),
            asked: q
                .measures
                .iter()
                .map(|i| measure::measure(metric, *i))
                .collect(),
            sessions: metric.window.is_session() && !q.late,
            takers: Takers::new({
                let stored = stored_slots(metric.measures.iter().map(|m| &m.kind));
                q.measures
                    .iter()
                    .map(|i| stored.get(*i).copied().flatten())
                    .collect()
            }),
            index: HashMap::default(),
            keys: Vec::new(),
            accumulators: Vec::new(),
            encoded: Vec::new(),
            times: Vec::new(),
            pane: None,
        }
    }

    /// Merges the rows of panes in `[from, to)` into their groups, reading
    /// the batches through one cursor that merges them: a row's updates
    /// from every batch are summed before its event count is looked at.
    fn read_merged(&mut self, cursor: &mut RowCursor, storage: &RowStorage, from: i64, to: i64) {
        if from >= to {
            return;
        }
        let (as_of, sessions) = (self.as_of, self.sessions);
        cursor.seek_key(storage, &self.first_key(from));
        while let Some(key) = cursor.get_key(storage) {
            if key.metric != self.stored || key.bucket >= to {
                break;
            }
            if self.filter.as_ref().is_none_or(|f| f.eval(&key.dims)) {
                // Events of the row up to the query's epoch; none means the row
                // does not exist yet at that epoch.
                let mut count = 0;
                let mut last = i64::MIN;
                while cursor.val_valid(storage) {
                    cursor.map_times(storage, |time, diff| {
                        if *time <= as_of {
                            count += diff.count();
                            if sessions {
                                // Read in place: unpacking a session's row
                                // whole would often allocate (its states
                                // outnumber the three held inline).
                                let state = diff.states().last();
                                if let Some((_, l)) =
                                    session::span_of(state.as_ref().map(StateRef::get))
                                {
                                    last = last.max(l);
                                }
                            }
                        }
                    });
                    cursor.step_val(storage);
                }
                if count > 0 {
                    let duration = last.saturating_sub(key.bucket).max(0);
                    self.add_row(key, duration, |acc, takers| {
                        cursor.rewind_vals(storage);
                        while cursor.val_valid(storage) {
                            cursor.map_times(storage, |time, diff| {
                                if *time <= as_of {
                                    diff.merge_into(acc, takers);
                                }
                            });
                            cursor.step_val(storage);
                        }
                    });
                }
            }
            cursor.step_key(storage);
        }
    }

    /// Merges the rows of panes in `[from, to)` into their groups, reading
    /// each batch on its own: no cursor merges the batches' keys, and a row
    /// that several batches hold is merged once from each.
    ///
    /// That is the same answer as [`Groups::read_merged`] while every update
    /// read adds events: a row exists at the query's epoch exactly when some
    /// batch adds to it, and its measures merge in any order. Only a
    /// retraction (retention's, or a session cut again) takes events away,
    /// and a row with its retraction may be split over batches; so on the
    /// first update read that adds no events, this returns `Err` and the
    /// query is read again with [`Groups::read_merged`]. Session metrics,
    /// whose rows need their span, always are.
    fn read_each(
        &mut self,
        batches: &mut [BatchRows<'_>],
        from: i64,
        to: i64,
    ) -> Result<(), ReadMerged> {
        if self.sessions {
            return Err(ReadMerged);
        }
        if from >= to {
            return Ok(());
        }
        let (first, as_of) = (self.first_key(from), self.as_of);
        for rows in batches.iter_mut() {
            let batch: &RollupBatch = rows.batch;
            let storage = &batch.storage;
            let keys = &storage.keys;
            // The first row at or after `first`, by halving.
            let (mut lo, mut hi) = (rows.next, keys.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if *keys.at(mid) < first {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let mut at = lo;
            while at < keys.len() {
                let key = keys.at(at);
                if key.metric != self.stored || key.bucket >= to {
                    break;
                }
                if self.filter.as_ref().is_none_or(|f| f.eval(&key.dims)) {
                    let (lower, upper) = storage.upds.bounds(at);
                    let updates = (lower..upper)
                        .map(|i| (*storage.upds.times.at(i), storage.upds.diffs.at(i)))
                        .filter(|(time, _)| *time <= as_of);
                    let mut count = 0;
                    for (_, diff) in updates.clone() {
                        let diff = diff.count();
                        if diff <= 0 {
                            return Err(ReadMerged);
                        }
                        count += diff;
                    }
                    if count > 0 {
                        self.add_row(key, 0, |acc, takers| {
                            for (_, diff) in updates.clone() {
                                diff.merge_into(acc, takers);
                            }
                        });
                    }
                }
                at += 1;
            }
            rows.next = at;
        }
        Ok(())
    }

    /// The first key of a pane starting at `from` or later.
    fn first_key(&self, from: i64) -> RollupKey {
        RollupKey {
            metric: self.stored,
            bucket: from,
            dims: Dims::new(),
        }
    }

    /// Merges a row that exists at the query's epoch into the group of
    /// each time bucket its pane feeds: `merge` merges the row's updates
    /// into a group's accumulator, given which of the group's states takes
    /// which of the row's. `duration` is a session's, for session measures.
    fn add_row(
        &mut self,
        key: &RollupKey,
        duration: i64,
        mut merge: impl FnMut(&mut Aggregates, &Takers),
    ) {
        if self.pane != Some(key.bucket) {
            self.shape.buckets(key.bucket, &mut self.times);
            self.pane = Some(key.bucket);
        }
        for &t in &self.times {
            let part = |g: &GroupKey| match g {
                GroupKey::Dimension(i) => GroupPart::Value(key.dims.get(*i).unwrap_or(&NULL)),
                GroupKey::Time => GroupPart::Time(t),
            };
            self.encoded.clear();
            for g in &self.q.group_by {
                part(g).encode(&mut self.encoded);
            }
            let at = match self.index.get(self.encoded.as_slice()).copied() {
                Some(at) => at,
                None => {
                    self.index
                        .insert(self.encoded.as_slice().into(), self.accumulators.len());
                    self.keys
                        .push(self.q.group_by.iter().map(|g| part(g).to_value()).collect());
                    self.accumulators.push(Aggregates {
                        count: 0,
                        measures: self
                            .asked
                            .iter()
                            .map(|m| m.map_or(MeasureState::Count, |m| m.empty()))
                            .collect(),
                    });
                    self.accumulators.len() - 1
                }
            };
            let acc = &mut self.accumulators[at];
            merge(acc, &self.takers);
            if self.sessions {
                for (state, m) in acc.measures.iter_mut().zip(&self.asked) {
                    if let Some(MeasureRef::Session(s)) = m {
                        s.add_session(state, duration);
                    }
                }
            }
        }
    }

    /// The groups with their keys as values.
    fn finish(self) -> Vec<(Vec<Value>, Aggregates)> {
        self.keys.into_iter().zip(self.accumulators).collect()
    }
}

/// A cursor over the batches of a rollup, and the batches it reads.
type RowCursor = CursorList<<RollupBatch as Navigable>::Cursor>;
type RowStorage = Vec<RollupBatch>;

/// One batch as [`Groups::read_each`] reads it: the position of its next
/// row, as reads move forward.
struct BatchRows<'s> {
    batch: &'s RollupBatch,
    next: usize,
}

/// The shard must be read through merged cursors: a batch held an update
/// that takes events away from a row, or the rows are sessions.
#[derive(Debug)]
struct ReadMerged;

/// One part of a group's key while a shard is scanned: a dimension value
/// borrowed from the rollup, or a time bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GroupPart<'a> {
    Value(&'a Value),
    Time(i64),
}

/// The value of a dimension a row does not have.
static NULL: Value = Value::Null;

impl GroupPart<'_> {
    /// Appends the part's bytes to a group key. A dimension's value is a
    /// tag, then the value (text with its length first); a time bucket,
    /// whose place in the key is always a time's, is its 8 bytes. Two
    /// parts in one place write the same bytes exactly when they are
    /// equal, and no part's bytes begin another's there, so two keys of one
    /// query have equal bytes exactly when their parts are equal. Most keys
    /// are 16 bytes or fewer, which is the hasher's quickest case.
    fn encode(self, out: &mut Vec<u8>) {
        match self {
            GroupPart::Value(Value::Null) => out.push(0),
            GroupPart::Value(Value::Bool(b)) => out.extend_from_slice(&[1, u8::from(*b)]),
            GroupPart::Value(Value::Int(i)) => {
                out.push(2);
                out.extend_from_slice(&i.to_le_bytes());
            }
            // Floats are equal when their bits are (`f64::total_cmp`).
            GroupPart::Value(Value::Float(f)) => {
                out.push(3);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            GroupPart::Value(Value::Str(s)) => {
                // The length in one byte, or 255 and then eight.
                match u8::try_from(s.len()) {
                    Ok(len) if len < u8::MAX => out.extend_from_slice(&[4, len]),
                    _ => {
                        out.extend_from_slice(&[4, u8::MAX]);
                        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                    }
                }
                out.extend_from_slice(s.as_bytes());
            }
            GroupPart::Time(t) => out.extend_from_slice(&t.to_le_bytes()),
        }
    }

    /// The part as the value it stands for in an answer.
    fn to_value(self) -> Value {
        match self {
            GroupPart::Value(v) => v.clone(),
            GroupPart::Time(t) => Value::Int(t),
        }
    }
}

/// A query grouped by time over more hours than this (about 114 years)
/// reads the rollup only, rather than check every hour against its buckets.
const MAX_HOURS_CHECKED: i64 = 1_000_000;

/// Which panes a query reads and which time buckets each pane feeds.
struct Shape {
    from: i64,
    to: i64,
    scan_from: i64,
    scan_to: i64,
    /// `None` when the query does not group by time.
    granularity: Option<i64>,
    /// Length of a hopping window; `None` for tumbling windows.
    window: Option<i64>,
    tz: TimeZone,
}

impl Shape {
    fn new(q: &Query, window: &Window) -> Self {
        let step = window.step().millis() as i64;
        let granularity = q
            .group_by
            .contains(&GroupKey::Time)
            .then(|| q.granularity_ms.map(|g| g as i64).unwrap_or(step).max(1));
        let window_len = match window {
            Window::Hopping { size, .. } => Some(size.millis() as i64),
            _ => None,
        };
        let tz = q
            .time_zone
            .as_deref()
            .and_then(|z| timebucket::parse_time_zone(z).ok())
            .unwrap_or(TimeZone::UTC);
        // A hopping window starting before `to` may reach `size` past it.
        let scan_to = match (window_len, granularity) {
            (Some(len), Some(_)) => q.to_ms.saturating_add(len),
            _ => q.to_ms,
        };
        Shape {
            from: q.from_ms,
            to: q.to_ms,
            scan_from: q.from_ms.div_euclid(step) * step,
            scan_to,
            granularity,
            window: window_len,
            tz,
        }
    }

    /// The whole hours `[first, end)` of the range that each fall in one
    /// time bucket, if there are any: every bucket boundary between them is
    /// on the hour. `None` for hopping windows, whose panes feed several
    /// buckets.
    fn whole_hours(&self) -> Option<(i64, i64)> {
        if self.window.is_some() {
            return None;
        }
        let (first, end) = (hourly::ceil_hour(self.from), hourly::floor_hour(self.to));
        if first >= end {
            return None;
        }
        if let Some(g) = self.granularity {
            // Hour by hour, as `buckets` would place the hour's first and
            // last pane (a bucket cannot end inside an hour and begin again).
            let hours = (end - first) / hourly::HOUR_MS;
            if hours > MAX_HOURS_CHECKED {
                return None;
            }
            let floor = |ms| timebucket::floor(ms, g, &self.tz);
            let mut hour = first;
            while hour < end {
                if floor(hour) != floor(hour + hourly::HOUR_MS - 1) {
                    return None;
                }
                hour += hourly::HOUR_MS;
            }
        }
        Some((first, end))
    }

    /// The bucket starts a pane starting at `pane` contributes to.
    fn buckets(&self, pane: i64, out: &mut Vec<i64>) {
        out.clear();
        match (self.granularity, self.window) {
            (None, _) => {
                if pane >= self.from && pane < self.to {
                    out.push(0);
                }
            }
            (Some(g), None) => {
                if pane >= self.from && pane < self.to {
                    out.push(timebucket::floor(pane, g, &self.tz));
                }
            }
            (Some(g), Some(len)) => {
                // Every row s (a bucket start in [from, to)) whose span covers
                // the pane: the window [s, s + len), widened to the whole
                // bucket [s, next s) — within the query's window, as a
                // tumbling bucket is — when the granularity is the longer.
                let mut s = timebucket::floor(pane, g, &self.tz);
                loop {
                    let bucket_end = timebucket::next(s, g, &self.tz).min(self.to);
                    let end = (s + len).max(bucket_end);
                    if end <= pane {
                        break;
                    }
                    if s >= self.from && s < self.to {
                        out.push(s);
                    }
                    if s < self.from {
                        break;
                    }
                    s = timebucket::floor(s - 1, g, &self.tz);
                }
            }
        }
    }
}

/// A query filter with its regular expressions compiled.
enum CompiledFilter {
    Eq(usize, Value),
    In(usize, Vec<Value>),
    Regex(usize, Regex),
    Range {
        dimension: usize,
        gte: Option<f64>,
        gt: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
    Not(Box<CompiledFilter>),
    And(Vec<CompiledFilter>),
    Or(Vec<CompiledFilter>),
}

impl CompiledFilter {
    fn new(f: &Filter) -> Self {
        match f {
            Filter::Eq(d, v) => CompiledFilter::Eq(*d, v.clone()),
            Filter::In(d, vs) => CompiledFilter::In(*d, vs.clone()),
            Filter::Regex(d, pattern) => CompiledFilter::Regex(
                *d,
                // Validation compiled this pattern already; if it somehow fails here, match nothing.
                Regex::new(&format!("^(?:{pattern})$"))
                    .unwrap_or_else(|_| Regex::new("[^\\s\\S]").expect("constant")),
            ),
            Filter::Range {
                dimension,
                gte,
                gt,
                lt,
                lte,
            } => CompiledFilter::Range {
                dimension: *dimension,
                gte: *gte,
                gt: *gt,
                lt: *lt,
                lte: *lte,
            },
            Filter::Not(inner) => CompiledFilter::Not(Box::new(CompiledFilter::new(inner))),
            Filter::And(all) => CompiledFilter::And(all.iter().map(CompiledFilter::new).collect()),
            Filter::Or(any) => CompiledFilter::Or(any.iter().map(CompiledFilter::new).collect()),
        }
    }

    fn eval(&self, dims: &[Value]) -> bool {
        let get = |d: &usize| dims.get(*d).unwrap_or(&Value::Null);
        match self {
            CompiledFilter::Eq(d, v) => get(d) == v || numeric_eq(get(d), v),
            CompiledFilter::In(d, vs) => vs.iter().any(|v| get(d) == v || numeric_eq(get(d), v)),
            CompiledFilter::Regex(d, re) => match get(d) {
                Value::Null => false,
                Value::Str(s) => re.is_match(s),
                other => re.is_match(&other.to_string()),
            },
            CompiledFilter::Range {
                dimension,
                gte,
                gt,
                lt,
                lte,
            } => match get(dimension).as_f64() {
                None => false,
                Some(x) => {
                    gte.is_none_or(|b| x >= b)
                        && gt.is_none_or(|b| x > b)
                        && lt.is_none_or(|b| x < b)
                        && lte.is_none_or(|b| x <= b)
                }
            },
            CompiledFilter::Not(inner) => !inner.eval(dims),
            CompiledFilter::And(all) => all.iter().all(|f| f.eval(dims)),
            CompiledFilter::Or(any) => any.iter().any(|f| f.eval(dims)),
        }
    }
}

/// `1` and `1.0` are the same number to a filter.
fn numeric_eq(a: &Value, b: &Value) -> bool {
    matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y)
}

/// Every worker's groups of one query, merged on its home worker: hashed
/// with foldhash, as a worker's own groups are, rather than SipHash (an
/// answer can have as many groups as the rollup has rows).
type Merged = HashMap<Vec<Value>, Aggregates, foldhash::fast::RandomState>;

/// Merges every worker's partial into the answer.
pub fn merge(plan: &Plan, partials: Vec<Partial>) -> Outcome {
    if partials.iter().any(|p| p.retry) {
        return Outcome::Retry;
    }
    let Some(first) = partials.first() else {
        return Outcome::Retry;
    };
    let as_of = first.as_of;
    let query = match &first.request {
        Request::Query(q) => q.clone(),
        Request::Status | Request::Backfill(_) => {
            let mut reports: Vec<WorkerReport> = partials.into_iter().map(|p| p.report).collect();
            reports.sort_by_key(|r| r.worker);
            return Outcome::Status { as_of, reports };
        }
    };
    let reports: Vec<&WorkerReport> = partials.iter().map(|p| &p.report).collect();
    let marks = source_marks(plan, query.metric, &reports);
    // Room for every partial's groups: at most their sum, and a map grown
    // while it is filled hashes every key again.
    let mut groups = Merged::default();
    groups.reserve(partials.iter().map(|p| p.groups.len()).sum());
    for partial in partials {
        for (key, agg) in partial.groups {
            match groups.get_mut(&key) {
                Some(acc) => acc.merge_query(&agg),
                None => {
                    groups.insert(key, agg);
                }
            }
        }
    }
    Outcome::Answer(finish(plan, &query, as_of, marks, groups))
}

/// Turns merged groups into rows: key cells, measure values, then order and limit.
pub fn finish(
    plan: &Plan,
    query: &Query,
    as_of: u64,
    sources: Vec<SourceMark>,
    groups: Merged,
) -> Answer {
    let metric = &plan.metrics[query.metric];
    let mut columns: Vec<String> = query
        .group_by
        .iter()
        .map(|g| match g {
            GroupKey::Dimension(i) => metric.dimensions[*i].name.clone(),
            GroupKey::Time => "__time".to_string(),
        })
        .collect();
    let asked: Vec<Option<MeasureRef<'_>>> = query
        .measures
        .iter()
        .map(|i| measure::measure(metric, *i))
        .collect();
    columns.extend(
        asked
            .iter()
            .map(|m| m.map_or_else(String::new, |m| m.name().to_string())),
    );
    let mut rows: Vec<Vec<Cell>> = groups
        .into_iter()
        .map(|(key, agg)| {
            let mut row: Vec<Cell> = key
                .into_iter()
                .zip(&query.group_by)
                .map(|(v, g)| match (g, v) {
                    (GroupKey::Time, Value::Int(t)) => Cell::Time(t),
                    (_, Value::Null) => Cell::Null,
                    (_, v) => Cell::Value(v),
                })
                .collect();
            row.extend(
                asked
                    .iter()
                    .zip(&agg.measures)
                    .map(|(m, state)| m.map_or(Cell::Null, |m| m.finish(state, agg.count))),
            );
            row
        })
        .collect();
    let keys = query.group_by.len();
    let sort_columns: Vec<(usize, bool)> = if query.order_by.is_empty() {
        (0..keys).map(|i| (i, false)).collect()
    } else {
        query
            .order_by
            .iter()
            .filter_map(|o| {
                let at = match o.column {
                    Column::Key(k) => query.group_by.iter().position(|g| *g == k),
                    Column::Measure(m) => query
                        .measures
                        .iter()
                        .position(|x| *x == m)
                        .map(|p| p + keys),
                };
                at.map(|at| (at, o.desc))
            })
            .chain((0..keys).map(|i| (i, false)))
            .collect()
    };
    let watermark_ms = sources.iter().filter_map(|s| s.watermark_ms).min();
    let retained_from_ms = watermark_ms.map(|w| w.saturating_sub(metric.retain.millis() as i64));
    let mut notes = Vec::new();
    if let Some(from) = retained_from_ms.filter(|from| query.from_ms < *from) {
        // Buckets before `from` are evicted (or about to be): say so, and
        // drop time buckets that start before it rather than show parts of
        // them (before the limit, so that it counts only rows shown).
        notes.push(format!(
            "time before {} is past `{}`'s retention ({}) and is evicted; the answer counts from then on",
            timebucket::rfc3339(from),
            metric.name,
            metric.retain
        ));
        if let Some(t) = query.group_by.iter().position(|g| *g == GroupKey::Time) {
            rows.retain(|row| !matches!(row.get(t), Some(Cell::Time(b)) if *b < from));
        }
    }
    // The group keys end every order, so no two rows tie and the first
    // `limit` rows are the same however they are found: by selection, in
    // time linear in the groups, when the limit leaves some out.
    let order = |a: &Vec<Cell>, b: &Vec<Cell>| {
        for (at, desc) in &sort_columns {
            let o = compare_cells(&a[*at], &b[*at]);
            let o = if *desc { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    };
    if let Some(limit) = query.limit.filter(|l| *l < rows.len()) {
        if limit > 0 {
            rows.select_nth_unstable_by(limit - 1, order);
        }
        rows.truncate(limit);
    }
    rows.sort_by(order);
    Answer {
        as_of: AsOf {
            epoch: as_of,
            watermark_ms,
            sources,
            retained_from_ms,
            notes,
        },
        columns,
        rows,
    }
}

/// Orders cells of one column: nulls first, numbers numerically.
fn compare_cells(a: &Cell, b: &Cell) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn number(c: &Cell) -> Option<f64> {
        match c {
            Cell::Int(i) | Cell::Time(i) => Some(*i as f64),
            Cell::Float(f) => Some(*f),
            Cell::Value(v) => v.as_f64(),
            Cell::Null => None,
        }
    }
    match (a, b) {
        (Cell::Null, Cell::Null) => Ordering::Equal,
        (Cell::Null, _) => Ordering::Less,
        (_, Cell::Null) => Ordering::Greater,
        (Cell::Value(x), Cell::Value(y)) => x.cmp(y),
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => Ordering::Equal,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::MeasureState;
    use crate::query::{Column, OrderBy};

    #[test]
    fn group_keys_have_equal_bytes_exactly_when_their_parts_are_equal() {
        let long = "x".repeat(300);
        let values = vec![
            Value::Null,
            Value::Bool(false),
            Value::Bool(true),
            Value::Int(0),
            Value::Int(1),
            Value::Int(-1),
            Value::Float(1.0),
            Value::Float(0.0),
            Value::Float(-0.0),
            Value::Str("".into()),
            Value::Str("a".into()),
            Value::Str("ab".into()),
            Value::Str("b".into()),
            Value::Str("a\u{0}".into()),
            // Text that holds a text tag: split differently, it could read
            // as two values were their lengths not written.
            Value::Str("a\u{4}".into()),
            Value::Str("\u{4}".into()),
            Value::Str("a long name, past what fits inline".into()),
            Value::Str(long[..254].into()),
            Value::Str(long[..255].into()),
            Value::Str(long.as_str().into()),
        ];
        let dims: Vec<GroupPart> = values.iter().map(GroupPart::Value).collect();
        let times = [GroupPart::Time(0), GroupPart::Time(1), GroupPart::Time(-1)];
        // Keys of one query have one shape: which places hold a dimension
        // and which a time. In each shape, splitting text differently, or a
        // number beside text, must not give the same bytes.
        fn pairs<'a>(a: &[GroupPart<'a>], b: &[GroupPart<'a>]) -> Vec<Vec<GroupPart<'a>>> {
            a.iter()
                .flat_map(|x| b.iter().map(|y| vec![*x, *y]))
                .collect()
        }
        let shapes: Vec<Vec<Vec<GroupPart>>> = vec![
            dims.iter().map(|p| vec![*p]).collect(),
            pairs(&dims, &dims),
            pairs(&dims, &times),
            pairs(&times, &dims),
        ];
        let bytes = |key: &[GroupPart]| {
            let mut out = Vec::new();
            for p in key {
                p.encode(&mut out);
            }
            out
        };
        for keys in &shapes {
            for a in keys {
                for b in keys {
                    assert_eq!(a == b, bytes(a) == bytes(b), "{a:?} and {b:?}");
                }
            }
        }
    }

    #[test]
    fn whole_hours_are_read_hourly_only_when_each_falls_in_one_bucket() {
        const H: i64 = hourly::HOUR_MS;
        let t0 = 1_724_112_000_000; // on the hour
        let minute = Window::Tumbling {
            size: statflow_dsl::Duration::from_millis(60_000),
        };
        let hours = |from: i64, to: i64, g: Option<i64>, tz: Option<&str>, time: bool| {
            let q = Query {
                metric: 0,
                from_ms: from,
                to_ms: to,
                filter: None,
                group_by: if time { vec![GroupKey::Time] } else { vec![] },
                granularity_ms: g.map(|g| g as u64),
                time_zone: tz.map(String::from),
                measures: vec![0],
                order_by: vec![],
                limit: None,
                late: false,
            };
            Shape::new(&q, &minute).whole_hours()
        };
        // A total: every whole hour inside the range.
        assert_eq!(
            hours(t0 + 1, t0 + 5 * H - 1, None, None, false),
            Some((t0 + H, t0 + 4 * H))
        );
        assert_eq!(hours(t0 + 1, t0 + 2 * H - 1, None, None, false), None);
        // Hours, days in whole-hour offsets: yes.
        assert_eq!(
            hours(t0, t0 + 30 * H, Some(H), None, true),
            Some((t0, t0 + 30 * H))
        );
        let day = 86_400_000;
        assert!(hours(t0, t0 + 72 * H, Some(day), Some("+08:00"), true).is_some());
        assert!(hours(t0, t0 + 72 * H, Some(day), Some("Europe/Berlin"), true).is_some());
        // Buckets that end inside hours: 5 minutes, the window step, or
        // hours and days in a half-hour offset.
        assert_eq!(hours(t0, t0 + 30 * H, Some(300_000), None, true), None);
        assert_eq!(hours(t0, t0 + 30 * H, None, None, true), None);
        assert_eq!(hours(t0, t0 + 30 * H, Some(H), Some("+05:30"), true), None);
        assert_eq!(
            hours(t0, t0 + 72 * H, Some(day), Some("Asia/Kolkata"), true),
            None
        );
        // Hopping windows never.
        let hopping = Window::Hopping {
            size: statflow_dsl::Duration::from_millis(600_000),
            every: statflow_dsl::Duration::from_millis(60_000),
        };
        let q = Query {
            metric: 0,
            from_ms: t0,
            to_ms: t0 + 30 * H,
            filter: None,
            group_by: vec![],
            granularity_ms: None,
            time_zone: None,
            measures: vec![0],
            order_by: vec![],
            limit: None,
            late: false,
        };
        assert_eq!(Shape::new(&q, &hopping).whole_hours(), None);
    }

    /// Every type that crosses a process boundary survives timely's encoding
    /// (bincode through serde) unchanged: requests, partials with every kind
    /// of measure state (small and large sketches), reports and rollup rows.
    #[test]
    fn what_crosses_processes_round_trips() {
        fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
            value: &T,
        ) {
            let bytes = bincode::serialize(value).expect("serializes");
            let back: T = bincode::deserialize(&bytes).expect("deserializes");
            assert_eq!(&back, value);
        }
        let query = Query {
            metric: 1,
            from_ms: -5,
            to_ms: 1_724_115_600_000,
            filter: Some(Filter::And(vec![
                Filter::Regex(0, "fuc|tax-up".into()),
                Filter::Not(Box::new(Filter::In(
                    1,
                    vec![Value::Str("a".into()), Value::Int(3)],
                ))),
                Filter::Range {
                    dimension: 2,
                    gte: Some(1.5),
                    gt: None,
                    lt: Some(9.0),
                    lte: None,
                },
                Filter::Or(vec![
                    Filter::Eq(1, Value::Float(0.25)),
                    Filter::Eq(1, Value::Bool(true)),
                ]),
            ])),
            group_by: vec![GroupKey::Dimension(0), GroupKey::Time],
            granularity_ms: Some(3_600_000),
            time_zone: Some("Asia/Shanghai".into()),
            measures: vec![0, 2],
            order_by: vec![OrderBy {
                column: Column::Measure(2),
                desc: true,
            }],
            limit: Some(10),
            late: false,
        };
        round_trip(&QueryMsg {
            id: 7,
            home: 3,
            as_of: 11,
            request: Request::Query(query.clone()),
        });
        round_trip(&QueryMsg {
            id: 8,
            home: 0,
            as_of: 0,
            request: Request::Status,
        });
        round_trip(&QueryMsg {
            id: 9,
            home: 1,
            as_of: 3,
            request: Request::Backfill(crate::backfill::BackfillOrder {
                metric: 2,
                from_ms: Some(-60_000),
                to_ms: None,
            }),
        });
        let report = WorkerReport {
            worker: 5,
            process: 2,
            epoch: 99,
            finished_at: Some(42),
            sources: vec![SourceReport {
                records: 10,
                errors: 1,
                partitions: vec![crate::ingest::PartitionStatus {
                    name: "rewards/3".into(),
                    position: 1234,
                    end: Some(2000),
                    max_event_ms: Some(7),
                    last_read_ms: Some(8),
                }],
                finished: true,
                max_event_ms: Some(-1),
                late: 3,
                late_by_metric: vec![0, 3],
                broker: Some(crate::ingest::BrokerStatus {
                    state: crate::ingest::BrokerState::Unreachable,
                    since_ms: 1_724_112_000_000,
                    error: Some("Connection refused".into()),
                    retries: 4,
                }),
            }],
            backfills: vec![crate::backfill::BackfillReport {
                metric: 1,
                order: None,
                records: 7,
                errors: 0,
                partitions: vec![crate::backfill::BackfillPartition {
                    source: "events".into(),
                    partition: "slice-03".into(),
                    first: 0,
                    position: 10,
                    end: 99,
                }],
                done: false,
            }],
        };
        round_trip(&report);

        let f = statflow_dsl::FieldPath::parse("x");
        let kinds = [
            statflow_dsl::MeasureKind::Count,
            statflow_dsl::MeasureKind::Sum { field: f.clone() },
            statflow_dsl::MeasureKind::Min { field: f.clone() },
            statflow_dsl::MeasureKind::Max { field: f.clone() },
            statflow_dsl::MeasureKind::Avg { field: f.clone() },
            statflow_dsl::MeasureKind::Distinct { field: f.clone() },
            statflow_dsl::MeasureKind::Quantile { field: f, q: 0.9 },
        ];
        for n in [1usize, 2, 3, 100, 129, 5_000] {
            let mut agg = Aggregates::empty(&kinds);
            for i in 0..n {
                agg.count += 1;
                for m in &mut agg.measures {
                    m.add_number(i as f64 * 0.5);
                    m.add_text(&format!("user-{i}"));
                }
            }
            round_trip(&agg);
            let key = RollupKey {
                metric: 1,
                bucket: 60_000,
                dims: vec![Value::Str("g1".into()), Value::Null, Value::Int(2)].into(),
            };
            round_trip(&(key.clone(), 4u64, agg.clone()));
            let partial = Partial {
                id: 1,
                home: 2,
                as_of: 3,
                retry: false,
                request: Request::Query(query.clone()),
                report: report.clone(),
                groups: vec![(vec![Value::Int(60_000)], agg.clone())],
            };
            let bytes = bincode::serialize(&partial).unwrap();
            let back: Partial = bincode::deserialize(&bytes).unwrap();
            assert_eq!(back.groups, partial.groups);
            assert_eq!(back.request, partial.request);
            // The measures answer the same after the trip.
            for (kind, (a, b)) in kinds
                .iter()
                .zip(agg.measures.iter().zip(&back.groups[0].1.measures))
            {
                assert_eq!(
                    a.finish(kind, agg.count),
                    b.finish(kind, agg.count),
                    "{kind} with {n} values"
                );
            }
            assert!(matches!(back.groups[0].1.measures[0], MeasureState::Count));
        }
    }

    #[test]
    fn a_limit_keeps_the_rows_a_whole_sort_would_put_first() {
        let text = r#"
source s = file("e.jsonl") { time = ts as epoch_millis }
metric m from s {
  dimensions game, kind
  window tumbling 1m
  measures { n = count()  total = sum(amount) }
}
"#;
        let compiled = statflow_dsl::compile(text, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        let plan = compiled.plan.expect("a plan");
        // 1,000 groups whose totals tie in tens, so the order falls back on
        // the keys, some of them null.
        let mut groups = Merged::default();
        for i in 0..1_000i64 {
            // A group holds a state for each asked measure, `count()` too.
            let total = crate::aggregate::Fixed::from(i128::from(i % 100) * 1_000_000_000);
            let row = Aggregates {
                count: i % 7,
                measures: [MeasureState::Count, MeasureState::Sum(total)]
                    .into_iter()
                    .collect(),
            };
            let kind = if i % 4 == 0 {
                Value::Null
            } else {
                Value::Str(format!("k{}", i % 4).into())
            };
            groups.insert(vec![Value::Int(i / 4), kind], row);
        }
        let answer = |order_by: Vec<OrderBy>, limit: Option<usize>| {
            let query = Query {
                metric: 0,
                from_ms: 0,
                to_ms: 60_000,
                filter: None,
                group_by: vec![GroupKey::Dimension(0), GroupKey::Dimension(1)],
                granularity_ms: None,
                time_zone: None,
                measures: vec![0, 1],
                order_by,
                limit,
                late: false,
            };
            finish(&plan, &query, 0, Vec::new(), groups.clone()).rows
        };
        let orders = [
            vec![],
            vec![OrderBy {
                column: Column::Measure(1),
                desc: true,
            }],
            vec![
                OrderBy {
                    column: Column::Measure(0),
                    desc: false,
                },
                OrderBy {
                    column: Column::Measure(1),
                    desc: true,
                },
            ],
        ];
        for order_by in orders {
            let all = answer(order_by.clone(), None);
            assert_eq!(all.len(), 1_000);
            for limit in [0, 1, 9, 10, 11, 999, 1_000, 5_000] {
                let limited = answer(order_by.clone(), Some(limit));
                assert_eq!(limited, all[..limit.min(all.len())], "limit {limit}");
            }
        }
    }

    #[test]
    fn a_limit_counts_only_buckets_within_retention() {
        let text = r#"
source s = file("e.jsonl") { time = ts as epoch_millis }
metric m from s {
  window tumbling 1m
  retain 10m
  measures { n = count() }
}
"#;
        let compiled = statflow_dsl::compile(text, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        let plan = compiled.plan.expect("a plan");
        const MINUTE: i64 = 60_000;
        // Minutes 0 to 29, the busiest first; the watermark at minute 30
        // keeps minutes 20 to 29 only.
        let mut groups = Merged::default();
        for minute in 0..30 {
            let row = Aggregates {
                count: 100 - minute,
                measures: [MeasureState::Count].into_iter().collect(),
            };
            groups.insert(vec![Value::Int(minute * MINUTE)], row);
        }
        let query = Query {
            metric: 0,
            from_ms: 0,
            to_ms: 30 * MINUTE,
            filter: None,
            group_by: vec![GroupKey::Time],
            granularity_ms: None,
            time_zone: None,
            measures: vec![0],
            order_by: vec![OrderBy {
                column: Column::Measure(0),
                desc: true,
            }],
            limit: Some(5),
            late: false,
        };
        let sources = vec![SourceMark {
            source: "s".into(),
            watermark_ms: Some(30 * MINUTE),
            late: 0,
        }];
        let answer = finish(&plan, &query, 0, sources, groups);
        let minutes: Vec<&Cell> = answer.rows.iter().map(|row| &row[0]).collect();
        let expected: Vec<Cell> = (20..25).map(|m| Cell::Time(m * MINUTE)).collect();
        assert_eq!(minutes, expected.iter().collect::<Vec<_>>());
        assert_eq!(answer.as_of.notes.len(), 1, "{:?}", answer.as_of.notes);
    }

    /// Rows in three batches, the last retracting some of them, read at
    /// each epoch: batch by batch while nothing read is retracted, merged
    /// once something is, and always what a recount of the events gives.
    #[test]
    fn a_retraction_sends_the_read_back_to_merged_cursors() {
        use differential_dataflow::AsCollection;
        use timely::dataflow::operators::Probe;
        use timely::dataflow::ProbeHandle;

        let text = r#"
source s = file("e.jsonl") { time = ts as epoch_millis }
metric m from s {
  dimensions game
  window tumbling 1m
  measures { n = count()  total = sum(amount)  players = distinct(user) }
}
"#;
        let compiled = statflow_dsl::compile(text, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        let plan = compiled.plan.expect("a plan");
        let kinds: Vec<_> = plan.metrics[0]
            .measures
            .iter()
            .map(|m| m.kind.clone())
            .collect();
        const MINUTE: i64 = 60_000;
        // (epoch, minute, game, user, amount): two epochs of events over
        // ten minutes, each row in both; then minutes 0 to 2 retracted.
        let events: Vec<(u64, i64, &str, String, f64)> = (0..2u64)
            .flat_map(|epoch| {
                (0..10i64).flat_map(move |minute| {
                    (0..(3 + minute as usize % 4)).map(move |i| {
                        let game = ["a", "b"][i % 2];
                        (
                            epoch,
                            minute,
                            game,
                            format!("u{}", (i + minute as usize) % 5),
                            i as f64,
                        )
                    })
                })
            })
            .collect();
        let retracted = |minute: i64| minute < 3;
        let key = |minute: i64, game: &str| RollupKey {
            metric: 0,
            bucket: minute * MINUTE,
            dims: vec![Value::Str(game.into())].into(),
        };
        let query = Query {
            metric: 0,
            from_ms: 0,
            to_ms: 10 * MINUTE,
            filter: None,
            group_by: vec![GroupKey::Dimension(0)],
            granularity_ms: None,
            time_zone: None,
            measures: vec![0, 1, 2],
            order_by: vec![],
            limit: None,
            late: false,
        };
        timely::execute_directly(move |worker| {
            let mut input = timely::dataflow::InputHandleVec::new();
            let probe = ProbeHandle::new();
            let trace = worker.dataflow(|scope| {
                let arranged =
                    crate::render::arrange(input.to_stream(scope).as_collection(), "Rollup");
                arranged.stream.probe_with(&probe);
                arranged.trace
            });
            let mut rows: HashMap<RollupKey, i64> = HashMap::new();
            for epoch in 0..3u64 {
                if epoch < 2 {
                    let mut batch: HashMap<RollupKey, Aggregates> = HashMap::new();
                    for (_, minute, game, user, amount) in events.iter().filter(|e| e.0 == epoch) {
                        let row = batch.entry(key(*minute, game)).or_insert_with(|| {
                            Aggregates::empty(
                                kinds.iter().filter(|k| crate::aggregate::keeps_state(k)),
                            )
                        });
                        row.count += 1;
                        for m in &mut row.measures {
                            m.add_number(*amount);
                            m.add_text(user);
                        }
                    }
                    for (k, row) in batch {
                        *rows.entry(k.clone()).or_default() += row.count;
                        input.send((k, epoch, row));
                    }
                } else {
                    for (k, count) in rows.iter().filter(|(k, _)| retracted(k.bucket / MINUTE)) {
                        input.send((k.clone(), epoch, crate::render::retraction(*count)));
                    }
                }
                input.advance_to(epoch + 1);
                while probe.less_than(&(epoch + 1)) {
                    worker.step();
                }
            }
            let traces = Traces {
                rollup: Rc::new(RefCell::new(trace)),
                hourly: None,
                touches: Rc::default(),
                cache: Rc::new(RefCell::new(QueryCache::new(Arc::default()))),
            };
            for as_of in 0..3u64 {
                // A recount: per game, events up to `as_of` in rows still there.
                let mut expected: Vec<(Value, Vec<Cell>)> = ["a", "b"]
                    .iter()
                    .map(|game| {
                        let of: Vec<_> = events
                            .iter()
                            .filter(|e| e.0 <= as_of && e.2 == *game)
                            .filter(|e| as_of < 2 || !retracted(e.1))
                            .collect();
                        let users: std::collections::HashSet<_> = of.iter().map(|e| &e.3).collect();
                        let total: f64 = of.iter().map(|e| e.4).sum();
                        let cells = vec![
                            Cell::Int(of.len() as i64),
                            Cell::Float(total),
                            Cell::Int(users.len() as i64),
                        ];
                        (Value::Str((*game).into()), cells)
                    })
                    .collect();
                expected.sort_by(|a, b| a.0.cmp(&b.0));
                let msg = QueryMsg {
                    id: 0,
                    home: 0,
                    as_of,
                    request: Request::Query(query.clone()),
                };
                let partial = scan(&plan, &traces, &msg, WorkerReport::default());
                assert!(!partial.retry);
                let mut got: Vec<(Value, Vec<Cell>)> = partial
                    .groups
                    .iter()
                    .map(|(k, agg)| {
                        let cells = agg
                            .measures
                            .iter()
                            .zip(&kinds)
                            .map(|(m, kind)| m.finish(kind, agg.count))
                            .collect();
                        (k[0].clone(), cells)
                    })
                    .collect();
                got.sort_by(|a, b| a.0.cmp(&b.0));
                assert_eq!(got, expected, "as of epoch {as_of}");

                // Batch by batch, the read gives way exactly where a
                // retraction up to `as_of` lies.
                let batches = readable(&mut traces.rollup.borrow_mut(), as_of).expect("readable");
                let shard = Shard {
                    rows: batches,
                    hourly: Vec::new(),
                    hours: None,
                };
                let shape = Shape::new(&query, &plan.metrics[0].window);
                for (from, to, gives_way) in [(0, 3, as_of >= 2), (3, 10, false)] {
                    let mut reading = shard.reading(false);
                    let mut groups = Groups::new(&plan, &query, &shape, as_of);
                    let read = shard.read(&mut reading, &mut groups, from * MINUTE, to * MINUTE);
                    assert_eq!(
                        read.is_err(),
                        gives_way,
                        "minutes {from} to {to} as of {as_of}"
                    );
                }
            }
        });
    }
}
