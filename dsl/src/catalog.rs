//! Every message the topology checker can give, in one place and one voice:
//! what was found, where, and what to write instead.
//!
//! Codes are stable: `E00xx` syntax, `E01xx` sources, `E02xx` names,
//! `E03xx` metrics, `W0xxx` warnings. Never reuse a retired code.

use crate::duration::{Duration, DurationProblem};
use crate::span::Span;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The topology cannot run.
    Error,
    /// The topology runs, but probably not as meant.
    Warning,
}

/// One kind of mistake, with what is needed to explain it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Problem {
    // ---- syntax --------------------------------------------------------
    /// A character that starts no token.
    UnexpectedChar {
        /// The character.
        found: char,
    },
    /// A string (or backquoted name) with no closing quote on its line.
    UnterminatedString,
    /// An unknown escape in a string.
    BadEscape {
        /// The escape as written.
        found: String,
    },
    /// The parser wanted one thing and found another.
    Expected {
        /// What would have been right.
        expected: String,
        /// What was there.
        found: String,
    },
    /// A top-level word that is neither `source` nor `metric`.
    UnknownItem {
        /// The word.
        found: String,
        /// A close keyword.
        suggestion: Option<String>,
    },
    /// A duration that cannot be read.
    BadDuration {
        /// The text.
        found: String,
        /// Why.
        why: DurationProblem,
    },
    /// A number that cannot be read.
    BadNumber {
        /// The text.
        found: String,
    },
    /// A block still open at the end of the file.
    Unclosed {
        /// Which block.
        what: String,
        /// Where it was opened.
        open: Span,
    },
    /// Parentheses, `not`s, lists or blocks nested deeper than the parser follows.
    TooDeep {
        /// The deepest nesting read.
        limit: usize,
    },

    // ---- sources -------------------------------------------------------
    /// A source kind other than kafka, file, generator, telemetry.
    UnknownSourceKind {
        /// The kind as written.
        found: String,
        /// A close kind.
        suggestion: Option<String>,
    },
    /// A property the source kind does not have.
    UnknownProperty {
        /// The source kind.
        kind: String,
        /// The property.
        found: String,
        /// A close property name.
        suggestion: Option<String>,
        /// The properties this kind accepts.
        allowed: Vec<&'static str>,
    },
    /// The same property (or argument) given twice.
    DuplicateProperty {
        /// The property.
        name: String,
        /// The first one.
        first: Span,
    },
    /// A kafka or file source with no `time` property.
    MissingTime {
        /// The source.
        source: String,
    },
    /// A time encoding other than epoch_millis, epoch_seconds, rfc3339.
    UnknownTimeEncoding {
        /// The encoding.
        found: String,
        /// A close encoding.
        suggestion: Option<String>,
    },
    /// A format other than json.
    UnsupportedFormat {
        /// The format.
        found: String,
    },
    /// A kafka source with no topic.
    KafkaNeedsTopics,
    /// A property or argument whose value has the wrong shape.
    BadValue {
        /// The property.
        property: String,
        /// What it takes.
        expected: String,
        /// What was written.
        found: String,
    },
    /// A field type other than string, number, bool, time.
    UnknownFieldType {
        /// The type.
        found: String,
        /// A close type.
        suggestion: Option<String>,
    },
    /// A field declared twice.
    DuplicateField {
        /// The field.
        name: String,
        /// The first declaration.
        first: Span,
    },
    /// A Kafka start position that is not earliest, latest or a time.
    BadStartPosition {
        /// What was written.
        found: String,
    },
    /// A source argument that does not fit its kind.
    BadSourceArgument {
        /// The source kind.
        kind: String,
        /// What the kind takes.
        expected: String,
    },

    // ---- names ---------------------------------------------------------
    /// Two sources with one name.
    DuplicateSource {
        /// The name.
        name: String,
        /// The first.
        first: Span,
    },
    /// Two metrics with one name.
    DuplicateMetric {
        /// The name.
        name: String,
        /// The first.
        first: Span,
    },
    /// `from` names a source that is not declared.
    UnknownSource {
        /// The name.
        found: String,
        /// A close source name.
        suggestion: Option<String>,
    },
    /// Two measures of one metric with one name.
    DuplicateMeasure {
        /// The name.
        name: String,
        /// The first.
        first: Span,
    },
    /// Two dimensions of one metric with one name.
    DuplicateDimension {
        /// The name.
        name: String,
        /// The first.
        first: Span,
    },
    /// A name starting with `__`, which statflow keeps for itself (`__time`).
    ReservedName {
        /// The name.
        name: String,
    },
    /// A measure named like a dimension of the same metric.
    NameClash {
        /// The name.
        name: String,
        /// The dimension.
        dimension: Span,
    },

    // ---- metrics -------------------------------------------------------
    /// A word in a metric block that is no clause.
    UnknownClause {
        /// The word.
        found: String,
        /// A close clause.
        suggestion: Option<String>,
    },
    /// A clause that may appear once, given twice.
    DuplicateClause {
        /// The clause.
        clause: String,
        /// The first one.
        first: Span,
    },
    /// A metric with no `window`.
    MissingWindow {
        /// The metric.
        metric: String,
    },
    /// A metric with no measures.
    EmptyMetric {
        /// The metric.
        metric: String,
    },
    /// A window kind other than tumbling, hopping, session.
    UnknownWindowKind {
        /// The kind.
        found: String,
        /// A close kind.
        suggestion: Option<String>,
    },
    /// A hopping advance that does not divide the window length.
    HoppingNotDivisible {
        /// The length.
        size: Duration,
        /// The advance.
        every: Duration,
    },
    /// A hopping advance longer than the window length.
    HoppingAdvanceTooLong {
        /// The length.
        size: Duration,
        /// The advance.
        every: Duration,
    },
    /// Retention shorter than one window.
    RetentionTooShort {
        /// The retention.
        retain: Duration,
        /// The window length.
        window: Duration,
    },
    /// A measure function that does not exist.
    UnknownFunction {
        /// The function.
        found: String,
        /// A close function.
        suggestion: Option<String>,
    },
    /// A measure function with the wrong number of arguments.
    WrongArity {
        /// The function.
        function: String,
        /// How it is called.
        usage: String,
        /// How many were given.
        found: usize,
    },
    /// A quantile not strictly between 0 and 1.
    QuantileOutOfRange {
        /// The quantile.
        found: f64,
    },
    /// A numeric measure over a field declared non-numeric.
    NonNumericMeasure {
        /// The function.
        function: String,
        /// The field.
        field: String,
        /// Its declared type.
        ty: String,
    },
    /// A regular expression that does not compile.
    BadRegex {
        /// The regex engine's explanation.
        error: String,
    },
    /// A field that the source's `fields` block does not declare.
    UnknownField {
        /// The field.
        field: String,
        /// The source(s) declaring fields.
        source: String,
        /// A close declared field.
        suggestion: Option<String>,
    },
    /// A literal whose type does not match the field's declared type.
    TypeMismatch {
        /// The field.
        field: String,
        /// Its declared type.
        ty: String,
        /// The literal's kind.
        found: String,
    },
    /// `in []`.
    EmptyList,
    /// An argument of a measure function of the wrong shape.
    BadArgument {
        /// The function.
        function: String,
        /// What it takes there.
        expected: String,
        /// What was written.
        found: String,
    },

    // ---- warnings ------------------------------------------------------
    /// A window so small for its retention that state grows large.
    ManyBuckets {
        /// Buckets per group kept.
        buckets: u64,
        /// The window step.
        step: Duration,
        /// The retention.
        retain: Duration,
    },
    /// `distinct` of a field that is also a dimension: always 1 per group.
    DistinctOfDimension {
        /// The field.
        field: String,
    },
    /// A source no metric reads.
    UnusedSource {
        /// The source.
        name: String,
    },
}

impl Problem {
    /// The stable code of this kind of problem.
    pub fn code(&self) -> &'static str {
        use Problem::*;
        match self {
            UnexpectedChar { .. } => "E0001",
            UnterminatedString => "E0002",
            BadEscape { .. } => "E0003",
            Expected { .. } => "E0004",
            UnknownItem { .. } => "E0005",
            BadDuration { .. } => "E0006",
            BadNumber { .. } => "E0007",
            Unclosed { .. } => "E0008",
            TooDeep { .. } => "E0009",
            UnknownSourceKind { .. } => "E0101",
            UnknownProperty { .. } => "E0102",
            DuplicateProperty { .. } => "E0103",
            MissingTime { .. } => "E0104",
            UnknownTimeEncoding { .. } => "E0105",
            UnsupportedFormat { .. } => "E0106",
            KafkaNeedsTopics => "E0107",
            BadValue { .. } => "E0108",
            UnknownFieldType { .. } => "E0109",
            DuplicateField { .. } => "E0110",
            BadStartPosition { .. } => "E0111",
            BadSourceArgument { .. } => "E0112",
            DuplicateSource { .. } => "E0201",
            DuplicateMetric { .. } => "E0202",
            UnknownSource { .. } => "E0203",
            DuplicateMeasure { .. } => "E0204",
            DuplicateDimension { .. } => "E0205",
            ReservedName { .. } => "E0206",
            NameClash { .. } => "E0207",
            UnknownClause { .. } => "E0301",
            DuplicateClause { .. } => "E0302",
            MissingWindow { .. } => "E0303",
            EmptyMetric { .. } => "E0304",
            UnknownWindowKind { .. } => "E0305",
            HoppingNotDivisible { .. } => "E0306",
            HoppingAdvanceTooLong { .. } => "E0307",
            RetentionTooShort { .. } => "E0308",
            UnknownFunction { .. } => "E0309",
            WrongArity { .. } => "E0310",
            QuantileOutOfRange { .. } => "E0311",
            NonNumericMeasure { .. } => "E0312",
            BadRegex { .. } => "E0313",
            UnknownField { .. } => "E0314",
            TypeMismatch { .. } => "E0315",
            EmptyList => "E0316",
            BadArgument { .. } => "E0317",
            ManyBuckets { .. } => "W0001",
            DistinctOfDimension { .. } => "W0002",
            UnusedSource { .. } => "W0003",
        }
    }

    /// Error or warning.
    pub fn severity(&self) -> Severity {
        if self.code().starts_with('W') {
            Severity::Warning
        } else {
            Severity::Error
        }
    }

    /// The headline: what is wrong.
    pub fn message(&self) -> String {
        use Problem::*;
        match self {
            UnexpectedChar { found } => format!("unexpected character `{}`", shown_char(*found)),
            UnterminatedString => "this quote is not closed on its line".into(),
            BadEscape { found } => format!("unknown escape `{found}` in a string"),
            Expected { expected, found } => format!("expected {expected}, found {found}"),
            UnknownItem { found, .. } => format!("`{found}` does not start a declaration"),
            BadDuration { found, why } => match why {
                DurationProblem::UnknownUnit { unit, .. } => {
                    format!("`{found}` is not a duration: unknown unit `{unit}`")
                }
                DurationProblem::MissingUnit => {
                    format!("`{found}` is not a duration: it has no unit")
                }
                DurationProblem::Zero => format!("`{found}` is a duration of zero"),
                DurationProblem::TooLong => format!("`{found}` is too long a duration"),
                DurationProblem::Fraction { .. } => {
                    format!("`{found}` is not a duration: it is not a whole number")
                }
            },
            BadNumber { found } => format!("`{found}` is not a number"),
            Unclosed { what, .. } => format!("{what} is never closed"),
            TooDeep { limit } => format!("this is nested more than {limit} deep"),
            UnknownSourceKind { found, .. } => format!("unknown source kind `{found}`"),
            UnknownProperty { kind, found, .. } => {
                format!("a {kind} source has no property `{found}`")
            }
            DuplicateProperty { name, .. } => format!("`{name}` is given twice"),
            MissingTime { source } => {
                format!("source `{source}` does not say which field holds event time")
            }
            UnknownTimeEncoding { found, .. } => format!("unknown time encoding `{found}`"),
            UnsupportedFormat { found } => format!("format `{found}` is not supported"),
            KafkaNeedsTopics => "this kafka source names no topic".into(),
            BadValue {
                property,
                expected,
                found,
            } => {
                format!("`{property}` takes {expected}, but this is {found}")
            }
            UnknownFieldType { found, .. } => format!("unknown field type `{found}`"),
            DuplicateField { name, .. } => format!("field `{name}` is declared twice"),
            BadStartPosition { found } => format!("`{found}` is not a start position"),
            BadSourceArgument { kind, .. } => format!("wrong arguments for a {kind} source"),
            DuplicateSource { name, .. } => format!("there are two sources named `{name}`"),
            DuplicateMetric { name, .. } => format!("there are two metrics named `{name}`"),
            UnknownSource { found, .. } => format!("no source is named `{found}`"),
            DuplicateMeasure { name, .. } => format!("there are two measures named `{name}`"),
            DuplicateDimension { name, .. } => format!("there are two dimensions named `{name}`"),
            ReservedName { name } => format!("`{name}` is a reserved name"),
            NameClash { name, .. } => format!("`{name}` is both a dimension and a measure"),
            UnknownClause { found, .. } => format!("`{found}` is not a clause of a metric"),
            DuplicateClause { clause, .. } => format!("this metric has two `{clause}` clauses"),
            MissingWindow { metric } => format!("metric `{metric}` has no window"),
            EmptyMetric { metric } => format!("metric `{metric}` has no measures"),
            UnknownWindowKind { found, .. } => format!("unknown window kind `{found}`"),
            HoppingNotDivisible { size, every } => {
                format!("a hopping window of {size} cannot start every {every}: {every} does not divide {size}")
            }
            HoppingAdvanceTooLong { size, every } => {
                format!(
                    "a hopping window of {size} starting every {every} leaves gaps between windows"
                )
            }
            RetentionTooShort { retain, window } => {
                format!("retention {retain} is shorter than one window of {window}")
            }
            UnknownFunction { found, .. } => format!("unknown measure function `{found}`"),
            WrongArity {
                function,
                usage,
                found,
            } => {
                let takes = match arity_of(usage) {
                    0 => "no arguments".to_string(),
                    1 => "1 argument".to_string(),
                    n => format!("{n} arguments"),
                };
                format!("`{function}` takes {takes}, but is given {found}")
            }
            QuantileOutOfRange { found } => format!("quantile {found} is not between 0 and 1"),
            NonNumericMeasure {
                function,
                field,
                ty,
            } => {
                format!("`{function}` needs a number, but `{field}` is declared `{ty}`")
            }
            BadRegex { .. } => "this regular expression does not compile".into(),
            UnknownField { field, source, .. } => {
                format!("source `{source}` declares no field `{field}`")
            }
            TypeMismatch { field, ty, found } => {
                format!("`{field}` is declared `{ty}` but is compared with {found}")
            }
            EmptyList => "`in` with an empty list never matches".into(),
            BadArgument {
                function,
                expected,
                found,
            } => {
                format!("`{function}` takes {expected} here, but this is {found}")
            }
            ManyBuckets {
                buckets,
                step,
                retain,
            } => {
                format!(
                    "windows every {step} kept for {retain} are {} buckets per group",
                    thousands(*buckets)
                )
            }
            DistinctOfDimension { field } => {
                format!("`distinct({field})` is always 1 because `{field}` is also a dimension")
            }
            UnusedSource { name } => format!("no metric reads source `{name}`"),
        }
    }

    /// The label under the span: what is there.
    pub fn label(&self) -> String {
        use Problem::*;
        match self {
            UnexpectedChar { found: '\'' } => "single quotes".into(),
            UnexpectedChar { found: '&' | '|' } => "not an operator here".into(),
            UnexpectedChar { .. } => "not part of the language".into(),
            UnterminatedString => "not closed".into(),
            BadEscape { .. } => "unknown escape".into(),
            // The message already says what was expected; repeating it under
            // the span makes long lists hard to read.
            Expected { found, .. } if found == "the end of the file" => "the file ends here".into(),
            Expected { .. } => "not expected here".into(),
            UnknownItem { .. } => "unknown declaration".into(),
            BadDuration { .. } => "not a duration".into(),
            BadNumber { .. } => "not a number".into(),
            Unclosed { .. } => "the file ends here".into(),
            TooDeep { .. } => "too deep".into(),
            UnknownSourceKind { .. } => "unknown kind".into(),
            UnknownProperty { .. } => "unknown property".into(),
            DuplicateProperty { .. } => "given again here".into(),
            MissingTime { .. } => "no `time` property".into(),
            UnknownTimeEncoding { .. } => "unknown encoding".into(),
            UnsupportedFormat { .. } => "unsupported format".into(),
            KafkaNeedsTopics => "no topic".into(),
            BadValue { expected, .. } => format!("expected {expected}"),
            UnknownFieldType { .. } => "unknown type".into(),
            DuplicateField { .. } => "declared again here".into(),
            BadStartPosition { .. } => "not a start position".into(),
            BadSourceArgument { .. } => "wrong arguments".into(),
            DuplicateSource { .. } | DuplicateMetric { .. } | DuplicateMeasure { .. } => {
                "the second one".into()
            }
            DuplicateDimension { .. } => "the second one".into(),
            UnknownSource { .. } => "unknown source".into(),
            ReservedName { .. } => "reserved".into(),
            NameClash { .. } => "this measure".into(),
            UnknownClause { .. } => "unknown clause".into(),
            DuplicateClause { .. } => "the second one".into(),
            MissingWindow { .. } => "no `window` clause".into(),
            EmptyMetric { .. } => "nothing to measure".into(),
            UnknownWindowKind { .. } => "unknown window kind".into(),
            HoppingNotDivisible { .. } => "does not divide the window".into(),
            HoppingAdvanceTooLong { .. } => "longer than the window".into(),
            RetentionTooShort { .. } => "too short".into(),
            UnknownFunction { .. } => "unknown function".into(),
            WrongArity { found, .. } => {
                format!("{found} argument{}", if *found == 1 { "" } else { "s" })
            }
            QuantileOutOfRange { .. } => "out of range".into(),
            NonNumericMeasure { ty, .. } => format!("a `{ty}` field"),
            BadRegex { error } => {
                let last = error.lines().last().unwrap_or("bad pattern").trim();
                last.strip_prefix("error: ").unwrap_or(last).to_string()
            }
            UnknownField { .. } => "undeclared field".into(),
            TypeMismatch { ty, .. } => format!("not a `{ty}`"),
            EmptyList => "empty list".into(),
            BadArgument { expected, .. } => format!("expected {expected}"),
            ManyBuckets { .. } => "small window, long retention".into(),
            DistinctOfDimension { .. } => "always 1".into(),
            UnusedSource { .. } => "never read".into(),
        }
    }

    /// What to write instead.
    pub fn help(&self) -> Option<String> {
        use Problem::*;
        let maybe = |s: &Option<String>, fallback: String| match s {
            Some(s) => Some(format!("did you mean `{s}`?")),
            None => Some(fallback),
        };
        match self {
            UnexpectedChar { found: '\'' } => {
                Some("write strings in double quotes, as in `kind = \"reward\"`".into())
            }
            UnexpectedChar { found: '&' } => Some("write `and` to require both tests".into()),
            UnexpectedChar { found: '|' } => Some("write `or` to accept either test".into()),
            UnexpectedChar { .. } => Some("remove it; comments start with `#`".into()),
            UnterminatedString => Some(
                "add the closing quote before the end of the line: `\"` for a string, `` ` `` for a name".into(),
            ),
            BadEscape { .. } => {
                Some("the escapes are \\n \\t \\r \\\" \\\\ and \\u{hex}; write \\\\ for a backslash, as regexes need".into())
            }
            Expected { .. } => None,
            UnknownItem { suggestion, .. } => {
                maybe(suggestion, "a topology declares `source NAME = ...` and `metric NAME from ...`".into())
            }
            BadDuration { why, .. } => Some(match why {
                DurationProblem::UnknownUnit { suggestion: Some(s), .. } => format!("write the unit as `{s}`"),
                DurationProblem::UnknownUnit { .. } | DurationProblem::MissingUnit => {
                    "write a number followed by a unit: `ms`, `s`, `m`, `h`, `d` or `w`, as in `5m` or `1h30m`".into()
                }
                DurationProblem::Zero => "give a length greater than zero, such as `1s`".into(),
                DurationProblem::TooLong => "durations are limited to about 580 million years".into(),
                DurationProblem::Fraction { exact: Some(d) } => format!("write `{d}`"),
                DurationProblem::Fraction { exact: None } => {
                    "write a whole number of a smaller unit, as in `90s` for a minute and a half".into()
                }
            }),
            BadNumber { .. } => Some("write digits with an optional fraction and exponent, as in `0.99` or `1e6`".into()),
            Unclosed { .. } => Some("add the missing `}`".into()),
            TooDeep { limit } => Some(format!(
                "split it up: statflow reads at most {limit} levels of parentheses, `not`, lists and blocks"
            )),
            UnknownSourceKind { suggestion, .. } => {
                maybe(suggestion, "a source is `kafka(\"topic\")`, `file(\"events.jsonl\")`, `generator()` or `telemetry()`".into())
            }
            UnknownProperty { suggestion, allowed, .. } => {
                maybe(suggestion, format!("the properties are {}", quote_list(allowed)))
            }
            DuplicateProperty { .. } => Some("keep one of them".into()),
            MissingTime { .. } => {
                Some("add `time = FIELD as epoch_millis` (or `epoch_seconds`, `rfc3339`) to the source".into())
            }
            UnknownTimeEncoding { suggestion, .. } => {
                maybe(suggestion, "write `epoch_millis`, `epoch_seconds` or `rfc3339`".into())
            }
            UnsupportedFormat { .. } => Some("write `format = json`; other formats are not supported yet".into()),
            KafkaNeedsTopics => Some(
                "name topics as `kafka(\"game.rewards\", \"game.bets\")` or a pattern as `kafka(pattern = \"game\\\\..*\")`".into(),
            ),
            BadValue { .. } => None,
            UnknownFieldType { suggestion, .. } => {
                maybe(suggestion, "the types are `string`, `number`, `bool` and `time`".into())
            }
            DuplicateField { .. } => Some("declare each field once".into()),
            BadStartPosition { .. } => {
                Some("write `earliest`, `latest`, or a time such as \"2024-08-20T09:00:00Z\"".into())
            }
            BadSourceArgument { expected, .. } => Some(format!("write {expected}")),
            DuplicateSource { .. } | DuplicateMetric { .. } => Some("give each a name of its own".into()),
            UnknownSource { suggestion, .. } => {
                maybe(suggestion, "declare it with `source NAME = ...` or name a declared source".into())
            }
            DuplicateMeasure { .. } => Some("give each measure a name of its own".into()),
            DuplicateDimension { .. } => {
                Some("name one of them with `as`, as in `dimensions payload.id as payload_id`".into())
            }
            ReservedName { .. } => Some("names starting with `__` belong to statflow (`__time`); choose another".into()),
            NameClash { .. } => Some("rename the measure: query columns must have distinct names".into()),
            UnknownClause { suggestion, .. } => maybe(
                suggestion,
                "a metric's clauses are `where`, `dimensions`, `window`, `retain` and `measures`".into(),
            ),
            DuplicateClause { clause, .. } => Some(if clause == "where" || clause == "dimensions" || clause == "measures" {
                format!("merge them into one `{clause}`")
            } else {
                "keep one of them".into()
            }),
            MissingWindow { .. } => Some("add a window, such as `window tumbling 1m`".into()),
            EmptyMetric { .. } => Some("add a measure, as in `measures { events = count() }`".into()),
            UnknownWindowKind { suggestion, .. } => maybe(
                suggestion,
                "write `tumbling 1m`, `hopping 10m every 1m` or `session 30m by user_id`".into(),
            ),
            HoppingNotDivisible { size, .. } => {
                Some(format!("choose an advance that divides {size}, such as {}", divisor_hint(*size)))
            }
            HoppingAdvanceTooLong { .. } => {
                Some("make `every` at most the window length, or use `tumbling` for back-to-back buckets".into())
            }
            RetentionTooShort { window, .. } => Some(format!("retain at least {window}, usually many windows")),
            UnknownFunction { suggestion, .. } => maybe(
                suggestion,
                "the functions are count(), sum(f), min(f), max(f), avg(f), distinct(f) and quantile(f, q)".into(),
            ),
            WrongArity { usage, .. } => Some(format!("write `{usage}`")),
            QuantileOutOfRange { found } if *found > 1.0 && *found < 100.0 && found.fract() == 0.0 => {
                let fraction = format!("0.{:02}", *found as u32);
                Some(format!(
                    "a quantile is a fraction, not a percentage: write `{}`",
                    fraction.trim_end_matches('0')
                ))
            }
            QuantileOutOfRange { .. } => Some("write a fraction such as 0.5 for the median or 0.99".into()),
            NonNumericMeasure { field, .. } => {
                Some(format!("measure a number field, or declare `{field}: number` if it holds numbers"))
            }
            BadRegex { .. } => Some("regexes use Rust's `regex` syntax; escape a backslash as `\\\\` inside quotes".into()),
            UnknownField { suggestion, .. } => {
                maybe(suggestion, "declare it in the source's `fields { ... }` block".into())
            }
            TypeMismatch { ty, .. } => Some(match ty.as_str() {
                "string" | "time" => "compare with a string in double quotes".into(),
                "number" => "compare with a number, without quotes".into(),
                _ => "compare with `true` or `false`".into(),
            }),
            EmptyList => Some("list at least one value, or remove the test".into()),
            BadArgument { .. } => None,
            ManyBuckets { .. } => {
                Some("use a larger window or a shorter retention; queries can still group by coarser time".into())
            }
            DistinctOfDimension { .. } => Some("remove the measure, or the dimension".into()),
            UnusedSource { .. } => Some("read it from a metric, or remove it".into()),
        }
    }

    /// Other places worth pointing at, with a label each.
    pub fn secondary(&self) -> Vec<(Span, String)> {
        use Problem::*;
        match self {
            Unclosed { open, .. } => vec![(*open, "opened here".into())],
            DuplicateProperty { first, .. }
            | DuplicateSource { first, .. }
            | DuplicateMetric { first, .. }
            | DuplicateMeasure { first, .. }
            | DuplicateDimension { first, .. }
            | DuplicateField { first, .. }
            | DuplicateClause { first, .. } => vec![(*first, "the first one".into())],
            NameClash { dimension, .. } => vec![(*dimension, "the dimension".into())],
            _ => Vec::new(),
        }
    }
}

/// How many arguments a usage such as `quantile(field, 0.99)` shows.
fn arity_of(usage: &str) -> usize {
    if usage.ends_with("()") {
        0
    } else {
        usage.matches(',').count() + 1
    }
}

/// A character as a message shows it: itself, unless it is invisible.
fn shown_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        c.escape_default().to_string()
    } else {
        c.to_string()
    }
}

/// `2592000` as `2,592,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn quote_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    quoted.join(", ")
}

fn divisor_hint(size: Duration) -> String {
    let ms = size.millis();
    // Prefer round advances: a tenth, a sixth, a fifth, a quarter, a third, a half.
    for parts in [10, 6, 5, 4, 3, 2] {
        if ms.is_multiple_of(parts) {
            return Duration::from_millis(ms / parts).to_string();
        }
    }
    size.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(2_592_000), "2,592,000");
    }

    #[test]
    fn arity_is_read_from_the_usage() {
        assert_eq!(arity_of("count()"), 0);
        assert_eq!(arity_of("sum(field)"), 1);
        assert_eq!(arity_of("quantile(field, 0.99)"), 2);
    }

    #[test]
    fn percentages_get_a_fraction_as_help() {
        let help = |q| {
            Problem::QuantileOutOfRange { found: q }
                .help()
                .unwrap_or_default()
        };
        assert!(help(99.0).ends_with("write `0.99`"), "{}", help(99.0));
        assert!(help(50.0).ends_with("write `0.5`"), "{}", help(50.0));
        assert!(help(5.0).ends_with("write `0.05`"), "{}", help(5.0));
        assert!(!help(1.0).contains("percentage"));
        assert!(!help(99.5).contains("percentage"));
    }

    #[test]
    fn warnings_are_the_w_codes() {
        let warning = Problem::UnusedSource { name: "s".into() };
        assert_eq!(warning.severity(), Severity::Warning);
        assert_eq!(Problem::EmptyList.severity(), Severity::Error);
    }
}
