//! How the rollup's arrangement sorts what it receives: by moving each
//! update once.
//!
//! Differential's batcher sorts its input in buffers of 8 KiB (about forty
//! of the rollup's updates, which are some 200 bytes each: a key, an epoch
//! and a row's aggregates), then merges the sorted buffers pairwise until
//! one run is left. An update is moved once per level of that merge, a
//! dozen times for an epoch's updates on one worker.
//!
//! A [`SortingChunker`] gathers up to [`SORTED_BYTES`] of updates (some
//! 5,400), sorts their positions (a 32-byte prefix of the key that orders
//! as the key does, and an index) rather than the updates, then moves each
//! update once, in order, into one sorted run, adding up the updates of one
//! key and epoch and dropping those that cancel out. The batcher merges
//! such runs as it merged its buffers, but there are a few to a batch
//! rather than hundreds.

use std::collections::VecDeque;

use differential_dataflow::difference::{IsZero, Semigroup};
use timely::container::{ContainerBuilder, PushInto};

use crate::aggregate::Aggregates;

/// Bytes of updates gathered into one sorted run. A worker holds at most
/// about twice this while it sorts. In the end-to-end benchmark a worker
/// receives some 22,000 updates (4 MiB) between two batches; gathering them
/// all into one run left nothing to merge but raised the peak memory by
/// some 30 MiB, where runs of 1 MiB (four or five to a batch) raised it
/// by about 10.
pub const SORTED_BYTES: usize = 1 << 20;

/// A part of a key that orders as the key does where it differs.
pub trait SortPrefix: Ord {
    /// `a.sort_prefix() < b.sort_prefix()` implies `a < b`, and keys with
    /// equal prefixes are ordered by themselves.
    fn sort_prefix(&self) -> Prefix;
}

/// What [`SortPrefix`] gives: compared before the keys themselves, so the
/// more of a key's order it holds, the fewer whole keys a sort compares.
pub type Prefix = (u128, u128);

/// An update as the rollup's arrangement receives it.
type Update<K> = ((K, ()), u64, Aggregates);

/// Forms sorted, consolidated runs of updates (see the module's
/// documentation).
pub struct SortingChunker<K> {
    /// Updates not yet sorted.
    pending: Vec<Update<K>>,
    /// Updates at which `pending` is sorted into a run.
    limit: usize,
    /// Sorted runs not yet taken by the batcher.
    ready: VecDeque<Vec<Update<K>>>,
    /// The run last handed to the batcher.
    handed: Vec<Update<K>>,
    /// Positions of `pending`'s updates, by prefix; kept for its allocation.
    order: Vec<(Prefix, u32)>,
}

impl<K> Default for SortingChunker<K> {
    fn default() -> Self {
        let update = std::mem::size_of::<Update<K>>().max(1);
        Self::with_limit(SORTED_BYTES / update)
    }
}

impl<K> SortingChunker<K> {
    /// A chunker that sorts a run once `limit` updates (at least one) are
    /// gathered.
    pub fn with_limit(limit: usize) -> Self {
        SortingChunker {
            pending: Vec::new(),
            limit: limit.clamp(1, u32::MAX as usize),
            ready: VecDeque::new(),
            handed: Vec::new(),
            order: Vec::new(),
        }
    }
}

impl<K: SortPrefix + Default> SortingChunker<K> {
    /// Sorts `pending` into a run on `ready`, leaving `pending` empty.
    fn sort_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = &mut self.pending;
        self.order.clear();
        self.order.extend(
            pending
                .iter()
                .enumerate()
                .map(|(i, ((key, ()), _, _))| (key.sort_prefix(), i as u32)),
        );
        self.order.sort_unstable_by(|(p, i), (q, j)| {
            p.cmp(q).then_with(|| {
                let (a, b) = (&pending[*i as usize], &pending[*j as usize]);
                (&a.0, a.1).cmp(&(&b.0, b.1))
            })
        });
        let mut run: Vec<Update<K>> = Vec::with_capacity(pending.len());
        let mut last_prefix = None;
        for (prefix, i) in &self.order {
            let update = std::mem::take(&mut pending[*i as usize]);
            if let Some(last) = run.last_mut() {
                if last_prefix == Some(*prefix) && last.0 == update.0 && last.1 == update.1 {
                    last.2.plus_equals(&update.2);
                    continue;
                }
                if last.2.is_zero() {
                    run.pop();
                }
            }
            last_prefix = Some(*prefix);
            run.push(update);
        }
        if run.last().is_some_and(|last| last.2.is_zero()) {
            run.pop();
        }
        pending.clear();
        if !run.is_empty() {
            self.ready.push_back(run);
        }
    }

    /// The next sorted run, if there is one.
    fn hand_over(&mut self) -> Option<&mut Vec<Update<K>>> {
        self.handed = self.ready.pop_front()?;
        Some(&mut self.handed)
    }
}

impl<K: SortPrefix + Default> PushInto<&mut Vec<Update<K>>> for SortingChunker<K> {
    fn push_into(&mut self, container: &mut Vec<Update<K>>) {
        for update in container.drain(..) {
            self.pending.push(update);
            if self.pending.len() >= self.limit {
                self.sort_pending();
            }
        }
    }
}

impl<K: SortPrefix + Default + 'static> ContainerBuilder for SortingChunker<K> {
    type Container = Vec<Update<K>>;

    fn extract(&mut self) -> Option<&mut Self::Container> {
        self.hand_over()
    }

    fn finish(&mut self) -> Option<&mut Self::Container> {
        self.sort_pending();
        self.hand_over()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use differential_dataflow::consolidation::consolidate_updates;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::rollup::RollupKey;
    use crate::value::Value;

    fn row(count: i64) -> Aggregates {
        Aggregates::of_count(count)
    }

    /// Updates over few keys, so that many meet: buckets on both sides of
    /// zero, keys that differ only in their dimensions (beyond the
    /// prefix), several epochs, and counts that cancel out.
    fn updates(rng: &mut ChaCha8Rng, n: usize) -> Vec<Update<RollupKey>> {
        (0..n)
            .map(|_| {
                let dims = (0..rng.random_range(0..3))
                    .map(|_| match rng.random_range(0..3) {
                        0 => Value::Int(rng.random_range(-2..2)),
                        1 => {
                            Value::Str(["a", "b", "game-long-name"][rng.random_range(0..3)].into())
                        }
                        _ => Value::Null,
                    })
                    .collect();
                let key = RollupKey {
                    metric: rng.random_range(0..2),
                    bucket: [i64::MIN, -60_000, 0, 60_000, i64::MAX][rng.random_range(0..5)],
                    dims,
                };
                let count = [-2, -1, 1, 2][rng.random_range(0..4)];
                ((key, ()), rng.random_range(0..3), row(count))
            })
            .collect()
    }

    /// Everything the chunker hands over, run by run.
    fn runs(
        chunker: &mut SortingChunker<RollupKey>,
        input: &[Update<RollupKey>],
    ) -> Vec<Vec<Update<RollupKey>>> {
        let mut runs = Vec::new();
        for piece in input.chunks(37) {
            chunker.push_into(&mut piece.to_vec());
            while let Some(run) = chunker.extract() {
                runs.push(std::mem::take(run));
            }
        }
        while let Some(run) = chunker.finish() {
            runs.push(std::mem::take(run));
        }
        runs
    }

    #[test]
    fn runs_are_sorted_and_consolidated_and_add_up_to_the_input() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for (n, limit) in [(0, 10), (1, 1), (500, 1_000_000), (2_000, 300), (2_000, 1)] {
            let input = updates(&mut rng, n);
            let mut chunker = SortingChunker::with_limit(limit);
            let first = runs(&mut chunker, &input);
            // Twice: the chunker keeps nothing of the first input.
            let again = runs(&mut chunker, &input);
            for runs in [&first, &again] {
                for run in runs {
                    assert!(!run.is_empty(), "{n} updates, limit {limit}");
                    assert!(run.len() <= limit, "{n} updates, limit {limit}");
                    let mut expected = run.clone();
                    consolidate_updates(&mut expected);
                    assert_eq!(run, &expected, "{n} updates, limit {limit}");
                }
                let mut all: Vec<_> = runs.iter().flatten().cloned().collect();
                consolidate_updates(&mut all);
                let mut expected = input.clone();
                consolidate_updates(&mut expected);
                assert_eq!(all, expected, "{n} updates, limit {limit}");
            }
            if limit >= n && !input.is_empty() {
                assert_eq!(first.len(), 1, "{n} updates, limit {limit}");
            }
        }
    }

    #[test]
    fn a_key_and_its_retraction_leave_nothing() {
        let key = RollupKey {
            metric: 0,
            bucket: 60_000,
            dims: [Value::Str("g1".into())].into_iter().collect(),
        };
        let mut chunker = SortingChunker::with_limit(100);
        let input = vec![
            ((key.clone(), ()), 1, row(3)),
            ((key.clone(), ()), 2, row(1)),
            ((key.clone(), ()), 1, row(-3)),
        ];
        assert_eq!(
            runs(&mut chunker, &input),
            vec![vec![((key, ()), 2, row(1))]]
        );
    }

    #[test]
    fn the_prefix_orders_as_the_key_does() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let keys: Vec<RollupKey> = updates(&mut rng, 300)
            .into_iter()
            .map(|((k, ()), _, _)| k)
            .collect();
        for a in &keys {
            for b in &keys {
                if a.sort_prefix() < b.sort_prefix() {
                    assert!(a < b, "{a:?} and {b:?}");
                }
            }
        }
    }

    /// Dimension values the prefix holds in part: text short and long,
    /// with zero bytes, bytes past 127 and shared beginnings, true and
    /// false, whole and fractional numbers, null; keys of 0 to 3 values.
    #[test]
    fn the_prefix_orders_every_kind_of_value_as_the_key_does() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let value = |rng: &mut ChaCha8Rng| match rng.random_range(0..6) {
            0 => Value::Null,
            1 => Value::Bool(rng.random_bool(0.5)),
            2 => Value::Int(rng.random_range(-2..3)),
            3 => Value::Float([-1.5, 0.5, 2.0][rng.random_range(0..3)]),
            _ => {
                // Lengths around the six bytes the bits hold, from few
                // letters, so that many texts share their beginnings.
                let len = [0, 1, 5, 6, 7, 8, 9][rng.random_range(0..7)];
                let text: String = (0..len)
                    .map(|_| ['a', 'b', 'a', 'b', 'a', 'b', '\0', 'é'][rng.random_range(0..8)])
                    .collect();
                Value::Str(text.into())
            }
        };
        let keys: Vec<RollupKey> = (0..800)
            .map(|_| RollupKey {
                metric: 0,
                bucket: 60_000,
                dims: (0..[0, 1, 2, 2, 2, 3][rng.random_range(0..6)])
                    .map(|_| value(&mut rng))
                    .collect(),
            })
            .collect();
        let mut decided = 0;
        for a in &keys {
            for b in &keys {
                let (p, q) = (a.sort_prefix(), b.sort_prefix());
                if p < q {
                    assert!(a < b, "{a:?} and {b:?}");
                    decided += 1;
                }
            }
        }
        // The metric and bucket are the same: most pairs are told apart by
        // their dimension values' bits alone.
        assert!(decided > keys.len() * keys.len() / 3, "{decided}");
    }
}
