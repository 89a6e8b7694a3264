//! `GET /metrics`: the engine and the HTTP endpoint in the Prometheus text
//! exposition format.
//!
//! Two kinds of metric live here. What the engine already counts (records,
//! errors, watermarks, epochs) is read from [`Shared`] when Prometheus
//! scrapes, so the workers' hot path does not change. What only the HTTP
//! endpoint sees (queries, their duration, response statuses) is recorded
//! as it happens into a [`Metrics`] that belongs to one set of routes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus::{
    Counter, Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use statflow_dataflow::ingest::BrokerState;

use crate::engine::Shared;

/// The `Content-Type` of a scrape: the classic text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the HTTP endpoint records as requests come and go.
///
/// One `Metrics` is made per [`routes`](super::routes): a server and its
/// scrapes share it, and tests that build their own routes see only their
/// own requests.
pub struct Metrics {
    /// Holds the three metrics below, for `gather`.
    registry: Registry,
    /// `statflow_queries_total{code}`: queries answered, by outcome.
    queries: IntCounterVec,
    /// `statflow_query_duration_seconds`: from body received to answer rendered.
    query_duration: Histogram,
    /// `statflow_http_responses_total{status}`: every response of every route.
    responses: IntCounterVec,
}

impl Metrics {
    /// Empty counters, with `statflow_queries_total{code="ok"}` at 0 so the
    /// series exists before the first query.
    pub fn new() -> Metrics {
        let queries = IntCounterVec::new(
            Opts::new(
                "statflow_queries_total",
                "Queries answered, by outcome: ok, or the error code of the answer.",
            ),
            &["code"],
        )
        .expect("a valid metric");
        let query_duration = Histogram::with_opts(HistogramOpts::new(
            "statflow_query_duration_seconds",
            "Time from a query's body received to its answer rendered, valid or not.",
        ))
        .expect("a valid metric");
        let responses = IntCounterVec::new(
            Opts::new(
                "statflow_http_responses_total",
                "HTTP responses of every route, by status code.",
            ),
            &["status"],
        )
        .expect("a valid metric");
        queries.with_label_values(&["ok"]);
        let registry = Registry::new();
        // The names are constants and distinct, so registering cannot fail.
        for metric in [
            Box::new(queries.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(query_duration.clone()),
            Box::new(responses.clone()),
        ] {
            registry.register(metric).expect("distinct metric names");
        }
        Metrics {
            registry,
            queries,
            query_duration,
            responses,
        }
    }

    /// Records one query: `code` is `ok` or the code of its (first) error.
    pub fn query(&self, code: &str, took: Duration) {
        self.queries.with_label_values(&[code]).inc();
        self.query_duration.observe(took.as_secs_f64());
    }

    /// Records one HTTP response.
    pub fn response(&self, status: u16) {
        self.responses
            .with_label_values(&[&status.to_string()])
            .inc();
    }

    /// The scrape: the engine's state at `now_ms` and what was recorded.
    pub fn render(&self, shared: &Shared, now_ms: i64) -> Result<String, prometheus::Error> {
        let mut families = engine_registry(shared, now_ms)?.gather();
        families.extend(self.registry.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A registry made for one scrape, filled from the engine's atomics.
///
/// The counters are set from totals the workers keep (`inc_by` on a fresh
/// counter), so they rise exactly as the workers' own counters do. A
/// registry per scrape costs a few allocations per source and worker, which
/// is nothing beside a scrape interval.
fn engine_registry(shared: &Shared, now_ms: i64) -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    let records = IntCounterVec::new(
        Opts::new(
            "statflow_source_records_total",
            "Records a worker read from a source, good or malformed.",
        ),
        &["source", "worker"],
    )?;
    let errors = IntCounterVec::new(
        Opts::new(
            "statflow_source_errors_total",
            "Records a worker read from a source and could not count (dead letters).",
        ),
        &["source", "worker"],
    )?;
    let finished = IntGaugeVec::new(
        Opts::new(
            "statflow_source_finished",
            "1 when every worker of this process has read its share of the source to the end.",
        ),
        &["source"],
    )?;
    let delay = GaugeVec::new(
        Opts::new(
            "statflow_watermark_delay_seconds",
            "Wall-clock time minus the source's watermark on this process; absent before any event.",
        ),
        &["source"],
    )?;
    let epoch_open = IntGaugeVec::new(
        Opts::new(
            "statflow_epoch_open",
            "The epoch a worker of this process is filling.",
        ),
        &["worker"],
    )?;
    let completed = IntGauge::new(
        "statflow_epochs_completed",
        "Epochs complete on every worker: every epoch below this number can be queried.",
    )?;
    let late = IntCounterVec::new(
        Opts::new(
            "statflow_late_events_total",
            "Events a worker set aside as late (beyond the source's bound), by the metric they would have counted in.",
        ),
        &["source", "metric", "worker"],
    )?;
    let lag = IntGaugeVec::new(
        Opts::new(
            "statflow_partition_lag",
            "Records (Kafka) or bytes (files) between a partition's position and its end, where the end is known.",
        ),
        &["source", "partition"],
    )?;
    let broker_up = IntGaugeVec::new(
        Opts::new(
            "statflow_kafka_broker_up",
            "1 when a worker's reader of a Kafka source reaches a broker, 0 while it cannot (or has not yet).",
        ),
        &["source", "worker"],
    )?;
    let checkpoints = IntCounter::new(
        "statflow_checkpoints_completed_total",
        "Checkpoints whose manifest this process wrote (process 0 writes them).",
    )?;
    let checkpoint_bytes = IntCounter::new(
        "statflow_checkpoint_bytes_total",
        "Bytes of checkpoint shards this process's workers wrote.",
    )?;
    let checkpoint_shards = IntCounter::new(
        "statflow_checkpoint_shards_total",
        "Checkpoint shards this process's workers wrote.",
    )?;
    let checkpoint_seconds = Counter::new(
        "statflow_checkpoint_write_seconds_total",
        "Time this process's workers spent writing checkpoint shards; divide by the shards for the mean.",
    )?;
    let checkpoint_epoch = IntGauge::new(
        "statflow_checkpoint_last_epoch",
        "The epoch of the newest checkpoint this process completed; 0 before any.",
    )?;
    let rows = IntGaugeVec::new(
        Opts::new(
            "statflow_rollup_rows",
            "Rows of a metric (late rows included) in a worker's shard of the rollup, measured every 10 s.",
        ),
        &["metric", "worker"],
    )?;
    let row_bytes = IntGaugeVec::new(
        Opts::new(
            "statflow_rollup_bytes",
            "Size of those rows as a checkpoint encodes them (keys and measure state), measured every 10 s.",
        ),
        &["metric", "worker"],
    )?;
    let evicted = IntCounter::new(
        "statflow_evicted_rows_total",
        "Rollup rows retracted because they passed their metric's retention.",
    )?;
    let cache = IntCounterVec::new(
        Opts::new(
            "statflow_query_cache_hours_total",
            "Whole hours of queries a worker gave from its query cache (hit), read from its rows (miss), or dropped from the cache because events reached them (invalidated).",
        ),
        &["outcome", "worker"],
    )?;
    let info = IntGaugeVec::new(
        Opts::new(
            "statflow_process_info",
            "Always 1: this process's index, the processes in the cluster and the workers per process.",
        ),
        &["process", "processes", "workers"],
    )?;

    for (local, worker) in shared.workers.iter().enumerate() {
        // The global worker index, as timely and `/v1/status` number workers.
        let index = (shared.process * shared.threads + local).to_string();
        for (source, stats) in shared.plan.sources.iter().zip(&worker.sources) {
            let labels = [source.name.as_str(), index.as_str()];
            records
                .with_label_values(&labels)
                .inc_by(stats.records.load(Ordering::Relaxed));
            errors
                .with_label_values(&labels)
                .inc_by(stats.errors.load(Ordering::Relaxed));
            for (m, n) in stats.late_by_metric().iter().enumerate() {
                if let (Some(metric), true) = (shared.plan.metrics.get(m), *n > 0) {
                    late.with_label_values(&[
                        source.name.as_str(),
                        metric.name.as_str(),
                        index.as_str(),
                    ])
                    .inc_by(*n);
                }
            }
            if let Some(b) = stats.broker() {
                broker_up
                    .with_label_values(&labels)
                    .set(i64::from(b.state == BrokerState::Connected));
            }
            for p in stats.partitions() {
                if let Some(end) = p.end {
                    lag.with_label_values(&[source.name.as_str(), p.name.as_str()])
                        .set(i64::try_from(end.saturating_sub(p.position)).unwrap_or(i64::MAX));
                }
            }
        }
        epoch_open
            .with_label_values(&[index.as_str()])
            .set(clamp(worker.epoch.load(Ordering::Relaxed)));
        let c = &worker.query_cache;
        for (outcome, n) in [
            ("hit", &c.hits),
            ("miss", &c.misses),
            ("invalidated", &c.invalidated),
        ] {
            cache
                .with_label_values(&[outcome, index.as_str()])
                .inc_by(n.load(Ordering::Relaxed));
        }
    }
    for (j, source) in shared.plan.sources.iter().enumerate() {
        let done = shared
            .workers
            .iter()
            .all(|w| w.sources[j].finished.load(Ordering::Relaxed));
        finished
            .with_label_values(&[source.name.as_str()])
            .set(i64::from(done));
        if let Some(watermark) = shared.watermark(j) {
            delay
                .with_label_values(&[source.name.as_str()])
                .set(now_ms.saturating_sub(watermark) as f64 / 1000.0);
        }
    }
    completed.set(clamp(shared.complete_epoch()));
    let c = &shared.checkpoints;
    checkpoints.inc_by(c.completed.load(Ordering::Relaxed));
    checkpoint_bytes.inc_by(c.bytes.load(Ordering::Relaxed));
    checkpoint_shards.inc_by(c.shards.load(Ordering::Relaxed));
    checkpoint_seconds.inc_by(c.micros.load(Ordering::Relaxed) as f64 / 1e6);
    checkpoint_epoch.set(clamp(c.last_epoch.load(Ordering::Relaxed)));
    evicted.inc_by(shared.evicted_rows.load(Ordering::Relaxed));
    for (local, w) in shared.workers.iter().enumerate() {
        let worker = (shared.process * shared.threads + local).to_string();
        let footprint = w.footprint.lock().map(|f| f.clone()).unwrap_or_default();
        for (metric, f) in shared.plan.metrics.iter().zip(footprint) {
            let labels = [metric.name.as_str(), worker.as_str()];
            rows.with_label_values(&labels).set(f.rows as i64);
            row_bytes.with_label_values(&labels).set(f.bytes as i64);
        }
    }
    info.with_label_values(&[
        shared.process.to_string().as_str(),
        shared.processes.to_string().as_str(),
        shared.threads.to_string().as_str(),
    ])
    .set(1);

    registry.register(Box::new(records))?;
    registry.register(Box::new(errors))?;
    registry.register(Box::new(finished))?;
    registry.register(Box::new(delay))?;
    registry.register(Box::new(epoch_open))?;
    registry.register(Box::new(completed))?;
    registry.register(Box::new(info))?;
    registry.register(Box::new(late))?;
    registry.register(Box::new(lag))?;
    registry.register(Box::new(broker_up))?;
    registry.register(Box::new(checkpoints))?;
    registry.register(Box::new(checkpoint_bytes))?;
    registry.register(Box::new(checkpoint_shards))?;
    registry.register(Box::new(checkpoint_seconds))?;
    registry.register(Box::new(checkpoint_epoch))?;
    registry.register(Box::new(evicted))?;
    registry.register(Box::new(rows))?;
    registry.register(Box::new(row_bytes))?;
    registry.register(Box::new(cache))?;
    Ok(registry)
}

/// Epochs are `u64`; an integer gauge is `i64`, and no epoch gets near its end.
fn clamp(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_queries_and_responses_appear_in_the_text() {
        let metrics = Metrics::new();
        metrics.query("ok", Duration::from_millis(3));
        metrics.query("unknown_metric", Duration::from_millis(1));
        metrics.response(400);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&metrics.registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("statflow_queries_total{code=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("statflow_queries_total{code=\"unknown_metric\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("statflow_http_responses_total{status=\"400\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("statflow_query_duration_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE statflow_query_duration_seconds histogram"),
            "{text}"
        );
    }

    #[test]
    fn the_ok_series_exists_before_any_query() {
        let metrics = Metrics::new();
        let names: Vec<String> = metrics
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(
            names.contains(&"statflow_queries_total".to_string()),
            "{names:?}"
        );
    }
}
