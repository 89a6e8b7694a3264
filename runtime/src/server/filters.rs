//! The routes: one function per route, verb and path in its doc line.

use std::sync::Arc;

use warp::Filter;

use super::handlers;
use super::metrics::Metrics;
use super::AppState;
use crate::query::MAX_BODY_BYTES;

/// Every route, with errors turned into JSON and every response counted.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let recorder = Arc::new(Metrics::new());
    let responses = Arc::clone(&recorder);
    query(state.clone(), Arc::clone(&recorder))
        .or(catalog(state.clone()))
        .or(status(state.clone()))
        .or(metrics(state, recorder))
        .or(index())
        .recover(handlers::rejection)
        .with(warp::log::custom(move |info| {
            responses.response(info.status().as_u16())
        }))
}

fn with_metrics(
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (Arc<Metrics>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || Arc::clone(&metrics))
}

fn with_state(
    state: AppState,
) -> impl Filter<Extract = (AppState,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// POST /v1/query — a JSON or EDN query; the answer in JSON or EDN (`Accept`).
pub fn query(
    state: AppState,
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path!("v1" / "query")
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("accept"))
        .and(warp::body::bytes())
        .and(with_state(state))
        .and(with_metrics(metrics))
        .and_then(handlers::query)
}

/// GET /v1/catalog — metrics, dimensions, measures, windows and the query schema.
pub fn catalog(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path!("v1" / "catalog")
        .and(warp::get())
        .and(with_state(state))
        .map(handlers::catalog)
}

/// GET /v1/status — workers, sources, positions, errors, watermarks and epochs.
pub fn status(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path!("v1" / "status")
        .and(warp::get())
        .and(with_state(state))
        .and_then(handlers::status)
}

/// GET /metrics — sources, watermarks, epochs, queries and responses in the Prometheus text format.
pub fn metrics(
    state: AppState,
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .and(with_metrics(metrics))
        .map(handlers::metrics)
}

/// GET / — a short page naming the endpoints.
pub fn index() -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path::end().and(warp::get()).map(handlers::index)
}
