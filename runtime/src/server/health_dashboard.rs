//! The default "statflow health" dashboard: when the running topology keeps
//! a metric over a `telemetry()` source, statflow makes sure a dashboard of
//! it exists, with a panel for each thing the metric's measures can show
//! (records read, lag, epoch delay, query latency, decode errors, late
//! events, queries).
//!
//! The panels are chosen by what a measure computes (its function and the
//! telemetry field it reads), not by its name, so a topology may call its
//! measures what it likes. Each panel's query is the one the app sends for
//! it, checked with the query validator against the running plan before
//! the dashboard is written: a panel that does not validate, or whose
//! measure the metric does not declare, is left out and the log says why.
//!
//! The store does the keeping ([`Store::keep_builtin`]): made when missing
//! (owned by the oldest admin, viewable by everyone signed in), upgraded
//! when the metric changed and nobody has edited the dashboard, and never
//! touched once someone has.

use serde_json::{json, Value as Json};
use statflow_dsl::{Duration, MeasureKind, MetricPlan, Plan, SourceKind, Window};

use crate::query::validate::{granularities, validate};
use crate::store::{DashboardInput, Kept, Store, StoreError};

/// The name the store keeps the dashboard under.
pub const KEY: &str = "statflow-health";

/// The dashboard's title.
pub const TITLE: &str = "statflow health";

/// The time range it opens with: recent enough that the charts move.
const RANGE: &str = "1h";

/// Seconds between refreshes. Not `Live`: every refresh is a query per
/// panel, and a dashboard refreshing on every epoch would mostly chart its
/// own queries in the latency panel.
const REFRESH_SECONDS: u64 = 10;

/// The shortest granularity the time-series panels use: per-second counts
/// are noise over an hour.
const MIN_GRANULARITY_MS: u64 = 60_000;

/// One panel the dashboard may have.
struct Candidate {
    /// The panel's id in the spec (stable, so an upgrade keeps ids).
    id: &'static str,
    /// What it shows, for its title (`{per}` becomes "per 1m").
    title: &'static str,
    /// The telemetry events it reads (`kind`).
    kind: &'static str,
    /// The telemetry field its measures read; `None` for `count()`.
    field: Option<&'static str>,
    /// Measure functions that answer it, best first: the panel shows every
    /// measure of the first function the metric has over `field`.
    functions: &'static [&'static str],
    /// Split by the `source` dimension, when the metric has one.
    by_source: bool,
}

/// Every panel the dashboard may have, in the order it shows them.
const CANDIDATES: &[Candidate] = &[
    Candidate {
        id: "records",
        title: "Records read {per}",
        kind: "ingest",
        field: Some("records"),
        functions: &["sum"],
        by_source: true,
    },
    Candidate {
        id: "lag",
        title: "Lag (messages or bytes behind)",
        kind: "ingest",
        field: Some("lag"),
        functions: &["max", "quantile", "avg"],
        by_source: true,
    },
    Candidate {
        id: "epoch-delay",
        title: "Epoch delay, ms (freshness)",
        kind: "epoch",
        field: Some("epoch_delay_ms"),
        functions: &["max", "quantile", "avg"],
        by_source: false,
    },
    Candidate {
        id: "query-latency",
        title: "Query latency, ms",
        kind: "query",
        field: Some("query_ms"),
        functions: &["quantile", "avg", "max"],
        by_source: false,
    },
    Candidate {
        id: "errors",
        title: "Decode errors {per}",
        kind: "ingest",
        field: Some("errors"),
        functions: &["sum"],
        by_source: true,
    },
    Candidate {
        id: "late",
        title: "Late events {per}",
        kind: "ingest",
        field: Some("late"),
        functions: &["sum"],
        by_source: true,
    },
    Candidate {
        id: "queries",
        title: "Queries {per}",
        kind: "query",
        field: None,
        functions: &["count"],
        by_source: false,
    },
];

/// The metric the dashboard shows: the one named `statflow` if it reads a
/// `telemetry()` source, else the first metric that does.
pub fn telemetry_metric(plan: &Plan) -> Option<&MetricPlan> {
    let telemetry: Vec<&str> = plan
        .sources
        .iter()
        .filter(|s| matches!(s.kind, SourceKind::Telemetry))
        .map(|s| s.name.as_str())
        .collect();
    let over = |m: &&MetricPlan| m.sources.iter().any(|s| telemetry.contains(&s.as_str()));
    let mut candidates = plan.metrics.iter().filter(over);
    let first = candidates.clone().next();
    candidates.find(|m| m.name == "statflow").or(first)
}

/// The dashboard for `plan` (title and spec, in the app's shape), or `None`
/// when the plan has no telemetry metric or none of its panels would work.
/// `now_ms` is the clock the panels' queries are validated at.
pub fn dashboard(plan: &Plan, now_ms: i64) -> Option<DashboardInput> {
    let metric = telemetry_metric(plan)?;
    if matches!(metric.window, Window::Session { .. }) {
        tracing::info!(metric = %metric.name,
            "no statflow health dashboard: queries cannot read session windows yet");
        return None;
    }
    let step = metric.window.step();
    let granularity = granularities(step)
        .into_iter()
        .find(|g| g.millis() >= MIN_GRANULARITY_MS)
        .unwrap_or(step);
    let range = json!({ "kind": "relative", "last": RANGE });
    let mut panels = Vec::new();
    for candidate in CANDIDATES {
        let panel = match panel(metric, candidate, granularity) {
            Ok(panel) => panel,
            Err(why) => {
                tracing::info!(metric = %metric.name, panel = candidate.id,
                    "the statflow health dashboard leaves out a panel: {why}");
                continue;
            }
        };
        if let Err(errors) = validate(&panel_query(&panel, &range, "UTC"), plan, now_ms) {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            tracing::warn!(metric = %metric.name, panel = candidate.id, errors = %errors.join("; "),
                "the statflow health dashboard leaves out a panel whose query does not validate");
            continue;
        }
        panels.push(panel);
    }
    if panels.is_empty() {
        tracing::info!(metric = %metric.name,
            "no statflow health dashboard: the metric has none of the measures its panels need");
        return None;
    }
    Some(DashboardInput {
        title: TITLE.to_string(),
        spec: json!({
            "version": 1,
            "range": range,
            "time_zone": "UTC",
            "refresh": REFRESH_SECONDS,
            "panels": panels,
        }),
    })
}

/// The panel `candidate` of `metric`, or why the metric cannot have it.
fn panel(
    metric: &MetricPlan,
    candidate: &Candidate,
    granularity: Duration,
) -> Result<Json, String> {
    let reads =
        |kind: &MeasureKind| kind.field().map(ToString::to_string).as_deref() == candidate.field;
    let mut measures: Vec<(&str, f64)> = Vec::new();
    for function in candidate.functions {
        measures = metric
            .measures
            .iter()
            .filter(|m| m.kind.function() == *function && reads(&m.kind))
            .map(|m| {
                let q = match m.kind {
                    MeasureKind::Quantile { q, .. } => q,
                    _ => 0.0,
                };
                (m.name.as_str(), q)
            })
            .collect();
        if !measures.is_empty() {
            break;
        }
    }
    if measures.is_empty() {
        let functions = candidate.functions.join(", ");
        return Err(match candidate.field {
            Some(field) => format!(
                "metric `{}` declares no {functions} of `{field}`",
                metric.name
            ),
            None => format!("metric `{}` declares no count()", metric.name),
        });
    }
    // p50 before p99.
    measures.sort_by(|a, b| a.1.total_cmp(&b.1));
    let dimension_of = |field: &str| {
        metric
            .dimensions
            .iter()
            .find(|d| d.path.to_string() == field)
            .map(|d| d.name.clone())
    };
    let kind = dimension_of("kind");
    // Without `kind` a count would count every kind of event; the other
    // measures read fields only one kind of event has.
    if candidate.field.is_none() && kind.is_none() {
        return Err(format!(
            "metric `{}` has no `kind` dimension to count queries apart from other events",
            metric.name
        ));
    }
    let source = candidate
        .by_source
        .then(|| dimension_of("source"))
        .flatten();
    let mut title = candidate
        .title
        .replace("{per}", &format!("per {granularity}"));
    if source.is_some() {
        title.push_str(", by source");
    }
    let filters: Vec<Json> = kind
        .iter()
        .map(|k| json!({ "dimension": k, "op": "in", "values": [candidate.kind] }))
        .collect();
    Ok(json!({
        "id": candidate.id,
        "title": title,
        "type": "lines",
        "query": {
            "metric": metric.name,
            "measures": measures.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            "group_by": source.into_iter().collect::<Vec<_>>(),
            "granularity": granularity.to_string(),
            "filters": filters,
            "limit": null,
        },
    }))
}

/// The body of `POST /v1/query` the app sends for `panel` over `range` in
/// `zone`, as `panelQuery` in `assets/builder.js` makes it.
fn panel_query(panel: &Json, range: &Json, zone: &str) -> Json {
    let q = &panel["query"];
    let over_time = matches!(panel["type"].as_str(), Some("lines" | "stacked"));
    let mut body = json!({
        "metric": q["metric"],
        "time_window": range,
        "time_zone": zone,
    });
    if q["measures"].as_array().is_some_and(|m| !m.is_empty()) {
        body["measures"] = q["measures"].clone();
    }
    let groups: Vec<Json> = q["group_by"].as_array().cloned().unwrap_or_default();
    if over_time {
        body["group_by"] = Json::Array([json!("__time")].into_iter().chain(groups).collect());
        if q["granularity"].as_str().is_some_and(|g| !g.is_empty()) {
            body["granularity"] = q["granularity"].clone();
        }
    } else if !groups.is_empty() {
        body["group_by"] = Json::Array(groups);
    }
    let conditions: Vec<Json> = q["filters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let dimension = f["dimension"].as_str()?;
            let values = f["values"].as_array().filter(|v| !v.is_empty())?;
            Some(match f["op"].as_str() {
                Some("regex") => json!({ dimension: values[0] }),
                Some("not") => json!({ "not": { dimension: values } }),
                _ => json!({ dimension: values }),
            })
        })
        .collect();
    match conditions.len() {
        0 => {}
        1 => body["filters"] = conditions[0].clone(),
        _ => body["filters"] = json!({ "and": conditions }),
    }
    if let Some(limit) = q["limit"].as_u64() {
        body["limit"] = json!(limit);
    }
    body
}

/// Makes, upgrades or removes the statflow health dashboard for `plan`
/// (see the module's documentation), and logs what it did.
pub fn keep(store: &Store, plan: &Plan) -> Result<Kept, StoreError> {
    let wanted = dashboard(plan, statflow_dataflow::ingest::wall_ms());
    let panels = wanted
        .as_ref()
        .and_then(|d| d.spec["panels"].as_array())
        .map_or(0, Vec::len);
    let kept = store.keep_builtin(KEY, wanted.as_ref())?;
    match &kept {
        Kept::Created { id, owner } => {
            tracing::info!(%id, %owner, panels, "made the statflow health dashboard")
        }
        Kept::Upgraded { id } => tracing::info!(%id, panels,
            "upgraded the statflow health dashboard to the telemetry metric's measures"),
        Kept::Current { id } => tracing::debug!(%id, "the statflow health dashboard is current"),
        Kept::Edited { id } if wanted.is_some() => tracing::info!(%id,
            "the statflow health dashboard was edited; statflow leaves it as it is"),
        Kept::Edited { id } => tracing::info!(%id,
            "the topology has no telemetry metric; the edited statflow health dashboard is kept as it is"),
        Kept::Removed { id } => tracing::info!(%id,
            "removed the statflow health dashboard: the topology has no telemetry metric any more"),
        Kept::Absent => {}
        Kept::NoOwner => tracing::info!(
            "no statflow health dashboard: there is no admin to own it (statflow user add NAME --role admin)"),
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Plan {
        let compiled = statflow_dsl::compile(text, None);
        assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
        compiled.plan.unwrap()
    }

    const NOW: i64 = 1_724_112_000_000;

    #[test]
    fn the_example_metric_gets_every_panel_each_with_a_valid_query() {
        let p = plan(
            r#"source self = telemetry()
               metric statflow from self {
                 dimensions kind, process, worker, source, metric
                 window     tumbling 10s
                 measures {
                   events      = count()
                   records     = sum(records)
                   errors      = sum(errors)
                   late        = sum(late)
                   lag         = max(lag)
                   epoch_delay = max(epoch_delay_ms)
                   query_p99   = quantile(query_ms, 0.99)
                   query_p50   = quantile(query_ms, 0.5)
                   query_avg   = avg(query_ms)
                 }
               }"#,
        );
        let d = dashboard(&p, NOW).expect("a dashboard");
        assert_eq!(d.title, TITLE);
        let panels = d.spec["panels"].as_array().unwrap();
        let ids: Vec<&str> = panels.iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "records",
                "lag",
                "epoch-delay",
                "query-latency",
                "errors",
                "late",
                "queries"
            ]
        );
        let latency = &panels[3];
        assert_eq!(
            latency["query"]["measures"],
            json!(["query_p50", "query_p99"])
        );
        assert_eq!(
            panels[0],
            json!({
                "id": "records",
                "title": "Records read per 1m, by source",
                "type": "lines",
                "query": {
                    "metric": "statflow",
                    "measures": ["records"],
                    "group_by": ["source"],
                    "granularity": "1m",
                    "filters": [{"dimension": "kind", "op": "in", "values": ["ingest"]}],
                    "limit": null,
                },
            })
        );
        assert_eq!(
            panel_query(&panels[0], &d.spec["range"], "UTC"),
            json!({
                "metric": "statflow",
                "time_window": {"kind": "relative", "last": "1h"},
                "time_zone": "UTC",
                "measures": ["records"],
                "group_by": ["__time", "source"],
                "granularity": "1m",
                "filters": {"kind": ["ingest"]},
            })
        );
    }

    #[test]
    fn panels_whose_measures_are_missing_are_left_out() {
        let p = plan(
            r#"source events = generator()
               source self = telemetry()
               metric rewards from events { window tumbling 1m  measures { n = count() } }
               metric watch from self {
                 dimensions worker
                 window     tumbling 5m
                 measures   { records = sum(records)  n = count()  slowest = max(query_ms) }
               }"#,
        );
        let d = dashboard(&p, NOW).expect("a dashboard");
        let panels = d.spec["panels"].as_array().unwrap();
        let ids: Vec<&str> = panels.iter().map(|p| p["id"].as_str().unwrap()).collect();
        // No `kind` dimension: no filters, and no count of queries.
        assert_eq!(ids, ["records", "query-latency"]);
        assert_eq!(panels[0]["title"], "Records read per 5m");
        assert_eq!(panels[0]["query"]["filters"], json!([]));
        assert_eq!(panels[1]["query"]["measures"], json!(["slowest"]));
    }

    #[test]
    fn no_telemetry_metric_no_dashboard() {
        let p = plan(
            r#"source events = generator()
               source self = telemetry()
               metric rewards from events { window tumbling 1m  measures { n = count() } }"#,
        );
        assert_eq!(dashboard(&p, NOW), None);
        let p = plan(
            r#"source self = telemetry()
               metric other from self { window tumbling 1m  measures { n = distinct(worker) } }"#,
        );
        assert_eq!(dashboard(&p, NOW), None, "no panel it could draw");
    }

    #[test]
    fn the_metric_named_statflow_is_preferred() {
        let p = plan(
            r#"source self = telemetry()
               metric first from self { window tumbling 1m  measures { n = count() } }
               metric statflow from self { window tumbling 1m  measures { r = sum(records) } }"#,
        );
        assert_eq!(
            telemetry_metric(&p).map(|m| m.name.as_str()),
            Some("statflow")
        );
    }
}
