//! The engine: worker threads running the rendered dataflows, the epoch
//! clock, query admission, and the counters the status endpoint reads.

mod agreement;
mod backfill;
mod checkpointing;
mod retention;
mod worker;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use statflow_dataflow::ingest::{RecordReader, Resume, SourceStats};
use statflow_dataflow::query::{Answer, Query};
use statflow_dataflow::query_cache::CacheShared;
use statflow_dataflow::scan::{Outcome, Request, WorkerReport};
use statflow_dsl::{Plan, SourcePlan};

pub use backfill::unbackfillable_source;

use crate::checkpoint::{CheckpointConfig, Restored};
use crate::deadletter::DeadLetterFile;
use crate::source::file::SlicePool;

/// Keeps this process's memory in small pages: turns transparent huge
/// pages off for it (Linux's `PR_SET_THP_DISABLE`), which mimalloc would
/// otherwise ask for. The rollup's batches are allocated and freed in
/// large pieces as they merge, and a huge page that a freed piece leaves
/// partly used stays resident whole: in the e2e benchmark (5,000,000
/// events, 2 workers) peak memory was 229–285 MiB with huge pages and
/// 199–223 MiB without, at the same ingest and query speed. Call it before
/// the engine allocates; `statflow run` does. Elsewhere it does nothing.
pub fn small_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!("transparent huge pages stay on: {e}");
    }
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Worker threads.
    pub workers: usize,
    /// Close an epoch after this long.
    pub epoch_interval: Duration,
    /// A worker hands its combined rows on once it has read this many
    /// records into the open epoch (epochs themselves follow the clock).
    pub epoch_records: usize,
    /// Most records one ingest operator reads per activation; bounds the
    /// length of a worker step, so queries never wait behind a backlog.
    pub batch: usize,
    /// How long after an epoch completes the rollup may forget the
    /// distinction between it and older epochs. Queries read at most this
    /// far back; a query slower than this is retried at a newer epoch.
    pub compaction_lag: Duration,
    /// Where dead letters are written.
    pub dead_letter_dir: std::path::PathBuf,
    /// This process's place in a cluster of processes; `None` runs alone.
    pub cluster: Option<ClusterConfig>,
    /// Checkpoints to take and resume from; `None` keeps everything in memory only.
    pub checkpoints: Option<CheckpointConfig>,
    /// How often each worker evicts rows past their metric's retention.
    pub retention_period: Duration,
    /// Keep hourly rows beside the rollup for the metrics that can (see
    /// `statflow_dataflow::hourly`): long queries read 60 times fewer rows
    /// of a 1-minute metric, at a cost in ingest CPU and memory. Off by
    /// default: in the e2e benchmark they halved a 24-hour query's time but
    /// cost half as much ingest CPU again and a third more memory.
    pub hourly_rollups: bool,
    /// Bytes each worker may keep of queries' whole hours, given again
    /// while no update reaches them (see `statflow_dataflow::query_cache`);
    /// 0 keeps none.
    pub query_cache_bytes: usize,
}

/// Each worker's query cache unless configured otherwise: 32 MiB.
pub const QUERY_CACHE_BYTES: usize = 32 << 20;

/// One process of a cluster: every process runs the same plan with the same
/// number of workers, and finds the others at `addresses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This process's index into `addresses`.
    pub process: usize,
    /// `host:port` of every process, in process order.
    pub addresses: Vec<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            epoch_interval: Duration::from_millis(200),
            epoch_records: 50_000,
            batch: 1_000,
            compaction_lag: Duration::from_secs(2),
            dead_letter_dir: std::path::PathBuf::from(".statflow/dead-letters"),
            cluster: None,
            checkpoints: None,
            retention_period: Duration::from_secs(5),
            hourly_rollups: false,
            query_cache_bytes: QUERY_CACHE_BYTES,
        }
    }
}

/// Makes a worker's reader of a source, for the seat it is given.
pub type ReaderFactory = Arc<
    dyn Fn(&SourcePlan, &ReaderSeat<'_>) -> anyhow::Result<Box<dyn RecordReader>> + Send + Sync,
>;

/// Which share of a source one worker's reader reads.
#[derive(Debug, Clone, Copy)]
pub struct ReaderSeat<'a> {
    /// The worker's index among all workers of the cluster.
    pub worker: usize,
    /// How many workers the cluster has.
    pub workers: usize,
    /// Every partition's position to resume from; the reader picks its own.
    pub resume: &'a Resume,
    /// For a file source read by a process's workers together, the pool of
    /// slices they take from as they go; without one, a file's slices are
    /// dealt out by worker index.
    pub slices: Option<&'a Arc<SlicePool>>,
}

/// Why a query got no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryFailure {
    /// The engine is stopping or stopped.
    #[error("statflow is shutting down")]
    ShuttingDown,
    /// The workers kept moving past the epoch chosen for the query.
    #[error("the query could not be read at a consistent epoch after {0} tries")]
    NoConsistentEpoch(usize),
    /// The query asked for an epoch the rollup has already compacted away.
    #[error("epoch {0} is no longer readable; ask again without epoch")]
    EpochNotReadable(u64),
}

/// A query taking longer than this is logged, once, as slow.
pub const SLOW_QUERY: Duration = Duration::from_secs(1);

/// Logs a slow query when dropped (however the query ended), and tells
/// the telemetry how long it took.
struct SlowQuery {
    started: std::time::Instant,
    metric: Option<String>,
    telemetry: Option<(Arc<crate::telemetry::Hub>, usize)>,
}

impl Drop for SlowQuery {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        if let Some((hub, worker)) = &self.telemetry {
            let metric = self.metric.as_deref().unwrap_or("?");
            hub.query(*worker, metric, took.as_secs_f64() * 1000.0);
        }
        if took >= SLOW_QUERY {
            tracing::warn!(
                metric = self.metric.as_deref().unwrap_or("?"),
                millis = took.as_millis() as u64,
                "slow query"
            );
        }
    }
}

/// A request on its way to a worker, with where to send the outcome.
pub struct QueryRequest {
    /// A validated query, or a status request.
    pub request: Request,
    /// Read at exactly this completed epoch, or at the newest complete one
    /// when `None`. A pinned request waits until its epoch completes and is
    /// never retried at another epoch.
    pub epoch: Option<u64>,
    /// Where the outcome goes.
    pub reply: tokio::sync::oneshot::Sender<Result<Outcome, QueryFailure>>,
}

/// Every worker's report, over every process, read at one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterStatus {
    /// Every epoch up to this one was complete everywhere when asked.
    pub as_of: u64,
    /// One report per worker, by worker index.
    pub reports: Vec<WorkerReport>,
}

impl ClusterStatus {
    /// True when every source on every worker has finished and what they
    /// read is queryable.
    pub fn done(&self) -> bool {
        self.reports
            .iter()
            .all(|r| r.finished_at.is_some_and(|at| self.as_of >= at))
    }
}

/// What one worker shares with the rest of the process.
#[derive(Debug)]
pub struct WorkerShared {
    /// Counters per source (by index in the plan).
    pub sources: Vec<Arc<SourceStats>>,
    /// The epoch this worker is filling.
    pub epoch: AtomicU64,
    /// Every epoch before this one is complete on every worker.
    pub complete: AtomicU64,
    /// The epoch in which this worker's sources all finished; `u64::MAX` while not.
    pub finished_at: AtomicU64,
    /// Each metric's rows and their size in this worker's shard, by plan
    /// index, as last measured (every [`FOOTPRINT_EVERY`]).
    pub footprint: Mutex<Vec<statflow_dataflow::snapshot::Footprint>>,
    /// This worker's query cache's bound and what it did.
    pub query_cache: Arc<CacheShared>,
    /// Set once this worker has found every process of the cluster
    /// running the same topology and settings as its own (see
    /// [`agreement`]).
    pub agreed: AtomicBool,
}

/// How often each worker measures its metrics' rows and bytes: a walk over
/// its whole shard.
pub const FOOTPRINT_EVERY: Duration = Duration::from_secs(10);

/// State shared by the workers, the HTTP server and the CLI.
pub struct Shared {
    /// The running plan.
    pub plan: Arc<Plan>,
    /// One entry per worker.
    pub workers: Vec<WorkerShared>,
    /// Set to stop the workers.
    pub shutdown: AtomicBool,
    /// The first fatal error of a worker, if any.
    pub error: Mutex<Option<String>>,
    /// Queries answered.
    pub queries: AtomicU64,
    /// This process's index in the cluster (0 when alone).
    pub process: usize,
    /// Processes in the cluster (1 when alone).
    pub processes: usize,
    /// Worker threads per process.
    pub threads: usize,
    /// What checkpointing has done in this process.
    pub checkpoints: CheckpointStats,
    /// The checkpoint epoch this run resumed from, if any.
    pub restored_from: Option<u64>,
    /// Rollup rows retracted because they passed their metric's retention.
    pub evicted_rows: AtomicU64,
    /// The queues of statflow's own telemetry, when a source reads it.
    pub telemetry: Option<Arc<crate::telemetry::Hub>>,
    /// The last checkpoint a clean stop takes: there when checkpoints are
    /// taken and the process runs alone.
    pub(crate) final_checkpoint: Option<checkpointing::FinalCheckpoint>,
    /// Per source (by plan index), the slices this process's workers take
    /// from when the source is a file.
    pub(crate) slice_pools: Vec<Arc<SlicePool>>,
}

/// Counters of checkpointing in one process.
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// Checkpoints completed (manifest written) by this process.
    pub completed: AtomicU64,
    /// The epoch of the newest complete checkpoint written by this process.
    pub last_epoch: AtomicU64,
    /// Shards written by this process's workers.
    pub shards: AtomicU64,
    /// Bytes of shards written by this process's workers.
    pub bytes: AtomicU64,
    /// Time spent writing shards, in microseconds (by the writer threads).
    pub micros: AtomicU64,
    /// Time the workers spent reading their shards out of the rollup for
    /// checkpoints, in microseconds: the part of a checkpoint that holds up
    /// ingest.
    pub read_micros: AtomicU64,
}

impl Shared {
    /// Every epoch before this one is complete everywhere.
    pub fn complete_epoch(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.complete.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// The newest epoch any worker of this process has opened: an epoch
    /// above it has not started anywhere here yet.
    pub fn open_epoch(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| w.epoch.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// Records this process's workers have read from source `source` (plan index).
    pub fn records_read(&self, source: usize) -> u64 {
        self.workers
            .iter()
            .map(|w| w.sources[source].records.load(Ordering::Relaxed))
            .sum()
    }

    /// True when every worker's sources have finished and their last epoch is complete.
    pub fn done(&self) -> bool {
        let complete = self.complete_epoch();
        self.workers.iter().all(|w| {
            let at = w.finished_at.load(Ordering::Relaxed);
            at != u64::MAX && complete > at
        })
    }

    /// The lowest watermark of a source over all workers: the newest event
    /// time seen minus the lateness bound. `None` before any event.
    pub fn watermark(&self, source: usize) -> Option<i64> {
        let late = self.plan.sources[source].late.millis() as i64;
        let partitions: Vec<_> = self
            .workers
            .iter()
            .flat_map(|w| w.sources[source].partitions())
            .collect();
        statflow_dataflow::watermark::source_watermark(
            late,
            &partitions,
            statflow_dataflow::ingest::wall_ms(),
        )
    }
}

/// A running engine.
pub struct Engine {
    shared: Arc<Shared>,
    senders: Vec<crossbeam_channel::Sender<QueryRequest>>,
    next: AtomicUsize,
    guards: Mutex<Option<timely::communication::WorkerGuards<()>>>,
}

impl Engine {
    /// Starts `config.workers` worker threads running `plan`.
    pub fn start(
        plan: Plan,
        config: EngineConfig,
        readers: ReaderFactory,
    ) -> anyhow::Result<Engine> {
        let plan = Arc::new(plan);
        let workers = config.workers.max(1);
        let restored = config
            .checkpoints
            .as_ref()
            .and_then(|c| Restored::latest(&c.dir, &plan))
            .map(Arc::new);
        if let Some(r) = &restored {
            tracing::info!(
                epoch = r.epoch,
                workers = r.workers,
                "resuming from checkpoint"
            );
            for metric in &r.dropped_metrics {
                tracing::warn!(metric = %metric, "metric changed since the checkpoint; it starts empty");
            }
            for state in r.backfills.iter().filter(|b| b.order.is_none()) {
                tracing::info!(
                    metric = %state.metric,
                    "metric joined after its sources were read from; its history can be backfilled"
                );
            }
            // What was dead-lettered after the checkpoint is read again, and
            // dead-lettered again: cut it before any source resumes.
            for (source, worker, bytes) in r.dead_letter_lengths() {
                match crate::deadletter::cut_back(&config.dead_letter_dir, source, worker, bytes) {
                    Ok(0) => {}
                    Ok(cut) => tracing::info!(
                        source,
                        worker,
                        bytes = cut,
                        "dead letters written after the checkpoint removed; they are written again as their records are read again"
                    ),
                    Err(e) => tracing::warn!(
                        source,
                        worker,
                        error = %e,
                        "cannot cut the dead-letter file back to the checkpoint; records read again may appear twice in it"
                    ),
                }
            }
        }
        let processes = config
            .cluster
            .as_ref()
            .map_or(1, |c| c.addresses.len().max(1));
        let process = config.cluster.as_ref().map_or(0, |c| c.process);
        let local = process * workers..(process + 1) * workers;
        let shared = Arc::new(Shared {
            plan: Arc::clone(&plan),
            workers: (0..workers)
                .map(|_| WorkerShared {
                    sources: plan
                        .sources
                        .iter()
                        .map(|_| Arc::new(SourceStats::default()))
                        .collect(),
                    epoch: AtomicU64::new(0),
                    complete: AtomicU64::new(0),
                    finished_at: AtomicU64::new(u64::MAX),
                    agreed: AtomicBool::new(false),
                    footprint: Mutex::new(Vec::new()),
                    query_cache: Arc::new(CacheShared {
                        capacity: AtomicUsize::new(config.query_cache_bytes),
                        ..CacheShared::default()
                    }),
                })
                .collect(),
            shutdown: AtomicBool::new(false),
            error: Mutex::new(None),
            queries: AtomicU64::new(0),
            process,
            processes,
            threads: workers,
            checkpoints: CheckpointStats::default(),
            restored_from: restored.as_ref().map(|r| r.epoch),
            evicted_rows: AtomicU64::new(0),
            telemetry: plan
                .sources
                .iter()
                .any(|s| matches!(s.kind, statflow_dsl::SourceKind::Telemetry))
                .then(|| Arc::new(crate::telemetry::Hub::new(process, workers))),
            final_checkpoint: (config.checkpoints.is_some() && processes == 1)
                .then(checkpointing::FinalCheckpoint::default),
            slice_pools: plan
                .sources
                .iter()
                .map(|_| Arc::new(SlicePool::new(local.clone(), workers * processes)))
                .collect(),
        });
        let mut timely_config = match &config.cluster {
            None => timely::Config::process(workers),
            Some(cluster) => {
                anyhow::ensure!(
                    cluster.process < cluster.addresses.len(),
                    "process {} is not among the {} hosts",
                    cluster.process,
                    cluster.addresses.len()
                );
                timely::Config {
                    communication: timely::CommunicationConfig::Cluster {
                        threads: workers,
                        process: cluster.process,
                        addresses: cluster.addresses.clone(),
                        report: false,
                        zerocopy: false,
                    },
                    worker: timely::WorkerConfig::default(),
                }
            }
        };
        let first_local = shared.process * workers;
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| crossbeam_channel::unbounded()).unzip();
        let receivers = Arc::new(receivers);
        let worker_shared = Arc::clone(&shared);
        timely_config.worker.set(
            retention::EXERT_LOGIC_KEY.to_string(),
            retention::merge_retracted(),
        );
        let guards = timely::execute(timely_config, move |worker| {
            let index = worker.index();
            let local = index - first_local;
            let result = worker::run(
                worker,
                &worker_shared,
                &config,
                &readers,
                receivers[local].clone(),
                &|source, w| DeadLetterFile::boxed(&config.dead_letter_dir, source, w),
                restored.as_deref(),
            );
            if let Err(e) = result {
                let mut slot = worker_shared
                    .error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| format!("worker {index}: {e:#}"));
                worker_shared.shutdown.store(true, Ordering::SeqCst);
            }
            // timely steps a worker whose closure has returned until all its
            // dataflows finish, and the sources' never do: a worker drops
            // what it built, whether it stopped cleanly or on an error.
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
        })
        .map_err(|e| anyhow::anyhow!("cannot start the workers: {e}"))?;
        Ok(Engine {
            shared,
            senders,
            next: AtomicUsize::new(0),
            guards: Mutex::new(Some(guards)),
        })
    }

    /// The state the workers share.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn send(
        &self,
        request: Request,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Outcome, QueryFailure>>, QueryFailure> {
        self.send_at(request, None)
    }

    fn send_at(
        &self,
        request: Request,
        epoch: Option<u64>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Outcome, QueryFailure>>, QueryFailure> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let worker = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        self.senders[worker]
            .send(QueryRequest {
                request,
                epoch,
                reply,
            })
            .map_err(|_| QueryFailure::ShuttingDown)?;
        Ok(outcome)
    }

    fn answer(outcome: Outcome) -> Result<Answer, QueryFailure> {
        match outcome {
            Outcome::Answer(a) => Ok(a),
            _ => Err(QueryFailure::ShuttingDown),
        }
    }

    fn status_of(outcome: Outcome) -> Result<ClusterStatus, QueryFailure> {
        match outcome {
            Outcome::Status { as_of, reports } => Ok(ClusterStatus { as_of, reports }),
            _ => Err(QueryFailure::ShuttingDown),
        }
    }

    /// Orders every worker to fill in a metric's history (see
    /// [`backfill`]) and returns every worker's report once they have it.
    /// An order for a metric already ordered changes nothing.
    pub async fn backfill(
        &self,
        order: statflow_dataflow::backfill::BackfillOrder,
    ) -> Result<ClusterStatus, QueryFailure> {
        let outcome = self.send(Request::Backfill(order))?;
        Self::status_of(outcome.await.map_err(|_| QueryFailure::ShuttingDown)??)
    }

    /// Runs a validated query on the next worker (round robin) and waits for the answer.
    pub async fn query(&self, query: Query) -> Result<Answer, QueryFailure> {
        let outcome = self.send(Request::Query(query))?;
        let answer = outcome.await.map_err(|_| QueryFailure::ShuttingDown)??;
        self.shared.queries.fetch_add(1, Ordering::Relaxed);
        Self::answer(answer)
    }

    /// Runs a validated query at exactly `epoch` (waiting until that epoch
    /// completes), or at the newest complete epoch when `None`: how every
    /// panel of one dashboard refresh reads the same cut. The caller makes
    /// sure `epoch` is not far in the future (see [`Shared::open_epoch`]).
    pub async fn query_at(&self, query: Query, epoch: Option<u64>) -> Result<Answer, QueryFailure> {
        let started = std::time::Instant::now();
        let metric = self
            .shared
            .plan
            .metrics
            .get(query.metric)
            .map(|m| m.name.clone());
        let outcome = self.send_at(Request::Query(query), epoch)?;
        let telemetry = self.shared.telemetry.as_ref().map(|hub| {
            let worker = self.next.load(Ordering::Relaxed) % self.senders.len().max(1);
            (Arc::clone(hub), worker)
        });
        let _slow = SlowQuery {
            started,
            metric,
            telemetry,
        };
        let answer = outcome.await.map_err(|_| QueryFailure::ShuttingDown)??;
        self.shared.queries.fetch_add(1, Ordering::Relaxed);
        Self::answer(answer)
    }

    /// Runs a query from a thread that is not async (tests, benchmarks).
    pub fn query_blocking(&self, query: Query) -> Result<Answer, QueryFailure> {
        let outcome = self.send(Request::Query(query))?;
        Self::answer(
            outcome
                .blocking_recv()
                .map_err(|_| QueryFailure::ShuttingDown)??,
        )
    }

    /// Every worker's report, from every process.
    pub async fn status(&self) -> Result<ClusterStatus, QueryFailure> {
        let outcome = self.send(Request::Status)?;
        Self::status_of(outcome.await.map_err(|_| QueryFailure::ShuttingDown)??)
    }

    /// `status` from a thread that is not async.
    pub fn status_blocking(&self) -> Result<ClusterStatus, QueryFailure> {
        let outcome = self.send(Request::Status)?;
        Self::status_of(
            outcome
                .blocking_recv()
                .map_err(|_| QueryFailure::ShuttingDown)??,
        )
    }

    /// Blocks until every source has finished and its data is queryable, or
    /// the engine stopped. Returns the worker error, if one stopped it.
    pub fn wait_until_done(&self) -> anyhow::Result<()> {
        self.wait_for(|| {
            if self.shared.processes == 1 {
                self.shared.done()
            } else {
                self.status_blocking().is_ok_and(|s| s.done())
            }
        })
        .inspect_err(|_| {
            if self.workers_died() {
                self.shutdown();
            }
        })
    }

    /// Blocks until `done` holds, polling; the worker error instead, if a
    /// worker failed or its thread ended first.
    fn wait_for(&self, done: impl Fn() -> bool) -> anyhow::Result<()> {
        loop {
            if let Some(e) = self.error() {
                anyhow::bail!(e);
            }
            if done() {
                return Ok(());
            }
            if self.workers_died() {
                anyhow::bail!(self
                    .error()
                    .unwrap_or_else(|| "a worker thread stopped unexpectedly".into()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Blocks until every worker of this process has found the cluster's
    /// processes agreeing on their topology and settings, which a process
    /// alone does at once; an error when a worker found them disagreeing,
    /// or stopped first.
    pub fn wait_agreed(&self) -> anyhow::Result<()> {
        self.wait_for(|| {
            self.shared
                .workers
                .iter()
                .all(|w| w.agreed.load(Ordering::SeqCst))
        })
    }

    /// True when a worker thread has ended while the engine is meant to run.
    pub fn workers_died(&self) -> bool {
        let guards = self.guards.lock().unwrap_or_else(|p| p.into_inner());
        !self.shared.shutdown.load(Ordering::SeqCst)
            && guards
                .as_ref()
                .is_some_and(|g| g.guards().iter().any(|h| h.is_finished()))
    }

    /// The first fatal worker error, if any.
    pub fn error(&self) -> Option<String> {
        self.shared
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the workers and waits for them. With checkpoints, a process
    /// running alone first takes a final checkpoint holding every record
    /// read, so that a restart reads nothing again; it waits for it at most
    /// a few seconds (see `checkpointing::FINAL_WAIT`). A stop after a
    /// worker failed takes none.
    pub fn shutdown(&self) {
        let running = !self.shared.shutdown.load(Ordering::SeqCst) && self.error().is_none();
        if let Some(last) = self.shared.final_checkpoint.as_ref().filter(|_| running) {
            let epochs = self
                .shared
                .workers
                .iter()
                .map(|w| w.epoch.load(Ordering::SeqCst));
            let epoch = last.ask(epochs);
            tracing::info!(epoch, "stopping: taking a final checkpoint");
        }
        self.shared.shutdown.store(true, Ordering::SeqCst);
        let guards = self.guards.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(guards) = guards {
            for result in guards.join() {
                if let Err(e) = result {
                    let mut slot = self.shared.error.lock().unwrap_or_else(|p| p.into_inner());
                    slot.get_or_insert(e);
                }
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Remembers when epochs completed, to pick a compaction frontier that no
/// query in flight can still be reading below.
#[derive(Default)]
struct CompletionHistory {
    seen: VecDeque<(std::time::Instant, u64)>,
}

impl CompletionHistory {
    fn observe(&mut self, now: std::time::Instant, complete: u64) {
        if self.seen.back().is_none_or(|(_, c)| *c < complete) {
            self.seen.push_back((now, complete));
        }
    }

    /// The newest completion at least `lag` old: every query admitted since
    /// then reads at an epoch at or after `complete - 1`.
    fn frontier(&mut self, now: std::time::Instant, lag: Duration) -> Option<u64> {
        let mut found = None;
        while let Some((at, complete)) = self.seen.front().copied() {
            if now.duration_since(at) < lag {
                break;
            }
            found = Some(complete.saturating_sub(1));
            self.seen.pop_front();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn small_pages_turns_huge_pages_off_for_the_process() {
        super::small_pages();
        assert_eq!(nix::sys::prctl::get_thp_disable(), Ok(true));
    }
}
