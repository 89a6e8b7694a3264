//! One worker's loop: advance epochs, admit queries, step the dataflows,
//! hand answers back, and let the rollup compact.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::trace::TraceReader;
use statflow_dataflow::ingest::{
    DeadLetters, EpochClock, IngestSpec, PositionLog, RecordReader, Resume, SourceStats,
};
use statflow_dataflow::query_cache::QueryCache;
use statflow_dataflow::render::{render_ingest, retraction};
use statflow_dataflow::scan::{
    query_dataflow, Finished, Outcome, QueryMsg, Request, SourceReport, Traces, WorkerReport,
};
use timely::progress::frontier::AntichainRef;
use timely::worker::Worker;

use crate::checkpoint::{metric_fingerprints, Restored};
use crate::telemetry::TelemetryReader;
use statflow_dsl::SourceKind;

use super::agreement::{agree, Setup};
use super::backfill::Backfills;
use super::checkpointing::{Checkpointer, Tracked};
use super::retention::Retention;
use super::{
    CompletionHistory, EngineConfig, QueryFailure, QueryRequest, ReaderFactory, ReaderSeat, Shared,
};

/// How many times a query is re-read at a newer epoch before giving up.
const MAX_RETRIES: usize = 20;

/// Keys of the shard measured per loop for the rows and bytes gauges: about
/// a millisecond's work, so the walk never delays queries by much.
const FOOTPRINT_KEYS: usize = 2_000;

struct Pending {
    request: Request,
    reply: tokio::sync::oneshot::Sender<Result<Outcome, QueryFailure>>,
    retries: usize,
    /// The epoch the client asked for; such a query is never moved to another.
    pinned: Option<u64>,
}

/// Runs this worker until shutdown.
pub(super) fn run(
    worker: &mut Worker,
    shared: &Arc<Shared>,
    config: &EngineConfig,
    readers: &ReaderFactory,
    queries: crossbeam_channel::Receiver<QueryRequest>,
    dead_letters: &dyn Fn(&str, usize) -> Box<dyn DeadLetters>,
    restored: Option<&Restored>,
) -> anyhow::Result<()> {
    let index = worker.index();
    let peers = worker.peers();
    let local = index - shared.process * shared.threads;
    let me = &shared.workers[local];
    let plan = Arc::clone(&shared.plan);
    let setup = Setup::of(&plan, shared.process, shared.threads, config.hourly_rollups);
    agree(worker, setup, &shared.shutdown)?;
    me.agreed.store(true, Ordering::SeqCst);

    let clock = EpochClock::new();
    let mut specs = Vec::new();
    let mut watched = Vec::new();
    let mut tracked = Vec::new();
    let empty = Resume::new();
    for (i, source) in plan.sources.iter().enumerate() {
        if !plan
            .metrics
            .iter()
            .any(|m| m.sources.contains(&source.name))
        {
            me.sources[i].finished.store(true, Ordering::Relaxed);
            continue;
        }
        let log = config.checkpoints.as_ref().map(|_| {
            let log = Rc::new(RefCell::new(PositionLog::default()));
            tracked.push(Tracked {
                name: source.name.clone(),
                log: Rc::clone(&log),
                stats: Arc::clone(&me.sources[i]),
            });
            log
        });
        let resume = restored.map_or(&empty, |r| &r.resume[i]);
        let mut reader = match (&source.kind, &shared.telemetry) {
            (SourceKind::Telemetry, Some(hub)) => {
                Box::new(TelemetryReader::new(Arc::clone(hub), local)) as _
            }
            _ => {
                let seat = ReaderSeat {
                    worker: index,
                    workers: peers,
                    resume,
                    slices: Some(&shared.slice_pools[i]),
                };
                readers(source, &seat)?
            }
        };
        if let Some(last) = &shared.final_checkpoint {
            reader = last.reader(reader);
        }
        if let Some(restored) = restored {
            continue_counting(&me.sources[i], restored, &plan, i, index, peers, &*reader);
        }
        specs.push(IngestSpec {
            plan: Arc::clone(&plan),
            source: i,
            reader,
            dead_letters: dead_letters(&source.name, index),
            stats: Arc::clone(&me.sources[i]),
            batch: config.batch,
            flush_records: config.epoch_records,
            log,
            newest: restored.map(|r| r.newest[i].clone()).unwrap_or_default(),
        });
        watched.push(i);
    }
    let rows = restored
        .map(|r| r.take_rows(index, peers))
        .unwrap_or_default();
    let rendered = render_ingest(worker, &plan, &clock, specs, rows, config.hourly_rollups);
    let trace = Rc::new(RefCell::new(rendered.trace));
    let hourly = rendered.hourly.map(|t| Rc::new(RefCell::new(t)));
    let probe = rendered.probe;
    let mut updates = rendered.updates;
    let backfills = Rc::new(RefCell::new(Backfills::new(
        &plan,
        restored.map_or(&[][..], |r| &r.backfills),
        index,
        peers,
        config.batch,
        config.epoch_records,
    )));
    let orders = Rc::default();
    let mut retention = Retention::new(&plan, config.retention_period);
    // The id of this worker's own status request for retention, while out.
    let mut retention_request: Option<u64> = None;
    // The epoch of the newest retractions sent.
    let mut retired_at: Option<u64> = None;
    // When this worker next measures its metrics' rows and bytes: soon
    // after the start, then every FOOTPRINT_EVERY.
    let mut measure_at = Instant::now() + Duration::from_secs(1);
    let mut footprint = statflow_dataflow::snapshot::FootprintWalk::default();
    // Telemetry: when this worker last reported, and its counters then.
    let mut last_report = Instant::now();
    let mut reported: Vec<(u64, u64, u64)> = vec![(0, 0, 0); plan.sources.len()];

    // What this worker tells the others about itself, with every answer.
    let report: Rc<dyn Fn() -> WorkerReport> = {
        let shared = Arc::clone(shared);
        let backfills = Rc::clone(&backfills);
        Rc::new(move || {
            let me = &shared.workers[local];
            let finished_at = me.finished_at.load(Ordering::Relaxed);
            WorkerReport {
                worker: index,
                process: shared.process,
                epoch: me.epoch.load(Ordering::Relaxed),
                finished_at: (finished_at != u64::MAX).then_some(finished_at),
                sources: me
                    .sources
                    .iter()
                    .map(|s| SourceReport {
                        records: s.records.load(Ordering::Relaxed),
                        errors: s.errors.load(Ordering::Relaxed),
                        partitions: s.partitions(),
                        finished: s.finished.load(Ordering::Relaxed),
                        max_event_ms: s.max_event(),
                        late: s.late.load(Ordering::Relaxed),
                        late_by_metric: s.late_by_metric(),
                        broker: s.broker(),
                    })
                    .collect(),
                backfills: backfills
                    .borrow()
                    .reports(me.complete.load(Ordering::Relaxed)),
            }
        })
    };
    let finished: Finished = Rc::default();
    let touches = rendered.touches;
    let mut query_input = query_dataflow(
        worker,
        Arc::clone(&plan),
        Traces {
            rollup: Rc::clone(&trace),
            hourly: hourly.clone(),
            touches: Rc::clone(&touches),
            cache: Rc::new(RefCell::new(QueryCache::new(Arc::clone(&me.query_cache)))),
        },
        report,
        Rc::clone(&finished),
        Rc::clone(&orders),
    );

    let mut next_id = 0u64;
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let mut waiting: Vec<QueryRequest> = Vec::new();
    let mut history = CompletionHistory::default();
    let mut compaction = 0u64;
    let epoch_ms = config.epoch_interval.as_millis().max(1) as u64;
    let wall_epoch = || statflow_dataflow::ingest::wall_ms().max(0) as u64 / epoch_ms;
    let mut checkpointer = match config.checkpoints.clone() {
        Some(c) => Some(Checkpointer::new(
            c,
            config.epoch_interval,
            wall_epoch(),
            index,
            peers,
            metric_fingerprints(&plan),
            tracked,
            config.dead_letter_dir.clone(),
            shared,
        )?),
        None => None,
    };

    loop {
        let now = Instant::now();
        // Once this worker's sources have finished, nothing more comes into
        // the epoch they finished in: it closes at once, not at the next
        // tick, so their last records are answered an interval sooner.
        let finished_at = me.finished_at.load(Ordering::Relaxed);
        let after_finish = if finished_at == u64::MAX {
            0
        } else {
            finished_at + 1
        };
        let epoch = wall_epoch().max(after_finish);
        if epoch > clock.current() {
            if let Some(c) = checkpointer.as_mut() {
                c.closing(epoch - 1);
            }
        }
        clock.advance_to(epoch);
        // SeqCst: a clean stop reads this after stopping the readers (see
        // `FinalCheckpoint::ask`).
        me.epoch.store(clock.current(), Ordering::SeqCst);
        {
            let mut backfills = backfills.borrow_mut();
            backfills.close_epoch(&mut updates, clock.current());
            if *updates.time() < clock.current() {
                updates.advance_to(clock.current());
            }
            for order in orders.borrow_mut().drain(..) {
                backfills.order(order, *updates.time(), readers, dead_letters)?;
            }
            backfills.read(&mut updates, readers, dead_letters)?;
        }

        // Every epoch before `complete` is in every worker's shard.
        let complete = probe
            .with_frontier(|f| f.first().copied())
            .unwrap_or(u64::MAX);
        me.complete.store(complete, Ordering::Relaxed);
        history.observe(now, complete);
        if me.finished_at.load(Ordering::Relaxed) == u64::MAX
            && watched
                .iter()
                .all(|i| me.sources[*i].finished.load(Ordering::Relaxed))
        {
            // Records read so far sit in the open epoch at the latest.
            me.finished_at.store(clock.current(), Ordering::Relaxed);
            let records: u64 = watched
                .iter()
                .map(|i| me.sources[*i].records.load(Ordering::Relaxed))
                .sum();
            tracing::info!(
                worker = index,
                records,
                "this worker's sources have finished"
            );
        }

        waiting.extend(queries.try_iter());
        if complete > 0 && !waiting.is_empty() {
            // A query pinned to an epoch waits until that epoch is complete.
            let (ready, later): (Vec<_>, Vec<_>) = waiting
                .drain(..)
                .partition(|r| r.epoch.is_none_or(|e| e < complete));
            waiting = later;
            for request in ready {
                next_id += 1;
                query_input.send(QueryMsg {
                    id: next_id,
                    home: index,
                    as_of: request.epoch.unwrap_or(complete - 1),
                    request: request.request.clone(),
                });
                pending.insert(
                    next_id,
                    Pending {
                        request: request.request,
                        reply: request.reply,
                        retries: 0,
                        pinned: request.epoch,
                    },
                );
            }
            query_input.flush();
        }

        if let Some(hub) = &shared.telemetry {
            if last_report.elapsed() >= crate::telemetry::EVERY {
                last_report = now;
                report_telemetry(hub, local, &plan, me, &mut reported);
                let delay = clock
                    .current()
                    .saturating_sub(complete.min(clock.current()));
                hub.epoch(local, delay * epoch_ms);
            }
        }

        if now >= measure_at {
            // A bounded part of the shard per loop, until the walk is through.
            let measured = footprint.step(
                &mut trace.borrow_mut(),
                plan.metrics.len(),
                FOOTPRINT_KEYS,
                |key, row| crate::checkpoint::encoded_size(&(key, row)),
            );
            if let Some(measured) = measured {
                measure_at = now + super::FOOTPRINT_EVERY;
                if let Ok(mut slot) = me.footprint.lock() {
                    *slot = measured;
                }
            }
        }

        if complete > 0 && retention_request.is_none() && retention.due() {
            next_id += 1;
            retention_request = Some(next_id);
            query_input.send(QueryMsg {
                id: next_id,
                home: index,
                as_of: complete - 1,
                request: Request::Status,
            });
            query_input.flush();
        }

        if let Some(c) = checkpointer.as_mut() {
            c.step(
                complete,
                &mut trace.borrow_mut(),
                &mut |epoch| backfills.borrow_mut().states_at(epoch),
                shared,
            );
        }
        // A stopping worker runs on until its shard of the final
        // checkpoint, if one is asked for, is written.
        if shared.shutdown.load(Ordering::Relaxed)
            && checkpointer.as_mut().is_none_or(|c| {
                c.finish(
                    complete,
                    &mut trace.borrow_mut(),
                    &mut |epoch| backfills.borrow_mut().states_at(epoch),
                    shared,
                )
            })
        {
            break;
        }
        let hold = checkpointer.as_ref().map_or(u64::MAX, |c| c.hold(shared));
        if let Some(frontier) = history
            .frontier(now, config.compaction_lag)
            .map(|f| f.min(hold))
        {
            if frontier > compaction {
                compaction = frontier;
                for trace in std::iter::once(&trace).chain(&hourly) {
                    let mut trace = trace.borrow_mut();
                    trace.set_logical_compaction(AntichainRef::new(&[compaction]));
                }
                retention.compacted(compaction);
            }
        }
        // Batches join the merges as soon as they are sealed: every read
        // takes all of a trace's batches (through its upper), so none needs
        // to stay apart. Held back until the compaction lag had passed, a
        // lag's worth of batches stayed unmerged (more memory, and more
        // batches for a query to step through), then joined at once, in
        // one loop of 100 to 400 ms that every query asked meanwhile
        // waited for.
        for trace in std::iter::once(&trace).chain(&hourly) {
            let mut trace = trace.borrow_mut();
            let mut upper = timely::progress::Antichain::new();
            trace.read_upper(&mut upper);
            if !upper.is_empty() {
                trace.set_physical_compaction(upper.borrow());
            }
        }
        retention.settle(&mut trace.borrow_mut());

        let park = if backfills.borrow().busy() {
            Duration::ZERO
        } else {
            Duration::from_millis(1)
        };
        worker.step_or_park(Some(park));

        let done: Vec<(u64, Outcome)> = finished.borrow_mut().drain(..).collect();
        for (id, outcome) in done {
            if retention_request == Some(id) {
                retention_request = None;
                if let Outcome::Status { reports, .. } = &outcome {
                    retention.observe(&plan, reports);
                    retention.forget_touches(&mut touches.borrow_mut());
                    let as_of = probe
                        .with_frontier(|f| f.first().copied())
                        .unwrap_or(0)
                        .saturating_sub(1);
                    // Until the last retractions are complete, a read would
                    // see their rows again and retract them twice.
                    let evicted = if retired_at.is_none_or(|e| e <= as_of) {
                        retention.evictions(
                            &plan,
                            &mut trace.borrow_mut(),
                            hourly.as_ref().map(|h| h.borrow_mut()).as_deref_mut(),
                            as_of,
                        )
                    } else {
                        Vec::new()
                    };
                    if !evicted.is_empty() {
                        let epoch = *updates.time();
                        shared
                            .evicted_rows
                            .fetch_add(evicted.len() as u64, Ordering::Relaxed);
                        for (key, count) in evicted {
                            updates.send((key, epoch, retraction(count)));
                        }
                        updates.flush();
                        retired_at = Some(epoch);
                        retention.retracted(epoch);
                    }
                }
                continue;
            }
            let Some(mut p) = pending.remove(&id) else {
                continue;
            };
            match outcome {
                Outcome::Answer(_) | Outcome::Status { .. } => {
                    let _ = p.reply.send(Ok(outcome));
                }
                // A pinned epoch that some shard compacted away: reading
                // another epoch would break the caller's consistent cut.
                Outcome::Retry if p.pinned.is_some() => {
                    let epoch = p.pinned.unwrap_or_default();
                    let _ = p.reply.send(Err(QueryFailure::EpochNotReadable(epoch)));
                }
                Outcome::Retry if p.retries < MAX_RETRIES => {
                    p.retries += 1;
                    next_id += 1;
                    let as_of = probe
                        .with_frontier(|f| f.first().copied())
                        .unwrap_or(u64::MAX)
                        .saturating_sub(1);
                    query_input.send(QueryMsg {
                        id: next_id,
                        home: index,
                        as_of,
                        request: p.request.clone(),
                    });
                    query_input.flush();
                    pending.insert(next_id, p);
                }
                Outcome::Retry => {
                    let _ = p
                        .reply
                        .send(Err(QueryFailure::NoConsistentEpoch(p.retries)));
                }
            }
        }
    }
    for (_, p) in pending.drain() {
        let _ = p.reply.send(Err(QueryFailure::ShuttingDown));
    }
    for request in waiting.drain(..).chain(queries.try_iter()) {
        let _ = request.reply.send(Err(QueryFailure::ShuttingDown));
    }
    // The sources never finish on their own (their epochs keep advancing), so
    // the dataflows are dropped rather than drained, by the engine's worker
    // closure once this returns, whatever it returns.
    drop(query_input);
    drop(updates);
    Ok(())
}

/// Sets the counters of source `source` (plan index) on worker `worker` of
/// `workers` to where `restored` left them, so that they go on from the
/// checkpoint rather than from zero (see `Restored::counts_for`). The
/// newest event time is the newest of the partitions `reader` owns.
fn continue_counting(
    stats: &SourceStats,
    restored: &Restored,
    plan: &statflow_dsl::Plan,
    source: usize,
    worker: usize,
    workers: usize,
    reader: &dyn RecordReader,
) {
    let name = &plan.sources[source].name;
    let counts = restored.counts_for(worker, workers, name);
    stats.records.store(counts.records, Ordering::Relaxed);
    stats.errors.store(counts.errors, Ordering::Relaxed);
    stats.late.store(counts.late, Ordering::Relaxed);
    if let Ok(mut late) = stats.late_by_metric.lock() {
        *late = plan
            .metrics
            .iter()
            .map(|m| {
                let found = counts.late_by_metric.iter().find(|(n, _)| *n == m.name);
                found.map_or(0, |(_, n)| *n)
            })
            .collect();
    }
    let newest = restored.newest[source]
        .iter()
        .filter(|(partition, _)| reader.owns(partition))
        .map(|(_, ms)| *ms)
        .max();
    if let Some(ms) = newest {
        stats.max_event_ms.fetch_max(ms, Ordering::Relaxed);
    }
}

/// Pushes one `ingest` event per source this worker reads (telemetry itself
/// aside): what it read since the last report, and its partitions' lag.
fn report_telemetry(
    hub: &crate::telemetry::Hub,
    local: usize,
    plan: &statflow_dsl::Plan,
    me: &super::WorkerShared,
    reported: &mut [(u64, u64, u64)],
) {
    for (i, source) in plan.sources.iter().enumerate() {
        if matches!(source.kind, SourceKind::Telemetry) {
            continue;
        }
        let stats = &me.sources[i];
        let now = (
            stats.records.load(Ordering::Relaxed),
            stats.errors.load(Ordering::Relaxed),
            stats.late.load(Ordering::Relaxed),
        );
        let before = std::mem::replace(&mut reported[i], now);
        let partitions = stats.partitions();
        if partitions.is_empty() {
            continue;
        }
        let lag = partitions
            .iter()
            .filter_map(|p| p.end.map(|e| e.saturating_sub(p.position)))
            .sum();
        hub.ingest(
            local,
            &source.name,
            now.0 - before.0,
            now.1 - before.1,
            now.2 - before.2,
            lag,
        );
    }
}
