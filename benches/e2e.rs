//! End to end: generator events as JSON lines, read from a file by the
//! engine with 1 and 2 workers, against a plain single-threaded loop over
//! the same file, measured in the same run. Two plain loops are also run at
//! once, each on its own copy of the work: what two busy cores of the
//! machine give a program that shares nothing, beside what they give the
//! engine.
//!
//! The metric is "1-minute tumbling windows by (game_id, reward_type):
//! count, sum(amount), distinct(user_id)". The plain loop parses each line
//! with serde_json and keeps exact sets of users in a hash map; the engine
//! runs the topology in [`TOPOLOGY`]. Each variant runs in its own child
//! process (this binary again, with `--variant`), so that the peak resident
//! memory each reports (`VmHWM`) is its own and no variant warms another's
//! allocator. After ingest, the engine child also times 200 runs of a 24 h
//! query grouped by `reward_type` at 1 h granularity: first with every
//! worker's query cache off (each run reads all 633,593 rows), then with it
//! on (the runs after the first take the whole hours from the cache), and
//! checks that both give the same answer.
//!
//! ```text
//! cargo bench --bench e2e                                # 5,000,000 events
//! STATFLOW_BENCH_EVENTS=200000 cargo bench --bench e2e   # small and quick
//! ```
//!
//! Settings, all optional:
//!
//! - `STATFLOW_BENCH_EVENTS`: events in the generated file (5,000,000).
//! - `STATFLOW_BENCH_FILE`: use this file of JSON lines instead of generating one.
//! - `STATFLOW_BENCH_WORKERS`: engine worker counts to run, comma-separated (`1,2`).
//! - `STATFLOW_BENCH_RUNS`: runs of every variant; the table shows the median (3).
//! - `STATFLOW_BENCH_BATCH`, `STATFLOW_BENCH_EPOCH_RECORDS`,
//!   `STATFLOW_BENCH_EPOCH_MS`: the engine's `batch`, `epoch_records` and
//!   `epoch_interval` (10,000, 100,000 and 200 ms, the engine's default).
//! - `STATFLOW_BENCH_QUERY_RUNS`: timed runs of the latency query (200);
//!   0 skips them, to profile ingest alone.
//! - `STATFLOW_BENCH_QUERY_TRACE`: set, prints every timed query's
//!   milliseconds in the order they ran (to see when the slow ones come).
//! - `STATFLOW_BENCH_HOURLY`: 1 runs the engine with hourly rows
//!   (`statflow run --hourly-rollups`); 0, the default, without.
//!
//! This is a benchmark, not a test: it prints figures and targets, and
//! fails only when the engine's counts disagree with the plain loop's.

mod common;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{
    arg_value, bench_file, env_number, machine, process, spawn_variant, thousands, DEFAULT_BATCH,
    DEFAULT_EPOCH_MS, DEFAULT_EPOCH_RECORDS, DEFAULT_EVENTS, HOUR_MS, RESULT_MARK, TOPOLOGY,
};
use serde::{Deserialize, Serialize};
use statflow::dataflow::query::{Cell, GroupKey, Query};
use statflow::runtime::engine::{Engine, QUERY_CACHE_BYTES};

/// The allocator of the `statflow` binary (see src/main.rs), for the plain
/// loop and the engine alike, so that peak memory is what a real run has.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs of every variant unless `STATFLOW_BENCH_RUNS` says otherwise; the
/// table shows the median run of each, as other work on the machine can
/// slow any single run.
const DEFAULT_RUNS: u64 = 3;

/// Runs of the latency query that are timed, after a few untimed ones.
const QUERY_RUNS: u64 = 200;
const QUERY_WARMUP: usize = 5;

/// One variant's figures, printed by the child as one JSON line after
/// [`RESULT_MARK`] and read back by the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measured {
    /// `plain` or `engine`.
    variant: String,
    workers: usize,
    /// From opening the file (plain) or `Engine::start` (engine) until every
    /// event is counted and queryable.
    seconds: f64,
    /// CPU time (user and system, every thread) over the same interval: on
    /// a shared machine it moves less with other load than `seconds` does.
    cpu_seconds: f64,
    /// Lines read.
    events: u64,
    /// Peak resident set (`VmHWM`) after ingest (and, for the engine, the
    /// latency runs), in KiB.
    peak_rss_kib: u64,
    /// Reward events counted.
    rewards: u64,
    /// (minute, game_id, reward_type) groups.
    groups: u64,
    /// Sum of `amount` over all reward events.
    amount: f64,
    /// Sum over groups of the distinct users in each (estimated by the engine).
    players: u64,
    /// Latency of the 24 h query in milliseconds, p50 and p99 (engine only).
    latency_ms: Option<(f64, f64)>,
    /// The same with the engine's query cache off: every run reads every row.
    cold_latency_ms: Option<(f64, f64)>,
    /// Records the engine could not count.
    errors: u64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.iter().any(|a| a == "--variant") {
        child::run(&args)
    } else {
        parent::run()
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The parent: makes the file, runs every variant in a child, prints the table.
mod parent {
    use super::*;

    pub fn run() -> anyhow::Result<ExitCode> {
        let events = env_number("STATFLOW_BENCH_EVENTS", DEFAULT_EVENTS)?;
        let workers: Vec<usize> = match std::env::var("STATFLOW_BENCH_WORKERS") {
            Ok(list) => list
                .split(',')
                .map(|w| w.trim().parse())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("STATFLOW_BENCH_WORKERS={list}: {e}"))?,
            Err(_) => vec![1, 2],
        };
        machine::print();

        let (file, bytes) = bench_file(events)?;
        println!(
            "file:    {} ({:.0} MiB, read once beforehand so that every variant finds it in the page cache)",
            file.display(),
            bytes as f64 / (1024.0 * 1024.0)
        );
        println!(
            "engine:  batch {}, epoch_records {}, epoch_interval {} ms",
            env_number("STATFLOW_BENCH_BATCH", DEFAULT_BATCH)?,
            env_number("STATFLOW_BENCH_EPOCH_RECORDS", DEFAULT_EPOCH_RECORDS)?,
            env_number("STATFLOW_BENCH_EPOCH_MS", DEFAULT_EPOCH_MS)?
        );
        println!();

        // Rounds of every variant in turn, so that a burst of other load on
        // the machine hits one run of each rather than every run of one.
        let runs = env_number("STATFLOW_BENCH_RUNS", DEFAULT_RUNS)?.max(1);
        let mut all: Vec<Vec<Measured>> = vec![Vec::new(); 1 + workers.len()];
        let mut pairs = Vec::new();
        for _ in 0..runs {
            all[0].push(spawn_variant(
                &["--variant", "plain", "--workers", "1"],
                &file,
            )?);
            pairs.push(plain_pair(&file)?);
            for (i, w) in workers.iter().enumerate() {
                all[i + 1].push(spawn_variant(
                    &["--variant", "engine", "--workers", &w.to_string()],
                    &file,
                )?);
            }
        }
        report(&all, &pairs)
    }

    /// Two plain loops at once, each in its own child, as one row: both
    /// loops' events over the slower one's seconds. Two busy cores of a
    /// machine can run slower each than one alone (they share caches,
    /// memory and, on a virtual machine, the host), so this is the most
    /// two cores gave any program in the same run.
    fn plain_pair(file: &std::path::Path) -> anyhow::Result<Measured> {
        let args = ["--variant", "plain", "--workers", "1"];
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| spawn_variant::<Measured>(&args, file));
            let b = spawn_variant::<Measured>(&args, file);
            (a.join(), b)
        });
        let a = a.map_err(|_| anyhow::anyhow!("a plain loop's thread panicked"))??;
        let b = b?;
        Ok(Measured {
            variant: "plain, two at once".into(),
            workers: 2,
            seconds: a.seconds.max(b.seconds),
            cpu_seconds: a.cpu_seconds + b.cpu_seconds,
            events: a.events + b.events,
            peak_rss_kib: a.peak_rss_kib + b.peak_rss_kib,
            ..a
        })
    }

    /// The run with the median wall time (the slower middle one of an even count).
    fn median(runs: &[Measured]) -> Measured {
        let mut sorted = runs.to_vec();
        sorted.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        sorted[sorted.len() / 2].clone()
    }

    /// Prints the median run of each variant (`all[0]` is the plain loop),
    /// the cross-check of every run, and the targets.
    fn report(all: &[Vec<Measured>], pairs: &[Measured]) -> anyhow::Result<ExitCode> {
        let results: Vec<Measured> = all.iter().map(|runs| median(runs)).collect();
        let pair = median(pairs);
        let plain = &results[0];
        let plain_rate = plain.events as f64 / plain.seconds;
        let plain_cpu_rate = plain.events as f64 / plain.cpu_seconds;
        println!();
        println!(
            "| variant | workers | seconds | events/s | vs plain | CPU s | events/CPU-s | vs plain | peak RSS MiB | vs plain | query p50 ms | query p99 ms | uncached p50 ms | uncached p99 ms |"
        );
        println!("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        let rows = std::iter::once(&results[0])
            .chain(std::iter::once(&pair))
            .chain(&results[1..]);
        for r in rows {
            let rate = r.events as f64 / r.seconds;
            let cpu_rate = r.events as f64 / r.cpu_seconds;
            let shown = |latency: Option<(f64, f64)>| match latency {
                Some((p50, p99)) => (format!("{p50:.1}"), format!("{p99:.1}")),
                None => ("–".into(), "–".into()),
            };
            let (p50, p99) = shown(r.latency_ms);
            let (cold50, cold99) = shown(r.cold_latency_ms);
            println!(
                "| {} | {} | {:.2} | {} | {:.2}× | {:.2} | {} | {:.2}× | {:.0} | {:.2}× | {} | {} | {} | {} |",
                r.variant,
                r.workers,
                r.seconds,
                thousands(rate as u64),
                rate / plain_rate,
                r.cpu_seconds,
                thousands(cpu_rate as u64),
                cpu_rate / plain_cpu_rate,
                r.peak_rss_kib as f64 / 1024.0,
                r.peak_rss_kib as f64 / plain.peak_rss_kib as f64,
                p50,
                p99,
                cold50,
                cold99,
            );
        }
        println!();
        if all[0].len() > 1 {
            println!(
                "each row is the run with the median wall time of {}; every run's seconds:",
                all[0].len()
            );
            let every = std::iter::once(all[0].as_slice())
                .chain(std::iter::once(pairs))
                .chain(all[1..].iter().map(Vec::as_slice));
            for runs in every {
                let seconds: Vec<String> =
                    runs.iter().map(|r| format!("{:.2}", r.seconds)).collect();
                println!(
                    "  {} {}: {}",
                    runs[0].variant,
                    runs[0].workers,
                    seconds.join(" ")
                );
            }
            // The machine's speed drifts between rounds; a round's runs are
            // close in time, so these ratios move less with it.
            println!("each round's engine run against the same round's plain loop (events/s):");
            for runs in &all[1..] {
                let ratios: Vec<String> = all[0]
                    .iter()
                    .zip(runs)
                    .map(|(plain, engine)| {
                        let rate = |m: &Measured| m.events as f64 / m.seconds;
                        format!("{:.2}×", rate(engine) / rate(plain))
                    })
                    .collect();
                println!("  engine {}: {}", runs[0].workers, ratios.join(" "));
            }
            println!();
        }

        let mut agree = true;
        println!(
            "plain loop: {} reward events in {} groups, amount {:.2}, {} players summed over groups",
            plain.rewards, plain.groups, plain.amount, plain.players
        );
        for (r, runs) in results[1..].iter().zip(&all[1..]) {
            // Every run must agree, not only the median one.
            let same = runs
                .iter()
                .all(|r| r.rewards == plain.rewards && r.groups == plain.groups && r.errors == 0);
            agree &= same;
            println!(
                "engine, {} worker(s): {} reward events in {} groups, amount {:.2}, {} players (estimated), {} bad records: {}",
                r.workers,
                r.rewards,
                r.groups,
                r.amount,
                r.players,
                r.errors,
                if same { "counts agree" } else { "COUNTS DISAGREE" }
            );
        }
        println!();

        if let Some(two) = results[1..].iter().find(|r| r.workers == 2) {
            let speed = (two.events as f64 / two.seconds) / plain_rate;
            let memory = two.peak_rss_kib as f64 / plain.peak_rss_kib as f64;
            println!(
                "target, 2 workers at least 2× the plain loop's events/s: {:.2}× ({}); two plain loops at once gave {:.2}×",
                speed,
                met(speed >= 2.0),
                (pair.events as f64 / pair.seconds) / plain_rate
            );
            println!(
                "target, 2 workers' peak memory at most the plain loop's: {:.2}× ({})",
                memory,
                met(memory <= 1.0)
            );
        }
        for r in &results[1..] {
            if let Some((_, p99)) = r.latency_ms {
                println!(
                    "target, query p99 at most 50 ms with {} worker(s): {p99:.2} ms ({}); uncached: {}",
                    r.workers,
                    met(p99 <= 50.0),
                    r.cold_latency_ms.map_or_else(
                        || "not measured".to_string(),
                        |(_, cold)| format!("{cold:.2} ms ({})", met(cold <= 50.0))
                    )
                );
            }
        }
        Ok(if agree {
            ExitCode::SUCCESS
        } else {
            eprintln!("error: the engine's counts differ from the plain loop's");
            ExitCode::FAILURE
        })
    }

    fn met(ok: bool) -> &'static str {
        if ok {
            "met"
        } else {
            "missed"
        }
    }
}

/// A child: one variant, one JSON line of results.
mod child {
    use super::*;

    pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
        let arg = |name: &str| arg_value(args, name);
        let variant = arg("--variant")?.as_str();
        let workers: usize = arg("--workers")?.parse()?;
        let file = PathBuf::from(arg("--file")?);
        let measured = match variant {
            "plain" => plain::run(&file)?,
            "engine" => engine::run(&file, workers)?,
            other => anyhow::bail!("unknown variant {other}"),
        };
        println!("{RESULT_MARK}{}", serde_json::to_string(&measured)?);
        Ok(ExitCode::SUCCESS)
    }
}

/// The baseline: one thread, serde_json, a hash map of exact sets.
mod plain {
    use super::*;

    use common::PlainEvent as Event;

    /// Hash maps and sets with foldhash, the hasher of the engine's
    /// per-epoch rows, so that the comparison is between the two designs
    /// rather than between SipHash and foldhash.
    type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
    type Set<T> = HashSet<T, foldhash::fast::RandomState>;

    /// One group's state: exact, as a program without sketches would keep it.
    #[derive(Default)]
    struct Group {
        count: u64,
        amount: f64,
        users: Set<Box<str>>,
    }

    /// Game ids and reward types are few, so they are interned to small
    /// numbers and a group key is three integers: no string is allocated
    /// per event except a user seen for the first time in its group.
    #[derive(Default)]
    struct Interner {
        ids: Map<Box<str>, u32>,
    }

    impl Interner {
        fn id(&mut self, name: Option<&str>) -> u32 {
            let name = name.unwrap_or("");
            if let Some(id) = self.ids.get(name) {
                return *id;
            }
            let id = self.ids.len() as u32;
            self.ids.insert(name.into(), id);
            id
        }
    }

    pub fn run(file: &Path) -> anyhow::Result<Measured> {
        let started = Instant::now();
        let cpu_started = process::cpu_seconds();
        let mut reader = BufReader::with_capacity(1 << 20, File::open(file)?);
        let mut games = Interner::default();
        let mut types = Interner::default();
        let mut groups: Map<(i64, u32, u32), Group> = Map::default();
        let mut line = Vec::with_capacity(512);
        let (mut events, mut bad) = (0u64, 0u64);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            events += 1;
            let Ok(event) = serde_json::from_slice::<Event<'_>>(&line) else {
                bad += 1;
                continue;
            };
            if event.kind != "reward" {
                continue;
            }
            let minute = event.ts.div_euclid(60_000) * 60_000;
            let key = (
                minute,
                games.id(event.game_id.as_deref()),
                types.id(event.reward_type.as_deref()),
            );
            let group = groups.entry(key).or_default();
            group.count += 1;
            group.amount += event.amount.unwrap_or(0.0);
            if let Some(user) = event.user_id.as_deref() {
                if !group.users.contains(user) {
                    group.users.insert(user.into());
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = process::cpu_seconds() - cpu_started;
        let peak_rss_kib = process::peak_rss_kib();
        // Use the whole state, so that none of the work can be optimized away.
        let rewards = groups.values().map(|g| g.count).sum();
        let amount = groups.values().map(|g| g.amount).sum();
        let players = groups.values().map(|g| g.users.len() as u64).sum();
        println!(
            "plain: {events} lines, {bad} unreadable, {} groups, {} game ids, {} reward types",
            groups.len(),
            games.ids.len(),
            types.ids.len()
        );
        Ok(Measured {
            variant: "plain".into(),
            workers: 1,
            seconds,
            cpu_seconds,
            events,
            peak_rss_kib,
            rewards,
            groups: groups.len() as u64,
            amount,
            players,
            latency_ms: None,
            cold_latency_ms: None,
            errors: bad,
        })
    }
}

/// The engine on a file source.
mod engine {
    use super::*;

    pub fn run(file: &Path, workers: usize) -> anyhow::Result<Measured> {
        // As `statflow run` does; the plain loop keeps the defaults, with
        // which its peak memory was the lower of the two.
        statflow::runtime::engine::small_pages();
        let plan = common::plan(TOPOLOGY, file)?;
        let dead_letters =
            std::env::temp_dir().join(format!("statflow-e2e-{}", std::process::id()));
        let config = common::engine_config(workers, dead_letters.clone())?;

        let started = Instant::now();
        let cpu_started = process::cpu_seconds();
        let engine = Engine::start(plan, config, statflow::runtime::source::readers())?;
        engine.wait_until_done()?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = process::cpu_seconds() - cpu_started;

        let shared = engine.shared();
        let stat = |f: fn(&statflow::dataflow::ingest::SourceStats) -> u64| -> u64 {
            shared.workers.iter().map(|w| f(&w.sources[0])).sum()
        };
        let events = stat(|s| s.records.load(std::sync::atomic::Ordering::Relaxed));
        let errors = stat(|s| s.errors.load(std::sync::atomic::Ordering::Relaxed));
        let newest = shared
            .workers
            .iter()
            .filter_map(|w| w.sources[0].max_event())
            .max()
            .ok_or_else(|| anyhow::anyhow!("the engine saw no event"))?;

        // The last 24 whole hours of the data, grouped by reward type and hour.
        let to_ms = (newest.div_euclid(HOUR_MS) + 1) * HOUR_MS;
        let latency_query = Query {
            metric: 0,
            from_ms: to_ms - 24 * HOUR_MS,
            to_ms,
            filter: None,
            group_by: vec![GroupKey::Dimension(1), GroupKey::Time],
            granularity_ms: Some(HOUR_MS as u64),
            time_zone: None,
            measures: vec![0, 1, 2],
            order_by: Vec::new(),
            limit: None,
            late: false,
        };
        let mut rows = 0;
        for _ in 0..QUERY_WARMUP {
            rows = engine.query_blocking(latency_query.clone())?.rows.len();
        }
        let runs = env_number("STATFLOW_BENCH_QUERY_RUNS", QUERY_RUNS)?;
        let timed = || -> anyhow::Result<Option<(f64, f64)>> {
            let mut times: Vec<Duration> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    engine
                        .query_blocking(latency_query.clone())
                        .map(|_| t.elapsed())
                })
                .collect::<Result<_, _>>()?;
            if std::env::var_os("STATFLOW_BENCH_QUERY_TRACE").is_some() {
                let ms: Vec<String> = times
                    .iter()
                    .map(|t| format!("{:.0}", t.as_secs_f64() * 1e3))
                    .collect();
                eprintln!("query times in order (ms): {}", ms.join(" "));
            }
            times.sort();
            let percentile = |q: f64| {
                // Nearest rank: the smallest time at or above a fraction q of the runs.
                let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
                times[rank - 1].as_secs_f64() * 1e3
            };
            Ok((!times.is_empty()).then(|| (percentile(0.50), percentile(0.99))))
        };
        // The same query again and again, as a dashboard asks it: first
        // with every worker's query cache off, so each run reads all the
        // rows, then with it on, so that after the first run the whole
        // hours come from the cache.
        let cache_bytes = |bytes: usize| {
            for w in &shared.workers {
                w.query_cache
                    .capacity
                    .store(bytes, std::sync::atomic::Ordering::Relaxed);
            }
        };
        cache_bytes(0);
        let uncached = engine.query_blocking(latency_query.clone())?;
        let cold_latency = timed()?;
        cache_bytes(QUERY_CACHE_BYTES);
        let cached = engine.query_blocking(latency_query.clone())?;
        let latency = timed()?;
        // Read before the cross-check below, whose one-off answer of every
        // group is not part of the engine's working state.
        let peak_rss_kib = process::peak_rss_kib();
        // Cached and uncached answers are the same, to the bit.
        anyhow::ensure!(
            engine.query_blocking(latency_query.clone())?.rows == uncached.rows
                && cached.rows == uncached.rows,
            "the cached answer differs from the uncached one"
        );

        // Cross-check: every (minute, game, type) group over all time.
        let everything = Query {
            from_ms: 0,
            to_ms: 1 << 50,
            group_by: vec![
                GroupKey::Time,
                GroupKey::Dimension(0),
                GroupKey::Dimension(1),
            ],
            granularity_ms: None,
            ..latency_query
        };
        let answer = engine.query_blocking(everything)?;
        let (mut rewards, mut amount, mut players) = (0u64, 0f64, 0u64);
        for row in &answer.rows {
            if let [_, _, _, Cell::Int(n), Cell::Float(a), Cell::Int(p)] = row.as_slice() {
                rewards += *n as u64;
                amount += a;
                players += *p as u64;
            }
        }
        println!(
            "engine, {workers} worker(s): {events} records, {errors} bad, 24 h query answers {rows} rows, as of epoch {}",
            answer.as_of.epoch
        );
        engine.shutdown();
        let _ = std::fs::remove_dir_all(&dead_letters);
        Ok(Measured {
            variant: "engine".into(),
            workers,
            seconds,
            cpu_seconds,
            events,
            peak_rss_kib,
            rewards,
            groups: answer.rows.len() as u64,
            amount,
            players,
            latency_ms: latency,
            cold_latency_ms: cold_latency,
            errors,
        })
    }
}
