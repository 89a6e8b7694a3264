//! Dead letters: records that could not be counted, kept as JSON lines with
//! their source, worker, partition, position and reason.
//!
//! Each worker's file of a source is written only by that worker's thread,
//! one whole line at a time, so between two steps of the worker its length
//! is a line boundary. Each checkpoint keeps that length as it stood at the
//! end of the checkpoint's epoch; a restart cuts the file back to it
//! ([`cut_back`]) before the sources resume, and the records read again
//! after the checkpoint are dead-lettered once more, once: every line
//! appears exactly once over restarts. (A Kafka dead-letter topic cannot be
//! cut back; see `crate::source::kafka`.)

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use statflow_dataflow::ingest::DeadLetters;
use statflow_dataflow::rollup::RecordError;

/// A dead-letter file for one source on one worker, opened on first use:
/// `DIR/SOURCE-wWORKER.jsonl`.
pub struct DeadLetterFile {
    path: PathBuf,
    worker: usize,
    out: Option<BufWriter<File>>,
    failed: bool,
}

impl DeadLetterFile {
    /// A dead-letter file under `dir` (boxed for the ingest operator); for
    /// a Kafka source with a dead-letter topic, the file and the topic.
    pub fn boxed(dir: &Path, source: &str, worker: usize) -> Box<dyn DeadLetters> {
        let file = Box::new(DeadLetterFile {
            path: Self::path_of(dir, source, worker),
            worker,
            out: None,
            failed: false,
        });
        crate::source::kafka::dead_letters_for(source, file)
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the file of `source` on worker `worker` is, under `dir`.
    pub fn path_of(dir: &Path, source: &str, worker: usize) -> PathBuf {
        dir.join(format!("{source}-w{worker}.jsonl"))
    }
}

/// Cuts the dead-letter file of `source` on worker `worker` under `dir`
/// back to `bytes`, its length at a checkpoint: what was written after the
/// checkpoint is written again when the records are read again. Returns
/// the bytes cut. A file shorter than `bytes` (rotated or deleted since) is
/// left as it is.
pub fn cut_back(dir: &Path, source: &str, worker: usize, bytes: u64) -> std::io::Result<u64> {
    let path = DeadLetterFile::path_of(dir, source, worker);
    let file = match OpenOptions::new().write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len <= bytes {
        return Ok(0);
    }
    file.set_len(bytes)?;
    file.sync_all()?;
    Ok(len - bytes)
}

/// The length of the dead-letter file of `source` on worker `worker` under
/// `dir` now: 0 before it is written.
pub fn length(dir: &Path, source: &str, worker: usize) -> u64 {
    std::fs::metadata(DeadLetterFile::path_of(dir, source, worker)).map_or(0, |m| m.len())
}

impl DeadLetters for DeadLetterFile {
    fn put(
        &mut self,
        source: &str,
        partition: &str,
        position: u64,
        reason: &RecordError,
        record: &[u8],
    ) {
        if self.failed {
            return;
        }
        if self.out.is_none() {
            let opened = self
                .path
                .parent()
                .map(std::fs::create_dir_all)
                .unwrap_or(Ok(()))
                .and_then(|_| {
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)
                });
            match opened {
                Ok(f) => self.out = Some(BufWriter::new(f)),
                Err(e) => {
                    // The count in the status stays right; only the copy is lost, and we say so once.
                    tracing::error!(path = %self.path.display(), error = %e, "cannot open the dead-letter file");
                    self.failed = true;
                    return;
                }
            }
        }
        let line = serde_json::json!({
            "source": source,
            "worker": self.worker,
            "partition": partition,
            "position": position,
            "reason": reason.to_string(),
            "record": String::from_utf8_lossy(record),
        });
        if let Some(out) = self.out.as_mut() {
            let written = serde_json::to_writer(&mut *out, &line).is_ok()
                && out.write_all(b"\n").is_ok()
                && out.flush().is_ok();
            if !written {
                tracing::error!(path = %self.path.display(), "cannot write to the dead-letter file");
                self.failed = true;
            }
        }
    }
}
