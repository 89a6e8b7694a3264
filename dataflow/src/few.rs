//! A row's `distinct` state: a few values held in the row itself, then the
//! crate's sketch.
//!
//! Most rows of a fine-grained metric see a handful of distinct values (a
//! game's reward type in one minute: three to ten players). The crate holds
//! up to two values in its own word and from three on an array on the heap,
//! so every such row was an allocation: made again each time differential
//! copies the row from one batch to the next, and a cache miss for a query
//! that reads it. [`DistinctState`] holds up to [`FEW`] values inside the
//! row, exactly as the crate stores them (a hash's low bits and its rank),
//! and becomes the crate's sketch, the same bit for bit as if every value
//! had been inserted into it, when a value more comes.
//!
//! Its serialized form is the crate's for the same values (two values in
//! the `data` word, more in an array), so checkpoints and the exchange
//! between processes read and write what they did before.
//!
//! A sketch is shared, not copied, when its row is cloned: differential
//! clones every row of two batches it merges into one, and a sketch of a
//! busy row is an array of up to 128 values or 3 KB of registers (a clone
//! cost about 2,250 instructions on average, 6% of ingest's). A shared
//! sketch is copied only when a row that shares it is changed
//! ([`Arc::make_mut`]), which a merge does only where a key meets itself.

use std::hash::BuildHasher;
use std::sync::Arc;

use serde::de::Error;
use serde::{Deserialize, Deserializer, Serialize};

use crate::aggregate::DistinctSketch;
use crate::distinct::{self, Registers, Stored};

/// The most values a row holds itself.
pub const FEW: usize = 5;

/// The distinct values of one row (or one merged group).
#[derive(Clone, PartialEq)]
pub enum DistinctState {
    /// Up to [`FEW`] stored values, in the order they came; no two alike.
    Few {
        /// How many of `values` are used.
        len: u8,
        /// The values, then zeros.
        values: [u32; FEW],
    },
    /// The crate's sketch: more than [`FEW`] values, and never fewer again.
    /// Shared by the clones of its row until one of them changes.
    Sketch(Arc<DistinctSketch>),
}

impl Default for DistinctState {
    fn default() -> Self {
        DistinctState::Few {
            len: 0,
            values: [0; FEW],
        }
    }
}

impl std::fmt::Debug for DistinctState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DistinctState::Few { .. } => f.debug_tuple("Few").field(&self.few()).finish(),
            DistinctState::Sketch(s) => f.debug_tuple("Sketch").field(s).finish(),
        }
    }
}

impl DistinctState {
    /// No values.
    pub fn new() -> Self {
        DistinctState::default()
    }

    /// The values held in the row; empty once it is a sketch.
    pub fn few(&self) -> &[u32] {
        match self {
            DistinctState::Few { len, values } => &values[..usize::from(*len)],
            DistinctState::Sketch(_) => &[],
        }
    }

    /// Counts one value, hashed as the crate hashes it.
    pub fn insert(&mut self, text: &str) {
        let hash = std::hash::BuildHasherDefault::<wyhash::WyHash>::default().hash_one(text);
        self.insert_stored(distinct::encode(hash));
    }

    /// Counts one value in the form the crate stores it.
    fn insert_stored(&mut self, value: u32) {
        match self {
            DistinctState::Few { len, values } => {
                let used = usize::from(*len);
                if values[..used].contains(&value) {
                    return;
                }
                if used < FEW {
                    values[used] = value;
                    *len += 1;
                    return;
                }
                let mut sketch = distinct::sketch_of_stored(&values[..used]);
                distinct::insert_stored(&mut sketch, value);
                *self = DistinctState::Sketch(Arc::new(sketch));
            }
            DistinctState::Sketch(sketch) => distinct::insert_stored(Arc::make_mut(sketch), value),
        }
    }

    /// Merges another state of the same measure in.
    pub fn merge(&mut self, other: &DistinctState) {
        match other {
            DistinctState::Few { .. } => {
                for value in other.few() {
                    self.insert_stored(*value);
                }
            }
            DistinctState::Sketch(theirs) => {
                if let DistinctState::Few { .. } = self {
                    let mut sketch = theirs.clone();
                    for value in self.few() {
                        distinct::insert_stored(Arc::make_mut(&mut sketch), *value);
                    }
                    *self = DistinctState::Sketch(sketch);
                } else if let DistinctState::Sketch(mine) = self {
                    // A set merged with itself is itself: a shared sketch
                    // is not copied to learn that.
                    if !Arc::ptr_eq(mine, theirs) {
                        Arc::make_mut(mine).merge(theirs);
                    }
                }
            }
        }
    }

    /// The estimate of distinct values: exact while the crate's sketch
    /// would hold values rather than registers.
    pub fn estimate(&self) -> usize {
        match self {
            DistinctState::Few { len, .. } => usize::from(*len),
            DistinctState::Sketch(s) => s.estimate(),
        }
    }

    /// Bytes the state takes, on the heap included.
    pub fn size_of(&self) -> usize {
        match self {
            DistinctState::Few { .. } => std::mem::size_of::<DistinctState>(),
            DistinctState::Sketch(s) => std::mem::size_of::<[usize; 2]>() + s.size_of(),
        }
    }

    /// Whether the state is the crate's sketch in its registers' form.
    pub fn is_registers(&self) -> bool {
        matches!(self, DistinctState::Sketch(s) if distinct::is_registers(s))
    }

    /// Merges the state into a query's registers.
    pub fn add_to(&self, registers: &mut Registers) {
        match self {
            DistinctState::Few { .. } => {
                for value in self.few() {
                    registers.insert(*value);
                }
            }
            DistinctState::Sketch(s) => registers.add(s),
        }
    }

    /// The registers of the state.
    pub fn registers(&self) -> Registers {
        let mut registers = Registers::empty();
        self.add_to(&mut registers);
        registers
    }

    /// The state's serialized form without the address the crate keeps in
    /// it (see [`distinct::canonical`]).
    pub fn canonical(&self) -> (usize, Option<Vec<u32>>) {
        match self {
            DistinctState::Few { .. } => {
                let (data, values) = self.data();
                (
                    if values.is_some() {
                        distinct::FORM_ARRAY
                    } else {
                        data
                    },
                    values.map(<[u32]>::to_vec),
                )
            }
            DistinctState::Sketch(s) => distinct::canonical(s),
        }
    }

    /// A `Few` state's `data` word and array, as the crate would serialize
    /// the same values.
    fn data(&self) -> (usize, Option<&[u32]>) {
        let few = self.few();
        match few {
            [] => (distinct::FORM_SMALL, None),
            [a] => (distinct::small_data(*a, 0), None),
            [a, b] => (distinct::small_data(*a, *b), None),
            _ => (distinct::FORM_ARRAY | (few.len() << 56), Some(few)),
        }
    }
}

impl Serialize for DistinctState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DistinctState::Few { .. } => self.data().serialize(s),
            DistinctState::Sketch(sketch) => (**sketch).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for DistinctState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (data, values): (usize, Option<Vec<u32>>) = Deserialize::deserialize(d)?;
        // A sketch of few values is read as the values, in their order.
        match distinct::stored(data, values).map_err(D::Error::custom)? {
            Stored::Values(values) if values.len() <= FEW => {
                let mut state = DistinctState::new();
                for value in &values {
                    state.insert_stored(*value);
                }
                if state.estimate() != values.len() {
                    return Err(D::Error::custom(distinct::TWICE));
                }
                Ok(state)
            }
            stored => stored
                .into_sketch()
                .map(|sketch| DistinctState::Sketch(Arc::new(sketch)))
                .map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(n: usize, seed: usize) -> Vec<String> {
        (0..n).map(|i| format!("player-{seed}-{i}")).collect()
    }

    /// The crate's sketch of `texts`, inserted in turn.
    fn crate_sketch(texts: &[String]) -> DistinctSketch {
        let mut sketch = DistinctSketch::new();
        for t in texts {
            sketch.insert(t);
        }
        sketch
    }

    fn state(texts: &[String]) -> DistinctState {
        let mut state = DistinctState::new();
        for t in texts {
            state.insert(t);
        }
        state
    }

    #[test]
    fn a_state_is_the_crates_sketch_of_the_same_values() {
        for n in [0, 1, 2, 3, FEW, FEW + 1, 40, 128, 129, 3_000] {
            let texts = texts(n, n);
            let (ours, theirs) = (state(&texts), crate_sketch(&texts));
            assert_eq!(ours.estimate(), theirs.estimate(), "{n} values");
            assert_eq!(ours.canonical(), distinct::canonical(&theirs), "{n} values");
            assert_eq!(
                bincode::serialize(&ours.canonical()).unwrap(),
                bincode::serialize(&distinct::canonical(&theirs)).unwrap()
            );
            assert_eq!(
                matches!(ours, DistinctState::Few { .. }),
                n <= FEW,
                "{n} values"
            );
            // Serialized, it reads back as itself, and as the crate's sketch.
            let bytes = bincode::serialize(&ours).unwrap();
            let back: DistinctState = bincode::deserialize(&bytes).unwrap();
            assert_eq!(back, ours, "{n} values");
            let json = serde_json::to_string(&theirs).unwrap();
            let from_crate: DistinctState = serde_json::from_str(&json).unwrap();
            assert_eq!(from_crate, ours, "{n} values");
            // A repeated value changes nothing.
            let mut again = ours.clone();
            for t in &texts {
                again.insert(t);
            }
            assert_eq!(again, ours);
        }
    }

    #[test]
    fn merging_states_is_merging_the_crates_sketches() {
        for (a, b) in [
            (0, 0),
            (1, 2),
            (2, 3),
            (3, 3),
            (FEW, 1),
            (4, 40),
            (40, 4),
            (200, 3),
            (3, 200),
            (300, 300),
        ] {
            let (ta, tb) = (texts(a, 1), texts(b, 2));
            let mut ours = state(&ta);
            ours.merge(&state(&tb));
            let mut theirs = crate_sketch(&ta);
            theirs.merge(&crate_sketch(&tb));
            assert_eq!(ours.estimate(), theirs.estimate(), "{a} and {b}");
            // Registers do not depend on the order values came in.
            let expected = Registers::of(&theirs);
            assert_eq!(ours.registers(), expected, "{a} and {b}");
            let mut merged = Registers::empty();
            state(&ta).add_to(&mut merged);
            state(&tb).add_to(&mut merged);
            assert_eq!(merged, expected, "{a} and {b}");
            // Merging a state into itself changes nothing.
            let before = ours.clone();
            ours.merge(&before);
            assert_eq!(ours.estimate(), before.estimate());
        }
    }

    #[test]
    fn a_few_values_stay_in_the_row() {
        assert!(std::mem::size_of::<DistinctState>() <= 24);
        let few = state(&texts(FEW, 0));
        assert_eq!(few.size_of(), std::mem::size_of::<DistinctState>());
        assert!(!few.is_registers());
        assert!(state(&texts(500, 0)).is_registers());
    }

    #[test]
    fn a_cloned_sketch_is_shared_until_one_clone_changes() {
        let original = state(&texts(40, 0));
        let mut changed = original.clone();
        let (DistinctState::Sketch(a), DistinctState::Sketch(b)) = (&original, &changed) else {
            panic!("40 values are a sketch");
        };
        assert!(Arc::ptr_eq(a, b), "a clone shares the sketch");
        changed.insert("one more");
        changed.merge(&state(&texts(3, 1)));
        assert_eq!(original.estimate(), 40, "the original is unchanged");
        assert_eq!(changed.estimate(), 44);
        assert_eq!(original, state(&texts(40, 0)));
    }

    #[test]
    fn a_state_that_is_no_sketch_is_refused() {
        // Three values, one twice.
        let data = distinct::FORM_ARRAY | (3 << 56);
        let twice = bincode::serialize(&(data, Some(vec![0x41u32, 0x41, 0x81]))).unwrap();
        assert!(bincode::deserialize::<DistinctState>(&twice).is_err());
        // A value no hash is stored as (rank 0).
        let no_hash = bincode::serialize(&(data, Some(vec![0x40u32, 0x81, 0xc1]))).unwrap();
        assert!(bincode::deserialize::<DistinctState>(&no_hash).is_err());
    }
}
