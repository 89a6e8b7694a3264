//! From a decoded event to rollup updates: a source's metrics compiled
//! against its field selector — filters, dimensions, measure inputs, panes.

use std::collections::HashMap;
use std::fmt::Write as _;

use regex::Regex;
use serde::{Deserialize, Serialize};
use statflow_dsl::{
    Comparison, FieldPath, FieldType, Literal, MeasureKind, MetricPlan, Plan, Predicate,
    SourcePlan, TimeEncoding, Window,
};

use crate::aggregate::{keeps_state, Aggregates};
use crate::decode::{Scalar, Selector};
use crate::session::empty_row;
use crate::value::Value;

/// The key of one rollup row: a metric, a pane start and the group's
/// dimension values. Ordered by metric, then time, so that a query's time
/// range is one contiguous run of keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RollupKey {
    /// Index of the metric in the plan.
    pub metric: u32,
    /// Start of the pane, in milliseconds since the epoch.
    pub bucket: i64,
    /// The dimension values, in the metric's order.
    pub dims: Dims,
}

/// The metric, then the bucket (its sign bit flipped, so that it orders as
/// unsigned), as the derived order compares them first; then the first two
/// dimension values as far as 64 bits each tell their order
/// ([`Value::sort_segment`]). A minute holds hundreds of groups, which the
/// metric and bucket alone leave to whole-key comparisons.
impl crate::chunker::SortPrefix for RollupKey {
    fn sort_prefix(&self) -> crate::chunker::Prefix {
        let head = (u128::from(self.metric) << 64) | u128::from((self.bucket as u64) ^ (1 << 63));
        let mut dims = 0u128;
        for (i, value) in self.dims.iter().take(2).enumerate() {
            let (segment, exact) = value.sort_segment();
            dims |= u128::from(segment) << (64 * (1 - i));
            // Past a value its segment does not pin down, the next value's
            // order means nothing: two keys tied so far are compared whole.
            if !exact {
                break;
            }
        }
        (head, dims)
    }
}

/// A row's dimension values: up to two held in the key itself, so that a
/// typical key (and its strings, see [`Value::Str`]) is copied, compared and
/// stored without a heap allocation. Hashes, orders and serializes as a
/// `Vec<Value>` would.
pub type Dims = smallvec::SmallVec<[Value; 2]>;

/// One epoch's rows on one worker, before they are handed to the arrangement.
///
/// Hashed with foldhash rather than SipHash: every counted event looks its
/// row up here, and foldhash is several times cheaper on short keys. Its
/// per-map random seed means colliding keys cannot be chosen in advance,
/// and a map lives for one epoch only.
pub type EpochRows = HashMap<RollupKey, Aggregates, foldhash::fast::RandomState>;

/// Buffers [`SourceDecoder::decode_into`] reuses from one record to the
/// next, so that counting an event into an existing row allocates nothing.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The key of the row an event counts in, rebuilt in place for every
    /// event and metric: its strings keep their allocations, and it is
    /// cloned only when it starts a new row.
    key: RollupKey,
    /// A number given to `distinct`, as text (the sketch hashes text).
    text: String,
    /// The metrics (plan indices) the last record counted in.
    pub counted: Vec<u32>,
}

/// What a counted record was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Its event time, in milliseconds since the epoch.
    pub ts: i64,
    /// It was late: counted in its metrics' late rows, not their rows.
    pub late: bool,
}

/// Why a record could not be counted. The record is dead-lettered with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes are not one JSON object.
    #[error("not a JSON object: {0}")]
    Json(String),
    /// The event-time field is absent.
    #[error("missing time field `{0}`")]
    MissingTime(String),
    /// The event-time field cannot be read in the declared encoding.
    #[error("time field `{field}` is {found}, expected {expected}")]
    BadTime {
        /// The field.
        field: String,
        /// What it held.
        found: String,
        /// What the encoding needs.
        expected: &'static str,
    },
    /// A field holds a value of the wrong type.
    #[error("field `{field}` is {found}, expected {expected}")]
    WrongType {
        /// The field.
        field: String,
        /// What it held.
        found: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

/// Everything needed to turn one source's records into rollup updates.
pub struct SourceDecoder {
    selector: Selector,
    time_slot: usize,
    time_path: String,
    encoding: TimeEncoding,
    /// Declared types to enforce, by slot.
    declared: Vec<(usize, FieldType)>,
    metrics: Vec<CompiledMetric>,
}

struct CompiledMetric {
    index: u32,
    step: i64,
    filter: Option<Compiled>,
    dims: Vec<usize>,
    measures: Vec<(MeasureKind, Option<usize>)>,
    /// A session window's gap (milliseconds) and the slot of its `by` field.
    session: Option<(i64, usize)>,
}

enum Compiled {
    Compare(usize, Comparison, Literal),
    In(usize, Vec<Literal>),
    Matches(usize, Regex),
    Exists(usize),
    And(Vec<Compiled>),
    Or(Vec<Compiled>),
    Not(Box<Compiled>),
}

impl SourceDecoder {
    /// Compiles the metrics of `plan` that read `source`.
    pub fn new(plan: &Plan, source: &SourcePlan) -> Self {
        let mut selector = Selector::new();
        let time_slot = selector.add(&source.time.path);
        let mut metrics = Vec::new();
        for (index, metric) in plan.metrics.iter().enumerate() {
            if metric.sources.iter().any(|s| s == &source.name) {
                metrics.push(CompiledMetric::new(index as u32, metric, &mut selector));
            }
        }
        let declared = source
            .fields
            .iter()
            .filter_map(|(path, ty)| selector.slot_of(path).map(|slot| (slot, *ty)))
            .filter(|(slot, _)| *slot != time_slot)
            .collect();
        SourceDecoder {
            selector,
            time_slot,
            time_path: source.time.path.to_string(),
            encoding: source.time.encoding,
            declared,
            metrics,
        }
    }

    /// True when no metric reads this source.
    pub fn is_unused(&self) -> bool {
        self.metrics.is_empty()
    }

    /// Decodes one record and adds it to the row of every metric whose
    /// `where` it passes. An event older than `late_before` is late: it is
    /// added to the metrics' late rows instead (metric index plus the number
    /// of metrics). On error nothing is added. `scratch.counted` lists the
    /// metrics it counted in.
    pub fn decode_into(
        &self,
        record: &[u8],
        late_before: i64,
        scratch: &mut Scratch,
        rows: &mut EpochRows,
        plan: &Plan,
    ) -> Result<Decoded, RecordError> {
        // The fields borrow the record, so they live for this call only: on
        // the stack in an array just large enough (each of its slots is
        // cleared and dropped with every record), or on the heap past 16.
        scratch.counted.clear();
        let n = self.selector.len();
        match n {
            0..=8 => {
                let mut slots: [Option<Scalar<'_>>; 8] = Default::default();
                self.decode_slots(record, late_before, &mut slots[..n], scratch, rows, plan)
            }
            9..=16 => {
                let mut slots: [Option<Scalar<'_>>; 16] = Default::default();
                self.decode_slots(record, late_before, &mut slots[..n], scratch, rows, plan)
            }
            _ => {
                let mut slots: Vec<Option<Scalar<'_>>> = (0..n).map(|_| None).collect();
                self.decode_slots(record, late_before, &mut slots, scratch, rows, plan)
            }
        }
    }

    fn decode_slots<'a>(
        &self,
        record: &'a [u8],
        late_before: i64,
        slots: &mut [Option<Scalar<'a>>],
        scratch: &mut Scratch,
        rows: &mut EpochRows,
        plan: &Plan,
    ) -> Result<Decoded, RecordError> {
        self.selector
            .extract_into(record, slots)
            .map_err(RecordError::Json)?;
        let ts = self.event_time(slots[self.time_slot].as_ref())?;
        for (slot, ty) in &self.declared {
            if let Some(value) = &slots[*slot] {
                check_type(value, *ty, self.selector.path(*slot))?;
            }
        }
        // The metrics whose `where` the event passes; their numeric measures
        // need numbers, checked before anything is counted.
        for (i, metric) in self.metrics.iter().enumerate() {
            if metric.filter.as_ref().is_some_and(|f| !f.eval(slots)) {
                continue;
            }
            // An event with no `by` value belongs to no session.
            if let Some((_, by)) = metric.session {
                if matches!(slots[by], None | Some(Scalar::Null) | Some(Scalar::Complex)) {
                    continue;
                }
            }
            for (kind, slot) in &metric.measures {
                let numeric = !matches!(kind, MeasureKind::Count | MeasureKind::Distinct { .. });
                if let (true, Some(slot)) = (numeric, slot) {
                    match &slots[*slot] {
                        None | Some(Scalar::Null) | Some(Scalar::Int(_)) => {}
                        Some(Scalar::Float(f)) if f.is_finite() => {}
                        Some(other) => {
                            scratch.counted.clear();
                            return Err(RecordError::WrongType {
                                field: self.selector.path(*slot).to_string(),
                                found: other.kind(),
                                expected: "a number",
                            });
                        }
                    }
                }
            }
            scratch.counted.push(i as u32);
        }
        let late = ts < late_before;
        let late_offset = if late { plan.metrics.len() as u32 } else { 0 };
        for i in 0..scratch.counted.len() {
            let metric = &self.metrics[scratch.counted[i] as usize];
            // The row is looked up with a key built in the scratch buffer and
            // copied only when the row is new (most events land in an existing row).
            let key = &mut scratch.key;
            key.metric = metric.index + late_offset;
            key.bucket = ts.div_euclid(metric.step) * metric.step;
            if key.dims.len() != metric.dims.len() {
                key.dims.resize(metric.dims.len(), Value::Null);
            }
            for (value, slot) in key.dims.iter_mut().zip(&metric.dims) {
                set_value(value, slots[*slot].as_ref());
            }
            // An on-time event of a session metric is a piece of a session:
            // its row is keyed by the gap-long slot holding it and its `by`
            // value too (see `crate::session`). A late one counts in the
            // late rows like any other.
            if let (Some((gap, by)), false) = (metric.session, late) {
                key.bucket = ts.div_euclid(gap) * gap;
                key.dims.push(Value::Null);
                if let Some(value) = key.dims.last_mut() {
                    set_value(value, slots[by].as_ref());
                }
            }
            match rows.get_mut(&*key) {
                Some(row) => metric.add(row, ts, slots, &mut scratch.text),
                None => {
                    let mut row = empty_row(&plan.metrics[metric.index as usize]);
                    metric.add(&mut row, ts, slots, &mut scratch.text);
                    rows.insert(key.clone(), row);
                }
            }
        }
        // From positions among this source's metrics to plan indices.
        for c in scratch.counted.iter_mut() {
            *c = self.metrics[*c as usize].index;
        }
        Ok(Decoded { ts, late })
    }

    fn event_time(&self, value: Option<&Scalar<'_>>) -> Result<i64, RecordError> {
        let bad = |found: &Scalar<'_>, expected: &'static str| RecordError::BadTime {
            field: self.time_path.clone(),
            found: match found {
                Scalar::Str(s) => format!("\"{}\"", s.chars().take(40).collect::<String>()),
                other => other.kind().to_string(),
            },
            expected,
        };
        let value = match value {
            None | Some(Scalar::Null) => {
                return Err(RecordError::MissingTime(self.time_path.clone()))
            }
            Some(v) => v,
        };
        let ms = match (self.encoding, value) {
            (TimeEncoding::EpochMillis, Scalar::Int(i)) => Some(*i),
            (TimeEncoding::EpochMillis, Scalar::Float(f)) => Some(f.round() as i64),
            (TimeEncoding::EpochSeconds, Scalar::Int(i)) => i.checked_mul(1000),
            (TimeEncoding::EpochSeconds, Scalar::Float(f)) => Some((f * 1000.0).round() as i64),
            (TimeEncoding::Rfc3339, Scalar::Str(s)) => statflow_dsl::check::parse_rfc3339_millis(s),
            _ => None,
        };
        let expected = match self.encoding {
            TimeEncoding::EpochMillis => "milliseconds since the epoch",
            TimeEncoding::EpochSeconds => "seconds since the epoch",
            TimeEncoding::Rfc3339 => "an RFC 3339 time",
        };
        // Times outside ±100,000 years are certainly mistakes and would overflow bucket math.
        match ms {
            Some(ms) if ms.abs() < 3_155_760_000_000_000 => Ok(ms),
            _ => Err(bad(value, expected)),
        }
    }
}

fn check_type(value: &Scalar<'_>, ty: FieldType, path: &FieldPath) -> Result<(), RecordError> {
    let ok = matches!(
        (ty, value),
        (_, Scalar::Null)
            | (FieldType::String, Scalar::Str(_))
            | (FieldType::Number, Scalar::Int(_) | Scalar::Float(_))
            | (FieldType::Bool, Scalar::Bool(_))
            | (
                FieldType::Time,
                Scalar::Str(_) | Scalar::Int(_) | Scalar::Float(_)
            )
    );
    if ok {
        Ok(())
    } else {
        Err(RecordError::WrongType {
            field: path.to_string(),
            found: value.kind(),
            expected: match ty {
                FieldType::String => "a string",
                FieldType::Number => "a number",
                FieldType::Bool => "a boolean",
                FieldType::Time => "a time",
            },
        })
    }
}

/// Overwrites `target` with the dimension value of a decoded field, reusing
/// its string's allocation when both are text.
fn set_value(target: &mut Value, scalar: Option<&Scalar<'_>>) {
    if let (Value::Str(text), Some(Scalar::Str(s))) = (&mut *target, scalar) {
        text.clear();
        text.push_str(s);
        return;
    }
    *target = to_value(scalar);
}

/// `value` as its `Display` writes it, in `buf`: the text `distinct` counts
/// for a number, the same as `value.to_string()` without a new allocation.
fn text_of(buf: &mut String, value: impl std::fmt::Display) -> &str {
    buf.clear();
    // Writing to a String cannot fail.
    let _ = write!(buf, "{value}");
    buf
}

/// A dimension value from a decoded field; absent, null and nested values are `Null`.
fn to_value(scalar: Option<&Scalar<'_>>) -> Value {
    match scalar {
        None | Some(Scalar::Null) | Some(Scalar::Complex) => Value::Null,
        Some(Scalar::Bool(b)) => Value::Bool(*b),
        Some(Scalar::Int(i)) => Value::Int(*i),
        Some(Scalar::Float(f)) => Value::number(*f),
        Some(Scalar::Str(s)) => Value::Str(s.as_ref().into()),
    }
}

impl CompiledMetric {
    fn new(index: u32, metric: &MetricPlan, selector: &mut Selector) -> Self {
        CompiledMetric {
            index,
            step: metric.window.step().millis().max(1) as i64,
            filter: metric.filter.as_ref().map(|p| Compiled::new(p, selector)),
            dims: metric
                .dimensions
                .iter()
                .map(|d| selector.add(&d.path))
                .collect(),
            // In the order of a stored row's states (see `Aggregates`).
            measures: metric
                .measures
                .iter()
                .filter(|m| keeps_state(&m.kind))
                .map(|m| (m.kind.clone(), m.kind.field().map(|f| selector.add(f))))
                .collect(),
            session: match &metric.window {
                Window::Session { gap, by } => Some((gap.millis().max(1) as i64, selector.add(by))),
                _ => None,
            },
        }
    }
}

impl CompiledMetric {
    /// Counts one event at `ts`, whose fields are `slots`, into `row`.
    fn add(&self, row: &mut Aggregates, ts: i64, slots: &[Option<Scalar<'_>>], text: &mut String) {
        row.count += 1;
        if self.session.is_some() {
            if let Some(span) = row.measures.last_mut() {
                span.add_time(ts);
            }
        }
        for ((kind, slot), state) in self.measures.iter().zip(row.measures.iter_mut()) {
            let Some(slot) = slot else { continue };
            // Only `distinct` reads text; formatting a number for the others
            // would cost an allocation per event for nothing.
            let distinct = matches!(kind, MeasureKind::Distinct { .. });
            match &slots[*slot] {
                None | Some(Scalar::Null) | Some(Scalar::Complex) => {}
                Some(Scalar::Str(s)) => state.add_text(s),
                Some(Scalar::Int(i)) => {
                    state.add_number(*i as f64);
                    if distinct {
                        state.add_text(text_of(text, i));
                    }
                }
                Some(Scalar::Float(f)) => {
                    state.add_number(*f);
                    if distinct {
                        state.add_text(text_of(text, f));
                    }
                }
                Some(Scalar::Bool(b)) => state.add_text(if *b { "true" } else { "false" }),
            }
        }
    }
}

impl Compiled {
    fn new(p: &Predicate, selector: &mut Selector) -> Self {
        match p {
            Predicate::Compare { field, cmp, value } => {
                Compiled::Compare(selector.add(field), *cmp, value.clone())
            }
            Predicate::In { field, values } => Compiled::In(selector.add(field), values.clone()),
            Predicate::Matches { field, pattern } => {
                // The checker compiled this pattern already; an anchored copy cannot fail
                // where the original did not, but fall back to matching nothing.
                let regex =
                    Regex::new(&format!("^(?:{pattern})$")).unwrap_or_else(|_| never_matches());
                Compiled::Matches(selector.add(field), regex)
            }
            Predicate::Exists { field } => Compiled::Exists(selector.add(field)),
            Predicate::And { all } => {
                Compiled::And(all.iter().map(|p| Compiled::new(p, selector)).collect())
            }
            Predicate::Or { any } => {
                Compiled::Or(any.iter().map(|p| Compiled::new(p, selector)).collect())
            }
            Predicate::Not { not } => Compiled::Not(Box::new(Compiled::new(not, selector))),
        }
    }

    /// A missing field never satisfies a comparison, `in` or a match.
    fn eval(&self, slots: &[Option<Scalar<'_>>]) -> bool {
        match self {
            Compiled::Compare(slot, cmp, lit) => match &slots[*slot] {
                None | Some(Scalar::Null) => false,
                Some(v) => compare(v, *cmp, lit),
            },
            Compiled::In(slot, values) => match &slots[*slot] {
                None | Some(Scalar::Null) => false,
                Some(v) => values.iter().any(|lit| compare(v, Comparison::Eq, lit)),
            },
            Compiled::Matches(slot, regex) => match &slots[*slot] {
                Some(Scalar::Str(s)) => regex.is_match(s),
                Some(Scalar::Int(i)) => regex.is_match(&i.to_string()),
                Some(Scalar::Float(f)) => regex.is_match(&f.to_string()),
                Some(Scalar::Bool(b)) => regex.is_match(if *b { "true" } else { "false" }),
                _ => false,
            },
            Compiled::Exists(slot) => !matches!(slots[*slot], None | Some(Scalar::Null)),
            Compiled::And(all) => all.iter().all(|c| c.eval(slots)),
            Compiled::Or(any) => any.iter().any(|c| c.eval(slots)),
            Compiled::Not(inner) => !inner.eval(slots),
        }
    }
}

fn never_matches() -> Regex {
    Regex::new("[^\\s\\S]").expect("a constant regex")
}

fn compare(value: &Scalar<'_>, cmp: Comparison, lit: &Literal) -> bool {
    use std::cmp::Ordering;
    // Most `where`s test text for equality, which differing lengths settle
    // without comparing bytes.
    if let (Scalar::Str(s), Literal::String(l), Comparison::Eq | Comparison::Ne) = (value, lit, cmp)
    {
        return (s.as_ref() == l.as_str()) == (cmp == Comparison::Eq);
    }
    let ordering: Option<Ordering> = match (value, lit) {
        (Scalar::Str(s), Literal::String(l)) => Some(s.as_ref().cmp(l.as_str())),
        (Scalar::Int(_) | Scalar::Float(_), Literal::Number(l)) => {
            value.as_f64().and_then(|v| v.partial_cmp(l))
        }
        (Scalar::Bool(b), Literal::Bool(l)) => Some(b.cmp(l)),
        _ => None,
    };
    match ordering {
        // Values of another type are unequal to the literal and unordered with it.
        None => cmp == Comparison::Ne,
        Some(o) => cmp.holds(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(text: &str) -> (Plan, SourceDecoder) {
        let compiled = statflow_dsl::compile(text, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        let plan = compiled.plan.unwrap();
        let d = SourceDecoder::new(&plan, &plan.sources[0]);
        (plan, d)
    }

    #[test]
    fn text_compares_with_a_literal_as_it_orders() {
        let all = [
            Comparison::Eq,
            Comparison::Ne,
            Comparison::Lt,
            Comparison::Le,
            Comparison::Gt,
            Comparison::Ge,
        ];
        let texts = ["", "reward", "rewarc", "rewards", "rew", "bet", "é"];
        for (a, b) in texts.iter().flat_map(|a| texts.iter().map(move |b| (a, b))) {
            let value = Scalar::Str(std::borrow::Cow::Borrowed(a));
            let lit = Literal::String(b.to_string());
            for cmp in all {
                let expected = cmp.holds(a.cmp(b));
                assert_eq!(compare(&value, cmp, &lit), expected, "{a:?} {cmp:?} {b:?}");
            }
            // Text is unequal to a number and unordered with it.
            let number = Literal::Number(1.0);
            for cmp in all {
                assert_eq!(compare(&value, cmp, &number), cmp == Comparison::Ne);
            }
        }
    }

    const TOPO: &str = r#"
        source s = file("x.jsonl") { time = ts as epoch_millis }
        metric m from s {
          where kind = "reward" and (amount >= 10 or tag =~ "v.*") and not (skip exists)
          dimensions game, user.id as user
          window tumbling 1m
          measures { n = count()  total = sum(amount)  users = distinct(user.id) }
        }
    "#;

    #[test]
    fn decodes_filters_and_keys_events() {
        let (plan, d) = decoder(TOPO);
        let mut rows = EpochRows::default();
        let mut scratch = Scratch::default();
        let records: [&[u8]; 5] = [
            br#"{"ts": 60001, "kind": "reward", "amount": 12.5, "game": "g1", "user": {"id": "u1"}}"#,
            br#"{"ts": 61000, "kind": "reward", "amount": 1, "tag": "vip", "game": "g1", "user": {"id": "u2"}}"#,
            br#"{"ts": 62000, "kind": "reward", "amount": 1, "game": "g1", "user": {"id": "u3"}}"#,
            br#"{"ts": 63000, "kind": "bet", "amount": 100, "game": "g1"}"#,
            br#"{"ts": 64000, "kind": "reward", "amount": 50, "skip": 1, "game": "g1"}"#,
        ];
        for r in records {
            d.decode_into(r, i64::MIN, &mut scratch, &mut rows, &plan)
                .unwrap();
        }
        // Only the first two pass the filter; they differ in user, so two rows.
        assert_eq!(rows.len(), 2);
        let total: i64 = rows.values().map(|a| a.count).sum();
        assert_eq!(total, 2);
        assert!(rows
            .keys()
            .all(|k| k.bucket == 60_000 && k.dims[0] == Value::Str("g1".into())));
    }

    #[test]
    fn reports_bad_records_without_counting_them() {
        let (plan, d) = decoder(TOPO);
        let mut rows = EpochRows::default();
        let mut scratch = Scratch::default();
        let bad: [(&[u8], &str); 4] = [
            (b"{not json", "not a JSON object"),
            (br#"{"kind": "reward"}"#, "missing time field `ts`"),
            (
                br#"{"ts": "yesterday", "kind": "reward"}"#,
                "time field `ts` is \"yesterday\"",
            ),
            (
                br#"{"ts": 1, "kind": "reward", "amount": "ten", "tag": "vip"}"#,
                "field `amount` is a string, expected a number",
            ),
        ];
        for (record, reason) in bad {
            let e = d
                .decode_into(record, i64::MIN, &mut scratch, &mut rows, &plan)
                .unwrap_err();
            assert!(e.to_string().contains(reason), "{e} should say {reason}");
        }
        assert!(rows.is_empty());
        // A bad amount in an event no metric counts (a bet here) is no error.
        let bet = br#"{"ts": 1, "kind": "bet", "amount": "ten"}"#;
        let decoded = d.decode_into(bet, i64::MIN, &mut scratch, &mut rows, &plan);
        assert_eq!(decoded, Ok(Decoded { ts: 1, late: false }));
        assert!(rows.is_empty() && scratch.counted.is_empty());
    }

    #[test]
    fn every_field_is_read_however_many_a_source_reads() {
        // Fields on the stack (up to 8, up to 16) and on the heap (past 16).
        for n in [2, 8, 9, 16, 17, 30] {
            let names: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
            let text = format!(
                "source s = file(\"x.jsonl\") {{ time = ts as epoch_millis }}\n\
                 metric m from s {{ dimensions {} window tumbling 1m measures {{ n = count() }} }}",
                names.join(", ")
            );
            let (plan, d) = decoder(&text);
            let fields: Vec<String> = names.iter().map(|f| format!(r#""{f}": "{f}-v""#)).collect();
            let record = format!(r#"{{"ts": 60001, {}}}"#, fields.join(", "));
            let mut rows = EpochRows::default();
            let mut scratch = Scratch::default();
            d.decode_into(record.as_bytes(), i64::MIN, &mut scratch, &mut rows, &plan)
                .unwrap();
            let key = rows.keys().next().expect("one row");
            let want: Vec<Value> = names
                .iter()
                .map(|f| Value::Str(format!("{f}-v").into()))
                .collect();
            assert_eq!(key.dims.to_vec(), want, "{n} dimensions");
        }
    }

    #[test]
    fn late_events_go_to_the_late_rows() {
        let (plan, d) = decoder(TOPO);
        let mut rows = EpochRows::default();
        let mut scratch = Scratch::default();
        let event = br#"{"ts": 60001, "kind": "reward", "amount": 12.5, "game": "g1", "user": {"id": "u1"}}"#;
        let decoded = d.decode_into(event, 60_002, &mut scratch, &mut rows, &plan);
        assert_eq!(
            decoded,
            Ok(Decoded {
                ts: 60_001,
                late: true
            })
        );
        assert_eq!(scratch.counted, vec![0]);
        let keys: Vec<u32> = rows.keys().map(|k| k.metric).collect();
        assert_eq!(keys, vec![plan.metrics.len() as u32]);
        // At the bound itself the event is on time.
        d.decode_into(event, 60_001, &mut scratch, &mut rows, &plan)
            .unwrap();
        assert!(rows.keys().any(|k| k.metric == 0));
    }
}
