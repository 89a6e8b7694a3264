//! Request bodies, JSON or EDN, decoded into one normalized JSON value.
//!
//! JSON is taken as it is. EDN is read with the `edn-format` crate and
//! turned into the JSON a JSON client would have sent:
//!
//! - Map keys that are keywords become strings, `-` read as `_` and any
//!   namespace dropped: `:group-by-keys` is `"group_by_keys"`,
//!   `:time-window` is `"time_window"`. String keys stay as written.
//! - Keyword (and symbol) *values* become their name, namespace dropped:
//!   `:reward.type/task` is `"task"`. Where the value names something of the
//!   plan or of the query language (under `metric`, `group_by`,
//!   `group_by_keys`, `measures`, `order_by`, `time_window` and `columns`),
//!   `-` is read as `_` as in keys: `:reward-stats` is `"reward_stats"`.
//!   Elsewhere, and in particular in `filters`, a keyword is a dimension
//!   *value* and keeps its `-`: `:big-win` is `"big-win"`, because values
//!   are data and are matched exactly.
//! - Sets, vectors and lists become arrays (a set in its sorted order);
//!   `nil` is `null`; a character is a one-letter string; `#inst` is its
//!   RFC 3339 text and `#uuid` its canonical text; big integers and big
//!   decimals become (possibly rounded) numbers. Other tagged values, and
//!   infinite or NaN numbers, are errors.
//!
//! Every problem is a [`QueryError`]: `malformed_body` (path `""`) when the
//! text is not JSON or EDN, `bad_type` or `duplicate_field` with a path when
//! an EDN value has no JSON counterpart. Nothing here panics or recurses
//! without bound, whatever the bytes.

use edn_format::Value as Edn;
use serde_json::{Map, Number, Value as Json};

use super::QueryError;

/// Brackets and `#` an EDN body may hold in all. The EDN reader recurses
/// once for each (under 1 KiB of stack in a debug build), so an unbounded
/// body could overflow a server thread's 2 MiB stack; this bound keeps it
/// under about half a MiB. A real query holds a few dozen.
pub const MAX_EDN_NESTING: usize = 512;

/// How deep EDN collections may nest to be converted; as deep as the
/// JSON reader allows would be 128, and a query needs about five.
pub const MAX_EDN_DEPTH: usize = 64;

/// The longest run of digits an EDN body may hold. The reader turns long
/// runs into big integers in time quadratic in their length; a query never
/// needs more than a few dozen digits in a row.
pub const MAX_EDN_DIGIT_RUN: usize = 400;

/// How a request body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// JSON (`application/json`).
    Json,
    /// EDN (`application/edn`).
    Edn,
}

impl BodyFormat {
    /// The media type of JSON.
    pub const JSON_TYPE: &'static str = "application/json";
    /// The media type of EDN.
    pub const EDN_TYPE: &'static str = "application/edn";

    /// The format a `Content-Type` names, or, when it names neither JSON nor
    /// EDN (or is missing, as with `curl -d`), the one the body looks like.
    pub fn detect(content_type: Option<&str>, body: &[u8]) -> BodyFormat {
        match content_type.map(media_type) {
            Some(t)
                if t == "application/edn" || t == "application/x-edn" || t.ends_with("+edn") =>
            {
                BodyFormat::Edn
            }
            Some(t) if t == "application/json" || t.ends_with("+json") => BodyFormat::Json,
            _ if looks_like_edn(body) => BodyFormat::Edn,
            _ => BodyFormat::Json,
        }
    }

    /// The format an `Accept` header asks for: EDN when it names
    /// `application/edn` (and not JSON before it), JSON otherwise.
    pub fn from_accept(accept: Option<&str>) -> BodyFormat {
        let Some(accept) = accept else {
            return BodyFormat::Json;
        };
        for part in accept.split(',') {
            let t = media_type(part);
            if t == "application/edn" || t == "application/x-edn" {
                return BodyFormat::Edn;
            }
            if t == "application/json" {
                return BodyFormat::Json;
            }
        }
        BodyFormat::Json
    }

    /// The media type to send a body of this format with.
    pub fn media_type(self) -> &'static str {
        match self {
            BodyFormat::Json => Self::JSON_TYPE,
            BodyFormat::Edn => Self::EDN_TYPE,
        }
    }
}

/// The lower-cased media type of a header value, without parameters.
fn media_type(header: &str) -> String {
    header
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// True when the body looks like an EDN map: its first character other than
/// white space is `{` and the next one after that is `:`, a keyword key.
/// A JSON object's first key is a string, so the two never look alike.
pub fn looks_like_edn(body: &[u8]) -> bool {
    let mut chars = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace() && *b != b',');
    chars.next() == Some(b'{') && chars.next() == Some(b':')
}

/// Decodes a body into the JSON value [`validate`](super::validate) reads.
pub fn decode(body: &[u8], content_type: Option<&str>) -> Result<Json, QueryError> {
    match BodyFormat::detect(content_type, body) {
        BodyFormat::Json => decode_json(body),
        BodyFormat::Edn => {
            let text = std::str::from_utf8(body).map_err(|e| {
                malformed(format!(
                    "The body is not UTF-8 text: the byte at offset {} is not part of a character.",
                    e.valid_up_to()
                ))
            })?;
            decode_edn(text)
        }
    }
}

/// Decodes a JSON body. serde_json refuses nesting deeper than 128, so the
/// value is safe to walk recursively.
pub fn decode_json(body: &[u8]) -> Result<Json, QueryError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(malformed(
            "The body is empty: send a query such as {\"metric\": \"reward_stats\", \"time_window\": {\"kind\": \"relative\", \"last\": \"1h\"}}.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "The body is not JSON: {} at line {}, column {}.",
            json_problem(&e),
            e.line(),
            e.column()
        ))
    })
}

/// serde_json's description of a syntax error, without its position suffix.
fn json_problem(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Decodes an EDN body (see the module documentation for the mapping).
pub fn decode_edn(text: &str) -> Result<Json, QueryError> {
    check_edn_shape(text)?;
    if text.trim().is_empty() {
        return Err(malformed(
            "The body is empty: send a query such as {:metric :reward-stats :time-window {:kind :relative :last \"1h\"}}.",
        ));
    }
    // `parse_str` rather than the crate's `Parser` iterator: the iterator's
    // reader takes about ten times the stack per level.
    // edn-format 3.3 counts lines in `col` and characters within the line
    // in `row`, some of them twice; only the line is worth reporting.
    let value = read_edn(text)?.map_err(|e| {
        malformed(format!(
            "The body is not EDN: {} on line {}.",
            lower_first(&e.error.to_string()),
            e.col
        ))
    })?;
    // `parse_str` reads the first value and ignores the rest: read the body
    // again as the items of a vector (the newline ends a trailing comment)
    // to find a second value.
    if let Ok(Edn::Vector(items)) = read_edn(&format!("[{text}\n]"))? {
        if items.len() > 1 {
            return Err(malformed(
                "The body holds more than one EDN value: send one map, such as {:metric :reward-stats ...}.",
            ));
        }
    }
    edn_to_json(&value, Style::Data, "", 0)
}

/// Refuses EDN whose reading could recurse too deep or take too long,
/// before the reader sees it. Counting every bracket and `#`, in strings and
/// comments too, over-counts but never under-counts the reader's nesting.
fn check_edn_shape(text: &str) -> Result<(), QueryError> {
    let nesting = text
        .bytes()
        .filter(|b| matches!(b, b'(' | b'[' | b'{' | b'#'))
        .count();
    if nesting > MAX_EDN_NESTING {
        return Err(malformed(format!(
            "The body holds {nesting} brackets and `#` signs, more than the {MAX_EDN_NESTING} an EDN query may hold: write a smaller query, or send it as JSON."
        )));
    }
    // edn-format 3.3 panics on `\u` followed by a character of more than
    // one byte within its four-character lookahead. A backslash takes the
    // character after it, in strings and in character literals alike.
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && chars.next() == Some('u')
            && !chars.as_str().bytes().take(4).all(|b| b.is_ascii())
        {
            return Err(malformed(
                "The body holds `\\u` followed by a non-ASCII character: write a Unicode escape as `\\u` and four hex digits, such as `\\u00e9`.",
            ));
        }
    }
    let mut run = 0;
    for b in text.bytes() {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        if run > MAX_EDN_DIGIT_RUN {
            return Err(malformed(format!(
                "The body holds a run of more than {MAX_EDN_DIGIT_RUN} digits, longer than any number or text a query needs."
            )));
        }
    }
    Ok(())
}

/// Reads EDN, turning a panic of the reader into an error: edn-format 3.3
/// slices its lookahead by bytes after `\u` (see [`check_edn_shape`]), and
/// a reader bug must not take a server thread down with it.
fn read_edn(text: &str) -> Result<Result<Edn, edn_format::ParserErrorWithContext>, QueryError> {
    std::panic::catch_unwind(|| edn_format::parse_str(text))
        .map_err(|_| malformed("The body is not EDN: the reader could not make sense of it."))
}

fn malformed(message: impl Into<String>) -> QueryError {
    QueryError::new("malformed_body", "", message)
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// How keyword values are read at a place in the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// A name of the plan or the language: `-` is read as `_`.
    Name,
    /// A value: the keyword's name as written.
    Data,
}

/// Top-level keys whose values are names (see the module documentation).
const NAME_KEYS: [&str; 7] = [
    "metric",
    "group_by",
    "group_by_keys",
    "measures",
    "order_by",
    "time_window",
    "columns",
];

/// The key an EDN keyword stands for.
fn key_name(name: &str) -> String {
    name.replace('-', "_")
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Converts an EDN value at `depth` (0 for the body itself, whose keys
/// decide the style of their values).
fn edn_to_json(value: &Edn, style: Style, path: &str, depth: usize) -> Result<Json, QueryError> {
    if depth > MAX_EDN_DEPTH {
        return Err(QueryError::new(
            "bad_type",
            path,
            format!("Collections nest more than {MAX_EDN_DEPTH} deep here: a query needs only a few levels."),
        ));
    }
    let top = depth == 0;
    let named = |name: &str| match style {
        Style::Name => Json::String(key_name(name)),
        Style::Data => Json::String(name.to_string()),
    };
    Ok(match value {
        Edn::Nil => Json::Null,
        Edn::Boolean(b) => Json::Bool(*b),
        Edn::Character(c) => Json::String(c.to_string()),
        Edn::String(s) => Json::String(s.clone()),
        Edn::Keyword(k) => named(k.name()),
        Edn::Symbol(s) => named(s.name()),
        Edn::Integer(i) => Json::Number((*i).into()),
        Edn::Float(f) => number(f.into_inner(), path)?,
        Edn::BigInt(b) => number(b.to_string().parse().unwrap_or(f64::NAN), path)?,
        Edn::BigDec(d) => number(d.to_string().parse().unwrap_or(f64::NAN), path)?,
        Edn::Inst(t) => Json::String(t.to_rfc3339()),
        Edn::Uuid(u) => Json::String(u.to_string()),
        Edn::TaggedElement(tag, _) => {
            return Err(QueryError::new(
                "bad_type",
                path,
                format!("The tag `#{tag}` is not understood here: write a plain string, number, keyword or collection."),
            ))
        }
        Edn::List(items) | Edn::Vector(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| edn_to_json(v, style, &format!("{path}[{i}]"), depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Edn::Set(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| edn_to_json(v, style, &format!("{path}[{i}]"), depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Edn::Map(entries) => {
            let mut map = Map::new();
            for (k, v) in entries {
                let key = match k {
                    Edn::Keyword(k) => key_name(k.name()),
                    Edn::String(s) => s.clone(),
                    other => {
                        return Err(QueryError::new(
                            "bad_type",
                            path,
                            format!(
                                "The map key `{}` is neither a keyword nor a string: write keys as `:name`.",
                                shorten(&edn_format::emit_str(other))
                            ),
                        ))
                    }
                };
                let here = child_path(path, &key);
                let child_style = if top {
                    if NAME_KEYS.contains(&key.as_str()) {
                        Style::Name
                    } else {
                        Style::Data
                    }
                } else {
                    style
                };
                let converted = edn_to_json(v, child_style, &here, depth + 1)?;
                if map.insert(key.clone(), converted).is_some() {
                    return Err(QueryError::new(
                        "duplicate_field",
                        here,
                        format!("The key `{key}` is given twice (keys are read with `-` as `_`): keep one."),
                    ));
                }
            }
            Json::Object(map)
        }
    })
}

fn number(f: f64, path: &str) -> Result<Json, QueryError> {
    Number::from_f64(f).map(Json::Number).ok_or_else(|| {
        QueryError::new(
            "bad_type",
            path,
            "This number is not finite: write a number such as 1.5.",
        )
    })
}

/// At most 40 characters of `text`, for messages.
fn shorten(text: &str) -> String {
    if text.chars().count() <= 40 {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(39).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EDN_QUERY: &str = r#"{:metric :reward-stats :time-window {:kind :absolute :from "2024-08-20T09:00:00+08:00" :to "2024-08-20T10:00:00+08:00"} :filters {:seed-id "fuc|tax-up" :reward-type #{:reward.type/task}} :group-by-keys [:reward-type :__time]}"#;

    #[test]
    fn the_issue_query_decodes() {
        let v = decode(EDN_QUERY.as_bytes(), Some("application/edn")).unwrap();
        assert_eq!(
            v,
            json!({
                "metric": "reward_stats",
                "time_window": {"kind": "absolute", "from": "2024-08-20T09:00:00+08:00", "to": "2024-08-20T10:00:00+08:00"},
                "filters": {"seed_id": "fuc|tax-up", "reward_type": ["task"]},
                "group_by_keys": ["reward_type", "__time"],
            })
        );
        // Without a content type the body is recognised by its first key.
        assert_eq!(decode(EDN_QUERY.as_bytes(), None).unwrap(), v);
    }

    #[test]
    fn values_keep_their_dashes_names_do_not() {
        let v = decode_edn(
            r#"{:measures [:big-wins] :filters {:outcome :big-win :kind #{:a/b-c "d-e"}} :order-by [{:field :big-wins :desc true}]}"#,
        )
        .unwrap();
        assert_eq!(v["measures"], json!(["big_wins"]));
        assert_eq!(v["filters"]["outcome"], json!("big-win"));
        // A set is read in EDN order: strings before keywords.
        assert_eq!(v["filters"]["kind"], json!(["d-e", "b-c"]));
        assert_eq!(v["order_by"], json!([{"field": "big_wins", "desc": true}]));
    }

    #[test]
    fn scalars_and_tags() {
        let v = decode_edn(
            r#"{:a nil :b true :c 1.5 :d 12345678901234567890123N :e \x :f #inst "2024-08-20T09:00:00+08:00" :g (1 2) :h 2.5M}"#,
        )
        .unwrap();
        assert_eq!(v["a"], Json::Null);
        assert_eq!(v["b"], json!(true));
        assert_eq!(v["c"], json!(1.5));
        assert!(v["d"].as_f64().unwrap() > 1.2e22);
        assert_eq!(v["e"], json!("x"));
        assert_eq!(v["f"], json!("2024-08-20T09:00:00+08:00"));
        assert_eq!(v["g"], json!([1, 2]));
        assert_eq!(v["h"], json!(2.5));
    }

    #[test]
    fn problems_are_errors_with_paths() {
        let e = decode_edn(r#"{:filters {:x #foo 1}}"#).unwrap_err();
        assert_eq!((e.code, e.path.as_str()), ("bad_type", "filters.x"));
        let e = decode_edn(r#"{:group-by [:a] "group_by" [:b]}"#).unwrap_err();
        assert_eq!((e.code, e.path.as_str()), ("duplicate_field", "group_by"));
        let e = decode_edn(r#"{1 2}"#).unwrap_err();
        assert_eq!(e.code, "bad_type");
        let e = decode_edn(r#"{:metric "#).unwrap_err();
        assert_eq!((e.code, e.path.as_str()), ("malformed_body", ""));
        assert!(e.message.ends_with("on line 1."), "{}", e.message);
        let e = decode_edn("{:metric :m\n :limit\n 1 :x}").unwrap_err();
        assert!(
            e.message.contains("even number") && e.message.ends_with("on line 3."),
            "{}",
            e.message
        );
        let e = decode_edn("{} {}").unwrap_err();
        assert!(e.message.contains("more than one"));
        let e = decode(b"{\"metric\": ", Some("application/json")).unwrap_err();
        assert_eq!(e.code, "malformed_body");
        assert!(
            e.message.starts_with("The body is not JSON"),
            "{}",
            e.message
        );
        let e = decode(b"{:a \xff}", Some("application/edn")).unwrap_err();
        assert!(e.message.contains("UTF-8"));
        assert_eq!(decode(b"  ", None).unwrap_err().code, "malformed_body");
        assert_eq!(
            decode(b"", Some("application/edn")).unwrap_err().code,
            "malformed_body"
        );
    }

    #[test]
    fn deep_or_long_edn_is_refused_before_reading() {
        let deep = "[".repeat(200_000);
        assert_eq!(decode_edn(&deep).unwrap_err().code, "malformed_body");
        let tags = "#_ ".repeat(MAX_EDN_NESTING + 1) + "1";
        assert_eq!(decode_edn(&tags).unwrap_err().code, "malformed_body");
        let digits = format!("{{:limit {}}}", "9".repeat(10_000));
        assert_eq!(decode_edn(&digits).unwrap_err().code, "malformed_body");
        // The most nesting allowed is read without trouble on a server
        // thread's stack, and refused as too deep to convert.
        let half = MAX_EDN_NESTING / 2;
        let at_limit =
            "[".repeat(half) + &"#_ ".repeat(half) + &"1 ".repeat(half + 1) + &"]".repeat(half);
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || decode_edn(&at_limit).map_err(|e| e.code))
            .unwrap();
        assert_eq!(handle.join().unwrap(), Err("bad_type"));
        // A reader bug: `\u` and a wide character in its lookahead.
        for text in ["[\\uab€]", "\\uab€", "\"\\uab€\""] {
            assert_eq!(
                decode_edn(text).unwrap_err().code,
                "malformed_body",
                "{text}"
            );
        }
        assert_eq!(
            decode_edn("{:a \"\\\\\\u00e9 é\"}").unwrap()["a"],
            json!("\\é é")
        );
        let ok = "[".repeat(MAX_EDN_DEPTH) + &"]".repeat(MAX_EDN_DEPTH);
        assert!(decode_edn(&ok).is_ok());
    }

    #[test]
    fn formats_from_headers() {
        assert_eq!(
            BodyFormat::detect(Some("application/edn; charset=utf-8"), b"{}"),
            BodyFormat::Edn
        );
        assert_eq!(
            BodyFormat::detect(Some("Application/JSON"), b"{:a 1}"),
            BodyFormat::Json
        );
        assert_eq!(
            BodyFormat::detect(Some("application/x-www-form-urlencoded"), b" {\n :a 1}"),
            BodyFormat::Edn
        );
        assert_eq!(BodyFormat::detect(None, br#"{"a": 1}"#), BodyFormat::Json);
        assert_eq!(
            BodyFormat::from_accept(Some("application/edn")),
            BodyFormat::Edn
        );
        assert_eq!(
            BodyFormat::from_accept(Some("application/json, application/edn")),
            BodyFormat::Json
        );
        assert_eq!(BodyFormat::from_accept(Some("*/*")), BodyFormat::Json);
        assert_eq!(BodyFormat::from_accept(None), BodyFormat::Json);
    }
}
