//! Durability: what checkpoints cost, how long recovery takes, and whether
//! retention keeps memory flat over a week of event time, each figure
//! beside a baseline measured in the same run.
//!
//! 1. **Checkpoint cost.** The e2e file (5,000,000 generated events over
//!    24 h) and metric ([`TOPOLOGY`]), read by the engine with checkpoints
//!    every second and without, in rounds: events/s and CPU beside each
//!    other. Then the newest complete checkpoint is read back from its
//!    files (bytes ÷ rollup rows × 1,000,000), and the engine's own counters
//!    give the time one checkpoint takes: on the worker thread, reading the
//!    shard out of the rollup (`CheckpointStats::read_micros`), and on the
//!    worker's writer thread, encoding and writing it (`micros`), each over
//!    `shards` (every worker writes its shard at the same time as the others).
//! 2. **Recovery.** The run with checkpoints waits for a checkpoint that
//!    holds every event, stops, and a new `Engine` starts on the same
//!    checkpoint folder: timed until `wait_until_done` returns and a query
//!    answers, beside the original ingest. Its answers must equal the
//!    original's exactly; if not, the benchmark exits with an error
//!    (a correctness check, not a timing).
//! 3. **Long-run memory.** A second file of events spread over 7 days of
//!    event time, counted by [`LONG_TOPOLOGY`] (1-minute windows by game and
//!    country) once with `retain 1d` and once with `retain 30d`, both read
//!    as fast as the engine can, and once more each read at a simulated day
//!    every 10 seconds; resident memory (`VmRSS`) is sampled
//!    as the file is read and printed at the end of every simulated day,
//!    with the rollup's rows at the end.
//!
//! Every variant runs in its own child process (this binary again, with
//! `--variant`), so that each peak resident set is its own.
//!
//! ```text
//! cargo bench --bench durability                                    # the issue's sizes
//! STATFLOW_BENCH_EVENTS=200000 STATFLOW_BENCH_LONG_EVENTS=300000 \
//!   STATFLOW_BENCH_RUNS=1 cargo bench --bench durability            # small and quick
//! ```
//!
//! Settings, all optional:
//!
//! - `STATFLOW_BENCH_PARTS`: which parts to run, `checkpoints` (1 and 2)
//!   and/or `memory` (3), comma-separated (both).
//! - `STATFLOW_BENCH_EVENTS`: events in the 24-hour file (5,000,000).
//! - `STATFLOW_BENCH_LONG_EVENTS`: events in the 7-day file (5,000,000).
//! - `STATFLOW_BENCH_WORKERS`: worker counts for parts 1 and 2 (`1,2`).
//! - `STATFLOW_BENCH_MEMORY_WORKERS`: workers for part 3 (2).
//! - `STATFLOW_BENCH_RUNS`: runs of every variant of part 1; the tables
//!   show the median (3).
//! - `STATFLOW_BENCH_CHECKPOINT_MS`: the checkpoint interval (1,000).
//! - `STATFLOW_BENCH_RETENTION_MS`, `STATFLOW_BENCH_COMPACTION_MS`: the
//!   engine's `retention_period` and `compaction_lag` in part 3 (200 each;
//!   see [`DEFAULT_RETENTION_MS`]).
//! - `STATFLOW_BENCH_SAMPLE_MS`: how often part 3 reads `VmRSS` (50).
//! - `STATFLOW_BENCH_PACED_DAY_S`: seconds a simulated day lasts in part
//!   3's paced run (10).
//! - `STATFLOW_BENCH_BATCH`, `STATFLOW_BENCH_EPOCH_RECORDS`,
//!   `STATFLOW_BENCH_EPOCH_MS`: as in `benches/e2e.rs`.
//!
//! This is a benchmark, not a test: it asserts nothing about time.

mod common;

/// The allocator of the `statflow` binary, so that part 3 measures the
/// resident memory a real run has (see src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    arg_value, data, env_number, machine, process, spawn_variant, thousands, warm_page_cache,
    DAY_MS, DEFAULT_EVENTS, FILE_END_MS, HOUR_MS, RESULT_MARK, TOPOLOGY,
};
use serde::{Deserialize, Serialize};
use statflow::dataflow::query::{Answer, GroupKey, Query};
use statflow::runtime::checkpoint::{self, CheckpointConfig};
use statflow::runtime::engine::{Engine, EngineConfig, Shared};

/// Part 3's metric: every event (no `where`), by game and country, so that
/// each minute of a week holds a few hundred rows; `{path}` and `{retain}`
/// are replaced.
const LONG_TOPOLOGY: &str = r#"
source s = file("{path}") {
  time = ts as epoch_millis
  late = 5m
}

metric activity from s {
  dimensions game_id, country
  window tumbling 1m
  retain {retain}
  measures {
    events  = count()
    amount  = sum(amount)
    players = distinct(user_id)
  }
}
"#;

/// Events in the 7-day file unless `STATFLOW_BENCH_LONG_EVENTS` says otherwise.
const DEFAULT_LONG_EVENTS: u64 = 5_000_000;

/// Days of event time in part 3's file.
const LONG_DAYS: i64 = 7;

/// Runs of every variant of part 1 unless `STATFLOW_BENCH_RUNS` says otherwise.
const DEFAULT_RUNS: u64 = 3;

/// The checkpoint interval of the issue: every second.
const DEFAULT_CHECKPOINT_MS: u64 = 1_000;

/// Part 3's `retention_period` and `compaction_lag`, in milliseconds. The
/// engine reads the file at about a million events a second, so a week of
/// event time passes in a few seconds of wall time and one second of wall
/// time is more than a day of event time. The engine's defaults (evict every
/// 5 s, compact what is 2 s old) are wall-clock periods meant for a real
/// week, where they are nothing beside a day; here they would be days. At
/// 200 ms both stay a fraction of a simulated day.
const DEFAULT_RETENTION_MS: u64 = 200;

/// Seconds of wall time a simulated day lasts in part 3's paced run.
const DEFAULT_PACED_DAY_S: u64 = 10;

/// How often part 3 reads `VmRSS`: a simulated day lasts about a second.
const DEFAULT_SAMPLE_MS: u64 = 50;

/// How long to wait for a checkpoint that holds every event.
const CHECKPOINT_DEADLINE: Duration = Duration::from_secs(120);

/// One run of part 1 (and, with checkpoints, part 2), as the child reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ingest {
    workers: usize,
    checkpoints: bool,
    /// From `Engine::start` until every event is counted and queryable.
    seconds: f64,
    /// CPU time of every thread over the same interval.
    cpu_seconds: f64,
    /// Records read.
    events: u64,
    /// Peak resident set (`VmHWM`) when ingest is done, in KiB.
    peak_rss_kib: u64,
    /// From done until the first answer of the 24-hour query.
    first_answer_seconds: f64,
    /// With checkpoints: what they cost and weigh.
    checkpoint: Option<Checkpointed>,
    /// With checkpoints: the restart from the last one.
    recovery: Option<Recovery>,
}

/// The engine's checkpoint counters and the newest checkpoint's files.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpointed {
    /// Checkpoints completed while the file was being read.
    during_completed: u64,
    /// Shards written while the file was being read, and the time spent
    /// writing them (writer threads) and reading them (worker threads).
    during_shards: u64,
    during_micros: u64,
    during_read_micros: u64,
    /// After ingest: from done until a checkpoint holding every event completed.
    wait_seconds: f64,
    /// Shards written after ingest (each holds the worker's whole state),
    /// and the time spent writing and reading them.
    full_shards: u64,
    full_micros: u64,
    full_read_micros: u64,
    /// The newest complete checkpoint, read back from its files.
    epoch: u64,
    files: usize,
    bytes: u64,
    /// Rollup rows in it (late rows included), and of those the late rows.
    rows: u64,
    late_rows: u64,
}

/// The restart from the checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Recovery {
    /// The checkpoint epoch the new engine resumed from.
    restored_from: Option<u64>,
    /// Until `Engine::start` returned (it reads and decodes the checkpoint).
    start_seconds: f64,
    /// Until `wait_until_done` returned.
    done_seconds: f64,
    /// Until the 24-hour query answered.
    answer_seconds: f64,
    /// Records the new engine read from the file (nothing: all were checkpointed).
    events_read: u64,
    /// Rows of the all-groups answer compared.
    rows: u64,
    /// Rows that differ between the original and the restored answers of
    /// both queries, and whether the columns and row counts match.
    differences: u64,
    equal: bool,
}

/// One run of part 3.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Memory {
    retain: String,
    workers: usize,
    retention_ms: u64,
    compaction_ms: u64,
    /// Events a second the file was read at, over all workers; 0 when as
    /// fast as the engine could.
    #[serde(default)]
    paced: u64,
    seconds: f64,
    events: u64,
    /// `VmHWM` when ingest is done, in KiB.
    peak_rss_kib: u64,
    /// (seconds since start, `VmRSS` KiB, newest event time read, if any).
    samples: Vec<(f64, u64, Option<i64>)>,
    /// `VmRSS` once retention has caught up after done (four retention
    /// periods and the compaction lag later, at least a second).
    end_rss_kib: u64,
    /// Rows the rollup answers for at the end, over all time.
    rows: u64,
    /// Rows retracted by retention.
    evicted_rows: u64,
    /// The answer's `retained_from`.
    retained_from_ms: Option<i64>,
}

fn main() -> ExitCode {
    // The engine runs here as under `statflow run`.
    statflow::runtime::engine::small_pages();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return ExitCode::SUCCESS;
    }
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

/// The parent: makes the files, runs every variant in a child, prints the tables.
mod parent {
    use super::*;

    pub fn run() -> anyhow::Result<ExitCode> {
        let events = env_number("STATFLOW_BENCH_EVENTS", DEFAULT_EVENTS)?;
        let long_events = env_number("STATFLOW_BENCH_LONG_EVENTS", DEFAULT_LONG_EVENTS)?;
        let workers = worker_list("STATFLOW_BENCH_WORKERS", &[1, 2])?;
        let memory_workers = env_number("STATFLOW_BENCH_MEMORY_WORKERS", 2)?.max(1) as usize;
        let runs = env_number("STATFLOW_BENCH_RUNS", DEFAULT_RUNS)?.max(1);
        let checkpoint_ms = env_number("STATFLOW_BENCH_CHECKPOINT_MS", DEFAULT_CHECKPOINT_MS)?;
        machine::print();
        println!("load average at start: {}", machine::load());

        let parts =
            std::env::var("STATFLOW_BENCH_PARTS").unwrap_or_else(|_| "checkpoints,memory".into());
        let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
        let mut equal = true;
        if part("checkpoints") {
            equal = checkpoint_parts(events, &workers, runs, checkpoint_ms)?;
        }
        if part("memory") {
            memory_part(long_events, memory_workers)?;
        }
        println!("load average at the end: {}", machine::load());

        Ok(if equal {
            ExitCode::SUCCESS
        } else {
            eprintln!("error: the restored engine's answers differ from the original's");
            ExitCode::FAILURE
        })
    }

    /// Parts 1 and 2; true when every restored run answered as its original.
    fn checkpoint_parts(
        events: u64,
        workers: &[usize],
        runs: u64,
        checkpoint_ms: u64,
    ) -> anyhow::Result<bool> {
        let file = data::ensure(events)?;
        let bytes = warm_page_cache(&file)?;
        println!(
            "file:    {} ({:.0} MiB, read once beforehand so that every variant finds it in the page cache)",
            file.display(),
            bytes as f64 / (1024.0 * 1024.0)
        );
        println!();

        // Rounds of every variant in turn, so that a burst of other load on
        // the machine hits one run of each rather than every run of one.
        let mut all: Vec<Vec<Ingest>> = vec![Vec::new(); 2 * workers.len()];
        for _ in 0..runs {
            for (i, w) in workers.iter().enumerate() {
                for (j, on) in ["off", "on"].iter().enumerate() {
                    let args = [
                        "--variant",
                        "ingest",
                        "--workers",
                        &w.to_string(),
                        "--checkpoints",
                        on,
                    ];
                    all[2 * i + j].push(spawn_variant(&args, &file)?);
                }
            }
        }
        let results: Vec<Ingest> = all.iter().map(|runs| median(runs)).collect();
        Ok(report_ingest(&results, &all, events, checkpoint_ms))
    }

    /// Part 3: every retention variant over the 7-day file.
    fn memory_part(long_events: u64, memory_workers: usize) -> anyhow::Result<()> {
        let long_file = data::ensure_span(long_events, LONG_DAYS * DAY_MS)?;
        let long_bytes = warm_page_cache(&long_file)?;
        println!(
            "file:    {} ({:.0} MiB, {LONG_DAYS} days of event time)",
            long_file.display(),
            long_bytes as f64 / (1024.0 * 1024.0)
        );
        let retention_ms = env_number("STATFLOW_BENCH_RETENTION_MS", DEFAULT_RETENTION_MS)?;
        let compaction_ms = env_number("STATFLOW_BENCH_COMPACTION_MS", DEFAULT_RETENTION_MS)?;
        let engine_lag = EngineConfig::default().compaction_lag.as_millis() as u64;
        // The week read as fast as the engine can (a day a second or so:
        // a retention pass then retracts a fifth of a day), and read at a
        // day every `STATFLOW_BENCH_PACED_DAY_S` seconds, still thousands of
        // times faster than a real week, where a pass retracts a sliver.
        // Pacing is done by the bench's own readers (see `pacing`).
        let day_s = env_number("STATFLOW_BENCH_PACED_DAY_S", DEFAULT_PACED_DAY_S)?.max(1);
        let paced = long_events / (LONG_DAYS as u64 * day_s);
        let mut variants = vec![
            ("1d", compaction_ms, 0),
            ("30d", compaction_ms, 0),
            ("1d", compaction_ms, paced),
            // The control: without retention the paced week's memory grows.
            ("30d", compaction_ms, paced),
        ];
        if engine_lag != compaction_ms {
            variants.push(("1d", engine_lag, 0));
        }
        let mut memory: Vec<Memory> = Vec::new();
        for (retain, lag, paced) in variants {
            let args = [
                "--variant",
                "memory",
                "--workers",
                &memory_workers.to_string(),
                "--retain",
                retain,
                "--retention-ms",
                &retention_ms.to_string(),
                "--compaction-ms",
                &lag.to_string(),
                "--paced",
                &paced.to_string(),
            ];
            memory.push(spawn_variant(&args, &long_file)?);
        }
        report_memory(&memory);
        Ok(())
    }

    fn worker_list(name: &str, default: &[usize]) -> anyhow::Result<Vec<usize>> {
        match std::env::var(name) {
            Ok(list) => list
                .split(',')
                .map(|w| w.trim().parse())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("{name}={list}: {e}")),
            Err(_) => Ok(default.to_vec()),
        }
    }

    /// The run with the median wall time (the slower middle one of an even count).
    fn median(runs: &[Ingest]) -> Ingest {
        let mut sorted = runs.to_vec();
        sorted.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        sorted[sorted.len() / 2].clone()
    }

    fn mib(kib: u64) -> f64 {
        kib as f64 / 1024.0
    }

    fn ms(micros: u64, count: u64) -> String {
        if count == 0 {
            "–".into()
        } else {
            format!("{:.0}", micros as f64 / count as f64 / 1e3)
        }
    }

    /// Prints parts 1 and 2 from the median run of each variant (without
    /// checkpoints, then with, per worker count). True when every restored
    /// run answered exactly as its original.
    fn report_ingest(
        results: &[Ingest],
        all: &[Vec<Ingest>],
        events: u64,
        checkpoint_ms: u64,
    ) -> bool {
        println!();
        println!(
            "## 1. Checkpoint cost: {} events (24 h of event time), the e2e metric, checkpoints every {checkpoint_ms} ms beside none",
            thousands(events)
        );
        println!();
        println!(
            "| workers | checkpoints | seconds | events/s | vs none | CPU s | events/CPU-s | vs none | peak RSS MiB | vs none | checkpoints completed during ingest | shard read on the worker during ingest, mean ms | shard write on its writer thread during ingest, mean ms |"
        );
        println!("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        for pair in results.chunks(2) {
            let base = &pair[0];
            let base_rate = base.events as f64 / base.seconds;
            let base_cpu = base.events as f64 / base.cpu_seconds;
            for r in pair {
                let rate = r.events as f64 / r.seconds;
                let cpu_rate = r.events as f64 / r.cpu_seconds;
                let (completed, read, write) = match &r.checkpoint {
                    Some(c) => (
                        c.during_completed.to_string(),
                        ms(c.during_read_micros, c.during_shards),
                        ms(c.during_micros, c.during_shards),
                    ),
                    None => ("–".into(), "–".into(), "–".into()),
                };
                println!(
                    "| {} | {} | {:.2} | {} | {:.2}× | {:.2} | {} | {:.2}× | {:.0} | {:.2}× | {} | {} | {} |",
                    r.workers,
                    if r.checkpoints {
                        format!("every {checkpoint_ms} ms")
                    } else {
                        "none".into()
                    },
                    r.seconds,
                    thousands(rate as u64),
                    rate / base_rate,
                    r.cpu_seconds,
                    thousands(cpu_rate as u64),
                    cpu_rate / base_cpu,
                    mib(r.peak_rss_kib),
                    r.peak_rss_kib as f64 / base.peak_rss_kib as f64,
                    completed,
                    read,
                    write,
                );
            }
        }
        println!();
        if all[0].len() > 1 {
            println!(
                "each row is the run with the median wall time of {}; every run's seconds:",
                all[0].len()
            );
            for runs in all {
                let seconds: Vec<String> =
                    runs.iter().map(|r| format!("{:.2}", r.seconds)).collect();
                println!(
                    "  {} worker(s), checkpoints {}: {}",
                    runs[0].workers,
                    if runs[0].checkpoints { "on" } else { "off" },
                    seconds.join(" ")
                );
            }
            println!();
        }

        println!("Checkpoint size and time (the newest complete checkpoint after ingest, read back from its files):");
        println!();
        println!(
            "| workers | shard files | rollup rows | of which late | bytes | bytes per 1M rows | one full-state checkpoint per shard: read on the worker ms, written by its writer ms (shards) | ingest done → checkpoint of every event, s |"
        );
        println!("|--:|--:|--:|--:|--:|--:|--:|--:|");
        for r in results.iter().filter(|r| r.checkpoints) {
            let Some(c) = &r.checkpoint else { continue };
            println!(
                "| {} | {} | {} | {} | {} | {} | {}, {} ({}) | {:.2} |",
                r.workers,
                c.files,
                thousands(c.rows),
                thousands(c.late_rows),
                thousands(c.bytes),
                thousands((c.bytes as f64 / c.rows.max(1) as f64 * 1e6) as u64),
                ms(c.full_read_micros, c.full_shards),
                ms(c.full_micros, c.full_shards),
                c.full_shards,
                c.wait_seconds,
            );
        }
        println!();

        println!("## 2. Recovery: a new engine on the checkpoint folder of the run above");
        println!();
        println!(
            "| workers | original ingest s | + first answer s | restart: Engine::start s | until done s | until first answer s | vs original | records re-read | answers equal |"
        );
        println!("|--:|--:|--:|--:|--:|--:|--:|--:|---|");
        let mut equal = true;
        for r in results.iter().filter(|r| r.checkpoints) {
            let Some(rec) = &r.recovery else { continue };
            let original = r.seconds + r.first_answer_seconds;
            println!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}× | {} | {} |",
                r.workers,
                r.seconds,
                original,
                rec.start_seconds,
                rec.done_seconds,
                rec.answer_seconds,
                rec.answer_seconds / original,
                rec.events_read,
                if rec.equal {
                    format!("yes ({} rows)", thousands(rec.rows))
                } else {
                    format!("NO: {} rows differ", rec.differences)
                },
            );
        }
        // Every run's restart must have answered alike, not only the median's.
        for run in all.iter().flatten() {
            if let Some(rec) = &run.recovery {
                if !rec.equal {
                    equal = false;
                    println!(
                        "a restart with {} worker(s) answered differently: {} rows differ",
                        run.workers, rec.differences
                    );
                }
            }
        }
        println!();
        equal
    }

    /// Prints part 3: resident memory at the end of every simulated day.
    fn report_memory(results: &[Memory]) {
        let Some(first) = results.first() else { return };
        let start = FILE_END_MS - LONG_DAYS * DAY_MS;
        println!();
        println!(
            "## 3. Long-run memory: {} events over {LONG_DAYS} days of event time, 1-minute windows by game and country, {} worker(s)",
            thousands(first.events),
            first.workers
        );
        println!();
        println!(
            "retention_period {} ms: the file is read at about a million events a second, so a simulated day lasts about a second of wall time and the engine's wall-clock periods (evict every 5 s, compact after 2 s) are shortened to stay a fraction of a day; the last column keeps the engine's compaction lag.",
            first.retention_ms
        );
        println!("VmRSS sampled every {} ms; each cell is VmRSS when the first event of the next day is read, and the highest sample during the day.", env_number("STATFLOW_BENCH_SAMPLE_MS", DEFAULT_SAMPLE_MS).unwrap_or(DEFAULT_SAMPLE_MS));
        println!();
        let header: Vec<String> = results
            .iter()
            .map(|m| {
                let pace = match m.paced {
                    0 => String::new(),
                    rate => format!(", paced at {} events/s", thousands(rate)),
                };
                format!(
                    "retain {}, compaction lag {} ms{pace}: MiB (peak)",
                    m.retain, m.compaction_ms
                )
            })
            .collect();
        println!("| event day | {} |", header.join(" | "));
        println!("|--:|{}", "--:|".repeat(results.len()));
        for day in 1..=LONG_DAYS {
            let from = start + (day - 1) * DAY_MS;
            let to = start + day * DAY_MS;
            let cells: Vec<String> = results
                .iter()
                .map(|m| {
                    let at_end = m
                        .samples
                        .iter()
                        .find(|(_, _, t)| t.is_some_and(|t| t >= to))
                        .or(m.samples.last())
                        .map_or(0, |s| s.1);
                    let peak = m
                        .samples
                        .iter()
                        .filter(|(_, _, t)| t.is_some_and(|t| t >= from && t < to))
                        .map(|s| s.1)
                        .max();
                    match peak {
                        Some(peak) => format!("{:.0} ({:.0})", mib(at_end), mib(peak)),
                        // No sample fell inside the day: it was read in under one period.
                        None => format!("{:.0} (–)", mib(at_end)),
                    }
                })
                .collect();
            println!("| {day} | {} |", cells.join(" | "));
        }
        let row = |name: &str, f: &dyn Fn(&Memory) -> String| {
            let cells: Vec<String> = results.iter().map(f).collect();
            println!("| {name} | {} |", cells.join(" | "));
        };
        row("peak (VmHWM) at done", &|m| {
            format!("{:.0}", mib(m.peak_rss_kib))
        });
        row("VmRSS after retention caught up", &|m| {
            format!("{:.0}", mib(m.end_rss_kib))
        });
        row("rollup rows at the end", &|m| thousands(m.rows));
        row("rows evicted", &|m| thousands(m.evicted_rows));
        row("ingest seconds", &|m| format!("{:.2}", m.seconds));
        row("samples", &|m| m.samples.len().to_string());
        println!();
    }
}

/// A child: one variant, one JSON line of results.
mod child {
    use super::*;

    pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
        let arg = |name: &str| arg_value(args, name);
        let workers: usize = arg("--workers")?.parse()?;
        let file = PathBuf::from(arg("--file")?);
        let line = match arg("--variant")?.as_str() {
            "ingest" => {
                let on = arg("--checkpoints")? == "on";
                serde_json::to_string(&ingest(&file, workers, on)?)?
            }
            "memory" => {
                let retain = arg("--retain")?;
                let retention_ms: u64 = arg("--retention-ms")?.parse()?;
                let compaction_ms: u64 = arg("--compaction-ms")?.parse()?;
                let paced: u64 = arg("--paced")?.parse()?;
                serde_json::to_string(&memory(
                    &file,
                    workers,
                    retain,
                    (retention_ms, compaction_ms),
                    paced,
                )?)?
            }
            other => anyhow::bail!("unknown variant {other}"),
        };
        println!("{RESULT_MARK}{line}");
        Ok(ExitCode::SUCCESS)
    }

    /// Records read by every worker from the plan's first source.
    fn records(shared: &Shared) -> u64 {
        shared
            .workers
            .iter()
            .map(|w| w.sources[0].records.load(Ordering::Relaxed))
            .sum()
    }

    /// The newest event time read by any worker.
    fn newest(shared: &Shared) -> Option<i64> {
        shared
            .workers
            .iter()
            .filter_map(|w| w.sources[0].max_event())
            .max()
    }

    /// The e2e latency query: the last 24 whole hours by reward type and hour.
    fn day_query(newest: i64) -> Query {
        let to_ms = (newest.div_euclid(HOUR_MS) + 1) * HOUR_MS;
        Query {
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
        }
    }

    /// Every (minute, first dimension, second dimension) group over all time.
    fn all_groups(measures: Vec<usize>) -> Query {
        Query {
            metric: 0,
            from_ms: 0,
            to_ms: 1 << 50,
            filter: None,
            group_by: vec![
                GroupKey::Time,
                GroupKey::Dimension(0),
                GroupKey::Dimension(1),
            ],
            granularity_ms: None,
            time_zone: None,
            measures,
            order_by: Vec::new(),
            limit: None,
            late: false,
        }
    }

    /// Rows that differ between two answers (columns, then row by row;
    /// every row past the shorter answer counts as a difference).
    fn differences(a: &Answer, b: &Answer) -> u64 {
        if a.columns != b.columns {
            return a.rows.len().max(b.rows.len()).max(1) as u64;
        }
        let unequal = a.rows.iter().zip(&b.rows).filter(|(x, y)| x != y).count();
        (unequal + a.rows.len().abs_diff(b.rows.len())) as u64
    }

    /// Part 1 and, with checkpoints, part 2.
    fn ingest(file: &Path, workers: usize, checkpoints: bool) -> anyhow::Result<Ingest> {
        let plan = common::plan(TOPOLOGY, file)?;
        let scratch = tempfile::Builder::new()
            .prefix("statflow-durability-")
            .tempdir()?;
        let mut config = common::engine_config(workers, scratch.path().join("dead-letters"))?;
        let interval = Duration::from_millis(env_number(
            "STATFLOW_BENCH_CHECKPOINT_MS",
            DEFAULT_CHECKPOINT_MS,
        )?);
        if checkpoints {
            config.checkpoints = Some(CheckpointConfig::under(scratch.path(), interval));
        }

        let started = Instant::now();
        let cpu_started = process::cpu_seconds();
        let engine = Engine::start(
            plan.clone(),
            config.clone(),
            statflow::runtime::source::readers(),
        )?;
        engine.wait_until_done()?;
        let seconds = started.elapsed().as_secs_f64();
        let cpu_seconds = process::cpu_seconds() - cpu_started;
        let done = Instant::now();
        let shared = Arc::clone(engine.shared());
        let stats = &shared.checkpoints;
        let during_completed = stats.completed.load(Ordering::Relaxed);
        let during_shards = stats.shards.load(Ordering::Relaxed);
        let during_micros = stats.micros.load(Ordering::Relaxed);
        let during_read_micros = stats.read_micros.load(Ordering::Relaxed);

        let newest_event = newest(&shared).ok_or_else(|| anyhow::anyhow!("no event was read"))?;
        let day = day_query(newest_event);
        let original_day = engine.query_blocking(day.clone())?;
        let first_answer_seconds = done.elapsed().as_secs_f64();
        let peak_rss_kib = process::peak_rss_kib();
        let events = records(&shared);
        println!(
            "{workers} worker(s), checkpoints {}: {events} records in {seconds:.2} s, 24 h query {} rows",
            if checkpoints { "on" } else { "off" },
            original_day.rows.len()
        );
        let mut result = Ingest {
            workers,
            checkpoints,
            seconds,
            cpu_seconds,
            events,
            peak_rss_kib,
            first_answer_seconds,
            checkpoint: None,
            recovery: None,
        };
        let Some(checkpoint_config) = config.checkpoints.clone() else {
            engine.shutdown();
            return Ok(result);
        };

        // A checkpoint holds every event once its epoch is at or past the
        // epoch in which every worker's sources finished.
        let finished = shared
            .workers
            .iter()
            .map(|w| w.finished_at.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        while stats.completed.load(Ordering::Relaxed) == 0
            || stats.last_epoch.load(Ordering::Relaxed) < finished
        {
            if done.elapsed() > CHECKPOINT_DEADLINE {
                anyhow::bail!("no checkpoint holding every event within {CHECKPOINT_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let wait_seconds = done.elapsed().as_secs_f64();
        let full_shards = stats.shards.load(Ordering::Relaxed) - during_shards;
        let full_micros = stats.micros.load(Ordering::Relaxed) - during_micros;
        let full_read_micros = stats.read_micros.load(Ordering::Relaxed) - during_read_micros;

        // The newest complete checkpoint, from its files. Three are kept, so
        // it is not pruned while being read.
        let dir = &checkpoint_config.dir;
        let (epoch, _) = checkpoint::list(dir)?
            .into_iter()
            .find(|(_, complete)| *complete)
            .ok_or_else(|| anyhow::anyhow!("no complete checkpoint in {}", dir.display()))?;
        let folder = checkpoint::folder(dir, epoch);
        let metrics = plan.metrics.len() as u32;
        let (mut bytes, mut rows, mut late_rows) = (0u64, 0u64, 0u64);
        for worker in 0..workers {
            let path = folder.join(checkpoint::shard_file(worker));
            bytes += std::fs::metadata(&path)?.len();
            let shard = checkpoint::read_shard(&path)?;
            rows += shard.rows.len() as u64;
            late_rows += shard
                .rows
                .iter()
                .filter(|(k, _)| k.metric >= metrics)
                .count() as u64;
        }
        result.checkpoint = Some(Checkpointed {
            during_completed,
            during_shards,
            during_micros,
            during_read_micros,
            wait_seconds,
            full_shards,
            full_micros,
            full_read_micros,
            epoch,
            files: workers,
            bytes,
            rows,
            late_rows,
        });
        let everything = all_groups(vec![0, 1, 2]);
        let original_all = engine.query_blocking(everything.clone())?;
        engine.shutdown();
        drop(engine);

        // The restart: the same plan and settings on the same folder.
        let started = Instant::now();
        let engine = Engine::start(plan, config, statflow::runtime::source::readers())?;
        let start_seconds = started.elapsed().as_secs_f64();
        engine.wait_until_done()?;
        let done_seconds = started.elapsed().as_secs_f64();
        let restored_day = engine.query_blocking(day)?;
        let answer_seconds = started.elapsed().as_secs_f64();
        let restored_all = engine.query_blocking(everything)?;
        let restored_from = engine.shared().restored_from;
        let events_read = records(engine.shared());
        engine.shutdown();
        let differences =
            differences(&original_day, &restored_day) + differences(&original_all, &restored_all);
        println!(
            "restart from checkpoint {restored_from:?}: answered in {answer_seconds:.2} s, {} of {} rows differ",
            differences,
            original_all.rows.len() + original_day.rows.len()
        );
        result.recovery = Some(Recovery {
            restored_from,
            start_seconds,
            done_seconds,
            answer_seconds,
            events_read,
            rows: original_all.rows.len() as u64,
            differences,
            equal: differences == 0 && restored_from.is_some(),
        });
        Ok(result)
    }

    /// Part 3: one retention over the 7-day file, `VmRSS` sampled throughout.
    fn memory(
        file: &Path,
        workers: usize,
        retain: &str,
        (retention_ms, compaction_ms): (u64, u64),
        paced: u64,
    ) -> anyhow::Result<Memory> {
        let plan = common::plan(&LONG_TOPOLOGY.replace("{retain}", retain), file)?;
        let scratch = tempfile::Builder::new()
            .prefix("statflow-durability-")
            .tempdir()?;
        let config = EngineConfig {
            retention_period: Duration::from_millis(retention_ms),
            compaction_lag: Duration::from_millis(compaction_ms),
            ..common::engine_config(workers, scratch.path().join("dead-letters"))?
        };
        let every =
            Duration::from_millis(env_number("STATFLOW_BENCH_SAMPLE_MS", DEFAULT_SAMPLE_MS)?);

        let started = Instant::now();
        let readers = match paced {
            0 => statflow::runtime::source::readers(),
            rate => pacing::readers(rate as f64 / workers as f64),
        };
        let engine = Engine::start(plan, config, readers)?;
        let shared = Arc::clone(engine.shared());
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    samples.push((
                        started.elapsed().as_secs_f64(),
                        process::rss_kib(),
                        newest(&shared),
                    ));
                    std::thread::sleep(every);
                }
                samples
            })
        };
        engine.wait_until_done()?;
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let mut samples = sampler
            .join()
            .map_err(|_| anyhow::anyhow!("the sampler thread panicked"))?;
        samples.push((seconds, process::rss_kib(), newest(&shared)));
        let peak_rss_kib = process::peak_rss_kib();

        // Retention acts on the watermark every period; give it a few, and
        // compaction its lag, before reading what is left.
        std::thread::sleep(Duration::from_millis(
            (4 * retention_ms + compaction_ms).max(1_000),
        ));
        let end_rss_kib = process::rss_kib();
        let answer = engine.query_blocking(all_groups(vec![0]))?;
        let events = records(&shared);
        let evicted_rows = shared.evicted_rows.load(Ordering::Relaxed);
        println!(
            "retain {retain}: {events} records in {seconds:.2} s, {} rows at the end, {evicted_rows} evicted, retained from {:?}",
            answer.rows.len(),
            answer.as_of.retained_from_ms
        );
        engine.shutdown();
        Ok(Memory {
            retain: retain.to_string(),
            workers,
            retention_ms,
            compaction_ms,
            paced,
            seconds,
            events,
            peak_rss_kib,
            samples,
            end_rss_kib,
            rows: answer.rows.len() as u64,
            evicted_rows,
            retained_from_ms: answer.as_of.retained_from_ms,
        })
    }
}

/// Part 3's paced run: the file readers, each held to its worker's share of
/// a rate.
mod pacing {
    use std::time::{Duration, Instant};

    use statflow::dataflow::ingest::{ReadState, RecordAt, RecordReader};
    use statflow::runtime::engine::ReaderFactory;

    /// The engine's readers, each reading at most `per_worker` records a
    /// second.
    pub fn readers(per_worker: f64) -> ReaderFactory {
        let inner = statflow::runtime::source::readers();
        std::sync::Arc::new(move |source, seat| {
            Ok(Box::new(Paced {
                inner: inner(source, seat)?,
                per_second: per_worker,
                started: Instant::now(),
                read: 0,
            }) as Box<dyn RecordReader>)
        })
    }

    struct Paced {
        inner: Box<dyn RecordReader>,
        per_second: f64,
        started: Instant,
        read: u64,
    }

    impl RecordReader for Paced {
        fn read(&mut self, max: usize, record: &mut dyn FnMut(&[u8], RecordAt)) -> ReadState {
            let due = (self.started.elapsed().as_secs_f64() * self.per_second) as u64;
            let allowed = due.saturating_sub(self.read).min(max as u64) as usize;
            if allowed == 0 {
                return ReadState::Idle(Duration::from_millis(5));
            }
            let mut read = 0u64;
            let state = self.inner.read(allowed, &mut |bytes, at| {
                read += 1;
                record(bytes, at);
            });
            self.read += read;
            state
        }

        fn partitions(&self) -> &[String] {
            self.inner.partitions()
        }

        fn positions(&self) -> Vec<u64> {
            self.inner.positions()
        }

        fn ends(&self) -> Vec<Option<u64>> {
            self.inner.ends()
        }
    }
}
