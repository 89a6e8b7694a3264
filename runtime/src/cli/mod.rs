//! The `statflow` command line: flags are parsed here and handed to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod backfill;
mod check;
mod generate;
mod local;
mod produce;
mod query;
mod run;
mod user;

/// Live statistics from streams of game events.
#[derive(Debug, Parser)]
#[command(
    name = "statflow",
    version,
    about = "Live statistics from streams of game events.",
    long_about = "statflow turns streams of game events into live, queryable statistics.\n\
                  Describe metrics in a .topo file, check it, run it, and query it over HTTP.",
    after_help = "Examples:\n  \
      statflow check examples/topologies/game_stats.topo\n  \
      statflow run examples/topologies/game_stats.topo --workers 2\n  \
      statflow query query.json"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check topology files and print every diagnostic.
    #[command(
        after_help = "Exit status: 0 when clean (warnings allowed), 1 on errors, 2 on usage errors.\n\n\
        Examples:\n  statflow check examples/topologies/*.topo\n  statflow check game.topo --format json"
    )]
    Check(CheckArgs),
    /// Print what a topology will compute and what state it keeps.
    #[command(
        after_help = "Examples:\n  statflow explain examples/topologies/game_stats.topo\n  \
        statflow explain game.topo --format json > plan.json"
    )]
    Explain(ExplainArgs),
    /// Run a topology: workers, sources and the HTTP query endpoint.
    #[command(
        after_help = "Examples:\n  statflow run examples/topologies/game_stats.topo\n  \
        statflow run game.topo --workers 4 --http 127.0.0.1:9000\n  \
        statflow run game.topo --local-processes 2 --workers 2\n  \
        statflow run game.topo --processes 3 --process 0 --hosts hosts.txt --http 0.0.0.0:8080"
    )]
    Run(RunArgs),
    /// Send a query (JSON or EDN) to a running statflow and print the answer.
    #[command(after_help = "Examples:\n  statflow query query.json\n  \
        echo '{\"metric\": \"reward_stats\", \"time_window\": {\"kind\": \"relative\", \"last\": \"1h\"}}' | statflow query -\n  \
        statflow query query.edn --format edn --url http://127.0.0.1:8080")]
    Query(QueryArgs),
    /// Add, list, remove users, or give one a new token.
    #[command(
        subcommand,
        after_help = "Examples:\n  statflow user add ana --role editor --state-dir .statflow\n  \
        statflow user list\n  statflow user rotate ana\n  statflow user remove ana"
    )]
    User(user::UserCommand),
    /// Write the built-in generator's events as JSON lines.
    #[command(
        after_help = "Examples:\n  statflow generate --events 1000000 --seed 7 --out events.jsonl\n  \
        statflow generate --events 5000000 --span 24h --users 1000000 --out bench.jsonl"
    )]
    Generate(GenerateArgs),
    /// Load a file of JSON lines into a Kafka topic, one message per line.
    #[command(
        after_help = "Brokers: --brokers, else $STATFLOW_KAFKA_BROKERS. The topic must exist.\n\n\
        Examples:\n  statflow generate --events 100000 --out events.jsonl\n  \
        statflow produce events.jsonl --topic game.events --brokers 127.0.0.1:9092 --partitions-by user_id\n  \
        statflow generate --events 1000 | statflow produce - --topic game.events --set compression.type=zstd"
    )]
    Produce(produce::ProduceArgs),
    /// Fill in the history of a metric that joined a running topology.
    #[command(
        after_help = "A metric added to a topology starts counting where its sources resume after the\n\
        restart; this reads its sources again up to that point, into that metric only, with\n\
        a progress bar, then leaves the live input to go on. Files and Kafka topics can be\n\
        backfilled; the generator and telemetry cannot.\n\n\
        Examples:\n  statflow backfill game.topo --metric bets_by_game\n  \
        statflow backfill game.topo --metric bets_by_game --from 2024-08-20T00:00:00Z --to 2024-08-21T00:00:00Z"
    )]
    Backfill(BackfillArgs),
}

/// Arguments of `statflow backfill`.
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The topology statflow runs (to check the metric is in it).
    pub file: std::path::PathBuf,
    /// The metric to fill in.
    #[arg(long)]
    pub metric: String,
    /// Fill in buckets starting at or after this time (RFC 3339); default: all history.
    #[arg(long)]
    pub from: Option<String>,
    /// Fill in buckets starting before this time (RFC 3339); default: no bound.
    #[arg(long)]
    pub to: Option<String>,
    /// Where statflow serves HTTP.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin's token (`Authorization: Bearer`); default `$STATFLOW_TOKEN`.
    #[arg(long)]
    pub token: Option<String>,
    /// Give the order and print the progress, without waiting.
    #[arg(long)]
    pub no_wait: bool,
}

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Rendered for people.
    Human,
    /// One JSON array of diagnostics, for editors and CI.
    Json,
}

/// Arguments of `statflow check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Topology files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// How to print diagnostics.
    #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
    pub format: CheckFormat,
    /// Colour: auto (on a terminal), always or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal only.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Arguments of `statflow explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The topology file.
    pub file: PathBuf,
    /// `text` for people, `json` for the serialized plan.
    #[arg(long, value_enum, default_value_t = ExplainFormat::Text)]
    pub format: ExplainFormat,
}

/// Output format of `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainFormat {
    /// Readable text.
    Text,
    /// The serialized plan.
    Json,
}

/// How `statflow run` writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines, coloured on a terminal.
    Human,
    /// One JSON object per line: `timestamp`, `level`, `fields.message`,
    /// the event's other fields, and `target`.
    Json,
}

/// Reads a duration flag such as `5s`, `500ms` or `1m30s`.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    match statflow_dsl::duration::parse_duration(text) {
        Ok(d) if d.millis() > 0 => Ok(std::time::Duration::from_millis(d.millis())),
        Ok(_) => Err("must be longer than zero".into()),
        Err(_) => Err(format!(
            "`{text}` is not a duration; write a number and a unit, such as 5s, 500ms or 1m"
        )),
    }
}

/// Arguments of `statflow run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The topology file.
    pub file: PathBuf,
    /// Worker threads in this process.
    #[arg(long, short = 'w', default_value_t = 2)]
    pub workers: usize,
    /// Address of the HTTP endpoint (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: std::net::SocketAddr,
    /// Close an epoch after this many milliseconds.
    #[arg(long, default_value_t = 200)]
    pub epoch_ms: u64,
    /// Hand a worker's combined rows on after this many records, even
    /// within an epoch (bounds the combiner's memory).
    #[arg(long, default_value_t = 50_000)]
    pub epoch_records: usize,
    /// Folder for dead letters and checkpoints.
    #[arg(long, default_value = ".statflow")]
    pub state_dir: PathBuf,
    /// Time between checkpoints, such as `5s` or `1m`.
    #[arg(long, default_value = "5s", value_parser = parse_interval)]
    pub checkpoint_interval: std::time::Duration,
    /// Where checkpoints go (default: `<state-dir>/checkpoints`). Every
    /// process of a cluster must see the same folder.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Take no checkpoints and resume from none: a restart starts empty.
    #[arg(long)]
    pub no_checkpoints: bool,
    /// Keep hourly rows beside the buckets of metrics whose tumbling window
    /// divides an hour: queries over long ranges read far fewer rows, for
    /// more ingest CPU and memory (see the book's Performance page).
    #[arg(long)]
    pub hourly_rollups: bool,
    /// MiB each worker may keep of queries' whole hours, given again while
    /// no event reaches them; 0 turns the query cache off.
    #[arg(long, default_value_t = 32)]
    pub query_cache_mib: usize,
    /// How log lines look: `human` (coloured on a terminal) or `json`, one
    /// object per line for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// Which log lines to write, such as `info`, `warn` or
    /// `statflow_runtime=debug,info` (default: `RUST_LOG`, else `info`).
    #[arg(long)]
    pub log: Option<String>,
    /// Exit once every source has finished (file sources, bounded generators).
    #[arg(long)]
    pub exit_when_done: bool,
    /// Kafka brokers (`host:port[,host:port…]`) for Kafka sources whose
    /// topology names none; else $STATFLOW_KAFKA_BROKERS. A source's own
    /// `brokers` always wins.
    #[arg(long, value_name = "BROKERS")]
    pub kafka_brokers: Option<String>,
    /// How many processes the cluster has (with --process and --hosts).
    #[arg(long, requires_all = ["process", "hosts"])]
    pub processes: Option<usize>,
    /// This process's index in the cluster, from 0 (with --processes and --hosts).
    #[arg(long, requires_all = ["processes", "hosts"])]
    pub process: Option<usize>,
    /// A file with one `host:port` per line, one line per process, in process
    /// order: where the processes find each other (not the HTTP addresses).
    #[arg(long, requires_all = ["processes", "process"])]
    pub hosts: Option<PathBuf>,
    /// Serve without authentication, every request acting as the admin
    /// `local`. Refused unless --http is a loopback address.
    #[arg(long)]
    pub no_auth: bool,
    /// The state store's SQLite file (users, tokens, dashboards); default
    /// `<state-dir>/statflow.db`.
    #[arg(long, hide = true)]
    pub store_file: Option<PathBuf>,
    /// Run a single-node cluster of this many processes on loopback ports:
    /// statflow starts and supervises them; process I serves HTTP on the
    /// --http port plus I.
    #[arg(long, conflicts_with_all = ["processes", "process", "hosts"])]
    pub local_processes: Option<usize>,
}

/// Arguments of `statflow query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// A file holding the query, or `-` for standard input. JSON or EDN.
    pub file: String,
    /// Where statflow serves HTTP.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// How to print the answer.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
    /// The token to send (`Authorization: Bearer`); default `$STATFLOW_TOKEN`.
    #[arg(long)]
    pub token: Option<String>,
}

/// Output format of `query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    /// An aligned table.
    Table,
    /// The JSON answer.
    Json,
    /// The EDN answer.
    Edn,
}

/// Arguments of `statflow generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// How many events.
    #[arg(long, default_value_t = 100_000)]
    pub events: u64,
    /// Seed; the same seed writes the same file.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event time covered by the file, ending now (e.g. `24h`).
    #[arg(long, default_value = "1h")]
    pub span: String,
    /// Distinct games.
    #[arg(long, default_value_t = 200)]
    pub games: u64,
    /// Distinct users.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Only these event kinds (reward, bet, login); all when empty.
    #[arg(long, value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// The output file; `-` for standard output.
    #[arg(long, default_value = "-")]
    pub out: String,
}

/// Parses the command line and runs it; the exit code follows each subcommand's rules.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Check(args) => return check::check(&args),
        Command::Explain(args) => return check::explain(&args),
        Command::Run(args) => run::run(args),
        Command::Query(args) => query::query(args),
        Command::Generate(args) => generate::generate(args),
        Command::Backfill(args) => backfill::backfill(args),
        Command::Produce(args) => produce::produce(args),
        Command::User(command) => user::user(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
