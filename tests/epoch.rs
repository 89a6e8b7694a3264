//! `"epoch": N` in a query: a second query pinned to the first answer's
//! epoch reads that same epoch; a compacted epoch is refused with 409
//! `epoch_not_readable`, never read at another epoch; an epoch no worker
//! has opened and a malformed one are refused with 400. A file's last
//! epoch closes as soon as the file is read, not at the next tick.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use statflow::dataflow::query::{Cell, Query};
use statflow::runtime::engine::{Engine, EngineConfig};
use statflow::runtime::server::{self, AppState};

const TOPOLOGY: &str = r#"
source s = file("events.jsonl") { time = ts as epoch_millis }
metric hits from s {
  dimensions game_id
  window     tumbling 1m
  measures { n = count() }
}
"#;

fn start(dir: &std::path::Path) -> AppState {
    let mut file = std::fs::File::create(dir.join("events.jsonl")).unwrap();
    for i in 0..200i64 {
        let line = json!({"game_id": format!("g{}", i % 3), "ts": 1_724_112_000_000 + i * 1_000});
        writeln!(file, "{line}").unwrap();
    }
    drop(file);
    let compiled = statflow::dsl::compile(TOPOLOGY, Some(dir));
    let plan = compiled.plan.expect("the topology compiles");
    let config = EngineConfig {
        workers: 2,
        epoch_interval: Duration::from_millis(20),
        compaction_lag: Duration::from_millis(300),
        dead_letter_dir: dir.join("dead"),
        ..EngineConfig::default()
    };
    let engine = Engine::start(plan.clone(), config, statflow::runtime::source::readers()).unwrap();
    engine.wait_until_done().unwrap();
    AppState::open(Arc::new(engine), Arc::new(plan))
}

async fn post(state: &AppState, body: Json) -> (u16, Json) {
    let response = warp::test::request()
        .method("POST")
        .path("/v1/query")
        .header("content-type", "application/json")
        .body(body.to_string())
        .reply(&server::routes(state.clone()))
        .await;
    let json = serde_json::from_slice(response.body()).unwrap_or(Json::Null);
    (response.status().as_u16(), json)
}

fn query(extra: Json) -> Json {
    let mut q = json!({
        "metric": "hits",
        "time_window": {"from": "2024-08-20T00:00:00Z", "to": "2024-08-20T01:00:00Z"},
        "group_by": ["game_id"],
    });
    if let (Some(q), Some(extra)) = (q.as_object_mut(), extra.as_object()) {
        q.extend(extra.clone());
    }
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_epoch_is_read_exactly_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = start(dir.path());

    let (status, first) = post(&state, query(json!({}))).await;
    assert_eq!(status, 200, "{first}");
    let epoch = first["as_of"]["epoch"].as_u64().expect("an epoch");
    let (status, second) = post(&state, query(json!({ "epoch": epoch }))).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["as_of"]["epoch"], epoch, "{second}");
    assert_eq!(second["rows"], first["rows"]);

    // Well past the compaction lag, the epoch is gone: a clear refusal.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, gone) = post(&state, query(json!({ "epoch": epoch }))).await;
    assert_eq!(status, 409, "{gone}");
    assert_eq!(gone["error"]["code"], "epoch_not_readable", "{gone}");
    assert_eq!(gone["error"]["path"], "epoch", "{gone}");
    let message = gone["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(&format!("{epoch}")) && message.contains("without epoch"));

    let (status, future) = post(&state, query(json!({"epoch": epoch + 1_000_000_000}))).await;
    assert_eq!(status, 400, "{future}");
    assert_eq!(future["error"]["code"], "epoch_in_future", "{future}");

    let (status, bad) = post(&state, query(json!({"epoch": "latest"}))).await;
    assert_eq!(status, 400, "{bad}");
    let errors = bad["errors"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![bad["error"].clone()]);
    assert!(
        errors
            .iter()
            .any(|e| e["code"] == "bad_epoch" && e["path"] == "epoch"),
        "{bad}"
    );
}

/// With epochs an hour long, the file's records would wait up to an hour
/// for their epoch to close; once every worker's sources have finished,
/// the epoch closes at once and the answers are complete.
#[test]
fn a_finished_file_s_last_epoch_closes_without_waiting_for_the_tick() {
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::File::create(dir.path().join("events.jsonl")).unwrap();
    for i in 0..300i64 {
        let line = json!({"game_id": format!("g{}", i % 3), "ts": 1_724_112_000_000 + i * 1_000});
        writeln!(file, "{line}").unwrap();
    }
    drop(file);
    let plan = statflow::dsl::compile(TOPOLOGY, Some(dir.path()))
        .plan
        .expect("the topology compiles");
    let config = EngineConfig {
        workers: 2,
        epoch_interval: Duration::from_secs(3_600),
        dead_letter_dir: dir.path().join("dead"),
        ..EngineConfig::default()
    };
    let engine =
        Arc::new(Engine::start(plan, config, statflow::runtime::source::readers()).unwrap());
    let (done, waited) = std::sync::mpsc::channel();
    {
        let engine = Arc::clone(&engine);
        std::thread::spawn(move || {
            let _ = done.send(engine.wait_until_done().map_err(|e| e.to_string()));
        });
    }
    let outcome = waited.recv_timeout(Duration::from_secs(60));
    if outcome != Ok(Ok(())) {
        engine.shutdown();
    }
    assert_eq!(
        outcome,
        Ok(Ok(())),
        "the file's records were not all answerable within a minute of hour-long epochs"
    );
    let answer = engine
        .query_blocking(Query {
            metric: 0,
            from_ms: 1_724_112_000_000,
            to_ms: 1_724_112_000_000 + 3_600_000,
            filter: None,
            group_by: Vec::new(),
            granularity_ms: None,
            time_zone: None,
            measures: vec![0],
            order_by: Vec::new(),
            limit: None,
            late: false,
        })
        .unwrap();
    engine.shutdown();
    assert_eq!(answer.rows, vec![vec![Cell::Int(300)]]);
}
