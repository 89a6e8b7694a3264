//! `GET /v1/status`: what every process, worker and source is doing. The
//! reports travel through the query dataflow, so any process can answer for
//! the whole cluster.

use serde_json::{json, Value as Json};
use statflow_dataflow::scan::WorkerReport;
use statflow_dsl::{Plan, SourceKind};

use crate::engine::{ClusterStatus, Engine};

fn rfc3339(ms: i64) -> Json {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| Json::String(t.to_string()))
        .unwrap_or(Json::Null)
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
            let watermark = statflow_dataflow::watermark::source_watermark(
                source.late.millis() as i64,
                sources.iter().flat_map(|s| s.partitions.iter()),
                statflow_dataflow::ingest::wall_ms(),
            );
            json!({
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
                    json!({
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
                    })
                }).collect::<Vec<_>>(),
            })
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
