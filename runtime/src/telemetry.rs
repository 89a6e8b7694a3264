//! statflow watching itself: a `telemetry()` source reads events the engine
//! makes about its own work, so a topology can keep a `statflow` metric of
//! ingest rates, lag, epoch delay and query latency, queryable like any other.
//!
//! Each worker loop pushes, every [`EVERY`], one `ingest` event per source
//! it reads (records, errors and late events in that interval, and the
//! partitions' lag) and one `epoch` event (how far the newest complete epoch
//! trails the open one); every query pushes a `query` event. Events wait in a
//! bounded queue per worker ([`QUEUE`]; the oldest are dropped past it) until
//! that worker's telemetry reader hands them to the dataflow. Telemetry is not
//! replayed after a restart: it describes the run that made it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use statflow_dataflow::ingest::{wall_ms, ReadState, RecordAt, RecordReader};

/// How often each worker reports.
pub const EVERY: Duration = Duration::from_secs(1);

/// Most events waiting per worker.
pub const QUEUE: usize = 10_000;

/// The queues of one process's workers.
#[derive(Debug)]
pub struct Hub {
    process: usize,
    first_worker: usize,
    queues: Vec<Mutex<VecDeque<Vec<u8>>>>,
}

impl Hub {
    /// Queues for `workers` workers of process `process`.
    pub fn new(process: usize, workers: usize) -> Self {
        Hub {
            process,
            first_worker: process * workers,
            queues: (0..workers).map(|_| Mutex::default()).collect(),
        }
    }

    fn push(&self, local: usize, event: serde_json::Value) {
        let Some(queue) = self.queues.get(local) else {
            return;
        };
        let Ok(bytes) = serde_json::to_vec(&event) else {
            return;
        };
        if let Ok(mut q) = queue.lock() {
            if q.len() >= QUEUE {
                q.pop_front();
            }
            q.push_back(bytes);
        }
    }

    /// Worker `local`'s report for one source over the last interval.
    pub fn ingest(
        &self,
        local: usize,
        source: &str,
        records: u64,
        errors: u64,
        late: u64,
        lag: u64,
    ) {
        self.push(
            local,
            json!({
                "ts": wall_ms(), "kind": "ingest",
                "process": self.process.to_string(),
                "worker": (self.first_worker + local).to_string(),
                "source": source, "records": records, "errors": errors, "late": late, "lag": lag,
            }),
        );
    }

    /// Worker `local`'s epoch delay: the open epoch minus the newest complete one, in milliseconds.
    pub fn epoch(&self, local: usize, delay_ms: u64) {
        self.push(
            local,
            json!({
                "ts": wall_ms(), "kind": "epoch",
                "process": self.process.to_string(),
                "worker": (self.first_worker + local).to_string(),
                "epoch_delay_ms": delay_ms,
            }),
        );
    }

    /// A query on `metric` answered (or failed) in `millis`; counted by worker `local`.
    pub fn query(&self, local: usize, metric: &str, millis: f64) {
        self.push(
            local,
            json!({
                "ts": wall_ms(), "kind": "query",
                "process": self.process.to_string(),
                "worker": (self.first_worker + local).to_string(),
                "metric": metric, "query_ms": millis,
            }),
        );
    }
}

/// One worker's reader of the telemetry queue.
pub struct TelemetryReader {
    hub: std::sync::Arc<Hub>,
    local: usize,
    names: Vec<String>,
    position: u64,
}

impl TelemetryReader {
    /// Reads worker `local`'s queue of `hub`.
    pub fn new(hub: std::sync::Arc<Hub>, local: usize) -> Self {
        let names = vec![format!("worker-{:02}", hub.first_worker + local)];
        TelemetryReader {
            hub,
            local,
            names,
            position: 0,
        }
    }
}

impl RecordReader for TelemetryReader {
    fn read(&mut self, max: usize, record: &mut dyn FnMut(&[u8], RecordAt)) -> ReadState {
        let taken: Vec<Vec<u8>> = match self.hub.queues.get(self.local).map(Mutex::lock) {
            Some(Ok(mut q)) => {
                let n = q.len().min(max);
                q.drain(..n).collect()
            }
            _ => Vec::new(),
        };
        let full = taken.len() == max;
        for event in &taken {
            record(
                event,
                RecordAt {
                    partition: 0,
                    position: self.position,
                },
            );
            self.position += 1;
        }
        if full {
            ReadState::Busy
        } else {
            ReadState::Idle(Duration::from_millis(100))
        }
    }

    fn partitions(&self) -> &[String] {
        &self.names
    }

    fn positions(&self) -> Vec<u64> {
        vec![self.position]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_wait_in_a_bounded_queue_until_read() {
        let hub = std::sync::Arc::new(Hub::new(1, 2));
        for i in 0..(QUEUE + 5) {
            hub.query(1, "m", i as f64);
        }
        hub.epoch(0, 40);
        let mut reader = TelemetryReader::new(std::sync::Arc::clone(&hub), 1);
        assert_eq!(reader.partitions(), ["worker-03"]);
        let mut seen = Vec::new();
        while reader.read(1_000, &mut |r, _| seen.push(r.to_vec())) == ReadState::Busy {}
        assert_eq!(seen.len(), QUEUE, "the oldest were dropped");
        let first: serde_json::Value = serde_json::from_slice(&seen[0]).unwrap();
        assert_eq!(first["query_ms"], 5.0);
        assert_eq!(first["worker"], "3");
        assert_eq!(reader.positions(), vec![QUEUE as u64]);
    }
}
