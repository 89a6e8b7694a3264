//! Kafka metadata as fields: the reader splices a reserved member,
//! `_kafka`, into the front of each JSON object record, so a topology
//! reads `_kafka.topic`, `_kafka.partition`, `_kafka.offset`,
//! `_kafka.timestamp`, `_kafka.key` and `_kafka.headers.NAME` like any
//! other field, with no change to the decoder.
//!
//! The member is added only for sources whose metrics read it (see
//! [`wants_metadata`]): skipping it costs the decoder a little on every
//! record. Its shape:
//!
//! ```json
//! {"_kafka": {"topic": "game.bets", "partition": 3, "offset": 1017,
//!             "timestamp": 1724112000000, "timestamp_type": "create",
//!             "key": "user-7", "headers": {"region": "eu"}}, ...the record}
//! ```
//!
//! - `timestamp` (milliseconds since the Unix epoch) and `timestamp_type`
//!   (`create` or `log_append`) are left out when the message has none.
//! - `key` is left out for a message without a key. A key that is not
//!   UTF-8 is written as `key_base64` (standard alphabet, padded) instead.
//! - `headers` is always an object. A header without a value is `null`; a
//!   value that is not UTF-8 goes under `headers_base64` with the same
//!   name. When a name repeats, the last value wins (as a map would keep
//!   it). Header names are text in Kafka; a name that is not is replaced
//!   character by character (U+FFFD).
//! - A record that is not a JSON object (after leading white space) is
//!   handed on unchanged, and fails to decode as it would have anyway.

use std::io::Write;

use base64::Engine as _;
use serde::de::IgnoredAny;
use statflow_dsl::{FieldPath, Plan, Predicate, SourcePlan, Window};

/// The reserved member's name. A record's own member of that name is
/// shadowed: the decoder sees two and keeps one, so do not send it.
pub const MEMBER: &str = "_kafka";

/// What is known about one message besides its value.
#[derive(Debug, Clone, Copy)]
pub struct MessageMeta<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
    /// The message's offset.
    pub offset: i64,
    /// Milliseconds since the Unix epoch, and whether the producer
    /// (`create`) or the broker (`log_append`) set it.
    pub timestamp: Option<(i64, &'static str)>,
    /// The key, if any.
    pub key: Option<&'a [u8]>,
}

/// Writes `payload` with the `_kafka` member spliced into its front into
/// `out` (which is cleared first). Returns false, leaving `out` empty, when
/// the payload is not a JSON object: the caller then hands on the payload
/// as it is.
pub fn splice<'h>(
    out: &mut Vec<u8>,
    payload: &[u8],
    meta: &MessageMeta<'_>,
    headers: &[(&'h str, Option<&'h [u8]>)],
) -> bool {
    out.clear();
    let body = match payload.iter().position(|b| !b.is_ascii_whitespace()) {
        Some(i) if payload[i] == b'{' => &payload[i + 1..],
        _ => return false,
    };
    out.reserve(payload.len() + 160);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(MEMBER.as_bytes());
    out.extend_from_slice(b"\":{\"topic\":");
    json_str(out, meta.topic);
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        ",\"partition\":{},\"offset\":{}",
        meta.partition, meta.offset
    );
    if let Some((ms, kind)) = meta.timestamp {
        let _ = write!(out, ",\"timestamp\":{ms},\"timestamp_type\":\"{kind}\"");
    }
    if let Some(key) = meta.key {
        match std::str::from_utf8(key) {
            Ok(text) => {
                out.extend_from_slice(b",\"key\":");
                json_str(out, text);
            }
            Err(_) => {
                out.extend_from_slice(b",\"key_base64\":");
                json_str(out, &base64::engine::general_purpose::STANDARD.encode(key));
            }
        }
    }
    // The last value of a repeated name wins: keep a header only when no
    // later one has its name.
    let last = |i: usize, name: &str| headers[i + 1..].iter().all(|(n, _)| *n != name);
    out.extend_from_slice(b",\"headers\":{");
    let mut first = true;
    let mut binary = false;
    for (i, (name, value)) in headers.iter().enumerate() {
        if !last(i, name) {
            continue;
        }
        let text = match value {
            None => None,
            Some(v) => match std::str::from_utf8(v) {
                Ok(t) => Some(t),
                Err(_) => {
                    binary = true;
                    continue;
                }
            },
        };
        if !first {
            out.push(b',');
        }
        first = false;
        json_str(out, name);
        out.push(b':');
        match text {
            Some(t) => json_str(out, t),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
    if binary {
        out.extend_from_slice(b",\"headers_base64\":{");
        let mut first = true;
        for (i, (name, value)) in headers.iter().enumerate() {
            let Some(v) = value else { continue };
            if !last(i, name) || std::str::from_utf8(v).is_ok() {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            json_str(out, name);
            out.push(b':');
            json_str(out, &base64::engine::general_purpose::STANDARD.encode(v));
        }
        out.push(b'}');
    }
    out.push(b'}');
    // `{}` stays an object: no comma before its closing brace.
    let rest = body.iter().position(|b| !b.is_ascii_whitespace());
    if rest.is_some_and(|i| body[i] != b'}') {
        out.push(b',');
    }
    out.extend_from_slice(body);
    true
}

/// The record as it came from Kafka: `record` with a spliced `_kafka`
/// member taken out again (for dead letters, which keep the original).
/// Records without one come back as they are.
pub fn strip(record: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let prefix = format!("{{\"{MEMBER}\":");
    let Some(after) = record.strip_prefix(prefix.as_bytes()) else {
        return record.into();
    };
    let mut values = serde_json::Deserializer::from_slice(after).into_iter::<IgnoredAny>();
    if !matches!(values.next(), Some(Ok(_))) {
        return record.into();
    }
    let mut rest = &after[values.byte_offset()..];
    if let Some(r) = rest.strip_prefix(b",") {
        rest = r;
    }
    let mut original = Vec::with_capacity(rest.len() + 1);
    original.push(b'{');
    original.extend_from_slice(rest);
    original.into()
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// True when a metric reading `source`, or the source's event time, uses
/// a field under `_kafka`: only then is the member worth splicing in.
pub fn wants_metadata(plan: &Plan, source: &SourcePlan) -> bool {
    let ours = |p: &FieldPath| p.0.first().is_some_and(|f| f == MEMBER);
    if ours(&source.time.path) {
        return true;
    }
    plan.metrics
        .iter()
        .filter(|m| m.sources.contains(&source.name))
        .any(|m| {
            m.dimensions.iter().any(|d| ours(&d.path))
                || m.measures.iter().any(|x| x.kind.field().is_some_and(ours))
                || matches!(&m.window, Window::Session { by, .. } if ours(by))
                || m.filter.as_ref().is_some_and(|f| predicate_uses(f, &ours))
        })
}

fn predicate_uses(p: &Predicate, ours: &dyn Fn(&FieldPath) -> bool) -> bool {
    match p {
        Predicate::Compare { field, .. }
        | Predicate::In { field, .. }
        | Predicate::Matches { field, .. }
        | Predicate::Exists { field } => ours(field),
        Predicate::And { all } => all.iter().any(|q| predicate_uses(q, ours)),
        Predicate::Or { any } => any.iter().any(|q| predicate_uses(q, ours)),
        Predicate::Not { not } => predicate_uses(not, ours),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: Option<&[u8]>) -> MessageMeta<'_> {
        MessageMeta {
            topic: "game.bets",
            partition: 3,
            offset: 1017,
            timestamp: Some((1_724_112_000_000, "create")),
            key,
        }
    }

    fn spliced(
        payload: &str,
        key: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) -> serde_json::Value {
        let mut out = Vec::new();
        assert!(splice(&mut out, payload.as_bytes(), &meta(key), headers));
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn the_member_comes_first_and_the_record_is_kept() {
        let v = spliced(
            r#" {"amount": 5, "user": "u1"}"#,
            Some(b"user-7"),
            &[("region", Some(b"eu")), ("trace", None)],
        );
        assert_eq!(
            v,
            serde_json::json!({
                "_kafka": {"topic": "game.bets", "partition": 3, "offset": 1017,
                           "timestamp": 1_724_112_000_000_i64, "timestamp_type": "create",
                           "key": "user-7", "headers": {"region": "eu", "trace": null}},
                "amount": 5, "user": "u1"
            })
        );
    }

    #[test]
    fn empty_objects_binary_keys_and_repeated_headers() {
        let v = spliced("{ }", None, &[]);
        assert_eq!(v["_kafka"]["headers"], serde_json::json!({}));
        assert!(v["_kafka"].get("key").is_none());
        let v = spliced(
            "{}",
            Some(&[0xff, 0x00]),
            &[
                ("a", Some(b"1")),
                ("b", Some(&[0xc3, 0x28])),
                ("a", Some(b"2")),
            ],
        );
        assert_eq!(v["_kafka"]["key_base64"], "/wA=");
        assert_eq!(v["_kafka"]["headers"], serde_json::json!({"a": "2"}));
        assert_eq!(
            v["_kafka"]["headers_base64"],
            serde_json::json!({"b": "wyg="})
        );
        // Quotes and control characters in keys are escaped.
        let v = spliced(r#"{"x":1}"#, Some(b"a\"b\n"), &[]);
        assert_eq!(v["_kafka"]["key"], "a\"b\n");
    }

    #[test]
    fn records_that_are_not_objects_are_left_alone() {
        let mut out = Vec::new();
        for payload in ["[1,2]", "\"text\"", "", "  ", "{broken"] {
            let ok = splice(&mut out, payload.as_bytes(), &meta(None), &[]);
            assert_eq!(ok, payload.trim_start().starts_with('{'), "{payload:?}");
        }
        // A broken object stays broken: the decoder rejects it as before.
        assert!(serde_json::from_slice::<serde_json::Value>(&out).is_err());
    }

    #[test]
    fn strip_gives_back_the_original() {
        for payload in [r#"{"a":1,"b":[{"c":"}"}]}"#, "{}", "{broken"] {
            let mut out = Vec::new();
            assert!(splice(
                &mut out,
                payload.as_bytes(),
                &meta(Some(b"k")),
                &[("h", Some(b"{"))]
            ));
            assert_eq!(&*strip(&out), payload.as_bytes());
        }
        assert_eq!(&*strip(b"{\"x\":1}"), b"{\"x\":1}");
    }

    #[test]
    fn only_sources_whose_metrics_read_the_member_get_it() {
        let text = r#"
source bets = file("bets.jsonl") { time = ts as epoch_millis }
source logins = file("logins.jsonl") { time = ts as epoch_millis }
metric by_topic from bets {
  where _kafka.partition >= 0 and not (kind = "x")
  window tumbling 1m
  measures { n = count() }
}
metric plain from logins {
  dimensions game
  window tumbling 1m
  measures { n = count() }
}
"#;
        let compiled = statflow_dsl::compile(text, None);
        let plan = compiled.plan.expect("the topology compiles");
        assert!(wants_metadata(&plan, &plan.sources[0]));
        assert!(!wants_metadata(&plan, &plan.sources[1]));
    }
}
