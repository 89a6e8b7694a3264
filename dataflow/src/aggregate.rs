//! Mergeable measure state: what one rollup row holds for every measure.
//!
//! A row's `Aggregates` is the *difference* type of the rollup arrangement:
//! differential adds the updates of a key together with `plus_equals`, so
//! merging is the one operation everything rests on — combining events in a
//! worker, consolidating batches, re-bucketing minutes into hours at query
//! time. Every merge here is associative and commutative, and gives the same
//! bits in any order, so answers do not depend on how work was split or on a
//! restart.

use std::cmp::Ordering;
use std::sync::Arc;

use cardinality_estimator::CardinalityEstimator;
use differential_dataflow::difference::{IsZero, Semigroup};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sketches_ddsketch::DDSketch;
use smallvec::SmallVec;
use statflow_dsl::MeasureKind;

use crate::few::DistinctState;
use crate::query::Cell;

/// Sums are kept in billionths, as integers: exact and order-independent for
/// inputs with up to nine decimal places (and whole parts up to 2^53), and
/// good to about ±1.7e29.
pub const SUM_SCALE: f64 = 1e9;

/// A quantile state keeps exact values up to this many, then becomes a DDSketch.
pub const EXACT_QUANTILE_VALUES: usize = 64;

/// Relative accuracy of the quantile sketch.
pub const QUANTILE_ALPHA: f64 = 0.01;

/// The HyperLogLog++ estimator behind `distinct`: exact (up to hash
/// collisions) below 128 values, then 4096 six-bit registers, a standard
/// error of 1.04/√4096 ≈ 1.6%.
pub type DistinctSketch = CardinalityEstimator<str>;

/// A sum in billionths: an `i128` kept as two 64-bit halves. The same
/// number, but aligned to 8 bytes rather than 16, which makes a
/// [`MeasureState`] 32 bytes instead of 48. Serialized as the `i128`.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fixed {
    // Field order matters: the derived order compares `hi` first.
    hi: i64,
    lo: u64,
}

impl Fixed {
    /// The number.
    pub fn get(self) -> i128 {
        (i128::from(self.hi) << 64) | i128::from(self.lo)
    }
}

impl From<i128> for Fixed {
    fn from(v: i128) -> Self {
        Fixed {
            hi: (v >> 64) as i64,
            lo: v as u64,
        }
    }
}

impl std::ops::AddAssign<i128> for Fixed {
    fn add_assign(&mut self, rhs: i128) {
        *self = Fixed::from(self.get() + rhs);
    }
}

impl std::fmt::Debug for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl Serialize for Fixed {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i128(self.get())
    }
}

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i128::deserialize(d).map(Fixed::from)
    }
}

/// The state of one measure in one row.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MeasureState {
    /// `count()` needs nothing beyond the row's event count.
    Count,
    /// Sum in billionths.
    Sum(Fixed),
    /// Smallest value seen; `+inf` when none.
    Min(f64),
    /// Largest value seen; `-inf` when none.
    Max(f64),
    /// Sum in billionths and how many values.
    Avg(Fixed, u64),
    /// Distinct values: a few in the row, then a sketch (see [`crate::few`]).
    Distinct(DistinctState),
    /// Values for quantiles.
    Quantile(QuantileState),
    /// The first and last event time (milliseconds) of a session or of a
    /// piece of one: kept after the declared measures of a session metric's
    /// rows, never asked for by name (see [`crate::session`]).
    Span(i64, i64),
    /// A `distinct` state of a query's group once it is registers: only
    /// [`MeasureState::merge_query`] makes one, and a stored row never holds
    /// one (see [`crate::distinct::Registers`]).
    Registers(crate::distinct::Registers),
}

/// Values for a quantile: exact while few, a DDSketch after.
#[derive(Clone, Serialize, Deserialize)]
pub enum QuantileState {
    /// Sorted values, at most `EXACT_QUANTILE_VALUES`.
    Exact(Vec<f64>),
    /// A sketch with `QUANTILE_ALPHA` relative accuracy, shared by the
    /// clones of its row until one of them changes (as a `distinct`
    /// sketch is, see [`crate::few`]).
    Sketch(Arc<DDSketch>),
}

impl std::fmt::Debug for QuantileState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuantileState::Exact(values) => f.debug_tuple("Exact").field(values).finish(),
            QuantileState::Sketch(s) => write!(f, "Sketch({} values)", s.count()),
        }
    }
}

impl QuantileState {
    fn insert(&mut self, v: f64) {
        match self {
            QuantileState::Exact(values) => {
                let at = values.partition_point(|x| x.total_cmp(&v) == Ordering::Less);
                values.insert(at, v);
                if values.len() > EXACT_QUANTILE_VALUES {
                    *self = QuantileState::Sketch(Arc::new(sketch_of(values)));
                }
            }
            QuantileState::Sketch(s) => Arc::make_mut(s).add(v),
        }
    }

    fn merge(&mut self, other: &QuantileState) {
        match (&mut *self, other) {
            (QuantileState::Exact(a), QuantileState::Exact(b)) => {
                if a.len() + b.len() <= EXACT_QUANTILE_VALUES {
                    for v in b {
                        let at = a.partition_point(|x| x.total_cmp(v) == Ordering::Less);
                        a.insert(at, *v);
                    }
                } else {
                    let mut s = sketch_of(a);
                    for v in b {
                        s.add(*v);
                    }
                    *self = QuantileState::Sketch(Arc::new(s));
                }
            }
            (QuantileState::Exact(a), QuantileState::Sketch(b)) => {
                let mut s = (**b).clone();
                for v in a.iter() {
                    s.add(*v);
                }
                *self = QuantileState::Sketch(Arc::new(s));
            }
            (QuantileState::Sketch(a), QuantileState::Exact(b)) => {
                let a = Arc::make_mut(a);
                for v in b {
                    a.add(*v);
                }
            }
            (QuantileState::Sketch(a), QuantileState::Sketch(b)) => {
                // Both sketches share one configuration, so merging cannot fail.
                let _ = Arc::make_mut(a).merge(b);
            }
        }
    }

    /// The `q`-quantile: the value at rank ⌊q·(n−1)⌋, as DDSketch defines it.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        match self {
            QuantileState::Exact(values) if values.is_empty() => None,
            QuantileState::Exact(values) => {
                let rank = (q * (values.len() - 1) as f64) as usize;
                values.get(rank).copied()
            }
            QuantileState::Sketch(s) => s.quantile(q).ok().flatten(),
        }
    }
}

fn sketch_of(values: &[f64]) -> DDSketch {
    let mut s = DDSketch::new(sketches_ddsketch::Config::new(QUANTILE_ALPHA, 2048, 1.0e-9));
    for v in values {
        s.add(*v);
    }
    s
}

impl MeasureState {
    /// The empty state for a measure.
    pub fn empty(kind: &MeasureKind) -> Self {
        match kind {
            MeasureKind::Count => MeasureState::Count,
            MeasureKind::Sum { .. } => MeasureState::Sum(Fixed::default()),
            MeasureKind::Min { .. } => MeasureState::Min(f64::INFINITY),
            MeasureKind::Max { .. } => MeasureState::Max(f64::NEG_INFINITY),
            MeasureKind::Avg { .. } => MeasureState::Avg(Fixed::default(), 0),
            MeasureKind::Distinct { .. } => MeasureState::Distinct(DistinctState::new()),
            MeasureKind::Quantile { .. } => {
                MeasureState::Quantile(QuantileState::Exact(Vec::new()))
            }
        }
    }

    /// The span of no event: merging keeps the other side's times.
    pub fn empty_span() -> Self {
        MeasureState::Span(i64::MAX, i64::MIN)
    }

    /// Widens a `Span` to hold an event at `ts` (ignored by the others).
    pub fn add_time(&mut self, ts: i64) {
        if let MeasureState::Span(first, last) = self {
            *first = (*first).min(ts);
            *last = (*last).max(ts);
        }
    }

    /// Adds one number (ignored by `Count`, `Distinct` and `Span`).
    pub fn add_number(&mut self, v: f64) {
        match self {
            MeasureState::Sum(total) => *total += to_fixed(v),
            MeasureState::Min(m) => *m = m.min(v),
            MeasureState::Max(m) => *m = m.max(v),
            MeasureState::Avg(total, n) => {
                *total += to_fixed(v);
                *n += 1;
            }
            MeasureState::Quantile(q) => q.insert(v),
            MeasureState::Count
            | MeasureState::Distinct(_)
            | MeasureState::Span(..)
            | MeasureState::Registers(_) => {}
        }
    }

    /// Adds one value to a `Distinct` (ignored by the others).
    pub fn add_text(&mut self, text: &str) {
        if let MeasureState::Distinct(d) = self {
            d.insert(text);
        }
    }

    /// Merges another state of the same measure into this one.
    pub fn merge(&mut self, other: &MeasureState) {
        match (&mut *self, other) {
            (MeasureState::Sum(a), MeasureState::Sum(b)) => *a += b.get(),
            (MeasureState::Min(a), MeasureState::Min(b)) => *a = a.min(*b),
            (MeasureState::Max(a), MeasureState::Max(b)) => *a = a.max(*b),
            (MeasureState::Avg(a, n), MeasureState::Avg(b, m)) => {
                *a += b.get();
                *n += m;
            }
            (MeasureState::Distinct(a), MeasureState::Distinct(b)) => a.merge(b),
            (MeasureState::Registers(a), MeasureState::Registers(b)) => a.merge(b),
            (MeasureState::Registers(a), MeasureState::Distinct(b)) => b.add_to(a),
            (MeasureState::Distinct(a), MeasureState::Registers(b)) => {
                let mut registers = b.clone();
                a.add_to(&mut registers);
                *self = MeasureState::Registers(registers);
            }
            (MeasureState::Quantile(a), MeasureState::Quantile(b)) => a.merge(b),
            (MeasureState::Span(first, last), MeasureState::Span(f, l)) => {
                *first = (*first).min(*f);
                *last = (*last).max(*l);
            }
            _ => {}
        }
    }

    /// Merges like [`MeasureState::merge`], for a query's group: a
    /// `distinct` state whose sketch has become registers turns into
    /// [`Registers`](crate::distinct::Registers), which the many merges a
    /// query makes are cheaper on.
    pub fn merge_query(&mut self, other: &MeasureState) {
        self.merge(other);
        if let MeasureState::Distinct(d) = self {
            if d.is_registers() {
                *self = MeasureState::Registers(d.registers());
            }
        }
    }

    /// The measure's value for a row holding `count` events.
    pub fn finish(&self, kind: &MeasureKind, count: i64) -> Cell {
        match (self, kind) {
            (MeasureState::Count, _) => Cell::Int(count),
            (MeasureState::Sum(total), _) => Cell::Float(from_fixed(total.get())),
            (MeasureState::Min(m), _) | (MeasureState::Max(m), _) if m.is_finite() => {
                Cell::Float(*m)
            }
            (MeasureState::Min(_) | MeasureState::Max(_), _) => Cell::Null,
            (MeasureState::Avg(_, 0), _) => Cell::Null,
            (MeasureState::Avg(total, n), _) => Cell::Float(from_fixed(total.get()) / *n as f64),
            (MeasureState::Distinct(d), _) => Cell::Int(d.estimate() as i64),
            (MeasureState::Registers(r), _) => Cell::Int(r.estimate() as i64),
            (MeasureState::Quantile(state), MeasureKind::Quantile { q, .. }) => {
                state.quantile(*q).map(Cell::Float).unwrap_or(Cell::Null)
            }
            (MeasureState::Quantile(_), _) => Cell::Null,
            (MeasureState::Span(..), _) => Cell::Null,
        }
    }

    /// A total order over states of one measure, consistent with equality.
    pub(crate) fn order(&self, other: &MeasureState) -> Ordering {
        match (self, other) {
            (MeasureState::Sum(a), MeasureState::Sum(b)) => a.cmp(b),
            (MeasureState::Min(a), MeasureState::Min(b))
            | (MeasureState::Max(a), MeasureState::Max(b)) => a.total_cmp(b),
            (MeasureState::Avg(a, n), MeasureState::Avg(b, m)) => (a, n).cmp(&(b, m)),
            (MeasureState::Distinct(a), MeasureState::Distinct(b)) => {
                if a == b {
                    Ordering::Equal
                } else {
                    a.estimate()
                        .cmp(&b.estimate())
                        .then_with(|| a.canonical().cmp(&b.canonical()))
                }
            }
            (MeasureState::Quantile(a), MeasureState::Quantile(b)) => encoded(a).cmp(&encoded(b)),
            (MeasureState::Span(f, l), MeasureState::Span(g, m)) => (f, l).cmp(&(g, m)),
            (MeasureState::Registers(a), MeasureState::Registers(b)) => a.cmp(b),
            (a, b) => variant(a).cmp(&variant(b)),
        }
    }
}

fn variant(state: &MeasureState) -> u8 {
    match state {
        MeasureState::Count => 0,
        MeasureState::Sum(_) => 1,
        MeasureState::Min(_) => 2,
        MeasureState::Max(_) => 3,
        MeasureState::Avg(..) => 4,
        MeasureState::Distinct(_) => 5,
        MeasureState::Quantile(_) => 6,
        MeasureState::Span(..) => 7,
        MeasureState::Registers(_) => 8,
    }
}

/// A canonical byte form, used only to break ties in `Ord` (rare).
fn encoded<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// A number in billionths, rounded to the nearest. The whole part is
/// converted on its own so that large values lose nothing to `v * 1e9`.
/// Past what 128 bits of billionths hold (about 1.7 × 10²⁹), the largest
/// or smallest they hold.
///
/// Every `sum` and `avg` of every event comes here: below nine billion,
/// the usual case, the same arithmetic is done in 64 bits, where it cannot
/// overflow and casts from `f64` are one instruction rather than a call.
pub fn to_fixed(v: f64) -> i128 {
    let whole = v.trunc();
    let fraction = ((v - whole) * SUM_SCALE).round();
    if whole.abs() < 9e9 {
        return i128::from((whole as i64) * 1_000_000_000 + fraction as i64);
    }
    (whole as i128)
        .saturating_mul(1_000_000_000)
        .saturating_add(fraction as i128)
}

/// Billionths back to a number.
pub fn from_fixed(v: i128) -> f64 {
    // Split to keep precision for large totals.
    let whole = v / 1_000_000_000;
    let frac = v % 1_000_000_000;
    whole as f64 + frac as f64 / SUM_SCALE
}

/// Everything a rollup row knows: how many events, and each measure's state.
///
/// A stored row (see [`crate::session::empty_row`]) holds a state for each
/// of its metric's measures that [keeps one](keeps_state), in the metric's
/// order: `count()` is the row's `count`, so a row spends no slot on it
/// (32 bytes a row; [`stored_slots`] maps a measure to its slot). A query's
/// group holds a state for every measure the query asks, in its order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Aggregates {
    /// Events counted in this row.
    pub count: i64,
    /// The measures' states.
    pub measures: States,
}

/// Whether a stored row keeps a state for a measure of this kind: all but
/// `count()`, which is the row's event count.
pub fn keeps_state(kind: &MeasureKind) -> bool {
    !matches!(kind, MeasureKind::Count)
}

/// For each of `kinds`, its slot in a stored row's states, if it has one.
pub fn stored_slots<'a>(kinds: impl IntoIterator<Item = &'a MeasureKind>) -> Vec<Option<usize>> {
    let mut next = 0;
    kinds
        .into_iter()
        .map(|kind| {
            keeps_state(kind).then(|| {
                next += 1;
                next - 1
            })
        })
        .collect()
}

/// A row's measure states: up to three held in the row itself, so that
/// storing, merging and copying a row touches one allocation fewer (more
/// for a `distinct` or `quantile` state that holds values). Serializes as
/// a `Vec<MeasureState>` would.
pub type States = SmallVec<[MeasureState; 3]>;

impl Aggregates {
    /// A row of `count` events and no measure states: a retraction's
    /// update (a negative count), and the simplest row.
    pub fn of_count(count: i64) -> Self {
        Aggregates {
            count,
            measures: States::new(),
        }
    }

    /// An empty row for measures of these kinds.
    pub fn empty<'a>(kinds: impl IntoIterator<Item = &'a MeasureKind>) -> Self {
        Aggregates {
            count: 0,
            measures: kinds.into_iter().map(MeasureState::empty).collect(),
        }
    }

    /// Merges another row of the same metric into this one.
    pub fn merge(&mut self, other: &Aggregates) {
        self.count += other.count;
        if self.measures.is_empty() {
            self.measures = other.measures.clone();
            return;
        }
        for (a, b) in self.measures.iter_mut().zip(&other.measures) {
            a.merge(b);
        }
    }

    /// Merges another group of the same query into this one (see
    /// [`MeasureState::merge_query`]).
    pub fn merge_query(&mut self, other: &Aggregates) {
        self.count += other.count;
        for (a, b) in self.measures.iter_mut().zip(&other.measures) {
            a.merge_query(b);
        }
    }
}

impl PartialEq for Aggregates {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Aggregates {}

impl PartialOrd for Aggregates {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Aggregates {
    fn cmp(&self, other: &Self) -> Ordering {
        self.count.cmp(&other.count).then_with(|| {
            for (a, b) in self.measures.iter().zip(&other.measures) {
                let o = a.order(b);
                if o != Ordering::Equal {
                    return o;
                }
            }
            self.measures.len().cmp(&other.measures.len())
        })
    }
}

impl IsZero for Aggregates {
    /// A row with no events is empty: every update adds at least one event.
    fn is_zero(&self) -> bool {
        self.count == 0
    }
}

impl Semigroup for Aggregates {
    fn plus_equals(&mut self, rhs: &Self) {
        self.merge(rhs);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use statflow_dsl::FieldPath;

    use every_kind as kinds;

    /// Billionths in 128 bits throughout (held to what they can hold), as
    /// `to_fixed` computes them past its 64-bit range.
    fn to_fixed_wide(v: f64) -> i128 {
        let whole = v.trunc();
        (whole as i128)
            .saturating_mul(1_000_000_000)
            .saturating_add(((v - whole) * SUM_SCALE).round() as i128)
    }

    #[test]
    fn billionths_in_64_bits_are_those_in_128() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut values = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1e-10,
            -1e-10,
            0.9999999999,
            8.999999999e9,
        ];
        for edge in [9e9, 9.223e9, 1e18, 1e30, f64::MAX] {
            for v in [edge, edge.next_down(), edge.next_up()] {
                values.extend([v, -v]);
            }
        }
        for _ in 0..100_000 {
            let magnitude = 10f64.powi(rng.random_range(-12..20));
            values.push(rng.random_range(-1.0..1.0) * magnitude);
        }
        for v in values {
            assert_eq!(to_fixed(v), to_fixed_wide(v), "{v:e}");
        }
        assert_eq!(to_fixed(f64::MAX), i128::MAX);
        assert_eq!(to_fixed(-1e30), i128::MIN);
    }

    /// One measure of each kind, on a field `x`.
    pub(crate) fn every_kind() -> Vec<MeasureKind> {
        let f = FieldPath::parse("x");
        vec![
            MeasureKind::Count,
            MeasureKind::Sum { field: f.clone() },
            MeasureKind::Min { field: f.clone() },
            MeasureKind::Max { field: f.clone() },
            MeasureKind::Avg { field: f.clone() },
            MeasureKind::Distinct { field: f.clone() },
            MeasureKind::Quantile { field: f, q: 0.5 },
        ]
    }

    fn row(values: &[f64]) -> Aggregates {
        let kinds = kinds();
        let mut agg = Aggregates::empty(&kinds);
        for v in values {
            agg.count += 1;
            for m in &mut agg.measures {
                m.add_number(*v);
                m.add_text(&v.to_string());
            }
        }
        agg
    }

    fn finish(agg: &Aggregates) -> Vec<Cell> {
        kinds()
            .iter()
            .zip(&agg.measures)
            .map(|(k, m)| m.finish(k, agg.count))
            .collect()
    }

    #[test]
    fn merging_in_any_order_gives_the_same_bits() {
        let values: Vec<f64> = (0..500)
            .map(|i| (i * 37 % 101) as f64 * 0.01 + 0.1)
            .collect();
        let whole = row(&values);
        let mut left = row(&values[..123]);
        left.plus_equals(&row(&values[123..]));
        let mut right = row(&values[300..]);
        right.plus_equals(&row(&values[..300]));
        assert_eq!(finish(&whole), finish(&left));
        assert_eq!(finish(&left), finish(&right));
        // Large values keep their cents.
        assert_eq!(from_fixed(to_fixed(123_456_789_012.34)), 123_456_789_012.34);
        // Sums of decimals are exact: 0.1 + 0.2 is 0.3 here.
        let mut a = row(&[0.1]);
        a.plus_equals(&row(&[0.2]));
        assert_eq!(finish(&a)[1], Cell::Float(0.3));
    }

    #[test]
    fn finishes_each_measure() {
        let agg = row(&[3.0, 1.0, 2.0, 2.0]);
        assert_eq!(
            finish(&agg),
            vec![
                Cell::Int(4),
                Cell::Float(8.0),
                Cell::Float(1.0),
                Cell::Float(3.0),
                Cell::Float(2.0),
                Cell::Int(3),
                Cell::Float(2.0),
            ]
        );
        let empty = Aggregates::empty(&kinds());
        assert!(empty.is_zero());
        assert_eq!(finish(&empty)[2], Cell::Null);
    }

    #[test]
    fn quantile_sketch_stays_within_one_percent() {
        let values: Vec<f64> = (1..=10_000).map(|i| i as f64).collect();
        let agg = row(&values);
        let Cell::Float(median) = finish(&agg)[6] else {
            panic!("no median")
        };
        let exact = values[(0.5 * (values.len() - 1) as f64) as usize];
        assert!(
            (median - exact).abs() / exact <= QUANTILE_ALPHA,
            "{median} vs {exact}"
        );
    }

    #[test]
    fn states_survive_serialization() {
        let agg = row(&(0..300).map(|i| i as f64).collect::<Vec<_>>());
        let json = serde_json::to_vec(&agg).unwrap();
        let back: Aggregates = serde_json::from_slice(&json).unwrap();
        assert_eq!(finish(&agg), finish(&back));
        assert_eq!(agg, back);
    }

    #[test]
    fn count_keeps_no_state_in_a_stored_row() {
        let kinds = kinds();
        // count, sum, min, max, avg, distinct, quantile.
        let slots = stored_slots(&kinds);
        assert_eq!(
            slots,
            [None, Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)]
        );
        let twice = [MeasureKind::Count, kinds[1].clone(), MeasureKind::Count];
        assert_eq!(stored_slots(&twice), [None, Some(0), None]);
        assert!(kinds[1..].iter().all(keeps_state));
    }

    #[test]
    fn a_typical_row_is_held_flat() {
        // What keeps a row of three measures and two short dimensions in
        // one piece: see `Fixed`, `States`, `Dims` and `Value::Str`.
        assert_eq!(std::mem::size_of::<MeasureState>(), 32);
        assert!(std::mem::size_of::<Aggregates>() <= 8 + 3 * 32 + 8);
        assert_eq!(std::mem::size_of::<crate::value::Value>(), 24);
        let key = crate::rollup::RollupKey {
            metric: 0,
            bucket: 0,
            dims: vec![
                crate::value::Value::Str("game-123".into()),
                crate::value::Value::Str("daily_login_bonus".into()),
            ]
            .into(),
        };
        assert!(!key.dims.spilled());
        assert!(key
            .dims
            .iter()
            .all(|d| !matches!(d, crate::value::Value::Str(s) if s.is_heap_allocated())));
        let agg = Aggregates::empty(&kinds()[..3]);
        assert!(!agg.measures.spilled());
        assert_eq!(Fixed::from(-5i128).get(), -5);
        assert_eq!(Fixed::from(i128::MIN).get(), i128::MIN);
        assert!(Fixed::from(-1i128) < Fixed::from(0i128));
        assert!(Fixed::from(1i128 << 64) > Fixed::from(u64::MAX as i128));
    }

    #[test]
    fn a_query_group_turns_to_registers_when_its_sketch_does() {
        let distinct = |texts: std::ops::Range<usize>| {
            let mut state = MeasureState::empty(&kinds()[5]);
            for i in texts {
                state.add_text(&format!("user-{i}"));
            }
            state
        };
        let estimate = |state: &MeasureState| match state.finish(&kinds()[5], 0) {
            Cell::Int(n) => n,
            other => panic!("not an estimate: {other:?}"),
        };
        let mut group = distinct(0..0);
        let mut stored = distinct(0..0);
        // Rows of four values each: the group holds them as values up to
        // 128, as registers after.
        for row in 0..100 {
            let rows = distinct(row * 4..row * 4 + 4);
            group.merge_query(&rows);
            stored.merge(&rows);
            let registers = matches!(group, MeasureState::Registers(_));
            assert_eq!(registers, row * 4 + 4 > 128, "after {} values", row * 4 + 4);
            assert!(estimate(&group).abs_diff(estimate(&stored)) <= 1);
        }
        // Registers merge into a group of values, and a group into registers.
        let mut small = distinct(1_000..1_010);
        small.merge_query(&group);
        stored.merge(&distinct(1_000..1_010));
        let mut other = group.clone();
        other.merge_query(&distinct(1_000..1_010));
        for state in [small, other] {
            assert!(matches!(state, MeasureState::Registers(_)));
            assert!(estimate(&state).abs_diff(estimate(&stored)) <= 1);
        }
    }
}
