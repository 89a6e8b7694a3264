//! The cost of crossing process boundaries: the end-to-end ingest run by the
//! real binary as one process with 2 workers, beside a single-node cluster of
//! 2 processes with 1 worker each, on the same file of generated events.
//!
//! `cargo bench --bench cluster` (events from `STATFLOW_BENCH_EVENTS`, default
//! 5,000,000; or an existing file from `STATFLOW_BENCH_FILE`). It prints a
//! figure beside its baseline, measured in the same run; it asserts nothing
//! about time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const STATFLOW: &str = env!("CARGO_BIN_EXE_statflow");

fn events_file(events: u64) -> PathBuf {
    if let Ok(path) = std::env::var("STATFLOW_BENCH_FILE") {
        return PathBuf::from(path);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("a folder for bench data");
    let path = dir.join(format!("events-{events}.jsonl"));
    if !path.exists() {
        eprintln!("generating {events} events into {}", path.display());
        let status = Command::new(STATFLOW)
            .args([
                "generate",
                "--events",
                &events.to_string(),
                "--span",
                "24h",
                "--games",
                "200",
            ])
            .args(["--users", "1000000", "--seed", "42", "--out"])
            .arg(&path)
            .status()
            .expect("statflow generate runs");
        assert!(status.success(), "statflow generate failed");
    }
    path
}

fn lines(path: &Path) -> u64 {
    use std::io::BufRead;
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("the events file opens"));
    file.split(b'\n').count() as u64
}

/// Runs `statflow run` until every source has finished; returns wall seconds.
fn run(topology: &Path, state: &Path, extra: &[&str]) -> f64 {
    let start = Instant::now();
    let status = Command::new(STATFLOW)
        .arg("run")
        .arg(topology)
        .args([
            "--http",
            "127.0.0.1:0",
            "--exit-when-done",
            "--epoch-records",
            "100000",
        ])
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("statflow run starts");
    assert!(status.success(), "statflow run {extra:?} failed: {status}");
    start.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events: u64 = std::env::var("STATFLOW_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    let file = events_file(events);
    let records = lines(&file);
    let dir = tempfile::tempdir().expect("a scratch folder");
    let topology = dir.path().join("bench.topo");
    std::fs::write(
        &topology,
        format!(
            "source s = file({:?}) {{ time = ts as epoch_millis  late = 5m }}\n\
             metric reward_stats from s {{\n  where kind = \"reward\"\n  dimensions game_id, reward_type\n  \
             window tumbling 1m\n  retain 30d\n  measures {{ rewards = count()  amount = sum(amount)  players = distinct(user_id) }}\n}}\n",
            file.display().to_string()
        ),
    )
    .expect("the topology is written");

    println!(
        "statflow cluster benchmark: {records} records from {}",
        file.display()
    );
    println!(
        "(each figure is the best of 2 runs of the real binary, start to exit, including start-up)"
    );
    let variants: [(&str, Vec<&str>); 3] = [
        ("1 process x 1 worker", vec!["--workers", "1"]),
        ("1 process x 2 workers", vec!["--workers", "2"]),
        (
            "2 processes x 1 worker",
            vec!["--local-processes", "2", "--workers", "1"],
        ),
    ];
    let mut results = Vec::new();
    for (name, args) in &variants {
        let best = (0..2)
            .map(|i| {
                run(
                    &topology,
                    &dir.path().join(format!("state-{}-{i}", results.len())),
                    args,
                )
            })
            .fold(f64::INFINITY, f64::min);
        results.push((name, best));
    }
    let baseline = results[1].1;
    println!(
        "{:<24} {:>9} {:>14} {:>22}",
        "variant", "seconds", "records/s", "vs 1 process x 2"
    );
    for (name, seconds) in &results {
        println!(
            "{:<24} {:>9.2} {:>14.0} {:>21.2}x",
            name,
            seconds,
            records as f64 / seconds,
            baseline / seconds
        );
    }
    let cost = results[2].1 / baseline - 1.0;
    println!(
        "crossing process boundaries costs {:+.0}% of wall time at 2 workers",
        cost * 100.0
    );
}
