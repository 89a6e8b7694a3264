//! `GET /v1/status`: what every worker and source is doing.

use std::sync::atomic::Ordering;

use serde_json::{json, Value as Json};
use statflow_dsl::SourceKind;

use crate::engine::Engine;

fn rfc3339(ms: i64) -> Json {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| Json::String(t.to_string()))
        .unwrap_or(Json::Null)
}

/// The status document.
pub fn status(engine: &Engine) -> Json {
    let shared = engine.shared();
    let complete = shared.complete_epoch();
    let sources: Vec<Json> = shared
        .plan
        .sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let per_worker: Vec<Json> = shared
                .workers
                .iter()
                .enumerate()
                .map(|(w, ws)| {
                    let s = &ws.sources[i];
                    json!({
                        "worker": w,
                        "records": s.records.load(Ordering::Relaxed),
                        "errors": s.errors.load(Ordering::Relaxed),
                        "position": s.position.load(Ordering::Relaxed),
                        "finished": s.finished.load(Ordering::Relaxed),
                        "newest_event": s.max_event().map(rfc3339).unwrap_or(Json::Null),
                    })
                })
                .collect();
            let sum = |f: fn(&statflow_dataflow::ingest::SourceStats) -> u64| -> u64 {
                shared.workers.iter().map(|w| f(&w.sources[i])).sum()
            };
            let watermark = shared.watermark(i);
            json!({
                "name": source.name,
                "kind": source.kind.keyword(),
                "path": match &source.kind { SourceKind::File(f) => Json::String(f.path.clone()), _ => Json::Null },
                "records": sum(|s| s.records.load(Ordering::Relaxed)),
                "errors": sum(|s| s.errors.load(Ordering::Relaxed)),
                "finished": shared.workers.iter().all(|w| w.sources[i].finished.load(Ordering::Relaxed)),
                "watermark": watermark.map(rfc3339).unwrap_or(Json::Null),
                "watermark_ms": watermark,
                "workers": per_worker,
            })
        })
        .collect();
    let workers: Vec<Json> = shared
        .workers
        .iter()
        .enumerate()
        .map(|(w, ws)| json!({ "worker": w, "epoch": ws.epoch.load(Ordering::Relaxed) }))
        .collect();
    json!({
        "workers": workers,
        "epoch": {
            "complete": complete.checked_sub(1),
            "open": shared.workers.iter().map(|w| w.epoch.load(Ordering::Relaxed)).max(),
        },
        "sources": sources,
        "queries": shared.queries.load(Ordering::Relaxed),
        "error": engine.error(),
        "done": shared.done(),
    })
}
