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
//! | `epoch` | a completed epoch to read at exactly (see [`super::epoch`]) | the newest complete one |
//! | `late` | `true` reads the metric's late events (those set aside beyond the lateness bound) instead of its rows | `false` |
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
//! - A session metric answers its declared measures and the session
//!   measures (`sessions`, `avg_duration`, `p50_duration`, `p90_duration`,
//!   `max_duration`; see [`statflow_dataflow::measure`]), all of them when
//!   `measures` is left out. Its sessions are grouped by their start, at a
//!   granularity of whole minutes, and a time window holds the sessions
//!   that start in it.

use serde_json::{Map, Value as Json};
use statflow_dataflow::measure;
use statflow_dataflow::query::{Column, GroupKey, OrderBy, Query};
use statflow_dsl::{did_you_mean, MetricPlan, Plan};

use super::{QueryError, MAX_ROWS};

pub use super::filter::{is_plain_word, MAX_FILTER_DEPTH, OPERATORS};
pub use super::time::{granularities, MAX_GRANULARITY};

/// The name of the time-bucket key.
pub const TIME_KEY: &str = "__time";

/// Every top-level field of a query.
pub const FIELDS: [&str; 12] = [
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
    "epoch",
    "late",
];

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
    let late = match field("late") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(other) => {
            c.bad_type("late", "true or false", other);
            false
        }
    };

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
            late,
        }),
        _ => {
            if c.errors.is_empty() {
                // Every refusal above names its problem; this keeps the
                // promise of at least one error should a path ever not.
                c.push("bad_query", "", "The query could not be read.");
            }
            Err(c.errors)
        }
    }
}

/// Collects problems as the query is read.
pub(super) struct Checker {
    pub(super) errors: Vec<QueryError>,
}

/// A resolved metric: its index and plan.
pub(super) type MetricRef<'p> = Option<(usize, &'p MetricPlan)>;

/// A JSON value's kind, for messages.
pub(super) fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

pub(super) fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `a, b and c`, each in backquotes.
pub(super) fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => "none".to_string(),
        1 => quoted[0].clone(),
        n => format!("{} and {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// "; did you mean `x`?" or "; the choices are …" (short lists only).
pub(super) fn hint(found: &str, candidates: &[&str], what: &str) -> String {
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

impl Checker {
    pub(super) fn push(
        &mut self,
        code: &'static str,
        path: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.errors.push(QueryError::new(code, path, message));
    }

    pub(super) fn bad_type(&mut self, path: &str, expected: &str, found: &Json) {
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

    pub(super) fn unknown_field(&mut self, path: &str, key: &str, known: &[&str], what: &str) {
        self.push(
            "unknown_field",
            path,
            format!(
                "A {what} has no field `{key}`{}",
                hint(key, known, "fields")
            ),
        );
    }

    pub(super) fn string<'v>(
        &mut self,
        path: &str,
        v: &'v Json,
        expected: &str,
    ) -> Option<&'v str> {
        match v.as_str() {
            Some(s) => Some(s),
            None => {
                self.bad_type(path, expected, v);
                None
            }
        }
    }

    pub(super) fn object<'v>(
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
        Some((index, &plan.metrics[index]))
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
                .map(|(_, m)| (0..measure::measures(m).len()).collect())
                .unwrap_or_default();
        };
        let names = self.names("measures", v, "measure");
        let Some((_, m)) = metric else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (here, name) in names {
            match measure::index_of(m, name) {
                Some(i) => out.push(i),
                None => {
                    let all = measure::measures(m);
                    let candidates: Vec<&str> = all.iter().map(|x| x.name()).collect();
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
            } else if let Some(x) = measure::index_of(m, name) {
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
                    let fix = if measure::index_of(m, name).is_some() {
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
        .chain(
            measures
                .iter()
                .filter_map(|i| measure::measure(m, *i))
                .map(|x| x.name().to_string()),
        )
        .collect()
}

/// Shared by the tests of `validate`, `filter` and `time`.
#[cfg(test)]
pub(super) mod fixtures {
    use super::*;
    use serde_json::json;

    pub(crate) const TOPOLOGY: &str = "source events = generator()
metric reward_stats from events { dimensions game_id, seed_id, reward_type  window tumbling 1m  measures { rewards = count()  amount = sum(amount)  players = distinct(user_id) } }";

    /// Declared types, a hopping window, an hourly window and a session window.
    pub(crate) const MORE: &str = r#"source logs = file("logs.jsonl") {
  time = ts as epoch_millis
  fields { ts: time  game_id: string  level: number  user_id: string }
}
metric typed from logs { dimensions game_id, level  window tumbling 1h  measures { n = count() } }
metric hopping from logs { dimensions game_id  window hopping 10m every 5m  measures { n = count() } }
metric sessions from logs { dimensions game_id  window session 30m by user_id  measures { n = count() } }"#;

    pub(crate) const NOW: i64 = 1_724_119_200_000; // 2024-08-20T02:00:00Z
    pub(crate) const FROM: i64 = 1_724_115_600_000; // 2024-08-20T01:00:00Z

    pub(crate) const ISSUE_EDN: &str = r#"{:metric :reward-stats :time-window {:kind :absolute :from "2024-08-20T09:00:00+08:00" :to "2024-08-20T10:00:00+08:00"} :filters {:seed-id "fuc|tax-up" :reward-type #{:reward.type/task}} :group-by-keys [:reward-type :__time]}"#;

    pub(crate) fn plan() -> Plan {
        let compiled = statflow_dsl::compile(TOPOLOGY, None);
        compiled.plan.expect("the issue's topology compiles")
    }

    pub(crate) fn more() -> Plan {
        let compiled = statflow_dsl::compile(MORE, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        compiled.plan.expect("compiles")
    }

    pub(crate) fn base() -> Json {
        json!({
            "metric": "reward_stats",
            "time_window": {"kind": "absolute", "from": "2024-08-20T09:00:00+08:00", "to": "2024-08-20T10:00:00+08:00"},
        })
    }

    pub(crate) fn with(changes: Json) -> Json {
        let mut q = base();
        for (k, v) in changes.as_object().unwrap() {
            q[k] = v.clone();
        }
        q
    }

    pub(crate) fn ok(body: &Json) -> Query {
        validate(body, &plan(), NOW).unwrap_or_else(|e| panic!("{e:#?}"))
    }

    pub(crate) fn errors(body: &Json, plan: &Plan) -> Vec<(&'static str, String)> {
        match validate(body, plan, NOW) {
            Ok(q) => panic!("accepted: {q:?}"),
            Err(e) => e.into_iter().map(|e| (e.code, e.path)).collect(),
        }
    }

    /// Exactly one error, with this code and path; returns its message.
    pub(crate) fn one(body: Json, code: &str, path: &str) -> String {
        one_in(&plan(), body, code, path)
    }

    pub(crate) fn one_in(plan: &Plan, body: Json, code: &str, path: &str) -> String {
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
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::query::decode::decode;
    use serde_json::json;
    use statflow_dataflow::query::Filter;
    use statflow_dataflow::value::Value;

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
                late: false,
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
    }

    #[test]
    fn session_metrics_answer_their_measures_and_the_session_measures() {
        let plan = more();
        let session = |changes: Json| {
            let mut q = json!({"metric": "sessions", "time_window": {"last": "1d"}});
            for (k, v) in changes.as_object().unwrap() {
                q[k] = v.clone();
            }
            q
        };
        let q = validate(&session(json!({})), &plan, NOW).unwrap();
        assert_eq!(q.metric, 2);
        // `n`, then sessions, avg, p50, p90 and max duration.
        assert_eq!(q.measures, vec![0, 1, 2, 3, 4, 5]);
        let q = validate(
            &session(json!({
                "measures": ["p90_duration", "sessions"],
                "group_by": ["__time", "game_id"],
                "granularity": "1h",
                "time_zone": "Asia/Kolkata",
                "order_by": [{"field": "sessions", "desc": true}],
            })),
            &plan,
            NOW,
        )
        .unwrap();
        assert_eq!(q.measures, vec![4, 1]);
        assert_eq!(q.granularity_ms, Some(3_600_000));
        assert_eq!(
            q.order_by,
            vec![OrderBy {
                column: Column::Measure(1),
                desc: true
            }]
        );
        // Sessions are grouped by start in whole minutes, whatever the gap.
        let q = validate(
            &session(json!({"group_by": ["__time"], "granularity": "5m"})),
            &plan,
            NOW,
        )
        .unwrap();
        assert_eq!(q.granularity_ms, Some(300_000));
        let m = one_in(
            &plan,
            session(json!({"granularity": "90s"})),
            "bad_granularity",
            "granularity",
        );
        assert!(m.contains("whole minutes"), "{m}");
        let m = one_in(
            &plan,
            session(json!({"measures": ["session"]})),
            "unknown_measure",
            "measures[0]",
        );
        assert!(m.contains("did you mean `sessions`?"), "{m}");
        // A tumbling metric has no session measures.
        let m = one_in(
            &plan,
            json!({"metric": "typed", "time_window": {"last": "1h"}, "measures": ["sessions"]}),
            "unknown_measure",
            "measures[0]",
        );
        assert!(!m.contains("did you mean `sessions`"), "{m}");
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
}
