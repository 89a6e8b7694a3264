//! Where events come from: the built-in generator, files, and Kafka.

pub mod file;
pub mod generator;
pub mod kafka;
pub mod paced;

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Context;
use statflow_dsl::{Plan, SourceKind};

use crate::engine::ReaderFactory;

/// What the readers need beyond the plan's sources.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// `--kafka-brokers`: brokers for Kafka sources that name none.
    pub kafka_brokers: Option<String>,
    /// The Kafka sources whose metrics read `_kafka` fields, which get the
    /// `_kafka` member spliced in; `None` gives it to every Kafka source.
    pub kafka_metadata: Option<BTreeSet<String>>,
}

impl SourceOptions {
    /// Options for `plan`: the `_kafka` member only where a metric reads it.
    pub fn for_plan(plan: &Plan) -> SourceOptions {
        SourceOptions {
            kafka_brokers: None,
            kafka_metadata: Some(
                plan.sources
                    .iter()
                    .filter(|s| kafka::metadata::wants_metadata(plan, s))
                    .map(|s| s.name.clone())
                    .collect(),
            ),
        }
    }

    /// The same options with `--kafka-brokers`.
    pub fn with_kafka_brokers(mut self, brokers: Option<String>) -> SourceOptions {
        self.kafka_brokers = brokers;
        self
    }
}

/// The readers for a plan's sources with default options (brokers from
/// the topology or `STATFLOW_KAFKA_BROKERS`).
pub fn readers() -> ReaderFactory {
    readers_with(SourceOptions::default())
}

/// The readers for a plan's sources: files split by byte range (the slices
/// taken from the seat's pool as the workers go, when it has one), the
/// generator split by seed, Kafka partitions dealt out by a fixed hash.
pub fn readers_with(options: SourceOptions) -> ReaderFactory {
    Arc::new(move |source, seat| match &source.kind {
        SourceKind::File(f) => {
            let path = std::path::Path::new(&f.path);
            let reader = match seat.slices {
                Some(pool) => file::FileReader::pooled(path, Arc::clone(pool), seat.resume),
                None => file::FileReader::open(path, seat.worker, seat.workers, seat.resume),
            }
            .with_context(|| format!("cannot open {} for source `{}`", f.path, source.name))?;
            Ok(Box::new(reader) as Box<dyn statflow_dataflow::ingest::RecordReader>)
        }
        SourceKind::Generator(g) => Ok(Box::new(paced::PacedGenerator::new(
            g,
            seat.worker,
            seat.workers,
            seat.resume,
        )) as _),
        SourceKind::Kafka(k) => {
            let env = std::env::var(kafka::config::BROKERS_ENV).ok();
            let brokers = kafka::config::brokers(
                &source.name,
                k,
                options.kafka_brokers.as_deref(),
                env.as_deref(),
            )?;
            let metadata = options
                .kafka_metadata
                .as_ref()
                .is_none_or(|names| names.contains(&source.name));
            if let Some(topic) = &k.dead_letters {
                let (settings, _) = kafka::config::split_settings(&source.name, &k.settings)?;
                let producer = kafka::producer::producer(
                    &brokers,
                    &kafka::config::connection_settings(&settings),
                )?;
                kafka::offer_dead_letter_topic(&source.name, topic.clone(), producer);
            }
            let reader = kafka::KafkaReader::open(
                &source.name,
                k,
                brokers,
                seat.worker,
                seat.workers,
                seat.resume,
                metadata,
            )?;
            Ok(Box::new(reader) as _)
        }
        // The engine builds telemetry readers itself: they read its own queues.
        SourceKind::Telemetry => anyhow::bail!(
            "source `{}` reads statflow's telemetry, which only the engine can read",
            source.name
        ),
    })
}
