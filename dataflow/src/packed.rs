//! The rollup's aggregates column, packed: each row's [`Aggregates`] as a
//! few bytes rather than a 112-byte struct.
//!
//! A query that reads every row of a day streams the whole column through
//! the processor, and much of its time goes to memory rather than to
//! arithmetic; the rollup's memory is mostly this column too. An
//! [`Aggregates`] holds room for three measure states of 32 bytes each,
//! whatever the metric keeps, while the benchmark's row (a count, a sum and
//! a few `distinct` values) needs about 30 bytes written out:
//!
//! - the count, then the number of states, as variable-length integers
//!   (seven bits a byte, most counts in one);
//! - each state as a tag byte and what it holds: a sum's billionths as 8
//!   bytes (or, past 64 bits, as a zigzag variable-length integer), a
//!   minimum or maximum as its 8 bytes, a row's few `distinct` values as a
//!   length and 4 bytes each, a span as two integers;
//! - a state whose value lives on the heap (a `distinct` or `quantile`
//!   sketch, a quantile's exact values) by its index in the column's list
//!   of such states, which holds the state itself: a sketch is shared
//!   with the row it came from, as a cloned row shares it. A `distinct`
//!   sketch that still holds values (up to 128) writes them after its
//!   index too, so that a query reads them with the row rather than
//!   chasing two pointers that miss the cache.
//!
//! The form is canonical: equal rows without heap states write equal
//! bytes. A row is read back whole ([`PackedRef::to_owned`]) where
//! differential merges batches and where a checkpoint writes it, and
//! merged straight from its bytes into a query's group
//! ([`PackedRef::merge_into`]).

use std::cmp::Ordering;

use differential_dataflow::trace::implementations::BatchContainer;

use crate::aggregate::{Aggregates, DistinctSketch, Fixed, MeasureState};
use crate::chunked::{clear_keeping_first, room, CHUNK};
use crate::distinct;
use crate::few::{DistinctState, FEW};

/// Tags of the packed states.
const COUNT: u8 = 0;
const SUM: u8 = 1;
const MIN: u8 = 2;
const MAX: u8 = 3;
const AVG: u8 = 4;
const FEW_VALUES: u8 = 5;
const SPAN: u8 = 6;
const HEAP: u8 = 7;
/// A sum or an average's sum that fits in 64 bits, as 8 bytes: read with
/// one load, where a variable-length integer takes a loop.
const SUM64: u8 = 8;
const AVG64: u8 = 9;
/// A `distinct` sketch that holds values (up to 128) rather than
/// registers: its index, as [`HEAP`], then its values as a few `distinct`
/// values are, so that a query merges them from the row, without going
/// to the sketch and from there to its array (two loads that miss the
/// cache).
const HEAP_VALUES: u8 = 10;

/// Bytes a row is guessed to take where nothing better is known: a count,
/// a sum and a few `distinct` values.
const GUESSED_ROW_BYTES: usize = 32;

/// A column of [`Aggregates`], packed, in chunks of [`CHUNK`] rows.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    chunks: Vec<PackedChunk>,
    len: usize,
    /// Rows the column expects, as [`crate::chunked::Chunked`] does, and
    /// the bytes they are expected to take.
    expected: usize,
    expected_bytes: usize,
    /// The states that live on the heap, by the index a row holds.
    heap: Vec<MeasureState>,
}

/// Up to [`CHUNK`] rows: their bytes one after another, and where each ends.
#[derive(Debug, Clone, Default)]
struct PackedChunk {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

/// One packed row, as a batch hands it out.
#[derive(Clone, Copy)]
pub struct PackedRef<'a> {
    bytes: &'a [u8],
    heap: &'a [MeasureState],
}

impl std::fmt::Debug for PackedRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_owned().fmt(f)
    }
}

/// A state read from a packed row: made on the spot, or the column's own
/// when it lives on the heap.
pub enum StateRef<'a> {
    /// A state packed in the row's bytes.
    Made(MeasureState),
    /// A state the column holds.
    Held(&'a MeasureState),
}

impl StateRef<'_> {
    /// The state.
    pub fn get(&self) -> &MeasureState {
        match self {
            StateRef::Made(state) => state,
            StateRef::Held(state) => state,
        }
    }
}

impl Packed {
    /// Appends a row.
    pub fn push(&mut self, row: &Aggregates) {
        if self.chunks.last().is_none_or(|c| c.ends.len() == CHUNK) {
            if let Some(full) = self.chunks.last_mut() {
                full.bytes.shrink_to_fit();
            }
            let rows = room(self.expected, self.len);
            // A merge knows its inputs' bytes; a new batch guesses.
            let per_row = match self.expected_bytes.checked_div(self.expected) {
                Some(per_row) if per_row > 0 => per_row,
                _ => GUESSED_ROW_BYTES,
            };
            self.chunks.push(PackedChunk {
                bytes: Vec::with_capacity(rows * per_row),
                ends: Vec::with_capacity(rows),
            });
        }
        let chunk = self.chunks.last_mut().expect("a chunk is there");
        write_row(row, &mut chunk.bytes, &mut self.heap);
        let end = u32::try_from(chunk.bytes.len()).expect("a chunk holds under 4 GiB");
        chunk.ends.push(end);
        self.len += 1;
    }

    /// The row at `index`.
    #[inline]
    pub fn at(&self, index: usize) -> PackedRef<'_> {
        let chunk = &self.chunks[index / CHUNK];
        let i = index % CHUNK;
        let start = if i == 0 {
            0
        } else {
            chunk.ends[i - 1] as usize
        };
        PackedRef {
            bytes: &chunk.bytes[start..chunk.ends[i] as usize],
            heap: &self.heap,
        }
    }

    /// Rows in the column.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the column holds no row.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the rows take.
    fn bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.bytes.len()).sum()
    }
}

/// Which of a query group's states take each state of a row: the group's
/// `j`th state takes the row's state `slots[j]`, if any. Worked out once
/// per query, for [`PackedRef::merge_into`].
#[derive(Debug, Clone)]
pub struct Takers {
    slots: Vec<Option<usize>>,
    /// For each state of a row, by its index: the one group state that
    /// takes it, [`NONE`] or [`MANY`].
    by_state: Vec<usize>,
}

const NONE: usize = usize::MAX;
const MANY: usize = usize::MAX - 1;

impl Takers {
    /// The takers for a group whose `j`th state takes the row's `slots[j]`.
    pub fn new(slots: Vec<Option<usize>>) -> Self {
        let states = slots.iter().flatten().max().map_or(0, |m| m + 1);
        let mut by_state = vec![NONE; states];
        for (j, slot) in slots.iter().enumerate() {
            if let Some(s) = slot {
                by_state[*s] = if by_state[*s] == NONE { j } else { MANY };
            }
        }
        Takers { slots, by_state }
    }
}

impl<'a> PackedRef<'a> {
    /// The row's event count, read without the rest.
    #[inline]
    pub fn count(&self) -> i64 {
        let mut at = 0;
        unzigzag(read_varint(self.bytes, &mut at)) as i64
    }

    /// The row's states, in order, each read as it is asked for.
    #[inline]
    pub fn states(&self) -> States<'a> {
        let mut at = 0;
        let _count = read_varint(self.bytes, &mut at);
        let left = read_varint(self.bytes, &mut at) as usize;
        States {
            row: *self,
            at,
            left,
        }
    }

    /// Merges the row into a query's group, whose states take the row's
    /// as `takers` says. A sum that fits in 64 bits and a few
    /// `distinct` values merging into registers, the usual case of a query
    /// over many rows, go straight from the bytes; the rest are made first.
    pub fn merge_into(&self, acc: &mut Aggregates, takers: &Takers) {
        let bytes = self.bytes;
        let mut at = 0;
        acc.count += unzigzag(read_varint(bytes, &mut at)) as i64;
        // A retraction carries no measures (see `render::retraction`).
        let states = read_varint(bytes, &mut at) as usize;
        for i in 0..states {
            let taker = takers.by_state.get(i).copied().unwrap_or(NONE);
            let only = match taker {
                NONE | MANY => None,
                j => acc.measures.get_mut(j),
            };
            match (bytes[at], only) {
                (SUM64, Some(MeasureState::Sum(total))) => {
                    let v: [u8; 8] = bytes[at + 1..at + 9].try_into().expect("8 bytes");
                    *total += i128::from(i64::from_le_bytes(v));
                    at += 9;
                }
                (tag @ (FEW_VALUES | HEAP_VALUES), Some(MeasureState::Registers(registers))) => {
                    at += 1;
                    if tag == HEAP_VALUES {
                        read_varint(bytes, &mut at);
                    }
                    let len = usize::from(bytes[at]);
                    for v in bytes[at + 1..at + 1 + 4 * len].chunks_exact(4) {
                        registers.insert(u32::from_le_bytes(v.try_into().expect("4 bytes")));
                    }
                    at += 1 + 4 * len;
                }
                (_, Some(state)) => {
                    if let Some(m) = self.state_at(&mut at) {
                        state.merge_query(m.get());
                    }
                }
                _ if taker == NONE => at = pass_state(bytes, at),
                _ => {
                    if let Some(m) = self.state_at(&mut at) {
                        for (state, slot) in acc.measures.iter_mut().zip(&takers.slots) {
                            if *slot == Some(i) {
                                state.merge_query(m.get());
                            }
                        }
                    }
                }
            }
        }
    }

    /// The state at `at`, made; `at` moves past it.
    fn state_at(&self, at: &mut usize) -> Option<StateRef<'a>> {
        let mut one = States {
            row: *self,
            at: *at,
            left: 1,
        };
        let state = one.next();
        *at = one.at;
        state
    }

    /// The row itself.
    pub fn to_owned(&self) -> Aggregates {
        Aggregates {
            count: self.count(),
            measures: self
                .states()
                .map(|s| match s {
                    StateRef::Made(state) => state,
                    StateRef::Held(state) => state.clone(),
                })
                .collect(),
        }
    }
}

impl States<'_> {
    /// Passes over the next state.
    #[inline]
    fn pass(&mut self) {
        self.left -= 1;
        self.at = pass_state(self.row.bytes, self.at);
    }
}

/// Where the state at `at` of a packed row ends.
#[inline]
fn pass_state(bytes: &[u8], mut at: usize) -> usize {
    let tag = bytes[at];
    at += 1;
    match tag {
        COUNT => {}
        MIN | MAX | SUM64 => at += 8,
        FEW_VALUES => at += 1 + 4 * usize::from(bytes[at]),
        HEAP_VALUES => {
            read_varint(bytes, &mut at);
            at += 1 + 4 * usize::from(bytes[at]);
        }
        AVG64 => {
            at += 8;
            read_varint(bytes, &mut at);
        }
        AVG | SPAN => {
            read_varint(bytes, &mut at);
            read_varint(bytes, &mut at);
        }
        _ => {
            read_varint(bytes, &mut at);
        }
    }
    at
}

/// The states of a packed row ([`PackedRef::states`]).
pub struct States<'a> {
    row: PackedRef<'a>,
    at: usize,
    left: usize,
}

impl<'a> Iterator for States<'a> {
    type Item = StateRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<StateRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (bytes, at) = (self.row.bytes, &mut self.at);
        let tag = bytes[*at];
        *at += 1;
        let fixed = |at: &mut usize| Fixed::from(unzigzag(read_varint(bytes, at)));
        let word = |at: &mut usize| {
            let v: [u8; 8] = bytes[*at..*at + 8].try_into().expect("8 bytes");
            *at += 8;
            v
        };
        let float = |at: &mut usize| f64::from_le_bytes(word(at));
        let small = |at: &mut usize| Fixed::from(i128::from(i64::from_le_bytes(word(at))));
        Some(StateRef::Made(match tag {
            COUNT => MeasureState::Count,
            SUM64 => MeasureState::Sum(small(at)),
            SUM => MeasureState::Sum(fixed(at)),
            MIN => MeasureState::Min(float(at)),
            MAX => MeasureState::Max(float(at)),
            AVG64 => {
                let sum = small(at);
                MeasureState::Avg(sum, read_varint(bytes, at) as u64)
            }
            AVG => {
                let sum = fixed(at);
                MeasureState::Avg(sum, read_varint(bytes, at) as u64)
            }
            FEW_VALUES => {
                let len = bytes[*at];
                *at += 1;
                let mut values = [0u32; FEW];
                for v in values.iter_mut().take(usize::from(len)) {
                    *v = u32::from_le_bytes(bytes[*at..*at + 4].try_into().expect("4 bytes"));
                    *at += 4;
                }
                MeasureState::Distinct(DistinctState::Few { len, values })
            }
            SPAN => {
                let first = unzigzag(read_varint(bytes, at)) as i64;
                MeasureState::Span(first, unzigzag(read_varint(bytes, at)) as i64)
            }
            HEAP => {
                return Some(StateRef::Held(
                    &self.row.heap[read_varint(bytes, at) as usize],
                ))
            }
            HEAP_VALUES => {
                let held = &self.row.heap[read_varint(bytes, at) as usize];
                *at += 1 + 4 * usize::from(bytes[*at]);
                return Some(StateRef::Held(held));
            }
            _ => unreachable!("a packed row holds only the tags it was written with"),
        }))
    }

    /// Passes over the next `n` states without making them.
    fn nth(&mut self, n: usize) -> Option<StateRef<'a>> {
        for _ in 0..n.min(self.left) {
            self.pass();
        }
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Whether no state of a packed row lives on the heap: no byte is a heap
/// state's tag. (A value's byte may equal one, so this may say no where
/// the answer is yes; never the other way.)
fn no_heap_states(bytes: &[u8]) -> bool {
    !bytes.iter().any(is_heap_tag)
}

fn is_heap_tag(byte: &u8) -> bool {
    *byte == HEAP || *byte == HEAP_VALUES
}

/// Differential asks this of every update it merges (is it the one written
/// just before?), and the answer is nearly always no. The packing is
/// canonical, so equal rows differ in their bytes only within a heap
/// state's index: where the first byte that differs comes before any heap
/// state (most often in the count), the rows differ, and only the other
/// cases are unpacked to compare.
impl PartialEq for PackedRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.bytes, other.bytes);
        let same = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let (next_a, next_b) = (a.get(same), b.get(same));
        if next_a.is_none() && next_b.is_none() {
            if no_heap_states(a) {
                return true;
            }
        } else if no_heap_states(&a[..same])
            && !next_a.is_some_and(is_heap_tag)
            && !next_b.is_some_and(is_heap_tag)
        {
            return false;
        }
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PackedRef<'_> {}

impl PartialOrd for PackedRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// As the rows themselves are ordered.
impl Ord for PackedRef<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.bytes == other.bytes && no_heap_states(self.bytes) {
            // Quick and exact: no heap index, so equal bytes are equal rows.
            return Ordering::Equal;
        }
        self.to_owned().cmp(&other.to_owned())
    }
}

/// Writes `row` onto `out`, its heap states onto `heap`.
fn write_row(row: &Aggregates, out: &mut Vec<u8>, heap: &mut Vec<MeasureState>) {
    write_varint(zigzag(i128::from(row.count)), out);
    write_varint(row.measures.len() as u128, out);
    for state in &row.measures {
        match state {
            MeasureState::Count => out.push(COUNT),
            MeasureState::Sum(sum) => write_sum(*sum, SUM64, SUM, out),
            MeasureState::Min(v) => {
                out.push(MIN);
                out.extend_from_slice(&v.to_le_bytes());
            }
            MeasureState::Max(v) => {
                out.push(MAX);
                out.extend_from_slice(&v.to_le_bytes());
            }
            MeasureState::Avg(sum, n) => {
                write_sum(*sum, AVG64, AVG, out);
                write_varint(u128::from(*n), out);
            }
            MeasureState::Distinct(DistinctState::Few { len, values }) => {
                out.push(FEW_VALUES);
                out.push(*len);
                for v in &values[..usize::from(*len)] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            MeasureState::Span(first, last) => {
                out.push(SPAN);
                write_varint(zigzag(i128::from(*first)), out);
                write_varint(zigzag(i128::from(*last)), out);
            }
            MeasureState::Distinct(DistinctState::Sketch(sketch))
                if write_values(sketch, heap.len(), out) =>
            {
                heap.push(state.clone());
            }
            MeasureState::Distinct(DistinctState::Sketch(_))
            | MeasureState::Quantile(_)
            | MeasureState::Registers(_) => {
                out.push(HEAP);
                write_varint(heap.len() as u128, out);
                heap.push(state.clone());
            }
        }
    }
}

/// Writes a sum in billionths: under `small`, as 8 bytes, when it fits in
/// 64 bits, else under `big`, as a zigzag variable-length integer.
fn write_sum(sum: Fixed, small: u8, big: u8, out: &mut Vec<u8>) {
    match i64::try_from(sum.get()) {
        Ok(v) => {
            out.push(small);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Err(_) => {
            out.push(big);
            write_varint(zigzag(sum.get()), out);
        }
    }
}

/// Writes a sketch of values as [`HEAP_VALUES`], to be held at `index`;
/// false, with nothing written, for a sketch of registers.
fn write_values(sketch: &DistinctSketch, index: usize, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.push(HEAP_VALUES);
    write_varint(index as u128, out);
    let len_at = out.len();
    out.push(0);
    let mut n = 0usize;
    let whole = distinct::for_each_value(sketch, |v| {
        out.extend_from_slice(&v.to_le_bytes());
        n += 1;
    });
    match u8::try_from(n) {
        Ok(n) if whole => {
            out[len_at] = n;
            true
        }
        _ => {
            out.truncate(start);
            false
        }
    }
}

fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn unzigzag(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

/// Seven bits a byte, low bits first; the top bit says more follow.
fn write_varint(mut v: u128, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A variable-length integer: most are one byte, and most of the rest fit
/// in 64 bits, which are read without 128-bit arithmetic.
#[inline]
fn read_varint(bytes: &[u8], at: &mut usize) -> u128 {
    let first = bytes[*at];
    if first < 0x80 {
        *at += 1;
        return u128::from(first);
    }
    let mut v = 0u64;
    for shift in (0..63).step_by(7) {
        let b = bytes[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return u128::from(v);
        }
    }
    // Past 63 bits: only a sum in billionths gets here.
    let mut v = u128::from(v);
    let mut shift = 63;
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= u128::from(b & 0x7f) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

impl BatchContainer for Packed {
    type Owned = Aggregates;
    type ReadItem<'a> = PackedRef<'a>;

    fn into_owned<'a>(item: Self::ReadItem<'a>) -> Self::Owned {
        item.to_owned()
    }

    fn push_ref(&mut self, item: Self::ReadItem<'_>) {
        self.push(&item.to_owned());
    }

    fn push_own(&mut self, item: &Self::Owned) {
        self.push(item);
    }

    fn clear(&mut self) {
        clear_keeping_first(&mut self.chunks, |first| {
            first.bytes.clear();
            first.ends.clear();
        });
        self.heap.clear();
        self.len = 0;
    }

    fn with_capacity(size: usize) -> Self {
        Packed {
            expected: size,
            ..Packed::default()
        }
    }

    fn merge_capacity(cont1: &Self, cont2: &Self) -> Self {
        Packed {
            expected: cont1.len() + cont2.len(),
            expected_bytes: cont1.bytes() + cont2.bytes(),
            ..Packed::default()
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use statflow_dsl::MeasureKind;

    use crate::aggregate::tests::every_kind as kinds;

    /// Rows of every kind of state and size: empty, with few values and
    /// with sketches, sums past 64 bits, negative counts (retractions),
    /// spans, and a row with no states.
    fn rows() -> Vec<Aggregates> {
        let kinds = kinds();
        let mut rows = Vec::new();
        for n in [0usize, 1, 3, 5, 6, 40, 200] {
            let mut row = Aggregates::empty(&kinds);
            for i in 0..n {
                row.count += 1;
                for m in &mut row.measures {
                    m.add_number(i as f64 * 1.25 - 7.0);
                    m.add_text(&format!("user-{i}"));
                }
            }
            row.measures
                .push(MeasureState::Span(-5 - n as i64, 1 << 40));
            rows.push(row);
        }
        let mut huge = Aggregates::empty(&kinds);
        huge.count = 1 << 40;
        for m in &mut huge.measures {
            m.add_number(1e20);
            m.add_number(-3e19);
        }
        rows.push(huge);
        rows.push(Aggregates {
            count: -12,
            measures: Default::default(),
        });
        rows
    }

    fn column_of(rows: &[Aggregates]) -> Packed {
        let mut column = Packed::with_capacity(rows.len());
        for row in rows {
            column.push(row);
        }
        column
    }

    #[test]
    fn every_row_reads_back_as_it_was_written() {
        let rows = rows();
        let column = column_of(&rows);
        assert_eq!(column.len(), rows.len());
        for (i, row) in rows.iter().enumerate() {
            let packed = column.at(i);
            assert_eq!(packed.count(), row.count, "row {i}");
            let back = packed.to_owned();
            assert_eq!(&back, row, "row {i}");
            // Each state alone, and each state after passing over the
            // ones before it.
            for (s, state) in row.measures.iter().enumerate() {
                let mut states = packed.states();
                let read = states.nth(s).expect("the state is there");
                assert_eq!(
                    read.get().order(state),
                    Ordering::Equal,
                    "row {i} state {s}"
                );
            }
            assert!(packed.states().nth(row.measures.len()).is_none());
        }
    }

    #[test]
    fn packed_rows_order_as_the_rows_do() {
        let rows = rows();
        let mut column = column_of(&rows);
        // Also each row again, so that equal rows meet with their heap
        // states at other indices.
        for row in &rows {
            column.push(row);
        }
        let n = rows.len();
        for i in 0..2 * n {
            for j in 0..2 * n {
                assert_eq!(
                    column.at(i).cmp(&column.at(j)),
                    rows[i % n].cmp(&rows[j % n]),
                    "rows {i} and {j}"
                );
            }
        }
    }

    #[test]
    fn packed_rows_are_equal_exactly_when_the_rows_are() {
        // Rows with heap states, and rows of the kinds that never put one
        // on the heap (a few `distinct` values stay in the row): those that
        // differ only in the count, a sum or a value, and equal ones.
        let mut rows = rows();
        let inline: Vec<MeasureKind> = kinds()
            .into_iter()
            .filter(|k| !matches!(k, MeasureKind::Quantile { .. }))
            .collect();
        for n in 0..4 {
            for shift in [0.0, 0.5] {
                let mut row = Aggregates::empty(&inline);
                for i in 0..n {
                    row.count += 1;
                    for m in &mut row.measures {
                        m.add_number(i as f64 + shift);
                        m.add_text(&format!("user-{i}"));
                    }
                }
                rows.push(row.clone());
                row.count += 1;
                rows.push(row);
            }
        }
        let mut column = column_of(&rows);
        for row in &rows {
            column.push(row);
        }
        let n = rows.len();
        let mut inline_pairs = [0usize; 2];
        for i in 0..2 * n {
            for j in 0..2 * n {
                let (a, b) = (column.at(i), column.at(j));
                let equal = rows[i % n] == rows[j % n];
                assert_eq!(a == b, equal, "rows {i} and {j}");
                if no_heap_states(a.bytes) && no_heap_states(b.bytes) {
                    inline_pairs[usize::from(equal)] += 1;
                }
            }
        }
        // Both answers came from the bytes alone in some pairs.
        assert!(inline_pairs.iter().all(|n| *n > 0), "{inline_pairs:?}");
    }

    #[test]
    fn a_column_spans_chunks_and_a_merge_sizes_its_bytes_from_its_inputs() {
        let rows = rows();
        let mut column = Packed::with_capacity(2 * CHUNK + 7);
        for i in 0..2 * CHUNK + 7 {
            column.push(&rows[i % rows.len()]);
        }
        for i in (0..2 * CHUNK + 7).step_by(997) {
            assert_eq!(column.at(i).to_owned(), rows[i % rows.len()], "row {i}");
        }
        let merged = Packed::merge_capacity(&column, &column);
        assert_eq!(merged.expected, 2 * column.len());
        assert_eq!(merged.expected_bytes, 2 * column.bytes());
    }

    #[test]
    fn a_cleared_column_holds_only_what_comes_after() {
        let rows = rows();
        // Past a chunk first, so that clearing drops whole chunks too.
        let mut column = Packed::with_capacity(1);
        for i in 0..CHUNK + 3 {
            column.push(&rows[i % rows.len()]);
        }
        for shift in 1..rows.len() {
            column.clear();
            assert_eq!(column.len(), 0);
            assert_eq!(column.bytes(), 0);
            let after: Vec<&Aggregates> = rows.iter().cycle().skip(shift).take(3).collect();
            for row in &after {
                column.push(row);
            }
            assert_eq!(column.len(), after.len());
            for (i, row) in after.iter().enumerate() {
                assert_eq!(&column.at(i).to_owned(), *row, "row {i} after {shift}");
            }
        }
    }

    /// A query's group for a row's states `slots`, its `distinct` state
    /// already registers or not.
    fn group(slots: &[Option<usize>], registers: bool) -> Aggregates {
        let kinds = kinds();
        Aggregates {
            count: 0,
            measures: slots
                .iter()
                .map(|slot| match slot.map(|s| kinds.get(s)) {
                    None => MeasureState::Count,
                    Some(None) => MeasureState::empty_span(),
                    Some(Some(MeasureKind::Distinct { .. })) if registers => {
                        MeasureState::Registers(distinct::Registers::empty())
                    }
                    Some(Some(kind)) => MeasureState::empty(kind),
                })
                .collect(),
        }
    }

    #[test]
    fn a_row_merges_into_a_group_as_its_states_would() {
        let rows = rows();
        let column = column_of(&rows);
        let n = kinds().len() + 1;
        let arrangements: Vec<Vec<Option<usize>>> = vec![
            (0..n).map(Some).collect(),
            (0..n).rev().map(Some).collect(),
            vec![None, Some(1), Some(5), Some(5)],
            vec![Some(5), None, Some(7)],
            vec![],
        ];
        for slots in &arrangements {
            for registers in [false, true] {
                let mut fast = group(slots, registers);
                let mut slow = fast.clone();
                for i in 0..rows.len() {
                    column
                        .at(i)
                        .merge_into(&mut fast, &Takers::new(slots.clone()));
                    let row = column.at(i).to_owned();
                    slow.count += row.count;
                    for (state, slot) in slow.measures.iter_mut().zip(slots) {
                        if let Some(m) = slot.and_then(|s| row.measures.get(s)) {
                            state.merge_query(m);
                        }
                    }
                }
                assert_eq!(fast, slow, "slots {slots:?}, registers {registers}");
                assert!(fast.count != 0);
            }
        }
    }
}
