//! The shard file: one worker's rollup rows and source positions.
//!
//! ```text
//! bytes 0..8    magic "SFSHARD\n"
//! bytes 8..12   format version, u32 little-endian (now 2; 1 is still read)
//! bytes 12..20  body length n, u64 little-endian
//! bytes 20..    body: the `Shard` in bincode 1 (fixed-width integers)
//! last 4 bytes  CRC-32 (IEEE) of the body, u32 little-endian
//! ```
//!
//! A file that is shorter or longer than its header says, or whose checksum
//! does not match, is torn or corrupt, and its checkpoint is skipped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use statflow_dataflow::aggregate::Aggregates;
use statflow_dataflow::backfill::BackfillOrder;
use statflow_dataflow::ingest::{Resume, SourcePositions};
use statflow_dataflow::rollup::RollupKey;

use super::{folder, shard_file, write_atomically};

/// The shard format version; bumped whenever the layout or the body changes.
pub const FORMAT: u32 = 2;

const MAGIC: &[u8; 8] = b"SFSHARD\n";
const HEADER: usize = 20;

/// One worker's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shard {
    /// The epoch the rows were read at.
    pub epoch: u64,
    /// The worker that wrote it, over every process.
    pub worker: usize,
    /// Workers over every process when it was written.
    pub workers: usize,
    /// Every metric of the plan at the time, in plan order: its name and the
    /// fingerprint of its definition. Rows name metrics by this index.
    pub metrics: Vec<(String, u64)>,
    /// The worker's positions per source, by source name.
    pub sources: Vec<(String, SourcePositions)>,
    /// The worker's rollup rows at `epoch`.
    pub rows: Vec<(RollupKey, Aggregates)>,
    /// Metrics that joined after their sources had been read from, and how
    /// far filling in their history has come (format 2 on).
    pub backfills: Vec<BackfillState>,
}

/// A metric whose live input began part way through its sources (it joined
/// the topology at a restart), and the filling in of what it missed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillState {
    /// The metric's name.
    pub metric: String,
    /// The fingerprint of its definition: a changed metric starts over.
    pub fingerprint: u64,
    /// Per source (by name), the position of every partition at which the
    /// metric's live input began: the backfill reads everything before.
    pub origin: Vec<(String, Resume)>,
    /// The order, once `statflow backfill` gave it; `metric` is the index
    /// in the plan of the run that wrote the shard.
    pub order: Option<BackfillOrder>,
    /// Per source (by name), how far the backfill has read every partition
    /// that it counted into the rows of this checkpoint.
    pub progress: Vec<(String, SourcePositions)>,
}

/// A shard as format 1 wrote it: no backfills.
#[derive(Deserialize)]
struct ShardV1 {
    epoch: u64,
    worker: usize,
    workers: usize,
    metrics: Vec<(String, u64)>,
    sources: Vec<(String, SourcePositions)>,
    rows: Vec<(RollupKey, Aggregates)>,
}

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file system said no.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not what a shard looks like.
    #[error("{path} is torn or corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Writes `shard` into its checkpoint's folder under `dir`; returns its size in bytes.
pub fn write_shard(dir: &Path, shard: &Shard) -> std::io::Result<u64> {
    let body = bincode::serialize(shard).map_err(std::io::Error::other)?;
    let mut bytes = Vec::with_capacity(HEADER + body.len() + 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&body);
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let path = folder(dir, shard.epoch).join(shard_file(shard.worker));
    write_atomically(&path, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Reads and checks one shard file.
pub fn read_shard(path: &Path) -> Result<Shard, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.len() < HEADER + 4 || &bytes[..8] != MAGIC {
        return Err(corrupt("it does not start like a shard file".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if version != FORMAT && version != 1 {
        return Err(corrupt(format!(
            "format {version}, and this statflow reads format {FORMAT}"
        )));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or_default());
    if (bytes.len() - HEADER - 4) as u64 != len {
        return Err(corrupt(format!(
            "the header says {len} bytes of body, the file holds {}",
            bytes.len() - HEADER - 4
        )));
    }
    let body = &bytes[HEADER..bytes.len() - 4];
    let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap_or_default());
    if crc32fast::hash(body) != crc {
        return Err(corrupt("its checksum does not match".into()));
    }
    let undecodable = |e: bincode::Error| corrupt(format!("its body does not decode: {e}"));
    if version == 1 {
        let v1: ShardV1 = bincode::deserialize(body).map_err(undecodable)?;
        return Ok(Shard {
            epoch: v1.epoch,
            worker: v1.worker,
            workers: v1.workers,
            metrics: v1.metrics,
            sources: v1.sources,
            rows: v1.rows,
            backfills: Vec::new(),
        });
    }
    bincode::deserialize(body).map_err(undecodable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use statflow_dataflow::value::Value;
    use statflow_dsl::MeasureKind;

    fn shard() -> Shard {
        let mut row = Aggregates::empty(&[MeasureKind::Count]);
        row.count = 3;
        Shard {
            epoch: 99,
            worker: 1,
            workers: 4,
            metrics: vec![("m".into(), 42)],
            sources: vec![(
                "s".into(),
                SourcePositions {
                    positions: vec![("slice-01".into(), 120)],
                    newest: vec![("slice-01".into(), 1_000)],
                },
            )],
            rows: vec![(
                RollupKey {
                    metric: 0,
                    bucket: 60_000,
                    dims: vec![Value::Str("g1".into())],
                },
                row,
            )],
            backfills: vec![BackfillState {
                metric: "late_joiner".into(),
                fingerprint: 7,
                origin: vec![("s".into(), [("slice-01".to_string(), 120)].into())],
                order: Some(BackfillOrder {
                    metric: 1,
                    from_ms: None,
                    to_ms: Some(3_600_000),
                }),
                progress: vec![(
                    "s".into(),
                    SourcePositions {
                        positions: vec![("slice-01".into(), 60)],
                        newest: vec![("slice-01".into(), 900)],
                    },
                )],
            }],
        }
    }

    #[test]
    fn a_shard_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write_shard(dir.path(), &shard()).unwrap();
        let path = folder(dir.path(), 99).join(shard_file(1));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), bytes);
        assert_eq!(read_shard(&path).unwrap(), shard());
    }

    #[test]
    fn a_format_1_shard_reads_back_without_backfills() {
        let dir = tempfile::tempdir().unwrap();
        let mut v2 = shard();
        v2.backfills.clear();
        let Shard {
            epoch,
            worker,
            workers,
            metrics,
            sources,
            rows,
            ..
        } = v2.clone();
        // Format 1's body is format 2's without the trailing backfills.
        let body = bincode::serialize(&(epoch, worker, workers, metrics, sources, rows)).unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&body);
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        let path = dir.path().join("shard-1.bin");
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(read_shard(&path).unwrap(), v2);
    }

    #[test]
    fn torn_and_flipped_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_shard(dir.path(), &shard()).unwrap();
        let path = folder(dir.path(), 99).join(shard_file(1));
        let good = std::fs::read(&path).unwrap();

        std::fs::write(&path, &good[..good.len() - 7]).unwrap();
        let torn = read_shard(&path).unwrap_err().to_string();
        assert!(
            torn.contains("torn or corrupt") && torn.contains("header says"),
            "{torn}"
        );

        let mut flipped = good.clone();
        flipped[HEADER + 3] ^= 0x40;
        std::fs::write(&path, &flipped).unwrap();
        let flipped = read_shard(&path).unwrap_err().to_string();
        assert!(flipped.contains("checksum"), "{flipped}");

        let mut newer = good;
        newer[8] = 9;
        std::fs::write(&path, &newer).unwrap();
        let newer = read_shard(&path).unwrap_err().to_string();
        assert!(newer.contains("format 9"), "{newer}");
    }
}
