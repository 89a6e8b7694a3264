//! A validated query, as the engine runs it, and its answer. Parsing and
//! validation of JSON/EDN requests live in `statflow-runtime`; every query
//! that reaches a worker has passed them.

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// A validated query against one metric. Crosses process boundaries, so it
/// is plain data: indices into the plan, milliseconds, strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Index of the metric in `Plan::metrics`.
    pub metric: usize,
    /// Start of the time window, inclusive, in milliseconds since the epoch.
    pub from_ms: i64,
    /// End of the time window, exclusive, in milliseconds since the epoch.
    pub to_ms: i64,
    /// Keep only groups whose dimensions satisfy this.
    pub filter: Option<Filter>,
    /// The keys rows are grouped by, in the order of the answer's columns.
    pub group_by: Vec<GroupKey>,
    /// Bucket length for `__time`, a multiple of the metric's window step.
    /// `None` means the window step.
    pub granularity_ms: Option<u64>,
    /// Time zone for day and week buckets and for printed times: an IANA
    /// name (`Asia/Shanghai`) or a fixed offset (`+08:00`). `None` is UTC.
    pub time_zone: Option<String>,
    /// Indices into the metric's measures, in the order of the answer's columns.
    pub measures: Vec<usize>,
    /// Sort keys, applied after merging.
    pub order_by: Vec<OrderBy>,
    /// At most this many rows.
    pub limit: Option<usize>,
    /// Read the metric's late rows (events set aside beyond the lateness
    /// bound) instead of its rows.
    pub late: bool,
}

/// A key rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupKey {
    /// The dimension with this index in the metric.
    Dimension(usize),
    /// The time bucket (`__time`) at the query's granularity.
    Time,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderBy {
    /// What to sort by.
    pub column: Column,
    /// Largest first.
    pub desc: bool,
}

/// A column of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Column {
    /// A group-by key.
    Key(GroupKey),
    /// The measure with this index in the metric.
    Measure(usize),
}

/// A filter on dimension values (by index into the metric's dimensions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Filter {
    /// Equal to the value.
    Eq(usize, Value),
    /// One of the values.
    In(usize, Vec<Value>),
    /// The whole text value matches the regular expression (already checked to compile).
    Regex(usize, String),
    /// A numeric range; each bound is optional.
    Range {
        /// The dimension.
        dimension: usize,
        /// Greater than or equal.
        gte: Option<f64>,
        /// Greater than.
        gt: Option<f64>,
        /// Less than.
        lt: Option<f64>,
        /// Less than or equal.
        lte: Option<f64>,
    },
    /// Does not hold.
    Not(Box<Filter>),
    /// All hold.
    And(Vec<Filter>),
    /// Any holds.
    Or(Vec<Filter>),
}

/// What a query's answer reflects.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AsOf {
    /// Every event ingested in epochs up to and including this one is counted.
    pub epoch: u64,
    /// The lowest watermark of the metric's sources, in milliseconds since
    /// the epoch; `None` before any event.
    pub watermark_ms: Option<i64>,
    /// Each source the metric reads: its watermark and the metric's late events from it.
    pub sources: Vec<SourceMark>,
    /// The metric keeps buckets from here on (its watermark minus its
    /// retention); older ones are evicted. `None` before any event.
    pub retained_from_ms: Option<i64>,
    /// Sentences about what the answer does not cover, such as time past
    /// the metric's retention.
    pub notes: Vec<String>,
}

/// One source of a metric, as an answer reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SourceMark {
    /// The source's name.
    pub source: String,
    /// Its watermark (see [`crate::watermark`]), in milliseconds.
    pub watermark_ms: Option<i64>,
    /// Events from it that were late for the metric, set aside in the
    /// metric's late rows, over every worker.
    pub late: u64,
}

/// One cell of an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    /// No value (an empty group's min, a missing dimension).
    Null,
    /// A dimension value.
    Value(Value),
    /// A bucket start, in milliseconds since the epoch (printed in the query's time zone).
    Time(i64),
    /// A count or distinct count.
    Int(i64),
    /// A sum, min, max, average or quantile.
    Float(f64),
}

/// A query's answer before rendering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// What the answer reflects.
    pub as_of: AsOf,
    /// Column names: group keys, then measures.
    pub columns: Vec<String>,
    /// Rows, each with one cell per column.
    pub rows: Vec<Vec<Cell>>,
}
