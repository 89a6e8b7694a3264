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

use std::time::{Duration, Instant};

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
}

impl Retention {
    pub(super) fn new(plan: &Plan, period: Duration) -> Self {
        Retention {
            period,
            last: Instant::now(),
            cuts: vec![i64::MIN; plan.metrics.len()],
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

    /// The rows of this worker's shard to retract, each with its event
    /// count, read at `as_of`: every metric's rows and late rows before its cut.
    pub(super) fn evictions(
        &self,
        plan: &Plan,
        trace: &mut RollupTrace,
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
        }
        out
    }
}
