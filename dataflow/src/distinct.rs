//! Reading a `distinct` sketch back from bytes, soundly.
//!
//! `cardinality-estimator` 1.0.3 keeps a sketch's values in a buffer it
//! allocated itself and later frees assuming a power-of-two capacity (an
//! array of up to 128 hashes) or exactly 771 words (the registers). Its own
//! `Deserialize` hands it whatever `Vec` serde built, and grows an array's
//! by doubling, so the buffer is later freed with a size it was not
//! allocated with: undefined behaviour on every restored array whose length
//! is not a power of two (`tests/distinct_memory.rs` shows it).
//!
//! [`deserialize`] reads the same serialized form — `(data, None)` for up
//! to two values, `(data, Some(values))` for an array, `(data,
//! Some(registers))` for the registers — and rebuilds the sketch without
//! that path:
//!
//! - up to 128 values are inserted again through the crate's public API, as
//!   hashes that encode to exactly the stored values, in their stored order,
//!   so the sketch is the same, bit for bit;
//! - registers are handed to the crate's deserializer as a sequence that
//!   says its exact length, which the registers' buffer needs.
//!
//! Serialization is unchanged, so checkpoints and the exchange between
//! processes keep their bytes.

use serde::de::value::SeqDeserializer;
use serde::de::Error;
use serde::{Deserialize, Deserializer};

use crate::aggregate::DistinctSketch;

/// The sketch's precision: 2^12 registers.
const P: u32 = 12;
/// Bits of a register, and of the rank in a stored value.
const W: u32 = 6;
/// The most values the sketch keeps before it becomes registers.
const MAX_VALUES: usize = 128;
/// Words of the registers' form: 4096 six-bit registers, a zero count, a
/// harmonic sum and one spare word.
const REGISTER_WORDS: usize = (1 << P) * W as usize / 32 + 3;
/// The two low bits of `data` say which form a sketch is in.
const FORM_MASK: usize = 3;
const FORM_SMALL: usize = 0;
const FORM_ARRAY: usize = 1;
const FORM_REGISTERS: usize = 3;

/// Reads a sketch written by `cardinality-estimator`'s `Serialize`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DistinctSketch, D::Error> {
    let (data, values): (usize, Option<Vec<u32>>) = Deserialize::deserialize(d)?;
    match (data & FORM_MASK, values) {
        (FORM_SMALL, None) => {
            let small = [(data >> 2) & 0x7fff_ffff, (data >> 33) & 0x7fff_ffff];
            let values: Vec<u32> = small
                .iter()
                .filter(|v| **v != 0)
                .map(|v| *v as u32)
                .collect();
            rebuild(&values, 0..=2).map_err(D::Error::custom)
        }
        (FORM_ARRAY, Some(values)) => rebuild(&values, 3..=MAX_VALUES).map_err(D::Error::custom),
        (FORM_REGISTERS, Some(registers)) if registers.len() == REGISTER_WORDS => {
            // An exact length, so the buffer serde fills is allocated once,
            // with exactly the capacity the crate frees it with.
            DistinctSketch::deserialize(TupleOf((data, Some(registers)))).map_err(D::Error::custom)
        }
        (form, values) => Err(D::Error::custom(format!(
            "not a distinct sketch: form {form} with {} values",
            values.map_or_else(|| "no".to_string(), |v| v.len().to_string())
        ))),
    }
}

/// A sketch's serialized form without the address the crate keeps in it:
/// equal for equal sketches, and the same in every process, so it can break
/// ties in an order.
pub fn canonical(sketch: &DistinctSketch) -> (usize, Option<Vec<u32>>) {
    let value = serde_json::to_value(sketch).unwrap_or_default();
    let (data, values): (usize, Option<Vec<u32>>) =
        serde_json::from_value(value).unwrap_or_default();
    match data & FORM_MASK {
        FORM_SMALL => (data, values),
        // Only the form is kept: the rest of `data` is the buffer's address
        // (and an array's length, which its values say).
        form => (form, values),
    }
}

/// A sketch holding `values`, inserted in their order; an error unless
/// every value is one the sketch could have stored and they are as many as
/// its form holds.
fn rebuild(
    values: &[u32],
    count: std::ops::RangeInclusive<usize>,
) -> Result<DistinctSketch, String> {
    if !count.contains(&values.len()) {
        return Err(format!(
            "a distinct sketch of this form holds {count:?} values, not {}",
            values.len()
        ));
    }
    let mut sketch = DistinctSketch::new();
    for (at, value) in values.iter().enumerate() {
        let hash = hash_encoding_to(*value)
            .ok_or_else(|| format!("value {at} of a distinct sketch ({value:#x}) is not a hash"))?;
        sketch.insert_hash(hash);
    }
    if sketch.estimate() != values.len() {
        return Err("a distinct sketch holds the same value twice".to_string());
    }
    Ok(sketch)
}

/// How the crate stores a 64-bit hash: its low 25 bits, then the rank (one
/// more than the number of one bits from bit `P` up).
fn encode(hash: u64) -> u32 {
    let low = (hash as u32) & ((1 << (32 - W - 1)) - 1);
    let rank = (!hash >> P).trailing_zeros() + 1;
    (low << W) | rank
}

/// A hash the crate stores as `value`, if there is one.
fn hash_encoding_to(value: u32) -> Option<u64> {
    let low = u64::from(value >> W);
    let rank = value & ((1 << W) - 1);
    let ones = rank.checked_sub(1)?;
    if P + ones >= 64 {
        return None;
    }
    let hash = low | (((1u64 << ones) - 1) << P);
    (encode(hash) == value).then_some(hash)
}

/// Presents `(data, Some(registers))` to a `Deserialize` as the tuple it
/// was serialized as, the registers as a sequence of known length.
struct TupleOf((usize, Option<Vec<u32>>));

impl<'de> Deserializer<'de> for TupleOf {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        let (data, values) = self.0;
        v.visit_seq(Parts {
            data: Some(data),
            values: Some(values),
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// The two parts of the tuple, in order.
struct Parts {
    data: Option<usize>,
    values: Option<Option<Vec<u32>>>,
}

impl<'de> serde::de::SeqAccess<'de> for Parts {
    type Error = serde::de::value::Error;

    fn next_element_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        if let Some(data) = self.data.take() {
            return seed
                .deserialize(serde::de::value::UsizeDeserializer::new(data))
                .map(Some);
        }
        match self.values.take() {
            Some(values) => seed.deserialize(Values(values)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(usize::from(self.data.is_some()) + usize::from(self.values.is_some()))
    }
}

/// `Option<Vec<u32>>` as a deserializer; the vector's length is exact.
struct Values(Option<Vec<u32>>);

impl<'de> Deserializer<'de> for Values {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            None => v.visit_none(),
            Some(values) => v.visit_some(SeqDeserializer::new(values.into_iter())),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[derive(Deserialize)]
    struct Read(#[serde(deserialize_with = "deserialize")] DistinctSketch);

    fn sketch_of(n: usize, seed: u64) -> DistinctSketch {
        let mut s = DistinctSketch::new();
        for i in 0..n {
            s.insert(&format!("user-{seed}-{i}"));
        }
        s
    }

    #[test]
    fn every_stored_hash_is_found_again() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..100_000 {
            let hash: u64 = rng.random();
            let value = encode(hash);
            let found = hash_encoding_to(value).expect("a stored value has a hash");
            assert_eq!(encode(found), value);
        }
    }

    #[test]
    fn sketches_of_every_form_read_back_bit_for_bit() {
        for n in [0, 1, 2, 3, 5, 17, 100, 127, 128, 129, 500, 5_000] {
            let sketch = sketch_of(n, n as u64);
            let json = serde_json::to_vec(&sketch).unwrap();
            let binary = bincode::serialize(&sketch).unwrap();
            for back in [
                serde_json::from_slice::<Read>(&json).unwrap().0,
                bincode::deserialize::<Read>(&binary).unwrap().0,
            ] {
                assert_eq!(back.estimate(), sketch.estimate(), "{n} values");
                assert!(back == sketch, "{n} values");
                assert_eq!(canonical(&back), canonical(&sketch), "{n} values");
            }
        }
    }

    #[test]
    fn what_is_not_a_sketch_is_an_error() {
        let read = |json: &str| serde_json::from_str::<Read>(json);
        // An array form with two values, a small form with a vector, a
        // value of rank 0, the same value twice, registers too short, an
        // unknown form.
        assert!(read("[1,[64,65]]").is_err());
        assert!(read("[0,[]]").is_err());
        assert!(read("[1,[64,65,128]]").is_err());
        assert!(read("[1,[65,65,129]]").is_err());
        assert!(read("[3,[1,2,3]]").is_err());
        assert!(read("[2,null]").is_err());
        assert!(read("[1,[65,129,193]]").is_ok());
    }
}
