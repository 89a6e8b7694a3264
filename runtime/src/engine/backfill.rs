//! Filling in the history of a metric that joined a running topology.
//!
//! A metric new at a restart counts live input from where its sources
//! resume (its *origin*); everything before is history it missed. Once
//! `statflow backfill` orders it, each worker reads its partitions of the
//! metric's sources from their beginning up to the origin, counts what it
//! reads into that metric only, and feeds the rows into the rollup at the
//! open epoch. The origin is the exact handover point, so the live input and
//! the backfill never count an event twice or miss one between them. How far
//! each partition has been read is kept in every checkpoint, so a crash in
//! the middle resumes the backfill where the checkpoint left it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use statflow_dataflow::aggregate::Aggregates;
use statflow_dataflow::backfill::{BackfillOrder, BackfillPartition, BackfillReport};
use statflow_dataflow::ingest::{
    DeadLetters, IngestSpec, Intake, PositionLog, ReadState, Resume, SourcePositions, SourceStats,
};
use statflow_dataflow::rollup::RollupKey;
use statflow_dsl::{Plan, SourceKind, SourcePlan, StartPosition};
use timely::dataflow::InputHandleVec;

use super::{ReaderFactory, ReaderSeat};
use crate::checkpoint::BackfillState;

/// Where the worker loop's own updates enter the rollup.
pub(super) type Updates = InputHandleVec<u64, (RollupKey, u64, Aggregates)>;

/// Why a metric cannot be backfilled, or `None` when it can: its sources
/// must keep their history (files and Kafka topics do; the generator and
/// statflow's telemetry do not).
pub fn unbackfillable_source(plan: &Plan, metric: usize) -> Option<String> {
    plan.metrics[metric]
        .sources
        .iter()
        .filter_map(|name| plan.sources.iter().find(|s| &s.name == name))
        .find_map(|source| match source.kind {
            SourceKind::File(_) | SourceKind::Kafka(_) => None,
            SourceKind::Generator(_) => Some(format!(
                "source `{}` is a generator: its events follow the clock and cannot be read again",
                source.name
            )),
            SourceKind::Telemetry => Some(format!(
                "source `{}` is statflow's own telemetry, which keeps no history",
                source.name
            )),
        })
}

/// One worker's backfills.
pub(super) struct Backfills {
    plan: Arc<Plan>,
    worker: usize,
    workers: usize,
    batch: usize,
    flush_records: usize,
    metrics: Vec<MetricFill>,
}

/// One metric's backfill on this worker.
struct MetricFill {
    /// Index in the plan.
    metric: usize,
    /// Origin, order, and the progress the run started from.
    state: BackfillState,
    /// One per source of the origin, once ordered.
    fills: Vec<SourceFill>,
    /// The order came from a checkpoint: start reading at the next step.
    resume_order: bool,
}

/// One source of a metric's backfill on this worker.
struct SourceFill {
    source: String,
    /// The reader, while there is history left to read.
    intake: Option<Intake>,
    stats: Arc<SourceStats>,
    /// Positions at the end of each epoch, for checkpoints.
    log: PositionLog,
    /// Per partition, where this run started reading.
    first: BTreeMap<String, u64>,
    /// The last positions seen.
    last: SourcePositions,
    /// Records read since the rows were last handed on.
    unflushed: usize,
    /// Once finished: the epoch its last rows went into.
    finished_at: Option<u64>,
}

impl Backfills {
    pub(super) fn new(
        plan: &Arc<Plan>,
        states: &[BackfillState],
        worker: usize,
        workers: usize,
        batch: usize,
        flush_records: usize,
    ) -> Self {
        let metrics = states
            .iter()
            .filter_map(|state| {
                let metric = plan.metrics.iter().position(|m| m.name == state.metric)?;
                Some(MetricFill {
                    metric,
                    resume_order: state.order.is_some(),
                    state: state.clone(),
                    fills: Vec::new(),
                })
            })
            .collect();
        Backfills {
            plan: Arc::clone(plan),
            worker,
            workers,
            batch,
            flush_records,
            metrics,
        }
    }

    /// Starts the backfill `order` asks for, unless it was ordered already.
    pub(super) fn order(
        &mut self,
        order: BackfillOrder,
        epoch: u64,
        readers: &ReaderFactory,
        dead_letters: &dyn Fn(&str, usize) -> Box<dyn DeadLetters>,
    ) -> anyhow::Result<()> {
        let Some(fill) = self
            .metrics
            .iter_mut()
            .find(|f| f.metric == order.metric as usize)
        else {
            return Ok(());
        };
        if fill.state.order.is_some() {
            return Ok(());
        }
        fill.state.order = Some(order);
        fill.resume_order = true;
        self.start_ordered(epoch, readers, dead_letters)
    }

    /// Opens the readers of every ordered backfill not reading yet.
    fn start_ordered(
        &mut self,
        epoch: u64,
        readers: &ReaderFactory,
        dead_letters: &dyn Fn(&str, usize) -> Box<dyn DeadLetters>,
    ) -> anyhow::Result<()> {
        for fill in self.metrics.iter_mut().filter(|f| f.resume_order) {
            fill.resume_order = false;
            let Some(order) = fill.state.order.clone() else {
                continue;
            };
            for (source_name, origin) in &fill.state.origin {
                let Some(index) = self
                    .plan
                    .sources
                    .iter()
                    .position(|s| &s.name == source_name)
                else {
                    continue;
                };
                let source = history_of(&self.plan.sources[index], &order);
                let progress = fill
                    .state
                    .progress
                    .iter()
                    .find(|(s, _)| s == source_name)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default();
                let resume: Resume = progress.positions.iter().cloned().collect();
                let read_all = origin
                    .iter()
                    .all(|(p, end)| resume.get(p).is_some_and(|at| at >= end));
                if read_all {
                    // Filled in before the restart: nothing to open.
                    fill.fills.push(SourceFill {
                        source: source_name.clone(),
                        intake: None,
                        stats: Arc::new(SourceStats::default()),
                        log: PositionLog::default(),
                        first: resume,
                        last: progress,
                        unflushed: 0,
                        finished_at: Some(0),
                    });
                    continue;
                }
                // A backfill's readers read only up to their bounds, so each
                // reads the slices that are its by worker index.
                let seat = ReaderSeat {
                    worker: self.worker,
                    workers: self.workers,
                    resume: &resume,
                    slices: None,
                };
                let reader = readers(&source, &seat)?;
                let stats = Arc::new(SourceStats::default());
                let intake = Intake::new(IngestSpec {
                    plan: Arc::clone(&self.plan),
                    source: index,
                    reader,
                    dead_letters: dead_letters(source_name, self.worker),
                    stats: Arc::clone(&stats),
                    batch: self.batch,
                    flush_records: self.flush_records,
                    log: None,
                    newest: progress.newest.iter().cloned().collect(),
                })
                .bounded(origin.clone());
                let last = intake.positions();
                let mut log = PositionLog::default();
                // Nothing of this backfill is in the rollup before `epoch`.
                log.push(epoch.saturating_sub(1), progress);
                tracing::info!(
                    metric = %fill.state.metric,
                    source = %source_name,
                    worker = self.worker,
                    partitions = intake.partitions().len(),
                    "backfill started"
                );
                fill.fills.push(SourceFill {
                    source: source_name.clone(),
                    first: last.positions.iter().cloned().collect(),
                    last,
                    intake: Some(intake),
                    stats,
                    log,
                    unflushed: 0,
                    finished_at: None,
                });
            }
        }
        Ok(())
    }

    /// True while some backfill on this worker has history left to read.
    pub(super) fn busy(&self) -> bool {
        self.metrics
            .iter()
            .any(|m| m.resume_order || m.fills.iter().any(|f| f.intake.is_some()))
    }

    /// Hands on what every running backfill read in the epoch that closes
    /// (the input's open one; `epoch` is the new one) and notes where it
    /// stands, before the worker loop advances the input to `epoch`.
    pub(super) fn close_epoch(&mut self, updates: &mut Updates, epoch: u64) {
        if epoch <= *updates.time() {
            return;
        }
        let n_metrics = self.plan.metrics.len() as u32;
        for fill in &mut self.metrics {
            let Some(order) = &fill.state.order else {
                continue;
            };
            for source in &mut fill.fills {
                if source.intake.is_some() {
                    source.flush(updates, order, n_metrics);
                    source.log.push(epoch - 1, source.last.clone());
                }
            }
        }
    }

    /// Reads one batch of every running backfill into the input's open
    /// epoch, handing rows on when enough records were read or when a
    /// backfill has read all its history.
    pub(super) fn read(
        &mut self,
        updates: &mut Updates,
        readers: &ReaderFactory,
        dead_letters: &dyn Fn(&str, usize) -> Box<dyn DeadLetters>,
    ) -> anyhow::Result<()> {
        self.start_ordered(*updates.time(), readers, dead_letters)?;
        let n_metrics = self.plan.metrics.len() as u32;
        for fill in &mut self.metrics {
            let Some(order) = &fill.state.order else {
                continue;
            };
            for source in &mut fill.fills {
                let Some(intake) = source.intake.as_mut() else {
                    continue;
                };
                let (state, read) = intake.read();
                source.unflushed += read;
                let finished = state == ReadState::Finished || intake.reached_bound();
                if finished || source.unflushed >= self.flush_records {
                    source.flush(updates, order, n_metrics);
                }
                if finished {
                    // Every later checkpoint holds the final positions.
                    source.log.push(u64::MAX, source.last.clone());
                    source.intake = None;
                    source.finished_at = Some(*updates.time());
                    tracing::info!(
                        metric = %fill.state.metric,
                        source = %source.source,
                        worker = self.worker,
                        records = source.stats.records.load(Ordering::Relaxed),
                        "backfill finished on this worker"
                    );
                }
            }
        }
        Ok(())
    }

    /// Every backfill as a checkpoint at `epoch` holds it: the progress the
    /// run started from, overlaid with this worker's positions at `epoch`.
    pub(super) fn states_at(&mut self, epoch: u64) -> Vec<BackfillState> {
        self.metrics
            .iter_mut()
            .map(|fill| {
                let mut state = fill.state.clone();
                for source in &mut fill.fills {
                    let Some(at) = source.log.at(epoch).cloned() else {
                        continue;
                    };
                    source.log.forget_before(epoch + 1);
                    let progress =
                        match state.progress.iter_mut().find(|(s, _)| *s == source.source) {
                            Some((_, p)) => p,
                            None => {
                                state
                                    .progress
                                    .push((source.source.clone(), SourcePositions::default()));
                                &mut state.progress.last_mut().expect("just pushed").1
                            }
                        };
                    overlay(&mut progress.positions, at.positions);
                    overlay(&mut progress.newest, at.newest);
                }
                state
            })
            .collect()
    }

    /// What the status endpoint shows about this worker's backfills. A
    /// backfill is done here once its last rows are in an epoch before
    /// `complete` (so queries see them).
    pub(super) fn reports(&self, complete: u64) -> Vec<BackfillReport> {
        self.metrics
            .iter()
            .map(|fill| {
                let mut partitions = Vec::new();
                let (mut records, mut errors) = (0, 0);
                for source in &fill.fills {
                    records += source.stats.records.load(Ordering::Relaxed);
                    errors += source.stats.errors.load(Ordering::Relaxed);
                    let origin = fill
                        .state
                        .origin
                        .iter()
                        .find(|(s, _)| *s == source.source)
                        .map(|(_, o)| o);
                    for (partition, position) in &source.last.positions {
                        let Some(end) = origin.and_then(|o| o.get(partition)) else {
                            continue;
                        };
                        let first = source.first.get(partition).copied().unwrap_or(0);
                        partitions.push(BackfillPartition {
                            source: source.source.clone(),
                            partition: partition.clone(),
                            first: first.min(*end),
                            position: (*position).min(*end),
                            end: *end,
                        });
                    }
                }
                BackfillReport {
                    metric: fill.metric as u32,
                    order: fill.state.order.clone(),
                    records,
                    errors,
                    partitions,
                    done: fill.state.order.is_some()
                        && !fill.resume_order
                        && fill
                            .fills
                            .iter()
                            .all(|f| f.finished_at.is_some_and(|at| at < complete)),
                }
            })
            .collect()
    }
}

impl SourceFill {
    /// Sends the ordered metric's rows read so far into the input's open
    /// epoch, and notes the positions they cover.
    fn flush(&mut self, updates: &mut Updates, order: &BackfillOrder, n_metrics: u32) {
        let Some(intake) = self.intake.as_mut() else {
            return;
        };
        let time = *updates.time();
        for (key, row) in intake.take_rows() {
            let metric = key.metric == order.metric || key.metric == order.metric + n_metrics;
            if metric && order.covers(key.bucket) {
                updates.send((key, time, row));
            }
        }
        self.unflushed = 0;
        self.last = intake.positions();
    }
}

/// `source` as a backfill reads it: a Kafka source from its oldest
/// retained message, or from the order's start less the lateness bound
/// (by message timestamp), whatever the topology says for live reading.
fn history_of(source: &SourcePlan, order: &BackfillOrder) -> SourcePlan {
    let mut source = source.clone();
    if let SourceKind::Kafka(kafka) = &mut source.kind {
        kafka.start = match order.from_ms {
            Some(from) => StartPosition::Timestamp(from - source.late.millis() as i64),
            None => StartPosition::Earliest,
        };
    }
    source
}

/// Sets every named value of `newer` in `known`.
fn overlay<T: Copy>(known: &mut Vec<(String, T)>, newer: Vec<(String, T)>) {
    for (name, value) in newer {
        match known.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => known.push((name, value)),
        }
    }
}
