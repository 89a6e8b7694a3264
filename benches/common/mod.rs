//! What the benchmarks share: the reward metric and its generated input,
//! the engine settings they run with, and readings of the machine and of
//! the benchmark's own process.
//!
//! Each benchmark binary compiles this module on its own and uses part of
//! it, so unused items are allowed here rather than in every benchmark.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use statflow::dsl::{GeneratorSource, Plan};
use statflow::runtime::engine::EngineConfig;
use statflow::runtime::source::generator::Generator;

/// The fields the plain loop reads (benches/e2e.rs), borrowed from the
/// line where the JSON has no escapes (all of the generator's strings).
#[derive(serde::Deserialize)]
pub struct PlainEvent<'a> {
    #[serde(borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    pub ts: i64,
    #[serde(borrow, default)]
    pub game_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub reward_type: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    pub amount: Option<f64>,
}

/// The e2e metric on a file source; `{path}` is replaced.
pub const TOPOLOGY: &str = r#"
source s = file("{path}") {
  time = ts as epoch_millis
  late = 5m
}

metric reward_stats from s {
  where kind = "reward"
  dimensions game_id, reward_type
  window tumbling 1m
  retain 30d
  measures {
    rewards = count()
    amount  = sum(amount)
    players = distinct(user_id)
  }
}
"#;

/// Events in the generated file unless `STATFLOW_BENCH_EVENTS` says otherwise.
pub const DEFAULT_EVENTS: u64 = 5_000_000;

/// Event time covered by the generated file of [`data::ensure`].
pub const SPAN_MS: i64 = 24 * HOUR_MS;

/// An hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// A day in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Generated files end at 2025-01-02T00:00:00Z, so that the same settings
/// always write the same bytes (`statflow generate` ends at "now").
pub const FILE_END_MS: i64 = 1_735_776_000_000;

/// The engine's `batch`: records read per activation of the ingest
/// operator. Large enough that the per-activation cost (a timely step,
/// counters, the activator) disappears next to decoding, small enough
/// that a query waits only a few milliseconds behind a batch.
pub const DEFAULT_BATCH: u64 = 10_000;

/// The engine's `epoch_records`: an epoch closes after this many
/// records on a worker (or 200 ms). Every epoch costs one flush of the
/// per-epoch combiner, one exchanged batch and one merge in the
/// arrangement, so fewer, larger epochs are cheaper; 100,000 records is
/// a fraction of a second of ingest, which keeps answers fresh.
pub const DEFAULT_EPOCH_RECORDS: u64 = 100_000;

/// The engine's `epoch_interval`, in milliseconds: its default.
pub const DEFAULT_EPOCH_MS: u64 = 200;

/// The engine's settings for `workers`, from `STATFLOW_BENCH_BATCH`,
/// `STATFLOW_BENCH_EPOCH_RECORDS` and `STATFLOW_BENCH_EPOCH_MS`, writing
/// dead letters under `dead_letters`; everything else is the default.
pub fn engine_config(workers: usize, dead_letters: PathBuf) -> anyhow::Result<EngineConfig> {
    Ok(EngineConfig {
        workers,
        batch: env_number("STATFLOW_BENCH_BATCH", DEFAULT_BATCH)? as usize,
        epoch_records: env_number("STATFLOW_BENCH_EPOCH_RECORDS", DEFAULT_EPOCH_RECORDS)? as usize,
        epoch_interval: Duration::from_millis(env_number(
            "STATFLOW_BENCH_EPOCH_MS",
            DEFAULT_EPOCH_MS,
        )?),
        dead_letter_dir: dead_letters,
        hourly_rollups: env_number("STATFLOW_BENCH_HOURLY", 0)? != 0,
        ..EngineConfig::default()
    })
}

/// `topology` with `{path}` replaced by the absolute path of `file`, compiled.
pub fn plan(topology: &str, file: &Path) -> anyhow::Result<Plan> {
    let path = file
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let text = topology.replace("{path}", &path.to_string_lossy());
    let compiled = statflow::dsl::compile(&text, None);
    let errors = compiled.has_errors();
    match compiled.plan.filter(|_| !errors) {
        Some(plan) => Ok(plan),
        None => anyhow::bail!("the topology does not compile: {:?}", compiled.diagnostics),
    }
}

/// A number from the environment, or `default` when unset.
pub fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .replace(['_', ','], "")
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={v}: {e}")),
        Err(_) => Ok(default),
    }
}

/// `n` with a comma between every three digits.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How a variant's child process marks its one line of results on stdout.
pub const RESULT_MARK: &str = "BENCH-RESULT ";

/// Runs this benchmark binary again with `args` and `--file FILE` as one
/// variant, echoes what it prints, and reads back its result line (JSON
/// after [`RESULT_MARK`]).
pub fn spawn_variant<T: serde::de::DeserializeOwned>(
    args: &[&str],
    file: &Path,
) -> anyhow::Result<T> {
    println!(
        "{} (load average before: {})",
        args.join(" "),
        machine::load()
    );
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .arg("--file")
        .arg(file)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines().filter(|l| !l.starts_with(RESULT_MARK)) {
        println!("  {line}");
    }
    if !output.status.success() {
        anyhow::bail!("variant {args:?} failed: {}", output.status);
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_MARK))
        .ok_or_else(|| anyhow::anyhow!("variant {args:?} printed no result"))?;
    Ok(serde_json::from_str(line)?)
}

/// In a child's arguments, the value after `--name`.
pub fn arg_value<'a>(args: &'a [String], name: &str) -> anyhow::Result<&'a String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .ok_or_else(|| anyhow::anyhow!("missing {name}"))
}

/// The benchmark's input: the file named by `STATFLOW_BENCH_FILE`, or
/// `events` generated events (made once, then reused), read once into the
/// page cache. Returns the file and its size in bytes.
pub fn bench_file(events: u64) -> anyhow::Result<(std::path::PathBuf, u64)> {
    let file = match std::env::var_os("STATFLOW_BENCH_FILE") {
        Some(path) => std::path::PathBuf::from(path),
        None => data::ensure(events)?,
    };
    let bytes = warm_page_cache(&file)?;
    Ok((file, bytes))
}

/// Reads the whole file once, so that the first variant does not pay
/// for the disk and the others do not get it for free.
pub fn warm_page_cache(path: &Path) -> anyhow::Result<u64> {
    let mut file =
        File::open(path).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// The machine the figures come from.
pub mod machine {
    /// Prints the CPUs, their model and the memory.
    pub fn print() {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = field(&cpuinfo, "model name").unwrap_or("unknown");
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = field(&meminfo, "MemTotal").unwrap_or("unknown");
        println!("machine: {cpus} CPUs (nproc), {model}, {memory} memory");
    }

    /// The 1, 5 and 15 minute load averages: other work on the machine
    /// slows every variant, so the figures say how busy it was.
    pub fn load() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim())
    }
}

/// Readings of this process from `/proc/self`.
pub mod process {
    /// CPU time this process has used so far (user and system, all
    /// threads), in seconds, from `/proc/self/stat` (in clock ticks of 10 ms).
    pub fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the parenthesized command name: state is field 3,
        // utime and stime are fields 14 and 15.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (ticks(11) + ticks(12)) as f64 / 100.0
    }

    /// This process's peak resident set so far, in KiB.
    pub fn peak_rss_kib() -> u64 {
        status_kib("VmHWM:")
    }

    /// This process's resident set now, in KiB.
    pub fn rss_kib() -> u64 {
        status_kib("VmRSS:")
    }

    fn status_kib(field: &str) -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The input files.
pub mod data {
    use super::*;

    /// The generated file for `events` events, written if absent: seed 42,
    /// 200 games, 1,000,000 users, 24 h of event time ending at [`FILE_END_MS`].
    pub fn ensure(events: u64) -> anyhow::Result<PathBuf> {
        ensure_span(events, SPAN_MS)
    }

    /// Like [`ensure`], over `span_ms` of event time ending at
    /// [`FILE_END_MS`]. The 24-hour file keeps the name it always had
    /// (`events-N.jsonl`); others name their span in days (`events-7d-N.jsonl`).
    pub fn ensure_span(events: u64, span_ms: i64) -> anyhow::Result<PathBuf> {
        let dir = target_dir().join("bench-data");
        let name = if span_ms == SPAN_MS {
            format!("events-{events}")
        } else {
            format!("events-{}d-{events}", span_ms / DAY_MS)
        };
        let path = dir.join(format!("{name}.jsonl"));
        if path.exists() {
            return Ok(path);
        }
        std::fs::create_dir_all(&dir)?;
        let started = Instant::now();
        // Written under another name and renamed, so that an interrupted run
        // never leaves a short file behind to be mistaken for a whole one.
        let partial = dir.join(format!("{name}.jsonl.partial"));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&partial)?);
        let config = GeneratorSource {
            rate: 0,
            seed: 42,
            events: None,
            games: 200,
            users: 1_000_000,
        };
        let mut generator = Generator::new(&config, 0, 1);
        let start_ms = FILE_END_MS - span_ms;
        let mut line = Vec::with_capacity(256);
        for i in 0..events {
            // As `statflow generate` does: line i at start + span·i/(n−1).
            let nominal = start_ms
                + (i128::from(span_ms) * i128::from(i) / i128::from(events.max(2) - 1)) as i64;
            line.clear();
            generator
                .next_into(nominal, &mut line)
                .ok_or_else(|| anyhow::anyhow!("the unbounded generator stopped"))?;
            line.push(b'\n');
            out.write_all(&line)?;
        }
        out.flush()?;
        drop(out);
        std::fs::rename(&partial, &path)?;
        println!(
            "generated {events} events into {} in {:.1} s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(path)
    }

    /// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `target/` of the workspace.
    pub fn target_dir() -> PathBuf {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
    }
}
