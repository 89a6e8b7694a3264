//! The file source: JSON lines, cut into a fixed number of slices by byte
//! range, the slices dealt out to workers.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use statflow_dataflow::ingest::{ReadState, RecordAt, RecordReader, Resume};

/// Every file is cut into this many slices, whatever the number of workers,
/// so that a checkpoint's positions (one per slice) can be handed to any
/// number of workers on restart. Worker `w` of `n` reads slices `w, w+n, …`.
pub const SLICES: u64 = 64;

/// The name of slice `i`, as checkpoints and the status endpoint show it.
pub fn slice_name(i: u64) -> String {
    format!("slice-{i:02}")
}

/// The slice holding the line that starts at byte `offset` of a file of `len` bytes.
pub fn slice_of(offset: u64, len: u64) -> u64 {
    (0..SLICES)
        .rev()
        .find(|i| offset >= slice_start(*i, len))
        .unwrap_or(0)
}

fn slice_start(i: u64, len: u64) -> u64 {
    (u128::from(len) * u128::from(i) / u128::from(SLICES)) as u64
}

struct Slice {
    /// Reading starts at the first line starting at or after this: the
    /// slice's first byte, or a checkpointed position.
    from: u64,
    /// Lines starting at or after this belong to the next slice.
    end: u64,
    /// Offset of the next line to read; `None` until the slice's first line is found.
    position: Option<u64>,
}

/// Reads the lines of one file that start in this worker's slices. A line
/// belongs to the slice whose byte range holds its first byte, so every line
/// is read by exactly one worker.
pub struct FileReader {
    reader: BufReader<File>,
    names: Vec<String>,
    slices: Vec<Slice>,
    /// The slice being read.
    current: usize,
    /// Where `reader` stands, when known.
    at: Option<u64>,
    line: Vec<u8>,
}

impl FileReader {
    /// Opens `path` for worker `worker` of `workers`, resuming each slice at
    /// its position in `resume` (a line start), if it has one.
    pub fn open(
        path: &Path,
        worker: usize,
        workers: usize,
        resume: &Resume,
    ) -> std::io::Result<FileReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let workers = workers.max(1) as u64;
        let mut names = Vec::new();
        let mut slices = Vec::new();
        for i in (worker as u64..SLICES).step_by(workers as usize) {
            let name = slice_name(i);
            let (start, end) = (slice_start(i, len), slice_start(i + 1, len));
            let from = resume.get(&name).map_or(start, |p| (*p).clamp(start, end));
            names.push(name);
            slices.push(Slice {
                from,
                end,
                position: (from == 0).then_some(0),
            });
        }
        Ok(FileReader {
            reader: BufReader::with_capacity(1 << 20, file),
            names,
            slices,
            current: 0,
            at: None,
            line: Vec::new(),
        })
    }

    /// Puts the reader at the current slice's next line; false when the slice is done.
    fn seek_slice(&mut self) -> std::io::Result<bool> {
        let slice = &mut self.slices[self.current];
        let position = match slice.position {
            Some(p) => p,
            None => {
                // Skip the tail of a line that started before `from`; a line
                // starting right at `from` follows a newline and is kept.
                self.reader.seek(SeekFrom::Start(slice.from - 1))?;
                let mut skipped = Vec::new();
                let n = self.reader.read_until(b'\n', &mut skipped)?;
                let p = slice.from - 1 + n as u64;
                slice.position = Some(p);
                self.at = Some(p);
                p
            }
        };
        if position >= slice.end {
            return Ok(false);
        }
        if self.at != Some(position) {
            self.reader.seek(SeekFrom::Start(position))?;
            self.at = Some(position);
        }
        Ok(true)
    }
}

/// Reads one line, with its newline if it has one, and gives it to `f`;
/// returns its length, 0 at the end of the file. A line is given straight
/// from the reader's buffer (found with the `memchr` crate's vectorized
/// search), and copied into `spill` only when it runs past the buffer's end.
fn with_line(
    reader: &mut impl BufRead,
    spill: &mut Vec<u8>,
    f: impl FnOnce(&[u8]),
) -> std::io::Result<usize> {
    spill.clear();
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !spill.is_empty() {
                f(spill);
            }
            return Ok(spill.len());
        }
        match memchr::memchr(b'\n', buf) {
            Some(i) if spill.is_empty() => {
                f(&buf[..=i]);
                reader.consume(i + 1);
                return Ok(i + 1);
            }
            Some(i) => {
                spill.extend_from_slice(&buf[..=i]);
                reader.consume(i + 1);
                f(spill);
                return Ok(spill.len());
            }
            None => {
                let n = buf.len();
                spill.extend_from_slice(buf);
                reader.consume(n);
            }
        }
    }
}

impl RecordReader for FileReader {
    fn read(&mut self, max: usize, record: &mut dyn FnMut(&[u8], RecordAt)) -> ReadState {
        let mut left = max;
        while self.current < self.slices.len() {
            match self.seek_slice() {
                Ok(true) => {}
                Ok(false) => {
                    self.current += 1;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the file source; stopping it");
                    self.current = self.slices.len();
                    break;
                }
            }
            if left == 0 {
                return ReadState::Busy;
            }
            left -= 1;
            let at = self.at.unwrap_or(0);
            let (slices, current, position) = (&mut self.slices, self.current, &mut self.at);
            let read = with_line(&mut self.reader, &mut self.line, |raw| {
                let next = at + raw.len() as u64;
                *position = Some(next);
                slices[current].position = Some(next);
                let mut line = raw;
                while let [rest @ .., b'\n' | b'\r'] = line {
                    line = rest;
                }
                if !line.iter().all(u8::is_ascii_whitespace) {
                    record(
                        line,
                        RecordAt {
                            partition: current,
                            position: at,
                        },
                    );
                }
            });
            match read {
                Ok(0) => {
                    // The file is shorter than when it was opened.
                    self.slices[self.current].position = Some(self.slices[self.current].end);
                    self.current += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the file source; stopping it");
                    self.current = self.slices.len();
                }
            }
        }
        ReadState::Finished
    }

    fn partitions(&self) -> &[String] {
        &self.names
    }

    fn positions(&self) -> Vec<u64> {
        self.slices
            .iter()
            .map(|s| s.position.unwrap_or(s.from))
            .collect()
    }

    fn ends(&self) -> Vec<Option<u64>> {
        self.slices.iter().map(|s| Some(s.end)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_are_read_whole_whatever_the_buffer_holds() {
        let text = b"{\"a\":1}\n\nlonger than the buffer\r\nx\nno newline at the end";
        let expected: Vec<&[u8]> = text.split_inclusive(|b| *b == b'\n').collect();
        for capacity in [1, 2, 3, 5, 8, 64] {
            let mut reader = BufReader::with_capacity(capacity, &text[..]);
            let (mut spill, mut lines) = (Vec::new(), Vec::new());
            loop {
                let n = with_line(&mut reader, &mut spill, |l| lines.push(l.to_vec())).unwrap();
                if n == 0 {
                    break;
                }
                assert_eq!(Some(n), lines.last().map(Vec::len), "capacity {capacity}");
            }
            assert_eq!(lines, expected, "capacity {capacity}");
        }
    }

    fn read_all(path: &Path, worker: usize, workers: usize, resume: &Resume) -> Vec<(String, u64)> {
        let mut reader = FileReader::open(path, worker, workers, resume).unwrap();
        let mut lines = Vec::new();
        while reader.read(3, &mut |l, at| {
            lines.push((String::from_utf8_lossy(l).into_owned(), at.position))
        }) != ReadState::Finished
        {}
        lines
    }

    fn write_lines(path: &Path, n: usize) -> Vec<String> {
        let mut f = File::create(path).unwrap();
        let mut expected = Vec::new();
        for i in 0..n {
            let line = format!("{{\"i\": {i}, \"pad\": \"{}\"}}", "x".repeat(i % 13));
            writeln!(f, "{line}\r").unwrap();
            expected.push(line);
        }
        writeln!(f).unwrap();
        expected
    }

    #[test]
    fn every_line_is_read_by_exactly_one_worker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let expected = write_lines(&path, 297);
        for workers in [1, 2, 3, 4, 7, 100] {
            let mut seen: Vec<String> = (0..workers)
                .flat_map(|w| read_all(&path, w, workers, &Resume::new()))
                .map(|(l, _)| l)
                .collect();
            seen.sort();
            let mut want = expected.clone();
            want.sort();
            assert_eq!(seen, want, "{workers} workers");
        }
        // Positions are the byte offsets of the lines.
        let lines = read_all(&path, 0, 1, &Resume::new());
        assert_eq!(lines[0].1, 0);
        assert_eq!(lines[1].1, lines[0].0.len() as u64 + 2);
    }

    #[test]
    fn positions_resume_on_any_number_of_workers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let expected = write_lines(&path, 500);
        // Three workers read a little, and their positions are kept.
        let mut first: Vec<String> = Vec::new();
        let mut resume = Resume::new();
        for w in 0..3 {
            let mut reader = FileReader::open(&path, w, 3, &Resume::new()).unwrap();
            for _ in 0..(w + 1) * 7 {
                reader.read(5, &mut |l, _| {
                    first.push(String::from_utf8_lossy(l).into_owned())
                });
            }
            let names = reader.partitions().to_vec();
            resume.extend(names.into_iter().zip(reader.positions()));
        }
        assert!(!first.is_empty() && first.len() < expected.len());
        // Five workers go on from there: nothing is read twice or missed.
        let mut seen = first;
        for w in 0..5 {
            seen.extend(read_all(&path, w, 5, &resume).into_iter().map(|(l, _)| l));
        }
        seen.sort();
        let mut want = expected;
        want.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn slice_of_names_the_slice_a_line_belongs_to() {
        assert_eq!(slice_of(0, 6400), 0);
        assert_eq!(slice_of(99, 6400), 0);
        assert_eq!(slice_of(100, 6400), 1);
        assert_eq!(slice_of(6399, 6400), 63);
    }
}
