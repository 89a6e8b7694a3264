//! Query validation: a decoded body checked against the running [`Plan`]
//! and turned into the [`Query`] the engine runs, or every problem at once.
//!
//! The body is the JSON that [`decode`](super::decode) produces. Its fields:
//!
//! | field | form | default |
//! | --- | --- | --- |
//! | `metric` | a metric name | required |
//! | `time_window` | `{"kind": "absolute", "from": T, "to": T}` or `{"kind": "relative", "last": "6h"}` | required |
//! | `filters` | `{dimension: condition, "and": [...], "or": [...], "not": {...}}` | none |
//! | `group_by` (alias `group_by_keys`) | dimension names and `"__time"` | one total row |
//! | `granularity` | a duration, a multiple of the window step | the step |
//! | `time_zone` | `"+08:00"`, `"Z"` or an IANA name | UTC |
//! | `measures` | measure names | all, in plan order |
//! | `order_by` | `[{"field": column, "desc": bool}]` or column names | group keys ascending |
//! | `limit` | 1 to [`MAX_ROWS`] | [`MAX_ROWS`] |
//!
//! Decisions the issue left open, written down here:
//!
//! - `null` for an optional field means "not given".
//! - The kind of a time window may be left out when `from`/`to` or `last`
//!   make it plain. A relative window is `[now − last, now)`, unaligned.
//! - `granularity` without `__time` in `group_by` is checked but has no
//!   effect, and the query carries none (a dashboard may keep it while the
//!   user toggles time off).
//! - Time buckets start at local multiples of the granularity (local
//!   midnight for days, local Monday for weeks), so when the answer is
//!   grouped by `__time` every UTC offset the zone takes during the window
//!   must be a whole number of window steps, whatever the granularity:
//!   otherwise a bucket boundary would fall inside a stored pane. (A UTC+8
//!   day, for one, is fine for a `1m` or `1h` window but not for `1d`.)
//! - A string condition is an exact match when it holds none of
//!   `\ . + * ? ( ) | [ ] { } ^ $`, and a regular expression otherwise;
//!   `{"eq": "1.5"}` matches such text exactly. On a dimension declared
//!   `number`, a plain-word string that reads as a number is that number.
//! - `in` lists are sorted and deduplicated, and the conditions of a
//!   filter map are ordered by dimension, so a JSON array and an EDN set,
//!   or two orders of the same keys, give equal queries.
//! - A condition object may hold several operators, which must all hold;
//!   `gte`/`gt`/`lt`/`lte` may also stand directly in it as a range.
//! - Without `limit` a query gets [`MAX_ROWS`] as its limit, so no answer
//!   is ever larger than that.
//! - Filters nest at most [`MAX_FILTER_DEPTH`] deep.
//! - Queries on metrics with session windows are refused: the engine does
//!   not keep them yet.

use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use serde_json::{Map, Value as Json};
use statflow_dataflow::query::{Column, Filter, GroupKey, OrderBy, Query};
use statflow_dataflow::timebucket;
use statflow_dataflow::value::Value;
use statflow_dsl::duration::parse_duration;
use statflow_dsl::{did_you_mean, Duration, FieldType, MetricPlan, Plan, Problem, Window};

use super::{QueryError, MAX_ROWS};

/// How deep `and`, `or` and `not` may nest in filters.
pub const MAX_FILTER_DEPTH: usize = 16;

/// The longest granularity a query may ask for (about ten years): longer
/// buckets would overflow bucket arithmetic without telling anyone more.
pub const MAX_GRANULARITY: Duration = Duration::from_millis(3_660 * 86_400_000);

/// The name of the time-bucket key.
pub const TIME_KEY: &str = "__time";

/// Every top-level field of a query.
pub const FIELDS: [&str; 10] = [
    "metric",
    "time_window",
    "filters",
    "group_by",
    "group_by_keys",
    "granularity",
    "time_zone",
    "measures",
    "order_by",
    "limit",
];

/// Operators of a condition object.
pub const OPERATORS: [&str; 11] = [
    "eq", "in", "regex", "range", "not", "and", "or", "gte", "gt", "lt", "lte",
];

const RANGE_BOUNDS: [&str; 4] = ["gte", "gt", "lt", "lte"];

/// Checks a decoded query against the plan. `now_ms` anchors relative time
/// windows. Returns the query the engine runs, or every problem found.
/// Never panics, whatever the value.
pub fn validate(body: &Json, plan: &Plan, now_ms: i64) -> Result<Query, Vec<QueryError>> {
    let mut c = Checker { errors: Vec::new() };
    let Some(obj) = body.as_object() else {
        c.bad_type(
            "",
            "an object such as {\"metric\": \"reward_stats\", \"time_window\": {\"kind\": \"relative\", \"last\": \"1h\"}}",
            body,
        );
        return Err(c.errors);
    };
    for key in obj.keys() {
        if !FIELDS.contains(&key.as_str()) {
            c.unknown_field(key, key, &FIELDS, "query");
        }
    }
    let field = |name: &str| obj.get(name).filter(|v| !v.is_null());

    let metric = c.metric(field("metric"), plan);
    let window = c.time_window(field("time_window"), now_ms);
    let group_by = match (field("group_by"), field("group_by_keys")) {
        (Some(a), Some(_)) => {
            c.push(
                "duplicate_field",
                "group_by_keys",
                "`group_by_keys` is another name for `group_by`, and both are given: keep one.",
            );
            c.group_by("group_by", a, metric)
        }
        (Some(a), None) => c.group_by("group_by", a, metric),
        (None, Some(b)) => c.group_by("group_by_keys", b, metric),
        (None, None) => Vec::new(),
    };
    let by_time = group_by.contains(&GroupKey::Time);
    let measures = c.measures(field("measures"), metric);
    let granularity = c.granularity(field("granularity"), metric);
    let zone = c.time_zone(field("time_zone"));
    if let (Some((_, m)), Some((from, to)), Some((tz, name)), true) =
        (metric, window, &zone, by_time)
    {
        c.zone_fits_window(tz, name, m, from, to);
    }
    let filter = match (field("filters"), metric) {
        (Some(f), Some((_, m))) => c.filters(f, m),
        (Some(f), None) if !f.is_object() => {
            c.bad_type("filters", "an object of conditions by dimension", f);
            None
        }
        _ => None,
    };
    let order_by = c.order_by(field("order_by"), metric, &group_by, &measures);
    let limit = c.limit(field("limit"));

    match (metric, window) {
        (Some((index, _)), Some((from_ms, to_ms))) if c.errors.is_empty() => Ok(Query {
            metric: index,
            from_ms,
            to_ms,
            filter,
            group_by,
            granularity_ms: if by_time { granularity } else { None },
            time_zone: zone.and_then(|(_, name)| name),
            measures,
            order_by,
            limit: Some(limit.unwrap_or(MAX_ROWS)),
        }),
        _ => Err(c.errors),
    }
}

/// Reads a time zone as the engine will (`Z`, `UTC`, `+08:00`, `-0530`,
/// `Asia/Shanghai`) and names it canonically: `None` for UTC, `+HH:MM` for
/// a fixed offset, the database's spelling for a named zone.
pub fn read_time_zone(text: &str) -> Result<(TimeZone, Option<String>), String> {
    let tz = timebucket::parse_time_zone(text)?;
    let name = match (tz.iana_name(), tz.to_fixed_offset()) {
        (_, Ok(offset)) if offset == Offset::UTC => None,
        (Some(name), _) => Some(name.to_string()),
        (None, Ok(offset)) => Some(format_offset(offset)),
        (None, Err(_)) => Some(text.trim().to_string()),
    };
    Ok((tz, name))
}

/// `+08:00`, `-05:30`.
fn format_offset(offset: Offset) -> String {
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// True when `text` has no regular-expression meaning: it matches only itself.
pub fn is_plain_word(text: &str) -> bool {
    !text.chars().any(|c| "\\.+*?()|[]{}^$".contains(c))
}

/// Collects problems as the query is read.
struct Checker {
    errors: Vec<QueryError>,
}

/// A resolved metric: its index and plan.
type MetricRef<'p> = Option<(usize, &'p MetricPlan)>;

/// A JSON value's kind, for messages.
fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `a, b and c`, each in backquotes.
fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => "none".to_string(),
        1 => quoted[0].clone(),
        n => format!("{} and {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// "; did you mean `x`?" or "; the choices are …" (short lists only).
fn hint(found: &str, candidates: &[&str], what: &str) -> String {
    if let Some(s) = did_you_mean(found, candidates.iter().copied()) {
        format!("; did you mean `{s}`?")
    } else if candidates.is_empty() {
        String::new()
    } else if candidates.len() <= 12 {
        format!("; the {what} are {}.", list(candidates))
    } else {
        ".".to_string()
    }
}

/// The sentence for a duration that cannot be read, from the language's catalog.
fn duration_sentence(text: &str) -> Option<String> {
    match parse_duration(text) {
        Ok(_) => None,
        Err(why) => {
            let problem = Problem::BadDuration {
                found: text.to_string(),
                why,
            };
            Some(match problem.help() {
                Some(help) => format!("{}: {help}.", problem.message()),
                None => format!("{}.", problem.message()),
            })
        }
    }
}

/// A signed duration such as `-5h30m`, for offsets.
fn signed(ms: i64) -> String {
    let d = Duration::from_millis(ms.unsigned_abs()).to_string();
    if ms < 0 {
        format!("-{d}")
    } else {
        d
    }
}

impl Checker {
    fn push(&mut self, code: &'static str, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(QueryError::new(code, path, message));
    }

    fn bad_type(&mut self, path: &str, expected: &str, found: &Json) {
        let what = if path.is_empty() {
            "The query".to_string()
        } else {
            format!("`{path}`")
        };
        self.push(
            "bad_type",
            path,
            format!("{what} should be {expected}, but it is {}.", kind_of(found)),
        );
    }

    fn unknown_field(&mut self, path: &str, key: &str, known: &[&str], what: &str) {
        self.push(
            "unknown_field",
            path,
            format!(
                "A {what} has no field `{key}`{}",
                hint(key, known, "fields")
            ),
        );
    }

    fn string<'v>(&mut self, path: &str, v: &'v Json, expected: &str) -> Option<&'v str> {
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                self.bad_type(path, expected, v);
                None
            }
        }
    }

    fn object<'v>(
        &mut self,
        path: &str,
        v: &'v Json,
        expected: &str,
    ) -> Option<&'v Map<String, Json>> {
        match v.as_object() {
            Some(o) => Some(o),
            None => {
                self.bad_type(path, expected, v);
                None
            }
        }
    }

    // ---- metric ----------------------------------------------------------

    fn metric<'p>(&mut self, v: Option<&Json>, plan: &'p Plan) -> MetricRef<'p> {
        let Some(v) = v else {
            self.push(
                "missing_field",
                "metric",
                "A query needs `metric`, the name of the metric to read, such as \"reward_stats\".",
            );
            return None;
        };
        let name = self.string("metric", v, "a metric name such as \"reward_stats\"")?;
        let Some(index) = plan.metrics.iter().position(|m| m.name == name) else {
            let names: Vec<&str> = plan.metrics.iter().map(|m| m.name.as_str()).collect();
            self.push(
                "unknown_metric",
                "metric",
                format!(
                    "There is no metric `{name}`{}",
                    hint(name, &names, "metrics")
                ),
            );
            return None;
        };
        let m = &plan.metrics[index];
        if let Window::Session { .. } = m.window {
            self.push(
                "unsupported_window",
                "metric",
                format!(
                    "Metric `{name}` has a session window ({}), which queries cannot read yet: query a metric with a tumbling or hopping window.",
                    m.window
                ),
            );
            return None;
        }
        Some((index, m))
    }

    // ---- time window -----------------------------------------------------

    fn time_window(&mut self, v: Option<&Json>, now_ms: i64) -> Option<(i64, i64)> {
        const PATH: &str = "time_window";
        let Some(v) = v else {
            self.push(
                "missing_field",
                PATH,
                "A query needs `time_window`, such as {\"kind\": \"relative\", \"last\": \"6h\"} or {\"kind\": \"absolute\", \"from\": \"2024-08-20T09:00:00+08:00\", \"to\": \"2024-08-20T10:00:00+08:00\"}.",
            );
            return None;
        };
        let obj = self.object(
            PATH,
            v,
            "an object such as {\"kind\": \"relative\", \"last\": \"6h\"}",
        )?;
        const KEYS: [&str; 4] = ["kind", "from", "to", "last"];
        for key in obj.keys() {
            if !KEYS.contains(&key.as_str()) {
                self.unknown_field(&join_path(PATH, key), key, &KEYS, "time window");
            }
        }
        let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
        let kind = match get("kind") {
            Some(k) => match self.string("time_window.kind", k, "\"absolute\" or \"relative\"")? {
                "absolute" => "absolute",
                "relative" => "relative",
                other => {
                    let hint = hint(other, &["absolute", "relative"], "kinds");
                    self.push(
                        "bad_time",
                        "time_window.kind",
                        format!(
                            "A time window is \"absolute\" (with `from` and `to`) or \"relative\" (with `last`), not \"{other}\"{hint}"
                        ),
                    );
                    return None;
                }
            },
            None if get("last").is_some() => "relative",
            None => "absolute",
        };
        if kind == "relative" {
            for key in ["from", "to"] {
                if obj.contains_key(key) {
                    self.push(
                        "unknown_field",
                        join_path(PATH, key),
                        format!("A relative time window has only `last`, not `{key}`: give `last`, or make the window \"absolute\"."),
                    );
                }
            }
            let Some(last) = get("last") else {
                self.push(
                    "missing_field",
                    "time_window.last",
                    "A relative time window needs `last`, how far back from now it reaches, such as \"6h\".",
                );
                return None;
            };
            let text = self.string("time_window.last", last, "a duration such as \"6h\"")?;
            if let Some(sentence) = duration_sentence(text) {
                self.push("bad_time", "time_window.last", sentence);
                return None;
            }
            let back = parse_duration(text).ok()?.millis();
            let Some(from) = i64::try_from(back).ok().and_then(|b| now_ms.checked_sub(b)) else {
                self.push(
                    "bad_time",
                    "time_window.last",
                    format!("`{text}` reaches back further than time can be counted: use a shorter duration."),
                );
                return None;
            };
            Some((from, now_ms))
        } else {
            if obj.contains_key("last") {
                self.push(
                    "unknown_field",
                    "time_window.last",
                    "An absolute time window has `from` and `to`, not `last`: drop `last`, or make the window \"relative\".",
                );
            }
            let from = self.instant(get("from"), "from");
            let to = self.instant(get("to"), "to");
            let ((from, from_text), (to, to_text)) = (from?, to?);
            if from >= to {
                self.push(
                    "empty_window",
                    PATH,
                    format!(
                        "The time window is empty: `from` ({from_text}) must be before `to` ({to_text}), which is not included."
                    ),
                );
                return None;
            }
            Some((from, to))
        }
    }

    /// `from` or `to` of an absolute window: milliseconds and the text.
    fn instant(&mut self, v: Option<&Json>, key: &str) -> Option<(i64, String)> {
        let path = format!("time_window.{key}");
        let Some(v) = v else {
            self.push(
                "missing_field",
                &path,
                format!(
                    "An absolute time window needs `{key}`, such as \"2024-08-20T09:00:00+08:00\"."
                ),
            );
            return None;
        };
        let text = self.string(
            &path,
            v,
            "an RFC 3339 time such as \"2024-08-20T09:00:00+08:00\"",
        )?;
        match text.trim().parse::<Timestamp>() {
            Ok(ts) => Some((ts.as_millisecond(), text.to_string())),
            Err(_) => {
                let message = if text.trim().parse::<jiff::civil::DateTime>().is_ok() {
                    format!("`{text}` has no UTC offset: add one, as in \"2024-08-20T09:00:00+08:00\", or end it with `Z` for UTC.")
                } else {
                    format!("`{text}` is not a time: write an RFC 3339 time with its offset, such as \"2024-08-20T09:00:00+08:00\".")
                };
                self.push("bad_time", path, message);
                None
            }
        }
    }

    // ---- group keys, measures, granularity, zone -------------------------

    fn names<'v>(&mut self, path: &str, v: &'v Json, what: &str) -> Vec<(String, &'v str)> {
        let Some(items) = v.as_array() else {
            self.bad_type(path, &format!("an array of {what} names"), v);
            return Vec::new();
        };
        let mut out: Vec<(String, &str)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let here = format!("{path}[{i}]");
            let Some(name) = self.string(&here, item, &format!("a {what} name")) else {
                continue;
            };
            if out.iter().any(|(_, n)| *n == name) {
                self.push(
                    "duplicate_name",
                    &here,
                    format!("`{name}` is listed twice in `{path}`: keep one."),
                );
                continue;
            }
            out.push((here, name));
        }
        out
    }

    fn group_by(&mut self, path: &str, v: &Json, metric: MetricRef) -> Vec<GroupKey> {
        let names = self.names(path, v, "dimension");
        let Some((_, m)) = metric else {
            return Vec::new();
        };
        let mut keys = Vec::new();
        for (here, name) in names {
            if name == TIME_KEY {
                keys.push(GroupKey::Time);
            } else if let Some(i) = m.dimensions.iter().position(|d| d.name == name) {
                keys.push(GroupKey::Dimension(i));
            } else {
                let mut candidates: Vec<&str> =
                    m.dimensions.iter().map(|d| d.name.as_str()).collect();
                candidates.push(TIME_KEY);
                let hint = if ["time", "_time", "timestamp", "ts", "bucket"].contains(&name) {
                    format!("; group by time with `{TIME_KEY}`.")
                } else {
                    hint(name, &candidates, "group keys")
                };
                self.push(
                    "unknown_dimension",
                    here,
                    format!("Metric `{}` has no dimension `{name}`{hint}", m.name),
                );
            }
        }
        keys
    }

    fn measures(&mut self, v: Option<&Json>, metric: MetricRef) -> Vec<usize> {
        let Some(v) = v else {
            return metric
                .map(|(_, m)| (0..m.measures.len()).collect())
                .unwrap_or_default();
        };
        let names = self.names("measures", v, "measure");
        let Some((_, m)) = metric else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (here, name) in names {
            match m.measures.iter().position(|x| x.name == name) {
                Some(i) => out.push(i),
                None => {
                    let candidates: Vec<&str> =
                        m.measures.iter().map(|x| x.name.as_str()).collect();
                    let extra = if m.dimension(name).is_some() {
                        format!("; `{name}` is a dimension: put it in `group_by`.")
                    } else {
                        hint(name, &candidates, "measures")
                    };
                    self.push(
                        "unknown_measure",
                        here,
                        format!("Metric `{}` has no measure `{name}`{extra}", m.name),
                    );
                }
            }
        }
        out
    }

    fn granularity(&mut self, v: Option<&Json>, metric: MetricRef) -> Option<u64> {
        const PATH: &str = "granularity";
        let text = self.string(PATH, v?, "a duration such as \"5m\"")?;
        if let Some(sentence) = duration_sentence(text) {
            self.push("bad_granularity", PATH, sentence);
            return None;
        }
        let g = parse_duration(text).ok()?;
        if g > MAX_GRANULARITY {
            self.push(
                "bad_granularity",
                PATH,
                format!(
                    "A granularity of {g} is longer than the {MAX_GRANULARITY} a query may use."
                ),
            );
            return None;
        }
        if let Some((_, m)) = metric {
            let step = m.window.step();
            if g.millis() % step.millis() != 0 {
                let examples: Vec<String> = granularities(step)
                    .into_iter()
                    .take(4)
                    .map(|d| d.to_string())
                    .collect();
                let examples: Vec<&str> = examples.iter().map(String::as_str).collect();
                self.push(
                    "bad_granularity",
                    PATH,
                    format!(
                        "A granularity of {g} does not fit metric `{}`, whose windows start every {step}: use a multiple of {step}, such as {}.",
                        m.name,
                        list(&examples).replace(" and ", " or ")
                    ),
                );
                return None;
            }
        }
        Some(g.millis())
    }

    fn time_zone(&mut self, v: Option<&Json>) -> Option<(TimeZone, Option<String>)> {
        const PATH: &str = "time_zone";
        let text = self.string(
            PATH,
            v?,
            "a time zone such as \"+08:00\" or \"Asia/Shanghai\"",
        )?;
        match read_time_zone(text) {
            Ok(zone) => Some(zone),
            Err(message) => {
                let message = if message.ends_with('.') {
                    message
                } else {
                    format!("{message}.")
                };
                self.push("bad_time_zone", PATH, message);
                None
            }
        }
    }

    /// Every UTC offset the zone takes in `[from, to)` must be a whole
    /// number of window steps, or a bucket boundary would cut a pane.
    fn zone_fits_window(
        &mut self,
        tz: &TimeZone,
        name: &Option<String>,
        m: &MetricPlan,
        from: i64,
        to: i64,
    ) {
        let Some(name) = name else { return };
        let step = m.window.step().millis() as i64;
        let misfit = |offset: Offset| {
            let ms = i64::from(offset.seconds()) * 1000;
            (ms % step != 0).then_some(ms)
        };
        let start = Timestamp::from_millisecond(from).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut bad = misfit(tz.to_offset(start)).map(|ms| (ms, None));
        if bad.is_none() {
            // Daylight-saving changes within the window; a window of
            // centuries is checked for its first thousand changes.
            for t in tz.following(start).take(1_000) {
                let at = t.timestamp();
                if at.as_millisecond() >= to {
                    break;
                }
                if let Some(ms) = misfit(t.offset()) {
                    bad = Some((ms, Some(at)));
                    break;
                }
            }
        }
        if let Some((ms, at)) = bad {
            let when = match at {
                Some(at) => format!(" from {at}"),
                None => String::new(),
            };
            let step = m.window.step();
            self.push(
                "bad_time_zone",
                "time_zone",
                format!(
                    "Time zone `{name}` is {} off UTC{when}, not a whole number of the {step} steps of metric `{}`'s windows, so its time buckets would cut windows in two: use a zone whose offset is a multiple of {step}, such as UTC, or leave `{TIME_KEY}` out of `group_by`.",
                    signed(ms),
                    m.name
                ),
            );
        }
    }

    // ---- filters ---------------------------------------------------------

    fn filters(&mut self, v: &Json, m: &MetricPlan) -> Option<Filter> {
        let obj = self.object(
            "filters",
            v,
            "an object of conditions by dimension, such as {\"reward_type\": \"task\"}",
        )?;
        match self.filter_map("filters", obj, m, 0) {
            Filter::And(all) if all.is_empty() => None,
            f => Some(f),
        }
    }

    /// A map of conditions by dimension (plus `and`/`or`/`not`), all of
    /// which must hold. Conjuncts are ordered by dimension, then and/or/not.
    fn filter_map(
        &mut self,
        path: &str,
        obj: &Map<String, Json>,
        m: &MetricPlan,
        depth: usize,
    ) -> Filter {
        let mut parts: Vec<((usize, usize), Filter)> = Vec::new();
        for (key, v) in obj {
            let here = join_path(path, key);
            if let Some(i) = m.dimensions.iter().position(|d| d.name == *key) {
                if let Some(f) = self.condition(&here, v, i, m, depth) {
                    parts.push(((0, i), f));
                }
                continue;
            }
            let logical = match key.as_str() {
                "and" | "or" => {
                    if !self.deep_enough(&here, depth) {
                        continue;
                    }
                    let Some(items) = v.as_array() else {
                        self.bad_type(&here, "an array of filter maps", v);
                        continue;
                    };
                    let mut fs = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let at = format!("{here}[{i}]");
                        if let Some(o) = self.object(
                            &at,
                            item,
                            "a filter map such as {\"reward_type\": \"task\"}",
                        ) {
                            fs.push(self.filter_map(&at, o, m, depth + 1));
                        }
                    }
                    if key == "and" {
                        ((1, 0), Filter::And(fs))
                    } else {
                        ((1, 1), Filter::Or(fs))
                    }
                }
                "not" => {
                    if !self.deep_enough(&here, depth) {
                        continue;
                    }
                    let inner = match v {
                        Json::Object(o) => self.filter_map(&here, o, m, depth + 1),
                        Json::Array(items) => {
                            let mut fs = Vec::new();
                            for (i, item) in items.iter().enumerate() {
                                let at = format!("{here}[{i}]");
                                if let Some(o) = self.object(&at, item, "a filter map") {
                                    fs.push(self.filter_map(&at, o, m, depth + 1));
                                }
                            }
                            Filter::And(fs)
                        }
                        other => {
                            self.bad_type(
                                &here,
                                "a filter map such as {\"reward_type\": \"task\"}",
                                other,
                            );
                            continue;
                        }
                    };
                    ((1, 2), Filter::Not(Box::new(inner)))
                }
                _ => {
                    let mut candidates: Vec<&str> =
                        m.dimensions.iter().map(|d| d.name.as_str()).collect();
                    let dims = candidates.clone();
                    candidates.extend(["and", "or", "not"]);
                    let hint = match did_you_mean(key, candidates.iter().copied()) {
                        Some(s) => format!("; did you mean `{s}`?"),
                        None if OPERATORS.contains(&key.as_str()) => format!(
                            "; `{key}` is an operator: write it inside a dimension's condition, as in {{\"reward_type\": {{\"{key}\": ...}}}}."
                        ),
                        None => hint(key, &dims, "dimensions"),
                    };
                    self.push(
                        "unknown_dimension",
                        here,
                        format!("Metric `{}` has no dimension `{key}`{hint}", m.name),
                    );
                    continue;
                }
            };
            parts.push(logical);
        }
        parts.sort_by_key(|(k, _)| *k);
        let mut fs: Vec<Filter> = parts.into_iter().map(|(_, f)| f).collect();
        if fs.len() == 1 {
            fs.pop().unwrap_or(Filter::And(Vec::new()))
        } else {
            Filter::And(fs)
        }
    }

    fn deep_enough(&mut self, path: &str, depth: usize) -> bool {
        if depth >= MAX_FILTER_DEPTH {
            self.push(
                "bad_filter",
                path,
                format!("Filters nest more than {MAX_FILTER_DEPTH} deep here: write them flatter."),
            );
            false
        } else {
            true
        }
    }

    /// The condition on one dimension: a string, a scalar, an array, or an
    /// object of operators.
    fn condition(
        &mut self,
        path: &str,
        v: &Json,
        dim: usize,
        m: &MetricPlan,
        depth: usize,
    ) -> Option<Filter> {
        match v {
            Json::String(s) if !is_plain_word(s) => self.regex(path, s, dim),
            Json::Array(items) => self.set(path, items, dim, m).map(|vs| Filter::In(dim, vs)),
            Json::Object(ops) => self.operators(path, ops, dim, m, depth),
            scalar => self
                .literal(path, scalar, dim, m)
                .map(|x| Filter::Eq(dim, x)),
        }
    }

    /// A value to compare a dimension with, exactly.
    fn literal(&mut self, path: &str, v: &Json, dim: usize, m: &MetricPlan) -> Option<Value> {
        let d = &m.dimensions[dim];
        match v {
            Json::Null => Some(Value::Null),
            Json::Bool(b) => Some(Value::Bool(*b)),
            Json::Number(n) => Some(Value::number(n.as_f64().unwrap_or(f64::NAN))),
            Json::String(s) if d.ty == Some(FieldType::Number) => match s.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => Some(Value::number(x)),
                _ => {
                    self.push(
                        "bad_type",
                        path,
                        format!("Dimension `{}` holds numbers, so \"{s}\" never matches: write a number, or a regular expression to match its digits.", d.name),
                    );
                    None
                }
            },
            Json::String(s) => Some(Value::Str(s.clone())),
            other => {
                self.bad_type(path, "a string, number, boolean or null", other);
                None
            }
        }
    }

    fn set(
        &mut self,
        path: &str,
        items: &[Json],
        dim: usize,
        m: &MetricPlan,
    ) -> Option<Vec<Value>> {
        let mut values = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.literal(&format!("{path}[{i}]"), item, dim, m) {
                Some(x) => values.push(x),
                None => ok = false,
            }
        }
        values.sort();
        values.dedup();
        ok.then_some(values)
    }

    fn regex(&mut self, path: &str, pattern: &str, dim: usize) -> Option<Filter> {
        // The pattern must stand on its own (so that wrapping it cannot
        // change its meaning, as with `a)|(b`) and anchored, as the engine runs it.
        let checked =
            regex::Regex::new(pattern).and_then(|_| regex::Regex::new(&format!("^(?:{pattern})$")));
        match checked {
            Ok(_) => Some(Filter::Regex(dim, pattern.to_string())),
            Err(e) => {
                self.push(
                    "bad_regex",
                    path,
                    format!(
                        "`{pattern}` is not a regular expression: {}. Write a pattern such as \"fuc|tax-up\", or {{\"eq\": ...}} to match text exactly.",
                        regex_problem(&e)
                    ),
                );
                None
            }
        }
    }

    fn operators(
        &mut self,
        path: &str,
        ops: &Map<String, Json>,
        dim: usize,
        m: &MetricPlan,
        depth: usize,
    ) -> Option<Filter> {
        if ops.is_empty() {
            self.push(
                "bad_filter",
                path,
                format!(
                    "This condition is empty: write a value, or an object with one of {}.",
                    list(&OPERATORS[..7])
                ),
            );
            return None;
        }
        let mut parts = Vec::new();
        let mut ok = true;
        let mut range = Map::new();
        for (op, v) in ops {
            let here = join_path(path, op);
            let part = match op.as_str() {
                "eq" => self.literal(&here, v, dim, m).map(|x| Filter::Eq(dim, x)),
                "in" => match v.as_array() {
                    Some(items) => self.set(&here, items, dim, m).map(|vs| Filter::In(dim, vs)),
                    None => {
                        self.bad_type(&here, "an array of values", v);
                        None
                    }
                },
                "regex" => self
                    .string(&here, v, "a regular expression such as \"fuc|tax-up\"")
                    .and_then(|p| self.regex(&here, p, dim)),
                "range" => match self.object(
                    &here,
                    v,
                    "an object of bounds such as {\"gte\": 1, \"lt\": 10}",
                ) {
                    Some(bounds) => self.range(&here, bounds, dim, m),
                    None => None,
                },
                "gte" | "gt" | "lt" | "lte" => {
                    range.insert(op.clone(), v.clone());
                    continue;
                }
                "not" => {
                    if !self.deep_enough(&here, depth) {
                        ok = false;
                        continue;
                    }
                    self.condition(&here, v, dim, m, depth + 1)
                        .map(|f| Filter::Not(Box::new(f)))
                }
                "and" | "or" => {
                    if !self.deep_enough(&here, depth) {
                        ok = false;
                        continue;
                    }
                    match v.as_array() {
                        Some(items) => {
                            let mut fs = Vec::new();
                            let mut all = true;
                            for (i, item) in items.iter().enumerate() {
                                match self.condition(
                                    &format!("{here}[{i}]"),
                                    item,
                                    dim,
                                    m,
                                    depth + 1,
                                ) {
                                    Some(f) => fs.push(f),
                                    None => all = false,
                                }
                            }
                            all.then(|| {
                                if op == "and" {
                                    Filter::And(fs)
                                } else {
                                    Filter::Or(fs)
                                }
                            })
                        }
                        None => {
                            self.bad_type(&here, "an array of conditions", v);
                            None
                        }
                    }
                }
                other => {
                    self.push(
                        "unknown_operator",
                        &here,
                        format!(
                            "`{other}` is not a condition operator{}",
                            hint(other, &OPERATORS, "operators")
                        ),
                    );
                    None
                }
            };
            match part {
                Some(f) => parts.push(f),
                None => ok = false,
            }
        }
        if !range.is_empty() {
            match self.range(path, &range, dim, m) {
                Some(f) => parts.push(f),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        if parts.len() == 1 {
            parts.pop()
        } else {
            Some(Filter::And(parts))
        }
    }

    fn range(
        &mut self,
        path: &str,
        bounds: &Map<String, Json>,
        dim: usize,
        m: &MetricPlan,
    ) -> Option<Filter> {
        let d = &m.dimensions[dim];
        let mut ok = true;
        if let Some(ty) = d.ty.filter(|t| *t != FieldType::Number) {
            self.push(
                "bad_filter",
                path,
                format!("A range compares numbers, but dimension `{}` is declared `{}`: use a value, a set or a regular expression.", d.name, ty.keyword()),
            );
            ok = false;
        }
        if bounds.is_empty() {
            self.push(
                "bad_filter",
                path,
                "This range has no bound: give at least one of `gte`, `gt`, `lt` and `lte`.",
            );
            return None;
        }
        let mut b = [None; 4];
        for (key, v) in bounds {
            let here = join_path(path, key);
            let Some(at) = RANGE_BOUNDS.iter().position(|k| k == key) else {
                self.push(
                    "unknown_operator",
                    &here,
                    format!(
                        "`{key}` is not a range bound{}",
                        hint(key, &RANGE_BOUNDS, "bounds")
                    ),
                );
                ok = false;
                continue;
            };
            match v.as_f64() {
                Some(x) => b[at] = Some(x),
                None => {
                    self.bad_type(&here, "a number", v);
                    ok = false;
                }
            }
        }
        ok.then_some(Filter::Range {
            dimension: dim,
            gte: b[0],
            gt: b[1],
            lt: b[2],
            lte: b[3],
        })
    }

    // ---- order and limit -------------------------------------------------

    fn order_by(
        &mut self,
        v: Option<&Json>,
        metric: MetricRef,
        group_by: &[GroupKey],
        measures: &[usize],
    ) -> Vec<OrderBy> {
        const PATH: &str = "order_by";
        let Some(v) = v else { return Vec::new() };
        let Some(items) = v.as_array() else {
            self.bad_type(
                PATH,
                "an array such as [{\"field\": \"rewards\", \"desc\": true}]",
                v,
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let here = format!("{PATH}[{i}]");
            let (name, desc, field_path) = match item {
                Json::String(s) => (s.as_str(), false, here.clone()),
                Json::Object(o) => {
                    const KEYS: [&str; 2] = ["field", "desc"];
                    for key in o.keys() {
                        if !KEYS.contains(&key.as_str()) {
                            self.unknown_field(&join_path(&here, key), key, &KEYS, "sort key");
                        }
                    }
                    let desc = match o.get("desc").filter(|d| !d.is_null()) {
                        None => false,
                        Some(Json::Bool(b)) => *b,
                        Some(other) => {
                            self.bad_type(&format!("{here}.desc"), "true or false", other);
                            false
                        }
                    };
                    let field_path = format!("{here}.field");
                    let Some(f) = o.get("field").filter(|f| !f.is_null()) else {
                        self.push(
                            "missing_field",
                            &field_path,
                            "A sort key needs `field`, the column to sort by, such as \"rewards\".",
                        );
                        continue;
                    };
                    let Some(name) = self.string(&field_path, f, "a column name") else {
                        continue;
                    };
                    (name, desc, field_path)
                }
                other => {
                    self.bad_type(
                        &here,
                        "an object such as {\"field\": \"rewards\", \"desc\": true}",
                        other,
                    );
                    continue;
                }
            };
            let Some((_, m)) = metric else { continue };
            let column = if name == TIME_KEY {
                group_by
                    .contains(&GroupKey::Time)
                    .then_some(Column::Key(GroupKey::Time))
            } else if let Some(d) = m.dimensions.iter().position(|x| x.name == name) {
                group_by
                    .contains(&GroupKey::Dimension(d))
                    .then_some(Column::Key(GroupKey::Dimension(d)))
            } else if let Some(x) = m.measures.iter().position(|x| x.name == name) {
                measures.contains(&x).then_some(Column::Measure(x))
            } else {
                let columns = answer_columns(m, group_by, measures);
                let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
                self.push(
                    "unknown_column",
                    &field_path,
                    format!(
                        "The answer has no column `{name}` to sort by{}",
                        hint(name, &columns, "columns")
                    ),
                );
                continue;
            };
            match column {
                Some(column) => out.push(OrderBy { column, desc }),
                None => {
                    let fix = if m.measure(name).is_some() {
                        "add it to `measures` to sort by it"
                    } else {
                        "add it to `group_by` to sort by it"
                    };
                    self.push(
                        "unknown_column",
                        &field_path,
                        format!("`{name}` is not a column of this answer: {fix}."),
                    );
                }
            }
        }
        out
    }

    fn limit(&mut self, v: Option<&Json>) -> Option<usize> {
        const PATH: &str = "limit";
        let v = v?;
        let expected = format!("a whole number from 1 to {MAX_ROWS}");
        let Some(n) = v.as_f64() else {
            self.bad_type(PATH, &expected, v);
            return None;
        };
        if n.fract() == 0.0 && n >= 1.0 && n <= MAX_ROWS as f64 {
            Some(n as usize)
        } else {
            self.push(
                "bad_limit",
                PATH,
                format!("A limit of {v} is not {expected}; without `limit` an answer holds at most {MAX_ROWS} rows."),
            );
            None
        }
    }
}

/// The columns of an answer: group keys, then measures.
fn answer_columns(m: &MetricPlan, group_by: &[GroupKey], measures: &[usize]) -> Vec<String> {
    group_by
        .iter()
        .map(|g| match g {
            GroupKey::Dimension(i) => m.dimensions[*i].name.clone(),
            GroupKey::Time => TIME_KEY.to_string(),
        })
        .chain(measures.iter().map(|i| m.measures[*i].name.clone()))
        .collect()
}

/// The one-line reason inside the regex crate's multi-line error.
fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| {
            text.lines()
                .last()
                .unwrap_or("it does not compile")
                .trim()
                .to_string()
        })
        .trim_end_matches('.')
        .to_string()
}

/// The granularities worth offering for a window step: the step and the
/// usual multiples of it, shortest first.
pub fn granularities(step: Duration) -> Vec<Duration> {
    const USUAL: [u64; 12] = [
        60_000,
        300_000,
        900_000,
        1_800_000,
        3_600_000,
        10_800_000,
        21_600_000,
        43_200_000,
        86_400_000,
        604_800_000,
        2_592_000_000,
        31_536_000_000,
    ];
    let s = step.millis();
    let mut out = vec![step];
    out.extend(
        USUAL
            .iter()
            .filter(|g| **g > s && **g % s == 0)
            .map(|g| Duration::from_millis(*g)),
    );
    if out.len() < 4 {
        for k in [2, 5, 10, 30] {
            if let Some(g) = s.checked_mul(k).filter(|g| *g <= MAX_GRANULARITY.millis()) {
                out.push(Duration::from_millis(g));
            }
        }
        out.sort();
        out.dedup();
    }
    out.truncate(8);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::decode::decode;
    use serde_json::json;

    /// The topology of the issue.
    const TOPOLOGY: &str = "source events = generator()
metric reward_stats from events { dimensions game_id, seed_id, reward_type  window tumbling 1m  measures { rewards = count()  amount = sum(amount)  players = distinct(user_id) } }";

    /// Declared types, a hopping window, an hourly window and a session window.
    const MORE: &str = r#"source logs = file("logs.jsonl") {
  time = ts as epoch_millis
  fields { ts: time  game_id: string  level: number  user_id: string }
}
metric typed from logs { dimensions game_id, level  window tumbling 1h  measures { n = count() } }
metric hopping from logs { dimensions game_id  window hopping 10m every 5m  measures { n = count() } }
metric sessions from logs { dimensions game_id  window session 30m by user_id  measures { n = count() } }"#;

    const NOW: i64 = 1_724_119_200_000; // 2024-08-20T02:00:00Z
    const FROM: i64 = 1_724_115_600_000; // 2024-08-20T01:00:00Z

    const ISSUE_EDN: &str = r#"{:metric :reward-stats :time-window {:kind :absolute :from "2024-08-20T09:00:00+08:00" :to "2024-08-20T10:00:00+08:00"} :filters {:seed-id "fuc|tax-up" :reward-type #{:reward.type/task}} :group-by-keys [:reward-type :__time]}"#;

    fn plan() -> Plan {
        let compiled = statflow_dsl::compile(TOPOLOGY, None);
        compiled.plan.expect("the issue's topology compiles")
    }

    fn more() -> Plan {
        let compiled = statflow_dsl::compile(MORE, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        compiled.plan.expect("compiles")
    }

    fn base() -> Json {
        json!({
            "metric": "reward_stats",
            "time_window": {"kind": "absolute", "from": "2024-08-20T09:00:00+08:00", "to": "2024-08-20T10:00:00+08:00"},
        })
    }

    fn with(changes: Json) -> Json {
        let mut q = base();
        for (k, v) in changes.as_object().unwrap() {
            q[k] = v.clone();
        }
        q
    }

    fn ok(body: &Json) -> Query {
        validate(body, &plan(), NOW).unwrap_or_else(|e| panic!("{e:#?}"))
    }

    fn errors(body: &Json, plan: &Plan) -> Vec<(&'static str, String)> {
        match validate(body, plan, NOW) {
            Ok(q) => panic!("accepted: {q:?}"),
            Err(e) => e.into_iter().map(|e| (e.code, e.path)).collect(),
        }
    }

    /// Exactly one error, with this code and path; returns its message.
    fn one(body: Json, code: &str, path: &str) -> String {
        one_in(&plan(), body, code, path)
    }

    fn one_in(plan: &Plan, body: Json, code: &str, path: &str) -> String {
        let e = validate(&body, plan, NOW).expect_err("rejected");
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(
            (e[0].code, e[0].path.as_str()),
            (code, path),
            "{}",
            e[0].message
        );
        assert!(
            e[0].message.ends_with(['.', '?']),
            "a sentence: {}",
            e[0].message
        );
        e[0].message.clone()
    }

    #[test]
    fn the_issue_edn_query_validates() {
        let body = decode(ISSUE_EDN.as_bytes(), Some("application/edn")).unwrap();
        let q = validate(&body, &plan(), NOW).unwrap();
        assert_eq!(
            q,
            Query {
                metric: 0,
                from_ms: FROM,
                to_ms: NOW,
                filter: Some(Filter::And(vec![
                    Filter::Regex(1, "fuc|tax-up".into()),
                    Filter::In(2, vec![Value::Str("task".into())]),
                ])),
                group_by: vec![GroupKey::Dimension(2), GroupKey::Time],
                granularity_ms: None,
                time_zone: None,
                measures: vec![0, 1, 2],
                order_by: vec![],
                limit: Some(MAX_ROWS),
            }
        );
    }

    #[test]
    fn json_and_edn_give_equal_queries() {
        let json = br#"{"metric": "reward_stats",
            "time_window": {"kind": "absolute", "from": "2024-08-20T09:00:00+08:00", "to": "2024-08-20T10:00:00+08:00"},
            "filters": {"reward_type": ["task"], "seed_id": "fuc|tax-up"},
            "group_by": ["reward_type", "__time"]}"#;
        let a = validate(&decode(json, None).unwrap(), &plan(), NOW).unwrap();
        let b = validate(&decode(ISSUE_EDN.as_bytes(), None).unwrap(), &plan(), NOW).unwrap();
        assert_eq!(a, b);

        let json = br#"{"metric": "reward_stats", "time_window": {"kind": "relative", "last": "6h"},
            "filters": {"reward_type": ["task", "bonus", "task"], "game_id": {"not": {"in": [3, 1]}}},
            "group_by": ["__time", "game_id"], "granularity": "5m", "time_zone": "+08:00",
            "measures": ["rewards", "players"], "order_by": [{"field": "rewards", "desc": true}], "limit": 100}"#;
        let edn = br#"{:metric :reward-stats :time-window {:kind :relative :last "6h"}
            :filters {:reward-type #{"bonus" :reward.type/task} :game-id {:not {:in #{1 3}}}}
            :group-by [:__time :game-id] :granularity "5m" :time-zone "+08:00"
            :measures [:rewards :players] :order-by [{:field :rewards :desc true}] :limit 100}"#;
        let a = validate(&decode(json, None).unwrap(), &plan(), NOW).unwrap();
        let b = validate(&decode(edn, None).unwrap(), &plan(), NOW).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.from_ms, NOW - 6 * 3_600_000);
        assert_eq!(a.granularity_ms, Some(300_000));
        assert_eq!(a.time_zone.as_deref(), Some("+08:00"));
        assert_eq!(a.measures, vec![0, 2]);
        assert_eq!(
            a.order_by,
            vec![OrderBy {
                column: Column::Measure(0),
                desc: true
            }]
        );
        assert_eq!(a.limit, Some(100));
        assert_eq!(
            a.filter,
            Some(Filter::And(vec![
                Filter::Not(Box::new(Filter::In(0, vec![Value::Int(1), Value::Int(3)]))),
                Filter::In(
                    2,
                    vec![Value::Str("bonus".into()), Value::Str("task".into())]
                ),
            ]))
        );
    }

    #[test]
    fn filter_forms() {
        let f = |filters: Json| ok(&with(json!({"filters": filters}))).filter;
        assert_eq!(f(json!({})), None);
        assert_eq!(
            f(json!({"seed_id": "tax-up"})),
            Some(Filter::Eq(1, Value::Str("tax-up".into())))
        );
        assert_eq!(
            f(json!({"seed_id": {"eq": "a.b"}})),
            Some(Filter::Eq(1, Value::Str("a.b".into())))
        );
        assert_eq!(
            f(json!({"seed_id": "a.b"})),
            Some(Filter::Regex(1, "a.b".into()))
        );
        assert_eq!(f(json!({"game_id": 7})), Some(Filter::Eq(0, Value::Int(7))));
        assert_eq!(
            f(json!({"game_id": null})),
            Some(Filter::Eq(0, Value::Null))
        );
        assert_eq!(
            f(json!({"or": [{"seed_id": "a"}, {"reward_type": {"regex": "t.*"}}]})),
            Some(Filter::Or(vec![
                Filter::Eq(1, Value::Str("a".into())),
                Filter::Regex(2, "t.*".into()),
            ]))
        );
        assert_eq!(
            f(json!({"not": {"seed_id": "a"}, "game_id": {"or": [1, {"in": [2]}]}})),
            Some(Filter::And(vec![
                Filter::Or(vec![
                    Filter::Eq(0, Value::Int(1)),
                    Filter::In(0, vec![Value::Int(2)])
                ]),
                Filter::Not(Box::new(Filter::Eq(1, Value::Str("a".into())))),
            ]))
        );
        assert_eq!(
            f(json!({"seed_id": {"regex": "x|y", "not": "z"}})),
            Some(Filter::And(vec![
                Filter::Not(Box::new(Filter::Eq(1, Value::Str("z".into())))),
                Filter::Regex(1, "x|y".into()),
            ]))
        );
    }

    #[test]
    fn declared_number_dimensions_read_numeric_text() {
        let body = json!({"metric": "typed", "time_window": {"last": "1h"}, "filters": {"level": ["3", 4]}});
        let q = validate(&body, &more(), NOW).unwrap();
        assert_eq!(
            q.filter,
            Some(Filter::In(1, vec![Value::Int(3), Value::Int(4)]))
        );
        one_in(
            &more(),
            json!({"metric": "typed", "time_window": {"last": "1h"}, "filters": {"level": "high"}}),
            "bad_type",
            "filters.level",
        );
        let range = |r: Json| {
            let body =
                json!({"metric": "typed", "time_window": {"last": "1h"}, "filters": {"level": r}});
            validate(&body, &more(), NOW).unwrap().filter
        };
        assert_eq!(
            range(json!({"gte": 1, "lt": 5})),
            Some(Filter::Range {
                dimension: 1,
                gte: Some(1.0),
                gt: None,
                lt: Some(5.0),
                lte: None
            })
        );
        assert_eq!(
            range(json!({"range": {"gt": 1.5}})),
            Some(Filter::Range {
                dimension: 1,
                gte: None,
                gt: Some(1.5),
                lt: None,
                lte: None
            })
        );
        let m = one_in(
            &more(),
            json!({"metric": "typed", "time_window": {"last": "1h"}, "filters": {"game_id": {"gte": 1}}}),
            "bad_filter",
            "filters.game_id",
        );
        assert!(m.contains("declared `string`"), "{m}");
    }

    #[test]
    fn defaults_and_normalization() {
        let q = ok(&with(
            json!({"granularity": "5m", "time_zone": "Z", "measures": null, "limit": null}),
        ));
        // Without `__time` the granularity is checked but not carried.
        assert_eq!(q.granularity_ms, None);
        assert_eq!(q.time_zone, None);
        assert_eq!(q.measures, vec![0, 1, 2]);
        assert_eq!(q.limit, Some(MAX_ROWS));
        let q = ok(&with(
            json!({"group_by": ["__time"], "time_zone": "asia/shanghai", "order_by": ["__time"]}),
        ));
        assert_eq!(q.time_zone.as_deref(), Some("Asia/Shanghai"));
        assert_eq!(
            q.order_by,
            vec![OrderBy {
                column: Column::Key(GroupKey::Time),
                desc: false
            }]
        );
        let q = ok(&with(json!({"time_zone": "-0530"})));
        assert_eq!(q.time_zone.as_deref(), Some("-05:30"));
        let q = ok(&with(json!({"measures": []})));
        assert!(q.measures.is_empty());
        // The kind can be inferred.
        let q = ok(&with(json!({"time_window": {"last": "1d"}})));
        assert_eq!(q.from_ms, NOW - 86_400_000);
        let q = ok(&with(
            json!({"time_window": {"from": "2024-08-20T01:00:00Z", "to": "2024-08-20T02:00:00Z"}}),
        ));
        assert_eq!((q.from_ms, q.to_ms), (FROM, NOW));
    }

    #[test]
    fn every_error_code_with_its_path() {
        one(json!([1]), "bad_type", "");
        one(
            json!({"time_window": {"last": "1h"}}),
            "missing_field",
            "metric",
        );
        one(
            json!({"metric": "reward_stats"}),
            "missing_field",
            "time_window",
        );
        let m = one(
            with(json!({"metric": "reward_stat"})),
            "unknown_metric",
            "metric",
        );
        assert!(m.contains("did you mean `reward_stats`?"), "{m}");
        let m = one(with(json!({"metric": "zzz"})), "unknown_metric", "metric");
        assert!(m.contains("the metrics are `reward_stats`"), "{m}");
        one(with(json!({"metric": 5})), "bad_type", "metric");
        let m = one(with(json!({"grup_by": []})), "unknown_field", "grup_by");
        assert!(m.contains("did you mean `group_by`?"), "{m}");
        one(
            with(
                json!({"time_window": {"kind": "absolute", "from": "yesterday", "to": "2024-08-20T10:00:00+08:00"}}),
            ),
            "bad_time",
            "time_window.from",
        );
        let m = one(
            with(
                json!({"time_window": {"kind": "absolute", "from": "2024-08-20T09:00:00", "to": "2024-08-20T10:00:00+08:00"}}),
            ),
            "bad_time",
            "time_window.from",
        );
        assert!(m.contains("no UTC offset"), "{m}");
        one(
            with(json!({"time_window": {"kind": "absolute", "from": "2024-08-20T09:00:00Z"}})),
            "missing_field",
            "time_window.to",
        );
        one(
            with(json!({"time_window": {"kind": "absolut", "last": "1h"}})),
            "bad_time",
            "time_window.kind",
        );
        one(
            with(json!({"time_window": {"kind": "relative", "last": "6 hours"}})),
            "bad_time",
            "time_window.last",
        );
        one(
            with(json!({"time_window": {"kind": "relative"}})),
            "missing_field",
            "time_window.last",
        );
        one(
            with(json!({"time_window": {"kind": "relative", "last": "1h", "to": "x"}})),
            "unknown_field",
            "time_window.to",
        );
        one(
            with(json!({"time_window": {"last": "1h", "size": 1}})),
            "unknown_field",
            "time_window.size",
        );
        one(
            with(json!({"time_window": "last 6h"})),
            "bad_type",
            "time_window",
        );
        let m = one(
            with(
                json!({"time_window": {"kind": "absolute", "from": "2024-08-20T10:00:00+08:00", "to": "2024-08-20T09:00:00+08:00"}}),
            ),
            "empty_window",
            "time_window",
        );
        assert!(m.contains("must be before"), "{m}");
        one(
            with(
                json!({"time_window": {"kind": "absolute", "from": "2024-08-20T10:00:00+08:00", "to": "2024-08-20T02:00:00Z"}}),
            ),
            "empty_window",
            "time_window",
        );
        let m = one(
            with(json!({"group_by": ["reward_typ"]})),
            "unknown_dimension",
            "group_by[0]",
        );
        assert!(m.contains("did you mean `reward_type`?"), "{m}");
        let m = one(
            with(json!({"group_by": ["time"]})),
            "unknown_dimension",
            "group_by[0]",
        );
        assert!(m.contains("`__time`"), "{m}");
        one(
            with(json!({"group_by_keys": ["__time", "__time"]})),
            "duplicate_name",
            "group_by_keys[1]",
        );
        one(
            with(json!({"group_by": [], "group_by_keys": []})),
            "duplicate_field",
            "group_by_keys",
        );
        one(
            with(json!({"group_by": "reward_type"})),
            "bad_type",
            "group_by",
        );
        one(with(json!({"group_by": [1]})), "bad_type", "group_by[0]");
        let m = one(
            with(json!({"measures": ["reward"]})),
            "unknown_measure",
            "measures[0]",
        );
        assert!(m.contains("did you mean `rewards`?"), "{m}");
        let m = one(
            with(json!({"measures": ["seed_id"]})),
            "unknown_measure",
            "measures[0]",
        );
        assert!(m.contains("is a dimension"), "{m}");
        let m = one(
            with(json!({"granularity": "90s"})),
            "bad_granularity",
            "granularity",
        );
        assert!(m.contains("multiple of 1m"), "{m}");
        one(
            with(json!({"granularity": "5 minutes"})),
            "bad_granularity",
            "granularity",
        );
        one(
            with(json!({"granularity": "99999w"})),
            "bad_granularity",
            "granularity",
        );
        one(with(json!({"granularity": 300})), "bad_type", "granularity");
        one(
            with(json!({"time_zone": "Mars/Olympus"})),
            "bad_time_zone",
            "time_zone",
        );
        let m = one_in(
            &more(),
            json!({"metric": "typed", "time_window": {"last": "1d"}, "time_zone": "+05:45", "group_by": ["__time"], "granularity": "1h"}),
            "bad_time_zone",
            "time_zone",
        );
        assert!(m.contains("5h45m off UTC"), "{m}");
        let m = one(
            with(json!({"filters": {"seed_id": "fuc|(tax"}})),
            "bad_regex",
            "filters.seed_id",
        );
        assert!(m.contains("unclosed group"), "{m}");
        one(
            with(json!({"filters": {"seed_id": {"regex": "a)|(b"}}})),
            "bad_regex",
            "filters.seed_id.regex",
        );
        let m = one(
            with(json!({"filters": {"seed": "x"}})),
            "unknown_dimension",
            "filters.seed",
        );
        assert!(m.contains("did you mean `seed_id`?"), "{m}");
        one(
            with(json!({"filters": {"seed_id": {"equals": "x"}}})),
            "unknown_operator",
            "filters.seed_id.equals",
        );
        let level = |c: Json| json!({"metric": "typed", "time_window": {"last": "1h"}, "filters": {"level": c}});
        one_in(
            &more(),
            level(json!({"range": {"from": 1}})),
            "unknown_operator",
            "filters.level.range.from",
        );
        one_in(
            &more(),
            level(json!({"range": {"gte": "1"}})),
            "bad_type",
            "filters.level.range.gte",
        );
        one_in(
            &more(),
            level(json!({"range": {}})),
            "bad_filter",
            "filters.level.range",
        );
        one(
            with(json!({"filters": {"seed_id": {}}})),
            "bad_filter",
            "filters.seed_id",
        );
        one(
            with(json!({"filters": {"seed_id": [[1]]}})),
            "bad_type",
            "filters.seed_id[0]",
        );
        one(
            with(json!({"filters": {"and": {"seed_id": "x"}}})),
            "bad_type",
            "filters.and",
        );
        one(
            with(json!({"filters": {"or": [1]}})),
            "bad_type",
            "filters.or[0]",
        );
        one(with(json!({"filters": ["seed_id"]})), "bad_type", "filters");
        let mut deep = json!({"seed_id": "x"});
        for _ in 0..20 {
            deep = json!({"not": deep});
        }
        one(
            with(json!({"filters": deep})),
            "bad_filter",
            &format!("filters{}", ".not".repeat(MAX_FILTER_DEPTH + 1)),
        );
        let m = one(
            with(json!({"order_by": [{"field": "reward"}]})),
            "unknown_column",
            "order_by[0].field",
        );
        assert!(m.contains("did you mean `rewards`?"), "{m}");
        let m = one(
            with(json!({"order_by": [{"field": "seed_id"}]})),
            "unknown_column",
            "order_by[0].field",
        );
        assert!(m.contains("add it to `group_by`"), "{m}");
        let m = one(
            with(json!({"measures": ["amount"], "order_by": [{"field": "rewards"}]})),
            "unknown_column",
            "order_by[0].field",
        );
        assert!(m.contains("add it to `measures`"), "{m}");
        one(
            with(json!({"order_by": [{"desc": true}]})),
            "missing_field",
            "order_by[0].field",
        );
        one(
            with(json!({"order_by": [{"field": "rewards", "desc": "yes"}]})),
            "bad_type",
            "order_by[0].desc",
        );
        one(
            with(json!({"order_by": [{"field": "rewards", "dir": "desc"}]})),
            "unknown_field",
            "order_by[0].dir",
        );
        one(
            with(json!({"order_by": {"field": "rewards"}})),
            "bad_type",
            "order_by",
        );
        one(with(json!({"order_by": [3]})), "bad_type", "order_by[0]");
        one(with(json!({"limit": 0})), "bad_limit", "limit");
        one(with(json!({"limit": 100_001})), "bad_limit", "limit");
        one(with(json!({"limit": 2.5})), "bad_limit", "limit");
        one(with(json!({"limit": "10"})), "bad_type", "limit");
        let m = one_in(
            &more(),
            json!({"metric": "sessions", "time_window": {"last": "1h"}}),
            "unsupported_window",
            "metric",
        );
        assert!(m.contains("session"), "{m}");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let body = json!({
            "metric": "reward_stats",
            "time_window": {"kind": "absolute", "from": "nope", "to": "2024-08-20T10:00:00"},
            "filters": {"seed_id": "(", "reward_typ": "task"},
            "group_by": ["seed", "__time"],
            "granularity": "7s",
            "time_zone": "Nowhere/City",
            "measures": ["rewards", "player"],
            "order_by": [{"field": "amount"}],
            "limit": -1,
            "colour": "blue",
        });
        let got = errors(&body, &plan());
        let want = [
            ("unknown_field", "colour"),
            ("bad_time", "time_window.from"),
            ("bad_time", "time_window.to"),
            ("unknown_dimension", "group_by[0]"),
            ("unknown_measure", "measures[1]"),
            ("bad_granularity", "granularity"),
            ("bad_time_zone", "time_zone"),
            // Filters in key order.
            ("unknown_dimension", "filters.reward_typ"),
            ("bad_regex", "filters.seed_id"),
            ("unknown_column", "order_by[0].field"),
            ("bad_limit", "limit"),
        ];
        let want: Vec<(&str, String)> = want.iter().map(|(c, p)| (*c, p.to_string())).collect();
        assert_eq!(got, want);
        // An unknown metric still lets the rest be checked.
        let got = errors(
            &json!({"metric": "x", "time_window": {"last": "1x"}, "limit": 0}),
            &plan(),
        );
        assert_eq!(
            got,
            vec![
                ("unknown_metric", "metric".to_string()),
                ("bad_time", "time_window.last".to_string()),
                ("bad_limit", "limit".to_string()),
            ]
        );
    }

    #[test]
    fn granularity_follows_the_window_step() {
        let p = more();
        let q = |g: &str| json!({"metric": "hopping", "time_window": {"last": "1d"}, "group_by": ["__time"], "granularity": g});
        assert_eq!(
            validate(&q("15m"), &p, NOW).unwrap().granularity_ms,
            Some(900_000)
        );
        one_in(&p, q("7m"), "bad_granularity", "granularity");
        // Hourly panes: +05:30 cuts them, +08:00 does not, even for days.
        let z = |zone: &str, g: &str| json!({"metric": "typed", "time_window": {"last": "1d"}, "group_by": ["__time"], "granularity": g, "time_zone": zone});
        assert!(validate(&z("+08:00", "1d"), &p, NOW).is_ok());
        one_in(&p, z("Asia/Kolkata", "1d"), "bad_time_zone", "time_zone");
        // Without `__time` the zone only prints times, so any zone will do.
        assert!(validate(
            &json!({"metric": "typed", "time_window": {"last": "1d"}, "time_zone": "+05:30"}),
            &p,
            NOW
        )
        .is_ok());
        // Offsets that change within the window are checked too:
        // Pyongyang moved from +09:00 to +08:30 on 2015-08-15.
        let around = |to: &str| {
            json!({"metric": "typed", "group_by": ["__time"], "time_zone": "Asia/Pyongyang",
            "time_window": {"from": "2015-08-01T00:00:00Z", "to": to}})
        };
        assert!(validate(&around("2015-08-10T00:00:00Z"), &p, NOW).is_ok());
        let m = one_in(
            &p,
            around("2015-08-20T00:00:00Z"),
            "bad_time_zone",
            "time_zone",
        );
        assert!(m.contains("8h30m off UTC from 2015-08-14T15:00:00Z"), "{m}");
        assert_eq!(granularities(Duration::from_millis(60_000)).len(), 8);
        assert_eq!(
            granularities(Duration::from_millis(7_000))
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>(),
            ["7s", "14s", "35s", "1m10s", "3m30s", "1w"]
        );
    }

    #[test]
    fn plain_words() {
        assert!(is_plain_word("tax-up"));
        assert!(is_plain_word("task_1 #2 & ~"));
        assert!(!is_plain_word("fuc|tax-up"));
        assert!(!is_plain_word("v1.2"));
    }
}
