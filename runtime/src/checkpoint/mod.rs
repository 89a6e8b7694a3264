//! Checkpoints: every worker's shard of the rollup and its sources'
//! positions at one epoch, written so that a crash at any moment loses
//! nothing and counts nothing twice.
//!
//! Layout under `<state-dir>/checkpoints/`:
//!
//! ```text
//! 01775832000000000/        one folder per checkpoint, named by its time
//!   w00000.shard            one file per worker (see `format`)
//!   w00001.shard
//!   MANIFEST.json           written last, by worker 0, once every shard is there
//! ```
//!
//! A folder is named by the wall-clock time of its checkpoint's epoch (the
//! epoch times the epoch length, in milliseconds since 1970), not by the
//! epoch number: epoch numbers depend on `--epoch-ms`, so a restart with
//! another epoch length would number its checkpoints below the old ones,
//! which would then look newest. Times keep their order whatever the epoch
//! length.
//!
//! A checkpoint is complete only when its manifest exists and every shard
//! it lists reads back with the right length and checksum. Every file is
//! written to a temporary name, synced, renamed, and its folder synced.

mod format;
mod restore;

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use format::{
    encoded_size, read_shard, write_shard, write_shard_encoded, BackfillState, CheckpointError,
    EncodedRows, Shard, SourceCounts, FORMAT,
};
pub use restore::{metric_fingerprints, Restored};

/// How checkpoints are taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// The folder holding one sub-folder per checkpoint.
    pub dir: PathBuf,
    /// Time between checkpoints.
    pub interval: Duration,
    /// Complete checkpoints kept; older ones are deleted.
    pub keep: usize,
}

impl CheckpointConfig {
    /// Checkpoints under `<state_dir>/checkpoints`, every `interval`, keeping three.
    pub fn under(state_dir: &Path, interval: Duration) -> Self {
        CheckpointConfig {
            dir: state_dir.join("checkpoints"),
            interval,
            keep: 3,
        }
    }
}

/// The manifest of a complete checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The checkpoint format version.
    pub format: u32,
    /// The epoch the checkpoint was read at.
    pub epoch: u64,
    /// Workers over every process when it was written.
    pub workers: usize,
    /// One entry per worker's shard, in worker order.
    pub shards: Vec<ShardEntry>,
}

/// One shard as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the checkpoint's folder.
    pub file: String,
    /// Its length in bytes.
    pub bytes: u64,
}

/// The manifest's file name.
pub const MANIFEST: &str = "MANIFEST.json";

/// The folder of the checkpoint taken at wall-clock time `at_ms` (its
/// epoch times the epoch length; see [`time_of`]).
pub fn folder(dir: &Path, at_ms: u64) -> PathBuf {
    dir.join(format!("{at_ms:017}"))
}

/// The wall-clock time, in milliseconds since 1970, that names the
/// checkpoint at `epoch` when epochs last `epoch_ms`: the start of the epoch.
pub fn time_of(epoch: u64, epoch_ms: u64) -> u64 {
    epoch.saturating_mul(epoch_ms)
}

/// The file name of worker `worker`'s shard.
pub fn shard_file(worker: usize) -> String {
    format!("w{worker:05}.shard")
}

/// Writes `bytes` to `path` atomically: a temporary file, synced, renamed,
/// and the folder synced, so a crash leaves either the old state or the new.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomically`], with the contents written by `write` into the
/// temporary file (buffered), so that they need not be in memory at once.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(folder)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = folder.join(format!(".{name}.tmp"));
    let mut file = BufWriter::with_capacity(1 << 20, fs::File::create(&temp)?);
    write(&mut file)?;
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    fs::File::open(folder)?.sync_all()
}

/// Writes the manifest of the checkpoint at `epoch`, in the folder named by
/// `at_ms`, once all `workers` shards are there. True when the checkpoint is
/// (now) complete.
pub fn try_complete(dir: &Path, at_ms: u64, epoch: u64, workers: usize) -> std::io::Result<bool> {
    let folder = folder(dir, at_ms);
    if folder.join(MANIFEST).exists() {
        return Ok(true);
    }
    let mut shards = Vec::with_capacity(workers);
    for worker in 0..workers {
        let file = shard_file(worker);
        match fs::metadata(folder.join(&file)) {
            Ok(meta) => shards.push(ShardEntry {
                file,
                bytes: meta.len(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    let manifest = Manifest {
        format: FORMAT,
        epoch,
        workers,
        shards,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    write_atomically(&folder.join(MANIFEST), &bytes)?;
    Ok(true)
}

/// The times (folder names, see [`folder`]) of the checkpoints under `dir`,
/// newest first, each with whether its manifest is there.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, bool)>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(at_ms) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((at_ms, entry.path().join(MANIFEST).exists()));
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    Ok(found)
}

/// Deletes all but the newest `keep` complete checkpoints, and every
/// incomplete one older than the newest complete one.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut complete_seen = 0;
    for (at_ms, complete) in list(dir)? {
        let stale = if complete {
            complete_seen += 1;
            complete_seen > keep.max(1)
        } else {
            complete_seen > 0
        };
        if stale {
            fs::remove_dir_all(folder(dir, at_ms))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(worker: usize, epoch: u64) -> Shard {
        Shard {
            epoch,
            worker,
            workers: 2,
            metrics: vec![("m".into(), 7)],
            sources: Vec::new(),
            rows: Vec::new(),
            backfills: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Both shards of the checkpoint at `epoch` with epochs of `epoch_ms`,
    /// and its manifest when `complete`.
    fn checkpoint(dir: &Path, epoch: u64, epoch_ms: u64, complete: bool) -> u64 {
        let at = time_of(epoch, epoch_ms);
        write_shard(dir, at, &shard(0, epoch)).unwrap();
        write_shard(dir, at, &shard(1, epoch)).unwrap();
        if complete {
            assert!(try_complete(dir, at, epoch, 2).unwrap());
        }
        at
    }

    #[test]
    fn a_checkpoint_completes_only_with_every_shard() {
        let dir = tempfile::tempdir().unwrap();
        write_shard(dir.path(), 400, &shard(0, 40)).unwrap();
        assert!(!try_complete(dir.path(), 400, 40, 2).unwrap());
        write_shard(dir.path(), 400, &shard(1, 40)).unwrap();
        assert!(try_complete(dir.path(), 400, 40, 2).unwrap());
        assert_eq!(list(dir.path()).unwrap(), vec![(400, true)]);
        let manifest: Manifest =
            serde_json::from_slice(&fs::read(folder(dir.path(), 400).join(MANIFEST)).unwrap())
                .unwrap();
        assert_eq!((manifest.epoch, manifest.workers), (40, 2));
    }

    #[test]
    fn prune_keeps_the_newest_complete_ones() {
        let dir = tempfile::tempdir().unwrap();
        for epoch in [10, 20, 30, 40, 50] {
            checkpoint(dir.path(), epoch, 10, epoch != 20 && epoch != 50);
        }
        prune(dir.path(), 2).unwrap();
        // 50 is newer than every complete one and may still complete; 20 is stale.
        assert_eq!(
            list(dir.path()).unwrap(),
            vec![(500, false), (400, true), (300, true)]
        );
    }

    /// Checkpoints were once named by epoch number: a restart with longer
    /// epochs numbered its checkpoints below the old ones, so the old ones
    /// stayed "newest" and the new ones were pruned.
    #[test]
    fn checkpoints_keep_their_order_when_the_epoch_length_changes() {
        let dir = tempfile::tempdir().unwrap();
        // A run with 200 ms epochs, then one with 1 s epochs, 100 s later.
        let first = checkpoint(dir.path(), 5_000, 200, true);
        let second = checkpoint(dir.path(), 1_100, 1_000, true);
        assert_eq!((first, second), (1_000_000, 1_100_000));
        prune(dir.path(), 1).unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![(second, true)]);
        let kept = read_shard(&folder(dir.path(), second).join(shard_file(0))).unwrap();
        assert_eq!(kept.epoch, 1_100);
    }
}
