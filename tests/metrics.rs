//! `GET /metrics` through `statflow::runtime::server::routes`: the body is
//! read with a Prometheus text parser, the source counters equal what the
//! file holds, and the query and response counters move as queries flow.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;
use statflow::dsl::Plan;
use statflow::runtime::engine::{Engine, EngineConfig};
use statflow::runtime::server::{self, AppState};

const TOPOLOGY: &str = r#"
source s = file("events.jsonl") { time = ts as epoch_millis }

metric plays from s {
  dimensions game_id
  window     tumbling 1m
  measures { n = count() }
}
"#;

/// 2024-08-20T00:00:00Z.
const T0: i64 = 1_724_112_000_000;
/// Good events in the file.
const EVENTS: usize = 120;
/// A malformed line follows every this many good ones.
const EVERY: usize = 20;

/// An engine that has read the whole file, and how many lines it holds.
fn start(workers: usize) -> (AppState, usize, usize, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("events.jsonl")).unwrap();
    let mut lines = 0;
    let mut malformed = 0;
    for i in 0..EVENTS {
        let line = json!({"game_id": format!("g{}", i % 3), "ts": T0 + i as i64 * 1_000});
        writeln!(file, "{line}").unwrap();
        lines += 1;
        if i % EVERY == EVERY - 1 {
            // No time: the source cannot place it, so it is an error.
            writeln!(file, r#"{{"game_id": "g1"}}"#).unwrap();
            lines += 1;
            malformed += 1;
        }
    }
    drop(file);
    let compiled = statflow::dsl::compile(TOPOLOGY, Some(dir.path()));
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    let plan: Plan = compiled.plan.unwrap();
    let config = EngineConfig {
        workers,
        epoch_interval: std::time::Duration::from_millis(20),
        epoch_records: 50,
        batch: 25,
        dead_letter_dir: dir.path().join("dead"),
        ..EngineConfig::default()
    };
    let engine = Engine::start(plan.clone(), config, statflow::runtime::source::readers()).unwrap();
    engine.wait_until_done().unwrap();
    // No store and no authentication: these tests are about the counters.
    let state = AppState::open(Arc::new(engine), Arc::new(plan));
    (state, lines, malformed, dir)
}

/// One scrape, parsed.
struct Metrics(Vec<Sample>);

impl Metrics {
    /// Every sample named `name` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.0.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The sum of the matching samples; 0 when there are none, as for a
    /// labelled counter that has not been touched yet.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name} is not a number: {other:?}"),
            })
            .sum()
    }

    /// The type of the samples named `name`, as the `# TYPE` line says.
    fn kind(&self, name: &str) -> &'static str {
        match self.matching(name, &[]).next().map(|s| &s.value) {
            Some(Value::Counter(_)) => "counter",
            Some(Value::Gauge(_)) => "gauge",
            Some(Value::Histogram(_)) => "histogram",
            Some(Value::Summary(_)) => "summary",
            Some(Value::Untyped(_)) => "untyped",
            None => panic!("no sample named {name}"),
        }
    }
}

async fn scrape<F>(routes: &F) -> Metrics
where
    F: warp::Filter + 'static,
    F::Extract: warp::Reply + Send,
{
    let response = warp::test::request()
        .method("GET")
        .path("/metrics")
        .reply(routes)
        .await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = String::from_utf8(response.body().to_vec()).unwrap();
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    Metrics(scrape.samples)
}

async fn post<F>(routes: &F, body: &str) -> u16
where
    F: warp::Filter + 'static,
    F::Extract: warp::Reply + Send,
{
    warp::test::request()
        .method("POST")
        .path("/v1/query")
        .header("content-type", "application/json")
        .body(body)
        .reply(routes)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn source_counters_equal_the_file_and_engine_gauges_are_there() {
    let (state, lines, malformed, _dir) = start(2);
    let routes = server::routes(state.clone());
    let m = scrape(&routes).await;

    assert_eq!(m.kind("statflow_source_records_total"), "counter");
    assert_eq!(m.kind("statflow_source_errors_total"), "counter");
    assert_eq!(
        m.sum("statflow_source_records_total", &[("source", "s")]),
        lines as f64
    );
    assert_eq!(
        m.sum("statflow_source_errors_total", &[("source", "s")]),
        malformed as f64
    );
    let workers: BTreeSet<&str> = m
        .matching("statflow_source_records_total", &[])
        .map(|s| s.labels.get("worker").unwrap())
        .collect();
    assert_eq!(workers, BTreeSet::from(["0", "1"]));

    assert_eq!(m.sum("statflow_source_finished", &[("source", "s")]), 1.0);
    // The events are from 2024, so the watermark is far behind the clock.
    let delay = m.sum("statflow_watermark_delay_seconds", &[("source", "s")]);
    assert!(delay > 86_400.0, "{delay}");
    assert_eq!(m.kind("statflow_epochs_completed"), "gauge");
    // Checkpointing and retention are reported even when they did nothing yet.
    for counter in [
        "statflow_checkpoints_completed_total",
        "statflow_checkpoint_bytes_total",
        "statflow_checkpoint_shards_total",
        "statflow_checkpoint_write_seconds_total",
        "statflow_evicted_rows_total",
    ] {
        assert_eq!(m.kind(counter), "counter", "{counter}");
    }
    assert_eq!(m.kind("statflow_checkpoint_last_epoch"), "gauge");
    // File slices know their ends: every slice read to its end has no lag.
    assert!(m.matching("statflow_partition_lag", &[]).count() > 0);
    assert_eq!(m.sum("statflow_partition_lag", &[]), 0.0);
    assert!(m.sum("statflow_epochs_completed", &[]) >= 1.0);
    assert_eq!(m.matching("statflow_epoch_open", &[]).count(), 2);
    assert_eq!(
        m.sum(
            "statflow_process_info",
            &[("process", "0"), ("processes", "1"), ("workers", "2")]
        ),
        1.0
    );
}

#[tokio::test]
async fn rollup_rows_and_bytes_per_metric_are_measured() {
    let (state, _, _, _dir) = start(2);
    let routes = server::routes(state);
    // 120 events one second apart over 3 games: 2 minutes × 3 games.
    let rows = (EVENTS / 60 * 3) as f64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let m = scrape(&routes).await;
        let measured = m.sum("statflow_rollup_rows", &[("metric", "plays")]);
        if measured > 0.0 {
            assert_eq!(m.kind("statflow_rollup_rows"), "gauge");
            assert_eq!(measured, rows);
            assert_eq!(
                m.matching("statflow_rollup_rows", &[]).count(),
                2,
                "per worker"
            );
            let bytes = m.sum("statflow_rollup_bytes", &[("metric", "plays")]);
            // A key (metric, bucket, one short dimension) and a count: 18
            // bytes a row as checkpoint format 3 encodes them.
            assert!(bytes > 10.0 * rows && bytes < 200.0 * rows, "{bytes}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rows are measured");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn query_and_response_counters_move_as_queries_flow() {
    let (state, _, _, _dir) = start(1);
    let routes = server::routes(state);
    let before = scrape(&routes).await;
    assert_eq!(before.kind("statflow_queries_total"), "counter");
    assert_eq!(before.sum("statflow_queries_total", &[("code", "ok")]), 0.0);

    let good = json!({
        "metric": "plays",
        "time_window": {"kind": "absolute", "from": "2024-08-20T00:00:00Z", "to": "2024-08-20T01:00:00Z"},
        "group_by_keys": ["game_id"],
    })
    .to_string();
    let unknown = json!({
        "metric": "nope",
        "time_window": {"kind": "absolute", "from": "2024-08-20T00:00:00Z", "to": "2024-08-20T01:00:00Z"},
    })
    .to_string();
    for _ in 0..3 {
        assert_eq!(post(&routes, &good).await, 200);
    }
    for _ in 0..2 {
        assert_eq!(post(&routes, &unknown).await, 400);
    }
    assert_eq!(post(&routes, r#"{"metric": "plays","#).await, 400);
    let missing = warp::test::request()
        .method("GET")
        .path("/v2/nothing")
        .reply(&routes)
        .await;
    assert_eq!(missing.status(), 404);

    let after = scrape(&routes).await;
    let moved =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    assert_eq!(moved("statflow_queries_total", &[("code", "ok")]), 3.0);
    assert_eq!(
        moved("statflow_queries_total", &[("code", "unknown_metric")]),
        2.0
    );
    assert_eq!(
        moved("statflow_queries_total", &[("code", "malformed_body")]),
        1.0
    );
    assert_eq!(moved("statflow_queries_total", &[]), 6.0);
    assert_eq!(after.kind("statflow_query_duration_seconds"), "histogram");
    assert_eq!(moved("statflow_query_duration_seconds_count", &[]), 6.0);
    assert_eq!(
        moved("statflow_http_responses_total", &[("status", "200")]),
        3.0 + 1.0
    );
    assert_eq!(
        moved("statflow_http_responses_total", &[("status", "400")]),
        3.0
    );
    assert_eq!(
        moved("statflow_http_responses_total", &[("status", "404")]),
        1.0
    );
    // The good query is one whole hour: its one worker read it from its
    // rows at least once, and gave or read it every time.
    assert_eq!(after.kind("statflow_query_cache_hours_total"), "counter");
    let hours = |outcome| moved("statflow_query_cache_hours_total", &[("outcome", outcome)]);
    assert!(hours("miss") >= 1.0, "{}", hours("miss"));
    assert_eq!(hours("hit") + hours("miss"), 3.0);
    assert!(hours("invalidated") <= hours("miss"));
}
