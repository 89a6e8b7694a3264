//! The shard file: one worker's rollup rows and source positions.
//!
//! ```text
//! bytes 0..8    magic "SFSHARD\n"
//! bytes 8..12   format version, u32 little-endian (now 1)
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
use statflow_dataflow::ingest::SourcePositions;
use statflow_dataflow::rollup::RollupKey;

use super::{folder, shard_file, write_atomically};

/// The shard format version; bumped whenever the layout or the body changes.
pub const FORMAT: u32 = 1;

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
    if version != FORMAT {
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
    bincode::deserialize(body).map_err(|e| corrupt(format!("its body does not decode: {e}")))
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
