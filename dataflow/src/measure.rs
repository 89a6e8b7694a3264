//! The measures a query can ask of a metric: the ones its topology
//! declares, then, for a session metric, the session measures statflow
//! adds (`sessions`, `avg_duration`, `p50_duration`, `p90_duration`,
//! `max_duration`).
//!
//! A query names measures by index ([`crate::query::Query::measures`]):
//! indices below the number of declared measures are the declared ones, in
//! plan order; the session measures follow, in the order of
//! [`SessionMeasure::ALL`]. A declared measure with the name of a session
//! measure hides that session measure, so every name means one measure.
//!
//! Session measures are worked out when a query reads a session's row,
//! from how many sessions there are and how long each lasted (its first to
//! its last event), so they cost no state.

use statflow_dsl::{Measure, MetricPlan};

use crate::aggregate::{Fixed, MeasureState, QuantileState};
use crate::query::Cell;

/// A measure statflow adds to every session metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMeasure {
    /// How many sessions.
    Sessions,
    /// The mean session duration, in seconds.
    AvgDuration,
    /// The median session duration, in seconds.
    P50Duration,
    /// The 90th percentile of session durations, in seconds.
    P90Duration,
    /// The longest session, in seconds.
    MaxDuration,
}

impl SessionMeasure {
    /// Every session measure, in index order.
    pub const ALL: [SessionMeasure; 5] = [
        SessionMeasure::Sessions,
        SessionMeasure::AvgDuration,
        SessionMeasure::P50Duration,
        SessionMeasure::P90Duration,
        SessionMeasure::MaxDuration,
    ];

    /// The name queries use.
    pub fn name(self) -> &'static str {
        match self {
            SessionMeasure::Sessions => "sessions",
            SessionMeasure::AvgDuration => "avg_duration",
            SessionMeasure::P50Duration => "p50_duration",
            SessionMeasure::P90Duration => "p90_duration",
            SessionMeasure::MaxDuration => "max_duration",
        }
    }

    /// What it computes, in a few words (for the catalog).
    pub fn text(self) -> &'static str {
        match self {
            SessionMeasure::Sessions => "number of sessions",
            SessionMeasure::AvgDuration => "mean session duration in seconds",
            SessionMeasure::P50Duration => "median session duration in seconds",
            SessionMeasure::P90Duration => "90th percentile of session durations in seconds",
            SessionMeasure::MaxDuration => "longest session duration in seconds",
        }
    }

    /// The quantile of durations it asks for, if it is one.
    fn q(self) -> Option<f64> {
        match self {
            SessionMeasure::P50Duration => Some(0.5),
            SessionMeasure::P90Duration => Some(0.9),
            _ => None,
        }
    }

    /// True when the measure is a quantile (exact up to
    /// [`crate::aggregate::EXACT_QUANTILE_VALUES`] sessions, then within
    /// the quantile sketch's relative error).
    pub fn is_quantile(self) -> bool {
        self.q().is_some()
    }

    /// The state of no session.
    pub fn empty(self) -> MeasureState {
        match self {
            SessionMeasure::Sessions => MeasureState::Sum(Fixed::default()),
            // Milliseconds, as integers: exact whatever the order of merging.
            SessionMeasure::AvgDuration => MeasureState::Avg(Fixed::default(), 0),
            SessionMeasure::P50Duration | SessionMeasure::P90Duration => {
                MeasureState::Quantile(QuantileState::Exact(Vec::new()))
            }
            SessionMeasure::MaxDuration => MeasureState::Max(f64::NEG_INFINITY),
        }
    }

    /// Adds one session that lasted `duration_ms` to `state`.
    pub fn add_session(self, state: &mut MeasureState, duration_ms: i64) {
        match (self, state) {
            (SessionMeasure::Sessions, MeasureState::Sum(n)) => *n += 1,
            (SessionMeasure::AvgDuration, MeasureState::Avg(total, n)) => {
                *total += i128::from(duration_ms);
                *n += 1;
            }
            (SessionMeasure::MaxDuration, MeasureState::Max(m)) => {
                *m = m.max(duration_ms as f64);
            }
            (_, state @ MeasureState::Quantile(_)) => state.add_number(duration_ms as f64 / 1000.0),
            _ => {}
        }
    }

    /// The measure's value: a count, or seconds; `Null` for the durations
    /// of no session.
    pub fn finish(self, state: &MeasureState) -> Cell {
        match (self, state) {
            (SessionMeasure::Sessions, MeasureState::Sum(n)) => Cell::Int(n.get() as i64),
            (SessionMeasure::AvgDuration, MeasureState::Avg(_, 0)) => Cell::Null,
            (SessionMeasure::AvgDuration, MeasureState::Avg(total, n)) => {
                Cell::Float(total.get() as f64 / *n as f64 / 1000.0)
            }
            (SessionMeasure::MaxDuration, MeasureState::Max(m)) if m.is_finite() => {
                Cell::Float(m / 1000.0)
            }
            (_, MeasureState::Quantile(values)) => self
                .q()
                .and_then(|q| values.quantile(q))
                .map(Cell::Float)
                .unwrap_or(Cell::Null),
            _ => Cell::Null,
        }
    }
}

/// One measure of a metric, as a query asks for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MeasureRef<'p> {
    /// A measure the topology declares.
    Declared(&'p Measure),
    /// A session measure.
    Session(SessionMeasure),
}

impl<'p> MeasureRef<'p> {
    /// The name queries use.
    pub fn name(&self) -> &'p str {
        match self {
            MeasureRef::Declared(m) => &m.name,
            MeasureRef::Session(s) => s.name(),
        }
    }

    /// The state of an empty group.
    pub fn empty(&self) -> MeasureState {
        match self {
            MeasureRef::Declared(m) => MeasureState::empty(&m.kind),
            MeasureRef::Session(s) => s.empty(),
        }
    }

    /// The value of a group holding `count` events and this state.
    pub fn finish(&self, state: &MeasureState, count: i64) -> Cell {
        match self {
            MeasureRef::Declared(m) => state.finish(&m.kind, count),
            MeasureRef::Session(s) => s.finish(state),
        }
    }
}

/// The session measures `metric` offers, in index order: none unless it
/// has a session window, and none a declared measure's name hides.
pub fn session_measures(metric: &MetricPlan) -> Vec<SessionMeasure> {
    if !metric.window.is_session() {
        return Vec::new();
    }
    SessionMeasure::ALL
        .into_iter()
        .filter(|s| metric.measure(s.name()).is_none())
        .collect()
}

/// Every measure a query can ask of `metric`, in index order.
pub fn measures(metric: &MetricPlan) -> Vec<MeasureRef<'_>> {
    metric
        .measures
        .iter()
        .map(MeasureRef::Declared)
        .chain(
            session_measures(metric)
                .into_iter()
                .map(MeasureRef::Session),
        )
        .collect()
}

/// The measure with index `index`, if there is one.
pub fn measure(metric: &MetricPlan, index: usize) -> Option<MeasureRef<'_>> {
    match metric.measures.get(index) {
        Some(m) => Some(MeasureRef::Declared(m)),
        None => session_measures(metric)
            .get(index - metric.measures.len())
            .copied()
            .map(MeasureRef::Session),
    }
}

/// The index of the measure called `name`.
pub fn index_of(metric: &MetricPlan, name: &str) -> Option<usize> {
    measures(metric).iter().position(|m| m.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(text: &str) -> MetricPlan {
        let compiled = statflow_dsl::compile(text, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        compiled.plan.unwrap().metrics.remove(0)
    }

    #[test]
    fn session_metrics_add_their_measures_after_the_declared_ones() {
        let m = metric(
            "source s = generator()
             metric m from s { window session 30m by user_id  measures { n = count()  max_duration = max(amount) } }",
        );
        let names: Vec<&str> = measures(&m).iter().map(|x| x.name()).collect();
        // The declared `max_duration` hides the session measure of that name.
        assert_eq!(
            names,
            [
                "n",
                "max_duration",
                "sessions",
                "avg_duration",
                "p50_duration",
                "p90_duration"
            ]
        );
        assert_eq!(index_of(&m, "sessions"), Some(2));
        assert!(matches!(measure(&m, 1), Some(MeasureRef::Declared(_))));
        assert_eq!(
            measure(&m, 5),
            Some(MeasureRef::Session(SessionMeasure::P90Duration))
        );
        assert_eq!(measure(&m, 6), None);

        let tumbling = metric(
            "source s = generator()
             metric m from s { window tumbling 1m  measures { n = count() } }",
        );
        assert_eq!(measures(&tumbling).len(), 1);
        assert_eq!(index_of(&tumbling, "sessions"), None);
        assert_eq!(measure(&tumbling, 1), None);
    }

    #[test]
    fn session_measures_count_and_time_sessions() {
        let durations = [0i64, 60_000, 1_500, 600_000];
        let mut cells = Vec::new();
        for s in SessionMeasure::ALL {
            // Two halves merged, as partials from two workers are.
            let mut a = s.empty();
            let mut b = s.empty();
            s.add_session(&mut a, durations[0]);
            s.add_session(&mut a, durations[1]);
            s.add_session(&mut b, durations[2]);
            s.add_session(&mut b, durations[3]);
            a.merge(&b);
            cells.push(s.finish(&a));
            assert_eq!(
                s.finish(&s.empty()),
                if s == SessionMeasure::Sessions {
                    Cell::Int(0)
                } else {
                    Cell::Null
                }
            );
        }
        assert_eq!(
            cells,
            [
                Cell::Int(4),
                Cell::Float(165.375),
                Cell::Float(1.5),
                Cell::Float(60.0),
                Cell::Float(600.0),
            ]
        );
    }
}
