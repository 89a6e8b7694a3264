//! Queries as they arrive over HTTP: JSON or EDN bodies, decoded,
//! validated against the running plan, and answers rendered back.
//!
//! The path of a request is `decode` (bytes → a normalized JSON value) →
//! `validate` (JSON value + [`Plan`] → [`Query`] or every problem at once) →
//! the engine → `render` ([`Answer`] → JSON or EDN). `schema` describes the
//! running plan for `GET /v1/catalog`.
//!
//! ```
//! use statflow_runtime::query;
//!
//! let plan = statflow_dsl::compile(
//!     "source events = generator()
//!      metric reward_stats from events {
//!        dimensions game_id, reward_type
//!        window tumbling 1m
//!        measures { rewards = count() }
//!      }",
//!     None,
//! )
//! .plan
//! .unwrap();
//! let body = br#"{:metric :reward-stats
//!                 :time-window {:kind :relative :last "6h"}
//!                 :group-by-keys [:reward-type]}"#;
//! let q = query::parse(body, Some("application/edn"), &plan, 1_724_115_600_000).unwrap();
//! assert_eq!(q.from_ms, 1_724_115_600_000 - 6 * 3_600_000);
//!
//! let bad = br#"{"metric": "reward_stat", "time_window": {"kind": "relative", "last": "6h"}}"#;
//! let errors = query::parse(bad, None, &plan, 0).unwrap_err();
//! assert_eq!(errors[0].code, "unknown_metric");
//! assert!(errors[0].message.contains("did you mean `reward_stats`"));
//! ```

use std::fmt;

use statflow_dataflow::query::{Answer, Query};
use statflow_dsl::Plan;

pub mod decode;
pub mod epoch;
mod filter;
pub mod render;
pub mod schema;
mod time;
pub mod validate;

pub use decode::{decode, looks_like_edn, BodyFormat};
pub use render::{
    answer_edn, answer_json, answer_json_string, errors_edn, errors_json, errors_json_string,
};
pub use schema::{catalog, query_schema};
pub use validate::validate;

/// The most rows an answer holds; a query without `limit` gets this one.
pub const MAX_ROWS: usize = 100_000;

/// The largest query body the server should read; larger bodies get 413.
/// A real query is a few hundred bytes; a long `in` list a few hundred kilobytes.
pub const MAX_BODY_BYTES: u64 = 1 << 20;

/// One problem with a query: a stable code, a sentence, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueryError {
    /// A stable, machine-readable code such as `unknown_metric`.
    pub code: &'static str,
    /// One sentence for a person: what was found and what to write instead.
    pub message: String,
    /// The offending field, as `filters.reward_type` or `order_by[0].field`;
    /// empty for the body as a whole.
    pub path: String,
}

impl QueryError {
    /// A problem with `code` at `path`.
    pub fn new(code: &'static str, path: impl Into<String>, message: impl Into<String>) -> Self {
        QueryError {
            code,
            message: message.into(),
            path: path.into(),
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "[{}] {}", self.code, self.message)
        } else {
            write!(f, "[{}] {}: {}", self.code, self.path, self.message)
        }
    }
}

impl std::error::Error for QueryError {}

/// Decodes and validates a request body in one step: what `POST /v1/query`
/// does before any worker sees the query.
pub fn parse(
    body: &[u8],
    content_type: Option<&str>,
    plan: &Plan,
    now_ms: i64,
) -> Result<Query, Vec<QueryError>> {
    let value = decode(body, content_type).map_err(|e| vec![e])?;
    validate(&value, plan, now_ms)
}

/// A validated query and the epoch it asks to be read at, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    /// What the engine runs.
    pub query: Query,
    /// `epoch` from the body: read at exactly this completed epoch.
    pub epoch: Option<u64>,
}

/// [`parse`], also reading the optional `epoch` field: every problem with
/// the body, the epoch's included, comes back at once.
pub fn parse_asked(
    body: &[u8],
    content_type: Option<&str>,
    plan: &Plan,
    now_ms: i64,
) -> Result<Asked, Vec<QueryError>> {
    let value = decode(body, content_type).map_err(|e| vec![e])?;
    let epoch = epoch::requested(&value);
    match (validate(&value, plan, now_ms), epoch) {
        (Ok(query), Ok(epoch)) => Ok(Asked { query, epoch }),
        (Ok(_), Err(e)) => Err(vec![e]),
        (Err(errors), Ok(_)) => Err(errors),
        (Err(mut errors), Err(e)) => {
            errors.push(e);
            Err(errors)
        }
    }
}

/// The name of the metric a validated query reads, for rendering its answer.
pub fn metric_name<'p>(plan: &'p Plan, query: &Query) -> &'p str {
    plan.metrics
        .get(query.metric)
        .map(|m| m.name.as_str())
        .unwrap_or("")
}

/// Renders an answer for the format a client asked for with `Accept`:
/// EDN when it names `application/edn`, JSON otherwise. Returns the body
/// and its content type.
pub fn render_for(
    accept: Option<&str>,
    answer: &Answer,
    metric: &str,
    time_zone: Option<&str>,
) -> (String, &'static str) {
    match BodyFormat::from_accept(accept) {
        BodyFormat::Edn => (answer_edn(answer, metric, time_zone), BodyFormat::EDN_TYPE),
        BodyFormat::Json => (
            answer_json_string(answer, metric, time_zone),
            BodyFormat::JSON_TYPE,
        ),
    }
}

/// Renders validation errors for the format a client asked for with
/// `Accept`. Returns the body and its content type.
pub fn render_errors_for(accept: Option<&str>, errors: &[QueryError]) -> (String, &'static str) {
    match BodyFormat::from_accept(accept) {
        BodyFormat::Edn => (errors_edn(errors), BodyFormat::EDN_TYPE),
        BodyFormat::Json => (errors_json_string(errors), BodyFormat::JSON_TYPE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value as Json};

    const TOPOLOGY: &str = "source events = generator()
metric reward_stats from events { dimensions game_id, seed_id, reward_type  window tumbling 1m  measures { rewards = count()  amount = sum(amount)  players = distinct(user_id) } }
metric hop from events { dimensions game_id  window hopping 10m every 5m  measures { n = count() } }
metric sess from events { dimensions game_id  window session 30m by user_id  measures { n = count() } }";

    fn plan() -> Plan {
        statflow_dsl::compile(TOPOLOGY, None)
            .plan
            .expect("compiles")
    }

    /// Words that reach deep into the validator: fields, names, operators, times.
    const WORDS: [&str; 40] = [
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
        "kind",
        "absolute",
        "relative",
        "from",
        "to",
        "last",
        "reward_stats",
        "hop",
        "sess",
        "game_id",
        "seed_id",
        "reward_type",
        "__time",
        "rewards",
        "players",
        "field",
        "desc",
        "eq",
        "in",
        "regex",
        "range",
        "not",
        "and",
        "or",
        "gte",
        "lt",
        "2024-08-20T09:00:00+08:00",
        "6h",
        "+05:30",
        "fuc|(tax",
    ];

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(WORDS.to_vec()).prop_map(str::to_string),
            "[a-z_|().*+0-9:-]{0,12}",
        ]
    }

    fn json_value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(Json::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
            word().prop_map(Json::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                prop::collection::btree_map(word(), inner, 0..8)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Text made of EDN's punctuation and a few words.
    fn edn_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "{",
                    "}",
                    "[",
                    "]",
                    "(",
                    ")",
                    "#{",
                    "#_",
                    "#inst",
                    "#uuid",
                    "#foo",
                    "\"",
                    "\\",
                    ";",
                    ",",
                    " ",
                    "\n",
                    ":",
                    "/",
                    "nil",
                    "true",
                    "1.5",
                    "-7",
                    "12N",
                    "3M",
                    "##Inf",
                    ":metric",
                    ":reward-stats",
                    ":time-window",
                    ":filters",
                    ":a/b",
                    "\"2024-08-20T09:00:00Z\"",
                    "\\newline",
                    "\\u00e9",
                    "\\u",
                    "\\uab",
                    "é",
                    "€",
                ])
                .prop_map(str::to_string),
                word(),
            ],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn arbitrary_json_values_never_panic(v in json_value(), now in any::<i64>()) {
            let _ = validate(&v, &plan(), now);
            let text = serde_json::to_vec(&v).unwrap();
            let _ = parse(&text, Some("application/json"), &plan(), now);
        }

        #[test]
        fn arbitrary_query_shaped_json_never_panics(
            filters in json_value(), window in json_value(), rest in json_value(), now in any::<i64>(),
        ) {
            let mut body = json!({"metric": "reward_stats", "time_window": window, "filters": filters});
            if let (Some(b), Some(r)) = (body.as_object_mut(), rest.as_object()) {
                for (k, v) in r {
                    b.insert(k.clone(), v.clone());
                }
            }
            match validate(&body, &plan(), now) {
                Ok(q) => prop_assert!(q.from_ms < q.to_ms),
                Err(errors) => prop_assert!(!errors.is_empty()),
            }
        }

        #[test]
        fn arbitrary_bytes_as_edn_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes, Some("application/edn"), &plan(), 0);
            let _ = parse(&bytes, None, &plan(), 0);
        }

        #[test]
        fn arbitrary_edn_like_text_never_panics(text in edn_text()) {
            let _ = parse(text.as_bytes(), Some("application/edn"), &plan(), 1_724_119_200_000);
            let wrapped = format!("{{:metric :reward-stats :filters {{:seed-id {text}}}}}");
            let _ = parse(wrapped.as_bytes(), Some("application/edn"), &plan(), 0);
        }
    }

    #[test]
    fn render_for_follows_accept() {
        let answer = Answer {
            as_of: statflow_dataflow::query::AsOf {
                epoch: 1,
                watermark_ms: None,
                sources: Vec::new(),
                ..Default::default()
            },
            columns: vec!["n".into()],
            rows: vec![vec![statflow_dataflow::query::Cell::Int(3)]],
        };
        let (body, ty) = render_for(Some("application/edn"), &answer, "m", None);
        assert_eq!(ty, "application/edn");
        assert!(body.contains(":rows [{:n 3}]"), "{body}");
        let (body, ty) = render_for(None, &answer, "m", None);
        assert_eq!(ty, "application/json");
        assert!(body.contains(r#""rows":[{"n":3}]"#), "{body}");
        let errors = [QueryError::new("bad_type", "limit", "No.")];
        let (body, ty) = render_errors_for(Some("application/edn"), &errors);
        assert_eq!(ty, "application/edn");
        assert!(body.starts_with("{:error {:code \"bad_type\""), "{body}");
        assert_eq!(errors[0].to_string(), "[bad_type] limit: No.");
    }
}
