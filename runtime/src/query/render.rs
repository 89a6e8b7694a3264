//! Answers and query errors, rendered as JSON or EDN.
//!
//! The JSON answer:
//!
//! ```json
//! {"metric": "reward_stats",
//!  "as_of": {"epoch": 42, "watermark": "2024-08-20T10:00:00+08:00",
//!            "sources": [{"source": "events", "watermark": "2024-08-20T10:00:00+08:00", "late": 3}],
//!            "retained_from": "2024-08-13T10:00:00+08:00", "notes": []},
//!  "columns": ["reward_type", "__time", "rewards"],
//!  "rows": [{"reward_type": "task", "__time": "2024-08-20T09:00:00+08:00", "rewards": 123}]}
//! ```
//!
//! Times (`__time` cells and the watermark) are RFC 3339 in the query's
//! time zone, ending in `Z` for UTC; the watermark is `null` before any
//! event. A float that is a whole number below 2^53 prints as an integer; a
//! NaN or infinite one as `null`. Rows hold their keys in column order in
//! the text form ([`answer_json_string`]).
//!
//! The EDN answer is the same data with keyword keys, `_` written as `-`
//! (`:as-of`, `:reward-type`; names starting with `__`, like `:__time`, stay
//! as they are), the metric as a keyword (`:reward-stats`) and the columns
//! as the keywords that key the rows, so `(map row columns)` reads a row in
//! order. Times stay RFC 3339 strings rather than `#inst`, which would lose
//! the offset. Error codes and paths stay strings in both formats, so they
//! read the same everywhere.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value as Json};
use statflow_dataflow::query::{Answer, Cell};
use statflow_dataflow::timebucket;
use statflow_dataflow::value::Value;

use super::QueryError;

/// The largest magnitude a float may have to print as an integer: beyond
/// 2^53 not every integer is a float, so the digits would mislead.
const WHOLE_LIMIT: f64 = 9_007_199_254_740_992.0;

/// The zone times are printed in; `None` or an unreadable name is UTC.
struct Zone(Option<TimeZone>);

impl Zone {
    fn new(time_zone: Option<&str>) -> Zone {
        Zone(time_zone.and_then(|z| timebucket::parse_time_zone(z).ok()))
    }

    /// RFC 3339 text of an instant, or `None` when it is out of range.
    fn format(&self, ms: i64) -> Option<String> {
        let ts = Timestamp::from_millisecond(ms).ok()?;
        Some(match &self.0 {
            None => ts.to_string(),
            Some(tz) => ts.display_with_offset(tz.to_offset(ts)).to_string(),
        })
    }
}

/// The JSON number for a float, or null.
fn float_json(x: f64) -> Json {
    if x.fract() == 0.0 && x.abs() < WHOLE_LIMIT {
        Json::from(x as i64)
    } else {
        serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
    }
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(x) => float_json(*x),
        Value::Str(s) => Json::String(s.to_string()),
    }
}

fn cell_json(cell: &Cell, zone: &Zone) -> Json {
    match cell {
        Cell::Null => Json::Null,
        Cell::Value(v) => value_json(v),
        Cell::Time(ms) => zone
            .format(*ms)
            .map_or_else(|| Json::from(*ms), Json::String),
        Cell::Int(i) => Json::from(*i),
        Cell::Float(x) => float_json(*x),
    }
}

/// An answer ready to serialize, rows keyed in column order.
struct Rendered<'a> {
    metric: &'a str,
    epoch: u64,
    watermark: Option<String>,
    /// Per source: name, watermark, late events.
    sources: Vec<(String, Option<String>, u64)>,
    retained_from: Option<String>,
    notes: &'a [String],
    columns: &'a [String],
    rows: Vec<Vec<Json>>,
}

impl<'a> Rendered<'a> {
    fn new(answer: &'a Answer, metric: &'a str, time_zone: Option<&str>) -> Self {
        let zone = Zone::new(time_zone);
        Rendered {
            metric,
            epoch: answer.as_of.epoch,
            watermark: answer.as_of.watermark_ms.and_then(|ms| zone.format(ms)),
            sources: answer
                .as_of
                .sources
                .iter()
                .map(|s| {
                    let watermark = s.watermark_ms.and_then(|ms| zone.format(ms));
                    (s.source.clone(), watermark, s.late)
                })
                .collect(),
            retained_from: answer.as_of.retained_from_ms.and_then(|ms| zone.format(ms)),
            notes: &answer.as_of.notes,
            columns: &answer.columns,
            rows: answer
                .rows
                .iter()
                .map(|row| row.iter().map(|c| cell_json(c, &zone)).collect())
                .collect(),
        }
    }
}

struct Row<'a> {
    columns: &'a [String],
    cells: &'a [Json],
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.columns.len()))?;
        for (column, cell) in self.columns.iter().zip(self.cells) {
            map.serialize_entry(column, cell)?;
        }
        map.end()
    }
}

struct Rows<'a>(&'a Rendered<'a>);

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.rows.len()))?;
        for cells in &self.0.rows {
            seq.serialize_element(&Row {
                columns: self.0.columns,
                cells,
            })?;
        }
        seq.end()
    }
}

impl Serialize for Rendered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("metric", self.metric)?;
        map.serialize_entry(
            "as_of",
            &json!({
                "epoch": self.epoch,
                "watermark": self.watermark,
                "sources": self.sources.iter().map(|(name, watermark, late)| json!({
                    "source": name, "watermark": watermark, "late": late,
                })).collect::<Vec<_>>(),
                "retained_from": self.retained_from,
                "notes": self.notes,
            }),
        )?;
        map.serialize_entry("columns", self.columns)?;
        map.serialize_entry("rows", &Rows(self))?;
        map.end()
    }
}

/// The answer as a JSON value (rows are objects keyed by column).
pub fn answer_json(answer: &Answer, metric: &str, time_zone: Option<&str>) -> Json {
    serde_json::to_value(Rendered::new(answer, metric, time_zone)).unwrap_or(Json::Null)
}

/// The answer as JSON text, each row's keys in column order.
pub fn answer_json_string(answer: &Answer, metric: &str, time_zone: Option<&str>) -> String {
    serde_json::to_string(&Rendered::new(answer, metric, time_zone))
        .unwrap_or_else(|_| "null".to_string())
}

/// `{"error": first, "errors": all}`: the documented shape holds the first
/// problem under `error`; `errors` lists every one.
pub fn errors_json(errors: &[QueryError]) -> Json {
    let all: Vec<Json> = errors.iter().map(error_json).collect();
    json!({"error": all.first().cloned().unwrap_or(Json::Null), "errors": all})
}

/// [`errors_json`] as text.
pub fn errors_json_string(errors: &[QueryError]) -> String {
    errors_json(errors).to_string()
}

fn error_json(e: &QueryError) -> Json {
    let mut m = Map::new();
    m.insert("code".into(), Json::from(e.code));
    m.insert("message".into(), Json::from(e.message.clone()));
    m.insert("path".into(), Json::from(e.path.clone()));
    Json::Object(m)
}

// ---- EDN -----------------------------------------------------------------

/// The answer as EDN text.
pub fn answer_edn(answer: &Answer, metric: &str, time_zone: Option<&str>) -> String {
    let r = Rendered::new(answer, metric, time_zone);
    let mut out = String::with_capacity(64 + 48 * r.rows.len());
    out.push_str("{:metric ");
    out.push_str(&keyword(metric));
    out.push_str("\n :as-of {:epoch ");
    out.push_str(&r.epoch.to_string());
    out.push_str(" :watermark ");
    match &r.watermark {
        Some(w) => out.push_str(&edn_string(w)),
        None => out.push_str("nil"),
    }
    out.push_str(" :sources [");
    for (i, (name, watermark, late)) in r.sources.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str("{:source ");
        out.push_str(&edn_string(name));
        out.push_str(" :watermark ");
        match watermark {
            Some(w) => out.push_str(&edn_string(w)),
            None => out.push_str("nil"),
        }
        out.push_str(" :late ");
        out.push_str(&late.to_string());
        out.push('}');
    }
    out.push_str("] :retained-from ");
    match &r.retained_from {
        Some(w) => out.push_str(&edn_string(w)),
        None => out.push_str("nil"),
    }
    out.push_str(" :notes [");
    let notes: Vec<String> = r.notes.iter().map(|n| edn_string(n)).collect();
    out.push_str(&notes.join(" "));
    out.push_str("]}\n :columns [");
    let keys: Vec<String> = r.columns.iter().map(|c| keyword(c)).collect();
    out.push_str(&keys.join(" "));
    out.push_str("]\n :rows [");
    for (i, cells) in r.rows.iter().enumerate() {
        if i > 0 {
            out.push_str("\n        ");
        }
        out.push('{');
        for (j, (key, cell)) in keys.iter().zip(cells).enumerate() {
            if j > 0 {
                out.push(' ');
            }
            out.push_str(key);
            out.push(' ');
            json_to_edn(cell, &mut out);
        }
        out.push('}');
    }
    out.push_str("]}\n");
    out
}

/// [`errors_json`] as EDN: `{:error {...} :errors [...]}`.
pub fn errors_edn(errors: &[QueryError]) -> String {
    let one = |e: &QueryError| {
        format!(
            "{{:code {} :message {} :path {}}}",
            edn_string(e.code),
            edn_string(&e.message),
            edn_string(&e.path)
        )
    };
    let all: Vec<String> = errors.iter().map(one).collect();
    format!(
        "{{:error {}\n :errors [{}]}}\n",
        all.first().map_or("nil", String::as_str),
        all.join("\n          ")
    )
}

/// A name as an EDN keyword: `_` as `-` unless the name starts with `__`.
/// A name that would not read back as a keyword becomes a string.
pub fn keyword(name: &str) -> String {
    let converted = if name.starts_with("__") {
        name.to_string()
    } else {
        name.replace('_', "-")
    };
    let valid = converted
        .chars()
        .next()
        .is_some_and(|c| !c.is_ascii_digit() && c != ':' && c != '#')
        && converted
            .chars()
            .all(|c| c.is_alphanumeric() || "*+!-_?<>=.".contains(c));
    if valid {
        format!(":{converted}")
    } else {
        edn_string(name)
    }
}

/// An EDN string literal.
pub fn edn_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A rendered cell (a JSON scalar) as EDN.
fn json_to_edn(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("nil"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (None, Some(u), _) => out.push_str(&u.to_string()),
            // `{:?}` keeps a decimal point or an exponent, so EDN reads a float back.
            (None, None, Some(x)) => out.push_str(&format!("{x:?}")),
            _ => out.push_str("nil"),
        },
        Json::String(s) => out.push_str(&edn_string(s)),
        // Cells are scalars; anything else is printed as its JSON text.
        other => out.push_str(&edn_string(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::decode::decode_edn;
    use statflow_dataflow::query::AsOf;

    fn answer() -> Answer {
        Answer {
            as_of: AsOf {
                epoch: 42,
                watermark_ms: Some(1_724_119_200_000), // 2024-08-20T02:00:00Z
                sources: vec![statflow_dataflow::query::SourceMark {
                    source: "events".into(),
                    watermark_ms: Some(1_724_119_200_000),
                    late: 3,
                }],
                ..Default::default()
            },
            columns: vec![
                "reward_type".into(),
                "__time".into(),
                "rewards".into(),
                "amount".into(),
            ],
            rows: vec![
                vec![
                    Cell::Value(Value::Str("task".into())),
                    Cell::Time(1_724_115_600_000), // 2024-08-20T01:00:00Z
                    Cell::Int(123),
                    Cell::Float(10.0),
                ],
                vec![
                    Cell::Null,
                    Cell::Time(1_724_115_900_000),
                    Cell::Int(7),
                    Cell::Float(2.5),
                ],
                vec![
                    Cell::Value(Value::Str("quote \" and \\ and\nnewline".into())),
                    Cell::Time(1_724_116_200_000),
                    Cell::Int(-1),
                    Cell::Float(f64::NAN),
                ],
            ],
        }
    }

    #[test]
    fn json_answer_has_the_documented_shape() {
        let v = answer_json(&answer(), "reward_stats", Some("+08:00"));
        assert_eq!(v["metric"], "reward_stats");
        assert_eq!(
            v["as_of"],
            json!({"epoch": 42, "watermark": "2024-08-20T10:00:00+08:00", "sources": [
                {"source": "events", "watermark": "2024-08-20T10:00:00+08:00", "late": 3}
            ], "retained_from": null, "notes": []})
        );
        assert_eq!(
            v["columns"],
            json!(["reward_type", "__time", "rewards", "amount"])
        );
        assert_eq!(
            v["rows"][0],
            json!({"reward_type": "task", "__time": "2024-08-20T09:00:00+08:00", "rewards": 123, "amount": 10})
        );
        assert_eq!(v["rows"][1]["reward_type"], Json::Null);
        assert_eq!(v["rows"][1]["amount"], json!(2.5));
        assert_eq!(v["rows"][2]["amount"], Json::Null);
        // UTC prints with Z; no zone is UTC.
        let utc = answer_json(&answer(), "reward_stats", None);
        assert_eq!(utc["rows"][0]["__time"], "2024-08-20T01:00:00Z");
        // Named zones follow their offset at each instant.
        let berlin = answer_json(&answer(), "reward_stats", Some("Europe/Berlin"));
        assert_eq!(berlin["rows"][0]["__time"], "2024-08-20T03:00:00+02:00");
    }

    #[test]
    fn json_text_keeps_column_order_and_parses_to_the_value() {
        let text = answer_json_string(&answer(), "reward_stats", Some("+08:00"));
        let first_row = &text[text.find("\"rows\"").unwrap()..];
        let at = |k: &str| first_row.find(k).unwrap();
        assert!(
            at("reward_type") < at("__time")
                && at("__time") < at("rewards")
                && at("rewards") < at("amount")
        );
        let parsed: Json = serde_json::from_str(&text).unwrap();
        assert_eq!(
            parsed,
            answer_json(&answer(), "reward_stats", Some("+08:00"))
        );
    }

    #[test]
    fn edn_answer_reads_back_as_the_json_answer() {
        let edn = answer_edn(&answer(), "reward_stats", Some("+08:00"));
        assert!(
            edn.starts_with("{:metric :reward-stats\n :as-of {:epoch 42"),
            "{edn}"
        );
        assert!(
            edn.contains(":columns [:reward-type :__time :rewards :amount]"),
            "{edn}"
        );
        let back = decode_edn(&edn).unwrap();
        assert_eq!(back, answer_json(&answer(), "reward_stats", Some("+08:00")));
        let empty = Answer {
            as_of: AsOf {
                epoch: 0,
                watermark_ms: None,
                sources: Vec::new(),
                ..Default::default()
            },
            columns: vec![],
            rows: vec![vec![]],
        };
        let back = decode_edn(&answer_edn(&empty, "m", None)).unwrap();
        assert_eq!(back, answer_json(&empty, "m", None));
        assert_eq!(back["as_of"]["watermark"], Json::Null);
    }

    #[test]
    fn errors_render_first_and_all() {
        let errors = vec![
            QueryError::new("unknown_metric", "metric", "There is no metric `x`."),
            QueryError::new(
                "bad_regex",
                "filters.seed_id",
                "`(` is not \"a\" regular expression.",
            ),
        ];
        let v = errors_json(&errors);
        assert_eq!(v["error"]["code"], "unknown_metric");
        assert_eq!(v["error"]["path"], "metric");
        assert_eq!(v["errors"].as_array().unwrap().len(), 2);
        let text = errors_json_string(&errors);
        assert_eq!(serde_json::from_str::<Json>(&text).unwrap(), v);
        let back = decode_edn(&errors_edn(&errors)).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn keywords_and_strings() {
        assert_eq!(keyword("reward_type"), ":reward-type");
        assert_eq!(keyword("__time"), ":__time");
        assert_eq!(keyword("9lives"), "\"9lives\"");
        assert_eq!(keyword("a b"), "\"a b\"");
        assert_eq!(edn_string("a\u{1}b"), "\"a\\u0001b\"");
        assert_eq!(float_json(1e20), json!(1e20));
        assert_eq!(float_json(-3.0), json!(-3));
    }
}
