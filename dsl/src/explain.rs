//! `statflow explain`: a plan printed for people.

use std::fmt::Write;

use crate::plan::*;

/// Prints `plan` readably: sources, then metrics with their windows,
/// dimensions, measures and the state each keeps.
pub fn explain(plan: &Plan) -> String {
    let mut out = String::new();
    for source in &plan.sources {
        let _ = writeln!(out, "source {} ({})", source.name, source.kind.keyword());
        match &source.kind {
            SourceKind::Kafka(k) => {
                match &k.topics {
                    Topics::Names(names) => {
                        let _ = writeln!(out, "  topics:   {}", names.join(", "));
                    }
                    Topics::Pattern(p) => {
                        let _ = writeln!(out, "  topics:   every topic matching /{p}/");
                    }
                }
                let brokers = if k.brokers.is_empty() {
                    "from --kafka-brokers or STATFLOW_KAFKA_BROKERS".to_string()
                } else {
                    k.brokers.join(", ")
                };
                let _ = writeln!(out, "  brokers:  {brokers}");
                let start = match k.start {
                    StartPosition::Earliest => "earliest".to_string(),
                    StartPosition::Latest => "latest".to_string(),
                    StartPosition::Timestamp(ms) => format!("{ms} ms since the epoch"),
                };
                let _ = writeln!(out, "  start:    {start}");
                for (key, value) in &k.settings {
                    let _ = writeln!(out, "  setting:  {key} = {value}");
                }
                if let Some(topic) = &k.dead_letters {
                    let _ = writeln!(
                        out,
                        "  dead letters: to topic {topic} and the dead-letter file"
                    );
                }
            }
            SourceKind::File(f) => {
                let _ = writeln!(out, "  path:     {}", f.path);
            }
            SourceKind::Telemetry => {
                let _ = writeln!(out, "  reads:    statflow's own telemetry, every second");
            }
            SourceKind::Generator(g) => {
                let events = g
                    .events
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "unbounded".into());
                let _ = writeln!(
                    out,
                    "  rate:     {} events/s, seed {}, {} events, {} games, {} users",
                    g.rate, g.seed, events, g.games, g.users
                );
            }
        }
        let _ = writeln!(
            out,
            "  time:     {} as {}",
            source.time.path,
            source.time.encoding.keyword()
        );
        let _ = writeln!(out, "  late:     {}", source.late);
        if !source.fields.is_empty() {
            let fields: Vec<String> = source
                .fields
                .iter()
                .map(|(p, t)| format!("{p}: {}", t.keyword()))
                .collect();
            let _ = writeln!(out, "  fields:   {}", fields.join(", "));
        }
        out.push('\n');
    }
    for metric in &plan.metrics {
        let _ = writeln!(
            out,
            "metric {} from {}",
            metric.name,
            metric.sources.join(", ")
        );
        if let Some(filter) = &metric.filter {
            let _ = writeln!(out, "  where:      {filter}");
        }
        let dims: Vec<String> = metric
            .dimensions
            .iter()
            .map(|d| {
                if d.path.to_string() == d.name {
                    d.name.clone()
                } else {
                    format!("{} (from {})", d.name, d.path)
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "  dimensions: {}",
            if dims.is_empty() {
                "(none: one row per bucket)".into()
            } else {
                dims.join(", ")
            }
        );
        let _ = writeln!(out, "  window:     {}", metric.window);
        let _ = writeln!(out, "  retain:     {}", metric.retain);
        let _ = writeln!(out, "  measures:");
        for m in &metric.measures {
            let _ = writeln!(
                out,
                "    {:<12} {:<28} state: {}",
                m.name,
                m.kind.to_string(),
                state_of(&m.kind)
            );
        }
        let buckets = metric.retain.millis() / metric.window.step().millis().max(1);
        let panes = match metric.window {
            Window::Hopping { size, every } => format!(
                "; a window is {} panes of {every} merged when queried",
                size.millis() / every.millis().max(1)
            ),
            _ => String::new(),
        };
        let groups = if metric.dimensions.is_empty() {
            "no dimension".to_string()
        } else {
            metric
                .dimensions
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &metric.window {
            Window::Session { gap, by } => {
                let _ = writeln!(
                    out,
                    "  state:      one row per session (per {groups} and {by}, ended by {gap} of quiet) holding every measure, keyed by its start, and each session's measures kept a second time to join it with events that arrive out of order; queries group sessions by start, per {} or coarser",
                    metric.window.step()
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  state:      one row per ({} bucket, {groups}) holding every measure; up to {buckets} buckets per group kept; each event updates one row{panes}",
                    metric.window.step()
                );
            }
        }
        out.push('\n');
    }
    out
}

fn state_of(kind: &MeasureKind) -> &'static str {
    match kind {
        MeasureKind::Count => "a counter",
        MeasureKind::Sum { .. } => "an exact fixed-point sum",
        MeasureKind::Min { .. } | MeasureKind::Max { .. } => "one number",
        MeasureKind::Avg { .. } => "a sum and a count",
        MeasureKind::Distinct { .. } => {
            "a HyperLogLog++ sketch (exact below 129 values, then 1.6% standard error)"
        }
        MeasureKind::Quantile { .. } => "a DDSketch (1% relative error)",
    }
}

#[cfg(test)]
mod tests {
    use super::explain;
    use crate::compile;

    const EXAMPLES: [(&str, &str); 3] = [
        (
            "game_stats",
            include_str!("../../examples/topologies/game_stats.topo"),
        ),
        (
            "kafka_rewards",
            include_str!("../../examples/topologies/kafka_rewards.topo"),
        ),
        (
            "file_rewards",
            include_str!("../../examples/topologies/file_rewards.topo"),
        ),
    ];

    #[test]
    fn names_every_source_metric_dimension_and_measure_of_each_example() {
        for (name, text) in EXAMPLES {
            let plan = compile(text, None)
                .plan
                .unwrap_or_else(|| panic!("{name} compiles"));
            let out = explain(&plan);
            for source in &plan.sources {
                assert!(
                    out.contains(&format!("source {} (", source.name)),
                    "{name}: source {}\n{out}",
                    source.name
                );
            }
            for metric in &plan.metrics {
                assert!(
                    out.contains(&format!("metric {} from", metric.name)),
                    "{name}: metric {}\n{out}",
                    metric.name
                );
                assert!(out.contains(&format!("window:     {}", metric.window)));
                for d in &metric.dimensions {
                    assert!(out.contains(&d.name), "{name}: dimension {}", d.name);
                }
                for m in &metric.measures {
                    assert!(
                        out.contains(&format!("    {:<12} {}", m.name, m.kind)),
                        "{name}: measure {}\n{out}",
                        m.name
                    );
                }
            }
        }
    }

    #[test]
    fn shows_hopping_panes_and_renamed_dimensions() {
        let plan = compile(EXAMPLES[1].1, None)
            .plan
            .expect("kafka_rewards compiles");
        let out = explain(&plan);
        assert!(out.contains("a window is 10 panes of 1m"), "{out}");
        assert!(out.contains("currency (from payload.currency)"), "{out}");
        assert!(
            out.contains("every topic matching /game\\.bets\\..*/"),
            "{out}"
        );
    }
}
