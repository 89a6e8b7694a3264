//! The generator as a live source: events paced in wall-clock time, stamped
//! with the current time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use statflow_dataflow::ingest::{ReadState, RecordReader};
use statflow_dsl::GeneratorSource;

use super::generator::Generator;

/// Feeds one worker's share of the generator at its share of the rate.
pub struct PacedGenerator {
    generator: Generator,
    started: Instant,
    made: u64,
    buffer: Vec<u8>,
    /// Sequence number of the next event, its position.
    sequence: u64,
}

impl PacedGenerator {
    /// Worker `worker` of `workers`'s share of the generator.
    pub fn new(config: &GeneratorSource, worker: usize, workers: usize) -> Self {
        PacedGenerator {
            generator: Generator::new(config, worker, workers),
            started: Instant::now(),
            made: 0,
            buffer: Vec::with_capacity(256),
            sequence: 0,
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl RecordReader for PacedGenerator {
    fn read(&mut self, max: usize, record: &mut dyn FnMut(&[u8], u64)) -> ReadState {
        let rate = self.generator.rate_for_this_worker().max(f64::MIN_POSITIVE);
        let due = (self.started.elapsed().as_secs_f64() * rate) as u64;
        let owed = due.saturating_sub(self.made).min(max as u64);
        let now = now_ms();
        for _ in 0..owed {
            self.buffer.clear();
            if self.generator.next_into(now, &mut self.buffer).is_none() {
                return ReadState::Finished;
            }
            record(&self.buffer, self.sequence);
            self.sequence += 1;
            self.made += 1;
        }
        if self.generator.remaining() == Some(0) {
            return ReadState::Finished;
        }
        if owed == max as u64 {
            return ReadState::Busy;
        }
        // Sleep until the next event is due, but wake often enough to keep
        // epochs of a slow generator lively.
        let next_due = (self.made + 1) as f64 / rate;
        let wait = (next_due - self.started.elapsed().as_secs_f64()).clamp(0.001, 0.05);
        ReadState::Idle(Duration::from_secs_f64(wait))
    }
}
