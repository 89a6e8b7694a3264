//! Snapshot tests of every diagnostic the topology language gives: each
//! snapshot holds a small topology and the rendered message side by side, so
//! a change in wording, span or help shows up in review.
//!
//! Every case also names the codes it expects, so a test fails when a code
//! changes even if someone accepts the new snapshots without reading them.
//! `every_reachable_code_has_a_case` reads `src/catalog.rs` and fails when a
//! code has no case here.
//!
//! Codes with no case, and why:
//! - none: every code in the catalog can be reached from some text.
//!
//! To regenerate: `INSTA_UPDATE=always cargo test -p statflow-dsl`, then
//! read every changed `.snap` file before committing it.

mod support;

use std::collections::BTreeSet;

use support::{codes, render_all, side_by_side};

/// Compiles `source`, checks the codes, and snapshots source and messages.
fn snapshot(name: &str, source: &str, expected: &[&str]) -> statflow_dsl::Compiled {
    let (compiled, rendered) = render_all(source);
    assert_eq!(
        codes(&compiled),
        expected,
        "codes for {name}; rendered:\n{rendered}"
    );
    insta::assert_snapshot!(name, side_by_side(source, &rendered));
    compiled
}

/// One `#[test]` per case, and `ALL_CASES` listing each case's codes.
macro_rules! cases {
    ($( $(#[$meta:meta])* $name:ident: [$($code:literal),*] => $source:expr; )*) => {
        $(
            $(#[$meta])*
            #[test]
            fn $name() {
                snapshot(stringify!($name), $source, &[$($code),*]);
            }
        )*
        const ALL_CASES: &[(&str, &[&str])] = &[$((stringify!($name), &[$($code),*])),*];
    };
}

cases! {
    // ---- syntax ------------------------------------------------------------

    e0001_unexpected_char: ["E0001"] => r#"source events = generator()

metric by_platform from events {
  dimensions game_id, $platform
  window     tumbling 1m
  measures { bets = count() }
}
"#;

    /// Single quotes are the most common stray character.
    e0001_single_quoted_string: ["E0001"] => r#"source events = generator()

metric rewards from events {
  where    kind = 'reward'
  window   tumbling 1m
  measures { rewards = count() }
}
"#;

    /// `&&` and `||` from other languages.
    e0001_double_ampersand: ["E0001"] => r#"source events = generator()

metric bets from events {
  where    kind = "bet" && amount > 0
  window   tumbling 1m
  measures { bets = count() }
}
"#;

    e0001_double_bar: ["E0001"] => r#"source events = generator()

metric logins_or_bets from events {
  where    kind = "login" || kind = "bet"
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0002_unterminated_string: ["E0002"] => r#"source events = generator()

metric rewards from events {
  where    kind = "reward
  window   tumbling 1m
  measures { rewards = count() }
}
"#;

    e0002_unterminated_backquoted_name: ["E0002"] => r#"source events = file("events.jsonl") {
  time = ts as epoch_millis
}

metric by_user from events {
  dimensions `user-id
  window     tumbling 1m
  measures { events = count() }
}
"#;

    /// A regex with a single backslash: the string escape comes first.
    /// A backslash at the end of a line does not continue the string.
    e0002_backslash_at_end_of_line: ["E0002"] => "source events = generator()\n\nmetric m from events {\n  where    seed_id =~ \"tax\\\n  window   tumbling 1m\n  measures { n = count() }\n}\n";

    e0003_bad_escape: ["E0003"] => r#"source bets = kafka(pattern = "game\.bets") {
  time = ts as epoch_millis
}

metric bet_count from bets {
  window   tumbling 1m
  measures { bets = count() }
}
"#;

    e0004_missing_equals_after_source_name: ["E0004"] => r#"source events generator()

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0004_missing_from: ["E0004"] => r#"source events = generator()

metric m events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0004_measure_without_parentheses: ["E0004"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures {
    n = count
  }
}
"#;

    e0004_missing_every: ["E0004"] => r#"source events = generator()

metric m from events {
  window   hopping 10m 1m
  measures { n = count() }
}
"#;

    e0004_missing_test_operator: ["E0004"] => r#"source events = generator()

metric m from events {
  where    amount 10
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0005_unknown_item_with_suggestion: ["E0005"] => r#"source events = generator()

metirc m from events {
  window   tumbling 1m
  measures { n = count() }
}

metric n from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0005_unknown_item: ["E0005"] => r#"let rate = 100

source events = generator()

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0006_unknown_duration_unit: ["E0006"] => r#"source events = generator()

metric m from events {
  window   tumbling 5mins
  measures { n = count() }
}
"#;

    e0006_zero_duration: ["E0006"] => r#"source events = generator()

metric m from events {
  window   tumbling 0s
  measures { n = count() }
}
"#;

    e0006_duration_without_unit: ["E0006"] => r#"source events = generator()

metric m from events {
  window   tumbling 60
  measures { n = count() }
}
"#;

    e0006_duration_too_long: ["E0006"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  retain   99999999999999999999d
  measures { n = count() }
}
"#;

    e0006_fractional_duration: ["E0006"] => r#"source events = generator()

metric m from events {
  window   tumbling 1.5m
  measures { n = count() }
}
"#;

    e0006_half_a_second: ["E0006"] => r#"source events = generator() {
  late = 0.5s
}

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0007_bad_number: ["E0007"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { p = quantile(amount, 1e999) }
}
"#;

    e0008_unclosed_metric: ["E0008"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { n = count() }
"#;

    e0008_unclosed_measures: ["E0008"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures {
    n = count()
"#;

    /// Generated text can nest without end; the parser stops at 32 levels.
    e0009_nested_too_deep: ["E0009"] => &format!(
        "source events = generator()\n\nmetric m from events {{\n  where    {}amount > 0{}\n  window   tumbling 1m\n  measures {{ n = count() }}\n}}\n",
        "(".repeat(40),
        ")".repeat(40)
    );

    // ---- sources -------------------------------------------------------------

    e0101_unknown_source_kind: ["E0101"] => r#"source rewards = kafak("game.rewards") {
  time = ts as epoch_millis
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0102_unknown_property: ["E0102"] => r#"source rewards = kafka("game.rewards") {
  time   = ts as epoch_millis
  broker = "127.0.0.1:9092"
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0102_kafka_property_on_a_file: ["E0102"] => r#"source history = file("rewards.jsonl") {
  time  = ts as epoch_millis
  start = earliest
}

metric m from history {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0102_unknown_generator_argument: ["E0102"] => r#"source events = generator(rat = 500)

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0103_duplicate_property: ["E0103"] => r#"source history = file("rewards.jsonl") {
  time = ts as epoch_millis
  late = 5m
  late = 10m
}

metric m from history {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0103_duplicate_generator_argument: ["E0103"] => r#"source events = generator(rate = 500, seed = 1, rate = 100)

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0104_missing_time: ["E0104"] => r#"source rewards = kafka("game.rewards") {
  late = 5m
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0104_file_without_block: ["E0104"] => r#"source history = file("rewards.jsonl")

metric m from history {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0105_unknown_time_encoding: ["E0105"] => r#"source history = file("rewards.jsonl") {
  time = ts as epoch_ms
}

metric m from history {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0106_unsupported_format: ["E0106"] => r#"source rewards = kafka("game.rewards") {
  format = avro
  time   = ts as epoch_millis
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0107_kafka_needs_topics: ["E0107"] => r#"source rewards = kafka() {
  time = ts as epoch_millis
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0108_late_as_a_string: ["E0108"] => r#"source history = file("rewards.jsonl") {
  time = ts as epoch_millis
  late = "5m"
}

metric m from history {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0108_time_without_encoding: ["E0108"] => r#"source history = file("rewards.jsonl") {
  time = ts
}

metric m from history {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0108_generator_rate_zero: ["E0108"] => r#"source events = generator(rate = 0)

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0108_generator_rate_with_a_fraction: ["E0108", "E0108"] => r#"source events = generator(rate = 1.5, seed = -1)

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0108_compare_with_a_bare_word: ["E0108"] => r#"source events = generator()

metric m from events {
  where    kind = reward
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0109_unknown_field_type: ["E0109"] => r#"source rewards = kafka("game.rewards") {
  time = ts as epoch_millis
  fields {
    ts: time
    amount: int
  }
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0110_duplicate_field: ["E0110"] => r#"source rewards = kafka("game.rewards") {
  time = ts as epoch_millis
  fields {
    amount: number
    user_id: string
    amount: number
  }
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0111_bad_start_position: ["E0111"] => r#"source rewards = kafka("game.rewards") {
  time  = ts as epoch_millis
  start = beginning
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0111_start_time_not_rfc3339: ["E0111"] => r#"source rewards = kafka("game.rewards") {
  time  = ts as epoch_millis
  start = "2024-08-20 09:00"
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0112_file_without_path: ["E0112"] => r#"source history = file() {
  time = ts as epoch_millis
}

metric m from history {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0112_generator_positional_argument: ["E0112"] => r#"source events = generator(500)

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0112_kafka_topics_and_pattern: ["E0112"] => r#"source rewards = kafka("game.rewards", pattern = "game\\..*") {
  time = ts as epoch_millis
}

metric m from rewards {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    // ---- names ---------------------------------------------------------------

    e0201_duplicate_source: ["E0201"] => r#"source events = generator()
source events = generator(seed = 7)

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0202_duplicate_metric: ["E0202"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}

metric m from events {
  window   tumbling 1h
  measures { n = count() }
}
"#;

    e0203_unknown_source: ["E0203"] => r#"source events = generator()

metric m from event {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0204_duplicate_measure: ["E0204"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures {
    total = sum(amount)
    total = sum(payout)
  }
}
"#;

    e0205_duplicate_dimension: ["E0205"] => r#"source history = file("rewards.jsonl") {
  time = ts as epoch_millis
}

metric m from history {
  dimensions game_id, payload.game_id
  window     tumbling 1m
  measures { n = count() }
}
"#;

    e0206_reserved_measure_name: ["E0206"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { __time = count() }
}
"#;

    e0206_reserved_dimension_alias: ["E0206"] => r#"source events = generator()

metric m from events {
  dimensions game_id as __game
  window     tumbling 1m
  measures { n = count() }
}
"#;

    e0207_name_clash: ["E0207"] => r#"source events = generator()

metric m from events {
  dimensions game_id
  window     tumbling 1m
  measures { game_id = count() }
}
"#;

    // ---- metrics -------------------------------------------------------------

    e0301_unknown_clause_with_suggestion: ["E0301"] => r#"source events = generator()

metric m from events {
  dimension game_id
  window    tumbling 1m
  measures { n = count() }
}
"#;

    e0301_unknown_clause: ["E0301"] => r#"source events = generator()

metric m from events {
  group_by game_id
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0302_duplicate_window: ["E0302"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  window   tumbling 5m
  measures { n = count() }
}
"#;

    e0302_duplicate_measures: ["E0302"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { n = count() }
  measures { total = sum(amount) }
}
"#;

    e0303_missing_window: ["E0303"] => r#"source events = generator()

metric m from events {
  dimensions game_id
  measures { n = count() }
}
"#;

    e0304_no_measures: ["E0304"] => r#"source events = generator()

metric m from events {
  window tumbling 1m
}
"#;

    e0304_empty_measures_block: ["E0304"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { }
}
"#;

    e0305_unknown_window_kind: ["E0305"] => r#"source events = generator()

metric m from events {
  window   sliding 10m
  measures { n = count() }
}
"#;

    e0305_window_kind_typo: ["E0305"] => r#"source events = generator()

metric m from events {
  window   tumbing 10m
  measures { n = count() }
}
"#;

    e0306_hopping_not_divisible: ["E0306"] => r#"source events = generator()

metric m from events {
  window   hopping 10m every 3m
  measures { n = count() }
}
"#;

    e0307_hopping_advance_too_long: ["E0307"] => r#"source events = generator()

metric m from events {
  window   hopping 1m every 5m
  measures { n = count() }
}
"#;

    e0308_retention_too_short: ["E0308"] => r#"source events = generator()

metric m from events {
  window   tumbling 1h
  retain   30m
  measures { n = count() }
}
"#;

    e0309_unknown_function: ["E0309"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { avg_amount = mean(amount) }
}
"#;

    e0309_function_typo: ["E0309"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { players = distnct(user_id) }
}
"#;

    e0310_count_with_an_argument: ["E0310"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { players = count(user_id) }
}
"#;

    e0310_quantile_without_q: ["E0310"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { p99 = quantile(amount) }
}
"#;

    e0311_quantile_as_a_percentage: ["E0311"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { p99 = quantile(amount, 99) }
}
"#;

    e0312_sum_of_a_string: ["E0312"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { users = sum(user_id) }
}
"#;

    e0313_bad_regex_in_where: ["E0313"] => r#"source events = generator()

metric m from events {
  where    seed_id =~ "fuc(tax"
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0313_bad_topic_pattern: ["E0313"] => r#"source bets = kafka(pattern = "game\\.bets[") {
  time = ts as epoch_millis
}

metric m from bets {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0314_unknown_field: ["E0314"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { total = sum(amout) }
}
"#;

    e0314_unknown_field_of_declared_source: ["E0314"] => r#"source rewards = kafka("game.rewards") {
  time = ts as epoch_millis
  fields {
    game_id: string
    amount: number
  }
}

metric m from rewards {
  dimensions game
  window     tumbling 1m
  measures { n = count() }
}
"#;

    e0315_number_compared_with_string: ["E0315"] => r#"source events = generator()

metric m from events {
  where    amount > "100"
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0315_bool_compared_with_string: ["E0315"] => r#"source events = generator()

metric m from events {
  where    won = "true"
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0316_empty_list: ["E0316"] => r#"source events = generator()

metric m from events {
  where    kind in []
  window   tumbling 1m
  measures { n = count() }
}
"#;

    e0317_field_in_quotes: ["E0317"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { total = sum("amount") }
}
"#;

    e0317_quantile_as_a_string: ["E0317"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures { p99 = quantile(amount, "0.99") }
}
"#;

    // ---- warnings ------------------------------------------------------------

    w0001_many_buckets: ["W0001"] => r#"source events = generator()

metric m from events {
  window   tumbling 1s
  retain   30d
  measures { n = count() }
}
"#;

    w0002_distinct_of_dimension: ["W0002"] => r#"source events = generator()

metric m from events {
  dimensions user_id
  window     tumbling 1m
  measures { users = distinct(user_id) }
}
"#;

    w0003_unused_source: ["W0003"] => r#"source events = generator()
source spare = generator(seed = 7)

metric m from events {
  window   tumbling 1m
  measures { n = count() }
}
"#;

    // ---- several at once -----------------------------------------------------

    /// A lexical, a syntax and a checking mistake, each in its own place.
    three_kinds_of_mistake_in_one_file: ["E0001", "E0006", "E0309"] => r#"source events = generator()

metric a from events {
  dimensions game_id, $platform
  window     tumbling 5mins
  measures { avg_amount = mean(amount) }
}
"#;

    /// Mistakes in different sources and metrics are all reported.
    mistakes_in_every_declaration: ["E0105", "E0203", "E0314", "E0306"] => r#"source history = file("rewards.jsonl") {
  time = ts as epoch_ms
}

source events = generator()

metric a from histroy {
  window   tumbling 1m
  measures { n = count() }
}

metric b from events {
  dimensions game
  window     tumbling 1m
  measures { n = count() }
}

metric c from events {
  window   hopping 10m every 3m
  measures { n = count() }
}
"#;

    /// Several mistakes inside one measures block.
    mistakes_in_one_measures_block: ["E0309", "E0314", "E0311", "E0310"] => r#"source events = generator()

metric m from events {
  window   tumbling 1m
  measures {
    a = mean(amount)
    b = sum(amout)
    c = quantile(amount, 99)
    d = count(user_id)
  }
}
"#;
}

#[test]
fn three_mistakes_give_three_diagnostics_and_no_plan() {
    let source = r#"source events = generator()

metric m from events {
  where    amount > "100"
  window   hopping 1m every 5m
  measures { total = sum(amout) }
}
"#;
    let compiled = snapshot(
        "three_mistakes_give_three_diagnostics_and_no_plan",
        source,
        &["E0315", "E0307", "E0314"],
    );
    assert!(compiled.plan.is_none());
    assert!(compiled.has_errors());
}

#[test]
fn warnings_do_not_block_the_plan() {
    let source = r#"source events = generator()
source spare = generator(seed = 7)

metric m from events {
  dimensions user_id
  window     tumbling 1s
  retain     30d
  measures { users = distinct(user_id) }
}
"#;
    let compiled = snapshot(
        "warnings_do_not_block_the_plan",
        source,
        &["W0003", "W0001", "W0002"],
    );
    assert!(!compiled.has_errors());
    let plan = compiled.plan.expect("warnings alone must give a plan");
    assert_eq!(plan.metrics.len(), 1);
    assert_eq!(plan.sources.len(), 2);
}

#[test]
fn a_warning_beside_an_error_still_shows() {
    let source = r#"source events = generator()
source spare = generator(seed = 7)

metric m from events {
  window   tumbling 1m
  measures { n = cnt() }
}
"#;
    let compiled = snapshot(
        "a_warning_beside_an_error_still_shows",
        source,
        &["W0003", "E0309"],
    );
    assert!(compiled.plan.is_none());
}

/// Every code in `src/catalog.rs` has a case here, unless listed as unreachable.
#[test]
fn every_reachable_code_has_a_case() {
    const UNREACHABLE: &[&str] = &[];
    let catalog = include_str!("../src/catalog.rs");
    let mut in_catalog = BTreeSet::new();
    for (i, _) in catalog.match_indices("=> \"") {
        let code = &catalog[i + 4..i + 9];
        let is_code = code.len() == 5
            && (code.starts_with('E') || code.starts_with('W'))
            && code[1..].bytes().all(|b| b.is_ascii_digit());
        if is_code {
            in_catalog.insert(code);
        }
    }
    assert!(
        in_catalog.len() > 40,
        "could not read the codes from catalog.rs: {in_catalog:?}"
    );
    let covered: BTreeSet<&str> = ALL_CASES
        .iter()
        .flat_map(|(_, codes)| codes.iter().copied())
        .collect();
    let missing: Vec<&&str> = in_catalog
        .iter()
        .filter(|c| !covered.contains(**c) && !UNREACHABLE.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "codes with no snapshot case: {missing:?}"
    );
    assert!(ALL_CASES.len() >= 30);
}
