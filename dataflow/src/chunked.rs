//! The rollup's batch storage: columns that hold what they hold, not what
//! a merge might have produced.
//!
//! Differential's default columns are `Vec`s, and a merge of two batches
//! allocates room for both inputs up front (`merge_capacity`). When keys
//! meet in a merge — updates of one row consolidated, a row and its
//! retraction cancelled — the output is shorter than that room, and the
//! room stays allocated as long as the batch lives: after a whole merge
//! under retention, the rollup's largest batch held room for its rows, the
//! rows retention removed and their retractions, two to three times what it
//! used, until it merged again.
//!
//! A [`Chunked`] column is a list of chunks of [`CHUNK`] items. It grows a
//! chunk at a time, so it never holds more than one partly empty chunk. A
//! new chunk has room for what the column still expects (a builder's exact
//! count, or a merge's upper bound), up to a chunk, so small batches stay
//! small; a chunk is copied to grow only when more comes than expected.

use differential_dataflow::batcher::merge::vec::VecMerger;
use differential_dataflow::batcher::merge::MergeBatcher;
use differential_dataflow::trace::implementations::ord_neu::{OrdKeyBatch, OrdKeyBuilder};
use differential_dataflow::trace::implementations::spine_fueled::Spine;
use differential_dataflow::trace::implementations::{BatchContainer, OffsetList};

use crate::aggregate::Aggregates;
use crate::chunker::SortingChunker;
use crate::packed::Packed;

/// Items per full chunk: a power of two, large enough that the chunk
/// table is small (a million rows of 120 bytes take 62 chunks) and small
/// enough that the one partly empty chunk of a column is at most a couple
/// of MiB.
pub const CHUNK: usize = 1 << 14;

/// Empties a column's chunks but keeps the first one's allocation, which
/// `clear` empties: differential clears its one-update staging columns
/// once per key it merges.
pub(crate) fn clear_keeping_first<C>(chunks: &mut Vec<C>, clear: impl FnOnce(&mut C)) {
    chunks.truncate(1);
    if let Some(first) = chunks.first_mut() {
        clear(first);
    }
}

/// Items a column's new chunk has room for: what the column still expects
/// after the `len` it holds, at least one, at most a chunk.
pub(crate) fn room(expected: usize, len: usize) -> usize {
    expected.saturating_sub(len).clamp(1, CHUNK)
}

/// A column of `T` in chunks of [`CHUNK`] items: every chunk but the last
/// is full.
#[derive(Debug, Clone)]
pub struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
    /// Items the column expects: a new chunk is allocated for what is
    /// still expected, up to [`CHUNK`].
    expected: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
            expected: 0,
        }
    }
}

impl<T> Chunked<T> {
    /// Appends an item.
    pub fn push(&mut self, item: T) {
        let last = match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last,
            _ => {
                self.chunks
                    .push(Vec::with_capacity(room(self.expected, self.len)));
                self.chunks.last_mut().expect("a chunk was just pushed")
            }
        };
        if last.len() == last.capacity() {
            // More came than expected: grow the chunk, never past a chunk,
            // so that every chunk but the last stays full.
            let more = last.capacity().max(8).min(CHUNK - last.len());
            last.reserve_exact(more);
        }
        last.push(item);
        self.len += 1;
    }

    /// The item at `index`.
    #[inline]
    pub fn at(&self, index: usize) -> &T {
        &self.chunks[index / CHUNK][index % CHUNK]
    }

    /// Items in the column.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the column holds no item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Items the column has room for.
    pub fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }
}

impl<T> timely::container::PushInto<T> for Chunked<T> {
    fn push_into(&mut self, item: T) {
        self.push(item);
    }
}

impl<T: Clone> timely::container::PushInto<&T> for Chunked<T> {
    fn push_into(&mut self, item: &T) {
        self.push(item.clone());
    }
}

impl<T: Ord + Clone + 'static> BatchContainer for Chunked<T> {
    type Owned = T;
    type ReadItem<'a> = &'a T;

    #[inline(always)]
    fn into_owned<'a>(item: Self::ReadItem<'a>) -> Self::Owned {
        item.clone()
    }

    #[inline(always)]
    fn clone_onto<'a>(item: Self::ReadItem<'a>, other: &mut Self::Owned) {
        other.clone_from(item);
    }

    fn push_ref(&mut self, item: Self::ReadItem<'_>) {
        self.push(item.clone());
    }

    fn push_own(&mut self, item: &Self::Owned) {
        self.push(item.clone());
    }

    fn clear(&mut self) {
        clear_keeping_first(&mut self.chunks, Vec::clear);
        self.len = 0;
    }

    fn with_capacity(size: usize) -> Self {
        Chunked {
            expected: size,
            ..Chunked::default()
        }
    }

    fn merge_capacity(cont1: &Self, cont2: &Self) -> Self {
        // An upper bound: keys that meet shorten the output.
        Self::with_capacity(cont1.len() + cont2.len())
    }

    #[inline(always)]
    fn reborrow<'b, 'a: 'b>(item: Self::ReadItem<'a>) -> Self::ReadItem<'b> {
        item
    }

    #[inline(always)]
    fn index(&self, index: usize) -> Self::ReadItem<'_> {
        self.at(index)
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// The rollup's batch layout: keys and times in chunked columns, the
/// aggregates packed (there are no values).
pub type Layout<K> = (Chunked<K>, Vec<()>, Chunked<u64>, Packed, OffsetList);

/// What the rollup arrangement receives: keyed rows with their epoch and
/// aggregates.
pub type Updates<K> = Vec<((K, ()), u64, Aggregates)>;

/// A batch of the rollup.
pub type Batch<K> = OrdKeyBatch<Layout<K>>;

/// The rollup's trace.
pub type ChunkedSpine<K> = Spine<std::rc::Rc<Batch<K>>>;

/// Forms batches of the rollup from its updates.
pub type ChunkedBatcher<K> = MergeBatcher<
    SortingChunker<K>,
    VecMerger<(K, ()), u64, Aggregates>,
    OrdKeyBuilder<Layout<K>, Updates<K>>,
>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_holds_its_items_in_order_with_at_most_one_chunk_to_spare() {
        for (expected, n) in [(0, 0), (0, 1), (10, 3), (10, 1_000), (100_000, 40_000)] {
            let mut column = <Chunked<u64> as BatchContainer>::with_capacity(expected);
            for i in 0..n {
                column.push(i as u64 * 3);
            }
            assert_eq!(BatchContainer::len(&column), n);
            for i in 0..n {
                assert_eq!(*column.index(i), i as u64 * 3);
            }
            assert!(column.get(n).is_none());
            assert!(
                column.capacity() < n + CHUNK,
                "{n} items after expecting {expected}: room for {}",
                column.capacity()
            );
        }
    }

    #[test]
    fn a_cleared_column_holds_only_what_comes_after() {
        let mut column = <Chunked<u64> as BatchContainer>::with_capacity(1);
        for i in 0..(CHUNK + 3) {
            column.push(i as u64);
        }
        for n in [0, 1, 5, CHUNK + 1] {
            column.clear();
            assert_eq!(BatchContainer::len(&column), 0);
            assert!(column.get(0).is_none());
            for i in 0..n {
                column.push(1_000_000 + i as u64);
            }
            assert_eq!(BatchContainer::len(&column), n);
            for i in 0..n {
                assert_eq!(*column.index(i), 1_000_000 + i as u64);
            }
            assert!(column.get(n).is_none());
        }
    }

    #[test]
    fn a_short_merge_keeps_no_room_for_what_cancelled() {
        let mut a = <Chunked<u64> as BatchContainer>::with_capacity(0);
        let mut b = <Chunked<u64> as BatchContainer>::with_capacity(0);
        for i in 0..(3 * CHUNK) {
            a.push(i as u64);
            b.push(i as u64);
        }
        let mut merged = Chunked::merge_capacity(&a, &b);
        for i in 0..(CHUNK + 5) {
            merged.push(i as u64);
        }
        assert_eq!(merged.capacity(), 2 * CHUNK);
    }
}
