//! Writing to Kafka: JSON lines into a topic (`statflow produce`, tests,
//! benchmarks) and dead letters into a source's dead-letter topic.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use statflow_dataflow::ingest::DeadLetters;
use statflow_dataflow::rollup::RecordError;

use super::config;
use super::metadata;

/// Counts deliveries and keeps the first failure.
#[derive(Default)]
pub struct Deliveries {
    /// Messages the broker acknowledged.
    pub delivered: AtomicU64,
    /// Messages that could not be delivered.
    pub failed: AtomicU64,
    /// The first delivery error.
    pub first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            _ => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, reason, "producer error");
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// A producer that counts its deliveries.
pub type CountingProducer = BaseProducer<Deliveries>;

/// A producer on `brokers` with `settings` over statflow's defaults.
pub fn producer(
    brokers: &str,
    settings: &BTreeMap<String, String>,
) -> anyhow::Result<CountingProducer> {
    config::producer(brokers, settings)
        .create_with_context(Deliveries::default())
        .context("cannot create the Kafka producer; check the brokers and settings")
}

/// Sends one message, waiting (and serving deliveries) while the local
/// queue is full. Fails only on errors other than a full queue.
pub fn send(
    producer: &CountingProducer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: Option<OwnedHeaders>,
) -> Result<(), KafkaError> {
    let mut record = BaseRecord::to(topic).payload(payload);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(20));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// What [`produce_lines`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Produced {
    /// Lines sent (blank lines are skipped).
    pub sent: u64,
    /// Messages the broker acknowledged.
    pub delivered: u64,
    /// Messages that could not be delivered.
    pub failed: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// The value of the top-level or dotted `field` of a JSON line, as a key:
/// strings as they are, other scalars as their JSON text. `None` when the
/// line is not JSON or has no such field.
pub fn key_of(line: &[u8], field: &str) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let mut v = &value;
    for part in field.split('.') {
        v = v.get(part)?;
    }
    match v {
        serde_json::Value::String(s) => Some(s.clone().into_bytes()),
        serde_json::Value::Null => None,
        other => Some(other.to_string().into_bytes()),
    }
}

/// Sends every non-blank line of `input` to `topic` as one message, keyed
/// by `key_field` when given (so one key always lands in one partition),
/// then waits up to `flush` for the broker's acknowledgements. `progress`
/// hears how many bytes of input were consumed so far.
pub fn produce_lines(
    producer: &CountingProducer,
    topic: &str,
    key_field: Option<&str>,
    mut input: impl BufRead,
    flush: Duration,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Produced> {
    let mut line = Vec::new();
    let mut sent = 0u64;
    let mut bytes = 0u64;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .context("cannot read the input")?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        let mut text = line.as_slice();
        while let [rest @ .., b'\n' | b'\r'] = text {
            text = rest;
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let key = key_field.and_then(|f| key_of(text, f));
        send(producer, topic, key.as_deref(), text, None)
            .with_context(|| format!("cannot send to topic `{topic}`"))?;
        sent += 1;
        if sent.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
            progress(bytes);
        }
    }
    progress(bytes);
    producer
        .flush(flush)
        .with_context(|| format!("not every message reached the brokers within {flush:?}"))?;
    let d = producer.context();
    Ok(Produced {
        sent,
        delivered: d.delivered.load(Ordering::Relaxed),
        failed: d.failed.load(Ordering::Relaxed),
        first_error: d.first_error.lock().ok().and_then(|e| e.clone()),
    })
}

/// Dead letters of a Kafka source that go to a topic as well as to the
/// dead-letter file: the message value is the record as it came from Kafka
/// (without the `_kafka` member), its key the partition it was read from
/// (`topic/3`), and headers say where and why: `statflow.source`,
/// `statflow.partition`, `statflow.offset`, `statflow.reason`.
pub struct DeadLetterTopic {
    /// The file, which keeps every dead letter even when the topic cannot.
    pub file: Box<dyn DeadLetters>,
    /// The producer.
    pub producer: CountingProducer,
    /// The topic.
    pub topic: String,
    /// Whether a failure has been logged (it is said once).
    pub said_failure: bool,
}

impl DeadLetters for DeadLetterTopic {
    fn put(
        &mut self,
        source: &str,
        partition: &str,
        position: u64,
        reason: &RecordError,
        record: &[u8],
    ) {
        self.file.put(source, partition, position, reason, record);
        let original = metadata::strip(record);
        let reason = reason.to_string();
        let offset = position.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "statflow.source",
                value: Some(source),
            })
            .insert(Header {
                key: "statflow.partition",
                value: Some(partition),
            })
            .insert(Header {
                key: "statflow.offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "statflow.reason",
                value: Some(&reason),
            });
        // One attempt, never waiting: with the brokers away and librdkafka's
        // queue full, a dead letter is dropped from the topic (the file has
        // it) rather than stall the worker.
        let record = BaseRecord::to(&self.topic)
            .key(partition.as_bytes())
            .payload(&*original)
            .headers(headers);
        let sent = self.producer.send(record).map_err(|(e, _)| e);
        self.producer.poll(Duration::ZERO);
        let failed = self.producer.context().failed.load(Ordering::Relaxed) > 0;
        if (sent.is_err() || failed) && !self.said_failure {
            self.said_failure = true;
            let error = sent.err().map(|e| e.to_string()).or_else(|| {
                self.producer
                    .context()
                    .first_error
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
            });
            tracing::error!(topic = %self.topic, error = ?error,
                "cannot write dead letters to their topic; the dead-letter file still has them");
        }
    }
}

impl Drop for DeadLetterTopic {
    fn drop(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}
