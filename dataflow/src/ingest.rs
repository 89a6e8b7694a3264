//! The ingest operator: reads a source's records, decodes them, and combines
//! them into one rollup update per key per epoch before anything is
//! exchanged between workers.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use differential_dataflow::{AsCollection, VecCollection};
use statflow_dsl::Plan;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::Scope;
use timely::scheduling::Activator;

use crate::aggregate::Aggregates;
use crate::rollup::{EpochRows, RecordError, RollupKey, Scratch, SourceDecoder};

/// What a reader did in one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadState {
    /// It may have more right away: call again soon.
    Busy,
    /// Nothing now; try again after this long.
    Idle(Duration),
    /// The source is exhausted for good.
    Finished,
}

/// Milliseconds since the Unix epoch, now.
pub fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Where a record was read: the partition it belongs to (an index into the
/// reader's [`RecordReader::partitions`]) and its position there (a byte
/// offset, a sequence number, a Kafka offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAt {
    /// Index into the reader's partitions.
    pub partition: usize,
    /// Position of the record in its partition.
    pub position: u64,
}

/// Positions to resume from, by partition name: each is the position of the
/// first record not yet counted. A partition missing from the map starts
/// from its beginning (or the source's configured start).
pub type Resume = std::collections::BTreeMap<String, u64>;

/// Reads raw records of one source on one worker. Implemented by the
/// runtime for files, the generator and Kafka.
///
/// A source is made of *partitions*: units whose records come in position
/// order (a Kafka partition, a slice of a file, a stream of the generator).
/// Partition names do not depend on the number of workers, so a checkpoint's
/// positions can be handed to a different number of workers on restart.
pub trait RecordReader: 'static {
    /// Hands at most `max` records to `record`, each with where it was read.
    fn read(&mut self, max: usize, record: &mut dyn FnMut(&[u8], RecordAt)) -> ReadState;

    /// The names of the partitions this reader owns, in a fixed order. A
    /// reader that takes or finds partitions as it runs appends them; best
    /// before the read that gives a partition's first record, since the
    /// intake copies and holds back the records of a partition named
    /// during a read until the read returns.
    fn partitions(&self) -> &[String];

    /// For each partition (same order as [`partitions`](Self::partitions)),
    /// the position of the first record not handed out yet.
    fn positions(&self) -> Vec<u64>;

    /// For each partition, the position its input ends at now, when the
    /// reader knows (a Kafka high watermark, a file slice's end); the lag is
    /// the distance from [`positions`](Self::positions).
    fn ends(&self) -> Vec<Option<u64>> {
        vec![None; self.partitions().len()]
    }

    /// How the reader stands with the brokers it reads from, for readers
    /// that have brokers (Kafka); `None`, the default, for the others.
    fn broker(&self) -> Option<BrokerStatus> {
        None
    }

    /// True when the partition named `partition` is this reader's, whether
    /// or not it has been found yet (a reader that finds partitions while
    /// running, such as Kafka's, says so before it lists them).
    fn owns(&self, partition: &str) -> bool {
        self.partitions().iter().any(|p| p == partition)
    }
}

/// Whether a reader can reach its brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BrokerState {
    /// The reader has not heard from a broker since it started.
    Connecting,
    /// A broker answers.
    Connected,
    /// No broker answers: the client reconnects with backoff, positions kept.
    Unreachable,
}

impl BrokerState {
    /// The word the status endpoint and the logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerState::Connecting => "connecting",
            BrokerState::Connected => "connected",
            BrokerState::Unreachable => "unreachable",
        }
    }
}

/// One reader's connection to its brokers, as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BrokerStatus {
    /// Connected or not.
    pub state: BrokerState,
    /// When (wall clock, milliseconds) the reader entered `state`.
    pub since_ms: i64,
    /// The newest connection error, while not connected.
    pub error: Option<String>,
    /// Connection attempts since the brokers became unreachable; 0 while connected.
    pub retries: u64,
}

/// One partition of a source on one worker, as the status endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PartitionStatus {
    /// The partition's name (`topic/3`, `slice-05`, `stream-2`).
    pub name: String,
    /// The position of the first record not read yet.
    pub position: u64,
    /// Where its input ends now, when known.
    pub end: Option<u64>,
    /// The newest event time read from it, in milliseconds.
    pub max_event_ms: Option<i64>,
    /// When (wall clock, milliseconds) it last gave a record.
    pub last_read_ms: Option<i64>,
}

/// Where records that could not be counted go, with their reason.
pub trait DeadLetters: 'static {
    /// Keeps `record`, read from `partition` at `position` of `source`, which
    /// failed with `reason`.
    fn put(
        &mut self,
        source: &str,
        partition: &str,
        position: u64,
        reason: &RecordError,
        record: &[u8],
    );
}

/// Counters of one source on one worker, shared with the status endpoint.
#[derive(Debug)]
pub struct SourceStats {
    /// Records read, good or bad.
    pub records: AtomicU64,
    /// Records that could not be counted.
    pub errors: AtomicU64,
    /// The newest event time seen, in milliseconds; `i64::MIN` before any.
    pub max_event_ms: AtomicI64,
    /// Every partition this worker reads, refreshed after each read.
    pub partitions: Mutex<Vec<PartitionStatus>>,
    /// Late events: older than their partition's newest event minus the
    /// lateness bound, set aside in the metrics' late rows.
    pub late: AtomicU64,
    /// Late events per metric (plan index) that they would have counted in.
    pub late_by_metric: Mutex<Vec<u64>>,
    /// The reader said it is finished.
    pub finished: AtomicBool,
    /// The reader's connection to its brokers, refreshed after each read.
    pub broker: Mutex<Option<BrokerStatus>>,
}

impl Default for SourceStats {
    fn default() -> Self {
        SourceStats {
            records: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            max_event_ms: AtomicI64::new(i64::MIN),
            partitions: Mutex::new(Vec::new()),
            late: AtomicU64::new(0),
            late_by_metric: Mutex::new(Vec::new()),
            finished: AtomicBool::new(false),
            broker: Mutex::new(None),
        }
    }
}

impl SourceStats {
    /// The newest event time seen, if any.
    pub fn max_event(&self) -> Option<i64> {
        let ms = self.max_event_ms.load(Ordering::Relaxed);
        (ms != i64::MIN).then_some(ms)
    }

    /// A copy of the partitions' status.
    pub fn partitions(&self) -> Vec<PartitionStatus> {
        self.partitions
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// A copy of the late counts per metric.
    pub fn late_by_metric(&self) -> Vec<u64> {
        self.late_by_metric
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// A copy of the reader's connection to its brokers, if it has brokers.
    pub fn broker(&self) -> Option<BrokerStatus> {
        self.broker.lock().ok().and_then(|b| b.clone())
    }

    fn refresh(&self, reader: &dyn RecordReader, max_event: &[i64], seen: &[i64]) {
        let positions = reader.positions();
        let ends = reader.ends();
        let status = reader
            .partitions()
            .iter()
            .enumerate()
            .map(|(i, name)| PartitionStatus {
                name: name.clone(),
                position: positions.get(i).copied().unwrap_or(0),
                end: ends.get(i).copied().flatten(),
                max_event_ms: max_event.get(i).copied().filter(|t| *t != i64::MIN),
                last_read_ms: seen.get(i).copied().filter(|t| *t != i64::MIN),
            })
            .collect();
        if let Ok(mut partitions) = self.partitions.lock() {
            *partitions = status;
        }
        if let Ok(mut broker) = self.broker.lock() {
            *broker = reader.broker();
        }
    }
}

/// The worker's epoch: every ingest operator of a worker stamps its updates
/// with it. The worker loop advances it with the wall clock (epoch `n` is
/// the interval starting at `n × interval` since the Unix epoch), so the
/// workers of every process agree on epoch numbers and a worker reading a
/// backlog cannot run ahead of the others.
#[derive(Clone, Default)]
pub struct EpochClock {
    epoch: Rc<Cell<u64>>,
    activators: Rc<RefCell<Vec<Activator>>>,
}

impl EpochClock {
    /// A clock at epoch 0.
    pub fn new() -> Self {
        EpochClock::default()
    }

    /// The open epoch.
    pub fn current(&self) -> u64 {
        self.epoch.get()
    }

    /// Closes the open epoch and opens `epoch`, if it is newer; wakes the
    /// operators so they flush.
    pub fn advance_to(&self, epoch: u64) {
        if epoch <= self.epoch.get() {
            return;
        }
        self.epoch.set(epoch);
        for a in self.activators.borrow().iter() {
            a.activate();
        }
    }
}

/// Where one source stood on one worker at the end of an epoch: what a
/// checkpoint at that epoch stores beside the rollup.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourcePositions {
    /// Per partition, the position of the first record not counted.
    pub positions: Vec<(String, u64)>,
    /// Per partition, the newest event time counted (the lateness rule's memory).
    pub newest: Vec<(String, i64)>,
}

/// A source's positions at the ends of recent epochs on one worker. The
/// ingest operator adds an entry whenever it closes an epoch; a checkpoint
/// at epoch `c` takes the first entry that covers `c`.
#[derive(Debug, Default)]
pub struct PositionLog {
    /// `(last epoch covered, positions)`, oldest first: the entry covers the
    /// epochs after the previous entry's up to its own.
    entries: std::collections::VecDeque<(u64, SourcePositions)>,
}

impl PositionLog {
    /// The positions after every record of epochs up to `epoch`, once the
    /// operator has closed `epoch`.
    pub fn at(&self, epoch: u64) -> Option<&SourcePositions> {
        self.entries
            .iter()
            .find(|(upto, _)| *upto >= epoch)
            .map(|(_, p)| p)
    }

    /// Drops entries that only cover epochs before `epoch`.
    pub fn forget_before(&mut self, epoch: u64) {
        while self.entries.front().is_some_and(|(upto, _)| *upto < epoch) {
            self.entries.pop_front();
        }
    }

    /// Notes the positions after every record of epochs up to `upto`.
    pub fn push(&mut self, upto: u64, positions: SourcePositions) {
        self.entries.push_back((upto, positions));
    }
}

/// Everything one ingest operator needs.
pub struct IngestSpec {
    /// The plan.
    pub plan: Arc<Plan>,
    /// Index of the source in the plan.
    pub source: usize,
    /// This worker's reader of the source.
    pub reader: Box<dyn RecordReader>,
    /// Where bad records go.
    pub dead_letters: Box<dyn DeadLetters>,
    /// Counters shared with the status endpoint.
    pub stats: Arc<SourceStats>,
    /// Most records read in one activation, which bounds how long a worker
    /// step takes (so queries do not wait behind a backlog).
    pub batch: usize,
    /// The combined rows are handed on after this many records even when
    /// the epoch is still open, which bounds the combiner's memory.
    pub flush_records: usize,
    /// Where the operator notes its positions at each closed epoch, when
    /// checkpoints are taken.
    pub log: Option<Rc<RefCell<PositionLog>>>,
    /// The newest event time per partition, restored from a checkpoint.
    pub newest: std::collections::BTreeMap<String, i64>,
}

/// Reads one source on one worker and decodes what it reads into combined
/// rollup rows: the part of an ingest operator that does not depend on
/// timely, shared with the runtime's backfill.
pub struct Intake {
    plan: Arc<Plan>,
    source_name: String,
    reader: Box<dyn RecordReader>,
    dead_letters: Box<dyn DeadLetters>,
    stats: Arc<SourceStats>,
    batch: usize,
    decoder: SourceDecoder,
    rows: EpochRows,
    scratch: Scratch,
    rejected: Vec<(RecordAt, RecordError, Vec<u8>)>,
    /// The newest event time per partition (by the reader's index), and
    /// when (wall clock) each last gave a record.
    partition_max: Vec<i64>,
    partition_seen: Vec<i64>,
    newest: std::collections::BTreeMap<String, i64>,
    late_ms: i64,
    late_by_metric: Vec<u64>,
    /// When set, only records before these positions count, by partition
    /// name; other partitions are read past and ignored.
    bound: Option<Resume>,
    /// `bound` by the reader's partition index.
    bounds: Vec<Option<u64>>,
    /// Records of partitions the reader found during a read, counted once
    /// it has returned and named them (the buffer is kept between reads).
    unplaced: Vec<(RecordAt, Vec<u8>)>,
}

impl Intake {
    /// Reads with `spec`'s reader, counting into its stats.
    pub fn new(spec: IngestSpec) -> Self {
        let IngestSpec {
            plan,
            source,
            reader,
            dead_letters,
            stats,
            batch,
            newest,
            ..
        } = spec;
        Intake {
            decoder: SourceDecoder::new(&plan, &plan.sources[source]),
            source_name: plan.sources[source].name.clone(),
            late_ms: plan.sources[source].late.millis() as i64,
            late_by_metric: vec![0; plan.metrics.len()],
            plan,
            reader,
            dead_letters,
            stats,
            batch,
            rows: EpochRows::default(),
            scratch: Scratch::default(),
            rejected: Vec::new(),
            partition_max: Vec::new(),
            partition_seen: Vec::new(),
            newest,
            bound: None,
            bounds: Vec::new(),
            unplaced: Vec::new(),
        }
    }

    /// Counts only records before `bound`'s positions, by partition name.
    pub fn bounded(mut self, bound: Resume) -> Self {
        self.bound = Some(bound);
        self
    }

    /// True once every bounded partition this reader owns has been read up
    /// to its bound.
    pub fn reached_bound(&self) -> bool {
        let Some(bound) = &self.bound else {
            return false;
        };
        let listed: std::collections::BTreeMap<&String, u64> = self
            .reader
            .partitions()
            .iter()
            .zip(self.reader.positions())
            .collect();
        bound.iter().all(|(name, end)| match listed.get(name) {
            Some(at) => at >= end,
            None => !self.reader.owns(name),
        })
    }

    /// The reader's partitions.
    pub fn partitions(&self) -> &[String] {
        self.reader.partitions()
    }

    /// Where every partition stands now: the position of the first record
    /// not read, and the newest event time read.
    pub fn positions(&self) -> SourcePositions {
        let partitions = self.reader.partitions();
        let positions = partitions
            .iter()
            .cloned()
            .zip(self.reader.positions())
            .collect();
        let newest = partitions
            .iter()
            .zip(&self.partition_max)
            .filter(|(_, t)| **t != i64::MIN)
            .map(|(name, t)| (name.clone(), *t))
            .collect();
        SourcePositions { positions, newest }
    }

    /// The rows combined since the last call.
    pub fn take_rows(&mut self) -> impl Iterator<Item = (RollupKey, Aggregates)> + '_ {
        self.rows.drain()
    }

    /// True when rows are waiting to be taken.
    pub fn has_rows(&self) -> bool {
        !self.rows.is_empty()
    }

    /// Notes the partitions the reader has named since the last call: each
    /// starts from its restored newest event time and, for a bounded read,
    /// its bound.
    fn place_partitions(&mut self) {
        let names = self.reader.partitions();
        place(
            &mut self.partition_max,
            &mut self.partition_seen,
            &self.newest,
            names,
            names.len(),
        );
        if let Some(bound) = &self.bound {
            let known = self.bounds.len();
            self.bounds
                .extend(names[known..].iter().map(|name| bound.get(name).copied()));
        }
    }

    /// Reads at most one batch; returns what the reader said and how many
    /// records were read.
    pub fn read(&mut self) -> (ReadState, usize) {
        self.place_partitions();
        // Records of partitions the reader finds during this read wait
        // until it returns and names them: a restored partition's lateness
        // goes on from its newest event time, which is found by name.
        let known = self.partition_max.len();
        let mut read = 0usize;
        // Records counted: all those read, but for a bounded read only those
        // before the bound.
        let mut counted = 0u64;
        let mut max_event = i64::MIN;
        let mut late = 0u64;
        let now = wall_ms();
        let bounded = self.bound.is_some();
        let batch = self.batch;
        let mut placed = std::mem::take(&mut self.unplaced);
        let state = {
            let Intake {
                plan,
                reader,
                decoder,
                rows,
                scratch,
                rejected,
                partition_max,
                partition_seen,
                newest,
                late_ms,
                late_by_metric,
                bounds,
                unplaced,
                bound,
                ..
            } = &mut *self;
            // `names` names the partitions not placed yet, if `at`'s is one.
            let mut count = |record: &[u8], at: RecordAt, names: &[String]| {
                counted += 1;
                place(
                    partition_max,
                    partition_seen,
                    newest,
                    names,
                    at.partition + 1,
                );
                partition_seen[at.partition] = now;
                // Late means older than its partition's newest event minus the
                // bound: a property of the input, not of timing, so reruns,
                // restarts and worker counts agree on it.
                let late_before = partition_max[at.partition].saturating_sub(*late_ms);
                match decoder.decode_into(record, late_before, scratch, rows, plan) {
                    Ok(decoded) => {
                        max_event = max_event.max(decoded.ts);
                        partition_max[at.partition] = partition_max[at.partition].max(decoded.ts);
                        if decoded.late {
                            late += 1;
                            for m in &scratch.counted {
                                late_by_metric[*m as usize] += 1;
                            }
                        }
                    }
                    Err(reason) => rejected.push((at, reason, record.to_vec())),
                }
            };
            let state = reader.read(batch, &mut |record, at| {
                read += 1;
                if at.partition >= known {
                    unplaced.push((at, record.to_vec()));
                } else if !bounded || bounds[at.partition].is_some_and(|end| at.position < end) {
                    count(record, at, &[]);
                }
            });
            if !unplaced.is_empty() {
                let names = reader.partitions();
                if let Some(bound) = bound {
                    let known = bounds.len();
                    bounds.extend(names[known..].iter().map(|name| bound.get(name).copied()));
                }
                placed.append(unplaced);
                for (at, record) in placed.drain(..) {
                    let bound = bounds.get(at.partition).copied().flatten();
                    if !bounded || bound.is_some_and(|end| at.position < end) {
                        count(&record, at, names);
                    }
                }
            }
            state
        };
        self.unplaced = placed;
        let stats = &self.stats;
        if !self.rejected.is_empty() {
            stats
                .errors
                .fetch_add(self.rejected.len() as u64, Ordering::Relaxed);
        }
        // The reader is borrowed while it reads, so bad records (rare) are
        // named and kept once it returns.
        for (at, reason, record) in self.rejected.drain(..) {
            let partition = self
                .reader
                .partitions()
                .get(at.partition)
                .map_or("", String::as_str);
            self.dead_letters
                .put(&self.source_name, partition, at.position, &reason, &record);
        }
        stats.records.fetch_add(counted, Ordering::Relaxed);
        stats.max_event_ms.fetch_max(max_event, Ordering::Relaxed);
        if late > 0 {
            stats.late.fetch_add(late, Ordering::Relaxed);
            if let Ok(mut counts) = stats.late_by_metric.lock() {
                counts.resize(self.late_by_metric.len(), 0);
                for (total, n) in counts.iter_mut().zip(self.late_by_metric.iter_mut()) {
                    *total += std::mem::take(n);
                }
            }
        }
        stats.refresh(&*self.reader, &self.partition_max, &self.partition_seen);
        if state == ReadState::Finished {
            stats.finished.store(true, Ordering::Relaxed);
        }
        (state, read)
    }
}

/// Grows the per-partition memories to `len` partitions, `names` naming
/// them: a partition starts from its restored newest event time.
fn place(
    partition_max: &mut Vec<i64>,
    partition_seen: &mut Vec<i64>,
    newest: &std::collections::BTreeMap<String, i64>,
    names: &[String],
    len: usize,
) {
    while partition_max.len() < len {
        let name = names.get(partition_max.len());
        partition_max.push(
            name.and_then(|n| newest.get(n))
                .copied()
                .unwrap_or(i64::MIN),
        );
        partition_seen.push(i64::MIN);
    }
}

/// Builds the ingest operator for one source: a collection of rollup updates,
/// one per key per epoch, not yet exchanged.
pub fn ingest<'scope>(
    scope: Scope<'scope, u64>,
    clock: &EpochClock,
    spec: IngestSpec,
) -> VecCollection<'scope, u64, RollupKey, Aggregates> {
    let clock = clock.clone();
    let name = format!("Ingest({})", spec.plan.sources[spec.source].name);
    source(scope, &name, move |capability, info| {
        let activator = scope.activator_for(info.address);
        clock.activators.borrow_mut().push(activator.clone());
        let flush_records = spec.flush_records;
        let log = spec.log.clone();
        let mut intake = Intake::new(spec);
        let mut capability = Some(capability);
        let mut finished = false;
        let mut unflushed = 0usize;
        move |output| {
            let Some(cap) = capability.as_mut() else {
                return;
            };
            let epoch = clock.current();
            // Flush what the closed epoch gathered, then move to the open one.
            if *cap.time() < epoch || unflushed >= flush_records {
                if intake.has_rows() {
                    let time = *cap.time();
                    let mut session = output.session(&*cap);
                    for (key, agg) in intake.take_rows() {
                        session.give((key, time, agg));
                    }
                }
                unflushed = 0;
                if *cap.time() < epoch {
                    if let Some(log) = &log {
                        log.borrow_mut().push(epoch - 1, intake.positions());
                    }
                    cap.downgrade(&epoch);
                }
            }
            if finished {
                return;
            }
            let (state, read) = intake.read();
            unflushed += read;
            if unflushed >= flush_records {
                activator.activate();
            }
            match state {
                ReadState::Busy => activator.activate(),
                ReadState::Idle(wait) => activator.activate_after(wait),
                // Keep the capability: the epoch clock still advances it, so
                // the metric stays queryable at ever newer epochs.
                ReadState::Finished => finished = true,
            }
        }
    })
    .as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A reader of scripted records that names each partition when it first
    /// gives a record of it, as readers that take or find partitions while
    /// they read do.
    struct Scripted {
        script: VecDeque<(&'static str, String)>,
        names: Vec<String>,
        positions: Vec<u64>,
    }

    impl RecordReader for Scripted {
        fn read(&mut self, max: usize, record: &mut dyn FnMut(&[u8], RecordAt)) -> ReadState {
            for _ in 0..max {
                let Some((name, line)) = self.script.pop_front() else {
                    break;
                };
                let partition = match self.names.iter().position(|n| n == name) {
                    Some(p) => p,
                    None => {
                        self.names.push(name.to_string());
                        self.positions.push(0);
                        self.names.len() - 1
                    }
                };
                let position = self.positions[partition];
                self.positions[partition] += 1;
                record(
                    line.as_bytes(),
                    RecordAt {
                        partition,
                        position,
                    },
                );
            }
            if self.script.is_empty() {
                ReadState::Finished
            } else {
                ReadState::Busy
            }
        }

        fn partitions(&self) -> &[String] {
            &self.names
        }

        fn positions(&self) -> Vec<u64> {
            self.positions.clone()
        }
    }

    struct Nowhere;

    impl DeadLetters for Nowhere {
        fn put(&mut self, _: &str, _: &str, _: u64, _: &RecordError, _: &[u8]) {}
    }

    #[test]
    fn a_partition_found_during_a_read_goes_on_from_its_restored_newest_event() {
        let text = r#"
            source s = file("x.jsonl") { time = ts as epoch_millis  late = 1m }
            metric m from s { window tumbling 1m  measures { n = count() } }
        "#;
        let compiled = statflow_dsl::compile(text, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        let plan = Arc::new(compiled.plan.unwrap());
        let event = |ts: i64| format!(r#"{{"ts": {ts}}}"#);
        // Partition `b` was read up to 10:00 before the restart: an event of
        // 01:40 in it is late, one of 09:50 is not. `a` is new.
        let script = [
            ("a", event(0)),
            ("b", event(100_000)),
            ("b", event(590_000)),
            ("a", event(1_000)),
            ("c", event(5_000)),
        ];
        for batch in [1, 2, 10] {
            let stats = Arc::new(SourceStats::default());
            let mut intake = Intake::new(IngestSpec {
                plan: Arc::clone(&plan),
                source: 0,
                reader: Box::new(Scripted {
                    script: script.iter().cloned().collect(),
                    names: Vec::new(),
                    positions: Vec::new(),
                }),
                dead_letters: Box::new(Nowhere),
                stats: Arc::clone(&stats),
                batch,
                flush_records: 1_000,
                log: None,
                newest: [("b".to_string(), 600_000)].into(),
            });
            while intake.read().0 != ReadState::Finished {}
            assert_eq!(stats.records.load(Ordering::Relaxed), 5, "batch {batch}");
            assert_eq!(stats.late.load(Ordering::Relaxed), 1, "batch {batch}");
            let newest = intake.positions().newest;
            let want = [("a", 1_000), ("b", 600_000), ("c", 5_000)];
            let want: Vec<(String, i64)> = want.iter().map(|(n, t)| (n.to_string(), *t)).collect();
            assert_eq!(newest, want, "batch {batch}");
        }
    }
}
