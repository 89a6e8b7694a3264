//! What each route does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::{self, Reply, Response};

use super::metrics::Metrics;
use super::AppState;
use crate::engine::QueryFailure;
use crate::query;

fn with_type(body: String, content_type: &'static str, status: StatusCode) -> Response {
    let mut response = reply::with_status(body, status).into_response();
    if let Ok(value) = warp::http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(warp::http::header::CONTENT_TYPE, value);
    }
    response
}

/// How many epochs past this process's newest a pinned query may name.
const EPOCH_SLACK: u64 = 16;

/// Validates, runs and renders one query, and records its outcome.
pub async fn query(
    content_type: Option<String>,
    accept: Option<String>,
    body: Bytes,
    state: AppState,
    metrics: Arc<Metrics>,
) -> Result<Response, Infallible> {
    let started = Instant::now();
    let now = statflow_dataflow::ingest::wall_ms();
    let asked = match query::parse_asked(&body, content_type.as_deref(), &state.plan, now) {
        Ok(asked) => asked,
        Err(errors) => {
            let code = errors.first().map_or("invalid_query", |e| e.code);
            metrics.query(code, started.elapsed());
            let (body, ty) = query::render_errors_for(accept.as_deref(), &errors);
            return Ok(with_type(body, ty, StatusCode::BAD_REQUEST));
        }
    };
    if let Some(epoch) = asked.epoch {
        // Epochs a little ahead of this process's newest may be open on
        // another process of a cluster; anything further would wait forever.
        let open = state.engine.shared().open_epoch();
        if epoch > open.saturating_add(EPOCH_SLACK) {
            let error = query::epoch::in_future(epoch, open);
            metrics.query(error.code, started.elapsed());
            let (body, ty) = query::render_errors_for(accept.as_deref(), &[error]);
            return Ok(with_type(body, ty, StatusCode::BAD_REQUEST));
        }
    }
    let q = asked.query;
    let metric = query::metric_name(&state.plan, &q).to_string();
    let tz = q.time_zone.clone();
    match state.engine.query_at(q, asked.epoch).await {
        Ok(answer) => {
            let (body, ty) = query::render_for(accept.as_deref(), &answer, &metric, tz.as_deref());
            metrics.query("ok", started.elapsed());
            Ok(with_type(body, ty, StatusCode::OK))
        }
        Err(QueryFailure::EpochNotReadable(epoch)) => {
            let error = query::epoch::not_readable(epoch);
            metrics.query(error.code, started.elapsed());
            let (body, ty) = query::render_errors_for(accept.as_deref(), &[error]);
            Ok(with_type(body, ty, StatusCode::CONFLICT))
        }
        Err(failure) => {
            let code = match failure {
                QueryFailure::NoConsistentEpoch(_) => "no_consistent_epoch",
                _ => "shutting_down",
            };
            metrics.query(code, started.elapsed());
            let error = query::QueryError::new(code, "", failure.to_string());
            let (body, ty) = query::render_errors_for(accept.as_deref(), &[error]);
            Ok(with_type(body, ty, StatusCode::SERVICE_UNAVAILABLE))
        }
    }
}

/// The catalog of the running plan.
pub fn catalog(state: AppState) -> Response {
    reply::json(&query::catalog(&state.plan)).into_response()
}

/// The status of every process, worker and source.
pub async fn status(state: AppState) -> Result<Response, Infallible> {
    Ok(reply::json(&super::status(&state.engine).await).into_response())
}

/// Readiness for probes: 200 once every worker of the cluster answers, 503
/// while it cannot (forming, degraded). Open, so it says nothing more than
/// that and the complete epoch.
pub async fn health(state: AppState) -> Result<Response, Infallible> {
    let status = super::status(&state.engine).await;
    let (code, body) = if status["degraded"] == json!(false) {
        (
            StatusCode::OK,
            json!({"status": "ready", "epoch": status["epoch"]["complete"]}),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "why": "the workers of the cluster do not all answer; see /v1/status"}),
        )
    };
    Ok(reply::with_status(reply::json(&body), code).into_response())
}

/// The Prometheus scrape: the engine's state now and what the routes recorded.
pub fn metrics(state: AppState, metrics: Arc<Metrics>) -> Response {
    let now = statflow_dataflow::ingest::wall_ms();
    match metrics.render(state.engine.shared(), now) {
        Ok(text) => with_type(text, super::metrics::CONTENT_TYPE, StatusCode::OK),
        Err(e) => with_type(
            format!("cannot render the metrics: {e}\n"),
            "text/plain; charset=utf-8",
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    }
}

/// Turns a rejection into a JSON error with the right status.
pub async fn rejection(r: warp::Rejection) -> Result<Response, Infallible> {
    // Checked first: a route that matched its path and refused the caller
    // outranks the other routes that did not match at all.
    if let Some(d) = r.find::<super::auth::Denied>() {
        return Ok(super::replies::denied(d));
    }
    let (status, code, message) = if r.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; the API is under /v1 (query, catalog, status, session, users, dashboards), the metrics at /metrics and the app at /".to_string(),
        )
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {} bytes", query::MAX_BODY_BYTES),
        )
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "send a Content-Length header with the body".to_string(),
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not take that method".to_string(),
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidHeader>() {
        (StatusCode::BAD_REQUEST, "bad_header", e.to_string())
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unhandled rejection: {r:?}"),
        )
    };
    let body = json!({ "error": { "code": code, "message": message, "path": "" } });
    Ok(reply::with_status(reply::json(&body), status).into_response())
}
