//! The default "statflow health" dashboard (issue 8): a topology with a
//! telemetry metric gets it at start, every signed-in user finds it through
//! the dashboards API, and each of its panels' queries, sent to `/v1/query`
//! as the app sends them, answers with data; a topology without telemetry
//! gets none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};
use statflow::runtime::engine::{Engine, EngineConfig};
use statflow::runtime::server::{self, AppState, AuthMode};
use statflow::runtime::store::{Role, Store};

/// The example topology's `statflow` metric, beside a generator.
const WITH_TELEMETRY: &str = r#"
source events = generator(rate = 2000, seed = 5)
source self = telemetry()

metric rewards from events {
  where    kind = "reward"
  window   tumbling 1m
  measures { n = count() }
}

metric statflow from self {
  dimensions kind, process, worker, source, metric
  window     tumbling 10s
  retain     2d
  measures {
    events      = count()
    records     = sum(records)
    errors      = sum(errors)
    late        = sum(late)
    lag         = max(lag)
    epoch_delay = max(epoch_delay_ms)
    query_p50   = quantile(query_ms, 0.5)
    query_p99   = quantile(query_ms, 0.99)
    query_avg   = avg(query_ms)
  }
}
"#;

const WITHOUT_TELEMETRY: &str = r#"
source events = generator(rate = 2000, seed = 5)

metric rewards from events {
  where    kind = "reward"
  window   tumbling 1m
  measures { n = count() }
}
"#;

/// How long the panels may take to have data (telemetry arrives every second).
const PATIENCE: Duration = Duration::from_secs(60);

/// A server on `topology` with the admin `root` and the viewer `vic`, over
/// the store in `state_dir`; `vic`'s token.
fn serve(topology: &str, state_dir: &std::path::Path) -> (AppState, Arc<Engine>, String) {
    let compiled = statflow::dsl::compile(topology, None);
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    let plan = compiled.plan.unwrap();
    let config = EngineConfig {
        workers: 2,
        epoch_interval: Duration::from_millis(50),
        dead_letter_dir: state_dir.join("dead"),
        ..EngineConfig::default()
    };
    let engine = Arc::new(
        Engine::start(plan.clone(), config, statflow::runtime::source::readers()).unwrap(),
    );
    let store = Arc::new(Store::open_dir(state_dir).unwrap());
    // As `statflow run` does: the first admin exists before the state is made.
    if store.user("root").unwrap().is_none() {
        store.add_user("root", Role::Admin).unwrap();
    }
    let token = match store.user("vic").unwrap() {
        Some(_) => store.rotate_token("vic").unwrap(),
        None => store.add_user("vic", Role::Viewer).unwrap().1,
    };
    let state = AppState::with_store(
        Arc::clone(&engine),
        Arc::new(plan),
        store,
        AuthMode::Required,
    )
    .unwrap();
    (state, engine, token)
}

async fn send(
    state: &AppState,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Json>,
) -> (u16, Json) {
    let mut request = warp::test::request()
        .method(method)
        .path(path)
        .header("authorization", format!("Bearer {token}"));
    if let Some(b) = body {
        request = request
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let response = request.reply(&server::routes(state.clone())).await;
    let json = serde_json::from_slice(response.body()).unwrap_or(Json::Null);
    (response.status().as_u16(), json)
}

/// The dashboards called "statflow health" that `token`'s user can see.
async fn health_dashboards(state: &AppState, token: &str) -> Vec<Json> {
    let (status, list) = send(state, token, "GET", "/v1/dashboards", None).await;
    assert_eq!(status, 200, "{list}");
    list["dashboards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["title"] == "statflow health")
        .cloned()
        .collect()
}

/// The `/v1/query` body for a time-series panel of the app's spec, written
/// out here as the app's `panelQuery` writes it (not with statflow's copy).
fn panel_body(panel: &Json, spec: &Json) -> Json {
    let q = &panel["query"];
    assert_eq!(panel["type"], "lines", "{panel}");
    let mut group_by = vec![json!("__time")];
    group_by.extend(q["group_by"].as_array().unwrap().iter().cloned());
    let mut body = json!({
        "metric": q["metric"],
        "time_window": spec["range"],
        "time_zone": spec["time_zone"],
        "measures": q["measures"],
        "group_by": group_by,
        "granularity": q["granularity"],
    });
    let filters: Vec<Json> = q["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["op"], "in", "{f}");
            json!({ f["dimension"].as_str().unwrap(): f["values"] })
        })
        .collect();
    match filters.len() {
        0 => {}
        1 => body["filters"] = filters[0].clone(),
        _ => body["filters"] = json!({ "and": filters }),
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telemetry_metric_gets_a_health_dashboard_whose_panels_have_data() {
    let dir = tempfile::tempdir().unwrap();
    let (state, engine, vic) = serve(WITH_TELEMETRY, dir.path());

    let found = health_dashboards(&state, &vic).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(d["builtin"], "statflow-health", "{d}");
    assert_eq!(d["owner"], "root", "{d}");
    assert_eq!(
        d["access"], "view",
        "a viewer may open it, not change it: {d}"
    );
    assert_eq!(d["sharing"]["everyone"], true, "{d}");
    let spec = &d["spec"];
    let panels = spec["panels"].as_array().unwrap();
    let ids: Vec<&str> = panels.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "records",
            "lag",
            "epoch-delay",
            "query-latency",
            "errors",
            "late",
            "queries"
        ],
        "every panel the metric's measures support"
    );
    // The viewer cannot change it; it was made once, not once per start.
    let (status, _) = send(
        &state,
        &vic,
        "PUT",
        &format!("/v1/dashboards/{}", d["id"].as_str().unwrap()),
        Some(&json!({"title": "mine now"})),
    )
    .await;
    assert_eq!(status, 403);

    // Every panel's query answers with rows, each with a value for every
    // measure. Telemetry comes every second, and the query latency panel
    // has data once queries (these ones) have been answered.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut waiting = Vec::new();
        for panel in panels {
            let body = panel_body(panel, spec);
            let (status, answer) = send(&state, &vic, "POST", "/v1/query", Some(&body)).await;
            assert_eq!(status, 200, "panel {}: {body} → {answer}", panel["id"]);
            let rows = answer["rows"].as_array().cloned().unwrap_or_default();
            let measures = panel["query"]["measures"].as_array().unwrap();
            let with_data = rows
                .iter()
                .any(|r| measures.iter().all(|m| r[m.as_str().unwrap()].is_number()));
            if !with_data {
                waiting.push(format!("{}: {answer}", panel["id"]));
            }
        }
        if waiting.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "panels without data after {PATIENCE:?}: {waiting:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A generator has no brokers: its status has no `broker` entry.
    let (_, status) = send(&state, &vic, "GET", "/v1/status", None).await;
    assert!(status["sources"][0]["broker"].is_null(), "{status}");

    // Starting again on the same store and topology keeps the one dashboard.
    let id = d["id"].clone();
    drop(state);
    engine.shutdown();
    let (state, engine, vic) = serve(WITH_TELEMETRY, dir.path());
    let again = health_dashboards(&state, &vic).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0]["id"], id);
    engine.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topology_without_telemetry_gets_no_health_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let (state, engine, vic) = serve(WITHOUT_TELEMETRY, dir.path());
    let (status, list) = send(&state, &vic, "GET", "/v1/dashboards", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["dashboards"], json!([]), "{list}");
    engine.shutdown();
}
