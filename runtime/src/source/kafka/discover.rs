//! Finding a reader's partitions: a thread per reader asks the brokers for
//! metadata now and then, picks the partitions of matching topics that the
//! assignment gives this worker, resolves where each starts, and hands
//! them to the reader. Metadata requests wait on the network, so they are
//! kept off the worker thread, which also answers queries.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;
use statflow_dataflow::ingest::Resume;
use statflow_dsl::{StartPosition, Topics};

use super::assign::{owner, partition_name};
use super::health::SourceContext;

/// How long one metadata or offset request may take before it is retried
/// at the next round.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition this reader should read, and where to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the first message to read.
    pub start: i64,
    /// The high watermark when it was found.
    pub high: i64,
}

/// Which topics a source reads.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// These names.
    Names(BTreeSet<String>),
    /// Every topic whose whole name matches.
    Pattern(Regex),
}

impl Matcher {
    /// From the plan's topics; a pattern must match the whole name.
    pub fn new(topics: &Topics) -> Result<Matcher, regex::Error> {
        Ok(match topics {
            Topics::Names(names) => Matcher::Names(names.iter().cloned().collect()),
            Topics::Pattern(p) => Matcher::Pattern(Regex::new(&format!("^(?:{p})$"))?),
        })
    }

    /// True when the source reads `topic`. A pattern never matches Kafka's
    /// internal topics (their names start with `__`).
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Matcher::Names(names) => names.contains(topic),
            Matcher::Pattern(re) => !topic.starts_with("__") && re.is_match(topic),
        }
    }
}

/// Everything the discovery thread needs.
pub struct Discovery {
    /// The source, for logs.
    pub source: String,
    /// The reader's consumer, shared: metadata requests are thread-safe.
    pub consumer: Arc<BaseConsumer<SourceContext>>,
    /// Which topics.
    pub matcher: Matcher,
    /// This worker and how many there are, over all processes.
    pub worker: usize,
    /// Workers over all processes.
    pub workers: usize,
    /// Where to start a partition no checkpoint names.
    pub start: StartPosition,
    /// Positions from a checkpoint, by partition name.
    pub resume: Resume,
    /// Partitions already handed to the reader (after a reconnect, the ones it has).
    pub known: BTreeSet<(String, i32)>,
    /// How often to look.
    pub interval: Duration,
    /// Set by the reader when it goes away.
    pub stop: Arc<AtomicBool>,
    /// Where found partitions go.
    pub found: Sender<Vec<Found>>,
}

impl Discovery {
    /// Starts the thread.
    pub fn spawn(self) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name(format!("kafka-discovery-{}", self.source))
            .spawn(move || self.run())
            .map(|_| ())
    }

    fn run(mut self) {
        let mut missing_logged: BTreeSet<String> = BTreeSet::new();
        let mut failing = false;
        while !self.stop.load(Ordering::Relaxed) {
            match self.round(&mut missing_logged) {
                Ok(found) => {
                    if failing {
                        tracing::info!(source = %self.source, "Kafka metadata can be read again");
                        failing = false;
                    }
                    if !found.is_empty() && self.found.send(found).is_err() {
                        return; // the reader is gone
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(source = %self.source, error = %e,
                            "cannot read Kafka metadata; retrying every {:?}", self.interval);
                        failing = true;
                    }
                }
            }
            let until = Instant::now() + self.interval;
            while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// One look: the new partitions this worker owns, with their starts.
    fn round(
        &mut self,
        missing_logged: &mut BTreeSet<String>,
    ) -> Result<Vec<Found>, rdkafka::error::KafkaError> {
        // All topics, never one by name: asking for a topic by name makes
        // some brokers create it.
        let metadata = self.consumer.fetch_metadata(None, REQUEST_TIMEOUT)?;
        let topics: Vec<(&str, Vec<i32>)> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name(), t.partitions().iter().map(|p| p.id()).collect()))
            .collect();
        let (new, missing) = pick(
            &topics,
            &self.matcher,
            self.worker,
            self.workers,
            &self.known,
        );
        for name in missing {
            if missing_logged.insert(name.clone()) {
                tracing::warn!(source = %self.source, topic = %name,
                    "topic does not exist (yet); statflow reads it once it is created");
            }
        }
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let found = self.starts(&new)?;
        for f in &found {
            self.known.insert((f.topic.clone(), f.partition));
            tracing::info!(source = %self.source, partition = %partition_name(&f.topic, f.partition),
                start = f.start, high = f.high, worker = self.worker, "reading a new Kafka partition");
        }
        Ok(found)
    }

    /// Where each new partition starts: its checkpointed position, or the
    /// source's `start` resolved to a real offset (so positions and lag
    /// are numbers from the first moment).
    fn starts(&self, new: &[(String, i32)]) -> Result<Vec<Found>, rdkafka::error::KafkaError> {
        let mut found = Vec::with_capacity(new.len());
        let mut by_time = TopicPartitionList::new();
        for (topic, partition) in new {
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, *partition, REQUEST_TIMEOUT)?;
            let start = match (
                self.resume.get(&partition_name(topic, *partition)),
                &self.start,
            ) {
                (Some(p), _) => i64::try_from(*p).unwrap_or(i64::MAX),
                (None, StartPosition::Earliest) => low,
                (None, StartPosition::Latest) => high,
                (None, StartPosition::Timestamp(ms)) => {
                    by_time.add_partition_offset(topic, *partition, Offset::Offset(*ms))?;
                    high // until the broker answers below
                }
            };
            found.push(Found {
                topic: topic.clone(),
                partition: *partition,
                start,
                high,
            });
        }
        if by_time.count() > 0 {
            let answer = self.consumer.offsets_for_times(by_time, REQUEST_TIMEOUT)?;
            for e in answer.elements() {
                // No message at or after the time: start at the end.
                if let Offset::Offset(o) = e.offset() {
                    if let Some(f) = found
                        .iter_mut()
                        .find(|f| f.topic == e.topic() && f.partition == e.partition())
                    {
                        f.start = o;
                    }
                }
            }
        }
        Ok(found)
    }
}

/// Out of the brokers' topics and their partitions: the partitions that
/// `worker` owns, matching `matcher`, not `known` yet (sorted, so they are
/// appended in a fixed order); and the named topics that do not exist.
pub fn pick(
    topics: &[(&str, Vec<i32>)],
    matcher: &Matcher,
    worker: usize,
    workers: usize,
    known: &BTreeSet<(String, i32)>,
) -> (Vec<(String, i32)>, Vec<String>) {
    let mut new = Vec::new();
    for (topic, partitions) in topics {
        if !matcher.matches(topic) {
            continue;
        }
        for p in partitions {
            let key = (topic.to_string(), *p);
            if owner(topic, *p, workers) == worker && !known.contains(&key) {
                new.push(key);
            }
        }
    }
    new.sort();
    let missing = match matcher {
        Matcher::Names(names) => names
            .iter()
            .filter(|n| !topics.iter().any(|(t, _)| t == n))
            .cloned()
            .collect(),
        Matcher::Pattern(_) => Vec::new(),
    };
    (new, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names_and_skip_internal_topics() {
        let m = Matcher::new(&Topics::Pattern("game\\.bets\\..*".into())).unwrap();
        assert!(m.matches("game.bets.eu"));
        assert!(!m.matches("old.game.bets.eu"));
        let all = Matcher::new(&Topics::Pattern(".*".into())).unwrap();
        assert!(all.matches("x") && !all.matches("__consumer_offsets"));
        let alt = Matcher::new(&Topics::Pattern("a|b".into())).unwrap();
        assert!(alt.matches("a") && alt.matches("b") && !alt.matches("ab"));
        let names = Matcher::new(&Topics::Names(vec!["__mine".into()])).unwrap();
        assert!(names.matches("__mine"));
    }

    #[test]
    fn grown_topics_and_new_topics_add_only_their_new_partitions() {
        let m = Matcher::new(&Topics::Names(vec!["bets".into(), "later".into()])).unwrap();
        let mut known = BTreeSet::new();
        let mut seen = Vec::new();
        for workers in [1usize, 3] {
            for worker in 0..workers {
                let (new, missing) = pick(
                    &[("bets", vec![0, 1]), ("x", vec![0])],
                    &m,
                    worker,
                    workers,
                    &known,
                );
                assert_eq!(missing, ["later"]);
                seen.extend(new);
            }
            seen.sort();
            assert_eq!(seen, [("bets".to_string(), 0), ("bets".to_string(), 1)]);
            seen.clear();
        }
        // Worker 0 of 1 read bets/0 and bets/1; the topic grows to 4.
        known.extend([("bets".to_string(), 0), ("bets".to_string(), 1)]);
        let (new, missing) = pick(
            &[("bets", vec![0, 1, 2, 3]), ("later", vec![0])],
            &m,
            0,
            1,
            &known,
        );
        assert!(missing.is_empty());
        assert_eq!(
            new,
            [
                ("bets".to_string(), 2),
                ("bets".to_string(), 3),
                ("later".to_string(), 0)
            ]
        );
    }
}
