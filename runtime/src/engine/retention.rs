//! Retention: rows of buckets older than a metric's retention leave the
//! rollup, so memory stays flat however long statflow runs.
//!
//! Every `EngineConfig::retention_period`, each worker asks every worker for its report (the same
//! request `/v1/status` makes), works out each metric's watermark from it,
//! and retracts the rows of its own shard whose panes lie wholly before
//! `watermark − retain − margin`. A retraction carries minus the row's event
//! count; differential drops a row whose updates sum to zero events once
//! compaction has merged them. The margin (a tenth of the retention) covers
//! workers that see the watermark a little apart; answers say which part of
//! their window is past retention (see `AsOf::retained_from_ms`).
//!
//! A retracted row is gone only once the batch holding it has been merged
//! with the batch holding its retraction, after compaction has passed both
//! (see [`merge_retracted`]).

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use differential_dataflow::trace::{ExertionLogic, TraceReader};

use statflow_dataflow::hourly;
use statflow_dataflow::query_cache::Touches;
use statflow_dataflow::rollup::RollupKey;
use statflow_dataflow::scan::{source_marks, RollupTrace, WorkerReport};
use statflow_dataflow::snapshot::rows_before;
use statflow_dsl::{Plan, Window};

/// One worker's eviction state.
pub(super) struct Retention {
    period: Duration,
    last: Instant,
    /// Per metric (plan index): panes starting before this are evicted.
    /// Only moves forward.
    cuts: Vec<i64>,
    /// The epochs of retractions sent that compaction has not passed yet.
    /// Once it passes one, the trace is asked to merge them away; the rest
    /// wait. (Waiting for the newest instead starved: with retractions sent
    /// more often than the compaction lag, compaction never passed the
    /// newest, and retracted rows stayed until differential's own schedule
    /// merged their batches.)
    unmerged: Vec<u64>,
    /// This worker asked its trace to merge whole, and it is not one batch yet.
    merging: bool,
}

impl Retention {
    pub(super) fn new(plan: &Plan, period: Duration) -> Self {
        Retention {
            period,
            last: Instant::now(),
            cuts: vec![i64::MIN; plan.metrics.len()],
            unmerged: Vec::new(),
            merging: false,
        }
    }

    /// Notes that retractions were sent at `epoch`.
    pub(super) fn retracted(&mut self, epoch: u64) {
        self.unmerged.push(epoch);
    }

    /// Notes that the rollup's compaction frontier is now `frontier`: once
    /// it has passed any retractions, the trace is asked to merge whole,
    /// which drops the rows they retract (see [`merge_retracted`]).
    pub(super) fn compacted(&mut self, frontier: u64) {
        let waiting = self.unmerged.len();
        self.unmerged.retain(|epoch| *epoch >= frontier);
        if self.unmerged.len() < waiting {
            self.merging = true;
            merge_whole();
        }
    }

    /// Ends a request to merge whole once the rollup is one batch.
    pub(super) fn settle(&mut self, trace: &mut RollupTrace) {
        if !self.merging {
            return;
        }
        let mut batches = 0;
        trace.map_spans(|span| batches += usize::from(span.inner.is_some()));
        if batches <= 1 {
            self.merging = false;
            end_merge_whole();
        }
    }

    /// True once per period: time to ask for the reports.
    pub(super) fn due(&mut self) -> bool {
        if self.last.elapsed() < self.period {
            return false;
        }
        self.last = Instant::now();
        true
    }

    /// Moves each metric's cut forward from every worker's report.
    pub(super) fn observe(&mut self, plan: &Plan, reports: &[WorkerReport]) {
        let reports: Vec<&WorkerReport> = reports.iter().collect();
        for (m, metric) in plan.metrics.iter().enumerate() {
            let watermark = source_marks(plan, m, &reports)
                .iter()
                .filter_map(|s| s.watermark_ms)
                .min();
            let Some(watermark) = watermark else {
                continue;
            };
            let retain = metric.retain.millis() as i64;
            let span = match &metric.window {
                Window::Hopping { size, .. } => size.millis() as i64,
                other => other.step().millis() as i64,
            };
            let cut = watermark
                .saturating_sub(retain)
                .saturating_sub(retain / 10)
                .saturating_sub(span)
                .saturating_add(1);
            self.cuts[m] = self.cuts[m].max(cut);
        }
    }

    /// Forgets, in `touches`, the hours each metric's cut has passed, for
    /// its rows and its late rows (see [`Touches::forget_before`]).
    pub(super) fn forget_touches(&self, touches: &mut Touches) {
        let metrics = self.cuts.len() as u32;
        for (m, cut) in self.cuts.iter().enumerate() {
            if *cut == i64::MIN {
                continue;
            }
            for stored in [m as u32, m as u32 + metrics] {
                touches.forget_before(stored, *cut);
            }
        }
    }

    /// The rows of this worker's shard to retract, each with its event
    /// count, read at `as_of`: every metric's rows and late rows before its
    /// cut, and its hourly rows whose whole hour is before it (under
    /// [`hourly::retraction_key`], so that they reach the hourly rollup only).
    pub(super) fn evictions(
        &self,
        plan: &Plan,
        trace: &mut RollupTrace,
        mut hourly_trace: Option<&mut RollupTrace>,
        as_of: u64,
    ) -> Vec<(RollupKey, i64)> {
        let metrics = plan.metrics.len() as u32;
        let mut out = Vec::new();
        for (m, cut) in self.cuts.iter().enumerate() {
            if *cut == i64::MIN {
                continue;
            }
            for stored in [m as u32, m as u32 + metrics] {
                if let Some(rows) = rows_before(trace, as_of, stored, *cut) {
                    out.extend(rows);
                }
            }
            let whole = hourly::floor_hour(*cut);
            let hourly_rows = hourly_trace
                .as_deref_mut()
                .and_then(|t| rows_before(t, as_of, m as u32, whole));
            if let Some(rows) = hourly_rows {
                out.extend(
                    rows.into_iter()
                        .map(|(key, count)| (hourly::retraction_key(key), count)),
                );
            }
        }
        out
    }
}

/// The key under which differential looks for the exertion logic of every
/// arrangement a worker builds.
pub(super) const EXERT_LOGIC_KEY: &str = "differential/default_exert_logic";

thread_local! {
    /// Set by a worker's loop once compaction has passed its newest
    /// retractions; cleared by [`Retention::settle`] once the worker's
    /// rollup is one batch. Differential asks the exertion logic on the thread of
    /// the worker whose trace it is, and the logic is shared by every worker
    /// of the process, so a worker's request lives on its own thread.
    static MERGE_WHOLE: Cell<bool> = const { Cell::new(false) };
}

/// Asks this worker's rollup trace to merge into one batch soon, which
/// drops every row whose updates sum to zero events: call it once
/// compaction has passed the epoch of the newest retractions.
pub(super) fn merge_whole() {
    MERGE_WHOLE.with(|m| m.set(true));
}

/// Ends this worker's request to merge whole.
fn end_merge_whole() {
    MERGE_WHOLE.with(|m| m.set(false));
}

/// How the rollup's trace merges its batches beyond what new updates pay
/// for: into one batch, while [`merge_whole`] asks for it.
///
/// Differential keeps a trace as batches of roughly doubling sizes and
/// merges two only when a new one of the same size forms, so that each
/// update is merged a logarithmic number of times. With retention the
/// oldest rows, the ones retracted, sit in the largest batch and their
/// retractions in new small ones; a row and its retraction cancel only in a
/// merge that starts after compaction has passed the retraction, and the
/// largest batch is merged only once about as many updates again have
/// arrived. Over a simulated week with `retain 1d` (benches/durability.rs,
/// part 3) the trace held four to five times its live rows.
///
/// Merging everything once compaction has passed the newest retractions
/// drops the retracted rows within about one retention period (5 s by
/// default). Without retractions the usual schedule is kept: an earlier
/// rule that also merged whole whenever the smaller batches reached half
/// the largest cost the end-to-end benchmark about a seventh of its CPU
/// time and raised its peak memory, for no gain without retention.
///
/// The logic is shared by every arrangement of a worker; each asked while
/// the request stands merges whole. The worker loop ends the request once
/// the rollup is one batch (see [`Retention::settle`]).
pub(super) fn merge_retracted() -> ExertionLogic {
    Arc::new(|layers: &[(usize, usize, usize)]| {
        // (level, batches at that level, updates), largest level first.
        let mut non_empty = layers.iter().filter(|(_, _, len)| *len > 0);
        let &(top, count, _) = non_empty.next()?;
        let more = count >= 2 || non_empty.next().is_some();
        // Effort at the largest level rolls every smaller batch into the
        // largest one, and gives a merge in progress enough fuel to end.
        (more && MERGE_WHOLE.with(Cell::get)).then_some(1usize << top)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_past_the_oldest_retractions_asks_for_a_merge() {
        let plan = statflow_dsl::compile(
            "source s = generator() {}\nmetric m from s { window tumbling 1m\n measures { n = count() } }",
            None,
        )
        .plan
        .expect("the topology compiles");
        let mut retention = Retention::new(&plan, Duration::from_secs(5));
        let asked = || MERGE_WHOLE.with(Cell::get);
        end_merge_whole();
        retention.retracted(5);
        retention.retracted(8);
        retention.compacted(5);
        assert!(!asked(), "compaction has passed no retraction");
        // Newer retractions are always on their way; the older ones are
        // merged away regardless.
        retention.compacted(6);
        assert!(asked());
        end_merge_whole();
        retention.retracted(11);
        retention.compacted(9);
        assert!(asked(), "the retractions at 8 are passed");
        end_merge_whole();
        retention.compacted(10);
        assert!(!asked(), "nothing passed since");
        retention.compacted(12);
        assert!(asked());
        end_merge_whole();
    }

    #[test]
    fn a_requested_merge_lasts_until_the_request_ends() {
        let logic = merge_retracted();
        let two = [(20, 1, 600_000), (14, 1, 10_000)];
        // Without a request: the usual schedule, however large the small batches.
        assert_eq!(logic(&two), None);
        assert_eq!(logic(&[(20, 1, 600_000), (19, 1, 590_000)]), None);
        merge_whole();
        // Asked again and again (differential asks before it merges) ...
        assert_eq!(logic(&two), Some(1 << 20));
        assert_eq!(logic(&two), Some(1 << 20));
        // ... by every arrangement of the worker; one batch needs no merge.
        assert_eq!(logic(&[(20, 1, 590_000)]), None);
        assert_eq!(logic(&[(20, 2, 900_000)]), Some(1 << 20));
        assert_eq!(logic(&[(5, 0, 0)]), None);
        assert_eq!(logic(&[]), None);
        assert_eq!(logic(&two), Some(1 << 20));
        end_merge_whole();
        assert_eq!(logic(&two), None);
        // Another worker's request is its own.
        merge_whole();
        let other = std::thread::spawn(move || merge_retracted()(&two));
        assert_eq!(other.join().unwrap(), None);
    }
}
