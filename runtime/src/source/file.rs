//! The file source: JSON lines, split between workers by byte range.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use statflow_dataflow::ingest::{ReadState, RecordReader};

/// Reads the lines of one file that start in this worker's byte range
/// `[len·w/n, len·(w+1)/n)`. A line belongs to the worker whose range holds
/// its first byte, so every line is read by exactly one worker.
pub struct FileReader {
    reader: BufReader<File>,
    /// Offset of the next line to read.
    position: u64,
    /// Lines starting at or after this belong to the next worker.
    end: u64,
    line: Vec<u8>,
    done: bool,
}

impl FileReader {
    /// Opens `path` for worker `worker` of `workers`.
    pub fn open(path: &Path, worker: usize, workers: usize) -> std::io::Result<FileReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let workers = workers.max(1) as u64;
        let start = len * worker as u64 / workers;
        let end = len * (worker as u64 + 1) / workers;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut position = 0;
        if start > 0 {
            // Skip the tail of the line that started in the previous range.
            reader.seek(SeekFrom::Start(start - 1))?;
            let mut skipped = Vec::new();
            let n = reader.read_until(b'\n', &mut skipped)?;
            position = start - 1 + n as u64;
        }
        Ok(FileReader {
            reader,
            position,
            end,
            line: Vec::new(),
            done: false,
        })
    }
}

impl RecordReader for FileReader {
    fn read(&mut self, max: usize, record: &mut dyn FnMut(&[u8], u64)) -> ReadState {
        if self.done {
            return ReadState::Finished;
        }
        for _ in 0..max {
            if self.position >= self.end {
                self.done = true;
                return ReadState::Finished;
            }
            self.line.clear();
            match self.reader.read_until(b'\n', &mut self.line) {
                Ok(0) => {
                    self.done = true;
                    return ReadState::Finished;
                }
                Ok(n) => {
                    let at = self.position;
                    self.position += n as u64;
                    let mut line = self.line.as_slice();
                    while let [rest @ .., b'\n' | b'\r'] = line {
                        line = rest;
                    }
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        record(line, at);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the file source; stopping it");
                    self.done = true;
                    return ReadState::Finished;
                }
            }
        }
        ReadState::Busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(path: &Path, worker: usize, workers: usize) -> Vec<(String, u64)> {
        let mut reader = FileReader::open(path, worker, workers).unwrap();
        let mut lines = Vec::new();
        while reader.read(3, &mut |l, at| {
            lines.push((String::from_utf8_lossy(l).into_owned(), at))
        }) != ReadState::Finished
        {}
        lines
    }

    #[test]
    fn every_line_is_read_by_exactly_one_worker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut f = File::create(&path).unwrap();
        let mut expected = Vec::new();
        for i in 0..97 {
            let line = format!("{{\"i\": {i}, \"pad\": \"{}\"}}", "x".repeat(i % 13));
            writeln!(f, "{line}\r").unwrap();
            expected.push(line);
        }
        writeln!(f).unwrap();
        drop(f);
        for workers in [1, 2, 3, 4, 7] {
            let mut seen: Vec<String> = (0..workers)
                .flat_map(|w| read_all(&path, w, workers))
                .map(|(l, _)| l)
                .collect();
            seen.sort();
            let mut want = expected.clone();
            want.sort();
            assert_eq!(seen, want, "{workers} workers");
        }
        // Positions are the byte offsets of the lines.
        let lines = read_all(&path, 0, 1);
        assert_eq!(lines[0].1, 0);
        assert_eq!(lines[1].1, lines[0].0.len() as u64 + 2);
    }
}
