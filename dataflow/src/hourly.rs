//! The hourly rollup: a second arrangement beside the rollup that holds,
//! for every metric whose panes divide an hour, the same rows merged into
//! hours.
//!
//! A query over a long range at hour granularity or coarser (a day by
//! hour, a week by day, a total over the last 24 hours) would otherwise
//! merge every 1-minute row of the range: 60 times the rows it needs. Its
//! scan reads whole hours from here and only the ragged ends from the
//! rollup. Merging is associative and commutative and gives the same bits
//! in any order (see [`crate::aggregate`]), so an answer is the same
//! whichever rows it was read from.
//!
//! The hourly rows are derived, never stored: they are built from the
//! rollup's updates as they arrive (ingested, backfilled or restored from a
//! checkpoint), so a checkpoint holds only the rollup. Retention retracts
//! a rollup row on its own (with minus its count and no measures); such a
//! retraction does not reach the hourly rows, which would be left with a
//! count and measures that disagree. An hourly row is instead retracted
//! whole, by the worker that holds it, once its whole hour is past that
//! worker's retention cut ([`retraction_key`]). An hourly row is therefore
//! always whole or gone.

use statflow_dsl::{MetricPlan, Plan, Window};

use crate::aggregate::Aggregates;
use crate::rollup::RollupKey;

/// One hour, in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Set in a key's `metric` on an update meant for the hourly rollup only:
/// the retraction of a whole hourly row.
pub const HOURLY_ONLY: u32 = 1 << 31;

/// True when `metric` keeps hourly rows: tumbling windows shorter than an
/// hour that divide it. Hopping and session windows do not (a pane of
/// theirs feeds more than its own bucket, or is a session).
pub fn keeps_hourly(metric: &MetricPlan) -> bool {
    match &metric.window {
        Window::Tumbling { size } => {
            let step = size.millis() as i64;
            step > 0 && step < HOUR_MS && HOUR_MS % step == 0
        }
        _ => false,
    }
}

/// The start of the hour holding `ms`.
pub fn floor_hour(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The start of the first hour at or after `ms`.
pub fn ceil_hour(ms: i64) -> i64 {
    floor_hour(ms.saturating_add(HOUR_MS - 1))
}

/// For each metric of `plan`, by index, whether it keeps hourly rows:
/// worked out once, for [`split`].
pub fn keeping(plan: &Plan) -> Vec<bool> {
    plan.metrics.iter().map(keeps_hourly).collect()
}

/// The key of the update `(key, diff)` of the rollup's input in each
/// arrangement: `(rollup, hourly)`. `keeping` is [`keeping`] of the plan.
///
/// A row of a metric that keeps hourly rows goes to both, its bucket
/// floored to the hour in the second; a retraction of a rollup row
/// (`render::retraction`: minus the row's count) only to the rollup; a retraction
/// made by [`retraction_key`] only to the hourly rollup.
pub fn split(keeping: &[bool], key: &RollupKey, diff: &Aggregates) -> (bool, Option<RollupKey>) {
    if key.metric & HOURLY_ONLY != 0 {
        let mut hourly = key.clone();
        hourly.metric &= !HOURLY_ONLY;
        return (false, Some(hourly));
    }
    let keeps = keeping.get(key.metric as usize) == Some(&true);
    let hourly = (keeps && diff.count > 0).then(|| RollupKey {
        metric: key.metric,
        bucket: floor_hour(key.bucket),
        dims: key.dims.clone(),
    });
    (true, hourly)
}

/// The key under which a retraction of the hourly row `key` is sent into
/// the rollup's input, so that it reaches the hourly rollup only.
pub fn retraction_key(mut key: RollupKey) -> RollupKey {
    key.metric |= HOURLY_ONLY;
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn plan() -> Plan {
        let text = r#"
source s = file("e.jsonl") { time = ts as epoch_millis }
metric minutes from s {
  dimensions g
  window tumbling 1m
  measures { n = count() }
}
metric hours from s {
  dimensions g
  window tumbling 1h
  measures { n = count() }
}
metric sliding from s {
  dimensions g
  window hopping 10m every 1m
  measures { n = count() }
}
metric odd from s {
  dimensions g
  window tumbling 7m
  measures { n = count() }
}
"#;
        let compiled = statflow_dsl::compile(text, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        compiled.plan.expect("a plan")
    }

    fn key(metric: u32, bucket: i64) -> RollupKey {
        RollupKey {
            metric,
            bucket,
            dims: vec![Value::Str("a".into())].into(),
        }
    }

    #[test]
    fn only_panes_that_divide_an_hour_keep_hourly_rows() {
        let plan = plan();
        let keeps: Vec<bool> = plan.metrics.iter().map(keeps_hourly).collect();
        assert_eq!(keeps, [true, false, false, false]);
    }

    #[test]
    fn rows_go_to_both_and_retractions_to_one() {
        let plan = plan();
        // The metrics count only: their rows, like retractions, hold no state.
        let row = Aggregates {
            count: 2,
            measures: Default::default(),
        };
        let at = 5 * HOUR_MS + 17 * 60_000;
        assert_eq!(
            split(&keeping(&plan), &key(0, at), &row),
            (true, Some(key(0, 5 * HOUR_MS)))
        );
        // A rollup row's retraction stays in the rollup.
        let retraction = Aggregates {
            count: -2,
            measures: Default::default(),
        };
        assert_eq!(
            split(&keeping(&plan), &key(0, at), &retraction),
            (true, None)
        );
        // A metric without hourly rows, and a late row (index past the metrics).
        assert_eq!(split(&keeping(&plan), &key(2, at), &row), (true, None));
        assert_eq!(split(&keeping(&plan), &key(4, at), &row), (true, None));
        // An hourly row's retraction reaches the hourly rollup only.
        let hourly = key(0, 5 * HOUR_MS);
        assert_eq!(
            split(
                &keeping(&plan),
                &retraction_key(hourly.clone()),
                &retraction
            ),
            (false, Some(hourly))
        );
    }

    #[test]
    fn hours_round_both_ways() {
        assert_eq!(floor_hour(HOUR_MS + 1), HOUR_MS);
        assert_eq!(floor_hour(-1), -HOUR_MS);
        assert_eq!(ceil_hour(HOUR_MS + 1), 2 * HOUR_MS);
        assert_eq!(ceil_hour(HOUR_MS), HOUR_MS);
        assert_eq!(ceil_hour(i64::MAX), floor_hour(i64::MAX));
    }
}
