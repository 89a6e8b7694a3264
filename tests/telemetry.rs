//! statflow watching itself: a `telemetry()` source feeds a `statflow`
//! metric with the engine's own ingest counts, epoch delay and query
//! latency, queryable through the same query path as any metric.

use std::time::{Duration, Instant};

use statflow::dataflow::query::{Cell, Filter, GroupKey, Query};
use statflow::dataflow::value::Value;
use statflow::runtime::engine::{Engine, EngineConfig};

const TOPOLOGY: &str = r#"
source events = generator(rate = 2000, seed = 3)
source self = telemetry()

metric rewards from events {
  where    kind = "reward"
  window   tumbling 1m
  measures { n = count() }
}

metric statflow from self {
  dimensions kind, worker, source, metric
  window     tumbling 10s
  measures {
    events      = count()
    records     = sum(records)
    epoch_delay = max(epoch_delay_ms)
    query_avg   = avg(query_ms)
  }
}
"#;

fn int(cell: &Cell) -> i64 {
    match cell {
        Cell::Int(n) => *n,
        Cell::Float(x) => *x as i64,
        _ => 0,
    }
}

#[test]
fn the_statflow_metric_counts_what_the_engine_did() {
    let compiled = statflow::dsl::compile(TOPOLOGY, None);
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    let plan = compiled.plan.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        workers: 2,
        epoch_interval: Duration::from_millis(50),
        dead_letter_dir: dir.path().join("dead"),
        ..EngineConfig::default()
    };
    let engine = Engine::start(plan, config, statflow::runtime::source::readers()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let now = statflow::dataflow::ingest::wall_ms();
    let by_kind = |kind: &str| Query {
        metric: 1,
        from_ms: now - 3_600_000,
        to_ms: now + 3_600_000,
        filter: Some(Filter::Eq(0, Value::Str(kind.into()))),
        group_by: vec![GroupKey::Dimension(1)],
        granularity_ms: None,
        time_zone: None,
        measures: vec![0, 1, 2, 3],
        order_by: Vec::new(),
        limit: None,
        late: false,
    };
    // A few queries through the path HTTP uses, so they are timed.
    let rewards = Query {
        metric: 0,
        filter: None,
        group_by: Vec::new(),
        measures: vec![0],
        ..by_kind("")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for _ in 0..3 {
            runtime
                .block_on(engine.query_at(rewards.clone(), None))
                .unwrap();
        }
        let ingest = engine.query_blocking(by_kind("ingest")).unwrap();
        let epoch = engine.query_blocking(by_kind("epoch")).unwrap();
        let queries = engine.query_blocking(by_kind("query")).unwrap();
        // Every worker reports its records; their sum follows the source's counter.
        let records: i64 = ingest.rows.iter().map(|r| int(&r[2])).sum();
        let workers_reporting = ingest.rows.len();
        let queries_seen: i64 = queries.rows.iter().map(|r| int(&r[1])).sum();
        if workers_reporting == 2 && records > 0 && !epoch.rows.is_empty() && queries_seen >= 3 {
            let read = engine.shared().records_read(0);
            assert!(records as u64 <= read, "telemetry {records} ≤ read {read}");
            assert!(queries
                .rows
                .iter()
                .all(|r| matches!(r[4], Cell::Float(ms) if ms >= 0.0)));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "telemetry arrives: ingest {:?}, epoch {:?}, queries {:?}",
            ingest.rows,
            epoch.rows,
            queries.rows
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    engine.shutdown();
}
