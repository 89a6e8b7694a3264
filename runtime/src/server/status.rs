//! `GET /v1/status`: what every process, worker and source is doing. The
//! reports travel through the query dataflow, so any process can answer for
//! the whole cluster.

use serde_json::{json, Value as Json};
use statflow_dataflow::ingest::{BrokerState, BrokerStatus};
use statflow_dataflow::scan::WorkerReport;
use statflow_dsl::{Plan, SourceKind};

use crate::engine::{ClusterStatus, Engine};

fn rfc3339(ms: i64) -> Json {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| Json::String(t.to_string()))
        .unwrap_or(Json::Null)
}

/// One reader's connection to its brokers, as the status shows it.
fn broker_json(b: &BrokerStatus) -> Json {
    json!({
        "state": b.state.as_str(),
        "since": rfc3339(b.since_ms),
        "error": b.error,
        "retries": b.retries,
    })
}

/// A source's connection over its workers, for reading at a glance: the
/// worst state any worker is in (unreachable, then connecting, then
/// connected), since when (the first worker to lose the brokers, or the
/// last to reach them), an error and the most retries of the workers in it,
/// and how many workers are in it. `None` for sources without brokers.
fn broker_summary(all: &[BrokerStatus]) -> Option<Json> {
    let rank = |s: BrokerState| match s {
        BrokerState::Unreachable => 2,
        BrokerState::Connecting => 1,
        BrokerState::Connected => 0,
    };
    let worst = all.iter().map(|b| b.state).max_by_key(|s| rank(*s))?;
    let in_it: Vec<&BrokerStatus> = all.iter().filter(|b| b.state == worst).collect();
    let since = match worst {
        BrokerState::Connected => in_it.iter().map(|b| b.since_ms).max(),
        _ => in_it.iter().map(|b| b.since_ms).min(),
    }?;
    Some(json!({
        "state": worst.as_str(),
        "since": rfc3339(since),
        "error": in_it.iter().find_map(|b| b.error.clone()),
        "retries": in_it.iter().map(|b| b.retries).max().unwrap_or(0),
        "workers": in_it.len(),
    }))
}

static DEGRADED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records that the cluster lost a process; `/v1/status` says so from then on.
pub fn mark_degraded(reason: String) {
    let _ = DEGRADED.set(reason);
}

/// Why the cluster is degraded, if it is.
pub fn degraded() -> Option<&'static str> {
    DEGRADED.get().map(String::as_str)
}

/// The status document, or the reason the workers could not be asked.
pub async fn status(engine: &Engine) -> Json {
    let shared = engine.shared();
    if let Some(reason) = degraded() {
        return json!({ "degraded": true, "error": reason, "processes": shared.processes });
    }
    // A worker waiting on a lost peer never answers; do not wait for it forever.
    let asked = tokio::time::timeout(std::time::Duration::from_secs(5), engine.status()).await;
    let Ok(asked) = asked else {
        return json!({ "degraded": true, "error": "the workers did not answer within 5s", "processes": shared.processes });
    };
    match asked {
        Ok(cluster) => document(
            &shared.plan,
            &cluster,
            shared.queries.load(std::sync::atomic::Ordering::Relaxed),
            shared.processes,
            engine.error(),
        ),
        Err(e) => json!({
            "error": e.to_string(),
            "degraded": true,
        }),
    }
}

/// Builds the status document from every worker's report.
pub fn document(
    plan: &Plan,
    cluster: &ClusterStatus,
    queries: u64,
    processes: usize,
    error: Option<String>,
) -> Json {
    let reports = &cluster.reports;
    let sources: Vec<Json> = plan
        .sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let of = |r: &WorkerReport| r.sources.get(i).cloned().unwrap_or_default();
            let sources: Vec<_> = reports.iter().map(of).collect();
            let brokers: Vec<BrokerStatus> =
                sources.iter().filter_map(|s| s.broker.clone()).collect();
            let watermark = statflow_dataflow::watermark::source_watermark(
                source.late.millis() as i64,
                sources.iter().flat_map(|s| s.partitions.iter()),
                statflow_dataflow::ingest::wall_ms(),
            );
            let mut doc = json!({
                "name": source.name,
                "kind": source.kind.keyword(),
                "path": match &source.kind { SourceKind::File(f) => Json::String(f.path.clone()), _ => Json::Null },
                "records": reports.iter().map(|r| of(r).records).sum::<u64>(),
                "errors": reports.iter().map(|r| of(r).errors).sum::<u64>(),
                "late": reports.iter().map(|r| of(r).late).sum::<u64>(),
                "finished": reports.iter().all(|r| of(r).finished),
                "watermark": watermark.map(rfc3339).unwrap_or(Json::Null),
                "watermark_ms": watermark,
                "workers": reports.iter().map(|r| {
                    let s = of(r);
                    let mut worker = json!({
                        "worker": r.worker,
                        "process": r.process,
                        "records": s.records,
                        "errors": s.errors,
                        "late": s.late,
                        "partitions": s.partitions.iter().map(|p| json!({
                            "partition": p.name,
                            "position": p.position,
                            "end": p.end,
                            "lag": p.end.map(|e| e.saturating_sub(p.position)),
                            "newest_event": p.max_event_ms.map(rfc3339).unwrap_or(Json::Null),
                        })).collect::<Vec<_>>(),
                        "finished": s.finished,
                        "newest_event": s.max_event_ms.map(rfc3339).unwrap_or(Json::Null),
                    });
                    if let Some(b) = &s.broker {
                        worker["broker"] = broker_json(b);
                    }
                    worker
                }).collect::<Vec<_>>(),
            });
            // Only sources with brokers (Kafka) say how they reach them.
            if let Some(summary) = broker_summary(&brokers) {
                doc["broker"] = summary;
            }
            doc
        })
        .collect();
    let workers: Vec<Json> = reports
        .iter()
        .map(|r| json!({ "worker": r.worker, "process": r.process, "epoch": r.epoch, "finished_at": r.finished_at }))
        .collect();
    let processes_seen: std::collections::BTreeSet<usize> =
        reports.iter().map(|r| r.process).collect();
    json!({
        "processes": processes,
        "degraded": processes_seen.len() != processes,
        "workers": workers,
        "epoch": {
            "complete": cluster.as_of,
            "open": reports.iter().map(|r| r.epoch).max(),
        },
        "sources": sources,
        "queries": queries,
        "error": error,
        "done": cluster.done(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(state: BrokerState, since_ms: i64, error: Option<&str>, retries: u64) -> BrokerStatus {
        BrokerStatus {
            state,
            since_ms,
            error: error.map(str::to_string),
            retries,
        }
    }

    #[test]
    fn a_source_reads_as_its_worst_worker() {
        assert_eq!(broker_summary(&[]), None, "no brokers, no summary");
        let t0 = 1_724_112_000_000;
        let all = [
            at(BrokerState::Connected, t0, None, 0),
            at(BrokerState::Unreachable, t0 + 2_000, Some("refused"), 3),
            at(BrokerState::Unreachable, t0 + 1_000, None, 5),
        ];
        assert_eq!(
            broker_summary(&all),
            Some(json!({
                "state": "unreachable",
                "since": "2024-08-20T00:00:01Z",
                "error": "refused",
                "retries": 5,
                "workers": 2,
            }))
        );
        let back = [
            at(BrokerState::Connected, t0 + 5_000, None, 0),
            at(BrokerState::Connected, t0 + 7_000, None, 0),
        ];
        assert_eq!(
            broker_summary(&back).unwrap()["since"],
            "2024-08-20T00:00:07Z",
            "connected since the last worker reconnected"
        );
        assert_eq!(
            broker_json(&all[1]),
            json!({"state": "unreachable", "since": "2024-08-20T00:00:02Z", "error": "refused", "retries": 3})
        );
    }
}
