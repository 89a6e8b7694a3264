//! Finding the newest complete checkpoint and turning it into what the
//! workers start from: rows to feed back in and positions to resume at.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use statflow_dataflow::aggregate::Aggregates;
use statflow_dataflow::ingest::Resume;
use statflow_dataflow::rollup::RollupKey;
use statflow_dsl::{Plan, SourceKind, SourcePlan};

use super::{folder, list, read_shard, BackfillState, Manifest, SourceCounts, MANIFEST};

/// Every metric's name and a fingerprint of its definition: its filter,
/// dimensions, window and measures, and what its sources read (kind, file
/// path or topics or generator settings, time field, lateness bound, fields —
/// not brokers or client settings). A restart restores a metric's rows only
/// when its fingerprint is unchanged; a changed or new metric starts empty.
pub fn metric_fingerprints(plan: &Plan) -> Vec<(String, u64)> {
    plan.metrics
        .iter()
        .map(|m| {
            let sources: Vec<String> = m
                .sources
                .iter()
                .filter_map(|name| plan.sources.iter().find(|s| &s.name == name))
                .map(source_identity)
                .collect();
            let definition = format!(
                "{:?}|{:?}|{:?}|{:?}|{:?}",
                sources, m.filter, m.dimensions, m.window, m.measures
            );
            (
                m.name.clone(),
                u64::from(crc32fast::hash(definition.as_bytes())),
            )
        })
        .collect()
}

/// What a source reads, for fingerprints: where from, and how its records
/// are read; not how to connect.
fn source_identity(source: &SourcePlan) -> String {
    let origin = match &source.kind {
        SourceKind::Kafka(k) => format!("kafka {:?}", k.topics),
        SourceKind::File(f) => format!("file {}", f.path),
        SourceKind::Generator(g) => format!("generator {g:?}"),
        SourceKind::Telemetry => "telemetry".to_string(),
    };
    format!(
        "{} {origin} {:?} {:?} {} {:?}",
        source.name, source.format, source.time, source.late, source.fields
    )
}

/// Rows of the rollup, as a shard holds them.
pub type Rows = Vec<(RollupKey, Aggregates)>;

/// A checkpoint read back, ready for the workers of a new run.
#[derive(Debug)]
pub struct Restored {
    /// The epoch it was written at.
    pub epoch: u64,
    /// Workers that wrote it.
    pub workers: usize,
    /// Per source of the new plan (plan order), every partition's position.
    pub resume: Vec<Resume>,
    /// Per source of the new plan, every partition's newest event time.
    pub newest: Vec<BTreeMap<String, i64>>,
    /// Rows per old worker, with metric indices of the new plan; taken by
    /// the new workers.
    rows: Mutex<Vec<Option<Rows>>>,
    /// Metrics whose rows were not restored because their definition changed.
    pub dropped_metrics: Vec<String>,
    /// Metrics whose live input begins part way through their sources:
    /// those new to this run, and those of the checkpoint with history still
    /// to fill in. Orders name metrics by their index in the new plan.
    pub backfills: Vec<BackfillState>,
    /// Per old worker (by index), what its sources had done, by source
    /// name; empty for a checkpoint of a format before counts. Late counts
    /// of metrics whose definition changed are left out: those metrics
    /// start empty, late rows included.
    pub counts: Vec<Vec<(String, SourceCounts)>>,
}

impl Restored {
    /// The newest complete checkpoint under `dir` that reads back whole, for
    /// `plan`. A damaged checkpoint is reported and skipped for the one
    /// before it. `None` when there is none.
    pub fn latest(dir: &Path, plan: &Plan) -> Option<Restored> {
        let listed = match list(dir) {
            Ok(listed) => listed,
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot list checkpoints; starting empty");
                return None;
            }
        };
        for (at_ms, complete) in listed {
            if !complete {
                continue;
            }
            match Self::read(dir, at_ms, plan) {
                Ok(restored) => return Some(restored),
                Err(reason) => tracing::warn!(
                    at_ms,
                    %reason,
                    "checkpoint is damaged; trying the one before it"
                ),
            }
        }
        None
    }

    fn read(dir: &Path, at_ms: u64, plan: &Plan) -> Result<Restored, String> {
        let folder = folder(dir, at_ms);
        let manifest: Manifest = std::fs::read(folder.join(MANIFEST))
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("its manifest cannot be read: {e}"))?;
        if manifest.shards.len() != manifest.workers {
            return Err(format!(
                "its manifest lists {} shards for {} workers",
                manifest.shards.len(),
                manifest.workers
            ));
        }
        let now = metric_fingerprints(plan);
        let mut resume = vec![Resume::new(); plan.sources.len()];
        let mut newest = vec![BTreeMap::new(); plan.sources.len()];
        let mut rows = Vec::with_capacity(manifest.workers);
        let mut dropped = std::collections::BTreeSet::new();
        let mut backfills: Vec<BackfillState> = Vec::new();
        // Metrics of the plan (by index) whose rows the checkpoint holds.
        let mut held = std::collections::BTreeSet::new();
        let mut counts = vec![Vec::new(); manifest.workers];
        for entry in &manifest.shards {
            let shard = read_shard(&folder.join(&entry.file)).map_err(|e| e.to_string())?;
            if shard.epoch != manifest.epoch || shard.workers != manifest.workers {
                return Err(format!("{} belongs to another checkpoint", entry.file));
            }
            // Old metric index → new one, for metrics whose definition is unchanged.
            let remap: Vec<Option<u32>> = shard
                .metrics
                .iter()
                .map(|(name, print)| {
                    let found = now.iter().position(|(n, p)| n == name && p == print);
                    match found {
                        Some(i) => held.insert(i),
                        None => dropped.insert(name.clone()),
                    };
                    found.map(|i| i as u32)
                })
                .collect();
            let (old, new) = (shard.metrics.len() as u32, plan.metrics.len() as u32);
            let mut kept = Vec::with_capacity(shard.rows.len());
            for (mut key, row) in shard.rows {
                // Indices past the metrics name the metrics' late rows.
                let (base, late) = if key.metric >= old {
                    (key.metric - old, true)
                } else {
                    (key.metric, false)
                };
                if let Some(Some(m)) = remap.get(base as usize) {
                    key.metric = if late { m + new } else { *m };
                    kept.push((key, row));
                }
            }
            rows.push(Some(kept));
            if let Some(slot) = counts.get_mut(shard.worker) {
                let kept_metric = |name: &str| {
                    let old = shard.metrics.iter().find(|(n, _)| n == name);
                    old.is_some_and(|(n, p)| now.iter().any(|(m, q)| m == n && q == p))
                };
                *slot = shard
                    .counts
                    .into_iter()
                    .map(|(source, mut counts)| {
                        counts.late_by_metric.retain(|(m, _)| kept_metric(m));
                        (source, counts)
                    })
                    .collect();
            }
            for mut state in shard.backfills {
                let Some(m) = now
                    .iter()
                    .position(|(n, p)| *n == state.metric && *p == state.fingerprint)
                else {
                    continue;
                };
                if let Some(order) = &mut state.order {
                    order.metric = m as u32;
                }
                match backfills.iter_mut().find(|b| b.metric == state.metric) {
                    Some(known) => merge_backfill(known, state),
                    None => backfills.push(state),
                }
            }
            for (name, positions) in shard.sources {
                if let Some(i) = plan.sources.iter().position(|s| s.name == name) {
                    resume[i].extend(positions.positions);
                    newest[i].extend(positions.newest);
                }
            }
        }
        // A metric the checkpoint does not hold joins now: its live input
        // begins where its sources resume, and what came before is history.
        for (index, metric) in plan.metrics.iter().enumerate() {
            if held.contains(&index) {
                continue;
            }
            let origin: Vec<(String, Resume)> = metric
                .sources
                .iter()
                .filter_map(|name| {
                    let i = plan.sources.iter().position(|s| &s.name == name)?;
                    (!resume[i].is_empty()).then(|| (name.clone(), resume[i].clone()))
                })
                .collect();
            if !origin.is_empty() {
                backfills.push(BackfillState {
                    metric: metric.name.clone(),
                    fingerprint: now[index].1,
                    origin,
                    order: None,
                    progress: Vec::new(),
                });
            }
        }
        Ok(Restored {
            epoch: manifest.epoch,
            workers: manifest.workers,
            resume,
            newest,
            rows: Mutex::new(rows),
            dropped_metrics: dropped.into_iter().collect(),
            backfills,
            counts,
        })
    }

    /// What worker `worker` of `workers` continues counting from for the
    /// source named `source`: the sum of old workers `worker, worker +
    /// workers, …` (the workers whose rows it takes), so that the totals
    /// over every worker carry over whatever the number of workers.
    pub fn counts_for(&self, worker: usize, workers: usize, source: &str) -> SourceCounts {
        let mut sum = SourceCounts::default();
        for old in (worker..self.counts.len()).step_by(workers.max(1)) {
            let Some((_, counts)) = self.counts[old].iter().find(|(s, _)| s == source) else {
                continue;
            };
            sum.records += counts.records;
            sum.errors += counts.errors;
            sum.late += counts.late;
            for (metric, n) in &counts.late_by_metric {
                match sum.late_by_metric.iter_mut().find(|(m, _)| m == metric) {
                    Some((_, total)) => *total += n,
                    None => sum.late_by_metric.push((metric.clone(), *n)),
                }
            }
        }
        sum
    }

    /// Every dead-letter file the checkpoint knows the length of: its
    /// source, its (old) worker and its length at the checkpoint.
    pub fn dead_letter_lengths(&self) -> impl Iterator<Item = (&str, usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .flat_map(|(worker, sources)| {
                sources
                    .iter()
                    .map(move |(source, c)| (source.as_str(), worker, c.dead_letter_bytes))
            })
    }

    /// The rows worker `worker` of `workers` feeds back in: those of the old
    /// workers `worker, worker + workers, …`. Each old shard is taken once.
    pub fn take_rows(&self, worker: usize, workers: usize) -> Rows {
        let Ok(mut rows) = self.rows.lock() else {
            return Vec::new();
        };
        let mut mine = Vec::new();
        for old in (worker..rows.len()).step_by(workers.max(1)) {
            if let Some(shard) = rows[old].take() {
                mine.extend(shard);
            }
        }
        mine
    }
}

/// Folds another worker's view of a backfill into `known`: the same origin
/// and order, and per partition the furthest position read (a partition's
/// position only grows, and every shard was read at the same epoch).
fn merge_backfill(known: &mut BackfillState, other: BackfillState) {
    for (source, origin) in other.origin {
        match known.origin.iter_mut().find(|(s, _)| *s == source) {
            Some((_, known)) => known.extend(origin),
            None => known.origin.push((source, origin)),
        }
    }
    if known.order.is_none() {
        known.order = other.order;
    }
    for (source, progress) in other.progress {
        match known.progress.iter_mut().find(|(s, _)| *s == source) {
            Some((_, known)) => {
                merge_furthest(&mut known.positions, progress.positions);
                merge_furthest(&mut known.newest, progress.newest);
            }
            None => known.progress.push((source, progress)),
        }
    }
}

/// Per name, the larger of the two values.
fn merge_furthest<T: Ord + Copy>(known: &mut Vec<(String, T)>, other: Vec<(String, T)>) {
    for (name, value) in other {
        match known.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = (*v).max(value),
            None => known.push((name, value)),
        }
    }
}
