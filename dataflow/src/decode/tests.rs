//! Tests of the field reader: differential against serde_json and the
//! serde visitor it replaced, every truncation, and random mutations.

use super::*;

fn selector(paths: &[&str]) -> Selector {
    let mut s = Selector::new();
    for p in paths {
        s.add(&FieldPath::parse(p));
    }
    s
}

/// What the serde_json visitor, the reader before the scanner, gives.
fn with_visitor<'a>(
    s: &Selector,
    record: &'a [u8],
    out: &mut Vec<Option<Scalar<'a>>>,
) -> Result<(), String> {
    s.extract_with_visitor(record, out)
}

/// Equal, with floats compared by their bits (so -0 is not 0) and
/// strings by whether they are borrowed too.
fn same(a: &[Option<Scalar>], b: &[Option<Scalar>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(a, b)| match (a, b) {
            (Some(Scalar::Float(x)), Some(Scalar::Float(y))) => x.to_bits() == y.to_bits(),
            (Some(Scalar::Str(x)), Some(Scalar::Str(y))) => {
                x == y && matches!(x, Cow::Borrowed(_)) == matches!(y, Cow::Borrowed(_))
            }
            _ => a == b,
        })
}

#[test]
fn reads_selected_fields_only() {
    let s = selector(&["a", "b.c", "b.d.e", "missing", "arr"]);
    let mut out = Vec::new();
    let rec =
        br#"{"z": {"deep": [1,2]}, "a": "x\"y", "b": {"c": 2.5, "d": {"e": true}}, "arr": [1]}"#;
    s.extract(rec, &mut out).unwrap();
    assert_eq!(out[0], Some(Scalar::Str(Cow::Owned("x\"y".into()))));
    assert_eq!(out[1], Some(Scalar::Float(2.5)));
    assert_eq!(out[2], Some(Scalar::Bool(true)));
    assert_eq!(out[3], None);
    assert_eq!(out[4], Some(Scalar::Complex));
}

#[test]
fn every_selected_key_is_found_and_no_other() {
    // Keys of every length around a word's seven bytes, keys that differ
    // only past them, and (in the second selector) two long keys alike in
    // their first seven bytes and length, which share a word.
    let mut keys: Vec<String> = (0..40)
        .map(|i| format!("k{i}{}", "x".repeat(i % 12)))
        .collect();
    keys.extend(["reward_type", "reward_typf", "amount", "ts", "t", ""].map(String::from));
    let shared = ["player_id_a", "player_id_b"];
    for with_shared in [false, true] {
        let mut selected: Vec<&str> = keys.iter().step_by(2).map(String::as_str).collect();
        if with_shared {
            selected.extend(shared);
        }
        let s = selector(&selected);
        assert_eq!(
            s.root.slots.is_empty(),
            with_shared,
            "shared words are searched child by child"
        );
        let mut all: Vec<&str> = keys.iter().map(String::as_str).collect();
        all.extend(shared);
        let record = format!(
            "{{{}}}",
            all.iter()
                .enumerate()
                .map(|(i, k)| format!("\"{k}\": {i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut out = Vec::new();
        s.extract(record.as_bytes(), &mut out).unwrap();
        for (slot, key) in selected.iter().enumerate() {
            let at = all.iter().position(|k| k == key).unwrap();
            assert_eq!(out[slot], Some(Scalar::Int(at as i64)), "key {key:?}");
        }
    }
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
    assert!(s.extract(b"", &mut out).is_err());
    assert!(s.extract(b" \n", &mut out).is_err());
    s.extract(b" \t\r\n{\"a\" : 1 } \n", &mut out).unwrap();
    assert_eq!(out, vec![Some(Scalar::Int(1))]);
}

#[test]
fn messages_are_serde_json_s() {
    // The book's page on bad input quotes the second one.
    let s = selector(&["a"]);
    let mut out = Vec::new();
    for (record, message) in [
        (
            &b"{\"a\": 1"[..],
            "EOF while parsing an object at line 1 column 7",
        ),
        (
            b"[1, 2, 3]",
            "the record is an object or array, not a JSON object at line 1 column 9",
        ),
        (
            b"this line is not JSON",
            "expected ident at line 1 column 2",
        ),
        (b"{\"a\": 1e400}", "number out of range at line 1 column 11"),
    ] {
        assert_eq!(s.extract(record, &mut out), Err(message.to_string()));
        assert_eq!(with_visitor(&s, record, &mut out), Err(message.to_string()));
    }
}

#[test]
fn a_path_added_after_records_were_read_is_read() {
    let mut s = selector(&["a"]);
    let mut out = Vec::new();
    let record = br#"{"b": 1, "a": 2, "c": 3}"#;
    s.extract(record, &mut out).unwrap();
    s.extract(record, &mut out).unwrap();
    s.add(&FieldPath::parse("b"));
    s.extract(record, &mut out).unwrap();
    assert_eq!(out, vec![Some(Scalar::Int(2)), Some(Scalar::Int(1))]);
}

#[test]
fn the_last_of_duplicate_keys_wins_slot_by_slot() {
    let s = selector(&["p", "p.q", "a"]);
    let mut out = Vec::new();
    s.extract(br#"{"a": 1, "a": 2}"#, &mut out).unwrap();
    assert_eq!(out, vec![None, None, Some(Scalar::Int(2))]);
    // A later `p` does not clear what an earlier one gave to `p.q`.
    s.extract(br#"{"p": {"q": 1}, "p": {}}"#, &mut out).unwrap();
    assert_eq!(out, vec![Some(Scalar::Complex), Some(Scalar::Int(1)), None]);
    s.extract(br#"{"p": {"q": 1}, "p": 3}"#, &mut out).unwrap();
    assert_eq!(out, vec![Some(Scalar::Int(3)), Some(Scalar::Int(1)), None]);
    s.extract(br#"{"p": 3, "p": {"q": 1, "q": "x"}}"#, &mut out)
        .unwrap();
    assert_eq!(
        out,
        vec![Some(Scalar::Complex), Some(Scalar::Str("x".into())), None]
    );
}

#[test]
fn numbers_read_as_serde_json_reads_them() {
    let s = selector(&["n"]);
    let mut out = Vec::new();
    let read = |text: &str, out: &mut Vec<Option<Scalar<'static>>>| {
        let record: &'static [u8] = format!("{{\"n\": {text}}}").into_bytes().leak();
        s.extract(record, out).map(|()| out[0].clone())
    };
    let float = |f: f64| Some(Some(Scalar::Float(f)));
    for (text, expected) in [
        ("0", Some(Some(Scalar::Int(0)))),
        ("-0", float(-0.0)),
        ("-0.0", float(-0.0)),
        ("11.97", float(11.97)),
        ("1735689599524", Some(Some(Scalar::Int(1735689599524)))),
        ("9223372036854775807", Some(Some(Scalar::Int(i64::MAX)))),
        ("9223372036854775808", float(9223372036854775808.0)),
        ("18446744073709551615", float(18446744073709551615.0)),
        ("18446744073709551616", float(18446744073709551616.0)),
        ("-9223372036854775808", Some(Some(Scalar::Int(i64::MIN)))),
        ("-9223372036854775809", float(-9223372036854775809.0)),
        ("1e-400", float(0.0)),
        ("1E+2", float(100.0)),
        ("1e400", None),
        ("-1e400", None),
        ("01", None),
        ("1.", None),
        ("-", None),
        ("+1", None),
        (".5", None),
        ("1e", None),
        ("0x10", None),
    ] {
        let got = read(text, &mut out).ok();
        let same_bits = match (&got, &expected) {
            (Some(Some(Scalar::Float(a))), Some(Some(Scalar::Float(b)))) => {
                a.to_bits() == b.to_bits()
            }
            _ => got == expected,
        };
        assert!(same_bits, "{text}: {got:?}, expected {expected:?}");
    }
    // Where nothing reads them, numbers are only checked for their form.
    s.extract(br#"{"m": 1e400, "n": 1}"#, &mut out).unwrap();
    assert!(s.extract(br#"{"m": 1e, "n": 1}"#, &mut out).is_err());
}

#[test]
fn strings_are_borrowed_unless_they_have_escapes() {
    let s = selector(&["a", "é"]);
    let mut out = Vec::new();
    s.extract("{\"a\": \"plain é 😀\"}".as_bytes(), &mut out)
        .unwrap();
    assert!(matches!(
        &out[0],
        Some(Scalar::Str(Cow::Borrowed("plain é 😀")))
    ));
    s.extract(br#"{"a": "\ud83d\ude00\u00e9\n"}"#, &mut out)
        .unwrap();
    assert!(matches!(&out[0], Some(Scalar::Str(Cow::Owned(v))) if v == "😀é\n"));
    // Keys with escapes are decoded before they are looked up.
    s.extract(br#"{"\u0061": 1, "\u00e9": 2}"#, &mut out)
        .unwrap();
    assert_eq!(out, vec![Some(Scalar::Int(1)), Some(Scalar::Int(2))]);
    // A lone surrogate is refused where it is read, and passes where it
    // is only skipped, as in serde_json.
    assert!(s.extract(br#"{"a": "\ud800"}"#, &mut out).is_err());
    assert!(s.extract(br#"{"\udc00": 1}"#, &mut out).is_err());
    s.extract(br#"{"z": "\ud800", "y": {"\udc00": 1}}"#, &mut out)
        .unwrap();
}

#[test]
fn invalid_utf8_is_refused_anywhere() {
    let s = selector(&["a"]);
    let mut out = Vec::new();
    for record in [
        &b"{\"a\": \"\xff\"}"[..],
        b"{\"a\": \"x\xc3\"}",
        b"{\"\xe2\x82\": 1}",
        b"{\"z\": \"\xed\xa0\x80\"}",
        b"{\"z\": [{\"k\": \"\xc0\xaf\"}], \"a\": 1}",
        b"{\"z\": {\"\x80\": 1}}",
        b"{\"a\": 1}\xff",
        b"{\"a\": 1, \xff}",
    ] {
        let message = s.extract(record, &mut out).unwrap_err();
        assert!(!message.is_empty());
    }
    // serde_json never looked at the bytes of a skipped string, so the
    // message is the scanner's.
    let message = s
        .extract(b"{\"z\": \"ok\xff\", \"a\": 1}", &mut out)
        .unwrap_err();
    assert_eq!(message, "invalid UTF-8 in a string at line 1 column 10");
}

#[test]
fn skipped_values_are_checked() {
    let s = selector(&["a"]);
    for skipped in [
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"k\" 1}",
        "{\"k\": 1,}",
        "{1: 2}",
        "{\"k\": }",
        "tru",
        "nul",
        "falsey",
        "01",
        "1.",
        "-",
        "1e+",
        "\"\\x\"",
        "\"\\u12G4\"",
        "\"\\u12\"",
        "\"a\u{1}b\"",
        "\"a\nb\"",
        "[}",
        "{]",
        "[[[]]",
        "{\"k\": [1}",
        "",
        "\"open",
        "[\"a\\\"]",
    ] {
        let record = format!("{{\"z\": {skipped}, \"a\": 1}}");
        let mut out = Vec::new();
        assert!(
            s.extract(record.as_bytes(), &mut out).is_err(),
            "accepted {record}"
        );
        assert!(with_visitor(&s, record.as_bytes(), &mut out).is_err());
    }
    let mut out = Vec::new();
    s.extract(
        br#"{"z": [1, -2.5e+3, "s\"\\\/\b\f\n\r\t\u00FF", true, false, null, {}, [], {"k": [{}]}], "a": 1}"#,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, vec![Some(Scalar::Int(1))]);
}

#[test]
fn deep_nesting_neither_overflows_nor_is_refused() {
    let s = selector(&["a"]);
    let mut out = Vec::new();
    let depth = 100_000;
    let nested = format!(
        "{{\"z\": {}{}{}, \"a\": 1}}",
        "[{\"k\":".repeat(depth),
        "0",
        "}]".repeat(depth)
    );
    s.extract(nested.as_bytes(), &mut out).unwrap();
    assert_eq!(out, vec![Some(Scalar::Int(1))]);
    let unclosed = format!("{{\"z\": {}", "[".repeat(depth));
    assert!(s.extract(unclosed.as_bytes(), &mut out).is_err());
    let mismatched = format!("{{\"z\": {}{}}}", "[{\"k\":".repeat(70), "0]".repeat(70));
    assert!(s.extract(mismatched.as_bytes(), &mut out).is_err());
}

/// Generated records, read by the scanner, by a reference over the
/// generated tree and by the serde_json visitor, and broken ones.
mod generated {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::Value;

    /// Few keys, so that paths hit and keys repeat; long ones that
    /// share their first 7 bytes, which the scanner compares at once.
    const KEYS: &[&str] = &[
        "a", "b", "c", "ab", "é", "k\"q", "", "😀x", "abcdefg", "abcdefgh", "abcdefgi",
    ];

    enum Json {
        Object(Vec<(String, Json)>),
        Array(Vec<Json>),
        Str(String),
        /// A string with an escape of a lone surrogate, which only
        /// serde_json's decoding refuses.
        LoneSurrogate(&'static str),
        Number(String),
        Bool(bool),
        Null,
    }

    fn number(rng: &mut StdRng) -> String {
        const ODD: &[&str] = &[
            "0",
            "-0",
            "-0.0",
            "0.0",
            "1e400",
            "-1e400",
            "1e-400",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "1E+2",
            "1e-2",
            "0.1",
            "11.97",
            "1.7976931348623157e308",
            "5e-324",
            "123456789012345678.5",
            "0.00000000000000000000001",
            "0.0000000000000000000000001",
            "1234567890123456789.0",
            "99999999999999999999",
            "-12345678901234567890123",
            "4.9e-324",
            "2.2250738585072014e-308",
        ];
        match rng.random_range(0..10) {
            0 => rng.random::<i64>().to_string(),
            1 => rng.random_range(-1000..1000).to_string(),
            2 => (u64::MAX - rng.random_range(0..1000)).to_string(),
            3 | 4 => {
                let width = rng.random_range(1..=24);
                let fraction: String = (0..width)
                    .map(|_| char::from(b'0' + rng.random_range(0..10)))
                    .collect();
                format!("{}.{fraction}", rng.random_range(-100_000i64..100_000))
            }
            5 => {
                let e = ["e", "E"][rng.random_range(0..2)];
                let sign = ["", "+", "-"][rng.random_range(0..3)];
                format!(
                    "{}.{}{e}{sign}{}",
                    rng.random_range(-99..99),
                    rng.random_range(0..999),
                    rng.random_range(0..330)
                )
            }
            6 => {
                let digits = rng.random_range(15..40);
                let mut n: String = (0..digits)
                    .map(|_| char::from(b'0' + rng.random_range(0..10)))
                    .collect();
                n.replace_range(0..1, "7");
                n
            }
            _ => ODD[rng.random_range(0..ODD.len())].to_string(),
        }
    }

    fn text(rng: &mut StdRng) -> String {
        const CHARS: &[char] = &[
            'a',
            'b',
            'z',
            '0',
            ' ',
            '"',
            '\\',
            '/',
            '\n',
            '\t',
            '\u{1}',
            '\u{1f}',
            '\u{7f}',
            'é',
            '€',
            '😀',
            '\u{fffd}',
            '\u{2028}',
            '\u{10ffff}',
        ];
        let len = if rng.random_bool(0.2) {
            rng.random_range(8..64)
        } else {
            rng.random_range(0..8)
        };
        (0..len)
            .map(|_| {
                if rng.random_bool(0.5) {
                    char::from(b'a' + rng.random_range(0..26))
                } else {
                    CHARS[rng.random_range(0..CHARS.len())]
                }
            })
            .collect()
    }

    fn json(rng: &mut StdRng, depth: u32) -> Json {
        match rng.random_range(0..if depth < 4 { 12 } else { 8 }) {
            0 | 1 => Json::Str(text(rng)),
            2 | 3 => Json::Number(number(rng)),
            4 => Json::Bool(rng.random()),
            5 => Json::Null,
            6 if rng.random_bool(0.1) => {
                let lone = ["\\ud800", "\\udc00", "x\\udbff\\u0041", "\\ud800\\n"];
                Json::LoneSurrogate(lone[rng.random_range(0..lone.len())])
            }
            6 | 7 => Json::Str(text(rng)),
            8 => Json::Array(
                (0..rng.random_range(0..4))
                    .map(|_| json(rng, depth + 1))
                    .collect(),
            ),
            _ => object(rng, depth + 1),
        }
    }

    fn object(rng: &mut StdRng, depth: u32) -> Json {
        Json::Object(
            (0..rng.random_range(0..7))
                .map(|_| {
                    (
                        KEYS[rng.random_range(0..KEYS.len())].to_string(),
                        json(rng, depth),
                    )
                })
                .collect(),
        )
    }

    fn space(rng: &mut StdRng, out: &mut String) {
        if rng.random_bool(0.15) {
            out.push_str([" ", "\n", "\t", "\r", "  \n "][rng.random_range(0..5)]);
        }
    }

    /// A string with the escapes it needs and, now and then, ones it
    /// does not.
    fn write_str(s: &str, rng: &mut StdRng, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' if rng.random_bool(0.5) => out.push_str("\\n"),
                '/' if rng.random_bool(0.3) => out.push_str("\\/"),
                c if c < ' ' || rng.random_bool(0.05) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let hex = format!("\\u{unit:04x}");
                        out.push_str(&if rng.random() {
                            hex.to_uppercase().replace("\\U", "\\u")
                        } else {
                            hex
                        });
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn write(json: &Json, rng: &mut StdRng, out: &mut String) {
        match json {
            Json::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    write_str(key, rng, out);
                    space(rng, out);
                    out.push(':');
                    space(rng, out);
                    write(value, rng, out);
                    space(rng, out);
                }
                out.push('}');
            }
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    write(item, rng, out);
                    space(rng, out);
                }
                out.push(']');
            }
            Json::Str(s) => write_str(s, rng, out),
            Json::LoneSurrogate(escaped) => {
                out.push('"');
                out.push_str(escaped);
                out.push('"');
            }
            Json::Number(n) => out.push_str(n),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Null => out.push_str("null"),
        }
    }

    /// A number as serde_json's `Value` holds it, in `Scalar`'s terms.
    fn scalar_of(number: &serde_json::Number) -> Scalar<'static> {
        match (number.as_i64(), number.as_u64()) {
            _ if number.is_f64() => Scalar::Float(number.as_f64().unwrap()),
            (Some(i), _) => Scalar::Int(i),
            (None, Some(u)) => Scalar::Float(u as f64),
            (None, None) => unreachable!("a number is one of the three"),
        }
    }

    /// The reference: the generated tree read in document order, every
    /// key on a selected path read and every other one skipped, each
    /// slot keeping the last value it is given. Only values on a
    /// selected path are decoded, so only they can fail. Err when the
    /// record is refused.
    fn reference(root: &Json, paths: &[Vec<String>]) -> Result<Vec<Option<Scalar<'static>>>, ()> {
        fn members(
            members: &[(String, Json)],
            prefix: &mut Vec<String>,
            paths: &[Vec<String>],
            out: &mut [Option<Scalar<'static>>],
        ) -> Result<(), ()> {
            for (key, value) in members {
                prefix.push(key.clone());
                let slot = paths.iter().position(|p| p == prefix);
                let branch = paths
                    .iter()
                    .any(|p| p.len() > prefix.len() && p.starts_with(prefix));
                if slot.is_some() || branch {
                    read(value, slot, prefix, paths, out)?;
                }
                prefix.pop();
            }
            Ok(())
        }
        fn read(
            value: &Json,
            slot: Option<usize>,
            prefix: &mut Vec<String>,
            paths: &[Vec<String>],
            out: &mut [Option<Scalar<'static>>],
        ) -> Result<(), ()> {
            let scalar = match value {
                Json::Object(m) => {
                    if let Some(slot) = slot {
                        out[slot] = Some(Scalar::Complex);
                    }
                    return members(m, prefix, paths, out);
                }
                Json::Array(_) => Scalar::Complex,
                Json::Str(s) => Scalar::Str(Cow::Owned(s.clone())),
                Json::LoneSurrogate(_) => return Err(()),
                Json::Number(n) => match serde_json::from_str::<Value>(n) {
                    Ok(Value::Number(n)) => scalar_of(&n),
                    _ => return Err(()),
                },
                Json::Bool(b) => Scalar::Bool(*b),
                Json::Null => Scalar::Null,
            };
            if let Some(slot) = slot {
                out[slot] = Some(scalar);
            }
            Ok(())
        }
        let mut out = vec![None; paths.len()];
        let Json::Object(m) = root else {
            unreachable!("records are objects")
        };
        members(m, &mut Vec::new(), paths, &mut out)?;
        Ok(out)
    }

    /// The same paths looked up in serde_json's `Value` of the record,
    /// which keeps only the last of duplicate keys: the reference for
    /// records without duplicates that `Value` can hold.
    fn from_value(value: &Value, paths: &[Vec<String>]) -> Vec<Option<Scalar<'static>>> {
        paths
            .iter()
            .map(|path| {
                let found = path
                    .iter()
                    .try_fold(value, |v, key| v.as_object()?.get(key))?;
                Some(match found {
                    Value::Null => Scalar::Null,
                    Value::Bool(b) => Scalar::Bool(*b),
                    Value::Number(n) => scalar_of(n),
                    Value::String(s) => Scalar::Str(Cow::Owned(s.clone())),
                    Value::Array(_) | Value::Object(_) => Scalar::Complex,
                })
            })
            .collect()
    }

    fn has_duplicate_keys(json: &Json) -> bool {
        match json {
            Json::Object(m) => {
                let keys: std::collections::HashSet<_> = m.iter().map(|(k, _)| k).collect();
                keys.len() < m.len() || m.iter().any(|(_, v)| has_duplicate_keys(v))
            }
            Json::Array(items) => items.iter().any(has_duplicate_keys),
            _ => false,
        }
    }

    fn paths(rng: &mut StdRng) -> Vec<Vec<String>> {
        let mut paths: Vec<Vec<String>> = Vec::new();
        for _ in 0..rng.random_range(0..7) {
            let path: Vec<String> = (0..rng.random_range(1..4))
                .map(|_| KEYS[rng.random_range(0..KEYS.len())].to_string())
                .collect();
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        paths
    }

    fn selector_of(paths: &[Vec<String>]) -> Selector {
        let mut s = Selector::new();
        for p in paths {
            s.add(&FieldPath(p.clone()));
        }
        s
    }

    /// The scanner against the serde_json visitor on one record: the
    /// same values and the same message, except that the scanner alone
    /// refuses a record that is not UTF-8.
    fn agrees_with_visitor(s: &Selector, record: &[u8]) {
        let (mut new, mut old) = (Vec::new(), Vec::new());
        let scanned = s.extract(record, &mut new);
        let visited = with_visitor(s, record, &mut old);
        match (&scanned, &visited) {
            (Ok(()), Ok(())) => assert!(same(&new, &old), "{new:?} != {old:?} for {record:?}"),
            (Err(a), Err(b)) => assert_eq!(a, b, "for {record:?}"),
            (Err(_), Ok(())) if std::str::from_utf8(record).is_err() => {}
            _ => panic!(
                "scanned {scanned:?}, visited {visited:?} for {:?}",
                String::from_utf8_lossy(record)
            ),
        }
    }

    #[test]
    fn the_scanner_reads_what_the_references_read() {
        let mut rng = StdRng::seed_from_u64(7);
        let (mut refused, mut checked_with_value) = (0, 0);
        for _ in 0..10_000 {
            let paths = paths(&mut rng);
            let s = selector_of(&paths);
            let root = object(&mut rng, 0);
            let mut text = String::new();
            space(&mut rng, &mut text);
            write(&root, &mut rng, &mut text);
            space(&mut rng, &mut text);

            let mut out = Vec::new();
            let scanned = s.extract(text.as_bytes(), &mut out).map(|()| out.clone());
            let expected = reference(&root, &paths);
            match (&scanned, &expected) {
                (Ok(got), Ok(want)) => assert!(
                    same_content(got, want),
                    "{text}\n{paths:?}\n{got:?}\n{want:?}"
                ),
                (Err(_), Err(())) => refused += 1,
                _ => panic!("{text}\n{paths:?}\nscanned {scanned:?}, reference {expected:?}"),
            }
            if let (Ok(got), Ok(value)) = (&scanned, serde_json::from_str::<Value>(&text)) {
                if !has_duplicate_keys(&root) {
                    assert!(same_content(got, &from_value(&value, &paths)), "{text}");
                    checked_with_value += 1;
                }
            }
            agrees_with_visitor(&s, text.as_bytes());
        }
        // The generator must make both kinds, or the test proves little.
        assert!(
            refused > 50 && checked_with_value > 3000,
            "{refused} {checked_with_value}"
        );
    }

    /// Like [`same`], without asking whether strings are borrowed: the
    /// references decode every string.
    fn same_content(a: &[Option<Scalar>], b: &[Option<Scalar>]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(a, b)| match (a, b) {
                (Some(Scalar::Float(x)), Some(Scalar::Float(y))) => x.to_bits() == y.to_bits(),
                _ => a == b,
            })
    }

    /// Keys for streams of records: [`KEYS`] and longer ones, up to and
    /// past the 14 bytes a remembered key may have, some alike in all but
    /// their last byte.
    const STREAM_KEYS: &[&str] = &[
        "a",
        "ab",
        "é",
        "k\"q",
        "",
        "abcdefgh",
        "reward_type",
        "reward_typ",
        "abcdefghijklmn",
        "abcdefghijklmno",
        "abcdefghijklmnp",
        "abcdefghijklmnop",
    ];

    /// One selector reading a stream of records, whose top-level keys come
    /// in a few orders that now and then change, reads each record as a
    /// new selector reads it alone: what it remembers of earlier records'
    /// keys changes nothing.
    #[test]
    fn a_stream_of_records_is_read_as_each_record_alone() {
        let mut rng = StdRng::seed_from_u64(17);
        let pick = |rng: &mut StdRng| STREAM_KEYS[rng.random_range(0..STREAM_KEYS.len())];
        let mut recognised_kinds = 0;
        for _ in 0..300 {
            let mut paths: Vec<Vec<String>> = Vec::new();
            for _ in 0..rng.random_range(1..6) {
                let path: Vec<String> = (0..rng.random_range(1..3))
                    .map(|_| pick(&mut rng).to_string())
                    .collect();
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
            let streamed = selector_of(&paths);
            let kinds: Vec<Vec<&str>> = (0..rng.random_range(1..4))
                .map(|_| {
                    (0..rng.random_range(1..9))
                        .map(|_| pick(&mut rng))
                        .collect()
                })
                .collect();
            let mut last_kind = None;
            for _ in 0..60 {
                let kind = rng.random_range(0..kinds.len());
                let mut keys = kinds[kind].clone();
                if rng.random_bool(0.2) {
                    let at = rng.random_range(0..=keys.len());
                    keys.insert(at, pick(&mut rng));
                }
                if rng.random_bool(0.1) && keys.len() > 1 {
                    let (i, j) = (
                        rng.random_range(0..keys.len()),
                        rng.random_range(0..keys.len()),
                    );
                    keys.swap(i, j);
                }
                recognised_kinds += usize::from(last_kind == Some(kind));
                last_kind = Some(kind);
                let root = Json::Object(
                    keys.iter()
                        .map(|k| (k.to_string(), json(&mut rng, 2)))
                        .collect(),
                );
                let mut text = String::new();
                write(&root, &mut rng, &mut text);
                let record = text.as_bytes();

                let (mut got, mut want) = (Vec::new(), Vec::new());
                let read = streamed.extract(record, &mut got);
                let alone = selector_of(&paths).extract(record, &mut want);
                assert_eq!(read, alone, "{text}\n{paths:?}");
                if read.is_ok() {
                    assert!(same(&got, &want), "{text}\n{paths:?}\n{got:?}\n{want:?}");
                    let expected = reference(&root, &paths).expect("a record that reads");
                    assert!(same_content(&got, &expected), "{text}\n{paths:?}");
                }
            }
        }
        // Records of the kind before them, whose keys can be recognised.
        assert!(recognised_kinds > 5_000, "{recognised_kinds}");
    }

    #[test]
    fn every_truncation_is_refused() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..300 {
            let s = selector_of(&paths(&mut rng));
            let mut text = String::new();
            write(&object(&mut rng, 0), &mut rng, &mut text);
            let record = text.as_bytes();
            let mut out = Vec::new();
            // No prefix short of the closing brace is an object.
            for end in 0..record.len() {
                assert!(s.extract(&record[..end], &mut out).is_err());
                agrees_with_visitor(&s, &record[..end]);
            }
        }
    }

    #[test]
    fn broken_records_are_refused_as_serde_json_refuses_them() {
        const BYTES: &[u8] =
            b"{}[]\",:\\ 0123456789eE.-+tnfalsru\x00\x01\x1f\x7f\x80\xbf\xc3\xe2\xed\xf0\xff";
        let mut rng = StdRng::seed_from_u64(13);
        for _ in 0..20_000 {
            let s = selector_of(&paths(&mut rng));
            let mut text = String::new();
            write(&object(&mut rng, 0), &mut rng, &mut text);
            let mut record = text.into_bytes();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..=record.len());
                let byte = BYTES[rng.random_range(0..BYTES.len())];
                match rng.random_range(0..3) {
                    0 => record.insert(at, byte),
                    1 if at < record.len() => record[at] = byte,
                    _ if at < record.len() => {
                        record.remove(at);
                    }
                    _ => record.push(byte),
                }
            }
            agrees_with_visitor(&s, &record);
        }
    }
}
