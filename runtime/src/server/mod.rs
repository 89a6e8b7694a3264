//! The HTTP endpoint (warp): queries, the catalog, the status and the
//! Prometheus metrics.
//!
//! `run(listener, state, shutdown)` serves on a listener the caller bound,
//! so tests bind `127.0.0.1:0`; routes live in `filters`, their work in
//! `handlers`, and every error leaves as JSON `{"error": {code, message, path}}`.

mod filters;
mod handlers;
mod metrics;
mod status;

use std::future::Future;
use std::sync::Arc;

use statflow_dsl::Plan;

use crate::engine::Engine;

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
}

impl AppState {
    /// State for `engine` running `plan`.
    pub fn open(engine: Arc<Engine>, plan: Arc<Plan>) -> AppState {
        AppState { engine, plan }
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
