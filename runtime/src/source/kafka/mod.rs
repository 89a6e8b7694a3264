//! The Kafka source: topics by name or pattern, partitions assigned to
//! workers by a fixed function so statflow (not a consumer group) owns the
//! offsets, Kafka metadata as fields, dead letters to a topic, and the
//! producer behind `statflow produce`.
//!
//! Each worker has one consumer per Kafka source, assigned by hand
//! (`assign`, never `subscribe`) to the partitions [`assign::owner`] gives
//! it, at the offsets a checkpoint names or the source's `start` resolves
//! to. A discovery thread per reader watches the brokers' metadata for new
//! topics and partitions; the worker only ever polls the local queue
//! without waiting, a bounded batch per step.

pub mod assign;
pub mod config;
pub mod discover;
pub mod health;
pub mod metadata;
pub mod producer;
pub mod reader;

use std::cell::RefCell;

use statflow_dataflow::ingest::DeadLetters;

pub use reader::KafkaReader;

thread_local! {
    /// Dead-letter topics of the Kafka readers just built on this worker
    /// thread, by source name, waiting for the engine to ask for the
    /// source's dead letters (see [`dead_letters_for`]).
    static DEAD_LETTER_TOPICS: RefCell<Vec<(String, producer::CountingProducer, String)>> =
        const { RefCell::new(Vec::new()) };
}

/// Remembers that the reader of `source` just built on this thread sends
/// its dead letters to `topic` through `producer`.
///
/// The engine builds a worker's reader of a source and then, on the same
/// thread, its dead letters, knowing only the source's name; this hands the
/// topic from one to the other without the engine knowing about Kafka.
pub fn offer_dead_letter_topic(source: &str, topic: String, producer: producer::CountingProducer) {
    DEAD_LETTER_TOPICS.with(|t| {
        let mut t = t.borrow_mut();
        t.retain(|(s, _, _)| s != source);
        t.push((source.to_string(), producer, topic));
    });
}

/// The dead letters of `source` on this worker: `file` alone, or `file`
/// and the topic the source's reader offered.
pub fn dead_letters_for(source: &str, file: Box<dyn DeadLetters>) -> Box<dyn DeadLetters> {
    let offered = DEAD_LETTER_TOPICS.with(|t| {
        let mut t = t.borrow_mut();
        let i = t.iter().position(|(s, _, _)| s == source)?;
        Some(t.swap_remove(i))
    });
    match offered {
        Some((_, producer, topic)) => Box::new(producer::DeadLetterTopic {
            file,
            producer,
            topic,
            said_failure: false,
        }),
        None => file,
    }
}

#[cfg(test)]
mod tests;
