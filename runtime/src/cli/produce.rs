//! `statflow produce`: loads a file of JSON lines into a Kafka topic, one
//! message per line, for demos, tests and benchmarks (like
//! kafka-console-producer, with a progress bar and keys taken from a field).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::source::kafka::config::BROKERS_ENV;
use crate::source::kafka::producer::{produce_lines, producer};

/// Arguments of `statflow produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// A file of JSON lines, or `-` for standard input.
    pub file: PathBuf,
    /// The topic to write to; it must exist.
    #[arg(long)]
    pub topic: String,
    /// Bootstrap brokers, `host:port[,host:port…]`; default: $STATFLOW_KAFKA_BROKERS.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Key each message by this field of its line (dotted for nested
    /// fields), so one key's events stay in one partition and in order.
    /// Without it messages have no key and are spread over the partitions.
    #[arg(long, value_name = "FIELD")]
    pub partitions_by: Option<String>,
    /// A librdkafka producer setting, `KEY=VALUE`; may be repeated
    /// (`--set compression.type=zstd --set security.protocol=SSL`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// How long to wait at the end for the brokers to acknowledge everything.
    #[arg(long, default_value_t = 60)]
    pub flush_seconds: u64,
}

/// Sends the lines; 2 on bad flags, 1 when a message could not be delivered.
pub fn produce(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let env = std::env::var(BROKERS_ENV).ok();
    let Some(brokers) = args
        .brokers
        .clone()
        .or(env)
        .filter(|b| !b.trim().is_empty())
    else {
        eprintln!("error: no brokers: pass --brokers host:9092 or set {BROKERS_ENV}");
        return Ok(ExitCode::from(2));
    };
    let mut settings = BTreeMap::new();
    for s in &args.settings {
        let Some((key, value)) = s.split_once('=') else {
            eprintln!("error: --set {s}: write KEY=VALUE, such as --set compression.type=zstd");
            return Ok(ExitCode::from(2));
        };
        settings.insert(key.trim().to_string(), value.trim().to_string());
    }
    let from_stdin = args.file.as_os_str() == "-";
    let (input, size): (Box<dyn BufRead>, Option<u64>) = if from_stdin {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file = File::open(&args.file)
            .with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 20, file)), size)
    };
    let producer = producer(&brokers, &settings)?;
    let bar = progress_bar(size);
    let started = Instant::now();
    let produced = produce_lines(
        &producer,
        &args.topic,
        args.partitions_by.as_deref(),
        input,
        Duration::from_secs(args.flush_seconds),
        |bytes| bar.set_position(bytes),
    );
    bar.finish_and_clear();
    let produced = produced.with_context(|| {
        format!(
            "cannot load {} into topic `{}` at {brokers}; does the topic exist?",
            args.file.display(),
            args.topic
        )
    })?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "sent {} messages to topic `{}` at {brokers} in {seconds:.2} s ({:.0} messages/s); {} acknowledged",
        produced.sent,
        args.topic,
        produced.sent as f64 / seconds.max(1e-9),
        produced.delivered,
    );
    if produced.failed > 0 || produced.delivered < produced.sent {
        eprintln!(
            "error: {} messages were not delivered{}",
            produced.sent - produced.delivered,
            produced
                .first_error
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Bytes of the input sent so far; a spinner for standard input; hidden
/// when standard error is not a terminal.
fn progress_bar(size: Option<u64>) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = match size {
        Some(_) => {
            "{wide_bar} {binary_bytes}/{binary_total_bytes}  {binary_bytes_per_sec:>12}  ETA {eta}"
        }
        None => "{spinner} {binary_bytes}  {binary_bytes_per_sec:>12}",
    };
    let style = ProgressStyle::with_template(template).expect("the template is valid");
    ProgressBar::with_draw_target(size, ProgressDrawTarget::stderr()).with_style(style)
}
