//! statflow's integration tests, built as one test binary (as ripgrep does)
//! so that `cargo test` links the workspace once, not once per file.
//!
//! Each module below is one group of tests; run a single group with
//! `cargo test --test tests book::` (or `examples::`).

/// The guide under `book/src`: every ```` ```topo ```` block compiles, or
/// fails with exactly the diagnostic it is marked with, and the command
/// output shown beside a block is what statflow really prints.
mod book;

/// Every topology under `examples/topologies` compiles with no errors and
/// no warnings.
mod examples;

/// The engine against a from-scratch recomputation: every window kind,
/// measure, filter form, group-by, granularity and time zone, under 1, 2 and
/// 4 workers, with out-of-order, late and malformed records.
mod oracle;

/// The HTTP endpoint through its routes, answers checked against the
/// events a file source read: the issue's EDN query and its JSON twin,
/// every validation error code with its path, 404/405/411/413, the catalog,
/// the status with malformed lines, a property test that no input makes
/// the server fail, and `server::run` on a real socket.
mod http;

/// `"epoch": N` in a query: read at exactly that epoch, or a clear refusal.
mod epoch;

/// Authorization: the permission matrix (anonymous, viewer, editor, owner,
/// admin × every route), dashboard CRUD and sharing, session cookies and
/// CSRF, token rotation, `--no-auth` and its refusal off loopback, the first
/// admin's token printed at start, `statflow user` and `statflow query --token`.
mod auth;

/// The web app in headless Chromium (tests/browser/dashboards.mjs with
/// playwright-core): sign in, build a panel whose chart has data drawn,
/// save, reload, share with a second user, refuse a third, who still opens
/// the statflow health dashboard and sees its chart; screenshots in
/// target/browser-artifacts/.
mod browser;

/// Clusters of processes on loopback, started through the real binary:
/// identical answers under every shape, and a killed process stops the rest.
mod cluster;

/// Checkpoints and recovery: stopped and killed runs resume to exactly the
/// answers of runs never stopped, on any number of workers; torn
/// checkpoints are skipped; changed metrics start empty.
mod recovery;

/// Backfill: a metric added later and backfilled equals one there from the
/// start, across restarts and worker counts, in process and by the CLI.
mod backfill;

/// Retention: old buckets leave the rollup and the checkpoints; answers
/// reaching into evicted time say so.
mod retention;

/// `--log-format json`: one JSON object per line, notable events included.
mod logs;

/// statflow watching itself: the `telemetry()` source and a `statflow` metric.
mod telemetry;

/// The default "statflow health" dashboard: made for a topology with a
/// telemetry metric, seen by every signed-in user, every panel's query
/// answering with data; none without telemetry.
mod health_dashboard;

/// `GET /metrics` read with a Prometheus text parser: the source counters
/// equal the lines and malformed lines of the file, the engine's gauges are
/// there, and the query, duration and response counters move as queries flow.
mod metrics;

/// Kafka sources against a real broker (Tansu on loopback, started by each
/// test): answers equal the file source's with 1 and 4 workers, two topics,
/// a pattern gaining a topic, a broker restart mid-run, checkpointed
/// positions resumed on another worker count, dead letters with offsets
/// (file and topic), metadata fields, and `statflow produce`. Adding a
/// partition is ignored: Tansu 0.6.0 refuses CreatePartitions.
mod kafka;
