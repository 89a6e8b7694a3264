//! The shard file: one worker's rollup rows and source positions.
//!
//! ```text
//! bytes 0..8    magic "SFSHARD\n"
//! bytes 8..12   format version, u32 little-endian (now 5; 1 to 4 are still read)
//! bytes 12..20  body length n, u64 little-endian
//! bytes 20..    body: the `Shard` in bincode 1 with variable-length
//!               integers (formats 1 and 2: fixed-width integers)
//! last 4 bytes  CRC-32 (IEEE) of the body, u32 little-endian
//! ```
//!
//! A file that is shorter or longer than its header says, or whose checksum
//! does not match, is torn or corrupt, and its checkpoint is skipped.
//!
//! The body is streamed to the file as it is encoded, the checksum computed
//! on the way, and the length filled in at the end, so a shard is never held
//! in memory as bytes beside its rows.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bincode::Options;
use serde::{Deserialize, Serialize};
use statflow_dataflow::aggregate::{Aggregates, MeasureState};
use statflow_dataflow::backfill::BackfillOrder;
use statflow_dataflow::ingest::{Resume, SourcePositions};
use statflow_dataflow::rollup::RollupKey;

use super::{folder, shard_file, write_atomically_with};

/// The shard format version; bumped whenever the layout or the body changes.
/// Format 5 stores rows without a state for `count()` measures (the row's
/// event count is theirs; see [`Aggregates`]), and formats 1 to 4 are read
/// by leaving those states out. Format 4 adds each source's counts (records, errors, late events, the
/// dead-letter file's length) to format 3; format 3 encodes integers by
/// their size (bincode's varint), in about half the bytes of format 2 for
/// the same rows; format 2 added backfills to format 1.
pub const FORMAT: u32 = 5;

/// The body's encoding in [`FORMAT`]: variable-length integers, little-endian.
fn encoding() -> impl Options {
    bincode::DefaultOptions::new()
}

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
    /// What the worker's sources had done by the end of `epoch`, by source
    /// name (format 4 on; empty when read from an older format).
    pub counts: Vec<(String, SourceCounts)>,
}

/// What one source did on one worker up to the end of a checkpoint's epoch:
/// cumulative counts of what the data did, which are part of the state at
/// that epoch just as positions are. A restart continues from them, so the
/// status endpoint, `/metrics` and query answers agree with a run that
/// never stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCounts {
    /// Records read, good or bad.
    pub records: u64,
    /// Records that could not be counted; each was dead-lettered.
    pub errors: u64,
    /// Late events, set aside in the metrics' late rows.
    pub late: u64,
    /// Late events per metric they would have counted in, by metric name
    /// (plan indices change between runs; names do not).
    pub late_by_metric: Vec<(String, u64)>,
    /// The length in bytes of the worker's dead-letter file of the source
    /// (see `crate::deadletter`): a restart cuts the file back to it, so a
    /// record read again is not dead-lettered twice.
    pub dead_letter_bytes: u64,
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

/// A shard as formats 2 and 3 wrote it: no counts.
#[derive(Deserialize)]
struct ShardV3 {
    epoch: u64,
    worker: usize,
    workers: usize,
    metrics: Vec<(String, u64)>,
    sources: Vec<(String, SourcePositions)>,
    rows: Vec<(RollupKey, Aggregates)>,
    backfills: Vec<BackfillState>,
}

impl From<ShardV3> for Shard {
    fn from(v3: ShardV3) -> Shard {
        Shard {
            epoch: v3.epoch,
            worker: v3.worker,
            workers: v3.workers,
            metrics: v3.metrics,
            sources: v3.sources,
            rows: v3.rows,
            backfills: v3.backfills,
            counts: Vec::new(),
        }
    }
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

/// The bytes `value` takes in a shard body of [`FORMAT`].
pub fn encoded_size<T: Serialize + ?Sized>(value: &T) -> u64 {
    encoding().serialized_size(value).unwrap_or(0)
}

/// Writes `shard` into the folder of its checkpoint (named by `at_ms`, see
/// [`folder`]) under `dir`; returns the file's size in bytes.
pub fn write_shard(dir: &Path, at_ms: u64, shard: &Shard) -> std::io::Result<u64> {
    write_body(dir, at_ms, shard.worker, |body| {
        encoding()
            .serialize_into(body, shard)
            .map_err(std::io::Error::other)
    })
}

/// Rollup rows encoded as a shard body holds them. A worker encodes its
/// rows here as it reads them out of the rollup, which is cheaper than
/// copying each row (every key and measure state is a few allocations),
/// and hands the bytes to its writer thread.
#[derive(Debug, Default)]
pub struct EncodedRows {
    count: u64,
    bytes: Vec<u8>,
}

impl EncodedRows {
    /// No rows yet, encoded into `buffer` (emptied first): a buffer from an
    /// earlier shard saves growing a new one, and the fresh pages it takes.
    pub fn reusing(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        EncodedRows {
            count: 0,
            bytes: buffer,
        }
    }

    /// The buffer, for [`EncodedRows::reusing`].
    pub fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }

    /// Adds one row.
    pub fn push(&mut self, key: &RollupKey, row: &Aggregates) -> std::io::Result<()> {
        encoding()
            .serialize_into(&mut self.bytes, &(key, row))
            .map_err(std::io::Error::other)?;
        self.count += 1;
        Ok(())
    }

    /// Rows added.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when no row was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Writes the shard made of `head` with `rows` in place of its (empty)
/// rows, byte for byte what [`write_shard`] writes for the whole shard.
pub fn write_shard_encoded(
    dir: &Path,
    at_ms: u64,
    head: &Shard,
    rows: &EncodedRows,
) -> std::io::Result<u64> {
    debug_assert!(head.rows.is_empty(), "the rows come encoded");
    let head_bytes = encoding().serialize(head).map_err(std::io::Error::other)?;
    // `rows` follows `sources` in `Shard`; an empty list is one byte, its
    // length 0. (A unit test checks the result against `write_shard`.)
    let split = encoding()
        .serialized_size(&(
            head.epoch,
            head.worker,
            head.workers,
            &head.metrics,
            &head.sources,
        ))
        .map_err(std::io::Error::other)? as usize;
    if head_bytes.get(split) != Some(&0) {
        return Err(std::io::Error::other(
            "the shard's rows are not where expected",
        ));
    }
    write_body(dir, at_ms, head.worker, |body| {
        body.write_all(&head_bytes[..split])?;
        encoding()
            .serialize_into(&mut *body, &rows.count)
            .map_err(std::io::Error::other)?;
        body.write_all(&rows.bytes)?;
        body.write_all(&head_bytes[split + 1..])
    })
}

/// Writes a shard file of worker `worker` into the folder named by `at_ms`:
/// the header, the body that `encode` writes, and its checksum, streamed
/// into the file and the length filled in at the end.
fn write_body(
    dir: &Path,
    at_ms: u64,
    worker: usize,
    encode: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<u64> {
    let path = folder(dir, at_ms).join(shard_file(worker));
    let mut size = 0;
    write_atomically_with(&path, |file| {
        file.write_all(MAGIC)?;
        file.write_all(&FORMAT.to_le_bytes())?;
        // The body's length, filled in once it is written.
        file.write_all(&0u64.to_le_bytes())?;
        // bincode writes a few bytes at a time: buffer them before the
        // checksum, which is fastest over large slices.
        let mut body = std::io::BufWriter::with_capacity(
            64 << 10,
            Checksummed {
                inner: &mut *file,
                crc: crc32fast::Hasher::new(),
                bytes: 0,
            },
        );
        encode(&mut body)?;
        let Checksummed { crc, bytes, .. } = body.into_inner().map_err(|e| e.into_error())?;
        file.write_all(&crc.finalize().to_le_bytes())?;
        file.seek(SeekFrom::Start(12))?;
        file.write_all(&bytes.to_le_bytes())?;
        size = HEADER as u64 + bytes + 4;
        Ok(())
    })?;
    Ok(size)
}

/// A writer that counts and checksums what passes through it.
struct Checksummed<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
    if !(1..=FORMAT).contains(&version) {
        return Err(corrupt(format!(
            "format {version}, and this statflow reads formats 1 to {FORMAT}"
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
    if version == FORMAT {
        return encoding().deserialize(body).map_err(undecodable);
    }
    let mut shard = read_older(version, body).map_err(undecodable)?;
    for (_, row) in &mut shard.rows {
        row.measures.retain(|s| !matches!(s, MeasureState::Count));
    }
    Ok(shard)
}

/// A shard body of an older format, its rows as that format stored them.
fn read_older(version: u32, body: &[u8]) -> Result<Shard, bincode::Error> {
    if version == 1 {
        let v1: ShardV1 = bincode::deserialize(body)?;
        return Ok(Shard {
            epoch: v1.epoch,
            worker: v1.worker,
            workers: v1.workers,
            metrics: v1.metrics,
            sources: v1.sources,
            rows: v1.rows,
            backfills: Vec::new(),
            counts: Vec::new(),
        });
    }
    if version == 2 {
        // Format 2: format 3's fields with fixed-width integers.
        let v2: ShardV3 = bincode::deserialize(body)?;
        return Ok(v2.into());
    }
    if version == 3 {
        let v3: ShardV3 = encoding().deserialize(body)?;
        return Ok(v3.into());
    }
    // Format 4: format 5's fields.
    encoding().deserialize(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use statflow_dataflow::aggregate::Fixed;
    use statflow_dataflow::value::Value;

    fn shard() -> Shard {
        // A row of `count()` and `sum(...)`: a state for the sum only.
        let row = Aggregates {
            count: 3,
            measures: vec![MeasureState::Sum(Fixed::from(7_000_000_000i128))].into(),
        };
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
                    dims: vec![Value::Str("g1".into())].into(),
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
            counts: vec![(
                "s".into(),
                SourceCounts {
                    records: 121,
                    errors: 2,
                    late: 5,
                    late_by_metric: vec![("m".into(), 5)],
                    dead_letter_bytes: 310,
                },
            )],
        }
    }

    /// `shard` without its counts, and its body as formats 2 and 3 hold it:
    /// every field but the counts.
    fn before_counts(shard: &Shard) -> (Shard, impl Serialize + '_) {
        let old = Shard {
            counts: Vec::new(),
            ..shard.clone()
        };
        let body = (
            shard.epoch,
            shard.worker,
            shard.workers,
            &shard.metrics,
            &shard.sources,
            &shard.rows,
            &shard.backfills,
        );
        (old, body)
    }

    #[test]
    fn a_shard_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write_shard(dir.path(), 990, &shard()).unwrap();
        let path = folder(dir.path(), 990).join(shard_file(1));
        let file = std::fs::read(&path).unwrap();
        assert_eq!(file.len() as u64, bytes);
        assert_eq!(&file[8..12], &FORMAT.to_le_bytes());
        assert_eq!(read_shard(&path).unwrap(), shard());
    }

    #[test]
    fn a_shard_with_encoded_rows_is_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let whole = shard();
        write_shard(dir.path(), 1, &whole).unwrap();
        let mut rows = EncodedRows::default();
        for (key, row) in &whole.rows {
            rows.push(key, row).unwrap();
        }
        let head = Shard {
            rows: Vec::new(),
            ..whole.clone()
        };
        write_shard_encoded(dir.path(), 2, &head, &rows).unwrap();
        let read = |at| std::fs::read(folder(dir.path(), at).join(shard_file(1))).unwrap();
        assert_eq!(read(1), read(2));
    }

    /// A shard file of `version` around `body`.
    fn file_of(version: u32, body: &[u8]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        bytes
    }

    #[test]
    fn a_format_2_shard_still_reads_in_more_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let whole = shard();
        let (old, body) = before_counts(&whole);
        let two = file_of(2, &bincode::serialize(&body).unwrap());
        let path = dir.path().join("format-2.shard");
        std::fs::write(&path, &two).unwrap();
        assert_eq!(read_shard(&path).unwrap(), old);
        let now = write_shard(dir.path(), 990, &old).unwrap();
        assert!(now < two.len() as u64, "{now} vs {}", two.len());
    }

    #[test]
    fn a_format_3_shard_reads_back_without_counts() {
        let dir = tempfile::tempdir().unwrap();
        let whole = shard();
        let (old, body) = before_counts(&whole);
        let path = dir.path().join("format-3.shard");
        std::fs::write(&path, file_of(3, &encoding().serialize(&body).unwrap())).unwrap();
        assert_eq!(read_shard(&path).unwrap(), old);
    }

    #[test]
    fn a_format_4_shard_reads_back_without_count_states() {
        let dir = tempfile::tempdir().unwrap();
        let whole = shard();
        let mut old = whole.clone();
        for (_, row) in &mut old.rows {
            row.measures.insert(0, MeasureState::Count);
        }
        let path = dir.path().join("format-4.shard");
        std::fs::write(&path, file_of(4, &encoding().serialize(&old).unwrap())).unwrap();
        assert_eq!(read_shard(&path).unwrap(), whole);
        // Format 5 reads its rows as they are.
        write_shard(dir.path(), 990, &old).unwrap();
        let five = read_shard(&folder(dir.path(), 990).join(shard_file(1))).unwrap();
        assert_eq!(five, old);
    }

    #[test]
    fn a_format_1_shard_reads_back_without_backfills() {
        let dir = tempfile::tempdir().unwrap();
        let mut v2 = shard();
        v2.backfills.clear();
        v2.counts.clear();
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
        write_shard(dir.path(), 990, &shard()).unwrap();
        let path = folder(dir.path(), 990).join(shard_file(1));
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
