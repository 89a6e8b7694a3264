//! `GET /v1/events`: server-sent events that say when a newer epoch is
//! complete, so that a dashboard set to "live" refreshes as the data moves
//! rather than on a timer.
//!
//! Epochs complete every `--epoch-ms` (200 ms by default); telling a browser
//! about each would only make it refresh five times a second. So the stream
//! looks once per [`EVERY`] and sends one `epoch` event when the complete
//! epoch has moved since the last one, with a comment every 15 s to keep
//! proxies from closing an idle connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use warp::reply::{Reply, Response};

use crate::engine::Shared;

/// How often the stream looks at the complete epoch.
pub const EVERY: Duration = Duration::from_secs(1);

/// The event stream for one client.
pub fn stream(shared: Arc<Shared>) -> Response {
    let events = futures_util::stream::unfold((shared, 0u64), |(shared, last)| async move {
        loop {
            tokio::time::sleep(EVERY).await;
            let complete = shared.complete_epoch();
            if complete > last && complete != u64::MAX {
                let event = warp::sse::Event::default()
                    .event("epoch")
                    .data(json!({"complete": complete - 1}).to_string());
                return Some((Ok::<_, Infallible>(event), (shared, complete)));
            }
        }
    });
    warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response()
}
