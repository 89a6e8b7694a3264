//! The generator as a live source: events paced in wall-clock time, stamped
//! with the current time.

use std::time::{Duration, Instant};

use statflow_dataflow::ingest::{wall_ms, ReadState, RecordAt, RecordReader, Resume};
use statflow_dsl::GeneratorSource;

use super::generator::Generator;

/// The generator is made of this many streams, whatever the number of
/// workers, so that a checkpoint's positions (one per stream) can be handed
/// to any number of workers on restart. Worker `w` of `n` makes streams
/// `w, w+n, …`; beyond 16 workers some workers have none.
pub const STREAMS: usize = 16;

/// The name of stream `i`, as checkpoints and the status endpoint show it.
pub fn stream_name(i: usize) -> String {
    format!("stream-{i:02}")
}

/// Feeds one worker's streams of the generator at their share of the rate.
pub struct PacedGenerator {
    streams: Vec<Generator>,
    names: Vec<String>,
    /// Events made per stream: each stream's position.
    made: Vec<u64>,
    /// Events made since `started`, over all streams.
    paced: u64,
    rate: f64,
    started: Instant,
    /// The stream the next event comes from.
    next: usize,
    buffer: Vec<u8>,
}

impl PacedGenerator {
    /// Worker `worker` of `workers`'s streams, each resumed after the
    /// number of events `resume` gives it (those events are made again and
    /// dropped, so the streams go on exactly where they were).
    pub fn new(config: &GeneratorSource, worker: usize, workers: usize, resume: &Resume) -> Self {
        let mut streams = Vec::new();
        let mut names = Vec::new();
        let mut made = Vec::new();
        let mut buffer = Vec::with_capacity(256);
        for s in (worker..STREAMS).step_by(workers.max(1)) {
            let mut generator = Generator::new(config, s, STREAMS);
            let name = stream_name(s);
            let skip = resume.get(&name).copied().unwrap_or(0);
            for _ in 0..skip {
                buffer.clear();
                if generator.next_into(0, &mut buffer).is_none() {
                    break;
                }
            }
            streams.push(generator);
            names.push(name);
            made.push(skip);
        }
        let rate = streams.iter().map(Generator::rate_for_this_worker).sum();
        PacedGenerator {
            streams,
            names,
            made,
            paced: 0,
            rate,
            started: Instant::now(),
            next: 0,
            buffer,
        }
    }
}

impl RecordReader for PacedGenerator {
    fn read(&mut self, max: usize, record: &mut dyn FnMut(&[u8], RecordAt)) -> ReadState {
        let rate = self.rate.max(f64::MIN_POSITIVE);
        let due = (self.started.elapsed().as_secs_f64() * rate) as u64;
        let owed = due.saturating_sub(self.paced).min(max as u64);
        let now = wall_ms();
        let mut made = 0;
        while made < owed {
            let Some(live) = (0..self.streams.len())
                .map(|k| (self.next + k) % self.streams.len())
                .find(|s| self.streams[*s].remaining() != Some(0))
            else {
                return ReadState::Finished;
            };
            self.buffer.clear();
            if self.streams[live]
                .next_into(now, &mut self.buffer)
                .is_none()
            {
                continue;
            }
            let at = RecordAt {
                partition: live,
                position: self.made[live],
            };
            record(&self.buffer, at);
            self.made[live] += 1;
            self.paced += 1;
            self.next = (live + 1) % self.streams.len();
            made += 1;
        }
        if self.streams.iter().all(|g| g.remaining() == Some(0)) {
            return ReadState::Finished;
        }
        if owed == max as u64 {
            return ReadState::Busy;
        }
        // Sleep until the next event is due, but wake often enough to keep
        // epochs of a slow generator lively.
        let next_due = (self.paced + 1) as f64 / rate;
        let wait = (next_due - self.started.elapsed().as_secs_f64()).clamp(0.001, 0.05);
        ReadState::Idle(Duration::from_secs_f64(wait))
    }

    fn partitions(&self) -> &[String] {
        &self.names
    }

    fn positions(&self) -> Vec<u64> {
        self.made.clone()
    }

    fn ends(&self) -> Vec<Option<u64>> {
        self.streams
            .iter()
            .zip(&self.made)
            .map(|(g, made)| g.remaining().map(|left| made + left))
            .collect()
    }
}
