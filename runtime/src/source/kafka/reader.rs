//! The Kafka reader of one source on one worker: a librdkafka consumer
//! with partitions assigned by hand at offsets statflow chose, read a
//! bounded batch at a time without ever blocking the worker.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossbeam_channel::Receiver;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use statflow_dataflow::ingest::{
    wall_ms, BrokerState, BrokerStatus, ReadState, RecordAt, RecordReader, Resume,
};
use statflow_dsl::{KafkaSource, StartPosition};

use super::assign::partition_name;
use super::config;
use super::discover::{Discovery, Found, Matcher};
use super::health::{Connection, Health, SourceContext};
use super::metadata::{self, MessageMeta};

/// How long the reader waits before polling again when nothing came.
/// Short, because it bounds how fresh answers are; polling an empty local
/// queue costs next to nothing.
const IDLE: Duration = Duration::from_millis(5);

/// How long to wait before building a new client after a fatal error.
const REBUILD_AFTER: Duration = Duration::from_secs(5);

/// Everything needed to (re)build the client.
struct Spec {
    source: String,
    brokers: String,
    settings: std::collections::BTreeMap<String, String>,
    matcher: Matcher,
    start: StartPosition,
    resume: Resume,
    worker: usize,
    workers: usize,
    interval: Duration,
}

/// One partition this reader owns.
struct Part {
    topic: String,
    partition: i32,
    /// The offset of the first message not handed out yet.
    position: i64,
}

/// Reads the partitions of one Kafka source that belong to one worker.
pub struct KafkaReader {
    spec: Spec,
    /// Splice the `_kafka` member into records.
    metadata: bool,
    consumer: Arc<BaseConsumer<SourceContext>>,
    health: Arc<Health>,
    /// New partitions from the discovery thread.
    found: Receiver<Vec<Found>>,
    /// Tells the discovery thread to stop.
    stop: Arc<AtomicBool>,
    names: Vec<String>,
    parts: Vec<Part>,
    /// topic → partition number → index into `parts`.
    index: HashMap<String, HashMap<i32, usize>>,
    /// The spliced record.
    buffer: Vec<u8>,
    /// Whether the brokers answer, as the logs and the status last said:
    /// each change is logged once.
    state: BrokerState,
    /// When (wall clock, milliseconds) `state` began.
    since_ms: i64,
    /// The client's connection attempts when `state` began, so that the
    /// retries of an outage are the attempts since.
    connects_before: u64,
    /// The last client error logged, so a repeated one is not.
    said_error: Option<String>,
    /// Set after a fatal client error: when to build a new client.
    rebuild_at: Option<Instant>,
}

impl KafkaReader {
    /// A reader of `kafka` (source `source`) for worker `worker` of
    /// `workers`, starting its partitions at `resume` or at the source's
    /// `start`. `brokers` are already resolved. Nothing waits on the
    /// network here: partitions arrive as the discovery thread finds them.
    pub fn open(
        source: &str,
        kafka: &KafkaSource,
        brokers: String,
        worker: usize,
        workers: usize,
        resume: &Resume,
        metadata: bool,
    ) -> anyhow::Result<KafkaReader> {
        let (settings, own) = config::split_settings(source, &kafka.settings)?;
        let matcher = Matcher::new(&kafka.topics)
            .with_context(|| format!("the topic pattern of source `{source}` is not valid"))?;
        let spec = Spec {
            source: source.to_string(),
            brokers,
            settings,
            matcher,
            start: kafka.start.clone(),
            resume: resume.clone(),
            worker,
            workers: workers.max(1),
            interval: own.discovery_interval,
        };
        let (consumer, health, found, stop) = connect(&spec, BTreeSet::new())?;
        Ok(KafkaReader {
            spec,
            metadata,
            consumer,
            health,
            found,
            stop,
            names: Vec::new(),
            parts: Vec::new(),
            index: HashMap::new(),
            buffer: Vec::new(),
            state: BrokerState::Connecting,
            since_ms: wall_ms(),
            connects_before: 0,
            said_error: None,
            rebuild_at: None,
        })
    }

    /// Assigns partitions the discovery thread found, appending them.
    fn absorb(&mut self) {
        while let Ok(batch) = self.found.try_recv() {
            let mut tpl = TopicPartitionList::new();
            for f in batch {
                let by_partition = self.index.entry(f.topic.clone()).or_default();
                if by_partition.contains_key(&f.partition) {
                    continue;
                }
                if let Err(e) =
                    tpl.add_partition_offset(&f.topic, f.partition, Offset::Offset(f.start))
                {
                    tracing::error!(source = %self.spec.source, error = %e, "cannot assign a Kafka partition");
                    continue;
                }
                by_partition.insert(f.partition, self.parts.len());
                self.health.set_high(&f.topic, f.partition, f.high);
                self.names.push(partition_name(&f.topic, f.partition));
                self.parts.push(Part {
                    topic: f.topic,
                    partition: f.partition,
                    position: f.start,
                });
            }
            if tpl.count() > 0 {
                if let Err(e) = self.consumer.incremental_assign(&tpl) {
                    tracing::error!(source = %self.spec.source, error = %e,
                        "cannot assign Kafka partitions; rebuilding the client");
                    self.rebuild_at = Some(Instant::now());
                }
            }
        }
    }

    /// Says once when the brokers go away and once when they are back, and
    /// each distinct client error once.
    fn report(&mut self) {
        if let Some(error) = self.health.take_error() {
            if self.said_error.as_ref() != Some(&error) {
                tracing::warn!(source = %self.spec.source, worker = self.spec.worker, %error, "Kafka client error");
                self.said_error = Some(error);
            }
        }
        let next = match self.health.connection() {
            Connection::Up => BrokerState::Connected,
            Connection::Down => BrokerState::Unreachable,
            // A new client that has no statistics yet: no news.
            Connection::Unknown => return,
        };
        if next == self.state {
            return;
        }
        match (self.state, next) {
            (_, BrokerState::Unreachable) => {
                let error = self.health.connection_error().unwrap_or_default();
                tracing::warn!(source = %self.spec.source, worker = self.spec.worker, %error,
                    "Kafka brokers unreachable; reconnecting with backoff, positions kept")
            }
            (BrokerState::Unreachable, _) => {
                tracing::info!(source = %self.spec.source, worker = self.spec.worker,
                    "Kafka brokers reachable again; resuming at the kept positions");
                self.said_error = None;
            }
            _ => {
                tracing::debug!(source = %self.spec.source, worker = self.spec.worker, "connected to Kafka")
            }
        }
        if next == BrokerState::Connected {
            self.health.clear_connection_error();
        }
        self.state = next;
        self.since_ms = wall_ms();
        self.connects_before = self.health.connects();
    }

    /// After a fatal client error: a new client, assigned at the positions
    /// this reader has, so nothing is lost or read twice.
    fn rebuild(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let known: BTreeSet<(String, i32)> = self
            .parts
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        match connect(&self.spec, known) {
            Ok((consumer, health, found, stop)) => {
                let mut tpl = TopicPartitionList::new();
                for p in &self.parts {
                    let _ =
                        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.position));
                }
                if let Err(e) = consumer.assign(&tpl) {
                    tracing::error!(source = %self.spec.source, error = %e, "cannot assign Kafka partitions");
                    self.rebuild_at = Some(Instant::now() + REBUILD_AFTER);
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
                self.consumer = consumer;
                self.health = health;
                // The new client counts its attempts from zero.
                self.connects_before = 0;
                self.found = found;
                self.stop = stop;
                self.rebuild_at = None;
                tracing::info!(source = %self.spec.source, worker = self.spec.worker, "built a new Kafka client");
            }
            Err(e) => {
                tracing::error!(source = %self.spec.source, error = %e, "cannot build a Kafka client");
                self.rebuild_at = Some(Instant::now() + REBUILD_AFTER);
            }
        }
    }
}

/// A consumer, its health, and its discovery thread.
type Connected = (
    Arc<BaseConsumer<SourceContext>>,
    Arc<Health>,
    Receiver<Vec<Found>>,
    Arc<AtomicBool>,
);

fn connect(spec: &Spec, known: BTreeSet<(String, i32)>) -> anyhow::Result<Connected> {
    let health = Arc::new(Health::default());
    let context = SourceContext {
        health: Arc::clone(&health),
    };
    let consumer: BaseConsumer<SourceContext> =
        config::consumer(&spec.source, &spec.brokers, &spec.settings)
            .create_with_context(context)
            .with_context(|| {
                format!(
                    "cannot create the Kafka consumer of source `{}`; check its `settings`",
                    spec.source
                )
            })?;
    let consumer = Arc::new(consumer);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = crossbeam_channel::unbounded();
    Discovery {
        source: spec.source.clone(),
        consumer: Arc::clone(&consumer),
        matcher: spec.matcher.clone(),
        worker: spec.worker,
        workers: spec.workers,
        start: spec.start.clone(),
        resume: spec.resume.clone(),
        known,
        interval: spec.interval,
        stop: Arc::clone(&stop),
        found: tx,
    }
    .spawn()
    .context("cannot start the Kafka discovery thread")?;
    Ok((consumer, health, rx, stop))
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl RecordReader for KafkaReader {
    fn read(&mut self, max: usize, record: &mut dyn FnMut(&[u8], RecordAt)) -> ReadState {
        if let Some(at) = self.rebuild_at {
            if Instant::now() < at {
                return ReadState::Idle(Duration::from_millis(100));
            }
            self.rebuild();
            if self.rebuild_at.is_some() {
                return ReadState::Idle(Duration::from_millis(100));
            }
        }
        self.absorb();
        let mut handed = 0usize;
        // Errors and skipped messages count towards the bound too, so one
        // call never spins for long.
        let mut steps = 0usize;
        let consumer = Arc::clone(&self.consumer);
        while steps < max {
            steps += 1;
            let message = match consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                    tracing::error!(source = %self.spec.source, error = %code,
                        "fatal Kafka client error; building a new client in {REBUILD_AFTER:?}");
                    self.rebuild_at = Some(Instant::now() + REBUILD_AFTER);
                    break;
                }
                Some(Err(e)) => {
                    self.health.note(&e);
                    continue;
                }
            };
            let Some(&i) = self
                .index
                .get(message.topic())
                .and_then(|p| p.get(&message.partition()))
            else {
                continue; // not assigned here (cannot happen with manual assignment)
            };
            let offset = message.offset();
            let part = &mut self.parts[i];
            if offset < part.position {
                // Handed out already: a redelivery after a reconnect.
                continue;
            }
            part.position = offset + 1;
            let Some(payload) = message.payload() else {
                continue; // a tombstone: no event
            };
            let at = RecordAt {
                partition: i,
                position: u64::try_from(offset).unwrap_or(0),
            };
            handed += 1;
            if !self.metadata {
                record(payload, at);
                continue;
            }
            let headers: Vec<(&str, Option<&[u8]>)> = message
                .headers()
                .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
                .unwrap_or_default();
            let meta = MessageMeta {
                topic: message.topic(),
                partition: message.partition(),
                offset,
                timestamp: match message.timestamp() {
                    rdkafka::Timestamp::CreateTime(ms) => Some((ms, "create")),
                    rdkafka::Timestamp::LogAppendTime(ms) => Some((ms, "log_append")),
                    rdkafka::Timestamp::NotAvailable => None,
                },
                key: message.key(),
            };
            if metadata::splice(&mut self.buffer, payload, &meta, &headers) {
                record(&self.buffer, at);
            } else {
                record(payload, at);
            }
        }
        if handed > 0 {
            self.health.mark_up();
        }
        self.report();
        if steps >= max {
            ReadState::Busy
        } else {
            ReadState::Idle(IDLE)
        }
    }

    fn owns(&self, partition: &str) -> bool {
        partition
            .rsplit_once('/')
            .and_then(|(topic, p)| Some((topic, p.parse::<i32>().ok()?)))
            .is_some_and(|(topic, p)| {
                super::assign::owner(topic, p, self.spec.workers) == self.spec.worker
            })
    }

    fn partitions(&self) -> &[String] {
        &self.names
    }

    fn positions(&self) -> Vec<u64> {
        self.parts
            .iter()
            .map(|p| u64::try_from(p.position).unwrap_or(0))
            .collect()
    }

    fn broker(&self) -> Option<BrokerStatus> {
        let connected = self.state == BrokerState::Connected;
        Some(BrokerStatus {
            state: self.state,
            since_ms: self.since_ms,
            error: if connected {
                None
            } else {
                self.health.connection_error()
            },
            retries: if self.state == BrokerState::Unreachable {
                self.health.connects().saturating_sub(self.connects_before)
            } else {
                0
            },
        })
    }

    fn ends(&self) -> Vec<Option<u64>> {
        self.parts
            .iter()
            .map(|p| {
                let high = self
                    .health
                    .high(&p.topic, p.partition)
                    .unwrap_or(p.position);
                u64::try_from(high.max(p.position)).ok()
            })
            .collect()
    }
}
