//! Retention: rows of buckets older than a metric's retention leave the
//! rollup and the checkpoints; answers over the retained time are exact, and
//! answers reaching into evicted time say so instead of showing parts.

use std::io::Write;
use std::time::{Duration, Instant};

use statflow::dataflow::query::{Cell, GroupKey, Query};
use statflow::runtime::checkpoint::{self, CheckpointConfig};
use statflow::runtime::engine::{Engine, EngineConfig};

/// Two metrics alike but for their retention.
const TOPOLOGY: &str = r#"
source events = file("events.jsonl") {
  time = ts as epoch_millis
  late = 5m
}

metric short from events {
  dimensions game
  window     tumbling 1h
  retain     1d
  measures { n = count()  total = sum(amount)  players = distinct(user) }
}

metric long from events {
  dimensions game
  window     tumbling 1h
  retain     30d
  measures { n = count()  total = sum(amount)  players = distinct(user) }
}
"#;

/// 2024-08-20T00:00:00Z
const T0: i64 = 1_724_112_000_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn query(metric: usize, from_ms: i64, to_ms: i64) -> Query {
    Query {
        metric,
        from_ms,
        to_ms,
        filter: None,
        group_by: vec![GroupKey::Time, GroupKey::Dimension(0)],
        granularity_ms: None,
        time_zone: None,
        measures: vec![0, 1, 2],
        order_by: Vec::new(),
        limit: None,
        late: false,
    }
}

#[test]
fn old_buckets_leave_the_rollup_and_the_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("events.jsonl")).unwrap();
    // Ten days, one event a minute, in order.
    let minutes = 10 * 24 * 60;
    for i in 0..minutes {
        writeln!(
            f,
            r#"{{"ts": {}, "game": "g{}", "user": "u{}", "amount": {}}}"#,
            T0 + i * 60_000,
            i % 4,
            i % 97,
            i % 13
        )
        .unwrap();
    }
    drop(f);
    let plan = statflow::dsl::compile(TOPOLOGY, Some(dir.path()))
        .plan
        .unwrap();
    let config = EngineConfig {
        workers: 2,
        epoch_interval: Duration::from_millis(10),
        dead_letter_dir: dir.path().join("dead"),
        checkpoints: Some(CheckpointConfig::under(
            dir.path(),
            Duration::from_millis(50),
        )),
        retention_period: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let engine = Engine::start(plan.clone(), config, statflow::runtime::source::readers()).unwrap();
    engine.wait_until_done().unwrap();
    let end = T0 + minutes * 60_000;
    let watermark = end - 60_000 - 5 * 60_000;
    let retained_from = watermark - DAY;
    // Evicted: panes wholly before watermark − retain − retain/10.
    let cut = retained_from - DAY / 10;
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine
        .shared()
        .evicted_rows
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(Instant::now() < deadline, "rows are evicted");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Over the retained time, both metrics answer alike.
    let from = retained_from.div_euclid(HOUR) * HOUR + HOUR;
    let short = engine.query_blocking(query(0, from, end)).unwrap();
    let long = engine.query_blocking(query(1, from, end)).unwrap();
    assert_eq!(short.rows, long.rows);
    assert_eq!(short.rows.len(), ((end - from) / HOUR * 4) as usize);
    assert!(short.as_of.notes.is_empty(), "{:?}", short.as_of.notes);
    assert_eq!(short.as_of.retained_from_ms, Some(retained_from));

    // Over all ten days, the short metric says what it no longer has.
    let all = engine.query_blocking(query(0, T0, end)).unwrap();
    assert_eq!(all.as_of.notes.len(), 1, "{:?}", all.as_of.notes);
    assert!(
        all.as_of.notes[0].contains("retention (1d)"),
        "{:?}",
        all.as_of.notes
    );
    assert!(all
        .rows
        .iter()
        .all(|r| matches!(r[0], Cell::Time(t) if t >= retained_from)));
    let long_all = engine.query_blocking(query(1, T0, end)).unwrap();
    assert_eq!(long_all.rows.len(), (minutes / 60 * 4) as usize);

    // Soon each worker has forgotten what it noted of the hours retention
    // took (see `Touches::forget_before`): a query over all ten days asks
    // its cache about the retained hours only, twice at most (a read that
    // meets a retraction starts again), not about 240.
    let asked = || -> u64 {
        engine
            .shared()
            .workers
            .iter()
            .map(|w| {
                let c = &w.query_cache;
                c.hits.load(std::sync::atomic::Ordering::Relaxed)
                    + c.misses.load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    };
    let kept_hours = (end - cut.div_euclid(HOUR) * HOUR) / HOUR + 1;
    loop {
        let before = asked();
        engine.query_blocking(query(0, T0, end)).unwrap();
        let asked = asked() - before;
        if asked <= (2 * 2 * kept_hours) as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "forgotten hours are still looked up in the cache: {asked} lookups"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Soon a complete checkpoint holds no evicted rows of the short metric
    // (those written before the retractions completed may still hold some).
    let checkpoints = dir.path().join("checkpoints");
    let bucket_rows = |shards: &[checkpoint::Shard], metric: u32| -> Vec<i64> {
        shards
            .iter()
            .flat_map(|s| s.rows.iter())
            .filter(|(k, _)| k.metric == metric)
            .map(|(k, _)| k.bucket)
            .collect()
    };
    let shards = loop {
        let newest = checkpoint::list(&checkpoints)
            .unwrap()
            .into_iter()
            .find(|(_, complete)| *complete);
        if let Some((epoch, _)) = newest {
            let folder = checkpoint::folder(&checkpoints, epoch);
            let shards: Vec<_> = (0..2)
                .map(|w| checkpoint::read_shard(&folder.join(checkpoint::shard_file(w))).unwrap())
                .collect();
            if bucket_rows(&shards, 0).iter().all(|b| b + HOUR > cut) {
                break shards;
            }
        }
        assert!(
            Instant::now() < deadline,
            "a checkpoint without evicted rows completes"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let rows = |metric: u32| bucket_rows(&shards, metric);
    assert!(
        rows(0).iter().all(|b| b + HOUR > cut),
        "short keeps no pane before the cut"
    );
    assert!(
        rows(0).len() < rows(1).len() / 4,
        "{} vs {}",
        rows(0).len(),
        rows(1).len()
    );
    assert_eq!(
        rows(1).len(),
        (minutes / 60 * 4) as usize,
        "long keeps everything"
    );
    engine.shutdown();
}
