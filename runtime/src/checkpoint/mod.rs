//! Checkpoints: every worker's shard of the rollup and its sources'
//! positions at one epoch, written so that a crash at any moment loses
//! nothing and counts nothing twice.
//!
//! Layout under `<state-dir>/checkpoints/`:
//!
//! ```text
//! 00000008871234560/        one folder per checkpoint, named by its epoch
//!   w00000.shard            one file per worker (see `format`)
//!   w00001.shard
//!   MANIFEST.json           written last, by worker 0, once every shard is there
//! ```
//!
//! A checkpoint is complete only when its manifest exists and every shard
//! it lists reads back with the right length and checksum. Every file is
//! written to a temporary name, synced, renamed, and its folder synced.

mod format;
mod restore;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use format::{read_shard, write_shard, BackfillState, CheckpointError, Shard, FORMAT};
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

/// The folder of the checkpoint at `epoch`.
pub fn folder(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!("{epoch:017}"))
}

/// The file name of worker `worker`'s shard.
pub fn shard_file(worker: usize) -> String {
    format!("w{worker:05}.shard")
}

/// Writes `bytes` to `path` atomically: a temporary file, synced, renamed,
/// and the folder synced, so a crash leaves either the old state or the new.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(folder)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = folder.join(format!(".{name}.tmp"));
    let mut file = fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    fs::File::open(folder)?.sync_all()
}

/// Writes the manifest of the checkpoint at `epoch` once all `workers`
/// shards are in its folder. True when the checkpoint is (now) complete.
pub fn try_complete(dir: &Path, epoch: u64, workers: usize) -> std::io::Result<bool> {
    let folder = folder(dir, epoch);
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

/// The epochs of the checkpoint folders under `dir`, newest first, each
/// with whether its manifest is there.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, bool)>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(epoch) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((epoch, entry.path().join(MANIFEST).exists()));
    }
    found.sort_unstable_by(|a, b| b.cmp(a));
    Ok(found)
}

/// Deletes all but the newest `keep` complete checkpoints, and every
/// incomplete one older than the newest complete one.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut complete_seen = 0;
    for (epoch, complete) in list(dir)? {
        let stale = if complete {
            complete_seen += 1;
            complete_seen > keep.max(1)
        } else {
            complete_seen > 0
        };
        if stale {
            fs::remove_dir_all(folder(dir, epoch))?;
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
        }
    }

    #[test]
    fn a_checkpoint_completes_only_with_every_shard() {
        let dir = tempfile::tempdir().unwrap();
        write_shard(dir.path(), &shard(0, 40)).unwrap();
        assert!(!try_complete(dir.path(), 40, 2).unwrap());
        write_shard(dir.path(), &shard(1, 40)).unwrap();
        assert!(try_complete(dir.path(), 40, 2).unwrap());
        assert_eq!(list(dir.path()).unwrap(), vec![(40, true)]);
    }

    #[test]
    fn prune_keeps_the_newest_complete_ones() {
        let dir = tempfile::tempdir().unwrap();
        for epoch in [10, 20, 30, 40, 50] {
            write_shard(dir.path(), &shard(0, epoch)).unwrap();
            write_shard(dir.path(), &shard(1, epoch)).unwrap();
            if epoch != 20 && epoch != 50 {
                try_complete(dir.path(), epoch, 2).unwrap();
            }
        }
        prune(dir.path(), 2).unwrap();
        // 50 is newer than every complete one and may still complete; 20 is stale.
        assert_eq!(
            list(dir.path()).unwrap(),
            vec![(50, false), (40, true), (30, true)]
        );
    }
}
