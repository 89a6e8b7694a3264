//! What session windows cost: the e2e file (generator events, 24 h, 200
//! games, 1,000,000 skewed users) read by the engine with the e2e metric
//! alone, then with a session metric beside it, then with a tumbling
//! metric keyed by user beside it instead (about as many rows, and no
//! session state), in the same run.
//!
//! The session metric is `session 30m by user_id` with `dimensions
//! platform` and `count()` and `sum(amount)`: one row per session in the
//! rollup, and every session once more in the operator that joins pieces
//! into sessions (see `statflow_dataflow::session`). The difference in
//! memory from the e2e metric alone, divided by the number of sessions, is
//! what one session costs; the tumbling variant shows what a rollup row of
//! the same key costs without the second copy.
//!
//! ```text
//! cargo bench --bench sessions                                # 5,000,000 events
//! STATFLOW_BENCH_EVENTS=500000 cargo bench --bench sessions   # small and quick
//! ```
//!
//! Settings, all optional: `STATFLOW_BENCH_EVENTS`, `STATFLOW_BENCH_FILE`,
//! `STATFLOW_BENCH_BATCH`, `STATFLOW_BENCH_EPOCH_RECORDS`,
//! `STATFLOW_BENCH_EPOCH_MS` as for `e2e`; `STATFLOW_BENCH_WORKERS`, the
//! engine's workers (2); `STATFLOW_BENCH_QUERY_RUNS`, timed runs of the
//! session query (50).
//!
//! Each variant runs in its own child process (this binary again, with
//! `--variant`), so that the peak resident memory each reports (`VmHWM`)
//! is its own. This is a benchmark, not a test: it prints figures, and
//! fails only when a variant's event count differs from the others'.

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{
    arg_value, bench_file, env_number, machine, process, spawn_variant, thousands, DEFAULT_EVENTS,
    HOUR_MS, RESULT_MARK, TOPOLOGY,
};
use serde::{Deserialize, Serialize};
use statflow::dataflow::measure;
use statflow::dataflow::query::{Cell, GroupKey, Query};
use statflow::runtime::engine::{Engine, FOOTPRINT_EVERY};

/// The session metric, added to the e2e topology.
const SESSIONS: &str = r#"
metric play_sessions from s {
  dimensions platform
  window     session 30m by user_id
  retain     30d
  measures {
    events = count()
    amount = sum(amount)
  }
}
"#;

/// A tumbling metric keyed by user, added instead: rows of the same key,
/// without the session operator's copy.
const BY_USER: &str = r#"
metric play_by_user from s {
  dimensions platform, user_id
  window     tumbling 30m
  retain     30d
  measures {
    events = count()
    amount = sum(amount)
  }
}
"#;

/// Timed runs of the session query unless `STATFLOW_BENCH_QUERY_RUNS` says otherwise.
const QUERY_RUNS: u64 = 50;

/// One variant's figures, printed by the child as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measured {
    variant: String,
    /// Until every event is counted and queryable.
    seconds: f64,
    /// Lines read.
    events: u64,
    /// Peak resident set (`VmHWM`) after ingest, in KiB.
    peak_rss_kib: u64,
    /// Resident set after ingest, in KiB.
    rss_kib: u64,
    /// Rows of the added metric in the rollup (late rows included), as the
    /// workers measure their shards.
    rows: u64,
    /// Their size as a checkpoint encodes them, in bytes.
    row_bytes: u64,
    /// Sessions, for the session metric.
    sessions: Option<u64>,
    /// Events the added metric counted.
    counted: u64,
    /// p50 and p99 of a 24 h query of the added metric by platform and hour, in ms.
    latency_ms: Option<(f64, f64)>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.iter().any(|a| a == "--variant") {
        child(&args)
    } else {
        parent()
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parent() -> anyhow::Result<ExitCode> {
    let events = env_number("STATFLOW_BENCH_EVENTS", DEFAULT_EVENTS)?;
    let workers = env_number("STATFLOW_BENCH_WORKERS", 2)?;
    machine::print();
    let (file, bytes) = bench_file(events)?;
    println!(
        "file:    {} ({:.0} MiB), {workers} worker(s)",
        file.display(),
        bytes as f64 / (1024.0 * 1024.0)
    );
    let mut results = Vec::new();
    for variant in ["alone", "sessions", "by_user"] {
        let workers = workers.to_string();
        results.push(spawn_variant::<Measured>(
            &["--variant", variant, "--workers", &workers],
            &file,
        )?);
    }
    println!();
    println!("| variant | seconds | events/s | peak RSS MiB | RSS MiB | rows added | query p50 ms | query p99 ms |");
    println!("|---|--:|--:|--:|--:|--:|--:|--:|");
    for r in &results {
        let (p50, p99) = r.latency_ms.map_or(("–".into(), "–".into()), |(a, b)| {
            (format!("{a:.1}"), format!("{b:.1}"))
        });
        println!(
            "| {} | {:.2} | {} | {:.0} | {:.0} | {} | {p50} | {p99} |",
            r.variant,
            r.seconds,
            thousands((r.events as f64 / r.seconds) as u64),
            r.peak_rss_kib as f64 / 1024.0,
            r.rss_kib as f64 / 1024.0,
            thousands(r.rows),
        );
    }
    println!();
    let alone = &results[0];
    for r in &results[1..] {
        let extra =
            |kib: u64, base: u64| (kib.saturating_sub(base) * 1024) as f64 / r.rows.max(1) as f64;
        println!(
            "{}: {} rows ({} sessions) over {} events, {:.0} bytes per row encoded; {:.0} bytes per row at the peak, {:.0} after ingest, above the e2e metric alone",
            r.variant,
            thousands(r.rows),
            r.sessions.map_or("no".to_string(), thousands),
            thousands(r.counted),
            r.row_bytes as f64 / r.rows.max(1) as f64,
            extra(r.peak_rss_kib, alone.peak_rss_kib),
            extra(r.rss_kib, alone.rss_kib),
        );
    }
    let same = results.iter().all(|r| r.events == alone.events)
        && results[1].counted == results[2].counted;
    Ok(if same {
        ExitCode::SUCCESS
    } else {
        eprintln!("error: the variants read or counted different numbers of events");
        ExitCode::FAILURE
    })
}

fn child(args: &[String]) -> anyhow::Result<ExitCode> {
    let arg = |name: &str| arg_value(args, name);
    let variant = arg("--variant")?.clone();
    let workers: usize = arg("--workers")?.parse()?;
    let file = PathBuf::from(arg("--file")?);
    let measured = run(&variant, &file, workers)?;
    println!("{RESULT_MARK}{}", serde_json::to_string(&measured)?);
    Ok(ExitCode::SUCCESS)
}

fn run(variant: &str, file: &Path, workers: usize) -> anyhow::Result<Measured> {
    let topology = match variant {
        "alone" => TOPOLOGY.to_string(),
        "sessions" => format!("{TOPOLOGY}{SESSIONS}"),
        "by_user" => format!("{TOPOLOGY}{BY_USER}"),
        other => anyhow::bail!("unknown variant {other}"),
    };
    let plan = common::plan(&topology, file)?;
    let dead_letters =
        std::env::temp_dir().join(format!("statflow-sessions-{}", std::process::id()));
    let config = common::engine_config(workers, dead_letters.clone())?;
    let started = Instant::now();
    let engine = Engine::start(plan.clone(), config, statflow::runtime::source::readers())?;
    engine.wait_until_done()?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_kib = process::peak_rss_kib();
    let rss_kib = process::rss_kib();
    let shared = engine.shared();
    let events = shared
        .workers
        .iter()
        .map(|w| {
            w.sources[0]
                .records
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    let newest = shared
        .workers
        .iter()
        .filter_map(|w| w.sources[0].max_event())
        .max()
        .ok_or_else(|| anyhow::anyhow!("the engine saw no event"))?;

    let (mut rows, mut row_bytes, mut counted, mut latency, mut sessions) = (0, 0, 0, None, None);
    if plan.metrics.len() > 1 {
        let metric = &plan.metrics[1];
        let to_ms = (newest.div_euclid(HOUR_MS) + 1) * HOUR_MS;
        // Every measure, with `sessions` for the session metric.
        let all = Query {
            metric: 1,
            from_ms: 0,
            to_ms: 1 << 50,
            filter: None,
            group_by: Vec::new(),
            granularity_ms: None,
            time_zone: None,
            measures: (0..measure::measures(metric).len()).collect(),
            order_by: Vec::new(),
            limit: None,
            late: false,
        };
        let answer = engine.query_blocking(all.clone())?;
        let cells = answer.rows.first().cloned().unwrap_or_default();
        counted = match cells.first() {
            Some(Cell::Int(n)) => *n as u64,
            _ => 0,
        };
        sessions = match (variant, cells.get(2)) {
            ("sessions", Some(Cell::Int(n))) => Some(*n as u64),
            _ => None,
        };
        // Every worker measures its shard's rows per metric every 10 s.
        std::thread::sleep(FOOTPRINT_EVERY + Duration::from_secs(3));
        for worker in &shared.workers {
            if let Some(f) = worker.footprint.lock().ok().and_then(|f| f.get(1).copied()) {
                rows += f.rows;
                row_bytes += f.bytes;
            }
        }
        let hourly = Query {
            from_ms: to_ms - 24 * HOUR_MS,
            to_ms,
            group_by: vec![GroupKey::Dimension(0), GroupKey::Time],
            granularity_ms: Some(HOUR_MS as u64),
            ..all
        };
        let mut times: Vec<Duration> = Vec::new();
        for i in 0..env_number("STATFLOW_BENCH_QUERY_RUNS", QUERY_RUNS)? + 3 {
            let t = Instant::now();
            engine.query_blocking(hourly.clone())?;
            if i >= 3 {
                times.push(t.elapsed());
            }
        }
        times.sort();
        let at = |q: f64| {
            let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
            times[rank - 1].as_secs_f64() * 1e3
        };
        latency = (!times.is_empty()).then(|| (at(0.5), at(0.99)));
    }
    println!("{variant}: {events} records in {seconds:.2} s, {rows} rows added");
    engine.shutdown();
    let _ = std::fs::remove_dir_all(&dead_letters);
    Ok(Measured {
        variant: variant.to_string(),
        seconds,
        events,
        peak_rss_kib,
        rss_kib,
        rows,
        row_bytes,
        sessions,
        counted,
        latency_ms: latency,
    })
}
