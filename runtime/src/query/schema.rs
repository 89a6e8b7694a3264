//! The catalog (`GET /v1/catalog`): what the running plan lets a query
//! ask for, and a JSON Schema (draft 2020-12) of query bodies for it.
//!
//! The schema describes the canonical JSON form. The validator is the
//! authority and is a little more lenient: it also takes `null` for an
//! optional field, and reads EDN.

use serde_json::{json, Map, Value as Json};
use statflow_dataflow::aggregate::{EXACT_QUANTILE_VALUES, QUANTILE_ALPHA, SUM_SCALE};
use statflow_dataflow::measure::{self, session_measures, SessionMeasure};
use statflow_dsl::{Duration, MeasureKind, MetricPlan, Plan, Window};

use super::validate::{granularities, FIELDS, TIME_KEY};
use super::MAX_ROWS;

/// Distinct values the `distinct` sketch counts exactly before it becomes
/// a HyperLogLog++: `cardinality-estimator` 1.0.3 keeps up to 128 encoded
/// hashes in its array representation (`array::MAX_CAPACITY`) and turns
/// into registers at the 129th.
pub const DISTINCT_EXACT_UP_TO: usize = 128;

/// HyperLogLog++ precision of the `distinct` sketch (2^12 = 4096 registers),
/// the crate's default and the one `statflow_dataflow::aggregate` uses.
pub const DISTINCT_PRECISION: u32 = 12;

/// The catalog of a plan: every metric with its dimensions, measures
/// (with their error bounds), window, retention and granularities, and the
/// query schema.
pub fn catalog(plan: &Plan) -> Json {
    json!({
        "metrics": plan.metrics.iter().map(metric_entry).collect::<Vec<_>>(),
        "max_rows": MAX_ROWS,
        "query_schema": query_schema(plan),
    })
}

fn duration_text(d: Duration) -> Json {
    Json::String(d.to_string())
}

fn metric_entry(m: &MetricPlan) -> Json {
    let window = match &m.window {
        Window::Tumbling { size } => json!({
            "kind": "tumbling", "size": duration_text(*size),
        }),
        Window::Hopping { size, every } => json!({
            "kind": "hopping", "size": duration_text(*size), "every": duration_text(*every),
        }),
        Window::Session { gap, by } => json!({
            "kind": "session", "gap": duration_text(*gap), "by": by.to_string(),
            "description": format!(
                "per dimension values and value of `{by}`, a run of events less than {gap} apart; a session counts in the time bucket of its first event"
            ),
        }),
    };
    let mut window = window;
    if let Some(w) = window.as_object_mut() {
        w.insert("step".into(), duration_text(m.window.step()));
        w.insert("step_ms".into(), json!(m.window.step().millis()));
        w.insert("text".into(), json!(m.window.to_string()));
    }
    let mut measures: Vec<Json> = m
        .measures
        .iter()
        .map(|x| {
            let (exact, error) = error_bound(&x.kind);
            let mut e = json!({
                "name": x.name,
                "function": x.kind.function(),
                "field": x.kind.field().map(|f| f.to_string()),
                "text": x.kind.to_string(),
                "exact": exact,
                "error": error,
            });
            if let (MeasureKind::Quantile { q, .. }, Some(o)) = (&x.kind, e.as_object_mut()) {
                o.insert("q".into(), json!(q));
            }
            e
        })
        .collect();
    measures.extend(session_measures(m).into_iter().map(|s| {
        let (exact, error) = session_error_bound(s);
        json!({
            "name": s.name(),
            "function": s.name(),
            "field": null,
            "text": s.text(),
            "exact": exact,
            "error": error,
            "session": true,
        })
    }));
    json!({
        "name": m.name,
        "sources": m.sources,
        "where": m.filter.as_ref().map(|p| p.to_string()),
        "dimensions": m.dimensions.iter().map(|d| json!({
            "name": d.name,
            "field": d.path.to_string(),
            "type": d.ty.map(|t| t.keyword()),
        })).collect::<Vec<_>>(),
        "measures": measures,
        "window": window,
        "retention": duration_text(m.retain),
        "granularities": granularities(m.window.step()).into_iter().map(duration_text).collect::<Vec<_>>(),
        "queryable": true,
    })
}

/// Whether a session measure is exact, and its error bound in words.
pub fn session_error_bound(measure: SessionMeasure) -> (bool, String) {
    if measure.is_quantile() {
        (
            false,
            format!(
                "exact up to {EXACT_QUANTILE_VALUES} sessions, then {}% relative error (DDSketch)",
                QUANTILE_ALPHA * 100.0
            ),
        )
    } else {
        (true, "exact, to the millisecond".to_string())
    }
}

/// Whether a measure is exact, and its error bound in words.
pub fn error_bound(kind: &MeasureKind) -> (bool, String) {
    let decimals = SUM_SCALE.log10().round() as i32;
    match kind {
        MeasureKind::Count | MeasureKind::Min { .. } | MeasureKind::Max { .. } => {
            (true, "exact".to_string())
        }
        MeasureKind::Sum { .. } => (
            true,
            format!("exact for values with up to {decimals} decimal places"),
        ),
        MeasureKind::Avg { .. } => (
            true,
            format!("exact sum over exact count, for values with up to {decimals} decimal places"),
        ),
        MeasureKind::Distinct { .. } => {
            let registers = 1u32 << DISTINCT_PRECISION;
            let error = 1.04 / f64::from(registers).sqrt() * 100.0;
            (
                false,
                format!(
                    "exact up to {DISTINCT_EXACT_UP_TO} distinct values (save a rare hash collision), then about {error:.1}% standard error (HyperLogLog++ p={DISTINCT_PRECISION}, {registers} registers)"
                ),
            )
        }
        MeasureKind::Quantile { .. } => (
            false,
            format!(
                "exact up to {EXACT_QUANTILE_VALUES} values, then {}% relative error (DDSketch)",
                QUANTILE_ALPHA * 100.0
            ),
        ),
    }
}

/// A JSON Schema (draft 2020-12) of query bodies for this plan.
pub fn query_schema(plan: &Plan) -> Json {
    let queryable: Vec<(usize, &MetricPlan)> = plan.metrics.iter().enumerate().collect();
    let names: Vec<&str> = queryable.iter().map(|(_, m)| m.name.as_str()).collect();

    let mut defs = Map::new();
    defs.insert(
        "duration".into(),
        json!({
            "type": "string",
            "pattern": "^([0-9][0-9_]*(ms|s|m|h|d|w))+$",
            "examples": ["5m", "1h", "1d", "1w"],
        }),
    );
    defs.insert(
        "absolute".into(),
        json!({
            "type": "object",
            "required": ["from", "to"],
            "additionalProperties": false,
            "properties": {
                "kind": {"const": "absolute"},
                "from": {"type": "string", "format": "date-time", "description": "Inclusive; RFC 3339 with an offset."},
                "to": {"type": "string", "format": "date-time", "description": "Exclusive; after `from`."},
            },
        }),
    );
    defs.insert(
        "relative".into(),
        json!({
            "type": "object",
            "required": ["last"],
            "additionalProperties": false,
            "properties": {
                "kind": {"const": "relative"},
                "last": {"$ref": "#/$defs/duration", "description": "The window is [now - last, now)."},
            },
        }),
    );
    defs.insert(
        "scalar".into(),
        json!({"type": ["string", "number", "boolean", "null"]}),
    );
    let bound = json!({"type": "number"});
    defs.insert(
        "range".into(),
        json!({
            "type": "object",
            "minProperties": 1,
            "additionalProperties": false,
            "properties": {"gte": bound, "gt": bound, "lt": bound, "lte": bound},
        }),
    );
    defs.insert(
        "condition".into(),
        json!({
            "description": "A string is a regular expression matched against the whole value (a plain word is an exact match); an array is a set; an object gives explicit operators, all of which must hold.",
            "anyOf": [
                {"$ref": "#/$defs/scalar"},
                {"type": "array", "items": {"$ref": "#/$defs/scalar"}},
                {
                    "type": "object",
                    "minProperties": 1,
                    "additionalProperties": false,
                    "properties": {
                        "eq": {"$ref": "#/$defs/scalar"},
                        "in": {"type": "array", "items": {"$ref": "#/$defs/scalar"}},
                        "regex": {"type": "string", "format": "regex"},
                        "range": {"$ref": "#/$defs/range"},
                        "not": {"$ref": "#/$defs/condition"},
                        "and": {"type": "array", "items": {"$ref": "#/$defs/condition"}},
                        "or": {"type": "array", "items": {"$ref": "#/$defs/condition"}},
                        "gte": bound, "gt": bound, "lt": bound, "lte": bound,
                    },
                },
            ],
        }),
    );
    let names_array = |items: Json| json!({"type": "array", "uniqueItems": true, "items": items});

    let mut per_metric = Vec::new();
    for (i, m) in &queryable {
        let def = format!("filters_{i}");
        let reference = json!({"$ref": format!("#/$defs/{def}")});
        let mut props = Map::new();
        for d in &m.dimensions {
            props.insert(d.name.clone(), json!({"$ref": "#/$defs/condition"}));
        }
        for logical in ["and", "or"] {
            props
                .entry(logical)
                .or_insert_with(|| json!({"type": "array", "items": reference}));
        }
        props.entry("not").or_insert_with(
            || json!({"anyOf": [reference, {"type": "array", "items": reference}]}),
        );
        defs.insert(
            def,
            json!({
                "type": "object",
                "description": format!("Conditions on dimensions of `{}`, all of which must hold.", m.name),
                "additionalProperties": false,
                "properties": props,
            }),
        );
        let mut keys: Vec<&str> = m.dimensions.iter().map(|d| d.name.as_str()).collect();
        keys.push(TIME_KEY);
        let all = measure::measures(m);
        let measures: Vec<&str> = all.iter().map(|x| x.name()).collect();
        let mut columns = keys.clone();
        columns.extend(&measures);
        let step = m.window.step().millis();
        per_metric.push(json!({
            "if": {"required": ["metric"], "properties": {"metric": {"const": m.name}}},
            "then": {"properties": {
                "filters": reference,
                "group_by": names_array(json!({"enum": keys})),
                "group_by_keys": names_array(json!({"enum": keys})),
                "measures": names_array(json!({"enum": measures})),
                "granularity": {
                    "description": format!("A multiple of {}.", m.window.step()),
                    "examples": granularities(m.window.step()).into_iter().map(|g| g.to_string()).collect::<Vec<_>>(),
                    "x-multiple-of-ms": step,
                },
                "order_by": {"items": {"anyOf": [
                    {"enum": columns},
                    {"type": "object", "properties": {"field": {"enum": columns}}},
                ]}},
            }},
        }));
    }

    let sort_key = json!({
        "anyOf": [
            {"type": "string"},
            {
                "type": "object",
                "required": ["field"],
                "additionalProperties": false,
                "properties": {"field": {"type": "string"}, "desc": {"type": "boolean", "default": false}},
            },
        ],
    });
    let mut properties = Map::new();
    for field in FIELDS {
        let schema = match field {
            "metric" => json!({"enum": names, "description": "The metric to read."}),
            "time_window" => {
                json!({"oneOf": [{"$ref": "#/$defs/absolute"}, {"$ref": "#/$defs/relative"}]})
            }
            "filters" => {
                json!({"type": "object", "description": "Conditions by dimension name, plus `and`, `or` and `not`."})
            }
            "group_by" => names_array(json!({"type": "string"})),
            "group_by_keys" => names_array(json!({"type": "string"})),
            "granularity" => {
                json!({"$ref": "#/$defs/duration", "description": "Length of `__time` buckets; a multiple of the metric's window step."})
            }
            "time_zone" => {
                json!({"type": "string", "examples": ["+08:00", "Z", "Asia/Shanghai"], "description": "Zone for day and week buckets and printed times."})
            }
            "measures" => names_array(json!({"type": "string"})),
            "order_by" => json!({"type": "array", "items": sort_key}),
            "limit" => json!({"type": "integer", "minimum": 1, "maximum": MAX_ROWS}),
            "epoch" => {
                json!({"type": "integer", "minimum": 0, "description": "Read at exactly this completed epoch (an answer's `as_of.epoch`), so that several queries see one cut."})
            }
            _ => json!({}),
        };
        properties.insert(field.to_string(), schema);
    }

    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "statflow query",
        "description": "The body of POST /v1/query for the running topology. The server's validator also accepts null for optional fields, and EDN.",
        "type": "object",
        "required": ["metric", "time_window"],
        "additionalProperties": false,
        "properties": properties,
        "not": {"required": ["group_by", "group_by_keys"]},
        "allOf": per_metric,
        "$defs": defs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPOLOGY: &str = "source events = generator()
metric reward_stats from events { dimensions game_id, seed_id, reward_type  window tumbling 1m  retain 7d  measures { rewards = count()  amount = sum(amount)  players = distinct(user_id)  p99 = quantile(amount, 0.99) } }
metric hourly from events { dimensions game_id  window hopping 1h every 5m  measures { n = count() } }
metric play from events { dimensions platform  window session 30m by user_id  measures { events = count() } }";

    fn plan() -> Plan {
        statflow_dsl::compile(TOPOLOGY, None)
            .plan
            .expect("compiles")
    }

    #[test]
    fn catalog_lists_metrics_with_bounds_and_granularities() {
        let c = catalog(&plan());
        let m = &c["metrics"][0];
        assert_eq!(m["name"], "reward_stats");
        assert_eq!(m["retention"], "1w");
        assert_eq!(m["window"]["step"], "1m");
        assert_eq!(m["dimensions"][1]["name"], "seed_id");
        assert_eq!(m["granularities"][0], "1m");
        assert!(m["granularities"]
            .as_array()
            .unwrap()
            .contains(&json!("1h")));
        let measures = m["measures"].as_array().unwrap();
        assert_eq!(measures[0]["error"], "exact");
        assert_eq!(measures[2]["exact"], false);
        let distinct = measures[2]["error"].as_str().unwrap();
        assert!(
            distinct.contains("up to 128 distinct") && distinct.contains("1.6%"),
            "{distinct}"
        );
        assert!(measures[3]["error"]
            .as_str()
            .unwrap()
            .contains("1% relative error (DDSketch)"));
        assert_eq!(measures[3]["q"], 0.99);
        let h = &c["metrics"][1];
        assert_eq!(h["window"]["every"], "5m");
        assert_eq!(h["window"]["step"], "5m");
        assert_eq!(h["granularities"][0], "5m");
        let p = &c["metrics"][2];
        assert_eq!(p["window"]["kind"], "session");
        assert_eq!(p["window"]["gap"], "30m");
        assert_eq!(p["window"]["by"], "user_id");
        // Sessions are grouped by start in whole minutes, whatever the gap.
        assert_eq!(p["window"]["step"], "1m");
        assert_eq!(p["granularities"][0], "1m");
        assert_eq!(p["queryable"], true);
        let names: Vec<&str> = p["measures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "events",
                "sessions",
                "avg_duration",
                "p50_duration",
                "p90_duration",
                "max_duration"
            ]
        );
        assert_eq!(p["measures"][1]["session"], true);
        assert_eq!(p["measures"][1]["exact"], true);
        assert_eq!(p["measures"][3]["exact"], false);
    }

    #[test]
    fn schema_names_the_plan() {
        let s = query_schema(&plan());
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(
            s["properties"]["metric"]["enum"],
            json!(["reward_stats", "hourly", "play"])
        );
        assert_eq!(
            s["allOf"][2]["then"]["properties"]["measures"]["items"]["enum"],
            json!([
                "events",
                "sessions",
                "avg_duration",
                "p50_duration",
                "p90_duration",
                "max_duration"
            ])
        );
        let then = &s["allOf"][0]["then"]["properties"];
        assert_eq!(
            then["group_by"]["items"]["enum"],
            json!(["game_id", "seed_id", "reward_type", "__time"])
        );
        assert_eq!(
            then["measures"]["items"]["enum"],
            json!(["rewards", "amount", "players", "p99"])
        );
        assert!(s["$defs"]["filters_0"]["properties"]["seed_id"].is_object());
        // Every reference points at a definition.
        let text = s.to_string();
        for part in text.split("\"$ref\":\"#/$defs/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(s["$defs"].get(name).is_some(), "{name}");
        }
    }
}
