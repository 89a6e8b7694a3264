//! Taking checkpoints from the worker loop.
//!
//! Checkpoint epochs are the multiples of `interval / epoch interval`, so
//! every worker of every process picks the same ones without talking. A
//! worker holds its rollup's compaction at the next checkpoint epoch, and
//! once that epoch is complete everywhere it writes its shard: the rows as
//! of that epoch and its sources' positions at the end of it. Worker 0 then
//! writes the manifest once every shard is there, and prunes old checkpoints.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use statflow_dataflow::ingest::PositionLog;
use statflow_dataflow::scan::RollupTrace;
use statflow_dataflow::snapshot::rows_at;

use super::Shared;
use crate::checkpoint::{self, BackfillState, CheckpointConfig, Shard};

/// How often worker 0 looks for shards of pending checkpoints.
const COMPLETION_POLL: Duration = Duration::from_millis(50);

/// One worker's checkpointing state.
pub(super) struct Checkpointer {
    config: CheckpointConfig,
    /// Epochs between checkpoints.
    every: u64,
    /// The next checkpoint epoch.
    next: u64,
    worker: usize,
    workers: usize,
    metrics: Vec<(String, u64)>,
    /// Each ingested source's name and position log.
    logs: Vec<(String, Rc<RefCell<PositionLog>>)>,
    /// Worker 0: checkpoints written here whose manifest is not written yet.
    pending: Vec<u64>,
    last_poll: Instant,
}

impl Checkpointer {
    pub(super) fn new(
        config: CheckpointConfig,
        epoch_interval: Duration,
        start_epoch: u64,
        worker: usize,
        workers: usize,
        metrics: Vec<(String, u64)>,
        logs: Vec<(String, Rc<RefCell<PositionLog>>)>,
    ) -> Self {
        let every = (config.interval.as_millis() / epoch_interval.as_millis().max(1)).max(1) as u64;
        Checkpointer {
            config,
            every,
            next: (start_epoch / every + 1) * every,
            worker,
            workers,
            metrics,
            logs,
            pending: Vec::new(),
            last_poll: Instant::now(),
        }
    }

    /// The rollup must stay readable at this epoch: compaction may not pass it.
    pub(super) fn hold(&self) -> u64 {
        self.next
    }

    /// Writes this worker's shard once the next checkpoint epoch is complete
    /// everywhere (`complete` is the first epoch that is not). `backfills`
    /// gives the state of backfills as of a checkpoint epoch.
    pub(super) fn step(
        &mut self,
        complete: u64,
        trace: &mut RollupTrace,
        backfills: &mut dyn FnMut(u64) -> Vec<BackfillState>,
        shared: &Shared,
    ) {
        if complete > self.next {
            // The newest checkpoint epoch that is complete; missed ones are skipped.
            let epoch = (complete - 1) / self.every * self.every;
            self.next = epoch + self.every;
            let started = Instant::now();
            match self.write(epoch, trace, backfills(epoch)) {
                Ok(bytes) => {
                    let stats = &shared.checkpoints;
                    stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                    stats.shards.fetch_add(1, Ordering::Relaxed);
                    stats
                        .micros
                        .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    if self.worker == 0 {
                        self.pending.push(epoch);
                        // A checkpoint some worker skipped never completes; stop looking.
                        if self.pending.len() > 8 {
                            self.pending.remove(0);
                        }
                    }
                }
                Err(e) => tracing::error!(
                    epoch,
                    worker = self.worker,
                    error = %e,
                    "cannot write this worker's checkpoint shard; the checkpoint will not complete"
                ),
            }
        }
        if self.worker == 0
            && !self.pending.is_empty()
            && self.last_poll.elapsed() >= COMPLETION_POLL
        {
            self.last_poll = Instant::now();
            self.complete_pending(shared);
        }
    }

    fn write(
        &mut self,
        epoch: u64,
        trace: &mut RollupTrace,
        backfills: Vec<BackfillState>,
    ) -> anyhow::Result<u64> {
        let rows = rows_at(trace, epoch)
            .ok_or_else(|| anyhow::anyhow!("the rollup cannot be read at epoch {epoch}"))?;
        let mut sources = Vec::with_capacity(self.logs.len());
        for (name, log) in &self.logs {
            let mut log = log.borrow_mut();
            let positions = log.at(epoch).cloned().ok_or_else(|| {
                anyhow::anyhow!("source `{name}` has no positions for epoch {epoch}")
            })?;
            log.forget_before(epoch + 1);
            sources.push((name.clone(), positions));
        }
        let shard = Shard {
            epoch,
            worker: self.worker,
            workers: self.workers,
            metrics: self.metrics.clone(),
            sources,
            rows,
            backfills,
        };
        Ok(checkpoint::write_shard(&self.config.dir, &shard)?)
    }

    fn complete_pending(&mut self, shared: &Shared) {
        let mut completed = None;
        self.pending.retain(|epoch| {
            match checkpoint::try_complete(&self.config.dir, *epoch, self.workers) {
                Ok(true) => {
                    completed = completed.max(Some(*epoch));
                    false
                }
                Ok(false) => true,
                Err(e) => {
                    tracing::error!(epoch, error = %e, "cannot write the checkpoint's manifest");
                    false
                }
            }
        });
        if let Some(epoch) = completed {
            shared.checkpoints.completed.fetch_add(1, Ordering::Relaxed);
            shared
                .checkpoints
                .last_epoch
                .store(epoch, Ordering::Relaxed);
            tracing::info!(epoch, "checkpoint complete");
            // Older pending ones can no longer be the newest: forget them.
            self.pending.retain(|e| *e > epoch);
            if let Err(e) = checkpoint::prune(&self.config.dir, self.config.keep) {
                tracing::warn!(error = %e, "cannot delete old checkpoints");
            }
        }
    }
}
