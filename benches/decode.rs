//! Field extraction alone: `Selector::extract` (the engine's reader of
//! every event) against, in the same run, the serde_json visitor it
//! replaced and the plain loop's `serde_json::from_slice` into a borrowed
//! struct, on the first records of the e2e file with the e2e metric's
//! fields.
//!
//! ```text
//! cargo bench --bench decode                                     # 1,000,000 records
//! STATFLOW_BENCH_DECODE_RECORDS=200000 cargo bench --bench decode
//! ```
//!
//! Settings, all optional: `STATFLOW_BENCH_FILE` (the file of JSON lines;
//! the generated 5,000,000-event file otherwise, as for e2e),
//! `STATFLOW_BENCH_DECODE_RECORDS` (records read from it, 1,000,000) and
//! `STATFLOW_BENCH_RUNS` (timed passes of each reader, the best kept, 5).
//!
//! This is a benchmark, not a test: it prints figures, and fails only when
//! the readers disagree on what the records hold.

mod common;

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::{bench_file, env_number, machine, thousands, PlainEvent as Event, DEFAULT_EVENTS};
use statflow::dataflow::decode::{Scalar, Selector};
use statflow::dsl::FieldPath;

/// The fields the e2e metric reads.
const FIELDS: [&str; 6] = ["ts", "kind", "game_id", "reward_type", "amount", "user_id"];

/// What a reader saw, summed over the records so that no pass can be
/// optimised away and all three can be compared.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    ts: i64,
    amount: f64,
    string_bytes: usize,
}

impl Tally {
    fn add_scalars(&mut self, out: &[Option<Scalar>]) {
        if let Some(Scalar::Int(ts)) = out[0] {
            self.ts = self.ts.wrapping_add(ts);
        }
        if let Some(amount) = out[4].as_ref().and_then(Scalar::as_f64) {
            self.amount += amount;
        }
        for slot in [1, 2, 3, 5] {
            if let Some(Scalar::Str(s)) = &out[slot] {
                self.string_bytes += s.len();
            }
        }
    }

    fn add_event(&mut self, e: &Event) {
        self.ts = self.ts.wrapping_add(e.ts);
        self.amount += e.amount.unwrap_or(0.0);
        self.string_bytes += e.kind.len();
        for s in [&e.game_id, &e.reward_type, &e.user_id]
            .into_iter()
            .flatten()
        {
            self.string_bytes += s.len();
        }
    }
}

/// The best of `runs` passes of `pass` over all records.
fn best(runs: u64, mut pass: impl FnMut() -> Tally) -> (Duration, Tally) {
    let mut best = Duration::MAX;
    let mut tally = Tally::default();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        tally = black_box(pass());
        best = best.min(started.elapsed());
    }
    (best, tally)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("decode bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let events = env_number("STATFLOW_BENCH_EVENTS", DEFAULT_EVENTS)?;
    let wanted = env_number("STATFLOW_BENCH_DECODE_RECORDS", 1_000_000)? as usize;
    let runs = env_number("STATFLOW_BENCH_RUNS", 5)?;
    let (file, _) = bench_file(events)?;
    let mut records = Vec::with_capacity(wanted);
    for line in BufReader::new(std::fs::File::open(&file)?).split(b'\n') {
        if records.len() == wanted {
            break;
        }
        records.push(line?);
    }
    let bytes: usize = records.iter().map(Vec::len).sum();

    let mut selector = Selector::new();
    for field in FIELDS {
        selector.add(&FieldPath::parse(field));
    }

    machine::print();
    println!(
        "{} records ({} bytes, {:.0} bytes each) of {}; best of {runs} passes",
        thousands(records.len() as u64),
        thousands(bytes as u64),
        bytes as f64 / records.len().max(1) as f64,
        file.display()
    );

    let mut out = Vec::new();
    let (scanner, scanned) = best(runs, || {
        let mut tally = Tally::default();
        for record in &records {
            if selector.extract(record, &mut out).is_ok() {
                tally.add_scalars(&out);
            }
        }
        tally
    });
    let (visitor, visited) = best(runs, || {
        let mut tally = Tally::default();
        for record in &records {
            if selector.extract_with_visitor(record, &mut out).is_ok() {
                tally.add_scalars(&out);
            }
        }
        tally
    });
    let (plain, parsed) = best(runs, || {
        let mut tally = Tally::default();
        for record in &records {
            if let Ok(event) = serde_json::from_slice::<Event>(record) {
                tally.add_event(&event);
            }
        }
        tally
    });

    println!();
    println!(
        "{:<52} {:>12} {:>14} {:>10}",
        "reader", "ns/record", "records/s", "vs extract"
    );
    for (name, took) in [
        ("Selector::extract (the scanner)", scanner),
        ("serde_json visitor (extract before the scanner)", visitor),
        (
            "serde_json::from_slice, borrowed struct (plain loop)",
            plain,
        ),
    ] {
        let per_record = took.as_nanos() as f64 / records.len().max(1) as f64;
        println!(
            "{name:<52} {per_record:>12.1} {:>14} {:>9.2}x",
            thousands((records.len() as f64 / took.as_secs_f64()) as u64),
            took.as_secs_f64() / scanner.as_secs_f64()
        );
    }

    if scanned != visited || scanned.ts != parsed.ts || scanned.string_bytes != parsed.string_bytes
    {
        anyhow::bail!("the readers disagree: {scanned:?}, {visited:?}, {parsed:?}");
    }
    Ok(())
}
