//! `POST /v1/backfill` orders a metric's history filled in (admins);
//! `GET /v1/backfill` shows how far every backfill has come. See the
//! engine's backfill module for how it works.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use statflow_dataflow::backfill::BackfillOrder;
use statflow_dsl::{did_you_mean, Plan};
use warp::http::StatusCode;
use warp::reply::Response;

use super::auth::{Caller, Denied};
use super::replies::{json_with, object, only, string_field};
use super::AppState;
use crate::engine::{unbackfillable_source, ClusterStatus};
use crate::store::Role;

/// Where one metric's backfill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillState {
    /// The metric has history to fill in, and no order was given yet.
    Waiting,
    /// Some worker is still reading history.
    Running,
    /// Every worker has read the history up to where the live input began.
    Done,
}

/// One metric's backfill over the whole cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillProgress {
    /// The metric.
    pub metric: String,
    /// Waiting, running or done.
    pub state: BackfillState,
    /// The first bucket filled in (RFC 3339), when the order set one.
    pub from: Option<String>,
    /// The end of the last bucket filled in, when the order set one.
    pub to: Option<String>,
    /// Records read by the backfill so far, over every worker.
    pub records: u64,
    /// Those that could not be counted.
    pub errors: u64,
    /// Partitions with history to read.
    pub partitions: usize,
    /// Positions read so far (bytes of a file, Kafka offsets), over every partition.
    pub read: u64,
    /// Positions to read in all.
    pub total: u64,
}

/// Every metric's backfill, from every worker's report.
pub fn progress_of(plan: &Plan, status: &ClusterStatus) -> Vec<BackfillProgress> {
    let mut by_metric: BTreeMap<u32, BackfillProgress> = BTreeMap::new();
    // (metric, source, partition) → (first, furthest position, end)
    let mut partitions: BTreeMap<(u32, String, String), (u64, u64, u64)> = BTreeMap::new();
    for report in &status.reports {
        for fill in &report.backfills {
            let Some(metric) = plan.metrics.get(fill.metric as usize) else {
                continue;
            };
            let state = match (&fill.order, fill.done) {
                (None, _) => BackfillState::Waiting,
                (Some(_), false) => BackfillState::Running,
                (Some(_), true) => BackfillState::Done,
            };
            let entry = by_metric
                .entry(fill.metric)
                .or_insert_with(|| BackfillProgress {
                    metric: metric.name.clone(),
                    state,
                    from: fill.order.as_ref().and_then(|o| o.from_ms).map(rfc3339),
                    to: fill.order.as_ref().and_then(|o| o.to_ms).map(rfc3339),
                    records: 0,
                    errors: 0,
                    partitions: 0,
                    read: 0,
                    total: 0,
                });
            // Running anywhere is running; waiting anywhere (an order on its
            // way) is waiting.
            entry.state = entry.state.min(state);
            entry.records += fill.records;
            entry.errors += fill.errors;
            for p in &fill.partitions {
                let seen = partitions
                    .entry((fill.metric, p.source.clone(), p.partition.clone()))
                    .or_insert((p.first, p.position, p.end));
                seen.1 = seen.1.max(p.position);
            }
        }
    }
    for ((metric, _, _), (first, position, end)) in partitions {
        if let Some(entry) = by_metric.get_mut(&metric) {
            entry.partitions += 1;
            entry.read += position.saturating_sub(first);
            entry.total += end.saturating_sub(first);
        }
    }
    by_metric.into_values().collect()
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// `GET /v1/backfill`.
pub async fn list(state: AppState) -> Result<Response, Denied> {
    let status = state.engine.status().await.map_err(unavailable)?;
    Ok(json_with(
        StatusCode::OK,
        &json!({ "backfills": progress_of(&state.plan, &status) }),
    ))
}

/// `POST /v1/backfill {"metric", "from"?, "to"?}`: 202 with the progress
/// once every worker has the order; 200 when the same order was given before.
pub async fn order(caller: Caller, body: Bytes, state: AppState) -> Result<Response, Denied> {
    caller.require(Role::Admin, "Backfilling a metric")?;
    let map = object(&body)?;
    only(&map, &["metric", "from", "to"])?;
    let name = string_field(&map, "metric")?;
    let plan = &state.plan;
    let Some(metric) = plan.metrics.iter().position(|m| m.name == name) else {
        let hint = did_you_mean(name, plan.metrics.iter().map(|m| m.name.as_str()))
            .map(|m| format!(" Did you mean `{m}`?"))
            .unwrap_or_default();
        return Err(Denied::bad_request(
            "unknown_metric",
            "metric",
            format!("the topology has no metric `{name}`.{hint}"),
        ));
    };
    let from_ms = time_field(&map, "from")?;
    let to_ms = time_field(&map, "to")?;
    if let (Some(from), Some(to)) = (from_ms, to_ms) {
        if from >= to {
            return Err(Denied::bad_request(
                "from_after_to",
                "from",
                "`from` must be before `to`.",
            ));
        }
    }
    if let Some(reason) = unbackfillable_source(plan, metric) {
        return Err(Denied::bad_request(
            "not_backfillable",
            "metric",
            format!("`{name}` cannot be backfilled: {reason}."),
        ));
    }
    let order = BackfillOrder {
        metric: metric as u32,
        from_ms,
        to_ms,
    };
    let status = state.engine.status().await.map_err(unavailable)?;
    let Some(before) = progress_of(plan, &status)
        .into_iter()
        .find(|p| p.metric == name)
    else {
        return Err(Denied::new(
            StatusCode::CONFLICT,
            "nothing_to_backfill",
            format!(
                "`{name}` has counted its sources from their beginning: it has no history to fill in."
            ),
        )
        .at("metric"));
    };
    if before.state != BackfillState::Waiting {
        let same = before.from == from_ms.map(rfc3339) && before.to == to_ms.map(rfc3339);
        if !same {
            return Err(Denied::new(
                StatusCode::CONFLICT,
                "backfill_already_ordered",
                format!(
                    "`{name}` was ordered backfilled already, with other bounds; a metric is backfilled once."
                ),
            )
            .at("metric"));
        }
        return Ok(json_with(StatusCode::OK, &json!({ "backfill": before })));
    }
    tracing::info!(metric = %name, ?from_ms, ?to_ms, user = %caller.user.name, "backfill ordered");
    let status = state.engine.backfill(order).await.map_err(unavailable)?;
    let after = progress_of(plan, &status)
        .into_iter()
        .find(|p| p.metric == name);
    Ok(json_with(
        StatusCode::ACCEPTED,
        &json!({ "backfill": after }),
    ))
}

/// An optional RFC 3339 time field, in milliseconds.
fn time_field(map: &serde_json::Map<String, Json>, name: &str) -> Result<Option<i64>, Denied> {
    if map.get(name).is_none_or(Json::is_null) {
        return Ok(None);
    }
    let text = string_field(map, name)?;
    text.parse::<jiff::Timestamp>()
        .map(|t| Some(t.as_millisecond()))
        .map_err(|e| {
            Denied::bad_request(
                "bad_time",
                name,
                format!(
                    "`{name}` must be an RFC 3339 time such as 2024-08-20T09:00:00+08:00 ({e})."
                ),
            )
        })
}

fn unavailable(failure: crate::engine::QueryFailure) -> Denied {
    Denied::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        failure.to_string(),
    )
}
