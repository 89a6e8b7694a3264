//! Where events come from: the built-in generator, files, and (later) Kafka.

pub mod generator;
