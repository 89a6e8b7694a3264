//! Taking checkpoints from the worker loop.
//!
//! Checkpoint epochs are the multiples of `interval / epoch interval`, so
//! every worker of every process picks the same ones without talking. A
//! worker holds its rollup's compaction at the next checkpoint epoch, and
//! once that epoch is complete everywhere it reads its shard: the rows as of
//! that epoch and its sources' positions at the end of it. That read is all
//! the worker thread does (it encodes each row as it reads it, which costs
//! less than copying it); the worker's writer thread checksums, writes,
//! syncs and renames the shard. Worker 0's writer then writes
//! the manifest once every shard is there, and prunes old checkpoints.
//!
//! At most one shard per worker is in the writer's hands. A worker whose
//! previous shard is still being written when the next checkpoint epoch is
//! complete does not wait for the disk: it keeps holding compaction at that
//! epoch and, once its writer is free, reads at the newest checkpoint epoch
//! that is complete then. A slow disk so makes checkpoints rarer rather than
//! ingest slower, and holds at most one shard's rows in memory beside the
//! rollup. Workers choose from the same epochs, so they mostly choose
//! alike; a checkpoint that some worker skipped never completes, and the
//! next one does.
//!
//! Beside positions, a shard holds each source's counts (records, errors,
//! late events, the dead-letter file's length) at the end of its epoch.
//! The counters are shared atomics that the ingest operators add to as
//! they read, so by the time a checkpoint epoch is complete they already
//! hold later reads; the worker therefore notes them each time its clock
//! closes epochs ([`Checkpointer::closing`]), and a shard takes the note
//! that covers its epoch, as it takes the position log's entry.
//!
//! A clean stop of a process running alone takes one last checkpoint
//! ([`FinalCheckpoint`]): the readers stop reading, the epoch that holds
//! their last records completes, and every worker writes its shard at it,
//! so that a restart reads nothing again. It gives up after [`FINAL_WAIT`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::TraceReader;
use statflow_dataflow::aggregate::Aggregates;
use statflow_dataflow::ingest::{
    BrokerStatus, PositionLog, ReadState, RecordAt, RecordReader, SourceStats,
};
use statflow_dataflow::scan::RollupTrace;
use timely::progress::Antichain;

use super::Shared;
use crate::checkpoint::{self, BackfillState, CheckpointConfig, EncodedRows, Shard, SourceCounts};

/// How often worker 0's writer looks for shards of pending checkpoints.
const COMPLETION_POLL: Duration = Duration::from_millis(50);

/// Checkpoints worker 0's writer waits for at most; an older one that some
/// worker skipped would never complete.
const MAX_PENDING: usize = 8;

/// How long a clean stop waits for its final checkpoint: long enough for
/// the open epoch to close and complete and for a shard of a few hundred
/// MB to be written, short enough that a service manager's stop timeout
/// (commonly 10 s or more) does not kill the process first.
pub(crate) const FINAL_WAIT: Duration = Duration::from_secs(5);

/// One source a worker ingests, as its checkpoints see it.
pub(super) struct Tracked {
    /// The source's name.
    pub(super) name: String,
    /// Where the source's ingest operator notes its positions at each
    /// epoch it closes.
    pub(super) log: Rc<RefCell<PositionLog>>,
    /// The source's counters on this worker.
    pub(super) stats: Arc<SourceStats>,
}

/// Every tracked source's counts, noted when the worker's clock closed
/// epochs up to `upto` (see [`Checkpointer::closing`]).
struct CountsNote {
    /// The last epoch the note covers.
    upto: u64,
    /// Per tracked source, in order.
    counts: Vec<Counted>,
}

/// One source's counters on one worker, as a [`CountsNote`] holds them.
struct Counted {
    records: u64,
    errors: u64,
    late: u64,
    /// Late events by metric (plan index).
    late_by_metric: Vec<u64>,
    /// The length of the source's dead-letter file.
    dead_letter_bytes: u64,
}

/// One worker's checkpointing state.
pub(super) struct Checkpointer {
    /// Epochs between checkpoints.
    every: u64,
    /// The epoch length in milliseconds: a checkpoint's folder is named by
    /// its epoch's time.
    epoch_ms: u64,
    /// The next checkpoint epoch.
    next: u64,
    /// This worker's index over every process, and how many there are:
    /// a shard names both, so a restore can tell its checkpoint's shape.
    worker: usize,
    workers: usize,
    /// Every metric's name and fingerprint, written into each shard.
    metrics: Vec<(String, u64)>,
    /// Each ingested source: its name, position log and counters.
    sources: Vec<Tracked>,
    /// The counters as the clock closed recent epochs, oldest first: a
    /// shard takes the first note that covers its epoch.
    notes: VecDeque<CountsNote>,
    /// Where the dead-letter files are, whose lengths shards hold.
    dead_letter_dir: PathBuf,
    /// True once this worker handed its writer the shard of a clean
    /// stop's final checkpoint.
    final_sent: bool,
    /// The thread that writes this worker's shards.
    writer: Writer,
}

impl Checkpointer {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: CheckpointConfig,
        epoch_interval: Duration,
        start_epoch: u64,
        worker: usize,
        workers: usize,
        metrics: Vec<(String, u64)>,
        sources: Vec<Tracked>,
        dead_letter_dir: PathBuf,
        shared: &Arc<Shared>,
    ) -> std::io::Result<Self> {
        let epoch_ms = epoch_interval.as_millis().max(1) as u64;
        let every = (config.interval.as_millis() as u64 / epoch_ms).max(1);
        Ok(Checkpointer {
            every,
            epoch_ms,
            next: (start_epoch / every + 1) * every,
            worker,
            workers,
            metrics,
            sources,
            notes: VecDeque::new(),
            dead_letter_dir,
            final_sent: false,
            writer: Writer::spawn(config, worker, workers, Arc::clone(shared))?,
        })
    }

    /// The rollup must stay readable at this epoch: compaction may not pass
    /// it (nor the epoch of a final checkpoint asked for).
    pub(super) fn hold(&self, shared: &Shared) -> u64 {
        let last = shared
            .final_checkpoint
            .as_ref()
            .and_then(FinalCheckpoint::epoch);
        self.next.min(last.unwrap_or(u64::MAX))
    }

    /// Notes every source's counts just before the worker's clock closes
    /// every epoch up to `upto`. Records are read only inside the ingest
    /// operators, which the worker steps after moving its clock, and an
    /// operator first notes its positions for the epochs the clock closed
    /// and only then reads on: so the counts now are those of exactly the
    /// records before the positions its log will hold for `upto`. A
    /// dead-letter file is written by this worker's thread alone, a line at
    /// a time, so its length now is that of the same records' lines.
    pub(super) fn closing(&mut self, upto: u64) {
        let counts = self
            .sources
            .iter()
            .map(|source| {
                let stats = &source.stats;
                Counted {
                    records: stats.records.load(Ordering::Relaxed),
                    errors: stats.errors.load(Ordering::Relaxed),
                    late: stats.late.load(Ordering::Relaxed),
                    late_by_metric: stats.late_by_metric(),
                    dead_letter_bytes: crate::deadletter::length(
                        &self.dead_letter_dir,
                        &source.name,
                        self.worker,
                    ),
                }
            })
            .collect();
        self.notes.push_back(CountsNote { upto, counts });
    }

    /// Reads this worker's shard once the next checkpoint epoch is complete
    /// everywhere (`complete` is the first epoch that is not) and this
    /// worker's writer is free, and hands it to the writer. `backfills`
    /// gives the state of backfills as of a checkpoint epoch.
    pub(super) fn step(
        &mut self,
        complete: u64,
        trace: &mut RollupTrace,
        backfills: &mut dyn FnMut(u64) -> Vec<BackfillState>,
        shared: &Shared,
    ) {
        let stopping = shared
            .final_checkpoint
            .as_ref()
            .is_some_and(|f| f.epoch().is_some());
        if stopping || complete <= self.next || self.writer.busy() {
            return;
        }
        // The newest checkpoint epoch that is complete; missed ones are skipped.
        let epoch = (complete - 1) / self.every * self.every;
        self.next = epoch + self.every;
        self.take(epoch, false, trace, backfills, shared);
    }

    /// Reads this worker's shard at `epoch` and hands it to the writer;
    /// false when it cannot be read.
    fn take(
        &mut self,
        epoch: u64,
        last: bool,
        trace: &mut RollupTrace,
        backfills: &mut dyn FnMut(u64) -> Vec<BackfillState>,
        shared: &Shared,
    ) -> bool {
        let started = Instant::now();
        match self.read(epoch, trace, backfills(epoch)) {
            Ok((head, rows)) => {
                shared
                    .checkpoints
                    .read_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                self.writer.write(Job {
                    at_ms: checkpoint::time_of(epoch, self.epoch_ms),
                    head,
                    rows,
                    last,
                });
                true
            }
            Err(e) => {
                tracing::error!(
                    epoch,
                    worker = self.worker,
                    error = %e,
                    "cannot read this worker's checkpoint shard; the checkpoint will not complete"
                );
                false
            }
        }
    }

    /// While the engine stops: takes this worker's shard of the final
    /// checkpoint once its epoch is complete, and says whether the worker
    /// may leave its loop (the shard written, or none asked for, or
    /// [`FINAL_WAIT`] passed).
    pub(super) fn finish(
        &mut self,
        complete: u64,
        trace: &mut RollupTrace,
        backfills: &mut dyn FnMut(u64) -> Vec<BackfillState>,
        shared: &Shared,
    ) -> bool {
        let Some(last) = shared.final_checkpoint.as_ref() else {
            return true;
        };
        let Some(epoch) = last.epoch() else {
            return true;
        };
        if last.expired() {
            if !self.final_sent || self.writer.busy() {
                tracing::warn!(
                    epoch,
                    worker = self.worker,
                    "the final checkpoint did not complete in time; stopping without it"
                );
            }
            return true;
        }
        if self.final_sent {
            return !self.writer.busy();
        }
        // Every record read is in `epoch` or before; the rows must be
        // complete through it, and the writer free for one more shard.
        if complete <= epoch || self.writer.busy() {
            return false;
        }
        self.final_sent = self.take(epoch, true, trace, backfills, shared);
        !self.final_sent
    }

    /// This worker's shard as of `epoch`, its rows encoded apart: what must
    /// be read on the worker thread, since the rollup and the position logs
    /// live there.
    fn read(
        &mut self,
        epoch: u64,
        trace: &mut RollupTrace,
        backfills: Vec<BackfillState>,
    ) -> anyhow::Result<(Shard, EncodedRows)> {
        let rows = encode_rows_at(trace, epoch, self.writer.spare())?
            .ok_or_else(|| anyhow::anyhow!("the rollup cannot be read at epoch {epoch}"))?;
        let mut sources = Vec::with_capacity(self.sources.len());
        for Tracked { name, log, .. } in &self.sources {
            let mut log = log.borrow_mut();
            let positions = log.at(epoch).cloned().ok_or_else(|| {
                anyhow::anyhow!("source `{name}` has no positions for epoch {epoch}")
            })?;
            log.forget_before(epoch + 1);
            sources.push((name.clone(), positions));
        }
        let note = self
            .notes
            .iter()
            .find(|note| note.upto >= epoch)
            .ok_or_else(|| anyhow::anyhow!("no counts were noted for epoch {epoch}"))?;
        let counts = self
            .sources
            .iter()
            .zip(&note.counts)
            .map(|(source, counted)| {
                let late_by_metric = self
                    .metrics
                    .iter()
                    .zip(&counted.late_by_metric)
                    .filter(|(_, n)| **n > 0)
                    .map(|((metric, _), n)| (metric.clone(), *n))
                    .collect();
                let counts = SourceCounts {
                    records: counted.records,
                    errors: counted.errors,
                    late: counted.late,
                    late_by_metric,
                    dead_letter_bytes: counted.dead_letter_bytes,
                };
                (source.name.clone(), counts)
            })
            .collect();
        while self.notes.front().is_some_and(|note| note.upto <= epoch) {
            self.notes.pop_front();
        }
        let head = Shard {
            epoch,
            worker: self.worker,
            workers: self.workers,
            metrics: self.metrics.clone(),
            sources,
            rows: Vec::new(),
            backfills,
            counts,
        };
        Ok((head, rows))
    }
}

/// Every row of this worker's shard as it stood at epoch `as_of`, encoded:
/// the rows `statflow_dataflow::snapshot::rows_at` gives, without copying
/// them first. A key with one update at or before `as_of` (most keys, once
/// compacted) is encoded straight from the trace. `None` when the shard
/// cannot be read exactly at `as_of`.
fn encode_rows_at(
    trace: &mut RollupTrace,
    as_of: u64,
    buffer: Vec<u8>,
) -> std::io::Result<Option<EncodedRows>> {
    let mut upper = Antichain::new();
    trace.read_upper(&mut upper);
    if upper.less_equal(&as_of) || !trace.get_logical_compaction().less_equal(&as_of) {
        return Ok(None);
    }
    let Some(batches) = trace.batches_through(upper.borrow()) else {
        return Ok(None);
    };
    let (mut cursor, storage) = cursor_list(batches);
    let mut rows = EncodedRows::reusing(buffer);
    while let Some(key) = cursor.get_key(&storage) {
        while cursor.val_valid(&storage) {
            let (mut updates, mut events) = (0, 0);
            cursor.map_times(&storage, |time, diff| {
                if *time <= as_of {
                    updates += 1;
                    events += diff.count();
                }
            });
            if events > 0 && updates == 1 {
                let mut pushed = Ok(());
                cursor.map_times(&storage, |time, diff| {
                    if *time <= as_of {
                        pushed = rows.push(key, &diff.to_owned());
                    }
                });
                pushed?;
            } else if events > 0 {
                let mut row: Option<Aggregates> = None;
                cursor.map_times(&storage, |time, diff| {
                    if *time <= as_of {
                        match &mut row {
                            Some(row) => row.merge(&diff.to_owned()),
                            None => row = Some(diff.to_owned()),
                        }
                    }
                });
                if let Some(row) = row {
                    rows.push(key, &row)?;
                }
            }
            cursor.step_val(&storage);
        }
        cursor.step_key(&storage);
    }
    Ok(Some(rows))
}

/// A shard on its way to the disk, with the time that names its folder.
struct Job {
    /// The checkpoint's time, which names its folder.
    at_ms: u64,
    /// Every field of the shard but its rows.
    head: Shard,
    /// The rows, encoded.
    rows: EncodedRows,
    /// True for the shard of a clean stop's final checkpoint: worker 0's
    /// writer then waits for the other shards before it stops.
    last: bool,
}

/// The handle of one worker's writer thread.
struct Writer {
    /// Hands shards to the thread; dropped to stop it.
    jobs: Option<Sender<Job>>,
    /// True from a shard's hand-over until it is written (or failed).
    busy: Arc<AtomicBool>,
    /// The buffer of the last shard written, handed back for the next one:
    /// a shard's rows are as large as the shard, and a fresh buffer would
    /// be grown and paged in anew at every checkpoint.
    spare: Receiver<Vec<u8>>,
    /// Joined on drop, so that a clean stop finishes the shard in hand.
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn spawn(
        config: CheckpointConfig,
        worker: usize,
        workers: usize,
        shared: Arc<Shared>,
    ) -> std::io::Result<Self> {
        // Capacity one: `busy` already keeps a second shard from being sent.
        let (jobs, received) = crossbeam_channel::bounded::<Job>(1);
        let (give_back, spare) = crossbeam_channel::bounded::<Vec<u8>>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let thread = {
            let busy = Arc::clone(&busy);
            std::thread::Builder::new()
                .name(format!("checkpoint-writer-{worker}"))
                .spawn(move || {
                    let mut manifests = Manifests {
                        config,
                        workers,
                        pending: Vec::new(),
                        last: None,
                    };
                    loop {
                        match received.recv_timeout(COMPLETION_POLL) {
                            Ok(job) => {
                                let epoch = job.head.epoch;
                                if write(&manifests.config.dir, &job, &shared) && worker == 0 {
                                    manifests.expect(job.at_ms, epoch);
                                    if job.last {
                                        manifests.last = Some(job.at_ms);
                                    }
                                }
                                let _ = give_back.try_send(job.rows.into_buffer());
                                busy.store(false, Ordering::Release);
                            }
                            Err(RecvTimeoutError::Timeout) => {}
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                        manifests.complete_pending(&shared);
                    }
                    manifests.finish_last(&shared);
                })?
        };
        Ok(Writer {
            jobs: Some(jobs),
            busy,
            spare,
            thread: Some(thread),
        })
    }

    /// The last shard's buffer, or a new one.
    fn spare(&self) -> Vec<u8> {
        self.spare.try_recv().unwrap_or_default()
    }

    /// True while the previous shard is not written yet.
    fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    fn write(&mut self, job: Job) {
        let Some(jobs) = &self.jobs else { return };
        self.busy.store(true, Ordering::Release);
        if jobs.send(job).is_err() {
            // The thread is gone (it panicked): nothing will be written.
            self.busy.store(false, Ordering::Release);
            tracing::error!("the checkpoint writer thread has stopped; no more checkpoints");
            self.jobs = None;
        }
    }
}

impl Drop for Writer {
    /// Lets the shard being written finish (so no temporary file is left
    /// behind by a clean stop), then stops the thread.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes one shard, counting it; false when it could not be written.
fn write(dir: &Path, job: &Job, shared: &Shared) -> bool {
    let started = Instant::now();
    match checkpoint::write_shard_encoded(dir, job.at_ms, &job.head, &job.rows) {
        Ok(bytes) => {
            let stats = &shared.checkpoints;
            stats.bytes.fetch_add(bytes, Ordering::Relaxed);
            stats.shards.fetch_add(1, Ordering::Relaxed);
            stats
                .micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            true
        }
        Err(e) => {
            tracing::error!(
                epoch = job.head.epoch,
                worker = job.head.worker,
                error = %e,
                "cannot write this worker's checkpoint shard; the checkpoint will not complete"
            );
            false
        }
    }
}

/// Worker 0's writer: checkpoints whose own shard it wrote, waiting for
/// the other workers' shards before their manifest is written.
struct Manifests {
    /// Where the checkpoints are, and how many to keep.
    config: CheckpointConfig,
    /// Shards a checkpoint needs: one per worker over every process.
    workers: usize,
    /// `(folder time, epoch)` of checkpoints without a manifest yet.
    pending: Vec<(u64, u64)>,
    /// The folder time of a clean stop's final checkpoint, once this
    /// worker's shard of it is written.
    last: Option<u64>,
}

impl Manifests {
    fn expect(&mut self, at_ms: u64, epoch: u64) {
        self.pending.push((at_ms, epoch));
        // A checkpoint some worker skipped never completes; stop looking.
        if self.pending.len() > MAX_PENDING {
            self.pending.remove(0);
        }
    }

    /// Once the workers have stopped: waits (until [`FINAL_WAIT`] has
    /// passed since the stop) for the other workers' shards of the final
    /// checkpoint, and writes its manifest.
    fn finish_last(&mut self, shared: &Shared) {
        let Some(at_ms) = self.last else { return };
        let deadline = shared
            .final_checkpoint
            .as_ref()
            .and_then(|f| f.deadline.get());
        loop {
            self.complete_pending(shared);
            if !self.pending.iter().any(|(t, _)| *t == at_ms) {
                return;
            }
            if deadline.is_none_or(|d| Instant::now() >= *d) {
                tracing::warn!(
                    at_ms,
                    "the final checkpoint did not complete in time (some worker's shard is missing); stopping without it"
                );
                return;
            }
            std::thread::sleep(COMPLETION_POLL);
        }
    }

    /// Writes the manifest of every pending checkpoint whose shards are
    /// all there (each was synced before its rename), newest last.
    fn complete_pending(&mut self, shared: &Shared) {
        if self.pending.is_empty() {
            return;
        }
        let mut completed = None;
        let (dir, workers) = (&self.config.dir, self.workers);
        self.pending.retain(|&(at_ms, epoch)| {
            match checkpoint::try_complete(dir, at_ms, epoch, workers) {
                Ok(true) => {
                    completed = completed.max(Some((at_ms, epoch)));
                    false
                }
                Ok(false) => true,
                Err(e) => {
                    tracing::error!(epoch, error = %e, "cannot write the checkpoint's manifest");
                    false
                }
            }
        });
        if let Some((at_ms, epoch)) = completed {
            shared.checkpoints.completed.fetch_add(1, Ordering::Relaxed);
            shared
                .checkpoints
                .last_epoch
                .store(epoch, Ordering::Relaxed);
            tracing::info!(epoch, "checkpoint complete");
            // Older pending ones can no longer be the newest: forget them.
            self.pending.retain(|(t, _)| *t > at_ms);
            if let Err(e) = checkpoint::prune(&self.config.dir, self.config.keep) {
                tracing::warn!(error = %e, "cannot delete old checkpoints");
            }
        }
    }
}

/// The last checkpoint of a clean stop, taken so that a restart reads
/// nothing again. Only a process running alone takes one: the processes of
/// a cluster stop one by one, and their workers could not agree on an epoch
/// without talking.
///
/// [`FinalCheckpoint::ask`] first stops every reader (see
/// [`FinalCheckpoint::reader`]), then picks the newest epoch any worker has
/// opened: every record read so far was read into it or an earlier one.
/// The workers keep running until that epoch is complete, take their
/// shards at it, and stop once they are written, or once [`FINAL_WAIT`]
/// has passed.
#[derive(Debug)]
pub(crate) struct FinalCheckpoint {
    /// Set first, when the stop is asked for: readers read nothing more.
    reading_stopped: Arc<AtomicBool>,
    /// The epoch of the final checkpoint; `u64::MAX` until asked for.
    epoch: AtomicU64,
    /// When the workers give up on it.
    deadline: OnceLock<Instant>,
}

impl Default for FinalCheckpoint {
    fn default() -> Self {
        FinalCheckpoint {
            reading_stopped: Arc::new(AtomicBool::new(false)),
            epoch: AtomicU64::new(u64::MAX),
            deadline: OnceLock::new(),
        }
    }
}

impl FinalCheckpoint {
    /// Asks for the final checkpoint; `open_epochs` gives the epoch every
    /// worker of the process is filling. Returns the checkpoint's epoch.
    pub(crate) fn ask(&self, open_epochs: impl Iterator<Item = u64>) -> u64 {
        // Stop the readers before looking at the epochs: a worker stores
        // its epoch (SeqCst) before its readers look at the flag (SeqCst),
        // so a read that did not see the flag is in an epoch seen here.
        self.reading_stopped.store(true, Ordering::SeqCst);
        let epoch = open_epochs.max().unwrap_or(0);
        let _ = self.deadline.set(Instant::now() + FINAL_WAIT);
        match self
            .epoch
            .compare_exchange(u64::MAX, epoch, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => epoch,
            Err(asked) => asked,
        }
    }

    /// The final checkpoint's epoch, once asked for.
    pub(crate) fn epoch(&self) -> Option<u64> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        (epoch != u64::MAX).then_some(epoch)
    }

    /// True once the workers should stop waiting for it.
    fn expired(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= *d)
    }

    /// `reader`, made to read nothing more once the final checkpoint is asked for.
    pub(crate) fn reader(&self, reader: Box<dyn RecordReader>) -> Box<dyn RecordReader> {
        Box::new(StopsReading {
            inner: reader,
            stopped: Arc::clone(&self.reading_stopped),
        })
    }
}

/// A reader that reads nothing once `stopped` is set, and otherwise is
/// its inner reader.
struct StopsReading {
    inner: Box<dyn RecordReader>,
    stopped: Arc<AtomicBool>,
}

/// How soon a stopped reader asks to be called again: its operator is woken
/// by every new epoch anyway, to note its positions.
const STOPPED_IDLE: Duration = Duration::from_millis(50);

impl RecordReader for StopsReading {
    fn read(&mut self, max: usize, record: &mut dyn FnMut(&[u8], RecordAt)) -> ReadState {
        if self.stopped.load(Ordering::SeqCst) {
            return ReadState::Idle(STOPPED_IDLE);
        }
        self.inner.read(max, record)
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

    fn broker(&self) -> Option<BrokerStatus> {
        self.inner.broker()
    }

    fn owns(&self, partition: &str) -> bool {
        self.inner.owns(partition)
    }
}
