//! Reads only the fields a topology needs out of a JSON record, in one pass
//! and without building a tree: a trie of the wanted paths steers a scanner
//! over the bytes, which borrows strings from the record where it can and
//! checks, without decoding, everything else. The top-level keys of the
//! records read so far are remembered by their place (`KeyMemo`), so
//! that most keys of a stream are recognised with one comparison.
//!
//! The scanner is hand-written because it runs on every byte of every event
//! and is most of ingest's CPU: it reads the benchmark's events in well under
//! half the instructions serde_json's visitor took (`benches/decode.rs`
//! prints both). serde_json stays the authority wherever a value is rare or
//! subtle: strings with escapes, numbers that are not plain integers or short
//! decimals, and every message about a malformed record, which is serde_json's
//! own from a second, slow parse of that record.
//!
//! What counts as one JSON object is what serde_json accepts, with one
//! difference: invalid UTF-8 is refused anywhere in the record, while
//! serde_json let it through in strings it only skipped. Inside skipped values
//! the scanner checks the grammar but not what it does not decode: a lone
//! surrogate escape (`"\ud800"`) or a number too big for an `f64` (`1e400`)
//! is an error where a field is read and accepted elsewhere, as before.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use statflow_dsl::FieldPath;

/// One value read out of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// JSON `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string, borrowed from the record unless it had escapes.
    Str(Cow<'a, str>),
    /// An object or an array.
    Complex,
}

impl Scalar<'_> {
    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// What kind of JSON value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) | Scalar::Float(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Complex => "an object or array",
        }
    }

    /// A non-negative whole number as serde_json gives it: an `Int` while it
    /// fits in an `i64`, a `Float` above.
    fn from_u64(v: u64) -> Self {
        if v <= i64::MAX as u64 {
            Scalar::Int(v as i64)
        } else {
            Scalar::Float(v as f64)
        }
    }
}

/// Which fields to read: a trie of paths, each leaf a slot in the output.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    root: Node,
    paths: Vec<FieldPath>,
    /// The top-level keys of the records read so far, by place: records
    /// of one kind repeat their keys in one order.
    memo: RefCell<KeyMemo>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<(String, Child)>,
    /// Each child's key as [`key_word`] packs it, in the same order: one
    /// comparison per child rules out almost every key of a record.
    words: Vec<u64>,
    /// Each child's place (plus one; zero for none) at its word's slot, so
    /// that a key is looked up with one multiplication and one comparison
    /// rather than one per child: every child's word has a slot of its own
    /// ([`Node::index`]). Empty when two children share a word (long keys
    /// alike in their first 7 bytes and their length); those nodes are
    /// searched child by child.
    slots: Vec<u32>,
    /// The multiplier whose high bits give a word's slot.
    multiplier: u64,
    /// `64 - log2(slots.len())`.
    shift: u32,
}

#[derive(Debug, Clone, Default)]
struct Child {
    slot: Option<usize>,
    node: Option<Node>,
}

/// A key's first 7 bytes, zero-padded, with its length (up to 255) in the
/// top byte: equal words mean equal keys when keys are shorter than 8
/// bytes, and are a first test for longer ones. `room` is `key` followed by
/// whatever the record holds after it, so that 8 bytes can be read at once.
fn key_word(key: &[u8], room: &[u8]) -> u64 {
    let low = match room.first_chunk::<8>() {
        Some(chunk) => u64::from_le_bytes(*chunk),
        None => key
            .iter()
            .take(8)
            .rev()
            .fold(0, |word, &b| (word << 8) | u64::from(b)),
    };
    let mask = (1u64 << (8 * key.len().min(7))) - 1;
    (low & mask) | ((key.len().min(255) as u64) << 56)
}

impl Node {
    /// The place of the child under `key`; `room` is as for [`key_word`].
    /// Runs for every key of every object that is read.
    fn find(&self, key: &[u8], room: &[u8]) -> Option<usize> {
        let word = key_word(key, room);
        let same = |at: &usize| {
            self.words.get(*at) == Some(&word)
                && (key.len() < 8
                    || self
                        .children
                        .get(*at)
                        .is_some_and(|(k, _)| k.as_bytes() == key))
        };
        if self.slots.is_empty() {
            return (0..self.words.len()).find(same);
        }
        let slot = (word.wrapping_mul(self.multiplier) >> self.shift) as usize;
        usize::try_from(*self.slots.get(slot)?)
            .ok()?
            .checked_sub(1)
            .filter(same)
    }

    /// Gives every child's word a slot of its own, trying multipliers (odd
    /// numbers from a fixed sequence, so every build finds the same) and
    /// more slots until one does.
    fn index(&mut self) {
        self.slots.clear();
        let mut distinct = self.words.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != self.words.len() || self.words.len() >= u32::MAX as usize {
            return;
        }
        let mut bits = (2 * self.words.len())
            .next_power_of_two()
            .max(8)
            .trailing_zeros();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        loop {
            for _ in 0..64 {
                seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let multiplier = (seed ^ (seed >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1;
                let shift = 64 - bits;
                let mut slots = vec![0u32; 1 << bits];
                let free = self.words.iter().enumerate().all(|(i, w)| {
                    let slot = &mut slots[(w.wrapping_mul(multiplier) >> shift) as usize];
                    let was = *slot;
                    *slot = i as u32 + 1;
                    was == 0
                });
                if free {
                    (self.slots, self.multiplier, self.shift) = (slots, multiplier, shift);
                    return;
                }
            }
            bits += 1;
        }
    }

    /// The child under `key`, for serde_json's visitor and for keys with
    /// escapes. The visitor's lookup as it was before the scanner, so that
    /// it stays the benchmark's baseline: field names of one length are
    /// common (`game_id`, `user_id`, `seed_id`), so the first byte is
    /// compared before the whole name, which is a call to `memcmp`.
    fn find_key(&self, key: &[u8]) -> Option<usize> {
        self.children.iter().position(|(k, _)| {
            let k = k.as_bytes();
            k.len() == key.len() && k.first() == key.first() && k == key
        })
    }

    /// The child at a place [`Node::find`] or [`Node::find_key`] gave.
    fn child(&self, at: usize) -> Option<&Child> {
        self.children.get(at).map(|(_, c)| c)
    }

    fn child_mut(&mut self, key: &str) -> &mut Child {
        let at = match self.children.iter().position(|(k, _)| k == key) {
            Some(at) => at,
            None => {
                self.children.push((key.to_string(), Child::default()));
                self.words.push(key_word(key.as_bytes(), key.as_bytes()));
                self.index();
                self.children.len() - 1
            }
        };
        &mut self.children[at].1
    }
}

impl Selector {
    /// An empty selector.
    pub fn new() -> Self {
        Selector::default()
    }

    /// The slot of `path`, adding it if new.
    pub fn add(&mut self, path: &FieldPath) -> usize {
        if let Some(slot) = self.slot_of(path) {
            return slot;
        }
        let slot = self.paths.len();
        self.paths.push(path.clone());
        // A key remembered as leading nowhere may lead to the new path.
        *self.memo.get_mut() = KeyMemo::default();
        let mut node = &mut self.root;
        let (last, init) = match path.0.split_last() {
            Some(split) => split,
            None => return slot,
        };
        for segment in init {
            node = node
                .child_mut(segment)
                .node
                .get_or_insert_with(Node::default);
        }
        node.child_mut(last).slot = Some(slot);
        slot
    }

    /// The slot of `path`, if selected.
    pub fn slot_of(&self, path: &FieldPath) -> Option<usize> {
        self.paths.iter().position(|p| p == path)
    }

    /// How many slots.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The path of a slot.
    pub fn path(&self, slot: usize) -> &FieldPath {
        &self.paths[slot]
    }

    /// Reads the selected fields of one JSON object into `out` (resized to
    /// one entry per slot; `None` where the field is absent).
    ///
    /// A key that appears twice is read twice, in order: each slot keeps the
    /// last value it was given, and a later object under the same key does
    /// not clear what an earlier one gave to the slots below it
    /// (`{"p": {"q": 1}, "p": {}}` reads `p.q` as 1). On an error, what `out`
    /// holds is unspecified.
    pub fn extract<'a>(
        &self,
        record: &'a [u8],
        out: &mut Vec<Option<Scalar<'a>>>,
    ) -> Result<(), String> {
        out.clear();
        out.resize_with(self.paths.len(), || None);
        self.extract_into(record, out)
    }

    /// [`Selector::extract`] into slots the caller made: one per path, each
    /// `None`. Every event is read this way, into slots on the stack.
    pub fn extract_into<'a>(
        &self,
        record: &'a [u8],
        out: &mut [Option<Scalar<'a>>],
    ) -> Result<(), String> {
        assert_eq!(out.len(), self.paths.len(), "one slot per path");
        let mut memo = self.memo.borrow_mut();
        match Scan::record(record, &self.root, out, &mut memo) {
            Ok(()) => Ok(()),
            Err(fault) => Err(self.explain(record, fault)),
        }
    }

    /// The message for a record the scanner refused: serde_json's, from
    /// [`Selector::extract_with_visitor`], so that messages are what they
    /// always were; the scanner's own where serde_json accepts the record
    /// (invalid UTF-8 in a string it skips).
    #[cold]
    #[inline(never)]
    fn explain(&self, record: &[u8], fault: Fault) -> String {
        match self.extract_with_visitor(record, &mut Vec::new()) {
            Err(message) => message,
            Ok(()) => fault.message(record),
        }
    }

    /// What [`Selector::extract`] does, by the serde_json visitor that did
    /// it before the scanner, at about twice the cost: where `extract`'s
    /// messages come from, and the baseline of `benches/decode.rs`. It lets
    /// invalid UTF-8 in skipped strings through.
    #[doc(hidden)]
    pub fn extract_with_visitor<'a>(
        &self,
        record: &'a [u8],
        out: &mut Vec<Option<Scalar<'a>>>,
    ) -> Result<(), String> {
        out.clear();
        out.resize(self.paths.len(), None);
        let mut de = serde_json::Deserializer::from_slice(record);
        ValueSeed {
            node: Some(&self.root),
            slot: None,
            out,
            top: true,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())
    }
}

/// Where and why the scanner refused a record. Only the position and a
/// word, so that it fits in registers: the message comes from serde_json.
#[derive(Debug, Clone, Copy)]
struct Fault {
    at: usize,
    what: Problem,
}

/// What the scanner found wrong. Word-sized, so that a `Fault` has no
/// padding: a result holding one is then copied in whole words, where a
/// byte and seven bytes of padding were copied by loads that missed store
/// forwarding.
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
enum Problem {
    NotAnObject,
    Trailing,
    ExpectedColon,
    ExpectedKey,
    ExpectedValue,
    ExpectedCommaOrEnd,
    Unterminated,
    ControlCharacter,
    BadEscape,
    BadNumber,
    Utf8,
    /// serde_json refused a string or number the scanner gave it.
    Refused,
}

impl Fault {
    /// The same shape as serde_json's messages: what, then where.
    fn message(&self, record: &[u8]) -> String {
        let what = match self.what {
            Problem::NotAnObject => "the record is not a JSON object",
            Problem::Trailing => "trailing characters",
            Problem::ExpectedColon => "expected `:`",
            Problem::ExpectedKey => "expected a key",
            Problem::ExpectedValue => "expected a value",
            Problem::ExpectedCommaOrEnd => "expected `,` or the end of an object or array",
            Problem::Unterminated => "a string has no closing quote",
            Problem::ControlCharacter => "a control character in a string",
            Problem::BadEscape => "an invalid escape in a string",
            Problem::BadNumber => "an invalid number",
            // serde_json checks UTF-8 everywhere but in the strings it
            // skips, so that is where the bytes are when it accepted them.
            Problem::Utf8 => "invalid UTF-8 in a string",
            Problem::Refused => "a value serde_json refuses",
        };
        let before = &record[..self.at.min(record.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        // 1-based, of the byte at `at`, as serde_json counts.
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = 1 + before.len() - line_start;
        format!("{what} at line {line} column {column}")
    }
}

/// The keys of the top-level object as the last records had them, by their
/// place in it (first key, second, ...), two per place: a stream's records
/// come in a few kinds, and those of one kind repeat their keys in one
/// order. A key is recognised by comparing the bytes that follow its
/// opening quote with the remembered key, its closing quote and the colon
/// after it, 16 bytes at once, rather than by finding its end, looking it
/// up and reading the colon.
///
/// Only keys of up to 14 bytes without escapes are remembered, with where
/// the root's lookup led: bytes equal to such a key, its closing quote and
/// a colon are that key and its colon, read as the scanner reads them, so a
/// recognised key is read exactly as a looked-up one. (Records with white
/// space before their colons are read as usual.)
#[derive(Debug, Clone, Default)]
struct KeyMemo {
    places: Vec<Place>,
}

/// Keys remembered past this many places are looked up as usual.
const MEMO_PLACES: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Place {
    guesses: [Guess; 2],
    /// The guess that matched or was learned last; the other is replaced.
    last: u8,
}

impl Default for Place {
    fn default() -> Self {
        Place {
            guesses: [Guess::EMPTY; 2],
            last: 0,
        }
    }
}

/// One remembered key: its bytes, closing quote and colon, little-endian,
/// under `mask`, and the root's child it leads to ([`Guess::NOT_SELECTED`]
/// for none).
#[derive(Debug, Clone, Copy)]
struct Guess {
    pattern: u128,
    mask: u128,
    len: u8,
    child: u32,
}

impl Guess {
    const NOT_SELECTED: u32 = u32::MAX;
    /// Matches nothing: no bytes under an empty mask are 1.
    const EMPTY: Guess = Guess {
        pattern: 1,
        mask: 0,
        len: 0,
        child: Guess::NOT_SELECTED,
    };
}

impl KeyMemo {
    /// The key remembered at `place` that `rest` (what follows the key's
    /// opening quote) starts with, and its colon: its length, and the root's
    /// child ([`Guess::NOT_SELECTED`] for none).
    #[inline(always)]
    fn recall(&mut self, place: usize, rest: &[u8]) -> Option<(usize, u32)> {
        let place = self.places.get_mut(place)?;
        let word = u128::from_le_bytes(*rest.first_chunk::<16>()?);
        let [first, second] = &place.guesses;
        let (i, guess) = if word & first.mask == first.pattern {
            (0, first)
        } else if word & second.mask == second.pattern {
            (1, second)
        } else {
            return None;
        };
        let found = (usize::from(guess.len), guess.child);
        place.last = i;
        Some(found)
    }

    /// Remembers `key`, which has no escape, at `place`, leading to the
    /// root's `child`: recalled only where its colon comes right after it.
    fn learn(&mut self, place: usize, key: &[u8], child: u32) {
        if key.len() > 14 || place >= MEMO_PLACES {
            return;
        }
        if self.places.len() <= place {
            self.places.resize(place + 1, Place::default());
        }
        let mut bytes = [0u8; 16];
        bytes[..key.len()].copy_from_slice(key);
        bytes[key.len()] = b'"';
        bytes[key.len() + 1] = b':';
        let place = &mut self.places[place];
        let replaced = 1 - usize::from(place.last);
        place.guesses[replaced] = Guess {
            pattern: u128::from_le_bytes(bytes),
            mask: u128::MAX >> (112 - 8 * key.len()),
            len: key.len() as u8,
            child,
        };
        place.last = replaced as u8;
    }
}

type Scanned<T> = Result<T, Fault>;

/// A string's bytes between its quotes.
struct RawStr {
    inner: Range<usize>,
    escaped: bool,
}

/// `10^i` for the fractions whose value the scanner computes itself: every
/// one is exact in an `f64`, so `significand / POW10[i]` is the one
/// division serde_json makes for them (its `f64_from_parts`).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A byte repeated in every lane of a `u64`, for reading 8 bytes of a
/// string at a time.
const fn lanes(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// Eight bytes of a string, with the top bit of each byte that needs a
/// look set: a quote, a backslash or a control character; and the same for
/// quotes alone. Each test is exact for the lowest byte it flags (a borrow
/// only runs upwards from a byte that matched), so the lowest flag of all is
/// the first such byte, and it is a quote when the quotes flag it too.
fn special_bytes(v: u64) -> (u64, u64) {
    let quote = v ^ lanes(b'"');
    let backslash = v ^ lanes(b'\\');
    let quotes = quote.wrapping_sub(lanes(1)) & !quote & lanes(0x80);
    let special =
        (backslash.wrapping_sub(lanes(1)) & !backslash) | (v.wrapping_sub(lanes(0x20)) & !v);
    (quotes | (special & lanes(0x80)), quotes)
}

/// One pass over one record, writing the selected values into `out`.
struct Scan<'a, 'o> {
    /// The record, checked to be UTF-8 before anything else: strings are
    /// borrowed from it by slicing, and no string needs its own check.
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    out: &'o mut [Option<Scalar<'a>>],
}

impl<'a> Scan<'a, '_> {
    /// The whole record: one object and nothing but white space after it.
    fn record(
        record: &'a [u8],
        root: &Node,
        out: &mut [Option<Scalar<'a>>],
        memo: &mut KeyMemo,
    ) -> Scanned<()> {
        let text = std::str::from_utf8(record).map_err(|e| Fault {
            at: e.valid_up_to(),
            what: Problem::Utf8,
        })?;
        let mut scan = Scan {
            text,
            bytes: record,
            pos: 0,
            out,
        };
        if scan.next_token() != Some(b'{') {
            return Err(scan.fault(Problem::NotAnObject));
        }
        scan.object(Some(root), Some(memo))?;
        scan.skip_ws();
        if scan.pos != scan.bytes.len() {
            return Err(scan.fault(Problem::Trailing));
        }
        Ok(())
    }

    fn fault(&self, what: Problem) -> Fault {
        Fault { at: self.pos, what }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Inlined for the usual case of no white space, which one comparison
    /// rules in: every byte above a space is a token's.
    #[inline(always)]
    fn skip_ws(&mut self) {
        if matches!(self.peek(), Some(b) if b > b' ') {
            return;
        }
        self.skip_some_ws();
    }

    fn skip_some_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    /// The next byte that is not white space, read.
    #[inline(always)]
    fn next_token(&mut self) -> Option<u8> {
        self.skip_ws();
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn colon(&mut self) -> Scanned<()> {
        match self.next_token() {
            Some(b':') => Ok(()),
            _ => Err(self.fault(Problem::ExpectedColon)),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Scanned<()> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.fault(Problem::ExpectedValue))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// An object whose `{` is read; `node` says which keys to read, and
    /// every other value is skipped. `memo` is the top-level object's.
    fn object(&mut self, node: Option<&Node>, mut memo: Option<&mut KeyMemo>) -> Scanned<()> {
        match self.next_token() {
            Some(b'}') => return Ok(()),
            Some(b'"') => {}
            _ => return Err(self.fault(Problem::ExpectedKey)),
        }
        let mut place = 0;
        loop {
            let recalled = match memo.as_deref_mut() {
                Some(memo) => memo.recall(place, &self.bytes[self.pos..]),
                None => None,
            };
            let at = match recalled {
                Some((len, at)) => {
                    self.pos += len + 2;
                    at
                }
                None => {
                    let at = self.key(node, place, memo.as_deref_mut())?;
                    self.colon()?;
                    at
                }
            };
            place += 1;
            let child = node.and_then(|n| n.child(at as usize));
            self.skip_ws();
            match child {
                Some(child) => self.value(child.node.as_ref(), child.slot)?,
                None => self.skip_value()?,
            }
            match self.next_token() {
                Some(b',') => {}
                Some(b'}') => return Ok(()),
                _ => return Err(self.fault(Problem::ExpectedCommaOrEnd)),
            }
            if self.next_token() != Some(b'"') {
                return Err(self.fault(Problem::ExpectedKey));
            }
        }
    }

    /// A key whose opening quote is read, up to and past its closing one:
    /// the place of `node`'s child under it ([`Guess::NOT_SELECTED`] for
    /// none). `memo` learns it as the key at `place`.
    #[inline(always)]
    fn key(
        &mut self,
        node: Option<&Node>,
        place: usize,
        memo: Option<&mut KeyMemo>,
    ) -> Scanned<u32> {
        let key = self.string()?;
        // The keys of an object that is read are decoded even where
        // nothing below is selected, as serde_json's visitor did: an
        // escape there must be a valid one.
        if key.escaped {
            let key = self.unescaped_key(&key)?;
            let at = node.and_then(|n| n.find_key(key.as_bytes()));
            return Ok(at.map_or(Guess::NOT_SELECTED, |at| at as u32));
        }
        let raw = &self.bytes[key.inner.clone()];
        let at = node
            .and_then(|n| n.find(raw, &self.bytes[key.inner.start..]))
            .map_or(Guess::NOT_SELECTED, |at| at as u32);
        if let Some(memo) = memo {
            memo.learn(place, raw, at);
        }
        Ok(at)
    }

    /// A value on a selected path: into `slot` if it is a leaf, walked with
    /// `node` if it is an object and a branch. Scalars are decoded even on a
    /// branch, as serde_json's visitor did, so their errors are errors.
    fn value(&mut self, node: Option<&Node>, slot: Option<usize>) -> Scanned<()> {
        let scalar = match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                if let Some(slot) = slot {
                    self.out[slot] = Some(Scalar::Complex);
                }
                return self.object(node, None);
            }
            Some(b'[') => {
                self.skip_value()?;
                Scalar::Complex
            }
            Some(b'"') => {
                self.pos += 1;
                let raw = self.string()?;
                self.string_value(&raw)?
            }
            Some(b't') => {
                self.literal(b"true")?;
                Scalar::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Scalar::Bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Scalar::Null
            }
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.fault(Problem::ExpectedValue)),
        };
        if let Some(slot) = slot {
            self.out[slot] = Some(scalar);
        }
        Ok(())
    }

    /// A string whose opening quote is read, up to and past its closing one.
    /// Checks that there is no control character and that every escape is
    /// one JSON has; decodes nothing. Most keys and many values end within
    /// 16 bytes without an escape, which is the inlined case.
    #[inline(always)]
    fn string(&mut self) -> Scanned<RawStr> {
        let start = self.pos;
        let mut at = start;
        while let Some(chunk) = self.bytes[at..].first_chunk::<8>() {
            let (flags, quotes) = special_bytes(u64::from_le_bytes(*chunk));
            if flags == 0 {
                if at - start == 8 {
                    break;
                }
                at += 8;
                continue;
            }
            // Whether the first byte flagged is a quote, from the flags
            // rather than by reading it again.
            if quotes & flags & flags.wrapping_neg() == 0 {
                break;
            }
            let end = at + (flags.trailing_zeros() / 8) as usize;
            self.pos = end + 1;
            return Ok(RawStr {
                inner: start..end,
                escaped: false,
            });
        }
        self.string_slow()
    }

    /// [`Scan::string`] in general.
    #[inline(never)]
    fn string_slow(&mut self) -> Scanned<RawStr> {
        let start = self.pos;
        let mut escaped = false;
        loop {
            while let Some(chunk) = self.bytes[self.pos..].first_chunk::<8>() {
                let (flags, _) = special_bytes(u64::from_le_bytes(*chunk));
                if flags != 0 {
                    self.pos += (flags.trailing_zeros() / 8) as usize;
                    break;
                }
                self.pos += 8;
            }
            let Some(b) = self.peek() else {
                return Err(self.fault(Problem::Unterminated));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                0..=0x1f => return Err(self.fault(Problem::ControlCharacter)),
                _ => {}
            }
        }
        Ok(RawStr {
            inner: start..self.pos - 1,
            escaped,
        })
    }

    /// An escape whose backslash is read.
    fn escape(&mut self) -> Scanned<()> {
        let Some(b) = self.peek() else {
            return Err(self.fault(Problem::Unterminated));
        };
        self.pos += 1;
        match b {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => match self.bytes.get(self.pos..self.pos + 4) {
                Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => {
                    self.pos += 4;
                    Ok(())
                }
                _ => Err(self.fault(Problem::BadEscape)),
            },
            _ => Err(self.fault(Problem::BadEscape)),
        }
    }

    /// The string, borrowed from the record when it has no escapes.
    #[inline(always)]
    fn string_value(&self, raw: &RawStr) -> Scanned<Scalar<'a>> {
        if raw.escaped {
            let quoted = &self.bytes[raw.inner.start - 1..raw.inner.end + 1];
            return with_serde(quoted, ScalarVisitor, raw.inner.start);
        }
        // Both ends are next to a quote, so on a character boundary.
        match self.text.get(raw.inner.clone()) {
            Some(s) => Ok(Scalar::Str(Cow::Borrowed(s))),
            None => Err(self.fault(Problem::Utf8)),
        }
    }

    /// A key with escapes, decoded by serde_json.
    fn unescaped_key(&self, raw: &RawStr) -> Scanned<Cow<'a, str>> {
        let quoted = &self.bytes[raw.inner.start - 1..raw.inner.end + 1];
        with_serde(quoted, KeySeed, raw.inner.start)
    }

    /// A number, checked against JSON's grammar and not decoded.
    fn skip_number(&mut self) -> Scanned<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.fault(Problem::BadNumber)),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.fault(Problem::BadNumber));
            }
        }
        self.exponent()
    }

    /// A number's exponent, if it has one.
    fn exponent(&mut self) -> Scanned<()> {
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.fault(Problem::BadNumber));
            }
        }
        Ok(())
    }

    /// Reads digits onto the end of `significand`, 8 at a time while there
    /// are 8; how many.
    #[inline(always)]
    fn decimal_digits(&mut self, significand: &mut u64) -> usize {
        let start = self.pos;
        while let Some(chunk) = self.bytes[self.pos..].first_chunk::<8>() {
            let v = u64::from_le_bytes(*chunk);
            // Every byte is 0x30..=0x39: its top nibble is 3, and adding 6
            // does not carry into it.
            let all_digits = (v & lanes(0xf0)) == lanes(0x30)
                && (v.wrapping_add(lanes(0x06)) & lanes(0xf0)) == lanes(0x30);
            if !all_digits {
                break;
            }
            // Pairs, then fours, then all eight, the first digit the most
            // significant (it is the lowest byte).
            let mut eight = v - lanes(b'0');
            eight = (eight * 10 + (eight >> 8)) & 0x00ff_00ff_00ff_00ff;
            eight = (eight * 100 + (eight >> 16)) & 0x0000_ffff_0000_ffff;
            eight = (eight * 10_000 + (eight >> 32)) & 0xffff_ffff;
            *significand = significand.wrapping_mul(100_000_000).wrapping_add(eight);
            self.pos += 8;
        }
        while let Some(d @ b'0'..=b'9') = self.peek() {
            *significand = significand
                .wrapping_mul(10)
                .wrapping_add(u64::from(d - b'0'));
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number's value. Integers of up to 19 digits and decimals of up to
    /// 19 digits, 22 of them after the point, are computed here exactly as
    /// serde_json computes them (its `parse_number` and `f64_from_parts`);
    /// longer numbers and exponents go to serde_json itself.
    #[inline(always)]
    fn number(&mut self) -> Scanned<Scalar<'a>> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        // Wrapping: a significand of more than 19 digits is not used.
        let mut significand = 0u64;
        let mut digits;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                digits = 1;
            }
            Some(b'1'..=b'9') => digits = self.decimal_digits(&mut significand),
            _ => return Err(self.fault(Problem::BadNumber)),
        }
        let mut fraction = None;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            let places = self.decimal_digits(&mut significand);
            if places == 0 {
                return Err(self.fault(Problem::BadNumber));
            }
            digits += places;
            fraction = Some(places);
        }
        let plain = !matches!(self.peek(), Some(b'e' | b'E'));
        self.exponent()?;
        if plain && digits <= 19 {
            match fraction {
                None if !negative => return Ok(Scalar::from_u64(significand)),
                None => {
                    // A negative integer is an `i64` unless it is -0 or below
                    // `i64::MIN`, which serde_json makes floats.
                    let neg = (significand as i64).wrapping_neg();
                    return Ok(if neg >= 0 {
                        Scalar::Float(-(significand as f64))
                    } else {
                        Scalar::Int(neg)
                    });
                }
                Some(places) if places < POW10.len() => {
                    let f = significand as f64 / POW10[places];
                    return Ok(Scalar::Float(if negative { -f } else { f }));
                }
                Some(_) => {}
            }
        }
        with_serde(&self.bytes[start..self.pos], ScalarVisitor, start)
    }

    /// Any one value, checked and not decoded.
    #[inline(always)]
    fn skip_value(&mut self) -> Scanned<()> {
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                self.string().map(drop)
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.skip_number(),
            _ => self.skip_nested(),
        }
    }

    /// Any one value, most often an object or array. Iterative, so that
    /// deep nesting cannot overflow the stack.
    #[inline(never)]
    fn skip_nested(&mut self) -> Scanned<()> {
        let mut open = Nesting::default();
        loop {
            // A value, or the opening of a container that is not empty.
            match self.next_token() {
                Some(b'{') => match self.next_token() {
                    Some(b'}') => {}
                    Some(b'"') => {
                        self.string()?;
                        self.colon()?;
                        open.push(true);
                        continue;
                    }
                    _ => return Err(self.fault(Problem::ExpectedKey)),
                },
                Some(b'[') => {
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        open.push(false);
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                    self.pos -= 1;
                    self.skip_value()?;
                }
                _ => return Err(self.fault(Problem::ExpectedValue)),
            }
            // A value has ended: close the containers it ends, then go on to
            // the next element or member.
            loop {
                let Some(object) = open.top() else {
                    return Ok(());
                };
                match self.next_token() {
                    Some(b',') => {
                        if object {
                            if self.next_token() != Some(b'"') {
                                return Err(self.fault(Problem::ExpectedKey));
                            }
                            self.string()?;
                            self.colon()?;
                        }
                        break;
                    }
                    Some(b'}') if object => open.pop(),
                    Some(b']') if !object => open.pop(),
                    _ => return Err(self.fault(Problem::ExpectedCommaOrEnd)),
                }
            }
        }
    }
}

/// The containers a skipped value is inside, innermost last: a bit each,
/// set for an object, 64 in a word and more words only for deeper nesting.
#[derive(Default)]
struct Nesting {
    bits: u64,
    depth: usize,
    spilled: Vec<u64>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth != 0 && self.depth.is_multiple_of(64) {
            self.spilled.push(self.bits);
            self.bits = 0;
        }
        self.bits = (self.bits << 1) | u64::from(object);
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.bits >>= 1;
        self.depth -= 1;
        if self.depth != 0 && self.depth.is_multiple_of(64) {
            self.bits = self.spilled.pop().unwrap_or(0);
        }
    }

    /// Whether the innermost container is an object; `None` outside all.
    fn top(&self) -> Option<bool> {
        (self.depth != 0).then_some(self.bits & 1 == 1)
    }
}

/// Parses `raw`, one whole JSON value at `at` in the record, with
/// serde_json. On an error the message the user sees comes from
/// [`Selector::explain`].
#[cold]
#[inline(never)]
fn with_serde<'a, S: DeserializeSeed<'a>>(raw: &'a [u8], seed: S, at: usize) -> Scanned<S::Value> {
    let mut de = serde_json::Deserializer::from_slice(raw);
    seed.deserialize(&mut de).map_err(|_| Fault {
        at,
        what: Problem::Refused,
    })
}

/// A scalar as serde_json gives it, for the strings and numbers the scanner
/// leaves to serde_json.
struct ScalarVisitor;

impl<'de> DeserializeSeed<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string or a number")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::from_u64(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
}

// What follows is the serde_json visitor that did all of the reading before
// the scanner; it now only finds the message for a malformed record.

/// Reads one value: a scalar into `slot`, or an object walked by `node`.
struct ValueSeed<'s, 'o, 'a> {
    node: Option<&'s Node>,
    slot: Option<usize>,
    out: &'o mut Vec<Option<Scalar<'a>>>,
    top: bool,
}

impl<'s, 'o, 'a> ValueSeed<'s, 'o, 'a> {
    fn put(self, value: Scalar<'a>) -> Result<(), String> {
        if self.top {
            return Err(format!("the record is {}, not a JSON object", value.kind()));
        }
        if let Some(slot) = self.slot {
            self.out[slot] = Some(value);
        }
        Ok(())
    }
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for ValueSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

macro_rules! put {
    ($self:ident, $value:expr) => {
        $self.put($value).map_err(serde::de::Error::custom)
    };
}

impl<'de: 'a, 'a> Visitor<'de> for ValueSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        put!(self, Scalar::Null)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        put!(self, Scalar::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        put!(self, Scalar::Int(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        put!(self, Scalar::from_u64(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        put!(self, Scalar::Float(v))
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<(), E> {
        put!(self, Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        put!(self, Scalar::Str(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<(), E> {
        put!(self, Scalar::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        put!(self, Scalar::Complex)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ValueSeed {
            node, slot, out, ..
        } = self;
        if let Some(slot) = slot {
            out[slot] = Some(Scalar::Complex);
        }
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match node.and_then(|n| n.child(n.find_key(key.as_bytes())?)) {
                Some(child) => map.next_value_seed(ValueSeed {
                    node: child.node.as_ref(),
                    slot: child.slot,
                    out: &mut *out,
                    top: false,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads an object key, borrowing it when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

#[cfg(test)]
mod tests;
