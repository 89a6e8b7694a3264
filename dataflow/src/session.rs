//! Session windows: a session metric's events, cut into sessions per
//! dimension values and `by` value, each session kept as one rollup row
//! keyed by its start.
//!
//! # What a session is
//!
//! For one metric, one set of dimension values and one value of the `by`
//! field, a session is a maximal run of (on-time) events whose consecutive
//! event times are less than the gap apart. Its row holds the metric's
//! measures over its events, then a [`MeasureState::Span`] with its first
//! and last event time; the row's key is `(metric, start, dimensions ++
//! [by value])`, so no two sessions share a key.
//!
//! # How rows follow the events, in any order
//!
//! The ingest operators combine a session metric's events per epoch into
//! *pieces*: the events of one `by` value (and dimension values) that fall
//! in one gap-long slot of time. Any two events of a slot are less than the
//! gap apart, so a piece never straddles two sessions. Two connected sets of
//! events belong to one session exactly when their spans are less than the
//! gap apart (overlapping spans are 0 apart), so a piece joins every
//! session whose span is within the gap of its own.
//!
//! The [`sessionize`] operator keeps every retained session (its span and
//! measures), exchanged by `(metric, dimensions ++ [by])`, and applies each
//! epoch's pieces once the epoch is complete everywhere, in epoch order. An
//! event can only join sessions, never split one, so a session's row moves
//! only forward: when a piece extends a session without moving its start,
//! the operator sends the piece's measures (and those of any session it
//! absorbs) as an update of the same row, which the rollup merges; when the
//! start moves, the old rows are retracted (`count: -n`, see
//! [`crate::render::retraction`]) and the whole session is sent under its
//! new start. A retracted key is never used again (it lies inside a live
//! session, or before the newest evicted session's end, see below), so a
//! retraction and a later row never meet in one key. The rows at every
//! complete epoch are therefore those a from-scratch cut of the events up
//! to that epoch would give, whatever order they came in.
//!
//! # Checkpoints and retention
//!
//! The operator's state is a copy of the session rows, so it is not
//! checkpointed: a restart feeds the restored rows of session metrics
//! through the operator as pieces (sessions are at least the gap apart, so
//! none joins another), which rebuilds it. Retention retracts session rows
//! by start like any other row; those retractions come through the operator,
//! which drops the session and retracts exactly what the row holds then. A
//! piece that begins at or before the end of a session evicted earlier
//! (possible only for retention shorter than the lateness bound, or a
//! partition that starts with old events) goes to the metric's late rows.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use statflow_dsl::{MetricPlan, Plan, Window};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Concat, OkErr};

use crate::aggregate::{keeps_state, Aggregates, MeasureState};
use crate::render::retraction;
use crate::rollup::{Dims, RollupKey};

/// One rollup update, as the ingest dataflow carries it.
type Update = (RollupKey, u64, Aggregates);

/// One epoch's updates of session metrics, with a capability to send at it.
type Stashed = (Capability<u64>, Vec<(RollupKey, Aggregates)>);

/// An empty stored row of `metric`: the states of its measures that keep
/// one (see [`Aggregates`]), and a span for a session metric.
pub fn empty_row(metric: &MetricPlan) -> Aggregates {
    let span = metric.window.is_session().then(MeasureState::empty_span);
    Aggregates {
        count: 0,
        // Sized exactly: a session metric keeps every row twice.
        measures: metric
            .measures
            .iter()
            .filter(|m| keeps_state(&m.kind))
            .map(|m| MeasureState::empty(&m.kind))
            .chain(span)
            .collect(),
    }
}

/// The first and last event time of a session metric's row or piece.
pub fn span(row: &Aggregates) -> Option<(i64, i64)> {
    span_of(row.measures.last())
}

/// The first and last event time a row's last state holds, if it is a
/// span of events.
pub fn span_of(last: Option<&MeasureState>) -> Option<(i64, i64)> {
    match last {
        Some(MeasureState::Span(first, last)) if first <= last => Some((*first, *last)),
        _ => None,
    }
}

/// Routes the updates of session metrics through the session operator and
/// passes every other update on untouched. With no session metric in the
/// plan, adds nothing to the dataflow.
// The split below passes each update by value either way: both sides of its
// `Result` are the same row, so boxing one would only add an allocation.
#[allow(clippy::result_large_err)]
pub fn sessionize<'scope>(
    plan: &Arc<Plan>,
    updates: VecCollection<'scope, u64, RollupKey, Aggregates>,
) -> VecCollection<'scope, u64, RollupKey, Aggregates> {
    let session: Vec<bool> = plan.metrics.iter().map(|m| m.window.is_session()).collect();
    if !session.contains(&true) {
        return updates;
    }
    // Late rows (metric index past the metrics) are rows like any other.
    let (rows, pieces) =
        updates
            .inner
            .ok_err::<Vec<Update>, _, Vec<Update>, _, _>(move |update: Update| {
                if session.get(update.0.metric as usize) == Some(&true) {
                    Err(update)
                } else {
                    Ok(update)
                }
            });
    let mut state = Sessions::new(plan);
    // Every piece of one session key meets the others on one worker, the
    // same in every process (the hash has a fixed seed).
    let exchange = Exchange::new(|(key, _, _): &Update| (key.metric, &key.dims).hashed());
    let cut = pieces.unary_frontier(exchange, "Sessionize", move |_capability, _info| {
        // Updates by epoch, each with a capability to send its rows at that
        // epoch, held until every worker has closed it.
        let mut stash: BTreeMap<u64, Stashed> = BTreeMap::new();
        let mut out = Vec::new();
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each(|capability, data| {
                for (key, time, row) in data.drain(..) {
                    stash
                        .entry(time)
                        .or_insert_with(|| (capability.delayed(&time, port), Vec::new()))
                        .1
                        .push((key, row));
                }
            });
            // Epochs apply in order, each once it is complete everywhere: a
            // session's rows at an epoch then depend only on the events of
            // epochs up to it, not on which worker was faster.
            while let Some(entry) = stash.first_entry() {
                if frontier.frontier().less_equal(entry.key()) {
                    break;
                }
                let (capability, updates) = entry.remove();
                state.apply(updates, &mut out);
                let time = *capability.time();
                let mut session = output.session(&capability);
                for (key, row) in out.drain(..) {
                    session.give((key, time, row));
                }
            }
        }
    });
    rows.concat(cut).as_collection()
}

/// One session of one key.
#[derive(Debug, Clone)]
struct Session {
    /// Its first event time: the row's key.
    start: i64,
    /// Its last event time.
    last: i64,
    /// What its row holds (measures, then the span).
    row: Aggregates,
}

/// One session metric's sessions on this worker.
#[derive(Debug)]
struct MetricSessions {
    /// The gap, in milliseconds.
    gap: i64,
    /// How many declared dimensions (the key's last value is the `by` value).
    dims: usize,
    /// The metric's step, for the late rows.
    step: i64,
    /// The latest last event time of a session evicted here: pieces that
    /// begin at or before it go to the late rows (see the module doc).
    evicted_until: i64,
    /// Sessions by `dimensions ++ [by]`, sorted by start and at least the
    /// gap apart. A vector rather than a map: most keys hold one or two.
    /// Hashed with foldhash, as the ingest's per-epoch rows are: cheap on
    /// short keys, and seeded per map so that colliding `by` values cannot
    /// be chosen in advance.
    keys: HashMap<Dims, Vec<Session>, foldhash::fast::RandomState>,
}

/// Every session metric's sessions on this worker.
#[derive(Debug)]
pub struct Sessions {
    /// By plan index; `None` for metrics without a session window.
    metrics: Vec<Option<MetricSessions>>,
    /// How many metrics the plan has (late rows are indexed past them).
    count: u32,
}

impl Sessions {
    /// No sessions yet, for the session metrics of `plan`.
    pub fn new(plan: &Plan) -> Self {
        Sessions {
            metrics: plan
                .metrics
                .iter()
                .map(|m| match &m.window {
                    Window::Session { gap, .. } => Some(MetricSessions {
                        gap: gap.millis().max(1) as i64,
                        dims: m.dimensions.len(),
                        step: m.window.step().millis().max(1) as i64,
                        evicted_until: i64::MIN,
                        keys: HashMap::default(),
                    }),
                    _ => None,
                })
                .collect(),
            count: plan.metrics.len() as u32,
        }
    }

    /// How many sessions are kept, over every metric.
    pub fn len(&self) -> usize {
        self.metrics
            .iter()
            .flatten()
            .map(|m| m.keys.values().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// True when no session is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one epoch's updates of session metrics — pieces (a positive
    /// count) and evictions (a negative one) — and appends the rollup
    /// updates that follow to `out`.
    ///
    /// Pieces are applied in the order they come: the sessions after an
    /// epoch do not depend on it (a piece only ever joins sessions), and
    /// the rows a piece replaces within the epoch are retracted at the
    /// same epoch, so they cancel out before anything reads them.
    pub fn apply(
        &mut self,
        updates: Vec<(RollupKey, Aggregates)>,
        out: &mut Vec<(RollupKey, Aggregates)>,
    ) {
        // Evictions first, so that every piece sees where they reached.
        for (key, _) in updates.iter().filter(|(_, row)| row.count < 0) {
            if let Some(Some(metric)) = self.metrics.get_mut(key.metric as usize) {
                metric.evict(key, out);
            }
        }
        for (key, row) in updates {
            if row.count > 0 {
                self.join(key, row, out);
            }
        }
    }

    /// Joins one piece with the sessions it touches.
    fn join(&mut self, key: RollupKey, row: Aggregates, out: &mut Vec<(RollupKey, Aggregates)>) {
        let late = self.count;
        let Some(Some(metric)) = self.metrics.get_mut(key.metric as usize) else {
            return;
        };
        let Some((first, last)) = span(&row) else {
            return;
        };
        let RollupKey {
            metric: index,
            dims,
            ..
        } = key;
        if first <= metric.evicted_until {
            let late_key = RollupKey {
                metric: index + late,
                bucket: first.div_euclid(metric.step) * metric.step,
                dims: Dims::from(&dims[..metric.dims.min(dims.len())]),
            };
            out.push((late_key, row));
            return;
        }
        let gap = metric.gap;
        // One copy of the key for the rows sent; the piece's own moves into
        // the map when the key is new.
        let sent = dims.clone();
        let sessions = metric.keys.entry(dims).or_default();
        // The sessions within the gap of [first, last]: those starting less
        // than the gap after `last` and ending less than the gap before
        // `first`, a contiguous run since sessions do not overlap.
        let hi = sessions.partition_point(|s| s.start < last.saturating_add(gap));
        let mut lo = hi;
        while lo > 0 && sessions[lo - 1].last > first.saturating_sub(gap) {
            lo -= 1;
        }
        if lo == hi {
            // A new session, the usual case: one row to send.
            let key = RollupKey {
                metric: index,
                bucket: first,
                dims: sent,
            };
            out.push((key, row.clone()));
            // Most keys keep one or two sessions: grow by one while few,
            // rather than to Vec's smallest capacity of four.
            if sessions.len() == sessions.capacity() && sessions.len() < 8 {
                sessions.reserve_exact(1);
            }
            sessions.insert(
                lo,
                Session {
                    start: first,
                    last,
                    row,
                },
            );
            return;
        }
        // The rows to send, by start; each gets the key (the last one the copy).
        let mut rows: Vec<(i64, Aggregates)> = Vec::with_capacity(hi - lo + 1);
        {
            let mut joined: Vec<Session> = sessions.drain(lo..hi).collect();
            let end = joined.iter().map(|s| s.last).fold(last, i64::max);
            let kept = if joined[0].start <= first {
                // The earliest session keeps its start: its row gets the
                // piece and every later session it absorbs as one more update.
                let mut head = joined.remove(0);
                let mut delta = row;
                for s in &joined {
                    delta.merge(&s.row);
                }
                head.row.merge(&delta);
                rows.push((head.start, delta));
                head.last = end;
                head
            } else {
                // The piece starts the session: every joined row moves to `first`.
                let mut whole = row;
                for s in &joined {
                    whole.merge(&s.row);
                }
                rows.push((first, whole.clone()));
                Session {
                    start: first,
                    last: end,
                    row: whole,
                }
            };
            for s in joined {
                rows.push((s.start, retraction(s.row.count)));
            }
            sessions.insert(lo, kept);
        }
        let n = rows.len();
        let mut sent = Some(sent);
        for (i, (start, row)) in rows.into_iter().enumerate() {
            let dims = if i + 1 == n {
                sent.take().unwrap_or_default()
            } else {
                sent.clone().unwrap_or_default()
            };
            out.push((
                RollupKey {
                    metric: index,
                    bucket: start,
                    dims,
                },
                row,
            ));
        }
    }
}

impl MetricSessions {
    /// Drops the session starting at `key.bucket`, if it is still kept,
    /// and retracts its whole row.
    fn evict(&mut self, key: &RollupKey, out: &mut Vec<(RollupKey, Aggregates)>) {
        let Some(sessions) = self.keys.get_mut(&key.dims) else {
            return;
        };
        let Ok(at) = sessions.binary_search_by_key(&key.bucket, |s| s.start) else {
            // Absorbed into an earlier session since it was read: that one
            // starts earlier still, and its own eviction follows.
            return;
        };
        let session = sessions.remove(at);
        if sessions.is_empty() {
            self.keys.remove(&key.dims);
        } else if sessions.capacity() > 2 * sessions.len() + 4 {
            sessions.shrink_to_fit();
        }
        self.evicted_until = self.evicted_until.max(session.last);
        out.push((key.clone(), retraction(session.row.count)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    const GAP: i64 = 1_000;

    fn plan() -> Plan {
        let text = "source s = generator()
            metric m from s { dimensions game_id  window session 1s by user_id  measures { n = count()  total = sum(amount) } }";
        let compiled = statflow_dsl::compile(text, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        compiled.plan.unwrap()
    }

    /// One event as a piece of its own: user `u`, time `ts`, amount `ts % 7`.
    fn piece(plan: &Plan, u: i64, ts: i64) -> (RollupKey, Aggregates) {
        let mut row = empty_row(&plan.metrics[0]);
        row.count = 1;
        // The sum's state, then the span: `count()` keeps none.
        assert_eq!(row.measures.len(), 2);
        row.measures[0].add_number((ts % 7) as f64);
        row.measures[1].add_time(ts);
        let key = RollupKey {
            metric: 0,
            bucket: ts.div_euclid(GAP) * GAP,
            dims: vec![Value::Str("g".into()), Value::Int(u)].into(),
        };
        (key, row)
    }

    /// The rollup as differential would hold it: updates merged per key,
    /// rows with no events left out; each row as (count, sum, span).
    fn accumulate(updates: &[(RollupKey, Aggregates)]) -> BTreeMap<(i64, i64), (i64, i128, i64)> {
        let mut rows: BTreeMap<RollupKey, Aggregates> = BTreeMap::new();
        for (key, row) in updates {
            match rows.get_mut(key) {
                Some(acc) => acc.merge(row),
                None => {
                    rows.insert(key.clone(), row.clone());
                }
            }
        }
        rows.into_iter()
            .filter(|(_, r)| r.count != 0)
            .map(|(k, r)| {
                let Value::Int(u) = k.dims[1] else { panic!() };
                let MeasureState::Sum(total) = r.measures[0] else {
                    panic!()
                };
                let (first, last) = span(&r).unwrap();
                assert_eq!(first, k.bucket, "a row is keyed by its first event");
                assert!(
                    r.count > 0,
                    "a row retracted more than it held: {k:?} {r:?}"
                );
                ((u, k.bucket), (r.count, total.get(), last))
            })
            .collect()
    }

    /// Sessions cut from scratch: sort each user's times, split at gaps.
    fn truth(events: &[(i64, i64)]) -> BTreeMap<(i64, i64), (i64, i128, i64)> {
        let mut by_user: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (u, ts) in events {
            by_user.entry(*u).or_default().push(*ts);
        }
        let mut out = BTreeMap::new();
        for (u, mut times) in by_user {
            times.sort();
            let mut start = 0;
            for i in 1..=times.len() {
                if i == times.len() || times[i] - times[i - 1] >= GAP {
                    let run = &times[start..i];
                    let total: i128 = run.iter().map(|t| i128::from(t % 7) * 1_000_000_000).sum();
                    out.insert((u, run[0]), (run.len() as i64, total, run[run.len() - 1]));
                    start = i;
                }
            }
        }
        out
    }

    /// Events in random order and random epochs give, at every epoch, the
    /// sessions a from-scratch cut of the events so far gives.
    #[test]
    fn any_order_gives_the_sessions_of_a_fresh_cut() {
        let plan = plan();
        for seed in 0..40u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut events: Vec<(i64, i64)> = (0..120)
                .map(|_| (rng.random_range(0..4), rng.random_range(0..20_000)))
                .collect();
            events.shuffle(&mut rng);
            let mut sessions = Sessions::new(&plan);
            let mut updates = Vec::new();
            let mut seen = 0;
            while seen < events.len() {
                let take = rng.random_range(1..=20).min(events.len() - seen);
                let epoch: Vec<_> = events[seen..seen + take]
                    .iter()
                    .map(|(u, ts)| piece(&plan, *u, *ts))
                    .collect();
                seen += take;
                let before = updates.len();
                sessions.apply(epoch, &mut updates);
                assert!(updates.len() > before);
                assert_eq!(accumulate(&updates), truth(&events[..seen]), "seed {seed}");
            }
            assert_eq!(sessions.len(), truth(&events).len());
        }
    }

    /// Restored rows are pieces; evictions retract what a row holds and
    /// send what comes after into the late rows.
    #[test]
    fn restore_and_evict() {
        let plan = plan();
        let events = [(1, 100), (1, 900), (1, 5_000), (2, 5_500), (1, 5_200)];
        let mut sessions = Sessions::new(&plan);
        let mut updates = Vec::new();
        let pieces = events.iter().map(|(u, t)| piece(&plan, *u, *t)).collect();
        sessions.apply(pieces, &mut updates);
        let rows = accumulate(&updates);
        assert_eq!(rows, truth(&events));

        // A restart feeds the rows back: the same sessions, the same rows.
        let mut restored = Sessions::new(&plan);
        let mut again = Vec::new();
        let fed: Vec<(RollupKey, Aggregates)> = {
            let mut merged: BTreeMap<RollupKey, Aggregates> = BTreeMap::new();
            for (k, r) in &updates {
                merged
                    .entry(k.clone())
                    .and_modify(|a| a.merge(r))
                    .or_insert(r.clone());
            }
            merged.into_iter().filter(|(_, r)| r.count > 0).collect()
        };
        restored.apply(fed, &mut again);
        assert_eq!(accumulate(&again), rows);
        assert_eq!(restored.len(), 3);

        // Evicting user 1's first session (read before it grew) retracts all of it.
        sessions.apply(vec![piece(&plan, 1, 1_500)], &mut updates);
        let key = RollupKey {
            metric: 0,
            bucket: 100,
            dims: vec![Value::Str("g".into()), Value::Int(1)].into(),
        };
        sessions.apply(vec![(key.clone(), retraction(2))], &mut updates);
        let rows = accumulate(&updates);
        assert!(!rows.contains_key(&(1, 100)));
        assert_eq!(rows.len(), 2);
        // An event inside the evicted session goes to the late rows.
        let mut late = Vec::new();
        sessions.apply(vec![piece(&plan, 2, 1_200)], &mut late);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].0.metric, 1);
        assert_eq!(late[0].0.bucket, 0);
        assert_eq!(late[0].0.dims.as_slice(), [Value::Str("g".into())]);
        // Evicting again, or a start that is no session's, changes nothing.
        let mut none = Vec::new();
        sessions.apply(vec![(key, retraction(2))], &mut none);
        assert!(none.is_empty());
    }
}
