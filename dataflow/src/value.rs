//! Dimension values: what a group is keyed by.

use std::cmp::Ordering;
use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// The value of one dimension of one event. Totally ordered and hashable so
/// that it can key rollup state; floats compare by `f64::total_cmp`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Value {
    /// The field was missing or `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A whole number that fits in 64 bits.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// Text: kept inline up to 24 bytes (most dimension values are short
    /// names and ids), so a rollup row's key is usually one allocation-free
    /// value that copies without touching the heap.
    Str(CompactString),
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) => 2,
            Value::Str(_) => 3,
        }
    }

    /// 64 bits that order as the value does where they differ, and whether
    /// equal bits mean equal values. The rank in the top byte; for text,
    /// its first six bytes (zero after its end) and its length up to 7,
    /// exact up to six bytes; `false` or `true`; numbers by rank alone
    /// (whole and fractional numbers compare by value, which these bits do
    /// not hold). A missing value, 0, orders first, as a shorter key does.
    pub fn sort_segment(&self) -> (u64, bool) {
        let rank = u64::from(self.rank()) << 56;
        match self {
            Value::Null => (rank, true),
            Value::Bool(b) => (rank | u64::from(*b), true),
            Value::Int(_) | Value::Float(_) => (rank, false),
            Value::Str(s) => {
                let bytes = s.as_bytes();
                let head = bytes
                    .iter()
                    .take(6)
                    .enumerate()
                    .fold(0u64, |word, (i, b)| word | (u64::from(*b) << (48 - 8 * i)));
                let len = bytes.len().min(7) as u64;
                (rank | head | len, bytes.len() <= 6)
            }
        }
    }

    /// The value as a number, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as text, if it is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A number, kept as an integer when it is one.
    pub fn number(n: f64) -> Value {
        if n.fract() == 0.0 && n.abs() < 9.0e15 {
            Value::Int(n as i64)
        } else {
            Value::Float(n)
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        // Text and whole numbers, the common dimensions, directly (a query
        // compares a group's values for every row it reads); the rest as
        // the order has it.
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            _ => self.cmp(other) == Ordering::Equal,
        }
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (a, b) if a.rank() == 2 && b.rank() == 2 => {
                // Mixed int/float: compare as floats, then ints before floats for a total order.
                let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
                    .then_with(|| matches!(a, Value::Float(_)).cmp(&matches!(b, Value::Float(_))))
            }
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Value::Null => 0u8.hash(state),
            Value::Bool(b) => (1u8, b).hash(state),
            Value::Int(i) => (2u8, i).hash(state),
            Value::Float(f) => (3u8, f.to_bits()).hash(state),
            Value::Str(s) => (4u8, s).hash(state),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Value;

    #[test]
    fn total_order_across_kinds() {
        let mut values = [
            Value::Str("b".into()),
            Value::Float(1.5),
            Value::Null,
            Value::Int(2),
            Value::Bool(true),
            Value::Int(1),
            Value::Str("a".into()),
        ];
        values.sort();
        let shown: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        assert_eq!(shown, ["null", "true", "1", "1.5", "2", "a", "b"]);
        assert_eq!(Value::number(3.0), Value::Int(3));
        assert_ne!(Value::Int(1), Value::Float(1.0));
    }

    #[test]
    fn equal_is_what_the_order_calls_equal() {
        let values = [
            Value::Null,
            Value::Bool(false),
            Value::Int(1),
            Value::Int(2),
            Value::Float(1.0),
            Value::Float(f64::NAN),
            Value::Str("a".into()),
            Value::Str("a long name, past what fits inline".into()),
            Value::Str("a long name, past what fits inline!".into()),
        ];
        for a in &values {
            for b in &values {
                let copy = b.clone();
                assert_eq!(a == &copy, a.cmp(&copy).is_eq(), "{a:?} and {b:?}");
            }
        }
    }
}
