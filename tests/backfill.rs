//! Backfill: a metric added to a topology at a restart, then backfilled,
//! ends with the answers it would have had if it had been there from the
//! start — whether the first run stopped part way through its file, whether
//! the backfill itself is interrupted by a restart, on any worker count, in
//! process and through `statflow backfill` against a cluster of processes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use statflow::dataflow::backfill::BackfillOrder;
use statflow::dataflow::query::{Answer, Cell};
use statflow::dsl::Plan;
use statflow::runtime::checkpoint::{self, CheckpointConfig};
use statflow::runtime::engine::{Engine, EngineConfig};
use statflow::runtime::server::backfill::{progress_of, BackfillProgress, BackfillState};

use crate::cluster::{answers, http, write_input, Cluster};

/// The metrics of the cluster tests' topology that join later: a hopping
/// one and a session one.
const JOINING: [&str; 2] = ["sliding", "streaks"];

/// The cluster tests' topology with only its first metric, `rewards`.
fn only_rewards(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("cluster.topo")).unwrap();
    let start = text
        .find("metric sliding")
        .expect("`sliding` follows `rewards`");
    text[..start].to_string()
}

fn compile(dir: &Path, text: &str) -> Plan {
    let compiled = statflow::dsl::compile(text, Some(dir));
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    compiled.plan.unwrap()
}

fn config(dir: &Path, workers: usize) -> EngineConfig {
    EngineConfig {
        workers,
        epoch_interval: Duration::from_millis(10),
        epoch_records: 300,
        batch: 50,
        dead_letter_dir: dir.join("dead"),
        checkpoints: Some(CheckpointConfig {
            keep: 2,
            ..CheckpointConfig::under(dir, Duration::from_millis(30))
        }),
        ..EngineConfig::default()
    }
}

fn start(dir: &Path, plan: &Plan, workers: usize) -> Engine {
    Engine::start(
        plan.clone(),
        config(dir, workers),
        statflow::runtime::source::readers(),
    )
    .unwrap()
}

/// The answers of every cluster query on metric `metric`.
fn ask(engine: &Engine, plan: &Plan, metric: &str) -> Vec<(Vec<String>, Vec<Vec<Cell>>)> {
    crate::cluster::queries()
        .iter()
        .filter(|q| q["metric"] == metric)
        .map(|q| {
            let query = statflow::runtime::query::parse(q.to_string().as_bytes(), None, plan, 0)
                .unwrap_or_else(|e| panic!("{q}: {e:?}"));
            let Answer { columns, rows, .. } = engine.query_blocking(query).unwrap();
            (columns, rows)
        })
        .collect()
}

fn progress(engine: &Engine, plan: &Plan, metric: &str) -> Option<BackfillProgress> {
    let status = engine.status_blocking().unwrap();
    progress_of(plan, &status)
        .into_iter()
        .find(|p| p.metric == metric)
}

fn wait_for_checkpoint(dir: &Path, newer_than: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Folders are named by time; the manifest holds the epoch.
        let checkpoints = dir.join("checkpoints");
        let newest = checkpoint::list(&checkpoints)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, complete)| *complete)
            .filter_map(|(at_ms, _)| {
                let manifest = checkpoint::folder(&checkpoints, at_ms).join(checkpoint::MANIFEST);
                let manifest: checkpoint::Manifest =
                    serde_json::from_slice(&std::fs::read(manifest).ok()?).ok()?;
                Some(manifest.epoch)
            })
            .max();
        if let Some(epoch) = newest.filter(|e| newer_than.is_none_or(|n| *e > n)) {
            return epoch;
        }
        assert!(Instant::now() < deadline, "a checkpoint completes");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_until_backfilled(engine: &Engine, plan: &Plan, metric: &str) -> BackfillProgress {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = progress(engine, plan, metric).expect("the metric has a backfill");
        if p.state == BackfillState::Done {
            return p;
        }
        assert!(Instant::now() < deadline, "the backfill finishes: {p:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_metric_added_later_and_backfilled_equals_one_there_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let full = compile(
        dir.path(),
        &std::fs::read_to_string(dir.path().join("cluster.topo")).unwrap(),
    );
    let early = compile(dir.path(), &only_rewards(dir.path()));
    let reference = {
        let state = tempfile::tempdir().unwrap();
        let mut config = config(state.path(), 2);
        config.checkpoints = None;
        let engine =
            Engine::start(full.clone(), config, statflow::runtime::source::readers()).unwrap();
        engine.wait_until_done().unwrap();
        let answers: Vec<_> = ["rewards", "sliding", "streaks"]
            .iter()
            .map(|m| (*m, ask(&engine, &full, m)))
            .collect();
        engine.shutdown();
        answers
    };
    let reference = |metric: &str| {
        let (_, answers) = reference.iter().find(|(m, _)| *m == metric).unwrap();
        assert!(answers.iter().all(|(_, rows)| !rows.is_empty()), "{metric}");
        answers.clone()
    };
    let order_of = |metric: &str| BackfillOrder {
        metric: full.metrics.iter().position(|m| m.name == metric).unwrap() as u32,
        from_ms: None,
        to_ms: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut handovers_mid_file = 0;
    // Rounds whose first checkpoint came after some records were read.
    let mut with_history = 0;
    for (first, second, third) in [(2, 3, 1), (1, 2, 2), (4, 1, 3)] {
        let state = tempfile::tempdir().unwrap();
        for file in ["events.jsonl", "cluster.topo"] {
            std::fs::copy(dir.path().join(file), state.path().join(file)).unwrap();
        }
        // The first run, with `rewards` only, stops after its first checkpoint.
        let engine = start(state.path(), &early, first);
        wait_for_checkpoint(state.path(), None);
        engine.shutdown();

        // The others join: they count from where the file resumes.
        let engine = start(state.path(), &full, second);
        for metric in JOINING {
            let waiting = progress(&engine, &full, metric).expect("history to fill in");
            assert_eq!(waiting.state, BackfillState::Waiting, "{metric}");
        }
        engine.wait_until_done().unwrap();
        if engine.shared().records_read(0) > 0 {
            handovers_mid_file += 1;
            for metric in JOINING {
                assert_ne!(
                    ask(&engine, &full, metric),
                    reference(metric),
                    "{metric} not backfilled yet"
                );
            }
        }
        for metric in JOINING {
            runtime.block_on(engine.backfill(order_of(metric))).unwrap();
        }
        // Interrupted at a random moment, or not at all.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
        let engine = if rng.random_bool(0.5) {
            engine.shutdown();
            let engine = start(state.path(), &full, third);
            engine.wait_until_done().unwrap();
            // An order no checkpoint holds yet is lost with the run: given again.
            for metric in JOINING {
                if progress(&engine, &full, metric).unwrap().state == BackfillState::Waiting {
                    runtime.block_on(engine.backfill(order_of(metric))).unwrap();
                }
            }
            engine
        } else {
            engine
        };
        for metric in JOINING {
            let done = wait_until_backfilled(&engine, &full, metric);
            // A first checkpoint taken before any record was read leaves no history.
            assert_eq!(done.read, done.total, "{done:?}");
            with_history += usize::from(done.total > 0);
        }
        for metric in ["rewards", "sliding", "streaks"] {
            assert_eq!(
                ask(&engine, &full, metric),
                reference(metric),
                "{metric}: {first}, {second}, {third} workers"
            );
        }

        // A restart after the backfill neither repeats nor loses it.
        let filled = engine.shared().complete_epoch();
        wait_for_checkpoint(state.path(), Some(filled));
        engine.shutdown();
        let engine = start(state.path(), &full, first);
        engine.wait_until_done().unwrap();
        for metric in JOINING {
            assert_eq!(
                wait_until_backfilled(&engine, &full, metric).records,
                0,
                "{metric}: nothing is read again"
            );
            assert_eq!(
                ask(&engine, &full, metric),
                reference(metric),
                "{metric} after a restart"
            );
        }
        engine.shutdown();
    }
    assert!(
        handovers_mid_file > 0 && with_history > 0,
        "some first run stopped part way through the file, after reading some of it"
    );
}

#[test]
fn statflow_backfill_fills_in_a_metric_across_a_cluster_of_processes() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let topology = dir.path().join("cluster.topo");
    let full = std::fs::read_to_string(&topology).unwrap();
    let reference = {
        let cluster = Cluster::start(dir.path(), 1, 2, &["--no-checkpoints"]);
        cluster.wait_until_done();
        let got = answers(&cluster.addresses[0]);
        cluster.stop();
        got
    };
    let flags = ["--checkpoint-interval", "50ms"];
    std::fs::write(&topology, only_rewards(dir.path())).unwrap();
    let cluster = Cluster::start_in(dir.path(), "state", 2, 1, &flags);
    cluster.wait_until_done();
    wait_for_checkpoint(&dir.path().join("state"), None);
    cluster.stop();

    std::fs::write(&topology, &full).unwrap();
    let cluster = Cluster::start_in(dir.path(), "state", 2, 1, &flags);
    cluster.wait_until_done();
    // Any process takes the order for the whole cluster.
    for metric in JOINING {
        let out = Command::new(env!("CARGO_BIN_EXE_statflow"))
            .arg("backfill")
            .arg(&topology)
            .args(["--metric", metric, "--url"])
            .arg(format!("http://{}", cluster.addresses[1]))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains(&format!("backfilled `{metric}`")), "{said}");
    }
    for addr in &cluster.addresses {
        assert!(
            answers(addr) == reference,
            "asking {addr} after the backfill"
        );
    }

    let refused = |order: &str, status: u16, said: &[&str]| {
        let (got, body) = http(&cluster.addresses[0], "POST", "/v1/backfill", order).unwrap();
        assert_eq!(got, status, "{order}: {body}");
        assert!(said.iter().all(|s| body.contains(s)), "{order}: {body}");
    };
    refused(
        r#"{"metric": "slidin"}"#,
        400,
        &["\"path\":\"metric\"", "sliding"],
    );
    refused(r#"{"metric": "rewards"}"#, 409, &["nothing_to_backfill"]);
    refused(
        r#"{"metric": "sliding", "from": "2024-08-20T00:00:00Z"}"#,
        409,
        &["backfill_already_ordered"],
    );
    let (status, body) = http(&cluster.addresses[1], "GET", "/v1/backfill", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    let listed = listed["backfills"].as_array().unwrap();
    assert_eq!(listed.len(), JOINING.len(), "{body}");
    assert!(listed.iter().all(|b| b["state"] == "done"), "{body}");
    cluster.stop();
}

use crate::kafka::tansu;

/// Loads `lines` into `topic` and waits until the broker has them all.
fn produce(brokers: &str, topic: &str, lines: &[&str]) {
    use statflow::runtime::source::kafka::producer::{produce_lines, producer};
    let producer = producer(brokers, &Default::default()).unwrap();
    let text = lines.join("\n") + "\n";
    let produced = produce_lines(
        &producer,
        topic,
        Some("user_id"),
        text.as_bytes(),
        Duration::from_secs(60),
        |_| {},
    )
    .unwrap();
    assert_eq!(produced.delivered, lines.len() as u64, "{produced:?}");
}

/// Waits until the engine has read `records` records, and they are queryable.
fn caught_up(engine: &Engine, records: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let read = || engine.shared().records_read(0);
    while read() < records {
        assert!(Instant::now() < deadline, "read {} of {records}", read());
        std::thread::sleep(Duration::from_millis(20));
    }
    let open = engine.shared().open_epoch();
    while engine.shared().complete_epoch() <= open {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_kafka_metric_is_backfilled_from_the_topic_s_oldest_messages() {
    let broker = tansu::Tansu::start();
    broker.create_topic("backfilled", 4);
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path());
    let events = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
    let lines: Vec<&str> = events.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    // `start = earliest` here; a backfill reads from the oldest message
    // whatever the source says.
    let topology = std::fs::read_to_string(dir.path().join("cluster.topo")).unwrap();
    let with_kafka = |text: &str| {
        text.replace(
            "source events = file(\"events.jsonl\") {",
            "source events = kafka(\"backfilled\") {\n  start = earliest",
        )
    };
    let full = compile(dir.path(), &with_kafka(&topology));
    let early = compile(dir.path(), &with_kafka(&only_rewards(dir.path())));
    let readers =
        statflow::runtime::source::readers_with(statflow::runtime::source::SourceOptions {
            kafka_brokers: Some(broker.brokers()),
            ..Default::default()
        });
    let start = |plan: &Plan, state: &Path, checkpoints: bool| {
        let mut config = config(state, 2);
        if !checkpoints {
            config.checkpoints = None;
        }
        Engine::start(plan.clone(), config, readers.clone()).unwrap()
    };

    produce(&broker.brokers(), "backfilled", first);
    let state = tempfile::tempdir().unwrap();
    let engine = start(&early, state.path(), true);
    caught_up(&engine, first.len() as u64);
    wait_for_checkpoint(state.path(), Some(engine.shared().complete_epoch()));
    engine.shutdown();

    produce(&broker.brokers(), "backfilled", second);
    let engine = start(&full, state.path(), true);
    caught_up(&engine, second.len() as u64);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let order = BackfillOrder {
        metric: full
            .metrics
            .iter()
            .position(|m| m.name == "sliding")
            .unwrap() as u32,
        from_ms: None,
        to_ms: None,
    };
    runtime.block_on(engine.backfill(order)).unwrap();
    let done = wait_until_backfilled(&engine, &full, "sliding");
    assert_eq!(done.records, first.len() as u64, "{done:?}");

    // The same topic read by a run that had `sliding` from the start.
    let fresh = tempfile::tempdir().unwrap();
    let reference = start(&full, fresh.path(), false);
    caught_up(&reference, lines.len() as u64);
    for metric in ["sliding", "rewards"] {
        assert!(
            ask(&engine, &full, metric) == ask(&reference, &full, metric),
            "{metric} after the backfill"
        );
    }
    reference.shutdown();
    engine.shutdown();
}
