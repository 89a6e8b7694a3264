//! Oracle tests: every answer of the engine equals a from-scratch
//! recomputation over the same events, for every window kind (session
//! windows cut from scratch: per dimension values and `by` value, runs of
//! events less than the gap apart, counted in the bucket of their start),
//! measure (the session measures too), filter form, group-by, granularity
//! and time zone, under 1, 2 and 4 workers, with out-of-order and late
//! events and some malformed records; and session answers are the same
//! whatever order the events arrive in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use statflow::dataflow::measure::{MeasureRef, SessionMeasure};
use statflow::dataflow::query::{Cell, Column, Filter, GroupKey, OrderBy, Query};
use statflow::dataflow::query_cache::CacheShared;
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

metric play from events {
  where      amount >= 0
  dimensions level
  window     session 10m by game
  retain     30d
  measures {
    n       = count()
    total   = sum(amount)
    low     = min(amount)
    high    = max(amount)
    mean    = avg(amount)
    players = distinct(user)
    median  = quantile(amount, 0.5)
  }
}

metric streaks from events {
  where      kind = "reward"
  window     session 3m by reward_type
  measures {
    n       = count()
    players = distinct(user)
    p90     = quantile(amount, 0.9)
  }
}
"#;

/// The session metrics' plan indices.
const PLAY: usize = 2;
const STREAKS: usize = 3;

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
        lines.push(line(&e));
        events.push(e);
        if i % 997 == 0 {
            lines.push(r#"{"kind": "reward", "note": "no time"}"#.to_string());
            lines.push("{broken json".to_string());
            lines.push(format!(
                r#"{{"ts": {ts}, "kind": "reward", "amount": "lots", "user": "u1"}}"#
            ));
        }
    }
    mark_late(&mut events, &lines, LATE_MS);
    (events, lines)
}

/// The topology's lateness bound.
const LATE_MS: i64 = 300_000;

/// An event as a JSON line.
fn line(e: &Event) -> String {
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
    line
}

/// Applies the lateness rule the engine documents: the file is cut into
/// slices by byte range, and within a slice an event is late when it is
/// older than the newest event read before it minus the bound. Lines that
/// decode (even those no metric counts) move the newest event; lines that
/// fail do not.
fn mark_late(events: &mut [Event], lines: &[String], late_ms: i64) {
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
            events[next_event].late = ts < before.saturating_sub(late_ms);
            next_event += 1;
        }
        newest.insert(slice, before.max(ts));
    }
    assert_eq!(next_event, events.len());
}

fn start(
    dir: &std::path::Path,
    lines: &[String],
    workers: usize,
    hourly_rollups: bool,
) -> (Engine, Plan) {
    let config = EngineConfig {
        hourly_rollups,
        workers,
        epoch_interval: std::time::Duration::from_millis(20),
        epoch_records: 700,
        batch: 100,
        dead_letter_dir: dir.join("dead"),
        ..EngineConfig::default()
    };
    start_with(TOPOLOGY, dir, lines, config)
}

fn start_with(
    topology: &str,
    dir: &std::path::Path,
    lines: &[String],
    config: EngineConfig,
) -> (Engine, Plan) {
    let path = dir.join("events.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let compiled = statflow::dsl::compile(topology, Some(dir));
    assert!(!compiled.has_errors(), "{:?}", compiled.diagnostics);
    let plan = compiled.plan.unwrap();
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

/// The session measures' values for a group: how many sessions, and their
/// durations (avg, p50, p90, max) in seconds; `sessions` is 0 and the
/// durations null for a group of late events, which belong to no session.
fn session_measure(which: SessionMeasure, durations: &[i64]) -> Cell {
    let mut seconds: Vec<f64> = durations.iter().map(|d| *d as f64 / 1000.0).collect();
    seconds.sort_by(f64::total_cmp);
    let at = |q: f64| match seconds.len() {
        0 => Cell::Null,
        n => Cell::Float(seconds[(q * (n - 1) as f64) as usize]),
    };
    match which {
        SessionMeasure::Sessions => Cell::Int(durations.len() as i64),
        SessionMeasure::AvgDuration if durations.is_empty() => Cell::Null,
        SessionMeasure::AvgDuration => {
            Cell::Float(durations.iter().sum::<i64>() as f64 / durations.len() as f64 / 1000.0)
        }
        SessionMeasure::P50Duration => at(0.5),
        SessionMeasure::P90Duration => at(0.9),
        SessionMeasure::MaxDuration => durations
            .iter()
            .max()
            .map(|m| Cell::Float(*m as f64 / 1000.0))
            .unwrap_or(Cell::Null),
    }
}

fn passes_metric(metric: usize, e: &Event) -> bool {
    match metric {
        0 => e.kind == "reward" && e.amount >= 0.0,
        1 => (e.kind == "reward" || e.kind == "bet") && !e.user.starts_with("u1"),
        PLAY => e.amount >= 0.0,
        _ => e.kind == "reward",
    }
}

fn dim(metric: usize, d: usize, e: &Event) -> Value {
    match (metric, d) {
        (0, 0) => Value::Str(e.game.as_str().into()),
        (0, 1) => e
            .reward_type
            .map(|t| Value::Str(t.into()))
            .unwrap_or(Value::Null),
        (0, 2) | (PLAY, 0) => e.level.map(Value::Int).unwrap_or(Value::Null),
        _ => Value::Str(e.kind.into()),
    }
}

/// The `by` value of a session metric's event; `None` keeps the event out
/// of every session.
fn by(metric: usize, e: &Event) -> Option<String> {
    match metric {
        PLAY => Some(e.game.clone()),
        _ => e.reward_type.map(str::to_string),
    }
}

/// The sessions of a session metric, cut from scratch over its on-time
/// events: per dimension values and `by` value, runs of events less than
/// the gap apart. Each is its dimension values, its events by time, and
/// its start.
fn sessions<'e>(
    plan: &Plan,
    metric: usize,
    events: &'e [Event],
) -> Vec<(Vec<Value>, Vec<&'e Event>)> {
    let Window::Session { gap, .. } = &plan.metrics[metric].window else {
        panic!("not a session metric")
    };
    let gap = gap.millis() as i64;
    let mut keys: BTreeMap<(Vec<Value>, String), Vec<&Event>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| !e.late && passes_metric(metric, e))
    {
        let Some(by) = by(metric, e) else { continue };
        let dims = (0..plan.metrics[metric].dimensions.len())
            .map(|d| dim(metric, d, e))
            .collect();
        keys.entry((dims, by)).or_default().push(e);
    }
    let mut out = Vec::new();
    for ((dims, _), mut evs) in keys {
        evs.sort_by_key(|e| e.ts);
        let mut run: Vec<&Event> = Vec::new();
        for e in evs {
            if run.last().is_some_and(|p| e.ts - p.ts >= gap) {
                out.push((dims.clone(), std::mem::take(&mut run)));
            }
            run.push(e);
        }
        out.push((dims, run));
    }
    out
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
    // Each group's events, and the durations of its sessions.
    let mut groups: BTreeMap<Vec<Value>, (Vec<&Event>, Vec<i64>)> = BTreeMap::new();
    if metric.window.is_session() && !q.late {
        // A session counts whole, in the bucket of its start.
        for (dims, run) in sessions(plan, q.metric, events) {
            let (start, last) = (run[0].ts, run[run.len() - 1].ts);
            if start < q.from_ms || start >= q.to_ms {
                continue;
            }
            if q.filter.as_ref().is_some_and(|f| !filter_ok(f, &dims)) {
                continue;
            }
            let key: Vec<Value> = q
                .group_by
                .iter()
                .map(|g| match g {
                    GroupKey::Dimension(d) => dims[*d].clone(),
                    GroupKey::Time => Value::Int(timebucket::floor(start, granularity, &tz)),
                })
                .collect();
            let group = groups.entry(key).or_default();
            group.0.extend(run);
            group.1.push(last - start);
        }
    }
    for e in events
        .iter()
        .filter(|e| !metric.window.is_session() || q.late && by(q.metric, e).is_some())
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
            groups.entry(key).or_default().0.push(e);
        }
    }
    groups
        .into_iter()
        .map(|(key, (evs, durations))| {
            let mut row: Vec<Cell> = key
                .into_iter()
                .zip(&q.group_by)
                .map(|(v, g)| match (g, v) {
                    (GroupKey::Time, Value::Int(t)) => Cell::Time(t),
                    (_, Value::Null) => Cell::Null,
                    (_, v) => Cell::Value(v),
                })
                .collect();
            row.extend(q.measures.iter().map(|m| {
                match statflow::dataflow::measure::measure(metric, *m).unwrap() {
                    MeasureRef::Declared(x) => measure(&x.kind, &evs),
                    MeasureRef::Session(s) => session_measure(s, &durations),
                }
            }));
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
    let asked: Vec<MeasureRef<'_>> = q
        .measures
        .iter()
        .map(|m| statflow::dataflow::measure::measure(metric, *m).unwrap())
        .collect();
    assert_eq!(
        answer.columns[keys..],
        asked
            .iter()
            .map(|m| m.name().to_string())
            .collect::<Vec<_>>()[..],
        "{label}: measure columns"
    );
    let position = |wanted: &dyn Fn(&MeasureRef<'_>) -> bool| asked.iter().position(wanted);
    let count_at =
        position(&|m| matches!(m, MeasureRef::Declared(x) if x.kind == MeasureKind::Count));
    let sessions_at = position(&|m| *m == MeasureRef::Session(SessionMeasure::Sessions));
    let size_at = |at: Option<usize>, t: &[Cell]| {
        at.map(|c| if let Cell::Int(n) = t[keys + c] { n } else { 0 })
            .unwrap_or(i64::MAX)
    };
    for (r, t) in rows.iter().zip(&truth) {
        assert_eq!(&r[..keys], &t[..keys], "{label}: group keys");
        for (i, m) in asked.iter().enumerate() {
            let ok = match m {
                MeasureRef::Declared(x) => same(
                    Some(&x.kind),
                    &r[keys + i],
                    &t[keys + i],
                    size_at(count_at, t),
                ),
                // Duration quantiles are exact up to 64 sessions, like any quantile.
                MeasureRef::Session(s) if s.is_quantile() => same(
                    Some(&MeasureKind::Quantile {
                        field: statflow::dsl::FieldPath::parse("duration"),
                        q: 0.5,
                    }),
                    &r[keys + i],
                    &t[keys + i],
                    size_at(sessions_at, t),
                ),
                MeasureRef::Session(_) => same(None, &r[keys + i], &t[keys + i], 0),
            };
            assert!(
                ok,
                "{label}: measure {} of group {:?}: engine {:?}, truth {:?}",
                m.name(),
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
        measures: (0..statflow::dataflow::measure::measures(&plan.metrics[metric]).len()).collect(),
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
    // Whole hours of these two come from the hourly rollup, their ragged
    // ends from the 1-minute rows.
    out.push((
        "hourly by game, from and to inside hours",
        Query {
            group_by: vec![GroupKey::Dimension(0), GroupKey::Time],
            granularity_ms: Some(3_600_000),
            from_ms: T0 + 3 * 60_000 + 500,
            to_ms: T0 + 20 * 3_600_000 + 41 * 60_000,
            ..base(0, plan)
        },
    ));
    out.push((
        "total by type, from and to inside hours",
        Query {
            group_by: vec![GroupKey::Dimension(1)],
            from_ms: T0 + 59 * 60_000,
            to_ms: T0 + 23 * 3_600_000 + 60_000,
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
    out.extend(session_queries(plan));
    out
}

/// Queries on the session metrics: every measure (declared and session),
/// group-bys, granularities and time zones, filters, order and limit, a
/// window that cuts through sessions, and the late rows.
fn session_queries(plan: &Plan) -> Vec<(&'static str, Query)> {
    vec![
        ("sessions in total", base(PLAY, plan)),
        (
            "sessions by level",
            Query {
                group_by: vec![GroupKey::Dimension(0)],
                ..base(PLAY, plan)
            },
        ),
        (
            "sessions by start minute",
            Query {
                group_by: vec![GroupKey::Time],
                ..base(PLAY, plan)
            },
        ),
        (
            "sessions per hour in Asia/Kolkata by level",
            Query {
                group_by: vec![GroupKey::Time, GroupKey::Dimension(0)],
                granularity_ms: Some(3_600_000),
                time_zone: Some("Asia/Kolkata".into()),
                ..base(PLAY, plan)
            },
        ),
        (
            "sessions per day in +08:00",
            Query {
                group_by: vec![GroupKey::Time],
                granularity_ms: Some(86_400_000),
                time_zone: Some("+08:00".into()),
                ..base(PLAY, plan)
            },
        ),
        (
            "sessions starting in a window that cuts through sessions, 5m buckets in -05:30",
            Query {
                group_by: vec![GroupKey::Time],
                granularity_ms: Some(300_000),
                time_zone: Some("-05:30".into()),
                from_ms: T0 + 3_600_000 + 17_000,
                to_ms: T0 + 3 * 3_600_000 - 250_000,
                ..base(PLAY, plan)
            },
        ),
        (
            "sessions of some levels, session measures only",
            Query {
                filter: Some(Filter::Or(vec![
                    Filter::In(0, vec![Value::Int(1), Value::Int(3)]),
                    Filter::Not(Box::new(Filter::Range {
                        dimension: 0,
                        gte: Some(0.0),
                        gt: None,
                        lt: None,
                        lte: None,
                    })),
                ])),
                group_by: vec![GroupKey::Dimension(0)],
                measures: (7..12).collect(),
                ..base(PLAY, plan)
            },
        ),
        (
            "levels with the most sessions",
            Query {
                group_by: vec![GroupKey::Dimension(0)],
                order_by: vec![OrderBy {
                    column: Column::Measure(7),
                    desc: true,
                }],
                limit: Some(2),
                ..base(PLAY, plan)
            },
        ),
        (
            "late rows of a session metric",
            Query {
                late: true,
                group_by: vec![GroupKey::Dimension(0), GroupKey::Time],
                granularity_ms: Some(3_600_000),
                ..base(PLAY, plan)
            },
        ),
        ("streaks in total", base(STREAKS, plan)),
        (
            "streaks per 15 minutes",
            Query {
                group_by: vec![GroupKey::Time],
                granularity_ms: Some(900_000),
                ..base(STREAKS, plan)
            },
        ),
        (
            "streaks per hour in Asia/Kolkata",
            Query {
                group_by: vec![GroupKey::Time],
                granularity_ms: Some(3_600_000),
                time_zone: Some("Asia/Kolkata".into()),
                ..base(STREAKS, plan)
            },
        ),
    ]
}

/// How the arrival order reshapes a session metric's sessions: taking the
/// on-time events in file order, how many join two sessions seen so far
/// into one, and how many start a session earlier than it seemed to.
fn reshapes(plan: &Plan, metric: usize, events: &[Event]) -> (usize, usize) {
    let Window::Session { gap, .. } = &plan.metrics[metric].window else {
        panic!("not a session metric")
    };
    let gap = gap.millis() as i64;
    // Per (dimension values, `by` value), the spans of the sessions so far.
    type Key = (Vec<Value>, String);
    let mut spans: HashMap<Key, Vec<(i64, i64)>> = HashMap::new();
    let (mut joined, mut moved) = (0, 0);
    for e in events
        .iter()
        .filter(|e| !e.late && passes_metric(metric, e))
    {
        let Some(by) = by(metric, e) else { continue };
        let dims = (0..plan.metrics[metric].dimensions.len())
            .map(|d| dim(metric, d, e))
            .collect();
        let list = spans.entry((dims, by)).or_default();
        let (near, mut far): (Vec<_>, Vec<_>) = list
            .iter()
            .partition(|(first, last)| e.ts - last < gap && first - e.ts < gap);
        joined += usize::from(near.len() > 1);
        moved += usize::from(!near.is_empty() && near.iter().all(|(first, _)| e.ts < *first));
        let first = near.iter().map(|s| s.0).chain([e.ts]).min().unwrap();
        let last = near.iter().map(|s| s.1).chain([e.ts]).max().unwrap();
        far.push((first, last));
        *list = far;
    }
    (joined, moved)
}

/// With hourly rows, so that long queries read them: the answers must
/// not depend on it.
fn run(workers: usize) {
    run_hourly(workers, true);
}

fn run_hourly(workers: usize, hourly_rollups: bool) {
    let (events, lines) = events(7, 6_000);
    let dir = tempfile::tempdir().unwrap();
    let (engine, plan) = start(dir.path(), &lines, workers, hourly_rollups);
    for (label, q) in queries(&plan) {
        check(
            &plan,
            &engine,
            q,
            &events,
            &format!("{workers} workers, {label}"),
        );
    }
    // The input reshapes sessions: out-of-order events join sessions that
    // seemed apart and move starts earlier.
    for metric in [PLAY, STREAKS] {
        let (joined, moved) = reshapes(&plan, metric, &events);
        assert!(
            joined >= 3 && moved >= 10,
            "metric {metric}: {joined} joins, {moved} moves"
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

/// Without hourly rows (the default): every answer from the buckets alone.
#[test]
fn two_workers_without_hourly_rows() {
    run_hourly(2, false);
}

#[test]
fn four_workers() {
    run(4);
}

/// Sessions do not depend on the order events arrive in: the same events
/// (with a lateness bound of two days, so that none is set aside) in file
/// order, backwards, and shuffled in small blocks, read a few records per
/// epoch so that pieces of one session arrive epochs apart, on 1, 2 and 4
/// workers, give answers equal to the oracle's and to one another.
#[test]
fn sessions_are_the_same_whatever_the_arrival_order() {
    let (mut events, _) = events(13, 4_000);
    for e in &mut events {
        e.late = false;
    }
    let topology = TOPOLOGY.replace("late = 5m", "late = 2d");
    assert_ne!(topology, TOPOLOGY);
    let forward: Vec<usize> = (0..events.len()).collect();
    let backward: Vec<usize> = forward.iter().rev().copied().collect();
    let mut shuffled = forward.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for block in shuffled.chunks_mut(40) {
        use rand::seq::SliceRandom;
        block.shuffle(&mut rng);
    }
    let mut reference: Option<Vec<Vec<Vec<Cell>>>> = None;
    for (order, workers, name) in [
        (&forward, 1, "in file order"),
        (&backward, 2, "backwards"),
        (&shuffled, 4, "shuffled"),
    ] {
        let ordered: Vec<Event> = order.iter().map(|i| events[*i].clone()).collect();
        let lines: Vec<String> = ordered.iter().map(line).collect();
        let dir = tempfile::tempdir().unwrap();
        let config = EngineConfig {
            workers,
            epoch_interval: std::time::Duration::from_millis(1),
            epoch_records: 20,
            batch: 7,
            dead_letter_dir: dir.path().join("dead"),
            ..EngineConfig::default()
        };
        let (engine, plan) = start_with(&topology, dir.path(), &lines, config);
        for metric in [PLAY, STREAKS] {
            let (joined, moved) = reshapes(&plan, metric, &ordered);
            assert!(
                joined + moved >= 10,
                "{name}: metric {metric}: {joined} joins, {moved} moves"
            );
        }
        let mut answers = Vec::new();
        for (label, q) in session_queries(&plan).into_iter().filter(|(_, q)| !q.late) {
            check(
                &plan,
                &engine,
                q.clone(),
                &ordered,
                &format!("{name}, {label}"),
            );
            answers.push(engine.query_blocking(q).unwrap().rows);
        }
        engine.shutdown();
        match &reference {
            None => reference = Some(answers),
            Some(first) => assert!(first == &answers, "{name}: answers differ from file order"),
        }
    }
}

/// Reading while events still arrive: every answer is a consistent cut, so
/// counts only grow between answers and the last answer is exact.
/// Two workers reading `lines` from a file in `dir` in epochs of 200
/// records, so that queries see many epochs while ingest runs.
fn start_in_small_epochs(dir: &std::path::Path, lines: &[String]) -> (Plan, Engine) {
    std::fs::write(dir.join("events.jsonl"), lines.join("\n") + "\n").unwrap();
    let plan = statflow::dsl::compile(TOPOLOGY, Some(dir)).plan.unwrap();
    let config = EngineConfig {
        workers: 2,
        epoch_interval: std::time::Duration::from_millis(5),
        epoch_records: 200,
        batch: 50,
        dead_letter_dir: dir.join("dead"),
        ..EngineConfig::default()
    };
    let engine = Engine::start(plan.clone(), config, statflow::runtime::source::readers()).unwrap();
    (plan, engine)
}

/// The query cache gives a worker's groups of an hour again only while no
/// update has reached that hour: the same queries, asked over and over
/// while out-of-order and late events keep landing in hours already
/// given, end at the truth, and the cache both gave hours and dropped
/// hours that events reached after it kept them.
#[test]
fn cached_hours_are_dropped_when_events_reach_them() {
    let (events, lines) = events(23, 20_000);
    let dir = tempfile::tempdir().unwrap();
    let (plan, engine) = start_in_small_epochs(dir.path(), &lines);
    let hourly = |late: bool, filter: Option<Filter>, group_by: Vec<GroupKey>| Query {
        group_by,
        granularity_ms: Some(3_600_000),
        filter,
        late,
        ..base(0, &plan)
    };
    let shapes = [
        hourly(false, None, vec![GroupKey::Time]),
        hourly(true, None, vec![GroupKey::Time]),
        hourly(
            false,
            Some(Filter::Regex(1, "task|bonus".into())),
            vec![GroupKey::Dimension(1), GroupKey::Time],
        ),
        // Whole hours without time buckets: one total per hour, merged.
        Query {
            from_ms: T0,
            to_ms: T0 + 12 * 3_600_000,
            ..base(0, &plan)
        },
    ];
    while !engine.shared().done() {
        for q in &shapes {
            engine.query_blocking(q.clone()).unwrap();
        }
    }
    for (i, q) in shapes.iter().enumerate() {
        // Twice: once as the cache has it at the end of ingest, once more
        // when every hour is kept.
        check(&plan, &engine, q.clone(), &events, &format!("shape {i}"));
        check(
            &plan,
            &engine,
            q.clone(),
            &events,
            &format!("shape {i}, again"),
        );
    }
    let counted = |f: fn(&CacheShared) -> &AtomicU64| -> u64 {
        engine
            .shared()
            .workers
            .iter()
            .map(|w| f(&w.query_cache).load(Ordering::Relaxed))
            .sum()
    };
    let (hits, invalidated) = (counted(|c| &c.hits), counted(|c| &c.invalidated));
    assert!(hits > 0, "the cache gave no hour");
    assert!(invalidated > 0, "no event reached a kept hour");
}

#[test]
fn answers_during_ingest_grow_to_the_truth() {
    let (events, lines) = events(11, 20_000);
    let dir = tempfile::tempdir().unwrap();
    let (plan, engine) = start_in_small_epochs(dir.path(), &lines);
    let q = Query {
        measures: vec![0],
        ..base(0, &plan)
    };
    let mut last = (0u64, 0i64);
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
        last = (a.as_of.epoch, n);
    }
    check(&plan, &engine, base(0, &plan), &events, "after ingest");
}
