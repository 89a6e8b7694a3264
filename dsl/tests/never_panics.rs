//! Property tests: whatever the text, `compile` returns, and every
//! diagnostic renders (with and without colour) and converts to JSON.
//!
//! Three kinds of input: (a) arbitrary Unicode, which mostly exercises the
//! lexer; (b) "token soup" from the language's own words, punctuation,
//! strings, durations and numbers, which reaches the parser's recovery and
//! the checker; (c) the example topologies with byte ranges deleted,
//! duplicated or replaced, which reaches deep into the checker.
//!
//! 256 cases per property by default, to keep the suite fast in debug
//! builds; set `PROPTEST_CASES=100000` for a longer search.

mod support;

use proptest::prelude::*;
use statflow_dsl::{compile, explain::explain, Plan};

/// The example topologies shipped with statflow.
const EXAMPLES: [&str; 3] = [
    include_str!("../../examples/topologies/game_stats.topo"),
    include_str!("../../examples/topologies/kafka_rewards.topo"),
    include_str!("../../examples/topologies/file_rewards.topo"),
];

/// Pieces of the language, right and wrong, for token soup and mutations.
const PIECES: &[&str] = &[
    // keywords and names
    "source",
    "metric",
    "from",
    "where",
    "dimensions",
    "window",
    "retain",
    "measures",
    "tumbling",
    "hopping",
    "session",
    "every",
    "by",
    "as",
    "and",
    "or",
    "not",
    "in",
    "exists",
    "missing",
    "kafka",
    "file",
    "generator",
    "fields",
    "time",
    "late",
    "format",
    "json",
    "avro",
    "brokers",
    "start",
    "settings",
    "pattern",
    "rate",
    "seed",
    "events",
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "distinct",
    "quantile",
    "mean",
    "epoch_millis",
    "epoch_seconds",
    "rfc3339",
    "string",
    "number",
    "bool",
    "int",
    "true",
    "false",
    "earliest",
    "latest",
    "amount",
    "user_id",
    "game_id",
    "kind",
    "ts",
    "payload.amount",
    "__time",
    "`user-id`",
    "é",
    "名前",
    // punctuation
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    ".",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=~",
    "!~",
    "-",
    ";",
    "&&",
    "||",
    "!",
    "'",
    "`",
    "\"",
    "@",
    "\\",
    // strings
    "\"reward\"",
    "\"game.rewards\"",
    "\"unterminated",
    "\"a\\q\"",
    "\"\\u{110000}\"",
    "\"fuc(\"",
    "\"game\\\\..*\"",
    "\"2024-08-20T09:00:00Z\"",
    "'single'",
    "\"\"",
    // durations
    "1m",
    "5m",
    "10m",
    "3m",
    "1h30m",
    "30d",
    "7d",
    "1s",
    "500ms",
    "0s",
    "5mins",
    "1.5m",
    "99999999999999999999d",
    "1w",
    "2w3x",
    // numbers
    "0",
    "1",
    "0.99",
    "99",
    "1e999",
    "1e+",
    "1_000",
    "1.5",
    "18446744073709551616",
    // whitespace and comments
    " ",
    "\n",
    "\t",
    "\r\n",
    "# comment\n",
    "// comment\n",
];

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Compiles `text` and exercises everything a caller may do with the
/// result, checking the invariants that hold for any input.
fn exercise(text: &str) {
    let compiled = compile(text, Some(std::path::Path::new("/topologies")));
    assert_eq!(compiled.plan.is_some(), !compiled.has_errors(), "{text:?}");
    for d in &compiled.diagnostics {
        assert!(
            d.span.start <= d.span.end && d.span.end <= text.len(),
            "span {:?} outside the text {text:?}",
            d.span
        );
        assert!(
            text.is_char_boundary(d.span.start) && text.is_char_boundary(d.span.end),
            "span {:?} splits a character in {text:?}",
            d.span
        );
        let plain = d.render(support::FILE, text, false);
        assert!(plain.contains(d.code()), "{plain}");
        d.render(support::FILE, text, true);
        let json = d.to_json(support::FILE, text);
        serde_json::to_string(&json).expect("diagnostic JSON");
    }
    if let Some(plan) = &compiled.plan {
        explain(plan);
        let json = serde_json::to_string(plan).expect("plan to JSON");
        let back: Plan = serde_json::from_str(&json).expect("plan from JSON");
        assert_eq!(&back, plan);
    }
}

/// Backs `at` up to the nearest character boundary of `text`.
fn floor_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// One edit of a text, positions as fractions of its length.
#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: f64, len: usize },
    Duplicate { at: f64, len: usize, to: f64 },
    Replace { at: f64, len: usize, with: String },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    prop_oneof![
        (at.clone(), 0..40usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (at.clone(), 0..80usize, 0.0..1.0f64).prop_map(|(at, len, to)| Mutation::Duplicate {
            at,
            len,
            to
        }),
        (at, 0..20usize, prop::sample::select(PIECES)).prop_map(|(at, len, with)| {
            Mutation::Replace {
                at,
                len,
                with: with.to_string(),
            }
        }),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let range = |at: f64, len: usize| {
        let start = floor_boundary(text, (at * text.len() as f64) as usize);
        let end = floor_boundary(text, start + len);
        (start, end)
    };
    match m {
        Mutation::Delete { at, len } => {
            let (start, end) = range(*at, *len);
            format!("{}{}", &text[..start], &text[end..])
        }
        Mutation::Duplicate { at, len, to } => {
            let (start, end) = range(*at, *len);
            let to = floor_boundary(text, (to * text.len() as f64) as usize);
            format!("{}{}{}", &text[..to], &text[start..end], &text[to..])
        }
        Mutation::Replace { at, len, with } => {
            let (start, end) = range(*at, *len);
            format!("{}{with}{}", &text[..start], &text[end..])
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// (a) Any Unicode at all, control characters included.
    #[test]
    fn arbitrary_unicode(chars in prop::collection::vec(any::<char>(), 0..300)) {
        let text: String = chars.into_iter().collect();
        exercise(&text);
    }

    /// (b) Token soup: the language's pieces in random order, sometimes glued
    /// together with no space between them.
    #[test]
    fn token_soup(
        pieces in prop::collection::vec(
            (prop::sample::select(PIECES), prop::sample::select(&[" ", "", "\n"][..])),
            0..120,
        )
    ) {
        let mut text = String::new();
        for (piece, sep) in pieces {
            text.push_str(piece);
            text.push_str(sep);
        }
        exercise(&text);
    }

    /// (c) The examples with one to four byte ranges deleted, duplicated or replaced.
    #[test]
    fn mutated_examples(
        example in 0..EXAMPLES.len(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut text = EXAMPLES[example].to_string();
        for m in &mutations {
            text = apply(&text, m);
        }
        exercise(&text);
    }
}

#[test]
fn the_examples_compile_cleanly() {
    for text in EXAMPLES {
        let compiled = compile(text, None);
        assert!(
            compiled.diagnostics.is_empty(),
            "{:?}",
            compiled.diagnostics
        );
        exercise(text);
    }
}

/// Nesting far beyond the limit is reported, not a stack overflow. Each case
/// runs on a test thread (2 MiB of stack), so this also bounds stack use.
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let n = 20_000;
    let wrap = |where_clause: String| {
        format!(
            "source events = generator()\nmetric m from events {{\n  where {where_clause}\n  window tumbling 1m\n  measures {{ n = count() }}\n}}\n"
        )
    };
    let cases = [
        wrap(format!("{}amount > 0{}", "(".repeat(n), ")".repeat(n))),
        wrap(format!("{}amount > 0", "not ".repeat(n))),
        wrap(format!("kind in {}\"a\"{}", "[".repeat(n), "]".repeat(n))),
        wrap(format!("{}amount > 0", "(".repeat(n))),
        format!(
            "source k = kafka(\"t\") {{\n  time = ts as epoch_millis\n  settings {}\n}}\n",
            "{ a = ".repeat(n)
        ),
    ];
    for text in &cases {
        let compiled = compile(text, None);
        let codes: Vec<&str> = compiled.diagnostics.iter().map(|d| d.code()).collect();
        assert!(codes.contains(&"E0009"), "{codes:?}");
        exercise(text);
    }
}

/// A long chain of `and`s is not nesting: it compiles, and quickly.
#[test]
fn long_and_chains_compile() {
    let terms: Vec<String> = (0..20_000).map(|i| format!("amount != {i}")).collect();
    let text = format!(
        "source events = generator()\nmetric m from events {{\n  where {}\n  window tumbling 1m\n  measures {{ n = count() }}\n}}\n",
        terms.join(" and ")
    );
    let compiled = compile(&text, None);
    assert!(
        compiled.diagnostics.is_empty(),
        "{:?}",
        compiled.diagnostics
    );
    let plan = compiled.plan.expect("a plan");
    match &plan.metrics[0].filter {
        Some(statflow_dsl::Predicate::And { all }) => assert_eq!(all.len(), 20_000),
        other => panic!("expected one flat `and`, got {other:?}"),
    }
    exercise(&text);
}

/// Inputs that once panicked or looked likely to; kept as regressions.
#[test]
fn known_awkward_inputs() {
    for text in [
        "",
        "\"",
        "`",
        "'",
        "\\",
        "\u{0}",
        "source",
        "metric m from",
        "source s = kafka(",
        "source s = generator() { fields { a: } }",
        "\"é",
        "é\"",
        "1.5é",
        "0.5ms",
        "1e",
        "1e+",
        "1e-9m",
        "\"\\u{",
        "\"\\u{ffffffff}\"",
        "\r",
        "a\r\nb",
        "metric m from s {\u{2028}window tumbling 1m }",
        "metric m from s { where a =~ \"(\" }",
    ] {
        exercise(text);
    }
}
