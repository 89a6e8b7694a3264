//! The file source: JSON lines, cut into a fixed number of slices by byte
//! range, the slices shared out among workers.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use statflow_dataflow::ingest::{ReadState, RecordAt, RecordReader, Resume};

/// Every file is cut into this many slices, whatever the number of workers,
/// so that a checkpoint's positions (one per slice) can be handed to any
/// number of workers on restart. The workers of one process share the
/// slices that are theirs through a [`SlicePool`]; a reader opened alone
/// (a backfill's) reads, as worker `w` of `n`, slices `w, w+n, …`.
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

/// The slices of one file that the workers of one process read, handed out
/// in file order, one at a time: a worker takes the next when it has read
/// its last. A worker that runs faster reads more slices, so the workers
/// finish together; dealt out by worker index, two workers on the e2e
/// benchmark finished up to a third of the run apart.
#[derive(Debug)]
pub struct SlicePool {
    slices: Vec<u64>,
    next: AtomicUsize,
    /// The file's length as the first reader found it: every reader cuts
    /// the slices at the same bytes, even if the file grows meanwhile.
    len: OnceLock<u64>,
}

impl SlicePool {
    /// The slices workers `local` of `workers` (indices in the cluster)
    /// would read by worker index: those with `i % workers` in `local`.
    pub fn new(local: Range<usize>, workers: usize) -> SlicePool {
        let workers = workers.max(1) as u64;
        SlicePool {
            slices: (0..SLICES)
                .filter(|i| local.contains(&((i % workers) as usize)))
                .collect(),
            next: AtomicUsize::new(0),
            len: OnceLock::new(),
        }
    }

    /// The next slice nobody has taken, if any is left.
    fn take(&self) -> Option<u64> {
        let next = self.next.fetch_add(1, Ordering::Relaxed);
        self.slices.get(next).copied()
    }

    /// True when slice `name` is one of the pool's.
    fn holds(&self, name: &str) -> bool {
        self.slices.iter().any(|i| slice_name(*i) == name)
    }
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

impl Slice {
    /// Slice `i` of a file of `len` bytes, resumed at its position in `resume`, if any.
    fn new(i: u64, len: u64, resume: &Resume) -> (String, Slice) {
        let name = slice_name(i);
        let (start, end) = (slice_start(i, len), slice_start(i + 1, len));
        let from = resume.get(&name).map_or(start, |p| (*p).clamp(start, end));
        let slice = Slice {
            from,
            end,
            position: (from == 0).then_some(0),
        };
        (name, slice)
    }
}

/// Reads the lines of one file that start in this worker's slices. A line
/// belongs to the slice whose byte range holds its first byte, so every line
/// is read by exactly one worker.
pub struct FileReader {
    reader: BufReader<File>,
    /// The slices this reader has taken, and their names: all of its
    /// slices from the start when they are dealt out by worker index.
    names: Vec<String>,
    slices: Vec<Slice>,
    /// Where the next slice comes from, when the workers share a pool, with
    /// what the slices it gives need to know.
    pool: Option<Pooled>,
    /// The slice being read.
    current: usize,
    /// Where `reader` stands, when known.
    at: Option<u64>,
    line: Vec<u8>,
}

struct Pooled {
    pool: Arc<SlicePool>,
    len: u64,
    resume: Resume,
    /// Set once the pool had no slice left for this reader, or the
    /// reader stopped on an error.
    drained: bool,
}

impl FileReader {
    /// Opens `path` for worker `worker` of `workers`, reading slices
    /// `worker, worker + workers, …`, each resumed at its position in
    /// `resume` (a line start), if it has one.
    pub fn open(
        path: &Path,
        worker: usize,
        workers: usize,
        resume: &Resume,
    ) -> std::io::Result<FileReader> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let workers = workers.max(1);
        let (names, slices) = (worker as u64..SLICES)
            .step_by(workers)
            .map(|i| Slice::new(i, len, resume))
            .unzip();
        Ok(FileReader::reading(file, names, slices, None))
    }

    /// Opens `path` to read the slices it takes from `pool`, one after the
    /// other, each resumed at its position in `resume`, if it has one; the
    /// first is taken now.
    pub fn pooled(
        path: &Path,
        pool: Arc<SlicePool>,
        resume: &Resume,
    ) -> std::io::Result<FileReader> {
        let file = File::open(path)?;
        let found = file.metadata()?.len();
        let len = *pool.len.get_or_init(|| found);
        let pooled = Pooled {
            pool,
            len,
            resume: resume.clone(),
            drained: false,
        };
        let mut reader = FileReader::reading(file, Vec::new(), Vec::new(), Some(pooled));
        reader.take_slice();
        Ok(reader)
    }

    fn reading(
        file: File,
        names: Vec<String>,
        slices: Vec<Slice>,
        pool: Option<Pooled>,
    ) -> FileReader {
        FileReader {
            reader: BufReader::with_capacity(1 << 20, file),
            names,
            slices,
            pool,
            current: 0,
            at: None,
            line: Vec::new(),
        }
    }

    /// Moves past the current slice. A pooled reader that has read its
    /// last slice takes the next and says so: its lines are given from the
    /// next read on, so that the slice is named before any of its records
    /// (the intake holds a record back, copied, until its partition is named).
    fn next_slice(&mut self) -> bool {
        self.current += 1;
        self.current == self.slices.len() && self.take_slice()
    }

    /// Reads nothing more, and takes no more slices.
    fn stop(&mut self) {
        self.current = self.slices.len();
        if let Some(pooled) = &mut self.pool {
            pooled.drained = true;
        }
    }

    /// Takes the pool's next slice, if there is a pool and it has one left.
    fn take_slice(&mut self) -> bool {
        let Some(pooled) = self.pool.as_mut().filter(|p| !p.drained) else {
            return false;
        };
        match pooled.pool.take() {
            Some(i) => {
                let (name, slice) = Slice::new(i, pooled.len, &pooled.resume);
                self.names.push(name);
                self.slices.push(slice);
                true
            }
            None => {
                pooled.drained = true;
                false
            }
        }
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
                    if self.next_slice() {
                        return ReadState::Busy;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the file source; stopping it");
                    self.stop();
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
                    if self.next_slice() {
                        return ReadState::Busy;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the file source; stopping it");
                    self.stop();
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

    /// A pooled reader may yet take any of its pool's slices.
    fn owns(&self, partition: &str) -> bool {
        match &self.pool {
            Some(p) => p.pool.holds(partition),
            None => self.names.iter().any(|n| n == partition),
        }
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

    /// Reads with `readers` in turns, reader `r` reading `pace(r, turn)`
    /// records a turn, until every one has finished or `turns` have passed.
    fn read_in_turns(
        readers: &mut [FileReader],
        turns: usize,
        pace: impl Fn(usize, usize) -> usize,
    ) -> Vec<String> {
        let mut lines = Vec::new();
        let mut done = vec![false; readers.len()];
        for turn in 0..turns {
            if done.iter().all(|d| *d) {
                break;
            }
            for (r, reader) in readers.iter_mut().enumerate() {
                if !done[r] {
                    // A slice is named before any of its lines is given.
                    let named = reader.partitions().len();
                    let state = reader.read(pace(r, turn), &mut |l, at| {
                        assert!(at.partition < named, "a slice taken during a read");
                        lines.push(String::from_utf8_lossy(l).into_owned())
                    });
                    done[r] = state == ReadState::Finished;
                }
            }
        }
        lines
    }

    /// A file of `n` lines in a new directory, and its lines sorted.
    fn sorted_lines(n: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut lines = write_lines(&path, n);
        lines.sort();
        (dir, path, lines)
    }

    fn pooled_readers(
        path: &Path,
        pool: &Arc<SlicePool>,
        n: usize,
        resume: &Resume,
    ) -> Vec<FileReader> {
        (0..n)
            .map(|_| FileReader::pooled(path, Arc::clone(pool), resume).unwrap())
            .collect()
    }

    #[test]
    fn workers_taking_slices_from_a_pool_read_every_line_once() {
        let (_dir, path, want) = sorted_lines(997);
        // One reader racing ahead, readers in step, one that reads a record
        // a turn: alone, or as processes of two and of three threads.
        let paces: [fn(usize, usize) -> usize; 3] = [
            |r, _| if r == 0 { 1_000 } else { 1 },
            |_, _| 7,
            |r, turn| 1 + (r * 31 + turn * 17) % 50,
        ];
        for pace in paces {
            for (processes, threads) in [(1, 1), (1, 2), (2, 2), (1, 3), (3, 3)] {
                let workers = processes * threads;
                let mut seen = Vec::new();
                for process in 0..processes {
                    let local = process * threads..(process + 1) * threads;
                    let pool = Arc::new(SlicePool::new(local.clone(), workers));
                    let mut readers = pooled_readers(&path, &pool, threads, &Resume::new());
                    let lines = read_in_turns(&mut readers, usize::MAX, pace);
                    // Every slice of the process's share was taken by one
                    // reader and read to its end.
                    let mut taken: Vec<String> = readers
                        .iter()
                        .flat_map(|r| r.partitions().to_vec())
                        .collect();
                    taken.sort();
                    let share: Vec<String> = (0..SLICES)
                        .filter(|i| local.contains(&((*i as usize) % workers)))
                        .map(slice_name)
                        .collect();
                    assert_eq!(taken, share, "{processes} × {threads} workers");
                    for reader in &readers {
                        let ends = reader.ends().into_iter().map(Option::unwrap);
                        assert!(reader
                            .positions()
                            .into_iter()
                            .zip(ends)
                            .all(|(p, e)| p >= e));
                    }
                    if threads > 1 && pace(0, 0) > pace(1, 0) * 100 {
                        assert!(
                            readers[0].partitions().len() > readers[1].partitions().len() * 4,
                            "the faster reader takes more slices"
                        );
                    }
                    seen.extend(lines);
                }
                seen.sort();
                assert_eq!(seen, want, "{processes} × {threads} workers");
            }
        }
    }

    #[test]
    fn pooled_positions_resume_on_any_number_of_workers() {
        let (_dir, path, want) = sorted_lines(800);
        // Three workers of one process read a while from their pool, one of
        // them faster than the others, and their positions are kept.
        let pool = Arc::new(SlicePool::new(0..3, 3));
        let mut readers = pooled_readers(&path, &pool, 3, &Resume::new());
        let mut seen = read_in_turns(&mut readers, 30, |r, _| 2 + r * 5);
        assert!(!seen.is_empty() && seen.len() < want.len());
        let mut resume = Resume::new();
        for reader in &readers {
            resume.extend(reader.partitions().iter().cloned().zip(reader.positions()));
        }
        // Slices no reader took are not in the positions, and start from the top.
        assert!(resume.len() < SLICES as usize);
        // Two processes of two workers go on from there: nothing is read
        // twice or missed.
        for process in 0..2 {
            let pool = Arc::new(SlicePool::new(process * 2..process * 2 + 2, 4));
            let mut readers = pooled_readers(&path, &pool, 2, &resume);
            seen.extend(read_in_turns(&mut readers, usize::MAX, |r, _| 3 + r));
        }
        seen.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn pooled_readers_cut_the_slices_where_the_first_found_them() {
        let (_dir, path, want) = sorted_lines(500);
        let pool = Arc::new(SlicePool::new(0..2, 2));
        let first = FileReader::pooled(&path, Arc::clone(&pool), &Resume::new()).unwrap();
        // The file grows before the second worker opens it: the lines
        // added are not read (they were not there when reading began),
        // and none of the others is read twice or missed.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        for i in 0..300 {
            writeln!(f, "{{\"late\": {i}}}").unwrap();
        }
        let second = FileReader::pooled(&path, Arc::clone(&pool), &Resume::new()).unwrap();
        let mut seen = read_in_turns(&mut [first, second], usize::MAX, |r, _| 3 + r);
        seen.sort();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_pooled_reader_owns_every_slice_it_may_take() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        write_lines(&path, 10);
        let pool = Arc::new(SlicePool::new(2..4, 4));
        let reader = FileReader::pooled(&path, pool, &Resume::new()).unwrap();
        assert_eq!(
            reader.partitions(),
            ["slice-02"],
            "the first slice is taken at once"
        );
        for i in 0..SLICES {
            let theirs = i % 4 >= 2;
            assert_eq!(reader.owns(&slice_name(i)), theirs, "slice {i}");
        }
        assert!(!reader.owns("stream-02"));
    }

    #[test]
    fn slice_of_names_the_slice_a_line_belongs_to() {
        assert_eq!(slice_of(0, 6400), 0);
        assert_eq!(slice_of(99, 6400), 0);
        assert_eq!(slice_of(100, 6400), 1);
        assert_eq!(slice_of(6399, 6400), 63);
    }
}
