//! Checks a syntax tree and lowers it to a `Plan`, reporting every mistake.

use std::collections::{BTreeMap, HashMap};

use crate::ast::*;
use crate::diagnostic::{Diagnostic, Problem};
use crate::duration::Duration;
use crate::plan::*;
use crate::span::Span;
use crate::suggest::did_you_mean;

/// Default retention when a metric has no `retain` clause.
pub const DEFAULT_RETAIN: Duration = Duration::from_millis(7 * 86_400_000);
/// Default events per second of the generator.
pub const DEFAULT_GENERATOR_RATE: u64 = 1_000;
/// Above this many buckets per group a metric gets warning W0001.
pub const MANY_BUCKETS: u64 = 100_000;

const SOURCE_KINDS: [&str; 4] = ["kafka", "file", "generator", "telemetry"];
const COMMON_PROPERTIES: [&str; 3] = ["format", "time", "late"];
const KAFKA_PROPERTIES: [&str; 7] = [
    "format",
    "time",
    "late",
    "brokers",
    "start",
    "settings",
    "dead_letters",
];

/// The metadata a Kafka source adds to every record under `_kafka` (see
/// the book's Kafka chapter), known to the checker when the source
/// declares its fields. Headers are not listed: declare the ones read,
/// as `_kafka.headers.NAME: string`.
const KAFKA_METADATA_FIELDS: [(&str, FieldType); 5] = [
    ("_kafka.topic", FieldType::String),
    ("_kafka.partition", FieldType::Number),
    ("_kafka.offset", FieldType::Number),
    ("_kafka.timestamp", FieldType::Number),
    ("_kafka.key", FieldType::String),
];
const GENERATOR_ARGS: [&str; 5] = ["rate", "seed", "events", "games", "users"];
const ENCODINGS: [&str; 3] = ["epoch_millis", "epoch_seconds", "rfc3339"];
const TYPES: [&str; 4] = ["string", "number", "bool", "time"];
const FUNCTIONS: [&str; 7] = ["count", "sum", "min", "max", "avg", "distinct", "quantile"];

/// The fields every generator event may carry, and their types.
pub const GENERATOR_FIELDS: [(&str, FieldType); 11] = [
    ("kind", FieldType::String),
    ("ts", FieldType::Time),
    ("game_id", FieldType::String),
    ("user_id", FieldType::String),
    ("platform", FieldType::String),
    ("country", FieldType::String),
    ("seed_id", FieldType::String),
    ("reward_type", FieldType::String),
    ("amount", FieldType::Number),
    ("payout", FieldType::Number),
    ("won", FieldType::Bool),
];

/// The fields of every telemetry event, and their types. `kind` is
/// `ingest` (one per worker and source every second: `records`, `errors`,
/// `late` read in that second, and the partitions' `lag`), `epoch` (one per
/// worker every second: `epoch_delay_ms`, how far the newest complete epoch
/// trails the open one) or `query` (one per query: `metric`, `query_ms`).
pub const TELEMETRY_FIELDS: [(&str, FieldType); 12] = [
    ("ts", FieldType::Time),
    ("kind", FieldType::String),
    ("process", FieldType::String),
    ("worker", FieldType::String),
    ("source", FieldType::String),
    ("metric", FieldType::String),
    ("records", FieldType::Number),
    ("errors", FieldType::Number),
    ("late", FieldType::Number),
    ("lag", FieldType::Number),
    ("epoch_delay_ms", FieldType::Number),
    ("query_ms", FieldType::Number),
];

/// Checks `topology`; returns the plan when there were no errors. `base_dir`
/// is the topology file's folder, against which file sources are resolved.
pub fn check(
    topology: &Topology,
    base_dir: Option<&std::path::Path>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Plan> {
    let errors_before = diags.iter().filter(|d| d.is_error()).count();
    let mut checker = Checker { diags, base_dir };
    let mut sources: Vec<SourcePlan> = Vec::new();
    let mut source_spans: HashMap<String, Span> = HashMap::new();
    for item in &topology.items {
        if let Item::Source(decl) = item {
            if let Some(first) = source_spans.get(&decl.name.text) {
                checker.push(
                    Problem::DuplicateSource {
                        name: decl.name.text.clone(),
                        first: *first,
                    },
                    decl.name.span,
                );
                continue;
            }
            source_spans.insert(decl.name.text.clone(), decl.name.span);
            if let Some(source) = checker.source(decl) {
                sources.push(source);
            }
        }
    }
    let mut metrics = Vec::new();
    let mut metric_spans: HashMap<String, Span> = HashMap::new();
    let mut used: HashMap<String, bool> = HashMap::new();
    for item in &topology.items {
        if let Item::Metric(decl) = item {
            if let Some(first) = metric_spans.get(&decl.name.text) {
                checker.push(
                    Problem::DuplicateMetric {
                        name: decl.name.text.clone(),
                        first: *first,
                    },
                    decl.name.span,
                );
                continue;
            }
            metric_spans.insert(decl.name.text.clone(), decl.name.span);
            for s in &decl.sources {
                used.insert(s.text.clone(), true);
            }
            if let Some(metric) = checker.metric(decl, &sources, &source_spans) {
                metrics.push(metric);
            }
        }
    }
    for (name, span) in &source_spans {
        if !used.contains_key(name) {
            checker.push(Problem::UnusedSource { name: name.clone() }, *span);
        }
    }
    let errors_after = checker.diags.iter().filter(|d| d.is_error()).count();
    (errors_after == errors_before).then_some(Plan { sources, metrics })
}

struct Checker<'d, 'p> {
    diags: &'d mut Vec<Diagnostic>,
    base_dir: Option<&'p std::path::Path>,
}

impl Checker<'_, '_> {
    fn push(&mut self, problem: Problem, span: Span) {
        self.diags.push(Diagnostic::new(problem, span));
    }

    fn bad_value(&mut self, property: &str, expected: &str, value: &Value) {
        self.push(
            Problem::BadValue {
                property: property.to_string(),
                expected: expected.to_string(),
                found: value.kind_name().to_string(),
            },
            value.span(),
        );
    }

    fn source(&mut self, decl: &SourceDecl) -> Option<SourcePlan> {
        let kind_name = decl.kind.text.as_str();
        if !SOURCE_KINDS.contains(&kind_name) {
            let suggestion = did_you_mean(kind_name, SOURCE_KINDS);
            self.push(
                Problem::UnknownSourceKind {
                    found: kind_name.to_string(),
                    suggestion,
                },
                decl.kind.span,
            );
            return None;
        }
        let allowed: &[&'static str] = if kind_name == "kafka" {
            &KAFKA_PROPERTIES
        } else {
            &COMMON_PROPERTIES
        };
        let mut props: BTreeMap<&str, &Value> = BTreeMap::new();
        let mut prop_spans: HashMap<&str, Span> = HashMap::new();
        for prop in &decl.properties {
            let key = prop.key.text.as_str();
            if !allowed.contains(&key) {
                let suggestion = did_you_mean(key, allowed.iter().copied());
                self.push(
                    Problem::UnknownProperty {
                        kind: kind_name.to_string(),
                        found: key.to_string(),
                        suggestion,
                        allowed: allowed.to_vec(),
                    },
                    prop.key.span,
                );
                continue;
            }
            if let Some(first) = prop_spans.get(key) {
                self.push(
                    Problem::DuplicateProperty {
                        name: key.to_string(),
                        first: *first,
                    },
                    prop.key.span,
                );
                continue;
            }
            prop_spans.insert(key, prop.key.span);
            props.insert(key, &prop.value);
        }

        let fields = self.fields(decl);
        let mut ok = true;

        let format = match props.get("format") {
            None => Format::Json,
            Some(Value::Path(p)) if p.dotted() == "json" => Format::Json,
            Some(Value::Path(p)) => {
                self.push(Problem::UnsupportedFormat { found: p.dotted() }, p.span);
                ok = false;
                Format::Json
            }
            Some(other) => {
                self.bad_value("format", "a format name such as `json`", other);
                ok = false;
                Format::Json
            }
        };

        let time = match props.get("time") {
            Some(Value::PathAs(path, enc)) => match enc.text.as_str() {
                "epoch_millis" => Some(TimeField {
                    path: field_path(path),
                    encoding: TimeEncoding::EpochMillis,
                }),
                "epoch_seconds" => Some(TimeField {
                    path: field_path(path),
                    encoding: TimeEncoding::EpochSeconds,
                }),
                "rfc3339" => Some(TimeField {
                    path: field_path(path),
                    encoding: TimeEncoding::Rfc3339,
                }),
                other => {
                    let suggestion = did_you_mean(other, ENCODINGS);
                    self.push(
                        Problem::UnknownTimeEncoding {
                            found: other.to_string(),
                            suggestion,
                        },
                        enc.span,
                    );
                    None
                }
            },
            Some(other) => {
                self.bad_value(
                    "time",
                    "`FIELD as epoch_millis` (or `epoch_seconds`, `rfc3339`)",
                    other,
                );
                None
            }
            None if kind_name == "generator" || kind_name == "telemetry" => Some(TimeField {
                path: FieldPath::parse("ts"),
                encoding: TimeEncoding::EpochMillis,
            }),
            None => {
                self.push(
                    Problem::MissingTime {
                        source: decl.name.text.clone(),
                    },
                    decl.name.span,
                );
                None
            }
        };
        ok &= time.is_some();

        let late = match props.get("late") {
            None => Duration::from_millis(0),
            Some(Value::Duration(d, _)) => *d,
            Some(other) => {
                self.bad_value("late", "a duration such as `5m`", other);
                ok = false;
                Duration::from_millis(0)
            }
        };

        let kind = match kind_name {
            "kafka" => self.kafka(decl, &props),
            "file" => self.file(decl),
            "telemetry" => self.telemetry(decl),
            _ => self.generator(decl),
        };

        let mut fields = fields?;
        if kind_name == "generator" && fields.is_empty() {
            fields = GENERATOR_FIELDS
                .iter()
                .map(|(name, ty)| (FieldPath::parse(name), *ty))
                .collect();
        }
        if kind_name == "telemetry" && fields.is_empty() {
            fields = TELEMETRY_FIELDS
                .iter()
                .map(|(name, ty)| (FieldPath::parse(name), *ty))
                .collect();
        }
        if kind_name == "kafka" && !fields.is_empty() {
            for (name, ty) in KAFKA_METADATA_FIELDS {
                fields.entry(FieldPath::parse(name)).or_insert(ty);
            }
        }
        if let Some(time) = &time {
            if !fields.is_empty() {
                fields.entry(time.path.clone()).or_insert(FieldType::Time);
            }
        }
        if !ok {
            return None;
        }
        Some(SourcePlan {
            name: decl.name.text.clone(),
            kind: kind?,
            format,
            time: time?,
            late,
            fields,
        })
    }

    fn fields(&mut self, decl: &SourceDecl) -> Option<BTreeMap<FieldPath, FieldType>> {
        let mut fields = BTreeMap::new();
        let mut spans: HashMap<String, Span> = HashMap::new();
        let mut ok = true;
        for field in decl.fields.iter().flatten() {
            let ty = match field.ty.text.as_str() {
                "string" => FieldType::String,
                "number" => FieldType::Number,
                "bool" => FieldType::Bool,
                "time" => FieldType::Time,
                other => {
                    let suggestion = did_you_mean(other, TYPES).or_else(|| match other {
                        "str" | "text" => Some("string".into()),
                        "int" | "integer" | "float" | "double" | "long" | "decimal" => {
                            Some("number".into())
                        }
                        "boolean" => Some("bool".into()),
                        "timestamp" | "datetime" => Some("time".into()),
                        _ => None,
                    });
                    self.push(
                        Problem::UnknownFieldType {
                            found: other.to_string(),
                            suggestion,
                        },
                        field.ty.span,
                    );
                    ok = false;
                    continue;
                }
            };
            let name = field.path.dotted();
            if let Some(first) = spans.get(&name) {
                self.push(
                    Problem::DuplicateField {
                        name,
                        first: *first,
                    },
                    field.path.span,
                );
                ok = false;
                continue;
            }
            spans.insert(name, field.path.span);
            fields.insert(field_path(&field.path), ty);
        }
        ok.then_some(fields)
    }

    fn kafka(&mut self, decl: &SourceDecl, props: &BTreeMap<&str, &Value>) -> Option<SourceKind> {
        let mut names = Vec::new();
        let mut pattern = None;
        let mut ok = true;
        for arg in &decl.args {
            match arg {
                Arg::Positional(Value::Str(s, _)) => names.push(s.clone()),
                Arg::Named(n, Value::Str(s, span)) if n.text == "pattern" => {
                    if let Err(e) = regex::Regex::new(s) {
                        self.push(
                            Problem::BadRegex {
                                error: e.to_string(),
                            },
                            *span,
                        );
                        ok = false;
                    }
                    pattern = Some(s.clone());
                }
                _ => {
                    self.push(
                        Problem::BadSourceArgument {
                            kind: "kafka".into(),
                            expected: "topic names in quotes, as in `kafka(\"game.rewards\")`, or `kafka(pattern = \"game\\\\..*\")`".into(),
                        },
                        decl.args_span,
                    );
                    return None;
                }
            }
        }
        let topics = match (names.is_empty(), pattern) {
            (false, None) => Topics::Names(names),
            (true, Some(p)) => Topics::Pattern(p),
            (true, None) => {
                self.push(Problem::KafkaNeedsTopics, decl.args_span);
                return None;
            }
            (false, Some(_)) => {
                self.push(
                    Problem::BadSourceArgument {
                        kind: "kafka".into(),
                        expected: "either topic names or a `pattern`, not both".into(),
                    },
                    decl.args_span,
                );
                return None;
            }
        };
        let brokers = match props.get("brokers") {
            None => Vec::new(),
            Some(Value::Str(s, _)) => s
                .split(',')
                .map(|b| b.trim().to_string())
                .filter(|b| !b.is_empty())
                .collect(),
            Some(Value::List(items, _)) if items.iter().all(|v| matches!(v, Value::Str(..))) => {
                items
                    .iter()
                    .filter_map(|v| {
                        if let Value::Str(s, _) = v {
                            Some(s.clone())
                        } else {
                            None
                        }
                    })
                    .collect()
            }
            Some(other) => {
                self.bad_value("brokers", "a list of \"host:port\" strings", other);
                ok = false;
                Vec::new()
            }
        };
        let start = match props.get("start") {
            None => StartPosition::Earliest,
            Some(Value::Path(p)) if p.dotted() == "earliest" => StartPosition::Earliest,
            Some(Value::Path(p)) if p.dotted() == "latest" => StartPosition::Latest,
            Some(Value::Str(s, span)) => match s.parse::<TimestampText>() {
                Ok(TimestampText(ms)) => StartPosition::Timestamp(ms),
                Err(()) => {
                    self.push(Problem::BadStartPosition { found: s.clone() }, *span);
                    ok = false;
                    StartPosition::Earliest
                }
            },
            Some(other) => {
                let found = match other {
                    Value::Path(p) => p.dotted(),
                    v => v.kind_name().to_string(),
                };
                self.push(Problem::BadStartPosition { found }, other.span());
                ok = false;
                StartPosition::Earliest
            }
        };
        let mut settings = BTreeMap::new();
        match props.get("settings") {
            None => {}
            Some(Value::Map(entries, _)) => {
                for (key, value) in entries {
                    let key = match key {
                        Value::Str(s, _) => s.clone(),
                        Value::Path(p) => p.dotted(),
                        other => {
                            self.bad_value("settings", "\"key\" = \"value\" pairs", other);
                            ok = false;
                            continue;
                        }
                    };
                    let value = match value {
                        Value::Str(s, _) => s.clone(),
                        Value::Number(n, _) => n.to_string(),
                        Value::Bool(b, _) => b.to_string(),
                        Value::Path(p) => p.dotted(),
                        other => {
                            self.bad_value("settings", "a string, number or boolean value", other);
                            ok = false;
                            continue;
                        }
                    };
                    settings.insert(key, value);
                }
            }
            Some(other) => {
                self.bad_value("settings", "a block of \"key\" = \"value\" pairs", other);
                ok = false;
            }
        }
        let dead_letters = match props.get("dead_letters") {
            None => None,
            Some(Value::Str(s, span)) if !is_topic_name(s) => {
                self.push(
                    Problem::BadValue {
                        property: "dead_letters".into(),
                        expected: "a Kafka topic name: 1 to 249 of a-z A-Z 0-9 . _ -".into(),
                        found: format!("{s:?}"),
                    },
                    *span,
                );
                ok = false;
                None
            }
            Some(Value::Str(s, _)) => Some(s.clone()),
            Some(other) => {
                self.bad_value("dead_letters", "a topic name in quotes", other);
                ok = false;
                None
            }
        };
        ok.then_some(SourceKind::Kafka(KafkaSource {
            topics,
            brokers,
            start,
            settings,
            dead_letters,
        }))
    }

    fn file(&mut self, decl: &SourceDecl) -> Option<SourceKind> {
        match decl.args.as_slice() {
            [Arg::Positional(Value::Str(path, _))] => {
                let resolved = match self.base_dir {
                    Some(dir) if !std::path::Path::new(path).is_absolute() => {
                        dir.join(path).to_string_lossy().into_owned()
                    }
                    _ => path.clone(),
                };
                Some(SourceKind::File(FileSource { path: resolved }))
            }
            _ => {
                self.push(
                    Problem::BadSourceArgument {
                        kind: "file".into(),
                        expected: "one path in quotes, as in `file(\"events.jsonl\")`".into(),
                    },
                    decl.args_span,
                );
                None
            }
        }
    }

    fn telemetry(&mut self, decl: &SourceDecl) -> Option<SourceKind> {
        if !decl.args.is_empty() {
            self.push(
                Problem::BadSourceArgument {
                    kind: "telemetry".into(),
                    expected: "no arguments: `telemetry()`".into(),
                },
                decl.args_span,
            );
            return None;
        }
        Some(SourceKind::Telemetry)
    }

    fn generator(&mut self, decl: &SourceDecl) -> Option<SourceKind> {
        let mut gen = GeneratorSource {
            rate: DEFAULT_GENERATOR_RATE,
            seed: 42,
            events: None,
            games: 200,
            users: 100_000,
        };
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut ok = true;
        for arg in &decl.args {
            let Arg::Named(name, value) = arg else {
                self.push(
                    Problem::BadSourceArgument {
                        kind: "generator".into(),
                        expected: "named arguments, as in `generator(rate = 500, seed = 7)`".into(),
                    },
                    decl.args_span,
                );
                return None;
            };
            if !GENERATOR_ARGS.contains(&name.text.as_str()) {
                let suggestion = did_you_mean(&name.text, GENERATOR_ARGS);
                self.push(
                    Problem::UnknownProperty {
                        kind: "generator".into(),
                        found: name.text.clone(),
                        suggestion,
                        allowed: GENERATOR_ARGS.to_vec(),
                    },
                    name.span,
                );
                ok = false;
                continue;
            }
            if let Some(first) = seen.get(&name.text) {
                self.push(
                    Problem::DuplicateProperty {
                        name: name.text.clone(),
                        first: *first,
                    },
                    name.span,
                );
                ok = false;
                continue;
            }
            seen.insert(name.text.clone(), name.span);
            let number = match value {
                Value::Number(n, _) if *n >= 0.0 && n.fract() == 0.0 && *n <= u64::MAX as f64 => {
                    *n as u64
                }
                other => {
                    // "takes a whole number, but this is a number" would read
                    // as a contradiction: say what kind of number it is.
                    let found = match other {
                        Value::Number(n, _) if *n < 0.0 => "a negative number",
                        Value::Number(n, _) if n.fract() != 0.0 => "a fraction",
                        Value::Number(..) => "too large a number",
                        v => v.kind_name(),
                    };
                    self.push(
                        Problem::BadValue {
                            property: name.text.clone(),
                            expected: "a whole number".into(),
                            found: found.into(),
                        },
                        other.span(),
                    );
                    ok = false;
                    continue;
                }
            };
            let positive = |checker: &mut Self, v: u64| {
                if v == 0 {
                    checker.push(
                        Problem::BadValue {
                            property: name.text.clone(),
                            expected: "a number greater than zero".into(),
                            found: "zero".into(),
                        },
                        value.span(),
                    );
                    false
                } else {
                    true
                }
            };
            match name.text.as_str() {
                "rate" => {
                    ok &= positive(self, number);
                    gen.rate = number;
                }
                "seed" => gen.seed = number,
                "events" => {
                    ok &= positive(self, number);
                    gen.events = Some(number);
                }
                "games" => {
                    ok &= positive(self, number);
                    gen.games = number;
                }
                _ => {
                    ok &= positive(self, number);
                    gen.users = number;
                }
            }
        }
        ok.then_some(SourceKind::Generator(gen))
    }

    fn metric(
        &mut self,
        decl: &MetricDecl,
        sources: &[SourcePlan],
        source_spans: &HashMap<String, Span>,
    ) -> Option<MetricPlan> {
        let mut ok = true;
        let mut metric_sources = Vec::new();
        for name in &decl.sources {
            if !source_spans.contains_key(&name.text) {
                let suggestion = did_you_mean(&name.text, source_spans.keys().map(String::as_str));
                self.push(
                    Problem::UnknownSource {
                        found: name.text.clone(),
                        suggestion,
                    },
                    name.span,
                );
                ok = false;
            } else if !metric_sources.contains(&name.text) {
                metric_sources.push(name.text.clone());
            }
        }
        // Fields are checked only when every source of the metric declares them.
        let declaring: Vec<&SourcePlan> = sources
            .iter()
            .filter(|s| metric_sources.contains(&s.name))
            .collect();
        let schema = if ok
            && !declaring.is_empty()
            && declaring.len() == metric_sources.len()
            && declaring.iter().all(|s| !s.fields.is_empty())
        {
            let mut schema: BTreeMap<FieldPath, FieldType> = BTreeMap::new();
            for s in &declaring {
                for (path, ty) in &s.fields {
                    schema.entry(path.clone()).or_insert(*ty);
                }
            }
            Some(Schema {
                fields: schema,
                sources: metric_sources.join(", "),
            })
        } else {
            None
        };

        let mut filters = Vec::new();
        let mut dimensions: Option<(Vec<Dimension>, Span)> = None;
        let mut dim_spans: Vec<Span> = Vec::new();
        let mut window: Option<(Window, Span)> = None;
        let mut retain: Option<(Duration, Span)> = None;
        let mut measures: Option<(Vec<(Measure, Span)>, Span)> = None;

        for clause in &decl.clauses {
            match clause {
                Clause::Where(expr, _) => match self.predicate(expr, schema.as_ref()) {
                    Some(p) => filters.push(p),
                    None => ok = false,
                },
                Clause::Dimensions(dims, span) => {
                    if let Some((_, first)) = &dimensions {
                        self.push(
                            Problem::DuplicateClause {
                                clause: "dimensions".into(),
                                first: *first,
                            },
                            *span,
                        );
                        ok = false;
                        continue;
                    }
                    let mut out: Vec<Dimension> = Vec::new();
                    for dim in dims {
                        let (name, name_span) = match &dim.alias {
                            Some(alias) => (alias.text.clone(), alias.span),
                            None => (
                                dim.path.segments.last().cloned().unwrap_or_default(),
                                dim.path.span,
                            ),
                        };
                        let ty = self.field(&dim.path, schema.as_ref());
                        if schema.is_some() && ty.is_none() {
                            ok = false;
                        }
                        if name.starts_with("__") {
                            self.push(Problem::ReservedName { name: name.clone() }, name_span);
                            ok = false;
                            continue;
                        }
                        if let Some(i) = out.iter().position(|d| d.name == name) {
                            self.push(
                                Problem::DuplicateDimension {
                                    name,
                                    first: dim_spans[i],
                                },
                                name_span,
                            );
                            ok = false;
                            continue;
                        }
                        dim_spans.push(name_span);
                        out.push(Dimension {
                            name,
                            path: field_path(&dim.path),
                            ty,
                        });
                    }
                    dimensions = Some((out, *span));
                }
                Clause::Window(w, span) => {
                    if let Some((_, first)) = &window {
                        self.push(
                            Problem::DuplicateClause {
                                clause: "window".into(),
                                first: *first,
                            },
                            *span,
                        );
                        ok = false;
                        continue;
                    }
                    match self.window(w, schema.as_ref()) {
                        Some(w) => window = Some((w, *span)),
                        None => ok = false,
                    }
                }
                Clause::Retain(d, span) => {
                    if let Some((_, first)) = &retain {
                        self.push(
                            Problem::DuplicateClause {
                                clause: "retain".into(),
                                first: *first,
                            },
                            *span,
                        );
                        ok = false;
                        continue;
                    }
                    retain = Some((*d, *span));
                }
                Clause::Measures(list, span) => {
                    if let Some((_, first)) = &measures {
                        self.push(
                            Problem::DuplicateClause {
                                clause: "measures".into(),
                                first: *first,
                            },
                            *span,
                        );
                        ok = false;
                        continue;
                    }
                    let mut out: Vec<(Measure, Span)> = Vec::new();
                    for m in list {
                        if m.name.text.starts_with("__") {
                            self.push(
                                Problem::ReservedName {
                                    name: m.name.text.clone(),
                                },
                                m.name.span,
                            );
                            ok = false;
                            continue;
                        }
                        if let Some((_, first)) = out.iter().find(|(x, _)| x.name == m.name.text) {
                            self.push(
                                Problem::DuplicateMeasure {
                                    name: m.name.text.clone(),
                                    first: *first,
                                },
                                m.name.span,
                            );
                            ok = false;
                            continue;
                        }
                        match self.measure(m, schema.as_ref()) {
                            Some(kind) => out.push((
                                Measure {
                                    name: m.name.text.clone(),
                                    kind,
                                },
                                m.name.span,
                            )),
                            None => ok = false,
                        }
                    }
                    measures = Some((out, *span));
                }
            }
        }

        let dims = dimensions.map(|(d, _)| d).unwrap_or_default();
        let Some((window, window_span)) = window else {
            if ok {
                self.push(
                    Problem::MissingWindow {
                        metric: decl.name.text.clone(),
                    },
                    decl.name.span,
                );
            }
            return None;
        };
        let measures = match measures {
            Some((m, _)) if !m.is_empty() => m,
            Some((_, span)) if !ok => {
                let _ = span;
                return None;
            }
            Some((_, span)) => {
                self.push(
                    Problem::EmptyMetric {
                        metric: decl.name.text.clone(),
                    },
                    span,
                );
                return None;
            }
            None => {
                self.push(
                    Problem::EmptyMetric {
                        metric: decl.name.text.clone(),
                    },
                    decl.name.span,
                );
                return None;
            }
        };
        for (m, span) in &measures {
            if let Some(i) = dims.iter().position(|d| d.name == m.name) {
                self.push(
                    Problem::NameClash {
                        name: m.name.clone(),
                        dimension: dim_spans[i],
                    },
                    *span,
                );
                ok = false;
            }
            if let MeasureKind::Distinct { field } = &m.kind {
                if dims.iter().any(|d| &d.path == field) {
                    self.push(
                        Problem::DistinctOfDimension {
                            field: field.to_string(),
                        },
                        *span,
                    );
                }
            }
        }
        let retain_value = match retain {
            Some((d, span)) => {
                if d < window.size() {
                    self.push(
                        Problem::RetentionTooShort {
                            retain: d,
                            window: window.size(),
                        },
                        span,
                    );
                    ok = false;
                }
                // A session metric keeps one row per session, not per bucket.
                let buckets = d.millis() / window.step().millis().max(1);
                if buckets > MANY_BUCKETS && !window.is_session() {
                    self.push(
                        Problem::ManyBuckets {
                            buckets,
                            step: window.step(),
                            retain: d,
                        },
                        // The retain clause alone: window and retain may be lines apart.
                        span,
                    );
                }
                d
            }
            None => {
                // The default retention can keep too many buckets as well; point at the window.
                let retain = DEFAULT_RETAIN.max(window.size());
                let buckets = retain.millis() / window.step().millis().max(1);
                if buckets > MANY_BUCKETS && !window.is_session() {
                    self.push(
                        Problem::ManyBuckets {
                            buckets,
                            step: window.step(),
                            retain,
                        },
                        window_span,
                    );
                }
                retain
            }
        };
        if !ok {
            return None;
        }
        let filter = match filters.len() {
            0 => None,
            1 => filters.pop(),
            _ => Some(Predicate::And { all: filters }),
        };
        Some(MetricPlan {
            name: decl.name.text.clone(),
            sources: metric_sources,
            filter,
            dimensions: dims,
            window,
            retain: retain_value,
            measures: measures.into_iter().map(|(m, _)| m).collect(),
        })
    }

    /// The declared type of `path`, reporting an undeclared field. Without a schema, `None`.
    fn field(&mut self, path: &Path, schema: Option<&Schema>) -> Option<FieldType> {
        let schema = schema?;
        let fp = field_path(path);
        match schema.fields.get(&fp) {
            Some(ty) => Some(*ty),
            None => {
                let names: Vec<String> = schema.fields.keys().map(|k| k.to_string()).collect();
                let suggestion = did_you_mean(&fp.to_string(), names.iter().map(String::as_str));
                self.push(
                    Problem::UnknownField {
                        field: fp.to_string(),
                        source: schema.sources.clone(),
                        suggestion,
                    },
                    path.span,
                );
                None
            }
        }
    }

    fn window(&mut self, w: &WindowDecl, schema: Option<&Schema>) -> Option<Window> {
        match w {
            WindowDecl::Tumbling { size } => Some(Window::Tumbling { size: size.0 }),
            WindowDecl::Hopping { size, every } => {
                if every.0 > size.0 {
                    self.push(
                        Problem::HoppingAdvanceTooLong {
                            size: size.0,
                            every: every.0,
                        },
                        every.1,
                    );
                    return None;
                }
                if size.0.millis() % every.0.millis() != 0 {
                    self.push(
                        Problem::HoppingNotDivisible {
                            size: size.0,
                            every: every.0,
                        },
                        every.1,
                    );
                    return None;
                }
                Some(Window::Hopping {
                    size: size.0,
                    every: every.0,
                })
            }
            WindowDecl::Session { gap, by } => {
                if schema.is_some() && self.field(by, schema).is_none() {
                    return None;
                }
                Some(Window::Session {
                    gap: gap.0,
                    by: field_path(by),
                })
            }
        }
    }

    fn measure(&mut self, m: &MeasureDecl, schema: Option<&Schema>) -> Option<MeasureKind> {
        let function = m.function.text.as_str();
        let usage = match function {
            "count" => "count()".to_string(),
            "quantile" => "quantile(field, 0.99)".to_string(),
            "sum" | "min" | "max" | "avg" | "distinct" => format!("{function}(field)"),
            other => {
                let suggestion = did_you_mean(other, FUNCTIONS).or_else(|| match other {
                    "mean" | "average" => Some("avg".into()),
                    "unique" | "count_distinct" | "cardinality" | "uniq" => Some("distinct".into()),
                    "percentile" | "p99" | "median" => Some("quantile".into()),
                    "total" => Some("sum".into()),
                    _ => None,
                });
                self.push(
                    Problem::UnknownFunction {
                        found: other.to_string(),
                        suggestion,
                    },
                    m.function.span,
                );
                return None;
            }
        };
        let expected_args = match function {
            "count" => 0,
            "quantile" => 2,
            _ => 1,
        };
        if m.args.len() != expected_args {
            self.push(
                Problem::WrongArity {
                    function: function.to_string(),
                    usage,
                    found: m.args.len(),
                },
                m.call_span,
            );
            return None;
        }
        if function == "count" {
            return Some(MeasureKind::Count);
        }
        let field = match &m.args[0] {
            Value::Path(p) => p,
            other => {
                self.push(
                    Problem::BadArgument {
                        function: function.to_string(),
                        expected: "a field name (without quotes)".into(),
                        found: other.kind_name().into(),
                    },
                    other.span(),
                );
                return None;
            }
        };
        let ty = self.field(field, schema);
        if schema.is_some() && ty.is_none() {
            return None;
        }
        let numeric = function != "distinct";
        if let Some(ty) = ty {
            if numeric && ty != FieldType::Number {
                self.push(
                    Problem::NonNumericMeasure {
                        function: function.to_string(),
                        field: field.dotted(),
                        ty: ty.keyword().into(),
                    },
                    field.span,
                );
                return None;
            }
        }
        let fp = field_path(field);
        Some(match function {
            "sum" => MeasureKind::Sum { field: fp },
            "min" => MeasureKind::Min { field: fp },
            "max" => MeasureKind::Max { field: fp },
            "avg" => MeasureKind::Avg { field: fp },
            "distinct" => MeasureKind::Distinct { field: fp },
            _ => match &m.args[1] {
                Value::Number(q, span) => {
                    if !(*q > 0.0 && *q < 1.0) {
                        self.push(Problem::QuantileOutOfRange { found: *q }, *span);
                        return None;
                    }
                    MeasureKind::Quantile { field: fp, q: *q }
                }
                other => {
                    self.push(
                        Problem::BadArgument {
                            function: "quantile".into(),
                            expected: "a number between 0 and 1".into(),
                            found: other.kind_name().into(),
                        },
                        other.span(),
                    );
                    return None;
                }
            },
        })
    }

    fn predicate(&mut self, expr: &Expr, schema: Option<&Schema>) -> Option<Predicate> {
        match expr {
            Expr::And(a, b) => {
                let (a, b) = (self.predicate(a, schema), self.predicate(b, schema));
                let mut all = Vec::new();
                for p in [a?, b?] {
                    match p {
                        Predicate::And { all: inner } => all.extend(inner),
                        other => all.push(other),
                    }
                }
                Some(Predicate::And { all })
            }
            Expr::Or(a, b) => {
                let (a, b) = (self.predicate(a, schema), self.predicate(b, schema));
                let mut any = Vec::new();
                for p in [a?, b?] {
                    match p {
                        Predicate::Or { any: inner } => any.extend(inner),
                        other => any.push(other),
                    }
                }
                Some(Predicate::Or { any })
            }
            Expr::Not(inner) => Some(Predicate::Not {
                not: Box::new(self.predicate(inner, schema)?),
            }),
            Expr::Exists { path, negated } => {
                if schema.is_some() {
                    self.field(path, schema)?;
                }
                let p = Predicate::Exists {
                    field: field_path(path),
                };
                Some(if *negated {
                    Predicate::Not { not: Box::new(p) }
                } else {
                    p
                })
            }
            Expr::Match {
                path,
                pattern,
                pattern_span,
                negated,
            } => {
                let ty = self.field(path, schema);
                if schema.is_some() && ty.is_none() {
                    return None;
                }
                if let Err(e) = regex::Regex::new(&format!("^(?:{pattern})$")) {
                    self.push(
                        Problem::BadRegex {
                            error: e.to_string(),
                        },
                        *pattern_span,
                    );
                    return None;
                }
                let p = Predicate::Matches {
                    field: field_path(path),
                    pattern: pattern.clone(),
                };
                Some(if *negated {
                    Predicate::Not { not: Box::new(p) }
                } else {
                    p
                })
            }
            Expr::Compare { path, op, value } => {
                let ty = self.field(path, schema);
                if schema.is_some() && ty.is_none() {
                    return None;
                }
                let literal = self.literal(path, ty, value)?;
                let cmp = match op {
                    CmpOp::Eq => Comparison::Eq,
                    CmpOp::Ne => Comparison::Ne,
                    CmpOp::Lt => Comparison::Lt,
                    CmpOp::Le => Comparison::Le,
                    CmpOp::Gt => Comparison::Gt,
                    CmpOp::Ge => Comparison::Ge,
                };
                Some(Predicate::Compare {
                    field: field_path(path),
                    cmp,
                    value: literal,
                })
            }
            Expr::In {
                path,
                values,
                negated,
                list_span,
            } => {
                let ty = self.field(path, schema);
                if schema.is_some() && ty.is_none() {
                    return None;
                }
                if values.is_empty() {
                    self.push(Problem::EmptyList, *list_span);
                    return None;
                }
                let mut literals = Vec::new();
                let mut ok = true;
                for v in values {
                    match self.literal(path, ty, v) {
                        Some(l) => literals.push(l),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                let p = Predicate::In {
                    field: field_path(path),
                    values: literals,
                };
                Some(if *negated {
                    Predicate::Not { not: Box::new(p) }
                } else {
                    p
                })
            }
        }
    }

    fn literal(&mut self, path: &Path, ty: Option<FieldType>, value: &Value) -> Option<Literal> {
        let literal = match value {
            Value::Str(s, _) => Literal::String(s.clone()),
            Value::Number(n, _) => Literal::Number(*n),
            Value::Bool(b, _) => Literal::Bool(*b),
            other => {
                self.push(
                    Problem::BadValue {
                        property: path.dotted(),
                        expected: "a string, number or boolean to compare with".into(),
                        found: other.kind_name().into(),
                    },
                    other.span(),
                );
                return None;
            }
        };
        let fits = matches!(
            (ty, &literal),
            (None, _)
                | (Some(FieldType::String), Literal::String(_))
                | (Some(FieldType::Number), Literal::Number(_))
                | (Some(FieldType::Bool), Literal::Bool(_))
                | (
                    Some(FieldType::Time),
                    Literal::Number(_) | Literal::String(_)
                )
        );
        if !fits {
            self.push(
                Problem::TypeMismatch {
                    field: path.dotted(),
                    ty: ty.map(FieldType::keyword).unwrap_or_default().into(),
                    found: value.kind_name().into(),
                },
                value.span(),
            );
            return None;
        }
        Some(literal)
    }
}

/// True when Kafka accepts `name` as a topic name.
fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The declared fields a metric's field references are checked against.
struct Schema {
    fields: BTreeMap<FieldPath, FieldType>,
    sources: String,
}

fn field_path(path: &Path) -> FieldPath {
    FieldPath(path.segments.clone())
}

/// An RFC 3339 time in a string, as milliseconds since the epoch.
struct TimestampText(i64);

impl std::str::FromStr for TimestampText {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        parse_rfc3339_millis(s).map(TimestampText).ok_or(())
    }
}

/// Reads an RFC 3339 time such as `2024-08-20T09:00:00+08:00` (fractional
/// seconds allowed) as milliseconds since the Unix epoch. Written by hand so
/// that the language crate stays free of a date library; the engine uses jiff.
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        millis = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_minutes = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_retention_also_warns_about_many_buckets() {
        let text = "source s = generator()\nmetric m from s {\n  window tumbling 1s\n  measures { n = count() }\n}\n";
        let compiled = crate::compile(text, None);
        let codes: Vec<_> = compiled.diagnostics.iter().map(|d| d.code()).collect();
        assert_eq!(codes, ["W0001"]);
        assert!(compiled.plan.is_some(), "a warning does not block the plan");
    }

    use super::parse_rfc3339_millis;
    use crate::compile;

    fn filter_of(where_clause: &str) -> Option<crate::Predicate> {
        let text = format!(
            "source s = generator()\nmetric m from s {{ where {where_clause} window tumbling 1m measures {{ n = count() }} }}"
        );
        let compiled = compile(&text, None);
        assert!(
            compiled.diagnostics.is_empty(),
            "{:?}",
            compiled.diagnostics
        );
        compiled.plan.expect("a plan").metrics[0].filter.clone()
    }

    #[test]
    fn chains_flatten_the_same_however_they_are_grouped() {
        let flat =
            filter_of("amount > 1 and amount > 2 and amount > 3 and amount > 4 and amount > 5");
        let left = filter_of(
            "(((amount > 1 and amount > 2) and amount > 3) and amount > 4) and amount > 5",
        );
        let right = filter_of(
            "amount > 1 and (amount > 2 and (amount > 3 and (amount > 4 and amount > 5)))",
        );
        assert_eq!(flat, left);
        assert_eq!(flat, right);
        let Some(crate::Predicate::And { all }) = flat else {
            panic!("expected one `and`");
        };
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].to_string(), "amount > 1");
        assert_eq!(all[4].to_string(), "amount > 5");
    }

    #[test]
    fn kafka_sources_that_declare_fields_know_the_metadata_fields() {
        let text = r#"
source bets = kafka("bets") {
  time = ts as epoch_millis
  dead_letters = "bets.dead"
  fields { ts: time  amount: number  _kafka.headers.region: string }
}
metric m from bets {
  where _kafka.partition >= 0 and _kafka.topic = "bets" and _kafka.headers.region = "eu"
  dimensions _kafka.key
  window tumbling 1m
  measures { n = count()  last = max(_kafka.offset) }
}"#;
        let compiled = compile(text, None);
        assert!(
            compiled.diagnostics.is_empty(),
            "{:?}",
            compiled.diagnostics
        );
        let plan = compiled.plan.expect("a plan");
        let crate::SourceKind::Kafka(k) = &plan.sources[0].kind else {
            panic!("a kafka source");
        };
        assert_eq!(k.dead_letters.as_deref(), Some("bets.dead"));
        // An undeclared header is still an unknown field.
        let text = text.replace("_kafka.headers.region: string", "");
        let codes: Vec<_> = compile(&text, None)
            .diagnostics
            .iter()
            .map(|d| d.code())
            .collect();
        assert_eq!(codes, ["E0314"], "unknown field");
    }

    #[test]
    fn a_dead_letter_topic_must_be_a_topic_name() {
        for (value, ok) in [
            ("\"bets.dead\"", true),
            ("\"bets dead\"", false),
            ("\"\"", false),
            ("[\"a\"]", false),
        ] {
            let text = format!(
                "source s = kafka(\"bets\") {{ time = ts as epoch_millis  dead_letters = {value} }}\nmetric m from s {{ window tumbling 1m measures {{ n = count() }} }}"
            );
            let compiled = compile(&text, None);
            let codes: Vec<_> = compiled.diagnostics.iter().map(|d| d.code()).collect();
            if ok {
                assert!(codes.is_empty(), "{value}: {codes:?}");
            } else {
                assert_eq!(codes, ["E0108"], "{value}");
            }
        }
    }

    #[test]
    fn retention_defaults_to_a_week_or_one_window() {
        let plan = |window: &str| {
            let text = format!(
                "source s = generator()\nmetric m from s {{ window {window} measures {{ n = count() }} }}"
            );
            compile(&text, None).plan.expect("a plan").metrics[0].retain
        };
        assert_eq!(plan("tumbling 1m"), super::DEFAULT_RETAIN);
        assert_eq!(plan("tumbling 2w").millis(), 14 * 86_400_000);
    }

    #[test]
    fn file_paths_resolve_against_the_topology_folder() {
        let text = "source f = file(\"data/e.jsonl\") { time = ts as epoch_millis }\nmetric m from f { window tumbling 1m measures { n = count() } }";
        let plan = compile(text, Some(std::path::Path::new("/topo")))
            .plan
            .expect("a plan");
        let crate::SourceKind::File(file) = &plan.sources[0].kind else {
            panic!("a file source");
        };
        assert_eq!(
            std::path::Path::new(&file.path),
            std::path::Path::new("/topo/data/e.jsonl")
        );
    }

    #[test]
    fn reads_rfc3339() {
        assert_eq!(parse_rfc3339_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_millis("2024-08-20T09:00:00+08:00"),
            Some(1_724_115_600_000)
        );
        assert_eq!(
            parse_rfc3339_millis("2024-08-20T01:00:00.5Z"),
            Some(1_724_115_600_500)
        );
        assert_eq!(parse_rfc3339_millis("2024-02-30T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_millis("yesterday"), None);
    }
}
