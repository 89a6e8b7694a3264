//! Reads only the fields a topology needs out of a JSON record, in one pass
//! and without building a tree: a trie of the wanted paths steers a serde
//! visitor, which borrows strings from the record where it can and skips
//! everything else.

use std::borrow::Cow;
use std::fmt;

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
}

/// Which fields to read: a trie of paths, each leaf a slot in the output.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    root: Node,
    paths: Vec<FieldPath>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<(String, Child)>,
}

#[derive(Debug, Clone, Default)]
struct Child {
    slot: Option<usize>,
    node: Option<Node>,
}

impl Node {
    fn find(&self, key: &str) -> Option<&Child> {
        // Runs for every key of every record. Field names of one length are
        // common (`game_id`, `user_id`, `seed_id`), so the first byte is
        // compared before the whole name, which is a call to `memcmp`.
        let key = key.as_bytes();
        self.children
            .iter()
            .find(|(k, _)| {
                let k = k.as_bytes();
                k.len() == key.len() && k.first() == key.first() && k == key
            })
            .map(|(_, c)| c)
    }

    fn child_mut(&mut self, key: &str) -> &mut Child {
        let at = match self.children.iter().position(|(k, _)| k == key) {
            Some(at) => at,
            None => {
                self.children.push((key.to_string(), Child::default()));
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
    pub fn extract<'a>(
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
        .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())
    }
}

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
        put!(
            self,
            if v <= i64::MAX as u64 {
                Scalar::Int(v as i64)
            } else {
                Scalar::Float(v as f64)
            }
        )
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
            match node.and_then(|n| n.find(&key)) {
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
mod tests {
    use super::*;

    fn selector(paths: &[&str]) -> Selector {
        let mut s = Selector::new();
        for p in paths {
            s.add(&FieldPath::parse(p));
        }
        s
    }

    #[test]
    fn reads_selected_fields_only() {
        let s = selector(&["a", "b.c", "b.d.e", "missing", "arr"]);
        let mut out = Vec::new();
        let rec = br#"{"z": {"deep": [1,2]}, "a": "x\"y", "b": {"c": 2.5, "d": {"e": true}}, "arr": [1]}"#;
        s.extract(rec, &mut out).unwrap();
        assert_eq!(out[0], Some(Scalar::Str(Cow::Owned("x\"y".into()))));
        assert_eq!(out[1], Some(Scalar::Float(2.5)));
        assert_eq!(out[2], Some(Scalar::Bool(true)));
        assert_eq!(out[3], None);
        assert_eq!(out[4], Some(Scalar::Complex));
    }

    #[test]
    fn a_path_can_be_both_leaf_and_branch() {
        let s = selector(&["p", "p.q"]);
        let mut out = Vec::new();
        s.extract(br#"{"p": {"q": 7}}"#, &mut out).unwrap();
        assert_eq!(out, vec![Some(Scalar::Complex), Some(Scalar::Int(7))]);
        s.extract(br#"{"p": 3}"#, &mut out).unwrap();
        assert_eq!(out, vec![Some(Scalar::Int(3)), None]);
    }

    #[test]
    fn rejects_what_is_not_one_object() {
        let s = selector(&["a"]);
        let mut out = Vec::new();
        assert!(s.extract(b"[1,2]", &mut out).is_err());
        assert!(s.extract(b"{\"a\": 1", &mut out).is_err());
        assert!(s.extract(b"{\"a\": 1} {}", &mut out).is_err());
        assert!(s.extract(b"42", &mut out).is_err());
        assert!(s.extract(b"\xff", &mut out).is_err());
    }
}
