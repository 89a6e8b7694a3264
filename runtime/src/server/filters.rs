//! The routes: one function per route, verb and path in its doc line.
//!
//! Every `/v1` route but signing in runs [`auth::caller`] once its path and
//! method matched; `GET /metrics`, `GET /health` and the app's files are
//! open (see the book's security chapter for why).

use std::sync::Arc;

use bytes::Bytes;
use warp::reply::Response;
use warp::Filter;

use super::auth::{self, Caller};
use super::metrics::Metrics;
use super::replies::respond;
use super::AppState;
use super::{accounts, app, backfill, dashboards, events, handlers};
use crate::query::MAX_BODY_BYTES;

/// The largest body of the account and dashboard routes.
const MAX_JSON_BYTES: u64 = 512 * 1024;

/// Every route, with errors turned into JSON and every response counted.
pub fn routes(
    state: AppState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let recorder = Arc::new(Metrics::new());
    let responses = Arc::clone(&recorder);
    let api = query(state.clone(), Arc::clone(&recorder))
        .or(catalog(state.clone()))
        .or(status(state.clone()))
        .or(backfill_routes(state.clone()))
        .or(epochs(state.clone()))
        .or(session(state.clone()))
        .or(users(state.clone()))
        .or(dashboard_routes(state.clone()));
    api.or(metrics(state.clone(), recorder))
        .or(health(state))
        .or(app::routes())
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

fn json_body() -> impl Filter<Extract = (Bytes,), Error = warp::Rejection> + Clone {
    warp::body::content_length_limit(MAX_JSON_BYTES).and(warp::body::bytes())
}

/// POST /v1/query — a JSON or EDN query; the answer in JSON or EDN (`Accept`).
pub fn query(
    state: AppState,
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("v1" / "query")
        .and(warp::post())
        .and(auth::caller(state.clone()))
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<String>("accept"))
        .and(warp::body::bytes())
        .and(with_state(state))
        .and(with_metrics(metrics))
        .and_then(|_: Caller, ct, accept, body, state, metrics| {
            handlers::query(ct, accept, body, state, metrics)
        })
}

/// GET /v1/catalog — metrics, dimensions, measures, windows and the query schema.
pub fn catalog(
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("v1" / "catalog")
        .and(warp::get())
        .and(auth::caller(state.clone()))
        .and(with_state(state))
        .map(|_: Caller, state| handlers::catalog(state))
}

/// GET /v1/status — workers, sources, positions, errors, watermarks and epochs.
pub fn status(
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("v1" / "status")
        .and(warp::get())
        .and(auth::caller(state.clone()))
        .and(with_state(state))
        .and_then(|_: Caller, state| handlers::status(state))
}

/// GET /v1/events — server-sent events: `epoch` whenever a newer epoch is complete.
/// `GET /v1/backfill` (progress) and `POST /v1/backfill` (an order, admins).
pub fn backfill_routes(
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let list = warp::path!("v1" / "backfill")
        .and(warp::get())
        .and(auth::caller(state.clone()))
        .and(with_state(state.clone()))
        .then(|_: Caller, state| async move { respond(backfill::list(state).await) });
    let order =
        warp::path!("v1" / "backfill")
            .and(warp::post())
            .and(auth::caller(state.clone()))
            .and(json_body())
            .and(with_state(state))
            .then(|caller, body, state| async move {
                respond(backfill::order(caller, body, state).await)
            });
    list.or(order).unify()
}

pub fn epochs(
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("v1" / "events")
        .and(warp::get())
        .and(auth::caller(state.clone()))
        .and(with_state(state))
        .map(|_: Caller, state: AppState| {
            events::stream(std::sync::Arc::clone(state.engine.shared()))
        })
}

/// POST /v1/session (sign in with a token), GET /v1/session (who am I),
/// DELETE /v1/session (sign out).
pub fn session(
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let path = || warp::path!("v1" / "session");
    let sign_in = path()
        .and(warp::post())
        .and(json_body())
        .and(with_state(state.clone()))
        .map(|body, state| respond(accounts::sign_in(body, state)));
    let whoami = path()
        .and(warp::get())
        .and(auth::caller(state.clone()))
        .and(with_state(state.clone()))
        .map(|caller, state| respond(accounts::whoami(caller, state)));
    let sign_out = path()
        .and(warp::delete())
        .and(auth::caller(state.clone()))
        .and(with_state(state))
        .map(|caller, state| respond(accounts::sign_out(caller, state)));
    sign_in.or(whoami).unify().or(sign_out).unify()
}

/// GET /v1/users, POST /v1/users, DELETE /v1/users/{name},
/// POST /v1/users/{name}/token — admins only.
pub fn users(
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let list = warp::path!("v1" / "users")
        .and(warp::get())
        .and(auth::caller(state.clone()))
        .and(with_state(state.clone()))
        .map(|caller, state| respond(accounts::list(caller, state)));
    let add = warp::path!("v1" / "users")
        .and(warp::post())
        .and(auth::caller(state.clone()))
        .and(json_body())
        .and(with_state(state.clone()))
        .map(|caller, body, state| respond(accounts::add(caller, body, state)));
    let remove = warp::path!("v1" / "users" / String)
        .and(warp::delete())
        .and(auth::caller(state.clone()))
        .and(with_state(state.clone()))
        .map(|name, caller, state| respond(accounts::remove(caller, name, state)));
    let rotate = warp::path!("v1" / "users" / String / "token")
        .and(warp::post())
        .and(auth::caller(state.clone()))
        .and(with_state(state))
        .map(|name, caller, state| respond(accounts::rotate(caller, name, state)));
    list.or(add).unify().or(remove).unify().or(rotate).unify()
}

/// GET /v1/dashboards, POST /v1/dashboards, GET|PUT|DELETE /v1/dashboards/{id},
/// PUT /v1/dashboards/{id}/sharing.
pub fn dashboard_routes(
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let list = warp::path!("v1" / "dashboards")
        .and(warp::get())
        .and(auth::caller(state.clone()))
        .and(with_state(state.clone()))
        .map(|caller, state| respond(dashboards::list(caller, state)));
    let create = warp::path!("v1" / "dashboards")
        .and(warp::post())
        .and(auth::caller(state.clone()))
        .and(json_body())
        .and(with_state(state.clone()))
        .map(|caller, body, state| respond(dashboards::create(caller, body, state)));
    let get = warp::path!("v1" / "dashboards" / String)
        .and(warp::get())
        .and(auth::caller(state.clone()))
        .and(with_state(state.clone()))
        .map(|id, caller, state| respond(dashboards::get(caller, id, state)));
    let update = warp::path!("v1" / "dashboards" / String)
        .and(warp::put())
        .and(auth::caller(state.clone()))
        .and(json_body())
        .and(with_state(state.clone()))
        .map(|id, caller, body, state| respond(dashboards::update(caller, id, body, state)));
    let delete = warp::path!("v1" / "dashboards" / String)
        .and(warp::delete())
        .and(auth::caller(state.clone()))
        .and(with_state(state.clone()))
        .map(|id, caller, state| respond(dashboards::delete(caller, id, state)));
    let share = warp::path!("v1" / "dashboards" / String / "sharing")
        .and(warp::put())
        .and(auth::caller(state.clone()))
        .and(json_body())
        .and(with_state(state))
        .map(|id, caller, body, state| respond(dashboards::share(caller, id, body, state)));
    list.or(create)
        .unify()
        .or(get)
        .unify()
        .or(update)
        .unify()
        .or(delete)
        .unify()
        .or(share)
        .unify()
}

/// GET /health — 200 once every worker answers, 503 otherwise (readiness probes; open).
pub fn health(
    state: AppState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("health")
        .and(warp::get())
        .and(with_state(state))
        .and_then(handlers::health)
}

/// GET /metrics — sources, watermarks, epochs, queries and responses in the Prometheus text format.
pub fn metrics(
    state: AppState,
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .and(with_metrics(metrics))
        .map(handlers::metrics)
}
