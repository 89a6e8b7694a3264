//! `Plan`: the checked, serializable description of a topology. It is the
//! contract between the language and the engine; nothing downstream
//! re-reads topology text.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// A checked topology: its sources and its metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Every source, in the order declared.
    pub sources: Vec<SourcePlan>,
    /// Every metric, in the order declared.
    pub metrics: Vec<MetricPlan>,
}

impl Plan {
    /// The source called `name`.
    pub fn source(&self, name: &str) -> Option<&SourcePlan> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The metric called `name`.
    pub fn metric(&self, name: &str) -> Option<&MetricPlan> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// A dotted path into an event, such as `payload.user.id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldPath(pub Vec<String>);

impl FieldPath {
    /// A path from its dotted form.
    pub fn parse(dotted: &str) -> Self {
        FieldPath(dotted.split('.').map(str::to_string).collect())
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// The type of a declared field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Text.
    String,
    /// An integer or a decimal number.
    Number,
    /// `true` or `false`.
    Bool,
    /// A point in time (in the source's time encoding).
    Time,
}

impl FieldType {
    /// The type's keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Bool => "bool",
            FieldType::Time => "time",
        }
    }
}

/// A source of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcePlan {
    /// The source's name.
    pub name: String,
    /// Where its events come from.
    pub kind: SourceKind,
    /// How records are decoded.
    pub format: Format,
    /// The field holding event time, and how it is written.
    pub time: TimeField,
    /// How far behind the watermark an event may arrive and still restate its bucket.
    pub late: Duration,
    /// Declared fields and their types; empty when none were declared.
    #[serde(with = "field_list")]
    pub fields: BTreeMap<FieldPath, FieldType>,
}

/// Declared fields serialize as a list of `{"path": [...], "type": ...}`:
/// JSON object keys must be strings, so the map itself cannot be written
/// (`explain --format json` failed on every source with fields), and a
/// dotted key would be ambiguous for a backquoted name holding a dot.
mod field_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{FieldPath, FieldType};

    #[derive(Serialize)]
    struct EntryRef<'a> {
        path: &'a FieldPath,
        #[serde(rename = "type")]
        ty: FieldType,
    }

    #[derive(Deserialize)]
    struct Entry {
        path: FieldPath,
        #[serde(rename = "type")]
        ty: FieldType,
    }

    pub fn serialize<S: Serializer>(
        fields: &BTreeMap<FieldPath, FieldType>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(fields.iter().map(|(path, ty)| EntryRef { path, ty: *ty }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<FieldPath, FieldType>, D::Error> {
        let entries = Vec::<Entry>::deserialize(deserializer)?;
        Ok(entries.into_iter().map(|e| (e.path, e.ty)).collect())
    }
}

/// Where a source reads from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SourceKind {
    /// Kafka topics.
    Kafka(KafkaSource),
    /// A file of JSON lines.
    File(FileSource),
    /// The built-in generator of synthetic game events.
    Generator(GeneratorSource),
    /// statflow's own telemetry: one event per worker and source every
    /// second, and one per query (see `TELEMETRY_FIELDS`).
    Telemetry,
}

impl SourceKind {
    /// The kind's keyword in the language.
    pub fn keyword(&self) -> &'static str {
        match self {
            SourceKind::Kafka(_) => "kafka",
            SourceKind::File(_) => "file",
            SourceKind::Generator(_) => "generator",
            SourceKind::Telemetry => "telemetry",
        }
    }
}

/// A Kafka source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KafkaSource {
    /// Which topics to read.
    pub topics: Topics,
    /// Bootstrap brokers; empty means "from the command line or environment".
    pub brokers: Vec<String>,
    /// Where to start when no checkpoint says otherwise.
    pub start: StartPosition,
    /// librdkafka client settings passed through as they are.
    pub settings: BTreeMap<String, String>,
    /// A topic (on the same brokers) that receives this source's dead
    /// letters, besides the dead-letter file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<String>,
}

/// Which Kafka topics a source reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topics {
    /// These topics.
    Names(Vec<String>),
    /// Every topic whose whole name matches this regular expression.
    Pattern(String),
}

/// Where a Kafka source starts reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// The oldest retained message.
    Earliest,
    /// Only messages produced after start.
    Latest,
    /// The first message at or after this time, in milliseconds since the Unix epoch.
    Timestamp(i64),
}

/// A file source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileSource {
    /// The path, already resolved against the topology file's folder.
    pub path: String,
}

/// The built-in generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorSource {
    /// Events per second, over all workers.
    pub rate: u64,
    /// Seed of the pseudo-random sequence; the same seed gives the same events.
    pub seed: u64,
    /// Stop after this many events; `None` runs forever.
    pub events: Option<u64>,
    /// How many distinct games.
    pub games: u64,
    /// How many distinct users.
    pub users: u64,
}

/// How records are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per record.
    Json,
}

/// The event-time field of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeField {
    /// The field.
    pub path: FieldPath,
    /// How it is written.
    pub encoding: TimeEncoding,
}

/// How an event time is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeEncoding {
    /// Milliseconds since the Unix epoch, as a number.
    EpochMillis,
    /// Seconds since the Unix epoch, as a number (decimals allowed).
    EpochSeconds,
    /// An RFC 3339 string such as `2024-08-20T09:00:00+08:00`.
    Rfc3339,
}

impl TimeEncoding {
    /// The encoding's keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            TimeEncoding::EpochMillis => "epoch_millis",
            TimeEncoding::EpochSeconds => "epoch_seconds",
            TimeEncoding::Rfc3339 => "rfc3339",
        }
    }
}

/// A metric: windowed rollups of one or more sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPlan {
    /// The metric's name.
    pub name: String,
    /// The sources it reads (names from `Plan::sources`).
    pub sources: Vec<String>,
    /// Events must satisfy this to be counted; `None` keeps every event.
    pub filter: Option<Predicate>,
    /// The dimensions rows are grouped by, in order.
    pub dimensions: Vec<Dimension>,
    /// How events are assigned to time buckets.
    pub window: Window,
    /// How long buckets are kept, measured back from the watermark.
    pub retain: Duration,
    /// The measures kept for every bucket and group.
    pub measures: Vec<Measure>,
}

impl MetricPlan {
    /// The dimension called `name`.
    pub fn dimension(&self, name: &str) -> Option<&Dimension> {
        self.dimensions.iter().find(|d| d.name == name)
    }

    /// The measure called `name`.
    pub fn measure(&self, name: &str) -> Option<&Measure> {
        self.measures.iter().find(|m| m.name == name)
    }
}

/// A dimension: a field whose values split rows into groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimension {
    /// The name queries use.
    pub name: String,
    /// The field read.
    pub path: FieldPath,
    /// The declared type, if the source declared the field.
    pub ty: Option<FieldType>,
}

/// The finest granularity at which queries group sessions by their start.
pub const SESSION_STEP: Duration = Duration::from_millis(60_000);

/// How a metric assigns events to time buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Window {
    /// Back-to-back buckets of one length.
    Tumbling {
        /// Bucket length.
        size: Duration,
    },
    /// Overlapping windows of length `size` starting every `every`.
    Hopping {
        /// Window length.
        size: Duration,
        /// Distance between window starts; divides `size`.
        every: Duration,
    },
    /// Activity sessions per value of `by`, closed after `gap` of inactivity.
    Session {
        /// Inactivity gap.
        gap: Duration,
        /// The field keying sessions.
        by: FieldPath,
    },
}

impl Window {
    /// The length of one window.
    pub fn size(&self) -> Duration {
        match self {
            Window::Tumbling { size } | Window::Hopping { size, .. } => *size,
            Window::Session { gap, .. } => *gap,
        }
    }

    /// The smallest time step at which windows start: the finest query
    /// granularity. A session starts at its first event, at any
    /// millisecond; queries group sessions by start at a whole number of
    /// minutes ([`SESSION_STEP`]), whatever the gap, so that "sessions per
    /// hour" works for a gap of 45 minutes too.
    pub fn step(&self) -> Duration {
        match self {
            Window::Tumbling { size } => *size,
            Window::Hopping { every, .. } => *every,
            Window::Session { .. } => SESSION_STEP,
        }
    }

    /// True for a session window.
    pub fn is_session(&self) -> bool {
        matches!(self, Window::Session { .. })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Window::Tumbling { size } => write!(f, "tumbling {size}"),
            Window::Hopping { size, every } => write!(f, "hopping {size} every {every}"),
            Window::Session { gap, by } => write!(f, "session {gap} by {by}"),
        }
    }
}

/// A named measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measure {
    /// The name queries use.
    pub name: String,
    /// What it computes.
    pub kind: MeasureKind,
}

/// What a measure computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "function")]
pub enum MeasureKind {
    /// Number of events.
    Count,
    /// Sum of a numeric field.
    Sum {
        /// The field.
        field: FieldPath,
    },
    /// Smallest value of a numeric field.
    Min {
        /// The field.
        field: FieldPath,
    },
    /// Largest value of a numeric field.
    Max {
        /// The field.
        field: FieldPath,
    },
    /// Mean of a numeric field.
    Avg {
        /// The field.
        field: FieldPath,
    },
    /// Approximate number of distinct values of a field.
    Distinct {
        /// The field.
        field: FieldPath,
    },
    /// Approximate `q`-quantile of a numeric field.
    Quantile {
        /// The field.
        field: FieldPath,
        /// The quantile, strictly between 0 and 1.
        q: f64,
    },
}

impl MeasureKind {
    /// The function's keyword.
    pub fn function(&self) -> &'static str {
        match self {
            MeasureKind::Count => "count",
            MeasureKind::Sum { .. } => "sum",
            MeasureKind::Min { .. } => "min",
            MeasureKind::Max { .. } => "max",
            MeasureKind::Avg { .. } => "avg",
            MeasureKind::Distinct { .. } => "distinct",
            MeasureKind::Quantile { .. } => "quantile",
        }
    }

    /// The field the measure reads, if any.
    pub fn field(&self) -> Option<&FieldPath> {
        match self {
            MeasureKind::Count => None,
            MeasureKind::Sum { field }
            | MeasureKind::Min { field }
            | MeasureKind::Max { field }
            | MeasureKind::Avg { field }
            | MeasureKind::Distinct { field }
            | MeasureKind::Quantile { field, .. } => Some(field),
        }
    }
}

impl fmt::Display for MeasureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MeasureKind::Count => write!(f, "count()"),
            MeasureKind::Quantile { field, q } => write!(f, "quantile({field}, {q})"),
            other => write!(
                f,
                "{}({})",
                other.function(),
                other.field().map(|p| p.to_string()).unwrap_or_default()
            ),
        }
    }
}

/// A literal in a predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
}

impl Comparison {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Eq => "=",
            Comparison::Ne => "!=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
        }
    }

    /// Whether a value that orders `o` against the literal passes.
    pub fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering;
        match self {
            Comparison::Eq => o == Ordering::Equal,
            Comparison::Ne => o != Ordering::Equal,
            Comparison::Lt => o == Ordering::Less,
            Comparison::Le => o != Ordering::Greater,
            Comparison::Gt => o == Ordering::Greater,
            Comparison::Ge => o != Ordering::Less,
        }
    }
}

/// A checked `where` predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Predicate {
    /// `field OP literal`; a missing field never satisfies a comparison.
    Compare {
        /// The field.
        field: FieldPath,
        /// The operator.
        cmp: Comparison,
        /// The literal.
        value: Literal,
    },
    /// `field in [...]`; a missing field is not in any list.
    In {
        /// The field.
        field: FieldPath,
        /// The values.
        values: Vec<Literal>,
    },
    /// `field =~ "regex"`, matched against the whole value.
    Matches {
        /// The field.
        field: FieldPath,
        /// The regular expression (already checked to compile).
        pattern: String,
    },
    /// `field exists`.
    Exists {
        /// The field.
        field: FieldPath,
    },
    /// Both hold.
    And {
        /// The predicates.
        all: Vec<Predicate>,
    },
    /// Either holds.
    Or {
        /// The predicates.
        any: Vec<Predicate>,
    },
    /// It does not hold.
    Not {
        /// The negated predicate.
        not: Box<Predicate>,
    },
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Predicate::Compare { field, cmp, value } => {
                write!(f, "{field} {} {value}", cmp.symbol())
            }
            Predicate::In { field, values } => {
                let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                write!(f, "{field} in [{}]", values.join(", "))
            }
            Predicate::Matches { field, pattern } => write!(f, "{field} =~ {pattern:?}"),
            Predicate::Exists { field } => write!(f, "{field} exists"),
            Predicate::And { all } => {
                let parts: Vec<String> = all.iter().map(|p| format!("({p})")).collect();
                f.write_str(&parts.join(" and "))
            }
            Predicate::Or { any } => {
                let parts: Vec<String> = any.iter().map(|p| format!("({p})")).collect();
                f.write_str(&parts.join(" or "))
            }
            Predicate::Not { not } => write!(f, "not ({not})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile;

    const EXAMPLES: [&str; 3] = [
        include_str!("../../examples/topologies/game_stats.topo"),
        include_str!("../../examples/topologies/kafka_rewards.topo"),
        include_str!("../../examples/topologies/file_rewards.topo"),
    ];

    #[test]
    fn every_example_plan_round_trips_through_json() {
        for text in EXAMPLES {
            let plan = compile(text, None).plan.expect("the example compiles");
            let json = serde_json::to_string_pretty(&plan).expect("to JSON");
            let back: Plan = serde_json::from_str(&json).expect("from JSON");
            assert_eq!(back, plan);
        }
    }

    #[test]
    fn declared_fields_are_a_list_of_paths_and_types() {
        let plan = compile(EXAMPLES[1], None)
            .plan
            .expect("kafka_rewards compiles");
        let json = serde_json::to_value(plan.source("rewards").expect("rewards")).expect("JSON");
        let fields = json["fields"].as_array().expect("a list");
        assert!(fields.contains(&serde_json::json!({"path": ["amount"], "type": "number"})));
        // A name holding a dot stays one segment.
        let mut source = plan.sources[0].clone();
        source.fields.clear();
        source
            .fields
            .insert(FieldPath(vec!["a.b".into()]), FieldType::String);
        let back: SourcePlan =
            serde_json::from_str(&serde_json::to_string(&source).expect("to JSON")).expect("back");
        assert_eq!(back, source);
    }

    #[test]
    fn window_size_and_step() {
        let hopping = Window::Hopping {
            size: Duration::from_millis(600_000),
            every: Duration::from_millis(60_000),
        };
        assert_eq!(hopping.size().millis(), 600_000);
        assert_eq!(hopping.step().millis(), 60_000);
        assert_eq!(hopping.to_string(), "hopping 10m every 1m");
        let session = Window::Session {
            gap: Duration::from_millis(1_800_000),
            by: FieldPath::parse("user_id"),
        };
        assert_eq!(session.step(), SESSION_STEP);
        assert_eq!(session.size().millis(), 1_800_000);
        assert_eq!(session.to_string(), "session 30m by user_id");
    }

    #[test]
    fn predicates_print_as_written() {
        let p = Predicate::And {
            all: vec![
                Predicate::In {
                    field: FieldPath::parse("kind"),
                    values: vec![Literal::String("bet".into()), Literal::Number(1.5)],
                },
                Predicate::Not {
                    not: Box::new(Predicate::Exists {
                        field: FieldPath::parse("payload.test"),
                    }),
                },
            ],
        };
        assert_eq!(
            p.to_string(),
            "(kind in [\"bet\", 1.5]) and (not (payload.test exists))"
        );
    }
}
