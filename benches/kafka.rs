//! Kafka → rollup: the engine reading generated events from a 4-partition
//! topic on a real broker (Tansu, started here on loopback), beside the
//! file source on the same events and beside a plain librdkafka consumer
//! that only counts messages, all in the same run; then freshness: events
//! produced at a steady rate, and the time from producing each one to a
//! query counting it (p50, p99).
//!
//! ```text
//! cargo bench --bench kafka                                  # 500,000 events
//! STATFLOW_BENCH_EVENTS=100000 cargo bench --bench kafka     # small and quick
//! ```
//!
//! Settings, all optional: `STATFLOW_BENCH_EVENTS` (500,000),
//! `STATFLOW_BENCH_WORKERS` (`1,2`), `STATFLOW_BENCH_RATE` (events per
//! second for freshness, 2,000), `STATFLOW_BENCH_SECONDS` (how long
//! freshness produces, 15), `STATFLOW_BENCH_EPOCH_MS` (the engine's epoch
//! interval, 200, the default). The broker is Tansu from `PATH`, or `TANSU`.
//!
//! This is a benchmark, not a test: it prints figures, and fails only when
//! a source's count disagrees with the number of events.

#[path = "../tests/support/tansu.rs"]
#[allow(dead_code)]
mod tansu;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use statflow::dataflow::query::{Cell, Query};
use statflow::dsl::{GeneratorSource, Plan};
use statflow::runtime::engine::{Engine, EngineConfig};
use statflow::runtime::source::generator::Generator;
use statflow::runtime::source::kafka::producer::{produce_lines, producer};
use statflow::runtime::source::{readers, readers_with, SourceOptions};

/// The metric: the same as the end-to-end benchmark's.
const METRIC: &str = r#"
metric reward_stats from s {
  where kind = "reward"
  dimensions game_id, reward_type
  window tumbling 1m
  measures {
    rewards = count()
    amount  = sum(amount)
    players = distinct(user_id)
  }
}

metric all from s {
  window tumbling 1h
  measures { n = count() }
}
"#;

const TOPIC: &str = "bench.events";
const PARTITIONS: u32 = 4;

fn main() -> ExitCode {
    // The engine runs here as under `statflow run`.
    statflow::runtime::engine::small_pages();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .replace(['_', ','], "")
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={v}: {e}")),
        Err(_) => Ok(default),
    }
}

fn run() -> anyhow::Result<()> {
    let events = env_number("STATFLOW_BENCH_EVENTS", 500_000)?;
    let rate = env_number("STATFLOW_BENCH_RATE", 2_000)?;
    let seconds = env_number("STATFLOW_BENCH_SECONDS", 15)?;
    let epoch_ms = env_number("STATFLOW_BENCH_EPOCH_MS", 200)?;
    let workers: Vec<usize> = std::env::var("STATFLOW_BENCH_WORKERS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .map(|w| w.trim().parse())
        .collect::<Result<_, _>>()?;

    let dir = tempfile::tempdir()?;
    let file = dir.path().join("events.jsonl");
    let lines = generate(events);
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    std::fs::write(&file, lines.join("\n") + "\n")?;
    println!(
        "events: {events} ({:.1} MiB of JSON lines)",
        bytes as f64 / 1048576.0
    );

    let broker = tansu::Tansu::start();
    broker.create_topic(TOPIC, PARTITIONS);
    let brokers = broker.brokers();
    let started = Instant::now();
    let p = producer(&brokers, &BTreeMap::new())?;
    let done = produce_lines(
        &p,
        TOPIC,
        Some("user_id"),
        std::io::BufReader::new(std::fs::File::open(&file)?),
        Duration::from_secs(600),
        |_| {},
    )?;
    anyhow::ensure!(
        done.delivered == events,
        "only {} of {events} delivered",
        done.delivered
    );
    let produce_s = started.elapsed().as_secs_f64();
    println!(
        "produce into {PARTITIONS} partitions (lz4, keyed by user_id): {:>9.0} messages/s ({produce_s:.2} s)",
        events as f64 / produce_s
    );

    let plain_s = plain_consumer(&brokers, events)?;
    println!(
        "plain librdkafka consumer, 1 thread, counts only: {:>9.0} messages/s ({plain_s:.2} s)",
        events as f64 / plain_s
    );

    println!(
        "\n{:<28}{:>14}{:>14}{:>10}",
        "engine", "events/s", "seconds", "ratio"
    );
    for w in &workers {
        let file_s = ingest(
            &format!(
                "source s = file({:?}) {{ time = ts as epoch_millis  late = 5m }}",
                file.display().to_string()
            ),
            None,
            *w,
            events,
            epoch_ms,
            dir.path(),
        )?;
        let kafka_s = ingest(
            &format!("source s = kafka({TOPIC:?}) {{ time = ts as epoch_millis  late = 5m }}"),
            Some(&brokers),
            *w,
            events,
            epoch_ms,
            dir.path(),
        )?;
        println!(
            "{:<28}{:>14.0}{:>14.2}{:>10}",
            format!("file, {w} worker(s)"),
            events as f64 / file_s,
            file_s,
            "1.00"
        );
        println!(
            "{:<28}{:>14.0}{:>14.2}{:>10.2}",
            format!("kafka, {w} worker(s)"),
            events as f64 / kafka_s,
            kafka_s,
            file_s / kafka_s
        );
    }

    let f = freshness(&broker, rate, seconds, epoch_ms, dir.path())?;
    println!(
        "\nfreshness: {} events at {rate}/s over {seconds} s into 1 partition; engine epochs of {epoch_ms} ms, queried every 5 ms",
        f.events
    );
    println!(
        "  produce → acknowledged by the broker      {}",
        percentiles(&f.acked)
    );
    println!(
        "  produce → received by a plain consumer    {}",
        percentiles(&f.received)
    );
    println!(
        "  produce → counted by a statflow query     {}",
        percentiles(&f.counted)
    );
    Ok(())
}

/// `n` generator events over 24 hours, as JSON lines.
fn generate(n: u64) -> Vec<String> {
    let config = GeneratorSource {
        rate: 1_000,
        seed: 42,
        events: Some(n),
        games: 200,
        users: 100_000,
    };
    let mut generator = Generator::new(&config, 0, 1);
    let end = 1_735_776_000_000_i64;
    let span = 24 * 3_600_000_i64;
    let mut out = Vec::new();
    (0..n as i64)
        .map_while(|i| {
            out.clear();
            generator.next_into(end - span + span * i / n.max(2) as i64, &mut out)?;
            Some(String::from_utf8_lossy(&out).into_owned())
        })
        .collect()
}

fn compile(source: &str, dir: &std::path::Path) -> anyhow::Result<Plan> {
    let compiled = statflow::dsl::compile(&format!("{source}\n{METRIC}"), Some(dir));
    anyhow::ensure!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    compiled.plan.ok_or_else(|| anyhow::anyhow!("no plan"))
}

/// Seconds from `Engine::start` until every event has been read.
fn ingest(
    source: &str,
    brokers: Option<&str>,
    workers: usize,
    events: u64,
    epoch_ms: u64,
    dir: &std::path::Path,
) -> anyhow::Result<f64> {
    let plan = compile(source, dir)?;
    let config = EngineConfig {
        workers,
        epoch_interval: Duration::from_millis(epoch_ms),
        dead_letter_dir: dir.join("dead"),
        ..EngineConfig::default()
    };
    let factory = match brokers {
        Some(b) => readers_with(SourceOptions::for_plan(&plan).with_kafka_brokers(Some(b.into()))),
        None => readers(),
    };
    let started = Instant::now();
    let engine = Engine::start(plan, config, factory)?;
    let deadline = started + Duration::from_secs(600);
    loop {
        let read: u64 = engine
            .shared()
            .workers
            .iter()
            .map(|w| w.sources[0].records.load(Ordering::Relaxed))
            .sum();
        if read >= events {
            anyhow::ensure!(read == events, "read {read} records of {events}");
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "read {read} of {events} in 10 minutes"
        );
        if let Some(e) = engine.error() {
            anyhow::bail!(e);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds for one librdkafka consumer to receive every message of the
/// topic, doing nothing with them: the client and broker's own limit.
fn plain_consumer(brokers: &str, events: u64) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench.plain")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    let started = Instant::now();
    consumer.assign(&tpl)?;
    let mut n = 0u64;
    while n < events {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => n += 1,
            Some(Err(e)) => anyhow::bail!(e),
            None => anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "only {n} messages"
            ),
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Delivery times by message index, for the freshness producer.
#[derive(Default)]
struct Acks {
    at: std::sync::Mutex<Vec<Option<Instant>>>,
}

impl rdkafka::client::ClientContext for Acks {}

impl rdkafka::producer::ProducerContext for Acks {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, i: Box<usize>) {
        if result.is_ok() {
            if let Ok(mut at) = self.at.lock() {
                if let Some(slot) = at.get_mut(*i) {
                    *slot = Some(Instant::now());
                }
            }
        }
    }
}

/// Freshness, taken apart: for each event, when the broker acknowledged
/// it, when a plain consumer received it, and when a query counted it.
struct Freshness {
    events: usize,
    acked: Vec<f64>,
    received: Vec<f64>,
    counted: Vec<f64>,
}

/// Produces `rate` events per second for `seconds` into a fresh
/// 1-partition topic while an engine reads it, and a query asks for the
/// count every 5 ms. In one partition events are counted in order, so
/// event `i` is visible as soon as the count exceeds `i`. A plain consumer
/// reads the same topic beside it, to tell the broker's part from
/// statflow's.
fn freshness(
    broker: &tansu::Tansu,
    rate: u64,
    seconds: u64,
    epoch_ms: u64,
    dir: &std::path::Path,
) -> anyhow::Result<Freshness> {
    broker.create_topic("bench.fresh", 1);
    let plan = compile(
        r#"source s = kafka("bench.fresh") { time = ts as epoch_millis }"#,
        dir,
    )?;
    let config = EngineConfig {
        workers: 2,
        epoch_interval: Duration::from_millis(epoch_ms),
        dead_letter_dir: dir.join("dead"),
        ..EngineConfig::default()
    };
    let brokers = broker.brokers();
    let options = SourceOptions::for_plan(&plan).with_kafka_brokers(Some(brokers.clone()));
    let engine = Arc::new(Engine::start(plan.clone(), config, readers_with(options))?);
    let total = (rate * seconds) as usize;
    // The plain consumer: the time each message arrived, by index.
    let plain_brokers = brokers.clone();
    let receiver = std::thread::spawn(move || -> anyhow::Result<Vec<Option<Instant>>> {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &plain_brokers)
            .set("group.id", "bench.fresh.plain")
            .set("enable.auto.commit", "false")
            // As statflow's readers do.
            .set("fetch.wait.max.ms", "100")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("bench.fresh", 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let mut at = vec![None; total];
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(seconds + 60);
        while n < total && Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let now = Instant::now();
                let m = m?;
                let i = rdkafka::message::Message::key(&m)
                    .and_then(|k| std::str::from_utf8(k).ok()?.parse::<usize>().ok());
                if let Some(slot) = i.and_then(|i| at.get_mut(i)) {
                    *slot = Some(now);
                    n += 1;
                }
            }
        }
        Ok(at)
    });
    // Let the readers find the partition before the clock starts.
    std::thread::sleep(Duration::from_secs(2));
    let sender = std::thread::spawn(
        move || -> anyhow::Result<(Vec<Instant>, Vec<Option<Instant>>)> {
            let p: rdkafka::producer::BaseProducer<Acks> = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("compression.type", "lz4")
                .set("linger.ms", "5")
                .create_with_context(Acks {
                    at: std::sync::Mutex::new(vec![None; total]),
                })?;
            let start = Instant::now();
            let mut sent = Vec::with_capacity(total);
            let mut line = Vec::new();
            for i in 0..total {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let now_ms = jiff_now_ms();
                line.clear();
                write!(
                    line,
                    r#"{{"kind": "login", "ts": {now_ms}, "user_id": "u{i}"}}"#
                )?;
                let key = i.to_string();
                sent.push(Instant::now());
                let record =
                    rdkafka::producer::BaseRecord::with_opaque_to("bench.fresh", Box::new(i))
                        .key(&key)
                        .payload(&line);
                p.send(record).map_err(|(e, _)| e)?;
                p.poll(Duration::ZERO);
            }
            rdkafka::producer::Producer::flush(&p, Duration::from_secs(30))?;
            let acks = std::mem::take(
                &mut *p
                    .context()
                    .at
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?,
            );
            Ok((sent, acks))
        },
    );
    let metric = plan
        .metrics
        .iter()
        .position(|m| m.name == "all")
        .unwrap_or(0);
    let now = jiff_now_ms();
    let query = Query {
        metric,
        from_ms: now - 86_400_000,
        to_ms: now + 86_400_000,
        filter: None,
        group_by: Vec::new(),
        granularity_ms: None,
        time_zone: None,
        measures: vec![0],
        order_by: Vec::new(),
        limit: None,
        late: false,
    };
    let mut seen: Vec<(Instant, u64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    loop {
        let answer = engine.query_blocking(query.clone())?;
        let count: u64 = answer
            .rows
            .iter()
            .filter_map(|r| match r.last() {
                Some(Cell::Int(n)) => Some(*n as u64),
                _ => None,
            })
            .sum();
        let at = Instant::now();
        if seen.last().is_none_or(|(_, c)| *c < count) {
            seen.push((at, count));
        }
        if count >= total as u64 || at > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (sent, acks) = sender
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    let received = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the consumer thread panicked"))??;
    anyhow::ensure!(
        seen.last().is_some_and(|(_, c)| *c == total as u64),
        "counted {:?} of {total}",
        seen.last()
    );
    let ms = |from: Instant, to: Option<Instant>| {
        to.map(|t| t.saturating_duration_since(from).as_secs_f64() * 1000.0)
    };
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let counted = sent
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            ms(
                *t,
                seen.iter().find(|(_, c)| *c > i as u64).map(|(at, _)| *at),
            )
        })
        .collect();
    let acked = sent
        .iter()
        .zip(&acks)
        .filter_map(|(t, a)| ms(*t, *a))
        .collect();
    let received = sent
        .iter()
        .zip(&received)
        .filter_map(|(t, r)| ms(*t, *r))
        .collect();
    Ok(Freshness {
        events: total,
        acked: sorted(acked),
        received: sorted(received),
        counted: sorted(counted),
    })
}

/// `p50 X ms, p99 Y ms, max Z ms` of sorted milliseconds.
fn percentiles(v: &[f64]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    format!(
        "p50 {:>6.0} ms   p99 {:>6.0} ms   max {:>6.0} ms   ({} events)",
        q(0.5),
        q(0.99),
        q(1.0),
        v.len()
    )
}

fn jiff_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
