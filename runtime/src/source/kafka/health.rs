//! What the Kafka client tells statflow about itself: high watermarks and
//! the brokers' connection states from its statistics, and its errors.
//! librdkafka calls the context from whichever thread polls it; the reader
//! reads the result on its worker thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use serde::Deserialize;

/// Whether the client can reach a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Not known yet (no statistics so far).
    Unknown,
    /// At least one broker is up.
    Up,
    /// No broker is up: librdkafka is reconnecting, with backoff.
    Down,
}

/// Shared between the client's context and the reader.
#[derive(Debug, Default)]
pub struct Health {
    /// High watermarks by topic and partition, from the statistics.
    highs: Mutex<HashMap<String, HashMap<i32, i64>>>,
    /// 0 unknown, 1 up, 2 down.
    connection: AtomicU8,
    /// The newest client error not yet reported by the reader.
    error: Mutex<Option<String>>,
    /// The newest reason a broker connection failed, for the status while
    /// the brokers are unreachable (librdkafka's own text: which broker,
    /// and why).
    connection_error: Mutex<Option<String>>,
    /// Connection attempts to every broker so far, failed or not, from the
    /// statistics: the reader counts retries from it.
    connects: AtomicU64,
}

impl Health {
    /// The high watermark of a partition, when the statistics have one.
    pub fn high(&self, topic: &str, partition: i32) -> Option<i64> {
        let highs = self.highs.lock().ok()?;
        highs.get(topic)?.get(&partition).copied()
    }

    /// Records a high watermark learned elsewhere (when a partition is found).
    pub fn set_high(&self, topic: &str, partition: i32, high: i64) {
        if let Ok(mut highs) = self.highs.lock() {
            let h = highs
                .entry(topic.to_string())
                .or_default()
                .entry(partition)
                .or_insert(high);
            *h = (*h).max(high);
        }
    }

    /// Whether a broker is reachable.
    pub fn connection(&self) -> Connection {
        match self.connection.load(Ordering::Relaxed) {
            1 => Connection::Up,
            2 => Connection::Down,
            _ => Connection::Unknown,
        }
    }

    /// Marks a broker reachable (a message arrived).
    pub fn mark_up(&self) {
        self.connection.store(1, Ordering::Relaxed);
    }

    /// Connection attempts so far, as of the newest statistics.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// The newest reason a broker connection failed, if any since
    /// [`clear_connection_error`](Self::clear_connection_error).
    pub fn connection_error(&self) -> Option<String> {
        self.connection_error.lock().ok()?.clone()
    }

    /// Forgets the last connection error (the brokers are back).
    pub fn clear_connection_error(&self) {
        if let Ok(mut slot) = self.connection_error.lock() {
            *slot = None;
        }
    }

    /// Notes why a broker connection failed: `reason` is librdkafka's
    /// sentence for a transport failure or for every broker being down.
    /// A transport failure names the broker and the cause, so it is not
    /// replaced by the vaguer "all brokers are down" that follows it.
    pub fn note_connection_error(&self, error: &KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure};
        let Ok(mut slot) = self.connection_error.lock() else {
            return;
        };
        match error.rdkafka_error_code() {
            Some(BrokerTransportFailure) => *slot = Some(reason.to_string()),
            Some(AllBrokersDown) if slot.is_none() => *slot = Some(reason.to_string()),
            _ => {}
        }
    }

    /// Takes the newest client error, if there was one since the last call.
    pub fn take_error(&self) -> Option<String> {
        self.error.lock().ok()?.take()
    }

    /// Notes a client error. Losing the brokers is a state, not news: it
    /// marks the connection down (the reader says so once) instead of
    /// being reported each time librdkafka retries.
    pub fn note(&self, error: &KafkaError) {
        use rdkafka::types::RDKafkaErrorCode::{AllBrokersDown, BrokerTransportFailure};
        match error.rdkafka_error_code() {
            Some(AllBrokersDown) => self.connection.store(2, Ordering::Relaxed),
            Some(BrokerTransportFailure) => {}
            _ => self.note_error(error.to_string()),
        }
    }

    /// Notes a client error by its text.
    pub fn note_error(&self, error: String) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = Some(error);
        }
    }

    fn absorb(&self, stats: Stats) {
        // Brokers learned from metadata have ids; the bootstrap entries
        // (id -1) are closed once those are known, so they count only
        // while nothing else is known.
        let known: Vec<&BrokerStats> = stats.brokers.values().filter(|b| b.nodeid >= 0).collect();
        let brokers: Vec<&BrokerStats> = if known.is_empty() {
            stats.brokers.values().collect()
        } else {
            known
        };
        if !brokers.is_empty() {
            let up = brokers.iter().any(|b| b.state == "UP");
            self.connection
                .store(if up { 1 } else { 2 }, Ordering::Relaxed);
        }
        // Every broker's attempts, the bootstrap entries' included: while
        // the brokers are away, whichever entry librdkafka retries counts.
        let connects = stats.brokers.values().map(|b| b.connects).sum();
        self.connects.store(connects, Ordering::Relaxed);
        if let Ok(mut highs) = self.highs.lock() {
            for (topic, t) in stats.topics {
                let entry = highs.entry(topic).or_default();
                for p in t.partitions.into_values() {
                    // Partition -1 is librdkafka's "unassigned"; -1001 means "not known".
                    if p.partition >= 0 && p.hi_offset >= 0 {
                        let h = entry.entry(p.partition).or_insert(p.hi_offset);
                        *h = (*h).max(p.hi_offset);
                    }
                }
            }
        }
    }
}

/// The few parts of librdkafka's statistics statflow reads.
#[derive(Debug, Deserialize)]
struct Stats {
    #[serde(default)]
    brokers: HashMap<String, BrokerStats>,
    #[serde(default)]
    topics: HashMap<String, TopicStats>,
}

#[derive(Debug, Deserialize)]
struct BrokerStats {
    #[serde(default)]
    state: String,
    #[serde(default = "minus_one")]
    nodeid: i32,
    /// Connection attempts, failed or not.
    #[serde(default)]
    connects: u64,
}

#[derive(Debug, Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: HashMap<String, PartitionStats>,
}

#[derive(Debug, Deserialize)]
struct PartitionStats {
    #[serde(default = "minus_one")]
    partition: i32,
    #[serde(default = "minus_one_i64")]
    hi_offset: i64,
}

fn minus_one() -> i32 {
    -1
}

fn minus_one_i64() -> i64 {
    -1
}

/// The client context of a Kafka source's consumer.
pub struct SourceContext {
    /// Shared with the reader.
    pub health: std::sync::Arc<Health>,
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // librdkafka logs every failed reconnect attempt; the reader says
        // once when the brokers go away and once when they are back, so
        // the client's own lines are kept for debugging.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            _ => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        match serde_json::from_slice::<Stats>(statistics) {
            Ok(stats) => self.health.absorb(stats),
            Err(e) => tracing::debug!(error = %e, "cannot read librdkafka's statistics"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason, "client error");
        self.health.note_connection_error(&error, reason);
        self.health.note(&error);
    }
}

impl ConsumerContext for SourceContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_give_watermarks_and_connection_state() {
        let health = Health::default();
        assert_eq!(health.connection(), Connection::Unknown);
        let json = br#"{
          "name": "c#consumer-1", "type": "consumer",
          "brokers": {
            "127.0.0.1:9092/bootstrap": {"state": "INIT", "nodeid": -1, "connects": 1},
            "127.0.0.1:9092/111": {"state": "UP", "nodeid": 111, "connects": 2}
          },
          "topics": {"bets": {"partitions": {
            "0": {"partition": 0, "hi_offset": 40},
            "1": {"partition": 1, "hi_offset": -1001},
            "-1": {"partition": -1, "hi_offset": -1001}
          }}}
        }"#;
        health.absorb(serde_json::from_slice(json).unwrap());
        assert_eq!(health.connection(), Connection::Up);
        assert_eq!(health.connects(), 3);
        assert_eq!(health.high("bets", 0), Some(40));
        assert_eq!(health.high("bets", 1), None);
        let json = br#"{"brokers": {"127.0.0.1:9092/111": {"state": "DOWN", "nodeid": 111}},
                        "topics": {"bets": {"partitions": {"0": {"partition": 0, "hi_offset": 30}}}}}"#;
        health.absorb(serde_json::from_slice(json).unwrap());
        assert_eq!(health.connection(), Connection::Down);
        // A watermark never goes back (an older broker answer arriving late).
        assert_eq!(health.high("bets", 0), Some(40));
    }

    #[test]
    fn losing_the_brokers_is_a_state_and_other_errors_are_news() {
        use rdkafka::types::RDKafkaErrorCode;
        let health = Health::default();
        health.note(&KafkaError::Global(RDKafkaErrorCode::AllBrokersDown));
        health.note(&KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure,
        ));
        assert_eq!(health.connection(), Connection::Down);
        assert_eq!(health.take_error(), None, "no error to log per retry");
        health.note(&KafkaError::Global(RDKafkaErrorCode::Authentication));
        assert!(health
            .take_error()
            .is_some_and(|e| e.contains("Authentication")));
        health.mark_up();
        assert_eq!(health.connection(), Connection::Up);
    }

    #[test]
    fn the_connection_error_names_the_broker_and_the_cause() {
        use rdkafka::types::RDKafkaErrorCode;
        let health = Health::default();
        let refused = "127.0.0.1:9092/1: Connect to ipv4#127.0.0.1:9092 failed: Connection refused";
        health.note_connection_error(
            &KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            refused,
        );
        health.note_connection_error(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(health.connection_error().as_deref(), Some(refused));
        health.clear_connection_error();
        health.note_connection_error(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert_eq!(
            health.connection_error().as_deref(),
            Some("1/1 brokers are down")
        );
        health.note_connection_error(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL failed",
        );
        assert_eq!(
            health.connection_error().as_deref(),
            Some("1/1 brokers are down"),
            "only connection failures"
        );
    }
}
