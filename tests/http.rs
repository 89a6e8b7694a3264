//! The HTTP endpoint end to end: requests go through
//! `statflow::runtime::server::routes` (with `warp::test`, no socket) to an
//! engine that has read a file of events, and the answers are checked
//! against a recomputation from those same events. One test also serves on
//! a real socket with `server::run` and speaks HTTP/1.1 to it by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value as Json};
use statflow::dsl::Plan;
use statflow::runtime::engine::{Engine, EngineConfig};
use statflow::runtime::query::MAX_BODY_BYTES;
use statflow::runtime::server::{self, AppState};

/// The issue's topology, plus a session-window metric.
const TOPOLOGY: &str = r#"
source s = file("events.jsonl") { time = ts as epoch_millis }

metric reward_stats from s {
  dimensions game_id, seed_id, reward_type
  window     tumbling 1m
  measures {
    rewards = count()
    amount  = sum(amount)
    players = distinct(user_id)
  }
}

metric sessions from s {
  dimensions game_id
  window     session 30m by user_id
  measures { n = count() }
}
"#;

/// The query of the issue, verbatim.
const ISSUE_EDN: &str = r#"{:metric :reward-stats :time-window {:kind :absolute :from "2024-08-20T09:00:00+08:00" :to "2024-08-20T10:00:00+08:00"} :filters {:seed-id "fuc|tax-up" :reward-type #{:reward.type/task}} :group-by-keys [:reward-type :__time]}"#;

/// The same query written as JSON.
const ISSUE_JSON: &str = r#"{"metric": "reward_stats",
  "time_window": {"kind": "absolute", "from": "2024-08-20T09:00:00+08:00", "to": "2024-08-20T10:00:00+08:00"},
  "filters": {"seed_id": "fuc|tax-up", "reward_type": ["task"]},
  "group_by_keys": ["reward_type", "__time"]}"#;

/// 2024-08-20T00:00:00Z.
const T0: i64 = 1_724_112_000_000;
/// 2024-08-20T09:00:00+08:00, the start of the issue's window.
const FROM: i64 = T0 + 3_600_000;
/// 2024-08-20T10:00:00+08:00, its (exclusive) end.
const TO: i64 = T0 + 2 * 3_600_000;
/// Events, one every 12 seconds from 00:30Z to 02:30Z.
const EVENTS: usize = 600;

/// One good event, as the recomputation sees it.
#[derive(Debug, Clone)]
struct Event {
    ts: i64,
    seed_id: &'static str,
    reward_type: &'static str,
    user_id: String,
    game_id: String,
    amount: f64,
}

/// The events, and the lines of the file: the events in time order with a
/// malformed line after every 50th.
fn events() -> (Vec<Event>, Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(20_240_820);
    // "taxup" and "fuc2" must not match the anchored pattern "fuc|tax-up".
    let seeds = ["fuc", "tax-up", "spin", "taxup", "fuc2"];
    let types = ["task", "bonus", "daily"];
    let mut events = Vec::new();
    let mut lines = Vec::new();
    for i in 0..EVENTS {
        // Every fifth event falls on its 12-second mark exactly, so some
        // land on the window's bounds (i = 150 at 01:00Z, i = 450 at 02:00Z).
        let nominal = T0 + 1_800_000 + i as i64 * 12_000;
        let ts = if i % 5 == 0 {
            nominal
        } else {
            nominal + rng.random_range(0..12_000)
        };
        let e = Event {
            ts,
            seed_id: seeds[rng.random_range(0..seeds.len())],
            reward_type: types[rng.random_range(0..types.len())],
            user_id: format!("u{}", rng.random_range(0..40)),
            amount: f64::from(rng.random_range(0..10_000)) / 100.0,
            game_id: format!("g{}", rng.random_range(1..=3)),
        };
        lines.push(
            json!({
                "game_id": e.game_id,
                "seed_id": e.seed_id,
                "reward_type": e.reward_type,
                "user_id": e.user_id,
                "amount": e.amount,
                "ts": e.ts,
            })
            .to_string(),
        );
        if i % 50 == 49 {
            lines.push(malformed(i / 50, ts));
        }
        events.push(e);
    }
    (events, lines)
}

/// A line the source cannot count. The ones with a time fall inside the
/// issue's window and would match its filter if they were counted.
fn malformed(n: usize, ts: i64) -> String {
    match n % 4 {
        0 => r#"{"game_id": "g1", "seed_id": "fuc", "reward_type": "task", "ts": "#.to_string(),
        1 => r#"{"game_id": "g1", "seed_id": "fuc", "reward_type": "task", "user_id": "u1", "amount": 5}"#
            .to_string(),
        2 => json!({"game_id": "g1", "seed_id": "fuc", "reward_type": "task", "user_id": "u1", "amount": "lots", "ts": ts})
            .to_string(),
        _ => json!({"game_id": "g1", "seed_id": "tax-up", "reward_type": "task", "user_id": "u1", "amount": 1, "ts": "yesterday"})
            .to_string(),
    }
}

/// An engine that has read the whole file, and the state the routes serve.
struct Fixture {
    state: AppState,
    events: Vec<Event>,
    lines: usize,
    malformed: usize,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn start(workers: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (events, lines) = events();
        let mut file = std::fs::File::create(dir.path().join("events.jsonl")).unwrap();
        for line in &lines {
            writeln!(file, "{line}").unwrap();
        }
        drop(file);
        let compiled = statflow::dsl::compile(TOPOLOGY, Some(dir.path()));
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        let plan: Plan = compiled.plan.unwrap();
        let config = EngineConfig {
            workers,
            epoch_interval: std::time::Duration::from_millis(20),
            epoch_records: 100,
            batch: 50,
            dead_letter_dir: dir.path().join("dead"),
            ..EngineConfig::default()
        };
        let engine =
            Engine::start(plan.clone(), config, statflow::runtime::source::readers()).unwrap();
        engine.wait_until_done().unwrap();
        Fixture {
            // No store and no authentication: tests/auth.rs covers those.
            state: AppState::open(Arc::new(engine), Arc::new(plan)),
            malformed: lines.len() - events.len(),
            lines: lines.len(),
            events,
            _dir: dir,
        }
    }
}

/// What a test reads of a response.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Json {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

async fn send(state: &AppState, request: warp::test::RequestBuilder) -> Reply {
    let response = request.reply(&server::routes(state.clone())).await;
    Reply {
        status: response.status().as_u16(),
        content_type: response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: response.body().to_vec(),
    }
}

async fn get(state: &AppState, path: &str) -> Reply {
    send(state, warp::test::request().method("GET").path(path)).await
}

/// POST /v1/query with these headers.
async fn query(
    state: &AppState,
    body: impl AsRef<[u8]>,
    content_type: Option<&str>,
    accept: Option<&str>,
) -> Reply {
    let mut request = warp::test::request().method("POST").path("/v1/query");
    if let Some(t) = content_type {
        request = request.header("content-type", t);
    }
    if let Some(a) = accept {
        request = request.header("accept", a);
    }
    send(state, request.body(body)).await
}

/// POST a JSON query and expect 200 with a JSON answer.
async fn answer(state: &AppState, body: &Json) -> Json {
    let reply = query(state, body.to_string(), Some("application/json"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// Minute `ms` of 2024-08-20 as the server prints it in UTC.
fn utc(ms: i64) -> String {
    let minutes = (ms - T0) / 60_000;
    assert!((0..24 * 60).contains(&minutes), "{ms} is not on 2024-08-20");
    format!("2024-08-20T{:02}:{:02}:00Z", minutes / 60, minutes % 60)
}

/// An instant of 2024-08-20 in RFC 3339, UTC, with as many digits of
/// fraction as it needs.
fn rfc3339(ms: i64) -> String {
    let minute = utc(ms.div_euclid(60_000) * 60_000);
    let in_minute = ms.rem_euclid(60_000);
    let fraction = format!("{:03}", in_minute % 1000);
    let fraction = fraction.trim_end_matches('0');
    let dot = if fraction.is_empty() { "" } else { "." };
    format!("{}:{:02}{dot}{fraction}Z", &minute[..16], in_minute / 1000)
}

/// One row of an answer: count, sum and distinct users of some events.
#[derive(Debug, Default)]
struct Totals {
    rewards: i64,
    amount: f64,
    players: BTreeSet<String>,
}

impl Totals {
    fn add(&mut self, e: &Event) {
        self.rewards += 1;
        self.amount += e.amount;
        self.players.insert(e.user_id.clone());
    }

    /// Checks a row's measures (distinct counts are exact under 128 values).
    fn check(&self, row: &Json, label: &str) {
        assert_eq!(
            row["rewards"],
            json!(self.rewards),
            "{label}: rewards of {row}"
        );
        let amount = row["amount"].as_f64().unwrap_or(f64::NAN);
        assert!(
            (amount - self.amount).abs() <= 1e-6 * (1.0 + self.amount.abs()),
            "{label}: amount {amount}, expected {}",
            self.amount
        );
        assert_eq!(
            row["players"],
            json!(self.players.len()),
            "{label}: players of {row}"
        );
    }
}

/// The issue's answer, recomputed: per UTC minute of [01:00Z, 02:00Z), the
/// events whose seed is `fuc` or `tax-up` and whose reward type is `task`.
fn issue_truth(events: &[Event]) -> BTreeMap<i64, Totals> {
    let mut minutes: BTreeMap<i64, Totals> = BTreeMap::new();
    for e in events {
        if (FROM..TO).contains(&e.ts)
            && ["fuc", "tax-up"].contains(&e.seed_id)
            && e.reward_type == "task"
        {
            minutes
                .entry(e.ts.div_euclid(60_000) * 60_000)
                .or_default()
                .add(e);
        }
    }
    minutes
}

/// The issue's filter and window over all its minutes together.
fn issue_total(events: &[Event]) -> Totals {
    let mut total = Totals::default();
    for t in issue_truth(events).values() {
        total.rewards += t.rewards;
        total.amount += t.amount;
        total.players.extend(t.players.iter().cloned());
    }
    total
}

/// Checks a JSON answer to the issue's query against the recomputation.
fn check_issue_answer(answer: &Json, events: &[Event], label: &str) {
    let truth = issue_truth(events);
    assert!(truth.len() > 20, "the events exercise too few minutes");
    assert_eq!(answer["metric"], "reward_stats", "{label}");
    assert_eq!(
        answer["columns"],
        json!(["reward_type", "__time", "rewards", "amount", "players"]),
        "{label}"
    );
    assert!(
        answer["as_of"]["epoch"].is_u64(),
        "{label}: {}",
        answer["as_of"]
    );
    let rows = answer["rows"].as_array().expect("rows");
    assert_eq!(
        rows.len(),
        truth.len(),
        "{label}: one row per minute with events"
    );
    // Without `order_by`, rows come in group-key order: here, by time.
    for (row, (minute, totals)) in rows.iter().zip(&truth) {
        assert_eq!(row["reward_type"], "task", "{label}");
        assert_eq!(row["__time"], json!(utc(*minute)), "{label}");
        totals.check(row, &format!("{label}, {}", utc(*minute)));
    }
}

/// The issue's EDN query, answered in JSON and in EDN, under 1 and 2 workers.
#[tokio::test]
async fn issue_edn_query_answers_what_the_events_say() {
    for workers in [1, 2] {
        let fx = Fixture::start(workers);
        let label = format!("{workers} workers");
        let reply = query(
            &fx.state,
            ISSUE_EDN,
            Some("application/edn"),
            Some("application/json"),
        )
        .await;
        assert_eq!(reply.status, 200, "{label}: {}", reply.text());
        assert_eq!(reply.content_type, "application/json", "{label}");
        check_issue_answer(&reply.json(), &fx.events, &label);

        let reply = query(
            &fx.state,
            ISSUE_EDN,
            Some("application/edn"),
            Some("application/edn"),
        )
        .await;
        assert_eq!(reply.status, 200, "{label}: {}", reply.text());
        assert_eq!(reply.content_type, "application/edn", "{label}");
        let text = reply.text();
        for part in [":metric :reward-stats", ":as-of {:epoch ", ":rows ["] {
            assert!(text.contains(part), "{label}: no `{part}` in {text}");
        }
        let truth = issue_truth(&fx.events);
        assert_eq!(
            text.matches("{:reward-type \"task\" :__time ").count(),
            truth.len(),
            "{label}: {text}"
        );
        let (minute, totals) = truth.iter().next().unwrap();
        let first = format!(
            "{{:reward-type \"task\" :__time \"{}\" :rewards {} ",
            utc(*minute),
            totals.rewards
        );
        assert!(text.contains(&first), "{label}: no `{first}` in {text}");
    }
}

/// The same query in JSON and in EDN gets the same rows.
#[tokio::test]
async fn json_and_edn_forms_of_a_query_answer_alike() {
    let fx = Fixture::start(1);
    let from_edn = query(&fx.state, ISSUE_EDN, Some("application/edn"), None).await;
    let from_json = query(&fx.state, ISSUE_JSON, Some("application/json"), None).await;
    // Without a content type the body's first characters decide.
    let sniffed_edn = query(&fx.state, ISSUE_EDN, None, None).await;
    let sniffed_json = query(&fx.state, ISSUE_JSON, None, None).await;
    let mut answers = Vec::new();
    for reply in [from_edn, from_json, sniffed_edn, sniffed_json] {
        assert_eq!(reply.status, 200, "{}", reply.text());
        answers.push(reply.json());
    }
    check_issue_answer(&answers[1], &fx.events, "JSON");
    for a in &answers[1..] {
        assert_eq!(a["columns"], answers[0]["columns"]);
        assert_eq!(a["rows"], answers[0]["rows"]);
    }

    // The hour in the issue's zone, in both forms: one bucket, printed
    // with the zone's offset, holding every minute above.
    let edn = ISSUE_EDN.replace(
        ":group-by-keys",
        ":time-zone \"+08:00\" :granularity \"1h\" :group-by-keys",
    );
    let mut json: Json = serde_json::from_str(ISSUE_JSON).unwrap();
    json["time_zone"] = json!("+08:00");
    json["granularity"] = json!("1h");
    let hour = issue_total(&fx.events);
    let from_edn = query(&fx.state, &edn, Some("application/edn"), None).await;
    assert_eq!(from_edn.status, 200, "{}", from_edn.text());
    let from_edn = from_edn.json();
    let from_json = answer(&fx.state, &json).await;
    assert_eq!(from_edn["rows"], from_json["rows"]);
    let rows = from_json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{from_json}");
    assert_eq!(rows[0]["__time"], "2024-08-20T09:00:00+08:00");
    hour.check(&rows[0], "the hour in +08:00");
}

/// A session metric over JSON and EDN: sessions per (game, user), less
/// than 30 minutes apart, counted by the hour of their start in +08:00,
/// with the session measures named in EDN as keywords (`:avg-duration`).
#[tokio::test]
async fn session_metrics_answer_in_json_and_edn() {
    let fx = Fixture::start(2);
    let json = json!({
        "metric": "sessions",
        "time_window": {"from": "2024-08-20T08:00:00+08:00", "to": "2024-08-20T12:00:00+08:00"},
        "group_by": ["__time"],
        "granularity": "1h",
        "time_zone": "+08:00",
        "measures": ["n", "sessions", "avg_duration", "max_duration"],
    });
    let edn = r#"{:metric :sessions
                  :time-window {:from "2024-08-20T08:00:00+08:00" :to "2024-08-20T12:00:00+08:00"}
                  :group-by [:__time] :granularity "1h" :time-zone "+08:00"
                  :measures [:n :sessions :avg-duration :max-duration]}"#;
    let from_json = answer(&fx.state, &json).await;
    let from_edn = query(&fx.state, edn, Some("application/edn"), None).await;
    assert_eq!(from_edn.status, 200, "{}", from_edn.text());
    let from_edn = from_edn.json();
    assert_eq!(
        from_json["columns"],
        json!(["__time", "n", "sessions", "avg_duration", "max_duration"])
    );
    assert_eq!(from_edn["columns"], from_json["columns"]);
    assert_eq!(from_edn["rows"], from_json["rows"]);

    // Sessions cut from the events, by the hour (UTC hours are +08:00 hours).
    let mut by_key: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    for e in &fx.events {
        by_key
            .entry((&e.game_id, &e.user_id))
            .or_default()
            .push(e.ts);
    }
    let mut hours: BTreeMap<i64, (i64, Vec<i64>)> = BTreeMap::new();
    for times in by_key.values_mut() {
        times.sort_unstable();
        let mut start = 0;
        for i in 1..=times.len() {
            if i == times.len() || times[i] - times[i - 1] >= 1_800_000 {
                let hour = hours
                    .entry(times[start].div_euclid(3_600_000) * 3_600_000)
                    .or_default();
                hour.0 += (i - start) as i64;
                hour.1.push(times[i - 1] - times[start]);
                start = i;
            }
        }
    }
    let rows = from_json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), hours.len(), "{from_json}");
    for (row, (hour, (n, durations))) in rows.iter().zip(&hours) {
        let local = (hour - T0) / 3_600_000 + 8;
        assert_eq!(row["__time"], format!("2024-08-20T{local:02}:00:00+08:00"));
        assert_eq!(row["n"], json!(n));
        assert_eq!(row["sessions"], json!(durations.len()));
        let avg = durations.iter().sum::<i64>() as f64 / durations.len() as f64 / 1000.0;
        assert!(
            (row["avg_duration"].as_f64().unwrap() - avg).abs() < 1e-9,
            "{row}"
        );
        let max = *durations.iter().max().unwrap() as f64 / 1000.0;
        assert_eq!(row["max_duration"], json!(max));
    }
    assert_eq!(
        hours.values().map(|h| h.0).sum::<i64>(),
        fx.events.len() as i64,
        "every event is in one session"
    );
}

/// A query of `reward_stats` over the issue's window, with these fields set.
fn with(changes: Json) -> Json {
    let mut q = json!({
        "metric": "reward_stats",
        "time_window": {"kind": "absolute", "from": "2024-08-20T09:00:00+08:00", "to": "2024-08-20T10:00:00+08:00"},
    });
    for (k, v) in changes.as_object().unwrap() {
        q[k] = v.clone();
    }
    q
}

/// POSTs a body that must be refused; returns every error's code, path
/// and message, after checking the shape of the error document.
async fn refused(
    state: &AppState,
    body: &str,
    content_type: &str,
) -> Vec<(String, String, String)> {
    let reply = query(state, body, Some(content_type), None).await;
    assert_eq!(reply.status, 400, "{body}: {}", reply.text());
    assert_eq!(reply.content_type, "application/json", "{body}");
    let doc = reply.json();
    let errors = doc["errors"].as_array().expect("errors");
    assert!(!errors.is_empty(), "{doc}");
    assert_eq!(doc["error"], errors[0], "`error` is the first of `errors`");
    errors
        .iter()
        .map(|e| {
            let field = |k: &str| {
                e[k].as_str()
                    .unwrap_or_else(|| panic!("`{k}` is not a string in {e}"))
                    .to_string()
            };
            (field("code"), field("path"), field("message"))
        })
        .collect()
}

/// The codes the validator and the decoder can return, read from their
/// source so that a new code without a case here fails the test.
fn validator_codes() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/src/query");
    let code = regex::Regex::new(r#"(?:push|QueryError::new)\(\s*"([a-z_]+)""#).unwrap();
    let mut codes = BTreeSet::new();
    for file in ["decode.rs", "filter.rs", "time.rs", "validate.rs"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        codes.extend(code.captures_iter(text).map(|c| c[1].to_string()));
    }
    // `bad_query` only keeps the promise of at least one error, should some
    // refusal ever not name its problem: no request can reach it.
    codes.remove("bad_query");
    assert!(
        codes.len() >= 15,
        "the pattern no longer finds the codes: {codes:?}"
    );
    codes
}

/// Every validation error code comes back as a 400 with its field path and
/// a sentence; a body with many problems gets all of them at once.
#[tokio::test]
async fn every_validation_error_has_its_code_and_path() {
    let fx = Fixture::start(1);
    const JSON: &str = "application/json";
    const EDN: &str = "application/edn";
    let from = "2024-08-20T09:00:00+08:00";
    let to = "2024-08-20T10:00:00+08:00";
    // (code, path, body, content type)
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("malformed_body", "", r#"{"metric": "reward_stats","#.into(), JSON),
        ("malformed_body", "", "".into(), JSON),
        ("malformed_body", "", "{:metric :reward-stats :time-window".into(), EDN),
        ("bad_type", "", "[1]".into(), JSON),
        ("bad_type", "metric", with(json!({"metric": 5})).to_string(), JSON),
        ("bad_type", "limit", with(json!({"limit": "10"})).to_string(), JSON),
        ("bad_type", "time_window", with(json!({"time_window": "last 6h"})).to_string(), JSON),
        ("bad_type", "filters.reward_type[0]", with(json!({"filters": {"reward_type": [[1]]}})).to_string(), JSON),
        ("bad_type", "filters.seed_id", r#"{:metric :reward-stats :time-window {:last "1h"} :filters {:seed-id #foo 1}}"#.into(), EDN),
        ("missing_field", "metric", json!({"time_window": {"last": "1h"}}).to_string(), JSON),
        ("missing_field", "time_window", json!({"metric": "reward_stats"}).to_string(), JSON),
        ("missing_field", "time_window.to", with(json!({"time_window": {"kind": "absolute", "from": from}})).to_string(), JSON),
        ("missing_field", "order_by[0].field", with(json!({"order_by": [{"desc": true}]})).to_string(), JSON),
        ("unknown_field", "grup_by", with(json!({"grup_by": []})).to_string(), JSON),
        ("unknown_field", "time_window.size", with(json!({"time_window": {"last": "1h", "size": 1}})).to_string(), JSON),
        ("unknown_metric", "metric", with(json!({"metric": "reward_stat"})).to_string(), JSON),
        ("duplicate_field", "group_by_keys", with(json!({"group_by": [], "group_by_keys": []})).to_string(), JSON),
        ("duplicate_field", "time_window", r#"{:metric :reward-stats :time-window {:last "1h"} :time_window {:last "2h"}}"#.into(), EDN),
        ("duplicate_name", "group_by_keys[1]", with(json!({"group_by_keys": ["__time", "__time"]})).to_string(), JSON),
        ("unknown_dimension", "group_by[0]", with(json!({"group_by": ["reward_typ"]})).to_string(), JSON),
        ("unknown_dimension", "filters.seed", with(json!({"filters": {"seed": "fuc"}})).to_string(), JSON),
        ("unknown_measure", "measures[0]", with(json!({"measures": ["reward"]})).to_string(), JSON),
        ("unknown_column", "order_by[0].field", with(json!({"order_by": [{"field": "reward"}]})).to_string(), JSON),
        ("unknown_column", "order_by[0].field", with(json!({"order_by": [{"field": "seed_id"}]})).to_string(), JSON),
        ("bad_limit", "limit", with(json!({"limit": 0})).to_string(), JSON),
        ("bad_limit", "limit", with(json!({"limit": 100_001})).to_string(), JSON),
        ("bad_time", "time_window.from", with(json!({"time_window": {"kind": "absolute", "from": "yesterday", "to": to}})).to_string(), JSON),
        ("bad_time", "time_window.from", with(json!({"time_window": {"kind": "absolute", "from": "2024-08-20T09:00:00", "to": to}})).to_string(), JSON),
        ("bad_time", "time_window.kind", with(json!({"time_window": {"kind": "absolut", "last": "1h"}})).to_string(), JSON),
        ("bad_time", "time_window.last", with(json!({"time_window": {"kind": "relative", "last": "6 hours"}})).to_string(), JSON),
        ("empty_window", "time_window", with(json!({"time_window": {"kind": "absolute", "from": to, "to": from}})).to_string(), JSON),
        ("bad_granularity", "granularity", with(json!({"granularity": "90s"})).to_string(), JSON),
        ("bad_time_zone", "time_zone", with(json!({"time_zone": "Mars/Olympus"})).to_string(), JSON),
        ("bad_filter", "filters.seed_id", with(json!({"filters": {"seed_id": {}}})).to_string(), JSON),
        ("bad_filter", "filters.game_id.range", with(json!({"filters": {"game_id": {"range": {}}}})).to_string(), JSON),
        ("bad_regex", "filters.reward_type", with(json!({"filters": {"reward_type": "task|(bonus"}})).to_string(), JSON),
        ("bad_regex", "filters.seed_id", r#"{:metric :reward-stats :time-window {:last "1h"} :filters {:seed-id "fuc|(tax"}}"#.into(), EDN),
        ("unknown_operator", "filters.seed_id.equals", with(json!({"filters": {"seed_id": {"equals": "fuc"}}})).to_string(), JSON),
    ];
    let mut seen = BTreeSet::new();
    for (code, path, body, content_type) in &cases {
        let errors = refused(&fx.state, body, content_type).await;
        assert_eq!(errors.len(), 1, "{body}: {errors:#?}");
        let (got_code, got_path, message) = &errors[0];
        assert_eq!(
            (got_code.as_str(), got_path.as_str()),
            (*code, *path),
            "{body}: {message}"
        );
        assert!(
            message.len() > 10 && message.ends_with(['.', '?']),
            "{code} at {path}: not a sentence: {message:?}"
        );
        seen.insert(code.to_string());
    }
    let missing: Vec<_> = validator_codes().difference(&seen).cloned().collect();
    assert!(
        missing.is_empty(),
        "codes with no request here: {missing:?}"
    );

    // The same errors in EDN when the client asks for EDN.
    let reply = query(
        &fx.state,
        r#"{:metric :reward-stat :time-window {:last "1h"}}"#,
        Some(EDN),
        Some(EDN),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.content_type, "application/edn");
    assert!(
        reply
            .text()
            .starts_with("{:error {:code \"unknown_metric\"")
            && reply.text().contains(":path \"metric\""),
        "{}",
        reply.text()
    );

    // Every problem at once, in the order the validator reads the fields.
    let body = json!({
        "metric": "reward_stats",
        "time_window": {"kind": "absolute", "from": "nope", "to": "2024-08-20T10:00:00"},
        "filters": {"seed_id": "(", "reward_typ": "task"},
        "group_by": ["seed", "__time"],
        "granularity": "7s",
        "time_zone": "Nowhere/City",
        "measures": ["rewards", "player"],
        "order_by": [{"field": "amount"}],
        "limit": -1,
        "colour": "blue",
    });
    let got: Vec<(String, String)> = refused(&fx.state, &body.to_string(), JSON)
        .await
        .into_iter()
        .map(|(code, path, _)| (code, path))
        .collect();
    let want: Vec<(String, String)> = [
        ("unknown_field", "colour"),
        ("bad_time", "time_window.from"),
        ("bad_time", "time_window.to"),
        ("unknown_dimension", "group_by[0]"),
        ("unknown_measure", "measures[1]"),
        ("bad_granularity", "granularity"),
        ("bad_time_zone", "time_zone"),
        ("unknown_dimension", "filters.reward_typ"),
        ("bad_regex", "filters.seed_id"),
        ("unknown_column", "order_by[0].field"),
        ("bad_limit", "limit"),
    ]
    .iter()
    .map(|(c, p)| (c.to_string(), p.to_string()))
    .collect();
    assert_eq!(got, want);
}

/// A JSON error document with this code, its message non-empty.
fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert!(
        reply.content_type.starts_with("application/json"),
        "{}",
        reply.content_type
    );
    let doc = reply.json();
    assert_eq!(doc["error"]["code"], code, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{doc}"
    );
}

/// Too large a body, an unknown path and a wrong method get JSON errors.
#[tokio::test]
async fn oversized_bodies_unknown_paths_and_wrong_methods_get_json_errors() {
    let fx = Fixture::start(1);
    let limit = usize::try_from(MAX_BODY_BYTES).unwrap();
    // A valid query padded with spaces: only its size is wrong.
    let mut big = ISSUE_JSON.as_bytes().to_vec();
    big.resize(limit + 1, b' ');
    let reply = query(&fx.state, &big, Some("application/json"), None).await;
    assert_error(&reply, 413, "body_too_large");
    // At the limit it is still read.
    big.truncate(limit);
    let reply = query(&fx.state, &big, Some("application/json"), None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    assert_error(&get(&fx.state, "/v2/query").await, 404, "not_found");
    assert_error(&get(&fx.state, "/v1/query/extra").await, 404, "not_found");
    assert_error(
        &get(&fx.state, "/v1/query").await,
        405,
        "method_not_allowed",
    );
    let put = warp::test::request()
        .method("PUT")
        .path("/v1/catalog")
        .body("{}");
    assert_error(&send(&fx.state, put).await, 405, "method_not_allowed");
}

/// The catalog names the metric's dimensions and measures, with error
/// bounds, and holds a JSON schema of queries; `/` is the app's page.
#[tokio::test]
async fn catalog_and_index_describe_the_endpoint() {
    let fx = Fixture::start(1);
    let reply = get(&fx.state, "/v1/catalog").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.content_type.starts_with("application/json"));
    let catalog = reply.json();
    let metric = &catalog["metrics"][0];
    assert_eq!(metric["name"], "reward_stats");
    let names = |list: &Json| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&metric["dimensions"]),
        ["game_id", "seed_id", "reward_type"]
    );
    assert_eq!(names(&metric["measures"]), ["rewards", "amount", "players"]);
    let measure = |i: usize| &metric["measures"][i];
    assert_eq!(measure(0)["function"], "count");
    assert_eq!(measure(0)["exact"], true);
    assert_eq!(measure(0)["error"], "exact");
    assert_eq!(measure(1)["exact"], true);
    assert!(measure(1)["error"]
        .as_str()
        .unwrap()
        .contains("decimal places"));
    assert_eq!(measure(2)["exact"], false);
    let bound = measure(2)["error"].as_str().unwrap();
    assert!(
        bound.contains("HyperLogLog") && bound.contains("128"),
        "{bound}"
    );
    assert_eq!(metric["window"]["kind"], "tumbling");
    assert_eq!(metric["window"]["step_ms"], 60_000);
    assert_eq!(metric["queryable"], true);
    let sessions = &catalog["metrics"][1];
    assert_eq!(sessions["name"], "sessions");
    assert_eq!(sessions["queryable"], true);
    assert_eq!(sessions["window"]["kind"], "session");
    assert_eq!(sessions["window"]["gap"], "30m");
    assert_eq!(sessions["window"]["by"], "user_id");
    assert_eq!(
        names(&sessions["measures"]),
        [
            "n",
            "sessions",
            "avg_duration",
            "p50_duration",
            "p90_duration",
            "max_duration"
        ]
    );

    let schema = &catalog["query_schema"];
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["metric", "time_window"]));
    assert_eq!(
        schema["properties"]["metric"]["enum"],
        json!(["reward_stats", "sessions"])
    );
    for field in ["filters", "group_by", "order_by", "limit", "time_zone"] {
        assert!(
            schema["properties"][field].is_object(),
            "no `{field}` in the schema"
        );
    }

    // `/` is the web app's page, which loads its entry module.
    let reply = get(&fx.state, "/").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.content_type.starts_with("text/html"),
        "{}",
        reply.content_type
    );
    assert!(reply.text().contains("/assets/app.js"), "{}", reply.text());
}

/// Malformed lines are counted as records and as errors by the status, and
/// never as events in an answer.
#[tokio::test]
async fn malformed_events_are_counted_as_errors_not_as_events() {
    let fx = Fixture::start(2);
    assert_eq!(fx.malformed, EVENTS / 50);

    let reply = get(&fx.state, "/v1/status").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let status = reply.json();
    assert_eq!(status["done"], true, "{status}");
    assert_eq!(status["error"], Json::Null, "{status}");
    assert_eq!(status["workers"].as_array().unwrap().len(), 2);
    let source = &status["sources"][0];
    assert_eq!(source["name"], "s");
    assert_eq!(source["kind"], "file");
    assert_eq!(source["finished"], true, "{source}");
    assert_eq!(source["records"], json!(fx.lines), "{source}");
    assert_eq!(source["errors"], json!(fx.malformed), "{source}");
    let per_worker: Vec<&Json> = source["workers"].as_array().unwrap().iter().collect();
    let sum = |k: &str| {
        per_worker
            .iter()
            .map(|w| w[k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(sum("records"), fx.lines as u64);
    assert_eq!(sum("errors"), fx.malformed as u64);
    // The newest event any worker saw is the newest good event.
    let newest = fx.events.iter().map(|e| e.ts).max().unwrap();
    let newest_seen = per_worker
        .iter()
        .filter_map(|w| w["newest_event"].as_str())
        .max();
    assert_eq!(newest_seen, Some(rfc3339(newest).as_str()), "{source}");

    // The whole day: every good event, and none of the malformed ones.
    let day = json!({"metric": "reward_stats",
        "time_window": {"kind": "absolute", "from": "2024-08-20T00:00:00Z", "to": "2024-08-21T00:00:00Z"}});
    let a = answer(&fx.state, &day).await;
    let rows = a["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{a}");
    let mut all = Totals::default();
    fx.events.iter().for_each(|e| all.add(e));
    all.check(&rows[0], "whole day");
    assert_eq!(rows[0]["rewards"], json!(EVENTS));

    // The malformed lines with a time look like matches of the issue's
    // filter inside its window; the answer leaves them out.
    let issue = issue_total(&fx.events);
    let q = with(json!({"filters": {"seed_id": "fuc|tax-up", "reward_type": "task"}}));
    let a = answer(&fx.state, &q).await;
    issue.check(&a["rows"][0], "issue window, no time buckets");
}

/// A query input the property test sends.
#[derive(Debug, Clone)]
enum Input {
    /// Any bytes at all.
    Bytes(Vec<u8>),
    /// Any JSON value.
    Value(Json),
    /// A query of the right shape with arbitrary parts.
    Shaped(Json),
    /// A query whose fields are mostly valid, so that many reach the engine.
    Near(Json),
}

/// Words that reach deep into the validator.
const WORDS: [&str; 32] = [
    "metric",
    "time_window",
    "filters",
    "group_by",
    "group_by_keys",
    "granularity",
    "time_zone",
    "measures",
    "order_by",
    "limit",
    "kind",
    "absolute",
    "relative",
    "from",
    "to",
    "last",
    "reward_stats",
    "sessions",
    "seed_id",
    "reward_type",
    "__time",
    "rewards",
    "field",
    "desc",
    "in",
    "regex",
    "range",
    "not",
    "or",
    "2024-08-20T09:00:00+08:00",
    "6h",
    "fuc|(tax",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WORDS.to_vec()).prop_map(str::to_string),
        "[a-z_|().*+0-9:{}\\[\\]#-]{0,12}",
    ]
}

fn json_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)),
        word().prop_map(Json::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
            prop::collection::btree_map(word(), inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

/// Usually one of `valid`, sometimes any value, sometimes left out.
fn field(valid: Vec<Json>) -> impl Strategy<Value = Option<Json>> {
    prop_oneof![
        5 => prop::sample::select(valid).prop_map(Some),
        1 => json_value().prop_map(Some),
        3 => Just(None),
    ]
}

fn near_query() -> impl Strategy<Value = Json> {
    let windows = vec![
        json!({"kind": "absolute", "from": "2024-08-20T09:00:00+08:00", "to": "2024-08-20T10:00:00+08:00"}),
        json!({"from": "2024-08-20T00:00:00Z", "to": "2024-08-21T00:00:00Z"}),
        json!({"kind": "relative", "last": "6h"}),
    ];
    let fields = (
        prop::sample::select(windows),
        field(vec![
            json!({"seed_id": "fuc|tax-up"}),
            json!({"reward_type": ["task", "bonus"], "game_id": {"not": "g1"}}),
            json!({"or": [{"seed_id": "spin"}, {"reward_type": {"regex": "t.*"}}]}),
        ]),
        field(vec![
            json!(["reward_type", "__time"]),
            json!(["__time"]),
            json!(["game_id", "seed_id"]),
        ]),
        field(vec![json!("5m"), json!("1h"), json!("1d")]),
        field(vec![json!("+08:00"), json!("Asia/Shanghai"), json!("Z")]),
        field(vec![json!(["rewards"]), json!(["players", "rewards"])]),
        field(vec![json!([{"field": "rewards", "desc": true}]), json!([])]),
        field(vec![json!(1), json!(7), json!(100_000)]),
    );
    fields.prop_map(
        |(window, filters, group_by, granularity, zone, measures, order_by, limit)| {
            let mut q = json!({"metric": "reward_stats", "time_window": window});
            let optional = [
                ("filters", filters),
                ("group_by", group_by),
                ("granularity", granularity),
                ("time_zone", zone),
                ("measures", measures),
                ("order_by", order_by),
                ("limit", limit),
            ];
            for (k, v) in optional {
                if let Some(v) = v {
                    q[k] = v;
                }
            }
            q
        },
    )
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Input::Bytes),
        3 => near_query().prop_map(Input::Near),
        1 => json_value().prop_map(Input::Value),
        1 => (json_value(), json_value(), json_value(), json_value()).prop_map(
            |(window, filters, group_by, rest)| {
                let mut q = json!({"metric": "reward_stats", "time_window": window,
                    "filters": filters, "group_by": group_by});
                if let Json::Object(rest) = rest {
                    for (k, v) in rest {
                        q[k] = v;
                    }
                }
                Input::Shaped(q)
            }
        ),
    ]
}

/// No query input makes the server fail: every answer is 200, 400 or 413,
/// in the format the client asked for.
#[test]
fn no_query_input_makes_the_server_fail() {
    let fx = Fixture::start(2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let content_types = [
        None,
        Some("application/json"),
        Some("application/edn"),
        Some("text/plain"),
    ];
    let accepts = [None, Some("application/json"), Some("application/edn")];
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        input(),
        prop::sample::select(content_types.to_vec()),
        prop::sample::select(accepts.to_vec()),
    );
    let answered = [std::cell::Cell::new(0usize), std::cell::Cell::new(0)];
    runner
        .run(&strategy, |(input, content_type, accept)| {
            let body = match &input {
                Input::Bytes(b) => b.clone(),
                Input::Value(v) | Input::Shaped(v) | Input::Near(v) => v.to_string().into_bytes(),
            };
            let reply = runtime.block_on(query(&fx.state, &body, content_type, accept));
            prop_assert!(
                [200, 400, 413].contains(&reply.status),
                "status {}: {}",
                reply.status,
                reply.text()
            );
            let tally = &answered[usize::from(reply.status == 200)];
            tally.set(tally.get() + 1);
            if accept == Some("application/edn") {
                prop_assert_eq!(&reply.content_type, "application/edn");
                return Ok(());
            }
            let doc: Json = serde_json::from_slice(&reply.body)
                .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {}", reply.text())))?;
            if reply.status == 200 {
                prop_assert!(doc["rows"].is_array(), "{}", doc);
            } else {
                prop_assert!(doc["error"]["code"].is_string(), "{}", doc);
            }
            Ok(())
        })
        .unwrap();
    // The inputs reach both sides of the validator.
    assert!(
        answered[0].get() > 0 && answered[1].get() > 0,
        "refused and answered: {answered:?}"
    );
}

/// Reads one HTTP/1.1 response from a connection the server closes.
fn read_response(mut stream: std::net::TcpStream) -> Reply {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a blank line after the headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let mut content_type = String::new();
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.trim().to_string(),
            "content-length" => assert_eq!(value.trim().parse::<usize>().unwrap(), body.len()),
            "transfer-encoding" => panic!("expected a length, not {value}"),
            _ => {}
        }
    }
    Reply {
        status,
        content_type,
        body,
    }
}

/// Sends `request` as written to `addr` and reads the answer, on a
/// blocking thread.
async fn raw_http(addr: std::net::SocketAddr, request: String) -> Reply {
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        read_response(stream)
    })
    .await
    .unwrap()
}

/// `server::run` on a real socket: the issue's query over hand-written
/// HTTP/1.1, a body without a length, and a clean shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_on_a_real_socket_and_shuts_down() {
    let fx = Fixture::start(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server::run(listener, fx.state.clone(), async move {
        let _ = stopped.await;
    }));

    let request = format!(
        "POST /v1/query HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/edn\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ISSUE_EDN}",
        ISSUE_EDN.len()
    );
    let reply = raw_http(addr, request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.content_type, "application/json");
    check_issue_answer(&reply.json(), &fx.events, "over a socket");

    // warp::test always sends a length; a real client may not.
    let request = format!(
        "POST /v1/query HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    );
    assert_error(&raw_http(addr, request).await, 411, "length_required");

    let request = format!("GET /v1/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let reply = raw_http(addr, request).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["queries"], 1, "{}", reply.text());

    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), serving)
        .await
        .expect("the server stops once asked")
        .unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is closed"
    );
}
