//! Renders a plan's ingest side on one worker: every source's ingest
//! operator, exchanged by rollup key into one arrangement.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::AsCollection;
use differential_dataflow::VecCollection;
use statflow_dsl::Plan;
use timely::dataflow::operators::vec::{Map, Partition};
use timely::dataflow::operators::{Inspect, Probe, ToStream};
use timely::dataflow::{InputHandleVec, ProbeHandle};
use timely::worker::Worker;

use crate::aggregate::Aggregates;
use crate::hourly;
use crate::ingest::{ingest, EpochClock, IngestSpec};
use crate::query_cache::Touches;
use crate::rollup::RollupKey;
use crate::scan::{RollupBatcher, RollupTrace};

/// The handles the worker loop keeps after rendering.
pub struct Rendered {
    /// The rollup arrangement's trace, read by queries.
    pub trace: RollupTrace,
    /// The hourly rollup's trace (see [`crate::hourly`]), read by
    /// queries; `None` when the engine keeps no hourly rows.
    pub hourly: Option<RollupTrace>,
    /// Progress of the arrangement: an epoch is complete everywhere once the
    /// probe's frontier has passed it.
    pub probe: ProbeHandle<u64>,
    /// Where the worker loop's own updates enter: retractions of evicted
    /// rows (see [`retraction`] and [`crate::hourly::retraction_key`]) and
    /// backfilled rows. The worker loop advances it with the epoch clock.
    pub updates: InputHandleVec<u64, (RollupKey, u64, Aggregates)>,
    /// Which hours of which metrics the arrangements' batches have
    /// touched, for the query cache (see [`crate::query_cache`]).
    pub touches: Rc<RefCell<Touches>>,
}

/// The partitions of the rollup's input: the rollup and the hourly rollup.
const ROLLUP: u64 = 0;
const HOURLY: u64 = 1;

/// The update that, merged with a row holding `count` events, leaves
/// nothing: differential drops an update whose event count is zero, so once
/// compaction has merged a row with its retraction, the row is gone.
pub fn retraction(count: i64) -> Aggregates {
    Aggregates::of_count(-count)
}

/// Builds the ingest dataflow on this worker, with one ingest operator per
/// spec (a worker's share of each source), and `restored` rows (from a
/// checkpoint) entering at epoch 0. Restored rows go through the same
/// exchange as new ones, so they land on whichever worker owns their key now,
/// however many workers wrote the checkpoint. With `hourly_rollups`, the
/// hourly rollup is kept beside the rollup (see [`crate::hourly`]).
pub fn render_ingest(
    worker: &mut Worker,
    plan: &Arc<Plan>,
    clock: &EpochClock,
    specs: Vec<IngestSpec>,
    restored: Vec<(RollupKey, Aggregates)>,
    hourly_rollups: bool,
) -> Rendered {
    let mut updates = InputHandleVec::new();
    let touches = Rc::new(RefCell::new(Touches::default()));
    // Every batch an arrangement accepts is noted before queries can read it.
    let noting = |touches: &Rc<RefCell<Touches>>| {
        let touches = Rc::clone(touches);
        move |span: &_| touches.borrow_mut().note(span)
    };
    worker.dataflow_named("Ingest", |scope| {
        let mut parts: Vec<VecCollection<'_, u64, RollupKey, Aggregates>> = Vec::new();
        parts.push(updates.to_stream(scope).as_collection());
        parts.push(
            restored
                .into_iter()
                .map(|(key, row)| (key, 0u64, row))
                .to_stream(scope)
                .as_collection(),
        );
        for spec in specs {
            parts.push(ingest(scope, clock, spec));
        }
        let all = differential_dataflow::collection::concatenate(scope, parts);
        // Session metrics' updates are cut into sessions on their way in.
        let all = crate::session::sessionize(plan, all);
        let probe = ProbeHandle::new();
        if !hourly_rollups {
            let arranged = arrange(all, "Rollup");
            arranged.stream.inspect(noting(&touches)).probe_with(&probe);
            return Rendered {
                trace: arranged.trace,
                hourly: None,
                probe,
                updates,
                touches,
            };
        }
        // Each update to the rollup, the hourly rollup, or both.
        let keeping = hourly::keeping(plan);
        let mut tiers = all
            .inner
            .flat_map(move |(key, time, diff)| {
                let (rollup, hourly) = hourly::split(&keeping, &key, &diff);
                let hourly = hourly.map(|h| (HOURLY, (h, time, diff.clone())));
                let rollup = rollup.then_some((ROLLUP, (key, time, diff)));
                rollup.into_iter().chain(hourly)
            })
            .partition(2, |routed| routed);
        let hours = tiers.pop().map(|s| s.as_collection());
        let rows = tiers.pop().map(|s| s.as_collection());
        let (Some(rows), Some(hours)) = (rows, hours) else {
            unreachable!("partition makes as many streams as asked")
        };
        let arranged = arrange(rows, "Rollup");
        let hours = arrange(hours, "HourlyRollup");
        arranged.stream.inspect(noting(&touches)).probe_with(&probe);
        hours.stream.inspect(noting(&touches)).probe_with(&probe);
        Rendered {
            trace: arranged.trace,
            hourly: Some(hours.trace),
            probe,
            updates,
            touches,
        }
    })
}

/// Arranges rollup rows by key, in chunked columns (see [`crate::chunked`]).
pub fn arrange<'s>(
    rows: VecCollection<'s, u64, RollupKey, Aggregates>,
    name: &str,
) -> Arranged<'s, RollupTrace> {
    rows.map(|key| (key, ()))
        .arrange_named::<RollupBatcher, _>(name, RollupBatcher::new)
}
