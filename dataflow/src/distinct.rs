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
//!
//! [`Registers`] is the form a query's group takes once its sketch is
//! registers: merging into plain bytes is several times cheaper than into
//! the crate's packed form.

use serde::de::value::SeqDeserializer;
use serde::de::Error;
use serde::{Deserialize, Deserializer, Serialize};

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
pub(crate) const FORM_SMALL: usize = 0;
pub(crate) const FORM_ARRAY: usize = 1;
const FORM_REGISTERS: usize = 3;

/// Reads a sketch written by `cardinality-estimator`'s `Serialize`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DistinctSketch, D::Error> {
    let (data, values): (usize, Option<Vec<u32>>) = Deserialize::deserialize(d)?;
    stored(data, values)
        .and_then(Stored::into_sketch)
        .map_err(D::Error::custom)
}

/// What a serialized sketch holds.
pub(crate) enum Stored {
    /// Up to 128 stored values, in their order: each one a hash could be
    /// stored as, as many as the sketch's form holds (not yet checked to be
    /// all different).
    Values(Vec<u32>),
    /// The registers' words, exactly as many as the registers' form has.
    Registers(Vec<u32>),
}

/// What a serialized sketch holds, read from its `data` word and its
/// values or registers, and checked as far as it can be without building it.
pub(crate) fn stored(data: usize, values: Option<Vec<u32>>) -> Result<Stored, String> {
    let (values, count) = match (data & FORM_MASK, values) {
        (FORM_SMALL, None) => {
            let values: Vec<u32> = small_values(data)
                .iter()
                .filter(|v| **v != 0)
                .map(|v| *v as u32)
                .collect();
            (values, 0..=2)
        }
        (FORM_ARRAY, Some(values)) => (values, 3..=MAX_VALUES),
        (FORM_REGISTERS, Some(registers)) if registers.len() == REGISTER_WORDS => {
            return Ok(Stored::Registers(registers))
        }
        (form, values) => {
            return Err(format!(
                "not a distinct sketch: form {form} with {} values",
                values.map_or_else(|| "no".to_string(), |v| v.len().to_string())
            ))
        }
    };
    if !count.contains(&values.len()) {
        return Err(format!(
            "a distinct sketch of this form holds {count:?} values, not {}",
            values.len()
        ));
    }
    if let Some((at, value)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| hash_encoding_to(**v).is_none())
    {
        return Err(format!(
            "value {at} of a distinct sketch ({value:#x}) is not a hash"
        ));
    }
    Ok(Stored::Values(values))
}

impl Stored {
    /// The crate's sketch of what is stored: values inserted again in their
    /// order, registers handed over with their exact length. An error when
    /// a value comes twice.
    pub(crate) fn into_sketch(self) -> Result<DistinctSketch, String> {
        match self {
            Stored::Values(values) => {
                let sketch = sketch_of_stored(&values);
                if sketch.estimate() != values.len() {
                    return Err(TWICE.to_string());
                }
                Ok(sketch)
            }
            // An exact length, so the buffer serde fills is allocated once,
            // with exactly the capacity the crate frees it with.
            Stored::Registers(registers) => {
                DistinctSketch::deserialize(TupleOf((FORM_REGISTERS, Some(registers))))
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Why a sketch whose values repeat is refused.
pub(crate) const TWICE: &str = "a distinct sketch holds the same value twice";

/// The `data` word of a sketch of the small form holding `a` and `b` (0 for none).
pub(crate) fn small_data(a: u32, b: u32) -> usize {
    FORM_SMALL | ((a as usize) << 2) | ((b as usize) << 33)
}

/// The crate's sketch of values in the form it stores them, inserted in
/// their order: the same sketch as had their values been inserted.
pub(crate) fn sketch_of_stored(values: &[u32]) -> DistinctSketch {
    let mut sketch = DistinctSketch::new();
    for value in values {
        insert_stored(&mut sketch, *value);
    }
    sketch
}

/// Inserts a value in the form the crate stores it (one that
/// [`encode`] gave; anything else is left out).
pub(crate) fn insert_stored(sketch: &mut DistinctSketch, value: u32) {
    if let Some(hash) = hash_encoding_to(value) {
        sketch.insert_hash(hash);
    }
}

/// The two values a sketch of the small form holds in its `data` word
/// (0 where it holds none).
fn small_values(data: usize) -> [usize; 2] {
    [(data >> 2) & 0x7fff_ffff, (data >> 33) & 0x7fff_ffff]
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

/// How the crate stores a 64-bit hash: its low 25 bits, then the rank (one
/// more than the number of one bits from bit `P` up).
pub(crate) fn encode(hash: u64) -> u32 {
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

/// How many registers a sketch has.
const REGISTERS: usize = 1 << P;
/// A run of 16 six-bit registers fills three words exactly.
const RUN: usize = 16;

/// A `distinct` state while a query merges many sketches into it: the
/// sketch's 4096 registers, one byte each.
///
/// A query folds thousands of row sketches into each of its groups. The
/// crate merges a sketch of a few values into registers one value at a
/// time, updating its packed six-bit registers and a floating-point
/// harmonic sum as it goes, and a whole sketch into registers register by
/// register the same way. Here merging is a byte-wise maximum, and the sum
/// is worked out once, when the estimate is asked for
/// ([`Registers::to_sketch`] gives the crate's own sketch back).
///
/// A group only turns into registers once the crate's sketch would have
/// (more than 128 values), so its estimate is the one the crate gives, up
/// to the rounding of the harmonic sum: the crate adds it up as it goes in
/// `f32`, this in `f64` at the end.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Registers(Box<[u8]>);

impl std::fmt::Debug for Registers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registers(~{} values)", self.estimate())
    }
}

impl Registers {
    /// Registers of no value.
    pub fn empty() -> Registers {
        Registers(vec![0; REGISTERS].into_boxed_slice())
    }

    /// The registers of `sketch`.
    pub fn of(sketch: &DistinctSketch) -> Registers {
        let mut registers = Registers::empty();
        registers.add(sketch);
        registers
    }

    /// Merges a sketch in: each of its values, or each of its registers.
    ///
    /// The crate keeps a sketch's parts to itself but serializes them, so
    /// they are merged as it serializes them (see [`Peek`]), without
    /// copying them anywhere first.
    pub fn add(&mut self, sketch: &DistinctSketch) {
        let mut peek = Peek {
            sink: self,
            form: FORM_SMALL,
            words: 0,
            run: [0; 3],
        };
        // Only a sketch is read here, and `Peek` reads every form.
        let _ = sketch.serialize(&mut peek);
    }

    /// Merges other registers in.
    pub fn merge(&mut self, other: &Registers) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// One stored value: the low bits of a hash above the rank.
    #[inline]
    pub(crate) fn insert(&mut self, value: u32) {
        let rank = (value & ((1 << W) - 1)) as u8;
        let at = ((value >> W) & ((1 << P) - 1)) as usize;
        if let Some(register) = self.0.get_mut(at) {
            *register = (*register).max(rank);
        }
    }

    /// Merges the `n`th run of 16 registers in, as the crate packs them:
    /// six bits each, low bits first, in three words.
    #[inline]
    fn max_run(&mut self, n: usize, bits: u128) {
        if bits == 0 {
            return;
        }
        let Some(registers) = self.0.get_mut(n * RUN..(n + 1) * RUN) else {
            return;
        };
        for (i, register) in registers.iter_mut().enumerate() {
            let rank = ((bits >> (i * W as usize)) & 63) as u8;
            *register = (*register).max(rank);
        }
    }

    /// The crate's sketch holding these registers.
    pub fn to_sketch(&self) -> DistinctSketch {
        let mut words = vec![0u32; REGISTER_WORDS];
        // How many registers hold each rank, counted in four tables so
        // that successive registers of one rank do not wait on one another;
        // then the zero count, and the harmonic sum as 64 exact terms.
        let mut tables = [[0u32; 1 << W]; 4];
        for registers in self.0.chunks_exact(tables.len()) {
            for (table, r) in tables.iter_mut().zip(registers) {
                table[usize::from(*r) & ((1 << W) - 1)] += 1;
            }
        }
        let ranks: Vec<u32> = (0..1 << W)
            .map(|rank| tables.iter().map(|t| t[rank]).sum())
            .collect();
        let sum: f64 = ranks
            .iter()
            .zip(0u64..)
            .map(|(n, rank)| f64::from(*n) * f64::from_bits((1023 - rank) << 52))
            .sum();
        words[0] = ranks[0];
        words[1] = (sum as f32).to_bits();
        for (run, out) in self.0.chunks_exact(RUN).zip(words[2..].chunks_exact_mut(3)) {
            let mut bits = 0u128;
            for (i, r) in run.iter().enumerate() {
                bits |= u128::from(*r) << (i * W as usize);
            }
            out[0] = bits as u32;
            out[1] = (bits >> 32) as u32;
            out[2] = (bits >> 64) as u32;
        }
        // The words have exactly the registers' length, which is all the
        // crate checks.
        DistinctSketch::deserialize(TupleOf((FORM_REGISTERS, Some(words)))).unwrap_or_default()
    }

    /// The estimate of distinct values, as the crate works it out.
    pub fn estimate(&self) -> usize {
        self.to_sketch().estimate()
    }
}

/// Whether the crate keeps `sketch` as registers (rather than as up to 128
/// values, in its `usize` or in an array).
pub fn is_registers(sketch: &DistinctSketch) -> bool {
    sketch.size_of() > std::mem::size_of::<usize>() + MAX_VALUES * 4
}

impl Serialize for Registers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Registers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = Deserialize::deserialize(d)?;
        if bytes.len() != REGISTERS {
            return Err(D::Error::custom(format!(
                "distinct registers are {REGISTERS} bytes, not {}",
                bytes.len()
            )));
        }
        if let Some(rank) = bytes.iter().find(|r| **r >= 1 << W) {
            return Err(D::Error::custom(format!(
                "a distinct register holds at most {}, not {rank}",
                (1 << W) - 1
            )));
        }
        Ok(Registers(bytes.into_boxed_slice()))
    }
}

/// Reads a sketch as the crate serializes it, handing its values (or its
/// registers) to a [`Sink`]: first the `data` word, whose low bits say the
/// form (and which holds up to two values itself), then for an array its
/// values, for registers two words of zero count and harmonic sum and the
/// packed registers.
struct Peek<'r, S> {
    /// Where the values (or the registers) go.
    sink: &'r mut S,
    /// The sketch's form, from its `data` word.
    form: usize,
    /// Words read so far.
    words: usize,
    /// The words of the run of registers being read.
    run: [u32; 3],
}

/// What [`Peek`] is not built to read: anything but a sketch.
#[derive(Debug)]
struct NotASketch;

impl std::fmt::Display for NotASketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a distinct sketch")
    }
}

impl std::error::Error for NotASketch {}

impl serde::ser::Error for NotASketch {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NotASketch
    }
}

/// The methods of a `Serializer` that a sketch never calls.
macro_rules! not_a_sketch {
    ($($method:ident($($arg:ty),*)),* $(,)?) => {
        $(fn $method(self, $(_: $arg),*) -> Result<(), NotASketch> {
            Err(NotASketch)
        })*
    };
}

/// What [`Peek`] hands a sketch's parts to.
trait Sink {
    /// One stored value.
    fn value(&mut self, value: u32);
    /// The `n`th run of 16 registers, packed.
    fn run(&mut self, n: usize, bits: u128) -> Result<(), NotASketch>;
}

impl Sink for Registers {
    #[inline]
    fn value(&mut self, value: u32) {
        self.insert(value);
    }

    #[inline]
    fn run(&mut self, n: usize, bits: u128) -> Result<(), NotASketch> {
        self.max_run(n, bits);
        Ok(())
    }
}

/// Each value `sketch` holds, in the form the crate stores them, handed to
/// `f`; false when the sketch is registers, which hold no values.
pub fn for_each_value(sketch: &DistinctSketch, f: impl FnMut(u32)) -> bool {
    if is_registers(sketch) {
        return false;
    }
    let mut sink = Each(f);
    let mut peek = Peek {
        sink: &mut sink,
        form: FORM_SMALL,
        words: 0,
        run: [0; 3],
    };
    sketch.serialize(&mut peek).is_ok() && peek.form != FORM_REGISTERS
}

/// Values only, each handed to a function: a sketch of registers has none
/// to give.
struct Each<F>(F);

impl<F: FnMut(u32)> Sink for Each<F> {
    #[inline]
    fn value(&mut self, value: u32) {
        (self.0)(value);
    }

    fn run(&mut self, _: usize, _: u128) -> Result<(), NotASketch> {
        Err(NotASketch)
    }
}

impl<S: Sink> serde::Serializer for &mut Peek<'_, S> {
    type Ok = ();
    type Error = NotASketch;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = serde::ser::Impossible<(), NotASketch>;
    type SerializeTupleVariant = serde::ser::Impossible<(), NotASketch>;
    type SerializeMap = serde::ser::Impossible<(), NotASketch>;
    type SerializeStruct = serde::ser::Impossible<(), NotASketch>;
    type SerializeStructVariant = serde::ser::Impossible<(), NotASketch>;

    #[inline]
    fn serialize_u64(self, v: u64) -> Result<(), NotASketch> {
        let data = v as usize;
        self.form = data & FORM_MASK;
        if self.form == FORM_SMALL {
            for value in small_values(data) {
                if value != 0 {
                    self.sink.value(value as u32);
                }
            }
        }
        Ok(())
    }

    #[inline]
    fn serialize_u32(self, v: u32) -> Result<(), NotASketch> {
        let at = self.words;
        self.words += 1;
        if self.form != FORM_REGISTERS {
            self.sink.value(v);
        } else if let Some(word) = at.checked_sub(2) {
            // Words 0 and 1 are the zero count and the harmonic sum; then
            // each run of 16 registers fills three words.
            self.run[word % 3] = v;
            if word % 3 == 2 {
                let bits = u128::from(self.run[0])
                    | (u128::from(self.run[1]) << 32)
                    | (u128::from(self.run[2]) << 64);
                self.sink.run(word / 3, bits)?;
            }
        }
        Ok(())
    }

    fn serialize_none(self) -> Result<(), NotASketch> {
        Ok(())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), NotASketch> {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self, NotASketch> {
        Ok(self)
    }

    fn serialize_tuple(self, _: usize) -> Result<Self, NotASketch> {
        Ok(self)
    }

    not_a_sketch! {
        serialize_bool(bool), serialize_i8(i8), serialize_i16(i16), serialize_i32(i32),
        serialize_i64(i64), serialize_u8(u8), serialize_u16(u16), serialize_f32(f32),
        serialize_f64(f64), serialize_char(char), serialize_str(&str), serialize_bytes(&[u8]),
        serialize_unit(), serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotASketch> {
        Err(NotASketch)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), NotASketch> {
        Err(NotASketch)
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, NotASketch> {
        Err(NotASketch)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, NotASketch> {
        Err(NotASketch)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, NotASketch> {
        Err(NotASketch)
    }

    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, NotASketch> {
        Err(NotASketch)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, NotASketch> {
        Err(NotASketch)
    }
}

/// A sketch's tuple and its sequence of words: each element is read in turn.
macro_rules! elements_in_turn {
    ($($compound:path),*) => {
        $(impl<S: Sink> $compound for &mut Peek<'_, S> {
            type Ok = ();
            type Error = NotASketch;

            #[inline]
            fn serialize_element<T: ?Sized + Serialize>(
                &mut self,
                value: &T,
            ) -> Result<(), NotASketch> {
                value.serialize(&mut **self)
            }

            fn end(self) -> Result<(), NotASketch> {
                Ok(())
            }
        })*
    };
}

elements_in_turn!(serde::ser::SerializeSeq, serde::ser::SerializeTuple);

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

    /// A sketch's registers and zero count: its serialized words but the
    /// harmonic sum, which is rounded differently (see [`Registers`]).
    fn registers_of(sketch: &DistinctSketch) -> Vec<u32> {
        let (form, words) = canonical(sketch);
        assert_eq!(form, FORM_REGISTERS, "a sketch in registers");
        let mut words = words.unwrap();
        words.remove(1);
        words
    }

    #[test]
    fn registers_give_the_sketch_back() {
        for n in [129, 500, 5_000, 200_000] {
            let sketch = sketch_of(n, 1);
            let back = Registers::of(&sketch).to_sketch();
            assert_eq!(registers_of(&back), registers_of(&sketch), "{n} values");
            assert!(
                back.estimate().abs_diff(sketch.estimate()) <= 1,
                "{n} values: {} against {}",
                back.estimate(),
                sketch.estimate()
            );
        }
    }

    #[test]
    fn merging_into_registers_is_merging_sketches() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // Sketches of every form, merged both ways in one random order.
        let sizes = [0, 1, 2, 3, 40, 128, 129, 700, 3_000];
        let mut merged = DistinctSketch::new();
        let mut registers = Registers(vec![0; REGISTERS].into_boxed_slice());
        for i in 0..60 {
            let n = sizes[rng.random_range(0..sizes.len())];
            let sketch = sketch_of(n, i);
            merged.merge(&sketch);
            registers.add(&sketch);
        }
        let back = registers.to_sketch();
        assert_eq!(registers_of(&back), registers_of(&merged));
        assert!(back.estimate().abs_diff(merged.estimate()) <= 1);
        // Registers into registers.
        let mut other = Registers::of(&sketch_of(900, 99));
        other.merge(&registers);
        merged.merge(&sketch_of(900, 99));
        assert_eq!(registers_of(&other.to_sketch()), registers_of(&merged));
    }

    #[test]
    fn only_a_sketch_of_registers_is_said_to_be_one() {
        for (n, registers) in [
            (0, false),
            (2, false),
            (3, false),
            (128, false),
            (129, true),
        ] {
            assert_eq!(is_registers(&sketch_of(n, 5)), registers, "{n} values");
        }
    }

    #[test]
    fn registers_survive_serialization_and_refuse_what_they_are_not() {
        let registers = Registers::of(&sketch_of(1_000, 3));
        let binary = bincode::serialize(&registers).unwrap();
        let json = serde_json::to_vec(&registers).unwrap();
        assert!(bincode::deserialize::<Registers>(&binary).unwrap() == registers);
        assert!(serde_json::from_slice::<Registers>(&json).unwrap() == registers);
        assert!(serde_json::from_str::<Registers>("[1,2,3]").is_err());
        let mut too_high = vec![0u8; REGISTERS];
        too_high[7] = 64;
        let json = serde_json::to_vec(&too_high).unwrap();
        assert!(serde_json::from_slice::<Registers>(&json).is_err());
    }
}
