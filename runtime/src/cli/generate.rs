//! `statflow generate`: the built-in generator's events as a file of JSON lines.
//!
//! The file covers `--span` of event time ending now: line `i` of `n` is
//! asked for at `now - span + span * i / (n - 1)`, so the file is in time
//! order apart from the generator's jitter (under a second) and its 5% of
//! late events (up to 5 minutes early). With the same seed the same lines
//! come out; only the timestamps move with the clock.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use statflow_dsl::duration::parse_duration;
use statflow_dsl::{did_you_mean, GeneratorSource, Problem};

use super::GenerateArgs;
use crate::source::generator::{EventKind, Generator};

/// Output buffer: large enough that writes are rare, small next to the file.
/// The progress bar moves once per buffer, about every 7,000 lines.
const BUFFER_BYTES: usize = 1 << 20;

/// Writes generated events as JSON lines; 2 on bad flags, 1 when writing fails.
pub fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let file = match FilePlan::new(&args, now_ms) {
        Ok(file) => file,
        Err(problem) => {
            eprintln!("error: {problem}");
            return Ok(ExitCode::from(2));
        }
    };

    let to_stdout = args.out == "-";
    let sink: Box<dyn Write> = if to_stdout {
        Box::new(io::stdout().lock())
    } else {
        let file =
            File::create(&args.out).with_context(|| format!("cannot create {}", args.out))?;
        Box::new(file)
    };
    let mut out = BufWriter::with_capacity(BUFFER_BYTES, sink);
    let progress = progress_bar(file.events);

    let started = Instant::now();
    let result = file.write(&mut out, &progress).and_then(|bytes| {
        out.flush()?;
        Ok(bytes)
    });
    progress.finish_and_clear();
    let bytes = match result {
        Ok(bytes) => bytes,
        // A reader that stops early (`statflow generate | head`) is not an error.
        Err(e) if to_stdout && e.kind() == io::ErrorKind::BrokenPipe => {
            return Ok(ExitCode::SUCCESS)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", args.out)),
    };

    let seconds = started.elapsed().as_secs_f64();
    let destination = if to_stdout {
        "standard output"
    } else {
        &args.out
    };
    eprintln!(
        "wrote {} events, {} bytes ({:.1} MiB) to {} in {:.2} s ({:.2} million events/s)",
        file.events,
        bytes,
        bytes as f64 / (1024.0 * 1024.0),
        destination,
        seconds,
        file.events as f64 / seconds.max(1e-9) / 1e6,
    );
    Ok(ExitCode::SUCCESS)
}

/// A bar on standard error showing events/s and the time left; hidden when
/// standard error is not a terminal, so logs and pipes stay clean.
fn progress_bar(events: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{wide_bar} {human_pos}/{human_len} events  {per_sec:>14}  ETA {eta}",
    )
    .expect("the template is valid");
    ProgressBar::with_draw_target(Some(events), ProgressDrawTarget::stderr()).with_style(style)
}

/// A flag of `statflow generate` that cannot be used.
#[derive(Debug, thiserror::Error)]
enum FlagProblem {
    /// `--span` is not a duration.
    #[error("--span: {message}; {help}")]
    Span { message: String, help: String },
    /// `--kinds` names a kind the generator does not make.
    #[error("--kinds: unknown kind `{found}`; {help}")]
    Kind { found: String, help: String },
    /// `--games` or `--users` is zero.
    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },
}

/// What to write, decided from the flags and the clock.
#[derive(Debug, Clone)]
struct FilePlan {
    /// The generator's settings; `events` is left unbounded because the
    /// kind filter may skip events, and the plan counts lines itself.
    config: GeneratorSource,
    /// Lines to write.
    events: u64,
    /// Nominal time of the first line, in epoch milliseconds.
    start_ms: i64,
    /// Nominal time from the first line to the last.
    span_ms: u64,
    /// Whether each kind, indexed like [`EventKind::ALL`], is written.
    wanted: [bool; 3],
}

impl FilePlan {
    /// Checks the flags; the file ends at `now_ms`.
    fn new(args: &GenerateArgs, now_ms: i64) -> Result<FilePlan, FlagProblem> {
        let span = parse_duration(&args.span).map_err(|why| {
            let problem = Problem::BadDuration {
                found: args.span.clone(),
                why,
            };
            FlagProblem::Span {
                message: problem.message(),
                help: problem.help().unwrap_or_default(),
            }
        })?;
        if args.games == 0 {
            return Err(FlagProblem::Zero { flag: "games" });
        }
        if args.users == 0 {
            return Err(FlagProblem::Zero { flag: "users" });
        }
        let mut wanted = [args.kinds.is_empty(); 3];
        for name in &args.kinds {
            let name = name.trim();
            let Some(kind) = EventKind::from_name(name) else {
                let names = EventKind::ALL.map(EventKind::as_str);
                let help = match did_you_mean(name, names) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("the kinds are {}", names.join(", ")),
                };
                return Err(FlagProblem::Kind {
                    found: name.to_string(),
                    help,
                });
            };
            wanted[kind_index(kind)] = true;
        }
        // Durations reach 580 million years; clamp rather than overflow the clock.
        let span_ms = span.millis().min(i64::MAX as u64);
        Ok(FilePlan {
            config: GeneratorSource {
                rate: 0,
                seed: args.seed,
                events: None,
                games: args.games,
                users: args.users,
            },
            events: args.events,
            start_ms: now_ms.saturating_sub(span_ms as i64),
            span_ms,
            wanted,
        })
    }

    /// The nominal time of line `i`: spread evenly from the start to the end of the span.
    fn nominal_ms(&self, i: u64) -> i64 {
        if self.events <= 1 {
            return self.start_ms.saturating_add(self.span_ms as i64);
        }
        let offset = u128::from(self.span_ms) * u128::from(i) / u128::from(self.events - 1);
        self.start_ms.saturating_add(offset as i64)
    }

    /// Writes the lines to `out` and returns how many bytes that was.
    fn write(&self, out: &mut impl Write, progress: &ProgressBar) -> io::Result<u64> {
        // One stream, as worker 0 of 1: the file is one process's view.
        let mut generator = Generator::new(&self.config, 0, 1);
        // Lines are made straight into a chunk of about `BUFFER_BYTES`, written
        // in one call: a `BufWriter` passes writes that large through, so each
        // line is copied once, not twice.
        let mut chunk = Vec::with_capacity(BUFFER_BYTES + 4096);
        let mut bytes = 0u64;
        let mut written = 0u64;
        while written < self.events {
            let mark = chunk.len();
            let Some(event) = generator.next_into(self.nominal_ms(written), &mut chunk) else {
                break; // unreachable: the generator is unbounded
            };
            if !self.wanted[kind_index(event.kind)] {
                chunk.truncate(mark);
                continue;
            }
            chunk.push(b'\n');
            written += 1;
            if chunk.len() >= BUFFER_BYTES {
                out.write_all(&chunk)?;
                bytes += chunk.len() as u64;
                chunk.clear();
                progress.set_position(written);
            }
        }
        out.write_all(&chunk)?;
        bytes += chunk.len() as u64;
        progress.set_position(written);
        Ok(bytes)
    }
}

/// The position of `kind` in [`EventKind::ALL`].
fn kind_index(kind: EventKind) -> usize {
    match kind {
        EventKind::Reward => 0,
        EventKind::Bet => 1,
        EventKind::Login => 2,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::source::generator::{MAX_JITTER_MS, MAX_LATE_MS};

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn args(events: u64) -> GenerateArgs {
        GenerateArgs {
            events,
            seed: 7,
            span: "1h".into(),
            games: 50,
            users: 10_000,
            kinds: Vec::new(),
            out: "-".into(),
        }
    }

    fn write(args: &GenerateArgs) -> Vec<u8> {
        let plan = FilePlan::new(args, NOW).unwrap();
        let mut out = Vec::new();
        let bytes = plan.write(&mut out, &ProgressBar::hidden()).unwrap();
        assert_eq!(bytes, out.len() as u64);
        out
    }

    fn parse(bytes: &[u8]) -> Vec<Value> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn writes_the_requested_lines_spread_over_the_span_in_rough_order() {
        let lines = parse(&write(&args(10_000)));
        assert_eq!(lines.len(), 10_000);
        let ts: Vec<i64> = lines.iter().map(|l| l["ts"].as_i64().unwrap()).collect();
        let start = NOW - 3_600_000;
        assert!(ts.iter().all(|t| (start - MAX_LATE_MS..=NOW).contains(t)));
        // The first and last on-time events sit at the ends of the span.
        assert!(ts[..100].iter().any(|t| *t < start + 60_000));
        assert!(ts[ts.len() - 100..].iter().any(|t| *t > NOW - 60_000));
        // Out of order only by jitter, except for the late events and their successors.
        let in_order = ts
            .windows(2)
            .filter(|w| w[1] >= w[0] - MAX_JITTER_MS)
            .count();
        assert!(in_order > 9_000, "{in_order} of 9999 pairs in order");
    }

    #[test]
    fn the_same_seed_writes_the_same_file() {
        assert_eq!(write(&args(2_000)), write(&args(2_000)));
        assert_ne!(
            write(&args(2_000)),
            write(&GenerateArgs {
                seed: 8,
                ..args(2_000)
            })
        );
    }

    #[test]
    fn kinds_filter_still_writes_the_requested_number_of_lines() {
        let only_bets = GenerateArgs {
            kinds: vec!["bet".into(), "login".into()],
            ..args(3_000)
        };
        let lines = parse(&write(&only_bets));
        assert_eq!(lines.len(), 3_000);
        assert!(lines
            .iter()
            .all(|l| l["kind"] == "bet" || l["kind"] == "login"));
        assert!(lines.iter().any(|l| l["kind"] == "login"));
    }

    #[test]
    fn bad_flags_are_explained() {
        let problem = |args: GenerateArgs| FilePlan::new(&args, NOW).unwrap_err().to_string();
        let span = problem(GenerateArgs {
            span: "24x".into(),
            ..args(1)
        });
        assert!(
            span.starts_with("--span: `24x` is not a duration"),
            "{span}"
        );
        let kind = problem(GenerateArgs {
            kinds: vec!["rewards".into()],
            ..args(1)
        });
        assert_eq!(
            kind,
            "--kinds: unknown kind `rewards`; did you mean `reward`?"
        );
        let users = problem(GenerateArgs {
            users: 0,
            ..args(1)
        });
        assert_eq!(users, "--users must be at least 1");
    }

    #[test]
    fn zero_and_one_events_are_fine() {
        assert!(write(&args(0)).is_empty());
        let one = parse(&write(&args(1)));
        assert_eq!(one.len(), 1);
        assert!(one[0]["ts"].as_i64().unwrap() <= NOW);
    }

    #[test]
    fn generate_writes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let out = path.to_str().unwrap().to_string();
        let code = generate(GenerateArgs { out, ..args(1_234) }).unwrap();
        assert_eq!(code, ExitCode::SUCCESS);
        let text = std::fs::read(&path).unwrap();
        assert_eq!(parse(&text).len(), 1_234);
        assert!(text.ends_with(b"\n"));
    }

    #[test]
    fn generate_refuses_bad_flags_with_status_2() {
        let code = generate(GenerateArgs {
            span: "soon".into(),
            ..args(1)
        })
        .unwrap();
        assert_eq!(code, ExitCode::from(2));
    }
}
