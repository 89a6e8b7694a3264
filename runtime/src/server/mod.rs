//! The HTTP endpoint (warp): queries, the catalog, the status, the
//! Prometheus metrics, signing in, users, dashboards and the web app.
//!
//! `run(listener, state, shutdown)` serves on a listener the caller bound,
//! so tests bind `127.0.0.1:0`; routes live in `filters`, their work in
//! `handlers` (queries), `accounts` (sessions, users) and `dashboards`,
//! who is asking in `auth`, and every error leaves as JSON
//! `{"error": {code, message, path}}`.

mod accounts;
mod app;
pub mod auth;
pub mod backfill;
mod dashboards;
mod events;
mod filters;
mod handlers;
pub mod health_dashboard;
mod metrics;
mod replies;
mod status;

use std::future::Future;
use std::sync::Arc;

use statflow_dsl::Plan;

use crate::engine::Engine;
use crate::store::{Role, Store, StoreError, User};

pub use filters::routes;
pub use metrics::Metrics;
pub use status::status;
pub use status::{degraded, mark_degraded};

/// What every request handler may use.
#[derive(Clone)]
pub struct AppState {
    /// The running engine.
    pub engine: Arc<Engine>,
    /// The running plan.
    pub plan: Arc<Plan>,
    /// Users, sessions and dashboards; `None` serves queries only.
    pub store: Option<Arc<Store>>,
    /// Every `/v1` route needs credentials. Off only with `--no-auth`
    /// (loopback) or in tests built with [`AppState::open`].
    pub auth_required: bool,
    /// Whom a request without credentials acts as when authentication is off.
    pub local_user: Option<User>,
}

/// Whether requests must prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every `/v1` route needs a token or a session.
    Required,
    /// Requests without credentials act as the admin `local` (`--no-auth`,
    /// loopback only: see [`auth::check_no_auth`]).
    Off,
}

impl AppState {
    /// State for `engine` running `plan`, with no store and no
    /// authentication: queries, catalog and status only (tests, benchmarks).
    pub fn open(engine: Arc<Engine>, plan: Arc<Plan>) -> AppState {
        AppState {
            engine,
            plan,
            store: None,
            auth_required: false,
            local_user: None,
        }
    }

    /// State with users and dashboards in `store`. Also keeps the store's
    /// "statflow health" dashboard in line with `plan`'s telemetry metric
    /// ([`health_dashboard`]); failing to is logged, not fatal.
    pub fn with_store(
        engine: Arc<Engine>,
        plan: Arc<Plan>,
        store: Arc<Store>,
        mode: AuthMode,
    ) -> Result<AppState, StoreError> {
        let local_user = match mode {
            AuthMode::Required => None,
            // The processes of a local cluster share one store and start
            // together: whoever adds the user first wins, the others read it.
            AuthMode::Off => Some(match store.add_user(auth::LOCAL_USER, Role::Admin) {
                Ok((user, _)) => user,
                Err(StoreError::UserExists(_)) => store
                    .user(auth::LOCAL_USER)?
                    .ok_or_else(|| StoreError::NoSuchUser(auth::LOCAL_USER.into()))?,
                Err(e) => return Err(e),
            }),
        };
        if let Err(e) = health_dashboard::keep(&store, &plan) {
            tracing::warn!(error = %e, "cannot keep the statflow health dashboard");
        }
        Ok(AppState {
            engine,
            plan,
            store: Some(store),
            auth_required: mode == AuthMode::Required,
            local_user,
        })
    }
}

/// Serves the routes on `listener` until `shutdown` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes(state))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}
