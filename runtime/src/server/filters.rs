//! The routes: one function per route, verb and path in its doc line.

use warp::Filter;

use super::handlers;
use super::AppState;
use crate::query::MAX_BODY_BYTES;

/// Every route, with errors turned into JSON.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    query(state.clone())
        .or(catalog(state.clone()))
        .or(status(state))
        .or(index())
        .recover(handlers::rejection)
}

fn with_state(
    state: AppState,
) -> impl Filter<Extract = (AppState,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// POST /v1/query — a JSON or EDN query; the answer in JSON or EDN (`Accept`).
pub fn query(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path!("v1" / "query")
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("accept"))
        .and(warp::body::bytes())
        .and(with_state(state))
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

/// GET / — a short page naming the endpoints.
pub fn index() -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    warp::path::end().and(warp::get()).map(handlers::index)
}
