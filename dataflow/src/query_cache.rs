//! The query cache: each worker keeps what its shard gave a query for each
//! whole hour, and gives it again while no update has reached that hour.
//!
//! Dashboards ask the same questions over and over: the last 24 hours by
//! hour, refreshed every few seconds. Nearly all of those hours are done;
//! reading their rows again gives the same groups. So a worker keeps, per
//! query *shape* (the query without its time range, order and limit) and
//! per whole hour of event time, the partial groups its shard gave for the
//! rows of panes starting in that hour, with the epoch they were read at.
//!
//! Exact, not approximate: [`Touches`] records, for each stored metric and
//! hour, the newest epoch any update to that hour's rows can carry (every
//! batch the rollup accepts is looked at, whatever made it: events, late
//! events, retention's retractions, backfills, restored rows, sessions
//! re-cut). A kept hour read at epoch `e` is given for a read at `as_of`
//! only when no update to it is newer than both `e` and `as_of`: then its
//! rows are the same at both epochs, and so are its groups. Anything else
//! reads the rows again.
//!
//! Only tumbling windows are kept: a pane of such a window counts in one
//! time bucket, the same whatever the query's range, while a hopping pane
//! reaches into buckets past its hour and a query's range cuts them.
//!
//! The cache is bounded by the bytes its groups hold, as [`bytes_of`]
//! reckons them ([`CacheShared::capacity`], which may change while it
//! runs); the least recently used hours go first. Each worker has its own: nothing is
//! shared between threads or processes, and nothing is written to disk
//! (a restarted worker starts empty).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use differential_dataflow::trace::cursor::Cursor;
use differential_dataflow::trace::{Navigable, SpanOf};

use crate::aggregate::{Aggregates, MeasureState, QuantileState};
use crate::hourly::{floor_hour, HOURLY_ONLY};
use crate::scan::RollupTrace;
use crate::value::Value;

/// A worker's partial groups: key values and the asked measures' states.
pub type Groups = Vec<(Vec<Value>, Aggregates)>;

/// For each stored metric and hour, the newest epoch an update to the rows
/// of panes starting in that hour may carry.
#[derive(Debug, Default)]
pub struct Touches {
    newest: HashMap<(u32, i64), u64>,
    /// Per stored metric, the hour before which its hours are forgotten:
    /// retention takes their rows, so that nothing is kept of them here
    /// either, and a read of them never uses the cache.
    forgotten: HashMap<u32, i64>,
}

/// What [`Touches`] knows of one stored metric's hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hour {
    /// Retention has taken it: an update may have reached it that is no
    /// longer noted, so a read of it neither uses nor fills the cache.
    Forgotten,
    /// The newest epoch an update to it may carry; `None` when none has
    /// come.
    Noted(Option<u64>),
}

impl Touches {
    /// Notes the updates of a batch the rollup (or the hourly rollup) has
    /// just accepted. A batch's updates are older than its upper bound; all
    /// are noted at the epoch just below it, never older than the update.
    pub fn note(&mut self, span: &SpanOf<RollupTrace>) {
        let Some(batch) = &span.inner else { return };
        let epoch = span
            .desc
            .upper()
            .elements()
            .iter()
            .min()
            .map_or(u64::MAX, |upper| upper.saturating_sub(1));
        let mut cursor = batch.cursor();
        let mut last = None;
        while let Some(key) = cursor.get_key(batch) {
            let at = (key.metric & !HOURLY_ONLY, floor_hour(key.bucket));
            // Keys come sorted by metric, then pane: one lookup per hour.
            if last != Some(at) {
                self.touch(at, epoch);
                last = Some(at);
            }
            cursor.step_key(batch);
        }
    }

    /// Notes an update to `(metric, hour)` at `epoch`.
    fn touch(&mut self, (metric, hour): (u32, i64), epoch: u64) {
        if self.forgotten(metric, hour) {
            return;
        }
        let newest = self.newest.entry((metric, hour)).or_insert(epoch);
        *newest = (*newest).max(epoch);
    }

    /// What is noted of `metric`'s panes in `hour`, for the cache.
    pub fn hour(&self, metric: u32, hour: i64) -> Hour {
        if self.forgotten(metric, hour) {
            return Hour::Forgotten;
        }
        Hour::Noted(self.newest.get(&(metric, hour)).copied())
    }

    /// Forgets `metric`'s hours wholly before `cut`, where retention takes
    /// every pane: what was noted of them goes, and from now on they are
    /// [`forgotten`](Touches::forgotten). Without it, an entry per metric
    /// and hour stayed for as long as the engine ran.
    pub fn forget_before(&mut self, metric: u32, cut: i64) {
        let floor = floor_hour(cut);
        let forgotten = self.forgotten.entry(metric).or_insert(i64::MIN);
        if floor <= *forgotten {
            return;
        }
        *forgotten = floor;
        self.newest
            .retain(|&(m, hour), _| m != metric || hour >= floor);
    }

    /// Whether `metric`'s `hour` is forgotten.
    fn forgotten(&self, metric: u32, hour: i64) -> bool {
        self.forgotten.get(&metric).is_some_and(|f| hour < *f)
    }

    /// How many hours are noted, over every metric.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.newest.len()
    }
}

/// What a worker's cache shares with the rest of its process: its bound,
/// and what it did (for `/metrics` and tests).
#[derive(Debug, Default)]
pub struct CacheShared {
    /// The most bytes the cache holds; 0 keeps nothing and reads every
    /// query from the rows. Read at every query, so it can be changed
    /// while the engine runs (the benchmarks time queries both ways).
    pub capacity: AtomicUsize,
    /// Hours given from the cache.
    pub hits: AtomicU64,
    /// Hours read from the rows, kept or not.
    pub misses: AtomicU64,
    /// Kept hours dropped because an update reached them.
    pub invalidated: AtomicU64,
}

/// One kept hour.
struct Kept {
    /// The epoch its groups were read at.
    epoch: u64,
    groups: Groups,
    /// [`bytes_of`] its groups.
    bytes: usize,
    /// When it was last given, in [`QueryCache::clock`] ticks.
    used: u64,
}

/// A worker's kept hours, by query shape and hour.
pub struct QueryCache {
    held: usize,
    clock: u64,
    kept: HashMap<(Vec<u8>, i64), Kept>,
    shared: Arc<CacheShared>,
}

impl QueryCache {
    /// An empty cache bounded and counted by `shared`.
    pub fn new(shared: Arc<CacheShared>) -> Self {
        QueryCache {
            held: 0,
            clock: 0,
            kept: HashMap::new(),
            shared,
        }
    }

    /// Whether the cache keeps anything at all; when it is turned off, it
    /// lets go of what it kept.
    pub fn enabled(&mut self) -> bool {
        let on = self.shared.capacity.load(Relaxed) > 0;
        if !on && !self.kept.is_empty() {
            self.kept = HashMap::new();
            self.held = 0;
        }
        on
    }

    /// The groups kept for `shape` in `hour`, if they are what a read at
    /// `as_of` gives; `newest` is the hour's [`Touches::newest`]. A kept
    /// hour that an update has reached since is dropped.
    pub fn get(
        &mut self,
        shape: &[u8],
        hour: i64,
        newest: Option<u64>,
        as_of: u64,
    ) -> Option<&Groups> {
        let key = (shape.to_vec(), hour);
        let valid = self
            .kept
            .get(&key)
            .map(|k| newest.is_none_or(|n| n <= k.epoch.min(as_of)));
        match valid {
            Some(true) => {
                self.clock += 1;
                self.shared.hits.fetch_add(1, Relaxed);
                let kept = self.kept.get_mut(&key)?;
                kept.used = self.clock;
                Some(&kept.groups)
            }
            Some(false) => {
                if let Some(stale) = self.kept.remove(&key) {
                    self.held -= stale.bytes;
                }
                self.shared.invalidated.fetch_add(1, Relaxed);
                self.shared.misses.fetch_add(1, Relaxed);
                None
            }
            None => {
                self.shared.misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Keeps `groups`, read at `epoch`, for `shape` in `hour`, making room
    /// by dropping the least recently used hours.
    pub fn put(&mut self, shape: &[u8], hour: i64, epoch: u64, groups: Groups) {
        let capacity = self.shared.capacity.load(Relaxed);
        let bytes = bytes_of(&groups) + shape.len();
        if bytes > capacity {
            return;
        }
        while self.held + bytes > capacity {
            let Some(oldest) = self
                .kept
                .iter()
                .min_by_key(|(_, k)| k.used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(gone) = self.kept.remove(&oldest) {
                self.held -= gone.bytes;
            }
        }
        self.clock += 1;
        self.held += bytes;
        let kept = Kept {
            epoch,
            groups,
            bytes,
            used: self.clock,
        };
        if let Some(old) = self.kept.insert((shape.to_vec(), hour), kept) {
            self.held -= old.bytes;
        }
    }
}

/// About the bytes `groups` hold: each group's key values and states, and
/// what the sketches among them hold beside.
pub fn bytes_of(groups: &Groups) -> usize {
    groups
        .iter()
        .map(|(key, agg)| {
            let key_bytes: usize = key
                .iter()
                .map(|v| match v {
                    Value::Str(s) if s.is_heap_allocated() => s.len(),
                    _ => 0,
                })
                .sum();
            let states: usize = agg
                .measures
                .iter()
                .map(|m| match m {
                    MeasureState::Distinct(d) => d.size_of(),
                    MeasureState::Registers(_) => 4096,
                    // A DDSketch keeps its bins beside: a few kilobytes.
                    MeasureState::Quantile(QuantileState::Sketch(_)) => 4096,
                    MeasureState::Quantile(QuantileState::Exact(values)) => values.len() * 8,
                    _ => 0,
                })
                .sum();
            std::mem::size_of::<(Vec<Value>, Aggregates)>()
                + std::mem::size_of_val(key.as_slice())
                + key_bytes
                + agg.measures.len() * std::mem::size_of::<MeasureState>()
                + states
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(capacity: usize) -> Arc<CacheShared> {
        let shared = CacheShared::default();
        shared.capacity.store(capacity, Relaxed);
        Arc::new(shared)
    }

    fn groups(n: i64) -> Groups {
        (0..n)
            .map(|i| {
                (
                    vec![Value::Int(i)],
                    Aggregates {
                        count: i + 1,
                        measures: Default::default(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn forgotten_hours_are_dropped_and_never_noted_again() {
        const HOUR: i64 = crate::hourly::HOUR_MS;
        let mut touches = Touches::default();
        for hour in 0..5 {
            touches.touch((0, hour * HOUR), 10 + hour as u64);
            touches.touch((1, hour * HOUR), 20);
        }
        assert_eq!(touches.len(), 10);
        // A cut inside hour 3: hours 0 to 2 are wholly before it.
        touches.forget_before(0, 3 * HOUR + 1);
        assert_eq!(touches.len(), 7);
        for hour in 0..3 {
            assert_eq!(touches.hour(0, hour * HOUR), Hour::Forgotten, "hour {hour}");
            assert_eq!(
                touches.hour(1, hour * HOUR),
                Hour::Noted(Some(20)),
                "metric 1, hour {hour}"
            );
        }
        for hour in 3..5 {
            assert_eq!(
                touches.hour(0, hour * HOUR),
                Hour::Noted(Some(10 + hour as u64)),
                "hour {hour}"
            );
        }
        // An update to a forgotten hour (a retraction) is not kept.
        touches.touch((0, HOUR), 99);
        assert_eq!(touches.hour(0, HOUR), Hour::Forgotten);
        assert_eq!(touches.len(), 7);
        // A cut never moves back.
        touches.forget_before(0, HOUR);
        assert_eq!(touches.hour(0, 2 * HOUR), Hour::Forgotten);
        assert_eq!(touches.len(), 7);
    }

    #[test]
    fn a_kept_hour_is_given_until_an_update_reaches_it() {
        let counters = shared(1 << 20);
        let mut cache = QueryCache::new(Arc::clone(&counters));
        assert!(cache.get(b"q", 0, None, 5).is_none(), "nothing kept yet");
        cache.put(b"q", 0, 5, groups(3));
        // No update since it was read: given, at that epoch and later ones.
        assert_eq!(cache.get(b"q", 0, Some(5), 5).map(Vec::len), Some(3));
        assert_eq!(cache.get(b"q", 0, Some(4), 9).map(Vec::len), Some(3));
        // A read at an older epoch than an update it does not hold.
        assert!(cache.get(b"q", 0, Some(3), 2).is_none());
        cache.put(b"q", 0, 5, groups(3));
        // Another shape or hour is another entry.
        assert!(cache.get(b"r", 0, Some(5), 5).is_none());
        assert!(cache.get(b"q", 3_600_000, None, 5).is_none());
        // An update after the read: dropped.
        assert!(cache.get(b"q", 0, Some(6), 9).is_none());
        assert!(cache.get(b"q", 0, Some(6), 9).is_none(), "and gone");
        assert_eq!(counters.hits.load(Relaxed), 2);
        assert_eq!(counters.invalidated.load(Relaxed), 2);
        assert_eq!(counters.misses.load(Relaxed), 6);
    }

    #[test]
    fn the_least_recently_used_hours_make_room() {
        // Room for two hours of two groups.
        let two = bytes_of(&groups(2)) + 1;
        let mut cache = QueryCache::new(shared(2 * two + 1));
        cache.put(b"q", 0, 1, groups(2));
        cache.put(b"q", 1, 1, groups(2));
        assert!(cache.get(b"q", 0, None, 1).is_some());
        // Hour 1 was used least recently.
        cache.put(b"q", 2, 1, groups(2));
        assert!(cache.get(b"q", 1, None, 1).is_none());
        assert!(cache.get(b"q", 0, None, 1).is_some());
        assert!(cache.get(b"q", 2, None, 1).is_some());
        assert_eq!(cache.held, 2 * two);
        // More than the whole cache holds is not kept.
        cache.put(b"q", 3, 1, groups(6));
        assert!(cache.get(b"q", 3, None, 1).is_none());
        let mut off = QueryCache::new(shared(0));
        assert!(!off.enabled());
        off.put(b"q", 0, 1, groups(1));
        assert!(off.get(b"q", 0, None, 1).is_none());
        // Turned off while it runs: it lets go of what it kept.
        cache.shared.capacity.store(0, Relaxed);
        assert!(!cache.enabled());
        assert_eq!((cache.held, cache.kept.len()), (0, 0));
    }
}
