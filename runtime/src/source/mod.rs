//! Where events come from: the built-in generator, files, and (later) Kafka.

pub mod file;
pub mod generator;
pub mod paced;

use std::sync::Arc;

use anyhow::Context;
use statflow_dsl::SourceKind;

use crate::engine::ReaderFactory;

/// The readers for a plan's sources: files split by byte range, the
/// generator split by seed. Kafka sources are not built yet and say so.
pub fn readers() -> ReaderFactory {
    Arc::new(|source, worker, workers, resume| {
        match &source.kind {
        SourceKind::File(f) => {
            let reader = file::FileReader::open(std::path::Path::new(&f.path), worker, workers, resume)
                .with_context(|| format!("cannot open {} for source `{}`", f.path, source.name))?;
            Ok(Box::new(reader) as Box<dyn statflow_dataflow::ingest::RecordReader>)
        }
        SourceKind::Generator(g) => Ok(Box::new(paced::PacedGenerator::new(g, worker, workers, resume)) as _),
        SourceKind::Kafka(_) => anyhow::bail!(
            "source `{}` reads Kafka, which this build of statflow cannot do yet; use a file or generator source",
            source.name
        ),
    }
    })
}
