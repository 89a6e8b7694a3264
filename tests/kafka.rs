//! Kafka sources against a real broker (Tansu, started per test on a free
//! loopback port): every answer equals the file source's answer over the
//! same events, with 1 and 4 workers; two topics feed one metric; a
//! pattern picks up a topic created while running; a partition added while
//! running is read; a broker restart mid-run leaves the answers exact;
//! malformed messages are dead-lettered with their offsets, to the file and
//! to the source's dead-letter topic; `statflow produce` loads the topics.

#[path = "support/tansu.rs"]
pub(crate) mod tansu;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use statflow::dataflow::query::{Cell, GroupKey, Query};
use statflow::dsl::Plan;
use statflow::runtime::engine::{Engine, EngineConfig};
use statflow::runtime::source::generator::Generator;
use statflow::runtime::source::kafka::producer::{produce_lines, producer};
use statflow::runtime::source::{readers, readers_with, SourceOptions};
use tansu::Tansu;

/// 2024-08-20T00:00:00Z: events are spread over the three hours after it.
const T0: i64 = 1_724_112_000_000;

/// One broker at a time: each test starts its own, and several at once
/// (each with two engines) would crowd the other tests of the binary on a
/// small machine.
static ONE_BROKER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`ONE_BROKER`], whether or not a test before panicked holding it.
fn one_broker() -> std::sync::MutexGuard<'static, ()> {
    ONE_BROKER.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long any wait in these tests may take before it fails.
const PATIENCE: Duration = Duration::from_secs(90);

const METRICS: &str = r#"
metric by_game from events {
  dimensions game_id, kind
  window     tumbling 1m
  measures {
    n       = count()
    amount  = sum(amount)
    players = distinct(user_id)
    p90     = quantile(amount, 0.9)
  }
}

metric bets from events {
  where      kind = "bet"
  dimensions country
  window     hopping 10m every 5m
  measures   { bets = count()  payout = sum(payout)  top = max(amount) }
}
"#;

/// `n` generated events as JSON lines, the same for the same seed.
fn events(n: u64, seed: u64) -> Vec<String> {
    let config = statflow::dsl::GeneratorSource {
        rate: 1_000,
        seed,
        events: Some(n),
        games: 20,
        users: 2_000,
    };
    let mut generator = Generator::new(&config, 0, 1);
    let mut out = Vec::new();
    let mut lines = Vec::with_capacity(n as usize);
    for i in 0..n as i64 {
        out.clear();
        let nominal = T0 + i * 3 * 3_600_000 / n as i64;
        if generator.next_into(nominal, &mut out).is_none() {
            break;
        }
        lines.push(String::from_utf8(out.clone()).expect("the generator writes UTF-8"));
    }
    lines
}

fn compile(source: &str, dir: &std::path::Path) -> Plan {
    let text = format!("{source}\n{METRICS}");
    let compiled = statflow::dsl::compile(&text, Some(dir));
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    compiled.plan.expect("a plan")
}

fn config(workers: usize, dir: &std::path::Path) -> EngineConfig {
    EngineConfig {
        workers,
        epoch_interval: Duration::from_millis(20),
        batch: 200,
        dead_letter_dir: dir.join("dead"),
        ..EngineConfig::default()
    }
}

/// The answers of the file source over `lines`: the reference.
fn file_answers(lines: &[String]) -> Vec<Vec<Vec<Cell>>> {
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("events.jsonl")).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let plan = compile(
        r#"source events = file("events.jsonl") { time = ts as epoch_millis  late = 10m }"#,
        dir.path(),
    );
    let engine = Engine::start(plan.clone(), config(2, dir.path()), readers()).unwrap();
    engine.wait_until_done().unwrap();
    answers(&engine, &plan, 0)
}

/// A Kafka engine on `brokers` reading the source declared by `source`.
fn kafka_engine(
    source: &str,
    brokers: &str,
    workers: usize,
    dir: &std::path::Path,
) -> (Engine, Plan) {
    let plan = compile(source, dir);
    let options = SourceOptions::for_plan(&plan).with_kafka_brokers(Some(brokers.to_string()));
    let engine = Engine::start(plan.clone(), config(workers, dir), readers_with(options)).unwrap();
    (engine, plan)
}

/// Every query of the tests: each metric over all time, by every dimension
/// and by hour, with every measure.
fn queries(plan: &Plan) -> Vec<Query> {
    plan.metrics
        .iter()
        .enumerate()
        .map(|(m, metric)| Query {
            metric: m,
            from_ms: T0 - 86_400_000,
            to_ms: T0 + 86_400_000,
            filter: None,
            group_by: (0..metric.dimensions.len())
                .map(GroupKey::Dimension)
                .chain([GroupKey::Time])
                .collect(),
            granularity_ms: Some(3_600_000),
            time_zone: None,
            measures: (0..metric.measures.len()).collect(),
            order_by: Vec::new(),
            limit: None,
            late: false,
        })
        .collect()
}

/// The rows of every query, sorted, read at an epoch at or after `epoch`.
fn answers(engine: &Engine, plan: &Plan, epoch: u64) -> Vec<Vec<Vec<Cell>>> {
    queries(plan)
        .into_iter()
        .map(|q| {
            let deadline = Instant::now() + PATIENCE;
            loop {
                let answer = engine.query_blocking(q.clone()).expect("an answer");
                if answer.as_of.epoch >= epoch {
                    let mut rows = answer.rows;
                    rows.sort_by_key(|r| format!("{r:?}"));
                    break rows;
                }
                assert!(
                    Instant::now() < deadline,
                    "the engine never reached epoch {epoch}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .collect()
}

/// Sums to rounding (float addition depends on the order records meet);
/// everything else exactly.
fn assert_same(got: &[Vec<Vec<Cell>>], want: &[Vec<Vec<Cell>>], label: &str) {
    assert_eq!(got.len(), want.len(), "{label}: queries");
    for (q, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            !w.is_empty(),
            "{label}: query {q} has no rows, which proves nothing"
        );
        assert_eq!(g.len(), w.len(), "{label}: rows of query {q}");
        for (gr, wr) in g.iter().zip(w) {
            let same = gr.len() == wr.len()
                && gr.iter().zip(wr).all(|(a, b)| match (a, b) {
                    (Cell::Float(a), Cell::Float(b)) => (a - b).abs() <= 1e-9 * (1.0 + b.abs()),
                    (a, b) => a == b,
                });
            assert!(same, "{label}: query {q}\n got {gr:?}\nwant {wr:?}");
        }
    }
}

/// Waits until source 0 has `partitions` partitions over all workers, each
/// read to its end, with `records` records in all; returns the newest epoch
/// any worker was filling then (answers at or after it count everything).
fn caught_up(engine: &Engine, partitions: usize, records: u64) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    let mut last = String::new();
    loop {
        if let Ok(status) = engine.status_blocking() {
            let sources: Vec<_> = status.reports.iter().map(|r| &r.sources[0]).collect();
            let parts: Vec<_> = sources.iter().flat_map(|s| s.partitions.iter()).collect();
            let read: u64 = sources.iter().map(|s| s.records).sum();
            let at_end = parts.iter().all(|p| p.end == Some(p.position));
            if parts.len() == partitions && at_end && read == records {
                return status.reports.iter().map(|r| r.epoch).max().unwrap_or(0);
            }
            last = format!("{read} of {records} records; partitions {parts:?}");
        }
        assert!(
            Instant::now() < deadline,
            "not caught up after {PATIENCE:?}: {last}"
        );
        assert!(engine.error().is_none(), "{:?}", engine.error());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Loads `lines` into `topic` with the library's producer, keyed by user.
fn produce(brokers: &str, topic: &str, lines: &[String]) {
    let p = producer(brokers, &BTreeMap::new()).unwrap();
    let input = lines.join("\n");
    let done = produce_lines(
        &p,
        topic,
        Some("user_id"),
        input.as_bytes(),
        PATIENCE,
        |_| {},
    )
    .unwrap();
    assert_eq!(
        (done.sent, done.delivered),
        (lines.len() as u64, lines.len() as u64),
        "{done:?}"
    );
}

#[test]
fn answers_equal_the_file_source_with_1_and_4_workers() {
    let _broker = one_broker();
    let lines = events(12_000, 7);
    let want = file_answers(&lines);
    let broker = Tansu::start();
    broker.create_topic("game.events", 4);
    // Loaded through the command line, as a user would.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_statflow"))
        .arg("produce")
        .arg(&file)
        .args(["--topic", "game.events", "--brokers", &broker.brokers()])
        .args(["--partitions-by", "user_id"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "statflow produce failed: {stderr}");
    assert!(stderr.contains("sent 12000 messages"), "{stderr}");
    for workers in [1, 4] {
        let (engine, plan) = kafka_engine(
            r#"source events = kafka("game.events") { time = ts as epoch_millis  late = 10m }"#,
            &broker.brokers(),
            workers,
            dir.path(),
        );
        let epoch = caught_up(&engine, 4, lines.len() as u64);
        // Every partition is where it should be, named `topic/partition`.
        let status = engine.status_blocking().unwrap();
        let mut names: Vec<String> = status
            .reports
            .iter()
            .flat_map(|r| r.sources[0].partitions.iter().map(|p| p.name.clone()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "game.events/0",
                "game.events/1",
                "game.events/2",
                "game.events/3"
            ]
        );
        assert_same(
            &answers(&engine, &plan, epoch),
            &want,
            &format!("{workers} workers"),
        );
    }
}

#[test]
fn two_topics_feed_one_metric() {
    let _broker = one_broker();
    let lines = events(6_000, 11);
    let want = file_answers(&lines);
    let broker = Tansu::start();
    broker.create_topic("rewards", 2);
    broker.create_topic("bets", 3);
    let (odd, even): (Vec<_>, Vec<_>) = lines
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| i % 2 == 1);
    produce(
        &broker.brokers(),
        "rewards",
        &odd.into_iter().map(|(_, l)| l).collect::<Vec<_>>(),
    );
    produce(
        &broker.brokers(),
        "bets",
        &even.into_iter().map(|(_, l)| l).collect::<Vec<_>>(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (engine, plan) = kafka_engine(
        r#"source events = kafka("rewards", "bets") { time = ts as epoch_millis  late = 10m }"#,
        &broker.brokers(),
        3,
        dir.path(),
    );
    let epoch = caught_up(&engine, 5, lines.len() as u64);
    assert_same(&answers(&engine, &plan, epoch), &want, "two topics");
}

#[test]
fn a_pattern_picks_up_a_topic_created_while_running() {
    let _broker = one_broker();
    let lines = events(6_000, 13);
    let want = file_answers(&lines);
    let (first, second) = lines.split_at(2_500);
    let broker = Tansu::start();
    broker.create_topic("game.bets.eu", 2);
    produce(&broker.brokers(), "game.bets.eu", first);
    let dir = tempfile::tempdir().unwrap();
    let (engine, plan) = kafka_engine(
        r#"source events = kafka(pattern = "game\\.bets\\..*") {
  time = ts as epoch_millis
  late = 10m
  settings = { "statflow.discovery.interval.ms" = 300 }
}"#,
        &broker.brokers(),
        2,
        dir.path(),
    );
    caught_up(&engine, 2, first.len() as u64);
    broker.create_topic("game.bets.us", 3);
    broker.create_topic("other.topic", 1);
    produce(&broker.brokers(), "game.bets.us", second);
    produce(&broker.brokers(), "other.topic", &events(100, 99));
    let epoch = caught_up(&engine, 5, lines.len() as u64);
    assert_same(&answers(&engine, &plan, epoch), &want, "pattern");
}

/// Ignored: Tansu 0.6.0 refuses CreatePartitions (librdkafka reports
/// `UnsupportedFeature: Required feature not supported by broker`), so a
/// partition cannot be added to a running topic in these tests. The test
/// is kept to be switched on when the broker gains it: CI runs
/// `the_broker_still_refuses_to_add_partitions`, which fails that day
/// (`-- --ignored` shows the refusal today). What it would show is covered in parts: the
/// selection of a grown topic's new partitions is unit-tested in
/// `runtime/src/source/kafka/discover.rs`, and the pattern test exercises
/// the same discovery path with a new topic's partitions.
#[test]
#[ignore = "Tansu 0.6.0 does not implement CreatePartitions; .ci/run still runs it and requires exactly that refusal"]
fn a_partition_added_while_running_is_read() {
    let _broker = one_broker();
    let lines = events(4_000, 17);
    let want = file_answers(&lines);
    let (first, second) = lines.split_at(1_500);
    let broker = Tansu::start();
    broker.create_topic("grows", 2);
    produce(&broker.brokers(), "grows", first);
    let dir = tempfile::tempdir().unwrap();
    let (engine, plan) = kafka_engine(
        r#"source events = kafka("grows") {
  time = ts as epoch_millis
  late = 10m
  settings = { "statflow.discovery.interval.ms" = 300 }
}"#,
        &broker.brokers(),
        2,
        dir.path(),
    );
    caught_up(&engine, 2, first.len() as u64);
    add_partitions(&broker.brokers(), "grows", 4);
    produce(&broker.brokers(), "grows", second);
    let epoch = caught_up(&engine, 4, lines.len() as u64);
    assert_same(&answers(&engine, &plan, epoch), &want, "added partitions");
}

/// Runs in CI in place of the ignored test above: it fails the day Tansu
/// accepts CreatePartitions, which is the signal to switch that test on
/// (remove its ignore attribute) instead of leaving it skipped.
#[test]
fn the_broker_still_refuses_to_add_partitions() {
    let _broker = one_broker();
    let broker = Tansu::start();
    broker.create_topic("fixed", 2);
    let refused = try_add_partitions(&broker.brokers(), "fixed", 4);
    assert!(
        refused.is_err(),
        "Tansu now adds partitions: remove the ignore attribute from a_partition_added_while_running_is_read"
    );
}

/// Grows `topic` to `total` partitions with the admin API.
fn add_partitions(brokers: &str, topic: &str, total: usize) {
    try_add_partitions(brokers, topic, total).unwrap_or_else(|e| panic!("{e}"));
}

/// Asks the broker to grow `topic` to `total` partitions; the broker's refusal as text.
fn try_add_partitions(brokers: &str, topic: &str, total: usize) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let results = runtime
        .block_on(admin.create_partitions(
            &[NewPartitions::new(topic, total)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .map_err(|e| format!("CreatePartitions failed: {e}"))?;
    for r in results {
        r.map_err(|(t, e)| format!("cannot add partitions to {t}: {e}"))?;
    }
    Ok(())
}

/// The `/v1/status` document's entry for source 0, once `ready` holds for
/// it (waiting at most [`PATIENCE`]).
fn source_status(
    engine: &Engine,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let status = runtime.block_on(statflow::runtime::server::status(engine));
        let source = status["sources"][0].clone();
        if ready(&source) {
            return source;
        }
        assert!(
            Instant::now() < deadline,
            "the status never said {what}: {source:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every worker's `broker` entry in a source's status.
fn worker_brokers(source: &serde_json::Value) -> Vec<serde_json::Value> {
    source["workers"]
        .as_array()
        .map(|w| w.iter().map(|w| w["broker"].clone()).collect())
        .unwrap_or_default()
}

/// `statflow_kafka_broker_up` of each worker of source `events`, from a scrape.
fn broker_up(engine: &Engine) -> Vec<(String, String)> {
    let text = statflow::runtime::server::Metrics::new()
        .render(engine.shared(), statflow::dataflow::ingest::wall_ms())
        .unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("statflow_kafka_broker_up{"))
        .filter_map(|l| l.split_once("} "))
        .map(|(labels, value)| (labels.to_string(), value.to_string()))
        .collect()
}

/// Issue 4: the broker going away shows in `/v1/status` and `/metrics`
/// (every worker unreachable, with the client's error and its retries),
/// and so does its return; the answers stay exact.
#[test]
fn a_broker_restart_mid_run_leaves_the_answers_exact() {
    let _broker = one_broker();
    let lines = events(8_000, 19);
    let want = file_answers(&lines);
    let (first, second) = lines.split_at(3_000);
    let mut broker = Tansu::start();
    broker.create_topic("events", 4);
    produce(&broker.brokers(), "events", first);
    let dir = tempfile::tempdir().unwrap();
    let (engine, plan) = kafka_engine(
        r#"source events = kafka("events") { time = ts as epoch_millis  late = 10m }"#,
        &broker.brokers(),
        2,
        dir.path(),
    );
    caught_up(&engine, 4, first.len() as u64);
    let all_are = |state: &'static str| {
        move |s: &serde_json::Value| {
            let workers = worker_brokers(s);
            workers.len() == 2 && workers.iter().all(|b| b["state"] == state)
        }
    };
    let before = source_status(&engine, "connected", all_are("connected"));
    assert_eq!(before["broker"]["state"], "connected", "{before:#}");
    assert_eq!(before["broker"]["workers"], 2, "{before:#}");
    broker.kill();
    // Every worker says it cannot reach the broker, why, and that it keeps trying.
    let down = source_status(
        &engine,
        "unreachable, with an error and a retry",
        |s: &serde_json::Value| {
            all_are("unreachable")(s)
                && worker_brokers(s)
                    .iter()
                    .all(|b| b["error"].is_string() && b["retries"].as_u64() >= Some(1))
        },
    );
    let summary = &down["broker"];
    assert_eq!(summary["state"], "unreachable", "{down:#}");
    assert_eq!(summary["workers"], 2, "{down:#}");
    assert!(summary["error"].is_string(), "{down:#}");
    let since = |b: &serde_json::Value| {
        let t = b["since"].as_str().unwrap_or_default().to_string();
        assert!(t.ends_with('Z'), "an RFC 3339 `since`: {b}");
        t
    };
    assert_ne!(
        since(summary),
        since(&before["broker"]),
        "the outage has its own start: {down:#}"
    );
    let up = broker_up(&engine);
    assert_eq!(up.len(), 2, "{up:?}");
    assert!(up.iter().all(|(_, v)| v == "0"), "{up:?}");
    // While the broker is away the engine keeps answering, with its positions.
    let status = engine
        .status_blocking()
        .expect("status while the broker is down");
    let kept: u64 = status
        .reports
        .iter()
        .flat_map(|r| r.sources[0].partitions.iter().map(|p| p.position))
        .sum();
    assert_eq!(
        kept,
        first.len() as u64,
        "positions kept through the outage"
    );
    broker.restart();
    let back = source_status(&engine, "connected again", all_are("connected"));
    assert_eq!(back["broker"]["state"], "connected", "{back:#}");
    assert_eq!(back["broker"]["error"], serde_json::Value::Null, "{back:#}");
    assert_eq!(back["broker"]["retries"], 0, "{back:#}");
    assert_ne!(since(&back["broker"]), since(summary), "{back:#}");
    assert!(
        broker_up(&engine).iter().all(|(_, v)| v == "1"),
        "{:?}",
        broker_up(&engine)
    );
    produce(&broker.brokers(), "events", second);
    let epoch = caught_up(&engine, 4, lines.len() as u64);
    assert_same(&answers(&engine, &plan, epoch), &want, "after a restart");
}

#[test]
fn malformed_messages_are_dead_lettered_with_their_offsets() {
    let _broker = one_broker();
    let broker = Tansu::start();
    broker.create_topic("mixed", 1);
    broker.create_topic("mixed.dead", 1);
    let good = events(50, 23);
    let mut lines = Vec::new();
    let mut bad_offsets = Vec::new();
    for (i, l) in good.iter().enumerate() {
        if i % 10 == 3 {
            bad_offsets.push(lines.len() as u64);
            lines.push(if i % 20 == 3 {
                "{broken json".to_string()
            } else {
                r#"{"kind": "bet", "ts": "soon"}"#.to_string()
            });
        }
        lines.push(l.clone());
    }
    produce(&broker.brokers(), "mixed", &lines);
    let dir = tempfile::tempdir().unwrap();
    let (engine, plan) = kafka_engine(
        r#"source events = kafka("mixed") {
  time = ts as epoch_millis
  late = 10m
  dead_letters = "mixed.dead"
}"#,
        &broker.brokers(),
        1,
        dir.path(),
    );
    let epoch = caught_up(&engine, 1, lines.len() as u64);
    let status = engine.status_blocking().unwrap();
    let errors: u64 = status.reports.iter().map(|r| r.sources[0].errors).sum();
    assert_eq!(errors, bad_offsets.len() as u64);
    // The good ones are all counted.
    let counted: i64 = answers(&engine, &plan, epoch)[0]
        .iter()
        .map(|r| match r[3] {
            Cell::Int(n) => n,
            ref other => panic!("a count, not {other:?}"),
        })
        .sum();
    assert_eq!(counted, good.len() as i64);
    // The file: partition and offset of each.
    let mut in_file = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("dead")).unwrap() {
        for line in std::fs::read_to_string(entry.unwrap().path())
            .unwrap()
            .lines()
        {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["partition"], "mixed/0");
            in_file.push(v["position"].as_u64().unwrap());
        }
    }
    in_file.sort();
    assert_eq!(in_file, bad_offsets);
    // The topic: the original record, keyed by partition, with the reason.
    drop(engine); // flushes the dead-letter producer
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "test.dead")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("mixed.dead", 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut in_topic = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while in_topic.len() < bad_offsets.len() && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            assert_eq!(m.key(), Some(&b"mixed/0"[..]));
            let headers: BTreeMap<String, String> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let offset: u64 = headers["statflow.offset"].parse().unwrap();
            assert_eq!(
                m.payload(),
                Some(lines[offset as usize].as_bytes()),
                "the original record"
            );
            assert!(!headers["statflow.reason"].is_empty());
            assert_eq!(headers["statflow.source"], "events");
            in_topic.push(offset);
        }
    }
    in_topic.sort();
    assert_eq!(in_topic, bad_offsets);
}

#[test]
fn kafka_metadata_fields_reach_the_topology() {
    let _broker = one_broker();
    let broker = Tansu::start();
    broker.create_topic("meta", 3);
    let lines = events(900, 29);
    produce(&broker.brokers(), "meta", &lines);
    let dir = tempfile::tempdir().unwrap();
    let plan = statflow::dsl::compile(
        r#"source events = kafka("meta") { time = _kafka.timestamp as epoch_millis }
metric per_partition from events {
  where      _kafka.topic = "meta" and _kafka.offset >= 0
  dimensions _kafka.partition
  window     tumbling 1h
  measures   { n = count()  keys = distinct(_kafka.key)  users = distinct(user_id) }
}"#,
        Some(dir.path()),
    )
    .plan
    .expect("a plan");
    let options = SourceOptions::for_plan(&plan).with_kafka_brokers(Some(broker.brokers()));
    let engine = Engine::start(plan.clone(), config(2, dir.path()), readers_with(options)).unwrap();
    let epoch = caught_up(&engine, 3, lines.len() as u64);
    let status = engine.status_blocking().unwrap();
    let ends: BTreeMap<String, u64> = status
        .reports
        .iter()
        .flat_map(|r| {
            r.sources[0]
                .partitions
                .iter()
                .map(|p| (p.name.clone(), p.position))
        })
        .collect();
    let mut q = queries(&plan).remove(0);
    q.group_by = vec![GroupKey::Dimension(0)];
    q.from_ms = 0;
    q.to_ms = i64::MAX / 2;
    let deadline = Instant::now() + PATIENCE;
    let answer = loop {
        let a = engine.query_blocking(q.clone()).unwrap();
        if a.as_of.epoch >= epoch {
            break a;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(answer.rows.len(), 3, "{:?}", answer.rows);
    for row in &answer.rows {
        let Cell::Value(p) = &row[0] else {
            panic!("{row:?}")
        };
        let name = format!(
            "meta/{}",
            match p {
                statflow::dataflow::value::Value::Int(i) => i.to_string(),
                other => panic!("a partition number, not {other:?}"),
            }
        );
        // Every message of the partition, counted once; keys are user ids.
        assert_eq!(row[1], Cell::Int(ends[&name] as i64), "{name}");
        assert_eq!(row[2], row[3], "the key is the user id");
    }
}

#[test]
fn checkpointed_positions_resume_exactly_on_another_worker_count() {
    use statflow::runtime::checkpoint::{self, CheckpointConfig};
    let _broker = one_broker();
    let lines = events(8_000, 31);
    let want = file_answers(&lines);
    let (first, second) = lines.split_at(4_000);
    let broker = Tansu::start();
    broker.create_topic("durable", 4);
    produce(&broker.brokers(), "durable", first);
    let dir = tempfile::tempdir().unwrap();
    let source = r#"source events = kafka("durable") { time = ts as epoch_millis  late = 10m }"#;
    let plan = compile(source, dir.path());
    let with_checkpoints = |workers| EngineConfig {
        checkpoints: Some(CheckpointConfig {
            keep: 2,
            ..CheckpointConfig::under(dir.path(), Duration::from_millis(50))
        }),
        ..config(workers, dir.path())
    };
    let factory =
        || readers_with(SourceOptions::for_plan(&plan).with_kafka_brokers(Some(broker.brokers())));
    // The first run reads the first half, then stops while the second half
    // is being produced and read.
    let engine = Engine::start(plan.clone(), with_checkpoints(2), factory()).unwrap();
    caught_up(&engine, 4, first.len() as u64);
    let producing = {
        let (brokers, second) = (broker.brokers(), second.to_vec());
        std::thread::spawn(move || produce(&brokers, "durable", &second))
    };
    std::thread::sleep(Duration::from_millis(300));
    engine.shutdown();
    drop(engine);
    producing.join().unwrap();
    let complete = checkpoint::list(&dir.path().join("checkpoints"))
        .unwrap()
        .into_iter()
        .filter(|(_, c)| *c)
        .count();
    assert!(complete > 0, "the first run completed a checkpoint");
    // The second run, on three workers, resumes from the newest checkpoint:
    // every event counted once, none lost.
    let engine = Engine::start(plan.clone(), with_checkpoints(3), factory()).unwrap();
    assert!(
        engine.shared().restored_from.is_some(),
        "resumed from a checkpoint"
    );
    let deadline = Instant::now() + PATIENCE;
    let epoch = loop {
        let status = engine.status_blocking().unwrap();
        let parts: Vec<_> = status
            .reports
            .iter()
            .flat_map(|r| r.sources[0].partitions.iter())
            .collect();
        let position: u64 = parts.iter().map(|p| p.position).sum();
        if parts.len() == 4
            && parts.iter().all(|p| p.end == Some(p.position))
            && position == lines.len() as u64
        {
            break status.reports.iter().map(|r| r.epoch).max().unwrap_or(0);
        }
        assert!(Instant::now() < deadline, "not caught up: {parts:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_same(
        &answers(&engine, &plan, epoch),
        &want,
        "resumed from a checkpoint",
    );
}

#[test]
fn a_timestamp_start_skips_older_messages() {
    use statflow::dataflow::ingest::{RecordReader, Resume};
    use statflow::dsl::{KafkaSource, StartPosition, Topics};
    use statflow::runtime::source::kafka::KafkaReader;
    let _broker = one_broker();
    let broker = Tansu::start();
    broker.create_topic("timed", 2);
    let lines = events(30, 37);
    produce(&broker.brokers(), "timed", &lines[..20]);
    std::thread::sleep(Duration::from_millis(100));
    let cut = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    std::thread::sleep(Duration::from_millis(100));
    produce(&broker.brokers(), "timed", &lines[20..]);
    let kafka = KafkaSource {
        topics: Topics::Names(vec!["timed".into()]),
        brokers: Vec::new(),
        start: StartPosition::Timestamp(cut),
        settings: BTreeMap::from([(
            "statflow.discovery.interval.ms".to_string(),
            "200".to_string(),
        )]),
        dead_letters: None,
    };
    let mut reader = KafkaReader::open(
        "timed",
        &kafka,
        broker.brokers(),
        0,
        1,
        &Resume::new(),
        false,
    )
    .unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Read for a while after the ten newer ones arrived: nothing older may follow.
    let mut quiet_until = None;
    while Instant::now() < deadline && quiet_until.is_none_or(|q| Instant::now() < q) {
        reader.read(100, &mut |r, _| {
            seen.push(String::from_utf8_lossy(r).into_owned())
        });
        if seen.len() >= 10 && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_secs(1));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    seen.sort();
    let mut want = lines[20..].to_vec();
    want.sort();
    assert_eq!(
        seen, want,
        "exactly the messages produced after the start time"
    );
    assert_eq!(reader.partitions().len(), 2);
}
