//! Oracle tests: every answer of the engine equals a from-scratch
//! recomputation over the same events, for every window kind, measure,
//! filter form, group-by, granularity and time zone, under 1, 2 and 4
//! workers, with out-of-order and late events and some malformed records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statflow::dataflow::query::{Cell, Column, Filter, GroupKey, OrderBy, Query};
use statflow::dataflow::timebucket;
use statflow::dataflow::value::Value;
use statflow::dsl::{MeasureKind, Plan, Window};
use statflow::runtime::engine::{Engine, EngineConfig};

const TOPOLOGY: &str = r#"
source events = file("events.jsonl") {
  time = ts as epoch_millis
  late = 5m
}

metric by_minute from events {
  where      kind = "reward" and amount >= 0
  dimensions game, reward_type, level
  window     tumbling 1m
  retain     30d
  measures {
    n       = count()
    total   = sum(amount)
    low     = min(amount)
    high    = max(amount)
    mean    = avg(amount)
    players = distinct(user)
    median  = quantile(amount, 0.5)
    p90     = quantile(amount, 0.9)
  }
}

metric sliding from events {
  where      kind in ["reward", "bet"] and not (user =~ "u1.*")
  dimensions kind
  window     hopping 10m every 2m
  measures {
    n       = count()
    total   = sum(amount)
    players = distinct(user)
  }
}
"#;

/// One generated event, as the oracle sees it.
#[derive(Debug, Clone)]
struct Event {
    ts: i64,
    kind: &'static str,
    game: String,
    reward_type: Option<&'static str>,
    level: Option<i64>,
    amount: f64,
    user: String,
    /// Older than the newest event before it in its file slice minus the
    /// 5m bound: counted in the metrics' late rows only.
    late: bool,
}

/// 2024-08-20T00:00:00Z
const T0: i64 = 1_724_112_000_000;

fn events(seed: u64, n: usize) -> (Vec<Event>, Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let kinds = ["reward", "reward", "bet", "login"];
    let types = ["task", "bonus", "jackpot", "daily", "fuc", "tax-up"];
    let mut events = Vec::new();
    let mut lines = Vec::new();
    for i in 0..n {
        // 30 hours of event time, in arrival order, with 10% out of order by up
        // to 4 minutes and 3% late by up to 40 minutes (beyond the 5m bound).
        let nominal = T0 - 3 * 3_600_000 + (i as i64) * 30 * 3_600_000 / n as i64;
        let r: f64 = rng.random();
        let ts = if r < 0.03 {
            nominal - rng.random_range(0..2_400_000)
        } else if r < 0.13 {
            nominal - rng.random_range(0..240_000)
        } else {
            nominal
        };
        let e = Event {
            ts,
            kind: kinds[rng.random_range(0..kinds.len())],
            game: format!("g{}", rng.random_range(1..=7)),
            reward_type: if rng.random_bool(0.95) {
                Some(types[rng.random_range(0..types.len())])
            } else {
                None
            },
            level: if rng.random_bool(0.5) {
                Some(rng.random_range(1..=3))
            } else {
                None
            },
            amount: (rng.random_range(0..100_000) as f64) / 100.0
                - if rng.random_bool(0.02) { 2000.0 } else { 0.0 },
            user: format!("u{}", rng.random_range(0..400)),
            late: false,
        };
        let mut line = format!(
            r#"{{"ts": {}, "kind": "{}", "game": "{}", "amount": {}, "user": "{}""#,
            e.ts, e.kind, e.game, e.amount, e.user
        );
        if let Some(t) = e.reward_type {
            line.push_str(&format!(r#", "reward_type": "{t}""#));
        }
        if let Some(l) = e.level {
            line.push_str(&format!(r#", "level": {l}"#));
        }
        line.push('}');
        lines.push(line);
        events.push(e);
        if i % 997 == 0 {
            lines.push(r#"{"kind": "reward", "note": "no time"}"#.to_string());
            lines.push("{broken json".to_string());
            lines.push(format!(
                r#"{{"ts": {ts}, "kind": "reward", "amount": "lots", "user": "u1"}}"#
            ));
        }
    }
    mark_late(&mut events, &lines);
    (events, lines)
}

/// Applies the lateness rule the engine documents: the file is cut into
/// slices by byte range, and within a slice an event is late when it is
/// older than the newest event read before it minus the bound. Lines that
/// decode (even those no metric counts) move the newest event; lines that
/// fail do not.
fn mark_late(events: &mut [Event], lines: &[String]) {
    use statflow::runtime::source::file::slice_of;
    let len: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    let mut newest: HashMap<u64, i64> = HashMap::new();
    let mut offset = 0u64;
    let mut next_event = 0;
    for line in lines {
        let slice = slice_of(offset, len);
        offset += line.len() as u64 + 1;
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(ts) = value["ts"].as_i64() else {
            continue;
        };
        let before = newest.get(&slice).copied().unwrap_or(i64::MIN);
        if value["amount"].is_number() {
            // One of the events, in order.
            events[next_event].late = ts < before.saturating_sub(300_000);
            next_event += 1;
        }
        newest.insert(slice, before.max(ts));
    }
    assert_eq!(next_event, events.len());
}

fn start(dir: &std::path::Path, lines: &[String], workers: usize) -> (Engine, Plan) {
    let path = dir.join("events.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let compiled = statflow::dsl::compile(TOPOLOGY, Some(dir));
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    let plan = compiled.plan.unwrap();
    let config = EngineConfig {
        workers,
        epoch_interval: std::time::Duration::from_millis(20),
        epoch_records: 700,
        batch: 100,
        dead_letter_dir: dir.join("dead"),
        ..EngineConfig::default()
    };
    let engine = Engine::start(plan.clone(), config, statflow::runtime::source::readers()).unwrap();
    engine.wait_until_done().unwrap();
    (engine, plan)
}

/// The oracle's value of one measure over a group's events.
fn measure(kind: &MeasureKind, events: &[&Event]) -> Cell {
    let amounts: Vec<f64> = events.iter().map(|e| e.amount).collect();
    match kind {
        MeasureKind::Count => Cell::Int(events.len() as i64),
        MeasureKind::Sum { .. } => Cell::Float(amounts.iter().sum()),
        MeasureKind::Min { .. } => amounts
            .iter()
            .copied()
            .reduce(f64::min)
            .map(Cell::Float)
            .unwrap_or(Cell::Null),
        MeasureKind::Max { .. } => amounts
            .iter()
            .copied()
            .reduce(f64::max)
            .map(Cell::Float)
            .unwrap_or(Cell::Null),
        MeasureKind::Avg { .. } => Cell::Float(amounts.iter().sum::<f64>() / amounts.len() as f64),
        MeasureKind::Distinct { .. } => Cell::Int(
            events
                .iter()
                .map(|e| e.user.as_str())
                .collect::<BTreeSet<_>>()
                .len() as i64,
        ),
        MeasureKind::Quantile { q, .. } => {
            let mut sorted = amounts.clone();
            sorted.sort_by(f64::total_cmp);
            Cell::Float(sorted[(q * (sorted.len() - 1) as f64) as usize])
        }
    }
}

fn passes_metric(metric: usize, e: &Event) -> bool {
    match metric {
        0 => e.kind == "reward" && e.amount >= 0.0,
        _ => (e.kind == "reward" || e.kind == "bet") && !e.user.starts_with("u1"),
    }
}

fn dim(metric: usize, d: usize, e: &Event) -> Value {
    match (metric, d) {
        (0, 0) => Value::Str(e.game.clone()),
        (0, 1) => e
            .reward_type
            .map(|t| Value::Str(t.into()))
            .unwrap_or(Value::Null),
        (0, 2) => e.level.map(Value::Int).unwrap_or(Value::Null),
        _ => Value::Str(e.kind.into()),
    }
}

fn filter_ok(f: &Filter, dims: &[Value]) -> bool {
    match f {
        Filter::Eq(d, v) => &dims[*d] == v,
        Filter::In(d, vs) => vs.contains(&dims[*d]),
        Filter::Regex(d, p) => {
            let re = regex::Regex::new(&format!("^(?:{p})$")).unwrap();
            match &dims[*d] {
                Value::Null => false,
                v => re.is_match(&v.to_string()),
            }
        }
        Filter::Range {
            dimension,
            gte,
            gt,
            lt,
            lte,
        } => match dims[*dimension].as_f64() {
            None => false,
            Some(x) => {
                gte.is_none_or(|b| x >= b)
                    && gt.is_none_or(|b| x > b)
                    && lt.is_none_or(|b| x < b)
                    && lte.is_none_or(|b| x <= b)
            }
        },
        Filter::Not(f) => !filter_ok(f, dims),
        Filter::And(all) => all.iter().all(|f| filter_ok(f, dims)),
        Filter::Or(any) => any.iter().any(|f| filter_ok(f, dims)),
    }
}

/// Recomputes a query from the events.
fn oracle(plan: &Plan, q: &Query, events: &[Event]) -> Vec<Vec<Cell>> {
    let metric = &plan.metrics[q.metric];
    let step = metric.window.step().millis() as i64;
    let tz = timebucket::parse_time_zone(q.time_zone.as_deref().unwrap_or("Z")).unwrap();
    let granularity = q.granularity_ms.map(|g| g as i64).unwrap_or(step);
    let mut groups: BTreeMap<Vec<Value>, Vec<&Event>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.late == q.late && passes_metric(q.metric, e))
    {
        let pane = e.ts.div_euclid(step) * step;
        let dims: Vec<Value> = (0..metric.dimensions.len())
            .map(|d| dim(q.metric, d, e))
            .collect();
        if let Some(f) = &q.filter {
            if !filter_ok(f, &dims) {
                continue;
            }
        }
        // Which time buckets this event's pane counts in.
        let buckets: Vec<i64> = match (&metric.window, q.group_by.contains(&GroupKey::Time)) {
            (_, false) => {
                if pane >= q.from_ms && pane < q.to_ms {
                    vec![0]
                } else {
                    vec![]
                }
            }
            (Window::Hopping { size, .. }, true) => {
                // Brute force: every bucket start within reach.
                let size = size.millis() as i64;
                let mut out = Vec::new();
                let mut s = timebucket::floor(q.from_ms, granularity, &tz);
                while s < q.to_ms {
                    // A row spans its window, or its whole bucket when longer.
                    let bucket_end = timebucket::next(s, granularity, &tz).min(q.to_ms);
                    let end = (s + size).max(bucket_end);
                    if s >= q.from_ms && s <= pane && pane < end {
                        out.push(s);
                    }
                    s = timebucket::next(s, granularity, &tz);
                }
                out
            }
            (_, true) => {
                if pane >= q.from_ms && pane < q.to_ms {
                    vec![timebucket::floor(pane, granularity, &tz)]
                } else {
                    vec![]
                }
            }
        };
        for b in buckets {
            let key: Vec<Value> = q
                .group_by
                .iter()
                .map(|g| match g {
                    GroupKey::Dimension(d) => dims[*d].clone(),
                    GroupKey::Time => Value::Int(b),
                })
                .collect();
            groups.entry(key).or_default().push(e);
        }
    }
    groups
        .into_iter()
        .map(|(key, evs)| {
            let mut row: Vec<Cell> = key
                .into_iter()
                .zip(&q.group_by)
                .map(|(v, g)| match (g, v) {
                    (GroupKey::Time, Value::Int(t)) => Cell::Time(t),
                    (_, Value::Null) => Cell::Null,
                    (_, v) => Cell::Value(v),
                })
                .collect();
            row.extend(
                q.measures
                    .iter()
                    .map(|m| measure(&metric.measures[*m].kind, &evs)),
            );
            row
        })
        .collect()
}

/// Compares one cell: sums exactly (to rounding), distinct within the
/// sketch's bound, quantiles within the sketch's 1% relative accuracy.
fn same(kind: Option<&MeasureKind>, engine: &Cell, truth: &Cell, group_size: i64) -> bool {
    match (kind, engine, truth) {
        (Some(MeasureKind::Distinct { .. }), Cell::Int(a), Cell::Int(b)) => {
            // Exact below 128 values; then HyperLogLog++ with 1.6% standard error (allow 5σ).
            if *b < 128 {
                a == b
            } else {
                ((a - b).abs() as f64) <= 0.08 * *b as f64
            }
        }
        (Some(MeasureKind::Quantile { .. }), Cell::Float(a), Cell::Float(b)) => {
            if group_size <= 64 {
                a == b
            } else {
                (a - b).abs() <= 0.0101 * b.abs() + 1e-9
            }
        }
        (_, Cell::Float(a), Cell::Float(b)) => (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
        (_, a, b) => a == b,
    }
}

fn check(plan: &Plan, engine: &Engine, q: Query, events: &[Event], label: &str) {
    let answer = engine
        .query_blocking(q.clone())
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let mut truth = oracle(plan, &q, events);
    let mut rows = answer.rows.clone();
    let keys = q.group_by.len();
    let cmp = |a: &Vec<Cell>, b: &Vec<Cell>| {
        format!("{:?}", &a[..keys]).cmp(&format!("{:?}", &b[..keys]))
    };
    if q.order_by.is_empty() {
        rows.sort_by(cmp);
        truth.sort_by(cmp);
    } else {
        // Order the truth as asked, ties by the group keys, then cut it.
        let position = |c: &Column| match c {
            Column::Key(k) => q.group_by.iter().position(|g| g == k).unwrap(),
            Column::Measure(m) => keys + q.measures.iter().position(|x| x == m).unwrap(),
        };
        let number = |c: &Cell| match c {
            Cell::Int(i) => *i as f64,
            Cell::Float(f) => *f,
            _ => f64::NEG_INFINITY,
        };
        truth.sort_by(|a, b| {
            for o in &q.order_by {
                let at = position(&o.column);
                let ord = number(&a[at]).total_cmp(&number(&b[at]));
                let ord = if o.desc { ord.reverse() } else { ord };
                if ord.is_ne() {
                    return ord;
                }
            }
            cmp(a, b)
        });
    }
    if let Some(limit) = q.limit {
        truth.truncate(limit);
    }
    assert_eq!(
        rows.len(),
        truth.len(),
        "{label}: row count\nengine: {:?}\ntruth: {:?}",
        rows.first(),
        truth.first()
    );
    let metric = &plan.metrics[q.metric];
    let count_at = q
        .measures
        .iter()
        .position(|m| matches!(metric.measures[*m].kind, MeasureKind::Count));
    for (r, t) in rows.iter().zip(&truth) {
        assert_eq!(&r[..keys], &t[..keys], "{label}: group keys");
        let size = count_at
            .map(|c| if let Cell::Int(n) = t[keys + c] { n } else { 0 })
            .unwrap_or(i64::MAX);
        for (i, m) in q.measures.iter().enumerate() {
            let kind = &metric.measures[*m].kind;
            assert!(
                same(Some(kind), &r[keys + i], &t[keys + i], size),
                "{label}: measure {} of group {:?}: engine {:?}, truth {:?}",
                metric.measures[*m].name,
                &t[..keys],
                r[keys + i],
                t[keys + i]
            );
        }
    }
}

fn base(metric: usize, plan: &Plan) -> Query {
    Query {
        metric,
        from_ms: T0 - 2 * 3_600_000,
        to_ms: T0 + 26 * 3_600_000,
        filter: None,
        group_by: vec![],
        granularity_ms: None,
        time_zone: None,
        measures: (0..plan.metrics[metric].measures.len()).collect(),
        order_by: vec![],
        limit: None,
        late: false,
    }
}

fn queries(plan: &Plan) -> Vec<(&'static str, Query)> {
    let s = |x: &str| Value::Str(x.into());
    let mut out = vec![("total", base(0, plan))];
    out.push((
        "by game and type",
        Query {
            group_by: vec![GroupKey::Dimension(0), GroupKey::Dimension(1)],
            ..base(0, plan)
        },
    ));
    out.push((
        "by minute",
        Query {
            group_by: vec![GroupKey::Time],
            ..base(0, plan)
        },
    ));
    out.push((
        "5m buckets in +08:00, narrow window",
        Query {
            group_by: vec![GroupKey::Time, GroupKey::Dimension(2)],
            granularity_ms: Some(300_000),
            time_zone: Some("+08:00".into()),
            from_ms: T0 + 3_600_000 + 17_000,
            to_ms: T0 + 5 * 3_600_000,
            ..base(0, plan)
        },
    ));
    out.push((
        "hourly in Asia/Kolkata",
        Query {
            group_by: vec![GroupKey::Time],
            granularity_ms: Some(3_600_000),
            time_zone: Some("Asia/Kolkata".into()),
            ..base(0, plan)
        },
    ));
    out.push((
        "daily in +08:00 by type",
        Query {
            group_by: vec![GroupKey::Dimension(1), GroupKey::Time],
            granularity_ms: Some(86_400_000),
            time_zone: Some("+08:00".into()),
            ..base(0, plan)
        },
    ));
    out.push((
        "eq filter",
        Query {
            filter: Some(Filter::Eq(0, s("g3"))),
            group_by: vec![GroupKey::Dimension(1)],
            ..base(0, plan)
        },
    ));
    out.push((
        "regex and set",
        Query {
            filter: Some(Filter::And(vec![
                Filter::Regex(1, "fuc|tax-up".into()),
                Filter::In(0, vec![s("g1"), s("g2"), s("g5")]),
            ])),
            group_by: vec![GroupKey::Dimension(0), GroupKey::Dimension(1)],
            ..base(0, plan)
        },
    ));
    out.push((
        "range, not, or",
        Query {
            filter: Some(Filter::Or(vec![
                Filter::Range {
                    dimension: 2,
                    gte: Some(2.0),
                    gt: None,
                    lt: Some(3.5),
                    lte: None,
                },
                Filter::Not(Box::new(Filter::Regex(0, "g[1-5]".into()))),
            ])),
            group_by: vec![GroupKey::Dimension(2), GroupKey::Dimension(0)],
            ..base(0, plan)
        },
    ));
    out.push((
        "ordered and limited",
        Query {
            group_by: vec![GroupKey::Dimension(0)],
            order_by: vec![OrderBy {
                column: Column::Measure(1),
                desc: true,
            }],
            limit: Some(3),
            ..base(0, plan)
        },
    ));
    out.push((
        "late rows by game and hour",
        Query {
            late: true,
            group_by: vec![GroupKey::Dimension(0), GroupKey::Time],
            granularity_ms: Some(3_600_000),
            ..base(0, plan)
        },
    ));
    out.push((
        "late rows of a hopping metric",
        Query {
            late: true,
            ..base(1, plan)
        },
    ));
    out.push(("hopping total", base(1, plan)));
    out.push((
        "hopping windows every 2m",
        Query {
            group_by: vec![GroupKey::Time, GroupKey::Dimension(0)],
            ..base(1, plan)
        },
    ));
    out.push((
        "hopping windows every 30m in +05:30",
        Query {
            group_by: vec![GroupKey::Time],
            granularity_ms: Some(1_800_000),
            time_zone: Some("+05:30".into()),
            from_ms: T0 + 600_000,
            to_ms: T0 + 12 * 3_600_000,
            ..base(1, plan)
        },
    ));
    out.push((
        "hopping metric by day in Asia/Kolkata: each row spans its whole day",
        Query {
            group_by: vec![GroupKey::Time, GroupKey::Dimension(0)],
            granularity_ms: Some(86_400_000),
            time_zone: Some("Asia/Kolkata".into()),
            ..base(1, plan)
        },
    ));
    out
}

fn run(workers: usize) {
    let (events, lines) = events(7, 6_000);
    let dir = tempfile::tempdir().unwrap();
    let (engine, plan) = start(dir.path(), &lines, workers);
    for (label, q) in queries(&plan) {
        check(
            &plan,
            &engine,
            q,
            &events,
            &format!("{workers} workers, {label}"),
        );
    }
    // Malformed records are counted and dead-lettered, never counted as events.
    let errors: u64 = engine
        .shared()
        .workers
        .iter()
        .map(|w| {
            w.sources[0]
                .errors
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    // Lines without a time or not JSON; the line whose `amount` is text
    // passes no metric's `where`, so no measure needs its amount.
    let bad = lines
        .iter()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).map_or(true, |v| v["ts"].is_null())
        })
        .count();
    assert_eq!(errors as usize, bad);
    // Late events are counted per metric and reported with every answer.
    let late = events
        .iter()
        .filter(|e| e.late && passes_metric(0, e))
        .count() as u64;
    assert!(late > 10, "the input has late events: {late}");
    let answer = engine.query_blocking(base(0, &plan)).unwrap();
    assert_eq!(answer.as_of.sources.len(), 1);
    assert_eq!(answer.as_of.sources[0].late, late);
    let dead: usize = std::fs::read_dir(dir.path().join("dead"))
        .unwrap()
        .map(|f| {
            std::fs::read_to_string(f.unwrap().path())
                .unwrap()
                .lines()
                .count()
        })
        .sum();
    assert_eq!(dead, bad);
    engine.shutdown();
}

#[test]
fn one_worker() {
    run(1);
}

#[test]
fn two_workers() {
    run(2);
}

#[test]
fn four_workers() {
    run(4);
}

/// Reading while events still arrive: every answer is a consistent cut, so
/// counts only grow between answers and the last answer is exact.
#[test]
fn answers_during_ingest_grow_to_the_truth() {
    let (events, lines) = events(11, 20_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in &lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let plan = statflow::dsl::compile(TOPOLOGY, Some(dir.path()))
        .plan
        .unwrap();
    let config = EngineConfig {
        workers: 2,
        epoch_interval: std::time::Duration::from_millis(5),
        epoch_records: 200,
        batch: 50,
        dead_letter_dir: dir.path().join("dead"),
        ..EngineConfig::default()
    };
    let engine = Arc::new(
        Engine::start(plan.clone(), config, statflow::runtime::source::readers()).unwrap(),
    );
    let q = Query {
        measures: vec![0],
        ..base(0, &plan)
    };
    let mut last = (0u64, 0i64);
    let mut seen_partial = false;
    while !engine.shared().done() {
        let a = engine.query_blocking(q.clone()).unwrap();
        let n = match a.rows.first().map(|r| &r[0]) {
            Some(Cell::Int(n)) => *n,
            _ => 0,
        };
        assert!(
            a.as_of.epoch >= last.0 && n >= last.1,
            "answers went back: {last:?} then {:?}",
            (a.as_of.epoch, n)
        );
        seen_partial |= n > 0;
        last = (a.as_of.epoch, n);
    }
    let _ = seen_partial;
    check(&plan, &engine, base(0, &plan), &events, "after ingest");
    let _: HashMap<(), ()> = HashMap::new();
}
