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
pub mod render;
pub mod schema;
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
