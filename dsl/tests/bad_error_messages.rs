//! A backlog of messages that are still weak: each case snapshots what the
//! compiler says today, and its comment says what it should say instead.
//!
//! When a message is improved, update the comment's case into
//! `tests/diagnostics.rs` and delete it here. The codes are asserted so that
//! a change in behaviour is noticed even when the snapshot is accepted blindly.

mod support;

use support::{codes, render_all, side_by_side};

fn snapshot(name: &str, source: &str, expected: &[&str]) {
    let (compiled, rendered) = render_all(source);
    assert_eq!(
        codes(&compiled),
        expected,
        "codes for {name}; rendered:\n{rendered}"
    );
    insta::assert_snapshot!(name, side_by_side(source, &rendered));
}

/// After an unknown source kind the checker stops looking at the source, so
/// the misspelt encoding and property below go unreported until the kind is
/// fixed, and then appear in a second run.
///
/// Better: check the properties against every kind's properties (the union),
/// and report `epoch_ms` (did you mean `epoch_millis`?) and `brokrs` (did you
/// mean `brokers`?) in the same run.
#[test]
fn unknown_source_kind_hides_the_mistakes_after_it() {
    snapshot(
        "unknown_source_kind_hides_the_mistakes_after_it",
        r#"source rewards = kafak("game.rewards") {
  time   = ts as epoch_ms
  brokrs = "127.0.0.1:9092"
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#,
        &["E0101"],
    );
}

/// A bare word compared with a string field gets the generic `BadValue`
/// message, "`kind` takes a string, number or boolean to compare with, but
/// this is a name", with no help.
///
/// Better: "`reward` is a name, but `kind` is compared with text" and help
/// "put it in double quotes: `kind = \"reward\"`".
#[test]
fn bare_word_compared_with_a_field() {
    snapshot(
        "bare_word_compared_with_a_field",
        r#"source events = generator()

metric m from events {
  where    kind = reward
  window   tumbling 1m
  measures { n = count() }
}
"#,
        &["E0108"],
    );
}

/// A missing `(` is reported at the next token, here the `}` on the next
/// line, so the arrow points away from the mistake.
///
/// Better: point just after `count` and say "write `count()`: a measure is a
/// function call". The same goes for every "expected X" whose next token is
/// on a later line: point at the end of the previous token.
#[test]
fn missing_parentheses_point_at_the_next_line() {
    snapshot(
        "missing_parentheses_point_at_the_next_line",
        r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures {
    n = count
  }
}
"#,
        &["E0004"],
    );
}

/// `session 30m` without `by` points at `measures` on the next line and
/// repeats the whole grammar in the message.
///
/// Better: point after `30m`, say "a session window needs `by` and the field
/// that keys sessions", and help "write `window session 30m by user_id`".
#[test]
fn session_without_by_points_at_the_next_clause() {
    snapshot(
        "session_without_by_points_at_the_next_clause",
        r#"source events = generator()

metric m from events {
  window   session 30m
  measures { n = count() }
}
"#,
        &["E0004"],
    );
}

/// A dangling `and` at the end of a line reads the next clause keyword
/// (`window`) as a field name, then complains about `tumbling`.
///
/// Better: "`and` needs a test after it", pointing at `and`; a clause keyword
/// at the start of a line should end the `where`.
#[test]
fn dangling_and_swallows_the_next_clause() {
    snapshot(
        "dangling_and_swallows_the_next_clause",
        r#"source events = generator()

metric m from events {
  where    amount > 0 and
  window   tumbling 1m
  measures { n = count() }
}
"#,
        &["E0004"],
    );
}

/// A trailing comma after the last dimension makes `window` a dimension:
/// two messages, neither about the comma, and the window is lost.
///
/// Better: one message, "a `,` after the last dimension", pointing at the
/// comma, with help "remove it"; then parse `window` as the clause it is.
#[test]
fn trailing_comma_in_dimensions_cascades() {
    snapshot(
        "trailing_comma_in_dimensions_cascades",
        r#"source events = generator()

metric m from events {
  dimensions game_id,
  window     tumbling 1m
  measures { n = count() }
}
"#,
        &["E0314", "E0301"],
    );
}

/// One `}` too many: "expected `source` or `metric`, found `}`".
///
/// Better: "this `}` closes nothing", with a secondary label on the `{` it
/// was probably meant to match, and help "remove it".
#[test]
fn extra_closing_brace() {
    snapshot(
        "extra_closing_brace",
        r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}}
"#,
        &["E0004"],
    );
}

/// The generator's fields are built in, but an unknown field is reported as
/// "source `events` declares no field `nope`", with help to declare it in a
/// `fields` block the user never wrote (and declaring fields on a generator
/// replaces the built-in ones).
///
/// Better: "generator events have no field `nope`" and help listing the
/// generator's fields: `kind`, `ts`, `game_id`, `user_id`, ...
#[test]
fn unknown_field_of_the_generator() {
    snapshot(
        "unknown_field_of_the_generator",
        r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { total = sum(nope) }
}
"#,
        &["E0314"],
    );
}

/// An unclosed list is reported at the next clause, as "expected `,` or `]`,
/// found `window`".
///
/// Better: "this list is never closed", pointing at the `[` with a label on
/// the last value, and help "add `]` after `\"win\"`".
#[test]
fn unclosed_list_points_at_the_next_clause() {
    snapshot(
        "unclosed_list_points_at_the_next_clause",
        r#"source events = generator()

metric m from events {
  where    kind in ["bet", "win"
  window   tumbling 1m
  measures { n = count() }
}
"#,
        &["E0004"],
    );
}

/// A second metric with a name already used is skipped whole, so its own
/// mistake (no measures) only shows once it is renamed.
///
/// Better: check the duplicate metric too, and report both E0202 and E0304.
#[test]
fn duplicate_metric_hides_its_own_mistakes() {
    snapshot(
        "duplicate_metric_hides_its_own_mistakes",
        r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}

metric m from events {
  window   tumbling 1m
}
"#,
        &["E0202"],
    );
}
